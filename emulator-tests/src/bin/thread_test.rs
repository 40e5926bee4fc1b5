//! Thread and IPC test suite (root task): threads created from untyped memory run in the
//! root task's address space and talk through endpoints and notifications. Judges itself,
//! one case per behaviour ([`emulator_tests::Suite`]).
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Endpoint, Notification, Tcb, Untyped, VSpace};
use cleave_rt::{Cap, println, syscall};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use emulator_tests::{Suite, at, check};

cleave_rt::entry!(main);

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
const D: u64 = 64;
const STACK_SIZE: usize = 16 * 1024;
const THREADS: usize = 7;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; THREADS] = [const { Stack([0; STACK_SIZE]) }; THREADS];

/// What the worker threads observed.
static SECOND_REPLY: AtomicU64 = AtomicU64::new(u64::MAX);
static WOKEN: AtomicU64 = AtomicU64::new(0);
static DELETED_STATUS: AtomicU64 = AtomicU64::new(u64::MAX);
static LOG: AtomicU64 = AtomicU64::new(0);
static LOG_LEN: AtomicU64 = AtomicU64::new(0);
static FAULT_STEPS: AtomicU64 = AtomicU64::new(0);
static EMULATED: AtomicU64 = AtomicU64::new(0);
/// The spinner's verdict: 1 its registers held, 2 rcx or r11 changed under it.
static SPIN: AtomicU64 = AtomicU64::new(0);

// Slot plan (offsets from the first free slot).
const UT: u64 = 0; // a 1 MiB untyped split from the largest
const EP: u64 = 1; // server endpoint
const EP_BADGED: u64 = 2; // badge 0x5a, all rights
const EP_READ_ONLY: u64 = 3;
const NTFN: u64 = 4;
const PARK: u64 = 5; // a notification nobody signals: threads wait here when done
const EP2: u64 = 6; // endpoint deleted under a waiting receiver
const FEP: u64 = 7; // fault endpoint
const FEP_BADGED: u64 = 8; // badge 0xfa, given to the crasher
const TCB0: u64 = 10; // TCBs 10..17

/// Creates thread `index` running `entry(arg)` at `priority`, sharing the root's spaces.
fn spawn(index: usize, entry: extern "C" fn(u64) -> !, arg: u64, priority: u8) -> Result<Cap<Tcb>, Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    let tcb_slot = at(TCB0 + index as u64);
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, tcb_slot, 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(tcb_slot);
    tcb.configure(ROOT, Cap::<VSpace>::from_cptr(slot::VSPACE), None, None)?;
    tcb.set_priority(priority)?;
    // The stack top minus 8 looks like a call just pushed a return address.
    // SAFETY: only the address is taken; each stack is used by exactly one thread.
    let stack = unsafe { &raw mut STACKS[index] };
    let top = stack as u64 + STACK_SIZE as u64 - 8;
    let rip = entry as usize as u64;
    // rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi
    tcb.write_registers(true, &[rip, top, 0x202, 0, 0, 0, 0, 0, arg])?;
    Ok(tcb)
}

/// Spins with known values in rcx and r11 (the registers `syscall` destroys) for long
/// enough to be preempted by the timer many times, and resumed by another thread's
/// system call return; checks they never change.
extern "C" fn spinner(_: u64) -> ! {
    let verdict: u64;
    // SAFETY: register-only arithmetic and a push/pop pair of RFLAGS on this thread's own
    // stack; every register it writes is declared, and the direction flag is clear again
    // when the block ends, as the ABI requires.
    unsafe {
        core::arch::asm!(
            // The direction flag set, as a backwards `rep movs` leaves it while it runs: the
            // kernel must not run with it (its memcpy would copy backwards over its stack)
            // and must give it back.
            "std",
            "mov rcx, 0x11111111",
            "mov r11, 0x22222222",
            "mov rdx, {n}",
            "2:",
            "cmp rcx, 0x11111111",
            "jne 3f",
            "cmp r11, 0x22222222",
            "jne 3f",
            "pushfq",
            "pop {f}",
            "bt {f}, 10",
            "jnc 3f",
            "dec rdx",
            "jnz 2b",
            "mov {v}, 1",
            "jmp 4f",
            "3:",
            "mov {v}, 2",
            "4:",
            "cld",
            n = const 20_000_000u64,
            v = out(reg) verdict,
            f = out(reg) _,
            out("rcx") _,
            out("r11") _,
            out("rdx") _,
            options(nomem),
        );
    }
    SPIN.store(verdict, SeqCst);
    park()
}

fn park() -> ! {
    let park: Cap<Notification> = Cap::from_cptr(at(PARK));
    loop {
        let _ = park.wait();
    }
}

/// Echo server: replies [badge, sum of words, label, length]; label 2 means "reply twice
/// and remember what the second reply said"; label 3 means "report that".
extern "C" fn server(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
    let mut message = ep.recv();
    loop {
        let Ok(m) = message else { park() };
        match m.info.label() {
            2 => {
                let first = syscall::reply(MessageInfo::new(0, 0, 0, 0), [0; 4]);
                let second = syscall::reply(MessageInfo::new(0, 0, 0, 0), [0; 4]);
                SECOND_REPLY
                    .store(if first.is_ok() { second.err().map_or(0, |e| e as u64) } else { 999 }, SeqCst);
                message = ep.recv();
            }
            label => {
                let sum = m.words.iter().take(m.info.length()).sum();
                let answer = [m.badge, sum, label, m.info.length() as u64];
                message = ep.reply_recv(MessageInfo::new(0, 0, 0, 4), answer);
            }
        }
    }
}

/// Waits on the notification and counts wake-ups.
extern "C" fn waiter(_: u64) -> ! {
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
    loop {
        if ntfn.wait().is_ok() {
            WOKEN.fetch_add(1, SeqCst);
        }
    }
}

/// Appends its letter to the log three times, yielding in between.
extern "C" fn taker(letter: u64) -> ! {
    for _ in 0..3 {
        let n = LOG_LEN.fetch_add(1, SeqCst);
        LOG.fetch_or(letter << (8 * n), SeqCst);
        syscall::yield_now();
    }
    park()
}

/// Receives on an endpoint that the root task deletes; records the status.
extern "C" fn orphan(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP2));
    let status = match ep.recv() {
        Ok(_) => 0,
        Err(e) => e as u64,
    };
    DELETED_STATUS.store(status, SeqCst);
    park()
}

/// Faults in five ways; its handler (the root task) fixes and resumes the first four.
extern "C" fn crasher(_: u64) -> ! {
    // SAFETY: ud2 faults on purpose before doing anything; the handler resumes after it.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
    FAULT_STEPS.store(1, SeqCst);
    // SAFETY: dividing by zero faults before changing anything but the declared registers.
    unsafe {
        core::arch::asm!("xor eax, eax", "xor edx, edx", "xor ecx, ecx", "div rcx", out("rax") _, out("rdx") _, out("rcx") _, options(nomem, nostack))
    }
    FAULT_STEPS.store(2, SeqCst);
    EMULATED.store(syscall::raw_syscall(0xbeef), SeqCst);
    FAULT_STEPS.store(3, SeqCst);
    // SAFETY: hlt is privileged: in ring 3 it faults before doing anything.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    FAULT_STEPS.store(4, SeqCst);
    // SAFETY: threads have no floating-point state: x87 (fldz, 2 bytes) faults with #NM
    // and SSE (xorps, 3 bytes) with #UD, before changing anything.
    unsafe { core::arch::asm!("fldz", options(nomem, nostack)) }
    FAULT_STEPS.store(5, SeqCst);
    // SAFETY: as above.
    unsafe { core::arch::asm!("xorps xmm0, xmm0", out("xmm0") _, options(nomem, nostack)) }
    FAULT_STEPS.store(6, SeqCst);
    // SAFETY: as above: nothing is mapped at 0x1000, so this read faults.
    let value = unsafe { core::ptr::read_volatile(0x1000 as *const u64) };
    EMULATED.store(value, SeqCst);
    park()
}

/// Receives the next fault on the fault endpoint and checks its label, badge and first word.
fn next_fault(label: u64, first: u64) -> Result<cleave_rt::cap::Message, &'static str> {
    let fep: Cap<Endpoint> = Cap::from_cptr(at(FEP));
    let m = fep.recv().map_err(|_| "receive on the fault endpoint failed")?;
    if m.badge != 0xfa || m.info.label() != label || m.words[0] != first {
        println!("  fault message: badge {:#x} label {} words {:x?}", m.badge, m.info.label(), m.words);
        return Err("unexpected fault message");
    }
    Ok(m)
}

/// Resumes the crasher `skip` bytes after the faulting instruction.
fn resume_after(tcb: Cap<Tcb>, m: &cleave_rt::cap::Message, skip: u64) -> Result<(), &'static str> {
    tcb.write_registers(false, &[m.words[2] + skip, m.words[3]]).map_err(|_| "write registers")?;
    syscall::reply(MessageInfo::default(), [0; 4]).map_err(|_| "reply")
}

fn setup() -> Result<(), Error> {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1)?;
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP), 1)?;
    ROOT.mint(ROOT.slot(at(EP_BADGED), D), ROOT.slot(at(EP), D), Rights::ALL, 0x5a)?;
    ROOT.mint(ROOT.slot(at(EP_READ_ONLY), D), ROOT.slot(at(EP), D), Rights::READ, 0)?;
    untyped.retype(ObjectType::Notification, 0, ROOT, 0, 0, at(NTFN), 2)?;
    untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP2), 1)
}

fn main() -> i32 {
    let mut t = Suite::plan(9);
    if let Err(e) = setup() {
        println!("thread-test: set-up failed: {e:?}");
        return t.abandon("set-up");
    }
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);

    t.case(
        "call-reply-with-badge",
        (|| {
            spawn(0, server, 0, 100).map_err(|_| "spawn server")?;
            let ep: Cap<Endpoint> = Cap::from_cptr(at(EP_BADGED));
            let reply = ep.call(MessageInfo::new(7, 0, 0, 3), [10, 20, 30, 99]).map_err(|_| "call failed")?;
            check(reply.words == [0x5a, 60, 7, 3], "wrong reply")?;
            check(reply.info.length() == 4, "wrong reply length")
        })(),
    );

    t.case(
        "reply-capability-works-once",
        (|| {
            let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
            ep.call(MessageInfo::new(2, 0, 0, 0), [0; 4]).map_err(|_| "call failed")?;
            // Let the server run its second reply (it has a lower priority): ask it something.
            ep.call(MessageInfo::new(3, 0, 0, 0), [0; 4]).map_err(|_| "second call failed")?;
            check(SECOND_REPLY.load(SeqCst) == Error::InvalidCapability as u64, "second reply did not fail")
        })(),
    );

    t.case(
        "send-needs-write-right",
        (|| {
            let ep: Cap<Endpoint> = Cap::from_cptr(at(EP_READ_ONLY));
            check(
                ep.send(MessageInfo::default(), [0; 4]) == Err(Error::InsufficientRights),
                "read-only send allowed",
            )?;
            let empty: Cap<Endpoint> = Cap::from_cptr(at(60));
            check(
                empty.call(MessageInfo::default(), [0; 4]).err() == Some(Error::InvalidCapability),
                "empty slot",
            )
        })(),
    );

    t.case(
        "non-blocking-calls",
        (|| {
            let ep2: Cap<Endpoint> = Cap::from_cptr(at(EP2));
            check(ep2.nb_send(MessageInfo::new(1, 0, 0, 1), [1, 0, 0, 0]).is_ok(), "nb_send")?;
            let m = ep2.nb_recv().map_err(|_| "nb_recv")?;
            check(m.badge == 0 && m.info.length() == 0, "nb_recv found a dropped message")?;
            let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
            check(ntfn.poll() == Ok(0), "poll of a quiet notification")
        })(),
    );

    t.case(
        "signal-preempts-for-higher-priority",
        (|| {
            spawn(1, waiter, 0, 200).map_err(|_| "spawn waiter")?;
            // Drop below the waiter: it runs at once and blocks in wait.
            me.set_priority(100).map_err(|_| "lower own priority")?;
            let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
            ntfn.signal().map_err(|_| "signal")?;
            // The higher-priority waiter ran before signal returned here.
            check(WOKEN.load(SeqCst) == 1, "waiter did not run first")?;
            ntfn.signal().map_err(|_| "signal")?;
            check(WOKEN.load(SeqCst) == 2, "second wake-up missing")
        })(),
    );

    t.case(
        "yield-rotates-equal-priorities",
        (|| {
            spawn(2, taker, u64::from(b'A'), 100).map_err(|_| "spawn A")?;
            spawn(3, taker, u64::from(b'B'), 100).map_err(|_| "spawn B")?;
            for _ in 0..20 {
                if LOG_LEN.load(SeqCst) >= 6 {
                    break;
                }
                syscall::yield_now();
            }
            check(LOG.load(SeqCst).to_le_bytes()[..6] == *b"ABABAB", "not round-robin")
        })(),
    );

    t.case(
        "ipc-on-deleted-endpoint",
        (|| {
            spawn(4, orphan, 0, 200).map_err(|_| "spawn")?;
            Cap::<CNode>::delete(ROOT.slot(at(EP2), D)).map_err(|_| "delete endpoint")?;
            check(
                DELETED_STATUS.load(SeqCst) == Error::InvalidCapability as u64,
                "waiter not woken with an error",
            )
        })(),
    );

    t.case(
        "faults-reach-their-handler",
        (|| {
            use cleave_abi::syscall::fault;
            let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
            untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(FEP), 1).map_err(|_| "endpoint")?;
            ROOT.mint(ROOT.slot(at(FEP_BADGED), D), ROOT.slot(at(FEP), D), Rights::ALL, 0xfa)
                .map_err(|_| "mint")?;
            untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB0 + 5), 1).map_err(|_| "tcb")?;
            let tcb: Cap<Tcb> = Cap::from_cptr(at(TCB0 + 5));
            let fault_ep: Cap<Endpoint> = Cap::from_cptr(at(FEP_BADGED));
            tcb.configure(ROOT, Cap::<VSpace>::from_cptr(slot::VSPACE), None, Some(fault_ep))
                .map_err(|_| "configure")?;
            tcb.set_priority(50).map_err(|_| "priority")?;
            // SAFETY: only the address is taken; this stack belongs to the crasher alone.
            let top = unsafe { &raw mut STACKS[5] } as u64 + STACK_SIZE as u64 - 8;
            tcb.write_registers(true, &[crasher as extern "C" fn(u64) -> ! as usize as u64, top, 0x202])
                .map_err(|_| "start")?;
            // Invalid opcode (ud2, 2 bytes), divide error (div rcx, 3 bytes).
            let m = next_fault(fault::USER_EXCEPTION, 6)?;
            resume_after(tcb, &m, 2)?;
            let m = next_fault(fault::USER_EXCEPTION, 0)?;
            check(FAULT_STEPS.load(SeqCst) == 1, "did not resume after ud2")?;
            resume_after(tcb, &m, 3)?;
            // Unknown system call: the reply's first word is its result.
            next_fault(fault::UNKNOWN_SYSCALL, 0xbeef)?;
            syscall::reply(MessageInfo::new(0, 0, 0, 1), [4242, 0, 0, 0]).map_err(|_| "reply")?;
            // General protection (hlt in ring 3, 1 byte).
            let m = next_fault(fault::USER_EXCEPTION, 13)?;
            check(EMULATED.load(SeqCst) == 4242, "emulated system call result lost")?;
            resume_after(tcb, &m, 1)?;
            // Floating point: device not available (x87), invalid opcode (SSE).
            let m = next_fault(fault::USER_EXCEPTION, 7)?;
            check(FAULT_STEPS.load(SeqCst) == 4, "did not resume after hlt")?;
            resume_after(tcb, &m, 2)?;
            let m = next_fault(fault::USER_EXCEPTION, 6)?;
            resume_after(tcb, &m, 3)?;
            // Page fault at 0x1000: left unanswered, the thread stays stopped.
            next_fault(fault::VM_FAULT, 0x1000)?;
            check(FAULT_STEPS.load(SeqCst) == 6, "crasher did not get through its faults")
        })(),
    );

    t.case(
        "preempted-thread-keeps-every-register",
        (|| {
            // Same priority as this thread: the timer preempts the spinner, and this
            // thread's yields hand the processor back to it through the system call return.
            spawn(6, spinner, 0, 100).map_err(|_| "spawn")?;
            for _ in 0..10_000_000u32 {
                if SPIN.load(SeqCst) != 0 {
                    break;
                }
                syscall::yield_now();
            }
            check(
                SPIN.load(SeqCst) == 1,
                "rcx, r11 or the direction flag changed while the thread was preempted",
            )
        })(),
    );

    t.finish()
}
