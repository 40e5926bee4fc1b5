//! The PC's two 8259A interrupt controllers (master at 0x20, slave at 0xa0 cascaded on the
//! master's line 2), as far as operating systems program them: the ICW1-ICW4 initialisation
//! sequence (edge-triggered, cascade, 8086 mode, optional automatic EOI), the mask (OCW1),
//! non-specific and specific EOI (OCW2), reading IRR or ISR (OCW3), fixed priority with line
//! 0 highest. Lines are edge-triggered: a request is latched when a line rises.

/// One 8259A.
#[derive(Clone, Debug, Default)]
pub struct Pic {
    /// Requests latched, not yet acknowledged.
    irr: u8,
    /// Requests being serviced (until EOI).
    isr: u8,
    /// Masked lines.
    imr: u8,
    /// The line levels, to latch rising edges.
    levels: u8,
    /// Vector of line 0 (ICW2).
    base: u8,
    /// Which initialisation word comes next on the data port (0: none, 2..=4).
    init_step: u8,
    /// ICW1 said an ICW4 follows.
    needs_icw4: bool,
    /// ICW1 said single mode (no ICW3).
    single: bool,
    auto_eoi: bool,
    /// OCW3: reads of the command port return ISR instead of IRR.
    read_isr: bool,
}

impl Pic {
    /// The highest-priority line requesting and unmasked, if it outranks every line in
    /// service.
    fn best(&self) -> Option<u8> {
        let pending = self.irr & !self.imr;
        let line = (0..8u8).find(|&l| pending & (1 << l) != 0)?;
        // A line in service blocks itself and every line below it in priority.
        let blocking = ((2u16 << line) - 1) as u8;
        (self.isr & blocking == 0).then_some(line)
    }

    fn set_line(&mut self, line: u8, high: bool) {
        let bit = 1 << line;
        if high && self.levels & bit == 0 {
            self.irr |= bit;
        }
        if high {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
    }

    fn acknowledge(&mut self, line: u8) -> u8 {
        self.irr &= !(1 << line);
        if !self.auto_eoi {
            self.isr |= 1 << line;
        }
        self.base.wrapping_add(line)
    }

    fn read(&self, data: bool) -> u8 {
        match (data, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr,
        }
    }

    fn write(&mut self, data: bool, value: u8) {
        if !data {
            if value & 0x10 != 0 {
                // ICW1: start initialisation; the mask, requests and services clear.
                self.needs_icw4 = value & 1 != 0;
                self.single = value & 2 != 0;
                self.init_step = 2;
                self.imr = 0;
                self.isr = 0;
                self.irr = 0;
                self.auto_eoi = false;
                self.read_isr = false;
            } else if value & 0x08 != 0 {
                // OCW3: choose the register a command-port read returns.
                if value & 2 != 0 {
                    self.read_isr = value & 1 != 0;
                }
            } else {
                // OCW2: EOI (non-specific clears the highest in service; specific the
                // named line). Rotation commands are not modelled and leave priority fixed.
                match value >> 5 {
                    0b001 => {
                        if let Some(l) = (0..8).find(|l| self.isr & (1 << l) != 0) {
                            self.isr &= !(1 << l);
                        }
                    }
                    0b011 => self.isr &= !(1 << (value & 7)),
                    _ => {}
                }
            }
            return;
        }
        match self.init_step {
            2 => {
                self.base = value & 0xf8;
                self.init_step = if !self.single {
                    3
                } else if self.needs_icw4 {
                    4
                } else {
                    0
                };
            }
            3 => self.init_step = if self.needs_icw4 { 4 } else { 0 },
            4 => {
                self.auto_eoi = value & 2 != 0;
                self.init_step = 0;
            }
            _ => self.imr = value,
        }
    }
}

/// Master and slave as a PC wires them.
#[derive(Clone, Debug, Default)]
pub struct PicPair {
    /// Ports 0x20-0x21; lines 0-7.
    pub master: Pic,
    /// Ports 0xa0-0xa1; lines 8-15, cascaded on master line 2.
    pub slave: Pic,
}

impl Pic {
    /// The vector its line 0 delivers (ICW2).
    pub fn vector_base(&self) -> u8 {
        self.base
    }
}

impl PicPair {
    /// Both controllers after reset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets interrupt line `irq` (0-15) high or low; a rising edge latches a request.
    /// Lines above 15 are ignored.
    pub fn set_irq(&mut self, irq: u8, high: bool) {
        match irq {
            0..=7 => self.master.set_line(irq, high),
            8..=15 => {
                self.slave.set_line(irq - 8, high);
                self.cascade();
            }
            _ => {}
        }
    }

    /// An edge on `irq`: up and down again (how device models signal one interrupt).
    pub fn pulse(&mut self, irq: u8) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    /// The slave's output drives master line 2 as a level.
    fn cascade(&mut self) {
        let out = self.slave.best().is_some();
        self.master.set_line(2, out);
    }

    /// Whether the master asks the processor for an interrupt.
    pub fn pending(&self) -> bool {
        self.master.best().is_some()
    }

    /// The processor acknowledges: returns the vector to deliver and marks it in service,
    /// or `None` if nothing is pending (the VMM then does not inject).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let line = self.master.best()?;
        if line == 2 {
            let Some(slave_line) = self.slave.best() else {
                // The request went away: the master reports a spurious IRQ 7.
                self.master.irr &= !(1 << 2);
                return Some(self.master.base.wrapping_add(7));
            };
            self.master.acknowledge(2);
            let vector = self.slave.acknowledge(slave_line);
            self.cascade();
            return Some(vector);
        }
        Some(self.master.acknowledge(line))
    }

    /// A guest `in` from 0x20, 0x21, 0xa0 or 0xa1 (others read 0xff).
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            0x20 | 0x21 => self.master.read(port == 0x21),
            0xa0 | 0xa1 => self.slave.read(port == 0xa1),
            _ => 0xff,
        }
    }

    /// A guest `out` to 0x20, 0x21, 0xa0 or 0xa1 (others ignored).
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            0x20 | 0x21 => self.master.write(port == 0x21, value),
            0xa0 | 0xa1 => {
                self.slave.write(port == 0xa1, value);
                self.cascade();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux and most kernels do: vectors 0x20 and 0x28, cascade on 2, 8086 mode.
    fn initialised() -> PicPair {
        let mut p = PicPair::new();
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x28),
            (0xa1, 0x02),
            (0xa1, 0x01),
        ] {
            p.write(port, value);
        }
        p.write(0x21, 0x00);
        p.write(0xa1, 0x00);
        p
    }

    #[test]
    fn timer_interrupts_arrive_and_wait_for_eoi() {
        let mut p = initialised();
        assert!(!p.pending());
        p.pulse(0);
        assert!(p.pending());
        assert_eq!(p.acknowledge(), Some(0x20));
        p.pulse(0);
        assert_eq!(p.acknowledge(), None, "line 0 is in service until EOI");
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x20), "the request latched meanwhile");
        p.write(0x20, 0x20);
        assert!(!p.pending());
    }

    #[test]
    fn priority_masks_and_the_cascade() {
        let mut p = initialised();
        p.pulse(4);
        p.pulse(1);
        assert_eq!(p.acknowledge(), Some(0x21), "line 1 outranks line 4");
        p.pulse(12);
        assert_eq!(p.acknowledge(), None, "line 12 (via 2) ranks below 1, in service");
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x2c), "slave line 4 through master line 2");
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x24));
        p.write(0x20, 0x64); // specific EOI for line 4
        p.write(0x21, 0x01); // mask the timer
        p.pulse(0);
        assert!(!p.pending());
        p.write(0x21, 0x00);
        assert_eq!(p.acknowledge(), Some(0x20), "a masked request waits, then arrives");
    }

    #[test]
    fn irr_isr_reads_and_auto_eoi() {
        let mut p = initialised();
        p.pulse(3);
        p.write(0x20, 0x0a);
        assert_eq!(p.read(0x20), 0x08, "IRR");
        p.acknowledge();
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), 0x08, "ISR");
        assert_eq!(p.read(0x21), 0x00, "IMR");
        // Re-initialised with automatic EOI: nothing stays in service.
        for (port, value) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x03)] {
            p.write(port, value);
        }
        p.pulse(0);
        assert_eq!(p.acknowledge(), Some(0x30));
        p.pulse(0);
        assert_eq!(p.acknowledge(), Some(0x30));
        assert_eq!(p.read(0x60), 0xff);
        p.set_irq(200, true); // out of range: ignored, no panic
        assert!(!p.pending());
    }
}
