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
use cleave_rt::cap::kind::{Endpoint, Notification, Tcb, Untyped, VSpace};
use cleave_rt::syscall::rdtsc;
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use emulator_tests::{ROOT, at};

cleave_rt::entry!(main);

const STACK_SIZE: usize = 16 * 1024;
const RUNS: usize = 64;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; 6] = [const { Stack([0; STACK_SIZE]) }; 6];
/// Server's TSC just after its receive returned, and just before its reply.
static SERVER_RECEIVED: AtomicU64 = AtomicU64::new(0);
static SERVER_REPLYING: AtomicU64 = AtomicU64::new(0);
static WAITER_WOKE: AtomicU64 = AtomicU64::new(0);
/// The 10-word server's TSC just after its receive returned, and just before its reply.
static LONG_RECEIVED: AtomicU64 = AtomicU64::new(0);
static LONG_REPLYING: AtomicU64 = AtomicU64::new(0);
/// The higher-priority receiver's TSC just after its receive returned.
static RECEIVER_WOKE: AtomicU64 = AtomicU64::new(0);

const EP: u64 = 0;
const NTFN: u64 = 1;
const TCB0: u64 = 2; // 2, 3, 4
const UT: u64 = 5;
const EP2: u64 = 6;
const VSPACE2: u64 = 7;
const CODE: u64 = 8;
const CODE_ALIAS: u64 = 9;
const TABLES: u64 = 10; // 10..13 in ours, 13..16 in the other
const EP_LONG: u64 = 16;
const EP_SEND: u64 = 17;
const NTFN_LOW: u64 = 18;
const LONG_BUFFER: u64 = 19;
const LONG_TABLES: u64 = 20; // 20..23
const TCB_MORE: u64 = 24; // 24, 25, 26
const EP_SAME: u64 = 27;
const CODE_SAME: u64 = 28;
const CODE_SAME_EXEC: u64 = 29;
const TCB_SAME: u64 = 30;
/// Where the 10-word server's IPC buffer is mapped.
const LONG_BUFFER_AT: u64 = 0x5000_0010_0000;
/// Where the code frame is mapped here (to write it) and in the server's space.
const CODE_HERE: u64 = 0x5000_0000_0000;
const CODE_THERE: u64 = 0x1000_0000;

/// Starts the hand-assembled echo server (no memory use) in a second address space.
fn spawn_other_space_server() -> Result<(), cleave_abi::Error> {
    use cleave_rt::cap::kind::Frame;
    use emulator_tests::{at, echo_server_code, frame, map_tables};
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP2), 1)?;
    untyped.retype(ObjectType::Pml4, 0, ROOT, 0, 0, at(VSPACE2), 1)?;
    Cap::<cleave_rt::cap::kind::AsidPool>::from_cptr(cleave_abi::boot_info::slot::ASID_POOL)
        .assign(Cap::<VSpace>::from_cptr(at(VSPACE2)))?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let other: Cap<VSpace> = Cap::from_cptr(at(VSPACE2));
    map_tables(untyped, me, CODE_HERE, at(TABLES))?;
    map_tables(untyped, other, CODE_THERE, at(TABLES + 3))?;
    let code = frame(untyped, at(CODE))?;
    code.map(me, CODE_HERE, cleave_abi::Rights::ALL, true)?;
    for (i, b) in echo_server_code(at(EP2) as u32).iter().enumerate() {
        // SAFETY: CODE_HERE maps the code frame read-write; i < 4096.
        unsafe { core::ptr::write_volatile((CODE_HERE + i as u64) as *mut u8, *b) }
    }
    ROOT.copy(ROOT.slot(at(CODE_ALIAS), 64), ROOT.slot(at(CODE), 64), cleave_abi::Rights::READ)?;
    Cap::<Frame>::from_cptr(at(CODE_ALIAS)).map(other, CODE_THERE, cleave_abi::Rights::READ, false)?;
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB0 + 2), 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(at(TCB0 + 2));
    tcb.configure(ROOT, other, None, None)?;
    tcb.set_priority(255)?;
    tcb.write_registers(true, &[CODE_THERE, 0, 0x202])
}

/// Round trips to an echo server (after one to warm up), timed by the client around
/// each Call; `None` if a reply is wrong. One function for every server, so that each is
/// timed by the same instructions.
#[inline(never)]
fn round_trips(ep: Cap<Endpoint>, overhead: u64) -> Option<[u64; RUNS]> {
    let _ = ep.call(MessageInfo::new(0, 0, 0, 1), [0; 4]);
    let mut samples = [0u64; RUNS];
    for (i, sample) in samples.iter_mut().enumerate() {
        let t0 = rdtsc();
        let reply = ep.call(MessageInfo::new(0, 0, 0, 1), [i as u64, 0, 0, 0]);
        let t1 = rdtsc();
        if reply.map(|m| m.words[0]) != Ok(i as u64 + 1) {
            return None;
        }
        *sample = t1 - t0 - overhead;
    }
    Some(samples)
}

/// Starts the hand-assembled echo server in this address space (its code in a frame
/// written through one mapping and run through another, read-only and executable).
fn spawn_same_space_server() -> Result<(), cleave_abi::Error> {
    use cleave_rt::cap::kind::Frame;
    use emulator_tests::{echo_server_code, frame};
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP_SAME), 1)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let code = frame(untyped, at(CODE_SAME))?;
    code.map(me, CODE_HERE + 0x2000, cleave_abi::Rights::ALL, true)?;
    for (i, b) in echo_server_code(at(EP_SAME) as u32).iter().enumerate() {
        // SAFETY: CODE_HERE + 0x2000 maps the code frame read-write; i < 4096.
        unsafe { core::ptr::write_volatile((CODE_HERE + 0x2000 + i as u64) as *mut u8, *b) }
    }
    ROOT.copy(ROOT.slot(at(CODE_SAME_EXEC), 64), ROOT.slot(at(CODE_SAME), 64), cleave_abi::Rights::READ)?;
    Cap::<Frame>::from_cptr(at(CODE_SAME_EXEC)).map(
        me,
        CODE_HERE + 0x1000,
        cleave_abi::Rights::READ,
        false,
    )?;
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB_SAME), 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(at(TCB_SAME));
    tcb.configure(ROOT, me, None, None)?;
    tcb.set_priority(255)?;
    tcb.write_registers(true, &[CODE_HERE + 0x1000, 0, 0x202])
}

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

/// Replies with 10 words (6 through IPC buffers) to every call on `EP_LONG`.
extern "C" fn long_server(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP_LONG));
    let _ = ep.recv();
    loop {
        LONG_RECEIVED.store(rdtsc(), SeqCst);
        LONG_REPLYING.store(rdtsc(), SeqCst);
        let _ = ep.reply_recv(MessageInfo::new(0, 0, 0, 10), [1, 2, 3, 4]);
    }
}

/// Receives (plain `Recv`) forever on `EP_SEND`.
extern "C" fn receiver(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP_SEND));
    loop {
        let _ = ep.recv();
        RECEIVER_WOKE.store(rdtsc(), SeqCst);
    }
}

/// Waits on `NTFN_LOW` forever (below the signaller's priority).
extern "C" fn low_waiter(_: u64) -> ! {
    let ntfn: Cap<Notification> = Cap::from_cptr(at(NTFN_LOW));
    loop {
        let _ = ntfn.wait();
    }
}

fn spawn(index: usize, entry: extern "C" fn(u64) -> !, priority: u8) -> Result<(), cleave_abi::Error> {
    spawn_with(index, at(TCB0 + index as u64), entry, priority, None)
}

fn spawn_with(
    index: usize,
    tcb_slot: u64,
    entry: extern "C" fn(u64) -> !,
    priority: u8,
    ipc_buffer: Option<(u64, Cap<cleave_rt::cap::kind::Frame>)>,
) -> Result<(), cleave_abi::Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, tcb_slot, 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(tcb_slot);
    tcb.configure(ROOT, Cap::<VSpace>::from_cptr(slot::VSPACE), ipc_buffer, None)?;
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
    emulator_tests::set_first_free(info.empty_first);
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
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

    // The cheapest system call: Yield with nobody else at this priority.
    let mut null = [0u64; RUNS];
    for sample in &mut null {
        let t0 = rdtsc();
        cleave_rt::syscall::yield_now();
        *sample = rdtsc() - t0 - overhead;
    }
    report("syscall.yield_round_trip", &mut null, "n/a");

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
    // (`round` includes the timing this server does for the one-way figures; the round trip
    // in one address space is measured below with the minimal server.)
    let _ = &mut round;
    report("ipc.call_one_way", &mut there, "207 same address space");
    report("ipc.replyrecv_one_way", &mut back, "235");

    // Round trip to a server in another address space (every call switches CR3 twice).
    if spawn_other_space_server().is_err() {
        println!("TEST FAIL: second address space set-up failed");
        return 1;
    }
    let Some(mut across) = round_trips(Cap::from_cptr(at(EP2)), overhead) else {
        println!("TEST FAIL: wrong reply from the other address space");
        return 1;
    };
    report(
        "ipc.call_replyrecv_round_trip_two_spaces",
        &mut across,
        "428 without its Meltdown switch, 448 with",
    );

    // The same minimal server in this address space, timed by the same code.
    if spawn_same_space_server().is_err() {
        println!("TEST FAIL: same-space server set-up failed");
        return 1;
    }
    let Some(mut within) = round_trips(Cap::from_cptr(at(EP_SAME)), overhead) else {
        println!("TEST FAIL: wrong reply from the same-space server");
        return 1;
    };
    report(
        "ipc.call_replyrecv_round_trip_same_space",
        &mut within,
        "424 without its Meltdown switch, 446 with",
    );

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

    // 10-word messages (words 4-9 through the IPC buffers: the slow path), to a server at
    // a higher priority than this thread (100) now has.
    let long_setup = (|| {
        let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
        for (ty, i) in [
            (ObjectType::Endpoint, EP_LONG),
            (ObjectType::Endpoint, EP_SEND),
            (ObjectType::Notification, NTFN_LOW),
        ] {
            untyped.retype(ty, 0, ROOT, 0, 0, at(i), 1)?;
        }
        let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
        emulator_tests::map_tables(untyped, me, LONG_BUFFER_AT, at(LONG_TABLES))?;
        let buffer = emulator_tests::frame(untyped, at(LONG_BUFFER))?;
        buffer.map(me, LONG_BUFFER_AT, cleave_abi::Rights::ALL, true)?;
        spawn_with(2, at(TCB_MORE), long_server, 200, Some((LONG_BUFFER_AT, buffer)))?;
        spawn_with(3, at(TCB_MORE + 1), receiver, 200, None)?;
        spawn_with(4, at(TCB_MORE + 2), low_waiter, 50, None)
    })();
    if long_setup.is_err() {
        println!("TEST FAIL: 10-word server set-up failed");
        return 1;
    }
    let long: Cap<Endpoint> = Cap::from_cptr(at(EP_LONG));
    let _ = long.call(MessageInfo::new(0, 0, 0, 10), [0; 4]);
    let (mut there, mut back) = ([0u64; RUNS], [0u64; RUNS]);
    for i in 0..RUNS {
        let t0 = rdtsc();
        let reply = long.call(MessageInfo::new(0, 0, 0, 10), [i as u64, 0, 0, 0]);
        let t1 = rdtsc();
        if reply.map(|m| m.info.length()) != Ok(10) {
            println!("TEST FAIL: the 10-word reply was cut");
            return 1;
        }
        there[i] = LONG_RECEIVED.load(SeqCst) - t0 - overhead;
        back[i] = t1 - LONG_REPLYING.load(SeqCst) - overhead;
    }
    report("ipc.call_10_words_one_way", &mut there, "821");
    report("ipc.replyrecv_10_words_one_way", &mut back, "788");

    // Send (not Call) to a receiver of higher priority waiting on the endpoint.
    let send: Cap<Endpoint> = Cap::from_cptr(at(EP_SEND));
    let mut sends = [0u64; RUNS];
    for sample in &mut sends {
        let t0 = rdtsc();
        let _ = send.send(MessageInfo::new(0, 0, 0, 0), [0; 4]);
        *sample = RECEIVER_WOKE.load(SeqCst) - t0 - overhead;
    }
    report("ipc.send_to_higher_priority", &mut sends, "719");

    // Signal to a lower-priority waiter: it becomes runnable, this thread goes on. Between
    // samples this thread drops below it for a moment, so that it waits again.
    let low: Cap<Notification> = Cap::from_cptr(at(NTFN_LOW));
    let mut signals = [0u64; RUNS];
    for sample in &mut signals {
        if me.set_priority(10).is_err() || me.set_priority(100).is_err() {
            println!("TEST FAIL: priority change");
            return 1;
        }
        let t0 = rdtsc();
        let _ = low.signal();
        *sample = rdtsc() - t0 - overhead;
    }
    report("ipc.signal_to_lower_priority", &mut signals, "364");
    println!("TEST PASS");
    0
}
