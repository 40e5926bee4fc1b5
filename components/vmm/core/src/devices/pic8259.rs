//! The PC's two 8259A interrupt controllers (master at 0x20, slave at 0xa0 cascaded on the
//! master's line 2) and the edge/level control registers (ELCR, 0x4d0 and 0x4d1) of the
//! PIIX-style chipsets that carry them, as far as operating systems program them: the
//! ICW1-ICW4 initialisation sequence (cascade, 8086 mode, optional automatic EOI, ICW1's
//! level-triggered mode), the mask (OCW1), non-specific and specific EOI (OCW2), reading IRR
//! or ISR (OCW3), fixed priority with line 0 highest.
//!
//! Each line is edge- or level-triggered as its ELCR bit says (or every line level-triggered
//! after an ICW1 with LTIM set). An edge-triggered line latches a request when it rises and
//! the request stays until acknowledged. A level-triggered line requests for as long as it
//! is high: a device that still holds it high when the guest sends EOI is serviced again.
//! Lines 0, 1, 2, 8 and 13 (timer, keyboard, cascade, RTC, FPU error) are always
//! edge-triggered, as on the PIIX.

/// ELCR bits a guest may set: the master's lines 0-2 and the slave's lines 0 and 5 (IRQs 8
/// and 13) are edge-triggered only.
const ELCR_WRITABLE: [u8; 2] = [0xf8, 0xde];

/// Ports of the pair and of the ELCR.
pub mod port {
    /// Master command (ICW1, OCW2, OCW3; reads IRR or ISR).
    pub const MASTER_COMMAND: u16 = 0x20;
    /// Master data (ICW2-4, the mask).
    pub const MASTER_DATA: u16 = 0x21;
    /// Slave command.
    pub const SLAVE_COMMAND: u16 = 0xa0;
    /// Slave data.
    pub const SLAVE_DATA: u16 = 0xa1;
    /// ELCR for IRQs 0-7.
    pub const ELCR_MASTER: u16 = 0x4d0;
    /// ELCR for IRQs 8-15.
    pub const ELCR_SLAVE: u16 = 0x4d1;
}

/// One 8259A.
#[derive(Clone, Debug, Default)]
pub struct Pic {
    /// Edge-triggered requests latched, not yet acknowledged.
    latched: u8,
    /// Requests being serviced (until EOI).
    isr: u8,
    /// Masked lines.
    imr: u8,
    /// The line levels.
    levels: u8,
    /// Level-triggered lines (the ELCR).
    elcr: u8,
    /// ICW1 asked for every line level-triggered.
    all_level: bool,
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
    /// The lines that are level-triggered now.
    fn level_lines(&self) -> u8 {
        if self.all_level { 0xff } else { self.elcr }
    }

    /// The interrupt request register: latched edges, and level-triggered lines that are
    /// high.
    fn irr(&self) -> u8 {
        let level = self.level_lines();
        (self.latched & !level) | (self.levels & level)
    }

    /// The highest-priority line requesting and unmasked, if it outranks every line in
    /// service.
    fn best(&self) -> Option<u8> {
        let pending = self.irr() & !self.imr;
        let line = (0..8u8).find(|&l| pending & (1 << l) != 0)?;
        // A line in service blocks itself and every line below it in priority.
        let blocking = ((2u16 << line) - 1) as u8;
        (self.isr & blocking == 0).then_some(line)
    }

    fn set_line(&mut self, line: u8, high: bool) {
        let bit = 1 << line;
        if high && self.levels & bit == 0 {
            self.latched |= bit;
        }
        if high {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
    }

    fn acknowledge(&mut self, line: u8) -> u8 {
        // A level-triggered request stays for as long as its line is high.
        self.latched &= !(1 << line);
        if !self.auto_eoi {
            self.isr |= 1 << line;
        }
        self.base.wrapping_add(line)
    }

    fn read(&self, data: bool) -> u8 {
        match (data, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr(),
        }
    }

    fn write(&mut self, data: bool, value: u8) {
        if !data {
            if value & 0x10 != 0 {
                // ICW1: start initialisation. The mask, requests and services clear, and a
                // line must rise again before it requests (an edge-triggered line that is
                // already high does not).
                self.needs_icw4 = value & 1 != 0;
                self.single = value & 2 != 0;
                self.all_level = value & 8 != 0;
                self.init_step = 2;
                self.imr = 0;
                self.isr = 0;
                self.latched = 0;
                self.auto_eoi = false;
                self.read_isr = false;
            } else if value & 0x08 != 0 {
                // OCW3: choose the register a command-port read returns. Poll mode and the
                // special mask mode are not modelled.
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

    /// The vector its line 0 delivers (ICW2).
    pub fn vector_base(&self) -> u8 {
        self.base
    }

    /// Whether `line` is masked (OCW1).
    pub fn masked(&self, line: u8) -> bool {
        self.imr & (1 << (line & 7)) != 0
    }
}

/// Master and slave as a PC wires them, with the chipset's ELCR.
#[derive(Clone, Debug, Default)]
pub struct PicPair {
    /// Ports 0x20-0x21; lines 0-7.
    pub master: Pic,
    /// Ports 0xa0-0xa1; lines 8-15, cascaded on master line 2.
    pub slave: Pic,
}

impl PicPair {
    /// Both controllers after reset, every line edge-triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets interrupt line `irq` (0-15) high or low. An edge-triggered line latches a
    /// request when it rises; a level-triggered one requests while it is high. Lines above
    /// 15 are ignored.
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

    /// An edge on `irq`: up and down again (how the timer signals one interrupt).
    pub fn pulse(&mut self, irq: u8) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    /// Makes `irq` level-triggered (or edge-triggered) as firmware does for the lines PCI
    /// interrupts use; the lines ELCR keeps edge-triggered are left alone.
    pub fn set_level_triggered(&mut self, irq: u8, level: bool) {
        if irq > 15 {
            return;
        }
        let (pic, line, index) =
            if irq < 8 { (&mut self.master, irq, 0) } else { (&mut self.slave, irq - 8, 1) };
        let bit = (1 << line) & ELCR_WRITABLE[index];
        if level {
            pic.elcr |= bit;
        } else {
            pic.elcr &= !bit;
        }
        self.cascade();
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

    /// Whether `irq` (0-15) is masked, counting the cascade: a slave line is masked if the
    /// master masks line 2.
    pub fn masked(&self, irq: u8) -> bool {
        match irq {
            0..=7 => self.master.masked(irq),
            8..=15 => self.slave.masked(irq - 8) || self.master.masked(2),
            _ => true,
        }
    }

    /// The processor acknowledges: returns the vector to deliver and marks it in service,
    /// or `None` if nothing is pending (the VMM then does not inject).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let line = self.master.best()?;
        if line == 2 {
            let Some(slave_line) = self.slave.best() else {
                // The request went away: the master reports a spurious IRQ 7.
                self.master.latched &= !(1 << 2);
                return Some(self.master.base.wrapping_add(7));
            };
            self.master.acknowledge(2);
            let vector = self.slave.acknowledge(slave_line);
            self.cascade();
            return Some(vector);
        }
        Some(self.master.acknowledge(line))
    }

    /// A guest `in` from 0x20, 0x21, 0xa0, 0xa1, 0x4d0 or 0x4d1 (others read 0xff).
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            port::MASTER_COMMAND | port::MASTER_DATA => self.master.read(port == port::MASTER_DATA),
            port::SLAVE_COMMAND | port::SLAVE_DATA => self.slave.read(port == port::SLAVE_DATA),
            port::ELCR_MASTER => self.master.elcr,
            port::ELCR_SLAVE => self.slave.elcr,
            _ => 0xff,
        }
    }

    /// A guest `out` to 0x20, 0x21, 0xa0, 0xa1, 0x4d0 or 0x4d1 (others ignored). ELCR bits of
    /// the lines that must stay edge-triggered are ignored.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            port::MASTER_COMMAND | port::MASTER_DATA => self.master.write(port == port::MASTER_DATA, value),
            port::SLAVE_COMMAND | port::SLAVE_DATA => self.slave.write(port == port::SLAVE_DATA, value),
            port::ELCR_MASTER => self.master.elcr = value & ELCR_WRITABLE[0],
            port::ELCR_SLAVE => self.slave.elcr = value & ELCR_WRITABLE[1],
            _ => {}
        }
        // Any slave change (its mask, an EOI, its trigger modes) can change its output.
        self.cascade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Linux does (`init_8259A`): mask everything, vectors 0x30 and 0x38, cascade on 2,
    /// 8086 mode, then the masks it keeps.
    fn initialised() -> PicPair {
        let mut p = PicPair::new();
        // Linux's probe first: the master's mask must read back as written.
        p.write(0xa1, 0xff);
        p.write(0x21, 0xfb);
        assert_eq!(p.read(0x21), 0xfb);
        for (port, value) in [
            (0x21, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
        ] {
            p.write(port, value);
        }
        p.write(0x21, 0x00);
        p.write(0xa1, 0x00);
        p
    }

    /// How Linux acknowledges `irq` (`mask_and_ack_8259A`, then unmasking after the
    /// handler): mask, specific EOI (to the slave and then the cascade line), unmask.
    fn linux_eoi(p: &mut PicPair, irq: u8) {
        if irq >= 8 {
            p.read(0xa1);
            p.write(0xa1, 1 << (irq - 8));
            p.write(0xa0, 0x60 + (irq & 7));
            p.write(0x20, 0x62);
            p.write(0xa1, 0);
        } else {
            p.read(0x21);
            p.write(0x21, 1 << irq);
            p.write(0x20, 0x60 + irq);
            p.write(0x21, 0);
        }
    }

    #[test]
    fn timer_interrupts_arrive_and_wait_for_eoi() {
        let mut p = initialised();
        assert!(!p.pending());
        p.pulse(0);
        assert!(p.pending());
        assert_eq!(p.acknowledge(), Some(0x30));
        p.pulse(0);
        assert_eq!(p.acknowledge(), None, "line 0 is in service until EOI");
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x30), "the request latched meanwhile");
        p.write(0x20, 0x20);
        assert!(!p.pending());
    }

    #[test]
    fn priority_masks_and_the_cascade() {
        let mut p = initialised();
        p.pulse(4);
        p.pulse(1);
        assert_eq!(p.acknowledge(), Some(0x31), "line 1 outranks line 4");
        p.pulse(12);
        assert_eq!(p.acknowledge(), None, "line 12 (via 2) ranks below 1, in service");
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x3c), "slave line 4 through master line 2");
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), Some(0x34));
        p.write(0x20, 0x64); // specific EOI for line 4
        p.write(0x21, 0x01); // mask the timer
        p.pulse(0);
        assert!(!p.pending());
        assert!(p.masked(0) && !p.masked(4));
        p.write(0x21, 0x00);
        assert_eq!(p.acknowledge(), Some(0x30), "a masked request waits, then arrives");
        p.write(0x21, 0x04);
        assert!(p.masked(9), "masking the cascade masks the slave's lines");
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
        p.set_level_triggered(200, true);
        assert!(!p.pending());
    }

    #[test]
    fn the_elcr_keeps_the_system_lines_edge_triggered() {
        let mut p = initialised();
        p.write(0x4d0, 0xff);
        p.write(0x4d1, 0xff);
        assert_eq!((p.read(0x4d0), p.read(0x4d1)), (0xf8, 0xde), "0, 1, 2, 8 and 13 stay edge");
        p.write(0x4d0, 0x20);
        p.write(0x4d1, 0x0c);
        assert_eq!((p.read(0x4d0), p.read(0x4d1)), (0x20, 0x0c), "IRQs 5, 10 and 11 level");
        p.set_level_triggered(9, true);
        p.set_level_triggered(0, true);
        p.set_level_triggered(11, false);
        assert_eq!((p.read(0x4d0), p.read(0x4d1)), (0x20, 0x06));
    }

    #[test]
    fn a_level_triggered_line_held_high_is_serviced_again_after_eoi() {
        let mut p = initialised();
        p.write(0x4d0, 1 << 5);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), Some(0x35));
        assert_eq!(p.acknowledge(), None, "in service");
        linux_eoi(&mut p, 5);
        assert_eq!(p.acknowledge(), Some(0x35), "still high: requested again");
        // The device lets go before the EOI: nothing more.
        p.set_irq(5, false);
        linux_eoi(&mut p, 5);
        assert!(!p.pending());
        // A level request that goes away before it is acknowledged is gone (an edge stays).
        p.set_irq(5, true);
        p.set_irq(5, false);
        p.pulse(6);
        assert_eq!(p.acknowledge(), Some(0x36));
        linux_eoi(&mut p, 6);
        assert_eq!(p.acknowledge(), None);
        // ICW1 with LTIM: every line level-triggered (the timer's edge alone is lost).
        for (port, value) in [(0x20, 0x19), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)] {
            p.write(port, value);
        }
        p.pulse(0);
        assert!(!p.pending());
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), Some(0x30));
    }

    #[test]
    fn a_level_triggered_slave_line_reaches_the_master_again_after_eoi() {
        let mut p = initialised();
        p.write(0x4d1, 1 << 3); // IRQ 11
        p.set_irq(11, true);
        assert_eq!(p.acknowledge(), Some(0x3b));
        linux_eoi(&mut p, 11);
        assert_eq!(p.acknowledge(), Some(0x3b), "held high through the cascade");
        p.set_irq(11, false);
        linux_eoi(&mut p, 11);
        assert!(!p.pending());
        // Two slave lines at once: both arrive, in priority order, each after an EOI.
        p.pulse(12);
        p.pulse(9);
        assert_eq!(p.acknowledge(), Some(0x39));
        linux_eoi(&mut p, 9);
        assert_eq!(p.acknowledge(), Some(0x3c));
        linux_eoi(&mut p, 12);
        assert!(!p.pending());
    }

    #[test]
    fn a_request_that_vanishes_through_the_cascade_is_spurious_irq_7() {
        let mut p = initialised();
        p.write(0x4d1, 1 << 2); // IRQ 10, level
        p.set_irq(10, true);
        assert!(p.pending());
        // The slave's output fell, but the master latched the edge on line 2.
        p.set_irq(10, false);
        assert_eq!(p.acknowledge(), Some(0x37), "spurious: line 7 vector, nothing in service");
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), 0, "nothing in service");
    }

    /// Random writes and reads on every port of the pair and the ELCR, line changes and
    /// acknowledgements: nothing panics, and whatever is acknowledged is a vector from the
    /// programmed bases (or a spurious line 7).
    #[test]
    fn random_port_traffic_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ports = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22, 0x4d2];
        for _ in 0..20 {
            let mut p = initialised();
            for _ in 0..5000 {
                let r = next();
                let port = ports[(r % ports.len() as u64) as usize];
                match (r >> 8) % 6 {
                    0 => p.write(port, (r >> 16) as u8),
                    1 => {
                        p.read(port);
                    }
                    2 => p.set_irq((r >> 16) as u8 % 20, r & (1 << 40) != 0),
                    3 => p.pulse((r >> 16) as u8 % 16),
                    4 => {
                        p.acknowledge();
                    }
                    _ => {
                        p.set_level_triggered((r >> 16) as u8 % 20, r & (1 << 41) != 0);
                    }
                }
                let _ = p.pending();
            }
        }
    }
}
