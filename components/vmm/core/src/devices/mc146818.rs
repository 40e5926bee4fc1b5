//! The MC146818 real-time clock and its CMOS memory (index port 0x70, data port 0x71; bit 7
//! of the index masks NMIs, and there are none to mask). The clock runs on guest time from a
//! date the VMM sets (no host clock reaches it): seconds to century, BCD or binary and 12- or
//! 24-hour as register B says, the alarm, and the periodic, alarm and update-ended
//! interrupts on IRQ 8. Registers A-D as the chip has them, except that the
//! update-in-progress bit always reads clear (an update takes no guest time here, and every
//! read sees a consistent time). The other 114 bytes are CMOS memory, all zero at start: no
//! firmware filled in the equipment or memory-size bytes, and Linux takes its memory map
//! from the boot protocol.
//!
//! Departures from the chip: the day of the week is recomputed from the date at each
//! update, and a time register written with an impossible value (minute 75, month 13) is
//! brought into range at the next update rather than counted as the chip would.

/// The ports.
pub mod port {
    /// Index (write; bit 7 masks NMIs).
    pub const INDEX: u16 = 0x70;
    /// Data of the register the index names.
    pub const DATA: u16 = 0x71;
}

/// Register numbers.
pub mod reg {
    /// Seconds.
    pub const SECONDS: u8 = 0x00;
    /// Seconds alarm.
    pub const SECONDS_ALARM: u8 = 0x01;
    /// Minutes.
    pub const MINUTES: u8 = 0x02;
    /// Minutes alarm.
    pub const MINUTES_ALARM: u8 = 0x03;
    /// Hours (bit 7 is PM in 12-hour mode).
    pub const HOURS: u8 = 0x04;
    /// Hours alarm.
    pub const HOURS_ALARM: u8 = 0x05;
    /// Day of the week (1 is Sunday).
    pub const DAY_OF_WEEK: u8 = 0x06;
    /// Day of the month.
    pub const DAY_OF_MONTH: u8 = 0x07;
    /// Month.
    pub const MONTH: u8 = 0x08;
    /// Year within the century.
    pub const YEAR: u8 = 0x09;
    /// Register A: update in progress (bit 7), divider (6-4), periodic rate (3-0).
    pub const A: u8 = 0x0a;
    /// Register B: set, interrupt enables, data mode, 24-hour, daylight saving.
    pub const B: u8 = 0x0b;
    /// Register C: interrupt flags (read only; reading clears them).
    pub const C: u8 = 0x0c;
    /// Register D: valid RAM and time (read only).
    pub const D: u8 = 0x0d;
    /// The century (CMOS memory by convention, kept by the clock here).
    pub const CENTURY: u8 = 0x32;
}

/// Register A: the divider bits for the 32.768 kHz time base, running.
const A_DIVIDER_RUNNING: u8 = 0x20;
const A_DIVIDER: u8 = 0x70;
const A_RATE: u8 = 0x0f;
/// Register B bits.
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24_HOUR: u8 = 0x02;
/// Register C bits.
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
/// Register D: the RAM and time are valid (the battery is good).
const D_VALID: u8 = 0x80;

/// The time base: 32.768 kHz.
const TICKS_PER_SECOND: u64 = 32_768;
const SECONDS_PER_DAY: u64 = 86_400;

/// A date and time of day, as the chip counts them (binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// The full year (2025).
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
}

fn leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a (proleptic Gregorian) date.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The clock and CMOS memory.
#[derive(Clone, Debug)]
pub struct Rtc {
    /// The register the data port reaches.
    index: u8,
    /// Bit 7 of the last index write.
    nmi_masked: bool,
    /// CMOS memory (the bytes the clock does not keep itself).
    ram: [u8; 128],
    second: u8,
    minute: u8,
    /// 0-23.
    hour: u8,
    day_of_week: u8,
    day: u8,
    month: u8,
    /// Within the century.
    year: u8,
    century: u8,
    /// Seconds, minutes and hours alarm bytes as written (0xc0 and above: any value).
    alarm: [u8; 3],
    a: u8,
    b: u8,
    /// Interrupt flags (without IRQF, which is computed).
    c: u8,
    /// Time-base ticks counted since reset (while the divider runs).
    ticks: u64,
    /// Leftover time smaller than one tick, in units of 1/32768 ns.
    remainder: u64,
}

impl Rtc {
    /// A clock reading `start` (taken to be valid), as firmware leaves it: BCD, 24-hour,
    /// divider running, no periodic rate, no interrupts enabled.
    pub fn new(start: DateTime) -> Self {
        let mut rtc = Self {
            index: 0,
            nmi_masked: false,
            ram: [0; 128],
            second: 0,
            minute: 0,
            hour: 0,
            day_of_week: 1,
            day: 1,
            month: 1,
            year: 0,
            century: 20,
            alarm: [0; 3],
            a: A_DIVIDER_RUNNING,
            b: B_24_HOUR,
            c: 0,
            ticks: 0,
            remainder: 0,
        };
        rtc.set(start);
        rtc
    }

    /// Sets the clock to `time`.
    pub fn set(&mut self, time: DateTime) {
        self.century = (time.year / 100) as u8;
        self.year = (time.year % 100) as u8;
        self.month = time.month;
        self.day = time.day;
        self.hour = time.hour;
        self.minute = time.minute;
        self.second = time.second;
        self.normalise();
    }

    /// What the clock reads now.
    pub fn now(&self) -> DateTime {
        DateTime {
            year: u16::from(self.century) * 100 + u16::from(self.year),
            month: self.month,
            day: self.day,
            hour: self.hour,
            minute: self.minute,
            second: self.second,
        }
    }

    /// Whether the last index write masked NMIs.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    fn binary(&self) -> bool {
        self.b & B_BINARY != 0
    }

    fn encode(&self, value: u8) -> u8 {
        if self.binary() { value } else { (((u16::from(value) / 10) << 4) | (u16::from(value) % 10)) as u8 }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.binary() { value } else { (value >> 4) * 10 + (value & 0xf) }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.b & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        let twelve = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(twelve) | if hour >= 12 { 0x80 } else { 0 }
    }

    fn decode_hour(&self, value: u8) -> u8 {
        if self.b & B_24_HOUR != 0 {
            return self.decode(value);
        }
        self.decode(value & 0x7f) % 12 + if value & 0x80 != 0 { 12 } else { 0 }
    }

    /// Register C as read: the flags, with IRQF set if an enabled one is.
    fn flags(&self) -> u8 {
        let enabled = self.c & (self.b & (B_PIE | B_AIE | B_UIE));
        self.c | if enabled != 0 { C_IRQF } else { 0 }
    }

    /// The IRQ 8 line: high while an enabled interrupt flag is set (until register C is
    /// read).
    pub fn irq(&self) -> bool {
        self.flags() & C_IRQF != 0
    }

    /// A guest `in` from 0x70 + `offset`: the index port reads 0xff (it is write-only).
    pub fn read(&mut self, offset: u16) -> u8 {
        if offset != 1 {
            return 0xff;
        }
        match self.index {
            reg::SECONDS => self.encode(self.second),
            reg::MINUTES => self.encode(self.minute),
            reg::HOURS => self.encode_hour(self.hour),
            reg::SECONDS_ALARM => self.alarm[0],
            reg::MINUTES_ALARM => self.alarm[1],
            reg::HOURS_ALARM => self.alarm[2],
            reg::DAY_OF_WEEK => self.encode(self.day_of_week),
            reg::DAY_OF_MONTH => self.encode(self.day),
            reg::MONTH => self.encode(self.month),
            reg::YEAR => self.encode(self.year),
            reg::CENTURY => self.encode(self.century),
            reg::A => self.a,
            reg::B => self.b,
            reg::C => {
                let flags = self.flags();
                self.c = 0;
                flags
            }
            reg::D => D_VALID,
            other => self.ram[usize::from(other & 0x7f)],
        }
    }

    /// A guest `out` to 0x70 + `offset`.
    pub fn write(&mut self, offset: u16, value: u8) {
        if offset == 0 {
            self.index = value & 0x7f;
            self.nmi_masked = value & 0x80 != 0;
            return;
        }
        if offset != 1 {
            return;
        }
        match self.index {
            reg::SECONDS => self.second = self.decode(value),
            reg::MINUTES => self.minute = self.decode(value),
            reg::HOURS => self.hour = self.decode_hour(value),
            reg::SECONDS_ALARM => self.alarm[0] = value,
            reg::MINUTES_ALARM => self.alarm[1] = value,
            reg::HOURS_ALARM => self.alarm[2] = value,
            reg::DAY_OF_WEEK => self.day_of_week = self.decode(value),
            reg::DAY_OF_MONTH => self.day = self.decode(value),
            reg::MONTH => self.month = self.decode(value),
            reg::YEAR => self.year = self.decode(value),
            reg::CENTURY => self.century = self.decode(value),
            // Update in progress is read-only.
            reg::A => self.a = value & 0x7f,
            reg::B => {
                // Setting SET stops updates and clears the update interrupt enable.
                self.b = if value & B_SET != 0 { value & !B_UIE } else { value };
            }
            reg::C | reg::D => {}
            other => self.ram[usize::from(other & 0x7f)] = value,
        }
    }

    fn running(&self) -> bool {
        self.a & A_DIVIDER == A_DIVIDER_RUNNING
    }

    /// The periodic interrupt's period in time-base ticks, if one is selected.
    fn periodic_ticks(&self) -> Option<u64> {
        match self.a & A_RATE {
            0 => None,
            // Rates 1 and 2 repeat rates 8 and 9 with the 32.768 kHz time base.
            rate @ (1 | 2) => Some(1 << (rate + 6)),
            rate => Some(1 << (rate - 1)),
        }
    }

    /// Lets `ns` nanoseconds pass: the clock counts, and the periodic, update-ended and
    /// alarm flags are set as the time base passes their moments.
    pub fn advance(&mut self, ns: u64) {
        let total = u128::from(ns) * u128::from(TICKS_PER_SECOND) + u128::from(self.remainder);
        let ticks = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
        self.remainder = (total % 1_000_000_000) as u64;
        if ticks == 0 || !self.running() {
            return;
        }
        let before = self.ticks;
        self.ticks = before.saturating_add(ticks);
        if let Some(period) = self.periodic_ticks()
            && self.ticks / period != before / period
        {
            self.c |= C_PF;
        }
        let seconds = self.ticks / TICKS_PER_SECOND - before / TICKS_PER_SECOND;
        if seconds > 0 && self.b & B_SET == 0 {
            self.count_seconds(seconds);
            self.c |= C_UF;
        }
    }

    /// Nanoseconds until the IRQ 8 line next rises, if an enabled interrupt is coming and
    /// the line is low (while it is high, nothing more can be seen until register C is
    /// read).
    pub fn next_interrupt_ns(&self) -> Option<u64> {
        if self.irq() || !self.running() {
            return None;
        }
        let periodic = self.periodic_ticks().filter(|_| self.b & B_PIE != 0);
        let update = (self.b & (B_UIE | B_AIE) != 0 && self.b & B_SET == 0).then_some(TICKS_PER_SECOND);
        let ticks =
            [periodic, update].into_iter().flatten().map(|period| period - self.ticks % period).min()?;
        let needed = (u128::from(ticks) * 1_000_000_000).saturating_sub(u128::from(self.remainder));
        Some(u64::try_from(needed.div_ceil(u128::from(TICKS_PER_SECOND))).unwrap_or(u64::MAX))
    }

    /// Counts `seconds` update cycles, checking the alarm at each. A day or more is jumped
    /// over at once: every time of day comes by in it, so the alarm rang if it can ring.
    fn count_seconds(&mut self, seconds: u64) {
        if seconds >= SECONDS_PER_DAY {
            self.jump(seconds);
            if self.alarm_can_match() {
                self.c |= C_AF;
            }
            return;
        }
        for _ in 0..seconds {
            self.tick();
            if self.alarm_matches() {
                self.c |= C_AF;
            }
        }
    }

    fn alarm_matches(&self) -> bool {
        let matches = |alarm: u8, now: u8| alarm >= 0xc0 || alarm == now;
        matches(self.alarm[0], self.encode(self.second))
            && matches(self.alarm[1], self.encode(self.minute))
            && matches(self.alarm[2], self.encode_hour(self.hour))
    }

    /// Whether some time of day matches the alarm bytes.
    fn alarm_can_match(&self) -> bool {
        let any = |alarm: u8, values: core::ops::Range<u8>, encode: &dyn Fn(u8) -> u8| {
            alarm >= 0xc0 || values.map(encode).any(|v| v == alarm)
        };
        any(self.alarm[0], 0..60, &|v| self.encode(v))
            && any(self.alarm[1], 0..60, &|v| self.encode(v))
            && any(self.alarm[2], 0..24, &|v| self.encode_hour(v))
    }

    fn full_year(&self) -> i64 {
        i64::from(self.century) * 100 + i64::from(self.year)
    }

    /// One update cycle: one second on, carried as far as it goes.
    fn tick(&mut self) {
        self.normalise();
        if self.second < 59 {
            self.second += 1;
            return;
        }
        self.second = 0;
        if self.minute < 59 {
            self.minute += 1;
            return;
        }
        self.minute = 0;
        if self.hour < 23 {
            self.hour += 1;
            return;
        }
        self.hour = 0;
        if self.day < days_in_month(self.full_year(), self.month) {
            self.day += 1;
        } else {
            self.day = 1;
            if self.month < 12 {
                self.month += 1;
            } else {
                self.month = 1;
                if self.year < 99 {
                    self.year += 1;
                } else {
                    self.year = 0;
                    self.century = self.century.wrapping_add(1);
                }
            }
        }
        self.day_of_week = self.weekday();
    }

    /// `seconds` on at once.
    fn jump(&mut self, seconds: u64) {
        self.normalise();
        let days = days_from_civil(self.full_year(), self.month, self.day);
        let time = i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        let total = time.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX / 2));
        let (year, month, day) = civil_from_days(days.saturating_add(total / SECONDS_PER_DAY as i64));
        let rest = total % SECONDS_PER_DAY as i64;
        self.century = (year / 100) as u8;
        self.year = (year % 100) as u8;
        self.month = month;
        self.day = day;
        self.hour = (rest / 3600) as u8;
        self.minute = (rest / 60 % 60) as u8;
        self.second = (rest % 60) as u8;
        self.day_of_week = self.weekday();
    }

    /// Brings every time register into range (a guest may have written anything).
    fn normalise(&mut self) {
        self.second %= 60;
        self.minute %= 60;
        self.hour %= 24;
        self.year %= 100;
        self.month = self.month.clamp(1, 12);
        self.day = self.day.clamp(1, days_in_month(self.full_year(), self.month));
        self.day_of_week = self.weekday();
    }

    /// The day of the week of the date (1 is Sunday; 1970-01-01 was a Thursday).
    fn weekday(&self) -> u8 {
        let days = days_from_civil(self.full_year(), self.month.clamp(1, 12), self.day);
        ((days + 4).rem_euclid(7) + 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: DateTime = DateTime { year: 2025, month: 2, day: 28, hour: 23, minute: 59, second: 58 };

    fn read(rtc: &mut Rtc, register: u8) -> u8 {
        rtc.write(0, register);
        rtc.read(1)
    }

    fn write(rtc: &mut Rtc, register: u8, value: u8) {
        rtc.write(0, register);
        rtc.write(1, value);
    }

    /// Linux's `mc146818_get_time`: seconds, then register A's update-in-progress bit,
    /// seconds again, the rest, and register B for the format; BCD, 24-hour.
    #[test]
    fn linux_reads_a_consistent_bcd_time() {
        let mut rtc = Rtc::new(START);
        assert_eq!(read(&mut rtc, reg::A) & 0x80, 0, "no update in progress");
        assert_eq!(read(&mut rtc, reg::B) & (B_BINARY | B_24_HOUR), B_24_HOUR, "BCD, 24-hour");
        assert_eq!(read(&mut rtc, reg::D), 0x80, "valid, and bit 6 clear (rtc-cmos checks it)");
        let fields = [reg::SECONDS, reg::MINUTES, reg::HOURS, reg::DAY_OF_MONTH, reg::MONTH, reg::YEAR];
        let values: [u8; 6] = fields.map(|r| read(&mut rtc, r));
        assert_eq!(values, [0x58, 0x59, 0x23, 0x28, 0x02, 0x25]);
        assert_eq!(read(&mut rtc, reg::CENTURY), 0x20);
        assert_eq!(read(&mut rtc, reg::DAY_OF_WEEK), 6, "a Friday");
        // Two seconds on: March 1st (2025 is not a leap year), a Saturday.
        rtc.advance(2_000_000_000);
        let values: [u8; 6] = fields.map(|r| read(&mut rtc, r));
        assert_eq!(values, [0x00, 0x00, 0x00, 0x01, 0x03, 0x25]);
        assert_eq!(read(&mut rtc, reg::DAY_OF_WEEK), 7);
    }

    #[test]
    fn binary_and_twelve_hour_modes_and_writing_the_time() {
        let mut rtc = Rtc::new(START);
        write(&mut rtc, reg::B, B_SET | B_BINARY); // stop updates, binary, 12-hour
        assert_eq!(read(&mut rtc, reg::HOURS), 0x80 | 11, "11 PM");
        write(&mut rtc, reg::HOURS, 0x80 | 12); // 12 PM is noon
        write(&mut rtc, reg::MINUTES, 30);
        write(&mut rtc, reg::YEAR, 99);
        write(&mut rtc, reg::MONTH, 12);
        write(&mut rtc, reg::DAY_OF_MONTH, 31);
        rtc.advance(5_000_000_000);
        assert_eq!(rtc.now().hour, 12, "SET holds the clock");
        assert_eq!(read(&mut rtc, reg::C) & C_UF, 0, "and stops update cycles");
        write(&mut rtc, reg::B, B_24_HOUR | B_BINARY);
        rtc.advance(3_600_000_000_000 * 12);
        assert_eq!(
            rtc.now(),
            DateTime { year: 2100, month: 1, day: 1, hour: 0, minute: 30, second: 58 },
            "the century turns"
        );
        // Impossible values are brought into range at the next update.
        write(&mut rtc, reg::MONTH, 13);
        write(&mut rtc, reg::MINUTES, 200);
        assert_eq!(read(&mut rtc, reg::MINUTES), 200, "kept until the update");
        rtc.advance(1_000_000_000);
        let now = rtc.now();
        assert!(now.month == 12 && now.minute < 60, "{now:?}");
    }

    #[test]
    fn update_alarm_and_periodic_interrupts_raise_irq_8_until_c_is_read() {
        let mut rtc = Rtc::new(START);
        assert_eq!(rtc.next_interrupt_ns(), None, "nothing enabled");
        rtc.advance(1_500_000_000);
        assert!(!rtc.irq(), "flags without their enables raise nothing");
        assert_eq!(read(&mut rtc, reg::C), C_UF, "but are set");
        // Update-ended interrupts: one a second.
        write(&mut rtc, reg::B, B_24_HOUR | B_UIE);
        let wait = rtc.next_interrupt_ns().unwrap();
        assert!((499_000_000..=500_000_000).contains(&wait), "{wait}");
        rtc.advance(wait - 1);
        assert!(!rtc.irq());
        rtc.advance(1);
        assert!(rtc.irq());
        assert_eq!(rtc.next_interrupt_ns(), None, "the line is already high");
        // (The alarm registers, all zero, also matched: it is midnight.)
        assert_eq!(read(&mut rtc, reg::C), C_IRQF | C_AF | C_UF);
        assert!(!rtc.irq(), "reading C lowers the line");
        // The alarm, two seconds from now, with "any hour".
        write(&mut rtc, reg::B, B_24_HOUR | B_AIE);
        let now = rtc.now();
        let (second, minute) =
            (rtc.encode((now.second + 2) % 60), rtc.encode(now.minute + u8::from(now.second >= 58)));
        write(&mut rtc, reg::SECONDS_ALARM, second);
        write(&mut rtc, reg::MINUTES_ALARM, minute);
        write(&mut rtc, reg::HOURS_ALARM, 0xc0);
        rtc.advance(1_000_000_000);
        assert!(!rtc.irq());
        rtc.advance(1_000_000_000);
        assert!(rtc.irq());
        assert_eq!(read(&mut rtc, reg::C) & (C_IRQF | C_AF), C_IRQF | C_AF);
        // Periodic at 1024 Hz (Linux's default rate, register A 0x26).
        write(&mut rtc, reg::A, 0x26);
        write(&mut rtc, reg::B, B_24_HOUR | B_PIE);
        read(&mut rtc, reg::C);
        let wait = rtc.next_interrupt_ns().unwrap();
        assert!(wait <= 976_563, "{wait}");
        rtc.advance(wait);
        assert!(rtc.irq());
        // With the divider held, time stands still.
        write(&mut rtc, reg::A, 0x76);
        read(&mut rtc, reg::C);
        let before = rtc.now();
        rtc.advance(10_000_000_000);
        assert_eq!((rtc.now(), rtc.irq()), (before, false));
    }

    #[test]
    fn cmos_memory_and_the_nmi_mask() {
        let mut rtc = Rtc::new(START);
        rtc.write(0, 0x80 | 0x40);
        assert!(rtc.nmi_masked());
        rtc.write(1, 0x5a);
        assert_eq!(read(&mut rtc, 0x40), 0x5a);
        assert!(!rtc.nmi_masked());
        assert_eq!(read(&mut rtc, 0x15), 0, "memory-size bytes read 0");
        assert_eq!(rtc.read(0), 0xff, "the index port is write-only");
        write(&mut rtc, reg::D, 0);
        write(&mut rtc, reg::A, 0xa6);
        assert_eq!((read(&mut rtc, reg::D), read(&mut rtc, reg::A)), (0x80, 0x26), "read-only bits");
        rtc.write(5, 1);
        assert_eq!(rtc.read(7), 0xff);
    }

    #[test]
    fn a_long_idle_jumps_whole_days() {
        let mut rtc = Rtc::new(START);
        rtc.advance(400 * 86_400 * 1_000_000_000 + 2_000_000_000);
        assert_eq!(rtc.now(), DateTime { year: 2026, month: 4, day: 5, hour: 0, minute: 0, second: 0 });
        assert_eq!(read(&mut rtc, reg::DAY_OF_WEEK), 1, "a Sunday");
    }

    /// Random register traffic and time steps: nothing panics, and after an update the
    /// date is a real one.
    #[test]
    fn random_traffic_never_panics() {
        let mut state = 0xdead_beef_cafe_f00du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..30 {
            let mut rtc = Rtc::new(START);
            for _ in 0..3000 {
                let r = next();
                match r % 4 {
                    0 => rtc.write((r >> 8) as u16 % 3, (r >> 16) as u8),
                    1 => {
                        rtc.read((r >> 8) as u16 % 3);
                    }
                    2 => rtc.advance(if r & 1 << 40 != 0 { r >> 8 } else { (r >> 8) % 3_000_000_000 }),
                    _ => {
                        let _ = rtc.next_interrupt_ns();
                        let _ = rtc.irq();
                    }
                }
            }
            write(&mut rtc, reg::A, 0x26);
            write(&mut rtc, reg::B, B_24_HOUR);
            rtc.advance(1_000_000_000);
            let now = rtc.now();
            assert!(
                (1..=12).contains(&now.month)
                    && now.day >= 1
                    && now.day <= days_in_month(i64::from(now.year), now.month)
                    && now.hour < 24,
                "{now:?}"
            );
        }
    }
}
