//! The switch: takes frames from every port's tx pipe in turn, learns where their sources
//! are, and puts each in the rx pipe of the port its destination is on, or of every other
//! port when the destination is a group or unknown.

use crate::frame::{HEADER_LEN, Mac, addresses};
use crate::port::{CutOff, Port, PortId};
use crate::table::{Table, TableStats};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use cleave_ioring::Error;
use cleave_ioring::pipe::MAX_FRAME;
use core::fmt;

/// Entries in the learning table unless the switch's type says otherwise.
pub const TABLE_ENTRIES: usize = 256;
/// Frames [`Switch::poll`] takes from each port at most, unless
/// [`Switch::with_budget`] says otherwise.
pub const FRAMES_PER_PORT: usize = 32;

/// Why ports cannot make a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// a port's configured address is a group (multicast or broadcast) address
    GroupMac(PortId),
    /// two ports are configured with the same address
    DuplicateMac(PortId, PortId),
    /// a switch of {expected} ports was given {given}
    PortCount {
        /// The switch's ports.
        expected: usize,
        /// The ports given.
        given: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GroupMac(port) => write!(f, "{port}: the configured address is a group address"),
            Self::DuplicateMac(a, b) => write!(f, "{a} and {b} are configured with the same address"),
            Self::PortCount { expected, given } => {
                write!(f, "a switch of {expected} ports was given {given}")
            }
        }
    }
}

/// What a [`Switch::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll<const PORTS: usize> {
    /// The ports whose rx pipe got frames (it was published): signal their VMMs.
    pub signal: [bool; PORTS],
    /// The ports cut off during this poll (see [`Port::cut_off`] for why).
    pub cut_off: [bool; PORTS],
    /// A port used its whole budget, so frames may be waiting: poll again (after other
    /// work, if there is any) without waiting for a signal.
    pub more: bool,
}

/// A learning Ethernet switch between `PORTS` guests, with a table of `ENTRIES` addresses.
///
/// It keeps nothing that must survive a netback restart: a new switch over the same
/// regions continues from the pipes' indexes and learns the table again. Its ports and
/// frame buffer are on the heap (a port is some 270 bytes): a switch of 63 ports is built
/// and kept without a large stack.
pub struct Switch<const PORTS: usize, const ENTRIES: usize = TABLE_ENTRIES> {
    ports: Vec<Port>,
    table: Table<ENTRIES>,
    budget: usize,
    /// The port the next poll serves first.
    next: usize,
    /// The frame being forwarded.
    frame: Box<[u8]>,
}

impl<const PORTS: usize, const ENTRIES: usize> Switch<PORTS, ENTRIES> {
    /// A switch between `ports` (`PORTS` of them, an array or a vector): port `i` is
    /// `PortId(i)`.
    pub fn new(ports: impl Into<Vec<Port>>) -> Result<Self, ConfigError> {
        let ports = ports.into();
        if ports.len() != PORTS {
            return Err(ConfigError::PortCount { expected: PORTS, given: ports.len() });
        }
        for (i, port) in ports.iter().enumerate() {
            let Some(mac) = port.mac else { continue };
            if mac.is_group() {
                return Err(ConfigError::GroupMac(PortId(i)));
            }
            if let Some(j) = ports.iter().take(i).position(|p| p.mac == Some(mac)) {
                return Err(ConfigError::DuplicateMac(PortId(j), PortId(i)));
            }
        }
        let frame = vec![0; MAX_FRAME].into_boxed_slice();
        Ok(Self { ports, table: Table::new(), budget: FRAMES_PER_PORT, next: 0, frame })
    }

    /// Takes at most `frames` frames (at least one) from each port per poll.
    pub fn with_budget(self, frames: usize) -> Self {
        Self { budget: frames.max(1), ..self }
    }

    /// The port `id`.
    pub fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.0)
    }

    /// All ports, by id.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// The port frames to `mac` go to: the one configured with it, or the one it was last
    /// seen on as a source; `None` if they are flooded.
    pub fn lookup(&self, mac: Mac) -> Option<PortId> {
        if mac.is_group() {
            return None;
        }
        match self.ports.iter().position(|p| p.mac == Some(mac)) {
            Some(i) => Some(PortId(i)),
            None => self.table.lookup(mac),
        }
    }

    /// Addresses in the learning table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// What the learning table did.
    pub fn table_stats(&self) -> &TableStats {
        self.table.stats()
    }

    /// Moves frames: up to the budget from each port, one port after the other (a frame
    /// from each in turn, starting one port further at each call), then publishes every rx
    /// pipe that got frames. A port that floods its pipe gets its budget and no more, and
    /// cannot keep the others' frames out of a destination's rx pipe.
    pub fn poll(&mut self) -> Poll<PORTS> {
        // A port cut off by its guest's old VMM is open again to a new one (an on-request
        // guest destroyed and made again: its format changed the session word), whose
        // pipes attach to the new session.
        for port in &mut self.ports {
            if port.cut_off.is_some() && port.tx.session_word() != port.cut_session {
                port.cut_off = None;
            }
        }
        let mut taken = [0usize; PORTS];
        let mut cut_before = [false; PORTS];
        for (cut, port) in cut_before.iter_mut().zip(&self.ports) {
            *cut = port.cut_off.is_some();
        }
        let start = self.next;
        self.next = start.checked_add(1).and_then(|n| n.checked_rem(PORTS)).unwrap_or(0);
        for _ in 0..self.budget {
            let mut any = false;
            for k in 0..PORTS {
                let i = (start + k) % PORTS;
                if self.take_one(PortId(i)) {
                    any = true;
                    if let Some(t) = taken.get_mut(i) {
                        *t += 1;
                    }
                }
            }
            if !any {
                break;
            }
        }
        let mut signal = [false; PORTS];
        for i in 0..PORTS {
            let Some(port) = self.ports.get_mut(i) else { continue };
            if port.cut_off.is_some() {
                continue;
            }
            match port.rx.publish() {
                Ok(published) => {
                    if let Some(s) = signal.get_mut(i) {
                        *s = published;
                    }
                }
                Err(e) => self.cut(PortId(i), CutOff::Rx(e)),
            }
        }
        let mut cut_off = [false; PORTS];
        for ((cut, before), port) in cut_off.iter_mut().zip(cut_before).zip(&self.ports) {
            *cut = port.cut_off.is_some() && !before;
        }
        Poll { signal, cut_off, more: taken.iter().any(|&t| t >= self.budget) }
    }

    /// Takes a frame from `from`'s tx pipe and forwards it: whether there was one.
    fn take_one(&mut self, from: PortId) -> bool {
        let Some(port) = self.ports.get_mut(from.0) else { return false };
        if port.cut_off.is_some() {
            return false;
        }
        let len = match port.tx.receive(&mut self.frame) {
            Ok(Some(len)) => len,
            Ok(None) => return false,
            Err(e) => {
                self.cut(from, CutOff::Tx(e));
                return false;
            }
        };
        port.counters.tx_frames += 1;
        port.counters.tx_bytes += len.saturating_sub(HEADER_LEN) as u64;
        self.forward(from, len);
        true
    }

    /// Forwards the first `len` bytes of `self.frame`, which came from `from`.
    fn forward(&mut self, from: PortId, len: usize) {
        let share = ENTRIES / PORTS.max(1);
        let Some(frame) = self.frame.get_mut(..len) else { return };
        let Some(port) = self.ports.get_mut(from.0) else { return };
        let Some((destination, source)) = addresses(frame) else {
            port.counters.drops.runt += 1;
            return;
        };
        if source.is_group() {
            port.counters.drops.group_source += 1;
            return;
        }
        let own = port.mac == Some(source);
        let spoofed = (port.anti_spoofing && port.mac.is_some() && !own)
            || (!own && self.ports.iter().any(|p| p.mac == Some(source)));
        let Some(port) = self.ports.get_mut(from.0) else { return };
        if spoofed {
            port.counters.drops.spoofed += 1;
            return;
        }
        if !own {
            // A configured address needs no entry: `lookup` finds it first.
            self.table.learn(source, from, share);
        }
        // The header is the switch's to write: nothing one guest put there reaches another.
        frame.iter_mut().take(HEADER_LEN).for_each(|b| *b = 0);
        let to = if destination.is_group() { None } else { self.lookup(destination) };
        match to {
            Some(to) if to == from => {
                if let Some(port) = self.ports.get_mut(from.0) {
                    port.counters.drops.hairpin += 1;
                }
            }
            Some(to) => self.deliver(to, len),
            None => {
                if let Some(port) = self.ports.get_mut(from.0) {
                    port.counters.tx_flooded += 1;
                }
                for to in (0..PORTS).filter(|&to| to != from.0) {
                    self.deliver(PortId(to), len);
                }
            }
        }
    }

    /// Puts the first `len` bytes of `self.frame` in `to`'s rx pipe.
    fn deliver(&mut self, to: PortId, len: usize) {
        let (Some(port), Some(frame)) = (self.ports.get_mut(to.0), self.frame.get(..len)) else { return };
        if port.cut_off.is_some() {
            return;
        }
        match port.rx.send(frame) {
            Ok(true) => {
                port.counters.rx_frames += 1;
                port.counters.rx_bytes += len.saturating_sub(HEADER_LEN) as u64;
            }
            Ok(false) => port.counters.drops.rx_full += 1,
            // A frame longer than a pipe carries cannot have come out of one; were it to,
            // the frame is refused and the port stays.
            Err(Error::Request(_)) => port.counters.drops.rx_full += 1,
            Err(e @ Error::Protocol(_)) => self.cut(to, CutOff::Rx(e)),
        }
    }

    /// Cuts `id` off: its pipes are left alone from now on and its addresses forgotten.
    fn cut(&mut self, id: PortId, reason: CutOff) {
        if let Some(port) = self.ports.get_mut(id.0) {
            port.cut_off = Some(reason);
            port.cut_session = port.tx.session_word();
            self.table.forget(id);
        }
    }
}
