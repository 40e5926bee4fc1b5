//! A 16550 UART (a PC's COM port) reached through an I/O port capability: its registers
//! and the set-up every program that drives one does (the XenStore bridge, a VMM's guest
//! console, the toolstack's operator line).

use crate::Cap;
use crate::cap::kind::IoPort;

/// Register offsets from the first port.
pub mod reg {
    /// Receive and transmit (with the divisor latch on: its low byte).
    pub const DATA: u16 = 0;
    /// Interrupt enable (with the divisor latch on: the divisor's high byte).
    pub const IER: u16 = 1;
    /// FIFO control.
    pub const FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
    /// Scratch.
    pub const SCRATCH: u16 = 7;
}

/// Line status: a byte has arrived.
pub const LSR_DATA: u8 = 0x01;
/// Line status: a byte was lost (the receiver overran).
pub const LSR_OVERRUN: u8 = 0x02;
/// Line status: the transmitter can take a byte.
pub const LSR_THR_EMPTY: u8 = 0x20;

/// A UART at `base`, its eight ports held through `port`.
#[derive(Clone, Copy)]
pub struct Uart {
    port: Cap<IoPort>,
    base: u16,
}

impl Uart {
    /// The UART whose first port is `base`.
    pub const fn new(port: Cap<IoPort>, base: u16) -> Self {
        Self { port, base }
    }

    /// Reads register `reg`; `None` if the capability refuses.
    pub fn read(&self, reg: u16) -> Option<u8> {
        self.port.read(self.base + reg, 1).ok().map(|v| v as u8)
    }

    /// Writes register `reg`; whether the capability allowed it.
    pub fn write(&self, reg: u16, value: u8) -> bool {
        self.port.write(self.base + reg, 1, u32::from(value)).is_ok()
    }

    /// 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on and cleared, DTR and
    /// RTS; with `rx_interrupt` an interrupt for each byte received (OUT2 routes it to
    /// the PIC on PCs), else none (the program polls). Left as the firmware left it, a
    /// UART may frame five-bit characters (Bochs's does: its line control starts at 0).
    /// Whether every write was allowed.
    pub fn init(&self, rx_interrupt: bool) -> bool {
        use reg::{DATA, FCR, IER, LCR, MCR};
        let (mcr, ier) = if rx_interrupt { (0x0b, 0x01) } else { (0x03, 0x00) };
        [(IER, 0), (LCR, 0x80), (DATA, 1), (IER, 0), (LCR, 0x03), (FCR, 0x07), (MCR, mcr), (IER, ier)]
            .iter()
            .all(|&(reg, value)| self.write(reg, value))
    }
}
