//! The learning table: which port each MAC address was last seen on as a source.
//!
//! A fixed array of `ENTRIES` entries, searched whole (a few hundred comparisons of six
//! bytes per frame: small next to copying the frame). Entries do not age with time (the
//! switch has no clock); an entry changes when its address is seen on another port (the
//! guest moved, or the address is reused), and goes when its port is cut off or when room
//! is needed:
//!
//! - each port holds at most its share of the table (`ENTRIES / PORTS`, at least one); a
//!   port at its share that shows a new source address loses its own entry seen least
//!   recently, so a guest that sprays source addresses churns its own entries only;
//! - if the table is full all the same (more ports than entries), the entry seen least
//!   recently, whichever its port, goes.
//!
//! An address without an entry is flooded, so an eviction costs bandwidth, never a frame.

use crate::frame::Mac;
use crate::port::PortId;

/// What the table did, for the switch's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Addresses learnt (new entries).
    pub learnt: u64,
    /// Addresses seen on another port than their entry's (the entry was moved).
    pub moved: u64,
    /// Entries evicted to make room.
    pub evicted: u64,
    /// Entries forgotten because their port was cut off.
    pub forgotten: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Mac,
    port: PortId,
    /// The table's clock when the address was last seen as a source.
    seen: u64,
}

const EMPTY: Entry = Entry { mac: Mac([0; 6]), port: PortId(0), seen: 0 };

/// MAC address to port, `ENTRIES` entries at most.
#[derive(Debug)]
pub(crate) struct Table<const ENTRIES: usize> {
    /// Entries `..len` are in use, in no order.
    entries: [Entry; ENTRIES],
    len: usize,
    /// Counts the sources seen; orders entries by when they were last seen.
    clock: u64,
    stats: TableStats,
}

impl<const ENTRIES: usize> Table<ENTRIES> {
    pub fn new() -> Self {
        Self { entries: [EMPTY; ENTRIES], len: 0, clock: 0, stats: TableStats::default() }
    }

    fn live(&self) -> &[Entry] {
        self.entries.get(..self.len).unwrap_or(&[])
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// The port `mac` was last seen on.
    pub fn lookup(&self, mac: Mac) -> Option<PortId> {
        self.live().iter().find(|e| e.mac == mac).map(|e| e.port)
    }

    /// Records that `mac` (not a group address) was seen as a source on `port`, which may
    /// hold at most `share` entries.
    pub fn learn(&mut self, mac: Mac, port: PortId, share: usize) {
        let share = share.max(1);
        // A u64 counting frames does not wrap; if it did, the order would only be off.
        self.clock = self.clock.wrapping_add(1);
        let mut found = None;
        let (mut own, mut own_oldest, mut oldest) = (0, None, None);
        for (i, e) in self.live().iter().enumerate() {
            if e.mac == mac {
                found = Some(i);
                continue;
            }
            let older =
                |best: Option<usize>| best.and_then(|b| self.entries.get(b)).is_none_or(|b| e.seen < b.seen);
            if e.port == port {
                own += 1;
                if older(own_oldest) {
                    own_oldest = Some(i);
                }
            }
            if older(oldest) {
                oldest = Some(i);
            }
        }
        let entry = Entry { mac, port, seen: self.clock };
        if let Some(i) = found {
            if let Some(e) = self.entries.get_mut(i) {
                if e.port != port {
                    self.stats.moved += 1;
                }
                *e = entry;
            }
            // A moved entry counts towards its new port's share too.
            if own >= share
                && let Some(victim) = own_oldest
            {
                self.remove(victim);
                self.stats.evicted += 1;
            }
            return;
        }
        let (slot, evicting) = if own >= share {
            (own_oldest, true)
        } else if self.len < ENTRIES {
            self.len += 1;
            (Some(self.len - 1), false)
        } else {
            (oldest, true)
        };
        let Some(e) = slot.and_then(|i| self.entries.get_mut(i)) else { return };
        *e = entry;
        self.stats.learnt += 1;
        if evicting {
            self.stats.evicted += 1;
        }
    }

    /// Removes entry `i` (the last entry takes its place).
    fn remove(&mut self, i: usize) {
        let Some(last) = self.len.checked_sub(1) else { return };
        if let Some(moved) = self.entries.get(last).copied()
            && let Some(e) = self.entries.get_mut(i)
        {
            *e = moved;
            self.len = last;
        }
    }

    /// Forgets every entry of `port`.
    pub fn forget(&mut self, port: PortId) {
        let mut i = 0;
        // Each turn removes an entry or moves past one: at most `ENTRIES` turns.
        while let Some(e) = self.live().get(i) {
            if e.port == port {
                self.remove(i);
                self.stats.forgotten += 1;
            } else {
                i += 1;
            }
        }
    }
}
