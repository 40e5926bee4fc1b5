//! The shared region: the one type through which this crate touches memory the peer can
//! change, and the crate's only `unsafe` code. A word the peer writes is read with one
//! atomic load (Acquire), a word this side publishes is written with one atomic store
//! (Release), both at aligned offsets; bulk bytes are copied between the region and private
//! memory and only the private copy is looked at. Every access is checked against the
//! region's length, so no value read from the region can move an access outside it.

use crate::error::RegionError;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The page size: regions start on a page and are whole pages long (they are mapped frames).
pub const PAGE: usize = 4096;

/// An access this side computed would have fallen outside the region; nothing was read or
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRegion;

/// A region of memory shared with one peer: `[base, base + len)`.
///
/// `Shared` is a pointer and a length: copies name the same region. Reads and writes go
/// through its methods only; no Rust reference into the region is ever made (the atomic
/// accessors make a reference to an `AtomicU32` or `AtomicU64`, which is an `UnsafeCell`).
#[derive(Clone, Copy, Debug)]
pub struct Shared {
    base: *mut u8,
    len: usize,
}

impl Shared {
    /// Names the region `[base, base + len)`: `base` must be page-aligned and `len` a
    /// non-zero multiple of the page size.
    ///
    /// # Safety
    /// The range must be mapped readable and writable in this address space for as long as
    /// the value (or any copy or part of it) is used, and no Rust reference may point into
    /// it meanwhile: only `Shared` values, here and in the peer, access it.
    pub unsafe fn new(base: *mut u8, len: usize) -> Result<Self, RegionError> {
        if base.is_null() || !base.addr().is_multiple_of(PAGE) {
            return Err(RegionError::Misaligned);
        }
        if len == 0
            || !len.is_multiple_of(PAGE)
            || isize::try_from(len).is_err()
            || base.addr().checked_add(len).is_none()
        {
            return Err(RegionError::Length);
        }
        Ok(Self { base, len })
    }

    /// Its length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: `new` refuses an empty region).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part `[offset, offset + len)`, which must itself be whole pages inside the
    /// region (for instance the two frame pipes of one netback region).
    pub fn part(&self, offset: usize, len: usize) -> Result<Self, RegionError> {
        if !offset.is_multiple_of(PAGE) {
            return Err(RegionError::Misaligned);
        }
        if len == 0 || !len.is_multiple_of(PAGE) || offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(RegionError::Length);
        }
        // `wrapping_add` computes the address without asserting anything about it; the
        // checks above keep it inside the region.
        Ok(Self { base: self.base.wrapping_add(offset), len })
    }

    /// The address of `[offset, offset + size)` if it lies inside the region and `offset`
    /// is a multiple of `align`.
    fn at(&self, offset: usize, size: usize, align: usize) -> Result<*mut u8, OutOfRegion> {
        if !offset.is_multiple_of(align) || offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(OutOfRegion);
        }
        Ok(self.base.wrapping_add(offset))
    }

    /// The 32-bit word at `offset` (a multiple of 4), loaded once with Acquire ordering.
    pub fn load_u32(&self, offset: usize) -> Result<u32, OutOfRegion> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: `p` is inside the region (checked by `at`) and 4-aligned (the base is
        // page-aligned, the offset a multiple of 4); `new`'s contract keeps the region
        // mapped read-write, and every access this side makes to it is atomic or a copy
        // through a raw pointer, never a plain reference.
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Acquire))
    }

    /// Stores `value` at `offset` (a multiple of 4) with Release ordering: what this side
    /// wrote before is visible to a peer that loads the new value.
    pub fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfRegion> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: as in `load_u32`.
        unsafe { AtomicU32::from_ptr(p.cast()) }.store(value, Ordering::Release);
        Ok(())
    }

    /// The 64-bit word at `offset` (a multiple of 8), loaded once with Acquire ordering.
    pub fn load_u64(&self, offset: usize) -> Result<u64, OutOfRegion> {
        let p = self.at(offset, 8, 8)?;
        // SAFETY: as in `load_u32`, with 8-byte alignment (the offset is a multiple of 8).
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Acquire))
    }

    /// Stores `value` at `offset` (a multiple of 8) with Release ordering.
    pub fn store_u64(&self, offset: usize, value: u64) -> Result<(), OutOfRegion> {
        let p = self.at(offset, 8, 8)?;
        // SAFETY: as in `load_u64`.
        unsafe { AtomicU64::from_ptr(p.cast()) }.store(value, Ordering::Release);
        Ok(())
    }

    /// Copies `out.len()` bytes from `offset` into private memory. The peer may change the
    /// bytes meanwhile: the copy can then be torn, never out of bounds.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), OutOfRegion> {
        let p = self.at(offset, out.len(), 1)?;
        // SAFETY: `[p, p + out.len())` is inside the region (checked by `at`), mapped
        // readable (`new`'s contract); `out` is private memory, so the two do not overlap.
        unsafe { ptr::copy_nonoverlapping(p.cast_const(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `bytes` from private memory to `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), OutOfRegion> {
        let p = self.at(offset, bytes.len(), 1)?;
        // SAFETY: as in `read`, with the region mapped writable.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }
}

/// Regions for the host tests: whole pages from the heap, with guard pages on both sides
/// whose bytes must be unchanged after a test (nothing wrote outside the region).
#[cfg(any(test, feature = "testing"))]
pub(crate) mod test_region {
    use super::{PAGE, Shared};
    use std::boxed::Box;
    use std::vec;

    /// What the guard pages hold.
    const GUARD: u8 = 0xa5;

    /// One page, page-aligned.
    #[derive(Clone, Copy)]
    #[repr(C, align(4096))]
    struct Page([u8; PAGE]);

    /// A zeroed region of `pages` pages between one guard page before and one after.
    pub struct Region {
        /// The allocation (guard, region, guard), owned through a raw pointer so that the
        /// test never holds a reference to memory a `Shared` accesses.
        pages: *mut [Page],
        count: usize,
    }

    impl Region {
        /// A region of `bytes` (rounded up to pages).
        pub fn new(bytes: usize) -> Self {
            let count = bytes.div_ceil(PAGE);
            let mut all = vec![Page([0; PAGE]); count + 2].into_boxed_slice();
            all[0] = Page([GUARD; PAGE]);
            all[count + 1] = Page([GUARD; PAGE]);
            Self { pages: Box::into_raw(all), count }
        }

        /// The region between the guards.
        pub fn shared(&self) -> Shared {
            let base = self.pages.cast::<Page>().wrapping_add(1).cast::<u8>();
            // SAFETY: the allocation lives as long as `self` (tests drop the region after
            // the rings over it), `count` pages from the second one are inside it, and
            // nothing else makes references into it.
            unsafe { Shared::new(base, self.count * PAGE) }.expect("a page-aligned region")
        }

        /// Whether both guard pages still hold their pattern.
        pub fn guards_intact(&self) -> bool {
            [0, self.count + 1].iter().all(|&page| {
                let p = self.pages.cast::<Page>().wrapping_add(page).cast::<u8>();
                (0..PAGE).all(|i| {
                    // SAFETY: the byte is inside the allocation (guard pages are its first
                    // and last page), read through the raw pointer `Box::into_raw` gave.
                    let byte = unsafe { p.add(i).read() };
                    byte == GUARD
                })
            })
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: `pages` came from `Box::into_raw` in `new` and is freed only here.
            drop(unsafe { Box::from_raw(self.pages) });
        }
    }

    #[test]
    fn new_checks_alignment_and_length() {
        use crate::error::RegionError;
        let region = Region::new(2 * PAGE);
        let base = region.pages.cast::<Page>().wrapping_add(1).cast::<u8>();
        for (offset, len, expected) in [
            (8, PAGE, Err(RegionError::Misaligned)),
            (0, 0, Err(RegionError::Length)),
            (0, 100, Err(RegionError::Length)),
            (0, PAGE, Ok(PAGE)),
        ] {
            // SAFETY: every range tried is inside the region's allocation, which outlives
            // the values; they are only inspected, never used to access memory.
            let shared = unsafe { Shared::new(base.wrapping_add(offset), len) };
            assert_eq!(shared.map(|s| s.len()), expected, "{offset} {len}");
        }
        // SAFETY: refused before anything is accessed.
        assert_eq!(unsafe { Shared::new(core::ptr::null_mut(), PAGE) }.err(), Some(RegionError::Misaligned));
        let shared = region.shared();
        assert_eq!(shared.load_u32(2), Err(super::OutOfRegion), "unaligned");
        assert_eq!(shared.load_u64(2 * PAGE - 4), Err(super::OutOfRegion), "unaligned and past the end");
        assert_eq!(shared.load_u64(2 * PAGE), Err(super::OutOfRegion), "past the end");
        assert_eq!(shared.write(2 * PAGE - 4, &[1; 5]), Err(super::OutOfRegion));
        assert_eq!(shared.read(usize::MAX, &mut [0; 2]), Err(super::OutOfRegion));
        assert_eq!(shared.write(2 * PAGE - 4, &[1; 4]), Ok(()));
        assert_eq!(shared.load_u32(2 * PAGE - 4), Ok(0x0101_0101));
        assert!(region.guards_intact());
    }
}
