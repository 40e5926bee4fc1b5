//! A minimal client of the GDB remote serial protocol, enough to stop QEMU at an address
//! and ask its monitor something there (`qRcmd`): how the baseline finds the instruction
//! count at the kernel's entry.
//!
//! A packet is `$PAYLOAD#CC` (CC: the payload's byte sum modulo 256 in hex), acknowledged
//! with `+`; `qRcmd,HEX` runs a monitor command and answers with `O HEX` packets of output
//! and a final `OK`.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A connection to a GDB stub.
pub struct Remote {
    stream: UnixStream,
}

impl Remote {
    /// Connects to the stub listening on the Unix socket `path`, waiting up to `timeout`
    /// for it to appear.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Remote> {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => return Ok(Remote { stream }),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to the GDB stub at {}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Sends one packet and waits for its acknowledgement.
    fn send(&mut self, payload: &str) -> Result<()> {
        self.stream.write_all(&frame(payload))?;
        match self.byte(Instant::now() + Duration::from_secs(10))? {
            b'+' => Ok(()),
            other => bail!("the GDB stub answered {:?} to {payload:?} instead of +", other as char),
        }
    }

    /// Reads one byte before `deadline`.
    fn byte(&mut self, deadline: Instant) -> Result<u8> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left))?;
        let mut byte = [0u8];
        match self.stream.read(&mut byte) {
            Ok(1) => Ok(byte[0]),
            Ok(_) => bail!("the GDB stub closed the connection"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                bail!("the GDB stub said nothing in time")
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Receives one packet (acknowledging it), waiting up to `timeout`.
    fn receive(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        while self.byte(deadline)? != b'$' {}
        let mut payload = Vec::new();
        loop {
            match self.byte(deadline)? {
                b'#' => break,
                byte => payload.push(byte),
            }
        }
        let sum = [self.byte(deadline)?, self.byte(deadline)?];
        let sum = u8::from_str_radix(std::str::from_utf8(&sum)?, 16).context("a packet checksum")?;
        anyhow::ensure!(sum == checksum(&payload), "a packet from the GDB stub has a bad checksum");
        self.stream.write_all(b"+")?;
        Ok(String::from_utf8(payload)?)
    }

    /// Sends `payload` and returns the answer.
    fn request(&mut self, payload: &str) -> Result<String> {
        self.send(payload)?;
        self.receive(Duration::from_secs(10))
    }

    /// Sets (`true`) or removes a hardware breakpoint at `address`.
    pub fn breakpoint(&mut self, address: u64, set: bool) -> Result<()> {
        let payload = format!("{}1,{address:x},1", if set { 'Z' } else { 'z' });
        match self.request(&payload)?.as_str() {
            "OK" => Ok(()),
            other => bail!("the GDB stub answered {other:?} to {payload}"),
        }
    }

    /// Lets the machine run; the stub answers when it stops.
    pub fn resume(&mut self) -> Result<()> {
        self.send("c")
    }

    /// Lets the machine run until it stops (a breakpoint), at most `timeout`; returns the
    /// stop reply.
    pub fn resume_until_stop(&mut self, timeout: Duration) -> Result<String> {
        self.resume()?;
        let reply = self.receive(timeout).context("waiting for the machine to stop")?;
        anyhow::ensure!(reply.starts_with('T') || reply.starts_with('S'), "unexpected stop reply {reply:?}");
        Ok(reply)
    }

    /// Stops the machine let run by [`Remote::resume`]; returns the stop reply.
    pub fn interrupt(&mut self) -> Result<String> {
        self.stream.write_all(&[0x03])?;
        self.receive(Duration::from_secs(10)).context("waiting for the machine to stop")
    }

    /// Runs a monitor command and returns what it printed.
    pub fn monitor(&mut self, command: &str) -> Result<String> {
        let hex: String = command.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"))?;
        let mut output = Vec::new();
        loop {
            let packet = self.receive(Duration::from_secs(10))?;
            if packet == "OK" {
                return Ok(String::from_utf8_lossy(&output).into_owned());
            }
            let Some(text) = packet.strip_prefix('O') else {
                bail!("the GDB stub answered {packet:?} to monitor command {command:?}");
            };
            output.extend(unhex(text).with_context(|| format!("monitor output {packet:?}"))?);
        }
    }

    /// Lets the machine run on and closes the connection.
    pub fn detach(mut self) -> Result<()> {
        match self.request("D")?.as_str() {
            "OK" => Ok(()),
            other => bail!("the GDB stub answered {other:?} to detach"),
        }
    }
}

/// `$payload#checksum`.
fn frame(payload: &str) -> Vec<u8> {
    format!("${payload}#{:02x}", checksum(payload.as_bytes())).into_bytes()
}

/// The sum of the bytes modulo 256.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// Bytes from pairs of hex digits.
fn unhex(text: &str) -> Result<Vec<u8>> {
    anyhow::ensure!(text.len().is_multiple_of(2), "odd number of hex digits");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("not hex")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_their_checksum() {
        assert_eq!(frame("OK"), b"$OK#9a");
        assert_eq!(frame("c"), b"$c#63");
        assert_eq!(frame("Z1,100200,1"), b"$Z1,100200,1#37");
        assert_eq!(unhex("696e666f").unwrap(), b"info");
        assert!(unhex("6").is_err());
    }

    /// A stub on the other end of a socket pair that acknowledges, checks what it got, and
    /// answers with `replies`.
    fn stub(mut end: UnixStream, expect: &'static str, replies: Vec<String>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut got = vec![0u8; frame(expect).len()];
            end.read_exact(&mut got).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(frame(expect)).unwrap());
            end.write_all(b"+").unwrap();
            for reply in replies {
                end.write_all(&frame(&reply)).unwrap();
                let mut ack = [0u8];
                end.read_exact(&mut ack).unwrap();
                assert_eq!(ack[0], b'+');
            }
        })
    }

    #[test]
    fn a_monitor_command_gathers_the_output_packets() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let replies =
            vec![format!("O{}", hex("instruction count ")), format!("O{}", hex("= 42\n")), "OK".into()];
        // "info replay" in hex.
        let server = stub(theirs, "qRcmd,696e666f207265706c6179", replies);
        let mut remote = Remote { stream: ours };
        assert_eq!(remote.monitor("info replay").unwrap(), "instruction count = 42\n");
        server.join().unwrap();
    }

    #[test]
    fn an_error_reply_to_a_breakpoint_is_an_error() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = stub(theirs, "Z1,100200,1", vec!["E22".into()]);
        let mut remote = Remote { stream: ours };
        let error = remote.breakpoint(0x10_0200, true).unwrap_err().to_string();
        assert!(error.contains("E22"), "{error}");
        server.join().unwrap();
    }
}
