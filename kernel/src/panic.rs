//! The kernel's last words: a panic is a broken kernel invariant, never a user's doing.

use crate::arch::exit::{Outcome, exit};
use crate::kprintln;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => {
            kprintln!("KERNEL PANIC at {}:{}:{}: {}", at.file(), at.line(), at.column(), info.message())
        }
        None => kprintln!("KERNEL PANIC: {}", info.message()),
    }
    kprintln!("TEST FAIL: kernel panic");
    exit(Outcome::Failure)
}
