//! Device models a guest drives through I/O ports or MMIO exits.

pub mod uart16550;
