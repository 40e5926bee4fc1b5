//! Page-table formats: what an entry's bits mean, how far a space reaches, what a change
//! needs flushed. Every mapping operation (`vspace.rs`) is written once against [`Format`]:
//! IA-32e paging for threads' virtual address spaces, and for guests' physical address
//! spaces whichever nested paging the machine has (Intel's EPT or AMD's NPT).

use crate::addr::{GuestPhysAddr, PhysAddr, VirtAddr};
use cleave_abi::Rights;
use cleave_abi::layout::USER_TOP;

/// The address bits of a table entry (the same in every format).
pub const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// Frame mapping attribute: instructions may not be fetched from it.
pub const ATTR_EXECUTE_NEVER: u64 = 1;

/// Guest-physical addresses a 4-level nested page table covers.
pub const GUEST_PHYSICAL_TOP: u64 = 1 << 48;

/// Levels of a 4-level table: 4 is the root, 1 holds 4 KiB leaves, 2 may hold 2 MiB leaves.
pub const LEVELS: u32 = 4;

/// IA-32e entry bits.
mod ia32e {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const CACHE_DISABLE: u64 = 1 << 4;
    pub const HUGE: u64 = 1 << 7;
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// EPT entry bits: read, write, execute (any of them makes an entry present), the memory
/// type of a leaf (write-back; device frames keep type 0, uncached), a 2 MiB leaf.
mod ept {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const EXECUTE: u64 = 1 << 2;
    pub const PRESENT: u64 = READ | WRITE | EXECUTE;
    pub const WRITE_BACK: u64 = 6 << 3;
    pub const LARGE: u64 = 1 << 7;
}

/// NPT entry bits: IA-32e's, with the user bit on every level (the processor treats every
/// nested walk as a user access) and uncached device leaves through PCD and PWT.
mod npt {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const CACHE_DISABLE: u64 = 1 << 4;
    pub const LARGE: u64 = 1 << 7;
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// The two kinds of address space a capability can map into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// A thread's virtual address space (a VSpace), always IA-32e.
    Virtual,
    /// A guest's physical address space (an EPT root object), in the machine's nested
    /// paging format.
    GuestPhysical,
}

/// A page-table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IA-32e 4-level paging: a thread's virtual address space (a VSpace).
    Ia32e,
    /// Intel's extended page tables: a guest's physical address space under VT-x.
    Ept,
    /// AMD's nested page tables: a guest's physical address space under SVM.
    Npt,
}

/// Which cache of translations a change to a format's tables makes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// The processor's TLB (before returning to user mode).
    Tlb,
    /// Cached guest-physical translations (before the next VM entry).
    GuestPhysical,
}

impl Format {
    /// The bits that make an entry present.
    pub const fn present(self) -> u64 {
        match self {
            Self::Ia32e => ia32e::PRESENT,
            Self::Ept => ept::PRESENT,
            Self::Npt => npt::PRESENT,
        }
    }

    /// The bit that lets a mapping be written.
    #[cfg_attr(not(any(test, feature = "fuzz")), allow(dead_code, reason = "only the fuzzer's checker asks"))]
    pub(crate) const fn writable(self) -> u64 {
        match self {
            Self::Ia32e => ia32e::WRITABLE,
            Self::Ept => ept::WRITE,
            Self::Npt => npt::WRITABLE,
        }
    }

    /// The bit that makes a level-2 entry a 2 MiB leaf.
    pub(crate) const fn large(self) -> u64 {
        match self {
            Self::Ia32e => ia32e::HUGE,
            Self::Ept => ept::LARGE,
            Self::Npt => npt::LARGE,
        }
    }

    /// Where the space ends: mappings lie wholly below it.
    pub const fn top(self) -> u64 {
        match self {
            Self::Ia32e => USER_TOP,
            Self::Ept | Self::Npt => GUEST_PHYSICAL_TOP,
        }
    }

    /// Root entries that mappings may use: a VSpace's upper half is the kernel's.
    pub(crate) const fn root_entries(self) -> u64 {
        match self {
            Self::Ia32e => 256,
            Self::Ept | Self::Npt => 512,
        }
    }

    /// What a change to tables of this format makes stale.
    pub const fn flush(self) -> Flush {
        match self {
            Self::Ia32e => Flush::Tlb,
            Self::Ept | Self::Npt => Flush::GuestPhysical,
        }
    }

    /// The entry that links the table at `table` below another.
    pub const fn table_entry(self, table: PhysAddr) -> u64 {
        match self {
            // Intermediate entries allow everything; leaves decide.
            Self::Ia32e => table.0 | ia32e::PRESENT | ia32e::WRITABLE | ia32e::USER,
            Self::Ept => table.0 | ept::PRESENT,
            Self::Npt => table.0 | npt::PRESENT | npt::WRITABLE | npt::USER,
        }
    }

    /// The leaf entry mapping the frame at `base` (2 MiB if `large`) with `rights` (which
    /// include read) and `attributes` ([`ATTR_EXECUTE_NEVER`]); `device` frames are uncached.
    pub fn leaf_entry(
        self,
        base: PhysAddr,
        large: bool,
        device: bool,
        rights: Rights,
        attributes: u64,
    ) -> u64 {
        let write = rights.contains(Rights::WRITE);
        let execute = attributes & ATTR_EXECUTE_NEVER == 0;
        let mut entry = base.0;
        match self {
            Self::Ia32e => {
                entry |= ia32e::PRESENT | ia32e::USER;
                if write {
                    entry |= ia32e::WRITABLE;
                }
                if !execute {
                    entry |= ia32e::NO_EXECUTE;
                }
                if device {
                    entry |= ia32e::CACHE_DISABLE | ia32e::WRITE_THROUGH;
                }
            }
            Self::Ept => {
                entry |= ept::READ;
                if write {
                    entry |= ept::WRITE;
                }
                if execute {
                    entry |= ept::EXECUTE;
                }
                if !device {
                    entry |= ept::WRITE_BACK;
                }
            }
            Self::Npt => {
                entry |= npt::PRESENT | npt::USER;
                if write {
                    entry |= npt::WRITABLE;
                }
                if !execute {
                    entry |= npt::NO_EXECUTE;
                }
                if device {
                    entry |= npt::CACHE_DISABLE | npt::WRITE_THROUGH;
                }
            }
        }
        if large {
            entry |= self.large();
        }
        entry
    }

    /// Bits every present entry of this format carries, at every level (NPT's user bit:
    /// without it the nested walk faults).
    #[cfg_attr(not(any(test, feature = "fuzz")), allow(dead_code, reason = "only the fuzzer's checker asks"))]
    pub(crate) const fn always(self) -> u64 {
        match self {
            Self::Ia32e | Self::Ept => 0,
            Self::Npt => npt::USER,
        }
    }

    /// Which kind of space tables of this format serve.
    pub const fn space(self) -> Space {
        match self {
            Self::Ia32e => Space::Virtual,
            Self::Ept | Self::Npt => Space::GuestPhysical,
        }
    }

    /// Whether a present entry at `level` (above 1) links a table (rather than being a
    /// large leaf).
    pub const fn links_table(self, entry: u64, level: u32) -> bool {
        level > 1 && entry & self.present() != 0 && entry & self.large() == 0
    }
}

/// Where a frame or table is mapped, typed by the kind of space: a virtual address in a
/// VSpace or a guest-physical address in a guest's space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// In a VSpace.
    Virt(VirtAddr),
    /// In a guest-physical address space.
    GuestPhys(GuestPhysAddr),
}

impl At {
    /// The kind of space the address is in.
    pub const fn space(self) -> Space {
        match self {
            Self::Virt(_) => Space::Virtual,
            Self::GuestPhys(_) => Space::GuestPhysical,
        }
    }

    /// The address as a number, for walking tables.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Virt(v) => v.0,
            Self::GuestPhys(g) => g.0,
        }
    }

    /// The same kind of address at `raw`.
    #[must_use]
    pub const fn with(self, raw: u64) -> Self {
        match self {
            Self::Virt(_) => Self::Virt(VirtAddr(raw)),
            Self::GuestPhys(_) => Self::GuestPhys(GuestPhysAddr(raw)),
        }
    }

    /// An address in a space of kind `space` at `raw`.
    pub const fn of(space: Space, raw: u64) -> Self {
        match space {
            Space::Virtual => Self::Virt(VirtAddr(raw)),
            Space::GuestPhysical => Self::GuestPhys(GuestPhysAddr(raw)),
        }
    }
}

/// The index of the entry at `level` (4 = root … 1 = page table) that covers `addr`.
pub const fn index(addr: u64, level: u32) -> u64 {
    (addr >> level_shift(level)) & 0x1ff
}

/// How many address bits one entry at `level` covers (12 at level 1, 21 at 2, …).
pub(crate) const fn level_shift(level: u32) -> u32 {
    12 + 9 * (level - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ia32e_leaves_match_the_manual() {
        let f = Format::Ia32e;
        let e = f.leaf_entry(PhysAddr(0x5000), false, false, Rights::READ, 0);
        assert_eq!(e, 0x5000 | 0b101, "present, user, read-only, executable");
        let e = f.leaf_entry(PhysAddr(0x20_0000), true, true, Rights::ALL, ATTR_EXECUTE_NEVER);
        assert_eq!(e, 0x20_0000 | 0x9f | (1 << 63), "present, writable, user, uncached, large, no-execute");
        assert!(!f.links_table(e, 2), "a large leaf is no table link");
        assert!(f.links_table(f.table_entry(PhysAddr(0x9000)), 2));
        assert!(!f.links_table(f.table_entry(PhysAddr(0x9000)), 1), "level 1 holds only leaves");
    }

    #[test]
    fn ept_leaves_match_the_manual() {
        let f = Format::Ept;
        // Read + execute, write-back memory type.
        assert_eq!(f.leaf_entry(PhysAddr(0x5000), false, false, Rights::READ, 0), 0x5000 | 0b101 | (6 << 3));
        // Device frame: uncached (type 0), read/write, no execute, 2 MiB.
        let e = f.leaf_entry(PhysAddr(0x20_0000), true, true, Rights::ALL, ATTR_EXECUTE_NEVER);
        assert_eq!(e, 0x20_0000 | 0b011 | (1 << 7));
        assert_eq!(f.table_entry(PhysAddr(0x9000)), 0x9000 | 0b111);
        assert_eq!(f.flush(), Flush::GuestPhysical);
        assert_eq!(Format::Ia32e.flush(), Flush::Tlb);
    }

    #[test]
    fn npt_leaves_match_the_manual() {
        let f = Format::Npt;
        // Every level carries the user bit: the processor walks nested tables as user.
        assert_eq!(f.table_entry(PhysAddr(0x9000)), 0x9000 | 0b111);
        assert_eq!(f.leaf_entry(PhysAddr(0x5000), false, false, Rights::READ, 0), 0x5000 | 0b101);
        let e = f.leaf_entry(PhysAddr(0x20_0000), true, true, Rights::ALL, ATTR_EXECUTE_NEVER);
        assert_eq!(e, 0x20_0000 | 0x9f | (1 << 63), "present, writable, user, uncached, large, no-execute");
        assert_eq!(f.top(), GUEST_PHYSICAL_TOP);
        assert_eq!(f.root_entries(), 512, "no kernel half in a guest's space");
        assert_eq!(f.flush(), Flush::GuestPhysical);
        assert!(f.links_table(f.table_entry(PhysAddr(0x9000)), 3));
    }

    #[test]
    fn addresses_keep_their_kind() {
        let at = At::GuestPhys(GuestPhysAddr(0x1234));
        assert_eq!(at.space(), Space::GuestPhysical);
        assert_eq!(at.with(0x1000), At::GuestPhys(GuestPhysAddr(0x1000)));
        assert_eq!(At::of(Space::Virtual, 7), At::Virt(VirtAddr(7)));
        assert_eq!(Format::Npt.space(), Space::GuestPhysical);
        assert_eq!(index(0x0000_7fff_ffff_f000, 4), 255);
        assert_eq!(index(0x20_0000, 2), 1);
        assert_eq!(level_shift(3), 30);
    }
}
