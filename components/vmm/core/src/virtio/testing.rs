//! Test support: guest RAM as a vector, and a driver that builds a split virtqueue's rings
//! the way Linux's `virtio_ring` does (a free list of descriptors linked through `next`,
//! each chain's readable buffers first, the available index published after the entry).

use super::queue::{AVAIL_F_NO_INTERRUPT, flag};
use crate::guest::GuestMemory;
use std::vec;
use std::vec::Vec;

/// Guest RAM from guest-physical 0.
pub struct Ram(pub Vec<u8>);

impl Ram {
    /// `size` bytes of zeros.
    pub fn new(size: usize) -> Self {
        Self(vec![0; size])
    }

    /// The range `gpa..gpa + len` as indices, if it is all RAM.
    fn range(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.0.len()).then_some(start..end)
    }

    pub fn u16_at(&self, gpa: u64) -> u16 {
        let mut b = [0; 2];
        assert!(self.read(gpa, &mut b));
        u16::from_le_bytes(b)
    }

    pub fn u32_at(&self, gpa: u64) -> u32 {
        let mut b = [0; 4];
        assert!(self.read(gpa, &mut b));
        u32::from_le_bytes(b)
    }

    pub fn bytes(&self, gpa: u64, len: usize) -> &[u8] {
        &self.0[self.range(gpa, len).unwrap()]
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        match self.range(gpa, out.len()) {
            Some(r) => {
                out.copy_from_slice(&self.0[r]);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.range(gpa, data.len()) {
            Some(r) => {
                self.0[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The driver's side of one queue.
pub struct Driver {
    pub size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    /// Free descriptors, the next one to take last.
    free: Vec<u16>,
    avail_idx: u16,
    last_used: u16,
}

impl Driver {
    /// A queue of `size` entries at page `pfn` (the rings are zero: fresh RAM).
    pub fn new(pfn: u32, size: u16) -> Self {
        let desc = u64::from(pfn) * 4096;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4096);
        Self { size, desc, avail, used, free: (0..size).rev().collect(), avail_idx: 0, last_used: 0 }
    }

    /// Writes descriptor `index` as is.
    pub fn descriptor(&self, ram: &mut Ram, index: u16, gpa: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&gpa.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        assert!(ram.write(self.desc + 16 * u64::from(index), &d));
    }

    /// Makes head `head` available (whatever it is) and publishes the index.
    pub fn publish(&mut self, ram: &mut Ram, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        assert!(ram.write(self.avail + 4 + 2 * slot, &head.to_le_bytes()));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(ram, self.avail_idx);
    }

    /// Writes the available index as is.
    pub fn set_avail_idx(&mut self, ram: &mut Ram, idx: u16) {
        self.avail_idx = idx;
        assert!(ram.write(self.avail + 2, &idx.to_le_bytes()));
    }

    /// A chain of `(address, length, device-writable)` buffers, from the free list;
    /// returns its head.
    pub fn add(&mut self, ram: &mut Ram, buffers: &[(u64, u32, bool)]) -> u16 {
        assert!(buffers.len() <= self.free.len(), "ring full");
        let indices: Vec<u16> = (0..buffers.len()).map(|_| self.free.pop().unwrap()).collect();
        for (i, &(gpa, len, writable)) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let flags = if writable { flag::WRITE } else { 0 } | if last { 0 } else { flag::NEXT };
            let next = if last { 0 } else { indices[i + 1] };
            self.descriptor(ram, indices[i], gpa, len, flags, next);
        }
        self.publish(ram, indices[0]);
        indices[0]
    }

    /// The chains the device gave back since the last call, (head, length written); their
    /// descriptors go back to the free list.
    pub fn used(&mut self, ram: &Ram) -> Vec<(u16, u32)> {
        let idx = ram.u16_at(self.used + 2);
        let mut out = Vec::new();
        while self.last_used != idx {
            let entry = self.used + 4 + 8 * u64::from(self.last_used % self.size);
            let (head, len) = (ram.u32_at(entry) as u16, ram.u32_at(entry + 4));
            out.push((head, len));
            let mut index = head;
            loop {
                self.free.push(index);
                let at = self.desc + 16 * u64::from(index);
                if ram.u16_at(at + 12) & flag::NEXT == 0 {
                    break;
                }
                index = ram.u16_at(at + 14);
            }
            self.last_used = self.last_used.wrapping_add(1);
        }
        out
    }

    /// Sets or clears `VRING_AVAIL_F_NO_INTERRUPT`, as `virtqueue_disable_cb` does.
    pub fn suppress_interrupts(&self, ram: &mut Ram, on: bool) {
        let flags = if on { AVAIL_F_NO_INTERRUPT } else { 0 };
        assert!(ram.write(self.avail, &flags.to_le_bytes()));
    }
}
