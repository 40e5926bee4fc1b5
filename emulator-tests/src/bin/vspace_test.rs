//! Address-space test suite (root task): page tables and frames mapped into the root's
//! own VSpace, shared aliases, faults after unmapping and on writes to a read-only
//! mapping (delivered to a fault handler), and IPC with a thread in a second address space.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::syscall::fault;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{Endpoint, Frame, PageTable, Tcb, Untyped, VSpace};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use emulator_tests::{DEPTH, ROOT, Suite, at, check, echo_server_code, frame, map_tables};

cleave_rt::entry!(main);

const STACK_SIZE: usize = 8 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static mut STACKS: [Stack; 2] = [const { Stack([0; STACK_SIZE]) }; 2];

/// What the prober threads read or write.
static PROBE_ADDRESS: AtomicU64 = AtomicU64::new(0);

/// A fresh region of the root's address space (PML4 entry 160).
const VA: u64 = 0x5000_0000_0000;
/// Where the second address space runs its code.
const CODE_VA: u64 = 0x1000_0000;

const UT: u64 = 0;
const FRAME: u64 = 1;
const ALIAS: u64 = 2;
const TABLES: u64 = 20; // the PDPT, then 21..24 for map_tables
const FEP: u64 = 6;
const TCB0: u64 = 7; // 7, 8, 9
const VSPACE2: u64 = 10;
const TABLES2: u64 = 24; // 24..27
const CODE: u64 = 14;
const CODE_ALIAS: u64 = 15;
const EP: u64 = 16;
const SCRATCH: u64 = 17;
const SERVER_BUFFER: u64 = 18;
const TRANSFER_EP: u64 = 19;
const GIFT: u64 = 27; // the notification the root sends
const RECEIVED: u64 = 28; // where the server receives it
/// The server's IPC buffer, in the region whose tables the first case builds.
const SERVER_BUFFER_VA: u64 = VA + 0x10000;

/// Receives one message with a capability into RECEIVED, signals through it, replies
/// with how many capabilities arrived.
extern "C" fn cap_receiver(_: u64) -> ! {
    cleave_rt::boot::set_receive_slot(SERVER_BUFFER_VA, slot::CNODE, at(RECEIVED), DEPTH);
    let ep: Cap<Endpoint> = Cap::from_cptr(at(TRANSFER_EP));
    let caps = ep.recv().map_or(99, |m| m.info.extra_caps() as u64);
    let signalled = Cap::<cleave_rt::kind::Notification>::from_cptr(at(RECEIVED)).signal().is_ok();
    let _ = cleave_rt::syscall::reply(MessageInfo::new(0, 0, 0, 2), [caps, u64::from(signalled), 0, 0]);
    loop {
        cleave_rt::syscall::yield_now();
    }
}

extern "C" fn reader(_: u64) -> ! {
    // SAFETY: reads an address the root task unmapped on purpose: the read faults and the
    // fault handler never resumes this thread.
    let value = unsafe { core::ptr::read_volatile(PROBE_ADDRESS.load(SeqCst) as *const u64) };
    PROBE_ADDRESS.store(value, SeqCst);
    loop {
        cleave_rt::syscall::yield_now();
    }
}

extern "C" fn writer(_: u64) -> ! {
    // SAFETY: writes a read-only mapping on purpose: the write faults and is never resumed.
    unsafe { core::ptr::write_volatile(PROBE_ADDRESS.load(SeqCst) as *mut u64, 1) }
    loop {
        cleave_rt::syscall::yield_now();
    }
}

/// Starts a thread in the root's address space whose faults go to the fault endpoint.
fn probe(index: u64, entry: extern "C" fn(u64) -> !) -> Result<(), Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB0 + index), 1)?;
    let tcb: Cap<Tcb> = Cap::from_cptr(at(TCB0 + index));
    tcb.configure(ROOT, Cap::from_cptr(slot::VSPACE), None, Some(Cap::from_cptr(at(FEP))))?;
    tcb.set_priority(50)?;
    // SAFETY: only the address is taken; each stack belongs to one thread.
    let top = unsafe { &raw mut STACKS[index as usize] } as u64 + STACK_SIZE as u64 - 8;
    tcb.write_registers(true, &[entry as usize as u64, top, 0x202])
}

/// Waits for the next fault and returns (label, address, error code).
fn next_fault() -> Result<(u64, u64, u64), &'static str> {
    let fep: Cap<Endpoint> = Cap::from_cptr(at(FEP));
    let m = fep.recv().map_err(|_| "no fault message")?;
    Ok((m.info.label(), m.words[0], m.words[1]))
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let mut t = Suite::plan(7);
    let _ = big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1);
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    let _ = untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(FEP), 1);
    let page = Cap::<Frame>::from_cptr(at(FRAME));
    let alias = Cap::<Frame>::from_cptr(at(ALIAS));

    t.case(
        "mapping-needs-its-page-tables",
        (|| {
            frame(untyped, at(FRAME)).map_err(|_| "frame")?;
            check(page.map(me, VA, Rights::ALL, true) == Err(Error::FailedLookup), "mapped without tables")?;
            untyped.retype(ObjectType::Pdpt, 0, ROOT, 0, 0, at(TABLES), 1).map_err(|_| "pdpt")?;
            let pt: Cap<PageTable> = Cap::from_cptr(at(TABLES));
            check(pt.map(me, VA).is_ok(), "map PDPT")?;
            check(
                page.map(me, VA, Rights::ALL, true) == Err(Error::FailedLookup),
                "mapped without a page directory",
            )?;
            map_tables(untyped, me, VA, at(TABLES + 1)).map_err(|_| "remaining tables")?;
            check(page.map(me, VA, Rights::ALL, true).is_ok(), "map frame")?;
            check(
                page.map(me, VA + 0x1000, Rights::ALL, true) == Err(Error::IllegalOperation),
                "one capability mapped twice",
            )
        })(),
    );

    t.case(
        "mapped-frame-is-shared-memory",
        (|| {
            ROOT.copy(ROOT.slot(at(ALIAS), DEPTH), ROOT.slot(at(FRAME), DEPTH), Rights::ALL)
                .map_err(|_| "copy")?;
            alias.map(me, VA + 0x1000, Rights::ALL, true).map_err(|_| "map alias")?;
            // SAFETY: both addresses were just mapped to the same frame, read-write.
            let (a, b) = unsafe {
                core::ptr::write_volatile(VA as *mut u64, 0x1234_5678);
                core::ptr::write_volatile((VA + 0x1008) as *mut u64, 0x9abc);
                (
                    core::ptr::read_volatile((VA + 0x1000) as *const u64),
                    core::ptr::read_volatile((VA + 8) as *const u64),
                )
            };
            check(a == 0x1234_5678 && b == 0x9abc, "the alias does not show the same memory")
        })(),
    );

    t.case(
        "unmapped-address-faults",
        (|| {
            alias.unmap().map_err(|_| "unmap")?;
            PROBE_ADDRESS.store(VA + 0x1010, SeqCst);
            probe(0, reader).map_err(|_| "start reader")?;
            let (label, address, _) = next_fault()?;
            check(label == fault::VM_FAULT && address == VA + 0x1010, "wrong fault")
        })(),
    );

    t.case(
        "read-only-mapping-faults-on-write",
        (|| {
            page.remap(Rights::READ, true).map_err(|_| "remap")?;
            // SAFETY: VA is still mapped (read-only now): reading it is fine.
            let still = unsafe { core::ptr::read_volatile(VA as *const u64) };
            check(still == 0x1234_5678, "read-only mapping lost its contents")?;
            PROBE_ADDRESS.store(VA, SeqCst);
            probe(1, writer).map_err(|_| "start writer")?;
            let (label, address, error) = next_fault()?;
            // Error code: present (bit 0), write (bit 1), user (bit 2).
            check(label == fault::VM_FAULT && address == VA && error & 0b111 == 0b111, "wrong fault")
        })(),
    );

    t.case(
        "ipc-with-a-second-address-space",
        (|| {
            untyped.retype(ObjectType::Pml4, 0, ROOT, 0, 0, at(VSPACE2), 1).map_err(|_| "pml4")?;
            Cap::<cleave_rt::cap::kind::AsidPool>::from_cptr(cleave_abi::boot_info::slot::ASID_POOL)
                .assign(Cap::<VSpace>::from_cptr(at(VSPACE2)))
                .map_err(|_| "its ASID")?;
            let other: Cap<VSpace> = Cap::from_cptr(at(VSPACE2));
            map_tables(untyped, other, CODE_VA, at(TABLES2)).map_err(|_| "tables")?;
            untyped.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(EP), 1).map_err(|_| "endpoint")?;
            // Write the server's code through a mapping of our own, then map it for the server.
            let code = frame(untyped, at(CODE)).map_err(|_| "code frame")?;
            code.map(me, VA + 0x2000, Rights::ALL, true).map_err(|_| "map code here")?;
            let bytes = echo_server_code(at(EP) as u32);
            for (i, b) in bytes.iter().enumerate() {
                // SAFETY: VA + 0x2000 maps the code frame read-write; i < 4096.
                unsafe { core::ptr::write_volatile((VA + 0x2000 + i as u64) as *mut u8, *b) }
            }
            ROOT.copy(ROOT.slot(at(CODE_ALIAS), DEPTH), ROOT.slot(at(CODE), DEPTH), Rights::READ)
                .map_err(|_| "copy")?;
            Cap::<Frame>::from_cptr(at(CODE_ALIAS))
                .map(other, CODE_VA, Rights::READ, false)
                .map_err(|_| "map code there")?;
            check(
                Cap::<Frame>::from_cptr(at(SCRATCH)).map(other, CODE_VA, Rights::READ, false)
                    == Err(Error::InvalidCapability),
                "mapped an empty slot",
            )?;
            untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(TCB0 + 2), 1).map_err(|_| "tcb")?;
            let server: Cap<Tcb> = Cap::from_cptr(at(TCB0 + 2));
            server.configure(ROOT, other, None, None).map_err(|_| "configure")?;
            server.set_priority(200).map_err(|_| "priority")?;
            server.write_registers(true, &[CODE_VA, 0, 0x202]).map_err(|_| "start")?;
            let ep: Cap<Endpoint> = Cap::from_cptr(at(EP));
            let reply = ep.call(MessageInfo::new(0, 0, 0, 1), [41, 0, 0, 0]).map_err(|_| "call")?;
            check(reply.words[0] == 42, "no answer from the other address space")?;
            let reply = ep.call(MessageInfo::new(0, 0, 0, 1), [99, 0, 0, 0]).map_err(|_| "call")?;
            check(reply.words[0] == 100, "second answer wrong")
        })(),
    );

    t.case(
        "vspace-deleted-under-its-mappings",
        (|| {
            // The server thread holds a copy; suspend and delete it, then the VSpace.
            let server: Cap<Tcb> = Cap::from_cptr(at(TCB0 + 2));
            server.suspend().map_err(|_| "suspend")?;
            cleave_rt::cap::Cap::<cleave_rt::kind::CNode>::delete(ROOT.slot(at(TCB0 + 2), DEPTH))
                .map_err(|_| "delete tcb")?;
            cleave_rt::cap::Cap::<cleave_rt::kind::CNode>::delete(ROOT.slot(at(VSPACE2), DEPTH))
                .map_err(|_| "delete vspace")?;
            // The code mapping went with it: unmapping through the stale capability is harmless.
            check(Cap::<Frame>::from_cptr(at(CODE_ALIAS)).unmap().is_ok(), "stale unmap")?;
            check(
                Cap::<Frame>::from_cptr(at(CODE_ALIAS)).map(
                    Cap::from_cptr(at(VSPACE2)),
                    CODE_VA,
                    Rights::READ,
                    false,
                ) == Err(Error::InvalidCapability),
                "mapped into a deleted VSpace",
            )
        })(),
    );

    t.case(
        "capability-transfer-with-grant",
        (|| {
            untyped
                .retype(ObjectType::Endpoint, 0, ROOT, 0, 0, at(TRANSFER_EP), 1)
                .map_err(|_| "endpoint")?;
            untyped
                .retype(ObjectType::Notification, 0, ROOT, 0, 0, at(GIFT), 1)
                .map_err(|_| "notification")?;
            let buffer = frame(untyped, at(SERVER_BUFFER)).map_err(|_| "buffer frame")?;
            buffer.map(me, SERVER_BUFFER_VA, Rights::ALL, true).map_err(|_| "map buffer")?;
            untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at(SCRATCH), 1).map_err(|_| "tcb")?;
            let server: Cap<Tcb> = Cap::from_cptr(at(SCRATCH));
            server.configure(ROOT, me, Some((SERVER_BUFFER_VA, buffer)), None).map_err(|_| "configure")?;
            server.set_priority(200).map_err(|_| "priority")?;
            // SAFETY: only the address is taken; stack 0's reader thread is stopped for good.
            let top = unsafe { &raw mut STACKS[0] } as u64 + STACK_SIZE as u64 - 8;
            server
                .write_registers(true, &[cap_receiver as extern "C" fn(u64) -> ! as usize as u64, top, 0x202])
                .map_err(|_| "start")?;
            // Send a badged copy: the server's signal through it shows up here as that badge.
            ROOT.mint(ROOT.slot(at(GIFT + 2), DEPTH), ROOT.slot(at(GIFT), DEPTH), Rights::ALL, 9)
                .map_err(|_| "mint")?;
            cleave_rt::boot::set_transfer_cap(cleave_abi::boot_info::ROOT_IPC_BUFFER_ADDRESS, at(GIFT + 2));
            let ep: Cap<Endpoint> = Cap::from_cptr(at(TRANSFER_EP));
            let reply = ep.call(MessageInfo::new(5, 0, 1, 0), [0; 4]).map_err(|_| "call")?;
            check(reply.words[0] == 1, "the capability did not arrive")?;
            check(reply.words[1] == 1, "the received capability did not work")?;
            let gift: Cap<cleave_rt::kind::Notification> = Cap::from_cptr(at(GIFT));
            check(gift.poll() == Ok(9), "the server's signal did not arrive")
        })(),
    );

    t.finish()
}
