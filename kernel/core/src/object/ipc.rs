//! Synchronous IPC through endpoints, signals through notifications, replies, and what
//! happens to waiting threads when their endpoint, notification or partner disappears.
//!
//! A message is a [`MessageInfo`] (in `rsi`), up to four words in registers and the rest
//! in the IPC buffer. The receiver gets the badge of the sender's capability in `rdi`.

use super::cap::Cap;
use super::kmem::KernelMemory;
use super::slot::SlotOps;
use super::space::ObjectSpace;
use super::tcb::{TcbRef, ThreadState, ipc_flag, reg, slot};
use crate::addr::PhysAddr;
use cleave_abi::message::MAX_MESSAGE_WORDS;
use cleave_abi::syscall::REGISTER_MESSAGE_WORDS;
use cleave_abi::{Error, MessageInfo, Rights};

/// Endpoint queue states (word 0 of an endpoint).
pub(crate) const IDLE: u64 = 0;
pub(crate) const SENDERS: u64 = 1;
pub(crate) const RECEIVERS: u64 = 2;

/// Notification words: 0 active (signalled since the last wait, even with badge 0),
/// 1 signal word, 2 head, 3 tail, 4 bound TCB.
const NTFN_ACTIVE: u64 = 0;
const NTFN_WORD: u64 = 8;
pub(crate) const NTFN_HEAD: u64 = 16;
pub(crate) const NTFN_BOUND: u64 = 32;

/// A wait queue stored in an object: state word at `base`, head and tail after it
/// (endpoints), or head and tail at `base + 16` (notifications).
#[derive(Clone, Copy)]
pub(crate) struct Queue {
    head: PhysAddr,
}

impl Queue {
    pub(crate) fn endpoint(base: PhysAddr) -> Self {
        Self { head: PhysAddr(base.0 + 8) }
    }
    pub(crate) fn notification(base: PhysAddr) -> Self {
        Self { head: PhysAddr(base.0 + NTFN_HEAD) }
    }
    fn tail(self) -> PhysAddr {
        PhysAddr(self.head.0 + 8)
    }
}

impl<M: KernelMemory> ObjectSpace<M> {
    pub(crate) fn word(&self, at: PhysAddr) -> u64 {
        self.mem.read(at)
    }
    pub(crate) fn set_word(&mut self, at: PhysAddr, v: u64) {
        self.mem.write(at, &v)
    }

    #[inline]
    pub(crate) fn push(&mut self, q: Queue, t: TcbRef) {
        let tail = self.word(q.tail());
        t.set_queue_next(&mut self.mem, 0);
        t.set_queue_prev(&mut self.mem, tail);
        match TcbRef::from_link(tail) {
            Some(last) => last.set_queue_next(&mut self.mem, t.link()),
            None => self.set_word(q.head, t.link()),
        }
        self.set_word(q.tail(), t.link());
    }

    #[inline]
    fn remove(&mut self, q: Queue, t: TcbRef) {
        let (next, prev) = (t.queue_next(&self.mem), t.queue_prev(&self.mem));
        match TcbRef::from_link(prev) {
            Some(before) => before.set_queue_next(&mut self.mem, next),
            None => self.set_word(q.head, next),
        }
        match TcbRef::from_link(next) {
            Some(after) => after.set_queue_prev(&mut self.mem, prev),
            None => self.set_word(q.tail(), prev),
        }
        t.set_queue_next(&mut self.mem, 0);
        t.set_queue_prev(&mut self.mem, 0);
    }

    #[inline]
    pub(crate) fn pop(&mut self, q: Queue) -> Option<TcbRef> {
        let first = TcbRef::from_link(self.word(q.head))?;
        self.remove(q, first);
        Some(first)
    }

    /// Where message word `i` of `t`'s IPC buffer is, if it has one.
    fn buffer_word(&self, t: TcbRef, i: usize) -> Option<PhysAddr> {
        match self.mem.cap_at(t.slot(slot::IPC_BUFFER)) {
            Cap::Frame { base, .. } => {
                let offset = t.ipc_buffer_vaddr(&self.mem) & 0xfff;
                Some(PhysAddr(base.0 + offset + cleave_abi::ipc_buffer::message_word_offset(i) as u64))
            }
            _ => None,
        }
    }

    /// Where byte `offset` of `t`'s IPC buffer is, if it has one.
    fn buffer_at(&self, t: TcbRef, offset: usize) -> Option<PhysAddr> {
        match self.mem.cap_at(t.slot(slot::IPC_BUFFER)) {
            Cap::Frame { base, .. } => {
                Some(PhysAddr(base.0 + (t.ipc_buffer_vaddr(&self.mem) & 0xfff) + offset as u64))
            }
            _ => None,
        }
    }

    /// Copies the capability `from` names in its IPC buffer (`caps_or_badges[0]`) into
    /// the slot `to` names (`receive_cnode`, `receive_index`, `receive_depth`), as a child
    /// of the sender's capability. Returns how many capabilities arrived (0 or 1): a
    /// missing buffer, an unresolvable or occupied slot, or a capability that may not be
    /// copied (untyped memory) means none, and the message goes without it.
    fn transfer_cap(&mut self, from: TcbRef, to: TcbRef) -> u64 {
        use super::cspace::{lookup_cap, lookup_slot};
        use cleave_abi::ipc_buffer::{RECEIVE_OFFSET, cap_offset};
        let Some(cptr_at) = self.buffer_at(from, cap_offset(0)) else { return 0 };
        let Some(receive_at) = self.buffer_at(to, RECEIVE_OFFSET) else { return 0 };
        let cptr = self.word(cptr_at);
        let [cnode, index, depth] = [0u64, 8, 16].map(|o| self.word(PhysAddr(receive_at.0 + o)));
        let from_cspace = self.mem.cap_at(from.slot(slot::CSPACE));
        let to_cspace = self.mem.cap_at(to.slot(slot::CSPACE));
        let Ok((src, cap)) = lookup_cap(&self.mem, from_cspace, cptr) else { return 0 };
        if cap.is_null() {
            return 0;
        }
        let Ok((_, root @ Cap::CNode { .. })) = lookup_cap(&self.mem, to_cspace, cnode) else { return 0 };
        let Ok(dst) = u32::try_from(depth)
            .map_err(drop)
            .and_then(|d| lookup_slot(&self.mem, root, index, d).map_err(drop))
        else {
            return 0;
        };
        u64::from(self.copy(src, dst).is_ok())
    }

    /// Message word `i` sent by `t` (registers first, then its IPC buffer).
    pub fn message_word(&self, t: TcbRef, i: usize) -> Option<u64> {
        match reg::MESSAGE.get(i) {
            Some(&offset) => Some(t.reg(&self.mem, offset)),
            None => self.buffer_word(t, i).map(|at| self.word(at)),
        }
    }

    /// Writes the receiver-side registers of a message: status 0, badge, descriptor, words.
    pub(crate) fn write_message(&mut self, to: TcbRef, badge: u64, info: MessageInfo, words: [u64; 4]) {
        to.set_reg(&mut self.mem, reg::RAX, 0);
        to.set_reg(&mut self.mem, reg::RDI, badge);
        to.set_reg(&mut self.mem, reg::RSI, info.0);
        for (&offset, w) in reg::MESSAGE.iter().zip(words) {
            to.set_reg(&mut self.mem, offset, w);
        }
    }

    /// Writes message word `i` (4 or more) into `t`'s IPC buffer; false without one.
    pub(crate) fn write_message_word(&mut self, t: TcbRef, i: usize, value: u64) -> bool {
        match self.buffer_word(t, i) {
            Some(at) => {
                self.set_word(at, value);
                true
            }
            None => false,
        }
    }

    /// Delivers to `to` a message of `words` (as `from` would send them) with `badge`.
    /// Words beyond the registers are copied between IPC buffers; without a buffer on
    /// either side the message is cut to the register words. With `grant`, a capability
    /// the message names is transferred too.
    fn deliver(&mut self, from: TcbRef, to: TcbRef, badge: u64, grant: bool) {
        if from.ipc_flags(&self.mem) & ipc_flag::FAULT != 0 {
            let label = from.fault_label(&self.mem);
            let words = from.fault_words(&self.mem);
            self.write_message(to, badge, MessageInfo::new(label, 0, 0, 4), words);
            return;
        }
        let info = MessageInfo(from.reg(&self.mem, reg::RSI));
        let mut length = info.length().min(MAX_MESSAGE_WORDS);
        if length > REGISTER_MESSAGE_WORDS {
            // Both buffers are found once; the words lie one after another in each.
            match (
                self.buffer_word(from, REGISTER_MESSAGE_WORDS),
                self.buffer_word(to, REGISTER_MESSAGE_WORDS),
            ) {
                (Some(src), Some(dst)) => {
                    for k in 0..(length - REGISTER_MESSAGE_WORDS) as u64 {
                        let w = self.word(PhysAddr(src.0 + 8 * k));
                        self.set_word(PhysAddr(dst.0 + 8 * k), w);
                    }
                }
                _ => length = REGISTER_MESSAGE_WORDS,
            }
        }
        let caps = if grant && info.extra_caps() > 0 { self.transfer_cap(from, to) } else { 0 };
        let words = reg::MESSAGE.map(|offset| from.reg(&self.mem, offset));
        self.write_message(to, badge, MessageInfo::new(info.label(), 0, caps, length as u64), words);
    }

    /// Sets the status word (`rax`) `t` sees when it next runs.
    pub fn set_status(&mut self, t: TcbRef, result: Result<(), Error>) {
        let status = match result {
            Ok(()) => 0,
            Err(e) => e as u64,
        };
        t.set_reg(&mut self.mem, reg::RAX, status);
    }

    /// `caller` waits for `replier`'s reply. A thread holds at most one caller's reply (as
    /// in seL4 without MCS): an earlier caller whose reply it still owes is cut off with
    /// `ReplyLost`, so the two links always name each other.
    fn await_reply(&mut self, caller: TcbRef, replier: TcbRef) {
        self.discard_reply(replier);
        self.block(caller, ThreadState::BlockedOnReply, 0);
        caller.set_replier(&mut self.mem, replier.link());
        replier.set_caller(&mut self.mem, caller.link());
    }

    /// Drops the reply `t` owes, if any: its caller wakes with `ReplyLost`.
    pub(crate) fn discard_reply(&mut self, t: TcbRef) {
        if let Some(old) = TcbRef::from_link(t.caller(&self.mem)) {
            t.set_caller(&mut self.mem, 0);
            if old.replier(&self.mem) == t.link() {
                old.set_replier(&mut self.mem, 0);
                if old.state(&self.mem) == ThreadState::BlockedOnReply {
                    self.wake_with_error(old, Error::ReplyLost);
                }
            }
        }
    }

    /// `Send`, `NBSend` or `Call` by `sender` through the endpoint capability `cap`.
    pub fn send(&mut self, sender: TcbRef, cap: Cap, blocking: bool, call: bool) -> Result<(), Error> {
        let Cap::Endpoint { base, badge, rights } = cap else { return Err(Error::InvalidCapability) };
        if !rights.contains(Rights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        let grant = if rights.contains(Rights::GRANT) { ipc_flag::GRANT } else { 0 };
        let flags = grant | if call { ipc_flag::CALL } else { 0 };
        self.send_message(sender, base, badge, flags, blocking || call);
        Ok(())
    }

    /// Sends `sender`'s message (its registers, or its fault message with
    /// [`ipc_flag::FAULT`]) to the endpoint at `base` with `badge`.
    fn send_message(&mut self, sender: TcbRef, base: PhysAddr, badge: u64, flags: u64, blocking: bool) {
        let fault = flags & ipc_flag::FAULT != 0;
        sender.set_ipc_flags(&mut self.mem, flags);
        let q = Queue::endpoint(base);
        if self.word(base) == RECEIVERS {
            let receiver = self.pop(q).expect("an endpoint in the receive state has receivers");
            if self.word(q.head) == 0 {
                self.set_word(base, IDLE);
            }
            self.deliver(sender, receiver, badge, flags & ipc_flag::GRANT != 0);
            self.make_runnable(receiver);
            if !fault {
                self.set_status(sender, Ok(()));
            }
            if flags & ipc_flag::CALL != 0 {
                self.await_reply(sender, receiver);
            }
        } else if blocking {
            sender.set_ipc_badge(&mut self.mem, badge);
            self.block(sender, ThreadState::BlockedOnSend, base.0);
            self.push(q, sender);
            self.set_word(base, SENDERS);
        } else {
            self.set_status(sender, Ok(()));
        }
    }

    /// Sends the fault `label`/`words` of thread `t` to its fault endpoint, blocking it
    /// until the handler replies. False (nothing done) if it has no usable fault endpoint.
    pub fn raise_fault(&mut self, t: TcbRef, label: u64, words: [u64; 4]) -> bool {
        let Cap::Endpoint { base, badge, rights } = self.mem.cap_at(t.slot(slot::FAULT_ENDPOINT)) else {
            return false;
        };
        if !rights.contains(Rights::WRITE) {
            return false;
        }
        t.set_fault(&mut self.mem, label, words);
        self.send_message(t, base, badge, ipc_flag::CALL | ipc_flag::FAULT, true);
        true
    }

    /// `Recv` or `NBRecv` by `receiver` on an endpoint or notification capability.
    pub fn receive(&mut self, receiver: TcbRef, cap: Cap, blocking: bool) -> Result<(), Error> {
        match cap {
            Cap::Endpoint { base, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights);
                }
                if self.take_bound_signal(receiver) {
                    return Ok(());
                }
                let q = Queue::endpoint(base);
                if self.word(base) == SENDERS {
                    let sender = self.pop(q).expect("an endpoint in the send state has senders");
                    if self.word(q.head) == 0 {
                        self.set_word(base, IDLE);
                    }
                    let badge = sender.ipc_badge(&self.mem);
                    let grant = sender.ipc_flags(&self.mem) & ipc_flag::GRANT != 0;
                    self.deliver(sender, receiver, badge, grant);
                    if sender.ipc_flags(&self.mem) & ipc_flag::FAULT == 0 {
                        self.set_status(sender, Ok(()));
                    }
                    if sender.ipc_flags(&self.mem) & ipc_flag::CALL != 0 {
                        self.await_reply(sender, receiver);
                    } else {
                        self.make_runnable(sender);
                    }
                } else if blocking {
                    self.block(receiver, ThreadState::BlockedOnReceive, base.0);
                    self.push(q, receiver);
                    self.set_word(base, RECEIVERS);
                } else {
                    self.no_message(receiver);
                }
                Ok(())
            }
            Cap::Notification { base, rights, .. } => {
                if !rights.contains(Rights::READ) {
                    return Err(Error::InsufficientRights);
                }
                if self.word(PhysAddr(base.0 + NTFN_ACTIVE)) != 0 {
                    let word = self.word(PhysAddr(base.0 + NTFN_WORD));
                    self.set_word(PhysAddr(base.0 + NTFN_WORD), 0);
                    self.set_word(PhysAddr(base.0 + NTFN_ACTIVE), 0);
                    self.signal_to(receiver, word);
                } else if blocking {
                    self.block(receiver, ThreadState::BlockedOnNotification, base.0);
                    self.push(Queue::notification(base), receiver);
                } else {
                    self.no_message(receiver);
                }
                Ok(())
            }
            _ => Err(Error::InvalidCapability),
        }
    }

    fn no_message(&mut self, t: TcbRef) {
        self.signal_to(t, 0);
    }

    /// Delivers a notification word to `t` (badge bits in `rdi`, empty message).
    pub(crate) fn signal_to(&mut self, t: TcbRef, word: u64) {
        t.set_reg(&mut self.mem, reg::RAX, 0);
        t.set_reg(&mut self.mem, reg::RDI, word);
        t.set_reg(&mut self.mem, reg::RSI, 0);
    }

    /// If `t`'s bound notification has a pending word, takes it for `t`.
    fn take_bound_signal(&mut self, t: TcbRef) -> bool {
        match self.take_bound_word(t) {
            Some(word) => {
                self.signal_to(t, word);
                true
            }
            None => false,
        }
    }

    /// Whether `t` has a bound notification that has been signalled and not yet taken.
    #[inline(always)]
    pub fn bound_signal_pending(&self, t: TcbRef) -> bool {
        let ntfn = t.bound_notification(&self.mem);
        ntfn != 0 && self.word(PhysAddr(ntfn + NTFN_ACTIVE)) != 0
    }

    /// Takes the pending word of `t`'s bound notification (which is then idle), if any.
    pub fn take_bound_word(&mut self, t: TcbRef) -> Option<u64> {
        if !self.bound_signal_pending(t) {
            return None;
        }
        let ntfn = PhysAddr(t.bound_notification(&self.mem));
        let word = self.word(PhysAddr(ntfn.0 + NTFN_WORD));
        self.set_word(PhysAddr(ntfn.0 + NTFN_WORD), 0);
        self.set_word(PhysAddr(ntfn.0 + NTFN_ACTIVE), 0);
        Some(word)
    }

    /// `Reply` by `replier` to the thread whose Call it received. A reply capability
    /// works once: without a caller waiting this is `InvalidCapability`.
    pub fn reply(&mut self, replier: TcbRef) -> Result<(), Error> {
        let Some(caller) = TcbRef::from_link(replier.caller(&self.mem)) else {
            return Err(Error::InvalidCapability);
        };
        replier.set_caller(&mut self.mem, 0);
        caller.set_replier(&mut self.mem, 0);
        if caller.state(&self.mem) != ThreadState::BlockedOnReply {
            return Err(Error::InvalidCapability);
        }
        if caller.ipc_flags(&self.mem) & ipc_flag::FAULT != 0 {
            // A fault reply resumes the thread; for an unknown system call, reply word 0
            // is the call's result.
            caller.set_ipc_flags(&mut self.mem, 0);
            if caller.fault_label(&self.mem) == cleave_abi::syscall::fault::UNKNOWN_SYSCALL {
                let result = replier.reg(&self.mem, reg::RDX);
                caller.set_reg(&mut self.mem, reg::RAX, result);
            }
        } else {
            self.deliver(replier, caller, 0, false);
        }
        self.make_runnable(caller);
        Ok(())
    }

    /// A signal through the notification capability `cap`.
    pub fn signal(&mut self, cap: Cap) -> Result<(), Error> {
        let Cap::Notification { base, badge, rights } = cap else { return Err(Error::InvalidCapability) };
        if !rights.contains(Rights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        self.signal_object(base, badge);
        Ok(())
    }

    /// Whether a signal of the notification at `base` would make a thread runnable now:
    /// one waits on it, or the thread bound to it waits in a receive ([`Self::signal_object`]).
    pub fn signal_could_wake(&self, base: PhysAddr) -> bool {
        self.word(PhysAddr(base.0 + NTFN_HEAD)) != 0
            || TcbRef::from_link(self.word(PhysAddr(base.0 + NTFN_BOUND)))
                .is_some_and(|t| t.state(&self.mem) == ThreadState::BlockedOnReceive)
    }

    /// ORs `bits` into the notification at `base`, waking a waiter (or its bound thread
    /// blocked in a receive) if there is one.
    pub fn signal_object(&mut self, base: PhysAddr, bits: u64) {
        if let Some(waiter) = self.pop(Queue::notification(base)) {
            self.signal_to(waiter, bits);
            self.make_runnable(waiter);
            return;
        }
        if let Some(bound) = TcbRef::from_link(self.word(PhysAddr(base.0 + NTFN_BOUND)))
            && bound.state(&self.mem) == ThreadState::BlockedOnReceive
        {
            let ep = PhysAddr(bound.blocked_on(&self.mem));
            self.remove(Queue::endpoint(ep), bound);
            if self.word(PhysAddr(ep.0 + 8)) == 0 {
                self.set_word(ep, IDLE);
            }
            self.signal_to(bound, bits);
            self.make_runnable(bound);
            return;
        }
        let word = self.word(PhysAddr(base.0 + NTFN_WORD));
        self.set_word(PhysAddr(base.0 + NTFN_WORD), word | bits);
        self.set_word(PhysAddr(base.0 + NTFN_ACTIVE), 1);
    }

    /// Binds the notification at `ntfn` to `t` (each side at most one).
    pub fn bind_notification(&mut self, t: TcbRef, ntfn: PhysAddr) -> Result<(), Error> {
        if t.bound_notification(&self.mem) != 0 || self.word(PhysAddr(ntfn.0 + NTFN_BOUND)) != 0 {
            return Err(Error::IllegalOperation);
        }
        t.set_bound_notification(&mut self.mem, ntfn.0);
        self.set_word(PhysAddr(ntfn.0 + NTFN_BOUND), t.link());
        Ok(())
    }

    /// Unbinds `t`'s notification, if any.
    pub fn unbind_notification(&mut self, t: TcbRef) {
        let ntfn = t.bound_notification(&self.mem);
        if ntfn != 0 {
            self.set_word(PhysAddr(ntfn + NTFN_BOUND), 0);
            t.set_bound_notification(&mut self.mem, 0);
        }
    }

    /// Stops `t`: out of every queue, partners released, state inactive.
    pub fn suspend(&mut self, t: TcbRef) {
        let on = PhysAddr(t.blocked_on(&self.mem));
        match t.state(&self.mem) {
            ThreadState::BlockedOnSend | ThreadState::BlockedOnReceive => {
                self.remove(Queue::endpoint(on), t);
                if self.word(PhysAddr(on.0 + 8)) == 0 {
                    self.set_word(on, IDLE);
                }
            }
            ThreadState::BlockedOnNotification => self.remove(Queue::notification(on), t),
            ThreadState::BlockedOnReply => {
                if let Some(replier) = TcbRef::from_link(t.replier(&self.mem))
                    && replier.caller(&self.mem) == t.link()
                {
                    replier.set_caller(&mut self.mem, 0);
                }
                t.set_replier(&mut self.mem, 0);
            }
            ThreadState::Running | ThreadState::Inactive => {}
        }
        // A thread waiting for this one's reply gets an error instead of waiting forever:
        // `ReplyLost`, so that it can tell a cut-off request (worth sending again, to a
        // restarted server) from a capability that names nothing.
        self.discard_reply(t);
        // Whatever it was sending (a fault message, a call) is cancelled: its next
        // messages and replies are its own words again.
        t.set_ipc_flags(&mut self.mem, 0);
        self.unbind_notification(t);
        self.block(t, ThreadState::Inactive, 0);
        if self.current == t.link() {
            self.current = 0;
        }
    }

    /// Wakes a thread whose partner or object vanished: with `error` in `rax`, or, if it
    /// was delivering a fault, unchanged (it re-executes the faulting instruction and
    /// faults again, to whatever handler it has then).
    fn wake_with_error(&mut self, t: TcbRef, error: Error) {
        if t.ipc_flags(&self.mem) & ipc_flag::FAULT == 0 {
            self.set_status(t, Err(error));
        }
        t.set_ipc_flags(&mut self.mem, 0);
        self.make_runnable(t);
    }

    /// Wakes every thread queued on the endpoint at `base` with an error (it is being
    /// destroyed).
    pub(crate) fn cancel_endpoint(&mut self, base: PhysAddr) {
        while let Some(t) = self.pop(Queue::endpoint(base)) {
            self.wake_with_error(t, Error::InvalidCapability);
        }
        self.set_word(base, IDLE);
    }

    /// Wakes every thread waiting on the notification at `base` with an error and
    /// unbinds its thread (it is being destroyed).
    pub(crate) fn cancel_notification(&mut self, base: PhysAddr) {
        while let Some(t) = self.pop(Queue::notification(base)) {
            self.set_status(t, Err(Error::InvalidCapability));
            self.make_runnable(t);
        }
        if let Some(bound) = TcbRef::from_link(self.word(PhysAddr(base.0 + NTFN_BOUND))) {
            self.unbind_notification(bound);
        }
    }
}
