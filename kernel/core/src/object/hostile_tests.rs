//! Host tests of attacks on the object layer, one per finding of the kernel review (issue
//! 11): each tries the attack's steps in a row and checks that the kernel refuses it or
//! stays consistent. `doc/testing.md` lists which test catches which finding.

extern crate std;

use super::cap::Cap;
use super::invoke::{Invocation, invoke};
use super::ipc_tests::{NoPorts, VSPACE_SLOT, World, slot, world};
use super::kmem::KernelMemory;
use super::slot::SlotOps;
use super::tcb::{Registers, TcbRef, ThreadState, reg};
use crate::VirtAddr;
use crate::addr::PhysAddr;
use crate::object::paging::At;
use cleave_abi::object::label;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights, Syscall};

/// Every entry of the table at `base`.
fn entries(w: &World, base: PhysAddr) -> std::vec::Vec<u64> {
    (0..512).map(|i| w.s.mem.read::<u64>(PhysAddr(base.0 + 8 * i))).collect()
}

fn base_of(cap: Cap) -> PhysAddr {
    match cap {
        Cap::PageTable { base, .. }
        | Cap::EptTable { base, .. }
        | Cap::VSpace { base, .. }
        | Cap::EptRoot { base, .. }
        | Cap::Frame { base, .. }
        | Cap::CNode { base, .. }
        | Cap::Tcb { base } => base,
        other => panic!("no base: {other:?}"),
    }
}

/// The boss invokes `cptr` with any number of words (as if from its IPC buffer).
fn invoke_long(w: &mut World, cptr: u64, label: u64, words: &[u64]) -> Result<(), Error> {
    let cspace = w.s.mem.cap_at(w.boss.slot(0));
    let (at, target) = super::cspace::lookup_cap(&w.s.mem, cspace, cptr)?;
    let boss = w.boss;
    invoke(&mut w.s, &mut NoPorts, boss, cspace, at, target, Invocation { label, words }).map(drop)
}

/// Makes a PML4 in slot 40 and a PDPT, page directory and page table in slots 41-43, and
/// maps the three tables under it so that they cover `vaddr`.
fn paging_chain(w: &mut World, vaddr: u64) {
    for (ty, dest) in [
        (ObjectType::Pml4, 40),
        (ObjectType::Pdpt, 41),
        (ObjectType::PageDirectory, 42),
        (ObjectType::PageTable, 43),
    ] {
        w.make(ty, dest);
    }
    for table in [41, 42, 43] {
        w.invoke(table, label::PAGE_TABLE_MAP, &[40, vaddr]).unwrap();
    }
}

/// Finding 2: a page table unmapped (or whose VSpace is deleted) keeps no entries, so a
/// frame deleted meanwhile cannot stay reachable through it when it is mapped again.
#[test]
fn detached_page_tables_keep_no_mappings() {
    let mut w = world();
    let v = 0x1234_5000u64;
    paging_chain(&mut w, v);
    w.make(ObjectType::Frame4K, 44);
    w.invoke(44, label::FRAME_MAP, &[40, v, 3, 0]).unwrap();
    let pt = base_of(w.s.mem.cap_at(slot(43)));
    assert!(entries(&w, pt).iter().any(|&e| e != 0));
    // The attack: unmap the table, delete the frame (its unmap cannot find the entry from
    // the root), map the table again.
    w.invoke(43, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    assert!(entries(&w, pt).iter().all(|&e| e == 0), "an unmapped table is empty");
    w.s.delete(slot(44)).unwrap();
    w.invoke(43, label::PAGE_TABLE_MAP, &[40, v]).unwrap();
    assert!(entries(&w, pt).iter().all(|&e| e == 0));
    // Deleting the VSpace empties everything below it, tables it reached included.
    w.make(ObjectType::Frame4K, 44);
    w.invoke(44, label::FRAME_MAP, &[40, v, 3, 0]).unwrap();
    let (pdpt, pd) = (base_of(w.s.mem.cap_at(slot(41))), base_of(w.s.mem.cap_at(slot(42))));
    w.s.delete(slot(40)).unwrap();
    for table in [pdpt, pd, pt] {
        assert!(entries(&w, table).iter().all(|&e| e == 0), "table {table:?} not emptied");
    }
    // The same for a detached page directory: the tables below it are emptied too.
    w.make(ObjectType::Pml4, 40);
    w.invoke(41, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    w.invoke(42, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    w.invoke(43, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    w.invoke(44, label::FRAME_UNMAP, &[]).unwrap();
    for table in [41, 42, 43] {
        w.invoke(table, label::PAGE_TABLE_MAP, &[40, v]).unwrap();
    }
    w.invoke(44, label::FRAME_MAP, &[40, v, 3, 0]).unwrap();
    w.invoke(42, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    assert!(entries(&w, pd).iter().all(|&e| e == 0) && entries(&w, pt).iter().all(|&e| e == 0));
}

/// Finding 2 for guest-physical spaces: freed memory must not stay in a guest's reach.
#[test]
fn detached_ept_tables_keep_no_mappings() {
    let mut w = world();
    for (ty, dest) in [
        (ObjectType::EptPml4, 40),
        (ObjectType::EptPdpt, 41),
        (ObjectType::EptPd, 42),
        (ObjectType::EptPt, 43),
        (ObjectType::Frame4K, 44),
    ] {
        w.make(ty, dest);
    }
    for table in [41, 42, 43] {
        w.invoke(table, label::EPT_TABLE_MAP, &[40, 0]).unwrap();
    }
    w.invoke(44, label::FRAME_MAP_EPT, &[40, 0x1000, 3, 0]).unwrap();
    let pt = base_of(w.s.mem.cap_at(slot(43)));
    w.invoke(43, label::EPT_TABLE_UNMAP, &[]).unwrap();
    assert!(entries(&w, pt).iter().all(|&e| e == 0));
    w.s.delete(slot(44)).unwrap();
    w.invoke(43, label::EPT_TABLE_MAP, &[40, 0]).unwrap();
    assert!(entries(&w, pt).iter().all(|&e| e == 0));
    w.make(ObjectType::Frame4K, 44);
    w.invoke(44, label::FRAME_MAP_EPT, &[40, 0x1000, 3, 0]).unwrap();
    let pd = base_of(w.s.mem.cap_at(slot(42)));
    w.s.delete(slot(40)).unwrap();
    assert!(entries(&w, pd).iter().all(|&e| e == 0) && entries(&w, pt).iter().all(|&e| e == 0));
    assert!(w.s.take_ept_flush());
}

/// Finding 3: a thread whose CSpace is the only capability to a CNode holding the only
/// capability to the thread configures itself: deleting its CSpace would destroy it
/// before the copies write into it. Refused, and the thread lives on.
#[test]
fn configuring_a_thread_cannot_destroy_it_first() {
    let mut w = world();
    w.s.retype(slot(1), ObjectType::CNode, 2, 1, slot(50)).unwrap();
    // Guard of 62 bits: a one-level CSpace where address 1 is slot 1.
    w.s.mutate(slot(50), slot(51), Rights::ALL, 62).unwrap();
    let t = w.thread(52, 50);
    let cnode = base_of(w.s.mem.cap_at(slot(51)));
    // The CNode's only capability goes into the thread's CSpace slot; the thread's only
    // capability goes into the CNode.
    w.s.delete(t.slot(0)).unwrap();
    w.s.move_cap(slot(51), t.slot(0)).unwrap();
    w.s.move_cap(slot(52), PhysAddr(cnode.0 + 64)).unwrap();
    // The thread configures itself (CSpace: none) with five words, the fifth from its IPC
    // buffer.
    assert!(w.s.write_message_word(t, 4, 0));
    w.sys(t, Syscall::Call, 1, MessageInfo::new(label::TCB_CONFIGURE, 0, 0, 5), [0, 0, 0x7000_0000, 0]);
    assert_eq!(w.status(t), Error::IllegalOperation as u64);
    assert_eq!(w.state(t), ThreadState::Running);
    assert!(matches!(w.s.mem.cap_at(t.slot(0)), Cap::CNode { .. }));
    assert_eq!(w.s.mem.cap_at(PhysAddr(cnode.0 + 64)), Cap::Tcb { base: t.0 });
    // With a second capability to the CNode the delete destroys nothing: allowed.
    w.s.copy(t.slot(0), slot(60)).unwrap();
    assert!(w.s.write_message_word(t, 4, 0));
    w.sys(t, Syscall::Call, 1, MessageInfo::new(label::TCB_CONFIGURE, 0, 0, 5), [0, 0, 0x7000_0000, 0]);
    assert_eq!(w.status(t), 0);
    assert!(w.s.mem.cap_at(t.slot(0)).is_null());
}

/// Finding 4: a server that takes a second call before replying to the first cuts the
/// first caller off with `ReplyLost`; the reply links always name each other, so
/// destroying the server and suspending the first caller writes nothing into freed memory.
#[test]
fn a_second_call_discards_the_first_reply() {
    let mut w = world();
    w.make(ObjectType::Endpoint, 10);
    let server = w.thread(20, 60);
    let first = w.thread(22, 50);
    let second = w.thread(24, 50);
    w.sys(server, Syscall::Recv, 10, MessageInfo::default(), [0; 4]);
    w.sys(first, Syscall::Call, 10, MessageInfo::new(1, 0, 0, 0), [0; 4]);
    assert_eq!(first.replier(&w.s.mem), server.link());
    w.sys(server, Syscall::Recv, 10, MessageInfo::default(), [0; 4]);
    w.sys(second, Syscall::Call, 10, MessageInfo::new(2, 0, 0, 0), [0; 4]);
    assert_eq!(w.state(first), ThreadState::Running, "the first caller is not left waiting");
    assert_eq!(w.status(first), Error::ReplyLost as u64);
    assert_eq!(first.replier(&w.s.mem), 0);
    assert_eq!((server.caller(&w.s.mem), second.replier(&w.s.mem)), (second.link(), server.link()));
    // Destroy the server, reuse its memory, suspend both callers: nothing is written there.
    let server_base = server.0;
    w.s.delete(slot(20)).unwrap();
    assert_eq!((w.state(second), w.status(second)), (ThreadState::Running, Error::ReplyLost as u64));
    w.s.mem.write(PhysAddr(server_base.0 + 0x400), &[0x5au8; 64]);
    let before: [u8; 64] = w.s.mem.read(PhysAddr(server_base.0 + 0x400));
    w.s.suspend(first);
    w.s.suspend(second);
    assert_eq!(w.s.mem.read::<[u8; 64]>(PhysAddr(server_base.0 + 0x400)), before);
}

/// Finding 5: the last page of the lower half cannot be mapped (a `syscall` ending there
/// would return to a non-canonical address), nor a large frame reaching into it, nor a
/// thread's registers point there.
#[test]
fn the_last_user_page_is_never_mapped() {
    let mut w = world();
    let last = 0x7fff_ffff_f000u64;
    // (Tables covering it may be mapped through a lower address in their range.)
    paging_chain(&mut w, last - 0x1000);
    w.make(ObjectType::Frame4K, 44);
    assert_eq!(w.invoke(44, label::FRAME_MAP, &[40, last, 3, 0]), Err(Error::InvalidArgument));
    w.invoke(44, label::FRAME_MAP, &[40, last - 0x1000, 3, 0]).unwrap();
    // (A large frame's memory is not touched by mapping it; the test memory is small.)
    let large = Cap::Frame {
        base: PhysAddr(0x20_0000),
        large: true,
        device: false,
        rights: Rights::ALL,
        mapping: None,
    };
    w.s.insert_original(slot(45), large).unwrap();
    w.invoke(43, label::PAGE_TABLE_UNMAP, &[]).unwrap();
    assert_eq!(w.invoke(45, label::FRAME_MAP, &[40, 0x7fff_ffe0_0000, 3, 0]), Err(Error::InvalidArgument));
    let t = w.thread(20, 50);
    let mut words = t.regs(&w.s.mem).user_words();
    words[0] = 0x7fff_ffff_fffe;
    let mut r = Registers::default();
    assert_eq!(r.set_user_words(&words), Err(Error::InvalidArgument));
}

/// Finding 6: an IPC buffer must be RAM the thread may read and write: the kernel writes
/// replies there.
#[test]
fn ipc_buffers_must_be_writable_ram() {
    let mut w = world();
    w.make(ObjectType::Tcb, 20);
    w.make(ObjectType::Frame4K, 21);
    w.s.mint(slot(21), slot(22), Rights::READ, 0).unwrap();
    let configure = |w: &mut World, frame: u64| {
        invoke_long(w, 20, label::TCB_CONFIGURE, &[0, VSPACE_SLOT, 0x7000_0000, frame, 0])
    };
    assert_eq!(configure(&mut w, 22), Err(Error::InvalidCapability));
    // Device memory is no IPC buffer either.
    w.s.retype(slot(1), ObjectType::Untyped, 12, 1, slot(23)).unwrap();
    let Cap::Untyped { base, .. } = w.s.mem.cap_at(slot(23)) else { panic!() };
    w.s.delete(slot(23)).unwrap();
    w.s.insert_original(
        slot(23),
        Cap::Frame { base, large: false, device: true, rights: Rights::ALL, mapping: None },
    )
    .unwrap();
    assert_eq!(configure(&mut w, 23), Err(Error::InvalidCapability));
    configure(&mut w, 21).unwrap();
    let Cap::Tcb { base } = w.s.mem.cap_at(slot(20)) else { panic!() };
    assert!(matches!(w.s.mem.cap_at(TcbRef(base).slot(2)), Cap::Frame { rights: Rights::ALL, .. }));
}

/// Finding 8: binding a notification takes its signals from whoever waits on it: it
/// needs the right to wait (read).
#[test]
fn binding_a_notification_needs_the_read_right() {
    let mut w = world();
    w.make(ObjectType::Notification, 10);
    w.s.mint(slot(10), slot(11), Rights::WRITE, 0).unwrap();
    let t = w.thread(20, 50);
    assert_eq!(w.invoke(20, label::TCB_BIND_NOTIFICATION, &[11]), Err(Error::InsufficientRights));
    assert_eq!(t.bound_notification(&w.s.mem), 0);
    w.invoke(20, label::TCB_BIND_NOTIFICATION, &[10]).unwrap();
    assert_ne!(t.bound_notification(&w.s.mem), 0);
    let _ = reg::RAX;
}

/// Whether guest I/O to `port` exits on the Vcpu at `vcpu`.
fn port_exits(w: &World, vcpu: PhysAddr, port: u64) -> bool {
    let byte: u8 = w.s.mem.read(PhysAddr(vcpu.0 + super::vcpu::IO_BITMAP_OFFSET + port / 8));
    byte & (1 << (port % 8)) != 0
}

/// Finding 9: ports a Vcpu lets through close again when the IoPort capability that
/// allowed it is revoked or deleted, and when the Vcpu goes its grants go too.
#[test]
fn guest_port_access_ends_with_the_io_port_capability() {
    let mut w = world();
    w.s.insert_original(slot(30), Cap::IoPortControl).unwrap();
    w.s.issue_io_ports(slot(30), slot(31), 0x60, 0x6f).unwrap();
    w.make(ObjectType::Vcpu, 40);
    let Cap::Vcpu { base: vcpu } = w.s.mem.cap_at(slot(40)) else { panic!() };
    // Open through a copy; revoke the original: the copy and the grant go, the port exits.
    w.s.copy(slot(31), slot(32)).unwrap();
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[32, 0x64, 0x64, 0]).unwrap();
    assert!(!port_exits(&w, vcpu, 0x64) && port_exits(&w, vcpu, 0x65));
    w.s.revoke(slot(31)).unwrap();
    assert!(port_exits(&w, vcpu, 0x64), "revoked, the port still went to the hardware");
    // Open again through the original and delete it: the port exits, the range is free.
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[31, 0x60, 0x6f, 0]).unwrap();
    assert!((0x60..=0x6f).all(|p| !port_exits(&w, vcpu, p)));
    w.s.delete(slot(31)).unwrap();
    assert!((0x60..=0x6f).all(|p| port_exits(&w, vcpu, p)));
    w.s.issue_io_ports(slot(30), slot(31), 0x60, 0x6f).unwrap();
    // A port the capability does not cover, or no capability: refused.
    assert_eq!(w.invoke(40, label::VCPU_SET_IO_EXIT, &[31, 0x70, 0x70, 0]), Err(Error::InsufficientRights));
    assert_eq!(w.invoke(40, label::VCPU_SET_IO_EXIT, &[33, 0x60, 0x60, 0]), Err(Error::InvalidCapability));
    // Eight ranges at most; closing a range drops the grants inside it.
    for port in 0x60..0x68 {
        w.invoke(40, label::VCPU_SET_IO_EXIT, &[31, port, port, 0]).unwrap();
    }
    assert_eq!(w.invoke(40, label::VCPU_SET_IO_EXIT, &[31, 0x68, 0x68, 0]), Err(Error::NotEnoughMemory));
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[0, 0x60, 0x63, 1]).unwrap();
    w.invoke(40, label::VCPU_SET_IO_EXIT, &[31, 0x68, 0x68, 0]).unwrap();
    // The Vcpu goes: its grants leave the derivation tree; the capability can be deleted.
    w.s.delete(slot(40)).unwrap();
    assert_eq!(w.s.mem.first_child(slot(31)), None);
    w.s.delete(slot(31)).unwrap();
    w.s.issue_io_ports(slot(30), slot(31), 0x60, 0x6f).unwrap();
}

/// Finding 10 (ASIDs): ASIDs come from pools, so one holder of a pool exhausts only that
/// pool; a destroyed pool leaves its roots without ASIDs and empty.
#[test]
fn asid_pools_confine_exhaustion() {
    use super::space::ObjectSpace;
    const BASE: u64 = 0x10_0000;
    const ROOT: u64 = BASE + 0x1_0000;
    let at = |i: u64| PhysAddr(ROOT + 64 * i);
    let mut s = ObjectSpace::new(super::kmem::TestMemory::new(BASE, 0x80_0000), PhysAddr(BASE));
    s.insert_original(at(0), Cap::CNode { base: PhysAddr(ROOT), radix: 10, guard: 0, guard_bits: 54 })
        .unwrap();
    s.insert_original(
        at(1),
        Cap::Untyped {
            base: PhysAddr(0x40_0000),
            size_bits: 22,
            watermark: 0,
            device: false,
            frames_only: false,
        },
    )
    .unwrap();
    s.insert_original(at(2), Cap::AsidControl).unwrap();
    for (untyped, pool) in [(3, 4), (5, 6)] {
        s.retype(at(1), ObjectType::Untyped, 12, 1, at(untyped)).unwrap();
        s.make_pool(at(2), at(untyped), at(pool)).unwrap();
    }
    // A pool's page is used up by it; a pool needs exactly 4 KiB of untyped with nothing
    // made from it.
    s.retype(at(1), ObjectType::Untyped, 13, 1, at(7)).unwrap();
    assert_eq!(s.make_pool(at(2), at(7), at(8)), Err(Error::InvalidCapability));
    // 511 roots exhaust pool A (entry 0 is never given out)...
    let first_root = 100;
    for batch in 0..2 {
        s.retype(at(1), ObjectType::Pml4, 0, 256, at(first_root + 256 * batch)).unwrap();
    }
    for i in 0..511 {
        s.assign_from_pool(s.mem.cap_at(at(4)), at(first_root + i)).unwrap();
    }
    assert_eq!(s.assign_from_pool(s.mem.cap_at(at(4)), at(first_root + 511)), Err(Error::NotEnoughMemory));
    // ...but not pool B; a root without an ASID can be neither copied nor mapped into.
    assert_eq!(s.copy(at(first_root + 511), at(9)), Err(Error::IllegalOperation));
    s.assign_from_pool(s.mem.cap_at(at(6)), at(first_root + 511)).unwrap();
    assert_eq!(
        s.assign_from_pool(s.mem.cap_at(at(6)), at(first_root + 511)),
        Err(Error::IllegalOperation),
        "assigned twice"
    );
    // Destroying pool A empties its roots and their ASIDs name nothing any more.
    s.retype(at(1), ObjectType::Pdpt, 0, 1, at(10)).unwrap();
    let root = s.mem.cap_at(at(first_root));
    s.map_table(at(10), root, At::Virt(VirtAddr(0x1000_0000))).unwrap();
    let Cap::VSpace { base, asid } = root else { panic!() };
    s.delete(at(4)).unwrap();
    assert_eq!(s.vspace_of(asid), None);
    let user_half: [u64; 256] = s.mem.read(base);
    assert!(user_half.iter().all(|&e| e == 0), "a root of the destroyed pool kept its entries");
    s.retype(at(1), ObjectType::PageDirectory, 0, 1, at(11)).unwrap();
    assert_eq!(s.map_table(at(11), root, At::Virt(VirtAddr(0x2000_0000))), Err(Error::InvalidCapability));
    // Pool B's root is untouched.
    let Cap::VSpace { asid: b, .. } = s.mem.cap_at(at(first_root + 511)) else { panic!() };
    assert!(s.vspace_of(b).is_some());
}

/// Finding 10 (delete): deleting a capability with many children stops at preemption
/// points when an interrupt waits, and the call made again ends where one uninterrupted
/// delete would.
#[test]
fn a_delete_with_many_children_is_preemptible() {
    use super::space::{PREEMPTION_INTERVAL, Progress};
    let build = || {
        let mut w = world();
        w.make(ObjectType::Endpoint, 10);
        w.s.retype(slot(1), ObjectType::CNode, 9, 1, slot(11)).unwrap();
        let Cap::CNode { base, .. } = w.s.mem.cap_at(slot(11)) else { panic!() };
        for i in 0..500 {
            w.s.copy(slot(10), PhysAddr(base.0 + 64 * i)).unwrap();
        }
        w
    };
    let mut whole = build();
    whole.s.delete(slot(10)).unwrap();
    let mut stepped = build();
    let mut rounds = 0;
    while stepped.s.delete_preemptible(slot(10), &mut || true).unwrap() == Progress::Preempted {
        rounds += 1;
    }
    assert_eq!(rounds, 500 / PREEMPTION_INTERVAL as usize);
    assert!(whole.s.mem.bytes() == stepped.s.mem.bytes(), "a preempted delete ended elsewhere");
}

/// A VMM tries, step by step, to make one kind of address space stand in for the other
/// (on both nested formats): a frame mapped into a guest's space through a VSpace, into a
/// VSpace through a guest root, a guest mapping "remapped" in place to widen it, and, after
/// an honest unmap, the same frame into the other kind of space. Every confusion is refused
/// and the one honest path works; no entry is left behind.
#[test]
fn address_space_kinds_cannot_stand_in_for_each_other() {
    for format in [crate::object::paging::Format::Ept, crate::object::paging::Format::Npt] {
        let mut w = world();
        w.s.set_guest_format(format).unwrap();
        w.guest_space();
        w.make(ObjectType::Frame4K, 45);
        w.make(ObjectType::PageTable, 46);
        // A guest root is no VSpace, a VSpace no guest root.
        assert_eq!(
            w.invoke(45, label::FRAME_MAP, &[41, 0x10_0000, 3, 0]),
            Err(Error::InvalidCapability),
            "{format:?}"
        );
        assert_eq!(
            w.invoke(45, label::FRAME_MAP_EPT, &[VSPACE_SLOT, 0x1000, 3, 0]),
            Err(Error::InvalidCapability),
            "{format:?}"
        );
        // A page table cannot hang in a guest's space, nor an EPT table in a VSpace: the
        // other kind's operation is not one the capability has.
        assert_eq!(w.invoke(46, label::EPT_TABLE_MAP, &[41, 0]), Err(Error::IllegalOperation));
        assert_eq!(
            w.invoke(42, label::PAGE_TABLE_MAP, &[VSPACE_SLOT, 0x4000_0000]),
            Err(Error::IllegalOperation)
        );
        // Through the object layer directly, the typed place refuses the mismatch too.
        let vspace = w.s.mem.cap_at(slot(VSPACE_SLOT));
        let guest_root = w.s.mem.cap_at(slot(41));
        assert_eq!(
            w.s.map_table(slot(46), guest_root, At::GuestPhys(crate::GuestPhysAddr(0))),
            Err(Error::InvalidCapability)
        );
        assert_eq!(
            w.s.map_table(slot(46), guest_root, At::Virt(VirtAddr(0x4000_0000))),
            Err(Error::InvalidCapability)
        );
        assert_eq!(
            w.s.map_frame(slot(45), vspace, At::GuestPhys(crate::GuestPhysAddr(0x1000)), Rights::ALL, 0),
            Err(Error::InvalidCapability)
        );
        // Read-only in the guest; a remap cannot widen it in place.
        w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1000, 2, 0]).unwrap();
        assert_eq!(w.invoke(45, label::FRAME_REMAP, &[3, 0]), Err(Error::IllegalOperation));
        let Cap::EptTable { base: pt, .. } = w.s.mem.cap_at(slot(44)) else { panic!() };
        assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)) & 2, 0, "still read only ({format:?})");
        // Mapped once: a second mapping through the same capability is refused.
        assert_eq!(
            w.invoke(45, label::FRAME_MAP, &[VSPACE_SLOT, 0x10_0000, 3, 0]),
            Err(Error::IllegalOperation)
        );
        // Unmapped honestly, the entry is gone and the frame may go into the VSpace.
        w.invoke(45, label::FRAME_UNMAP, &[]).unwrap();
        assert_eq!(w.s.mem.read::<u64>(PhysAddr(pt.0 + 8)), 0);
        assert!(w.s.take_ept_flush());
        let Cap::Frame { mapping, .. } = w.s.mem.cap_at(slot(45)) else { panic!() };
        assert_eq!(mapping, None);
        // The guest root destroyed: its tables are emptied and it names nothing any more.
        w.s.delete(slot(41)).unwrap();
        // Its tables keep their (now unreachable) mapping record and cannot be mapped again
        // until unmapped; nothing maps through the emptied slot.
        assert_eq!(w.invoke(44, label::EPT_TABLE_MAP, &[41, 0]), Err(Error::IllegalOperation));
        assert_eq!(w.invoke(45, label::FRAME_MAP_EPT, &[41, 0x1000, 3, 0]), Err(Error::InvalidCapability));
        let Cap::EptTable { base: pd, .. } = w.s.mem.cap_at(slot(43)) else { panic!() };
        assert_eq!(w.s.mem.read::<[u64; 512]>(pd), [0; 512], "{format:?}");
    }
}
