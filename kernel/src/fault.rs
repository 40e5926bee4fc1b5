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
    kprintln!("TEST FAIL: exception in the kernel");
    exit(Outcome::Failure)
}
