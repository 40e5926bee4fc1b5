//! A split virtqueue in the legacy layout, walked from the device's side: the descriptor
//! table at the page the driver gives (PFN × 4096), the available ring right after it, the
//! used ring at the next 4096-byte boundary (virtio 1.x, 2.7 and 4.1.5.1 "Legacy
//! Interfaces").
//!
//! Every value read from the rings is the guest's and may be hostile: [`Queue::pop`] checks
//! each one and answers a [`QueueError`] rather than trusting it; nothing here panics and no
//! arithmetic on guest values can overflow. Indirect descriptors are not offered (no
//! `VIRTIO_RING_F_INDIRECT_DESC`), so a descriptor with that flag is an error: a chain is
//! always a walk of the queue's own table, at most the queue's size long.

use crate::guest::GuestMemory;
use alloc::vec::Vec;
use core::fmt;

/// The size of every queue: Linux's legacy driver takes the size the device gives (it
/// cannot shrink it), and 256 descriptors make three pages of rings; a block request of
/// [`super::blk::SEG_MAX`] segments and its header and status fits many times over.
pub const QUEUE_SIZE: u16 = 256;

/// The legacy ring alignment, and the unit of the queue's PFN.
pub const ALIGN: u64 = 4096;

/// Descriptor flags.
pub mod flag {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The buffer is device-writable (otherwise device-readable).
    pub const WRITE: u16 = 2;
    /// The buffer holds a table of descriptors (not offered here).
    pub const INDIRECT: u16 = 4;
}

/// The available ring's flag asking the device not to interrupt when it uses buffers
/// (`VRING_AVAIL_F_NO_INTERRUPT`).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The size of one descriptor: address (8), length (4), flags (2), next (2).
const DESCRIPTOR_SIZE: u64 = 16;

/// Which of a queue's three areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// The descriptor table.
    Descriptors,
    /// The available ring (the driver's).
    Available,
    /// The used ring (the device's).
    Used,
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Descriptors => "descriptor table",
            Self::Available => "available ring",
            Self::Used => "used ring",
        })
    }
}

/// How the guest broke the queue protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue's {ring} at {gpa:#x} is not in guest RAM.
    RingNotInRam {
        /// Which area.
        ring: Ring,
        /// Where the device reached for it.
        gpa: u64,
    },
    /// The available index {avail} is more than the queue's size ahead of the last one the
    /// device saw ({seen}).
    AvailTooFarAhead {
        /// The driver's index.
        avail: u16,
        /// The device's.
        seen: u16,
    },
    /// The available ring offers head {0}, past the queue's size.
    HeadOutOfRange(u16),
    /// The available ring offers head {0} again while the device still holds it.
    HeadInUse(u16),
    /// A descriptor's next link, {0}, is past the queue's size.
    NextOutOfRange(u16),
    /// A chain from head {0} is longer than the queue's size (its links loop).
    ChainTooLong(u16),
    /// Descriptor {0} is indirect, a feature this device does not offer.
    Indirect(u16),
    /// Descriptor {0} has length 0.
    ZeroLength(u16),
    /// Descriptor {index}'s buffer ({gpa:#x}, {len} bytes) ends past the address space.
    AddressOverflow {
        /// The descriptor.
        index: u16,
        /// Its address.
        gpa: u64,
        /// Its length.
        len: u32,
    },
    /// Descriptor {index}'s buffer ({gpa:#x}, {len} bytes) is not all in guest RAM.
    BufferOutsideRam {
        /// The descriptor.
        index: u16,
        /// Its address.
        gpa: u64,
        /// Its length.
        len: u32,
    },
    /// Descriptor {0} is device-readable after a device-writable one in its chain.
    ReadableAfterWritable(u16),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RingNotInRam { ring, gpa } => {
                write!(f, "the queue's {ring} at {gpa:#x} is not in guest RAM")
            }
            Self::AvailTooFarAhead { avail, seen } => write!(
                f,
                "the available index {avail} is more than the queue's size ahead of the last one the device saw ({seen})"
            ),
            Self::HeadOutOfRange(head) => {
                write!(f, "the available ring offers head {head}, past the queue's size")
            }
            Self::HeadInUse(head) => {
                write!(f, "the available ring offers head {head} again while the device still holds it")
            }
            Self::NextOutOfRange(next) => {
                write!(f, "a descriptor's next link, {next}, is past the queue's size")
            }
            Self::ChainTooLong(head) => {
                write!(f, "a chain from head {head} is longer than the queue's size (its links loop)")
            }
            Self::Indirect(index) => {
                write!(f, "descriptor {index} is indirect, a feature this device does not offer")
            }
            Self::ZeroLength(index) => write!(f, "descriptor {index} has length 0"),
            Self::AddressOverflow { index, gpa, len } => {
                write!(f, "descriptor {index}'s buffer ({gpa:#x}, {len} bytes) ends past the address space")
            }
            Self::BufferOutsideRam { index, gpa, len } => {
                write!(f, "descriptor {index}'s buffer ({gpa:#x}, {len} bytes) is not all in guest RAM")
            }
            Self::ReadableAfterWritable(index) => {
                write!(f, "descriptor {index} is device-readable after a device-writable one in its chain")
            }
        }
    }
}

/// One buffer of a chain, checked to lie in guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes (never 0).
    pub len: u32,
    /// Device-writable (the device fills it) rather than device-readable.
    pub writable: bool,
}

/// A descriptor chain the driver made available: its head (what the used ring names) and
/// its buffers, the device-readable ones first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index.
    pub head: u16,
    /// The buffers in chain order.
    pub buffers: Vec<Buffer>,
}

impl Chain {
    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.buffers.iter().filter(|b| !b.writable).map(|b| u64::from(b.len)).sum()
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.buffers.iter().filter(|b| b.writable).map(|b| u64::from(b.len)).sum()
    }

    /// The pieces (guest-physical address, length) of the bytes `start..start + len` of
    /// the device-readable (`writable` false) or device-writable bytes taken as one
    /// stream; the range must lie inside it (else the pieces stop at its end).
    pub fn pieces(&self, writable: bool, start: u64, len: u64) -> Vec<(u64, u32)> {
        let mut pieces = Vec::new();
        let end = start.saturating_add(len);
        let mut offset = 0u64;
        for buffer in self.buffers.iter().filter(|b| b.writable == writable) {
            let (from, to) = (offset, offset + u64::from(buffer.len));
            offset = to;
            let (lo, hi) = (from.max(start), to.min(end));
            if lo < hi {
                // Inside one buffer: fits its u32 length, and the address was checked not
                // to overflow.
                pieces.push((buffer.gpa.saturating_add(lo - from), (hi - lo) as u32));
            }
        }
        pieces
    }

    /// Copies the device-readable bytes from `start` into `out`; false if they do not
    /// reach that far or memory did not answer.
    pub fn read(&self, mem: &impl GuestMemory, start: u64, out: &mut [u8]) -> bool {
        let mut done = 0usize;
        for (gpa, len) in self.pieces(false, start, out.len() as u64) {
            let len = len as usize;
            let Some(part) = out.get_mut(done..done + len) else { return false };
            if !mem.read(gpa, part) {
                return false;
            }
            done += len;
        }
        done == out.len()
    }

    /// Copies `data` into the device-writable bytes from `start`; false if they do not
    /// reach that far or memory did not take it.
    pub fn write(&self, mem: &mut impl GuestMemory, start: u64, data: &[u8]) -> bool {
        let mut done = 0usize;
        for (gpa, len) in self.pieces(true, start, data.len() as u64) {
            let len = len as usize;
            let Some(part) = data.get(done..done + len) else { return false };
            if !mem.write(gpa, part) {
                return false;
            }
            done += len;
        }
        done == data.len()
    }
}

/// One queue's state on the device's side.
#[derive(Clone, Debug)]
pub struct Queue {
    /// Entries (a power of two, at most 256).
    size: u16,
    /// Where the rings are, in 4096-byte pages; 0: not set up.
    pfn: u32,
    /// The next available-ring entry the device reads.
    next_avail: u16,
    /// The next used-ring entry the device writes.
    next_used: u16,
    /// Heads the device took and has not given back (bit n: head n).
    in_use: [u64; 4],
}

impl Queue {
    /// A queue of `size` entries (a power of two from 1 to 256; others are taken as the
    /// power of two below, 256 at most), not set up.
    pub fn new(size: u16) -> Self {
        let size = size.clamp(1, QUEUE_SIZE);
        let size = 1 << (15 - size.leading_zeros());
        Self { size, pfn: 0, next_avail: 0, next_used: 0, in_use: [0; 4] }
    }

    /// Its number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The page its rings start at (0: not set up).
    pub fn pfn(&self) -> u32 {
        self.pfn
    }

    /// Sets up the queue at page `pfn` (0 takes it down), with fresh indices.
    pub fn set_pfn(&mut self, pfn: u32) {
        *self = Self { pfn, ..Self::new(self.size) };
    }

    /// Forgets the queue (a device reset).
    pub fn reset(&mut self) {
        self.set_pfn(0);
    }

    /// Whether the driver has set it up.
    pub fn is_ready(&self) -> bool {
        self.pfn != 0
    }

    /// How many heads the device holds.
    pub fn in_use(&self) -> u32 {
        self.in_use.iter().map(|w| w.count_ones()).sum()
    }

    /// The descriptor table's address (at most 2^44: no overflow).
    fn descriptors(&self) -> u64 {
        u64::from(self.pfn) * ALIGN
    }

    /// The available ring's address: flags (2), index (2), ring (2 per entry), used_event
    /// (2).
    fn available(&self) -> u64 {
        self.descriptors() + DESCRIPTOR_SIZE * u64::from(self.size)
    }

    /// The used ring's address: flags (2), index (2), ring (8 per entry: id, length),
    /// avail_event (2).
    fn used(&self) -> u64 {
        let end_of_available = self.available() + 6 + 2 * u64::from(self.size);
        end_of_available.next_multiple_of(ALIGN)
    }

    fn read_u16(mem: &impl GuestMemory, gpa: u64, ring: Ring) -> Result<u16, QueueError> {
        let mut bytes = [0u8; 2];
        if mem.read(gpa, &mut bytes) {
            Ok(u16::from_le_bytes(bytes))
        } else {
            Err(QueueError::RingNotInRam { ring, gpa })
        }
    }

    fn held(&self, head: u16) -> bool {
        self.in_use[usize::from(head / 64) % 4] & (1 << (head % 64)) != 0
    }

    fn set_held(&mut self, head: u16, held: bool) {
        let word = &mut self.in_use[usize::from(head / 64) % 4];
        if held {
            *word |= 1 << (head % 64);
        } else {
            *word &= !(1 << (head % 64));
        }
    }

    /// Whether the driver has made a chain available that the device has not taken, without
    /// taking it. An index further ahead than the queue is an error, as for [`Queue::pop`].
    pub fn has_available(&self, mem: &impl GuestMemory) -> Result<bool, QueueError> {
        if !self.is_ready() {
            return Ok(false);
        }
        let avail = Self::read_u16(mem, self.available() + 2, Ring::Available)?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailTooFarAhead { avail, seen: self.next_avail });
        }
        Ok(pending > 0)
    }

    /// The next chain the driver made available, if any, with every buffer checked; the
    /// device then holds its head until [`Queue::push_used`]. A queue not set up has none.
    /// On an error nothing is taken (the device is broken until reset anyway).
    pub fn pop(&mut self, mem: &impl GuestMemory) -> Result<Option<Chain>, QueueError> {
        if !self.is_ready() {
            return Ok(None);
        }
        let avail = Self::read_u16(mem, self.available() + 2, Ring::Available)?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailTooFarAhead { avail, seen: self.next_avail });
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = Self::read_u16(mem, self.available() + 4 + 2 * slot, Ring::Available)?;
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange(head));
        }
        if self.held(head) {
            return Err(QueueError::HeadInUse(head));
        }
        let buffers = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.set_held(head, true);
        Ok(Some(Chain { head, buffers }))
    }

    /// The buffers of the chain from `head` (in range).
    fn walk(&self, mem: &impl GuestMemory, head: u16) -> Result<Vec<Buffer>, QueueError> {
        let mut buffers = Vec::new();
        let mut index = head;
        let mut writable_seen = false;
        loop {
            if buffers.len() >= usize::from(self.size) {
                return Err(QueueError::ChainTooLong(head));
            }
            let at = self.descriptors() + DESCRIPTOR_SIZE * u64::from(index);
            let mut d = [0u8; DESCRIPTOR_SIZE as usize];
            if !mem.read(at, &mut d) {
                return Err(QueueError::RingNotInRam { ring: Ring::Descriptors, gpa: at });
            }
            let gpa = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let len = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & flag::INDIRECT != 0 {
                return Err(QueueError::Indirect(index));
            }
            if len == 0 {
                return Err(QueueError::ZeroLength(index));
            }
            if gpa.checked_add(u64::from(len)).is_none() {
                return Err(QueueError::AddressOverflow { index, gpa, len });
            }
            if !mem.contains(gpa, u64::from(len)) {
                return Err(QueueError::BufferOutsideRam { index, gpa, len });
            }
            let writable = flags & flag::WRITE != 0;
            if writable_seen && !writable {
                return Err(QueueError::ReadableAfterWritable(index));
            }
            writable_seen |= writable;
            buffers.push(Buffer { gpa, len, writable });
            if flags & flag::NEXT == 0 {
                return Ok(buffers);
            }
            if next >= self.size {
                return Err(QueueError::NextOutOfRange(next));
            }
            index = next;
        }
    }

    /// Gives the chain from `head` back to the driver, `written` bytes of it filled. A
    /// head the device does not hold is refused (a stale completion) and the used ring is
    /// left as it was; false then.
    pub fn push_used(
        &mut self,
        mem: &mut impl GuestMemory,
        head: u16,
        written: u32,
    ) -> Result<bool, QueueError> {
        if head >= self.size || !self.held(head) || !self.is_ready() {
            return Ok(false);
        }
        let used = self.used();
        let entry = used + 4 + 8 * u64::from(self.next_used % self.size);
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        if !mem.write(entry, &element) {
            return Err(QueueError::RingNotInRam { ring: Ring::Used, gpa: entry });
        }
        self.next_used = self.next_used.wrapping_add(1);
        if !mem.write(used + 2, &self.next_used.to_le_bytes()) {
            return Err(QueueError::RingNotInRam { ring: Ring::Used, gpa: used + 2 });
        }
        self.set_held(head, false);
        Ok(true)
    }

    /// Whether the driver wants an interrupt when buffers are used: its available ring's
    /// flags do not say `VRING_AVAIL_F_NO_INTERRUPT`.
    pub fn interrupt_wanted(&self, mem: &impl GuestMemory) -> Result<bool, QueueError> {
        let flags = Self::read_u16(mem, self.available(), Ring::Available)?;
        Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{Driver, Ram};
    use std::vec;

    #[test]
    fn the_legacy_layout_puts_the_used_ring_on_the_next_page() {
        let mut q = Queue::new(256);
        q.set_pfn(0x10);
        assert_eq!((q.descriptors(), q.available(), q.used()), (0x10000, 0x11000, 0x12000));
        let mut q = Queue::new(16);
        q.set_pfn(1);
        assert_eq!((q.descriptors(), q.available(), q.used()), (0x1000, 0x1100, 0x2000));
        assert_eq!(Queue::new(200).size(), 128, "a size not a power of two is rounded down");
        assert_eq!(Queue::new(0).size(), 1);
        assert_eq!(Queue::new(1000).size(), 256);
    }

    #[test]
    fn chains_follow_their_links_and_come_back_in_the_used_ring() {
        let mut ram = Ram::new(1 << 20);
        let mut driver = Driver::new(0x10, 256);
        let mut q = Queue::new(256);
        q.set_pfn(0x10);
        assert_eq!(q.pop(&ram), Ok(None));
        let a = driver.add(&mut ram, &[(0x40000, 16, false), (0x50000, 512, true), (0x60000, 1, true)]);
        let b = driver.add(&mut ram, &[(0x41000, 100, false)]);
        let chain = q.pop(&ram).unwrap().unwrap();
        assert_eq!(chain.head, a);
        assert_eq!(
            chain.buffers,
            vec![
                Buffer { gpa: 0x40000, len: 16, writable: false },
                Buffer { gpa: 0x50000, len: 512, writable: true },
                Buffer { gpa: 0x60000, len: 1, writable: true },
            ]
        );
        assert_eq!((chain.readable_len(), chain.writable_len()), (16, 513));
        assert_eq!(chain.pieces(true, 500, 13), vec![(0x501f4, 12), (0x60000, 1)]);
        assert_eq!(q.pop(&ram).unwrap().unwrap().head, b);
        assert_eq!(q.pop(&ram), Ok(None));
        assert_eq!(q.in_use(), 2);
        // Out of order, and a head given back twice is refused the second time.
        assert_eq!(q.push_used(&mut ram, b, 0), Ok(true));
        assert_eq!(q.push_used(&mut ram, a, 513), Ok(true));
        assert_eq!(q.push_used(&mut ram, a, 513), Ok(false));
        assert_eq!(driver.used(&ram), vec![(b, 0), (a, 513)]);
        assert_eq!(q.in_use(), 0);
    }

    #[test]
    fn indices_wrap_around_the_16_bit_counters() {
        let mut ram = Ram::new(1 << 20);
        let mut driver = Driver::new(0x10, 4);
        let mut q = Queue::new(4);
        q.set_pfn(0x10);
        for round in 0..70_000u32 {
            let head = driver.add(&mut ram, &[(0x40000, 8 + round % 8, false)]);
            let chain = q.pop(&ram).unwrap().unwrap();
            assert_eq!((chain.head, chain.buffers[0].len), (head, 8 + round % 8));
            assert_eq!(q.push_used(&mut ram, head, 0), Ok(true));
            assert_eq!(driver.used(&ram), vec![(head, 0)]);
        }
    }

    #[test]
    fn interrupt_suppression_is_the_drivers_flag() {
        let mut ram = Ram::new(1 << 20);
        let driver = Driver::new(0x10, 8);
        let mut q = Queue::new(8);
        q.set_pfn(0x10);
        assert_eq!(q.interrupt_wanted(&ram), Ok(true));
        driver.suppress_interrupts(&mut ram, true);
        assert_eq!(q.interrupt_wanted(&ram), Ok(false));
        driver.suppress_interrupts(&mut ram, false);
        assert_eq!(q.interrupt_wanted(&ram), Ok(true));
    }
}
