//! Kernel-global state without locks: sound because the kernel runs on one processor with
//! interrupts off, so kernel code never runs concurrently with itself.

use core::cell::{Cell, UnsafeCell};

/// A global the kernel mutates through short, non-reentrant borrows.
pub struct KernelCell<T> {
    borrowed: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: the kernel is single-processor and never re-enabled interrupts inside itself, so
// at most one kernel control flow exists at a time; `with` additionally refuses re-entry
// (a nested exception that touches the same global), so no two `&mut T` ever coexist.
unsafe impl<T: Send> Sync for KernelCell<T> {}

impl<T> KernelCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        Self { borrowed: Cell::new(false), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with exclusive access. `f` must return (not leave the kernel); re-entry is
    /// a broken kernel invariant and panics.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(!self.borrowed.replace(true), "kernel global re-entered");
        // SAFETY: the flag above guarantees this is the only live reference (see the Sync
        // impl for why no other processor or interrupt can observe it).
        let result = f(unsafe { &mut *self.value.get() });
        self.borrowed.set(false);
        result
    }

    /// As [`KernelCell::with`], but `None` instead of a panic if the cell is in use (for
    /// paths that must work during a panic, such as the console).
    pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.borrowed.replace(true) {
            return None;
        }
        // SAFETY: as in `with`: the flag was clear, so this is the only live reference.
        let result = f(unsafe { &mut *self.value.get() });
        self.borrowed.set(false);
        Some(result)
    }
}

/// Processor structures set up once at boot and then only read (descriptor tables and
/// what describes them), which the hardware needs at a `'static` address.
pub struct BootCell<T>(UnsafeCell<T>);

// SAFETY: written only by `init_mut` during single-processor boot before any reader
// exists; afterwards only shared references are handed out.
unsafe impl<T: Send> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Exclusive access for boot-time initialisation.
    ///
    /// # Safety
    /// Only during boot, before any `get` of this cell, and never twice at once.
    #[allow(clippy::mut_from_ref, reason = "exclusivity is the caller's documented obligation")]
    pub unsafe fn init_mut(&'static self) -> &'static mut T {
        // SAFETY: the caller guarantees that no other reference exists.
        unsafe { &mut *self.0.get() }
    }

    /// Shared access once initialisation is over.
    pub fn get(&'static self) -> &'static T {
        // SAFETY: after boot the cell is never written again, so shared references are
        // sound; during boot `init_mut`'s caller guarantees it is not called concurrently.
        unsafe { &*self.0.get() }
    }
}
