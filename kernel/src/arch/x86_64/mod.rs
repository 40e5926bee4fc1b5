//! Everything that depends on x86-64 and every `unsafe` of the kernel but the user-memory
//! accessors: boot assembly, entry stubs, descriptor tables, port I/O, MSRs, paging and the
//! direct map of physical memory.
//!
//! What the rest of the kernel sees is safe functions and types: [`serial`] writes bytes,
//! [`trap::TrapFrame`] is a saved register set, [`paging::AddressSpace`] maps frames,
//! [`physmem`] copies to and from physical memory, [`exit`] ends the run.

pub mod cpu;
pub mod exit;
pub mod gdt;
pub mod global;
pub mod idt;
pub mod interrupt;
pub mod paging;
pub mod physmem;
pub mod serial;
pub mod svm;
pub mod syscall;
pub mod trap;
pub mod vmx;

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));
core::arch::global_asm!(include_str!("entry.s"), options(att_syntax));

/// First virtual address of the kernel image (the top 2 GiB).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// Brings the processor to the state the kernel runs in: descriptor tables, exception and
/// interrupt handlers, the `syscall` instruction, legacy interrupt lines masked, the local
/// APIC timer ticking (interrupts stay off in the kernel; user threads take them), and the
/// paging protections the processor offers. Called once, first thing, on the boot processor.
pub fn init() {
    serial::init();
    gdt::init();
    idt::init();
    interrupt::init_pic();
    cpu::enable_protections();
    syscall::init();
    interrupt::init_timer();
}
