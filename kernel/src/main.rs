//! The Cleave microkernel: the only code that runs in ring 0.
//!
//! Boot path: `arch/x86_64/boot.s` enters long mode and calls [`kernel_entry`], which sets
//! up the processor, reads what the boot loader passed ([`boot`]), describes physical
//! memory, reports VT-x capabilities, then loads the first boot module as the root task
//! ([`user`]) and enters it in ring 3. From then on the kernel runs only when a thread
//! makes a system call ([`syscall`]) or faults ([`fault`]).
//!
//! Where `unsafe` lives: `arch/x86_64/` (assembly, descriptor tables, port I/O, MSRs, page
//! tables, the direct map of physical memory, the lock-free kernel global). Nothing else.
#![no_std]
#![no_main]

mod arch;
mod boot;
mod console;
mod fault;
mod interrupt;
mod objects;
mod panic;
mod syscall;
mod thread;
mod user;

pub use arch::x86_64 as platform;

/// The Rust entry point, called by boot.s on the kernel stack with the Multiboot magic,
/// the physical address of the Multiboot information and the TSC read at the first
/// instruction.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(magic: u32, info: u32, boot_tsc: u64) -> ! {
    arch::x86_64::init();
    boot::start(magic, info, boot_tsc)
}
