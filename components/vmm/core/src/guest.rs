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
}
