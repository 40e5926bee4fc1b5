//! What can go wrong: a region or geometry that cannot be used (set-up), a request this
//! side's caller got wrong (nothing sent), and a peer that broke the protocol (the caller
//! stops serving it). Each variant's doc comment is its message.

use crate::shared::OutOfRegion;
use core::fmt;

/// Why a region or a geometry cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// the region does not start on a page boundary
    Misaligned,
    /// the region is empty, not whole pages, or does not fit the address space
    Length,
    /// the region is smaller than its geometry needs
    TooSmall {
        /// Bytes the geometry needs.
        needed: usize,
        /// Bytes the region has.
        have: usize,
    },
    /// the geometry is out of range (a power-of-two slot count up to the limit, a slot
    /// size the kind allows)
    Geometry,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => write!(f, "the region does not start on a page boundary"),
            Self::Length => {
                write!(f, "the region is empty, not whole pages, or does not fit the address space")
            }
            Self::TooSmall { needed, have } => {
                write!(f, "the region has {have} bytes; its geometry needs {needed}")
            }
            Self::Geometry => write!(f, "the geometry is out of range"),
        }
    }
}

/// Which ring of a region an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// A disk region's request ring (the VMM produces, the backend consumes).
    Request,
    /// A disk region's response ring (the backend produces, the VMM consumes).
    Response,
    /// A frame pipe.
    Pipe,
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request ring",
            Self::Response => "response ring",
            Self::Pipe => "frame pipe",
        })
    }
}

/// Why a request (or frame) this side was asked to send was refused, or a buffer does not
/// fit; nothing was sent. Also what a peer's request is refused for
/// ([`ProtocolError::BadRequest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// a read or write of zero bytes, of a length that is not whole sectors, or of more
    /// than a slot; a flush with a length; a get-id of zero bytes or more than a slot
    Length(u32),
    /// the request's last sector is beyond 2^64 - 1
    SectorOverflow,
    /// the data given does not match the request (a write's bytes must be its length; other
    /// operations carry none in, and only a successful read or get-id carries bytes out)
    DataLength,
    /// the buffer is smaller than the bytes to copy into it
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// the frame is longer than a pipe carries ([`crate::pipe::MAX_FRAME`])
    FrameTooLong(usize),
    /// the ring is not being served (the request does not belong to this instance)
    NotServing,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(f, "a length of {len} bytes is not allowed for this operation"),
            Self::SectorOverflow => write!(f, "the request's last sector is beyond 2^64 - 1"),
            Self::DataLength => write!(f, "the data given does not match the request"),
            Self::BufferTooSmall { needed } => {
                write!(f, "the buffer is smaller than the {needed} bytes to copy")
            }
            Self::FrameTooLong(len) => write!(f, "a frame of {len} bytes is longer than a pipe carries"),
            Self::NotServing => write!(f, "the ring is not being served"),
        }
    }
}

/// How the peer broke the protocol. The side that sees one stops serving that peer: the
/// backend for good (until it is restarted itself), the VMM until the backend's epoch
/// changes (a restarted backend is a new peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// the header's magic, version or kind is not this protocol's
    NotThisProtocol,
    /// the header's geometry is not the one this side was configured with
    GeometryMismatch {
        /// The header's slot count.
        slots: u32,
        /// The header's slot size.
        slot_size: u32,
    },
    /// the peer's producer index is more than the ring's size ahead of this side's consumer
    /// index
    ProducerAhead(Ring),
    /// the peer's consumer index is ahead of this side's producer index
    ConsumerAhead(Ring),
    /// the VMM's index carries a generation other than the one it acknowledged
    StaleIndex(Ring),
    /// the VMM changed its acknowledgement while this backend instance served it
    AckChanged,
    /// the VMM has more requests outstanding than the region has slots
    TooManyInFlight,
    /// a request names an operation this protocol does not have
    UnknownOp(u32),
    /// a request names a data slot the region does not have
    SlotOutOfRange(u32),
    /// a request that the VMM side would have refused to send
    BadRequest(RequestError),
    /// a response's id is not that of a request in flight
    UnknownId(u64),
    /// a response's status is not one this protocol has
    UnknownStatus(u32),
    /// a response's length does not fit its request and status
    ResponseLength(u32),
    /// a frame's length is more than a pipe carries
    FrameTooLong(u32),
    /// an access this side computed fell outside the region (a bug in this crate; nothing
    /// was read or written)
    OutOfRegion,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotThisProtocol => write!(f, "the header's magic, version or kind is not this protocol's"),
            Self::GeometryMismatch { slots, slot_size } => write!(
                f,
                "the header's geometry ({slots} slots of {slot_size} bytes) is not the configured one"
            ),
            Self::ProducerAhead(ring) => write!(f, "{ring}: the peer's producer index is too far ahead"),
            Self::ConsumerAhead(ring) => {
                write!(f, "{ring}: the peer's consumer index is ahead of the producer")
            }
            Self::StaleIndex(ring) => {
                write!(f, "{ring}: the VMM's index carries an unacknowledged generation")
            }
            Self::AckChanged => write!(f, "the VMM changed its acknowledgement while served"),
            Self::TooManyInFlight => write!(f, "the VMM has more requests outstanding than slots"),
            Self::UnknownOp(op) => write!(f, "a request names unknown operation {op}"),
            Self::SlotOutOfRange(slot) => write!(f, "a request names slot {slot}, outside the region"),
            Self::BadRequest(e) => write!(f, "a request the VMM side would refuse: {e}"),
            Self::UnknownId(id) => write!(f, "a response's id {id:#x} is not in flight"),
            Self::UnknownStatus(status) => write!(f, "a response's status {status} is unknown"),
            Self::ResponseLength(len) => write!(f, "a response's length {len} does not fit its request"),
            Self::FrameTooLong(len) => write!(f, "a frame of {len} bytes is longer than a pipe carries"),
            Self::OutOfRegion => write!(f, "an access fell outside the region (a bug in cleave-ioring)"),
        }
    }
}

impl From<OutOfRegion> for ProtocolError {
    fn from(_: OutOfRegion) -> Self {
        Self::OutOfRegion
    }
}

/// What a ring operation can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// the peer broke the protocol (stop serving it)
    Protocol(ProtocolError),
    /// this side's request or buffer was refused; nothing changed
    Request(RequestError),
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

impl From<OutOfRegion> for Error {
    fn from(e: OutOfRegion) -> Self {
        Self::Protocol(e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Request(e) => write!(f, "refused: {e}"),
        }
    }
}
