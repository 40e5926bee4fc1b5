//! A heap for components that want one (`cleave_rt::heap!(BYTES)`): a free-list allocator
//! over a static arena in the program's own zero-filled memory, set up on first use.
//! Components run one thread each, so a flag that spins is lock enough.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

/// A heap of `N` bytes.
pub struct Heap<const N: usize> {
    arena: UnsafeCell<[u8; N]>,
    heap: UnsafeCell<linked_list_allocator::Heap>,
    busy: AtomicBool,
    ready: UnsafeCell<bool>,
    /// The most bytes in use at once so far (what a program's `heap!` size must cover).
    peak: UnsafeCell<usize>,
}

// SAFETY: every access to the cells happens with `busy` held (see `with`), so no two
// threads touch them at once.
unsafe impl<const N: usize> Sync for Heap<N> {}

impl<const N: usize> Heap<N> {
    /// An empty heap (the arena is set up on first use).
    pub const fn new() -> Self {
        Self {
            arena: UnsafeCell::new([0; N]),
            heap: UnsafeCell::new(linked_list_allocator::Heap::empty()),
            busy: AtomicBool::new(false),
            ready: UnsafeCell::new(false),
            peak: UnsafeCell::new(0),
        }
    }

    /// The most bytes in use at once so far, and the heap's size.
    pub fn peak(&self) -> (usize, usize) {
        (self.with(|_, peak| *peak), N)
    }

    fn with<R>(&self, f: impl FnOnce(&mut linked_list_allocator::Heap, &mut usize) -> R) -> R {
        while self.busy.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        // SAFETY: `busy` is held, so this is the only reference to the cells; the arena
        // lives as long as `self` (a static) and is handed to the allocator once.
        let result = unsafe {
            let heap = &mut *self.heap.get();
            if !*self.ready.get() {
                heap.init(self.arena.get().cast::<u8>(), N);
                *self.ready.get() = true;
            }
            f(heap, &mut *self.peak.get())
        };
        self.busy.store(false, Ordering::Release);
        result
    }
}

impl<const N: usize> Default for Heap<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocation and deallocation go to `linked_list_allocator::Heap`, which returns
// blocks of at least the layout's size and alignment from the arena, never overlapping;
// an exhausted arena returns null as `GlobalAlloc` requires.
unsafe impl<const N: usize> GlobalAlloc for Heap<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h, peak| {
            let p = h.allocate_first_fit(layout).map_or(core::ptr::null_mut(), NonNull::as_ptr);
            *peak = (*peak).max(h.used());
            p
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` of this heap with this layout (the caller's
            // contract), so the allocator may take it back.
            self.with(|h, _| unsafe { h.deallocate(p, layout) })
        }
    }
}

/// Gives the program a heap of `$bytes` bytes (`alloc` works: `Vec`, `BTreeMap`, …).
#[macro_export]
macro_rules! heap {
    ($bytes:expr) => {
        #[global_allocator]
        static CLEAVE_HEAP: $crate::heap::Heap<{ $bytes }> = $crate::heap::Heap::new();

        /// The most bytes of the heap in use at once so far, and its size.
        #[allow(dead_code, reason = "not every program reports its heap")]
        fn heap_peak() -> (usize, usize) {
            CLEAVE_HEAP.peak()
        }
    };
}
