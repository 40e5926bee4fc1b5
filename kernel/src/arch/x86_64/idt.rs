//! The interrupt descriptor table: the 32 exception vectors and the interrupt vectors
//! (PIC lines, local APIC timer, spurious) point at the stubs in `entry.s`. Every other
//! vector is left not-present, so a stray interrupt arrives as a general-protection fault
//! naming the vector, never as a jump to nowhere.

use super::gdt::{self, DOUBLE_FAULT_IST, NMI_IST};
use super::global::BootCell;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// One 16-byte interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    flags: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const MISSING: Self =
        Self { offset_low: 0, selector: 0, ist: 0, flags: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// A present, ring-0-only 64-bit interrupt gate (interrupts stay off in the kernel).
    fn interrupt(handler: u64, selector: u16, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist,
            flags: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: BootCell<Idt> = BootCell::new(Idt([Gate::MISSING; 256]));

unsafe extern "C" {
    /// Addresses of the 32 exception stubs, in vector order (entry.s).
    static exception_stub_table: [u64; 32];
    /// Addresses of the interrupt stubs for [`INTERRUPT_VECTORS`] (entry.s).
    static interrupt_stub_table: [u64; 18];
}

/// The interrupt vectors with stubs: PIC lines 0-15, the local APIC timer, spurious.
pub const INTERRUPT_VECTORS: [u8; 18] =
    [32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 255];

/// Fills and loads the IDT. Called once at boot after [`gdt::init`].
pub fn init() {
    let code = gdt::selectors().kernel_code.0;
    // SAFETY: the stub table is a read-only array of 32 addresses defined in entry.s.
    let stubs = unsafe { &exception_stub_table };
    // SAFETY: runs once at boot on the only processor with interrupts off; nothing else
    // references IDT until it is loaded below.
    let idt = unsafe { IDT.init_mut() };
    for (vector, &stub) in stubs.iter().enumerate() {
        let ist = match vector {
            8 => DOUBLE_FAULT_IST,
            2 | 18 => NMI_IST,
            _ => 0,
        };
        idt.0[vector] = Gate::interrupt(stub, code, ist);
    }
    // SAFETY: the interrupt stub table is a read-only array of 18 addresses in entry.s.
    let interrupt_stubs = unsafe { &interrupt_stub_table };
    for (&vector, &stub) in INTERRUPT_VECTORS.iter().zip(interrupt_stubs) {
        idt.0[usize::from(vector)] = Gate::interrupt(stub, code, 0);
    }
    load(idt);
}

fn load(idt: &Idt) {
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(core::ptr::from_ref(idt) as u64),
    };
    // SAFETY: the IDT is a static that lives forever and every present gate points at a
    // stub that saves state and calls a handler.
    unsafe { lidt(&pointer) }
}

/// Loads IDTR again with the table's real limit (a VM exit leaves it 0xFFFF). Called
/// after every VM exit.
pub fn reload() {
    load(IDT.get());
}
