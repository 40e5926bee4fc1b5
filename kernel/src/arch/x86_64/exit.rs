//! Ending a run: stops QEMU through `isa-debug-exit` and Bochs through its magic breakpoint
//! (success) or its shutdown port (failure), then halts. See `cleave_abi::debug`.

use super::{cpu, serial};
use cleave_abi::debug::{BOCHS_SHUTDOWN_PORT, EXIT_FAILURE, EXIT_IDLE, EXIT_PORT, EXIT_SUCCESS};
use x86_64::instructions::port::Port;

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything that ran reported success.
    Success,
    /// A kernel failure or a failed test.
    Failure,
    /// The kernel is fine but has nothing left to run.
    Idle,
}

/// Ends the run with `outcome`. On real hardware, where neither device exists, it halts.
pub fn exit(outcome: Outcome) -> ! {
    serial::flush();
    let value = match outcome {
        Outcome::Success => EXIT_SUCCESS,
        Outcome::Failure => EXIT_FAILURE,
        Outcome::Idle => EXIT_IDLE,
    };
    // SAFETY: writing the debug-exit port stops QEMU when the device is present; elsewhere
    // port 0xf4 is unassigned on PCs and the write is ignored.
    unsafe { Port::<u32>::new(EXIT_PORT).write(value) }
    if outcome == Outcome::Success {
        // SAFETY: `xchg bx, bx` exchanges a register with itself: a no-op everywhere but in
        // Bochs with magic_break enabled, where it stops in the debugger (which then quits).
        unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) }
    } else {
        for byte in *b"Shutdown" {
            // SAFETY: Bochs ends with status 1 on this sequence; elsewhere the port is
            // unassigned and the writes are ignored.
            unsafe { Port::<u8>::new(BOCHS_SHUTDOWN_PORT).write(byte) }
        }
    }
    cpu::halt_forever()
}
