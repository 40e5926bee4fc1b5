//! The IPC fast path: `Call` to an endpoint where a receiver waits, and `ReplyRecv` that
//! answers a waiting caller and then blocks, in the common case only — register-sized
//! message, no capability, a single-level CSpace, the partner at a priority that runs at
//! once. Everything else goes through the general path in `syscall.rs`, whose state
//! transitions this reproduces exactly (a host test runs both and compares).

use super::cap::raw;
use super::ipc::{IDLE, Queue, RECEIVERS, SENDERS};
use super::kmem::KernelMemory;
use super::space::ObjectSpace;
use super::tcb::{Registers, TcbRef, ThreadState, ipc_flag, slot};
use crate::addr::PhysAddr;
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::syscall::REGISTER_MESSAGE_WORDS;
use cleave_abi::{MessageInfo, Rights, Syscall};

impl<M: KernelMemory> ObjectSpace<M> {
    /// The endpoint (base address and badge) at `cptr` in `t`'s CSpace, if the CSpace is
    /// one CNode whose guard and radix consume the whole address, and the capability is an
    /// endpoint with `right`.
    fn fast_endpoint(&self, t: TcbRef, cptr: u64, right: Rights) -> Option<(PhysAddr, u64, Rights)> {
        let (base, radix, guard, guard_bits) = raw::cnode(self.mem.read(t.slot(slot::CSPACE)))?;
        if radix + guard_bits != 64 || radix == 0 || cptr >> radix != guard {
            return None;
        }
        let at = PhysAddr(base.0 + ((cptr & ((1 << radix) - 1)) << SLOT_SIZE_BITS));
        let (base, badge, rights) = raw::endpoint(self.mem.read(at))?;
        rights.contains(right).then_some((base, badge, rights))
    }

    /// Whether `next` would be the thread `choose` picks once `leaving` (the current thread)
    /// has blocked: strictly above every other runnable thread.
    fn runs_next(&self, next: TcbRef) -> bool {
        self.highest_ready().is_none_or(|p| next.priority(&self.mem) > p as u64)
    }

    /// The VSpace root `t` runs in, if it has one.
    fn vspace_root(&self, t: TcbRef) -> Option<PhysAddr> {
        raw::vspace(self.mem.read(t.slot(slot::VSPACE)))
    }

    /// Tries the fast path for the system call in `frame` (the current thread's live
    /// registers, not yet saved). On success the current thread's registers are saved, the
    /// next thread's (with its message) are in `frame`, it is current, and its VSpace root
    /// is returned; on `None` nothing has changed.
    pub fn fastpath(&mut self, frame: &mut Registers) -> Option<PhysAddr> {
        let t = self.current()?;
        let info = MessageInfo(frame.rsi);
        if info.extra_caps() != 0 || info.length() > REGISTER_MESSAGE_WORDS {
            return None;
        }
        match Syscall::from_raw(frame.rax)? {
            Syscall::Call => self.fast_call(t, frame, info),
            Syscall::ReplyRecv => self.fast_reply_recv(t, frame, info),
            _ => None,
        }
    }

    fn fast_call(&mut self, caller: TcbRef, frame: &mut Registers, info: MessageInfo) -> Option<PhysAddr> {
        let (ep, badge, rights) = self.fast_endpoint(caller, frame.rdi, Rights::WRITE)?;
        if self.word(ep) != RECEIVERS {
            return None;
        }
        let receiver = TcbRef::from_link(self.word(PhysAddr(ep.0 + 8)))?;
        let root = self.vspace_root(receiver)?;
        // Decide with the caller off the ready queue, as it will be.
        self.dequeue(caller);
        if !self.runs_next(receiver) {
            self.enqueue(caller);
            return None;
        }
        let q = Queue::endpoint(ep);
        self.pop(q);
        if self.word(q_head(ep)) == 0 {
            self.set_word(ep, IDLE);
        }
        // The caller waits for the reply, its registers saved with status 0.
        let grant = if rights.contains(Rights::GRANT) { ipc_flag::GRANT } else { 0 };
        caller.set_ipc_flags(&mut self.mem, ipc_flag::CALL | grant);
        frame.rax = 0;
        caller.set_regs(&mut self.mem, frame);
        caller.set_state(&mut self.mem, ThreadState::BlockedOnReply);
        caller.set_blocked_on(&mut self.mem, 0);
        caller.set_replier(&mut self.mem, receiver.link());
        receiver.set_caller(&mut self.mem, caller.link());
        self.switch_with_message(receiver, frame, badge, info, root)
    }

    fn fast_reply_recv(
        &mut self,
        server: TcbRef,
        frame: &mut Registers,
        info: MessageInfo,
    ) -> Option<PhysAddr> {
        let caller = TcbRef::from_link(server.caller(&self.mem))?;
        if caller.state(&self.mem) != ThreadState::BlockedOnReply
            || caller.ipc_flags(&self.mem) & ipc_flag::FAULT != 0
            || server.bound_notification(&self.mem) != 0
        {
            return None;
        }
        let (ep, _, _) = self.fast_endpoint(server, frame.rdi, Rights::READ)?;
        if self.word(ep) == SENDERS {
            return None;
        }
        let root = self.vspace_root(caller)?;
        self.dequeue(server);
        if !self.runs_next(caller) {
            self.enqueue(server);
            return None;
        }
        server.set_caller(&mut self.mem, 0);
        caller.set_replier(&mut self.mem, 0);
        // The server waits on the endpoint.
        server.set_regs(&mut self.mem, frame);
        server.set_state(&mut self.mem, ThreadState::BlockedOnReceive);
        server.set_blocked_on(&mut self.mem, ep.0);
        self.push(Queue::endpoint(ep), server);
        self.set_word(ep, RECEIVERS);
        self.switch_with_message(caller, frame, 0, info, root)
    }

    /// Makes `next` runnable and current, with the message from `frame` (badge `badge`)
    /// delivered into its registers, which end up in `frame` only: a running thread's
    /// registers live in the entry frame and reach its TCB at its next kernel entry.
    fn switch_with_message(
        &mut self,
        next: TcbRef,
        frame: &mut Registers,
        badge: u64,
        info: MessageInfo,
        root: PhysAddr,
    ) -> Option<PhysAddr> {
        let words = [frame.rdx, frame.r8, frame.r9, frame.r10];
        *frame = next.regs(&self.mem);
        frame.rax = 0;
        frame.rdi = badge;
        frame.rsi = MessageInfo::new(info.label(), 0, 0, info.length() as u64).0;
        [frame.rdx, frame.r8, frame.r9, frame.r10] = words;
        self.make_runnable(next);
        self.set_current(Some(next));
        Some(root)
    }
}

fn q_head(ep: PhysAddr) -> PhysAddr {
    PhysAddr(ep.0 + 8)
}
