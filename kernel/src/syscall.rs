//! System call dispatch. Register convention: `cleave_abi::syscall`.

use crate::arch::exit::{Outcome, exit};
use crate::arch::serial;
use crate::arch::trap::TrapFrame;
use crate::{kprintln, thread};
use cleave_abi::Syscall;

/// Entry from the `syscall` stub: performs the call and leaves results in `frame`.
pub fn dispatch(frame: &mut TrapFrame) {
    match Syscall::from_raw(frame.rax) {
        Some(Syscall::DebugPutChar) => {
            serial::write_byte(frame.rdi as u8);
            frame.rax = 0;
        }
        Some(Syscall::DebugExit) => {
            let status = frame.rdi as i64;
            kprintln!("kernel: thread '{}' exited with status {status}", thread::current_name());
            exit(if status == 0 { Outcome::Success } else { Outcome::Failure })
        }
        // The IPC calls arrive with the capability kernel; until then they fault like
        // numbers the kernel does not know.
        Some(_) | None => thread::fault_current(thread::Fault::UnknownSyscall(frame.rax), frame),
    }
}
