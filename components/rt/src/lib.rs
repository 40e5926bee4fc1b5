//! The runtime every program on Cleave links: `_start`, the system call stubs (the only
//! user-side assembly), typed capabilities with their invocations, the root task's
//! BootInfo, a debug console with `print!`/`println!`, and a panic handler that reports and
//! stops the thread.
//!
//! A program declares its entry with [`entry!`]:
//! ```ignore
//! #![no_std]
//! #![no_main]
//! cleave_rt::entry!(main);
//! fn main() -> i32 { cleave_rt::println!("hello"); 0 }
//! ```
//! The value `main` returns is passed to [`syscall::debug_exit`].
#![no_std]

pub mod boot;
pub mod cap;
pub mod console;
pub mod heap;
pub mod shm;
pub mod syscall;
pub mod uart;

pub use cap::{Cap, SlotRef, kind};

/// The argument the thread was started with (`rdi` at `_start`: what the capDL spec's
/// `init: [N]` gives a component; 0 for the root task).
static START_ARGUMENT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The argument this program's first thread was started with (0 for the root task).
pub fn start_argument() -> u64 {
    START_ARGUMENT.load(core::sync::atomic::Ordering::Relaxed)
}

/// Which instance of its component this program is: 1 when the loader started it; its
/// supervisor starts instance N + 1 when it restarts or rolls back instance N (`rsi` at
/// `_start`, which the loader leaves 0).
static INSTANCE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// Which instance of its component this program is (1 for the first).
pub fn instance() -> u64 {
    INSTANCE.load(core::sync::atomic::Ordering::Relaxed)
}

static DEVICES_REFUSED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether the loader refused device memory this program's description maps, because the
/// machine it booted on has no device there (`rdx` at `_start`; the loader checks device
/// addresses against the PCI devices it finds). A driver whose device was refused must not
/// touch its device region: nothing is mapped there. A component the supervisor restarts
/// is not told again (it starts with `rdx` 0): until PCIBack hands out devices, give
/// devices that may be absent only to components that are not restarted.
pub fn devices_refused() -> bool {
    DEVICES_REFUSED.load(core::sync::atomic::Ordering::Relaxed)
}

#[doc(hidden)]
pub fn set_start_argument(argument: u64, instance: u64, refused: u64) {
    START_ARGUMENT.store(argument, core::sync::atomic::Ordering::Relaxed);
    INSTANCE.store(instance.max(1), core::sync::atomic::Ordering::Relaxed);
    DEVICES_REFUSED.store(refused != 0, core::sync::atomic::Ordering::Relaxed);
}

/// Declares the program's `main` (a `fn() -> i32`); `_start` calls it, then exits with its
/// return value.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn cleave_main(argument: u64, instance: u64, refused: u64) -> ! {
            $crate::set_start_argument(argument, instance, refused);
            let main: fn() -> i32 = $main;
            $crate::syscall::debug_exit(main())
        }
    };
}

// The kernel enters with rsp = the top of a 16-byte-aligned stack and every other register
// zero; `call` keeps the SysV alignment rule (rsp + 8 aligned at function entry).
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "    xor ebp, ebp",
    "    call cleave_main",
    "    ud2",
);

/// Reports the panic and stops the thread: it executes an invalid instruction, so the
/// kernel delivers a fault to the thread's fault handler (which decides) or, without one,
/// reports the fault and stops the thread. Other threads go on.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => println!("panic at {}:{}: {}", at.file(), at.line(), info.message()),
        None => println!("panic: {}", info.message()),
    }
    loop {
        // SAFETY: `ud2` raises #UD and changes nothing else; the kernel turns it into a
        // fault of this thread, which never resumes here unless a handler moves rip on.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
    }
}
