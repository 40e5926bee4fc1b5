//! The root task's first address space, built at boot before the object layer runs.
//!
//! A new address space shares the kernel half (PML4 entries 256-511: the direct map and
//! the kernel image) with the boot tables and has an empty user half. Tables are reached
//! through the direct map; entries are written in the object layer's IA-32e format
//! (`cleave_kernel_core::object::paging`), the one definition of what their bits mean.

use super::cpu;
use super::physmem::{self, OwnedFrame};
use cleave_abi::layout::{PAGE_SIZE, USER_TOP};
use cleave_kernel_core::object::paging::{ADDRESS, ATTR_EXECUTE_NEVER, Format, LEVELS, index};
use cleave_kernel_core::{PhysAddr, VirtAddr};
use x86_64::registers::control::Cr3;

/// The format of the tables built here.
const FORMAT: Format = Format::Ia32e;

/// Access rights of a user mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Writes allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub execute: bool,
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The virtual address is not a page-aligned user address.
    BadAddress(VirtAddr),
    /// Something is mapped there already.
    AlreadyMapped(VirtAddr),
    /// No frame left for an intermediate table.
    OutOfMemory,
}

/// A user address space: the physical address of its PML4.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: PhysAddr,
}

impl AddressSpace {
    /// A new address space whose kernel half is the current one's. `frame` becomes its PML4.
    pub fn new(mut frame: OwnedFrame) -> Self {
        frame.bytes().fill(0);
        let current = Cr3::read().0.start_address().as_u64();
        for i in 256..512 {
            physmem::write_entry(frame.addr(), i, physmem::read_entry(PhysAddr(current), i));
        }
        Self { pml4: frame.addr() }
    }

    /// Maps the 4 KiB `frame` at `page` with `rights`, taking frames for missing
    /// intermediate tables from `allocate`.
    pub fn map(
        &mut self,
        page: VirtAddr,
        frame: PhysAddr,
        rights: Rights,
        mut allocate: impl FnMut() -> Option<OwnedFrame>,
    ) -> Result<(), MapError> {
        if !page.is_aligned(PAGE_SIZE) || page.0 >= USER_TOP {
            return Err(MapError::BadAddress(page));
        }
        let mut table = self.pml4;
        for level in (2..=LEVELS).rev() {
            let i = index(page.0, level) as usize;
            let entry = physmem::read_entry(table, i);
            if entry & FORMAT.present() == 0 {
                let mut next = allocate().ok_or(MapError::OutOfMemory)?;
                next.bytes().fill(0);
                physmem::write_entry(table, i, FORMAT.table_entry(next.addr()));
                table = next.addr();
            } else if !FORMAT.links_table(entry, level) {
                return Err(MapError::AlreadyMapped(page));
            } else {
                table = PhysAddr(entry & ADDRESS);
            }
        }
        let i = index(page.0, 1) as usize;
        if physmem::read_entry(table, i) & FORMAT.present() != 0 {
            return Err(MapError::AlreadyMapped(page));
        }
        let access = if rights.write { cleave_abi::Rights::ALL } else { cleave_abi::Rights::READ };
        // Bit 63 is reserved (a fault on every access) unless EFER.NXE is on.
        let attributes = if !rights.execute && cpu::no_execute_enabled() { ATTR_EXECUTE_NEVER } else { 0 };
        let entry = FORMAT.leaf_entry(PhysAddr(frame.0 & ADDRESS), false, false, access, attributes);
        physmem::write_entry(table, i, entry);
        Ok(())
    }

    /// The physical address of its top-level table.
    pub fn root(&self) -> PhysAddr {
        self.pml4
    }

    /// Makes this the current address space.
    pub fn activate(&self) {
        activate_root(self.pml4);
    }
}

/// Flushes every non-global TLB entry (after page-table entries were cleared or weakened).
pub fn flush_tlb() {
    let (frame, flags) = Cr3::read();
    // SAFETY: reloading CR3 with its current value changes no mapping; it only drops
    // cached translations.
    unsafe { Cr3::write(frame, flags) }
}

/// Switches to the address space whose PML4 is at `pml4` (a VSpace object, whose kernel
/// half was copied from the kernel's at retype), unless it is already current.
/// (On the IPC fast path: a plain compare and move, no frame checks; `pml4` comes from a
/// VSpace capability, always a page-aligned object below 4 GiB.)
#[inline]
pub fn activate_root(pml4: PhysAddr) {
    let current: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) current, options(nomem, nostack, preserves_flags)) }
    if current & !0xfff == pml4.0 {
        return;
    }
    debug_assert!(pml4.0 & 0xfff == 0, "PML4 frames are page aligned");
    // SAFETY: every VSpace root maps the kernel half exactly as the current one does (boot
    // tables copied into it), so the kernel's code, stack and data stay mapped; the value
    // is a page-aligned physical address with no flag bits.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4.0, options(nostack, preserves_flags)) }
}
