//! Scheduling: 256 fixed priorities, a FIFO ready queue per priority, and a bitmap to find
//! the highest non-empty one. The running (current) thread is not in a ready queue: a
//! thread is queued exactly when it is runnable and not current, so handing the processor
//! from one thread to another in IPC touches no queue. The current thread keeps the
//! processor until it blocks, yields, or a higher-priority thread becomes runnable; a
//! preempted thread goes back to the front of its queue (it keeps its turn).

use super::kmem::KernelMemory;
use super::space::ObjectSpace;
use super::tcb::{TcbRef, ThreadState};

/// Timer ticks a thread runs before others of its priority get their turn.
pub const TIME_SLICE_TICKS: u64 = 5;

impl<M: KernelMemory> ObjectSpace<M> {
    /// The thread the kernel is running on behalf of.
    pub fn current(&self) -> Option<TcbRef> {
        TcbRef::from_link(self.current)
    }

    /// Sets the current thread (at boot, and after choosing).
    pub fn set_current(&mut self, tcb: Option<TcbRef>) {
        self.current = tcb.map_or(0, TcbRef::link);
    }

    /// Puts `t` at the front of its priority's queue.
    #[inline]
    fn enqueue_front(&mut self, t: TcbRef) {
        if t.queued(&self.mem) != 0 {
            return;
        }
        let p = (t.priority(&self.mem) & 0xff) as usize;
        let head = self.ready[p][0];
        t.set_sched_prev(&mut self.mem, 0);
        t.set_sched_next(&mut self.mem, head);
        match TcbRef::from_link(head) {
            Some(first) => first.set_sched_prev(&mut self.mem, t.link()),
            None => self.ready[p][1] = t.link(),
        }
        self.ready[p][0] = t.link();
        self.ready_bitmap[p / 64] |= 1 << (p % 64);
        self.ready_summary |= 1 << (p / 64);
        t.set_queued(&mut self.mem, 1);
    }

    #[inline]
    pub(crate) fn enqueue(&mut self, t: TcbRef) {
        if t.queued(&self.mem) != 0 {
            return;
        }
        let p = (t.priority(&self.mem) & 0xff) as usize;
        let [head, tail] = self.ready[p];
        t.set_sched_next(&mut self.mem, 0);
        t.set_sched_prev(&mut self.mem, tail);
        match TcbRef::from_link(tail) {
            Some(last) => last.set_sched_next(&mut self.mem, t.link()),
            None => self.ready[p][0] = t.link(),
        }
        let _ = head;
        self.ready[p][1] = t.link();
        self.ready_bitmap[p / 64] |= 1 << (p % 64);
        self.ready_summary |= 1 << (p / 64);
        t.set_queued(&mut self.mem, 1);
    }

    #[inline]
    pub(crate) fn dequeue(&mut self, t: TcbRef) {
        if t.queued(&self.mem) == 0 {
            return;
        }
        let p = (t.priority(&self.mem) & 0xff) as usize;
        let (next, prev) = (t.sched_next(&self.mem), t.sched_prev(&self.mem));
        match TcbRef::from_link(prev) {
            Some(before) => before.set_sched_next(&mut self.mem, next),
            None => self.ready[p][0] = next,
        }
        match TcbRef::from_link(next) {
            Some(after) => after.set_sched_prev(&mut self.mem, prev),
            None => self.ready[p][1] = prev,
        }
        if self.ready[p][0] == 0 {
            self.ready_bitmap[p / 64] &= !(1 << (p % 64));
            if self.ready_bitmap[p / 64] == 0 {
                self.ready_summary &= !(1 << (p / 64));
            }
        }
        t.set_sched_next(&mut self.mem, 0);
        t.set_sched_prev(&mut self.mem, 0);
        t.set_queued(&mut self.mem, 0);
    }

    /// The current thread, still runnable, gives way to a higher priority: it goes to the
    /// front of its queue (it keeps its turn) and nothing is current.
    pub(crate) fn preempt_current(&mut self) {
        if let Some(t) = self.current() {
            self.enqueue_front(t);
            self.current = 0;
        }
    }

    /// Test harness: `t` (runnable) becomes the current thread as if the scheduler had
    /// picked it; the thread it displaces, if runnable, goes to the front of its queue.
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn run_now(&mut self, t: TcbRef) {
        if self.current == t.link() {
            return;
        }
        if let Some(old) = self.current()
            && old.state(&self.mem) == ThreadState::Running
        {
            self.enqueue_front(old);
        }
        self.dequeue(t);
        self.set_current(Some(t));
    }

    /// Makes `t` runnable (at the back of its priority's queue, unless it is current).
    pub fn make_runnable(&mut self, t: TcbRef) {
        t.set_state(&mut self.mem, ThreadState::Running);
        t.set_blocked_on(&mut self.mem, 0);
        if t.link() != self.current {
            self.enqueue(t);
        }
    }

    /// Takes `t` off the ready queues with a non-running `state`.
    pub(crate) fn block(&mut self, t: TcbRef, state: ThreadState, on: u64) {
        self.dequeue(t);
        t.set_state(&mut self.mem, state);
        t.set_blocked_on(&mut self.mem, on);
    }

    /// Changes `t`'s priority, keeping its place among runnable threads.
    pub fn set_priority(&mut self, t: TcbRef, priority: u8) {
        let queued = t.queued(&self.mem) != 0;
        self.dequeue(t);
        t.set_priority(&mut self.mem, u64::from(priority));
        if queued {
            self.enqueue(t);
        }
    }

    /// Moves the current thread behind the others of its priority.
    pub fn yield_current(&mut self) {
        if let Some(t) = self.current()
            && t.state(&self.mem) == ThreadState::Running
        {
            self.enqueue(t);
            self.current = 0;
        }
    }

    /// A timer tick: the current thread uses up one tick of its time slice; when the
    /// slice is gone it goes behind the other runnable threads of its priority
    /// (round-robin) with a fresh slice.
    pub fn timer_tick(&mut self) {
        if let Some(t) = self.current()
            && t.state(&self.mem) == ThreadState::Running
        {
            // A slice of 0 is a fresh one (threads start with it).
            let slice = match t.time_slice(&self.mem) {
                0 => TIME_SLICE_TICKS,
                n => n,
            };
            let left = slice - 1;
            if left == 0 {
                t.set_time_slice(&mut self.mem, TIME_SLICE_TICKS);
                self.yield_current();
            } else {
                t.set_time_slice(&mut self.mem, left);
            }
        }
    }

    #[inline]
    pub(crate) fn highest_ready(&self) -> Option<usize> {
        if self.ready_summary == 0 {
            return None;
        }
        let w = (63 - self.ready_summary.leading_zeros()) as usize & 3;
        Some(w * 64 + 63 - self.ready_bitmap[w].leading_zeros() as usize)
    }

    /// Decides who runs next: the current thread if it is still runnable and no
    /// runnable thread has a higher priority, else the first of the highest priority.
    pub fn choose(&mut self) -> Option<TcbRef> {
        let best = self.highest_ready();
        if let Some(t) = self.current()
            && t.state(&self.mem) == ThreadState::Running
        {
            if best.is_none_or(|p| t.priority(&self.mem) >= p as u64) {
                return Some(t);
            }
            // Preempted: it keeps its turn at its priority.
            self.enqueue_front(t);
        }
        let next = best.and_then(|p| TcbRef::from_link(self.ready[p][0]));
        if let Some(n) = next {
            self.dequeue(n);
        }
        self.set_current(next);
        next
    }
}
