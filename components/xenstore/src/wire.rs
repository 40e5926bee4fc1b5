//! Framing and decoding: `struct xsd_sockmsg { u32 type, req_id, tx_id, len; }` (native,
//! that is little-endian, byte order) followed by `len` bytes of payload, at most 4096.

use crate::path::{self, PathKind};

/// Size of the message header.
pub const HEADER_LEN: usize = 16;
/// Largest payload Xen allows (`XENSTORE_PAYLOAD_MAX`). Xen's protocol fixes it, not the
/// page size it happens to equal: it stays 4096 whatever Cleave's pages are.
pub const PAYLOAD_MAX: usize = 4096;

/// Message types (`enum xsd_sockmsg_type`), with Xen's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`: the children of a node.
    Directory = 1,
    /// `XS_READ`: a node's value.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: sent by the daemon when a watch fires.
    WatchEvent = 15,
    /// `XS_ERROR`: the reply to a failed request; payload is the error's name.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES`.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: part of a large directory listing.
    DirectoryPart = 22,
}

impl MsgType {
    /// The type with Xen's number `n`.
    pub fn from_u32(n: u32) -> Option<Self> {
        use MsgType::*;
        Some(match n {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// Xen's error names (`xsd_errors` in `xs_wire.h`, all of them; `EPERM` is the newest),
/// sent as the payload of an `XS_ERROR` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Invalid argument: a malformed request.
    Inval,
    /// Permission denied.
    Acces,
    /// The node exists.
    Exist,
    /// Is a directory.
    IsDir,
    /// No such node, transaction or watch.
    NoEnt,
    /// Out of memory.
    NoMem,
    /// A quota is exhausted.
    NoSpc,
    /// Input/output error.
    Io,
    /// The directory is not empty.
    NotEmpty,
    /// The operation is not implemented.
    NoSys,
    /// Read-only.
    RoFs,
    /// Busy.
    Busy,
    /// The transaction conflicted with another: try again.
    Again,
    /// Already connected.
    IsConn,
    /// The request or reply is too big.
    TooBig,
    /// Not permitted (giving a node to another domain).
    Perm,
}

impl Error {
    /// The name Xen sends (`"ENOENT"`, …), without the NUL.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inval => "EINVAL",
            Self::Acces => "EACCES",
            Self::Exist => "EEXIST",
            Self::IsDir => "EISDIR",
            Self::NoEnt => "ENOENT",
            Self::NoMem => "ENOMEM",
            Self::NoSpc => "ENOSPC",
            Self::Io => "EIO",
            Self::NotEmpty => "ENOTEMPTY",
            Self::NoSys => "ENOSYS",
            Self::RoFs => "EROFS",
            Self::Busy => "EBUSY",
            Self::Again => "EAGAIN",
            Self::IsConn => "EISCONN",
            Self::TooBig => "E2BIG",
            Self::Perm => "EPERM",
        }
    }

    /// The error named `name` (as it appears in an `XS_ERROR` payload, NUL removed).
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_ERRORS.iter().copied().find(|e| e.name() == name)
    }
}

/// Every error, for lookups and tests.
pub const ALL_ERRORS: [Error; 16] = [
    Error::Inval,
    Error::Acces,
    Error::Exist,
    Error::IsDir,
    Error::NoEnt,
    Error::NoMem,
    Error::NoSpc,
    Error::Io,
    Error::NotEmpty,
    Error::NoSys,
    Error::RoFs,
    Error::Busy,
    Error::Again,
    Error::IsConn,
    Error::TooBig,
    Error::Perm,
];

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message type's number (not checked here: an unknown type gets an error reply).
    pub msg_type: u32,
    /// Chosen by the client, echoed in the reply.
    pub req_id: u32,
    /// The transaction, 0 for none.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// The header's 16 bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        for (i, v) in [self.msg_type, self.req_id, self.tx_id, self.len].into_iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Reads a header from the first 16 bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let word = |i: usize| Some(u32::from_le_bytes(b.get(i * 4..i * 4 + 4)?.try_into().ok()?));
        Some(Self { msg_type: word(0)?, req_id: word(1)?, tx_id: word(2)?, len: word(3)? })
    }
}

/// What `frame` finds at the start of a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A whole message: its header, its payload, and how many bytes it took.
    Message(Header, &'a [u8], usize),
    /// Not enough bytes yet.
    Incomplete,
    /// The header announces more than [`PAYLOAD_MAX`] bytes: the stream cannot be trusted
    /// past this point and the connection should be closed.
    TooLong(Header),
}

/// Finds the first message in `stream`.
pub fn frame(stream: &[u8]) -> Framed<'_> {
    let Some(header) = Header::from_bytes(stream) else { return Framed::Incomplete };
    let len = header.len as usize;
    if len > PAYLOAD_MAX {
        return Framed::TooLong(header);
    }
    match stream.get(HEADER_LEN..HEADER_LEN + len) {
        Some(payload) => Framed::Message(header, payload, HEADER_LEN + len),
        None => Framed::Incomplete,
    }
}

/// A decoded request. Paths are as sent (absolute, relative to the connection's domain
/// home, or a special `@` path for watches); `path::resolve` makes them absolute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `XS_READ path`.
    Read(&'a str),
    /// `XS_WRITE path value` (the value is bytes, not NUL-terminated).
    Write(&'a str, &'a [u8]),
    /// `XS_MKDIR path`.
    Mkdir(&'a str),
    /// `XS_RM path`.
    Rm(&'a str),
    /// `XS_DIRECTORY path`.
    Directory(&'a str),
    /// `XS_DIRECTORY_PART path offset`.
    DirectoryPart(&'a str, u32),
    /// `XS_GET_PERMS path`.
    GetPerms(&'a str),
    /// `XS_SET_PERMS path perm…`: the permission strings, NUL-separated, unparsed
    /// (`perms::parse_list` reads them).
    SetPerms(&'a str, &'a [u8]),
    /// `XS_WATCH path token`.
    Watch(&'a str, &'a str),
    /// `XS_UNWATCH path token`.
    Unwatch(&'a str, &'a str),
    /// `XS_TRANSACTION_START`.
    TransactionStart,
    /// `XS_TRANSACTION_END T|F`: commit (true) or abort.
    TransactionEnd(bool),
    /// `XS_GET_DOMAIN_PATH domid`.
    GetDomainPath(u32),
    /// `XS_RESET_WATCHES`.
    ResetWatches,
}

/// Splits `payload` into NUL-terminated strings; every one must be terminated and UTF-8.
fn strings<const N: usize>(payload: &[u8]) -> Result<[&str; N], Error> {
    let mut out = [""; N];
    let mut rest = payload;
    for slot in &mut out {
        let end = rest.iter().position(|&b| b == 0).ok_or(Error::Inval)?;
        *slot = core::str::from_utf8(&rest[..end]).map_err(|_| Error::Inval)?;
        rest = &rest[end + 1..];
    }
    if rest.is_empty() { Ok(out) } else { Err(Error::Inval) }
}

/// The first NUL-terminated string of `payload` and the bytes after it.
fn first_string(payload: &[u8]) -> Result<(&str, &[u8]), Error> {
    let end = payload.iter().position(|&b| b == 0).ok_or(Error::Inval)?;
    let s = core::str::from_utf8(&payload[..end]).map_err(|_| Error::Inval)?;
    Ok((s, &payload[end + 1..]))
}

fn number(text: &str) -> Result<u32, Error> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Inval);
    }
    text.parse().map_err(|_| Error::Inval)
}

fn node(p: &str) -> Result<&str, Error> {
    path::check(p, PathKind::Node).map(|()| p)
}

fn watched(p: &str) -> Result<&str, Error> {
    path::check(p, PathKind::Watch).map(|()| p)
}

/// Decodes a request's payload. Types a client may not send (`XS_WATCH_EVENT`,
/// `XS_ERROR`) and types Cleave does not implement get `ENOSYS` (unknown numbers too);
/// malformed payloads (a missing NUL, bad UTF-8, an invalid path, trailing bytes) `EINVAL`.
pub fn decode<'a>(header: &Header, payload: &'a [u8]) -> Result<Request<'a>, Error> {
    if payload.len() != header.len as usize || payload.len() > PAYLOAD_MAX {
        return Err(Error::Inval);
    }
    let ty = MsgType::from_u32(header.msg_type).ok_or(Error::NoSys)?;
    Ok(match ty {
        MsgType::Read => Request::Read(node(strings::<1>(payload)?[0])?),
        MsgType::Mkdir => Request::Mkdir(node(strings::<1>(payload)?[0])?),
        MsgType::Rm => Request::Rm(node(strings::<1>(payload)?[0])?),
        MsgType::Directory => Request::Directory(node(strings::<1>(payload)?[0])?),
        MsgType::GetPerms => Request::GetPerms(node(strings::<1>(payload)?[0])?),
        MsgType::Write => {
            let (p, value) = first_string(payload)?;
            Request::Write(node(p)?, value)
        }
        MsgType::SetPerms => {
            let (p, perms) = first_string(payload)?;
            if perms.is_empty() || perms.last() != Some(&0) {
                return Err(Error::Inval);
            }
            Request::SetPerms(node(p)?, perms)
        }
        MsgType::DirectoryPart => {
            let [p, offset] = strings::<2>(payload)?;
            Request::DirectoryPart(node(p)?, number(offset)?)
        }
        MsgType::Watch => {
            let [p, token] = strings::<2>(payload)?;
            Request::Watch(watched(p)?, token)
        }
        MsgType::Unwatch => {
            let [p, token] = strings::<2>(payload)?;
            Request::Unwatch(watched(p)?, token)
        }
        // Xen's clients send an empty string (one NUL); accept an empty payload too.
        MsgType::TransactionStart if payload.is_empty() || payload == b"\0" => Request::TransactionStart,
        MsgType::TransactionEnd => match payload {
            b"T\0" => Request::TransactionEnd(true),
            b"F\0" => Request::TransactionEnd(false),
            _ => return Err(Error::Inval),
        },
        MsgType::GetDomainPath => Request::GetDomainPath(number(strings::<1>(payload)?[0])?),
        MsgType::ResetWatches if payload.is_empty() || payload == b"\0" => Request::ResetWatches,
        MsgType::TransactionStart | MsgType::ResetWatches => return Err(Error::Inval),
        _ => return Err(Error::NoSys),
    })
}

/// Writes a reply (header + payload) into `out`; returns its length, or `None` if `out`
/// is too small or the payload over [`PAYLOAD_MAX`].
pub fn encode(
    out: &mut [u8],
    msg_type: MsgType,
    req_id: u32,
    tx_id: u32,
    payload: &[&[u8]],
) -> Option<usize> {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    if len > PAYLOAD_MAX || out.len() < HEADER_LEN + len {
        return None;
    }
    let header = Header { msg_type: msg_type as u32, req_id, tx_id, len: len as u32 };
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    let mut at = HEADER_LEN;
    for part in payload {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Some(at)
}

/// Writes the `XS_ERROR` reply for `error` to the request with `header`.
pub fn encode_error(out: &mut [u8], header: &Header, error: Error) -> Option<usize> {
    encode(out, MsgType::Error, header.req_id, header.tx_id, &[error.name().as_bytes(), b"\0"])
}

#[cfg(test)]
mod tests;
