//! The header page every region starts with: where each word is, who writes it, and how
//! the formatting side writes it and the other side checks it. The crate's documentation
//! has the same table.

use crate::error::ProtocolError;
use crate::shared::{OutOfRegion, PAGE, Shared};

/// The first word of a formatted region: "CLIO" in memory order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CLIO");
/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// Offsets in the header page.
pub(crate) mod offset {
    /// `MAGIC`, written last when the VMM formats the region.
    pub const MAGIC: usize = 0x000;
    /// `VERSION`.
    pub const VERSION: usize = 0x004;
    /// What the region carries ([`super::Kind`]).
    pub const KIND: usize = 0x008;
    /// Number of slots (and of entries in each ring).
    pub const SLOTS: usize = 0x00c;
    /// Bytes per data slot.
    pub const SLOT_SIZE: usize = 0x010;
    /// Disk: the request ring's producer index (VMM).
    pub const REQ_PROD: usize = 0x040;
    /// Disk: the request ring's consumer index (backend).
    pub const REQ_CONS: usize = 0x080;
    /// Pipe: the producer index.
    pub const PIPE_PROD: usize = 0x040;
    /// Pipe: the consumer index.
    pub const PIPE_CONS: usize = 0x080;
    /// Disk: the response ring's producer index (backend).
    pub const RSP_PROD: usize = 0x0c0;
    /// Disk: the response ring's consumer index (VMM).
    pub const RSP_CONS: usize = 0x100;
    /// Disk: the backend's epoch (backend).
    pub const EPOCH: usize = 0x140;
    /// Pipe: the session netback attached to (netback): the VMM produces and consumes
    /// nothing until it reads its own session here.
    pub const PIPE_ATTACHED: usize = 0x140;
    /// Disk: the epoch the VMM acknowledged (VMM).
    pub const ACK: usize = 0x180;
    /// Non-zero once the VMM closed the region (a disk ring) or the pipe (its tx pipe) for
    /// good: its guest is gone.
    pub const CLOSED: usize = 0x1c0;
    /// How many times a VMM formatted the region (VMM): a guest's new VMM (a guest
    /// destroyed and made again) counts one more. Disk: the backend then starts a new
    /// epoch for it alone. Pipe: netback attaches again (never 0 for a formatted pipe).
    pub const SESSION: usize = 0x200;
    /// Where the entry arrays start: the page after the header.
    pub const ENTRIES: usize = super::PAGE;
}

/// What a region carries, in its header's `kind` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// Disk requests and responses ([`crate::blk`]).
    Blk = 1,
    /// Frames in one direction ([`crate::pipe`]).
    Pipe = 2,
}

/// `n` rounded up to a whole number of pages.
pub(crate) const fn page_align(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// Writes the header's fixed part for `kind` and the geometry, version then magic last
/// (Release), so that a peer that sees the magic sees the rest. The caller writes the
/// index words it owns before calling this (and a disk region's acknowledgement after).
pub(crate) fn format(shared: &Shared, kind: Kind, slots: u32, slot_size: u32) -> Result<(), OutOfRegion> {
    shared.store_u32(offset::KIND, kind as u32)?;
    shared.store_u32(offset::SLOTS, slots)?;
    shared.store_u32(offset::SLOT_SIZE, slot_size)?;
    shared.store_u32(offset::VERSION, VERSION)?;
    shared.store_u32(offset::MAGIC, MAGIC)
}

/// Checks the header the VMM wrote against this side's own configuration: `Ok(false)` if
/// the region is not formatted yet (magic zero: wait), `Ok(true)` if it matches.
pub(crate) fn check(shared: &Shared, kind: Kind, slots: u32, slot_size: u32) -> Result<bool, ProtocolError> {
    let magic = shared.load_u32(offset::MAGIC)?;
    if magic == 0 {
        return Ok(false);
    }
    if magic != MAGIC
        || shared.load_u32(offset::VERSION)? != VERSION
        || shared.load_u32(offset::KIND)? != kind as u32
    {
        return Err(ProtocolError::NotThisProtocol);
    }
    let (theirs, their_size) = (shared.load_u32(offset::SLOTS)?, shared.load_u32(offset::SLOT_SIZE)?);
    if (theirs, their_size) != (slots, slot_size) {
        return Err(ProtocolError::GeometryMismatch { slots: theirs, slot_size: their_size });
    }
    Ok(true)
}

/// The epoch of a region no backend has started on: backend instances number their epochs
/// from 1 and skip 0 when the count wraps, so no backend index word is read while the VMM
/// has acknowledged only this one.
pub(crate) const NO_BACKEND: u32 = 0;

/// A disk ring's index word: the generation (the epoch the VMM acknowledged) in the high
/// half, the free-running index in the low half.
pub(crate) const fn tagged(generation: u32, index: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

/// The generation and index of a tagged index word.
pub(crate) const fn untag(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// Whether `slots` is a slot count a ring can have: a power of two from 1 to `max`.
pub(crate) const fn valid_slots(slots: u32, max: u32) -> bool {
    slots.is_power_of_two() && slots <= max
}
