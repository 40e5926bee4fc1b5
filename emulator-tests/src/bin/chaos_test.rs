//! Kernel test (root task): two hostile threads running pseudo-random machine code cannot
//! break the kernel. The code is random bytes mixed with system calls whose numbers,
//! capability addresses, message infos and words are random (every call but the two debug
//! ones), and with `std`, which once made the kernel copy memory backwards over its own
//! stack. The threads share an address space and a CSpace of their own: an endpoint and a
//! notification (so they call, signal, and hand each other capabilities, through IPC
//! buffers their random stores scribble on), a frame, their VSpace, a 64 KiB untyped and
//! the CNode itself. Every fault they take comes here: usually the thread is resumed one
//! byte further on, sometimes restarted elsewhere with new random registers; when neither
//! faults for a while (blocked or spinning), both are suspended and restarted. Afterwards
//! the kernel must still work and the threads' objects must go away cleanly.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::syscall::fault;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Endpoint, Frame, Notification, Tcb, Untyped, VSpace};
use cleave_rt::{Cap, println, syscall};
use emulator_tests::{DEPTH as D, ROOT, Rng, Suite, at, check, frame, map_tables};

cleave_rt::entry!(main);

// Root slots (offsets from the first free one).
const UT: u64 = 0;
const FEP: u64 = 1;
const FEP_BADGED: u64 = 2;
const TCB: u64 = 3;
const VSPACE2: u64 = 4;
const CODE: u64 = 5;
const CODE_ALIAS: u64 = 6;
const STACK: u64 = 7;
const IPC: u64 = 8;
const CNODE: u64 = 9;
const CNODE_GUARDED: u64 = 10;
const TABLES: u64 = 12; // 12, 13, 14 in the thread's space; 15, 16, 17 in ours
const PROBE: u64 = 18; // 18, 19, 20
const TCB2: u64 = 21;
const FEP_BADGED2: u64 = 22;
const IPC2: u64 = 23;
const ECHO_EP: u64 = 24;
const ECHO_TCB: u64 = 25;
const STORM: u64 = 26;
const STORM_ALIAS: u64 = 27;

/// The stack of the thread made from the reused memory at the end.
const ECHO_STACK_SIZE: usize = 8192;
#[repr(C, align(16))]
struct Stack([u8; ECHO_STACK_SIZE]);
static mut ECHO_STACK: Stack = Stack([0; ECHO_STACK_SIZE]);

/// Answers every call with its first word plus one.
extern "C" fn echo(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(ECHO_EP));
    let mut message = ep.recv();
    loop {
        let word = message.map_or(0, |m| m.words[0]);
        message = ep.reply_recv(MessageInfo::new(0, 0, 0, 1), [word + 1, 0, 0, 0]);
    }
}

/// The badge of the first thread's fault endpoint capability (the second's is one more).
const BADGE: u64 = 0xc4a0;
/// Where this task writes the code; where the thread sees it (read-only, executable), its
/// stack page (read-write) and its IPC buffer page.
const CODE_HERE: u64 = 0x5000_0000_0000;
const CODE_THERE: u64 = 0x1000_0000;
const STACK_THERE: u64 = CODE_THERE + 0x1000;
const IPC_THERE: u64 = CODE_THERE + 0x2000;
const IPC2_THERE: u64 = CODE_THERE + 0x3000;
/// The storm's table of random system calls and its counter: here, and in the threads'
/// space.
const STORM_HERE: u64 = CODE_HERE + 0x1000;
const STORM_THERE: u64 = CODE_THERE + 0x4000;
/// Entries of the storm's table (64 bytes each); the counter follows them.
const STORM_ENTRIES: u64 = 63;
const STORM_COUNTER: u64 = STORM_ENTRIES * 64;
/// System calls the storm makes (at least).
const STORM_CALLS: u64 = 1_000_000;
/// Radix of the thread's CNode, and the guard that makes 64-bit addresses reach it.
const CHAOS_RADIX: u64 = 4;
const GUARD_WORD: u64 = 64 - CHAOS_RADIX;

/// Fault events to take; the code page is rewritten every [`REWRITE`] of them.
const EVENTS: u32 = 10000;
const REWRITE: u32 = 64;
/// Yields to wait for the next fault before the threads count as blocked or spinning.
const POLLS: u32 = 1;
/// Faults of one thread in a row after which the other counts as blocked or spinning.
const QUIET: u32 = 2;
/// The seed of the whole run (printed, so that a failure can be replayed).
const SEED: u64 = 0x00c1_ea7e_5eed_0001;

/// A random register value: small numbers (capability addresses, labels, lengths) are
/// likelier to reach deep into the kernel than arbitrary ones.
fn value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.below(16),
        1 => rng.below(4096),
        2 => CODE_THERE + rng.below(0x3000),
        _ => rng.word(),
    }
}

/// System call numbers the thread's templates use: every call but `DebugPutChar` and
/// `DebugExit` (which a test program may use to end the run), plus unknown ones.
const NUMBERS: [u32; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0x1234, 0x102];

/// Fills the code page with random chunks.
fn write_code(rng: &mut Rng) {
    let mut code = [0u8; 4096];
    let mut i = 0;
    while i < code.len() - 32 {
        let chunk: &[u8] = match rng.below(8) {
            // A system call with random arguments.
            0..=2 => {
                let number = NUMBERS[rng.below(NUMBERS.len() as u64) as usize];
                let cptr = value(rng) as u32;
                let info = ((rng.below(120) << 12) | (rng.below(4) << 7) | rng.below(12)) as u32;
                let word = value(rng) as u32;
                let mut t = [0u8; 22];
                t[0] = 0xb8; // mov eax, number
                t[1..5].copy_from_slice(&number.to_le_bytes());
                t[5] = 0xbf; // mov edi, cptr
                t[6..10].copy_from_slice(&cptr.to_le_bytes());
                t[10] = 0xbe; // mov esi, info
                t[11..15].copy_from_slice(&info.to_le_bytes());
                t[15] = 0xba; // mov edx, word
                t[16..20].copy_from_slice(&word.to_le_bytes());
                t[20] = 0x0f; // syscall
                t[21] = 0x05;
                code[i..i + 22].copy_from_slice(&t);
                i += 22;
                continue;
            }
            // The direction flag set (or cleared) for whatever comes next.
            3 => &[0xfd],
            4 => &[0xfc],
            // Random bytes.
            _ => {
                let n = 1 + rng.below(12) as usize;
                for b in &mut code[i..i + n] {
                    *b = rng.word() as u8;
                }
                i += n;
                continue;
            }
        };
        code[i..i + chunk.len()].copy_from_slice(chunk);
        i += chunk.len();
    }
    for (offset, byte) in code.iter().enumerate() {
        // SAFETY: CODE_HERE maps the code frame read-write; offset < 4096.
        unsafe { core::ptr::write_volatile((CODE_HERE + offset as u64) as *mut u8, *byte) }
    }
}

/// Random registers for a start somewhere in the code page: rip, rsp, rflags, then the
/// general registers.
fn registers(rng: &mut Rng) -> [u64; 18] {
    let mut r = [0u64; 18];
    r[0] = CODE_THERE + rng.below(4000);
    r[1] = STACK_THERE + 0x800 + rng.below(0x100) * 8;
    r[2] = 0x202 | (rng.word() & 0xcd5);
    for v in &mut r[3..] {
        *v = value(rng);
    }
    r
}

/// Builds the threads' address space, CSpace and TCBs (not started).
fn build() -> Result<(), Error> {
    let step = |what: &'static str| {
        move |e: Error| {
            println!("chaos-test: building: {what}: {e:?}");
            e
        }
    };
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(FEP), 1).map_err(step("fault endpoint"))?;
    ROOT.mint(ROOT.slot(at(FEP_BADGED), D), ROOT.slot(at(FEP), D), Rights::ALL, BADGE)
        .map_err(step("first badge"))?;
    ROOT.mint(ROOT.slot(at(FEP_BADGED2), D), ROOT.slot(at(FEP), D), Rights::ALL, BADGE + 1)
        .map_err(step("second badge"))?;
    // Its address space: code (read-only alias of a frame mapped here), stack, IPC buffer.
    untyped.retype(ObjectType::Pml4, 0, ROOT, 0, 0, at(VSPACE2), 1).map_err(step("VSpace"))?;
    Cap::<cleave_rt::cap::kind::AsidPool>::from_cptr(cleave_abi::boot_info::slot::ASID_POOL)
        .assign(Cap::<VSpace>::from_cptr(at(VSPACE2)))
        .map_err(step("its ASID"))?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let other: Cap<VSpace> = Cap::from_cptr(at(VSPACE2));
    map_tables(untyped, other, CODE_THERE, at(TABLES)).map_err(step("its page tables"))?;
    map_tables(untyped, me, CODE_HERE, at(TABLES + 3)).map_err(step("our page tables"))?;
    frame(untyped, at(CODE))?.map(me, CODE_HERE, Rights::ALL, true).map_err(step("code frame"))?;
    ROOT.copy(ROOT.slot(at(CODE_ALIAS), D), ROOT.slot(at(CODE), D), Rights::READ)
        .map_err(step("code alias"))?;
    Cap::<Frame>::from_cptr(at(CODE_ALIAS))
        .map(other, CODE_THERE, Rights::READ, false)
        .map_err(step("code mapping"))?;
    frame(untyped, at(STACK))?.map(other, STACK_THERE, Rights::ALL, true).map_err(step("stack"))?;
    frame(untyped, at(IPC))?.map(other, IPC_THERE, Rights::ALL, true).map_err(step("first IPC buffer"))?;
    frame(untyped, at(IPC2))?.map(other, IPC2_THERE, Rights::ALL, true).map_err(step("second IPC buffer"))?;
    // The storm's table and counter, read-write in both spaces.
    frame(untyped, at(STORM))?.map(me, STORM_HERE, Rights::ALL, true).map_err(step("storm page"))?;
    ROOT.copy(ROOT.slot(at(STORM_ALIAS), D), ROOT.slot(at(STORM), D), Rights::ALL)
        .map_err(step("storm alias"))?;
    Cap::<Frame>::from_cptr(at(STORM_ALIAS))
        .map(other, STORM_THERE, Rights::ALL, true)
        .map_err(step("storm mapping"))?;
    // Its CSpace: 16 slots, reached through a 60-bit zero guard.
    untyped.retype(ObjectType::CNode, CHAOS_RADIX, ROOT, 0, 0, at(CNODE), 1).map_err(step("CNode"))?;
    let cnode: Cap<CNode> = Cap::from_cptr(at(CNODE));
    ROOT.mint(ROOT.slot(at(CNODE_GUARDED), D), ROOT.slot(at(CNODE), D), Rights::ALL, GUARD_WORD)
        .map_err(step("guarded CNode"))?;
    let inside = |i: u64| cnode.slot(i, CHAOS_RADIX);
    untyped.retype(ObjectType::Endpoint, 0, cnode, 0, 0, 1, 1).map_err(step("its endpoint"))?;
    untyped.retype(ObjectType::Notification, 0, cnode, 0, 0, 2, 1).map_err(step("its notification"))?;
    untyped.retype(ObjectType::Frame4K, 0, cnode, 0, 0, 3, 1).map_err(step("its frame"))?;
    cnode.copy(inside(4), ROOT.slot(at(VSPACE2), D), Rights::ALL).map_err(step("its VSpace cap"))?;
    untyped.retype(ObjectType::Untyped, 16, cnode, 0, 0, 5, 1).map_err(step("its untyped"))?;
    cnode.copy(inside(6), ROOT.slot(at(CNODE_GUARDED), D), Rights::ALL).map_err(step("its CNode cap"))?;
    // Its threads, at this task's priority (255), so that yielding lets them run.
    for (slot, ipc, buffer, fep, name) in
        [(TCB, IPC, IPC_THERE, FEP_BADGED, "chaos-1"), (TCB2, IPC2, IPC2_THERE, FEP_BADGED2, "chaos-2")]
    {
        untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(slot), 1).map_err(step("TCB"))?;
        let tcb: Cap<Tcb> = Cap::from_cptr(at(slot));
        tcb.configure(
            Cap::from_cptr(at(CNODE_GUARDED)),
            other,
            Some((buffer, Cap::from_cptr(at(ipc)))),
            Some(Cap::from_cptr(at(fep))),
        )
        .map_err(step("configure"))?;
        tcb.set_name(name).map_err(step("name"))?;
        tcb.set_priority(255).map_err(step("priority"))?;
    }
    Ok(())
}

/// Counts of what the threads did.
#[derive(Default)]
struct Tally {
    exceptions: u32,
    page_faults: u32,
    unknown_syscalls: u32,
    other: u32,
    stuck: u32,
}

/// Runs the threads for [`EVENTS`] fault events.
fn run(rng: &mut Rng) -> Result<Tally, &'static str> {
    let threads: [Cap<Tcb>; 2] = [Cap::from_cptr(at(TCB)), Cap::from_cptr(at(TCB2))];
    let fep: Cap<Endpoint> = Cap::from_cptr(at(FEP));
    let restart = |rng: &mut Rng, t: Cap<Tcb>| -> Result<(), &'static str> {
        t.suspend().map_err(|_| "suspend")?;
        t.write_registers(true, &registers(rng)).map_err(|_| "restart")
    };
    let mut tally = Tally::default();
    let mut quiet = [0u32; 2];
    for event in 0..EVENTS {
        if event % REWRITE == 0 {
            // A fresh page and a fresh start (a resumed thread would run on into it).
            for t in threads {
                t.suspend().map_err(|_| "suspend")?;
            }
            write_code(rng);
            for t in threads {
                restart(rng, t)?;
            }
        }
        // A fault already waiting, or one after each yield to the threads.
        let mut message = None;
        for poll in 0..=POLLS {
            if poll > 0 {
                syscall::yield_now();
            }
            match fep.nb_recv() {
                Ok(m) if m.badge == BADGE || m.badge == BADGE + 1 => {
                    message = Some(m);
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err("polling the fault endpoint failed"),
            }
        }
        let Some(m) = message else {
            // Both blocked in IPC, or spinning: start them somewhere else.
            tally.stuck += 1;
            for t in threads {
                restart(rng, t)?;
            }
            continue;
        };
        let k = (m.badge - BADGE) as usize;
        let tcb = threads[k];
        // The other one, quiet for a while, is spinning or blocked: start it elsewhere (a
        // spinner takes a whole time slice from every yield here).
        quiet[k] = 0;
        quiet[1 - k] += 1;
        if quiet[1 - k] > QUIET {
            quiet[1 - k] = 0;
            tally.stuck += 1;
            restart(rng, threads[1 - k])?;
        }
        match m.info.label() {
            fault::USER_EXCEPTION => tally.exceptions += 1,
            fault::VM_FAULT => tally.page_faults += 1,
            fault::UNKNOWN_SYSCALL => tally.unknown_syscalls += 1,
            _ => tally.other += 1,
        }
        // Usually on from the next byte, registers as the fault left them (unless the code
        // left rsp where no user address can be: the kernel refuses to resume it there).
        let rip = m.words[2].wrapping_add(1);
        let rip = if (CODE_THERE..CODE_THERE + 4080).contains(&rip) { rip } else { CODE_THERE };
        let resumed = rng.below(8) != 0
            && match tcb.write_registers(false, &[rip, m.words[3]]) {
                Ok(()) => true,
                Err(Error::InvalidArgument) => false,
                Err(_) => return Err("rewriting rip"),
            };
        if resumed {
            syscall::reply(MessageInfo::default(), [0; 4]).map_err(|_| "resume")?;
        } else {
            restart(rng, tcb)?;
        }
    }
    for t in threads {
        t.suspend().map_err(|_| "suspend at the end")?;
    }
    Ok(tally)
}

/// The storm's loop, position-independent: r12 walks the table from r15 to r13 (then
/// wraps), r14 is the counter. Each entry holds rax, rdi, rsi, rdx, r8, r9, r10.
const STORM_CODE: [u8; 53] = [
    0x49, 0x8b, 0x04, 0x24, // top: mov rax, [r12]
    0x49, 0x8b, 0x7c, 0x24, 0x08, // mov rdi, [r12+8]
    0x49, 0x8b, 0x74, 0x24, 0x10, // mov rsi, [r12+16]
    0x49, 0x8b, 0x54, 0x24, 0x18, // mov rdx, [r12+24]
    0x4d, 0x8b, 0x44, 0x24, 0x20, // mov r8, [r12+32]
    0x4d, 0x8b, 0x4c, 0x24, 0x28, // mov r9, [r12+40]
    0x4d, 0x8b, 0x54, 0x24, 0x30, // mov r10, [r12+48]
    0x0f, 0x05, // syscall
    0x49, 0xff, 0x06, // inc qword [r14]
    0x49, 0x83, 0xc4, 0x40, // add r12, 64
    0x4d, 0x39, 0xec, // cmp r12, r13
    0x72, 0xd0, // jb top
    0x4d, 0x89, 0xfc, // mov r12, r15
    0xeb, 0xcb, // jmp top
];

/// Fills the storm's table with random system calls: the numbers the random code uses
/// (unknown ones rarely: each is a fault this task answers), small capability addresses,
/// random message infos and words.
fn write_storm_table(rng: &mut Rng) {
    for e in 0..STORM_ENTRIES {
        let number = match rng.below(64) {
            0 => 0x1234,
            n => u64::from(NUMBERS[(n % 9) as usize]),
        };
        let info = (rng.below(120) << 12) | (rng.below(4) << 7) | rng.below(12);
        let words = [number, rng.below(24), info, value(rng), value(rng), value(rng), value(rng)];
        for (k, w) in words.iter().enumerate() {
            // SAFETY: STORM_HERE maps the storm page read-write; e < 63, k < 7.
            unsafe { core::ptr::write_volatile((STORM_HERE + e * 64 + 8 * k as u64) as *mut u64, *w) }
        }
    }
}

fn storm_count() -> u64 {
    // SAFETY: STORM_HERE maps the storm page; the counter is an aligned word in it.
    unsafe { core::ptr::read_volatile((STORM_HERE + STORM_COUNTER) as *const u64) }
}

/// Registers that start a storm thread at a random entry of its table.
fn storm_registers(rng: &mut Rng) -> [u64; 18] {
    let mut r = [0u64; 18];
    r[0] = CODE_THERE; // the loop, at the start of the code page
    r[1] = STACK_THERE + 0x800;
    r[2] = 0x202;
    r[14] = STORM_THERE + 64 * rng.below(STORM_ENTRIES); // r12
    r[15] = STORM_THERE + 64 * STORM_ENTRIES; // r13
    r[16] = STORM_THERE + STORM_COUNTER; // r14
    r[17] = STORM_THERE; // r15
    r
}

/// The storm: both threads run the loop over random system calls (table rewritten now
/// and then) until they have made [`STORM_CALLS`]; faults are answered (resumed after the
/// call), threads that block are restarted.
fn storm(rng: &mut Rng) -> Result<(u64, u32, u32), &'static str> {
    let threads: [Cap<Tcb>; 2] = [Cap::from_cptr(at(TCB)), Cap::from_cptr(at(TCB2))];
    let fep: Cap<Endpoint> = Cap::from_cptr(at(FEP));
    for t in threads {
        t.suspend().map_err(|_| "suspend")?;
    }
    for (offset, byte) in STORM_CODE.iter().enumerate() {
        // SAFETY: CODE_HERE maps the code frame read-write; offset < 4096.
        unsafe { core::ptr::write_volatile((CODE_HERE + offset as u64) as *mut u8, *byte) }
    }
    write_storm_table(rng);
    for t in threads {
        t.write_registers(true, &storm_registers(rng)).map_err(|_| "start a storm thread")?;
    }
    let (mut faults, mut restarts, mut rounds) = (0u32, 0u32, 0u64);
    let mut last = storm_count();
    while storm_count() < STORM_CALLS {
        rounds += 1;
        if rounds > 10_000_000 {
            return Err("the storm made no progress");
        }
        syscall::yield_now();
        match fep.nb_recv() {
            Ok(m) if m.badge == BADGE || m.badge == BADGE + 1 => {
                faults += 1;
                let t = threads[(m.badge - BADGE) as usize];
                if m.info.label() == fault::UNKNOWN_SYSCALL {
                    // Resumed after its system call: the loop goes on.
                    syscall::reply(MessageInfo::default(), [0; 4]).map_err(|_| "resume")?;
                } else {
                    t.suspend().map_err(|_| "suspend")?;
                    t.write_registers(true, &storm_registers(rng)).map_err(|_| "restart")?;
                    restarts += 1;
                }
            }
            Ok(_) => {}
            Err(_) => return Err("polling the fault endpoint failed"),
        }
        let now = storm_count();
        if now == last {
            // Both blocked (in a receive, a call, a wait): start them again elsewhere.
            for t in threads {
                t.suspend().map_err(|_| "suspend")?;
                t.write_registers(true, &storm_registers(rng)).map_err(|_| "restart")?;
            }
            restarts += 2;
        }
        if rounds % 64 == 0 {
            write_storm_table(rng);
        }
        last = now;
    }
    for t in threads {
        t.suspend().map_err(|_| "suspend at the end")?;
    }
    Ok((storm_count(), faults, restarts))
}

/// A census of the root CNode: how many slots hold a capability, by what an invocation
/// with an unknown label says (`InvalidCapability` for an empty slot, anything else for a
/// capability), and how much of the test's untyped memory is free. Before the threads'
/// objects are built and after they are revoked, the two must match.
fn census() -> (u64, bool) {
    let info = boot_info();
    let held = (1..info.empty_end)
        .filter(|&i| Cap::<Untyped>::from_cptr(i).invoke(0xffff, &[]) != Err(Error::InvalidCapability))
        .count() as u64;
    // The whole 1 MiB is free exactly when a 1 MiB untyped can be made from it (then given back).
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    let whole = untyped.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(PROBE + 3), 1).is_ok()
        && Cap::<CNode>::delete(ROOT.slot(at(PROBE + 3), D)).is_ok();
    (held, whole)
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let (big, _) = emulator_tests::largest_ram_untyped(info);
    let mut t = Suite::plan(4);
    let mut rng = Rng(SEED);
    println!("chaos-test: seed {SEED:#x}, {EVENTS} fault events");
    let made = big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1).map_err(|_| "untyped");
    let before = census();
    println!(
        "chaos-test: census before: {} capabilities in the root CNode, test memory whole: {}",
        before.0, before.1
    );
    let built = made.and_then(|()| build().map_err(|_| "building the threads' objects"));
    t.case("random-code-thread-built", built);
    let ran = run(&mut rng);
    let summary = ran.map(|t| {
        println!(
            "chaos-test: {} exceptions, {} page faults, {} unknown system calls, {} other, {} restarts of a blocked or spinning thread",
            t.exceptions, t.page_faults, t.unknown_syscalls, t.other, t.stuck
        );
        t.exceptions > 0 && t.page_faults > 0 && t.unknown_syscalls > 0
    });
    t.case(
        "random-code-cannot-break-the-kernel",
        summary.and_then(|varied| check(varied, "the random code did not fault in every way")),
    );
    let stormed = storm(&mut rng);
    t.case("a-million-random-system-calls", stormed.and_then(|(calls, faults, restarts)| {
            println!(
                "chaos-test: storm: {calls} random system calls, {faults} faults answered, {restarts} restarts of a blocked thread"
            );
            check(calls >= STORM_CALLS, "fewer calls than planned")
        }),
    );
    t.case(
        "kernel-works-after-random-code",
        (|| {
            // A signal still arrives.
            let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
            untyped
                .retype(ObjectType::Notification, 0, ROOT, 0, 0, at(PROBE), 1)
                .map_err(|_| "notification")?;
            ROOT.mint(ROOT.slot(at(PROBE + 1), D), ROOT.slot(at(PROBE), D), Rights::ALL, 0b100)
                .map_err(|_| "mint")?;
            Cap::<Notification>::from_cptr(at(PROBE + 1)).signal().map_err(|_| "signal")?;
            let bits = Cap::<Notification>::from_cptr(at(PROBE)).poll().map_err(|_| "poll")?;
            check(bits == 0b100, "the signal was lost")?;
            // The threads' objects all go with their untyped, and its whole 1 MiB makes new
            // ones: a thread and an endpoint there answer a call (stale queue or scheduler
            // links into the old objects would show here).
            Cap::<CNode>::revoke(ROOT.slot(at(UT), D)).map_err(|_| "revoke")?;
            untyped
                .retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(PROBE + 2), 1)
                .map_err(|_| "memory not whole")?;
            let reused: Cap<Untyped> = Cap::from_cptr(at(PROBE + 2));
            reused.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(ECHO_EP), 1).map_err(|_| "endpoint")?;
            reused.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(ECHO_TCB), 1).map_err(|_| "tcb")?;
            let tcb: Cap<Tcb> = Cap::from_cptr(at(ECHO_TCB));
            tcb.configure(ROOT, Cap::from_cptr(slot::VSPACE), None, None).map_err(|_| "configure")?;
            tcb.set_priority(255).map_err(|_| "priority")?;
            // Only the address is taken; the stack belongs to the echo thread alone.
            let top = (&raw mut ECHO_STACK) as u64 + ECHO_STACK_SIZE as u64 - 8;
            tcb.write_registers(true, &[echo as extern "C" fn(u64) -> ! as usize as u64, top, 0x202])
                .map_err(|_| "start")?;
            let answer = Cap::<Endpoint>::from_cptr(at(ECHO_EP))
                .call(MessageInfo::new(0, 0, 0, 1), [41, 0, 0, 0])
                .map_err(|_| "call")?;
            check(answer.words[0] == 42, "wrong answer from the reused memory")?;
            // The census: after everything the threads made is revoked (and the echo
            // thread's objects too), the root CNode holds what it held before, and the
            // memory is whole.
            Cap::<Tcb>::from_cptr(at(ECHO_TCB)).suspend().map_err(|_| "suspend echo")?;
            Cap::<CNode>::revoke(ROOT.slot(at(UT), D)).map_err(|_| "revoke again")?;
            for probe in [PROBE, PROBE + 1, PROBE + 2] {
                let _ = Cap::<CNode>::delete(ROOT.slot(at(probe), D));
            }
            let after = census();
            println!(
                "chaos-test: census after: {} capabilities in the root CNode, test memory whole: {}",
                after.0, after.1
            );
            check(after == before && before.1, "the census changed")
        })(),
    );
    t.finish()
}
