//! Benchmark (root task): IPC and signal costs in instructions, timed with the TSC under
//! QEMU `-icount shift=0` the way seL4's figures in shared/BENCHMARKS.md were: one-way
//! times from the sender's read just before its system call to the receiver's read just
//! after its own returns, round trips by the client around one Call; the cost of the
//! timer reads themselves is subtracted. Client and server share one address space.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::{MessageInfo, ObjectType};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Endpoint, Notification, Tcb, Untyped, VSpace};
use cleave_rt::syscall::rdtsc;
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

cleave_rt::entry!(main);

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
const STACK_SIZE: usize = 16 * 1024;
const RUNS: usize = 64;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; 2] = [const { Stack([0; STACK_SIZE]) }; 2];
static FIRST_FREE: AtomicU64 = AtomicU64::new(0);
/// Server's TSC just after its receive returned, and just before its reply.
static SERVER_RECEIVED: AtomicU64 = AtomicU64::new(0);
static SERVER_REPLYING: AtomicU64 = AtomicU64::new(0);
static WAITER_WOKE: AtomicU64 = AtomicU64::new(0);

fn at(i: u64) -> u64 {
    FIRST_FREE.load(SeqCst) + i
}

const EP: u64 = 0;
const NTFN: u64 = 1;
const TCB0: u64 = 2;
const UT: u64 = 4;

extern "C" fn server(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
    let mut message = ep.recv();
    loop {
        SERVER_RECEIVED.store(rdtsc(), SeqCst);
        let word = message.map_or(0, |m| m.words[0]);
        SERVER_REPLYING.store(rdtsc(), SeqCst);
        message = ep.reply_recv(MessageInfo::new(0, 0, 0, 1), [word + 1, 0, 0, 0]);
    }
}

extern "C" fn waiter(_: u64) -> ! {
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
    loop {
        let _ = ntfn.wait();
        WAITER_WOKE.store(rdtsc(), SeqCst);
    }
}

fn spawn(index: usize, entry: extern "C" fn(u64) -> !, priority: u8) -> Result<(), cleave_abi::Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB0 + index as u64), 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(at(TCB0 + index as u64));
    tcb.configure(ROOT, Cap::<VSpace>::from_cptr(slot::VSPACE), None, None)?;
    tcb.set_priority(priority)?;
    // SAFETY: only the address is taken; each stack belongs to one thread.
    let stack = unsafe { &raw mut STACKS[index] };
    let top = stack as u64 + STACK_SIZE as u64 - 8;
    tcb.write_registers(true, &[entry as usize as u64, top, 0x202])
}

fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn report(name: &str, samples: &mut [u64], sel4: &str) {
    let m = median(samples);
    println!(
        "bench {name} = {m} instructions (median of {}; min {}, max {}; seL4: {sel4})",
        samples.len(),
        samples[0],
        samples[samples.len() - 1]
    );
}

fn main() -> i32 {
    let info = boot_info();
    FIRST_FREE.store(info.empty_first, SeqCst);
    let biggest = (0..info.untyped_count as usize).max_by_key(|&i| info.untyped[i].size_bits).unwrap_or(0);
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let ok = big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1).is_ok()
        && Cap::<Untyped>::from_cptr(at(UT)).retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP), 1).is_ok()
        && Cap::<Untyped>::from_cptr(at(UT))
            .retype(ObjectType::Notification, 0, ROOT, 0, 0, at(NTFN), 1)
            .is_ok()
        && spawn(0, server, 255).is_ok();
    if !ok {
        println!("TEST FAIL: benchmark set-up failed");
        return 1;
    }
    let overhead = (0..16)
        .map(|_| {
            let t0 = rdtsc();
            let t1 = rdtsc();
            t1 - t0
        })
        .min()
        .unwrap_or(0);

    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
    // Warm up (the server's first receive), then measure.
    let _ = ep.call(MessageInfo::new(0, 0, 0, 1), [0; 4]);
    let (mut round, mut there, mut back) = ([0u64; RUNS], [0u64; RUNS], [0u64; RUNS]);
    for i in 0..RUNS {
        let t0 = rdtsc();
        let reply = ep.call(MessageInfo::new(0, 0, 0, 1), [i as u64, 0, 0, 0]);
        let t1 = rdtsc();
        if reply.map(|m| m.words[0]) != Ok(i as u64 + 1) {
            println!("TEST FAIL: wrong reply in round {i}");
            return 1;
        }
        round[i] = t1 - t0 - overhead;
        there[i] = SERVER_RECEIVED.load(SeqCst) - t0 - overhead;
        back[i] = t1 - SERVER_REPLYING.load(SeqCst) - overhead;
    }
    report("ipc.call_replyrecv_round_trip", &mut round, "448, two address spaces");
    report("ipc.call_one_way", &mut there, "207 same address space");
    report("ipc.replyrecv_one_way", &mut back, "235");

    // Signal to a waiting higher-priority thread: drop below the waiter first.
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    if spawn(1, waiter, 200).is_err() || me.set_priority(100).is_err() {
        println!("TEST FAIL: waiter set-up failed");
        return 1;
    }
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN));
    let mut signal = [0u64; RUNS];
    for sample in &mut signal {
        let t0 = rdtsc();
        let _ = ntfn.signal();
        *sample = WAITER_WOKE.load(SeqCst) - t0 - overhead;
    }
    report("ipc.signal_to_higher_priority", &mut signal, "529");
    println!("TEST PASS");
    0
}
