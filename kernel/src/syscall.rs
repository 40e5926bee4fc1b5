//! System call entry: the IPC fast path when it applies; otherwise let the object code
//! perform the call, do what needs the machine, then run whichever thread comes next. The
//! caller's registers are already in its TCB (the entry stub saves them there).

use crate::arch::exit::{Outcome as RunOutcome, exit};
use crate::arch::serial;
use crate::arch::trap::{TrapFrame, resume_frame};
use crate::arch::x86_64::cpu::Machine;
use crate::arch::x86_64::paging;
use crate::{kprintln, objects, thread};
use cleave_kernel_core::object::syscall::Outcome;

/// Entry from the `syscall` stub; returns the saved registers of the thread to resume.
pub fn dispatch() -> *const TrapFrame {
    if let Some((next, root)) = objects::with(|space| space.fastpath()) {
        paging::activate_root(root);
        return resume_frame(next);
    }
    slow_path()
}

/// Everything the fast path leaves: the general system call code.
#[cold]
#[inline(never)]
fn slow_path() -> *const TrapFrame {
    match objects::with(|space| space.syscall(&mut Machine)) {
        Outcome::Done => {}
        Outcome::DebugPutChar(byte) => serial::write_byte(byte),
        Outcome::DebugExit(status) => {
            kprintln!("kernel: thread '{}' exited with status {status}", thread::current_name());
            exit(if status == 0 { RunOutcome::Success } else { RunOutcome::Failure })
        }
        Outcome::UnknownSyscall(number) => {
            if let Some(t) = objects::with(|s| s.current()) {
                let frame = objects::with(|s| t.regs(&s.mem));
                thread::fault_current(thread::Fault::UnknownSyscall(number), &frame);
            }
        }
    }
    resume_frame(thread::choose_next())
}
