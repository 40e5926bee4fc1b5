//! The operator's control protocol: what `cleave ctl` on the host and the toolstack in
//! the machine say to each other over the toolstack's serial line, and how the toolstack
//! asks the supervisor about and for restarts. Pure logic, `no_std`, tested on the host.
//!
//! On the line, a request is one line of text, `COMMAND [ARGUMENT]`, at most
//! [`MAX_LINE`] bytes before its newline. A reply is the request echoed after [`ECHO`]
//! (so that a client knows where its own reply starts), zero or more body lines, each
//! starting with [`BODY`], then one status line: `ok`, or `error: ` and what went wrong.
//! Anything else the client sees is not a reply (a line from a half-received earlier
//! exchange, noise): it is skipped. A request longer than [`MAX_LINE`] is answered with
//! an error once its newline arrives; what came before the newline is dropped.
#![no_std]

#[cfg(test)]
extern crate std;

/// The longest request line, without its newline.
pub const MAX_LINE: usize = 200;

/// The start of each body line of a reply.
pub const BODY: &str = "| ";

/// The start of a reply's first line, the request it answers.
pub const ECHO: &str = "> ";

/// The longest component or guest name a request may carry ([`pack_name`] fits it in four
/// message words).
pub const MAX_NAME: usize = 32;

/// What the operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// The commands and what they do.
    Help,
    /// Every component and guest: what it is, its lifetime, its instance and restarts.
    List,
    /// Restart a component from its pristine image now.
    Restart(&'a str),
    /// The privilege table the system was built with.
    Privileges,
    /// Every component whose failure or compromise can affect the guest, and through what.
    Exposure(&'a str),
    /// End the run (the toolstack is the component that may).
    Shutdown,
    /// Build an on-request guest (the Builder makes its RAM from its pool) and start it.
    Create(&'a str),
    /// Stop a guest and give its RAM back to the Builder's pool.
    Destroy(&'a str),
    /// Attach the line to a guest's console (`console = "ctl"`) until [`DETACH`].
    Console(&'a str),
    /// The kernel's audit log: [`AUDIT_HEADER`] on the first body line, then one body
    /// line per event the kernel keeps, `TIME WRITER EVENT`.
    Audit,
}

/// The first body line of the reply to `audit`: `kernel audit log: bytes FIRST..END, N
/// lines dropped`, the offsets of what follows in everything the kernel ever recorded and
/// how many of the oldest lines it dropped to make room (none: the log is whole, from
/// `boot`).
pub const AUDIT_HEADER: &str = "kernel audit log:";

/// Why a request line is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// Nothing but blanks.
    Empty,
    /// Not a command this protocol has.
    Unknown(&'a str),
    /// The command needs an argument it did not get.
    Missing(&'static str, &'static str),
    /// An argument the command does not take.
    Extra(&'a str),
    /// A name with characters a component or guest name cannot have, or too long.
    BadName(&'a str),
}

impl core::fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::Empty => write!(f, "an empty request (try `help`)"),
            ParseError::Unknown(word) => write!(f, "unknown command `{word}` (commands: {COMMANDS})"),
            ParseError::Missing(command, what) => write!(f, "`{command}` needs {what}"),
            ParseError::Extra(word) => write!(f, "unexpected `{word}` after the command"),
            ParseError::BadName(name) => write!(
                f,
                "`{name}` is no component or guest name (at most {MAX_NAME} of a-z, 0-9, `-` and `_`)"
            ),
        }
    }
}

/// The commands, for help and errors.
pub const COMMANDS: &str = "help, list, create GUEST, destroy GUEST, console GUEST, restart COMPONENT, privileges, exposure GUEST, audit, shutdown";

/// What each command does, one line each (the reply to `help`).
pub const HELP: &[&str] = &[
    "list                 every component and guest: kind, lifetime, instance, restarts",
    "create GUEST         build an on-request guest from the Builder's pool and start it",
    "destroy GUEST        stop an on-request guest and give its RAM back to the pool",
    "console GUEST        attach to the guest's serial console; Ctrl-] detaches",
    "restart COMPONENT    restart a restartable component from its pristine image now",
    "privileges           the privilege table the system was built with",
    "exposure GUEST       what the guest relies on, and through what",
    "audit                the kernel's audit log (cleave ctl audit asks it cleave audit's questions)",
    "shutdown             end the run",
    "help                 this list",
];

/// Whether `name` can be a component or guest name (what `cleave check` accepts for one is
/// narrower still; this only keeps hostile bytes out of replies and messages).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl<'a> Request<'a> {
    /// Reads one request line (without its newline).
    pub fn parse(line: &'a str) -> Result<Self, ParseError<'a>> {
        let mut words = line.split_ascii_whitespace();
        let Some(command) = words.next() else { return Err(ParseError::Empty) };
        let mut name = |what: &'static str| -> Result<&'a str, ParseError<'a>> {
            let name = words.next().ok_or(ParseError::Missing(command_name(command), what))?;
            if valid_name(name) { Ok(name) } else { Err(ParseError::BadName(name)) }
        };
        let request = match command {
            "help" => Request::Help,
            "list" => Request::List,
            "restart" => Request::Restart(name("a component's name")?),
            "privileges" => Request::Privileges,
            "exposure" => Request::Exposure(name("a guest's name")?),
            "shutdown" => Request::Shutdown,
            "create" => Request::Create(name("a guest's name")?),
            "destroy" => Request::Destroy(name("a guest's name")?),
            "console" => Request::Console(name("a guest's name")?),
            "audit" => Request::Audit,
            other => return Err(ParseError::Unknown(other)),
        };
        match words.next() {
            Some(extra) => Err(ParseError::Extra(extra)),
            None => Ok(request),
        }
    }
}

/// The static name of a known command (for [`ParseError::Missing`]).
fn command_name(command: &str) -> &'static str {
    match command {
        "restart" => "restart",
        "exposure" => "exposure",
        "create" => "create",
        "destroy" => "destroy",
        "console" => "console",
        _ => "the command",
    }
}

/// What [`LineReader::push`] made of a byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<'a> {
    /// Nothing yet.
    More,
    /// A whole line.
    Line(&'a str),
    /// A line longer than [`MAX_LINE`], or not UTF-8, ended here; it was dropped.
    Refused,
}

/// The byte that drops the line received so far (Ctrl-U, a terminal's "kill line"). A
/// client sends it first: a serial line has no connections, so a client that went away in
/// the middle of a request left its bytes in the reader, and they must not be completed,
/// and so carried out, by the next client's newline.
pub const CANCEL: u8 = 0x15;

/// The byte that ends a console session (Ctrl-], as telnet's escape): after `console
/// GUEST` was answered `ok`, the line carries the guest's console both ways, byte for
/// byte, until this byte arrives; the toolstack then sends [`DETACHED`] and reads requests
/// again. Outside a session it is ignored, so a client sends it first (with [`CANCEL`]):
/// a client that went away attached leaves no session for the next one to type into.
pub const DETACH: u8 = 0x1d;

/// What the toolstack sends when a console session ends, on a line of its own. A client
/// looks for it only after it sent [`DETACH`] (a guest could print it too).
pub const DETACHED: &str = "[cleave ctl: detached]";

/// Gathers request bytes into lines, with the limits above: a carriage return is
/// ignored, [`CANCEL`] drops the line so far, a NUL or other control byte ends nothing and
/// is kept out (so a line's text is printable), and a line that grows past [`MAX_LINE`] is
/// dropped as a whole.
pub struct LineReader {
    buf: [u8; MAX_LINE],
    len: usize,
    overlong: bool,
    /// Set after a line is handed out: the next byte starts a new one.
    taken: bool,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    /// An empty reader.
    pub const fn new() -> Self {
        Self { buf: [0; MAX_LINE], len: 0, overlong: false, taken: false }
    }

    /// Takes one byte.
    pub fn push(&mut self, byte: u8) -> Pushed<'_> {
        if self.taken {
            self.len = 0;
            self.taken = false;
        }
        match byte {
            b'\n' => {
                self.taken = true;
                if core::mem::take(&mut self.overlong) {
                    return Pushed::Refused;
                }
                match core::str::from_utf8(&self.buf[..self.len]) {
                    Ok(line) => Pushed::Line(line),
                    Err(_) => Pushed::Refused,
                }
            }
            CANCEL => {
                self.len = 0;
                self.overlong = false;
                Pushed::More
            }
            b'\r' => Pushed::More,
            b if b < 0x20 && b != b'\t' => Pushed::More,
            b => {
                if self.len == MAX_LINE {
                    self.overlong = true;
                } else if !self.overlong {
                    self.buf[self.len] = b;
                    self.len += 1;
                }
                Pushed::More
            }
        }
    }
}

/// A reply's last line, as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<'a> {
    /// Done.
    Ok,
    /// Refused or failed, and why.
    Error(&'a str),
}

/// What one line of a reply is, for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyLine<'a> {
    /// The request the reply is for (without [`ECHO`]).
    Echo(&'a str),
    /// A body line (without [`BODY`]).
    Body(&'a str),
    /// The status: the reply is complete.
    Status(Status<'a>),
    /// Not part of a reply (skipped).
    Other,
}

impl<'a> ReplyLine<'a> {
    /// Reads one line of a reply (without its newline; a carriage return is ignored).
    pub fn parse(line: &'a str) -> Self {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(request) = line.strip_prefix(ECHO) {
            ReplyLine::Echo(request)
        } else if let Some(body) = line.strip_prefix(BODY) {
            ReplyLine::Body(body)
        } else if line == "ok" {
            ReplyLine::Status(Status::Ok)
        } else if let Some(why) = line.strip_prefix("error: ") {
            ReplyLine::Status(Status::Error(why))
        } else {
            ReplyLine::Other
        }
    }
}

/// How the toolstack asks the supervisor about a component and for its restart: a call
/// on the supervisor's endpoint with the toolstack's badge ([`supervisor::SUPERVISOR_BADGE`]), the
/// component's name in the four words ([`pack_name`]).
pub mod supervisor {
    /// The badge of the toolstack's capability to the supervisor's endpoint: bit 62, which
    /// no restartable component's fault badge (they count from 1) and no signal on the
    /// supervisor's notification (disposable components' bits 0-31, guests' 32-61, the
    /// clock's 63) ever carries, so a message with it is the toolstack's whatever its
    /// label.
    pub const SUPERVISOR_BADGE: u64 = 1 << 62;
    /// Label: what is the component's state (words: name).
    pub const STATUS: u64 = 0xc7_0001;
    /// Label: restart the component now (words: name).
    pub const RESTART: u64 = 0xc7_0002;
    /// Label: stop the component (suspend it) until it is restarted (words: name).
    pub const STOP: u64 = 0xc7_0003;

    /// Reply labels.
    pub mod reply {
        /// Done; words: kind, instance (1 for the first), crashes, restart period in ms (0:
        /// rolled back after every request).
        pub const OK: u64 = 0;
        /// The supervisor has no component of that name.
        pub const UNKNOWN: u64 = 1;
        /// The name in the words is malformed.
        pub const MALFORMED: u64 = 2;
        /// It is not one the supervisor can restart (disposable, or gone).
        pub const NOT_RESTARTABLE: u64 = 3;
        /// It ended for good, or the restart failed.
        pub const FAILED: u64 = 4;
        /// It crashed and waits out its backoff: the supervisor restarts it then (an
        /// operator cannot cut a crash loop's backoff short).
        pub const BACKING_OFF: u64 = 5;
    }

    /// Kinds in a status reply's first word.
    pub mod kind {
        /// Restarted on a timer (period > 0) or rolled back after each request (0).
        pub const RESTARTABLE: u64 = 1;
        /// Disposable and still there.
        pub const DISPOSABLE: u64 = 2;
        /// Disposable and gone.
        pub const DISPOSED: u64 = 3;
        /// Restartable but ended for good.
        pub const ENDED: u64 = 4;
        /// Restartable, crashed, and stopped until its backoff is over.
        pub const CRASHED: u64 = 5;
        /// Started only when asked (an on-request guest's VMM), and stopped now: not
        /// started yet, stopped by the toolstack, or crashed.
        pub const STOPPED: u64 = 6;
    }
}

/// How the toolstack asks the Builder (a call on the Builder's endpoint, the guest's name
/// in the four words): the reply's label is [`builder::OK`] or why not.
pub mod builder {
    /// Label: make the guest's RAM from the pool and map it (into the guest's
    /// guest-physical space and its VMM).
    pub const BUILD: u64 = 0xb1_0001;
    /// Label: give the guest's RAM back to the pool (revoke it: every mapping goes).
    pub const DESTROY: u64 = 0xb1_0002;
    /// Label: whether the guest is built; the reply's words are (1 if it is, else 0, its
    /// RAM's bytes).
    pub const STATUS: u64 = 0xb1_0003;
    /// Done.
    pub const OK: u64 = 0;
    /// No on-request guest of that name.
    pub const UNKNOWN: u64 = 1;
    /// The name in the words is malformed, or the label is not one of the above.
    pub const MALFORMED: u64 = 2;
    /// Built already (`BUILD`) or not built (`DESTROY`).
    pub const WRONG_STATE: u64 = 3;
    /// The pool has not enough memory left for the guest's RAM.
    pub const NO_MEMORY: u64 = 4;
    /// The kernel refused a step (said in the reply's first word: the step).
    pub const REFUSED: u64 = 5;
}

/// Packs a name of at most [`MAX_NAME`] bytes into four message words (little-endian
/// bytes, zero padded); `None` if it is longer or empty or has a NUL.
pub fn pack_name(name: &str) -> Option<[u64; 4]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME || bytes.contains(&0) {
        return None;
    }
    let mut padded = [0u8; MAX_NAME];
    padded[..bytes.len()].copy_from_slice(bytes);
    let mut words = [0u64; 4];
    for (w, chunk) in words.iter_mut().zip(padded.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
    }
    Some(words)
}

/// The name [`pack_name`] packed into `words` and `out`'s bytes; `None` unless it is a
/// [`valid_name`] followed only by zeros.
pub fn unpack_name(words: [u64; 4], out: &mut [u8; MAX_NAME]) -> Option<&str> {
    for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let len = out.iter().position(|&b| b == 0).unwrap_or(MAX_NAME);
    if out[len..].iter().any(|&b| b != 0) {
        return None;
    }
    let name = core::str::from_utf8(&out[..len]).ok()?;
    valid_name(name).then_some(name)
}

#[cfg(test)]
mod tests;
