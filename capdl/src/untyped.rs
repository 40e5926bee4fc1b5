//! How untyped memory hands out addresses, for a loader that needs an object at one
//! physical address: an untyped object retypes its children in address order, so the gap
//! below the wanted address is first taken up by filler untyped objects, the largest
//! aligned ones that fit, and the next child lands where the gap ends.

use cleave_abi::object::MAX_UNTYPED_BITS;

/// The filler untyped objects that move an untyped object's next free address from
/// `from` up to `to` (nothing if `from` is not below `to`): each as (address, size bits).
pub fn fillers(from: u64, to: u64) -> Fillers {
    Fillers { at: from, to }
}

/// The iterator [`fillers`] returns.
#[derive(Clone, Debug)]
pub struct Fillers {
    at: u64,
    to: u64,
}

impl Iterator for Fillers {
    type Item = (u64, u32);

    fn next(&mut self) -> Option<(u64, u32)> {
        if self.at >= self.to {
            return None;
        }
        // The largest block aligned at `at` that ends at or below `to`; one byte always
        // fits, since `at < to`.
        let mut bits = self.at.trailing_zeros().min(MAX_UNTYPED_BITS);
        while self.at.checked_add(1 << bits).is_none_or(|end| end > self.to) {
            bits -= 1;
        }
        let filler = (self.at, bits);
        self.at += 1 << bits;
        Some(filler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn all(from: u64, to: u64) -> Vec<(u64, u32)> {
        fillers(from, to).collect()
    }

    #[test]
    fn fillers_are_the_largest_aligned_blocks_and_end_exactly_at_the_target() {
        assert_eq!(all(0xfe00_0000, 0xfe00_3000), [(0xfe00_0000, 13), (0xfe00_2000, 12)]);
        assert_eq!(all(0x1000, 0x8000), [(0x1000, 12), (0x2000, 13), (0x4000, 14)]);
        for (from, to) in [(0u64, 0xfebf_0000u64), (0xc000_0000, 0xfebf_0000), (0x1234_5000, 0x1234_6000)] {
            let blocks = all(from, to);
            let mut at = from;
            for &(address, bits) in &blocks {
                assert_eq!(address, at);
                assert_eq!(address % (1 << bits), 0, "{address:#x} is aligned to its size");
                assert!(bits <= MAX_UNTYPED_BITS);
                at += 1 << bits;
            }
            assert_eq!(at, to);
            // Each size at most twice: the run is logarithmic in the gap.
            assert!(blocks.len() <= 2 * 64, "{} blocks", blocks.len());
        }
    }

    #[test]
    fn no_gap_no_fillers() {
        assert!(all(0x5000, 0x5000).is_empty());
        assert!(all(0x6000, 0x5000).is_empty());
    }

    #[test]
    fn address_zero_and_the_top_of_memory_neither_overflow_nor_exceed_the_largest_untyped() {
        // Address 0 is aligned to everything: the blocks stop at the largest untyped size.
        let blocks = all(0, 1 << 49);
        assert_eq!(blocks, [(0, 47), (1 << 47, 47), (2 << 47, 47), (3 << 47, 47)]);
        // Just below the top of the address space: no addition wraps.
        let top = u64::MAX - (1 << 47) + 1;
        let blocks = all(top, u64::MAX);
        let mut at = top;
        for &(address, bits) in &blocks {
            assert_eq!(address, at);
            at += 1 << bits;
        }
        assert_eq!(at, u64::MAX);
    }
}
