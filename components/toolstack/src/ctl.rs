//! The operator's line: `cleave ctl` requests arrive on the machine's third serial port
//! and are answered there (`cleave_ctl` says how), with what the toolstack knows of the
//! system it was built for (`facts`) and what the supervisor says of its components.

use crate::facts;
use cleave_abi::MessageInfo;
use cleave_ctl::{LineReader, Pushed, Request};
use cleave_rt::cap::kind::{Endpoint, IoPort};
use cleave_rt::uart::{LSR_DATA, LSR_THR_EMPTY, Uart, reg};
use cleave_rt::{Cap, println};
use core::fmt::Write;

/// A guest's console the toolstack relays (`console = "ctl"`): its side of the page it
/// shares with the guest's VMM, and the guest's latest output, shown first when an
/// operator attaches.
struct Console {
    name: &'static str,
    ring: cleave_ioring::console::HostConsole,
    tail: alloc::collections::VecDeque<u8>,
}

/// Bytes of each guest's latest output the toolstack keeps (on its heap).
const TAIL: usize = 4096;

/// The operator's line and what it has received so far.
pub struct Line {
    uart: Uart,
    reader: LineReader,
    consoles: alloc::vec::Vec<Console>,
    /// The console the line is attached to, if one is (by index in `consoles`).
    attached: Option<usize>,
}

/// What the loop that calls [`Line::poll`] does next.
#[derive(PartialEq, Eq)]
pub enum Next {
    /// Go on.
    Serve,
    /// The operator asked for the run to end.
    Shutdown,
}

impl Line {
    /// The port at `base` (its eight registers held through `port`), set up as 115200
    /// baud, 8N1, FIFOs on, interrupts off (the toolstack polls it).
    pub fn new(port: Cap<IoPort>, base: u16) -> Self {
        let uart = Uart::new(port, base);
        let _ = uart.init(false);
        let mut consoles = alloc::vec::Vec::new();
        for &(name, address, bytes) in facts::CONSOLES {
            // SAFETY: cleave maps guest `name`'s console page read-write at `address`,
            // `bytes` long, into this component and the guest's VMM only, for as long as
            // this component runs; only `Shared` values (here and in the VMM) touch it.
            let ring = unsafe { cleave_ioring::Shared::new(address as *mut u8, bytes) }
                .ok()
                .and_then(|shared| cleave_ioring::console::HostConsole::start(shared).ok());
            match ring {
                Some(ring) => consoles.push(Console {
                    name,
                    ring,
                    tail: alloc::collections::VecDeque::with_capacity(TAIL),
                }),
                None => println!("toolstack: guest `{name}`'s console page cannot be used"),
            }
        }
        Self { uart, reader: LineReader::new(), consoles, attached: None }
    }

    /// Takes what each relayed console's guest printed: into its tail, and out on the line
    /// if the line is attached to it.
    fn pump_consoles(&mut self) {
        let mut buf = [0u8; 256];
        for k in 0..self.consoles.len() {
            // At most a ring's worth per poll: a guest (or its VMM) that never stops
            // printing cannot keep the line from being read (where Ctrl-] arrives).
            for _ in 0..cleave_ioring::console::OUT_BYTES as usize / buf.len() {
                let n = self.consoles[k].ring.read(&mut buf);
                if n == 0 {
                    break;
                }
                // The tail was allocated whole: it never grows past TAIL.
                let tail = &mut self.consoles[k].tail;
                for &b in &buf[..n] {
                    if tail.len() == TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(b);
                }
                if self.attached == Some(k) {
                    self.send_bytes(&buf[..n]);
                }
            }
        }
    }

    /// A byte from the line while it is attached to console `k`.
    fn console_byte(&mut self, k: usize, byte: u8) {
        if byte == cleave_ctl::DETACH {
            self.attached = None;
            let name = self.consoles[k].name;
            println!("toolstack: ctl: detached from guest `{name}`'s console");
            self.send(&alloc::format!("\r\n{}\r\n", cleave_ctl::DETACHED));
            return;
        }
        // Typed faster than the guest reads: what does not fit its 1 KiB ring is lost,
        // as on a real serial line.
        let _ = self.consoles[k].ring.write(&[byte]);
    }

    /// Attaches the line to guest `name`'s console, if the toolstack relays it; the
    /// request's reply says whether.
    fn attach(&mut self, name: &str, reply: &mut Reply) {
        if !facts::GUESTS.iter().any(|g| g.0 == name) {
            return reply.error(format_args!("no guest named `{name}`"));
        }
        let Some(k) = self.consoles.iter().position(|c| c.name == name) else {
            return reply.error(format_args!(
                "guest `{name}`'s console is not relayed by the toolstack (its system.toml has no console = \"ctl\")"
            ));
        };
        reply.body(format_args!("attached to guest `{name}`'s console; Ctrl-] detaches"));
        reply.ok();
        self.attached = Some(k);
    }

    /// Takes what has arrived and answers every whole request in it.
    pub fn poll(&mut self) -> Next {
        let mut next = Next::Serve;
        self.pump_consoles();
        // At most a line's worth at a time, so XenStore's watch is looked at too.
        for _ in 0..cleave_ctl::MAX_LINE + 2 {
            let Some(lsr) = self.uart.read(reg::LSR) else { return next };
            if lsr & LSR_DATA == 0 {
                break;
            }
            let Some(byte) = self.uart.read(reg::DATA) else { return next };
            if let Some(k) = self.attached {
                self.console_byte(k, byte);
                continue;
            }
            let mut reply = Reply::default();
            match self.reader.push(byte) {
                Pushed::More => continue,
                Pushed::Refused => reply.refused(format_args!(
                    "a request longer than {} bytes, or not UTF-8, was dropped",
                    cleave_ctl::MAX_LINE
                )),
                Pushed::Line(line) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    println!("toolstack: ctl: {}", shortened(line));
                    let _ = writeln!(reply.text, "{}{line}", cleave_ctl::ECHO);
                    match Request::parse(line) {
                        Ok(Request::Console(guest)) => {
                            let guest = alloc::string::String::from(guest);
                            self.attach(&guest, &mut reply);
                        }
                        Ok(Request::Audit) => {
                            // The echo now, the log as it is read, then the status.
                            self.send(&reply.text);
                            reply.text.clear();
                            match self.send_audit() {
                                Ok(()) => reply.ok(),
                                Err(e) => reply.error(format_args!("{e}")),
                            }
                        }
                        Ok(request) => {
                            // A guest made or taken apart: its console's past output is
                            // its old VMM's, not the next one's.
                            let fresh = match request {
                                Request::Create(g) | Request::Destroy(g) => {
                                    Some(alloc::string::String::from(g))
                                }
                                _ => None,
                            };
                            let destroyed = matches!(request, Request::Destroy(_));
                            if answer(request, &mut reply) == Next::Shutdown {
                                next = Next::Shutdown;
                            }
                            // Only if it was done: a refused one changed nothing. A destroyed
                            // guest's VMM is gone: its side of the page starts over too.
                            if let Some(c) = fresh
                                .filter(|_| reply.status() == "ok")
                                .and_then(|g| self.consoles.iter_mut().find(|c| c.name == g))
                            {
                                c.tail.clear();
                                if destroyed {
                                    c.ring.resync();
                                }
                            }
                        }
                        Err(e) => reply.error(format_args!("{e}")),
                    }
                }
            }
            println!("toolstack: ctl: {}", shortened(reply.status()));
            self.send(&reply.text);
            if let Some(k) = self.attached {
                // What the guest printed lately, then whatever it prints next.
                let (first, second) = self.consoles[k].tail.as_slices();
                self.send_bytes(first);
                self.send_bytes(second);
            }
        }
        next
    }

    /// Sends the kernel's audit log as body lines: [`cleave_ctl::AUDIT_HEADER`] with what
    /// it holds, then every line from the oldest it keeps to the newest there was when
    /// asked, read a piece at a time (the toolstack keeps none of it).
    fn send_audit(&self) -> Result<(), &'static str> {
        let mut piece = [0u8; 928];
        let mut p = cleave_rt::syscall::audit_read(0, &mut piece)
            .map_err(|_| "the kernel does not let the toolstack read its audit log")?;
        let end = p.end;
        self.send(&alloc::format!(
            "{}{} bytes {}..{end}, {} lines dropped\n",
            cleave_ctl::BODY,
            cleave_ctl::AUDIT_HEADER,
            p.first,
            p.dropped
        ));
        let mut at = p.first;
        let mut line_start = true;
        let sent = self.send_audit_lines(&mut p, &mut piece, &mut at, end, &mut line_start);
        // A piece ends anywhere: the status line must start a line of its own.
        if !line_start {
            self.send("\n");
        }
        sent
    }

    /// Sends the log's bytes from `at` to `end` as body lines, piece by piece (`p` is the
    /// piece in `piece`); `line_start` says whether the next byte starts a line.
    fn send_audit_lines(
        &self,
        p: &mut cleave_rt::syscall::AuditPiece,
        piece: &mut [u8; 928],
        at: &mut u64,
        end: u64,
        line_start: &mut bool,
    ) -> Result<(), &'static str> {
        while *at < end {
            if p.first != *at {
                // New events pushed the next lines out while these were sent.
                return Err("the kernel dropped lines of its audit log while it was sent; ask again");
            }
            let take = p.len.min((end - *at) as usize);
            if take == 0 {
                return Err("the kernel returned none of its audit log");
            }
            for &b in &piece[..take] {
                if *line_start {
                    self.send(cleave_ctl::BODY);
                }
                self.send_bytes(&[b]);
                *line_start = b == b'\n';
            }
            *at += take as u64;
            if *at < end {
                *p = cleave_rt::syscall::audit_read(*at, piece)
                    .map_err(|_| "the audit log could not be read")?;
            }
        }
        Ok(())
    }

    /// Writes `text` out, each byte once the transmitter has room.
    fn send(&self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Writes `bytes` out, each once the transmitter has room.
    fn send_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            // A transmitter that never empties (no such port) loses the reply, not the
            // toolstack: give up on the byte after a while.
            for _ in 0..100_000 {
                match self.uart.read(reg::LSR) {
                    Some(lsr) if lsr & LSR_THR_EMPTY != 0 => break,
                    Some(_) => continue,
                    None => return,
                }
            }
            let _ = self.uart.write(reg::DATA, b);
        }
    }
}

/// At most 96 bytes of `text` (at a character boundary), for the system's log: a console
/// line is short, and a request's text is the operator's (or an attacker's).
fn shortened(text: &str) -> &str {
    let mut end = text.len().min(96);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A reply being written: body lines, then the status line.
#[derive(Default)]
struct Reply {
    text: alloc::string::String,
    done: bool,
}

impl Reply {
    fn body(&mut self, line: core::fmt::Arguments<'_>) {
        let _ = writeln!(self.text, "{}{line}", cleave_ctl::BODY);
    }

    /// An error for a line that is not echoed (too long to be, or not text).
    fn refused(&mut self, why: core::fmt::Arguments<'_>) {
        let _ = writeln!(self.text, "{}(dropped)", cleave_ctl::ECHO);
        self.error(why);
    }

    fn ok(&mut self) {
        if !self.done {
            self.text.push_str("ok\n");
            self.done = true;
        }
    }

    fn error(&mut self, why: core::fmt::Arguments<'_>) {
        if !self.done {
            // One line: a newline in `why` would end the status early.
            let why = alloc::format!("{why}").replace('\n', " ");
            let _ = writeln!(self.text, "error: {why}");
            self.done = true;
        }
    }

    /// The status line, for the system's log.
    fn status(&self) -> &str {
        self.text.lines().last().unwrap_or("")
    }
}

/// The endpoint the toolstack was given as `name`, if any: the supervisor's
/// (`supervisor`, when a component is restarted) and the Builder's (`build`, when a guest
/// starts on request) are found by name, since a system may have neither.
fn given(name: &str) -> Option<Cap<Endpoint>> {
    crate::caps::CAPS.iter().find(|(n, _, _)| *n == name).map(|(_, slot, _)| Cap::from_cptr(*slot))
}

/// Calls `endpoint` (`None`: say `absent`) with `label` and `name` packed in the words:
/// (reply label, words), or why it could not be asked (`silent`: it did not answer).
fn ask(
    endpoint: Option<Cap<Endpoint>>,
    absent: &'static str,
    silent: &'static str,
    label: u64,
    name: &str,
) -> Result<(u64, [u64; 4]), &'static str> {
    let endpoint = endpoint.ok_or(absent)?;
    let words = cleave_ctl::pack_name(name).ok_or("the name does not fit a request")?;
    match endpoint.call(MessageInfo::new(label, 0, 0, 4), words) {
        Ok(m) => Ok((m.info.label(), m.words)),
        Err(_) => Err(silent),
    }
}

/// The supervisor's answer to `label` about component `name`.
fn ask_supervisor(label: u64, name: &str) -> Result<(u64, [u64; 4]), &'static str> {
    ask(
        given("supervisor"),
        "nothing in this system is restarted, so there is no supervisor to ask",
        "the supervisor did not answer",
        label,
        name,
    )
}

/// The Builder's answer to `label` about `guest`.
fn ask_builder(label: u64, guest: &str) -> Result<(u64, [u64; 4]), &'static str> {
    ask(
        given("build"),
        "this system has no Builder (no guest starts on request)",
        "the Builder did not answer",
        label,
        guest,
    )
}

/// The memory table the system was built with (`COMPONENT BYTES` lines, then
/// `control-plane BYTES`), from the page cleave maps for it; empty if it does not read.
fn memory_table() -> &'static str {
    // SAFETY: cleave maps one page read-only at MEMORY_PAGE in the toolstack, filled from
    // the table `cargo xtask` generated (NUL after the text); nothing writes it.
    let page = unsafe { core::slice::from_raw_parts(facts::MEMORY_PAGE as *const u8, 4096) };
    let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
    core::str::from_utf8(&page[..end]).unwrap_or("")
}

/// A component's state as the supervisor sees it, for `list`.
fn state(name: &str) -> alloc::string::String {
    use cleave_ctl::supervisor::{STATUS, kind, reply};
    match ask_supervisor(STATUS, name) {
        Ok((reply::OK, [kind::RESTARTABLE, instance, crashes, _])) => {
            alloc::format!(
                "running, instance {instance}, {} restarts, {crashes} crashes",
                instance.saturating_sub(1)
            )
        }
        Ok((reply::OK, [kind::ENDED, instance, ..])) => alloc::format!("ended (instance {instance})"),
        Ok((reply::OK, [kind::STOPPED, instance, ..])) => alloc::format!("stopped (instance {instance})"),
        Ok((reply::OK, [kind::CRASHED, instance, crashes, _])) => alloc::format!(
            "crashed (instance {instance}, {crashes} crashes), restarted when its backoff is over"
        ),
        Ok((reply::OK, [kind::DISPOSABLE, ..])) => "running (until it is done)".into(),
        Ok((reply::OK, [kind::DISPOSED, ..])) => "gone (disposed of)".into(),
        // Not one the supervisor watches: nothing tells the toolstack its state.
        _ => "not supervised".into(),
    }
}

/// Answers `request` into `reply`.
fn answer(request: Request<'_>, reply: &mut Reply) -> Next {
    match request {
        Request::Help => {
            cleave_ctl::HELP.iter().for_each(|l| reply.body(format_args!("{l}")));
            reply.ok();
        }
        Request::List => {
            let width = facts::COMPONENTS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            let table = memory_table();
            let memory = |name: &str| match table
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            {
                Some(bytes) => alloc::format!("; {} KiB", bytes.parse::<u64>().unwrap_or(0).div_ceil(1024)),
                None => alloc::string::String::new(),
            };
            for (name, what) in facts::COMPONENTS {
                reply.body(format_args!("{name:width$}  {what}; {}{}", state(name), memory(name)));
            }
            if let Some(total) = table.lines().find_map(|l| l.strip_prefix("control-plane ")) {
                reply.body(format_args!(
                    "control plane: {} KiB (components, what they share, kernel objects and tables: `cleave memory`)",
                    total.parse::<u64>().unwrap_or(0).div_ceil(1024)
                ));
            }
            for (name, bytes, image, on_request) in facts::GUESTS {
                let how = if *on_request {
                    match ask_builder(cleave_ctl::builder::STATUS, name) {
                        Ok((cleave_ctl::builder::OK, [1, ..])) => {
                            "built by the Builder on request: built, its RAM taken from the Builder's pool"
                        }
                        Ok((cleave_ctl::builder::OK, [0, ..])) => {
                            "built by the Builder on request: not built, its RAM is in the Builder's pool"
                        }
                        _ => "built by the Builder on request: the Builder did not say whether it is built",
                    }
                } else {
                    "built at boot"
                };
                reply.body(format_args!(
                    "guest {name}: {} KiB of RAM, image {image}, devices emulated by vmm-{name}, {how}",
                    bytes >> 10
                ));
            }
            reply.ok();
        }
        Request::Restart(name) => restart(name, reply),
        Request::Create(guest) => create(guest, reply),
        Request::Destroy(guest) => destroy(guest, reply),
        Request::Privileges => {
            facts::PRIVILEGES.lines().for_each(|l| reply.body(format_args!("{l}")));
            reply.ok();
        }
        Request::Exposure(guest) => match facts::EXPOSURE.iter().find(|(g, _)| *g == guest) {
            Some((_, text)) => {
                text.lines().for_each(|l| reply.body(format_args!("{l}")));
                reply.ok();
            }
            None => reply.error(format_args!("no guest named `{guest}`")),
        },
        // Answered by the line itself, which attaches.
        Request::Console(_) => reply.error(format_args!("the console is attached by the line")),
        Request::Audit => reply.error(format_args!("the audit log is sent by the line")),
        Request::Shutdown => {
            reply.body(format_args!("the run ends"));
            reply.ok();
            return Next::Shutdown;
        }
    }
    Next::Serve
}

/// `restart NAME`: through the supervisor, which alone holds what a restart needs.
fn restart(name: &str, reply: &mut Reply) {
    use cleave_ctl::supervisor::{RESTART, reply as r};
    let Some((_, what)) = facts::COMPONENTS.iter().find(|(n, _)| *n == name) else {
        return reply.error(format_args!("no component named `{name}`"));
    };
    if let Some((guest, ..)) = facts::GUESTS.iter().find(|g| g.3 && alloc::format!("vmm-{}", g.0) == name) {
        return reply.error(format_args!(
            "`{name}` runs on-request guest `{guest}`: `create {guest}` and `destroy {guest}` start and stop it"
        ));
    }
    match ask_supervisor(RESTART, name) {
        Ok((r::OK, [_, instance, ..])) => {
            reply.body(format_args!("restarted `{name}` from its pristine image: now instance {instance}"));
            reply.ok();
        }
        Ok((r::NOT_RESTARTABLE, _)) => {
            reply.error(format_args!("`{name}` is disposable: it runs once, is destroyed when done, and is never restarted"))
        }
        Ok((r::UNKNOWN, _)) => reply.error(format_args!(
            "`{name}` is not restartable ({what}): only a component with `restart` in system.toml has a pristine image to restart from"
        )),
        Ok((r::FAILED, _)) => reply.error(format_args!("`{name}` could not be restarted (it ended for good)")),
        Ok((r::BACKING_OFF, _)) => reply.error(format_args!(
            "`{name}` crashed and waits out its backoff; the supervisor restarts it then (a crash loop's backoff is not cut short)"
        )),
        Ok(_) => reply.error(format_args!("the supervisor refused the request")),
        Err(why) => reply.error(format_args!("{why}")),
    }
}

/// The guest of that name, if it starts on request; else the error to give.
fn on_request_guest(guest: &str) -> Result<u64, alloc::string::String> {
    match facts::GUESTS.iter().find(|g| g.0 == guest) {
        None => Err(alloc::format!("no guest named `{guest}`")),
        Some((_, _, _, false)) => Err(alloc::format!(
            "guest `{guest}` is built at boot: only a guest with start = \"on-request\" is created and destroyed"
        )),
        Some((_, bytes, _, true)) => Ok(*bytes),
    }
}

/// What a Builder refusal means.
fn builder_error(guest: &str, label: u64, words: [u64; 4], creating: bool) -> alloc::string::String {
    use cleave_ctl::builder as b;
    match label {
        b::WRONG_STATE if creating => alloc::format!("guest `{guest}` is built already (destroy it first)"),
        b::WRONG_STATE => alloc::format!("guest `{guest}` is not built"),
        b::NO_MEMORY => {
            alloc::format!("the Builder's pool has not {} KiB left for guest `{guest}`", words[0] >> 10)
        }
        b::UNKNOWN => alloc::format!("the Builder has no guest `{guest}`"),
        b::REFUSED => {
            alloc::format!("the kernel refused step {} of the build (error {})", words[0], words[1])
        }
        _ => "the Builder refused the request".into(),
    }
}

/// `create GUEST`: the Builder makes its RAM from its pool, then the supervisor starts its
/// VMM from the VMM's pristine image (which loads the guest and runs it).
fn create(guest: &str, reply: &mut Reply) {
    use cleave_ctl::supervisor::{RESTART, reply as r};
    if let Err(why) = on_request_guest(guest) {
        return reply.error(format_args!("{why}"));
    }
    match ask_builder(cleave_ctl::builder::BUILD, guest) {
        Ok((cleave_ctl::builder::OK, [bytes, ..])) => {
            reply.body(format_args!(
                "the Builder made {} KiB of RAM for `{guest}` from its pool",
                bytes >> 10
            ));
        }
        Ok((label, words)) => {
            return reply.error(format_args!("{}", builder_error(guest, label, words, true)));
        }
        Err(why) => return reply.error(format_args!("{why}")),
    }
    let vmm = alloc::format!("vmm-{guest}");
    match ask_supervisor(RESTART, &vmm) {
        Ok((r::OK, [_, instance, ..])) => {
            reply.body(format_args!("started `{vmm}` (instance {instance}), which loads and runs the guest"));
            reply.ok();
        }
        _ => {
            // Nothing half done: the RAM goes back.
            match ask_builder(cleave_ctl::builder::DESTROY, guest) {
                Ok((cleave_ctl::builder::OK, _)) => reply.error(format_args!(
                    "the supervisor did not start `{vmm}`; the guest's RAM went back to the Builder"
                )),
                _ => reply.error(format_args!(
                    "the supervisor did not start `{vmm}`, and the Builder did not take the guest's RAM back: `destroy {guest}` again"
                )),
            }
        }
    }
}

/// `destroy GUEST`: the supervisor stops its VMM, then the Builder takes its RAM back
/// (every mapping of it goes with it).
fn destroy(guest: &str, reply: &mut Reply) {
    use cleave_ctl::supervisor::{STOP, reply as r};
    if let Err(why) = on_request_guest(guest) {
        return reply.error(format_args!("{why}"));
    }
    let vmm = alloc::format!("vmm-{guest}");
    match ask_supervisor(STOP, &vmm) {
        Ok((r::OK, _)) => reply.body(format_args!("stopped `{vmm}`")),
        _ => return reply.error(format_args!("the supervisor did not stop `{vmm}`; nothing was destroyed")),
    }
    match ask_builder(cleave_ctl::builder::DESTROY, guest) {
        Ok((cleave_ctl::builder::OK, [bytes, ..])) => {
            reply.body(format_args!(
                "the Builder took back `{guest}`'s {} KiB of RAM into its pool",
                bytes >> 10
            ));
            reply.ok();
        }
        Ok((label, words)) => reply.error(format_args!("{}", builder_error(guest, label, words, false))),
        Err(why) => reply.error(format_args!("{why}")),
    }
}

/// Hostile requests straight to the Builder (as a compromised toolstack could send them): a
/// label it does not have, words that are no name, a guest it has not, and a destroy of a
/// guest not built. Each must be refused, and each request must be served by a fresh
/// instance (the supervisor rolls the Builder back after every one). Returns (refused as
/// expected, served by a fresh instance, asked); `None` without a Builder.
pub fn hostile_builder_requests() -> Option<(usize, usize, usize)> {
    use cleave_ctl::builder::{DESTROY, MALFORMED, UNKNOWN, WRONG_STATE};
    let builder = given("build")?;
    let name = |n: &str| cleave_ctl::pack_name(n).unwrap_or_default();
    // A guest the Builder makes (none is built yet).
    let guest = facts::GUESTS.iter().find(|g| g.3)?.0;
    let requests: [(u64, [u64; 4], u64); 4] = [
        (0x7777, name(guest), MALFORMED),
        (cleave_ctl::builder::BUILD, [u64::MAX; 4], MALFORMED),
        (cleave_ctl::builder::BUILD, name("nobody"), UNKNOWN),
        (DESTROY, name(guest), WRONG_STATE),
    ];
    let instance = || match ask_supervisor(cleave_ctl::supervisor::STATUS, "builder") {
        Ok((0, [_, n, ..])) => n,
        _ => 0,
    };
    let (mut refused, mut fresh) = (0, 0);
    for (label, words, want) in requests {
        let before = instance();
        let got = builder.call(MessageInfo::new(label, 0, 0, 4), words).map(|m| m.info.label());
        if got == Ok(want) {
            refused += 1;
        } else {
            println!(
                "toolstack: the Builder answered {got:?} to a hostile request (label {label:#x}), not {want}"
            );
        }
        if instance() == before + 1 {
            fresh += 1;
        }
    }
    Some((refused, fresh, requests.len()))
}
