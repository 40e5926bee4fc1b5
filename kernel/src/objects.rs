//! The kernel's object space: every capability and object, in the direct map.

use crate::arch::x86_64::global::KernelCell;
use crate::arch::x86_64::physmem::DirectMemory;
use cleave_kernel_core::object::space::ObjectSpace;

static OBJECTS: KernelCell<Option<ObjectSpace<DirectMemory>>> = KernelCell::new(None);

/// Installs the object space at boot.
pub fn install(space: ObjectSpace<DirectMemory>) {
    OBJECTS.with(|o| *o = Some(space));
}

/// Runs `f` on the object space (installed at boot, before any thread runs).
pub fn with<R>(f: impl FnOnce(&mut ObjectSpace<DirectMemory>) -> R) -> R {
    OBJECTS.with(|o| f(o.as_mut().expect("the object space is installed at boot")))
}
