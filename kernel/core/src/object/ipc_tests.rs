//! Host tests of threads, scheduling, IPC, notifications and replies: threads are TCBs in
//! test memory, system calls are made by setting a thread's registers and calling
//! `ObjectSpace::syscall` as the kernel entry does.

extern crate std;

use super::cap::Cap;
use super::invoke::Hardware;
use super::kmem::{KernelMemory, TestMemory};
use super::slot::SlotOps;
use super::space::ObjectSpace;
use super::syscall::Outcome;
use super::tcb::{CONSOLE_LINE, Registers, TcbRef, ThreadState, privilege};
use crate::VirtAddr;
use crate::addr::PhysAddr;
use crate::object::paging::At;
use cleave_abi::object::label;
use cleave_abi::vcpu::exit::reason;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights, Syscall};

const ROOT: u64 = 0x10_1000;
pub(super) const VSPACE_SLOT: u64 = 3;
/// The world's ASID pool.
pub(super) const POOL_SLOT: u64 = 63;

pub(super) struct NoPorts;
impl Hardware for NoPorts {
    fn read(&mut self, _: u16, _: u8) -> u32 {
        0
    }
    fn write(&mut self, _: u16, _: u8, _: u32) {}
    fn set_irq_masked(&mut self, _: u8, _: bool) {}
}

pub(super) fn slot(i: u64) -> PhysAddr {
    PhysAddr(ROOT + 64 * i)
}

pub(super) struct World {
    pub(super) s: ObjectSpace<TestMemory>,
    /// The "root" thread that configures the others (slot 2).
    pub(super) boss: TcbRef,
}

/// Root CNode (slot 0), 1 MiB untyped (slot 1), a boss TCB (slot 2, MCP 255, running),
/// a VSpace capability (slot 3).
pub(super) fn world() -> World {
    let mut s = ObjectSpace::new(TestMemory::new(0x10_0000, 0x20_0000), PhysAddr(0x10_0000));
    let root = Cap::CNode { base: PhysAddr(ROOT), radix: 6, guard: 0, guard_bits: 58 };
    s.insert_original(slot(0), root).unwrap();
    s.insert_original(
        slot(1),
        Cap::Untyped {
            base: PhysAddr(0x20_0000),
            size_bits: 20,
            watermark: 0,
            device: false,
            frames_only: false,
        },
    )
    .unwrap();
    s.retype(slot(1), ObjectType::Tcb, 0, 1, slot(2)).unwrap();
    s.insert_original(slot(VSPACE_SLOT), Cap::VSpace { base: PhysAddr(0x1f_f000), asid: 0 }).unwrap();
    // An ASID pool (slot 63) gives the roots tests make their ASIDs, this one first.
    let high = s.make_asid_pool(PhysAddr(0x1f_e000)).unwrap();
    s.insert_original(slot(POOL_SLOT), Cap::AsidPool { base: PhysAddr(0x1f_e000), high: high as u8 })
        .unwrap();
    s.assign_from_pool(s.mem.cap_at(slot(POOL_SLOT)), slot(VSPACE_SLOT)).unwrap();
    let Cap::Tcb { base } = s.mem.cap_at(slot(2)) else { panic!() };
    let boss = TcbRef(base);
    s.copy(slot(0), boss.slot(0)).unwrap();
    s.copy(slot(VSPACE_SLOT), boss.slot(1)).unwrap();
    boss.set_mcp(&mut s.mem, 255);
    boss.set_priority(&mut s.mem, 100);
    s.set_current(Some(boss));
    s.make_runnable(boss);
    World { s, boss }
}

impl World {
    /// Makes `t` the current thread and performs a system call for it.
    pub(super) fn sys(
        &mut self,
        t: TcbRef,
        call: Syscall,
        cptr: u64,
        info: MessageInfo,
        words: [u64; 4],
    ) -> Outcome {
        let mut r = t.regs(&self.s.mem);
        r.rax = call as u64;
        r.rdi = cptr;
        r.rsi = info.0;
        [r.rdx, r.r8, r.r9, r.r10] = words;
        t.set_regs(&mut self.s.mem, &r);
        self.s.run_now(t);
        let outcome = self.s.syscall(&mut NoPorts);
        self.s.choose();
        outcome
    }

    /// An invocation by the boss; returns the status.
    pub(super) fn invoke(&mut self, cptr: u64, label: u64, words: &[u64]) -> Result<(), Error> {
        let boss = self.boss;
        // The boss has no IPC buffer: at most four words reach the kernel.
        let mut four = [0; 4];
        for (d, s) in four.iter_mut().zip(words) {
            *d = *s;
        }
        self.sys(boss, Syscall::Call, cptr, MessageInfo::new(label, 0, 0, words.len() as u64), four);
        Error::check(self.status(boss))
    }

    pub(super) fn status(&self, t: TcbRef) -> u64 {
        t.regs(&self.s.mem).rax
    }

    pub(super) fn state(&self, t: TcbRef) -> ThreadState {
        t.state(&self.s.mem)
    }

    /// Retypes one object into `dest` (from the untyped in slot 1).
    pub(super) fn make(&mut self, ty: ObjectType, dest: u64) {
        self.s.retype(slot(1), ty, 0, 1, slot(dest)).unwrap();
        if matches!(ty, ObjectType::Pml4 | ObjectType::EptPml4) {
            self.assign(dest);
        }
    }

    /// A guest-physical space with its tables down to a page table, covering guest-physical
    /// 0-2 MiB: the root in slot 41 (with an ASID), the tables in slots 42-44, mapped.
    pub(super) fn guest_space(&mut self) {
        for (ty, dest) in [
            (ObjectType::EptPml4, 41),
            (ObjectType::EptPdpt, 42),
            (ObjectType::EptPd, 43),
            (ObjectType::EptPt, 44),
        ] {
            self.make(ty, dest);
        }
        for table in [42, 43, 44] {
            self.invoke(table, label::EPT_TABLE_MAP, &[41, 0]).unwrap();
        }
    }

    /// Gives the root at slot `dest` an ASID from the world's pool.
    pub(super) fn assign(&mut self, dest: u64) {
        self.s.assign_from_pool(self.s.mem.cap_at(slot(POOL_SLOT)), slot(dest)).unwrap();
    }

    /// A runnable thread in slot `dest` at `priority` sharing the boss's spaces, with an
    /// IPC buffer frame retyped into `dest + 1`.
    pub(super) fn thread(&mut self, dest: u64, priority: u64) -> TcbRef {
        self.make(ObjectType::Tcb, dest);
        self.make(ObjectType::Frame4K, dest + 1);
        // Configure takes five words, more than the boss can send without an IPC buffer.
        let short = self.invoke(dest, label::TCB_CONFIGURE, &[0, VSPACE_SLOT, 0x7000_0000, dest + 1]);
        assert_eq!(short, Err(Error::TruncatedMessage));
        let Cap::Tcb { base } = self.s.mem.cap_at(slot(dest)) else { panic!() };
        let t = TcbRef(base);
        // So place its capabilities directly, as Configure would.
        self.s.copy(slot(0), t.slot(0)).unwrap();
        self.s.copy(slot(VSPACE_SLOT), t.slot(1)).unwrap();
        self.s.copy(slot(dest + 1), t.slot(2)).unwrap();
        t.set_regs(&mut self.s.mem, &Registers::user(0x40_1000, 0x7000_0000));
        self.invoke(dest, label::TCB_SET_PRIORITY, &[priority]).unwrap();
        self.invoke(dest, label::TCB_RESUME, &[]).unwrap();
        t
    }
}

const EP: u64 = 10;

#[test]
fn call_reply_round_trip_and_one_shot_reply() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.s.mint(slot(EP), slot(EP + 1), Rights::ALL, 0xbad).unwrap();
    let server = w.thread(20, 50);
    let client = w.thread(22, 50);
    w.sys(server, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(server), ThreadState::BlockedOnReceive);
    // The client sends six words: four in registers, two through IPC buffers.
    assert!(w.s.write_message_word(client, 4, 44));
    assert!(w.s.write_message_word(client, 5, 55));
    w.sys(client, Syscall::Call, EP + 1, MessageInfo::new(7, 0, 0, 6), [1, 2, 3, 4]);
    assert_eq!(w.state(client), ThreadState::BlockedOnReply);
    assert_eq!(w.state(server), ThreadState::Running);
    let r = server.regs(&w.s.mem);
    assert_eq!((r.rax, r.rdi, MessageInfo(r.rsi).label(), MessageInfo(r.rsi).length()), (0, 0xbad, 7, 6));
    assert_eq!([r.rdx, r.r8, r.r9, r.r10], [1, 2, 3, 4]);
    assert_eq!(w.s.message_word(server, 5), Some(55));
    // Reply once: the client runs with the reply; twice: the reply capability is gone.
    w.sys(server, Syscall::Reply, 0, MessageInfo::new(0, 0, 0, 1), [99, 0, 0, 0]);
    assert_eq!(w.status(server), 0);
    assert_eq!(w.state(client), ThreadState::Running);
    assert_eq!(client.regs(&w.s.mem).rdx, 99);
    w.sys(server, Syscall::Reply, 0, MessageInfo::new(0, 0, 0, 1), [98, 0, 0, 0]);
    assert_eq!(w.status(server), Error::InvalidCapability as u64);
    assert_eq!(client.regs(&w.s.mem).rdx, 99);
}

#[test]
fn send_blocks_until_a_receiver_arrives_and_nonblocking_calls_do_not() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    let a = w.thread(20, 50);
    let b = w.thread(22, 50);
    w.sys(a, Syscall::NbSend, EP, MessageInfo::new(1, 0, 0, 1), [5, 0, 0, 0]);
    assert_eq!((w.state(a), w.status(a)), (ThreadState::Running, 0));
    w.sys(b, Syscall::NbRecv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(b), b.regs(&w.s.mem).rsi), (ThreadState::Running, 0));
    w.sys(a, Syscall::Send, EP, MessageInfo::new(1, 0, 0, 1), [6, 0, 0, 0]);
    assert_eq!(w.state(a), ThreadState::BlockedOnSend);
    w.sys(b, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), w.state(b)), (ThreadState::Running, ThreadState::Running));
    assert_eq!(b.regs(&w.s.mem).rdx, 6);
}

#[test]
fn rights_and_bad_capabilities() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.s.mint(slot(EP), slot(EP + 1), Rights::READ, 0).unwrap();
    let a = w.thread(20, 50);
    w.sys(a, Syscall::Send, EP + 1, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), w.status(a)), (ThreadState::Running, Error::InsufficientRights as u64));
    w.sys(a, Syscall::Recv, 40, MessageInfo::default(), [0; 4]);
    assert_eq!(w.status(a), Error::InvalidCapability as u64);
    w.sys(a, Syscall::Send, 1 << 62, MessageInfo::default(), [0; 4]);
    assert_eq!(w.status(a), Error::FailedLookup as u64);
    // The console is a privilege: refused without it.
    assert_eq!(w.sys(a, Syscall::DebugPutChar, b'x' as u64, MessageInfo::default(), [0; 4]), Outcome::Done);
    assert_eq!(w.status(a), Error::IllegalOperation as u64);
    a.set_privileges(&mut w.s.mem, privilege::CONSOLE);
    // Console bytes collect in the TCB and come out a whole line at a time.
    assert_eq!(w.sys(a, Syscall::DebugPutChar, b'x' as u64, MessageInfo::default(), [0; 4]), Outcome::Done);
    assert_eq!(w.status(a), 0);
    assert_eq!(w.sys(a, Syscall::DebugPutChar, 0, MessageInfo::default(), [0; 4]), Outcome::Done);
    match w.sys(a, Syscall::DebugPutChar, u64::from(b'\n') | 0xff00, MessageInfo::default(), [0; 4]) {
        Outcome::DebugLine(line, len) => assert_eq!(&line[..len], b"x\0\n"),
        other => panic!("a newline ends the line: {other:?}"),
    }
    // A line longer than the TCB holds comes out in full pieces; nothing is lost.
    let mut out = std::vec::Vec::new();
    for i in 0..CONSOLE_LINE + 10 {
        if let Outcome::DebugLine(line, len) =
            w.sys(a, Syscall::DebugPutChar, b'a' as u64 + (i % 26) as u64, MessageInfo::default(), [0; 4])
        {
            assert_eq!(len, CONSOLE_LINE);
            out.extend_from_slice(&line[..len]);
        }
    }
    assert_eq!(out.len(), CONSOLE_LINE);
    // Ending the run is a privilege: without it (and without a fault handler) the thread
    // only ends itself, then it is given.
    match w.sys(a, Syscall::DebugExit, 3, MessageInfo::default(), [0; 4]) {
        Outcome::Ended(t, 3, line, 10) if t == a => out.extend_from_slice(&line[..10]),
        other => panic!("the thread ends itself, its unfinished line with it: {other:?}"),
    }
    assert_eq!(w.state(a), ThreadState::Inactive);
    w.invoke(20, label::TCB_RESUME, &[]).unwrap();
    a.set_privileges(&mut w.s.mem, privilege::END_RUN | privilege::CONSOLE);
    w.sys(a, Syscall::DebugPutChar, b'!' as u64, MessageInfo::default(), [0; 4]);
    match w.sys(a, Syscall::DebugExit, 3, MessageInfo::default(), [0; 4]) {
        Outcome::DebugExit(3, line, 1) => assert_eq!(line[0], b'!'),
        other => panic!("the exit carries the unfinished line: {other:?}"),
    }
    assert!(out.iter().enumerate().all(|(i, &b)| b == b'a' + (i % 26) as u8));
    let mut r = a.regs(&w.s.mem);
    r.rax = 0xdead;
    a.set_regs(&mut w.s.mem, &r);
    w.s.run_now(a);
    assert_eq!(w.s.syscall(&mut NoPorts), Outcome::UnknownSyscall(0xdead));
}

#[test]
fn notifications_accumulate_badges_and_wake_waiters() {
    let mut w = world();
    w.make(ObjectType::Notification, EP);
    w.s.mint(slot(EP), slot(EP + 1), Rights::WRITE, 1).unwrap();
    w.s.mint(slot(EP), slot(EP + 2), Rights::WRITE, 4).unwrap();
    let a = w.thread(20, 50);
    w.sys(a, Syscall::Send, EP + 1, MessageInfo::default(), [0; 4]);
    w.sys(a, Syscall::Send, EP + 2, MessageInfo::default(), [0; 4]);
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), a.regs(&w.s.mem).rdi), (ThreadState::Running, 5));
    w.sys(a, Syscall::NbRecv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(a.regs(&w.s.mem).rdi, 0);
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(a), ThreadState::BlockedOnNotification);
    w.sys(w.boss, Syscall::Send, EP + 2, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), a.regs(&w.s.mem).rdi), (ThreadState::Running, 4));
    // Without the write right a signal is refused.
    w.s.mint(slot(EP), slot(EP + 3), Rights::READ, 8).unwrap();
    w.sys(a, Syscall::Send, EP + 3, MessageInfo::default(), [0; 4]);
    assert_eq!(w.status(a), Error::InsufficientRights as u64);
}

/// Where the notification in slot `n` lives.
fn notification_base(w: &World, n: u64) -> PhysAddr {
    match w.s.mem.cap_at(slot(n)) {
        Cap::Notification { base, .. } => base,
        other => panic!("slot {n} holds {other:?}"),
    }
}

#[test]
fn bound_notification_wakes_a_thread_waiting_on_an_endpoint() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.make(ObjectType::Notification, EP + 1);
    w.s.mint(slot(EP + 1), slot(EP + 2), Rights::WRITE, 2).unwrap();
    let a = w.thread(20, 50);
    w.invoke(20, label::TCB_BIND_NOTIFICATION, &[EP + 1]).unwrap();
    assert_eq!(w.invoke(20, label::TCB_BIND_NOTIFICATION, &[EP + 1]), Err(Error::IllegalOperation));
    assert!(!w.s.signal_could_wake(notification_base(&w, EP + 1)), "a runs");
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(a), ThreadState::BlockedOnReceive);
    assert!(w.s.signal_could_wake(notification_base(&w, EP + 1)), "a signal would end a's receive");
    w.sys(w.boss, Syscall::Send, EP + 2, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), a.regs(&w.s.mem).rdi), (ThreadState::Running, 2));
    // The endpoint queue is empty again: a sender now blocks.
    w.sys(w.boss, Syscall::NbSend, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(w.boss), ThreadState::Running);
}

#[test]
fn destroying_objects_wakes_their_waiters_with_errors() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    let a = w.thread(20, 50);
    let b = w.thread(22, 50);
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.s.delete(slot(EP)).unwrap();
    assert_eq!((w.state(a), w.status(a)), (ThreadState::Running, Error::InvalidCapability as u64));
    // A caller whose server is destroyed gets an error instead of waiting forever.
    w.make(ObjectType::Endpoint, EP);
    w.sys(b, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(a, Syscall::Call, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(a), ThreadState::BlockedOnReply);
    w.s.delete(slot(22)).unwrap();
    assert_eq!((w.state(a), w.status(a)), (ThreadState::Running, Error::ReplyLost as u64));
    // And a deleted current thread is no longer chosen.
    w.s.run_now(a);
    w.s.delete(slot(20)).unwrap();
    assert_eq!(w.s.choose(), Some(w.boss));
}

#[test]
fn priorities_preempt_and_yield_rotates() {
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    let low = w.thread(20, 10);
    let high = w.thread(22, 200);
    let peer = w.thread(24, 10);
    // The boss (100) lowers itself below everyone's reach: the high thread runs first.
    w.invoke(2, label::TCB_SET_PRIORITY, &[5]).unwrap();
    assert_eq!(w.s.choose(), Some(high));
    w.sys(high, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.s.current(), Some(low));
    w.sys(low, Syscall::Yield, 0, MessageInfo::default(), [0; 4]);
    assert_eq!(w.s.current(), Some(peer));
    // A send that wakes the high-priority receiver switches to it.
    w.sys(peer, Syscall::Send, EP, MessageInfo::new(0, 0, 0, 0), [0; 4]);
    assert_eq!(w.s.current(), Some(high));
    // Priorities above the caller's MCP are refused.
    w.boss.set_mcp(&mut w.s.mem, 20);
    assert_eq!(w.invoke(20, label::TCB_SET_PRIORITY, &[21]), Err(Error::RangeError));
}

#[test]
fn tcb_registers_and_resume_rules() {
    let mut w = world();
    w.make(ObjectType::Tcb, 20);
    // Resume needs a CSpace and a VSpace.
    assert_eq!(w.invoke(20, label::TCB_RESUME, &[]), Err(Error::IllegalOperation));
    assert_eq!(w.invoke(20, label::TCB_CONFIGURE, &[0, VSPACE_SLOT, 0, 0]), Err(Error::TruncatedMessage));
    let Cap::Tcb { base } = w.s.mem.cap_at(slot(20)) else { panic!() };
    let t = TcbRef(base);
    w.s.copy(slot(0), t.slot(0)).unwrap();
    w.s.copy(slot(VSPACE_SLOT), t.slot(1)).unwrap();
    // Write rip and rsp without resuming, read them back, then resume.
    w.invoke(20, label::TCB_WRITE_REGISTERS, &[0, 0x40_2000, 0x7000_0000]).unwrap();
    assert_eq!(w.state(t), ThreadState::Inactive);
    w.invoke(20, label::TCB_READ_REGISTERS, &[]).unwrap();
    assert_eq!([w.boss.regs(&w.s.mem).rdx, w.boss.regs(&w.s.mem).r8], [0x40_2000, 0x7000_0000]);
    assert_eq!(
        w.invoke(20, label::TCB_WRITE_REGISTERS, &[1, 0xffff_8000_0000_0000]),
        Err(Error::InvalidArgument)
    );
    w.invoke(20, label::TCB_RESUME, &[]).unwrap();
    assert_eq!(w.state(t), ThreadState::Running);
    assert!(t.regs(&w.s.mem).from_user());
    w.invoke(20, label::TCB_SUSPEND, &[]).unwrap();
    assert_eq!(w.state(t), ThreadState::Inactive);
}

#[test]
fn faults_go_to_the_fault_endpoint_and_a_reply_resumes() {
    use cleave_abi::syscall::fault;
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.s.mint(slot(EP), slot(EP + 1), Rights::ALL, 0x77).unwrap();
    let handler = w.thread(20, 150);
    let crasher = w.thread(22, 50);
    w.s.copy(slot(EP + 1), crasher.slot(3)).unwrap();
    w.sys(handler, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    // An unknown system call: the handler gets the number, its reply becomes rax.
    let before = crasher.regs(&w.s.mem);
    assert!(w.s.raise_fault(
        crasher,
        fault::UNKNOWN_SYSCALL,
        [0xbeef, before.rip, before.rsp, before.rflags]
    ));
    assert_eq!(w.state(crasher), ThreadState::BlockedOnReply);
    let r = handler.regs(&w.s.mem);
    assert_eq!((r.rdi, MessageInfo(r.rsi).label(), r.rdx), (0x77, fault::UNKNOWN_SYSCALL, 0xbeef));
    w.sys(handler, Syscall::ReplyRecv, EP, MessageInfo::new(0, 0, 0, 1), [42, 0, 0, 0]);
    assert_eq!(w.state(crasher), ThreadState::Running);
    let after = crasher.regs(&w.s.mem);
    assert_eq!(after.rax, 42);
    assert_eq!((after.rip, after.rsp, after.rdx), (before.rip, before.rsp, before.rdx));
    // A fault while the handler is busy queues; deleting the endpoint restarts the thread
    // with its registers untouched.
    w.sys(handler, Syscall::Yield, 0, MessageInfo::default(), [0; 4]);
    w.s.suspend(handler);
    assert!(w.s.raise_fault(crasher, fault::VM_FAULT, [0x1000, 4, after.rip, after.rsp]));
    assert_eq!(w.state(crasher), ThreadState::BlockedOnSend);
    w.s.delete(slot(EP + 1)).unwrap();
    w.s.delete(slot(EP)).unwrap();
    // The copy in the crasher's TCB keeps the endpoint alive until it goes too.
    assert_eq!(w.state(crasher), ThreadState::BlockedOnSend);
    w.s.delete(crasher.slot(3)).unwrap();
    assert_eq!(w.state(crasher), ThreadState::Running);
    assert_eq!(crasher.regs(&w.s.mem).rax, 42);
    // Without a fault endpoint, nothing is delivered.
    assert!(!w.s.raise_fault(crasher, fault::VM_FAULT, [0; 4]));
}

#[test]
fn a_signal_with_badge_zero_is_not_lost() {
    let mut w = world();
    w.make(ObjectType::Notification, EP);
    let a = w.thread(20, 50);
    // Signal through the unbadged original while nobody waits: the wait still returns.
    w.sys(w.boss, Syscall::Send, EP, MessageInfo::default(), [0; 4]);
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(a), a.regs(&w.s.mem).rdi), (ThreadState::Running, 0));
    // Consumed: the next wait blocks.
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(a), ThreadState::BlockedOnNotification);
}

#[test]
fn interrupt_lines_are_issued_once_and_signal_their_notification() {
    let mut w = world();
    w.make(ObjectType::Notification, EP);
    w.s.insert_original(slot(30), Cap::IrqControl).unwrap();
    w.s.reserve_irq(4);
    let a = w.thread(20, 50);
    w.invoke(30, label::IRQ_CONTROL_GET, &[0, 0, 31, 64]).unwrap();
    assert_eq!(w.invoke(30, label::IRQ_CONTROL_GET, &[0, 0, 32, 64]), Err(Error::RevokeFirst));
    assert_eq!(w.invoke(30, label::IRQ_CONTROL_GET, &[4, 0, 32, 64]), Err(Error::RevokeFirst));
    assert_eq!(w.invoke(30, label::IRQ_CONTROL_GET, &[16, 0, 32, 64]), Err(Error::RangeError));
    assert!(!w.s.interrupts_can_wake());
    w.invoke(31, label::IRQ_HANDLER_SET_NOTIFICATION, &[EP]).unwrap();
    assert!(!w.s.interrupts_can_wake(), "a line is bound, but nobody waits for it");
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert!(!w.s.interrupts_can_wake(), "a waits, but the line is masked until acknowledged");
    w.invoke(31, label::IRQ_HANDLER_ACK, &[]).unwrap();
    assert!(w.s.interrupts_can_wake(), "a waits on the armed line's notification");
    assert!(w.s.irq_fired(0));
    assert_eq!(w.state(a), ThreadState::Running);
    assert!(!w.s.interrupts_can_wake(), "a runs: the interrupt would wake nobody");
    // a waits again without acknowledging the line (as a supervisor with nothing left to
    // time): it cannot fire.
    w.sys(a, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert!(!w.s.interrupts_can_wake(), "the line fired and was not acknowledged");
    w.invoke(31, label::IRQ_HANDLER_ACK, &[]).unwrap();
    assert!(w.s.interrupts_can_wake());
    // Then it is suspended (as a driver that stopped): nobody to wake.
    w.s.suspend(a);
    assert!(!w.s.interrupts_can_wake(), "a suspended waiter leaves the queue");
    assert!(!w.s.irq_fired(3));
    // Deleting the handler frees and disarms the line, and leaves it to be masked (an
    // invocation masks it before returning).
    w.s.delete(slot(31)).unwrap();
    assert!(!w.s.interrupts_can_wake());
    assert!(!w.s.irq_lines[0].armed);
    assert_eq!(w.s.take_lines_to_mask(), 1, "line 0 was unmasked");
    // Issued again, never acknowledged (masked), deleted: nothing to mask.
    w.invoke(30, label::IRQ_CONTROL_GET, &[0, 0, 32, 64]).unwrap();
    w.s.delete(slot(32)).unwrap();
    assert_eq!(w.s.take_lines_to_mask(), 0);
    w.invoke(30, label::IRQ_CONTROL_GET, &[0, 0, 32, 64]).unwrap();
}

#[test]
fn timer_ticks_rotate_equal_priorities() {
    let mut w = world();
    let a = w.thread(20, 200);
    let b = w.thread(22, 200);
    assert_eq!(w.s.choose(), Some(a));
    for _ in 0..super::sched::TIME_SLICE_TICKS {
        assert_eq!(w.s.current(), Some(a));
        w.s.timer_tick();
        w.s.choose();
    }
    assert_eq!(w.s.current(), Some(b));
}

#[test]
fn page_tables_and_frames_map_unmap_and_refuse_what_is_missing() {
    let mut w = world();
    // A fresh VSpace with an ASID, and one table of each level plus two frames.
    w.s.retype(slot(1), ObjectType::Pml4, 0, 1, slot(40)).unwrap();
    w.assign(40);
    w.s.retype(slot(1), ObjectType::Pdpt, 0, 1, slot(41)).unwrap();
    w.s.retype(slot(1), ObjectType::PageDirectory, 0, 1, slot(42)).unwrap();
    w.s.retype(slot(1), ObjectType::PageTable, 0, 1, slot(43)).unwrap();
    w.s.retype(slot(1), ObjectType::Frame4K, 0, 2, slot(44)).unwrap();
    let Cap::VSpace { base: pml4, asid } = w.s.mem.cap_at(slot(40)) else { panic!() };
    assert_ne!(asid, 0);
    let vaddr = 0x1234_5000u64;
    let map = |w: &mut World, s: u64| w.invoke(s, label::FRAME_MAP, &[40, vaddr, 0b11, 0]);
    // Mapping into a missing page table is a failed lookup, from the top down.
    assert_eq!(map(&mut w, 44), Err(Error::FailedLookup));
    for table in [41, 42] {
        w.invoke(table, label::PAGE_TABLE_MAP, &[40, vaddr]).unwrap();
        assert_eq!(map(&mut w, 44), Err(Error::FailedLookup));
    }
    w.invoke(43, label::PAGE_TABLE_MAP, &[40, vaddr]).unwrap();
    assert_eq!(w.invoke(43, label::PAGE_TABLE_MAP, &[40, vaddr]), Err(Error::IllegalOperation));
    map(&mut w, 44).unwrap();
    // The entry is there: present, user, writable, pointing at the frame.
    let Cap::Frame { base: frame, mapping: Some(m), .. } = w.s.mem.cap_at(slot(44)) else { panic!() };
    assert_eq!(m.at, At::Virt(VirtAddr(vaddr)));
    let Cap::PageTable { base: pt, .. } = w.s.mem.cap_at(slot(43)) else { panic!() };
    let entry: u64 = w.s.mem.read(PhysAddr(pt.0 + 8 * ((vaddr >> 12) & 0x1ff)));
    assert_eq!(entry & 0x000f_ffff_ffff_f000, frame.0);
    assert_eq!(entry & 0b111, 0b111);
    // A second frame at the same address: occupied. The same capability twice: refused.
    assert_eq!(map(&mut w, 45), Err(Error::DeleteFirst));
    assert_eq!(map(&mut w, 44), Err(Error::IllegalOperation));
    // Remap read-only, then unmap; the TLB must be flushed after both.
    w.invoke(44, label::FRAME_REMAP, &[0b10, 1]).unwrap();
    let entry: u64 = w.s.mem.read(PhysAddr(pt.0 + 8 * ((vaddr >> 12) & 0x1ff)));
    assert_eq!((entry & 0b10, entry >> 63), (0, 1));
    assert!(w.s.take_tlb_flush());
    w.invoke(44, label::FRAME_UNMAP, &[]).unwrap();
    assert!(w.s.take_tlb_flush());
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8 * ((vaddr >> 12) & 0x1ff))), 0);
    // Deleting a mapped capability unmaps it; deleting the VSpace frees its ASID and
    // makes every mapping through it stale.
    map(&mut w, 45).unwrap();
    w.s.delete(slot(45)).unwrap();
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8 * ((vaddr >> 12) & 0x1ff))), 0);
    map(&mut w, 44).unwrap();
    w.s.delete(slot(40)).unwrap();
    assert_eq!(w.s.vspace_of(asid), None);
    w.invoke(44, label::FRAME_UNMAP, &[]).unwrap();
    // Kernel addresses, misalignment, missing read right.
    w.s.retype(slot(1), ObjectType::Pml4, 0, 1, slot(40)).unwrap();
    w.assign(40);
    let _ = pml4;
    assert_eq!(w.invoke(44, label::FRAME_MAP, &[40, 0x1001, 3, 0]), Err(Error::AlignmentError));
    assert_eq!(
        w.invoke(44, label::FRAME_MAP, &[40, 0xffff_8000_0000_0000, 3, 0]),
        Err(Error::InvalidArgument)
    );
    assert_eq!(w.invoke(44, label::FRAME_MAP, &[40, 0x1000, 0b01, 0]), Err(Error::InsufficientRights));
    assert_eq!(w.invoke(44, label::FRAME_MAP, &[41, 0x1000, 3, 0]), Err(Error::InvalidCapability));
}

#[test]
fn capabilities_travel_with_the_grant_right_only() {
    use cleave_abi::ipc_buffer::{RECEIVE_OFFSET, cap_offset};
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.s.mint(slot(EP), slot(EP + 1), Rights::ALL, 0).unwrap();
    w.s.mint(slot(EP), slot(EP + 2), Rights(Rights::WRITE.0 | Rights::READ.0), 0).unwrap();
    w.make(ObjectType::Notification, 30);
    let sender = w.thread(20, 50);
    let receiver = w.thread(22, 50);
    let buffer = |w: &World, t: TcbRef, offset: usize| match w.s.mem.cap_at(t.slot(2)) {
        Cap::Frame { base, .. } => PhysAddr(base.0 + offset as u64),
        _ => panic!(),
    };
    // The sender names slot 30; the receiver asks for slot 40 of the root CNode.
    let at = buffer(&w, sender, cap_offset(0));
    w.s.mem.write(at, &30u64);
    let at = buffer(&w, receiver, RECEIVE_OFFSET);
    w.s.mem.write(at, &[0u64, 40, 64]);
    // Without the grant right the message arrives without the capability.
    w.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(sender, Syscall::Send, EP + 2, MessageInfo::new(1, 0, 1, 0), [0; 4]);
    assert_eq!(MessageInfo(receiver.regs(&w.s.mem).rsi).extra_caps(), 0);
    assert!(w.s.mem.cap_at(slot(40)).is_null());
    // With it, a copy lands in slot 40 as a child of the sender's capability.
    w.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(sender, Syscall::Send, EP + 1, MessageInfo::new(1, 0, 1, 0), [0; 4]);
    assert_eq!(MessageInfo(receiver.regs(&w.s.mem).rsi).extra_caps(), 1);
    assert!(matches!(w.s.mem.cap_at(slot(40)), Cap::Notification { .. }));
    assert_eq!(w.s.mem.parent_of(slot(40)), Some(slot(30)));
    // An occupied receive slot: no transfer, message still delivered.
    w.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(sender, Syscall::Send, EP + 1, MessageInfo::new(2, 0, 1, 0), [0; 4]);
    let info = MessageInfo(receiver.regs(&w.s.mem).rsi);
    assert_eq!((info.label(), info.extra_caps()), (2, 0));
    // Untyped memory is never transferred.
    let at = buffer(&w, sender, cap_offset(0));
    w.s.mem.write(at, &1u64);
    let at = buffer(&w, receiver, RECEIVE_OFFSET);
    w.s.mem.write(at, &[0u64, 41, 64]);
    w.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(sender, Syscall::Send, EP + 1, MessageInfo::new(3, 0, 1, 0), [0; 4]);
    assert!(w.s.mem.cap_at(slot(41)).is_null());
}

/// Runs one system call as the kernel entry does, with or without the fast path.
fn enter(
    w: &mut World,
    t: TcbRef,
    call: Syscall,
    cptr: u64,
    info: MessageInfo,
    words: [u64; 4],
    fast: bool,
) -> bool {
    // The entry stub saves the registers in the thread's TCB.
    let mut frame = t.regs(&w.s.mem);
    frame.rax = call as u64;
    frame.rdi = cptr;
    frame.rsi = info.0;
    [frame.rdx, frame.r8, frame.r9, frame.r10] = words;
    t.set_regs(&mut w.s.mem, &frame);
    w.s.run_now(t);
    if fast && w.s.fastpath().is_some() {
        return true;
    }
    w.s.syscall(&mut NoPorts);
    w.s.choose();
    false
}

#[test]
fn the_send_fast_path_does_exactly_what_the_general_path_does() {
    let setup = || {
        let mut w = world();
        w.make(ObjectType::Endpoint, EP);
        w.s.mint(slot(EP), slot(EP + 1), Rights::ALL, 0x77).unwrap();
        let receiver = w.thread(20, 90);
        let sender = w.thread(22, 80);
        let other = w.thread(24, 80);
        w.invoke(2, label::TCB_SET_PRIORITY, &[10]).unwrap();
        w.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
        (w, receiver, sender, other)
    };
    let (mut fast, receiver, sender, other) = setup();
    let (mut slow, _, _, _) = setup();
    let info = MessageInfo::new(5, 0, 0, 3);
    assert!(enter(&mut fast, sender, Syscall::Send, EP + 1, info, [1, 2, 3, 0], true));
    assert!(!enter(&mut slow, sender, Syscall::Send, EP + 1, info, [1, 2, 3, 0], false));
    assert_eq!((fast.s.current(), slow.s.current()), (Some(receiver), Some(receiver)));
    assert!(fast.s.mem.bytes() == slow.s.mem.bytes(), "kernel memory differs");
    assert_eq!(receiver.regs(&fast.s.mem).rdi, 0x77, "the badge arrives");
    // The sender keeps its turn: it runs before `other` once the receiver waits again.
    fast.sys(receiver, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(fast.s.current(), Some(sender));
    let _ = other;
    // A receiver that would not preempt: the general path.
    let (mut w, receiver, sender, _) = setup();
    w.invoke(20, label::TCB_SET_PRIORITY, &[80]).unwrap();
    let _ = receiver;
    assert!(!enter(&mut w, sender, Syscall::Send, EP + 1, info, [1, 2, 3, 0], true));
}

#[test]
fn the_fast_path_does_exactly_what_the_general_path_does() {
    let setup = || {
        let mut w = world();
        w.make(ObjectType::Endpoint, EP);
        w.s.mint(slot(EP), slot(EP + 1), Rights::ALL, 0x44).unwrap();
        let server = w.thread(20, 90);
        let client = w.thread(22, 80);
        // The boss steps aside so the two can hand the processor to each other.
        w.invoke(2, label::TCB_SET_PRIORITY, &[10]).unwrap();
        w.sys(server, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
        (w, server, client)
    };
    let (mut fast, server, client) = setup();
    let (mut slow, _, _) = setup();
    let steps: [(TcbRef, Syscall, u64, MessageInfo, [u64; 4]); 4] = [
        (client, Syscall::Call, EP + 1, MessageInfo::new(3, 0, 0, 2), [7, 8, 0, 0]),
        (server, Syscall::ReplyRecv, EP, MessageInfo::new(0, 0, 0, 1), [15, 0, 0, 0]),
        (client, Syscall::Call, EP + 1, MessageInfo::new(4, 0, 0, 4), [1, 2, 3, 4]),
        (server, Syscall::ReplyRecv, EP, MessageInfo::new(9, 0, 0, 3), [5, 6, 7, 0]),
    ];
    for (i, &(t, call, cptr, info, words)) in steps.iter().enumerate() {
        assert!(enter(&mut fast, t, call, cptr, info, words, true), "step {i} not on the fast path");
        assert!(!enter(&mut slow, t, call, cptr, info, words, false));
        assert_eq!(fast.s.current(), slow.s.current(), "step {i}: different thread runs");
        assert!(fast.s.mem.bytes() == slow.s.mem.bytes(), "step {i}: kernel memory differs");
    }
    assert_eq!(client.regs(&fast.s.mem).rdx, 5);
    // Cases the fast path leaves alone: a longer message, a receiver that would not run
    // next, a reply to nobody.
    let (mut w, _, client) = setup();
    assert!(!enter(&mut w, client, Syscall::Call, EP + 1, MessageInfo::new(0, 0, 0, 5), [0; 4], true));
    let (mut w, _, client) = setup();
    w.invoke(20, label::TCB_SET_PRIORITY, &[5]).unwrap();
    assert!(!enter(&mut w, client, Syscall::Call, EP + 1, MessageInfo::default(), [0; 4], true));
    let (mut w, server, _) = setup();
    assert!(!enter(&mut w, server, Syscall::ReplyRecv, EP, MessageInfo::default(), [0; 4], true));
}

#[test]
fn the_signal_fast_path_does_exactly_what_the_general_path_does() {
    const NT: u64 = EP + 4;
    let setup = || {
        let mut w = world();
        w.make(ObjectType::Notification, NT);
        w.s.mint(slot(NT), slot(NT + 1), Rights::ALL, 0x5).unwrap();
        let waiter = w.thread(20, 90);
        let signaller = w.thread(22, 50);
        let other = w.thread(24, 50);
        w.invoke(2, label::TCB_SET_PRIORITY, &[10]).unwrap();
        w.sys(waiter, Syscall::Recv, NT, MessageInfo::default(), [0; 4]);
        (w, waiter, signaller, other)
    };
    let (mut fast, waiter, signaller, _) = setup();
    let (mut slow, _, _, _) = setup();
    assert!(enter(&mut fast, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], true));
    assert!(!enter(&mut slow, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], false));
    assert_eq!(fast.s.current(), Some(waiter));
    assert_eq!(slow.s.current(), Some(waiter));
    assert!(fast.s.mem.bytes() == slow.s.mem.bytes(), "kernel memory differs");
    assert_eq!(waiter.regs(&fast.s.mem).rdi, 0x5, "the badge arrives");
    // The signaller waits at the front of its queue: it runs before `other` again.
    assert_eq!(fast.s.highest_ready(), Some(50));
    fast.sys(waiter, Syscall::Recv, NT, MessageInfo::default(), [0; 4]);
    assert_eq!(fast.s.current(), Some(signaller));
    // Left alone: no waiter.
    let (mut w, _, signaller, _) = setup();
    assert!(enter(&mut w, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], true));
    assert!(!enter(&mut w, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], true));
    // A waiter that does not preempt (same priority): queued, the signaller goes on, exactly
    // as the general path leaves it.
    let equal = || {
        let (mut w, waiter, signaller, _) = setup();
        w.invoke(20, label::TCB_SET_PRIORITY, &[50]).unwrap();
        (w, waiter, signaller)
    };
    let (mut fast, waiter, signaller) = equal();
    let (mut slow, _, _) = equal();
    assert!(enter(&mut fast, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], true));
    assert!(!enter(&mut slow, signaller, Syscall::Send, NT + 1, MessageInfo::default(), [0; 4], false));
    assert_eq!((fast.s.current(), slow.s.current()), (Some(signaller), Some(signaller)));
    assert_eq!(waiter.state(&fast.s.mem), ThreadState::Running);
    assert!(fast.s.mem.bytes() == slow.s.mem.bytes(), "kernel memory differs");
}

#[test]
fn threads_take_names_of_up_to_32_bytes() {
    let mut w = world();
    w.make(ObjectType::Tcb, 20);
    let Cap::Tcb { base } = w.s.mem.cap_at(slot(20)) else { panic!() };
    let t = TcbRef(base);
    let words = |text: &[u8]| {
        let mut bytes = [0u8; 32];
        bytes[..text.len()].copy_from_slice(text);
        let mut out = [0u64; 4];
        for (w, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(c.try_into().unwrap());
        }
        out
    };
    // Too long (this caller has no IPC buffer, so a fifth word cannot even arrive), or not
    // UTF-8: refused, the thread still unnamed.
    assert_eq!(w.invoke(20, label::TCB_SET_NAME, &[0; 5]), Err(Error::TruncatedMessage));
    assert_eq!(w.invoke(20, label::TCB_SET_NAME, &words(&[0xff, 0xfe])), Err(Error::InvalidArgument));
    assert_eq!(t.name(&w.s.mem), [0; 32]);
    // Only the loader names threads: the boss may not until it has the privilege.
    assert_eq!(w.invoke(20, label::TCB_SET_NAME, &words(b"xenstore-state")), Err(Error::IllegalOperation));
    let boss = w.boss;
    boss.set_privileges(&mut w.s.mem, privilege::NAME_THREADS);
    w.invoke(20, label::TCB_SET_NAME, &words(b"xenstore-state")).unwrap();
    assert_eq!(&t.name(&w.s.mem)[..15], b"xenstore-state\0");
    // Named once: the audit log stamps events with the name, so a thread holding its own
    // TCB cannot take another's (nor can anyone else rename it).
    assert_eq!(w.invoke(20, label::TCB_SET_NAME, &words(b"supervisor")), Err(Error::IllegalOperation));
    assert_eq!(&t.name(&w.s.mem)[..15], b"xenstore-state\0");
    // A full 32 bytes, no terminator.
    w.make(ObjectType::Tcb, 21);
    let Cap::Tcb { base } = w.s.mem.cap_at(slot(21)) else { panic!() };
    w.invoke(21, label::TCB_SET_NAME, &words(&[b'a'; 32])).unwrap();
    assert_eq!(TcbRef(base).name(&w.s.mem), [b'a'; 32]);
}

/// A VMM hears from the components serving it through its bound notification: `VmEnter`
/// with a signal pending returns `NOTIFIED` with the word (taken, as a receive takes it)
/// instead of entering; without one it enters. Several signals in a row, from two
/// badges, before and between entries; a signal to another thread's notification does not
/// count; an unbound notification's signals wait for a receive.
#[test]
fn vm_enter_returns_notified_while_a_signal_is_pending() {
    let mut w = world();
    let boss = w.boss;
    w.make(ObjectType::Vcpu, 40);
    w.make(ObjectType::EptPml4, 41);
    w.make(ObjectType::Notification, 42);
    w.make(ObjectType::Notification, 43);
    w.s.mint(slot(42), slot(44), Rights::WRITE, 0b01).unwrap();
    w.s.mint(slot(42), slot(45), Rights::WRITE, 0b10).unwrap();
    w.s.mint(slot(43), slot(46), Rights::WRITE, 0b100).unwrap();
    w.invoke(40, label::VCPU_SET_TCB, &[2]).unwrap();
    w.invoke(40, label::VCPU_SET_EPT, &[41]).unwrap();
    let Cap::Vcpu { base: vcpu } = w.s.mem.cap_at(slot(40)) else { panic!() };
    let Cap::EptRoot { base: root, .. } = w.s.mem.cap_at(slot(41)) else { panic!() };
    let enter = |w: &mut World| w.sys(boss, Syscall::VmEnter, 0, MessageInfo::default(), [0; 4]);
    let signal = |w: &mut World, cptr: u64| {
        w.sys(boss, Syscall::Send, cptr, MessageInfo::default(), [0; 4]);
        assert_eq!(w.status(boss), 0);
    };
    let notified = |w: &World| {
        let r = boss.regs(&w.s.mem);
        (w.status(boss), r.rdx, r.r8)
    };
    // Nothing bound: signals wait in the notification; the thread enters.
    signal(&mut w, 44);
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [reason::HLT, 0, 0, 1]);
    // Bound: the waiting signal is taken by the next entry, which does not enter.
    w.invoke(2, label::TCB_BIND_NOTIFICATION, &[42]).unwrap();
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(notified(&w), (0, reason::NOTIFIED, 0b01));
    // Taken: the next entry enters.
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [reason::HLT, 0, 0, 1]);
    // Two badges before one entry: both bits, once.
    signal(&mut w, 44);
    signal(&mut w, 45);
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(notified(&w), (0, reason::NOTIFIED, 0b11));
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [reason::HLT, 0, 0, 1]);
    // Another notification (not bound to this thread) does not stop the entry.
    signal(&mut w, 46);
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [reason::HLT, 0, 0, 1]);
    // A receive takes a pending signal as before; then the entry enters.
    signal(&mut w, 45);
    w.sys(boss, Syscall::NbRecv, 42, MessageInfo::default(), [0; 4]);
    assert_eq!((w.status(boss), boss.regs(&w.s.mem).rdi), (0, 0b10));
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [reason::HLT, 0, 0, 1]);
    // A thread that cannot enter is told why, even with a signal pending (which waits).
    signal(&mut w, 44);
    w.invoke(40, label::VCPU_SET_EPT, &[42]).unwrap_err();
    w.s.delete(slot(41)).unwrap();
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(w.status(boss), Error::FailedLookup as u64);
    assert!(w.s.bound_signal_pending(boss), "the signal is still there");
    // Unbound, the pending signal stays for a receive.
    w.invoke(2, label::TCB_UNBIND_NOTIFICATION, &[]).unwrap();
    w.sys(boss, Syscall::NbRecv, 42, MessageInfo::default(), [0; 4]);
    assert_eq!((w.status(boss), boss.regs(&w.s.mem).rdi), (0, 0b01));
}

#[test]
fn vcpus_bind_to_threads_and_ept_maps_guest_memory() {
    let mut w = world();
    let boss = w.boss;
    for (ty, dest) in [
        (ObjectType::Vcpu, 40),
        (ObjectType::EptPml4, 41),
        (ObjectType::EptPdpt, 42),
        (ObjectType::EptPd, 43),
        (ObjectType::EptPt, 44),
        (ObjectType::Frame4K, 45),
        (ObjectType::Frame4K, 46),
    ] {
        w.make(ty, dest);
    }
    let enter = |w: &mut World| w.sys(boss, Syscall::VmEnter, 0, MessageInfo::default(), [0; 4]);
    // No Vcpu bound, then no guest-physical space: refused with an error, nothing runs.
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(w.status(boss), Error::IllegalOperation as u64);
    w.invoke(40, label::VCPU_SET_TCB, &[2]).unwrap();
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(w.status(boss), Error::FailedLookup as u64);
    assert_eq!(w.invoke(40, label::VCPU_SET_EPT, &[42]), Err(Error::InvalidCapability), "a table is no root");
    w.invoke(40, label::VCPU_SET_EPT, &[41]).unwrap();
    // A frame needs the tables above it; tables map level by level.
    assert_eq!(w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1000, 3, 0]), Err(Error::FailedLookup));
    for table in [42, 43, 44] {
        w.invoke(table, label::EPT_TABLE_MAP, &[41, 0]).unwrap();
    }
    assert_eq!(w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1001, 3, 0]), Err(Error::AlignmentError));
    assert_eq!(w.invoke(45, label::FRAME_MAP_EPT, &[41, 1 << 48, 3, 0]), Err(Error::InvalidArgument));
    w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1000, 3, 0]).unwrap();
    assert_eq!(w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x2000, 3, 0]), Err(Error::IllegalOperation));
    assert_eq!(w.invoke(46, label::FRAME_MAP_EPT, &[41, 0x1000, 1, 0]), Err(Error::InsufficientRights));
    assert_eq!(w.invoke(46, label::FRAME_MAP_EPT, &[41, 0x1000, 2, 0]), Err(Error::DeleteFirst));
    // Read-only and not executable.
    w.invoke(46, label::FRAME_MAP_EPT, &[41, 0x3000, 2, 1]).unwrap();
    let Cap::EptTable { base: pt, .. } = w.s.mem.cap_at(slot(44)) else { panic!() };
    let Cap::Frame { base: f45, .. } = w.s.mem.cap_at(slot(45)) else { panic!() };
    let Cap::Frame { base: f46, .. } = w.s.mem.cap_at(slot(46)) else { panic!() };
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)), f45.0 | 0b111 | (6 << 3), "RWX, write-back");
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 24)), f46.0 | 0b001 | (6 << 3), "read only");
    // A guest-physical mapping is not remapped in place.
    assert_eq!(w.invoke(46, label::FRAME_REMAP, &[3, 0]), Err(Error::IllegalOperation));
    // Now the thread enters its guest.
    let Cap::Vcpu { base: vcpu } = w.s.mem.cap_at(slot(40)) else { panic!() };
    let Cap::EptRoot { base: root, .. } = w.s.mem.cap_at(slot(41)) else { panic!() };
    assert_eq!(enter(&mut w), Outcome::VmEnter { vcpu, ept_root: root });
    w.s.vm_exited(boss, [30, 0x3f8_0000, 0, 1]);
    assert_eq!((w.status(boss), boss.regs(&w.s.mem).rdx, boss.regs(&w.s.mem).r10), (0, 30, 1));
    // Guest registers live in the Vcpu.
    w.invoke(40, label::VCPU_WRITE_REGISTERS, &[1, 7, 8]).unwrap();
    assert_eq!(w.s.vcpu_state(vcpu).gprs[..4], [0, 7, 8, 0]);
    assert_eq!(w.invoke(40, label::VCPU_WRITE_REGISTERS, &[14, 1, 2]), Err(Error::RangeError));
    assert_eq!(w.invoke(40, label::VCPU_READ_REGISTERS, &[15]), Err(Error::RangeError));
    w.invoke(40, label::VCPU_READ_REGISTERS, &[1]).unwrap();
    assert_eq!(boss.regs(&w.s.mem).rdx, 7, "the first register read comes back in message word 0");
    // I/O and MSR bitmaps start full (everything exits); ports go through only with an
    // IoPort capability covering them; only VMCS-switched MSRs go through.
    let bit = |w: &World, offset: u64, index: u64| {
        w.s.mem.read::<u8>(PhysAddr(vcpu.0 + offset + index / 8)) >> (index % 8) & 1
    };
    assert_eq!(bit(&w, 2 * 4096, 0x80), 1);
    assert_eq!(w.invoke(40, label::VCPU_SET_IO_EXIT, &[0, 0x80, 0x80, 0]), Err(Error::InvalidCapability));
    w.s.insert_original(slot(50), Cap::IoPort { first: 0x70, last: 0x80 }).unwrap();
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[50, 0x78, 0x80, 0]).unwrap();
    assert_eq!((bit(&w, 2 * 4096, 0x77), bit(&w, 2 * 4096, 0x78), bit(&w, 2 * 4096, 0x80)), (1, 0, 0));
    assert_eq!(w.invoke(40, label::VCPU_SET_IO_EXIT, &[50, 0x80, 0x81, 0]), Err(Error::InsufficientRights));
    // Making a port exit again needs no capability.
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[0, 0x80, 0x80, 1]).unwrap();
    assert_eq!(bit(&w, 2 * 4096, 0x80), 1);
    assert_eq!(w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0x277, 0]), Err(Error::IllegalOperation), "PAT");
    w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0xc000_0100, 0]).unwrap();
    assert_eq!((bit(&w, 4 * 4096 + 1024, 0x100), bit(&w, 4 * 4096 + 3072, 0x100)), (0, 0));
    assert_eq!(bit(&w, 4 * 4096 + 1024, 0x82), 1, "LSTAR still exits");
    assert_eq!(w.s.vcpu_state(vcpu).switch_syscall, 0);
    // A SYSCALL MSR goes through, and from then on the kernel switches them.
    w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0xc000_0082, 0]).unwrap();
    assert_eq!(bit(&w, 4 * 4096 + 1024, 0x82), 0, "LSTAR reads go through");
    assert_eq!(w.s.vcpu_state(vcpu).switch_syscall, 1);
    // VMCS policy: host state refused before the machine is asked; a malformed encoding is
    // an argument error; this host-test machine has no VT-x and refuses the rest.
    assert_eq!(w.invoke(40, label::VCPU_READ_VMCS, &[0x6c16]), Err(Error::IllegalOperation));
    assert_eq!(w.invoke(40, label::VCPU_WRITE_VMCS, &[0x201a, 0]), Err(Error::IllegalOperation));
    assert_eq!(w.invoke(40, label::VCPU_WRITE_VMCS, &[0x681f, 0]), Err(Error::InvalidArgument));
    assert_eq!(w.invoke(40, label::VCPU_READ_VMCS, &[0x681e]), Err(Error::IllegalOperation));
    // Deleting a mapped frame capability clears its entry and asks for an EPT flush.
    assert!(!w.s.take_ept_flush());
    w.s.delete(slot(45)).unwrap();
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)), 0);
    assert!(w.s.take_ept_flush());
    // Destroying the Vcpu unbinds the thread; the active-VMCS flag asks for a VMCLEAR.
    w.s.active_vmcs = vcpu.0;
    w.s.delete(slot(40)).unwrap();
    assert_eq!(boss.vcpu(&w.s.mem), 0);
    assert!(w.s.clear_active_vmcs);
    assert_eq!(enter(&mut w), Outcome::Done);
    assert_eq!(w.status(boss), Error::IllegalOperation as u64);
}

#[test]
fn only_a_thread_that_may_end_the_run_lets_others() {
    let mut w = world();
    let a = w.thread(20, 50);
    let boss = w.boss;
    assert_eq!(w.invoke(20, label::TCB_ALLOW_END_RUN, &[]), Err(Error::IllegalOperation));
    assert_eq!(a.privileges(&w.s.mem), 0);
    boss.set_privileges(&mut w.s.mem, privilege::END_RUN);
    w.invoke(20, label::TCB_ALLOW_END_RUN, &[]).unwrap();
    assert_eq!(a.privileges(&w.s.mem), privilege::END_RUN);
    // The console likewise: only a thread that may write to it can let another.
    assert_eq!(w.invoke(20, label::TCB_ALLOW_CONSOLE, &[]), Err(Error::IllegalOperation));
    boss.set_privileges(&mut w.s.mem, privilege::END_RUN | privilege::CONSOLE);
    w.invoke(20, label::TCB_ALLOW_CONSOLE, &[]).unwrap();
    assert_eq!(a.privileges(&w.s.mem), privilege::END_RUN | privilege::CONSOLE);
}

#[test]
fn on_svm_machines_guest_spaces_are_written_as_npt_through_the_same_invocations() {
    let mut w = world();
    w.s.set_guest_format(crate::object::paging::Format::Npt).unwrap();
    assert_eq!(w.s.set_guest_format(crate::object::paging::Format::Ia32e), Err(Error::InvalidArgument));
    w.guest_space();
    w.make(ObjectType::Frame4K, 45);
    w.make(ObjectType::Frame4K, 46);
    w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1000, 3, 0]).unwrap();
    w.invoke(46, label::FRAME_MAP_EPT, &[41, 0x3000, 2, 1]).unwrap();
    let Cap::EptRoot { base: root, .. } = w.s.mem.cap_at(slot(41)) else { panic!() };
    let Cap::EptTable { base: pdpt, .. } = w.s.mem.cap_at(slot(42)) else { panic!() };
    let Cap::EptTable { base: pt, .. } = w.s.mem.cap_at(slot(44)) else { panic!() };
    let Cap::Frame { base: f45, .. } = w.s.mem.cap_at(slot(45)) else { panic!() };
    let Cap::Frame { base: f46, .. } = w.s.mem.cap_at(slot(46)) else { panic!() };
    // Tables link with present, writable and user; leaves carry the user bit too.
    assert_eq!(w.s.mem.read::<u64>(root), pdpt.0 | 0b111);
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)), f45.0 | 0b111, "read, write, execute");
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 24)), f46.0 | 0b101 | (1 << 63), "read only, no execute");
    // A VSpace is still IA-32e, and neither kind of root stands in for the other.
    assert_eq!(
        w.invoke(45, label::FRAME_MAP, &[41, 0x1000, 3, 0]),
        Err(Error::IllegalOperation),
        "already mapped"
    );
    w.s.delete(slot(46)).unwrap();
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 24)), 0);
    assert!(w.s.take_ept_flush(), "an NPT change asks for the guest-physical flush");
    // Destroying the root empties everything below it.
    w.s.delete(slot(41)).unwrap();
    assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)), 0);
    // A Vcpu has SVM's permission maps: every port (and the third page, for accesses past
    // 0xffff) and every MSR exits until the VMM lets some through.
    w.make(ObjectType::Vcpu, 40);
    let Cap::Vcpu { base: vcpu } = w.s.mem.cap_at(slot(40)) else { panic!() };
    let byte = |w: &World, offset: u64| w.s.mem.read::<u8>(PhysAddr(vcpu.0 + offset));
    use crate::object::vcpu::{IO_BITMAP_OFFSET, SVM_MSR_MAP_OFFSET};
    assert_eq!(byte(&w, IO_BITMAP_OFFSET + 2 * 4096), 0xff);
    assert_eq!(byte(&w, SVM_MSR_MAP_OFFSET + 0x800 + 0x40), 0xff, "FS_BASE's bits");
    w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0xc000_0100, 0]).unwrap();
    assert_eq!(byte(&w, SVM_MSR_MAP_OFFSET + 0x800 + 0x40), 0xfc, "read and write through");
    assert_eq!(
        w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0xc000_0080, 0]),
        Err(Error::IllegalOperation),
        "EFER"
    );
    assert_eq!(w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0x277, 0]), Err(Error::IllegalOperation), "PAT");
    // Making it exit again needs nothing.
    w.invoke(40, label::VCPU_SET_MSR_EXIT, &[0xc000_0100, 3]).unwrap();
    assert_eq!(byte(&w, SVM_MSR_MAP_OFFSET + 0x800 + 0x40), 0xff);
}

#[test]
fn each_vcpu_has_its_own_floating_point_state() {
    use super::vcpu::{FPU_OFFSET, FRESH_FCW, FRESH_MXCSR};
    let mut w = world();
    w.make(ObjectType::Vcpu, 40);
    w.make(ObjectType::Vcpu, 41);
    let base = |w: &World, s: u64| match w.s.mem.cap_at(slot(s)) {
        Cap::Vcpu { base } => base,
        other => panic!("not a Vcpu: {other:?}"),
    };
    let (a, b) = (base(&w, 40), base(&w, 41));
    // A fresh image is reset's state: zero registers, exceptions masked.
    assert_eq!(w.s.mem.read::<u16>(PhysAddr(a.0 + FPU_OFFSET)), FRESH_FCW);
    assert_eq!(w.s.mem.read::<u32>(PhysAddr(a.0 + FPU_OFFSET + 24)), FRESH_MXCSR);
    assert_eq!(w.s.mem.read::<[u8; 256]>(PhysAddr(a.0 + FPU_OFFSET + 256)), [0; 256], "XMM registers");
    // The first guest's state is loaded without saving anything; entering again loads
    // nothing; another guest's entry saves the first one's into its own Vcpu.
    assert_eq!(w.s.fpu_switch(a), Some((None, PhysAddr(a.0 + FPU_OFFSET))));
    assert_eq!(w.s.fpu_switch(a), None);
    assert_eq!(w.s.fpu_switch(b), Some((Some(PhysAddr(a.0 + FPU_OFFSET)), PhysAddr(b.0 + FPU_OFFSET))));
    assert_eq!(w.s.fpu_switch(a), Some((Some(PhysAddr(b.0 + FPU_OFFSET)), PhysAddr(a.0 + FPU_OFFSET))));
    // A destroyed owner's state is never saved into memory that may be something else now.
    w.s.delete(slot(40)).unwrap();
    assert_eq!(w.s.fpu_owner, 0);
    assert_eq!(w.s.fpu_switch(b), Some((None, PhysAddr(b.0 + FPU_OFFSET))));
    // Destroying a Vcpu that does not own the processor's state changes nothing.
    w.make(ObjectType::Vcpu, 40);
    w.s.delete(slot(40)).unwrap();
    assert_eq!(w.s.fpu_owner, b.0);
}

/// `DebugExit` without the privilege to end the run: with a fault handler the thread's end
/// reaches it (`EXITED`, with the status) and the thread waits, several times over across
/// restarts; without one the thread stops.
#[test]
fn a_thread_that_may_not_end_the_run_exits_to_its_fault_handler() {
    use cleave_abi::syscall::fault;
    let mut w = world();
    w.make(ObjectType::Endpoint, EP + 2);
    w.s.mint(slot(EP + 2), slot(EP + 3), Rights::ALL, 0x77).unwrap();
    let handler = w.thread(20, 150);
    let worker = w.thread(22, 100);
    w.s.copy(slot(EP + 3), worker.slot(3)).unwrap();
    for round in 0..3u64 {
        w.sys(handler, Syscall::Recv, EP + 2, MessageInfo::default(), [0; 4]);
        assert_eq!(w.state(handler), ThreadState::BlockedOnReceive);
        let rip = worker.regs(&w.s.mem).rip;
        assert_eq!(
            w.sys(worker, Syscall::DebugExit, 40 + round, MessageInfo::default(), [0; 4]),
            Outcome::Done
        );
        assert_eq!(w.state(worker), ThreadState::BlockedOnReply, "it waits for its handler");
        let r = handler.regs(&w.s.mem);
        assert_eq!((r.rdi, MessageInfo(r.rsi).label(), r.rdx), (0x77, fault::EXITED, 40 + round));
        assert_eq!(r.r9, rip, "the rip after the call");
        // A second exit while it waits cannot happen (it does not run); the handler
        // starts it afresh.
        w.invoke(22, label::TCB_SUSPEND, &[]).unwrap();
        w.invoke(22, label::TCB_WRITE_REGISTERS, &[1, 0x40_1000, 0x7000_0000]).unwrap();
        assert_eq!(w.state(worker), ThreadState::Running);
    }
    // Without a fault endpoint: it stops, and only it.
    w.s.delete(worker.slot(3)).unwrap();
    assert!(matches!(
        w.sys(worker, Syscall::DebugExit, 1, MessageInfo::default(), [0; 4]),
        Outcome::Ended(t, 1, ..) if t == worker
    ));
    assert_eq!(w.state(worker), ThreadState::Inactive);
}

#[test]
fn a_one_request_server_takes_one_request_per_start() {
    use cleave_abi::syscall::fault;
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.make(ObjectType::Endpoint, EP + 2);
    w.s.mint(slot(EP + 2), slot(EP + 3), Rights::ALL, 0x5e).unwrap();
    let handler = w.thread(20, 150);
    let server = w.thread(22, 100);
    let client = w.thread(24, 50);
    w.invoke(22, label::TCB_SET_ONE_REQUEST, &[]).unwrap();
    w.s.copy(slot(EP + 3), server.slot(3)).unwrap();
    w.sys(handler, Syscall::Recv, EP + 2, MessageInfo::default(), [0; 4]);
    // The first receive is ordinary, and so is the reply.
    w.sys(server, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.state(server), ThreadState::BlockedOnReceive);
    w.sys(client, Syscall::Call, EP, MessageInfo::new(1, 0, 0, 1), [7, 0, 0, 0]);
    assert_eq!(server.regs(&w.s.mem).rdx, 7);
    w.sys(server, Syscall::ReplyRecv, EP, MessageInfo::new(0, 0, 0, 1), [49, 0, 0, 0]);
    assert_eq!((w.state(client), client.regs(&w.s.mem).rdx), (ThreadState::Running, 49));
    // The second receive (here the receive half of ReplyRecv) reaches the handler instead.
    assert_eq!(w.state(server), ThreadState::BlockedOnReply);
    let r = handler.regs(&w.s.mem);
    assert_eq!((r.rdi, MessageInfo(r.rsi).label(), r.rdx), (0x5e, fault::REQUEST_DONE, EP));
    // A client calling now waits for the server's next start.
    w.sys(client, Syscall::Call, EP, MessageInfo::new(1, 0, 0, 1), [8, 0, 0, 0]);
    assert_eq!(w.state(client), ThreadState::BlockedOnSend);
    // Stopped and started afresh (written registers), it takes that request.
    w.invoke(22, label::TCB_SUSPEND, &[]).unwrap();
    w.invoke(22, label::TCB_WRITE_REGISTERS, &[1, 0x40_1000, 0x7000_0000]).unwrap();
    w.sys(server, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((w.state(server), server.regs(&w.s.mem).rdx), (ThreadState::Running, 8));
    // Without a fault endpoint, the second receive fails and the thread keeps running.
    w.s.delete(server.slot(3)).unwrap();
    w.sys(server, Syscall::NbRecv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(w.status(server), Error::IllegalOperation as u64);
    assert_eq!(w.state(server), ThreadState::Running);
    // Notifications are not requests: waiting on one is never refused.
    w.make(ObjectType::Notification, EP + 4);
    w.sys(server, Syscall::NbRecv, EP + 4, MessageInfo::default(), [0; 4]);
    assert_eq!(w.status(server), 0);
}

#[test]
fn a_thread_stopped_in_its_fault_later_replies_with_its_own_words() {
    use cleave_abi::syscall::fault;
    let mut w = world();
    w.make(ObjectType::Endpoint, EP);
    w.make(ObjectType::Endpoint, EP + 2);
    w.s.mint(slot(EP + 2), slot(EP + 3), Rights::ALL, 1).unwrap();
    let handler = w.thread(20, 150);
    let server = w.thread(22, 100);
    let client = w.thread(24, 50);
    w.s.copy(slot(EP + 3), server.slot(3)).unwrap();
    w.sys(handler, Syscall::Recv, EP + 2, MessageInfo::default(), [0; 4]);
    assert!(w.s.raise_fault(server, fault::VM_FAULT, [0xdead, 4, 0, 0]));
    // The handler stops it and starts it again instead of replying.
    w.invoke(22, label::TCB_SUSPEND, &[]).unwrap();
    w.invoke(22, label::TCB_WRITE_REGISTERS, &[1, 0x40_1000, 0x7000_0000]).unwrap();
    w.sys(server, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.sys(client, Syscall::Call, EP, MessageInfo::new(1, 0, 0, 1), [5, 0, 0, 0]);
    w.sys(server, Syscall::Reply, 0, MessageInfo::new(0, 0, 0, 2), [25, 1, 0, 0]);
    let r = client.regs(&w.s.mem);
    assert_eq!((MessageInfo(r.rsi).label(), r.rdx, r.r8), (0, 25, 1));
}

/// The audit log, step by step as a hostile component would try it: an event without the
/// console, an empty one, one with a control byte (discarded whole), renaming itself to
/// write in another's name, reading without the privilege, giving itself the privilege;
/// then a stamped event, and a reader allowed by one that may read, in pieces.
#[test]
fn audit_events_are_stamped_and_only_a_privileged_thread_reads_them() {
    let mut w = world();
    let a = w.thread(20, 50);
    let b = w.thread(22, 50);
    let put = |w: &mut World, t: TcbRef, text: &[u8]| {
        for &byte in text {
            w.sys(t, Syscall::DebugPutChar, u64::from(byte), MessageInfo::default(), [0; 4]);
        }
    };
    let event = |w: &mut World, t: TcbRef| w.sys(t, Syscall::AuditEvent, 0, MessageInfo::default(), [0; 4]);
    // Without the console nothing reaches the line, so there is no event.
    put(&mut w, a, b"serve alice blkback#1");
    assert_eq!(event(&mut w, a), Outcome::Done);
    assert_eq!(w.status(a), Error::InvalidArgument as u64);
    a.set_privileges(&mut w.s.mem, privilege::CONSOLE);
    let mut name = [0u64; 4];
    name[0] = u64::from_le_bytes(*b"blkback\0");
    // The thread cannot name itself (only the loader names threads); the loader can.
    w.sys(a, Syscall::Call, 20, MessageInfo::new(label::TCB_SET_NAME, 0, 0, 4), name);
    assert_eq!(w.status(a), Error::IllegalOperation as u64);
    let boss = w.boss;
    boss.set_privileges(&mut w.s.mem, privilege::NAME_THREADS);
    w.invoke(20, label::TCB_SET_NAME, &name).unwrap();
    // A control byte spoils the event: refused, and discarded with it.
    put(&mut w, a, b"serve alice\x07 blkback#1");
    assert_eq!(event(&mut w, a), Outcome::Done);
    assert_eq!(w.status(a), Error::InvalidArgument as u64);
    assert_eq!(w.s.audit.end(), 0);
    put(&mut w, a, b"serve alice blkback#1");
    match event(&mut w, a) {
        Outcome::DebugLine(line, len) => {
            assert_eq!(&line[..len], b"audit: 0 blkback serve alice blkback#1\n")
        }
        other => panic!("the event goes to the console too: {other:?}"),
    }
    assert_eq!(w.status(a), 0);
    // Nor can it pass a console line of its own for an audit line: the console shows it
    // changed.
    put(&mut w, a, b"audit: 0 supervisor restart blkback#1 blkback#2");
    match w.sys(a, Syscall::DebugPutChar, u64::from(b'\n'), MessageInfo::default(), [0; 4]) {
        Outcome::DebugLine(line, len) => {
            assert_eq!(&line[..len], b"audit? 0 supervisor restart blkback#1 blkback#2\n")
        }
        other => panic!("a newline ends the line: {other:?}"),
    }
    // It cannot take the supervisor's name to forge a restart.
    name[0] = u64::from_le_bytes(*b"supervis");
    assert_eq!(w.invoke(20, label::TCB_SET_NAME, &name), Err(Error::IllegalOperation));
    // Nobody reads without the privilege, and only one who has it gives it (the boss,
    // standing in for the loader, has not yet; `a` calls on its own TCB).
    let read = |w: &mut World, t: TcbRef, from: u64| {
        w.sys(t, Syscall::AuditRead, from, MessageInfo::default(), [0; 4]);
        let r = t.regs(&w.s.mem);
        (r.rax, [r.rdx, r.r8, r.r9, r.r10])
    };
    assert_eq!(read(&mut w, b, 0).0, Error::IllegalOperation as u64);
    assert_eq!(w.invoke(22, label::TCB_ALLOW_READ_AUDIT, &[]), Err(Error::IllegalOperation));
    w.sys(a, Syscall::Call, 20, MessageInfo::new(label::TCB_ALLOW_READ_AUDIT, 0, 0, 0), [0; 4]);
    assert_eq!(w.status(a), Error::IllegalOperation as u64);
    assert_eq!(read(&mut w, a, 0).0, Error::IllegalOperation as u64);
    let boss = w.boss;
    boss.set_privileges(&mut w.s.mem, privilege::READ_AUDIT | privilege::NAME_THREADS);
    w.invoke(22, label::TCB_ALLOW_READ_AUDIT, &[]).unwrap();
    let text = b"0 blkback serve alice blkback#1\n";
    let (status, words) = read(&mut w, b, 0);
    assert_eq!((status, words), (0, [0, text.len() as u64, text.len() as u64, 0]));
    let mut got = std::vec::Vec::new();
    for i in 0..text.len().div_ceil(8) {
        got.extend_from_slice(&w.s.message_word(b, 4 + i).unwrap().to_le_bytes());
    }
    assert_eq!(&got[..text.len()], text);
    // From the middle, and past the end.
    let (_, words) = read(&mut w, b, 10);
    assert_eq!(words, [10, text.len() as u64 - 10, text.len() as u64, 0]);
    assert_eq!(&w.s.message_word(b, 4).unwrap().to_le_bytes(), &text[10..18]);
    assert_eq!(read(&mut w, b, 1 << 40).1, [text.len() as u64, 0, text.len() as u64, 0]);
}
