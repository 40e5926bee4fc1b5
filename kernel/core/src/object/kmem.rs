//! Access to the memory kernel objects live in, by physical address.
//!
//! The kernel implements [`KernelMemory`] over its direct map; host tests implement it over
//! a byte vector ([`TestMemory`]). Everything in [`crate::object`] reaches object memory
//! only through this trait, so the same code runs in both.

use crate::addr::PhysAddr;
pub use bytemuck::Pod;

/// Reads and writes plain-old-data values at physical addresses.
///
/// Callers pass only addresses of objects the kernel created (taken from capabilities), so
/// an implementation may treat an unbacked or misaligned address as a broken kernel
/// invariant and panic.
pub trait KernelMemory {
    /// Reads a `T` at `at`.
    fn read<T: Pod>(&self, at: PhysAddr) -> T;
    /// Writes `value` at `at`.
    fn write<T: Pod>(&mut self, at: PhysAddr, value: &T);
    /// Sets `len` bytes from `at` to zero.
    fn zero(&mut self, at: PhysAddr, len: u64);
    /// Prepares a freshly zeroed page as the top-level page table of a new address space
    /// (the kernel copies in its own half of the address space).
    fn init_vspace_root(&mut self, pml4: PhysAddr);
}

/// Host-side [`KernelMemory`]: `size` bytes of zeroed memory starting at physical `base`.
#[cfg(any(test, feature = "fuzz"))]
pub struct TestMemory {
    base: u64,
    bytes: std::vec::Vec<u8>,
}

#[cfg(any(test, feature = "fuzz"))]
extern crate std;

#[cfg(any(test, feature = "fuzz"))]
impl TestMemory {
    /// Memory covering `[base, base + size)`.
    pub fn new(base: u64, size: usize) -> Self {
        Self { base, bytes: std::vec![0; size] }
    }

    /// All of the memory, for comparing two runs.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn range(&self, at: PhysAddr, len: usize) -> core::ops::Range<usize> {
        let start = at.0.checked_sub(self.base).expect("address below test memory") as usize;
        assert!(start + len <= self.bytes.len(), "address {at:?}+{len} beyond test memory");
        start..start + len
    }
}

#[cfg(any(test, feature = "fuzz"))]
impl KernelMemory for TestMemory {
    fn read<T: Pod>(&self, at: PhysAddr) -> T {
        assert!(at.is_aligned(core::mem::align_of::<T>() as u64), "misaligned read at {at:?}");
        bytemuck::pod_read_unaligned(&self.bytes[self.range(at, core::mem::size_of::<T>())])
    }
    fn write<T: Pod>(&mut self, at: PhysAddr, value: &T) {
        assert!(at.is_aligned(core::mem::align_of::<T>() as u64), "misaligned write at {at:?}");
        let range = self.range(at, core::mem::size_of::<T>());
        self.bytes[range].copy_from_slice(bytemuck::bytes_of(value));
    }
    fn zero(&mut self, at: PhysAddr, len: u64) {
        let range = self.range(at, len as usize);
        self.bytes[range].fill(0);
    }
    fn init_vspace_root(&mut self, pml4: PhysAddr) {
        // Mark the kernel half so tests can see it was initialised.
        self.write(PhysAddr(pml4.0 + 511 * 8), &0xdead_0000_0000_0003u64);
    }
}
