//! Disk requests between a guest's VMM and blkback: the geometry both are told, the
//! operations and statuses (virtio-blk's numbers), the entries' layout, and the checks both
//! sides make of a request. [`Vmm`] is the VMM's side, [`Backend`] the backend's.

mod backend;
mod vmm;

pub use backend::{Backend, Received};
pub use vmm::{Completion, Event, RingState, Vmm};

use crate::error::{RegionError, RequestError};
use crate::layout::{offset, page_align, valid_slots};

/// Bytes per sector: request lengths of reads and writes are whole sectors.
pub const SECTOR: u32 = 512;
/// Most slots (requests in flight) a region can have: the VMM side keeps a table of them
/// by value, and a VMM component has a 16 KiB stack.
pub const MAX_SLOTS: u32 = 64;
/// Largest slot size: the VMM splits a bigger guest request.
pub const MAX_SLOT_SIZE: u32 = 1 << 20;

/// A request entry: `id` u64 at 0, `sector` u64 at 8, `op` u32 at 16, `len` u32 at 20,
/// `slot` u32 at 24, 4 bytes reserved.
pub(crate) mod request_entry {
    pub const SIZE: usize = 32;
    pub const ID: usize = 0;
    pub const SECTOR: usize = 8;
    pub const OP: usize = 16;
    pub const LEN: usize = 20;
    pub const SLOT: usize = 24;
}

/// A response entry: `id` u64 at 0, `status` u32 at 8, `len` u32 at 12.
pub(crate) mod response_entry {
    pub const SIZE: usize = 16;
    pub const ID: usize = 0;
    pub const STATUS: usize = 8;
    pub const LEN: usize = 12;
}

/// What the system description tells both sides about a disk region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Data slots, hence entries in each ring and requests in flight: a power of two from 1
    /// to [`MAX_SLOTS`].
    pub slots: u32,
    /// Bytes per slot, the most one request carries: whole sectors, at most
    /// [`MAX_SLOT_SIZE`].
    pub slot_size: u32,
}

impl Geometry {
    /// Checks the geometry and returns where things are.
    pub(crate) fn layout(self) -> Result<Layout, RegionError> {
        if !valid_slots(self.slots, MAX_SLOTS)
            || self.slot_size == 0
            || !self.slot_size.is_multiple_of(SECTOR)
            || self.slot_size > MAX_SLOT_SIZE
        {
            return Err(RegionError::Geometry);
        }
        let slots = self.slots as usize;
        let requests = offset::ENTRIES;
        let responses = requests + slots * request_entry::SIZE;
        let data = page_align(responses + slots * response_entry::SIZE);
        let size = data + slots * self.slot_size as usize;
        Ok(Layout { geometry: self, requests, responses, data, size })
    }

    /// Bytes a region with this geometry needs (whole pages).
    pub fn region_size(self) -> Result<usize, RegionError> {
        Ok(self.layout()?.size)
    }
}

/// Where a disk region's parts are, from its geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub geometry: Geometry,
    /// Offset of the request entries.
    pub requests: usize,
    /// Offset of the response entries.
    pub responses: usize,
    /// Offset of slot 0.
    pub data: usize,
    /// Bytes the region needs.
    pub size: usize,
}

impl Layout {
    /// Checks that `shared` holds the layout.
    pub fn fits(&self, len: usize) -> Result<(), RegionError> {
        if len < self.size {
            return Err(RegionError::TooSmall { needed: self.size, have: len });
        }
        Ok(())
    }

    /// The ring position of free-running index `index`.
    pub fn position(&self, index: u32) -> usize {
        (index & (self.geometry.slots - 1)) as usize
    }

    /// Offset of the request entry for `index`.
    pub fn request(&self, index: u32) -> usize {
        self.requests + self.position(index) * request_entry::SIZE
    }

    /// Offset of the response entry for `index`.
    pub fn response(&self, index: u32) -> usize {
        self.responses + self.position(index) * response_entry::SIZE
    }

    /// Offset of data slot `slot` (which the caller has checked is below `slots`).
    pub fn slot(&self, slot: u32) -> usize {
        self.data + slot as usize * self.geometry.slot_size as usize
    }
}

/// A disk operation, with virtio-blk's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Read `len` bytes from `sector` into the slot (`VIRTIO_BLK_T_IN`).
    Read = 0,
    /// Write the slot's `len` bytes to `sector` (`VIRTIO_BLK_T_OUT`).
    Write = 1,
    /// Make completed writes durable (`VIRTIO_BLK_T_FLUSH`); `len` is 0.
    Flush = 4,
    /// The disk's identifier, at most `len` bytes, into the slot (`VIRTIO_BLK_T_GET_ID`).
    GetId = 8,
}

impl Op {
    /// The operation numbered `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<Self> {
        match n {
            0 => Some(Self::Read),
            1 => Some(Self::Write),
            4 => Some(Self::Flush),
            8 => Some(Self::GetId),
            _ => None,
        }
    }

    /// Whether a successful response carries bytes out in the slot.
    pub const fn returns_data(self) -> bool {
        matches!(self, Self::Read | Self::GetId)
    }
}

/// How a request ended, with virtio-blk's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Done (`VIRTIO_BLK_S_OK`).
    Ok = 0,
    /// The disk failed, or the request was outside the guest's disk (`VIRTIO_BLK_S_IOERR`).
    IoError = 1,
    /// The backend does not do this operation (`VIRTIO_BLK_S_UNSUPP`).
    Unsupported = 2,
}

impl Status {
    /// The status numbered `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<Self> {
        match n {
            0 => Some(Self::Ok),
            1 => Some(Self::IoError),
            2 => Some(Self::Unsupported),
            _ => None,
        }
    }
}

/// A request as the VMM submits it; the ring picks the data slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The VMM's name for it, given back in its [`Completion`] (for instance the guest's
    /// descriptor chain); need not be unique.
    pub id: u64,
    /// What to do.
    pub op: Op,
    /// The first sector, counted from the start of the guest's disk.
    pub sector: u64,
    /// Bytes: whole sectors for reads and writes, 0 for a flush, the buffer for get-id.
    pub len: u32,
}

/// The rules both sides check a request's shape against: lengths by operation, at most a
/// slot; no sector past 2^64 - 1.
pub(crate) fn check_shape(op: Op, sector: u64, len: u32, slot_size: u32) -> Result<(), RequestError> {
    let length_ok = match op {
        Op::Read | Op::Write => len != 0 && len.is_multiple_of(SECTOR) && len <= slot_size,
        Op::Flush => len == 0,
        Op::GetId => len != 0 && len <= slot_size,
    };
    if !length_ok {
        return Err(RequestError::Length(len));
    }
    if sector.checked_add(u64::from(len / SECTOR)).is_none() {
        return Err(RequestError::SectorOverflow);
    }
    Ok(())
}

/// Whether `len` bytes out fit a response with `status` to `op` of `request_len` bytes:
/// a successful read fills its request, a successful get-id at most its buffer, and
/// everything else carries no bytes.
pub(crate) fn response_length_ok(op: Op, status: Status, request_len: u32, len: u32) -> bool {
    match (op, status) {
        (Op::Read, Status::Ok) => len == request_len,
        (Op::GetId, Status::Ok) => len <= request_len,
        _ => len == 0,
    }
}
