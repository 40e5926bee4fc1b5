//! System call entry: the IPC fast path when it applies; otherwise save the caller's
//! registers, let the object code perform the call, do what needs the machine, then run
//! whichever thread comes next.

use crate::arch::exit::{Outcome as RunOutcome, exit};
use crate::arch::serial;
use crate::arch::trap::TrapFrame;
use crate::arch::x86_64::cpu::Machine;
use crate::arch::x86_64::paging;
use crate::{kprintln, objects, thread};
use cleave_kernel_core::object::syscall::Outcome;

/// Entry from the `syscall` stub; on return `frame` holds the thread to resume.
pub fn dispatch(frame: &mut TrapFrame) {
    if let Some(root) = objects::with(|space| space.fastpath(frame)) {
        paging::activate_root(root);
        return;
    }
    thread::save(frame);
    match objects::with(|space| space.syscall(&mut Machine)) {
        Outcome::Done => {}
        Outcome::DebugPutChar(byte) => serial::write_byte(byte),
        Outcome::DebugExit(status) => {
            kprintln!("kernel: thread '{}' exited with status {status}", thread::current_name());
            exit(if status == 0 { RunOutcome::Success } else { RunOutcome::Failure })
        }
        Outcome::UnknownSyscall(number) => {
            thread::fault_current(thread::Fault::UnknownSyscall(number), frame)
        }
    }
    thread::schedule(frame);
}
