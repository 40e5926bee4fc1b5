//! The guest's own paging: translating a guest linear address (to fetch the instruction
//! that touched MMIO), and the identity-mapped long-mode set-up the VMM builds so that a
//! 64-bit guest starts at its ELF entry point.

use crate::guest::{Cpu, GuestMemory};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The guest-physical address behind linear address `linear`: itself without paging, a
/// 4-level walk in long mode; `None` if a table on the way is missing or the paging mode
/// is one this VMM does not walk (32-bit and PAE paging, 5-level).
pub fn translate(cpu: &Cpu, mem: &impl GuestMemory, linear: u64) -> Option<u64> {
    if cpu.cr0 & (1 << 31) == 0 {
        return Some(linear);
    }
    if cpu.efer & (1 << 10) == 0 || cpu.cr4 & (1 << 12) != 0 {
        return None;
    }
    let mut table = cpu.cr3 & ADDRESS;
    for level in (1..=4u32).rev() {
        let index = (linear >> (12 + 9 * (level - 1))) & 0x1ff;
        let mut entry = [0u8; 8];
        if !mem.read(table + index * 8, &mut entry) {
            return None;
        }
        let entry = u64::from_le_bytes(entry);
        if entry & PRESENT == 0 {
            return None;
        }
        let page_bits = 12 + 9 * (level - 1);
        if level == 1 || (level <= 3 && entry & LARGE != 0) {
            let offset = linear & ((1u64 << page_bits) - 1);
            return Some((entry & ADDRESS & !((1u64 << page_bits) - 1)) + offset);
        }
        table = entry & ADDRESS;
    }
    None
}

/// Where the long-mode structures go in guest RAM (below 1 MiB, where the guest image is
/// not).
pub mod layout {
    /// The GDT: null, 64-bit code (0x08, and again at 0x10), data (0x18): Linux's 64-bit
    /// boot protocol wants its code at 0x10 and data at 0x18 (`__BOOT_CS`, `__BOOT_DS`).
    pub const GDT: u64 = 0x1000;
    /// The PML4.
    pub const PML4: u64 = 0x2000;
    /// The PDPT.
    pub const PDPT: u64 = 0x3000;
    /// Four page directories: the first 4 GiB in 2 MiB pages.
    pub const PD: u64 = 0x4000;
    /// Bytes of GDT.
    pub const GDT_SIZE: u64 = 32;
    /// The code selector a guest starts with.
    pub const CODE_SELECTOR: u64 = 0x10;
    /// The data selector a guest starts with.
    pub const DATA_SELECTOR: u64 = 0x18;
}

/// The long-mode values the VMM writes into the guest-state area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongMode {
    /// CR0: protection, paging, NE, ET, WP.
    pub cr0: u64,
    /// CR3: the PML4.
    pub cr3: u64,
    /// CR4: PAE, OSFXSR, OSXMMEXCPT (as the guest sees it; what the processor needs
    /// underneath, such as VT-x's VMXE, is the kernel's).
    pub cr4: u64,
    /// EFER: LME, LMA, NXE.
    pub efer: u64,
    /// GDTR base and limit.
    pub gdt: (u64, u64),
    /// Access rights of the 64-bit code segment and of the data segments.
    pub code_rights: u64,
    /// See `code_rights`.
    pub data_rights: u64,
}

/// Writes a GDT and identity page tables for the first 4 GiB (2 MiB pages) into guest
/// RAM; returns the state a 64-bit guest starts with. `false`-returning writes (the RAM is
/// too small) give `None`.
pub fn long_mode(mem: &mut impl GuestMemory) -> Option<LongMode> {
    let gdt: [u64; 4] = [0, 0x00af_9b00_0000_ffff, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        if !mem.write(layout::GDT + 8 * i as u64, &d.to_le_bytes()) {
            return None;
        }
    }
    let entry = |at: u64, value: u64, mem: &mut dyn FnMut(u64, &[u8]) -> bool| mem(at, &value.to_le_bytes());
    let mut write = |at: u64, bytes: &[u8]| mem.write(at, bytes);
    let mut ok = entry(layout::PML4, layout::PDPT | PRESENT | WRITABLE, &mut write);
    for pd in 0..4u64 {
        let table = layout::PD + pd * cleave_abi::layout::PAGE_SIZE;
        ok &= entry(layout::PDPT + pd * 8, table | PRESENT | WRITABLE, &mut write);
        for i in 0..512u64 {
            let address = (pd * 512 + i) << cleave_abi::layout::LARGE_PAGE_SHIFT;
            ok &= entry(table + i * 8, address | PRESENT | WRITABLE | LARGE, &mut write);
        }
    }
    ok.then_some(LongMode {
        cr0: (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31),
        cr3: layout::PML4,
        cr4: (1 << 5) | (1 << 9) | (1 << 10),
        efer: (1 << 8) | (1 << 10) | (1 << 11),
        gdt: (layout::GDT, layout::GDT_SIZE - 1),
        code_rights: 0xa09b,
        data_rights: 0xc093,
    })
}
