//! The 8254 programmable interval timer (ports 0x40-0x43) and the chipset's port 0x61
//! ("port B": channel 2's gate, the speaker enable, channel 2's output), as operating
//! systems use them: channel 0 drives IRQ 0 (periodic in modes 2 and 3, one-shot in modes 0
//! and 4), channel 2 gated by port 0x61 bit 0 with its output readable at bit 5 (how Linux
//! calibrates the TSC), channel 1 counts but drives nothing. All six modes, binary and BCD
//! counting, low/high/both byte access, the counter-latch and read-back commands.
//!
//! Time is what the VMM says it is ([`Pit::advance`]); the model turns it into input clock
//! ticks (1.193182 MHz) and counts them per channel. A count takes effect at once (real
//! counters load it on the next clock), and in modes 2 and 3 a count written while the
//! channel runs takes effect at the end of the current period.

/// The PIT's input clock in Hz.
pub const CLOCK_HZ: u64 = 1_193_182;

/// Port offsets from [`port::BASE`].
pub mod port {
    /// The first port, 0x40.
    pub const BASE: u16 = 0x40;
    /// The last port, 0x43.
    pub const LAST: u16 = 0x43;
    /// Channel 0 counter (IRQ 0).
    pub const CHANNEL0: u16 = 0;
    /// Channel 1 counter (DRAM refresh on old PCs; drives nothing here).
    pub const CHANNEL1: u16 = 1;
    /// Channel 2 counter (gated by port 0x61).
    pub const CHANNEL2: u16 = 2;
    /// Mode/command register (write only).
    pub const COMMAND: u16 = 3;
}

/// Port 0x61 and its bits.
pub mod port_b {
    /// The port.
    pub const PORT: u16 = 0x61;
    /// Channel 2's gate (read/write).
    pub const GATE2: u8 = 1 << 0;
    /// Speaker data enable (read/write; there is no speaker).
    pub const SPEAKER: u8 = 1 << 1;
    /// The bits a write keeps: gate, speaker, and the parity and I/O-check enables.
    pub const WRITABLE: u8 = 0x0f;
    /// Toggles every 15.09 µs (the old refresh request); read only.
    pub const REFRESH: u8 = 1 << 4;
    /// Channel 2's output; read only.
    pub const OUT2: u8 = 1 << 5;
}

/// Input clock ticks per refresh toggle (15.09 µs).
const REFRESH_TICKS: u64 = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Low,
    High,
    LowThenHigh,
}

impl Access {
    fn bits(self) -> u8 {
        match self {
            Access::Low => 1,
            Access::High => 2,
            Access::LowThenHigh => 3,
        }
    }
}

/// One counter.
#[derive(Clone, Debug)]
struct Channel {
    /// 0-5 (6 and 7 are written as 2 and 3).
    mode: u8,
    access: Access,
    bcd: bool,
    /// The count in force (1..=65536, or 1..=10000 in BCD; 0 as written means the most).
    reload: u32,
    /// A count written in mode 2 or 3 while counting, for the next period.
    next_reload: Option<u32>,
    /// Writing low then high: the low byte waits here.
    write_low: Option<u8>,
    /// Reading low then high: true after the low byte was read.
    read_high_next: bool,
    /// A latched count, if the guest latched one.
    latched_count: Option<u16>,
    /// A latched status byte (read-back), read before any count.
    latched_status: Option<u8>,
    /// A count has been written since the control word.
    loaded: bool,
    /// Modes 1 and 5: the gate rose since the count was written.
    triggered: bool,
    /// Input clocks counted since the count was loaded (or the trigger).
    elapsed: u64,
    /// The gate input (channels 0 and 1: always high).
    gate: bool,
    /// A count written is not yet in the counter (status bit 6).
    null_count: bool,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            mode: 0,
            access: Access::LowThenHigh,
            bcd: false,
            reload: 65536,
            next_reload: None,
            write_low: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            loaded: false,
            triggered: false,
            elapsed: 0,
            gate,
            null_count: false,
        }
    }

    /// The counter's modulus: 65536 binary, 10000 in BCD.
    fn modulus(&self) -> u64 {
        if self.bcd { 10_000 } else { 65_536 }
    }

    /// Whether the counter is counting now.
    fn counting(&self) -> bool {
        self.loaded
            && match self.mode {
                0 | 2 | 3 | 4 => self.gate,
                _ => self.triggered,
            }
    }

    /// The count as the counter holds it (binary, 0..modulus).
    fn count(&self) -> u16 {
        let n = u64::from(self.reload);
        let e = self.elapsed;
        let value = if !self.loaded || (matches!(self.mode, 1 | 5) && !self.triggered) {
            n
        } else {
            match self.mode {
                2 => n - e % n,
                // Counting by two, twice a period.
                3 => n - (2 * (e % n)) % n,
                _ => (n + self.modulus() - e % self.modulus()) % self.modulus(),
            }
        };
        (value % self.modulus()) as u16
    }

    /// The output pin.
    fn out(&self) -> bool {
        let n = u64::from(self.reload);
        let e = self.elapsed;
        if !self.loaded {
            // After the control word: low in mode 0, high in the others.
            return self.mode != 0;
        }
        match self.mode {
            0 => e >= n,
            1 => !self.triggered || e >= n,
            2 => !self.gate || n == 1 || e % n != n - 1,
            3 => !self.gate || e % n < n.div_ceil(2),
            4 => e != n,
            _ => !self.triggered || e != n,
        }
    }

    /// Rising edges of the output among the clocks `(before, after]` since loading (the
    /// interrupts channel 0 raises), for the mode and count in force.
    fn rising_edges(&self, before: u64, after: u64) -> u64 {
        let n = u64::from(self.reload);
        match self.mode {
            0 | 1 => u64::from(before < n && n <= after),
            2 | 3 => after / n - before / n,
            _ => u64::from(before <= n && n < after),
        }
    }

    /// Clocks from now to the next rising edge of the output, if one is coming.
    fn clocks_to_edge(&self) -> Option<u64> {
        if !self.counting() {
            return None;
        }
        let n = u64::from(self.reload);
        let e = self.elapsed;
        match self.mode {
            0 | 1 => (e < n).then(|| n - e),
            2 | 3 => Some(n - e % n),
            _ => (e <= n).then(|| n + 1 - e),
        }
    }

    /// Lets `clocks` input clocks pass; returns the output's rising edges.
    fn advance(&mut self, clocks: u64) -> u64 {
        if clocks == 0 {
            return 0;
        }
        if self.loaded {
            // The count written has reached the counter.
            self.null_count = false;
        }
        if !self.counting() {
            return 0;
        }
        let mut edges = 0;
        let mut left = clocks;
        if let Some(next) = self.next_reload {
            // Modes 2 and 3: the new count takes over at the end of this period.
            let n = u64::from(self.reload);
            let to_end = n - self.elapsed % n;
            if left < to_end {
                self.elapsed += left;
                return 0;
            }
            edges += 1;
            left -= to_end;
            self.reload = next;
            self.next_reload = None;
            self.elapsed = 0;
        }
        let before = self.elapsed;
        self.elapsed = before.saturating_add(left);
        edges + self.rising_edges(before, self.elapsed)
    }

    /// The status byte of the read-back command.
    fn status(&self) -> u8 {
        (u8::from(self.out()) << 7)
            | (u8::from(self.null_count) << 6)
            | (self.access.bits() << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }

    fn latch_count(&mut self) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.count());
            self.read_high_next = false;
        }
    }

    fn control(&mut self, value: u8) {
        self.access = match (value >> 4) & 3 {
            1 => Access::Low,
            2 => Access::High,
            _ => Access::LowThenHigh,
        };
        // Modes 6 and 7 are aliases of 2 and 3.
        let mode = (value >> 1) & 7;
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = value & 1 != 0;
        // The channel waits for a count; its output goes to the mode's initial level.
        self.loaded = false;
        self.triggered = false;
        self.next_reload = None;
        self.elapsed = 0;
        self.write_low = None;
        self.read_high_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_count = true;
    }

    fn read(&mut self) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let value = self.latched_count.unwrap_or_else(|| self.count());
        let value = if self.bcd { to_bcd(value) } else { value };
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
            self.latched_count = None;
        }
        byte
    }

    fn write(&mut self, value: u8) {
        let written = match self.access {
            Access::Low => Some(u16::from(value)),
            Access::High => Some(u16::from(value) << 8),
            Access::LowThenHigh => match self.write_low.take() {
                None => {
                    self.write_low = Some(value);
                    if self.mode == 0 {
                        // Mode 0: the first byte stops the count (and sets the output low).
                        self.loaded = false;
                    }
                    None
                }
                Some(low) => Some(u16::from(low) | u16::from(value) << 8),
            },
        };
        let Some(written) = written else { return };
        let count = if self.bcd { u32::from(from_bcd(written)) } else { u32::from(written) };
        let count = if count == 0 { self.modulus() as u32 } else { count };
        self.null_count = true;
        if matches!(self.mode, 2 | 3) && self.counting() {
            self.next_reload = Some(count);
            return;
        }
        self.reload = count;
        self.next_reload = None;
        self.loaded = true;
        self.triggered = false;
        self.elapsed = 0;
    }

    fn set_gate(&mut self, high: bool) {
        let rising = high && !self.gate;
        self.gate = high;
        if rising && self.loaded {
            match self.mode {
                // Modes 1 and 5 start (again) on a rising gate; 2 and 3 reload.
                1 | 5 => {
                    self.triggered = true;
                    self.elapsed = 0;
                }
                2 | 3 => {
                    if let Some(next) = self.next_reload.take() {
                        self.reload = next;
                    }
                    self.elapsed = 0;
                }
                _ => {}
            }
        }
    }
}

/// Four BCD digits from a binary value below 10000.
fn to_bcd(value: u16) -> u16 {
    let v = value % 10_000;
    ((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)
}

/// A binary value from four BCD digits (a nibble above 9 counts as its value, as a
/// careless write gives; the result stays below 10000).
fn from_bcd(value: u16) -> u16 {
    let digit = |shift: u16| (value >> shift) & 0xf;
    (digit(12) * 1000 + digit(8) * 100 + digit(4) * 10 + digit(0)) % 10_000
}

/// The timer and port 0x61.
#[derive(Clone, Debug)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61's writable bits.
    port_b: u8,
    /// Input clocks since reset (for the refresh toggle).
    clock: u64,
    /// Leftover time smaller than one input clock, in units of 1/CLOCK_HZ ns.
    remainder: u64,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// A timer whose channels wait for counts (as after reset, before firmware programs
    /// it), channel 2's gate low.
    pub fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            clock: 0,
            remainder: 0,
        }
    }

    /// Channel 0's count in force, in input clocks.
    pub fn period(&self) -> u32 {
        self.channels[0].reload
    }

    /// Whether channel 0 is counting.
    pub fn running(&self) -> bool {
        self.channels[0].counting()
    }

    /// A guest `in` from port 0x40 + `offset` (the command port reads 0xff).
    pub fn read(&mut self, offset: u16) -> u8 {
        match self.channels.get_mut(usize::from(offset)) {
            Some(channel) => channel.read(),
            None => 0xff,
        }
    }

    /// A guest `out` to port 0x40 + `offset`.
    pub fn write(&mut self, offset: u16, value: u8) {
        match offset {
            port::COMMAND => self.command(value),
            _ => {
                if let Some(channel) = self.channels.get_mut(usize::from(offset)) {
                    channel.write(value);
                }
            }
        }
    }

    fn command(&mut self, value: u8) {
        let select = usize::from(value >> 6);
        if select == 3 {
            // Read-back: bits 3-1 pick channels 2-0; bit 5 clear latches counts, bit 4
            // clear latches statuses.
            for (i, channel) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x10 == 0 && channel.latched_status.is_none() {
                    channel.latched_status = Some(channel.status());
                }
                if value & 0x20 == 0 {
                    channel.latch_count();
                }
            }
            return;
        }
        let channel = &mut self.channels[select];
        if value & 0x30 == 0 {
            channel.latch_count();
        } else {
            channel.control(value);
        }
    }

    /// A guest `in` from port 0x61.
    pub fn read_port_b(&self) -> u8 {
        let refresh = if (self.clock / REFRESH_TICKS) % 2 == 1 { port_b::REFRESH } else { 0 };
        let out2 = if self.channels[2].out() { port_b::OUT2 } else { 0 };
        self.port_b | refresh | out2
    }

    /// A guest `out` to port 0x61: channel 2's gate and the speaker enable.
    pub fn write_port_b(&mut self, value: u8) {
        self.port_b = value & port_b::WRITABLE;
        self.channels[2].set_gate(value & port_b::GATE2 != 0);
    }

    /// Lets `ns` nanoseconds pass; returns how many timer interrupts (IRQ 0 edges) that
    /// time produced.
    pub fn advance(&mut self, ns: u64) -> u64 {
        let total = u128::from(ns) * u128::from(CLOCK_HZ) + u128::from(self.remainder);
        let clocks = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
        self.remainder = (total % 1_000_000_000) as u64;
        self.clock = self.clock.wrapping_add(clocks);
        let edges = self.channels[0].advance(clocks);
        self.channels[1].advance(clocks);
        self.channels[2].advance(clocks);
        edges
    }

    /// Nanoseconds until channel 0's next interrupt, if one is coming (for the VMM's idle
    /// guest): advancing that long raises it.
    pub fn next_interrupt_ns(&self) -> Option<u64> {
        let clocks = self.channels[0].clocks_to_edge()?;
        let needed = (u128::from(clocks) * 1_000_000_000).saturating_sub(u128::from(self.remainder));
        Some(u64::try_from(needed.div_ceil(u128::from(CLOCK_HZ))).unwrap_or(u64::MAX))
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

    fn read16(pit: &mut Pit, offset: u16) -> u16 {
        u16::from(pit.read(offset)) | u16::from(pit.read(offset)) << 8
    }

    /// Nanoseconds for `clocks` input clocks, rounded up.
    fn ns(clocks: u64) -> u64 {
        (clocks * 1_000_000_000).div_ceil(CLOCK_HZ)
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
    fn mode_0_fires_once_and_the_counter_wraps() {
        let mut pit = Pit::new();
        pit.write(port::COMMAND, 0x30);
        pit.write(port::CHANNEL0, 0xe8);
        pit.write(port::CHANNEL0, 0x03); // 1000 clocks
        assert_eq!(pit.next_interrupt_ns(), Some(ns(1000)));
        assert_eq!(pit.advance(ns(999)), 0);
        assert_eq!(pit.advance(ns(1)), 1);
        assert_eq!(pit.advance(10_000_000), 0);
        assert_eq!(pit.next_interrupt_ns(), None);
        // Linux's shutdown: mode 0 again without a count stops the channel.
        pit.write(port::COMMAND, 0x30);
        assert!(!pit.running());
        assert_eq!(pit.advance(1_000_000_000), 0);
    }

    /// Linux's clockevent in one-shot mode: mode 4 (0x38) once, then each next event is a
    /// count written low-high; each count gives one interrupt, one clock after it expires.
    #[test]
    fn mode_4_is_linux_one_shot_clockevent() {
        let mut pit = Pit::new();
        pit.write(port::COMMAND, 0x38);
        assert_eq!(pit.next_interrupt_ns(), None, "no count yet");
        for delta in [0x7fffu16, 0x0f, 1193] {
            pit.write(port::CHANNEL0, delta as u8);
            pit.write(port::CHANNEL0, (delta >> 8) as u8);
            let wait = pit.next_interrupt_ns().unwrap();
            assert!(wait + ns(1) >= ns(u64::from(delta) + 1) && wait <= ns(u64::from(delta) + 1), "{wait}");
            assert_eq!(pit.advance(wait - 1), 0, "not before the count expires");
            assert_eq!(pit.advance(1), 1);
            assert_eq!(pit.advance(100_000_000), 0, "one interrupt per count");
        }
        // A count rewritten before it expires starts over.
        pit.write(port::CHANNEL0, 0xe8);
        pit.write(port::CHANNEL0, 0x03);
        pit.advance(ns(600));
        pit.write(port::CHANNEL0, 0xe8);
        pit.write(port::CHANNEL0, 0x03);
        assert_eq!(pit.advance(ns(600)), 0);
        assert_eq!(pit.advance(ns(402)), 1);
    }

    #[test]
    fn latched_counts_read_low_then_high() {
        let mut pit = periodic(100);
        pit.advance(5_000_000); // half a period: 5965 clocks in
        pit.write(port::COMMAND, 0x00);
        pit.advance(1_000_000); // the latch holds
        let count = read16(&mut pit, port::CHANNEL0);
        assert_eq!(count, 11932 - 5965);
        // Without a latch the count has moved on.
        let now = read16(&mut pit, port::CHANNEL0);
        assert!(now < count);
        assert_eq!(pit.read(port::COMMAND), 0xff, "the command port is write-only");
    }

    /// Linux's `pit_calibrate_tsc`: gate on, speaker off, channel 2 in mode 0 with a 50 ms
    /// count, then poll port 0x61 bit 5 until the output rises.
    #[test]
    fn channel_2_out_rises_at_port_0x61_when_its_mode_0_count_expires() {
        let mut pit = Pit::new();
        assert_eq!(pit.read_port_b() & port_b::GATE2, 0, "the gate starts low");
        pit.write_port_b((pit.read_port_b() & !port_b::SPEAKER) | port_b::GATE2);
        pit.write(port::COMMAND, 0xb0);
        let latch = (CLOCK_HZ / 20) as u16; // 50 ms
        pit.write(port::CHANNEL2, latch as u8);
        pit.write(port::CHANNEL2, (latch >> 8) as u8);
        assert_eq!(pit.read_port_b() & port_b::OUT2, 0, "mode 0: low while counting");
        let mut polls = 0;
        while pit.read_port_b() & port_b::OUT2 == 0 {
            pit.advance(100_000);
            polls += 1;
        }
        assert_eq!(polls, 500, "50 ms in 100 µs steps");
        assert_eq!(pit.advance(1_000_000_000), 0, "channel 2 raises no IRQ 0");
        // With the gate low, mode 0 holds its count.
        pit.write(port::CHANNEL2, 0x00);
        pit.write(port::CHANNEL2, 0x10);
        pit.write_port_b(0);
        pit.advance(10_000_000);
        assert_eq!(read16(&mut pit, port::CHANNEL2), 0x1000);
        assert_eq!(pit.read_port_b() & port_b::OUT2, 0);
        pit.write_port_b(port_b::GATE2);
        pit.advance(ns(0x800));
        assert!((0x7ff..=0x800).contains(&read16(&mut pit, port::CHANNEL2)));
    }

    /// Linux's `quick_pit_calibrate`: channel 2 in mode 0 from 0xffff, read low and high
    /// bytes without latching; the high byte steps down once per 256 clocks.
    #[test]
    fn channel_2_counts_down_through_its_high_byte() {
        let mut pit = Pit::new();
        pit.write_port_b(port_b::GATE2);
        pit.write(port::COMMAND, 0xb0);
        pit.write(port::CHANNEL2, 0xff);
        pit.write(port::CHANNEL2, 0xff);
        let mut seen = [0u8; 4];
        for (i, msb) in seen.iter_mut().enumerate() {
            pit.read(port::CHANNEL2);
            *msb = pit.read(port::CHANNEL2);
            if i < 3 {
                pit.advance(ns(256));
            }
        }
        assert_eq!(seen, [0xff, 0xfe, 0xfd, 0xfc]);
        // Past zero the counter wraps and goes on; the output stays high.
        pit.advance(ns(0xfd00));
        assert_eq!(pit.read_port_b() & port_b::OUT2, port_b::OUT2);
        assert!(read16(&mut pit, port::CHANNEL2) > 0xf000);
    }

    #[test]
    fn square_wave_output_and_gate_reload() {
        let mut pit = Pit::new();
        pit.write_port_b(port_b::GATE2);
        pit.write(port::COMMAND, 0xb6); // channel 2, lo/hi, mode 3
        pit.write(port::CHANNEL2, 100);
        pit.write(port::CHANNEL2, 0);
        let mut highs = 0;
        for _ in 0..100 {
            if pit.read_port_b() & port_b::OUT2 != 0 {
                highs += 1;
            }
            pit.advance(ns(1));
        }
        assert!((45..=55).contains(&highs), "half high: {highs}");
        // The gate low forces the output high; rising again restarts the period.
        pit.write_port_b(0);
        assert_ne!(pit.read_port_b() & port_b::OUT2, 0);
        pit.write_port_b(port_b::GATE2);
        assert_eq!(read16(&mut pit, port::CHANNEL2), 100);
    }

    #[test]
    fn a_periodic_count_written_while_running_takes_over_at_the_period_end() {
        let mut pit = periodic(1000); // 1194 clocks
        assert_eq!(pit.advance(ns(500)), 0);
        pit.write(port::CHANNEL0, 100);
        pit.write(port::CHANNEL0, 0);
        assert_eq!(pit.period(), 1194, "not yet");
        assert_eq!(pit.advance(ns(694)), 1, "the old period ends");
        assert_eq!(pit.period(), 100);
        assert_eq!(pit.advance(ns(1000)), 10);
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut pit = Pit::new();
        pit.write(port::COMMAND, 0x94); // channel 2, low byte only, mode 2
        pit.write(port::CHANNEL2, 0x40);
        pit.write(port::COMMAND, 0xc8); // read-back count and status of channel 2
        assert_eq!(
            pit.read(port::CHANNEL2),
            0x80 | 0x40 | 0x14,
            "OUT high, count not loaded, low byte, mode 2"
        );
        assert_eq!(pit.read(port::CHANNEL2), 0x40, "then the count");
        pit.write(port::COMMAND, 0xe2); // status only, channel 0 (never programmed)
        assert_eq!(pit.read(port::CHANNEL0) & 0x40, 0, "no count pending");
        // Counter latch of channel 1 in BCD mode 2.
        pit.write(port::COMMAND, 0x75); // channel 1, lo/hi, mode 2, BCD
        pit.write(port::CHANNEL1, 0x00);
        pit.write(port::CHANNEL1, 0x00); // 0 is 10000 in BCD
        pit.advance(ns(1));
        pit.write(port::COMMAND, 0x40);
        assert_eq!(read16(&mut pit, port::CHANNEL1), 0x9999);
        pit.write(port::COMMAND, 0xe4); // read-back status of channel 1
        assert_eq!(pit.read(port::CHANNEL1) & 0x3f, 0x35);
    }

    /// Random bytes to every port, random time steps: no panic, and the next interrupt
    /// the timer announces does arrive.
    #[test]
    fn random_programming_never_panics() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50 {
            let mut pit = Pit::new();
            for _ in 0..3000 {
                let r = next();
                match r % 5 {
                    0 => pit.write((r >> 8) as u16 % 5, (r >> 16) as u8),
                    1 => {
                        pit.read((r >> 8) as u16 % 5);
                    }
                    2 => pit.write_port_b((r >> 8) as u8),
                    3 => {
                        pit.read_port_b();
                    }
                    _ => {
                        pit.advance(if r & 1 << 40 != 0 { r >> 44 } else { (r >> 8) % 50_000 });
                    }
                }
                if let Some(wait) = pit.next_interrupt_ns()
                    && wait < 200_000_000
                {
                    assert!(pit.advance(wait) >= 1, "announced in {wait} ns, did not come");
                }
            }
        }
    }
}
