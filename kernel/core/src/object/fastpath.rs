//! The IPC fast path: `Call` to an endpoint where a receiver waits, `ReplyRecv` that
//! answers a waiting caller and then blocks, and a signal (`Send` on a notification) that
//! wakes a waiting thread of higher priority, in the common case only — register-sized
//! message, no capability, a single-level CSpace, the partner at a priority that runs at
//! once. Everything else goes through the general path in `syscall.rs`, whose state
//! transitions this reproduces exactly (a host test runs both and compares).
//!
//! The current thread's registers are already in its TCB (the `syscall` entry saves them
//! there), so the fast path reads the few it needs, writes the message into the next
//! thread's TCB, and the exit stub restores that thread from its TCB: no register block is
//! copied.

use super::cap::raw;
use super::ipc::{IDLE, NTFN_HEAD, Queue, RECEIVERS, SENDERS};
use super::kmem::KernelMemory;
use super::space::ObjectSpace;
use super::tcb::{TcbRef, ThreadState, ipc_flag, reg, slot};
use crate::addr::PhysAddr;
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::syscall::REGISTER_MESSAGE_WORDS;
use cleave_abi::{MessageInfo, Rights, Syscall};

impl<M: KernelMemory> ObjectSpace<M> {
    /// The slot `cptr` names in `t`'s CSpace, if the CSpace is one CNode whose guard and
    /// radix consume the whole address.
    pub(crate) fn fast_slot(&self, t: TcbRef, cptr: u64) -> Option<PhysAddr> {
        let (base, radix, guard, guard_bits) = raw::cnode(self.mem.read(t.slot(slot::CSPACE)))?;
        if radix + guard_bits != 64 || radix == 0 || cptr >> radix != guard {
            return None;
        }
        Some(PhysAddr(base.0 + ((cptr & ((1 << radix) - 1)) << SLOT_SIZE_BITS)))
    }

    /// The endpoint (base address and badge) at `cptr` in `t`'s CSpace, if `fast_slot`
    /// finds it and the capability is an endpoint with `right`.
    fn fast_endpoint(&self, t: TcbRef, cptr: u64, right: Rights) -> Option<(PhysAddr, u64, Rights)> {
        let (base, badge, rights) = raw::endpoint(self.mem.read(self.fast_slot(t, cptr)?))?;
        rights.contains(right).then_some((base, badge, rights))
    }

    /// Whether `next` would be the thread `choose` picks once the current thread (never in
    /// a ready queue) has blocked: strictly above every queued thread.
    fn runs_next(&self, next: TcbRef) -> bool {
        self.highest_ready().is_none_or(|p| next.priority(&self.mem) > p as u64)
    }

    /// The VSpace root `t` runs in, if it has one.
    fn vspace_root(&self, t: TcbRef) -> Option<PhysAddr> {
        raw::vspace(self.mem.read(t.slot(slot::VSPACE)))
    }

    /// Tries the fast path for the current thread's system call, whose registers are in
    /// its TCB. On success the message is in the next thread's TCB, that thread is
    /// current, and it is returned with its VSpace root; on `None` nothing has changed.
    #[inline(always)]
    pub fn fastpath(&mut self) -> Option<(TcbRef, PhysAddr)> {
        let t = self.current()?;
        let info = MessageInfo(t.reg(&self.mem, reg::RSI));
        // No capability (bits 7-8) and at most the register words (bits 0-6), in one test.
        if info.0 & 0x1ff > REGISTER_MESSAGE_WORDS as u64 {
            return None;
        }
        // Call first: the commonest.
        let number = t.reg(&self.mem, reg::RAX);
        if number == Syscall::Call as u64 {
            self.fast_call(t, info)
        } else if number == Syscall::ReplyRecv as u64 {
            self.fast_reply_recv(t, info)
        } else if number == Syscall::Send as u64 {
            let cptr = t.reg(&self.mem, reg::RDI);
            let words: [u64; 3] = self.mem.read(self.fast_slot(t, cptr)?);
            match raw::notification(words) {
                Some(notification) => self.fast_signal(t, notification),
                None => self.fast_send(t, info, raw::endpoint(words)?),
            }
        } else {
            None
        }
    }

    #[inline(always)]
    fn fast_call(&mut self, caller: TcbRef, info: MessageInfo) -> Option<(TcbRef, PhysAddr)> {
        let cptr = caller.reg(&self.mem, reg::RDI);
        let (ep, badge, rights) = self.fast_endpoint(caller, cptr, Rights::WRITE)?;
        if self.word(ep) != RECEIVERS {
            return None;
        }
        let receiver = TcbRef::from_link(self.word(PhysAddr(ep.0 + 8)))?;
        // A receiver that still owes a reply has it discarded on the general path.
        if receiver.caller(&self.mem) != 0 {
            return None;
        }
        let root = self.vspace_root(receiver)?;
        if !self.runs_next(receiver) {
            return None;
        }
        self.take_head_receiver(ep, receiver);
        // The caller waits for the reply, with status 0.
        let grant = if rights.contains(Rights::GRANT) { ipc_flag::GRANT } else { 0 };
        caller.set_ipc_flags(&mut self.mem, ipc_flag::CALL | grant);
        caller.set_reg(&mut self.mem, reg::RAX, 0);
        // (A running thread's `blocked_on` is already 0: the fuzzer checks it.)
        caller.set_state(&mut self.mem, ThreadState::BlockedOnReply);
        caller.set_replier(&mut self.mem, receiver.link());
        receiver.set_caller(&mut self.mem, caller.link());
        self.switch_with_message(caller, receiver, badge, info, root)
    }

    #[inline(never)]
    fn fast_reply_recv(&mut self, server: TcbRef, info: MessageInfo) -> Option<(TcbRef, PhysAddr)> {
        let caller = TcbRef::from_link(server.caller(&self.mem))?;
        if caller.state(&self.mem) != ThreadState::BlockedOnReply
            || caller.ipc_flags(&self.mem) & ipc_flag::FAULT != 0
            || server.bound_notification(&self.mem) != 0
            || server.one_request(&self.mem) != 0
        {
            return None;
        }
        let cptr = server.reg(&self.mem, reg::RDI);
        let (ep, _, _) = self.fast_endpoint(server, cptr, Rights::READ)?;
        if self.word(ep) == SENDERS {
            return None;
        }
        let root = self.vspace_root(caller)?;
        if !self.runs_next(caller) {
            return None;
        }
        server.set_caller(&mut self.mem, 0);
        caller.set_replier(&mut self.mem, 0);
        // The server waits on the endpoint.
        server.set_state(&mut self.mem, ThreadState::BlockedOnReceive);
        server.set_blocked_on(&mut self.mem, ep.0);
        self.push(Queue::endpoint(ep), server);
        self.set_word(ep, RECEIVERS);
        self.switch_with_message(server, caller, 0, info, root)
    }

    /// A signal that wakes the first waiter of a notification. When that waiter preempts the
    /// signaller (a higher priority than it and than every queued thread) it runs at once
    /// and the signaller goes to the front of its queue, as `choose` would put it; when its
    /// priority is not above the signaller's it is queued and the signaller goes on.
    #[inline(never)]
    fn fast_signal(
        &mut self,
        t: TcbRef,
        (base, badge, rights): (PhysAddr, u64, Rights),
    ) -> Option<(TcbRef, PhysAddr)> {
        if !rights.contains(Rights::WRITE) {
            return None;
        }
        let waiter = TcbRef::from_link(self.word(PhysAddr(base.0 + NTFN_HEAD)))?;
        let priority = waiter.priority(&self.mem);
        if priority <= t.priority(&self.mem) {
            // No switch: the waiter joins its ready queue and the signaller goes on (it
            // was the highest runnable thread, and still is).
            let root = self.vspace_root(t)?;
            self.pop(Queue::notification(base));
            self.signal_to(waiter, badge);
            t.set_reg(&mut self.mem, reg::RAX, 0);
            self.make_runnable(waiter);
            return Some((t, root));
        }
        if !self.runs_next(waiter) {
            return None;
        }
        let root = self.vspace_root(waiter)?;
        self.pop(Queue::notification(base));
        self.signal_to(waiter, badge);
        t.set_reg(&mut self.mem, reg::RAX, 0);
        waiter.set_state(&mut self.mem, ThreadState::Running);
        waiter.set_blocked_on(&mut self.mem, 0);
        self.preempt_current();
        self.set_current(Some(waiter));
        Some((waiter, root))
    }

    /// `Send` to an endpoint where a receiver waits that preempts the sender (a higher
    /// priority than it and than every queued thread): the message goes into the
    /// receiver's registers, it runs, and the sender goes to the front of its queue, as
    /// `choose` would put it. (A grant-right send may carry no capability here: the
    /// descriptor's extra capabilities were checked to be none.)
    #[inline(never)]
    fn fast_send(
        &mut self,
        sender: TcbRef,
        info: MessageInfo,
        (ep, badge, rights): (PhysAddr, u64, Rights),
    ) -> Option<(TcbRef, PhysAddr)> {
        if !rights.contains(Rights::WRITE) || self.word(ep) != RECEIVERS {
            return None;
        }
        let receiver = TcbRef::from_link(self.word(PhysAddr(ep.0 + 8)))?;
        if receiver.priority(&self.mem) <= sender.priority(&self.mem) || !self.runs_next(receiver) {
            return None;
        }
        let root = self.vspace_root(receiver)?;
        self.take_head_receiver(ep, receiver);
        // The sender stays runnable with status 0; a send cancels nothing it had pending.
        sender.set_ipc_flags(&mut self.mem, if rights.contains(Rights::GRANT) { ipc_flag::GRANT } else { 0 });
        sender.set_reg(&mut self.mem, reg::RAX, 0);
        self.preempt_current();
        self.switch_with_message(sender, receiver, badge, info, root)
    }

    /// Unlinks `receiver`, the head of the endpoint at `ep`'s queue (as `pop` does, by
    /// hand: this is the hottest path in the kernel); an emptied endpoint goes idle.
    #[inline(always)]
    fn take_head_receiver(&mut self, ep: PhysAddr, receiver: TcbRef) {
        let next = receiver.queue_next(&self.mem);
        self.set_word(q_head(ep), next);
        match TcbRef::from_link(next) {
            Some(after) => after.set_queue_prev(&mut self.mem, 0),
            None => {
                self.set_word(PhysAddr(ep.0 + 16), 0);
                self.set_word(ep, IDLE);
            }
        }
        receiver.set_queue_next(&mut self.mem, 0);
    }

    /// Makes `next` runnable and current, with the message `from` sent (badge `badge`)
    /// delivered into its saved registers, from which the exit stub resumes it.
    #[inline(always)]
    fn switch_with_message(
        &mut self,
        from: TcbRef,
        next: TcbRef,
        badge: u64,
        info: MessageInfo,
        root: PhysAddr,
    ) -> Option<(TcbRef, PhysAddr)> {
        for offset in reg::MESSAGE {
            let word = from.reg(&self.mem, offset);
            next.set_reg(&mut self.mem, offset, word);
        }
        next.set_reg(&mut self.mem, reg::RAX, 0);
        next.set_reg(&mut self.mem, reg::RDI, badge);
        // The sender's descriptor less its unwrapped-capability bits (no capability goes on
        // the fast path, and its length fits the registers).
        next.set_reg(&mut self.mem, reg::RSI, info.0 & !(0x7 << 9));
        // It runs at once: current, so in no ready queue.
        next.set_state(&mut self.mem, ThreadState::Running);
        next.set_blocked_on(&mut self.mem, 0);
        self.set_current(Some(next));
        Some((next, root))
    }
}

fn q_head(ep: PhysAddr) -> PhysAddr {
    PhysAddr(ep.0 + 8)
}
