//! `cleave ctl`: the operator's client of the toolstack's line (`cleave_ctl` is the
//! protocol), over the Unix socket `cargo xtask run` connects the machine's third serial
//! port to. One request per connection: connect, send the line, read the reply; after
//! `console GUEST` the connection carries the guest's console until the client detaches
//! ([`Console`]).

use cleave_ctl::{ReplyLine, Request, Status};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A reply: its body lines and how it ended (`Err` holds the toolstack's reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The body lines, without their prefix.
    pub body: Vec<String>,
    /// `Ok` or the error the toolstack gave.
    pub status: Result<(), String>,
}

/// How long a request may take before the client gives up (the toolstack answers in
/// milliseconds; a machine that is still booting answers once it serves the line).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `words` as one request and returns the reply. A request this client can tell is
/// malformed is refused here, with the same words the toolstack would use, and never sent.
pub fn request(socket: &Path, words: &[String], timeout: Duration) -> Result<Reply, String> {
    let line = words.join(" ");
    if let Err(e) = Request::parse(&line) {
        return Err(format!("cleave ctl: {e}"));
    }
    exchange(socket, line.as_bytes(), timeout)
}

/// How long `audit` may take: the log is up to 256 KiB, sent a byte at a time.
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Asks the running system for the kernel's audit log (`audit`), and, with a question,
/// answers it as `cleave audit` would: `--component C --from T1 --to T2` (which guests
/// relied on C between two times) or `--guest G --at T` (what G relied on at T). Without
/// one, the log itself: its header, then `TIME WRITER EVENT` lines. Each event's writer
/// is checked first (an event in another component's name is an error), and a question
/// is refused when the kernel no longer holds the whole log.
pub fn audit(socket: &Path, question: &[String]) -> Result<String, String> {
    let question = AuditQuestion::parse(question)?;
    let reply = exchange(socket, b"audit", AUDIT_TIMEOUT)?;
    if let Err(why) = reply.status {
        return Err(format!("cleave ctl: {why}"));
    }
    let log = crate::audit::MachineLog::parse(&reply.body).map_err(|e| format!("cleave ctl: {e}"))?;
    let refusals =
        |refused: &[String]| -> String { refused.iter().map(|r| format!("refused: {r}\n")).collect() };
    if let AuditQuestion::Log = question {
        let mut out = format!("{}\n", reply.body[0]);
        log.lines.iter().for_each(|l| out.push_str(&format!("{l}\n")));
        match log.read() {
            Ok(read) => out.push_str(&refusals(&read.refused)),
            Err(_) => out.push_str(&format!(
                "(the kernel dropped the log's {} oldest lines, `boot` with them: who wrote the rest is not checked)\n",
                log.dropped
            )),
        }
        return Ok(out);
    }
    let read = log.read().map_err(|e| format!("cleave ctl audit: {e}"))?;
    let answer = match question {
        AuditQuestion::Component(c, t1, t2) => crate::audit::describe(&read.log.relied_on(&c, t1, t2)),
        AuditQuestion::Guest(g, t) => read.log.relied_at(&g, t).iter().map(|i| format!("{i}\n")).collect(),
        AuditQuestion::Log => String::new(),
    };
    Ok(answer + &refusals(&read.refused))
}

/// What `cleave ctl audit` was asked.
#[derive(Debug, PartialEq, Eq)]
enum AuditQuestion {
    /// Nothing: print the log.
    Log,
    /// `--component C --from T1 --to T2`.
    Component(String, u64, u64),
    /// `--guest G --at T`.
    Guest(String, u64),
}

impl AuditQuestion {
    fn parse(words: &[String]) -> Result<Self, String> {
        const USAGE: &str = "cleave ctl audit: ask --component C --from T1 --to T2, or --guest G --at T (times in microseconds since boot), or nothing for the log";
        let mut options = std::collections::BTreeMap::new();
        let mut it = words.iter();
        while let Some(flag) = it.next() {
            let key = match flag.as_str() {
                k @ ("--component" | "--from" | "--to" | "--guest" | "--at") => k,
                _ => return Err(format!("{USAGE} (not `{flag}`)")),
            };
            let value = it.next().ok_or_else(|| format!("{USAGE} (`{key}` needs a value)"))?;
            if options.insert(key, value.clone()).is_some() {
                return Err(format!("{USAGE} (`{key}` twice)"));
            }
        }
        let time = |key: &str| -> Result<u64, String> {
            options[key].parse().map_err(|_| format!("{USAGE} (`{key} {}` is no time)", options[key]))
        };
        let keys: Vec<&str> = options.keys().copied().collect();
        match keys.as_slice() {
            [] => Ok(Self::Log),
            ["--component", "--from", "--to"] => {
                Ok(Self::Component(options["--component"].clone(), time("--from")?, time("--to")?))
            }
            ["--at", "--guest"] => Ok(Self::Guest(options["--guest"].clone(), time("--at")?)),
            _ => Err(USAGE.into()),
        }
    }
}

/// Sends `raw` (one line, without its newline; anything at all, for hostile tests) and
/// reads the reply to it: the lines after the echo of `raw` (or of a dropped line) up to
/// and with the status line.
pub fn exchange(socket: &Path, raw: &[u8], timeout: Duration) -> Result<Reply, String> {
    exchange_on(socket, raw, timeout).map(|(reply, ..)| reply)
}

/// [`exchange`], also returning the connection and what arrived after the reply's status
/// line (a console's first bytes).
fn exchange_on(socket: &Path, raw: &[u8], timeout: Duration) -> Result<(Reply, UnixStream, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let stream = UnixStream::connect(socket).map_err(|e| {
        format!("cleave ctl: cannot connect to {}: {e} (is `cargo xtask run` running?)", socket.display())
    })?;
    // DETACH first, alone: a console session a client that went away left attached ends
    // (else a guest that keeps printing would keep the line from ever falling quiet, and
    // could print what looks like a reply). Then whatever an earlier client left half-read,
    // and the guest's last output before the toolstack saw DETACH, is not this reply: skip
    // what arrives before the request goes out.
    (&stream)
        .write_all(&[cleave_ctl::DETACH])
        .map_err(|e| format!("cleave ctl: cannot send the request: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| format!("cleave ctl: {e}"))?;
    let mut stale = [0u8; 4096];
    while let Ok(n) = (&stream).read(&mut stale) {
        if n == 0 {
            return Err("cleave ctl: the machine closed the line".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("cleave ctl: the line never fell quiet within {} s", timeout.as_secs()));
        }
    }
    // CANCEL first: bytes an earlier client left without a newline are dropped, never
    // completed into a request by this one's.
    let mut out = vec![cleave_ctl::CANCEL];
    out.extend_from_slice(raw);
    out.push(b'\n');
    (&stream).write_all(&out).map_err(|e| format!("cleave ctl: cannot send the request: {e}"))?;
    // What the toolstack echoes: the line without the bytes its reader keeps out.
    let kept: Vec<u8> = raw.iter().copied().filter(|&b| b >= 0x20 || b == b'\t').collect();
    let sent = String::from_utf8_lossy(&kept).into_owned();
    // The toolstack drops a line too long or not text: then its echo is `(dropped)`, and
    // only then may that echo be this request's (an earlier client's could be stale).
    let dropped = kept.len() > cleave_ctl::MAX_LINE || std::str::from_utf8(&kept).is_err();
    let mut reader = BufReader::new(&stream);
    let mut started = false;
    let mut body = Vec::new();
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("cleave ctl: no reply within {} s", timeout.as_secs()));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| format!("cleave ctl: {e}"))?;
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Err("cleave ctl: the machine closed the line before replying".into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue;
            }
            Err(e) => return Err(format!("cleave ctl: {e}")),
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        match ReplyLine::parse(text) {
            ReplyLine::Echo(request) => {
                started = if dropped { request == "(dropped)" } else { request == sent };
                body.clear();
            }
            ReplyLine::Body(line) if started => body.push(line.to_string()),
            ReplyLine::Status(status) if started => {
                let status = match status {
                    Status::Ok => Ok(()),
                    Status::Error(why) => Err(why.to_string()),
                };
                let rest = reader.buffer().to_vec();
                return Ok((Reply { body, status }, stream, rest));
            }
            _ => {}
        }
    }
}

/// A guest's console, attached (`console GUEST` answered `ok`): what the guest prints
/// arrives, what is sent is typed at it, until [`Console::detach`].
pub struct Console {
    stream: UnixStream,
    /// What arrived and was not looked for yet.
    pending: Vec<u8>,
}

impl Console {
    /// Attaches to `guest`'s console. The toolstack first sends the guest's latest
    /// output (up to 4 KiB), then whatever it prints.
    pub fn attach(socket: &Path, guest: &str, timeout: Duration) -> Result<Self, String> {
        let line = format!("console {guest}");
        if let Err(e) = Request::parse(&line) {
            return Err(format!("cleave ctl: {e}"));
        }
        let (reply, stream, pending) = exchange_on(socket, line.as_bytes(), timeout)?;
        reply.status.map_err(|why| format!("cleave ctl: {why}"))?;
        Ok(Self { stream, pending })
    }

    /// Types `bytes` at the guest.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        (&self.stream).write_all(bytes).map_err(|e| format!("cleave ctl: the line: {e}"))
    }

    /// Reads until the output holds `text`; returns everything up to and with it (what
    /// follows stays for the next call).
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = find(&self.pending, text.as_bytes()) {
                let rest = self.pending.split_off(at + text.len());
                let got = std::mem::replace(&mut self.pending, rest);
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen = String::from_utf8_lossy(&self.pending[self.pending.len().saturating_sub(300)..])
                    .into_owned();
                return Err(format!(
                    "cleave ctl: `{text}` did not appear within {} s; the console's last output: {seen:?}",
                    timeout.as_secs()
                ));
            }
            self.stream.set_read_timeout(Some(left)).map_err(|e| format!("cleave ctl: {e}"))?;
            match (&self.stream).read(&mut buf) {
                Ok(0) => return Err("cleave ctl: the machine closed the line".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("cleave ctl: {e}")),
            }
        }
    }

    /// What arrived and was not waited for.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Reads what arrives now (waiting at most `wait`).
    pub fn read_some(&mut self, wait: Duration) -> Result<Vec<u8>, String> {
        if !self.pending.is_empty() {
            return Ok(self.take_pending());
        }
        let mut buf = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| format!("cleave ctl: {e}"))?;
        match (&self.stream).read(&mut buf) {
            Ok(0) => Err("cleave ctl: the machine closed the line".into()),
            Ok(n) => Ok(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Ok(Vec::new())
            }
            Err(e) => Err(format!("cleave ctl: {e}")),
        }
    }

    /// Detaches: sends [`cleave_ctl::DETACH`] and reads up to the toolstack's
    /// [`cleave_ctl::DETACHED`]; returns the guest's output that came before it.
    pub fn detach(mut self, timeout: Duration) -> Result<String, String> {
        self.send(&[cleave_ctl::DETACH])?;
        let got = self.wait_for(cleave_ctl::DETACHED, timeout)?;
        Ok(got.strip_suffix(cleave_ctl::DETACHED).unwrap_or(&got).to_string())
    }
}

/// Where `needle` first is in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `cleave ctl --socket PATH console GUEST` on a terminal: the guest's console on this
/// program's standard input and output, byte for byte (the terminal in raw mode), until
/// Ctrl-] is typed.
pub fn interactive_console(socket: &Path, guest: &str) -> Result<(), String> {
    let mut console = Console::attach(socket, guest, TIMEOUT)?;
    eprintln!("cleave ctl: attached to guest `{guest}`'s console; Ctrl-] detaches\r");
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let saved = terminal
        .then(|| {
            std::process::Command::new("stty").arg("-g").stdin(std::process::Stdio::inherit()).output().ok()
        })
        .flatten()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if terminal {
        let _ = std::process::Command::new("stty")
            .args(["raw", "-echo"])
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    let restore = || {
        if let Some(saved) = &saved {
            let _ =
                std::process::Command::new("stty").arg(saved).stdin(std::process::Stdio::inherit()).status();
        }
    };
    // Standard input on a thread of its own: each read's bytes, until Ctrl-] or its end.
    let (typed, keys) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match std::io::stdin().read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = typed.send(vec![cleave_ctl::DETACH]);
                    return;
                }
                Ok(n) => {
                    let done = buf[..n].contains(&cleave_ctl::DETACH);
                    if typed.send(buf[..n].to_vec()).is_err() || done {
                        return;
                    }
                }
            }
        }
    });
    let mut out = std::io::stdout();
    let result = loop {
        match keys.try_recv() {
            Ok(bytes) => {
                if let Some(at) = bytes.iter().position(|&b| b == cleave_ctl::DETACH) {
                    if let Err(e) = console.send(&bytes[..at]) {
                        break Err(e);
                    }
                    break console.detach(TIMEOUT).map(|rest| {
                        let _ = out.write_all(rest.as_bytes());
                    });
                }
                if let Err(e) = console.send(&bytes) {
                    break Err(e);
                }
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break console.detach(TIMEOUT).map(|_| ()),
        }
        match console.read_some(Duration::from_millis(20)) {
            Ok(bytes) => {
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            Err(e) => break Err(e),
        }
    };
    restore();
    eprintln!("\ncleave ctl: detached from guest `{guest}`'s console");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A machine's line that answers one connection with `script(request)`, after first
    /// sending `stale` (what an earlier exchange left), then hangs up (at once, or with
    /// `hold` after a second).
    fn serve(
        stale: &'static [u8],
        hold: bool,
        script: fn(&str) -> Vec<u8>,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = std::env::temp_dir().join(format!(
            "cleave-ctl-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{hold}.sock", stale.len()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(stale).unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                if byte[0] == b'\n' {
                    break;
                }
                got.push(byte[0]);
            }
            let request: String = String::from_utf8_lossy(&got).chars().filter(|c| !c.is_control()).collect();
            let _ = stream.write_all(&script(&request));
            if hold {
                std::thread::sleep(Duration::from_secs(1));
            }
            got
        });
        (path, handle)
    }

    /// A fresh socket for a test's machine line, named after the test.
    fn line(name: &str) -> (std::path::PathBuf, UnixListener) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("line.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        (path, listener)
    }

    #[test]
    fn the_reply_is_the_one_after_the_echo_of_this_request() {
        // Stale lines of an earlier exchange, its status included, come before ours.
        let (path, server) =
            serve(b"| old body\nok\n", false, |r| format!("> {r}\n| one\n| two\nerror: no\n").into_bytes());
        let reply = request(&path, &["exposure".into(), "bob".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(reply, Reply { body: vec!["one".into(), "two".into()], status: Err("no".into()) });
        // The request went out after DETACH (alone, before the client waits for the line
        // to fall quiet) and CANCEL, which end a console session and drop a half-sent
        // request an earlier client left.
        assert_eq!(server.join().unwrap(), b"\x1d\x15exposure bob");
    }

    #[test]
    fn a_malformed_request_is_refused_here_and_a_silent_machine_times_out() {
        let error = request(Path::new("/nonexistent.sock"), &["restart".into()], TIMEOUT).unwrap_err();
        assert_eq!(error, "cleave ctl: `restart` needs a component's name");
        let error = request(Path::new("/nonexistent.sock"), &["list".into()], TIMEOUT).unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
        // Noise and a reply to another request are not this reply.
        let (path, _server) = serve(b"", true, |_| b"> list\nok\nnoise\n".to_vec());
        let error = exchange(&path, b"help", Duration::from_millis(600)).unwrap_err();
        assert!(error.contains("no reply within"), "{error}");
        // A line that hangs up before its status is an error too.
        let (path, _server) = serve(b"", false, |r| format!("> {r}\n| half").into_bytes());
        let error = exchange(&path, b"list", Duration::from_secs(5)).unwrap_err();
        assert!(error.contains("closed the line"), "{error}");
    }

    /// A console session against a line that plays the toolstack: the reply, the guest's
    /// last output, then an echo of what is typed; DETACH answered with the marker. A
    /// guest that prints the marker before the client detached does not end the session.
    #[test]
    fn a_console_session_reads_types_and_detaches() {
        let (path, listener) = line("cleave-ctl-console");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
                got.push(byte[0]);
            }
            assert_eq!(got, b"\x1d\x15console debian", "DETACH alone first, then CANCEL and the request");
            let marker = cleave_ctl::DETACHED;
            stream
                .write_all(
                    format!("> console debian\n| attached\nok\nold output\n{marker}\ncleave# ").as_bytes(),
                )
                .unwrap();
            // Echo what is typed until DETACH, then the marker.
            loop {
                if stream.read(&mut byte).unwrap() == 0 {
                    return;
                }
                if byte[0] == cleave_ctl::DETACH {
                    stream.write_all(format!("\r\n{marker}\r\n").as_bytes()).unwrap();
                    return;
                }
                let reply = if byte[0] == b'\n' { b"\r\nSUM=42\r\ncleave# ".to_vec() } else { vec![byte[0]] };
                stream.write_all(&reply).unwrap();
            }
        });
        let mut console = Console::attach(&path, "debian", Duration::from_secs(5)).unwrap();
        let first = console.wait_for("cleave# ", Duration::from_secs(5)).unwrap();
        assert!(first.starts_with("old output"), "{first:?}");
        console.send(b"echo $((6*7))\n").unwrap();
        let out = console.wait_for("SUM=42", Duration::from_secs(5)).unwrap();
        assert!(out.contains("echo $((6*7))"), "{out:?}");
        let rest = console.detach(Duration::from_secs(5)).unwrap();
        assert!(!rest.contains(cleave_ctl::DETACHED), "{rest:?}");
        server.join().unwrap();
        assert!(Console::attach(Path::new("/nonexistent.sock"), "debian", TIMEOUT).is_err());
        assert_eq!(
            Console::attach(Path::new("/nonexistent.sock"), "De bian", TIMEOUT).err().unwrap(),
            "cleave ctl: `De` is no component or guest name (at most 32 of a-z, 0-9, `-` and `_`)"
        );
    }

    /// A console left attached to a guest that never stops printing (every 20 ms, and
    /// something that looks like a reply): the next client detaches it before it waits
    /// for the line to fall quiet, and gets its own reply.
    #[test]
    fn a_chatty_console_left_attached_does_not_lock_the_next_client_out() {
        let (path, listener) = line("cleave-ctl-chatty");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut byte = [0u8; 1];
            // Attached: the guest prints until DETACH arrives.
            loop {
                stream.write_all(b"> list\nok\n.").unwrap();
                match stream.read(&mut byte) {
                    Ok(1) if byte[0] == cleave_ctl::DETACH => break,
                    Ok(0) => return,
                    _ => {}
                }
            }
            stream.write_all(format!("\r\n{}\r\n", cleave_ctl::DETACHED).as_bytes()).unwrap();
            stream.set_read_timeout(None).unwrap();
            let mut got = Vec::new();
            while stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
                got.push(byte[0]);
            }
            assert_eq!(got, b"\x15list");
            stream.write_all(b"> list\n| the real one\nok\n").unwrap();
        });
        let reply = request(&path, &["list".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(reply, Reply { body: vec!["the real one".into()], status: Ok(()) });
        server.join().unwrap();
    }

    /// `audit` fetches the machine's log and answers a question from it, listing the lines
    /// it refused (a forged one); a log that lost its start answers nothing, and bad
    /// questions are never sent.
    #[test]
    fn audit_answers_from_the_machines_log_and_checks_its_writers() {
        fn reply(lines: &[&str], dropped: u64) -> Vec<u8> {
            let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
            let first = if dropped > 0 { 500 } else { 0 };
            let mut out = format!(
                "> audit\n| kernel audit log: bytes {first}..{}, {dropped} lines dropped\n",
                first + bytes
            );
            lines.iter().for_each(|l| out.push_str(&format!("| {l}\n")));
            out.push_str("ok\n");
            out.into_bytes()
        }
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (path, server) = serve(b"", false, |_| {
            reply(
                &[
                    "0 loader boot",
                    "1 loader start blk#1",
                    "2 blk serve alice blk#1",
                    "5 supervisor restart blk#1 blk#2",
                ],
                0,
            )
        });
        let answer = audit(&path, &words(&["--component", "blk", "--from", "0", "--to", "3"])).unwrap();
        assert_eq!(answer, "alice blk#1 2..5\n");
        assert_eq!(server.join().unwrap(), b"\x1d\x15audit");
        let (path, server) = serve(b"", false, |_| reply(&["0 loader boot", "1 loader start blk#1"], 0));
        let log = audit(&path, &[]).unwrap();
        assert_eq!(
            log,
            "kernel audit log: bytes 0..35, 0 lines dropped\n0 loader boot\n1 loader start blk#1\n"
        );
        server.join().unwrap();
        // A restart blk wrote itself: refused, said so, and not believed.
        let (path, server) = serve(b"", false, |_| {
            reply(
                &[
                    "0 loader boot",
                    "1 loader start blk#1",
                    "2 blk serve alice blk#1",
                    "3 blk restart blk#1 blk#2",
                ],
                0,
            )
        });
        let answer = audit(&path, &words(&["--guest", "alice", "--at", "4"])).unwrap();
        assert!(
            answer.starts_with("blk#1\nrefused: line 4: written by `blk`, not by `supervisor`"),
            "{answer}"
        );
        server.join().unwrap();
        let (path, server) = serve(b"", false, |_| reply(&["9 supervisor restart blk#4 blk#5"], 12));
        let e = audit(&path, &words(&["--guest", "alice", "--at", "10"])).unwrap_err();
        assert!(e.contains("no longer holds its 12 oldest lines"), "{e}");
        server.join().unwrap();
        for bad in
            [&["--guest", "alice"][..], &["--at", "x", "--guest", "a"], &["--from", "1"], &["--who", "x"]]
        {
            let e = audit(Path::new("/nonexistent/line.sock"), &words(bad)).unwrap_err();
            assert!(e.contains("cleave ctl audit: ask"), "{bad:?}: {e}");
        }
    }
}
