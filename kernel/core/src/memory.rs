//! The physical-memory description: which frames are free once the firmware's reserved
//! ranges, the kernel image, the boot information and the boot modules are taken out, and
//! a boot-time frame allocator over them.
//!
//! The allocator exists only to build the first user address space; from issue 3 on, the
//! remaining free ranges are what the root task receives as untyped memory.

use crate::addr::PhysAddr;
use crate::multiboot::{MemoryRegion, RegionKind};
use cleave_abi::layout::PAGE_SIZE;
use core::fmt;
use heapless::Vec;

/// Most disjoint free ranges the description holds (each reservation can split one range).
pub const MAX_FREE_RANGES: usize = 96;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl PhysRange {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start: PhysAddr(start), end: PhysAddr(end) }
    }
    /// Size in bytes (0 for an empty or inverted range).
    pub fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }
    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

/// Why the physical-memory description could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The free ranges do not fit in [`MAX_FREE_RANGES`].
    TooFragmented,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFragmented => {
                write!(f, "physical memory splits into more than {MAX_FREE_RANGES} free ranges")
            }
        }
    }
}

/// Free physical memory, as disjoint page-aligned ranges sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhysMemoryMap {
    free: Vec<PhysRange, MAX_FREE_RANGES>,
}

impl PhysMemoryMap {
    /// Builds the description from the firmware map.
    ///
    /// Free memory is what the map calls available, below `limit` (the end of what the
    /// kernel's direct map reaches), minus every region the map marks otherwise (overlaps
    /// in firmware maps happen; the more restrictive entry wins), minus `reserved`, each
    /// range then shrunk inward to whole pages.
    pub fn new(
        regions: &[MemoryRegion],
        reserved: &[PhysRange],
        limit: PhysAddr,
    ) -> Result<Self, MemoryError> {
        let mut map = Self::default();
        for r in regions.iter().filter(|r| r.kind == RegionKind::Available) {
            let start = r.start.0;
            let end = r.end().0.min(limit.0);
            if start < end {
                map.add(PhysRange::new(start, end))?;
            }
        }
        for r in regions.iter().filter(|r| r.kind != RegionKind::Available) {
            map.remove(PhysRange { start: r.start, end: r.end() })?;
        }
        for r in reserved {
            map.remove(*r)?;
        }
        map.page_align()?;
        Ok(map)
    }

    /// Adds a range, merging with overlapping or touching ranges.
    fn add(&mut self, range: PhysRange) -> Result<(), MemoryError> {
        let mut merged = range;
        let mut kept: Vec<PhysRange, MAX_FREE_RANGES> = Vec::new();
        for r in &self.free {
            if r.end < merged.start || r.start > merged.end {
                kept.push(*r).map_err(|_| MemoryError::TooFragmented)?;
            } else {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
            }
        }
        let at = kept.iter().position(|r| r.start > merged.start).unwrap_or(kept.len());
        kept.insert(at, merged).map_err(|_| MemoryError::TooFragmented)?;
        self.free = kept;
        Ok(())
    }

    /// Takes a range out, splitting free ranges it cuts through.
    fn remove(&mut self, hole: PhysRange) -> Result<(), MemoryError> {
        if hole.is_empty() {
            return Ok(());
        }
        let mut kept: Vec<PhysRange, MAX_FREE_RANGES> = Vec::new();
        for r in &self.free {
            let below = PhysRange { start: r.start, end: r.end.min(hole.start) };
            let above = PhysRange { start: r.start.max(hole.end), end: r.end };
            for part in [below, above] {
                if !part.is_empty() {
                    kept.push(part).map_err(|_| MemoryError::TooFragmented)?;
                }
            }
        }
        self.free = kept;
        Ok(())
    }

    fn page_align(&mut self) -> Result<(), MemoryError> {
        let mut kept: Vec<PhysRange, MAX_FREE_RANGES> = Vec::new();
        for r in &self.free {
            let Some(start) = r.start.checked_align_up(PAGE_SIZE) else { continue };
            let end = r.end.align_down(PAGE_SIZE);
            if start < end {
                kept.push(PhysRange { start, end }).map_err(|_| MemoryError::TooFragmented)?;
            }
        }
        self.free = kept;
        Ok(())
    }

    /// The free ranges, sorted by address.
    pub fn free_ranges(&self) -> &[PhysRange] {
        &self.free
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(PhysRange::len).sum()
    }
}

/// Hands out free 4 KiB frames, lowest address first, from a [`PhysMemoryMap`].
#[derive(Clone, Debug)]
pub struct BootFrameAllocator {
    map: PhysMemoryMap,
    /// Index of the range frames currently come from.
    range: usize,
    /// Next frame within that range.
    next: PhysAddr,
    allocated: u64,
}

impl BootFrameAllocator {
    /// An allocator over every free frame of `map`.
    pub fn new(map: PhysMemoryMap) -> Self {
        let next = map.free.first().map_or(PhysAddr(0), |r| r.start);
        Self { map, range: 0, next, allocated: 0 }
    }

    /// The next free frame, or `None` when memory is exhausted.
    pub fn allocate(&mut self) -> Option<PhysAddr> {
        while let Some(r) = self.map.free.get(self.range) {
            if self.next < r.end {
                let frame = self.next;
                self.next = PhysAddr(frame.0 + PAGE_SIZE);
                self.allocated += 1;
                return Some(frame);
            }
            self.range += 1;
            self.next = self.map.free.get(self.range).map_or(PhysAddr(0), |r| r.start);
        }
        None
    }

    /// `bytes` (a multiple of the page size) of contiguous memory aligned to `align` (a
    /// power of two, at least a page). Frames skipped for alignment are not handed out.
    pub fn allocate_contiguous(&mut self, bytes: u64, align: u64) -> Option<PhysAddr> {
        while let Some(r) = self.map.free.get(self.range) {
            if let Some(start) = self.next.max(r.start).checked_align_up(align)
                && let Some(end) = start.checked_add(bytes)
                && end <= r.end
            {
                self.next = end;
                self.allocated += bytes / PAGE_SIZE;
                return Some(start);
            }
            self.range += 1;
            self.next = self.map.free.get(self.range).map_or(PhysAddr(0), |r| r.start);
        }
        None
    }

    /// How many frames have been handed out.
    pub fn allocated_frames(&self) -> u64 {
        self.allocated
    }

    /// What is still free: the part of the map not handed out yet.
    pub fn remaining(&self) -> PhysMemoryMap {
        let mut rest = PhysMemoryMap::default();
        for (i, r) in self.map.free.iter().enumerate().skip(self.range) {
            let start = if i == self.range { self.next.max(r.start) } else { r.start };
            if start < r.end {
                // Cannot fail: `rest` holds at most as many ranges as `map`.
                let _ = rest.free.push(PhysRange { start, end: r.end });
            }
        }
        rest
    }
}

/// Device (MMIO) memory for device untyped capabilities: the `window` minus every range
/// the firmware map lists (RAM, ACPI, reserved: none of it is a device's to claim), in
/// whole pages.
pub fn device_memory(regions: &[MemoryRegion], window: PhysRange) -> Result<PhysMemoryMap, MemoryError> {
    let whole = [MemoryRegion { start: window.start, len: window.len(), kind: RegionKind::Available }];
    let mut taken: Vec<PhysRange, MAX_FREE_RANGES> = Vec::new();
    for r in regions {
        taken.push(PhysRange { start: r.start, end: r.end() }).map_err(|_| MemoryError::TooFragmented)?;
    }
    PhysMemoryMap::new(&whole, &taken, window.end)
}

/// Splits free memory into naturally aligned power-of-two blocks (each becomes one untyped
/// capability), largest first within each range, at most `limit` blocks. Returns the
/// blocks and how many bytes did not fit in the limit.
pub fn untyped_blocks<const N: usize>(map: &PhysMemoryMap, max_bits: u32) -> (Vec<(PhysAddr, u32), N>, u64) {
    let mut blocks = Vec::new();
    let mut left_out = 0;
    for r in map.free_ranges() {
        let mut at = r.start.0;
        while at < r.end.0 {
            let align_bits = at.trailing_zeros();
            let size_bits = (63 - (r.end.0 - at).leading_zeros()).min(align_bits).min(max_bits);
            if blocks.push((PhysAddr(at), size_bits)).is_err() {
                left_out += r.end.0 - at;
                break;
            }
            at += 1 << size_bits;
        }
    }
    (blocks, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, len: u64, kind: RegionKind) -> MemoryRegion {
        MemoryRegion { start: PhysAddr(start), len, kind }
    }

    const LIMIT: PhysAddr = PhysAddr(1 << 32);

    /// QEMU's map for `-m 128`.
    fn qemu_128m() -> [MemoryRegion; 4] {
        [
            region(0, 0x9fc00, RegionKind::Available),
            region(0x9fc00, 0x400, RegionKind::Reserved(2)),
            region(0xf0000, 0x10000, RegionKind::Reserved(2)),
            region(0x10_0000, 0x7ee_0000, RegionKind::Available),
        ]
    }

    #[test]
    fn reserves_low_memory_kernel_and_modules() {
        let reserved = [
            PhysRange::new(0, 0x10_0000),
            PhysRange::new(0x10_0000, 0x18_3456),
            PhysRange::new(0x19_0000, 0x19_0800),
        ];
        let map = PhysMemoryMap::new(&qemu_128m(), &reserved, LIMIT).unwrap();
        assert_eq!(
            map.free_ranges(),
            &[PhysRange::new(0x18_4000, 0x19_0000), PhysRange::new(0x19_1000, 0x7fe_0000)]
        );
        assert_eq!(map.free_bytes(), 0xc000 + 0x7fe_0000 - 0x19_1000);
    }

    #[test]
    fn reserved_firmware_entries_win_over_overlapping_available_ones() {
        let regions = [
            region(0x10_0000, 0x10_0000, RegionKind::Available),
            region(0x18_0000, 0x1000, RegionKind::AcpiNvs),
        ];
        let map = PhysMemoryMap::new(&regions, &[], LIMIT).unwrap();
        assert_eq!(
            map.free_ranges(),
            &[PhysRange::new(0x10_0000, 0x18_0000), PhysRange::new(0x18_1000, 0x20_0000)]
        );
    }

    #[test]
    fn merges_overlapping_available_entries_and_clips_at_limit() {
        let regions = [
            region(0x30_0000, 0x20_0000, RegionKind::Available),
            region(0x10_0000, 0x30_0000, RegionKind::Available),
            region(0xffff_0000, 0x2_0000_0000, RegionKind::Available),
        ];
        let map = PhysMemoryMap::new(&regions, &[], LIMIT).unwrap();
        assert_eq!(
            map.free_ranges(),
            &[PhysRange::new(0x10_0000, 0x50_0000), PhysRange::new(0xffff_0000, 1 << 32)]
        );
    }

    #[test]
    fn drops_slivers_smaller_than_a_page() {
        let regions = [region(0x1_0010, 0x1000, RegionKind::Available)];
        let map = PhysMemoryMap::new(&regions, &[], LIMIT).unwrap();
        assert!(map.free_ranges().is_empty());
    }

    #[test]
    fn saturates_regions_that_run_off_the_address_space() {
        let regions = [region(u64::MAX - 0xfff, u64::MAX, RegionKind::Available)];
        let map = PhysMemoryMap::new(&regions, &[], PhysAddr(u64::MAX)).unwrap();
        assert!(map.free_ranges().is_empty());
    }

    #[test]
    fn too_many_holes_is_an_error_not_a_truncation() {
        let regions = [region(0, 1 << 30, RegionKind::Available)];
        let holes: std::vec::Vec<PhysRange> =
            (0..200u64).map(|i| PhysRange::new(i * 0x10_0000, i * 0x10_0000 + 0x1000)).collect();
        assert_eq!(PhysMemoryMap::new(&regions, &holes, LIMIT), Err(MemoryError::TooFragmented));
    }

    extern crate std;

    #[test]
    fn contiguous_allocation_aligns_and_skips_short_ranges() {
        let regions = [
            region(0x10_0000, 0x3000, RegionKind::Available),
            region(0x20_0000, 0x10_0000, RegionKind::Available),
        ];
        let mut alloc = BootFrameAllocator::new(PhysMemoryMap::new(&regions, &[], LIMIT).unwrap());
        assert_eq!(alloc.allocate(), Some(PhysAddr(0x10_0000)));
        // 16 KiB do not fit in what is left of the first range.
        assert_eq!(alloc.allocate_contiguous(0x4000, 0x4000), Some(PhysAddr(0x20_0000)));
        assert_eq!(alloc.allocate_contiguous(0x4_0000, 0x4_0000), Some(PhysAddr(0x24_0000)));
        assert_eq!(alloc.allocate(), Some(PhysAddr(0x28_0000)));
        assert_eq!(alloc.allocate_contiguous(0x10_0000, 0x1000), None);
        assert_eq!(alloc.allocated_frames(), 1 + 4 + 64 + 1);
    }

    #[test]
    fn untyped_blocks_are_aligned_powers_of_two() {
        let regions = [region(0x10_3000, 0x7ed_d000, RegionKind::Available)];
        let map = PhysMemoryMap::new(&regions, &[], LIMIT).unwrap();
        let (blocks, left) = untyped_blocks::<64>(&map, 47);
        assert_eq!(left, 0);
        let total: u64 = blocks.iter().map(|&(_, b)| 1u64 << b).sum();
        assert_eq!(total, map.free_bytes());
        for &(base, bits) in &blocks {
            assert!(base.is_aligned(1 << bits), "{base:?} not aligned to 2^{bits}");
        }
        assert_eq!(blocks[0], (PhysAddr(0x10_3000), 12));
        assert_eq!(blocks.iter().map(|b| b.1).max(), Some(25));
        // A tiny limit leaves the rest out and says how much.
        let (few, left) = untyped_blocks::<2>(&map, 47);
        assert_eq!(few.len(), 2);
        assert_eq!(left, map.free_bytes() - 0x1000 - 0x4000);
        // The size cap applies.
        let (capped, _) = untyped_blocks::<512>(&map, 20);
        assert!(capped.iter().all(|b| b.1 <= 20));
    }

    #[test]
    fn device_memory_avoids_every_firmware_range() {
        let mut regions = std::vec::Vec::from(qemu_128m());
        regions.push(region(0xfffc_0000, 0x4_0000, RegionKind::Reserved(2)));
        regions.push(region(0xe000_0000, 0x1000_0000, RegionKind::Reserved(2)));
        let window = PhysRange::new(0xc000_0000, 0xfec0_0000);
        let map = device_memory(&regions, window).unwrap();
        assert_eq!(
            map.free_ranges(),
            &[PhysRange::new(0xc000_0000, 0xe000_0000), PhysRange::new(0xf000_0000, 0xfec0_0000)]
        );
    }

    #[test]
    fn allocator_walks_ranges_in_order_and_reports_the_rest() {
        let regions = [
            region(0x10_0000, 0x2000, RegionKind::Available),
            region(0x20_0000, 0x1000, RegionKind::Available),
        ];
        let map = PhysMemoryMap::new(&regions, &[], LIMIT).unwrap();
        let mut alloc = BootFrameAllocator::new(map);
        assert_eq!(alloc.allocate(), Some(PhysAddr(0x10_0000)));
        assert_eq!(
            alloc.remaining().free_ranges(),
            &[PhysRange::new(0x10_1000, 0x10_2000), PhysRange::new(0x20_0000, 0x20_1000)]
        );
        assert_eq!(alloc.allocate(), Some(PhysAddr(0x10_1000)));
        assert_eq!(alloc.allocate(), Some(PhysAddr(0x20_0000)));
        assert_eq!(alloc.allocate(), None);
        assert_eq!(alloc.allocate(), None);
        assert_eq!(alloc.allocated_frames(), 3);
        assert_eq!(alloc.remaining().free_bytes(), 0);
    }
}
