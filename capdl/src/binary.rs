//! The binary form of a specification, which the loader reads in place, without a heap.
//!
//! Layout (little-endian): a 32-byte header (`b"CLVSPEC1"`, then the counts and offsets of
//! the object, capability, IRQ and name tables), fixed-size records for objects (32 bytes),
//! capabilities (40 bytes) and IRQ mappings (8 bytes), then the names. Arrays are
//! expanded: `name[3]` is an object of its own. Every access is bounds-checked, so a
//! corrupt image yields an error, never a wrong read.

use cleave_abi::layout::{LARGE_PAGE_SHIFT, PAGE_SHIFT};
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::{ObjectType, Rights};
use core::fmt;

/// The magic at the start of an encoded specification.
pub const MAGIC: [u8; 8] = *b"CLVSPEC1";
const HEADER: usize = 32;
/// Size of an object record.
pub const OBJECT_RECORD: usize = 32;
/// Size of a capability record.
pub const CAP_RECORD: usize = 40;
const IRQ_RECORD: usize = 8;

/// Object kinds in the binary form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Untyped memory.
    Untyped = 1,
    /// Endpoint.
    Endpoint = 2,
    /// Notification.
    Notification = 3,
    /// Thread.
    Tcb = 4,
    /// CNode.
    CNode = 5,
    /// Frame (size in `size_bits`).
    Frame = 6,
    /// Page table.
    PageTable = 7,
    /// Page directory.
    PageDirectory = 8,
    /// PDPT.
    Pdpt = 9,
    /// PML4 (VSpace).
    Pml4 = 10,
    /// IRQ handler object.
    Irq = 11,
    /// I/O port range.
    IoPorts = 12,
    /// Virtual CPU (slot 0 of its capabilities: the TCB that runs it; slot 1: its EPT root).
    Vcpu = 13,
    /// EPT root (level 4).
    EptPml4 = 14,
    /// EPT PDPT (level 3).
    EptPdpt = 15,
    /// EPT page directory (level 2).
    EptPd = 16,
    /// EPT page table (level 1).
    EptPt = 17,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        use Kind::*;
        [
            Untyped,
            Endpoint,
            Notification,
            Tcb,
            CNode,
            Frame,
            PageTable,
            PageDirectory,
            Pdpt,
            Pml4,
            Irq,
            IoPorts,
            Vcpu,
            EptPml4,
            EptPdpt,
            EptPd,
            EptPt,
        ]
        .into_iter()
        .find(|k| *k as u8 == v)
    }
}

/// One object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRecord {
    /// What it is.
    pub kind: Kind,
    /// Size (untyped, CNode radix + 6, frame 12/21), or 0.
    pub size_bits: u8,
    /// TCB priority.
    pub priority: u8,
    /// TCB maximum controlled priority.
    pub max_priority: u8,
    /// Index of its name in the name table.
    pub name: u32,
    /// Frame/untyped physical address (0: any), I/O ports first and last (16 bits each),
    /// TCB: index of its ELF image name (u32::MAX: none).
    pub param0: u64,
    /// TCB: 1 if the loader starts it.
    /// TCB: bit 0 resume, the rest its initial argument; frame: its fill (name index + 1,
    /// offset from bit 32), 0 for none.
    pub param1: u64,
    /// TCB: its lifetime (`model::Lifetime::encode`; 0 persistent) in the low 32 bits.
    /// Any object: the index + 1 of the untyped it is made from, in the high 32 bits (0:
    /// the loader's pool).
    pub param2: u64,
}

/// Most objects a specification may have for Cleave's loader to build it (it tracks each
/// object's capability in a fixed table, 9 bytes each, on its 64 KiB stack). Three Linux
/// guests with a disk ring (258 pages) and network pipes (68 pages) each, their backends
/// and the control plane need some 1,250.
pub const LOADER_MAX_OBJECTS: usize = 2048;

/// The kinds of lifetime in a TCB record's `param2` (bits 0-7; `model::Lifetime::encode`).
pub mod lifetime {
    /// Runs until the system stops.
    pub const PERSISTENT: u64 = 0;
    /// Destroyed once it says it is done.
    pub const DISPOSABLE: u64 = 1;
    /// Restarted on a timer (the period in ms above bit 8).
    pub const RESTART: u64 = 2;
    /// Rolled back after every request.
    pub const PER_REQUEST: u64 = 3;
    /// The longest restart period the encoding holds (24 bits of milliseconds above the
    /// kind, in a 32-bit field): about 4.6 hours.
    pub const MAX_RESTART_MS: u64 = (1 << 24) - 1;
}

/// Address bits one level of paging resolves: a table's slots are numbered by 9 bits.
const INDEX_BITS: u32 = TABLE_SLOTS.trailing_zeros();

// A slot of a page directory covers a large page: the paging formats and the ABI agree.
const _: () = assert!(PAGE_SHIFT + INDEX_BITS == LARGE_PAGE_SHIFT);

impl Kind {
    /// How many address bits one slot of a table of this kind covers (IA-32e or EPT): a
    /// page table's slot a page, each level above 9 bits more. Every paging shift Cleave's
    /// capDL tools and loader use comes from here.
    pub const fn slot_shift(self) -> Option<u32> {
        match self {
            Kind::Pml4 | Kind::EptPml4 => Some(LARGE_PAGE_SHIFT + 2 * INDEX_BITS),
            Kind::Pdpt | Kind::EptPdpt => Some(LARGE_PAGE_SHIFT + INDEX_BITS),
            Kind::PageDirectory | Kind::EptPd => Some(LARGE_PAGE_SHIFT),
            Kind::PageTable | Kind::EptPt => Some(PAGE_SHIFT),
            _ => None,
        }
    }

    /// Which slot of a table of this kind covers `address` (`None` for a kind that is no
    /// paging table).
    pub const fn slot_of(self, address: u64) -> Option<u32> {
        match self.slot_shift() {
            Some(shift) => Some((address >> shift) as u32 & (TABLE_SLOTS - 1)),
            None => None,
        }
    }

    /// The kind a slot of a table of this kind holds: the next table down, or (in a page
    /// table) a frame. (A page directory may also hold a 2 MiB frame.)
    pub fn child_kind(self) -> Option<Kind> {
        match self {
            Kind::Pml4 => Some(Kind::Pdpt),
            Kind::Pdpt => Some(Kind::PageDirectory),
            Kind::PageDirectory => Some(Kind::PageTable),
            Kind::PageTable | Kind::EptPt => Some(Kind::Frame),
            Kind::EptPml4 => Some(Kind::EptPdpt),
            Kind::EptPdpt => Some(Kind::EptPd),
            Kind::EptPd => Some(Kind::EptPt),
            _ => None,
        }
    }
}

/// What a slot of a paging table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The next table down.
    Table,
    /// A frame (4 KiB in a page table, 2 MiB in a page directory).
    Frame,
}

/// Slots in a table of any paging level.
pub const TABLE_SLOTS: u32 = 512;

impl Kind {
    /// What slot `slot` of a table of this kind may hold when it names a `target` of
    /// `target_size_bits`: the table one level down, or a frame of the size the level maps
    /// (an IA-32e page table takes any frame: the kernel refuses a 2 MiB one). `None`:
    /// this level cannot map it there.
    pub fn entry(self, slot: u32, target: Kind, target_size_bits: u8) -> Option<Entry> {
        if slot >= TABLE_SLOTS {
            return None;
        }
        // A frame the size of one slot's span; an IA-32e page table takes any.
        let frame = target == Kind::Frame
            && match self {
                Kind::PageTable => true,
                Kind::PageDirectory | Kind::EptPd | Kind::EptPt => {
                    self.slot_shift() == Some(u32::from(target_size_bits))
                }
                _ => false,
            };
        if frame {
            Some(Entry::Frame)
        } else if self.child_kind().is_some_and(|child| child == target && child != Kind::Frame) {
            Some(Entry::Table)
        } else {
            None
        }
    }
}

/// The TCB slots the spec may fill, numbered as seL4 numbers them
/// (`model::TCB_SLOT_NAMES` has every name); the loader places these four.
pub mod tcb_slot {
    /// The thread's CSpace root.
    pub const CSPACE: u32 = 0;
    /// The thread's VSpace root.
    pub const VSPACE: u32 = 1;
    /// The endpoint its faults go to.
    pub const FAULT_ENDPOINT: u32 = 5;
    /// Its bound notification.
    pub const BOUND_NOTIFICATION: u32 = 8;
}

/// Where a TCB record's stack size is in its `param0`: pages, in the 16 bits from here (0:
/// the default, `cleave_abi::layout::COMPONENT_STACK_PAGES`).
pub const STACK_PAGES_SHIFT: u32 = 40;
/// The largest stack the loader makes, in pages (1 MiB).
pub const MAX_STACK_PAGES: u64 = 256;

/// Flags of a TCB record, above the ELF name index in its `param0`.
pub mod tcb_flag {
    /// The thread may end the run (the loader calls `TCB_ALLOW_END_RUN`).
    pub const ENDS_RUN: u64 = 1 << 32;
    /// The thread may not write to the debug console (otherwise the loader calls
    /// `TCB_ALLOW_CONSOLE`).
    pub const QUIET: u64 = 1 << 33;
    /// The thread may read the kernel's audit log (the loader calls
    /// `TCB_ALLOW_READ_AUDIT`).
    pub const READS_AUDIT: u64 = 1 << 34;
}

impl ObjectRecord {
    /// The untyped object this one is made from, if the spec names one.
    pub fn parent(&self) -> Option<u32> {
        ((self.param2 >> 32) as u32).checked_sub(1)
    }

    /// A device frame's physical address: a frame the spec places at one (made from
    /// device untyped memory, not from the loader's pool).
    pub fn device_address(&self) -> Option<u64> {
        (self.kind == Kind::Frame && self.param0 != 0).then_some(self.param0)
    }

    /// A frame's first contents: the name index of a boot-image file and the offset of the
    /// frame's bytes in it. (A name field of 0 with an offset yields `u32::MAX`, which
    /// names nothing.)
    pub fn fill(&self) -> Option<(u32, usize)> {
        (self.kind == Kind::Frame && self.param0 == 0 && self.param1 != 0)
            .then(|| ((self.param1 as u32).wrapping_sub(1), (self.param1 >> 32) as usize))
    }

    /// An I/O port range's first and last port.
    pub fn io_ports(&self) -> (u16, u16) {
        (self.param0 as u16, (self.param0 >> 16) as u16)
    }

    /// A thread's ELF image: the index of its name (`u32::MAX`: none).
    pub fn elf_name(&self) -> u32 {
        self.param0 as u32
    }

    /// A thread's stack in pages, if the spec gives one (else the loader's default).
    pub fn stack_pages(&self) -> Option<u64> {
        if self.kind != Kind::Tcb {
            return None;
        }
        Some((self.param0 >> STACK_PAGES_SHIFT) & 0xffff).filter(|&n| n != 0)
    }

    /// Whether a thread's flags (`tcb_flag`) include `flag`.
    pub fn has_flag(&self, flag: u64) -> bool {
        self.param0 & flag != 0
    }

    /// Whether the loader starts this thread.
    pub fn resumes(&self) -> bool {
        self.param1 & 1 != 0
    }

    /// A thread's initial argument (its `rdi`).
    pub fn argument(&self) -> u64 {
        self.param1 >> 1
    }

    /// A thread's kind of lifetime ([`lifetime`]).
    pub fn lifetime(&self) -> u64 {
        self.param2 & 0xff
    }

    /// A CNode's radix (log2 of its slots): its record holds the CNode's size, radix plus
    /// the bits of a slot. `None` for another kind, or for a corrupt record smaller than
    /// one slot, which the loader refuses.
    pub fn cnode_radix(&self) -> Option<u64> {
        if self.kind != Kind::CNode {
            return None;
        }
        u64::from(self.size_bits).checked_sub(u64::from(SLOT_SIZE_BITS))
    }

    /// What the kernel retypes untyped memory into for this object, and the size argument
    /// it takes: `None` for IRQ handlers and I/O port ranges, which come from control
    /// capabilities instead. (A corrupt CNode record without a radix gets a size the
    /// kernel refuses.)
    pub fn retype(&self) -> Option<(ObjectType, u64)> {
        let ty = match self.kind {
            Kind::Endpoint => ObjectType::Endpoint,
            Kind::Notification => ObjectType::Notification,
            Kind::Tcb => ObjectType::Tcb,
            Kind::CNode => return Some((ObjectType::CNode, self.cnode_radix().unwrap_or(u64::MAX))),
            Kind::Untyped => return Some((ObjectType::Untyped, u64::from(self.size_bits))),
            Kind::PageTable => ObjectType::PageTable,
            Kind::PageDirectory => ObjectType::PageDirectory,
            Kind::Pdpt => ObjectType::Pdpt,
            Kind::Pml4 => ObjectType::Pml4,
            Kind::Vcpu => ObjectType::Vcpu,
            Kind::EptPml4 => ObjectType::EptPml4,
            Kind::EptPdpt => ObjectType::EptPdpt,
            Kind::EptPd => ObjectType::EptPd,
            Kind::EptPt => ObjectType::EptPt,
            Kind::Frame if u32::from(self.size_bits) == LARGE_PAGE_SHIFT => ObjectType::Frame2M,
            Kind::Frame => ObjectType::Frame4K,
            Kind::Irq | Kind::IoPorts => return None,
        };
        Some((ty, 0))
    }
}

/// Capability targets that are not objects.
pub mod special {
    /// `irq_control`.
    pub const IRQ_CONTROL: u32 = u32::MAX;
    /// `io_space_master`, `asid_control`, `domain`, `sched_control`: the encoder refuses
    /// them; the loader refuses an image that holds this value all the same.
    pub const UNSUPPORTED: u32 = u32::MAX - 1;
}

/// One capability in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapRecord {
    /// The object holding the slot.
    pub container: u32,
    /// The slot.
    pub slot: u32,
    /// The object named (or a [`special`] value).
    pub target: u32,
    /// Rights: bit 0 write, 1 read, 2 grant, 3 grant-reply (the kernel's encoding).
    pub rights: u8,
    /// Guard size.
    pub guard_size: u8,
    /// Bit 0: uncached.
    pub flags: u8,
    /// Badge.
    pub badge: u64,
    /// Guard.
    pub guard: u64,
}

impl CapRecord {
    /// The rights it is given with (0 in the record: all).
    pub fn rights(&self) -> Rights {
        if self.rights == 0 { Rights::ALL } else { Rights(self.rights) }
    }

    /// The guard word of a CNode capability, as `CNode::mint` takes it: the guard above
    /// its size.
    pub fn guard_word(&self) -> u64 {
        self.guard << 6 | u64::from(self.guard_size)
    }

    /// The word minted into the copy: the guard word if the record has a guard, else its
    /// badge.
    pub fn badge_or_guard(&self) -> u64 {
        if self.guard_size != 0 || self.guard != 0 { self.guard_word() } else { self.badge }
    }
}

/// What is wrong with an encoded specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an encoded specification.
    BadMagic,
    /// A table lies outside the bytes.
    Truncated,
    /// Object `index` has an unknown kind.
    BadKind { index: u32 },
    /// Capability record `index` names an object or name that does not exist.
    BadReference { index: u32 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not an encoded capDL specification"),
            Self::Truncated => write!(f, "the encoded specification is truncated"),
            Self::BadKind { index } => write!(f, "object {index} has an unknown kind"),
            Self::BadReference { index } => {
                write!(f, "record {index} refers to something that does not exist")
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    Some(u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
}

/// An encoded specification, read in place.
#[derive(Clone, Copy, Debug)]
pub struct EncodedSpec<'a> {
    bytes: &'a [u8],
    objects: (usize, usize),
    caps: (usize, usize),
    irqs: (usize, usize),
    names: (usize, usize),
}

impl<'a> EncodedSpec<'a> {
    /// Checks the header, every table's bounds and every record.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(DecodeError::BadMagic);
        }
        let field = |i: usize| u32_at(bytes, 8 + 4 * i).map(|v| v as usize).ok_or(DecodeError::Truncated);
        let (n_objects, n_caps, n_irqs, n_names) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let objects = HEADER;
        let caps = objects + n_objects * OBJECT_RECORD;
        let irqs = caps + n_caps * CAP_RECORD;
        let names = irqs + n_irqs * IRQ_RECORD;
        if names + n_names * 8 > bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let spec = Self {
            bytes,
            objects: (objects, n_objects),
            caps: (caps, n_caps),
            irqs: (irqs, n_irqs),
            names: (names, n_names),
        };
        for i in 0..n_objects as u32 {
            let o = spec.object(i).ok_or(DecodeError::BadKind { index: i })?;
            spec.name(o.name).ok_or(DecodeError::BadReference { index: i })?;
        }
        for i in 0..n_caps as u32 {
            let c = spec.cap(i).ok_or(DecodeError::Truncated)?;
            let target_ok = c.target >= special::UNSUPPORTED || (c.target as usize) < n_objects;
            if c.container as usize >= n_objects || !target_ok {
                return Err(DecodeError::BadReference { index: i });
            }
        }
        for i in 0..n_irqs as u32 {
            let (_, object) = spec.irq(i).ok_or(DecodeError::Truncated)?;
            if object as usize >= n_objects {
                return Err(DecodeError::BadReference { index: i });
            }
        }
        Ok(spec)
    }

    /// Number of objects.
    pub fn object_count(&self) -> u32 {
        self.objects.1 as u32
    }
    /// Number of capabilities.
    pub fn cap_count(&self) -> u32 {
        self.caps.1 as u32
    }
    /// Number of IRQ mappings.
    pub fn irq_count(&self) -> u32 {
        self.irqs.1 as u32
    }

    /// Object `i`.
    pub fn object(&self, i: u32) -> Option<ObjectRecord> {
        if i as usize >= self.objects.1 {
            return None;
        }
        let at = self.objects.0 + i as usize * OBJECT_RECORD;
        let b = self.bytes.get(at..at + OBJECT_RECORD)?;
        Some(ObjectRecord {
            kind: Kind::from_u8(b[0])?,
            size_bits: b[1],
            priority: b[2],
            max_priority: b[3],
            name: u32_at(b, 4)?,
            param0: u64_at(b, 8)?,
            param1: u64_at(b, 16)?,
            param2: u64_at(b, 24)?,
        })
    }

    /// Capability `i`.
    pub fn cap(&self, i: u32) -> Option<CapRecord> {
        if i as usize >= self.caps.1 {
            return None;
        }
        let at = self.caps.0 + i as usize * CAP_RECORD;
        let b = self.bytes.get(at..at + CAP_RECORD)?;
        Some(CapRecord {
            container: u32_at(b, 0)?,
            slot: u32_at(b, 4)?,
            target: u32_at(b, 8)?,
            rights: b[12],
            guard_size: b[13],
            flags: b[14],
            badge: u64_at(b, 16)?,
            guard: u64_at(b, 24)?,
        })
    }

    /// IRQ mapping `i`: (line, object).
    pub fn irq(&self, i: u32) -> Option<(u32, u32)> {
        if i as usize >= self.irqs.1 {
            return None;
        }
        let at = self.irqs.0 + i as usize * IRQ_RECORD;
        Some((u32_at(self.bytes, at)?, u32_at(self.bytes, at + 4)?))
    }

    /// Name `i` (object names, ELF image names).
    pub fn name(&self, i: u32) -> Option<&'a str> {
        if i as usize >= self.names.1 {
            return None;
        }
        let at = self.names.0 + i as usize * 8;
        let (offset, len) = (u32_at(self.bytes, at)? as usize, u32_at(self.bytes, at + 4)? as usize);
        core::str::from_utf8(self.bytes.get(offset..offset.checked_add(len)?)?).ok()
    }

    /// A 64-bit digest (FNV-1a) of everything that defines the capability distribution:
    /// every object's kind and size, every capability's place, target, rights, badge and
    /// guard, every IRQ mapping. The loader reports the digest of what it built.
    pub fn digest(&self) -> u64 {
        let mut d = Digest::new();
        for i in 0..self.object_count() {
            if let Some(o) = self.object(i) {
                d.object(&o);
            }
        }
        for i in 0..self.cap_count() {
            if let Some(c) = self.cap(i) {
                d.cap(&c);
            }
        }
        for i in 0..self.irq_count() {
            if let Some((irq, object)) = self.irq(i) {
                d.word(u64::from(irq));
                d.word(u64::from(object));
            }
        }
        d.finish()
    }
}

/// The FNV-1a digest of a capability distribution, fed record by record.
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    /// An empty digest.
    pub const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    /// Adds a word.
    pub fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// Adds an object (kind, size, priorities, physical address).
    pub fn object(&mut self, o: &ObjectRecord) {
        self.word(
            o.kind as u64
                | u64::from(o.size_bits) << 8
                | u64::from(o.priority) << 16
                | u64::from(o.max_priority) << 24,
        );
        self.word(match o.kind {
            Kind::Frame | Kind::Untyped | Kind::IoPorts => o.param0,
            // A thread's flags, not its image's name index.
            Kind::Tcb => o.param0 & !0xffff_ffff,
            _ => 0,
        });
        // TCBs: the lifetime; every object: the untyped it is made from (`param2`).
        self.word(if o.kind == Kind::Tcb { o.param2 } else { o.param2 & !0xffff_ffff });
    }
    /// Adds a capability.
    pub fn cap(&mut self, c: &CapRecord) {
        self.word(u64::from(c.container) | u64::from(c.slot) << 32);
        self.word(
            u64::from(c.target)
                | u64::from(c.rights) << 32
                | u64::from(c.guard_size) << 40
                | u64::from(c.flags) << 48,
        );
        self.word(c.badge);
        self.word(c.guard);
    }
    /// The digest.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

mod query;

#[cfg(feature = "alloc")]
mod encode;
#[cfg(feature = "alloc")]
pub use encode::{EncodeError, encode};

#[cfg(test)]
mod kind_tests {
    use super::{Kind, tcb_slot};

    #[test]
    fn each_paging_level_maps_the_next_and_covers_its_bits() {
        // IA-32e and EPT: four levels, 9 bits each above the 4 KiB page.
        for chain in [
            [Kind::Pml4, Kind::Pdpt, Kind::PageDirectory, Kind::PageTable],
            [Kind::EptPml4, Kind::EptPdpt, Kind::EptPd, Kind::EptPt],
        ] {
            for (i, level) in chain.iter().enumerate() {
                assert_eq!(level.slot_shift(), Some(39 - 9 * i as u32));
                let below = chain.get(i + 1).copied().unwrap_or(Kind::Frame);
                assert_eq!(level.child_kind(), Some(below));
            }
        }
        assert_eq!(Kind::Frame.slot_shift(), None);
        assert_eq!(Kind::Tcb.child_kind(), None);
    }

    #[test]
    fn slot_of_picks_each_levels_nine_bits() {
        let address = 1 << 39 | 2 << 30 | 3 << 21 | 4 << 12 | 0x123;
        for (levels, expect) in [
            ([Kind::Pml4, Kind::Pdpt, Kind::PageDirectory, Kind::PageTable], [1, 2, 3, 4]),
            ([Kind::EptPml4, Kind::EptPdpt, Kind::EptPd, Kind::EptPt], [1, 2, 3, 4]),
        ] {
            assert_eq!(levels.map(|l| l.slot_of(address)), expect.map(Some));
        }
        // Bits above the top level are no slot's business; the last slot is 511.
        assert_eq!(Kind::Pml4.slot_of(u64::MAX), Some(511));
        assert_eq!(Kind::Frame.slot_of(address), None);
    }

    #[test]
    fn tcb_slots_are_sel4s() {
        let named =
            |n: &str| crate::model::TCB_SLOT_NAMES.iter().find(|(name, _)| *name == n).map(|&(_, s)| s);
        assert_eq!(named("cspace"), Some(u64::from(tcb_slot::CSPACE)));
        assert_eq!(named("vspace"), Some(u64::from(tcb_slot::VSPACE)));
        assert_eq!(named("fault_ep_slot"), Some(u64::from(tcb_slot::FAULT_ENDPOINT)));
        assert_eq!(named("bound_notification"), Some(u64::from(tcb_slot::BOUND_NOTIFICATION)));
    }
}

#[cfg(all(test, feature = "alloc"))]
mod record_tests {
    use super::{EncodedSpec, Kind, encode, lifetime, tcb_flag};
    use crate::text::read;
    use cleave_abi::{ObjectType, Rights};

    const TEXT: &str = "arch x86_64\nobjects {\n  t = tcb (resume: True, elf: server, init: [7], quiet: True, lifetime: per_request)\n  c = cnode (8 bits)\n  e = ep\n  u = ut (16 bits)\n  big = frame (2M)\n  small = frame (4k)\n  device = frame (4k, paddr: 0xfebf0000)\n  p = io_ports (ports: [0x40..0x43])\n}\ncaps {\n  c {\n    1: e (RW, badge: 5)\n    2: e\n    3: c (guard: 2, guard_size: 3)\n  }\n}\n";

    #[test]
    fn a_threads_stack_is_in_its_record_and_in_the_digest() {
        let with =
            |pages: &str| read(&TEXT.replace("quiet: True,", &format!("quiet: True, stack_pages: {pages},")));
        let bytes = encode(&with("16").unwrap()).unwrap();
        let e = EncodedSpec::new(&bytes).unwrap();
        let t = (0..e.object_count())
            .map(|i| e.object(i).unwrap())
            .find(|o| e.name(o.name) == Some("t"))
            .unwrap();
        assert_eq!(t.stack_pages(), Some(16));
        assert_eq!(e.name(t.elf_name()), Some("server"), "the ELF name's bits are untouched");
        assert!(t.has_flag(tcb_flag::QUIET));
        let plain = encode(&read(TEXT).unwrap()).unwrap();
        let plain = EncodedSpec::new(&plain).unwrap();
        let t0 = (0..plain.object_count())
            .map(|i| plain.object(i).unwrap())
            .find(|o| o.kind == Kind::Tcb)
            .unwrap();
        assert_eq!(t0.stack_pages(), None, "no stack_pages: the loader's default");
        assert_ne!(plain.digest(), e.digest(), "the stack is part of what the digest covers");
        // What the loader cannot make is refused, not cut to fit.
        for bad in ["0", "257", "65536"] {
            let error = encode(&with(bad).unwrap()).unwrap_err();
            assert!(error.0.contains("a stack of"), "{bad}: {error:?}");
        }
    }

    #[test]
    fn records_say_what_the_loader_builds() {
        let mut spec = read(TEXT).unwrap();
        // Cleave's fill form, `NAME@OFFSET`, as cleave-system writes it into the model.
        for o in spec.objects.iter_mut().filter(|o| o.name == "small") {
            if let crate::model::ObjectKind::Frame { fill, .. } = &mut o.kind {
                fill.push("data@8192".into());
            }
        }
        let bytes = encode(&spec).unwrap();
        let e = EncodedSpec::new(&bytes).unwrap();
        let object = |name: &str| {
            (0..e.object_count())
                .map(|i| e.object(i).unwrap())
                .find(|o| e.name(o.name) == Some(name))
                .unwrap()
        };
        let t = object("t");
        assert_eq!(e.name(t.elf_name()), Some("server"));
        assert!(t.resumes() && t.has_flag(tcb_flag::QUIET) && !t.has_flag(tcb_flag::ENDS_RUN));
        assert_eq!((t.argument(), t.lifetime()), (7, lifetime::PER_REQUEST));
        assert_eq!(t.retype(), Some((ObjectType::Tcb, 0)));
        assert_eq!(object("c").retype(), Some((ObjectType::CNode, 8)));
        assert_eq!(object("u").retype(), Some((ObjectType::Untyped, 16)));
        assert_eq!(object("big").retype(), Some((ObjectType::Frame2M, 0)));
        assert_eq!(object("small").retype(), Some((ObjectType::Frame4K, 0)));
        assert_eq!(object("p").retype(), None);
        assert_eq!(object("p").io_ports(), (0x40, 0x43));
        let small = object("small");
        let (file, offset) = small.fill().unwrap();
        assert_eq!((e.name(file), offset), (Some("data"), 8192));
        assert_eq!((small.device_address(), object("big").fill()), (None, None));
        let device = object("device");
        assert_eq!((device.device_address(), device.fill()), (Some(0xfebf_0000), None));
        assert_eq!(t.device_address(), None);
        let caps: std::vec::Vec<_> = (0..e.cap_count()).map(|k| e.cap(k).unwrap()).collect();
        let at = |slot| caps.iter().find(|c| c.slot == slot).unwrap();
        assert_eq!((at(1).rights(), at(1).badge_or_guard()), (Rights(Rights::READ.0 | Rights::WRITE.0), 5));
        assert_eq!((at(2).rights(), at(2).badge_or_guard()), (Rights::ALL, 0));
        assert_eq!(at(3).badge_or_guard(), 2 << 6 | 3);
        assert_eq!(at(3).guard_word(), 2 << 6 | 3);
    }

    #[test]
    fn corrupt_records_decode_to_values_that_name_nothing() {
        let mut o = super::ObjectRecord {
            kind: Kind::Frame,
            size_bits: 12,
            priority: 0,
            max_priority: 0,
            name: 0,
            param0: 0,
            param1: 5 << 32,
            param2: 0,
        };
        // A fill with an offset but no name: a name index nothing has.
        assert_eq!(o.fill(), Some((u32::MAX, 5)));
        assert_eq!(o.cnode_radix(), None);
        o.kind = Kind::CNode;
        o.size_bits = 3;
        assert_eq!(o.cnode_radix(), None);
        assert_eq!(o.retype().map(|(_, size)| size > 64), Some(true));
    }

    #[test]
    fn a_cnode_record_holds_its_radix_above_a_slots_bits() {
        let bytes =
            encode(&read("arch x86_64\nobjects {\n  c = cnode (8 bits)\n  d = cnode (1 bits)\n}\n").unwrap())
                .unwrap();
        let e = EncodedSpec::new(&bytes).unwrap();
        let radix = |i| e.object(i).unwrap().cnode_radix();
        assert_eq!((radix(0), radix(1)), (Some(8), Some(1)));
        let mut smallest = e.object(1).unwrap();
        smallest.size_bits = 6;
        assert_eq!(smallest.cnode_radix(), Some(0));
        smallest.size_bits = 5;
        assert_eq!(smallest.cnode_radix(), None);
    }
}
