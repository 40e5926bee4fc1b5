//! A 64-bit test guest for Cleave's VMM: no firmware, no OS, started in long mode at its
//! ELF entry by the VMM. It greets over the 16550 UART at 0x3f8, prints the command line
//! its VMM left at guest-physical 0x9000, sets up an IDT, the two 8259 PICs and the 8254
//! PIT at 1 kHz, takes 100 timer interrupts (halting between them), writes and reads the
//! VMM's MMIO test device at 0xd000_0000, reports, and powers off through port 0x501 with
//! 0 if everything was as expected. It also checks that its SSE and x87 registers are its
//! own: clear when it starts, and holding the value it put there when it ends.
//!
//! With `misbehave=WHAT` on its command line it is hostile instead, right after the
//! greeting: `unmapped` reads guest-physical 1 GiB (nothing there), `readonly` writes the
//! read-only page its VMM maps at 2 MiB, `msr` reads MSR 0x1b (the APIC base, not
//! offered), `triple` loads an empty IDT and raises an exception (a triple fault), `pke`
//! turns on CR4.PKE (protection keys, not offered), `svme` sets EFER.SVME (nested SVM, not
//! offered), `vmload` runs an SVM instruction (intercepted on SVM).
#![no_std]
#![no_main]

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts taken (the handler in assembly increments it).
#[unsafe(no_mangle)]
static TICKS: AtomicU64 = AtomicU64::new(0);

const STACK_SIZE: usize = 16 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
#[unsafe(no_mangle)]
static mut GUEST_STACK: Stack = Stack([0; STACK_SIZE]);

/// The interrupt descriptor table: 256 gates of 16 bytes.
#[repr(C, align(16))]
struct Idt([u64; 512]);
static mut IDT: Idt = Idt([0; 512]);

core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "    lea rsp, [rip + GUEST_STACK + {stack}]",
    "    call guest_main",
    "2:  hlt",
    "    jmp 2b",
    ".text",
    ".global timer_entry",
    "timer_entry:",
    "    push rax",
    "    lock inc qword ptr [rip + TICKS]",
    "    mov al, 0x20",
    "    out 0x20, al",
    "    pop rax",
    "    iretq",
    ".global unexpected_entry",
    "unexpected_entry:",
    "    mov al, 2",
    "    mov dx, 0x501",
    "    out dx, al",
    "    hlt",
    stack = const STACK_SIZE,
);

unsafe extern "C" {
    fn timer_entry();
    fn unexpected_entry();
}

fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effect in the guest; the VMM emulates every port.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// The UART at 0x3f8.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            while inb(0x3fd) & 0x20 == 0 {}
            outb(0x3f8, b);
        }
        Ok(())
    }
}

/// Interrupt gate `vector` → `handler` (64-bit, present, DPL 0, code selector 0x08).
fn set_gate(vector: usize, handler: unsafe extern "C" fn()) {
    let h = handler as usize as u64;
    let low = (h & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((h >> 16) & 0xffff) << 48;
    let high = h >> 32;
    // SAFETY: the guest is single-threaded and interrupts are off while the IDT is built.
    unsafe {
        let idt = &raw mut IDT;
        (*idt).0[vector * 2] = low;
        (*idt).0[vector * 2 + 1] = high;
    }
}

fn load_idt() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer { limit: (256 * 16 - 1) as u16, base: (&raw const IDT) as u64 };
    // SAFETY: the IDT is a static that lives for the whole run, every gate is filled.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) }
}

const MMIO: u64 = 0xd000_0000;

fn mmio_write(offset: u64, value: u32) {
    // SAFETY: the test device's page (identity-mapped); every access exits to the VMM.
    unsafe { core::ptr::write_volatile((MMIO + offset) as *mut u32, value) }
}

fn mmio_read(offset: u64) -> u32 {
    // SAFETY: as in `mmio_write`.
    unsafe { core::ptr::read_volatile((MMIO + offset) as *const u32) }
}

/// Where the VMM leaves the command line (NUL-terminated, at most 256 bytes).
const CMDLINE: u64 = 0x9000;

fn cmdline() -> &'static str {
    // SAFETY: the VMM wrote the command line into this page of the guest's RAM before the
    // guest started; nothing writes it afterwards.
    let bytes = unsafe { core::slice::from_raw_parts(CMDLINE as *const u8, 256) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("")
}

/// A value only this guest puts in its floating-point registers: a hash of its command
/// line (which names it), never 0.
fn own_value(line: &str) -> u64 {
    let hash =
        line.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash | 1
}

/// Scratch for the x87 stores and loads (the x87 unit reaches integers through memory).
static mut X87_SCRATCH: u64 = 0;

/// Reads xmm0.
fn xmm0() -> u64 {
    let xmm0: u64;
    // SAFETY: reads xmm0 (SSE2, which this VMM's guests have, CR4.OSFXSR set).
    unsafe { core::arch::asm!("movq {x}, xmm0", x = out(reg) xmm0, options(nomem, nostack)) }
    xmm0
}

/// Reads the x87 stack's top as a 32-bit integer, without popping it. Only after
/// [`set_fp_registers`] (whose FNINIT masks the x87 exceptions).
fn x87_top() -> u64 {
    // SAFETY: stores the x87 top to this guest's own scratch word; the scratch word is this
    // guest's alone (one processor, no interrupt handler touches it).
    unsafe {
        core::arch::asm!("fist dword ptr [{s}]", s = in(reg) &raw mut X87_SCRATCH, options(nostack));
        (&raw const X87_SCRATCH).read_volatile() & 0xffff_ffff
    }
}

/// Puts `value` in xmm0 and its low 31 bits on the x87 stack (after FNINIT).
fn set_fp_registers(value: u64) {
    // SAFETY: as in `xmm0` and `x87_top`; FNINIT empties the x87 stack first, so the load
    // cannot overflow it.
    unsafe {
        (&raw mut X87_SCRATCH).write_volatile(value & 0x7fff_ffff);
        core::arch::asm!(
            "movq xmm0, {v}",
            "fninit",
            "fild dword ptr [{s}]",
            v = in(reg) value,
            s = in(reg) &raw mut X87_SCRATCH,
            options(nostack),
        );
    }
}

/// Does what `misbehave=WHAT` asks (never returns if it works).
fn misbehave(what: &str) {
    match what {
        "unmapped" => {
            // SAFETY: deliberately hostile: guest-physical 1 GiB has nothing behind it;
            // the VMM stops the guest here.
            let _ = unsafe { core::ptr::read_volatile(0x4000_0000 as *const u64) };
        }
        "readonly" => {
            // SAFETY: deliberately hostile: the page at 2 MiB is mapped read-only.
            unsafe { core::ptr::write_volatile(0x20_0000 as *mut u64, 1) }
        }
        "msr" => {
            // SAFETY: deliberately hostile: the VMM does not offer MSR 0x1b.
            unsafe {
                core::arch::asm!("rdmsr", in("ecx") 0x1bu32, out("eax") _, out("edx") _, options(nomem, nostack))
            }
        }
        "pke" => {
            // SAFETY: deliberately hostile: protection keys are not offered (PKRU is not
            // switched between guests); the CR4 write exits and the VMM stops the guest.
            unsafe {
                core::arch::asm!(
                    "mov rax, cr4",
                    "bts rax, 22",
                    "mov cr4, rax",
                    out("rax") _,
                    options(nomem, nostack)
                )
            }
        }
        "svme" => {
            // SAFETY: deliberately hostile: asks for nested SVM by setting EFER.SVME; the
            // WRMSR exits and the VMM stops the guest.
            unsafe {
                core::arch::asm!(
                    "rdmsr",
                    "bts eax, 12",
                    "wrmsr",
                    in("ecx") 0xc000_0080u32,
                    out("eax") _,
                    out("edx") _,
                    options(nomem, nostack)
                )
            }
        }
        "vmload" => {
            // SAFETY: deliberately hostile: an SVM instruction, which on SVM exits (the
            // kernel intercepts every one) and the VMM stops the guest. (On VT-x it is
            // undefined: the guest takes #UD.)
            unsafe { core::arch::asm!("xor eax, eax", "vmload rax", out("rax") _, options(nostack)) }
        }
        "triple" => {
            #[repr(C, packed)]
            struct Pointer {
                limit: u16,
                base: u64,
            }
            let empty = Pointer { limit: 0, base: 0 };
            // SAFETY: deliberately hostile: with an empty IDT the breakpoint cannot be
            // delivered, and neither can the faults that follow: a triple fault.
            unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) &empty, options(nostack)) }
        }
        _ => {}
    }
}

#[unsafe(no_mangle)]
extern "C" fn guest_main() -> ! {
    let mut uart = Uart;
    let _ = writeln!(uart, "Hello from a Cleave guest (64-bit, no firmware)");
    let line = cmdline();
    let _ = writeln!(uart, "command line: {line}");
    if let Some(what) = line.split(' ').find_map(|w| w.strip_prefix("misbehave=")) {
        let _ = writeln!(uart, "misbehaving: {what}");
        misbehave(what);
        let _ = writeln!(uart, "still running after misbehaving?");
        outb(0x501, 4);
    }
    // Floating-point registers are each guest's own: a fresh guest finds them as reset left
    // them (zero), not another guest's values, and keeps its own however the host switches
    // between guests.
    let fresh = xmm0() == 0;
    let own = own_value(line);
    set_fp_registers(own);
    for v in 0..256 {
        set_gate(v, unexpected_entry);
    }
    set_gate(0x20, timer_entry);
    load_idt();
    // PICs: vectors 0x20 and 0x28, cascade on line 2, 8086 mode, only IRQ 0 unmasked.
    for (port, value) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 4),
        (0xa1, 2),
        (0x21, 1),
        (0xa1, 1),
        (0x21, 0xfe),
        (0xa1, 0xff),
    ] {
        outb(port, value);
    }
    // PIT channel 0: rate generator at 1193182 / 1193 ≈ 1 kHz.
    outb(0x43, 0x34);
    outb(0x40, (1193 & 0xff) as u8);
    outb(0x40, (1193 >> 8) as u8);
    while TICKS.load(Ordering::Relaxed) < 100 {
        // SAFETY: the IDT, PICs and PIT are ready; `sti; hlt` waits for the next interrupt.
        unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) }
    }
    // SAFETY: interrupts off for the rest of the run.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) }
    let ticks = TICKS.load(Ordering::Relaxed);
    let _ = writeln!(uart, "{ticks} timer interrupts");
    mmio_write(0, 0x1234);
    let scratch = mmio_read(0);
    let id = mmio_read(4);
    let id_text = id.to_le_bytes();
    let _ = writeln!(
        uart,
        "MMIO test device: id {}, scratch {scratch:#x}",
        core::str::from_utf8(&id_text).unwrap_or("?")
    );
    let kept = xmm0() == own && x87_top() == own & 0x7fff_ffff;
    let _ = writeln!(
        uart,
        "floating-point registers: {} at start, {} at the end",
        if fresh { "clear" } else { "NOT CLEAR (another guest's?)" },
        if kept { "still its own" } else { "CHANGED" }
    );
    let good = ticks >= 100 && scratch == 0x1234 && &id_text == b"CLEV" && fresh && kept;
    outb(0x501, if good { 0 } else { 1 });
    loop {
        // SAFETY: powered off: nothing more happens.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    outb(0x501, 3);
    loop {
        // SAFETY: as above.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    }
}
