//! A port of the switch: one guest's pair of pipes (tx, which its VMM fills and the switch
//! empties; rx, which the switch fills for the VMM), its configured address if it has one,
//! whether it was cut off, and its counters.

use crate::frame::Mac;
use cleave_ioring::Error;
use cleave_ioring::pipe::{Consumer, Producer};
use core::fmt;

/// A port's index: its place in the array given to [`crate::Switch::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub usize);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// Why a port was cut off: its VMM broke the protocol of one of its pipes. The switch
/// neither reads nor writes either pipe again; the other ports go on. Only a new switch
/// (a netback restart) attaches to the pipes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutOff {
    /// the tx pipe (frames from the guest) failed
    Tx(Error),
    /// the rx pipe (frames for the guest) failed
    Rx(Error),
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tx(e) => write!(f, "cut off: tx pipe: {e}"),
            Self::Rx(e) => write!(f, "cut off: rx pipe: {e}"),
        }
    }
}

/// Frames a port's guest sent that the switch dropped, by reason, and frames for it that
/// its rx pipe had no room for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Shorter than the virtio-net header and an Ethernet header.
    pub runt: u64,
    /// A group (multicast or broadcast) source address: never a valid source.
    pub group_source: u64,
    /// A source address other than the port's configured one (with anti-spoofing), or one
    /// configured on another port.
    pub spoofed: u64,
    /// Unicast to an address last seen on the port it came from: never sent back out.
    pub hairpin: u64,
    /// For this port, but its rx pipe was full (or its VMM had not formatted it yet).
    pub rx_full: u64,
}

impl Drops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.runt + self.group_source + self.spoofed + self.hairpin + self.rx_full
    }
}

/// A port's counters. tx and rx are the guest's: tx frames are those its VMM put in the tx
/// pipe, rx frames those the switch put in its rx pipe. Bytes are the Ethernet frame's,
/// without the virtio-net header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames taken from the tx pipe (forwarded or dropped).
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames taken from the tx pipe that were flooded (broadcast, multicast, or to an
    /// unknown address).
    pub tx_flooded: u64,
    /// Frames put in the rx pipe.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames dropped, by reason.
    pub drops: Drops,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.drops;
        write!(
            f,
            "tx {} frames {} bytes ({} flooded), rx {} frames {} bytes, dropped: {} runt, {} group source, \
             {} spoofed, {} hairpin, {} rx full",
            self.tx_frames,
            self.tx_bytes,
            self.tx_flooded,
            self.rx_frames,
            self.rx_bytes,
            d.runt,
            d.group_source,
            d.spoofed,
            d.hairpin,
            d.rx_full
        )
    }
}

/// One guest's side of the switch.
pub struct Port {
    pub(crate) tx: Consumer,
    pub(crate) rx: Producer,
    pub(crate) mac: Option<Mac>,
    pub(crate) anti_spoofing: bool,
    pub(crate) cut_off: Option<CutOff>,
    /// The region's session word when it was cut off: a new VMM's format changes it, and
    /// only then does the switch open the port again.
    pub(crate) cut_session: u32,
    pub(crate) counters: Counters,
}

impl Port {
    /// A port over a guest's pipes: `tx` the one its VMM produces into (netback attaches
    /// with [`Consumer::attach`]), `rx` the one it consumes ([`Producer::attach`]).
    pub fn new(tx: Consumer, rx: Producer) -> Self {
        Self {
            tx,
            rx,
            mac: None,
            anti_spoofing: false,
            cut_off: None,
            cut_session: 0,
            counters: Counters::default(),
        }
    }

    /// Gives the port the guest's configured address (from the system description): the
    /// switch knows it is there before the guest sends anything, no other port may use it
    /// as a source, and, unless [`Port::with_anti_spoofing`] turns it off, this port may use
    /// no other.
    pub fn with_mac(self, mac: Mac) -> Self {
        Self { mac: Some(mac), anti_spoofing: true, ..self }
    }

    /// Whether frames whose source is not the configured address are dropped (on by
    /// [`Port::with_mac`]; without a configured address there is nothing to check).
    pub fn with_anti_spoofing(self, on: bool) -> Self {
        Self { anti_spoofing: on, ..self }
    }

    /// The configured address.
    pub fn mac(&self) -> Option<Mac> {
        self.mac
    }

    /// Whether its VMM closed its tx pipe for good (the guest is gone).
    pub fn closed(&self) -> bool {
        self.tx.closed()
    }

    /// Why the port was cut off, if it was.
    pub fn cut_off(&self) -> Option<CutOff> {
        self.cut_off
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}
