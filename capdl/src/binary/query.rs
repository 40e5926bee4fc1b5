//! Questions a loader asks an encoded specification while it builds it: which capability
//! a slot holds, which line an IRQ object has, where a paging table sits, which objects
//! form an array, and what an address space maps. Pure reads of the records, so that
//! `cargo test` checks what the loader decides.

use super::{CapRecord, EncodedSpec, Kind};

/// Paging levels a table walk may climb from a page table to its root.
const LEVELS: usize = 4;

/// The bits of an address a 4-level table covers (48).
const ADDRESS_MASK: u64 = (1 << 48) - 1;

impl<'a> EncodedSpec<'a> {
    /// Every capability record, in order (records that cannot be read are skipped; `new`
    /// checked them all).
    pub fn caps(&self) -> impl Iterator<Item = CapRecord> + '_ {
        (0..self.cap_count()).filter_map(|k| self.cap(k))
    }

    /// The capability in slot `slot` of object `container`.
    pub fn cap_in(&self, container: u32, slot: u32) -> Option<CapRecord> {
        self.caps().find(|c| c.container == container && c.slot == slot)
    }

    /// The interrupt line the spec's IRQ maps give IRQ object `object`.
    pub fn irq_line(&self, object: u32) -> Option<u32> {
        (0..self.irq_count()).filter_map(|k| self.irq(k)).find(|&(_, o)| o == object).map(|(line, _)| line)
    }

    /// Where paging table `object` sits: its root (PML4 or EPT root) and the first
    /// address it covers, found by following the capabilities that name it up to a root.
    /// Addresses under a PML4 are canonical (bit 47 extends upwards); guest-physical ones
    /// under an EPT root are not.
    pub fn table_place(&self, object: u32) -> Option<(u32, u64)> {
        let mut address = 0u64;
        let mut at = object;
        for _ in 0..LEVELS {
            match self.object(at)?.kind {
                Kind::Pml4 => {
                    let canonical = if address & (1 << 47) != 0 { address | !ADDRESS_MASK } else { address };
                    return Some((at, canonical));
                }
                Kind::EptPml4 => return Some((at, address & ADDRESS_MASK)),
                _ => {}
            }
            let parent = self.caps().find(|c| {
                c.target == at && self.object(c.container).is_some_and(|o| o.kind.slot_shift().is_some())
            })?;
            let shift = self.object(parent.container)?.kind.slot_shift()?;
            address = address.wrapping_add(u64::from(parent.slot) << shift);
            at = parent.container;
        }
        None
    }

    /// Whether the address space under root `root` maps an object for which `pick` holds:
    /// a capability to it in a table that `root` reaches.
    pub fn root_maps(&self, root: u32, mut pick: impl FnMut(u32) -> bool) -> bool {
        self.caps().any(|c| {
            pick(c.target)
                && self.object(c.container).is_some_and(|o| o.kind.slot_shift().is_some())
                && self.table_place(c.container).is_some_and(|(r, _)| r == root)
        })
    }

    /// The array whose name is `parts` joined (`NAME[0]`, `NAME[1]`, … in a row, as the
    /// encoder expands arrays): its first object and its length.
    pub fn array(&self, parts: &[&str]) -> Option<(u32, u32)> {
        let element = |i: u32| {
            let mut rest = self.object(i).and_then(|o| self.name(o.name))?;
            for part in parts {
                rest = rest.strip_prefix(part)?;
            }
            rest.strip_prefix('[')?.strip_suffix(']')?.parse::<u32>().ok()
        };
        let first = (0..self.object_count()).find(|&i| element(i) == Some(0))?;
        let count = (first..self.object_count()).take_while(|&i| element(i) == Some(i - first)).count();
        Some((first, count as u32))
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::super::{EncodedSpec, Entry, Kind, encode};
    use crate::text::read;
    use alloc::vec::Vec;

    fn encoded(text: &str) -> Vec<u8> {
        encode(&read(text).unwrap()).unwrap()
    }

    fn index(spec: &EncodedSpec<'_>, name: &str) -> u32 {
        (0..spec.object_count()).find(|&i| spec.name(spec.object(i).unwrap().name) == Some(name)).unwrap()
    }

    const PAGING: &str = "arch x86_64\nobjects {\n  root = pml4\n  upper = pdpt\n  dir = pd\n  table = pt\n  page = frame (4k)\n  big = frame (2M)\n  other = pt\n}\ncaps {\n  root {\n    256: upper\n  }\n  upper {\n    3: dir\n  }\n  dir {\n    5: table\n    6: big\n  }\n  table {\n    7: page\n  }\n}\n";

    #[test]
    fn a_table_knows_its_root_and_first_address() {
        let bytes = encoded(PAGING);
        let spec = EncodedSpec::new(&bytes).unwrap();
        let root = index(&spec, "root");
        // Slot 256 of the PML4 is the upper half: canonical, sign-extended.
        let upper = 0xffff_8000_0000_0000u64;
        assert_eq!(spec.table_place(root), Some((root, 0)));
        assert_eq!(spec.table_place(index(&spec, "upper")), Some((root, upper)));
        assert_eq!(spec.table_place(index(&spec, "dir")), Some((root, upper + (3 << 30))));
        assert_eq!(spec.table_place(index(&spec, "table")), Some((root, upper + (3 << 30) + (5 << 21))));
        // A table nothing maps reaches no root; a frame is no table.
        assert_eq!(spec.table_place(index(&spec, "other")), None);
        assert_eq!(spec.table_place(index(&spec, "page")), None);
    }

    #[test]
    fn guest_physical_addresses_are_not_made_canonical() {
        let text = "arch x86_64\nobjects {\n  root = ept_pml4\n  upper = ept_pdpt\n  dir = ept_pd\n}\ncaps {\n  root {\n    256: upper\n  }\n  upper {\n    1: dir\n  }\n}\n";
        let bytes = encoded(text);
        let spec = EncodedSpec::new(&bytes).unwrap();
        let root = index(&spec, "root");
        assert_eq!(spec.table_place(index(&spec, "dir")), Some((root, (256 << 39) + (1 << 30))));
    }

    #[test]
    fn an_address_space_maps_what_its_tables_hold() {
        let bytes = encoded(PAGING);
        let spec = EncodedSpec::new(&bytes).unwrap();
        let (root, page, other) = (index(&spec, "root"), index(&spec, "page"), index(&spec, "other"));
        assert!(spec.root_maps(root, |t| t == page));
        assert!(!spec.root_maps(root, |t| t == other));
        assert!(!spec.root_maps(page, |_| true));
    }

    #[test]
    fn slots_and_lines_are_found_by_container() {
        let text = "arch x86_64\nobjects {\n  t = tcb (elf: a)\n  c = cnode (4 bits)\n  e = ep\n  i = irq\n}\ncaps {\n  t {\n    0: c\n    5: e (badge: 9)\n  }\n}\nirq maps {\n  4: i\n}\n";
        let bytes = encoded(text);
        let spec = EncodedSpec::new(&bytes).unwrap();
        let t = index(&spec, "t");
        assert_eq!(spec.cap_in(t, 5).map(|c| (c.target, c.badge)), Some((index(&spec, "e"), 9)));
        assert_eq!(spec.cap_in(t, 0).map(|c| c.target), Some(index(&spec, "c")));
        assert_eq!(spec.cap_in(t, 8), None);
        assert_eq!(spec.irq_line(index(&spec, "i")), Some(4));
        assert_eq!(spec.irq_line(t), None);
    }

    #[test]
    fn arrays_are_found_by_their_joined_name_and_end_at_a_gap() {
        let text = "arch x86_64\nobjects {\n  a_rw[3] = frame (4k)\n  a_rwx = frame (4k)\n  b_rw[2] = frame (4k)\n  a_pristine[3] = frame (4k)\n}\ncaps {\n}\n";
        let bytes = encoded(text);
        let spec = EncodedSpec::new(&bytes).unwrap();
        assert_eq!(spec.array(&["a", "_rw"]), Some((index(&spec, "a_rw[0]"), 3)));
        assert_eq!(spec.array(&["b", "_rw"]), Some((index(&spec, "b_rw[0]"), 2)));
        assert_eq!(spec.array(&["a_pristine"]), Some((index(&spec, "a_pristine[0]"), 3)));
        // Not a prefix match: `a` alone names no array, nor does `a_rwx`.
        assert_eq!(spec.array(&["a"]), None);
        assert_eq!(spec.array(&["a_rwx"]), None);
        assert_eq!(spec.array(&["c", "_rw"]), None);
    }

    #[test]
    fn each_level_holds_its_own_tables_and_frames() {
        let frame = |bits| (Kind::Frame, bits);
        let cases = [
            (Kind::Pml4, (Kind::Pdpt, 12), Some(Entry::Table)),
            (Kind::Pml4, frame(12), None),
            (Kind::Pdpt, (Kind::PageDirectory, 12), Some(Entry::Table)),
            (Kind::PageDirectory, (Kind::PageTable, 12), Some(Entry::Table)),
            (Kind::PageDirectory, frame(21), Some(Entry::Frame)),
            (Kind::PageDirectory, frame(12), None),
            (Kind::PageTable, frame(12), Some(Entry::Frame)),
            (Kind::PageTable, (Kind::PageTable, 12), None),
            (Kind::EptPml4, (Kind::EptPdpt, 12), Some(Entry::Table)),
            (Kind::EptPml4, (Kind::Pdpt, 12), None),
            (Kind::EptPd, (Kind::EptPt, 12), Some(Entry::Table)),
            (Kind::EptPd, frame(21), Some(Entry::Frame)),
            (Kind::EptPd, frame(12), None),
            (Kind::EptPt, frame(12), Some(Entry::Frame)),
            (Kind::EptPt, frame(21), None),
            (Kind::Tcb, frame(12), None),
            (Kind::CNode, (Kind::Endpoint, 0), None),
        ];
        for (level, (target, bits), expected) in cases {
            assert_eq!(level.entry(0, target, bits), expected, "{level:?} holding {target:?} ({bits})");
            assert_eq!(level.entry(511, target, bits), expected, "{level:?} slot 511");
            assert_eq!(level.entry(512, target, bits), None, "{level:?} slot 512");
        }
    }
}
