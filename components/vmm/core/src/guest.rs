//! The guest as every part of the VMM sees it: its processor state and its physical
//! memory. Exit handling (`vm`), the instruction decoding for MMIO (`mmio`), the page-table
//! walker (`paging`) and the ELF loader (`elf`) all use these, so they live apart from each.

/// The guest processor state exit handling reads and changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15 (`cleave_abi::vcpu::REGISTERS` order).
    pub regs: [u64; 15],
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// 1 while interrupts are blocked for one instruction (after STI or MOV SS).
    pub shadow: u64,
    /// The event the next entry delivers (`cleave_abi::vcpu::state::event`), if valid.
    pub event: u64,
}

/// Index of each register in [`Cpu::regs`]: the kernel's order (`cleave_abi::vcpu::reg`).
pub use cleave_abi::vcpu::reg as gpr;

/// Guest-physical memory as the VMM reaches it (its mapping of the guest's RAM).
pub trait GuestMemory {
    /// Copies guest-physical `gpa..gpa + out.len()` into `out`; false if not RAM.
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool;
    /// Copies `data` to guest-physical `gpa`; false if not RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool;
    /// Whether all of `gpa..gpa + len` is RAM (false if the range wraps). Guest RAM is
    /// mapped in 4 KiB pages at least, so this default reads one byte of each page the
    /// range touches; a memory that knows its layout may answer directly.
    fn contains(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else { return false };
        let mut byte = [0u8; 1];
        let mut at = gpa;
        while at < end {
            if !self.read(at, &mut byte) {
                return false;
            }
            // The next page's first byte.
            at = (at | 0xfff).saturating_add(1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::GuestMemory;

    /// Pages 0-1 and 3 of RAM: page 2 is a hole.
    struct Holed;

    impl GuestMemory for Holed {
        fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
            let end = gpa.saturating_add(out.len() as u64);
            end <= 0x4000 && (end <= 0x2000 || gpa >= 0x3000)
        }
        fn write(&mut self, _: u64, _: &[u8]) -> bool {
            false
        }
    }

    #[test]
    fn contains_probes_every_page_of_the_range() {
        let mem = Holed;
        assert!(mem.contains(0x0, 0x2000) && mem.contains(0x1800, 0x800) && mem.contains(0x3000, 0x1000));
        assert!(!mem.contains(0x1800, 0x2000), "across the hole");
        assert!(!mem.contains(0x1fff, 0x1002), "its first and last bytes are RAM, its middle page is not");
        assert!(!mem.contains(0x3f00, 0x101), "past the end");
        assert!(!mem.contains(u64::MAX, 2), "wraps");
        assert!(mem.contains(0x9999_9999, 0), "nothing is always there");
    }
}
