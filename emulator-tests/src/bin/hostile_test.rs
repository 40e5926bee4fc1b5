//! Hostile component test (root task): each case tries, step by step, one attack the kernel
//! review found (issue 11) and reports what it got. A case passes only when the attack
//! is refused and the kernel runs on ([`emulator_tests::Suite`]).
//!
//! - `detached-page-table-keeps-nothing` (finding 2): map a frame through a page table,
//!   unmap the table, delete the frame, map the table again: its old entry must be gone
//!   (a new frame maps at the same address, and reads as fresh memory).
//! - `second-call-discards-first-reply` (finding 4): a server takes two calls without
//!   replying; the first caller must wake with `ReplyLost`, the second get its reply.
//! - `last-user-page-unmappable` (finding 5): no frame maps in the last page of the lower
//!   half, nor a 2 MiB frame reaching into it.
//! - `ipc-buffer-must-be-writable-ram` (finding 6): a read-only frame is no IPC buffer.
//! - `binding-needs-read-right` (finding 8): a signal-only notification capability cannot
//!   bind (and so steal) its signals.
//! - `vcpu-ports-close-with-their-capability` (finding 9): ports a Vcpu opened through a
//!   copy of an IoPort capability close, and the range is issuable again, when the original
//!   is revoked.
//! - `asid-pools-confine-exhaustion` (finding 10): a pool of ASIDs is used up; another
//!   pool still gives ASIDs; the used-up pool's destruction leaves its roots unusable.
//! - `console-is-a-privilege` (console exhaustion): a thread the root task did not allow
//!   the console writes 100,000 bytes to it; every write is refused and the console still
//!   takes the root task's next line.
//! - `configure-cannot-destroy-itself` (finding 3, last: it gives up the root task's own
//!   CNode capability): the root thread, whose CSpace slot then holds the last capability to
//!   the CNode that holds its own TCB capability, configures itself without a CSpace.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{
    CNode, Endpoint, Frame, IoPort, IoPortControl, Notification, PageTable, Tcb, Untyped, VSpace, Vcpu,
};
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use emulator_tests::{DEPTH as D, ROOT, Suite, at, check};

cleave_rt::entry!(main);

const STACK_SIZE: usize = 8 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; 4] = [const { Stack([0; STACK_SIZE]) }; 4];

// Slot plan (offsets from the first free slot).
const UT: u64 = 0;
const EP: u64 = 1;
const DONE: u64 = 2;
const TCB0: u64 = 3; // 3..6
const SCRATCH: u64 = 10; // 10..40 per case

/// What the threads of `second-call-discards-first-reply` saw: the first and second
/// caller's status (0 or an error code), and what the server's second receive got.
static FIRST_CALLER: AtomicU64 = AtomicU64::new(u64::MAX);
static SECOND_CALLER: AtomicU64 = AtomicU64::new(u64::MAX);
/// How many of the flooder's console writes were refused, and how many got through.
static FLOOD_REFUSED: AtomicU64 = AtomicU64::new(0);
static FLOOD_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Console writes the flooder tries: many times what the kernel's 8 KiB queue holds.
const FLOOD: u64 = 100_000;

fn untyped() -> Cap<Untyped> {
    Cap::from_cptr(at(UT))
}

fn spawn(index: usize, entry: extern "C" fn(u64) -> !, arg: u64, priority: u8) -> Result<(), Error> {
    // SAFETY: only the address is taken; each stack belongs to one thread.
    let top = unsafe { &raw mut STACKS[index] } as u64 + STACK_SIZE as u64;
    emulator_tests::start_thread(untyped(), at(TCB0 + index as u64), entry, arg, priority, top).map(drop)
}

fn park() -> ! {
    let done: Cap<Notification> = Cap::from_cptr(at(DONE));
    let _ = done.signal();
    loop {
        // A notification nobody else signals after this: the thread waits for good.
        let never: Cap<Notification> = Cap::from_cptr(at(SCRATCH + 39));
        let _ = never.wait();
        cleave_rt::syscall::yield_now();
    }
}

/// The server: takes a call, then (without replying) another, replies to the second.
extern "C" fn server(_: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
    let _ = ep.recv();
    if ep.recv().is_ok() {
        let _ = cleave_rt::syscall::reply(MessageInfo::new(0, 0, 0, 1), [7, 0, 0, 0]);
    }
    park()
}

/// A caller: records its call's status.
extern "C" fn caller(which: u64) -> ! {
    let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
    let status = match ep.call(MessageInfo::new(1, 0, 0, 1), [which, 0, 0, 0]) {
        Ok(m) if m.words[0] == 7 => 0,
        Ok(_) => 1000,
        Err(e) => e as u64,
    };
    [&FIRST_CALLER, &SECOND_CALLER][which as usize % 2].store(status, SeqCst);
    park()
}

/// A thread without the console privilege writes lines to the debug console as fast as
/// it can.
extern "C" fn flooder(_: u64) -> ! {
    for i in 0..FLOOD {
        let byte = if i % 64 == 63 { b'\n' } else { b'x' };
        let r = cleave_rt::syscall::raw(
            cleave_abi::Syscall::DebugPutChar,
            u64::from(byte),
            MessageInfo::default(),
            [0; 4],
        );
        if r.status == Error::IllegalOperation as u64 {
            FLOOD_REFUSED.fetch_add(1, SeqCst);
        } else {
            FLOOD_WRITTEN.fetch_add(1, SeqCst);
        }
    }
    park()
}

fn vspace() -> Cap<VSpace> {
    Cap::from_cptr(slot::VSPACE)
}

/// Finding 2.
fn detached_page_table() -> Result<(), &'static str> {
    let v = 0x6000_0000_0000u64;
    let base = at(SCRATCH);
    emulator_tests::map_tables(untyped(), vspace(), v, base).map_err(|_| "tables")?;
    let pt: Cap<PageTable> = Cap::from_cptr(base + 2);
    let first = emulator_tests::frame(untyped(), base + 3).map_err(|_| "frame")?;
    first.map(vspace(), v, Rights::ALL, true).map_err(|_| "map the frame")?;
    // SAFETY: v maps the frame just made, read-write.
    unsafe { core::ptr::write_volatile(v as *mut u64, 0x5eed) };
    pt.unmap().map_err(|_| "unmap the table")?;
    Cap::<CNode>::delete(ROOT.slot(base + 3, D)).map_err(|_| "delete the frame")?;
    pt.map(vspace(), v).map_err(|_| "map the table again")?;
    let second = emulator_tests::frame(untyped(), base + 4).map_err(|_| "second frame")?;
    match second.map(vspace(), v, Rights::ALL, true) {
        Ok(()) => {}
        Err(Error::DeleteFirst) => return Err("the detached table still held the deleted frame's entry"),
        Err(_) => return Err("map the second frame"),
    }
    // SAFETY: v now maps the second, fresh frame.
    let seen = unsafe { core::ptr::read_volatile(v as *const u64) };
    check(seen == 0, "the address still reached the deleted frame's contents")
}

/// Finding 4.
fn second_call() -> Result<(), &'static str> {
    untyped().retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP), 1).map_err(|_| "endpoint")?;
    spawn(0, server, 0, 90).map_err(|_| "server")?;
    spawn(1, caller, 0, 80).map_err(|_| "first caller")?;
    spawn(2, caller, 1, 80).map_err(|_| "second caller")?;
    let done: Cap<Notification> = Cap::from_cptr(at(DONE));
    for _ in 0..3 {
        done.wait().map_err(|_| "wait")?;
    }
    check(FIRST_CALLER.load(SeqCst) == Error::ReplyLost as u64, "the first caller did not get ReplyLost")?;
    check(SECOND_CALLER.load(SeqCst) == 0, "the second caller did not get its reply")
}

/// Finding 5.
fn last_user_page() -> Result<(), &'static str> {
    let base = at(SCRATCH + 5);
    let frame = emulator_tests::frame(untyped(), base).map_err(|_| "frame")?;
    check(
        frame.map(vspace(), 0x7fff_ffff_f000, Rights::ALL, true) == Err(Error::InvalidArgument),
        "last page mapped",
    )?;
    untyped().retype(ObjectType::Frame2M, 0, ROOT, 0, 0, base + 1, 1).map_err(|_| "large frame")?;
    let large: Cap<Frame> = Cap::from_cptr(base + 1);
    check(
        large.map(vspace(), 0x7fff_ffe0_0000, Rights::ALL, true) == Err(Error::InvalidArgument),
        "a large frame reaching into the last page mapped",
    )
}

/// Finding 6.
fn ipc_buffer_rights() -> Result<(), &'static str> {
    let base = at(SCRATCH + 8);
    untyped().retype(ObjectType::Tcb, 0, ROOT, 0, 0, base, 1).map_err(|_| "tcb")?;
    let frame = emulator_tests::frame(untyped(), base + 1).map_err(|_| "frame")?;
    ROOT.mint(ROOT.slot(base + 2, D), ROOT.slot(frame.cptr(), D), Rights::READ, 0).map_err(|_| "mint")?;
    let tcb: Cap<Tcb> = Cap::from_cptr(base);
    let read_only: Cap<Frame> = Cap::from_cptr(base + 2);
    check(
        tcb.configure(ROOT, vspace(), Some((0x7000_0000, read_only)), None) == Err(Error::InvalidCapability),
        "a read-only frame became an IPC buffer",
    )?;
    check(
        tcb.configure(ROOT, vspace(), Some((0x7000_0000, frame)), None).is_ok(),
        "a read-write frame refused",
    )
}

/// Finding 8.
fn binding_rights() -> Result<(), &'static str> {
    let base = at(SCRATCH + 12);
    untyped().retype(ObjectType::Notification, 0, ROOT, 0, 0, base, 1).map_err(|_| "notification")?;
    ROOT.mint(ROOT.slot(base + 1, D), ROOT.slot(base, D), Rights::WRITE, 0).map_err(|_| "mint")?;
    untyped().retype(ObjectType::Tcb, 0, ROOT, 0, 0, base + 2, 1).map_err(|_| "tcb")?;
    let tcb: Cap<Tcb> = Cap::from_cptr(base + 2);
    let signal_only: Cap<Notification> = Cap::from_cptr(base + 1);
    check(
        tcb.bind_notification(signal_only) == Err(Error::InsufficientRights),
        "bound with the signal right only",
    )?;
    check(tcb.bind_notification(Cap::from_cptr(base)).is_ok(), "bound with every right refused")
}

/// Finding 9.
fn vcpu_ports() -> Result<(), &'static str> {
    let base = at(SCRATCH + 16);
    let control: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
    control.issue(0x80, 0x87, ROOT.slot(base, D)).map_err(|_| "issue")?;
    ROOT.copy(ROOT.slot(base + 1, D), ROOT.slot(base, D), Rights::ALL).map_err(|_| "copy")?;
    untyped().retype(ObjectType::Vcpu, 0, ROOT, 0, 0, base + 2, 1).map_err(|_| "vcpu")?;
    let vcpu: Cap<Vcpu> = Cap::from_cptr(base + 2);
    let copy: Cap<IoPort> = Cap::from_cptr(base + 1);
    for port in 0x80..0x88 {
        vcpu.set_io_exit(Some(copy), port, port, false).map_err(|_| "open a port")?;
    }
    check(
        vcpu.set_io_exit(Some(copy), 0x80, 0x81, false) == Err(Error::NotEnoughMemory),
        "a ninth range opened",
    )?;
    Cap::<CNode>::revoke(ROOT.slot(base, D)).map_err(|_| "revoke")?;
    Cap::<CNode>::delete(ROOT.slot(base, D)).map_err(|_| "delete")?;
    // No grant keeps the range issued, and the Vcpu's grant slots are free again.
    control.issue(0x80, 0x87, ROOT.slot(base, D)).map_err(|_| "the range stayed issued after its revoke")?;
    let again: Cap<IoPort> = Cap::from_cptr(base);
    for port in 0x80..0x88 {
        vcpu.set_io_exit(Some(again), port, port, false)
            .map_err(|_| "the revoked grants still took the slots")?;
    }
    Ok(())
}

/// ASIDs come from pools (finding 10): whoever holds a pool can use up only that pool. A
/// component-sized pool of 511 ASIDs is exhausted; the root task's own pool still gives
/// ASIDs; destroying the exhausted pool leaves its roots without ASIDs (nothing maps into
/// them any more).
fn asid_exhaustion() -> Result<(), &'static str> {
    use cleave_rt::cap::kind::{AsidControl, AsidPool};
    const ROOTS: u64 = 512;
    let base = at(SCRATCH + 60);
    let control: Cap<AsidControl> = Cap::from_cptr(slot::ASID_CONTROL);
    untyped().retype(ObjectType::Untyped, 12, ROOT, 0, 0, base, 1).map_err(|_| "4 KiB untyped")?;
    control.make_pool(Cap::from_cptr(base), ROOT.slot(base + 1, D)).map_err(|_| "make a pool")?;
    let pool: Cap<AsidPool> = Cap::from_cptr(base + 1);
    let first = base + 2;
    let mut made = 0;
    while made < ROOTS {
        let n = (ROOTS - made).min(256);
        untyped().retype(ObjectType::Pml4, 0, ROOT, 0, 0, first + made, n).map_err(|_| "roots")?;
        made += n;
    }
    for i in 0..ROOTS - 1 {
        pool.assign(Cap::<VSpace>::from_cptr(first + i)).map_err(|_| "an ASID from a pool with room")?;
    }
    let last: Cap<VSpace> = Cap::from_cptr(first + ROOTS - 1);
    check(pool.assign(last) == Err(Error::NotEnoughMemory), "a full pool gave an ASID")?;
    let own: Cap<AsidPool> = Cap::from_cptr(slot::ASID_POOL);
    check(own.assign(last).is_ok(), "another pool was exhausted too")?;
    Cap::<CNode>::delete(ROOT.slot(base + 1, D)).map_err(|_| "delete the pool")?;
    untyped().retype(ObjectType::Pdpt, 0, ROOT, 0, 0, first + ROOTS, 1).map_err(|_| "pdpt")?;
    let table: Cap<PageTable> = Cap::from_cptr(first + ROOTS);
    check(
        table.map(Cap::from_cptr(first), 0x1000_0000) == Err(Error::InvalidCapability),
        "a root of the destroyed pool still took a mapping",
    )?;
    check(table.map(last, 0x1000_0000).is_ok(), "the other pool's root refused a mapping")
}

/// The console is a privilege: a thread without it (threads start without; the root task
/// has it and gives it to none here) has every write refused and cannot fill the console
/// queue the others share.
fn console_flood() -> Result<(), &'static str> {
    spawn(3, flooder, 0, 90).map_err(|_| "flooder")?;
    let done: Cap<Notification> = Cap::from_cptr(at(DONE));
    done.wait().map_err(|_| "wait")?;
    let (refused, written) = (FLOOD_REFUSED.load(SeqCst), FLOOD_WRITTEN.load(SeqCst));
    println!("hostile-test: the flooder's console writes: {refused} refused, {written} written");
    check(refused == FLOOD && written == 0, "a thread without the console privilege wrote to it")?;
    // This line needs room in the queue: it must come out whole (the judge looks for it).
    println!("hostile-test: the console still takes this line after the flood");
    Ok(())
}

/// Finding 3 (the root task's last act: afterwards it has no capability to its CNode).
fn configure_itself() -> Result<(), &'static str> {
    // The other threads' CSpace slots hold copies of the CNode capability: they go first.
    for tcb in [at(TCB0), at(TCB0 + 1), at(TCB0 + 2), at(TCB0 + 3), at(SCRATCH + 8)] {
        Cap::<CNode>::delete(ROOT.slot(tcb, D)).map_err(|_| "delete a thread")?;
    }
    Cap::<CNode>::delete(ROOT.slot(slot::CNODE, D)).map_err(|_| "delete the CNode capability")?;
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    let result = me.configure(Cap::from_cptr(0), vspace(), None, None);
    println!("hostile-test: configuring itself without its CSpace: {result:?}");
    check(
        result == Err(Error::IllegalOperation),
        "configuring away the last capability to my CSpace was allowed",
    )?;
    // Still alive, CSpace intact: the TCB capability still resolves.
    check(me.state().is_ok(), "the thread's CSpace is gone")
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let (big, _) = emulator_tests::largest_ram_untyped(info);
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    let mut t = Suite::plan(9);
    let setup = big
        .retype(ObjectType::Untyped, 23, ROOT, 0, 0, at(UT), 1)
        .and_then(|()| untyped().retype(ObjectType::Notification, 0, ROOT, 0, 0, at(DONE), 1))
        .and_then(|()| untyped().retype(ObjectType::Notification, 0, ROOT, 0, 0, at(SCRATCH + 39), 1))
        .and_then(|()| me.set_priority(100));
    if setup.is_err() {
        return t.abandon("set-up");
    }
    t.case("detached-page-table-keeps-nothing", detached_page_table());
    t.case("second-call-discards-first-reply", second_call());
    t.case("last-user-page-unmappable", last_user_page());
    t.case("ipc-buffer-must-be-writable-ram", ipc_buffer_rights());
    t.case("binding-needs-read-right", binding_rights());
    t.case("vcpu-ports-close-with-their-capability", vcpu_ports());
    t.case("asid-pools-confine-exhaustion", asid_exhaustion());
    t.case("console-is-a-privilege", console_flood());
    t.case("configure-cannot-destroy-itself", configure_itself());
    t.finish()
}
