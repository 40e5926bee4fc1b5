//! Thread control blocks: the saved registers, the thread's state, and where it lives in
//! the kernel's queues. A TCB is a 2 KiB object; its first four 64-byte words are
//! capability slots (CSpace root, VSpace root, IPC buffer frame, fault endpoint).

use super::kmem::KernelMemory;
use super::slot::Cte;
use crate::addr::PhysAddr;
use bytemuck::{Pod, Zeroable};
use cleave_abi::layout::USER_TOP;
use cleave_abi::object::{SLOT_SIZE_BITS, TCB_SIZE_BITS};
use core::fmt;
use core::mem::offset_of;

/// Ring-3 code selector (the GDT layout that `syscall`/`sysret` impose).
pub const USER_CODE_SELECTOR: u64 = 0x23;
/// Ring-3 data and stack selector.
pub const USER_DATA_SELECTOR: u64 = 0x1b;
/// RFLAGS of a thread that has not set its own: interrupts on, reserved bit 1.
pub const INITIAL_RFLAGS: u64 = 0x202;
/// The RFLAGS bits a thread may set: carry, parity, adjust, zero, sign, direction,
/// overflow. Everything else (IOPL, trap, interrupt, …) is the kernel's.
const USER_RFLAGS: u64 = 0xcd5;

/// Slot indices within a TCB.
pub mod slot {
    /// The CSpace root (a CNode capability).
    pub const CSPACE: u64 = 0;
    /// The VSpace root (a VSpace capability).
    pub const VSPACE: u64 = 1;
    /// The IPC buffer frame.
    pub const IPC_BUFFER: u64 = 2;
    /// The fault endpoint.
    pub const FAULT_ENDPOINT: u64 = 3;
}

/// A thread's user registers, in the order the kernel entry stubs save them (lowest
/// address first), plus the vector and error code of the entry.
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
#[allow(missing_docs, reason = "register names are their own documentation")]
pub struct Registers {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, or the syscall marker.
    pub vector: u64,
    /// The CPU's error code, or 0.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<Registers>() == 22 * 8);

/// Number of words `ReadRegisters` returns and `WriteRegisters` takes.
pub const USER_REGISTER_WORDS: usize = 18;

impl Registers {
    /// Registers that enter ring 3 at `rip` with stack `rsp`, everything else zero.
    pub fn user(rip: u64, rsp: u64) -> Self {
        Self {
            rip,
            rsp,
            cs: USER_CODE_SELECTOR,
            ss: USER_DATA_SELECTOR,
            rflags: INITIAL_RFLAGS,
            ..Self::default()
        }
    }

    /// Whether they were saved from ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// The registers a user may read or write, in `ReadRegisters` order: rip, rsp,
    /// rflags, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15.
    pub fn user_words(&self) -> [u64; USER_REGISTER_WORDS] {
        [
            self.rip,
            self.rsp,
            self.rflags,
            self.rax,
            self.rbx,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.rbp,
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
        ]
    }

    /// Sets the user-writable registers from `words` (as many as given, in
    /// [`Registers::user_words`] order). RFLAGS keeps only the arithmetic flags (with
    /// interrupts forced on); rip and rsp must be user addresses, or nothing changes.
    pub fn set_user_words(&mut self, words: &[u64]) -> Result<(), cleave_abi::Error> {
        let mut all = self.user_words();
        for (dst, &src) in all.iter_mut().zip(words) {
            *dst = src;
        }
        if all[0] >= USER_TOP || all[1] >= USER_TOP {
            return Err(cleave_abi::Error::InvalidArgument);
        }
        let [rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15] = all;
        *self = Self {
            rip,
            rsp,
            rflags: (rflags & USER_RFLAGS) | INITIAL_RFLAGS,
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rbp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            cs: USER_CODE_SELECTOR,
            ss: USER_DATA_SELECTOR,
            vector: 0,
            error: 0,
        };
        Ok(())
    }
}

impl fmt::Debug for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Registers {{ rip: {:#x}, rsp: {:#x}, rax: {:#x} }}", self.rip, self.rsp, self.rax)
    }
}

impl fmt::Display for Registers {
    /// The register dump of a fault report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [[(&str, u64); 3]; 7] = [
            [("rax", self.rax), ("rbx", self.rbx), ("rcx", self.rcx)],
            [("rdx", self.rdx), ("rsi", self.rsi), ("rdi", self.rdi)],
            [("rbp", self.rbp), ("rsp", self.rsp), ("r8 ", self.r8)],
            [("r9 ", self.r9), ("r10", self.r10), ("r11", self.r11)],
            [("r12", self.r12), ("r13", self.r13), ("r14", self.r14)],
            [("r15", self.r15), ("rip", self.rip), ("rfl", self.rflags)],
            [("cs ", self.cs), ("ss ", self.ss), ("err", self.error)],
        ];
        for row in rows {
            let [(a, x), (b, y), (c, z)] = row;
            writeln!(f, "  {a}={x:#018x} {b}={y:#018x} {c}={z:#018x}")?;
        }
        Ok(())
    }
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ThreadState {
    /// Not runnable (new, suspended, or stopped by a fault without handler).
    Inactive = 0,
    /// Runnable (in a ready queue).
    Running = 1,
    /// Waiting to send on an endpoint.
    BlockedOnSend = 2,
    /// Waiting to receive on an endpoint.
    BlockedOnReceive = 3,
    /// Waiting for the reply to a Call.
    BlockedOnReply = 4,
    /// Waiting for a signal on a notification.
    BlockedOnNotification = 5,
}

// The ABI's names for the states are these values.
const _: () = {
    use cleave_abi::object::thread_state as abi;
    assert!(ThreadState::Inactive as u64 == abi::INACTIVE);
    assert!(ThreadState::Running as u64 == abi::RUNNING);
    assert!(ThreadState::BlockedOnSend as u64 == abi::BLOCKED_ON_SEND);
    assert!(ThreadState::BlockedOnReceive as u64 == abi::BLOCKED_ON_RECEIVE);
    assert!(ThreadState::BlockedOnReply as u64 == abi::BLOCKED_ON_REPLY);
    assert!(ThreadState::BlockedOnNotification as u64 == abi::BLOCKED_ON_NOTIFICATION);
};

impl ThreadState {
    fn from_raw(raw: u64) -> Self {
        match raw {
            1 => Self::Running,
            2 => Self::BlockedOnSend,
            3 => Self::BlockedOnReceive,
            4 => Self::BlockedOnReply,
            5 => Self::BlockedOnNotification,
            _ => Self::Inactive,
        }
    }
}

/// IPC flags of a blocked sender.
pub mod ipc_flag {
    /// The send is a Call: the sender waits for a reply.
    pub const CALL: u64 = 1;
    /// The capability used had the grant right.
    pub const GRANT: u64 = 2;
    /// The message is a fault message (in the TCB's fault fields, not its registers).
    pub const FAULT: u64 = 4;
}

/// The layout of a TCB object.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct Tcb {
    /// Capability slots (see [`slot`]).
    pub slots: [Cte; 4],
    /// Saved user registers.
    pub regs: Registers,
    /// [`ThreadState`].
    pub state: u64,
    /// Scheduling priority (0-255).
    pub priority: u64,
    /// Maximum controlled priority: the highest priority this thread may give.
    pub mcp: u64,
    /// Ready-queue links.
    pub sched_next: u64,
    /// Ready-queue links.
    pub sched_prev: u64,
    /// Endpoint or notification wait-queue links.
    pub queue_next: u64,
    /// Endpoint or notification wait-queue links.
    pub queue_prev: u64,
    /// The endpoint or notification it is blocked on.
    pub blocked_on: u64,
    /// Badge of the capability a blocked sender used.
    pub ipc_badge: u64,
    /// [`ipc_flag`]s of a blocked sender.
    pub ipc_flags: u64,
    /// The thread waiting for this one's reply (its reply capability), or 0.
    pub caller: u64,
    /// For a thread blocked on reply: the thread that holds its reply capability.
    pub replier: u64,
    /// The bound notification, or 0.
    pub bound_notification: u64,
    /// Virtual address of the IPC buffer (its offset within the frame matters).
    pub ipc_buffer_vaddr: u64,
    /// Whether the thread is in a ready queue.
    pub queued: u64,
    /// Timer ticks left before it goes behind the others of its priority.
    pub time_slice: u64,
    /// Label of the pending fault message.
    pub fault_label: u64,
    /// Words of the pending fault message.
    pub fault_words: [u64; 4],
    /// Name for reports (NUL-padded).
    pub name: [u8; 32],
    /// The Vcpu bound to this thread (its address), or 0.
    pub vcpu: u64,
    /// [`one_request`] flags: whether it serves one request per start, and whether it
    /// has received that request.
    pub one_request: u64,
    /// [`privilege`] bits: what the thread may do beyond what its capabilities allow.
    pub privileges: u64,
    /// Bytes in [`Tcb::console`].
    pub console_len: u64,
    /// The thread's debug-console line so far: `DebugPutChar` collects a line here and the
    /// kernel writes it whole, so lines of threads that preempt each other never mix.
    pub console: [u8; CONSOLE_LINE],
}

/// The longest debug-console line a thread's TCB collects; a longer line is written in
/// pieces of this size.
pub const CONSOLE_LINE: usize = 240;

/// Bits of [`Tcb::privileges`].
pub mod privilege {
    /// It may end the run (`DebugExit`), and give other threads this privilege
    /// (`TCB_ALLOW_END_RUN`). The root task's first thread has it.
    pub const END_RUN: u64 = 1;
    /// It may write to the debug console (`DebugPutChar`), and give other threads this
    /// privilege (`TCB_ALLOW_CONSOLE`). The root task's first thread has it.
    pub const CONSOLE: u64 = 2;
    /// It may read the kernel's audit log (`AuditRead`), and give other threads this
    /// privilege (`TCB_ALLOW_READ_AUDIT`). The root task's first thread has it.
    pub const READ_AUDIT: u64 = 4;
    /// It may name threads (`TCB_SET_NAME`): the audit log stamps each event with its
    /// writer's name, so only the root task's first thread (the loader) has this, and
    /// nothing passes it on.
    pub const NAME_THREADS: u64 = 8;
}

/// Bits of [`Tcb::one_request`].
pub mod one_request {
    /// It serves one request per start (`TCB_SET_ONE_REQUEST`; never cleared).
    pub const ENABLED: u64 = 1;
    /// It has received on an endpoint since it was last started.
    pub const RECEIVED: u64 = 2;
}

const _: () = assert!(core::mem::size_of::<Tcb>() <= 1 << TCB_SIZE_BITS);
const _: () = assert!(offset_of!(Tcb, slots) == 0 && core::mem::size_of::<[Cte; 4]>() == 4 << SLOT_SIZE_BITS);

/// Offsets of single registers within [`Registers`], for [`TcbRef::reg`].
pub mod reg {
    use super::Registers;
    use core::mem::offset_of;
    /// `rax`.
    pub const RAX: usize = offset_of!(Registers, rax);
    /// `rdi`.
    pub const RDI: usize = offset_of!(Registers, rdi);
    /// `rsi`.
    pub const RSI: usize = offset_of!(Registers, rsi);
    /// `rdx`.
    pub const RDX: usize = offset_of!(Registers, rdx);
    /// `r8`.
    pub const R8: usize = offset_of!(Registers, r8);
    /// `r9`.
    pub const R9: usize = offset_of!(Registers, r9);
    /// `r10`.
    pub const R10: usize = offset_of!(Registers, r10);
    /// The message registers, words 0-3.
    pub const MESSAGE: [usize; 4] = [RDX, R8, R9, R10];
}

/// Field access to a TCB in kernel memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcbRef(pub PhysAddr);

macro_rules! word_field {
    ($get:ident, $set:ident, $field:ident) => {
        #[doc = concat!("Reads `", stringify!($field), "`.")]
        pub fn $get(self, m: &impl KernelMemory) -> u64 {
            m.read(PhysAddr(self.0.0 + offset_of!(Tcb, $field) as u64))
        }
        #[doc = concat!("Writes `", stringify!($field), "`.")]
        pub fn $set(self, m: &mut impl KernelMemory, value: u64) {
            m.write(PhysAddr(self.0.0 + offset_of!(Tcb, $field) as u64), &value)
        }
    };
}

impl TcbRef {
    /// The TCB at a nonzero link value.
    pub fn from_link(link: u64) -> Option<Self> {
        (link != 0).then_some(Self(PhysAddr(link)))
    }
    /// The link value naming this TCB.
    pub fn link(self) -> u64 {
        self.0.0
    }
    /// Slot `index` of this TCB.
    pub fn slot(self, index: u64) -> PhysAddr {
        PhysAddr(self.0.0 + (index << SLOT_SIZE_BITS))
    }
    /// The thread state.
    pub fn state(self, m: &impl KernelMemory) -> ThreadState {
        ThreadState::from_raw(self.state_raw(m))
    }
    /// Sets the thread state.
    pub fn set_state(self, m: &mut impl KernelMemory, state: ThreadState) {
        self.set_state_raw(m, state as u64)
    }
    /// Where the saved registers are (the `syscall` entry saves into them in place).
    pub fn regs_addr(self) -> PhysAddr {
        PhysAddr(self.0.0 + offset_of!(Tcb, regs) as u64)
    }
    /// The saved registers.
    pub fn regs(self, m: &impl KernelMemory) -> Registers {
        m.read(PhysAddr(self.0.0 + offset_of!(Tcb, regs) as u64))
    }
    /// One saved register, by its [`reg`] offset.
    pub fn reg(self, m: &impl KernelMemory, offset: usize) -> u64 {
        m.read(PhysAddr(self.0.0 + (offset_of!(Tcb, regs) + offset) as u64))
    }
    /// Sets one saved register, by its [`reg`] offset.
    pub fn set_reg(self, m: &mut impl KernelMemory, offset: usize, value: u64) {
        m.write(PhysAddr(self.0.0 + (offset_of!(Tcb, regs) + offset) as u64), &value)
    }
    /// Replaces the saved registers.
    pub fn set_regs(self, m: &mut impl KernelMemory, regs: &Registers) {
        m.write(PhysAddr(self.0.0 + offset_of!(Tcb, regs) as u64), regs)
    }
    /// The pending fault message's words.
    pub fn fault_words(self, m: &impl KernelMemory) -> [u64; 4] {
        m.read(PhysAddr(self.0.0 + offset_of!(Tcb, fault_words) as u64))
    }
    /// Records a fault message.
    pub fn set_fault(self, m: &mut impl KernelMemory, label: u64, words: [u64; 4]) {
        m.write(PhysAddr(self.0.0 + offset_of!(Tcb, fault_words) as u64), &words);
        self.set_fault_label(m, label);
    }
    /// The name (for reports).
    pub fn name(self, m: &impl KernelMemory) -> [u8; 32] {
        m.read(PhysAddr(self.0.0 + offset_of!(Tcb, name) as u64))
    }
    /// Adds one byte to the thread's debug-console line. Returns the whole line, ready to be
    /// written, when the byte ends it (`\n`) or fills it; the line then starts over.
    pub fn console_put(self, m: &mut impl KernelMemory, byte: u8) -> Option<([u8; CONSOLE_LINE], usize)> {
        let len_at = PhysAddr(self.0.0 + offset_of!(Tcb, console_len) as u64);
        let at = PhysAddr(self.0.0 + offset_of!(Tcb, console) as u64);
        // A length the thread cannot set; clamped all the same.
        let len = (m.read::<u64>(len_at) as usize).min(CONSOLE_LINE - 1);
        m.write(PhysAddr(at.0 + len as u64), &byte);
        if byte == b'\n' || len + 1 == CONSOLE_LINE {
            m.write(len_at, &0u64);
            return Some((m.read(at), len + 1));
        }
        m.write(len_at, &(len as u64 + 1));
        None
    }
    /// Takes the unfinished debug-console line (empty if there is none).
    pub fn console_take(self, m: &mut impl KernelMemory) -> ([u8; CONSOLE_LINE], usize) {
        let len_at = PhysAddr(self.0.0 + offset_of!(Tcb, console_len) as u64);
        let len = (m.read::<u64>(len_at) as usize).min(CONSOLE_LINE - 1);
        m.write(len_at, &0u64);
        (m.read(PhysAddr(self.0.0 + offset_of!(Tcb, console) as u64)), len)
    }
    /// Sets the name (truncated to 32 bytes).
    pub fn set_name(self, m: &mut impl KernelMemory, name: &str) {
        let mut bytes = [0u8; 32];
        for (d, s) in bytes.iter_mut().zip(name.bytes()) {
            *d = s;
        }
        m.write(PhysAddr(self.0.0 + offset_of!(Tcb, name) as u64), &bytes)
    }
    word_field!(state_raw, set_state_raw, state);
    word_field!(privileges, set_privileges, privileges);
    word_field!(priority, set_priority, priority);
    word_field!(mcp, set_mcp, mcp);
    word_field!(sched_next, set_sched_next, sched_next);
    word_field!(sched_prev, set_sched_prev, sched_prev);
    word_field!(queue_next, set_queue_next, queue_next);
    word_field!(queue_prev, set_queue_prev, queue_prev);
    word_field!(blocked_on, set_blocked_on, blocked_on);
    word_field!(ipc_badge, set_ipc_badge, ipc_badge);
    word_field!(ipc_flags, set_ipc_flags, ipc_flags);
    word_field!(caller, set_caller, caller);
    word_field!(replier, set_replier, replier);
    word_field!(bound_notification, set_bound_notification, bound_notification);
    word_field!(ipc_buffer_vaddr, set_ipc_buffer_vaddr, ipc_buffer_vaddr);
    word_field!(queued, set_queued, queued);
    word_field!(fault_label, set_fault_label, fault_label);
    word_field!(time_slice, set_time_slice, time_slice);
    word_field!(vcpu, set_vcpu, vcpu);
    word_field!(one_request, set_one_request, one_request);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_writes_are_sanitised() {
        let mut r = Registers::user(0x40_1000, 0x7000_0000);
        let mut words = r.user_words();
        words[2] = u64::MAX; // every RFLAGS bit
        words[3] = 42;
        r.set_user_words(&words).unwrap();
        assert_eq!(r.rflags, 0xcd5 | 0x202);
        assert_eq!((r.rax, r.cs, r.ss), (42, USER_CODE_SELECTOR, USER_DATA_SELECTOR));
        // Kernel addresses for rip or rsp are refused and change nothing.
        let before = r;
        assert!(r.set_user_words(&[0xffff_8000_0000_0000]).is_err());
        assert!(r.set_user_words(&[0x40_1000, USER_TOP]).is_err());
        assert_eq!(r, before);
        // A short write changes only the leading registers.
        r.set_user_words(&[0x40_2000]).unwrap();
        assert_eq!((r.rip, r.rax), (0x40_2000, 42));
    }
}
