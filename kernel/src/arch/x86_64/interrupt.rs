//! Interrupt controllers: the two 8259 PICs, whose lines users receive through IrqHandler
//! capabilities, and the local APIC timer, the kernel's scheduling tick.

use super::global::KernelCell;
use super::physmem;
use cleave_kernel_core::PhysAddr;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// Vector of PIC line 0; lines 0-15 use the 16 vectors from here.
pub const PIC_VECTOR_BASE: u64 = 0x20;
/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u64 = 0x30;
/// Vector of the local APIC's spurious interrupts.
pub const SPURIOUS_VECTOR: u64 = 0xff;

/// The kernel's own lines (`cleave_abi::platform`): 2 (the cascade to the second PIC) and
/// 4 (COM1, the console); the PIT is unused (the kernel ticks with the local APIC), so users
/// may have it.
pub const KERNEL_IRQS: [u8; 2] = cleave_abi::platform::KERNEL_IRQS;

/// Timer count per tick (divide by 16): about 10 ms where the APIC timer counts at 1 GHz,
/// as QEMU's does.
const TIMER_COUNT: u32 = 625_000;

/// Which PIC lines are masked (bit per line); all at boot.
static PIC_MASK: KernelCell<u16> = KernelCell::new(0xffff);

fn outb(port: u16, value: u8) {
    // SAFETY: only called with the PIC command and data ports (0x20, 0x21, 0xa0, 0xa1),
    // which exist on every PC and control nothing but the interrupt controllers.
    unsafe { Port::new(port).write(value) }
}

fn write_pic_mask(mask: u16) {
    // The cascade line stays open while any line of the second PIC is.
    let master = (mask as u8) & if mask >> 8 != 0xff { !(1 << 2) } else { 0xff };
    outb(0x21, master);
    outb(0xa1, (mask >> 8) as u8);
}

/// Masks or unmasks PIC line `irq`.
pub fn set_line_masked(irq: u8, masked: bool) {
    if irq >= 16 {
        return;
    }
    let mask = PIC_MASK.with(|m| {
        if masked {
            *m |= 1 << irq;
        } else {
            *m &= !(1 << irq);
        }
        *m
    });
    write_pic_mask(mask);
}

/// Acknowledges PIC line `irq` at the controller(s).
pub fn pic_end_of_interrupt(irq: u8) {
    if irq >= 8 {
        outb(0xa0, 0x20);
    }
    outb(0x20, 0x20);
}

/// Remaps the PICs to vectors 0x20-0x2f (off the exception vectors) and masks every line.
pub fn init_pic() {
    for (port, value) in [
        (0x20, 0x11), // ICW1: init, expect ICW4
        (0xa0, 0x11),
        (0x21, 0x20), // ICW2: vector base
        (0xa1, 0x28),
        (0x21, 0x04), // ICW3: slave on line 2
        (0xa1, 0x02),
        (0x21, 0x01), // ICW4: 8086 mode
        (0xa1, 0x01),
    ] {
        outb(port, value);
    }
    write_pic_mask(0xffff);
}

fn lapic_base() -> PhysAddr {
    // SAFETY: IA32_APIC_BASE (0x1b) exists on every x86-64 processor; reading it has no
    // side effect.
    let base = unsafe { Msr::new(0x1b).read() };
    PhysAddr(base & 0x000f_ffff_ffff_f000)
}

fn lapic_write(register: u64, value: u32) {
    physmem::mmio_write32(PhysAddr(lapic_base().0 + register), value);
}

/// Enables the local APIC and starts its periodic timer on [`TIMER_VECTOR`].
pub fn init_timer() {
    lapic_write(0xf0, 0x100 | SPURIOUS_VECTOR as u32); // software enable, spurious vector
    lapic_write(0x3e0, 0b0011); // divide by 16
    lapic_write(0x320, (1 << 17) | TIMER_VECTOR as u32); // periodic
    lapic_write(0x380, TIMER_COUNT);
}

/// Whether an interrupt waits to be taken: a vector requested in the local APIC (its
/// timer) or an unmasked line requested at either PIC. Long kernel operations ask at
/// their preemption points.
pub fn pending() -> bool {
    // The local APIC's request register: eight 32-bit words at 0x200, 0x210, … 0x270.
    let lapic = (0..8u64).any(|i| physmem::mmio_read32(PhysAddr(lapic_base().0 + 0x200 + 0x10 * i)) != 0);
    if lapic {
        return true;
    }
    // OCW3 "read IRR", then the request bits of the lines the kernel left unmasked.
    outb(0x20, 0x0a);
    outb(0xa0, 0x0a);
    let requested = u16::from(inb(0x20)) | (u16::from(inb(0xa0)) << 8);
    requested & !PIC_MASK.with(|m| *m) & !(1 << 2) != 0
}

fn inb(port: u16) -> u8 {
    // SAFETY: only called with the PIC command ports (0x20, 0xa0) after selecting the
    // request register: reading it changes nothing.
    unsafe { Port::new(port).read() }
}

/// Acknowledges a local APIC interrupt.
pub fn lapic_end_of_interrupt() {
    lapic_write(0xb0, 0);
}

/// Waits, interrupts enabled, until an interrupt has been handled; returns with them off.
pub fn wait_for_interrupt() {
    // SAFETY: `sti; hlt` enables interrupts only for the wait (the next instruction after
    // sti is hlt, so none is taken before it); interrupt handlers run on this stack and
    // return here; `cli` restores the kernel's interrupts-off rule. Not `nomem`: the
    // handlers change kernel state, which the compiler must read again afterwards.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) }
}

/// Takes an interrupt that is already pending (a VM exit on an external interrupt left it
/// so): interrupts on for one instruction.
pub fn take_pending() {
    // SAFETY: as in `wait_for_interrupt`: the handler runs on this stack and returns here
    // (after `nop`, the instruction sti lets complete first); `cli` restores the rule.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nostack)) }
}
