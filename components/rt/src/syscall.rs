//! System call stubs. Register convention: `cleave_abi::syscall`.

use cleave_abi::Syscall;

/// Writes one byte to the kernel's debug console.
pub fn debug_put_char(byte: u8) {
    // SAFETY: `syscall` with the documented convention: rax = number, rdi = argument; the
    // kernel returns a status in rax and destroys rcx and r11; nothing else changes and no
    // memory is touched.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::DebugPutChar as u64 => _,
            in("rdi") u64::from(byte),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
}

/// Ends the run with `status` (0 = success). Does not return.
pub fn debug_exit(status: i32) -> ! {
    // SAFETY: as in `debug_put_char`; the kernel never returns from this call.
    unsafe {
        core::arch::asm!(
            "syscall",
            "ud2",
            in("rax") Syscall::DebugExit as u64,
            in("rdi") status as i64 as u64,
            options(noreturn, nostack)
        );
    }
}

/// Executes `syscall` with an arbitrary number and returns rax: for tests of the kernel's
/// handling of numbers it does not implement.
pub fn raw_syscall(number: u64) -> u64 {
    let result: u64;
    // SAFETY: as in `debug_put_char`; an unknown number faults the thread instead of
    // returning, which is what the caller is testing.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => result,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
    result
}

/// The current privilege level (0-3) from CS.
pub fn privilege_level() -> u16 {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) }
    cs & 3
}
