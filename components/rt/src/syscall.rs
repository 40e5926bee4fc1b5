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

/// Records this thread's unfinished console line (what it printed since its last
/// newline) as one event in the kernel's audit log, which stamps it with the time and
/// this thread's name and writes `audit: TIME WRITER EVENT` to the console
/// ([`crate::audit!`] is the way to call it).
pub fn audit_event() -> Result<(), cleave_abi::Error> {
    cleave_abi::Error::check(raw(Syscall::AuditEvent, 0, cleave_abi::MessageInfo::default(), [0; 4]).status)
}

/// A piece of the kernel's audit log, as [`audit_read`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditPiece {
    /// The offset of its first byte (the oldest the kernel keeps if the one asked for is
    /// older).
    pub first: u64,
    /// How many bytes it has.
    pub len: usize,
    /// The offset past the newest byte recorded.
    pub end: u64,
    /// Lines the kernel dropped to make room so far.
    pub dropped: u64,
}

/// Reads the kernel's audit log from byte offset `from` into `out` (at most 928 bytes
/// arrive per call). Only a thread allowed to (`TCB_ALLOW_READ_AUDIT`) may.
pub fn audit_read(from: u64, out: &mut [u8]) -> Result<AuditPiece, cleave_abi::Error> {
    let r = raw(Syscall::AuditRead, from, cleave_abi::MessageInfo::default(), [0; 4]);
    cleave_abi::Error::check(r.status)?;
    let [first, len, end, dropped] = r.words;
    let len = (len as usize).min(out.len());
    for (i, chunk) in out[..len].chunks_mut(8).enumerate() {
        let word = crate::boot::message_word(4 + i).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    Ok(AuditPiece { first, len, end, dropped })
}

/// Ends the run with `status` (0 = success), if this thread may (the root task may, and
/// the threads it allows: `TCB_ALLOW_END_RUN`). Otherwise the kernel ends only this
/// thread: its fault handler, if it has one, hears `fault::EXITED` with the status (a
/// supervisor does not restart a component that ended with 0), else the thread stops; the
/// rest of the system goes on. Should a handler resume the thread, it stops here with an
/// invalid instruction. Does not return.
pub fn debug_exit(status: i32) -> ! {
    let refused: u64;
    // SAFETY: `syscall` with the documented convention (rax = number, rdi = status); the
    // kernel ends the run or the thread, or returns the error in rax, destroying rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::DebugExit as u64 => refused,
            in("rdi") status as i64 as u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    let why = cleave_abi::Error::check(refused).err().unwrap_or(cleave_abi::Error::IllegalOperation);
    crate::println!(
        "main returned {status}, and this thread was resumed after it ended ({why}): it stops here"
    );
    loop {
        // SAFETY: ud2 faults before doing anything; a handler that resumes the thread past
        // it only reaches the next one.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
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

/// What a system call returns: status (0 or an error code), badge, message descriptor and
/// the four register message words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Returned {
    /// 0, or an [`Error`](cleave_abi::Error) code.
    pub status: u64,
    /// Badge of the received message (`rdi`).
    pub badge: u64,
    /// Descriptor of the received message or reply.
    pub info: cleave_abi::MessageInfo,
    /// Message words 0-3.
    pub words: [u64; 4],
}

/// Performs system call `number` with capability address `cptr`, `info` and the first
/// four message words in registers (the rest must already be in the IPC buffer).
#[inline]
pub fn raw(number: Syscall, cptr: u64, info: cleave_abi::MessageInfo, words: [u64; 4]) -> Returned {
    let (status, badge, out_info, w0, w1, w2, w3): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: `syscall` with the documented convention (rax number, rdi capability, rsi
    // info, rdx/r8/r9/r10 message words); the kernel returns status, badge, info and words
    // in the same registers and destroys rcx and r11. It reads the IPC buffer through its
    // own mapping, never through a pointer from these registers.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as u64 => status,
            inlateout("rdi") cptr => badge,
            inlateout("rsi") info.0 => out_info,
            inlateout("rdx") words[0] => w0,
            inlateout("r8") words[1] => w1,
            inlateout("r9") words[2] => w2,
            inlateout("r10") words[3] => w3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    Returned { status, badge, info: cleave_abi::MessageInfo(out_info), words: [w0, w1, w2, w3] }
}

/// `Call` on `cptr`: returns status, the reply's descriptor and its first four words.
pub fn call(
    cptr: u64,
    info: cleave_abi::MessageInfo,
    words: [u64; 4],
) -> (u64, cleave_abi::MessageInfo, [u64; 4]) {
    let r = raw(Syscall::Call, cptr, info, words);
    (r.status, r.info, r.words)
}

/// `Yield`: lets the other runnable threads of the same priority run first.
pub fn yield_now() {
    raw(Syscall::Yield, 0, cleave_abi::MessageInfo::default(), [0; 4]);
}

/// `Reply`: answers the last Call this thread received (once).
pub fn reply(info: cleave_abi::MessageInfo, words: [u64; 4]) -> Result<(), cleave_abi::Error> {
    cleave_abi::Error::check(raw(Syscall::Reply, 0, info, words).status)
}

/// Reads the time-stamp counter (under QEMU `-icount shift=0`: instructions executed).
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC only reads the counter; the kernel leaves CR4.TSD clear so ring 3 may.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// `VmEnter`: runs the guest of the Vcpu bound to this thread until an exit its VMM must
/// handle; returns the exit's reason, qualification, guest-physical address and
/// instruction length (`cleave_abi::vcpu::exit`).
#[inline]
pub fn vm_enter() -> Result<[u64; 4], cleave_abi::Error> {
    let r = raw(Syscall::VmEnter, 0, cleave_abi::MessageInfo::default(), [0; 4]);
    cleave_abi::Error::check(r.status).map(|()| r.words)
}
