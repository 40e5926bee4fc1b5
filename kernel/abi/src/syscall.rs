//! System call numbers and the register convention.
//!
//! A user thread executes `syscall` with:
//!
//! | register | in                              | out                                  |
//! | -------- | ------------------------------- | ------------------------------------ |
//! | `rax`    | system call number              | 0, or an [`Error`] code              |
//! | `rdi`    | capability pointer (or argument)| badge of the received message        |
//! | `rsi`    | [`MessageInfo`] of the message  | [`MessageInfo`] of the received one  |
//! | `rdx`    | message register 0              | message register 0                   |
//! | `r8`     | message register 1              | message register 1                   |
//! | `r9`     | message register 2              | message register 2                   |
//! | `r10`    | message register 3              | message register 3                   |
//! | `rcx`, `r11` | destroyed by `syscall` (return RIP and RFLAGS) |                   |
//!
//! Message registers beyond [`REGISTER_MESSAGE_WORDS`] live in the thread's IPC buffer
//! ([`crate::ipc_buffer::IpcBuffer`]). Every other register is preserved. A number the
//! kernel does not implement is not an error return: it is a fault of the calling thread.
//!
//! [`Error`]: crate::Error
//! [`MessageInfo`]: crate::message::MessageInfo

/// Message registers passed in CPU registers (`rdx`, `r8`, `r9`, `r10`).
pub const REGISTER_MESSAGE_WORDS: usize = 4;

/// A system call number, passed in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Syscall {
    /// Send to an endpoint and wait for the reply (which arrives through a one-time reply
    /// capability given to the receiver); on any other capability, invoke the object.
    Call = 1,
    /// Reply to the last caller, then wait on an endpoint or notification.
    ReplyRecv = 2,
    /// Send to an endpoint (blocking) or signal a notification.
    Send = 3,
    /// Send to an endpoint only if a receiver is waiting (else drop), or signal.
    NbSend = 4,
    /// Wait for a message on an endpoint or a signal on a notification.
    Recv = 5,
    /// Poll an endpoint or notification without blocking.
    NbRecv = 6,
    /// Reply to the last caller.
    Reply = 7,
    /// Give up the rest of the time slice to threads of the same priority.
    Yield = 8,
    /// Run the guest of the Vcpu bound to this thread until an exit the VMM must handle;
    /// returns status 0 and, in the message registers, the exit (`vcpu::exit`).
    VmEnter = 9,
    /// Write the byte in `rdi` to the kernel's debug console (COM1). Debug builds only.
    DebugPutChar = 0x100,
    /// End the whole run: the kernel reports the status in `rdi` (0 = success) and stops the
    /// emulator with [`crate::debug::EXIT_SUCCESS`] or [`crate::debug::EXIT_FAILURE`].
    /// Meant for test programs; debug builds only. A thread not allowed to end the run
    /// ends itself instead: its fault handler hears `fault::EXITED`, or without one the
    /// thread stops (its program's `main` returned).
    DebugExit = 0x101,
    /// Record the thread's unfinished debug-console line (what it wrote with
    /// `DebugPutChar` since its last newline: printable ASCII, at most 160 bytes) as one
    /// event in the kernel's audit log. The kernel stamps it with the time (microseconds
    /// since boot, never less than the last event's) and the thread's name, and writes
    /// `audit: TIME NAME EVENT` to the console. An empty, overlong or unprintable line fails with
    /// `InvalidArgument` and is discarded.
    AuditEvent = 0x102,
    /// Read the kernel's audit log from byte offset `rdi` (a thread allowed to:
    /// `TCB_ALLOW_READ_AUDIT`; others get `IllegalOperation`). Returns status 0 and words:
    /// 0, the offset of the first byte returned (the oldest kept if `rdi` is older); 1, how
    /// many bytes; 2, the offset past the newest byte; 3, lines dropped to make room so far;
    /// then the bytes, eight to a word, little-endian, in the IPC buffer from word 4.
    AuditRead = 0x103,
}

impl Syscall {
    /// Every system call, for tables and tests.
    pub const ALL: [Self; 13] = [
        Self::Call,
        Self::ReplyRecv,
        Self::Send,
        Self::NbSend,
        Self::Recv,
        Self::NbRecv,
        Self::Reply,
        Self::Yield,
        Self::VmEnter,
        Self::DebugPutChar,
        Self::DebugExit,
        Self::AuditEvent,
        Self::AuditRead,
    ];

    /// Decodes a raw number from `rax`; `None` for numbers the kernel does not implement.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            1 => Self::Call,
            2 => Self::ReplyRecv,
            3 => Self::Send,
            4 => Self::NbSend,
            5 => Self::Recv,
            6 => Self::NbRecv,
            7 => Self::Reply,
            8 => Self::Yield,
            9 => Self::VmEnter,
            0x100 => Self::DebugPutChar,
            0x101 => Self::DebugExit,
            0x102 => Self::AuditEvent,
            0x103 => Self::AuditRead,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_raw(s as u64), Some(s));
        }
        assert_eq!(Syscall::from_raw(0), None);
        assert_eq!(Syscall::from_raw(u64::MAX), None);
    }
}

/// Fault messages: what the kernel sends to a thread's fault endpoint when the thread
/// faults, as if the thread had made a `Call` (the handler's reply resumes it).
///
/// The message label says which fault; the four words say the rest. The badge is that of
/// the fault endpoint capability in the faulting thread's TCB, so a handler serving many
/// threads can tell them apart.
pub mod fault {
    /// A system call number the kernel does not implement. Words: number, rip (after the
    /// `syscall` instruction), rsp, rflags. Reply word 0 becomes the thread's `rax`.
    pub const UNKNOWN_SYSCALL: u64 = 1;
    /// A processor exception other than a page fault (divide error, invalid opcode,
    /// general protection, …). Words: vector, error code, rip (of the faulting
    /// instruction), rsp. The thread resumes at its (possibly rewritten) rip.
    pub const USER_EXCEPTION: u64 = 2;
    /// A page fault. Words: faulting address, error code, rip, rsp.
    pub const VM_FAULT: u64 = 3;
    /// A thread that serves one request per start (`TCB_SET_ONE_REQUEST`) tried to
    /// receive a second one. Words: the capability address it received on, 0, rip (after
    /// the `syscall` instruction), rsp.
    pub const REQUEST_DONE: u64 = 4;
    /// A thread that may not end the run made `DebugExit` (its program's `main`
    /// returned): it is done. Words: the status, 0, rip (after the `syscall`
    /// instruction), rsp. A handler that replies resumes it after the call.
    pub const EXITED: u64 = 5;

    /// An x86 exception vector's mnemonic and name (`#UD`, "invalid opcode"), for reports
    /// of `USER_EXCEPTION` faults and of the kernel's own.
    pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
        match vector {
            0 => ("#DE", "divide error"),
            1 => ("#DB", "debug"),
            2 => ("NMI", "non-maskable interrupt"),
            3 => ("#BP", "breakpoint"),
            4 => ("#OF", "overflow"),
            5 => ("#BR", "bound range exceeded"),
            6 => ("#UD", "invalid opcode"),
            7 => ("#NM", "device not available"),
            8 => ("#DF", "double fault"),
            10 => ("#TS", "invalid TSS"),
            11 => ("#NP", "segment not present"),
            12 => ("#SS", "stack-segment fault"),
            13 => ("#GP", "general protection"),
            14 => ("#PF", "page fault"),
            16 => ("#MF", "x87 floating-point error"),
            17 => ("#AC", "alignment check"),
            18 => ("#MC", "machine check"),
            19 => ("#XM", "SIMD floating-point exception"),
            20 => ("#VE", "virtualization exception"),
            21 => ("#CP", "control protection"),
            _ => ("#??", "reserved vector"),
        }
    }
}
