//! The user thread the kernel runs. For now there is one: the root task loaded from the
//! first boot module. Faults it has no handler for are reported and stop it.

use crate::arch::exit::{Outcome, exit};
use crate::arch::global::KernelCell;
use crate::arch::trap::{self, TrapFrame};
use crate::kprintln;
use cleave_kernel_core::PhysAddr;
use heapless::String;

/// A reason a user thread cannot go on by itself.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// A processor exception raised by the thread's own instructions.
    Exception { vector: u64, mnemonic: &'static str, name: &'static str, error: u64 },
    /// A `syscall` with a number the kernel does not implement.
    UnknownSyscall(u64),
}

/// What the kernel remembers of a thread.
struct Thread {
    name: String<32>,
    faults: u32,
    /// The thread's TCB object.
    tcb: PhysAddr,
}

static CURRENT: KernelCell<Thread> =
    KernelCell::new(Thread { name: String::new(), faults: 0, tcb: PhysAddr(0) });

/// Records the current thread's TCB object.
pub fn set_current_tcb(tcb: PhysAddr) {
    CURRENT.with(|t| t.tcb = tcb);
}

/// The current thread's TCB object.
pub fn current_tcb() -> PhysAddr {
    CURRENT.with(|t| t.tcb)
}

/// Names the current thread (module name, truncated to 32 bytes).
pub fn set_current_name(name: &str) {
    CURRENT.with(|t| {
        t.name.clear();
        for c in name.chars() {
            if t.name.push(c).is_err() {
                break;
            }
        }
    });
}

/// The current thread's name, for reports.
pub fn current_name() -> String<32> {
    CURRENT.with(|t| t.name.clone())
}

/// Reports `fault` of the current thread, stops it, and runs whatever is left to run.
pub fn fault_current(fault: Fault, frame: &TrapFrame) -> ! {
    let name = CURRENT.with(|t| {
        t.faults += 1;
        t.name.clone()
    });
    match fault {
        Fault::Exception { vector, mnemonic, name: what, error } => {
            kprintln!(
                "user fault: thread '{name}': vector {vector} {mnemonic} ({what}), error code {error:#x}, \
                 rip {:#018x}, cr2 {:#018x}",
                frame.rip,
                trap::cr2()
            );
        }
        Fault::UnknownSyscall(number) => {
            kprintln!(
                "user fault: thread '{name}': unknown system call {number:#x} at rip {:#018x}",
                frame.rip
            );
        }
    }
    crate::kprint!("{frame}");
    kprintln!("kernel: thread '{name}' stopped (it has no fault handler)");
    nothing_to_run()
}

/// Ends the run when no thread can run: the kernel itself is healthy.
fn nothing_to_run() -> ! {
    let faults = CURRENT.with(|t| t.faults);
    kprintln!("kernel: no runnable threads ({faults} stopped by faults); shutting down");
    exit(Outcome::Idle)
}
