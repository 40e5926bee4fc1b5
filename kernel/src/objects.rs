//! The kernel's object space: every capability and object, in the direct map. It lives
//! in a static (it is tens of KiB: never built on the kernel stack and moved).

use crate::arch::x86_64::global::KernelCell;
use crate::arch::x86_64::physmem::DirectMemory;
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::space::ObjectSpace;

static OBJECTS: KernelCell<ObjectSpace<DirectMemory>> =
    KernelCell::new(ObjectSpace::unset(DirectMemory::new(PhysAddr(0))));

/// Sets the object space up at boot: new address spaces copy the kernel half of
/// `kernel_pml4`; the derivation tree hangs from the sentinel slot `root`.
pub fn init(kernel_pml4: PhysAddr, root: PhysAddr) {
    OBJECTS.with(|s| {
        s.mem = DirectMemory::new(kernel_pml4);
        s.init(root);
    });
}

/// Runs `f` on the object space.
pub fn with<R>(f: impl FnOnce(&mut ObjectSpace<DirectMemory>) -> R) -> R {
    OBJECTS.with(f)
}
