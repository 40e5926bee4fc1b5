//! The saved register set of a kernel entry, and the Rust side of the entry stubs.

use core::fmt;

/// Vector number the `syscall` entry stub records (above every hardware vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The registers of the interrupted context, as the entry stubs in `entry.s` lay them
/// out on the kernel stack (lowest address first).
#[derive(Clone, Copy, Default)]
#[repr(C)]
#[allow(missing_docs, reason = "register names are their own documentation")]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// The CPU's error code, or 0.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
// entry.s reads rip at this offset (FRAME_RIP).
const _: () = assert!(core::mem::offset_of!(TrapFrame, rip) == 17 * 8);

impl TrapFrame {
    /// A frame that enters ring 3 at `rip` with stack `rsp`, interrupts enabled and every
    /// general-purpose register zero.
    pub fn user(rip: u64, rsp: u64) -> Self {
        let selectors = super::gdt::selectors();
        Self {
            rip,
            rsp,
            cs: u64::from(selectors.user_code.0),
            ss: u64::from(selectors.user_data.0),
            rflags: 0x202,
            ..Self::default()
        }
    }

    /// Whether the frame was saved from ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

impl fmt::Display for TrapFrame {
    /// The register dump of a fault report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [[(&str, u64); 3]; 7] = [
            [("rax", self.rax), ("rbx", self.rbx), ("rcx", self.rcx)],
            [("rdx", self.rdx), ("rsi", self.rsi), ("rdi", self.rdi)],
            [("rbp", self.rbp), ("rsp", self.rsp), ("r8 ", self.r8)],
            [("r9 ", self.r9), ("r10", self.r10), ("r11", self.r11)],
            [("r12", self.r12), ("r13", self.r13), ("r14", self.r14)],
            [("r15", self.r15), ("rip", self.rip), ("rfl", self.rflags)],
            [("cs ", self.cs), ("ss ", self.ss), ("err", self.error)],
        ];
        for row in rows {
            let [(a, x), (b, y), (c, z)] = row;
            writeln!(f, "  {a}={x:#018x} {b}={y:#018x} {c}={z:#018x}")?;
        }
        Ok(())
    }
}

/// Mnemonic and name of an exception vector.
pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        _ => ("#??", "reserved vector"),
    }
}

/// The faulting linear address of the last page fault.
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Called by every exception stub with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn exception_entry(frame: &mut TrapFrame) {
    crate::fault::exception(frame);
}

/// Called by the `syscall` stub with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch(frame: &mut TrapFrame) {
    crate::syscall::dispatch(frame);
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
