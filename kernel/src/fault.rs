//! What happens on a CPU exception: a user thread's fault is reported and the thread is
//! stopped (the kernel carries on); an exception in the kernel itself is a kernel bug,
//! reported with every register, and ends the run as a failure.

use crate::arch::exit::{Outcome, exit};
use crate::arch::trap::{self, TrapFrame};
use crate::{kprintln, thread};

/// Entry from the exception stubs.
pub fn exception(frame: &mut TrapFrame) {
    let (mnemonic, name) = trap::exception_name(frame.vector);
    if frame.from_user() {
        thread::save(frame);
        let fault = thread::Fault::Exception { vector: frame.vector, mnemonic, name, error: frame.error };
        thread::fault_current(fault, frame);
        thread::schedule(frame);
        return;
    }
    kprintln!();
    kprintln!(
        "KERNEL EXCEPTION: vector {} {} ({}), error code {:#x}, rip {:#018x}, cr2 {:#018x}",
        frame.vector,
        mnemonic,
        name,
        frame.error,
        frame.rip,
        trap::cr2()
    );
    crate::kprint!("{frame}");
    dump_stack(frame.rsp);
    kprintln!("TEST FAIL: exception in the kernel");
    exit(Outcome::Failure)
}

/// Prints the words at the top of the kernel stack, those that point into kernel text
/// marked, so a kernel bug's report carries the return addresses to find its callers
/// (`addr2line -e target/x86_64-unknown-none/release/cleave-kernel ADDRESS`). Only reads
/// inside the kernel stack: a corrupt `rsp` prints nothing.
fn dump_stack(rsp: u64) {
    const WORDS: u64 = 32;
    let top = crate::platform::gdt::kernel_stack_top();
    let bottom = crate::platform::gdt::kernel_stack_bottom();
    if rsp < bottom || rsp >= top || !rsp.is_multiple_of(8) {
        kprintln!("  stack: rsp is outside the kernel stack [{bottom:#x}, {top:#x})");
        return;
    }
    let (text_start, text_end) = crate::platform::gdt::kernel_text();
    let end = top.min(rsp + WORDS * 8);
    kprintln!("  stack from {rsp:#x} (* = kernel text):");
    for address in (rsp..end).step_by(8) {
        // SAFETY: `address` is 8-aligned and inside the kernel stack, which is mapped and
        // readable for the whole run; a plain read of a u64 there has no side effects.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        let mark = if (text_start..text_end).contains(&word) { "*" } else { " " };
        kprintln!("  [{address:#x}] {word:#018x}{mark}");
    }
}
