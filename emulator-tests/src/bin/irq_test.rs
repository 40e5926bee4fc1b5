//! Interrupt and preemption test suite (root task): the PIT's line delivered through an
//! IrqHandler to a notification; a spinning lower-priority thread that does not keep a
//! higher-priority one from its interrupts; round-robin of equal priorities on the
//! kernel's timer tick.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{
    CNode, IoPort, IoPortControl, IrqControl, IrqHandler, Notification, Tcb, Untyped,
};
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use emulator_tests::{Suite, at, check};

cleave_rt::entry!(main);

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
const D: u64 = 64;
const STACK_SIZE: usize = 8 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; 4] = [const { Stack([0; STACK_SIZE]) }; 4];
static SPINS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
const UT: u64 = 0;
const IRQ0: u64 = 1;
const NTFN: u64 = 2;
const PIT: u64 = 3;
const SCRATCH: u64 = 4;
const TCB0: u64 = 10;

extern "C" fn spinner(index: u64) -> ! {
    let counter = &SPINS[index as usize % 3];
    loop {
        counter.fetch_add(1, SeqCst);
    }
}

fn spawn(index: usize, priority: u8) -> Result<(), Error> {
    spawn_at(index, spinner, priority)
}

fn spawn_at(index: usize, entry: extern "C" fn(u64) -> !, priority: u8) -> Result<(), Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    // SAFETY: only the address is taken; each stack belongs to one thread.
    let top = unsafe { &raw mut STACKS[index] } as u64 + STACK_SIZE as u64;
    emulator_tests::start_thread(untyped, at(TCB0 + index as u64), entry, index as u64, priority, top)
        .map(drop)
}

/// Waits for `n` timer interrupts, acknowledging each.
fn ticks(n: u32) -> Result<(), &'static str> {
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
    let irq: Cap<IrqHandler> = Cap::from_cptr(at(IRQ0));
    for _ in 0..n {
        ntfn.wait().map_err(|_| "wait failed")?;
        irq.ack().map_err(|_| "ack failed")?;
    }
    Ok(())
}

/// Timer interrupts the ticker thread has taken.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Takes every PIT interrupt at a priority above the main thread's, counting them.
extern "C" fn ticker(_: u64) -> ! {
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
    let irq: Cap<IrqHandler> = Cap::from_cptr(at(IRQ0));
    loop {
        let _ = ntfn.wait();
        let _ = irq.ack();
        TICKS.fetch_add(1, SeqCst);
    }
}

/// Endpoints the revoke case makes (and revokes).
const REVOKED: u64 = 100_000;

/// A revoke of an untyped with 100,000 children is preempted by the PIT (about 1 kHz)
/// again and again: the ticker, above this thread's priority, counts interrupts while the
/// revoke is still going on. Without preemption points they would wait until it ends and
/// at most one would be counted (the PIC keeps one request per line).
fn revoke_takes_interrupts(big: Cap<Untyped>) -> Result<(), &'static str> {
    const CNODE: u64 = 30;
    const ENDPOINTS_UT: u64 = 31;
    big.retype(ObjectType::CNode, 17, ROOT, 0, 0, at(CNODE), 1).map_err(|_| "CNode of 2^17 slots")?;
    big.retype(ObjectType::Untyped, 22, ROOT, 0, 0, at(ENDPOINTS_UT), 1).map_err(|_| "4 MiB untyped")?;
    let endpoints: Cap<Untyped> = Cap::from_cptr(at(ENDPOINTS_UT));
    let mut made = 0;
    while made < REVOKED {
        let n = (REVOKED - made).min(256);
        endpoints
            .retype(ObjectType::Endpoint, 0, ROOT, at(CNODE), D, made, n)
            .map_err(|_| "retype endpoints")?;
        made += n;
    }
    spawn_at(3, ticker, 150).map_err(|_| "spawn the ticker")?;
    cleave_rt::syscall::yield_now();
    let before = TICKS.load(SeqCst);
    let t0 = cleave_rt::syscall::rdtsc();
    Cap::<CNode>::revoke(ROOT.slot(at(ENDPOINTS_UT), D)).map_err(|_| "revoke")?;
    let t1 = cleave_rt::syscall::rdtsc();
    let during = TICKS.load(SeqCst) - before;
    println!(
        "irq-test: revoking {REVOKED} endpoints took {} TSC ticks; {during} timer interrupts were taken meanwhile",
        t1 - t0
    );
    // The memory is whole again: the same 100,000 fit once more.
    endpoints
        .retype(ObjectType::Untyped, 22, ROOT, 0, 0, at(CNODE + 2), 1)
        .map_err(|_| "reuse after revoke")?;
    check(during >= 3, "no timer interrupt was taken while the revoke ran")
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let control: Cap<IrqControl> = Cap::from_cptr(slot::IRQ_CONTROL);
    let mut t = Suite::plan(5);

    t.case(
        "irq-handler-rules",
        (|| {
            big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1).map_err(|_| "untyped")?;
            check(control.get(0, ROOT.slot(at(IRQ0), D)).is_ok(), "get line 0")?;
            check(
                control.get(0, ROOT.slot(at(SCRATCH), D)) == Err(Error::RevokeFirst),
                "line 0 issued twice",
            )?;
            check(
                control.get(4, ROOT.slot(at(SCRATCH), D)) == Err(Error::RevokeFirst),
                "kernel's COM1 line issued",
            )?;
            check(control.get(16, ROOT.slot(at(SCRATCH), D)) == Err(Error::RangeError), "line 16 issued")?;
            check(control.get(0, ROOT.slot(at(IRQ0), D)) == Err(Error::DeleteFirst), "occupied destination")
        })(),
    );

    t.case(
        "timer-irq-delivered-to-notification",
        (|| {
            let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
            untyped
                .retype(ObjectType::Notification, 0, ROOT, 0, 0, at(NTFN), 1)
                .map_err(|_| "notification")?;
            let irq: Cap<IrqHandler> = Cap::from_cptr(at(IRQ0));
            irq.set_notification(Cap::from_cptr(at(NTFN))).map_err(|_| "set notification")?;
            let ports: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
            ports.issue(0x40, 0x43, ROOT.slot(at(PIT), D)).map_err(|_| "PIT ports")?;
            let pit: Cap<IoPort> = Cap::from_cptr(at(PIT));
            // Channel 0, low then high byte, mode 2 (rate generator), divisor 1193: ~1 kHz.
            pit.write(0x43, 1, 0x34).map_err(|_| "PIT mode")?;
            pit.write(0x40, 1, 1193 & 0xff).map_err(|_| "PIT low")?;
            pit.write(0x40, 1, 1193 >> 8).map_err(|_| "PIT high")?;
            irq.ack().map_err(|_| "first ack")?;
            ticks(100)
        })(),
    );

    t.case(
        "spinner-does-not-block-higher-priority",
        (|| {
            let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
            me.set_priority(100).map_err(|_| "own priority")?;
            spawn(0, 50).map_err(|_| "spawn spinner")?;
            ticks(20)?;
            check(SPINS[0].load(SeqCst) > 0, "the spinner never ran")
        })(),
    );

    t.case(
        "timer-round-robin-of-equal-priorities",
        (|| {
            spawn(1, 60).map_err(|_| "spawn first")?;
            spawn(2, 60).map_err(|_| "spawn second")?;
            let before = [SPINS[1].load(SeqCst), SPINS[2].load(SeqCst)];
            // Kernel ticks are about 10 ms and a slice is 5 of them, but emulated time varies:
            // wait (up to about 3 s of PIT ticks) until both spinners have run.
            for _ in 0..60 {
                ticks(50)?;
                if SPINS[1].load(SeqCst) > before[0] && SPINS[2].load(SeqCst) > before[1] {
                    break;
                }
            }
            let after = [SPINS[1].load(SeqCst), SPINS[2].load(SeqCst)];
            if after[0] == before[0] || after[1] == before[1] {
                println!("  spinner counters: before {before:?}, after {after:?}");
                return Err("one spinner starved");
            }
            check(SPINS[0].load(SeqCst) > 0, "lower spinner state")
        })(),
    );

    t.case("revoke-takes-interrupts", revoke_takes_interrupts(big));

    t.finish()
}
