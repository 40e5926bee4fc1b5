//! The queue between threads' console lines and the UART: lines go in whole or are dropped
//! whole (and the drop is reported), and bytes go out as the UART has room, a FIFO's worth
//! at a time, so that a thread that prints never makes the kernel wait with interrupts off.

/// Bytes a 16550's transmit FIFO takes once it says it is empty.
pub const FIFO: usize = 16;

/// A ring of `N` bytes of console output.
pub struct ConsoleQueue<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
    /// Bytes of lines dropped because the queue was full, not yet reported.
    dropped: u64,
}

impl<const N: usize> Default for ConsoleQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ConsoleQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self { bytes: [0; N], head: 0, len: 0, dropped: 0 }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits (not even a drop report).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.dropped == 0
    }

    /// Queues `line` whole, or drops it whole (counting it) if it does not fit.
    pub fn push_line(&mut self, line: &[u8]) {
        if !self.push(line) {
            self.dropped += line.len() as u64;
        }
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        if N - self.len < bytes.len() {
            return false;
        }
        for &b in bytes {
            self.bytes[(self.head + self.len) % N] = b;
            self.len += 1;
        }
        true
    }

    /// Sends bytes to `write` a FIFO's worth at a time while `ready` says the transmitter
    /// is empty. Without `wait` it returns as soon as `ready` says no; with it, only when
    /// everything (and the report of any drop) is out.
    pub fn send(&mut self, wait: bool, mut ready: impl FnMut() -> bool, mut write: impl FnMut(u8)) {
        loop {
            if self.len == 0 {
                if self.dropped == 0 {
                    return;
                }
                let mut note = [0u8; 64];
                let n = dropped_note(self.dropped, &mut note);
                self.dropped = 0;
                // Fits: the queue is empty and N is far above 64 in any use.
                let _ = self.push(&note[..n]);
                continue;
            }
            if !ready() {
                if !wait {
                    return;
                }
                core::hint::spin_loop();
                continue;
            }
            for _ in 0..FIFO.min(self.len) {
                write(self.bytes[self.head]);
                self.head = (self.head + 1) % N;
                self.len -= 1;
            }
        }
    }
}

/// `[console: N bytes of output dropped]`, CR LF, into `out`; returns its length.
fn dropped_note(bytes: u64, out: &mut [u8; 64]) -> usize {
    let mut n = 0;
    let mut put = |s: &[u8]| {
        out[n..n + s.len()].copy_from_slice(s);
        n += s.len();
    };
    put(b"[console: ");
    let mut digits = [0u8; 20];
    let mut d = 0;
    let mut v = bytes;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits[..d].reverse();
    put(&digits[..d]);
    put(b" bytes of output dropped]\r\n");
    n
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn lines_go_out_whole_a_fifo_at_a_time_as_the_uart_has_room() {
        let mut q = ConsoleQueue::<64>::new();
        q.push_line(b"0123456789abcdefghij\r\n");
        let mut out = Vec::new();
        // The UART is busy: nothing goes, nothing waits.
        q.send(false, || false, |b| out.push(b));
        assert!(out.is_empty());
        // Room once: one FIFO's worth.
        let mut room = [true, false].into_iter();
        q.send(false, || room.next().unwrap_or(false), |b| out.push(b));
        assert_eq!(out, b"0123456789abcdef");
        // Waiting: the rest.
        let mut busy = 3;
        q.send(
            true,
            || {
                busy -= 1;
                busy < 0
            },
            |b| out.push(b),
        );
        assert_eq!(out, b"0123456789abcdefghij\r\n");
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_says_so() {
        let mut q = ConsoleQueue::<40>::new();
        q.push_line(b"first line, 24 bytes..\r\n");
        q.push_line(b"second line: too long to fit\r\n");
        q.push_line(b"third, fits\r\n");
        assert_eq!(q.len(), 24 + 13);
        let mut out = Vec::new();
        q.send(true, || true, |b| out.push(b));
        let text = std::string::String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "first line, 24 bytes..\r\nthird, fits\r\n[console: 30 bytes of output dropped]\r\n"
        );
        assert!(q.is_empty());
    }

    #[test]
    fn the_ring_wraps() {
        let mut q = ConsoleQueue::<20>::new();
        let mut out = Vec::new();
        for i in 0..10u8 {
            let line = [b'a' + i; 7];
            q.push_line(&line);
            q.send(false, || true, |b| out.push(b));
        }
        assert_eq!(out.len(), 70);
        assert!(out.chunks(7).enumerate().all(|(i, c)| c.iter().all(|&b| b == b'a' + i as u8)));
    }
}
