//! Capability slots and the capability derivation tree (CDT).
//!
//! Every slot (in a CNode or a TCB) is a 64-byte [`Cte`]: the capability and four links
//! that place it in the derivation tree: its parent, first child and siblings. A copy or
//! mint is a child of its source; objects made by retype are children of the untyped;
//! capabilities with no other origin are children of the tree's root sentinel. So every
//! capability to one object lies in one subtree, and "is this the last capability to the
//! object" is answered by looking at a slot's parent and siblings.

use super::cap::{Cap, RawCap};
use super::kmem::KernelMemory;
use crate::addr::PhysAddr;
use bytemuck::{Pod, Zeroable};
use cleave_abi::object::SLOT_SIZE_BITS;

/// The physical address of a slot.
pub type Slot = PhysAddr;

/// A capability table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Cte {
    /// The capability.
    pub cap: RawCap,
    /// Parent slot (0: none; only the root sentinel has none).
    pub parent: u64,
    /// First child slot, or 0.
    pub first_child: u64,
    /// Next sibling, or 0.
    pub next: u64,
    /// Previous sibling, or 0.
    pub prev: u64,
}

const _: () = assert!(core::mem::size_of::<Cte>() == 1 << SLOT_SIZE_BITS);

fn link(v: u64) -> Option<Slot> {
    (v != 0).then_some(PhysAddr(v))
}

/// The derivation-tree operations, over some kernel memory.
pub trait SlotOps: KernelMemory {
    /// The entry at `slot`.
    fn cte(&self, slot: Slot) -> Cte {
        self.read(slot)
    }

    /// The capability at `slot`.
    fn cap_at(&self, slot: Slot) -> Cap {
        Cap::decode(self.read::<Cte>(slot).cap)
    }

    /// Replaces the capability at `slot`, keeping its place in the tree.
    fn set_cap(&mut self, slot: Slot, cap: Cap) {
        let mut cte = self.cte(slot);
        cte.cap = cap.encode();
        self.write(slot, &cte);
    }

    /// The parent of `slot`.
    fn parent_of(&self, slot: Slot) -> Option<Slot> {
        link(self.cte(slot).parent)
    }

    /// The first child of `slot`.
    fn first_child(&self, slot: Slot) -> Option<Slot> {
        link(self.cte(slot).first_child)
    }

    /// The next sibling of `slot`.
    fn next_sibling(&self, slot: Slot) -> Option<Slot> {
        link(self.cte(slot).next)
    }

    /// Puts `cap` into the empty `slot` as the first child of `parent`.
    fn insert(&mut self, slot: Slot, cap: Cap, parent: Slot) {
        debug_assert!(self.cap_at(slot).is_null(), "insert into occupied slot {slot:?}");
        let mut p = self.cte(parent);
        let old_first = p.first_child;
        p.first_child = slot.0;
        self.write(parent, &p);
        if let Some(old) = link(old_first) {
            let mut o = self.cte(old);
            o.prev = slot.0;
            self.write(old, &o);
        }
        self.write(
            slot,
            &Cte { cap: cap.encode(), parent: parent.0, first_child: 0, next: old_first, prev: 0 },
        );
    }

    /// Takes `slot` out of the tree and empties it; its children become children of its
    /// parent. Returns the capability and the former parent.
    fn unlink(&mut self, slot: Slot) -> (Cap, Option<Slot>) {
        let cte = self.cte(slot);
        let parent = link(cte.parent);
        // Children move up, keeping their order, to the front of the parent's list.
        let mut last_child = None;
        let mut child = link(cte.first_child);
        while let Some(c) = child {
            let mut e = self.cte(c);
            e.parent = cte.parent;
            self.write(c, &e);
            last_child = Some(c);
            child = link(e.next);
        }
        // The sequence that replaces `slot` among its siblings: its children, or nothing.
        let (head, tail) = match last_child {
            Some(last) => (link(cte.first_child), Some(last)),
            None => (None, None),
        };
        let before = link(cte.prev);
        let after = link(cte.next);
        let first_of_run = head.or(after);
        match before {
            Some(b) => {
                let mut e = self.cte(b);
                e.next = first_of_run.map_or(0, |s| s.0);
                self.write(b, &e);
            }
            None => {
                if let Some(p) = parent {
                    let mut e = self.cte(p);
                    e.first_child = first_of_run.map_or(0, |s| s.0);
                    self.write(p, &e);
                }
            }
        }
        if let Some(h) = head {
            let mut e = self.cte(h);
            e.prev = cte.prev;
            self.write(h, &e);
        }
        if let Some(t) = tail {
            let mut e = self.cte(t);
            e.next = cte.next;
            self.write(t, &e);
        }
        if let Some(a) = after {
            let mut e = self.cte(a);
            e.prev = tail.or(before).map_or(0, |s| s.0);
            self.write(a, &e);
        }
        self.write(slot, &Cte::default());
        (Cap::decode(cte.cap), parent)
    }

    /// Moves the first child of `slot` up to be `slot`'s sibling just before it (constant
    /// time); false if it has no child. Lifting every child this way, then unlinking the
    /// childless `slot`, gives the tree one [`SlotOps::unlink`] gives.
    fn lift_first_child(&mut self, slot: Slot) -> bool {
        let s = self.cte(slot);
        let Some(child) = link(s.first_child) else { return false };
        let mut c = self.cte(child);
        // Out of `slot`'s children...
        let mut s2 = s;
        s2.first_child = c.next;
        if let Some(next) = link(c.next) {
            let mut e = self.cte(next);
            e.prev = 0;
            self.write(next, &e);
        }
        // ...into its siblings, just before it.
        c.parent = s.parent;
        c.prev = s.prev;
        c.next = slot.0;
        match link(s.prev) {
            Some(before) => {
                let mut e = self.cte(before);
                e.next = child.0;
                self.write(before, &e);
            }
            None => {
                if let Some(parent) = link(s.parent) {
                    let mut e = self.cte(parent);
                    e.first_child = child.0;
                    self.write(parent, &e);
                }
            }
        }
        s2.prev = child.0;
        self.write(child, &c);
        self.write(slot, &s2);
        true
    }

    /// Moves the entry at `from` to the empty `to`, keeping its place in the tree.
    fn move_slot(&mut self, from: Slot, to: Slot) {
        debug_assert!(self.cap_at(to).is_null(), "move into occupied slot {to:?}");
        let cte = self.cte(from);
        self.write(to, &cte);
        self.write(from, &Cte::default());
        if let Some(p) = link(cte.prev) {
            let mut e = self.cte(p);
            e.next = to.0;
            self.write(p, &e);
        } else if let Some(parent) = link(cte.parent) {
            let mut e = self.cte(parent);
            e.first_child = to.0;
            self.write(parent, &e);
        }
        if let Some(n) = link(cte.next) {
            let mut e = self.cte(n);
            e.prev = to.0;
            self.write(n, &e);
        }
        let mut child = link(cte.first_child);
        while let Some(c) = child {
            let mut e = self.cte(c);
            e.parent = to.0;
            self.write(c, &e);
            child = link(e.next);
        }
    }

    /// Whether the capability at `slot` is the last one naming its object, decided before
    /// it is removed, in constant time. Capabilities to one object are contiguous in the
    /// derivation tree (copies are children of their source, and a removed capability's
    /// children take its place among its siblings), so any other one is its parent, a
    /// neighbouring sibling, or its first child. The object-layer fuzzer checks that
    /// contiguity after every step.
    fn is_last_reference(&self, slot: Slot) -> bool {
        let cte = self.cte(slot);
        let cap = Cap::decode(cte.cap);
        // Untyped capabilities are never copied: each is the only one to its memory (an
        // untyped retyped into one child of its own size shares its base and size).
        if matches!(cap, Cap::Untyped { .. }) {
            return true;
        }
        let object = cap.object();
        ![cte.parent, cte.prev, cte.next, cte.first_child]
            .into_iter()
            .filter_map(link)
            .any(|other| self.cap_at(other).object() == object)
    }
}

impl<M: KernelMemory> SlotOps for M {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::kmem::TestMemory;

    fn slot(i: u64) -> Slot {
        PhysAddr(0x1000 + 64 * i)
    }

    fn ep(i: u64) -> Cap {
        Cap::Endpoint { base: PhysAddr(0x9000 + 32 * i), badge: 0, rights: cleave_abi::Rights::ALL }
    }

    fn children(m: &TestMemory, s: Slot) -> std::vec::Vec<Slot> {
        let mut v = std::vec::Vec::new();
        let mut c = m.first_child(s);
        while let Some(x) = c {
            assert_eq!(m.parent_of(x), Some(s));
            v.push(x);
            c = m.next_sibling(x);
        }
        v
    }

    extern crate std;

    #[test]
    fn unlink_reparents_children_in_place() {
        let mut m = TestMemory::new(0x1000, 0x1000);
        let root = slot(0);
        m.insert(slot(1), ep(1), root);
        m.insert(slot(2), ep(2), root);
        m.insert(slot(3), ep(3), root);
        m.insert(slot(4), ep(2), slot(2));
        m.insert(slot(5), ep(2), slot(2));
        assert_eq!(children(&m, root), [slot(3), slot(2), slot(1)]);
        assert!(!m.is_last_reference(slot(2)), "its children name the same object");
        let (cap, parent) = m.unlink(slot(2));
        assert_eq!((cap, parent), (ep(2), Some(root)));
        assert_eq!(children(&m, root), [slot(3), slot(5), slot(4), slot(1)]);
        assert!(m.cap_at(slot(2)).is_null());
        assert!(!m.is_last_reference(slot(5)) && !m.is_last_reference(slot(4)));
        assert!(m.is_last_reference(slot(3)) && m.is_last_reference(slot(1)));
        m.unlink(slot(3));
        m.unlink(slot(1));
        assert_eq!(children(&m, root), [slot(5), slot(4)]);
    }

    #[test]
    fn lifting_children_one_by_one_gives_what_unlink_gives() {
        let build = || {
            let mut m = TestMemory::new(0x1000, 0x1000);
            let root = slot(0);
            m.insert(slot(1), ep(1), root);
            m.insert(slot(2), ep(2), root);
            m.insert(slot(3), ep(3), root);
            for i in 4..8 {
                m.insert(slot(i), ep(2), slot(2));
            }
            m.insert(slot(9), ep(2), slot(5));
            m
        };
        let mut whole = build();
        whole.unlink(slot(2));
        let mut lifted = build();
        let mut n = 0;
        while lifted.lift_first_child(slot(2)) {
            n += 1;
            // At every step the tree holds together.
            assert_eq!(children(&lifted, slot(0)).len(), 3 + n);
        }
        lifted.unlink(slot(2));
        assert!(whole.bytes() == lifted.bytes(), "the trees differ");
    }

    #[test]
    fn move_keeps_the_tree() {
        let mut m = TestMemory::new(0x1000, 0x1000);
        let root = slot(0);
        m.insert(slot(1), ep(1), root);
        m.insert(slot(2), ep(1), slot(1));
        m.insert(slot(3), ep(2), root);
        m.move_slot(slot(1), slot(9));
        assert_eq!(children(&m, root), [slot(3), slot(9)]);
        assert_eq!(children(&m, slot(9)), [slot(2)]);
        assert!(m.cap_at(slot(1)).is_null());
    }
}
