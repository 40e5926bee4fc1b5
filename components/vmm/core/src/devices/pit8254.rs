//! An 8254 programmable interval timer, channel 0 (the one wired to IRQ 0), as far as a
//! guest needs it for periodic timer interrupts: the mode/command port (0x43), the counter
//! port (0x40) with low/high/both access, modes 2 (rate generator) and 3 (square wave),
//! which both interrupt once per period, one-shot mode 0, and counter latching. Time is
//! what the VMM says it is ([`Pit::advance`]); the model turns it into timer ticks.
//! Channels 1 and 2 (DRAM refresh, PC speaker) read as 0 and ignore writes.

/// The PIT's input clock in Hz.
pub const CLOCK_HZ: u64 = 1_193_182;

/// Port offsets from 0x40.
pub mod port {
    /// Channel 0 counter.
    pub const CHANNEL0: u16 = 0;
    /// Mode/command register (write only).
    pub const COMMAND: u16 = 3;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Low,
    High,
    LowThenHigh,
}

/// Channel 0's state.
#[derive(Clone, Debug)]
pub struct Pit {
    mode: u8,
    access: Access,
    /// Reload value written by the guest (0 means 65536).
    reload: u32,
    /// Writing low then high: the low byte waits here.
    write_low: Option<u8>,
    /// Reading low then high: true after the low byte was read.
    read_high_next: bool,
    /// A latched count, if the guest latched one.
    latched: Option<u16>,
    /// Whether the counter runs (after its reload value is written).
    running: bool,
    /// Input clock ticks into the current period.
    phase: u64,
    /// Leftover nanoseconds smaller than one input clock tick.
    remainder_ns: u64,
    /// Mode 0 fired its one interrupt.
    fired: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// A stopped timer (as after reset, before firmware programs it).
    pub fn new() -> Self {
        Self {
            mode: 0,
            access: Access::LowThenHigh,
            reload: 65536,
            write_low: None,
            read_high_next: false,
            latched: None,
            running: false,
            phase: 0,
            remainder_ns: 0,
            fired: false,
        }
    }

    /// The period in input clock ticks.
    pub fn period(&self) -> u32 {
        self.reload
    }

    /// Whether it is counting.
    pub fn running(&self) -> bool {
        self.running
    }

    fn count(&self) -> u16 {
        if !self.running {
            return self.reload as u16;
        }
        (u64::from(self.reload) - self.phase % u64::from(self.reload)) as u16
    }

    /// A guest `in` from port 0x40 + `offset`.
    pub fn read(&mut self, offset: u16) -> u8 {
        if offset != port::CHANNEL0 {
            return 0;
        }
        let value = self.latched.unwrap_or_else(|| self.count());
        let byte = match self.access {
            Access::Low => value as u8,
            Access::High => (value >> 8) as u8,
            Access::LowThenHigh => {
                let high = self.read_high_next;
                self.read_high_next = !high;
                if high { (value >> 8) as u8 } else { value as u8 }
            }
        };
        // A latch holds until it has been read completely.
        if self.access != Access::LowThenHigh || !self.read_high_next {
            self.latched = None;
        }
        byte
    }

    /// A guest `out` to port 0x40 + `offset`.
    pub fn write(&mut self, offset: u16, value: u8) {
        match offset {
            port::COMMAND => {
                if value >> 6 != 0 {
                    return; // channels 1 and 2, or read-back: not modelled
                }
                match (value >> 4) & 3 {
                    0 => {
                        if self.latched.is_none() {
                            self.latched = Some(self.count());
                        }
                    }
                    access => {
                        self.access = match access {
                            1 => Access::Low,
                            2 => Access::High,
                            _ => Access::LowThenHigh,
                        };
                        // Modes 6 and 7 are aliases of 2 and 3.
                        let mode = (value >> 1) & 7;
                        self.mode = if mode >= 6 { mode - 4 } else { mode };
                        self.running = false;
                        self.write_low = None;
                        self.read_high_next = false;
                        self.latched = None;
                    }
                }
            }
            port::CHANNEL0 => {
                let reload = match self.access {
                    Access::Low => Some(u32::from(value)),
                    Access::High => Some(u32::from(value) << 8),
                    Access::LowThenHigh => match self.write_low.take() {
                        None => {
                            self.write_low = Some(value);
                            None
                        }
                        Some(low) => Some(u32::from(low) | u32::from(value) << 8),
                    },
                };
                if let Some(r) = reload {
                    self.reload = if r == 0 { 65536 } else { r };
                    self.running = true;
                    self.phase = 0;
                    self.fired = false;
                }
            }
            _ => {}
        }
    }

    /// Lets `ns` nanoseconds pass; returns how many timer interrupts (IRQ 0 edges) that
    /// time produced.
    pub fn advance(&mut self, ns: u64) -> u64 {
        if !self.running {
            return 0;
        }
        let total = u128::from(ns) * u128::from(CLOCK_HZ) + u128::from(self.remainder_ns);
        let ticks = (total / 1_000_000_000) as u64;
        self.remainder_ns = (total % 1_000_000_000) as u64;
        let period = u64::from(self.reload);
        let before = self.phase;
        self.phase = self.phase.saturating_add(ticks);
        match self.mode {
            2 | 3 => self.phase / period - before / period,
            0 if !self.fired && self.phase >= period => {
                self.fired = true;
                1
            }
            _ => 0,
        }
    }

    /// Nanoseconds until the next interrupt, if one is coming (for the VMM's timer).
    pub fn next_interrupt_ns(&self) -> Option<u64> {
        if !self.running || (self.mode == 0 && self.fired) || !matches!(self.mode, 0 | 2 | 3) {
            return None;
        }
        let period = u64::from(self.reload);
        let left = period - self.phase % period;
        Some((u128::from(left) * 1_000_000_000).div_ceil(u128::from(CLOCK_HZ)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs channel 0 as an OS does for `hz` interrupts per second (mode 2, lo/hi).
    fn periodic(hz: u32) -> Pit {
        let mut pit = Pit::new();
        let divisor = (CLOCK_HZ as u32).div_ceil(hz) as u16;
        pit.write(port::COMMAND, 0x34);
        pit.write(port::CHANNEL0, divisor as u8);
        pit.write(port::CHANNEL0, (divisor >> 8) as u8);
        pit
    }

    #[test]
    fn a_100_hz_timer_ticks_100_times_a_second() {
        let mut pit = periodic(100);
        assert_eq!(pit.period(), 11932);
        let mut ticks = 0;
        for _ in 0..1000 {
            ticks += pit.advance(1_000_000);
        }
        assert_eq!(ticks, 99, "11932 clocks per tick: 1 s holds 99.99 periods");
        ticks += pit.advance(1_000_000);
        assert_eq!(ticks, 100);
        assert!(pit.next_interrupt_ns().unwrap() <= 10_000_000);
    }

    #[test]
    fn nothing_before_the_reload_value_is_complete() {
        let mut pit = Pit::new();
        assert_eq!(pit.advance(1_000_000_000), 0);
        pit.write(port::COMMAND, 0x36);
        pit.write(port::CHANNEL0, 0x00);
        assert!(!pit.running(), "only the low byte so far");
        pit.write(port::CHANNEL0, 0x00);
        assert_eq!(pit.period(), 65536, "0 means 65536");
        assert_eq!(pit.advance(1_000_000_000), 18, "18.2 Hz, the BIOS rate");
    }

    #[test]
    fn one_shot_mode_fires_once() {
        let mut pit = Pit::new();
        pit.write(port::COMMAND, 0x30);
        pit.write(port::CHANNEL0, 0xe8);
        pit.write(port::CHANNEL0, 0x03); // 1000 clocks
        assert_eq!(pit.advance(1_000_000), 1);
        assert_eq!(pit.advance(10_000_000), 0);
        assert_eq!(pit.next_interrupt_ns(), None);
    }

    #[test]
    fn latched_counts_read_low_then_high() {
        let mut pit = periodic(100);
        pit.advance(5_000_000); // half a period: 5966 clocks in
        pit.write(port::COMMAND, 0x00);
        pit.advance(1_000_000); // the latch holds
        let low = pit.read(port::CHANNEL0);
        let high = pit.read(port::CHANNEL0);
        let count = u16::from(low) | u16::from(high) << 8;
        assert_eq!(count, 11932 - 5965);
        // Without a latch the count has moved on.
        let now = u16::from(pit.read(port::CHANNEL0)) | u16::from(pit.read(port::CHANNEL0)) << 8;
        assert!(now < count);
        assert_eq!(pit.read(2), 0, "channel 2 is not modelled");
    }
}
