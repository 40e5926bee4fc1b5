//! virtio-net (legacy): queue 0 receives, queue 1 transmits; each frame preceded by the
//! 10-byte legacy `virtio_net_hdr` (no mergeable receive buffers, so no buffer count)
//! (virtio 1.x, 5.1).
//!
//! Offered: MAC (the address given at creation, configuration bytes 0-5) and STATUS (the
//! link is always up, configuration bytes 6-7). No checksum or segmentation offloads, so
//! the headers the guest sends carry nothing the device needs (they are dropped) and the
//! ones it receives are zero; no control queue, no multiqueue. Frames are Ethernet frames
//! without their FCS, 14 to [`MAX_FRAME`] bytes; a transmitted chain outside that, or with
//! a device-writable buffer, is dropped (and counted), as is a frame to deliver when the
//! guest posted no receive buffer or one too small for it.

use super::pci::{DeviceType, Transport};
use super::queue::QUEUE_SIZE;
use super::{Broken, feature};
use crate::devices::pci::{ConfigSpace, PciDevice};
use crate::guest::GuestMemory;
use alloc::vec::Vec;

/// Feature bits.
pub mod features {
    /// The configuration holds the card's MAC address.
    pub const MAC: u32 = 1 << 5;
    /// The configuration holds the link status.
    pub const STATUS: u32 = 1 << 16;
}

/// Features offered.
pub const FEATURES: u32 = features::MAC | features::STATUS | feature::ANY_LAYOUT;

/// The legacy header before every frame: flags, GSO type, header length, GSO size,
/// checksum start and offset.
pub const HEADER_LEN: usize = 10;
/// The longest frame: 1500 bytes of payload and the 14-byte Ethernet header.
pub const MAX_FRAME: usize = 1514;
/// The shortest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// The configuration's status: the link is up.
pub const LINK_UP: u16 = 1;

/// A frame the guest sent.
#[derive(Clone)]
pub struct Frame {
    bytes: [u8; MAX_FRAME],
    len: usize,
}

impl Frame {
    /// The frame's bytes (destination MAC first).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// What the device has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames the guest sent, handed to the VMM.
    pub tx_frames: u64,
    /// Transmit chains dropped for their shape or length.
    pub tx_dropped: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Frames dropped because the guest had no receive buffer posted (or the device was
    /// not ready or broken).
    pub rx_no_buffer: u64,
    /// Frames dropped for their length, or because the receive buffer was too small or not
    /// device-writable.
    pub rx_dropped: u64,
}

/// A virtio-net device.
pub struct VirtioNet {
    transport: Transport,
    mac: [u8; 6],
    /// What it has seen.
    pub counters: NetCounters,
}

impl VirtioNet {
    /// The receive queue.
    pub const RX: u16 = 0;
    /// The transmit queue.
    pub const TX: u16 = 1;

    /// A card with address `mac`.
    pub fn new(mac: [u8; 6]) -> Self {
        let mut config = Vec::with_capacity(8);
        config.extend_from_slice(&mac);
        config.extend_from_slice(&LINK_UP.to_le_bytes());
        Self {
            transport: Transport::new(DeviceType::Net, FEATURES, 2, QUEUE_SIZE, config),
            mac,
            counters: NetCounters::default(),
        }
    }

    /// Its MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The transport (status, features, whether and why it is broken).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The transport, to change (the VMM places the BAR with it).
    pub fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.transport.broken()
    }

    /// The queues notified since the last call: bit 0, receive buffers were posted (frames
    /// waiting may now be delivered); bit 1, frames to send.
    pub fn take_notified(&mut self) -> u32 {
        self.transport.take_notified()
    }

    /// The next frame the guest sent, without its header; chains that do not hold a frame
    /// are given back and counted on the way. None when the transmit queue is empty, not
    /// usable, or the device broke.
    pub fn take_tx(&mut self, mem: &mut impl GuestMemory) -> Option<Frame> {
        loop {
            let chain = self.transport.pop(Self::TX, mem)?;
            let mut frame = Frame { bytes: [0; MAX_FRAME], len: 0 };
            let len = chain.readable_len().saturating_sub(HEADER_LEN as u64);
            let good = chain.writable_len() == 0
                && (MIN_FRAME as u64..=MAX_FRAME as u64).contains(&len)
                && chain.read(mem, HEADER_LEN as u64, &mut frame.bytes[..len as usize]);
            self.transport.push_used(Self::TX, mem, chain.head, 0);
            if self.transport.broken().is_some() {
                return None;
            }
            if good {
                frame.len = len as usize;
                self.counters.tx_frames += 1;
                return Some(frame);
            }
            self.counters.tx_dropped += 1;
        }
    }

    /// Whether the guest has a receive buffer posted (the device is ready and not broken):
    /// a frame taken from elsewhere now would not be dropped for want of one.
    pub fn can_receive(&mut self, mem: &impl GuestMemory) -> bool {
        self.transport.has_available(Self::RX, mem)
    }

    /// Delivers `frame` (an Ethernet frame without FCS) into the guest's next receive
    /// buffer, behind a zero header, and interrupts (unless the guest suppressed it).
    /// False if it was dropped: no buffer posted, the device not ready or broken, the
    /// frame's length out of bounds, or the buffer too small (then it goes back empty).
    pub fn deliver(&mut self, mem: &mut impl GuestMemory, frame: &[u8]) -> bool {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            self.counters.rx_dropped += 1;
            return false;
        }
        let Some(chain) = self.transport.pop(Self::RX, mem) else {
            self.counters.rx_no_buffer += 1;
            return false;
        };
        let total = HEADER_LEN + frame.len();
        let fits = chain.readable_len() == 0 && chain.writable_len() >= total as u64;
        let written =
            fits && chain.write(mem, 0, &[0; HEADER_LEN]) && chain.write(mem, HEADER_LEN as u64, frame);
        let used = if written { total as u32 } else { 0 };
        let given_back = self.transport.push_used(Self::RX, mem, chain.head, used);
        if written && given_back {
            self.counters.rx_frames += 1;
            true
        } else {
            self.counters.rx_dropped += 1;
            false
        }
    }
}

impl PciDevice for VirtioNet {
    fn config(&self) -> &ConfigSpace {
        self.transport.config()
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        self.transport.config_mut()
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            0 => self.transport.bar_read(offset, data),
            _ => data.fill(0xff),
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.transport.bar_write(offset, data);
        }
    }
    fn interrupt(&self) -> bool {
        self.transport.interrupt()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }
}
