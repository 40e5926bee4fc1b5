//! A 16550A UART: the guest's console. Registers as the data sheet defines them (eight
//! ports from the base, the divisor latch behind LCR.DLAB), a 16-byte receive FIFO,
//! interrupts for received data, an empty transmitter and line status (modem-status
//! interrupts are never raised: the lines only change in loopback), loopback. What the
//! guest transmits is gathered into lines and handed to a [`Console`] with nothing lost:
//! a line longer than [`LINE_MAX`] is handed over in pieces.

/// Longest line handed to the console at once.
pub const LINE_MAX: usize = 160;
/// Receive FIFO depth (16550A).
pub const FIFO: usize = 16;

/// Where the guest's output goes: finished lines (the VMM prints them into the system's
/// log with the guest's name), or each byte as it is sent (a console on a real serial
/// port: [`Console::raw`]).
pub trait Console {
    /// One line, without its newline (or a piece of an over-long line).
    fn line(&mut self, text: &[u8]);
    /// Whether this console takes every byte as it is sent ([`Console::byte`]) rather than
    /// lines.
    fn raw(&self) -> bool {
        false
    }
    /// One byte of output, for a [`Console::raw`] console.
    fn byte(&mut self, byte: u8) {
        let _ = byte;
    }
}

/// Register offsets from the base port.
pub mod reg {
    /// Receive buffer (read) / transmit holding (write); divisor latch low with DLAB.
    pub const DATA: u16 = 0;
    /// Interrupt enable; divisor latch high with DLAB.
    pub const IER: u16 = 1;
    /// Interrupt identification (read) / FIFO control (write).
    pub const IIR_FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
    /// Modem status.
    pub const MSR: u16 = 6;
    /// Scratch.
    pub const SCR: u16 = 7;
}

const IER_RX: u8 = 1 << 0;
const IER_THRE: u8 = 1 << 1;
const IER_LSR: u8 = 1 << 2;
const LCR_DLAB: u8 = 1 << 7;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;
const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

/// The UART's state.
#[derive(Clone, Debug)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    fifo_enabled: bool,
    rx: [u8; FIFO],
    rx_len: usize,
    overrun: bool,
    /// A transmitter-empty interrupt is pending (cleared by reading IIR or writing THR).
    thre_pending: bool,
    line: [u8; LINE_MAX],
    line_len: usize,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A UART after reset: 8 data bits (LCR 0x03 is what firmware sets; reset is 0), divisor
    /// 12 (9600 baud), interrupts off, FIFO off, transmitter empty.
    pub fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            divisor: 12,
            fifo_enabled: false,
            rx: [0; FIFO],
            rx_len: 0,
            overrun: false,
            thre_pending: false,
            line: [0; LINE_MAX],
            line_len: 0,
        }
    }

    /// The divisor latch (baud = 115200 / divisor).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THRE | LSR_TEMT;
        if self.rx_len > 0 {
            lsr |= LSR_DR;
        }
        if self.overrun {
            lsr |= LSR_OE;
        }
        lsr
    }

    /// The highest-priority pending interrupt's IIR code (bit 0 clear), or `None`.
    fn pending(&self) -> Option<u8> {
        if self.ier & IER_LSR != 0 && self.overrun {
            Some(0b0110)
        } else if self.ier & IER_RX != 0 && self.rx_len > 0 {
            Some(0b0100)
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            Some(0b0010)
        } else {
            None
        }
    }

    /// Whether the UART drives its interrupt line: an interrupt is pending and, as on PCs,
    /// MCR.OUT2 gates the line to the interrupt controller.
    pub fn irq(&self) -> bool {
        self.pending().is_some() && self.mcr & MCR_OUT2 != 0
    }

    /// Whether received data would interrupt: its interrupt is enabled and OUT2 lets the
    /// line through.
    pub fn receive_interrupt_enabled(&self) -> bool {
        self.ier & IER_RX != 0 && self.mcr & MCR_OUT2 != 0
    }

    /// How many bytes the receiver holds (1 with the FIFO off, 16 with it on).
    fn depth(&self) -> usize {
        if self.fifo_enabled { FIFO } else { 1 }
    }

    /// How many bytes the receiver has room for.
    pub fn receive_room(&self) -> usize {
        self.depth().saturating_sub(self.rx_len)
    }

    /// Bytes from the host for the guest, as many as the receiver has room for; returns
    /// how many it took (the rest wait with the caller: nothing is lost to an overrun).
    pub fn receive_from_host(&mut self, bytes: &[u8]) -> usize {
        let taken = self.receive_room().min(bytes.len());
        for &byte in &bytes[..taken] {
            self.receive(byte);
        }
        taken
    }

    /// A byte arriving on the receive line (host input for the guest). With the FIFO full
    /// it is lost and the overrun flag set, as on the chip.
    pub fn receive(&mut self, byte: u8) {
        if self.rx_len < self.depth() {
            self.rx[self.rx_len] = byte;
            self.rx_len += 1;
        } else {
            self.overrun = true;
        }
    }

    fn transmit(&mut self, byte: u8, console: &mut impl Console) {
        if self.mcr & MCR_LOOP != 0 {
            self.receive(byte);
        } else if console.raw() {
            console.byte(byte);
        } else {
            match byte {
                b'\n' => self.flush(console),
                b'\r' => {}
                _ => {
                    if self.line_len == LINE_MAX {
                        self.flush(console);
                    }
                    self.line[self.line_len] = byte;
                    self.line_len += 1;
                }
            }
        }
        // The byte leaves at once: the holding register is empty again.
        self.thre_pending = true;
    }

    /// Hands any unfinished line to the console (when the guest stops).
    pub fn flush(&mut self, console: &mut impl Console) {
        if self.line_len > 0 {
            console.line(&self.line[..self.line_len]);
            self.line_len = 0;
        }
    }

    /// A guest `in` from port `base + offset` (offsets above 7 read as 0xff, an empty bus).
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            reg::DATA if self.dlab() => self.divisor as u8,
            reg::DATA => {
                if self.rx_len == 0 {
                    return 0;
                }
                let byte = self.rx[0];
                self.rx.copy_within(1..self.rx_len, 0);
                self.rx_len -= 1;
                byte
            }
            reg::IER if self.dlab() => (self.divisor >> 8) as u8,
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let fifo = if self.fifo_enabled { 0xc0 } else { 0 };
                match self.pending() {
                    Some(code) => {
                        if code == 0b0010 {
                            // Reading IIR with THRE as the source clears it.
                            self.thre_pending = false;
                        }
                        fifo | code
                    }
                    None => fifo | 1,
                }
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let lsr = self.lsr();
                self.overrun = false;
                lsr
            }
            reg::MSR => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
                    let m = self.mcr;
                    ((m & 1) << 5) | ((m & 2) << 3) | ((m & 4) << 4) | ((m & 8) << 4)
                } else {
                    // CTS, DSR and DCD asserted: a terminal is attached.
                    0xb0
                }
            }
            reg::SCR => self.scr,
            _ => 0xff,
        }
    }

    /// A guest `out` to port `base + offset` (offsets above 7 are ignored).
    pub fn write(&mut self, offset: u16, value: u8, console: &mut impl Console) {
        match offset {
            reg::DATA if self.dlab() => self.divisor = (self.divisor & 0xff00) | u16::from(value),
            reg::DATA => self.transmit(value, console),
            reg::IER if self.dlab() => self.divisor = (self.divisor & 0x00ff) | u16::from(value) << 8,
            reg::IER => {
                let was = self.ier;
                self.ier = value & 0x0f;
                // Enabling the THRE interrupt with the transmitter empty raises it.
                if was & IER_THRE == 0 && self.ier & IER_THRE != 0 {
                    self.thre_pending = true;
                }
            }
            reg::IIR_FCR => {
                self.fifo_enabled = value & 1 != 0;
                if value & 2 != 0 || !self.fifo_enabled {
                    self.rx_len = 0;
                }
            }
            reg::LCR => self.lcr = value,
            reg::MCR => self.mcr = value & 0x1f,
            reg::SCR => self.scr = value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Console for Lines {
        fn line(&mut self, text: &[u8]) {
            self.0.push(String::from_utf8_lossy(text).into_owned());
        }
    }

    fn send(uart: &mut Uart, text: &str, out: &mut Lines) {
        for b in text.bytes() {
            // As a driver does: wait for THRE, then write.
            assert!(uart.read(reg::LSR) & LSR_THRE != 0);
            uart.write(reg::DATA, b, out);
        }
    }

    #[test]
    fn output_becomes_lines() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        send(&mut uart, "hello from the guest\r\nsecond", &mut out);
        assert_eq!(out.0, ["hello from the guest"]);
        uart.flush(&mut out);
        assert_eq!(out.0, ["hello from the guest", "second"]);
        let long = "x".repeat(LINE_MAX + 5) + "\n";
        send(&mut uart, &long, &mut out);
        assert_eq!(out.0[2].len(), LINE_MAX);
        assert_eq!(out.0[3], "xxxxx", "nothing lost from an over-long line");
    }

    #[test]
    fn divisor_latch_sits_behind_dlab() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        uart.write(reg::LCR, 0x80, &mut out);
        uart.write(reg::DATA, 0x01, &mut out);
        uart.write(reg::IER, 0x00, &mut out);
        assert_eq!((uart.divisor(), uart.read(reg::DATA), uart.read(reg::IER)), (1, 1, 0));
        uart.write(reg::LCR, 0x03, &mut out);
        assert_eq!(uart.read(reg::IER), 0, "IER untouched by the divisor writes");
        assert!(out.0.is_empty(), "divisor writes are not output");
        uart.write(reg::SCR, 0x5a, &mut out);
        assert_eq!(uart.read(reg::SCR), 0x5a);
        assert_eq!(uart.read(8), 0xff);
    }

    #[test]
    fn interrupts_by_priority_and_gated_by_out2() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        assert_eq!(uart.read(reg::IIR_FCR), 0x01, "nothing pending");
        uart.write(reg::MCR, MCR_OUT2, &mut out);
        uart.write(reg::IER, IER_THRE | IER_RX | IER_LSR, &mut out);
        assert!(uart.irq());
        assert_eq!(uart.read(reg::IIR_FCR), 0x02, "THRE");
        assert!(!uart.irq(), "reading IIR cleared THRE");
        uart.receive(b'a');
        assert_eq!(uart.read(reg::IIR_FCR), 0x04, "received data");
        assert!(uart.irq());
        uart.receive(b'b');
        assert_eq!(uart.read(reg::IIR_FCR), 0x06, "overrun (no FIFO) outranks data");
        assert_eq!(uart.read(reg::LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(uart.read(reg::LSR) & LSR_OE, 0, "reading LSR clears the overrun");
        assert_eq!(uart.read(reg::DATA), b'a');
        assert_eq!(uart.read(reg::IIR_FCR), 0x01);
        uart.write(reg::DATA, b'z', &mut out);
        assert!(uart.irq(), "the transmitter is empty again");
        uart.write(reg::MCR, 0, &mut out);
        assert!(!uart.irq(), "OUT2 off: the line stays low");
    }

    #[test]
    fn fifo_and_loopback() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        uart.write(reg::IIR_FCR, 0x07, &mut out);
        assert_eq!(uart.read(reg::IIR_FCR) & 0xc0, 0xc0, "FIFOs enabled");
        uart.write(reg::MCR, MCR_LOOP | 0x3, &mut out);
        assert_eq!(uart.read(reg::MSR) & 0x30, 0x30, "DTR and RTS loop to DSR and CTS");
        for b in b"loop" {
            uart.write(reg::DATA, *b, &mut out);
        }
        assert!(out.0.is_empty(), "loopback output stays inside");
        let got: Vec<u8> = (0..4).map(|_| uart.read(reg::DATA)).collect();
        assert_eq!(got, b"loop");
        for i in 0..FIFO + 1 {
            uart.receive(i as u8);
        }
        assert_eq!(uart.read(reg::LSR) & LSR_OE, LSR_OE, "the 17th byte overran");
        uart.write(reg::IIR_FCR, 0x03, &mut out);
        assert_eq!(uart.read(reg::LSR) & LSR_DR, 0, "FCR bit 1 cleared the receive FIFO");
    }

    #[test]
    fn host_input_takes_only_what_fits() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        assert_eq!(uart.receive_from_host(b"ab"), 1, "no FIFO: one byte");
        assert_eq!(uart.receive_from_host(b"b"), 0);
        assert_eq!(uart.read(reg::LSR) & LSR_OE, 0, "no overrun");
        assert_eq!(uart.read(reg::DATA), b'a');
        uart.write(reg::IIR_FCR, 0x01, &mut out);
        let text = [b'x'; 20];
        assert_eq!(uart.receive_from_host(&text), FIFO);
        assert_eq!(uart.receive_from_host(&text), 0);
        assert!(!uart.receive_interrupt_enabled());
        uart.write(reg::IER, IER_RX, &mut out);
        assert!(!uart.receive_interrupt_enabled(), "OUT2 still off");
        uart.write(reg::MCR, MCR_OUT2, &mut out);
        assert!(uart.receive_interrupt_enabled() && uart.irq());
    }

    /// Linux's 8250 start-up check that the transmitter-empty interrupt comes back each time
    /// it is enabled (`UART_BUG_THRE`), and its transmit path: THRE interrupt, IIR read,
    /// bytes written, THRE again.
    #[test]
    fn the_transmitter_empty_interrupt_as_linux_uses_it() {
        let (mut uart, mut out) = (Uart::new(), Lines::default());
        uart.write(reg::MCR, MCR_OUT2, &mut out);
        uart.write(reg::IER, IER_THRE, &mut out);
        let iir1 = uart.read(reg::IIR_FCR);
        uart.write(reg::IER, 0, &mut out);
        uart.write(reg::IER, IER_THRE, &mut out);
        let iir2 = uart.read(reg::IIR_FCR);
        uart.write(reg::IER, 0, &mut out);
        assert_eq!((iir1 & 0x0f, iir2 & 0x0f), (0x02, 0x02), "THRE both times");
        assert!(!uart.irq());
        // Transmitting with THRE interrupts: each IIR read lowers the line, each byte
        // written raises it again.
        uart.write(reg::IER, IER_THRE, &mut out);
        for b in b"$ \n" {
            assert!(uart.irq());
            assert_eq!(uart.read(reg::IIR_FCR) & 0x0f, 0x02);
            assert!(!uart.irq());
            uart.write(reg::DATA, *b, &mut out);
        }
        assert!(uart.irq());
    }
}
