//! Device models a guest drives through I/O ports or MMIO exits.

pub mod pic8259;
pub mod pit8254;
pub mod uart16550;
