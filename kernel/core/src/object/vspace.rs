//! Address spaces: ASIDs, and mapping page tables and frames into a VSpace (a PML4).
//!
//! A VSpace capability carries the address space's ASID (an index into the kernel's table
//! plus a generation, so a stale ASID never finds a newer address space). A mapped frame
//! or page-table capability records the ASID and virtual address of its mapping; each
//! capability maps at most one place (copy it to map the same frame twice), and deleting
//! a mapped capability unmaps it. Entries the kernel clears set a flag that tells the
//! kernel to flush the TLB before returning to user mode.

use super::cap::{Cap, Mapping};
use super::kmem::KernelMemory;
use super::paging::{ADDRESS, Flush, LEVELS, index, level_shift};
pub use super::paging::{ATTR_EXECUTE_NEVER, At, Format, GUEST_PHYSICAL_TOP, Space};
use super::slot::{Slot, SlotOps};
use super::space::ObjectSpace;
use crate::addr::PhysAddr;
use cleave_abi::{Error, Rights};

/// ASID pools that can exist at once; each holds [`ASIDS_PER_POOL`] ASIDs.
pub const MAX_ASID_POOLS: usize = 64;
/// ASIDs in one pool (index 0 is never given out, so that no ASID is 0).
pub const ASIDS_PER_POOL: u64 = 512;

/// An ASID: which pool (`high`, with that pool slot's generation) and which entry in it
/// (`low`, with the entry's generation), so that an ASID whose root or pool is gone never
/// names a newer one. (Bit 62 stays free: a stored mapping marks guest-physical spaces with it.)
pub(crate) mod asid {
    /// An ASID from its parts.
    pub fn encode(pool_generation: u64, entry_generation: u64, high: u64, low: u64) -> u64 {
        ((pool_generation & POOL_GENERATION) << 32)
            | ((entry_generation & ENTRY_GENERATION) << 16)
            | (high << 9)
            | low
    }
    /// Its pool's slot.
    pub fn high(asid: u64) -> usize {
        ((asid >> 9) & 0x3f) as usize
    }
    /// Its entry in the pool.
    pub fn low(asid: u64) -> u64 {
        asid & 0x1ff
    }
    /// The pool slot's generation it was given under.
    pub fn pool_generation(asid: u64) -> u64 {
        (asid >> 32) & POOL_GENERATION
    }
    /// The pool-slot generation bits an ASID keeps (bits 32-61: bit 62 marks EPT frame
    /// mappings).
    pub const POOL_GENERATION: u64 = (1 << 30) - 1;
    /// The entry's generation it was given under.
    pub fn entry_generation(asid: u64) -> u64 {
        (asid >> 16) & ENTRY_GENERATION
    }
    /// A pool entry: the root's address, [`GUEST_ROOT`], and the entry's generation.
    pub const ENTRY_GENERATION: u64 = 0x7ff;
    /// A pool entry's root is a guest-physical root.
    pub const GUEST_ROOT: u64 = 1 << 11;
}

/// One slot of the kernel's table of ASID pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsidPoolSlot {
    /// The pool object (a page of [`ASIDS_PER_POOL`] entries), or 0.
    pub base: u64,
    /// Bumped each time the slot's pool is destroyed.
    pub generation: u64,
}

impl<M: KernelMemory> ObjectSpace<M> {
    fn entry_at(&self, table: PhysAddr, i: u64) -> u64 {
        self.mem.read(PhysAddr(table.0 + 8 * i))
    }
    fn set_entry(&mut self, table: PhysAddr, i: u64, value: u64) {
        self.mem.write(PhysAddr(table.0 + 8 * i), &value)
    }

    /// Makes the zeroed page at `base` an ASID pool in a free slot of the pool table;
    /// returns the slot (`high`), or `None` when all [`MAX_ASID_POOLS`] are taken.
    pub fn make_asid_pool(&mut self, base: PhysAddr) -> Option<u64> {
        let high = self.asid_pools.iter().position(|p| p.base == 0)?;
        self.asid_pools[high].base = base.0;
        Some(high as u64)
    }

    /// The pool object of a live pool slot.
    fn pool_base(&self, high: usize) -> Option<PhysAddr> {
        let slot = self.asid_pools.get(high)?;
        (slot.base != 0).then_some(PhysAddr(slot.base))
    }

    /// The format of the tables of a space of kind `space` on this machine.
    pub fn format(&self, space: Space) -> Format {
        match space {
            Space::Virtual => Format::Ia32e,
            Space::GuestPhysical => self.guest_format,
        }
    }

    /// Chooses guests' nested paging format (EPT or NPT): the kernel does, at boot, before
    /// any guest-physical space exists. Anything else is refused.
    pub fn set_guest_format(&mut self, format: Format) -> Result<(), Error> {
        if format.space() != Space::GuestPhysical {
            return Err(Error::InvalidArgument);
        }
        self.guest_format = format;
        Ok(())
    }

    /// The format guests' physical address spaces are written in.
    pub fn guest_format(&self) -> Format {
        self.guest_format
    }

    /// Gives the root of a space of kind `space` at `root` an ASID from pool `high`; `None`
    /// when the pool is full (or gone).
    pub fn assign_asid(&mut self, high: u64, root: PhysAddr, space: Space) -> Option<u64> {
        let pool = self.pool_base(high as usize)?;
        // Index 0 is never used, so that an ASID is never 0.
        let low = (1..ASIDS_PER_POOL).find(|&i| self.entry_at(pool, i) & ADDRESS == 0)?;
        let generation = self.entry_at(pool, low) & asid::ENTRY_GENERATION;
        let flags = if space == Space::GuestPhysical { asid::GUEST_ROOT } else { 0 };
        self.set_entry(pool, low, root.0 | flags | generation);
        Some(asid::encode(self.asid_pools[high as usize].generation, generation, high, low))
    }

    /// The root of a live ASID, if it is a root of a space of kind `space` (an ASID given
    /// to a VSpace never walks as a guest's space, nor the reverse, whatever a stale record
    /// says).
    pub fn root_of(&self, id: u64, space: Space) -> Option<PhysAddr> {
        let root = self.vspace_of(id)?;
        let pool = PhysAddr(self.asid_pools[asid::high(id)].base);
        let guest = self.entry_at(pool, asid::low(id)) & asid::GUEST_ROOT != 0;
        (guest == (space == Space::GuestPhysical)).then_some(root)
    }

    /// The root of a live ASID.
    pub fn vspace_of(&self, id: u64) -> Option<PhysAddr> {
        let high = asid::high(id);
        let pool = self.pool_base(high)?;
        if self.asid_pools[high].generation & asid::POOL_GENERATION != asid::pool_generation(id) {
            return None;
        }
        let e = self.entry_at(pool, asid::low(id));
        (e & ADDRESS != 0 && e & asid::ENTRY_GENERATION == asid::entry_generation(id))
            .then_some(PhysAddr(e & ADDRESS))
    }

    /// The root at `id` is destroyed: its entry is free again, with the next generation.
    pub(crate) fn release_asid(&mut self, id: u64) {
        if self.vspace_of(id).is_some() {
            let pool = PhysAddr(self.asid_pools[asid::high(id)].base);
            let next = (asid::entry_generation(id) + 1) & asid::ENTRY_GENERATION;
            self.set_entry(pool, asid::low(id), next);
            self.tlb_flush = true;
        }
    }

    /// The pool at slot `high` is destroyed: every root it gave an ASID loses it and is
    /// emptied (with every table below it), as a root that no ASID names can no longer be
    /// unmapped from, and the slot is free for a new pool.
    pub(crate) fn destroy_asid_pool(&mut self, high: usize) {
        let Some(pool) = self.pool_base(high) else { return };
        for low in 1..ASIDS_PER_POOL {
            let e = self.entry_at(pool, low);
            if e & ADDRESS != 0 {
                let space = if e & asid::GUEST_ROOT != 0 { Space::GuestPhysical } else { Space::Virtual };
                self.clear_tables(PhysAddr(e & ADDRESS), LEVELS, self.format(space));
            }
        }
        let slot = &mut self.asid_pools[high];
        *slot = AsidPoolSlot { base: 0, generation: slot.generation + 1 };
        self.tlb_flush = true;
        self.ept_flush = true;
    }

    /// Gives the root whose (unassigned) capability is at `slot` an ASID from the pool
    /// `pool` (an `AsidPool` capability): `ASID_POOL_ASSIGN`.
    pub fn assign_from_pool(&mut self, pool: Cap, slot: Slot) -> Result<(), Error> {
        let Cap::AsidPool { high, .. } = pool else { return Err(Error::InvalidCapability) };
        let (base, space) = match self.mem.cap_at(slot) {
            Cap::VSpace { base, asid: 0 } => (base, Space::Virtual),
            Cap::EptRoot { base, asid: 0 } => (base, Space::GuestPhysical),
            Cap::VSpace { .. } | Cap::EptRoot { .. } => return Err(Error::IllegalOperation),
            _ => return Err(Error::InvalidCapability),
        };
        let id = self.assign_asid(u64::from(high), base, space).ok_or(Error::NotEnoughMemory)?;
        let cap = match space {
            Space::Virtual => Cap::VSpace { base, asid: id },
            Space::GuestPhysical => Cap::EptRoot { base, asid: id },
        };
        self.mem.set_cap(slot, cap);
        Ok(())
    }

    /// Whether the kernel must invalidate EPT translations before the next VM entry (and
    /// resets it).
    pub fn take_ept_flush(&mut self) -> bool {
        core::mem::take(&mut self.ept_flush)
    }

    /// Whether the kernel must flush the TLB before returning to user mode (and resets it).
    pub fn take_tlb_flush(&mut self) -> bool {
        core::mem::take(&mut self.tlb_flush)
    }

    /// Walks a space of `format` from `root` down to the table at `level` (3 = PDPT, 2 =
    /// PD, 1 = PT) that covers `addr`; `FailedLookup` if a table on the way is missing.
    fn table_for(&self, format: Format, root: PhysAddr, addr: u64, level: u32) -> Result<PhysAddr, Error> {
        let mut table = root;
        for l in ((level + 1)..=LEVELS).rev() {
            let e = self.entry_at(table, index(addr, l));
            if !format.links_table(e, l) {
                return Err(Error::FailedLookup);
            }
            table = PhysAddr(e & ADDRESS);
        }
        Ok(table)
    }

    /// Looks up the root and ASID of a capability to a space of kind `space` (a VSpace, or
    /// an EPT root for a guest's): the ASID must still name this very root (an ASID whose
    /// pool is gone names nothing; the check on the base keeps it so whatever the
    /// generations do).
    fn space_cap(&self, cap: Cap, space: Space) -> Result<(PhysAddr, u64), Error> {
        match (cap, space) {
            (Cap::VSpace { base, asid }, Space::Virtual)
            | (Cap::EptRoot { base, asid }, Space::GuestPhysical)
                if self.root_of(asid, space) == Some(base) =>
            {
                Ok((base, asid))
            }
            _ => Err(Error::InvalidCapability),
        }
    }

    /// Maps the table (level 1-3) whose capability is at `slot` into the space of `root`
    /// (a VSpace for a page table, an EPT root for an EPT table) at `at`, which must be of
    /// that kind of space.
    pub fn map_table(&mut self, slot: Slot, root: Cap, at: At) -> Result<(), Error> {
        let space = at.space();
        let format = self.format(space);
        let (base, level, mapping) = match (self.mem.cap_at(slot), space) {
            (Cap::PageTable { base, level, mapping }, Space::Virtual)
            | (Cap::EptTable { base, level, mapping }, Space::GuestPhysical) => {
                (base, u32::from(level), mapping)
            }
            _ => return Err(Error::InvalidCapability),
        };
        if mapping.is_some() {
            return Err(Error::IllegalOperation);
        }
        let (root, asid) = self.space_cap(root, space)?;
        if at.raw() >= format.top() {
            return Err(Error::InvalidArgument);
        }
        let addr = at.raw() & !((1u64 << level_shift(level + 1)) - 1);
        let parent = self.table_for(format, root, addr, level + 1)?;
        let i = index(addr, level + 1);
        if self.entry_at(parent, i) & format.present() != 0 {
            return Err(Error::DeleteFirst);
        }
        self.set_entry(parent, i, format.table_entry(base));
        let mapping = Some(Mapping { asid, at: at.with(addr) });
        let level = level as u8;
        let cap = match space {
            Space::Virtual => Cap::PageTable { base, level, mapping },
            Space::GuestPhysical => Cap::EptTable { base, level, mapping },
        };
        self.mem.set_cap(slot, cap);
        Ok(())
    }

    /// Maps the frame whose capability is at `slot` into the space of `root` (a VSpace, or
    /// an EPT root for a guest-physical `at`) at `at`, with the capability's rights limited
    /// to `rights` (which must keep read) and `attributes` ([`ATTR_EXECUTE_NEVER`]).
    pub fn map_frame(
        &mut self,
        slot: Slot,
        root: Cap,
        at: At,
        rights: Rights,
        attributes: u64,
    ) -> Result<(), Error> {
        let Cap::Frame { base, large, device, rights: cap_rights, mapping } = self.mem.cap_at(slot) else {
            return Err(Error::InvalidCapability);
        };
        if mapping.is_some() {
            return Err(Error::IllegalOperation);
        }
        let space = at.space();
        let format = self.format(space);
        let (root, asid) = self.space_cap(root, space)?;
        let level = if large { 2 } else { 1 };
        let size = 1u64 << level_shift(level);
        let addr = at.raw();
        if !addr.is_multiple_of(size) {
            return Err(Error::AlignmentError);
        }
        // The whole frame lies below the top (a 2 MiB frame below it can reach past it).
        if addr.checked_add(size).is_none_or(|end| end > format.top()) {
            return Err(Error::InvalidArgument);
        }
        let rights = cap_rights.intersect(rights);
        if !rights.contains(Rights::READ) {
            return Err(Error::InsufficientRights);
        }
        let table = self.table_for(format, root, addr, level)?;
        let i = index(addr, level);
        if self.entry_at(table, i) & format.present() != 0 {
            return Err(Error::DeleteFirst);
        }
        self.set_entry(table, i, format.leaf_entry(base, large, device, rights, attributes));
        let mapping = Some(Mapping { asid, at });
        self.mem.set_cap(slot, Cap::Frame { base, large, device, rights: cap_rights, mapping });
        Ok(())
    }

    /// Changes the rights and attributes of the frame mapping made through `slot`.
    pub fn remap_frame(&mut self, slot: Slot, rights: Rights, attributes: u64) -> Result<(), Error> {
        let Cap::Frame { base, large, device, rights: cap_rights, mapping } = self.mem.cap_at(slot) else {
            return Err(Error::InvalidCapability);
        };
        if mapping.is_some_and(|m| m.at.space() != Space::Virtual) {
            // Guest-physical mappings are changed by unmapping and mapping again.
            return Err(Error::IllegalOperation);
        }
        let (table, i) = self.leaf_of(base, large, mapping).ok_or(Error::IllegalOperation)?;
        let rights = cap_rights.intersect(rights);
        if !rights.contains(Rights::READ) {
            return Err(Error::InsufficientRights);
        }
        self.set_entry(table, i, Format::Ia32e.leaf_entry(base, large, device, rights, attributes));
        self.flush(Format::Ia32e);
        Ok(())
    }

    /// Where the leaf entry of a frame mapping is, if the mapping is still in place.
    fn leaf_of(&self, base: PhysAddr, large: bool, mapping: Option<Mapping>) -> Option<(PhysAddr, u64)> {
        let m = mapping?;
        let format = self.format(m.at.space());
        let level = if large { 2 } else { 1 };
        let root = self.root_of(m.asid, m.at.space())?;
        let table = self.table_for(format, root, m.at.raw(), level).ok()?;
        let i = index(m.at.raw(), level);
        let e = self.entry_at(table, i);
        (e & format.present() != 0 && e & ADDRESS == base.0).then_some((table, i))
    }

    /// Notes that translations of `format` may be cached stale.
    fn flush(&mut self, format: Format) {
        match format.flush() {
            Flush::Tlb => self.tlb_flush = true,
            Flush::GuestPhysical => self.ept_flush = true,
        }
    }

    /// Removes the mapping a frame or table capability made (if it still stands) and
    /// returns the capability without it. Other capabilities are returned unchanged.
    pub fn unmapped(&mut self, cap: Cap) -> Cap {
        match cap {
            Cap::Frame { base, large, device, rights, mapping } => {
                if let Some((table, i)) = self.leaf_of(base, large, mapping) {
                    self.set_entry(table, i, 0);
                    if let Some(m) = mapping {
                        self.flush(self.format(m.at.space()));
                    }
                }
                Cap::Frame { base, large, device, rights, mapping: None }
            }
            Cap::EptTable { base, level, mapping: Some(m) } => {
                self.unlink_table(base, level, m, Space::GuestPhysical);
                Cap::EptTable { base, level, mapping: None }
            }
            Cap::PageTable { base, level, mapping: Some(m) } => {
                self.unlink_table(base, level, m, Space::Virtual);
                Cap::PageTable { base, level, mapping: None }
            }
            other => other,
        }
    }

    /// Takes the table at `base` (of `level`, mapped by `m`) out of its space of kind
    /// `space` and empties it: detached, it holds nothing, so no mapping is ever left in a
    /// table that is not reachable from its root.
    fn unlink_table(&mut self, base: PhysAddr, level: u8, m: Mapping, space: Space) {
        let level = u32::from(level);
        let format = self.format(space);
        if m.at.space() == space
            && let Some(root) = self.root_of(m.asid, space)
            && let Ok(parent) = self.table_for(format, root, m.at.raw(), level + 1)
        {
            let i = index(m.at.raw(), level + 1);
            if self.entry_at(parent, i) & ADDRESS == base.0 {
                self.set_entry(parent, i, 0);
            }
        }
        self.clear_tables(base, level, format);
    }

    /// Empties the table at `table` (of `level`: 4 = root … 1 = page table) and every
    /// table below it, as a table detached from its address space or a root being
    /// destroyed must be: the tables below keep their capabilities (still marked mapped,
    /// at a place no walk from a root reaches), but no entry anywhere can lead to memory
    /// that may be freed and reused. A root keeps its kernel half. Iterative (a stack of
    /// at most four levels); the work is bounded by the tables the caller's memory holds.
    pub(crate) fn clear_tables(&mut self, table: PhysAddr, level: u32, format: Format) {
        let entries = |t: PhysAddr, l: u32| -> u64 {
            if l == LEVELS && t == table { format.root_entries() } else { 512 }
        };
        // (table, its level, the next entry to look at)
        let mut stack = [(PhysAddr(0), 0u32, 0u64); 4];
        let mut depth = 1;
        stack[0] = (table, level, 0);
        while depth > 0 {
            let (t, l, i) = stack[depth - 1];
            if i == entries(t, l) {
                depth -= 1;
                continue;
            }
            stack[depth - 1].2 = i + 1;
            let e = self.entry_at(t, i);
            if e & format.present() == 0 {
                continue;
            }
            self.set_entry(t, i, 0);
            if format.links_table(e, l) && depth < stack.len() {
                stack[depth] = (PhysAddr(e & ADDRESS), l - 1, 0);
                depth += 1;
            }
        }
        self.flush(format);
    }

    /// Unmaps through the capability at `slot`.
    pub fn unmap(&mut self, slot: Slot) -> Result<(), Error> {
        match self.mem.cap_at(slot) {
            cap @ (Cap::Frame { .. } | Cap::PageTable { .. } | Cap::EptTable { .. }) => {
                let cap = self.unmapped(cap);
                self.mem.set_cap(slot, cap);
                Ok(())
            }
            _ => Err(Error::InvalidCapability),
        }
    }
}
