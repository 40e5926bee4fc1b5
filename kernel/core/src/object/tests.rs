//! Tests of the object space: capability operations, retype, destruction, and property
//! tests that random operation sequences keep the derivation tree consistent.

extern crate std;

use super::cap::{Cap, ObjectRef};
use super::kmem::TestMemory;
use super::slot::{Cte, Slot, SlotOps};
use super::space::{ObjectSpace, TCB_SLOT_COUNT};
use crate::addr::PhysAddr;
use cleave_abi::{Error, ObjectType, Rights};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

const MEMORY_BASE: u64 = 0x10_0000;
const SENTINEL: Slot = PhysAddr(MEMORY_BASE);
const ROOT_CNODE: u64 = MEMORY_BASE + 0x1000;
const ROOT_RADIX: u8 = 6;
const UNTYPED_BASE: u64 = MEMORY_BASE + 0x4_0000;
const UNTYPED_BITS: u8 = 18;

fn root_slot(i: u64) -> Slot {
    PhysAddr(ROOT_CNODE + 64 * i)
}

/// A space with a 64-slot root CNode (its own cap in slot 0) and a 256 KiB untyped in slot 1.
fn space() -> ObjectSpace<TestMemory> {
    let mut s = ObjectSpace::new(TestMemory::new(MEMORY_BASE, 0x10_0000), SENTINEL);
    let root = Cap::CNode { base: PhysAddr(ROOT_CNODE), radix: ROOT_RADIX, guard: 0, guard_bits: 58 };
    s.insert_original(root_slot(0), root).unwrap();
    let untyped = Cap::Untyped {
        base: PhysAddr(UNTYPED_BASE),
        size_bits: UNTYPED_BITS,
        watermark: 0,
        device: false,
        frames_only: false,
    };
    s.insert_original(root_slot(1), untyped).unwrap();
    s
}

fn retype_one(s: &mut ObjectSpace<TestMemory>, ty: ObjectType, bits: u32, dest: u64) -> Result<(), Error> {
    s.retype(root_slot(1), ty, bits, 1, root_slot(dest))
}

#[test]
fn retype_copy_mint_and_rights() {
    let mut s = space();
    retype_one(&mut s, ObjectType::Endpoint, 0, 2).unwrap();
    let Cap::Endpoint { base, badge: 0, rights: Rights::ALL } = s.mem.cap_at(root_slot(2)) else { panic!() };
    s.mint(root_slot(2), root_slot(3), Rights::WRITE, 42).unwrap();
    assert_eq!(s.mem.cap_at(root_slot(3)), Cap::Endpoint { base, badge: 42, rights: Rights::WRITE });
    // Minting from the badged copy cannot add rights or re-badge.
    s.mint(root_slot(3), root_slot(4), Rights::ALL, 0).unwrap();
    assert_eq!(s.mem.cap_at(root_slot(4)), Cap::Endpoint { base, badge: 42, rights: Rights::WRITE });
    assert_eq!(s.mint(root_slot(3), root_slot(5), Rights::ALL, 7), Err(Error::IllegalOperation));
    // Untyped capabilities are never copied; empty sources and occupied targets refused.
    assert_eq!(s.copy(root_slot(1), root_slot(5)), Err(Error::IllegalOperation));
    assert_eq!(s.copy(root_slot(9), root_slot(5)), Err(Error::InvalidCapability));
    assert_eq!(s.copy(root_slot(2), root_slot(3)), Err(Error::DeleteFirst));
    // Revoking the original removes both derived copies, not itself.
    s.revoke(root_slot(2)).unwrap();
    assert!(s.mem.cap_at(root_slot(3)).is_null() && s.mem.cap_at(root_slot(4)).is_null());
    assert!(!s.mem.cap_at(root_slot(2)).is_null());
}

#[test]
fn retype_rules() {
    let mut s = space();
    assert_eq!(retype_one(&mut s, ObjectType::Untyped, 19, 2), Err(Error::NotEnoughMemory));
    assert_eq!(retype_one(&mut s, ObjectType::CNode, 0, 2), Err(Error::RangeError));
    assert_eq!(s.retype(root_slot(1), ObjectType::Tcb, 0, 0, root_slot(5)), Err(Error::RangeError));
    assert_eq!(retype_one(&mut s, ObjectType::Tcb, 0, 0), Err(Error::DeleteFirst));
    assert_eq!(s.retype(root_slot(2), ObjectType::Tcb, 0, 1, root_slot(5)), Err(Error::InvalidCapability));
    // Alignment: an endpoint (32 B) then a frame (4 KiB) lands on the next page.
    retype_one(&mut s, ObjectType::Endpoint, 0, 2).unwrap();
    retype_one(&mut s, ObjectType::Frame4K, 0, 3).unwrap();
    let Cap::Frame { base, .. } = s.mem.cap_at(root_slot(3)) else { panic!() };
    assert_eq!(base, PhysAddr(UNTYPED_BASE + 0x1000));
    // 62 pages remain: 63 frames do not fit; a destination range over an occupied slot is refused.
    assert_eq!(s.retype(root_slot(1), ObjectType::Frame4K, 0, 63, root_slot(0)), Err(Error::DeleteFirst));
    assert_eq!(
        s.retype(root_slot(1), ObjectType::Frame4K, 0, 63, PhysAddr(0x18_0000)),
        Err(Error::NotEnoughMemory)
    );
    // Device memory can only become frames or untyped.
    retype_one(&mut s, ObjectType::Untyped, 12, 4).unwrap();
    let Cap::Untyped { base, .. } = s.mem.cap_at(root_slot(4)) else { panic!() };
    s.mem.set_cap(
        root_slot(4),
        Cap::Untyped { base, size_bits: 12, watermark: 0, device: true, frames_only: false },
    );
    assert_eq!(s.retype(root_slot(4), ObjectType::Tcb, 0, 1, root_slot(5)), Err(Error::InvalidArgument));
    s.retype(root_slot(4), ObjectType::Frame4K, 0, 1, root_slot(5)).unwrap();
}

/// An untyped restricted to frames (as the Builder's guest RAM is), tried step after
/// step as its holder would: every other kind is refused, frames come, the restriction
/// survives a revoke and another move, cannot be lifted, and cannot be put on an untyped
/// that already made something.
#[test]
fn a_frames_only_untyped_makes_frames_and_nothing_else() {
    use cleave_abi::UNTYPED_FRAMES_ONLY;
    let mut s = space();
    // Restricting an untyped that made something is refused: its children were made
    // without the restriction.
    retype_one(&mut s, ObjectType::Tcb, 0, 2).unwrap();
    assert_eq!(
        s.mutate(root_slot(1), root_slot(3), Rights::ALL, UNTYPED_FRAMES_ONLY),
        Err(Error::RevokeFirst)
    );
    s.revoke(root_slot(1)).unwrap();
    // Only the one bit exists.
    assert_eq!(s.mutate(root_slot(1), root_slot(3), Rights::ALL, 2), Err(Error::InvalidArgument));
    s.mutate(root_slot(1), root_slot(3), Rights::ALL, UNTYPED_FRAMES_ONLY).unwrap();
    let Cap::Untyped { frames_only: true, .. } = s.mem.cap_at(root_slot(3)) else { panic!("not restricted") };
    let from = |s: &mut ObjectSpace<TestMemory>, ty, bits, dest| {
        s.retype(root_slot(3), ty, bits, 1, root_slot(dest))
    };
    for (ty, bits) in [
        (ObjectType::Tcb, 0),
        (ObjectType::CNode, 4),
        (ObjectType::Untyped, 12),
        (ObjectType::Endpoint, 0),
        (ObjectType::Notification, 0),
        (ObjectType::Vcpu, 0),
        (ObjectType::Pml4, 0),
        (ObjectType::EptPml4, 0),
        (ObjectType::PageTable, 0),
    ] {
        assert_eq!(from(&mut s, ty, bits, 4), Err(Error::IllegalOperation), "{ty:?}");
        assert!(s.mem.cap_at(root_slot(4)).is_null(), "{ty:?} left something");
    }
    from(&mut s, ObjectType::Frame4K, 0, 4).unwrap();
    from(&mut s, ObjectType::Frame2M, 0, 5).unwrap_err(); // 256 KiB holds no 2 MiB frame
    assert!(matches!(s.mem.cap_at(root_slot(4)), Cap::Frame { large: false, .. }));
    // A frame's copy is a frame: mapping authority, nothing more.
    s.copy(root_slot(4), root_slot(6)).unwrap();
    // Moving it again keeps the restriction; a mutate with no bit does not lift it.
    assert_eq!(s.mutate(root_slot(3), root_slot(7), Rights::ALL, 0), Err(Error::RevokeFirst));
    s.revoke(root_slot(3)).unwrap();
    assert!(s.mem.cap_at(root_slot(4)).is_null() && s.mem.cap_at(root_slot(6)).is_null());
    s.mutate(root_slot(3), root_slot(7), Rights::ALL, 0).unwrap();
    s.move_cap(root_slot(7), root_slot(8)).unwrap();
    let Cap::Untyped { frames_only: true, watermark: 0, .. } = s.mem.cap_at(root_slot(8)) else {
        panic!("the restriction was lifted")
    };
    assert_eq!(s.retype(root_slot(8), ObjectType::Tcb, 0, 1, root_slot(9)), Err(Error::IllegalOperation));
}

#[test]
fn revoked_untyped_is_reused_from_the_start() {
    let mut s = space();
    retype_one(&mut s, ObjectType::Tcb, 0, 2).unwrap();
    retype_one(&mut s, ObjectType::Endpoint, 0, 3).unwrap();
    let first = s.mem.cap_at(root_slot(2));
    assert_eq!(s.delete(root_slot(1)), Err(Error::RevokeFirst));
    s.revoke(root_slot(1)).unwrap();
    assert!(s.mem.cap_at(root_slot(2)).is_null() && s.mem.cap_at(root_slot(3)).is_null());
    let Cap::Untyped { watermark: 0, .. } = s.mem.cap_at(root_slot(1)) else { panic!("watermark not reset") };
    retype_one(&mut s, ObjectType::Tcb, 0, 2).unwrap();
    assert_eq!(s.mem.cap_at(root_slot(2)), first);
    // With children gone by delete (not revoke), the region is free again too.
    s.delete(root_slot(2)).unwrap();
    retype_one(&mut s, ObjectType::Endpoint, 0, 3).unwrap();
    let Cap::Endpoint { base, .. } = s.mem.cap_at(root_slot(3)) else { panic!() };
    assert_eq!(base, PhysAddr(UNTYPED_BASE));
}

#[test]
fn deleting_the_last_cnode_cap_destroys_its_contents() {
    let mut s = space();
    retype_one(&mut s, ObjectType::Endpoint, 0, 2).unwrap();
    retype_one(&mut s, ObjectType::CNode, 2, 3).unwrap();
    retype_one(&mut s, ObjectType::CNode, 1, 4).unwrap();
    let Cap::CNode { base: a, .. } = s.mem.cap_at(root_slot(3)) else { panic!() };
    let Cap::CNode { base: b, .. } = s.mem.cap_at(root_slot(4)) else { panic!() };
    // A holds a copy of the endpoint and the only cap to B; B holds another copy.
    s.copy(root_slot(2), a).unwrap();
    s.move_cap(root_slot(4), PhysAddr(a.0 + 64)).unwrap();
    s.copy(root_slot(2), b).unwrap();
    s.delete(root_slot(3)).unwrap();
    for slot in [a, PhysAddr(a.0 + 64), b] {
        assert_eq!(s.mem.cte(slot), Cte::default(), "slot {slot:?} not cleared");
    }
    assert_eq!(s.mem.first_child(root_slot(2)), None);
}

#[test]
fn destroying_a_long_chain_needs_no_recursion() {
    let mut s = space();
    // 300 CNodes of two slots, each holding the only capability to the next.
    s.retype(root_slot(1), ObjectType::CNode, 1, 1, root_slot(2)).unwrap();
    let mut holder = match s.mem.cap_at(root_slot(2)) {
        Cap::CNode { base, .. } => base,
        _ => panic!(),
    };
    let mut bases = std::vec![holder];
    for _ in 0..300 {
        s.retype(root_slot(1), ObjectType::CNode, 1, 1, root_slot(3)).unwrap();
        let Cap::CNode { base, .. } = s.mem.cap_at(root_slot(3)) else { panic!() };
        s.move_cap(root_slot(3), holder).unwrap();
        holder = base;
        bases.push(base);
    }
    s.delete(root_slot(2)).unwrap();
    for base in bases {
        assert_eq!(s.mem.cte(base), Cte::default());
        assert_eq!(s.mem.cte(PhysAddr(base.0 + 64)), Cte::default());
    }
    s.revoke(root_slot(1)).unwrap();
}

#[test]
fn mutate_and_cnode_guards() {
    let mut s = space();
    retype_one(&mut s, ObjectType::CNode, 4, 2).unwrap();
    // Guard word: size in bits 0-5, value above.
    s.mutate(root_slot(2), root_slot(3), Rights::ALL, (0b101 << 6) | 3).unwrap();
    let Cap::CNode { guard: 0b101, guard_bits: 3, radix: 4, .. } = s.mem.cap_at(root_slot(3)) else {
        panic!()
    };
    assert!(s.mem.cap_at(root_slot(2)).is_null());
    // Guard value wider than its size, or guard + radix over 64.
    assert_eq!(s.mint(root_slot(3), root_slot(4), Rights::ALL, (0b1111 << 6) | 3), Err(Error::RangeError));
    assert_eq!(s.mint(root_slot(3), root_slot(4), Rights::ALL, 61), Err(Error::RangeError));
}

// ---------------------------------------------------------------- property tests

/// A slot chosen by a test: a root slot, or a slot inside a CNode whose cap is in a root
/// slot (falling back to the root slot when it holds no CNode).
#[derive(Clone, Copy, Debug)]
struct Sel(u8, u8);

impl Sel {
    fn resolve(self, s: &ObjectSpace<TestMemory>) -> Slot {
        let root = root_slot(u64::from(self.0 % 64));
        if self.0 >= 40
            && let Cap::CNode { base, radix, .. } = s.mem.cap_at(root)
        {
            return PhysAddr(base.0 + 64 * (u64::from(self.1) % (1 << radix)));
        }
        root
    }
}

#[derive(Clone, Debug)]
enum Op {
    Retype { ty: u8, dest: Sel, untyped: Sel },
    Copy(Sel, Sel),
    Mint(Sel, Sel, u8, u8),
    Move(Sel, Sel),
    Mutate(Sel, Sel, u8, u8),
    Delete(Sel),
    Revoke(Sel),
}

fn sel() -> impl Strategy<Value = Sel> {
    (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Sel(a, b))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, sel(), sel()).prop_map(|(ty, dest, untyped)| Op::Retype { ty, dest, untyped }),
        2 => (sel(), sel()).prop_map(|(a, b)| Op::Copy(a, b)),
        2 => (sel(), sel(), any::<u8>(), 0u8..4).prop_map(|(a, b, r, g)| Op::Mint(a, b, r, g)),
        1 => (sel(), sel()).prop_map(|(a, b)| Op::Move(a, b)),
        1 => (sel(), sel(), any::<u8>(), 0u8..4).prop_map(|(a, b, r, g)| Op::Mutate(a, b, r, g)),
        2 => sel().prop_map(Op::Delete),
        1 => sel().prop_map(Op::Revoke),
    ]
}

fn apply(s: &mut ObjectSpace<TestMemory>, op: &Op) -> Result<(), Error> {
    match *op {
        Op::Retype { ty, dest, untyped } => {
            let (ty, bits) = [
                (ObjectType::Endpoint, 0),
                (ObjectType::Notification, 0),
                (ObjectType::CNode, 1),
                (ObjectType::CNode, 2),
                (ObjectType::Tcb, 0),
                (ObjectType::Frame4K, 0),
                (ObjectType::Untyped, 12),
                (ObjectType::Untyped, 14),
            ][usize::from(ty)];
            // Retype from the root untyped most of the time, else from any chosen slot.
            let from = if untyped.1 % 4 == 0 { untyped.resolve(s) } else { root_slot(1) };
            let dest = dest.resolve(s);
            s.retype(from, ty, bits, 1, dest)
        }
        Op::Copy(a, b) => s.copy(a.resolve(s), b.resolve(s)),
        Op::Mint(a, b, r, g) => s.mint(a.resolve(s), b.resolve(s), Rights(r & 0xf), u64::from(g)),
        Op::Move(a, b) => s.move_cap(a.resolve(s), b.resolve(s)),
        Op::Mutate(a, b, r, g) => s.mutate(a.resolve(s), b.resolve(s), Rights(r & 0xf), u64::from(g)),
        Op::Delete(a) => s.delete(a.resolve(s)),
        Op::Revoke(a) => s.revoke(a.resolve(s)),
    }
}

fn object_range(cap: Cap) -> Option<(u64, u64)> {
    let size = |bits: u32| 1u64 << bits;
    Some(match cap {
        Cap::Untyped { base, size_bits, .. } => (base.0, size(u32::from(size_bits))),
        Cap::CNode { base, radix, .. } => (base.0, size(u32::from(radix) + 6)),
        Cap::Tcb { base } => (base.0, size(cleave_abi::object::TCB_SIZE_BITS)),
        Cap::Endpoint { base, .. } => (base.0, 32),
        Cap::Notification { base, .. } => (base.0, 64),
        Cap::Frame { base, large, .. } => (base.0, if large { 1 << 21 } else { 4096 }),
        Cap::PageTable { base, .. } | Cap::VSpace { base, .. } => (base.0, 4096),
        _ => return None,
    })
}

fn container_slots(cap: Cap) -> Option<(u64, u64)> {
    match cap {
        Cap::CNode { base, radix, .. } => Some((base.0, 1 << radix)),
        Cap::Tcb { base } => Some((base.0, TCB_SLOT_COUNT)),
        _ => None,
    }
}

/// Walks the tree and checks every invariant; `seen` collects containers ever created.
fn check(s: &ObjectSpace<TestMemory>, seen: &mut BTreeMap<u64, u64>) {
    let m = &s.mem;
    // 1. Structure: links agree, no cycles, no empty nodes.
    let mut nodes: BTreeMap<u64, Cap> = BTreeMap::new();
    let mut stack = std::vec![SENTINEL];
    while let Some(p) = stack.pop() {
        let mut prev = None;
        let mut child = m.first_child(p);
        while let Some(c) = child {
            let cte = m.cte(c);
            assert_eq!(cte.parent, p.0, "child {c:?} has wrong parent");
            assert_eq!(cte.prev, prev.map_or(0, |x: Slot| x.0), "bad prev link at {c:?}");
            let cap = Cap::decode(cte.cap);
            assert!(!cap.is_null(), "empty slot {c:?} in the tree");
            assert!(nodes.insert(c.0, cap).is_none(), "cycle or shared node at {c:?}");
            stack.push(c);
            prev = Some(c);
            child = m.next_sibling(c);
        }
    }
    // 2. No amplification along derivations of the same object.
    for (&slot, &cap) in &nodes {
        let parent = m.parent_of(PhysAddr(slot)).unwrap();
        let pcap = m.cap_at(parent);
        if parent != SENTINEL && pcap.object() == cap.object() {
            assert!(pcap.rights().contains(cap.rights()), "rights grew: {pcap:?} -> {cap:?}");
            if let (
                Cap::Endpoint { badge: pb, .. } | Cap::Notification { badge: pb, .. },
                Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. },
            ) = (pcap, cap)
                && pb != 0
            {
                assert_eq!(pb, badge, "badge changed");
            }
        }
    }
    // 3. Every object lies below the watermark of an untyped ancestor (or is the root CNode).
    for (&slot, &cap) in &nodes {
        let Some((base, size)) = object_range(cap) else { continue };
        if base == ROOT_CNODE
            || base == UNTYPED_BASE && matches!(cap, Cap::Untyped { size_bits: UNTYPED_BITS, .. })
        {
            continue;
        }
        let mut up = m.parent_of(PhysAddr(slot));
        let mut covered = false;
        while let Some(a) = up {
            if let Cap::Untyped { base: ub, watermark, .. } = m.cap_at(a)
                && ub.0 <= base
                && base + size <= ub.0 + watermark
            {
                covered = true;
                break;
            }
            up = m.parent_of(a);
        }
        assert!(covered, "{cap:?} at {slot:#x} not covered by an untyped ancestor");
    }
    // 4. Objects made from one untyped do not overlap.
    for (&slot, &cap) in &nodes {
        if !matches!(cap, Cap::Untyped { .. }) {
            continue;
        }
        let mut ranges: Vec<(u64, u64, ObjectRef)> = Vec::new();
        let mut child = m.first_child(PhysAddr(slot));
        while let Some(c) = child {
            let ccap = m.cap_at(c);
            if let Some((b, sz)) = object_range(ccap)
                && !ranges.iter().any(|r| r.2 == ccap.object())
            {
                for r in &ranges {
                    assert!(b + sz <= r.0 || r.0 + r.1 <= b, "overlap in untyped {slot:#x}");
                }
                ranges.push((b, sz, ccap.object()));
            }
            child = m.next_sibling(c);
        }
    }
    // 5. Every capability in a live container is in the tree; dead containers are empty.
    let live: BTreeSet<u64> = nodes.values().filter_map(|c| container_slots(*c)).map(|(b, _)| b).collect();
    let live_ranges: Vec<(u64, u64)> =
        nodes.values().filter_map(|c| object_range(*c)).filter(|r| r.1 < 1 << 16).collect();
    for cap in nodes.values() {
        if let Some((b, n)) = container_slots(*cap) {
            seen.insert(b, n);
        }
    }
    seen.retain(|&b, &mut n| {
        if live.contains(&b) {
            for i in 0..n {
                let slot = PhysAddr(b + 64 * i);
                if !m.cap_at(slot).is_null() {
                    assert!(nodes.contains_key(&slot.0), "live slot {slot:?} not in the tree");
                }
            }
            return true;
        }
        let end = b + 64 * n;
        if live_ranges.iter().any(|&(rb, rs)| rb < end && b < rb + rs) {
            return false; // memory reused by a newer object
        }
        for i in 0..n {
            assert_eq!(
                m.cte(PhysAddr(b + 64 * i)),
                Cte::default(),
                "dead container {b:#x} slot {i} not empty"
            );
        }
        true
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_tree_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        let mut s = space();
        let mut seen = BTreeMap::new();
        for op in &ops {
            let _ = apply(&mut s, op);
            check(&s, &mut seen);
        }
        // Revoking the root untyped (if it is still in its slot) frees everything made from it.
        if let Cap::Untyped { size_bits: UNTYPED_BITS, .. } = s.mem.cap_at(root_slot(1)) {
            s.revoke(root_slot(1)).unwrap();
            // The revoke may have destroyed the root CNode itself (when its last capability
            // lived in an object made from the untyped), and with it the untyped capability.
            match s.mem.cap_at(root_slot(1)) {
                Cap::Untyped { watermark, .. } => {
                    prop_assert_eq!(watermark, 0);
                    prop_assert!(s.mem.first_child(root_slot(1)).is_none());
                }
                other => prop_assert!(other.is_null(), "slot 1 holds {:?}", other),
            }
            check(&s, &mut seen);
        }
    }
}
