//! For the host tests of this crate and of the crates built on it (the VMM's disk bridge,
//! blkback, netback's switch), with the `testing` feature: heap regions with guard pages,
//! the offsets of the pipe words a test overwrites to play a hostile peer, and the
//! deterministic generator the randomised tests share.

pub use crate::layout::offset::{ENTRIES, PIPE_CONS, PIPE_PROD};
pub use crate::shared::test_region::Region;

/// A deterministic generator (SplitMix64) for the randomised tests.
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    #[allow(clippy::should_implement_trait, reason = "a generator, not an iterator: it never ends")]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}
