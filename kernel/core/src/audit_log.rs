//! The kernel's audit log: the events components record (`AuditEvent`), each stamped by
//! the kernel with the time and the writer's thread name, kept as whole lines in a ring
//! that a thread with the privilege reads by byte offset (`AuditRead`).
//!
//! A line is `TIME WRITER EVENT\n`: the time in microseconds since boot (never less than
//! the line before it), the name the loader gave the writing thread (the kernel refuses to
//! rename a thread, so a component cannot write in another's name), and the event the
//! thread wrote (printable ASCII, at most [`MAX_EVENT`] bytes). When a new line does not
//! fit, the oldest whole lines are dropped and counted: the log always holds the newest
//! events, and a reader learns from the offsets and the count what it no longer holds.

/// Bytes the kernel keeps: 256 KiB (some 3,700 restart events). The host tests' and the
/// fuzzer's object spaces keep 4 KiB, which their threads' stacks hold and which fills
/// within a fuzzing episode, so that dropping old lines is exercised as often as recording
/// new ones.
#[cfg(not(any(test, feature = "fuzz")))]
pub const AUDIT_LOG_BYTES: usize = 256 * 1024;
/// Bytes the kernel keeps (4 KiB in the host tests and the fuzzer; 256 KiB in the kernel).
#[cfg(any(test, feature = "fuzz"))]
pub const AUDIT_LOG_BYTES: usize = 4 * 1024;

/// The longest event a thread may record (so that `audit: TIME WRITER EVENT` fits one
/// console line).
pub const MAX_EVENT: usize = 160;

/// The longest writer name (a thread's name).
const MAX_WRITER: usize = 32;

/// The longest line: a 20-digit time, the writer, the event, two spaces and the newline.
pub const MAX_RECORD: usize = 20 + 1 + MAX_WRITER + 1 + MAX_EVENT + 1;

/// A line as the log keeps it, `TIME WRITER EVENT` and its newline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    bytes: [u8; MAX_RECORD],
    len: usize,
}

impl Record {
    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why an event is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No event: the thread's line is empty.
    Empty,
    /// Longer than [`MAX_EVENT`].
    TooLong,
    /// A byte that is not printable ASCII (a newline, a control character, UTF-8).
    NotPrintable,
}

/// The ring of `N` bytes.
pub struct AuditLog<const N: usize> {
    bytes: [u8; N],
    /// The offset (counted from the first byte ever recorded) of the oldest byte kept:
    /// always the start of a line.
    start: u64,
    /// The offset just past the newest byte.
    end: u64,
    /// Lines dropped to make room.
    dropped: u64,
    /// The time of the newest line (the next is never earlier).
    last_time: u64,
}

impl<const N: usize> Default for AuditLog<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AuditLog<N> {
    /// An empty log.
    pub const fn new() -> Self {
        assert!(N >= MAX_RECORD, "the ring must hold the longest line");
        Self { bytes: [0; N], start: 0, end: 0, dropped: 0, last_time: 0 }
    }

    /// The offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The offset just past the newest byte (every byte ever recorded).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Lines dropped to make room so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records `event`, written by the thread named `writer` (its name bytes, up to the
    /// first zero) at `time` (or the last line's time, if that is later); returns the line
    /// as kept.
    pub fn append(&mut self, time: u64, writer: &[u8], event: &[u8]) -> Result<Record, Refused> {
        if event.is_empty() {
            return Err(Refused::Empty);
        }
        if event.len() > MAX_EVENT {
            return Err(Refused::TooLong);
        }
        if !event.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(Refused::NotPrintable);
        }
        let time = time.max(self.last_time);
        let mut record = [0u8; MAX_RECORD];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            record[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        let mut digits = [0u8; 20];
        put(decimal(time, &mut digits));
        put(b" ");
        // The writer as a word: a byte a name could not have (no loader gives one) is `?`,
        // and a thread without a name is `?`.
        let name = writer.iter().take(MAX_WRITER).take_while(|&&b| b != 0);
        let mut shown = [0u8; MAX_WRITER];
        let mut n = 0;
        for &b in name {
            shown[n] = if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { b } else { b'?' };
            n += 1;
        }
        put(if n == 0 { b"?" } else { &shown[..n] });
        put(b" ");
        put(event);
        put(b"\n");
        // Drop whole lines from the front until the new one fits.
        while N as u64 - (self.end - self.start) < len as u64 {
            while self.bytes[(self.start % N as u64) as usize] != b'\n' {
                self.start += 1;
            }
            self.start += 1;
            self.dropped += 1;
        }
        for &b in &record[..len] {
            self.bytes[(self.end % N as u64) as usize] = b;
            self.end += 1;
        }
        self.last_time = time;
        Ok(Record { bytes: record, len })
    }

    /// Copies the bytes from offset `from` on (from the oldest kept if `from` is older)
    /// into `out`, as many as fit; returns the offset of the first byte copied and how
    /// many were.
    pub fn read(&self, from: u64, out: &mut [u8]) -> (u64, usize) {
        let first = from.clamp(self.start, self.end);
        let n = out.len().min((self.end - first) as usize);
        for (i, slot) in out[..n].iter_mut().enumerate() {
            *slot = self.bytes[((first + i as u64) % N as u64) as usize];
        }
        (first, n)
    }

    /// Checks what the log promises (for the object-layer fuzzer's checker): it holds at
    /// most `N` bytes, from the start of a line to the end of one, each line three fields
    /// (a time, a writer, an event) of printable ASCII, times never decreasing and none
    /// after the newest.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.start > self.end || self.end - self.start > N as u64 {
            return Err("the audit log's offsets hold more than its ring");
        }
        let mut line = [0u8; MAX_RECORD];
        let mut len = 0;
        let mut last = 0u64;
        for offset in self.start..self.end {
            let b = self.bytes[(offset % N as u64) as usize];
            if b != b'\n' {
                if len == MAX_RECORD || !(0x20..0x7f).contains(&b) {
                    return Err("an audit-log line is too long or not printable");
                }
                line[len] = b;
                len += 1;
                continue;
            }
            let mut fields = line[..len].splitn(3, |&c| c == b' ');
            let time = fields.next().and_then(parse_decimal).ok_or("an audit-log line has no time")?;
            let writer = fields.next().filter(|w| !w.is_empty() && w.len() <= MAX_WRITER);
            let event = fields.next().filter(|e| !e.is_empty() && e.len() <= MAX_EVENT);
            if writer.is_none() || event.is_none() {
                return Err("an audit-log line lacks its writer or its event");
            }
            if time < last || time > self.last_time {
                return Err("audit-log times go backwards");
            }
            last = time;
            len = 0;
        }
        if len != 0 {
            return Err("the audit log ends inside a line");
        }
        Ok(())
    }
}

/// `value` in decimal, in the tail of `out`.
pub(crate) fn decimal(mut value: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &out[at..];
        }
    }
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut value = 0u64;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    fn text<const N: usize>(log: &AuditLog<N>) -> std::string::String {
        let mut out = [0u8; N];
        let (first, n) = log.read(0, &mut out);
        assert_eq!(first, log.start());
        std::string::String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn events_are_stamped_with_the_time_and_the_writer() {
        let mut log = AuditLog::<1024>::new();
        let kept =
            |r: Result<Record, Refused>| std::string::String::from_utf8(r.unwrap().bytes().to_vec()).unwrap();
        assert_eq!(
            kept(log.append(5, b"supervisor\0\0", b"restart a#1 a#2")),
            "5 supervisor restart a#1 a#2\n"
        );
        // A time before the last is raised to it: the log's times never go backwards.
        assert_eq!(
            kept(log.append(3, b"vmm-alice", b"serve alice vmm-alice#1")),
            "5 vmm-alice serve alice vmm-alice#1\n"
        );
        assert_eq!(kept(log.append(9, b"", b"x")), "9 ? x\n");
        assert_eq!(kept(log.append(10, b"a b\n", b"y")), "10 a?b? y\n");
        assert_eq!(
            text(&log),
            "5 supervisor restart a#1 a#2\n5 vmm-alice serve alice vmm-alice#1\n9 ? x\n10 a?b? y\n"
        );
        assert_eq!(log.check(), Ok(()));
    }

    #[test]
    fn bad_events_are_refused_and_change_nothing() {
        let mut log = AuditLog::<1024>::new();
        log.append(1, b"w", b"ok").unwrap();
        let before = text(&log);
        assert_eq!(log.append(2, b"w", b""), Err(Refused::Empty));
        assert_eq!(log.append(2, b"w", b"two\nlines"), Err(Refused::NotPrintable));
        assert_eq!(log.append(2, b"w", "caf\u{e9}".as_bytes()), Err(Refused::NotPrintable));
        assert_eq!(log.append(2, b"w", &[b'a'; MAX_EVENT + 1]), Err(Refused::TooLong));
        assert!(log.append(2, b"w", &[b'a'; MAX_EVENT]).is_ok());
        assert!(text(&log).starts_with(&before));
        assert_eq!(log.check(), Ok(()));
    }

    /// A full ring drops its oldest whole lines, counts them, and a reader asking for an
    /// offset it no longer holds is given the oldest it does, from a line's start.
    #[test]
    fn a_full_log_drops_its_oldest_lines_whole() {
        let mut log = AuditLog::<300>::new();
        for i in 0..100u64 {
            log.append(i, b"writer", b"event number whatever").unwrap();
            assert_eq!(log.check(), Ok(()));
            assert!(log.end() - log.start() <= 300);
        }
        assert!(log.dropped() > 0);
        let kept = text(&log);
        assert!(kept.ends_with("99 writer event number whatever\n"), "{kept}");
        assert_eq!(kept.lines().count() as u64 + log.dropped(), 100);
        let mut out = [0u8; 16];
        let (first, n) = log.read(0, &mut out);
        assert_eq!((first, n), (log.start(), 16));
        // Reading on from where one stopped, a byte at a time, gives the same text.
        let (mut at, mut again) = (log.start(), std::vec::Vec::new());
        loop {
            let mut one = [0u8; 7];
            let (first, n) = log.read(at, &mut one);
            assert_eq!(first, at);
            if n == 0 {
                break;
            }
            again.extend_from_slice(&one[..n]);
            at += n as u64;
        }
        assert_eq!(again, kept.as_bytes());
        // Past the end: nothing.
        assert_eq!(log.read(log.end() + 5, &mut out), (log.end(), 0));
    }
}
