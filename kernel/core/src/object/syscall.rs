//! System calls of the current thread: capability lookup, then IPC, signals, replies or
//! object invocations. The thread's registers are in its TCB (the kernel entry saved them
//! there); results are written back there. What needs the machine (the debug console,
//! ending the run, reporting a fault) is returned to the kernel as an [`Outcome`].

use super::cap::Cap;
use super::cspace::lookup_cap;
use super::invoke::{Hardware, Invocation, Reply, invoke};
use super::kmem::KernelMemory;
use super::slot::SlotOps;
use super::space::ObjectSpace;
use super::tcb::{CONSOLE_LINE, TcbRef, one_request, privilege, reg, slot};
use cleave_abi::message::MAX_MESSAGE_WORDS;
use cleave_abi::syscall::fault;
use cleave_abi::{Error, MessageInfo, Syscall};

/// Bytes of the `syscall` instruction (0f 05): how far a preempted call is rewound.
pub const SYSCALL_INSTRUCTION_LENGTH: u64 = 2;

/// Most message words an invocation reads.
const MAX_INVOCATION_WORDS: usize = 24;

/// What the kernel must do after a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing more: schedule and return to user mode.
    Done,
    /// Write this line (the first `len` bytes) to the debug console: a thread's
    /// `DebugPutChar` bytes are collected in its TCB and written a whole line at a time.
    DebugLine([u8; CONSOLE_LINE], usize),
    /// End the run with this status, after writing the thread's unfinished console line
    /// (the first `len` bytes).
    DebugExit(i64, [u8; CONSOLE_LINE], usize),
    /// The thread ended itself with this status (`DebugExit` without the privilege to end
    /// the run, and no fault handler to hear it): it is stopped. The kernel says so after
    /// its unfinished console line (the first `len` bytes).
    Ended(TcbRef, i64, [u8; CONSOLE_LINE], usize),
    /// An invocation stopped at a preemption point because an interrupt is pending; the
    /// thread is rewound to its system call, which it makes again when it next runs.
    Preempted,
    /// The thread used a number the kernel does not implement: a fault.
    UnknownSyscall(u64),
    /// The thread enters the guest of its Vcpu (at this address), whose guest-physical
    /// address space has its EPT root here. The kernel runs it and reports the exit with
    /// [`ObjectSpace::vm_exited`].
    VmEnter {
        /// The Vcpu.
        vcpu: crate::addr::PhysAddr,
        /// Its EPT root.
        ept_root: crate::addr::PhysAddr,
    },
}

impl<M: KernelMemory> ObjectSpace<M> {
    /// Performs the system call the current thread made. There must be a current thread.
    pub fn syscall(&mut self, io: &mut impl Hardware) -> Outcome {
        let Some(t) = self.current() else { return Outcome::Done };
        let number = t.reg(&self.mem, reg::RAX);
        let cptr = t.reg(&self.mem, reg::RDI);
        let Some(call) = Syscall::from_raw(number) else { return Outcome::UnknownSyscall(number) };
        let result = match call {
            Syscall::DebugPutChar if t.privileges(&self.mem) & privilege::CONSOLE == 0 => {
                Err(Error::IllegalOperation)
            }
            Syscall::DebugPutChar => {
                self.set_status(t, Ok(()));
                return match t.console_put(&mut self.mem, cptr as u8) {
                    Some((line, len)) => Outcome::DebugLine(defanged(line, len), len),
                    None => Outcome::Done,
                };
            }
            Syscall::AuditEvent => {
                let (line, len) = t.console_take(&mut self.mem);
                let time = io.time_us();
                match self.audit.append(time, &t.name(&self.mem), &line[..len]) {
                    Ok(record) => {
                        self.set_status(t, Ok(()));
                        let (out, n) = audit_line(record.bytes());
                        return Outcome::DebugLine(out, n);
                    }
                    Err(_) => Err(Error::InvalidArgument),
                }
            }
            Syscall::AuditRead if t.privileges(&self.mem) & privilege::READ_AUDIT == 0 => {
                Err(Error::IllegalOperation)
            }
            Syscall::AuditRead => {
                self.audit_read(t, cptr);
                return Outcome::Done;
            }
            Syscall::DebugExit if t.privileges(&self.mem) & privilege::END_RUN == 0 => {
                // A thread that may not end the run ends itself: its fault handler, if it
                // has one, hears so (`EXITED`, with the status) and the thread waits for
                // it as after a fault; without one the thread stops (as if suspended).
                let regs = t.regs(&self.mem);
                if self.raise_fault(t, fault::EXITED, [cptr, 0, regs.rip, regs.rsp]) {
                    Ok(())
                } else {
                    let (line, len) = t.console_take(&mut self.mem);
                    self.suspend(t);
                    return Outcome::Ended(t, cptr as i64, defanged(line, len), len);
                }
            }
            Syscall::DebugExit => {
                // The unfinished line goes out before the run ends.
                let (line, len) = t.console_take(&mut self.mem);
                return Outcome::DebugExit(cptr as i64, defanged(line, len), len);
            }
            Syscall::Yield => {
                self.set_status(t, Ok(()));
                self.yield_current();
                Ok(())
            }
            Syscall::Reply => self.reply(t).map(|()| self.set_status(t, Ok(()))),
            Syscall::VmEnter => match self.vm_enter_target(t) {
                // A signal for the VMM comes first: it returns without entering.
                Ok(_) if let Some(word) = self.take_bound_word(t) => {
                    self.vm_exited(t, [cleave_abi::vcpu::exit::reason::NOTIFIED, word, 0, 0]);
                    Ok(())
                }
                Ok((vcpu, ept_root)) => return Outcome::VmEnter { vcpu, ept_root },
                Err(e) => Err(e),
            },
            Syscall::ReplyRecv => {
                // A missing caller is not an error here: the server simply waits.
                let _ = self.reply(t);
                self.lookup(t, cptr).and_then(|cap| self.receive_counted(t, cptr, cap, true))
            }
            Syscall::Recv | Syscall::NbRecv => {
                self.lookup(t, cptr).and_then(|cap| self.receive_counted(t, cptr, cap, call == Syscall::Recv))
            }
            Syscall::Send | Syscall::NbSend | Syscall::Call => match self.lookup_slot_of(t, cptr) {
                Err(e) => Err(e),
                Ok((_, cap @ Cap::Endpoint { .. })) => {
                    self.send(t, cap, call == Syscall::Send, call == Syscall::Call)
                }
                Ok((_, cap @ Cap::Notification { .. })) => {
                    let r = self.signal(cap);
                    if r.is_ok() {
                        self.set_status(t, Ok(()));
                    }
                    r
                }
                Ok((at, target)) => {
                    let reply = self.invoke_object(io, t, at, target);
                    if core::mem::take(&mut self.preempted) {
                        // Stopped at a preemption point with an interrupt pending: the
                        // thread makes the same call again when it next runs (what was
                        // done stays done), after the kernel has taken the interrupt.
                        let mut regs = t.regs(&self.mem);
                        regs.rip = regs.rip.wrapping_sub(SYSCALL_INSTRUCTION_LENGTH);
                        t.set_regs(&mut self.mem, &regs);
                        return Outcome::Preempted;
                    }
                    if call == Syscall::Call {
                        self.write_reply(t, reply);
                    } else {
                        self.set_status(t, reply.map(drop));
                    }
                    Ok(())
                }
            },
        };
        if let Err(e) = result {
            self.set_status(t, Err(e));
        }
        Outcome::Done
    }

    /// A receive, unless `t` serves one request per start and has had it: then its fault
    /// handler gets `REQUEST_DONE` instead (without one, the receive fails with
    /// `IllegalOperation`), and the thread waits for it.
    fn receive_counted(&mut self, t: TcbRef, cptr: u64, cap: Cap, blocking: bool) -> Result<(), Error> {
        let flags = t.one_request(&self.mem);
        if flags & one_request::ENABLED != 0 && matches!(cap, Cap::Endpoint { .. }) {
            if flags & one_request::RECEIVED != 0 {
                let regs = t.regs(&self.mem);
                let words = [cptr, 0, regs.rip, regs.rsp];
                return if self.raise_fault(t, fault::REQUEST_DONE, words) {
                    Ok(())
                } else {
                    Err(Error::IllegalOperation)
                };
            }
            t.set_one_request(&mut self.mem, flags | one_request::RECEIVED);
        }
        self.receive(t, cap, blocking)
    }

    /// The capability at `cptr` in `t`'s CSpace (empty is an error).
    fn lookup(&self, t: TcbRef, cptr: u64) -> Result<Cap, Error> {
        self.lookup_slot_of(t, cptr).map(|(_, cap)| cap)
    }

    /// The slot and capability at `cptr` in `t`'s CSpace (empty is an error). A one-level
    /// CSpace whose guard and radix take the whole address (what the fast path handles, and
    /// what most components have) is indexed directly; anything else is resolved in full.
    fn lookup_slot_of(&self, t: TcbRef, cptr: u64) -> Result<(super::slot::Slot, Cap), Error> {
        let (at, cap) = match self.fast_slot(t, cptr) {
            Some(at) => (at, self.mem.cap_at(at)),
            None => lookup_cap(&self.mem, self.mem.cap_at(t.slot(slot::CSPACE)), cptr)?,
        };
        if cap.is_null() { Err(Error::InvalidCapability) } else { Ok((at, cap)) }
    }

    fn invoke_object(
        &mut self,
        io: &mut impl Hardware,
        t: TcbRef,
        at: super::slot::Slot,
        target: Cap,
    ) -> Result<Reply, Error> {
        let info = MessageInfo(t.reg(&self.mem, reg::RSI));
        let length = info.length().min(MAX_INVOCATION_WORDS);
        let mut words = [0u64; MAX_INVOCATION_WORDS];
        for (i, word) in words.iter_mut().enumerate().take(length) {
            *word = self.message_word(t, i).ok_or(Error::TruncatedMessage)?;
        }
        let cspace = self.mem.cap_at(t.slot(slot::CSPACE));
        invoke(self, io, t, cspace, at, target, Invocation { label: info.label(), words: &words[..length] })
    }

    /// `AuditRead` from byte offset `from`: the offsets in the register words, the bytes in
    /// `t`'s IPC buffer (none without one).
    fn audit_read(&mut self, t: TcbRef, from: u64) {
        let mut bytes = [0u8; (MAX_MESSAGE_WORDS - 4) * 8];
        let (first, n) = self.audit.read(from, &mut bytes);
        let mut words = 0;
        for chunk in bytes[..n].chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            if !self.write_message_word(t, 4 + words, u64::from_le_bytes(word)) {
                break;
            }
            words += 1;
        }
        let n = n.min(words * 8) as u64;
        let (end, dropped) = (self.audit.end(), self.audit.dropped());
        self.write_message(t, 0, MessageInfo::new(0, 0, 0, 4 + words as u64), [first, n, end, dropped]);
    }

    /// Writes an invocation's result to `t`: status in `rax`, words in registers and the
    /// IPC buffer (cut to the registers when it has none).
    fn write_reply(&mut self, t: TcbRef, reply: Result<Reply, Error>) {
        let (status, reply) = match reply {
            Ok(r) => (0, r),
            Err(e) => (e as u64, Reply::default()),
        };
        let mut length = reply.length.min(MAX_MESSAGE_WORDS);
        for i in 4..length {
            if !self.write_message_word(t, i, reply.words[i]) {
                length = i;
                break;
            }
        }
        let words = [reply.words[0], reply.words[1], reply.words[2], reply.words[3]];
        self.write_message(t, 0, MessageInfo::new(0, 0, 0, length as u64), words);
        t.set_reg(&mut self.mem, reg::RAX, status);
    }
}

/// The console line for an audit event: `audit: ` and the line the log keeps (`TIME
/// WRITER EVENT` and its newline), and its length.
fn audit_line(record: &[u8]) -> ([u8; CONSOLE_LINE], usize) {
    const _: () = assert!(AUDIT_PREFIX.len() + crate::audit_log::MAX_RECORD <= CONSOLE_LINE);
    let mut line = [0u8; CONSOLE_LINE];
    line[..AUDIT_PREFIX.len()].copy_from_slice(AUDIT_PREFIX);
    line[AUDIT_PREFIX.len()..AUDIT_PREFIX.len() + record.len()].copy_from_slice(record);
    (line, AUDIT_PREFIX.len() + record.len())
}

/// How the kernel's audit lines start on the console.
const AUDIT_PREFIX: &[u8] = b"audit: ";

/// A thread's console line (or a piece of one: any piece may start a line on the
/// console), with a start that would pass for an audit line (`audit:`) changed to
/// `audit?`: on the console, only the kernel writes audit lines.
pub(crate) fn defanged(mut line: [u8; CONSOLE_LINE], len: usize) -> [u8; CONSOLE_LINE] {
    if line[..len].starts_with(&AUDIT_PREFIX[..6]) {
        line[5] = b'?';
    }
    line
}
