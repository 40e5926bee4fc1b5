//! What of the PC platform the kernel keeps for itself, so that the kernel (which reserves
//! it at boot) and `cleave check` (which refuses a system description that gives it away)
//! read the same facts.

/// The interrupt lines the kernel keeps: 2 (the cascade to the second 8259) and 4 (COM1,
/// its console). The PIT's line 0 is free: the kernel ticks with the local APIC timer.
pub const KERNEL_IRQS: [u8; 2] = [2, 4];

/// The I/O port ranges the kernel keeps (inclusive): the two 8259 PICs and COM1.
pub const KERNEL_PORTS: [(u16, u16); 3] = [(0x20, 0x21), (0xa0, 0xa1), (0x3f8, 0x3ff)];

/// The 8254 PIT's ports (inclusive), which the supervisor uses as its clock when a system
/// needs one.
pub const PIT_PORTS: (u16, u16) = (0x40, 0x43);
