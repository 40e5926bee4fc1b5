//! Programs the `syscall` instruction: its entry point, the selectors it loads, and the
//! RFLAGS bits it clears (interrupts stay off in the kernel).

use super::gdt;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

unsafe extern "C" {
    /// The entry stub in entry.s.
    fn syscall_entry();
    /// The stub for `syscall` from compatibility mode, which turns it into a fault.
    fn syscall_compat_entry();
}

/// The compatibility-mode `syscall` target (the x86_64 crate has no type for it).
const IA32_CSTAR: u32 = 0xc000_0083;

/// Enables `syscall` and points it at the entry stub. Called once at boot after the GDT.
pub fn init() {
    let s = gdt::selectors();
    Star::write(s.user_code, s.user_data, s.kernel_code, s.kernel_data)
        .expect("GDT selectors are laid out for syscall/sysret");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    // Never 0: a `syscall` from a compatibility-mode segment would jump there in ring 0.
    super::cpu::write_msr(IA32_CSTAR, syscall_compat_entry as *const () as u64);
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK,
    );
    // SAFETY: LSTAR, STAR and FMASK were programmed above, so enabling `syscall` makes it
    // enter the kernel's stub on the kernel's selectors with interrupts masked.
    unsafe { Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) }
}
