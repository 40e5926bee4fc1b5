//! User-fault test: executes a privileged instruction in ring 3. The kernel must report a
//! general-protection fault for this thread and stay up; if `hlt` returns, protection is
//! broken and the test says so.
#![no_std]
#![no_main]

use cleave_rt::println;

cleave_rt::entry!(main);

fn main() -> i32 {
    println!("user-fault: executing hlt in ring 3");
    // SAFETY: not safe on purpose: `hlt` is privileged, so in ring 3 it raises #GP before
    // doing anything; the kernel stops this thread.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    println!("TEST FAIL: hlt executed in ring 3 without a fault");
    1
}
