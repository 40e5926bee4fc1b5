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
}
