//! The direct map: all physical memory below [`PHYSMAP_SIZE`] appears at [`PHYSMAP_BASE`]
//! (built by boot.s). The only way the kernel touches memory by physical address.

use cleave_abi::layout::PAGE_SIZE;
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::multiboot::{PhysMemory, Unreachable};
use cleave_kernel_core::object::kmem::{KernelMemory, Pod};

/// Where physical address 0 appears in the kernel's address space.
pub const PHYSMAP_BASE: u64 = 0xffff_8000_0000_0000;
/// How much physical memory the direct map covers (the boot tables map 4 GiB).
pub const PHYSMAP_SIZE: u64 = 4 << 30;

/// The direct-map address of `[addr, addr + len)`, or `None` if the range is not covered.
fn mapped(addr: PhysAddr, len: u64) -> Option<*mut u8> {
    let end = addr.0.checked_add(len)?;
    (end <= PHYSMAP_SIZE).then(|| (PHYSMAP_BASE + addr.0) as *mut u8)
}

/// The direct-map address of a kernel object at `at` (as `DirectMemory` computes it).
pub fn virt(at: PhysAddr) -> u64 {
    PHYSMAP_BASE + at.0
}

/// Copies physical memory to `buf`.
pub fn read(addr: PhysAddr, buf: &mut [u8]) -> Result<(), Unreachable> {
    let src = mapped(addr, buf.len() as u64).ok_or(Unreachable)?;
    // SAFETY: the source range lies inside the direct map (checked by `mapped`), which is
    // always mapped readable; the copy is byte-wise so alignment does not matter, and the
    // destination is a distinct Rust buffer.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    Ok(())
}

/// The direct map as the Multiboot parser's view of physical memory.
pub struct DirectMap;

impl PhysMemory for DirectMap {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), Unreachable> {
        read(addr, buf)
    }
}

/// A frame the kernel owns exclusively: allocated by the boot allocator, not yet mapped
/// anywhere the kernel reads it from concurrently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedFrame(PhysAddr);

impl OwnedFrame {
    /// Takes ownership of the 4 KiB frame at `addr`, which must come from the frame
    /// allocator (so nothing else uses it) and lie in the direct map.
    pub fn new(addr: PhysAddr) -> Option<Self> {
        (addr.is_aligned(PAGE_SIZE) && mapped(addr, PAGE_SIZE).is_some()).then_some(Self(addr))
    }

    /// Its physical address.
    pub fn addr(self) -> PhysAddr {
        self.0
    }

    /// The frame's bytes.
    pub fn bytes(&mut self) -> &mut [u8; PAGE_SIZE as usize] {
        // `new` established that the frame is covered by the direct map.
        let ptr = (PHYSMAP_BASE + self.0.0) as *mut [u8; PAGE_SIZE as usize];
        // SAFETY: the frame is page-aligned, inside the direct map (checked in `new`) and
        // owned by this handle: the allocator hands each frame out once, and the `&mut
        // self` borrow makes this the only reference for its lifetime.
        unsafe { &mut *ptr }
    }
}

/// Reads page-table entry `index` of the table in frame `table`.
pub fn read_entry(table: PhysAddr, index: usize) -> u64 {
    assert!(index < 512 && table.is_aligned(PAGE_SIZE) && mapped(table, PAGE_SIZE).is_some());
    // SAFETY: a page-aligned frame inside the direct map (asserted) holds 512 aligned u64
    // entries; volatile because the MMU reads these too.
    unsafe { core::ptr::read_volatile(((PHYSMAP_BASE + table.0) as *const u64).add(index)) }
}

/// Writes page-table entry `index` of the table in frame `table`.
pub fn write_entry(table: PhysAddr, index: usize, value: u64) {
    assert!(index < 512 && table.is_aligned(PAGE_SIZE) && mapped(table, PAGE_SIZE).is_some());
    // SAFETY: as in `read_entry`; the caller (paging) owns the table it writes.
    unsafe { core::ptr::write_volatile(((PHYSMAP_BASE + table.0) as *mut u64).add(index), value) }
}

/// Boot module bytes, read-only for the rest of boot.
pub fn module_bytes(start: PhysAddr, len: u64) -> Option<&'static [u8]> {
    let ptr = mapped(start, len)?;
    // SAFETY: the range is inside the direct map (checked), and boot modules are reserved
    // in the physical-memory description, so no frame allocation ever aliases them; they
    // are never written.
    Some(unsafe { core::slice::from_raw_parts(ptr, len as usize) })
}

/// Kernel objects in the direct map, for the object code of `cleave_kernel_core`.
///
/// Addresses come from capabilities the kernel itself created, so an address outside the
/// direct map or misaligned for its type is a broken kernel invariant (a panic).
pub struct DirectMemory {
    /// The boot page tables' PML4, whose kernel half every new address space copies.
    kernel_pml4: PhysAddr,
}

impl DirectMemory {
    /// Object access for a kernel whose address-space template is the PML4 at
    /// `kernel_pml4` (the boot tables).
    pub const fn new(kernel_pml4: PhysAddr) -> Self {
        Self { kernel_pml4 }
    }

    /// The direct-map address of `at`. Object addresses come from capabilities the kernel
    /// made, all below [`PHYSMAP_SIZE`] (the boot code only hands out memory the direct
    /// map covers); debug builds check it. No mask: the plain sum lets field accesses
    /// compile to one instruction each (base + offset addressing), which the IPC fast path
    /// depends on.
    fn pointer<T>(at: PhysAddr) -> *mut T {
        debug_assert!(
            mapped(at, core::mem::size_of::<T>() as u64).is_some(),
            "object at {at:?} outside the direct map"
        );
        (PHYSMAP_BASE + at.0) as *mut T
    }
}

impl KernelMemory for DirectMemory {
    fn read<T: Pod>(&self, at: PhysAddr) -> T {
        // SAFETY: `pointer` lies in the direct map (masked), which maps all of physical
        // memory below 4 GiB present and writable; kernel objects lie wholly below it. Every
        // bit pattern is a valid `T` (Pod) and the access is unaligned-safe. The kernel is
        // single-threaded with interrupts off and users do not run while it does, so
        // nothing writes concurrently.
        unsafe { Self::pointer::<T>(at).read_unaligned() }
    }

    fn write<T: Pod>(&mut self, at: PhysAddr, value: &T) {
        // SAFETY: as in `read`; `&mut self` is the only path to kernel-object memory.
        unsafe { Self::pointer::<T>(at).write_unaligned(*value) }
    }

    fn zero(&mut self, at: PhysAddr, len: u64) {
        let ptr = mapped(at, len).unwrap_or_else(|| panic!("range at {at:?} outside the direct map"));
        // SAFETY: the range lies in the direct map (checked); it is memory retype just
        // carved from untyped RAM, which nothing else references.
        unsafe { core::ptr::write_bytes(ptr, 0, len as usize) }
    }

    fn init_vspace_root(&mut self, pml4: PhysAddr) {
        for index in 256..512 {
            write_entry(pml4, index, read_entry(self.kernel_pml4, index));
        }
    }
}

/// Copies `value` to byte `offset` of an owned frame.
pub fn write_to_frame<T: Copy>(frame: &mut OwnedFrame, offset: usize, value: &T) {
    let size = core::mem::size_of::<T>();
    assert!(offset + size <= PAGE_SIZE as usize, "value does not fit in the frame");
    let bytes = frame.bytes();
    // SAFETY: the destination range lies inside the frame (asserted) and the frame is
    // exclusively borrowed; an unaligned write copies `T`'s bytes without reading them.
    unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr().add(offset).cast::<T>(), *value) }
}

/// Reads a 32-bit device register at physical address `at` (in the direct map, whose top
/// gigabyte is mapped uncached).
pub fn mmio_read32(at: PhysAddr) -> u32 {
    let ptr = mapped(at, 4).unwrap_or_else(|| panic!("device register {at:?} outside the direct map"));
    assert!(at.is_aligned(4), "misaligned device register {at:?}");
    // SAFETY: the register lies in the direct map (checked) and is aligned; callers pass
    // only the addresses of devices the kernel drives (the local APIC), whose registers
    // read without side effects.
    unsafe { core::ptr::read_volatile(ptr.cast::<u32>()) }
}

/// Writes a 32-bit device register at physical address `at` (in the direct map, whose top
/// gigabyte is mapped uncached).
pub fn mmio_write32(at: PhysAddr, value: u32) {
    let ptr = mapped(at, 4).unwrap_or_else(|| panic!("device register {at:?} outside the direct map"));
    assert!(at.is_aligned(4), "misaligned device register {at:?}");
    // SAFETY: the register lies in the direct map (checked) and is aligned; callers pass
    // only the addresses of devices the kernel drives (the local APIC).
    unsafe { core::ptr::write_volatile(ptr.cast::<u32>(), value) }
}
