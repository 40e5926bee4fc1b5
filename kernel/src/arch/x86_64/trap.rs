//! The saved register set of a kernel entry, and the Rust side of the entry stubs.

/// Vector number the `syscall` entry stub records (above every hardware vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The registers of the interrupted context, as the entry stubs in `entry.s` lay them
/// out on the kernel stack: the same layout as a TCB's saved registers.
pub type TrapFrame = cleave_kernel_core::object::tcb::Registers;

// entry.s reads rip and the vector at these offsets (FRAME_RIP, FRAME_VECTOR).
const _: () = assert!(core::mem::offset_of!(TrapFrame, rip) == 17 * 8);
const _: () = assert!(core::mem::offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

pub use cleave_abi::syscall::fault::exception_name;

/// The faulting linear address of the last page fault.
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Called by every exception stub with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn exception_entry(frame: &mut TrapFrame) {
    crate::fault::exception(frame);
}

/// Called by every interrupt stub with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn interrupt_entry(frame: &mut TrapFrame) {
    crate::interrupt::interrupt(frame);
}

/// Called by the `syscall` stub once it has saved the caller's registers in its TCB;
/// returns the saved registers the stub resumes (those of the thread that runs next).
#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch() -> *const TrapFrame {
    crate::syscall::dispatch()
}

/// Vector number the compatibility-mode `syscall` stub records.
pub const COMPAT_SYSCALL_VECTOR: u64 = 0x101;

/// Called by the compatibility-mode `syscall` stub (IA32_CSTAR) once it has saved the
/// caller's registers in its TCB: the thread faults (general protection), as if the
/// instruction were not there. Returns the saved registers of the thread that runs next.
#[unsafe(no_mangle)]
extern "C" fn syscall_compat_dispatch() -> *const TrapFrame {
    crate::syscall::compat_dispatch()
}

/// Where the `syscall` stub saves the registers of the thread in user mode: the end of
/// that thread's saved-register block in its TCB (a direct-map address). Kept by
/// [`resume_frame`] on every way back to user mode.
#[unsafe(no_mangle)]
static SYSCALL_FRAME_TOP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// `t` is about to run in user mode: its next `syscall` saves into its TCB. Returns the
/// address of its saved registers, for the exit stub.
#[inline]
pub fn resume_frame(t: cleave_kernel_core::object::tcb::TcbRef) -> *const TrapFrame {
    let regs = crate::arch::x86_64::physmem::virt(t.regs_addr());
    SYSCALL_FRAME_TOP
        .store(regs + core::mem::size_of::<TrapFrame>() as u64, core::sync::atomic::Ordering::Relaxed);
    regs as *const TrapFrame
}

/// The number (`rax`) of the system call being handled, from the registers the `syscall`
/// stub has just saved below [`SYSCALL_FRAME_TOP`] (without a look at the object space).
#[inline]
pub fn syscall_number() -> u64 {
    let top = SYSCALL_FRAME_TOP.load(core::sync::atomic::Ordering::Relaxed);
    let frame = (top - core::mem::size_of::<TrapFrame>() as u64) as *const TrapFrame;
    // SAFETY: on a `syscall` entry, `top` is the end of the calling thread's saved
    // registers in its TCB (direct map, kept by `resume_frame`), which the stub has just
    // filled; the frame is plain data, read once.
    unsafe { (*frame).rax }
}

unsafe extern "C" {
    /// Loads every register from `frame` and returns to the context it describes.
    fn enter_user(frame: *const TrapFrame) -> !;
}

/// Leaves the kernel for the ring-3 context in `frame`.
pub fn return_to_user(frame: &TrapFrame) -> ! {
    assert!(frame.from_user(), "return_to_user with a ring-0 frame");
    // SAFETY: the frame describes ring 3 (checked above) with the kernel's own user
    // selectors and an RFLAGS the kernel built, so iretq can only land in user mode; the
    // current page tables are the address space the frame belongs to.
    unsafe { enter_user(frame) }
}
