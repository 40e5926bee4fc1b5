//! virtio-blk (legacy): one request queue; each chain a request with a 16-byte header
//! (type, reserved, sector) in its device-readable bytes, then its data, then a
//! device-writable status byte, the chain's last byte (virtio 1.x, 5.2).
//!
//! Reads, writes and flushes go to the VMM as [`BlockRequest`]s, which it serves through
//! its backend and completes with [`VirtioBlk::complete`], in any order. The device answers
//! the rest itself: GET_ID with the serial given at creation, unknown types with UNSUPP,
//! and IOERR for a request of a bad shape (a short header, data where the type has none,
//! a length not a multiple of 512 or past [`MAX_DATA`], more than [`SEG_MAX`] segments)
//! or past the capacity. Chains are read as two byte streams (the readable and the
//! writable bytes), so how the driver cuts them into buffers does not matter
//! (`VIRTIO_F_ANY_LAYOUT`). A chain with no writable byte cannot be answered at all: like a
//! queue error, it breaks the device.
//!
//! Offered: SIZE_MAX and SEG_MAX, so Linux never builds a request of more than
//! [`MAX_DATA`] bytes (its segments are at most [`SIZE_MAX`] bytes, at most [`SEG_MAX`] of
//! them): the VMM copies each request through a buffer of that size to its backend;
//! BLK_SIZE 512; FLUSH (the backend has a write cache to flush, and Linux then sends
//! flushes for `sync`). Not offered: read-only, geometry, topology, the configurable write
//! cache, multiple queues, discard, write-zeroes.

use super::pci::{DeviceType, Transport};
use super::queue::{Chain, QUEUE_SIZE, QueueError};
use super::{Broken, feature};
use crate::devices::pci::{ConfigSpace, PciDevice};
use crate::guest::GuestMemory;
use alloc::vec;
use alloc::vec::Vec;

/// Feature bits.
pub mod features {
    /// The configuration's `size_max` bounds each segment.
    pub const SIZE_MAX: u32 = 1 << 1;
    /// The configuration's `seg_max` bounds the segments of a request.
    pub const SEG_MAX: u32 = 1 << 2;
    /// The configuration's `blk_size` is the logical block size.
    pub const BLK_SIZE: u32 = 1 << 6;
    /// FLUSH requests (legacy name: WCE).
    pub const FLUSH: u32 = 1 << 9;
}

/// Request types (the header's first field).
pub mod request_type {
    /// Read from the device.
    pub const IN: u32 = 0;
    /// Write to the device.
    pub const OUT: u32 = 1;
    /// Flush the device's write cache.
    pub const FLUSH: u32 = 4;
    /// The device's serial number, up to 20 bytes.
    pub const GET_ID: u32 = 8;
}

/// Request status (the status byte).
pub mod status {
    /// Done.
    pub const OK: u8 = 0;
    /// Failed.
    pub const IOERR: u8 = 1;
    /// Not a request this device does.
    pub const UNSUPP: u8 = 2;
}

/// Sectors are 512 bytes, whatever the block size.
pub const SECTOR_SIZE: u64 = 512;
/// Segments a request may have (`seg_max`).
pub const SEG_MAX: u32 = 64;
/// Bytes a segment may have (`size_max`): a page.
pub const SIZE_MAX: u32 = 4096;
/// Data bytes a request may have.
pub const MAX_DATA: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// Bytes of a GET_ID answer.
pub const ID_BYTES: usize = 20;
/// The request header: type (4), reserved (4), sector (8).
const HEADER_LEN: u64 = 16;
/// The legacy `virtio_blk_config` up to the write-zeroes fields (what a 6.1 driver may
/// read with the features offered is the first 24 bytes; the rest reads 0).
const CONFIG_LEN: usize = 0x3c;

/// Features offered.
pub const FEATURES: u32 =
    features::SIZE_MAX | features::SEG_MAX | features::BLK_SIZE | features::FLUSH | feature::ANY_LAYOUT;

/// Which request a chain was taken to be; the VMM matches completions with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId {
    /// The chain's head.
    pub head: u16,
    /// The device's reset count when it was taken: completions across a reset are void.
    resets: u32,
}

/// What a request asks of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Read the sectors into the segments (device-writable).
    Read,
    /// Write the segments (device-readable) to the sectors.
    Write,
    /// Make earlier writes durable.
    Flush,
}

/// A request for the VMM's backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRequest {
    /// For [`VirtioBlk::complete`].
    pub id: RequestId,
    /// What to do.
    pub kind: RequestKind,
    /// The first sector (0 for a flush).
    pub sector: u64,
    /// The data, (guest-physical address, length) in order, all in guest RAM; empty for
    /// a flush.
    pub segments: Vec<(u64, u32)>,
    /// Where the status byte goes.
    pub status_gpa: u64,
}

impl BlockRequest {
    /// The data's length in bytes (a multiple of 512, at most [`MAX_DATA`]).
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|&(_, len)| u64::from(len)).sum()
    }

    /// Whether it carries no data (a flush).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// What the device has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounters {
    /// Reads handed to the VMM.
    pub reads: u64,
    /// Writes handed to the VMM.
    pub writes: u64,
    /// Flushes handed to the VMM.
    pub flushes: u64,
    /// GET_ID requests answered.
    pub get_ids: u64,
    /// Requests answered UNSUPP.
    pub unsupported: u64,
    /// Requests answered IOERR for their shape or range.
    pub rejected: u64,
    /// Completions refused: not in flight, or taken before a reset.
    pub stale_completions: u64,
}

/// A request in flight: where its status goes and how many bytes the device may report
/// written.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    status_gpa: u64,
    writable_data: u32,
}

/// A virtio-blk device.
pub struct VirtioBlk {
    transport: Transport,
    capacity: u64,
    serial: [u8; ID_BYTES],
    /// By head; valid for the current reset count only.
    in_flight: Vec<Option<InFlight>>,
    /// What it has seen.
    pub counters: BlockCounters,
}

/// What the device does with a chain.
enum Parsed {
    /// The VMM's work.
    Request(RequestKind, u64, Vec<(u64, u32)>),
    /// Answered here with this status, after `written` bytes of data.
    Answer(u8, u32),
}

impl VirtioBlk {
    /// The request queue.
    pub const QUEUE: u16 = 0;

    /// A disk of `capacity` 512-byte sectors whose GET_ID answers `serial` (its first 20
    /// bytes).
    pub fn new(capacity: u64, serial: &[u8]) -> Self {
        let mut config = vec![0u8; CONFIG_LEN];
        config[0x00..0x08].copy_from_slice(&capacity.to_le_bytes());
        config[0x08..0x0c].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[0x0c..0x10].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[0x14..0x18].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        let mut id = [0u8; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial[..n]);
        Self {
            transport: Transport::new(DeviceType::Block, FEATURES, 1, QUEUE_SIZE, config),
            capacity,
            serial: id,
            in_flight: vec![None; usize::from(QUEUE_SIZE)],
            counters: BlockCounters::default(),
        }
    }

    /// Its capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The transport (status, features, whether and why it is broken).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The transport, to change (the VMM places the BAR with it).
    pub fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.transport.broken()
    }

    /// Whether the guest notified the request queue since the last call.
    pub fn take_notified(&mut self) -> bool {
        self.transport.take_notified() & 1 != 0
    }

    /// Requests handed out and not completed (since the last reset).
    pub fn in_flight(&self) -> u32 {
        self.transport.queue(Self::QUEUE).map_or(0, |q| q.in_use())
    }

    /// The next read, write or flush the guest posted, answering on the way the requests
    /// the device does itself; None when the queue is empty, not usable, or the device
    /// broke.
    pub fn next_request(&mut self, mem: &mut impl GuestMemory) -> Option<BlockRequest> {
        loop {
            let chain = self.transport.pop(Self::QUEUE, mem)?;
            let writable = chain.writable_len();
            let Some(&(status_gpa, _)) = chain.pieces(true, writable.saturating_sub(1), 1).first() else {
                self.transport.fail(Broken::NoStatusByte { head: chain.head });
                return None;
            };
            match self.parse(mem, &chain) {
                Parsed::Request(kind, sector, segments) => {
                    let writable_data = match kind {
                        // At most MAX_DATA.
                        RequestKind::Read => u32::try_from(writable - 1).unwrap_or(u32::MAX),
                        RequestKind::Write | RequestKind::Flush => 0,
                    };
                    if let Some(slot) = self.in_flight.get_mut(usize::from(chain.head)) {
                        *slot = Some(InFlight { status_gpa, writable_data });
                    }
                    let counter = match kind {
                        RequestKind::Read => &mut self.counters.reads,
                        RequestKind::Write => &mut self.counters.writes,
                        RequestKind::Flush => &mut self.counters.flushes,
                    };
                    *counter += 1;
                    let id = RequestId { head: chain.head, resets: self.transport.resets() };
                    return Some(BlockRequest { id, kind, sector, segments, status_gpa });
                }
                Parsed::Answer(status, written) => {
                    if !self.answer(mem, chain.head, status_gpa, status, written) {
                        return None;
                    }
                }
            }
        }
    }

    /// What the chain asks, checked; GET_ID's answer is written here.
    fn parse(&mut self, mem: &mut impl GuestMemory, chain: &Chain) -> Parsed {
        let ioerr = |counters: &mut BlockCounters| {
            counters.rejected += 1;
            Parsed::Answer(status::IOERR, 0)
        };
        let mut header = [0u8; HEADER_LEN as usize];
        if !chain.read(mem, 0, &mut header) {
            return ioerr(&mut self.counters);
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
        ]);
        // Data in the readable bytes (after the header) and in the writable ones (before
        // the status byte).
        let out_data = chain.readable_len() - HEADER_LEN;
        let in_data = chain.writable_len() - 1;
        let (kind, data, writable) = match kind {
            request_type::IN if out_data == 0 => (RequestKind::Read, in_data, true),
            request_type::OUT if in_data == 0 => (RequestKind::Write, out_data, false),
            request_type::FLUSH if out_data == 0 && in_data == 0 => {
                return Parsed::Request(RequestKind::Flush, 0, Vec::new());
            }
            request_type::GET_ID if out_data == 0 && in_data > 0 => {
                let n = in_data.min(ID_BYTES as u64) as usize;
                self.counters.get_ids += 1;
                if !chain.write(mem, 0, &self.serial[..n]) {
                    return ioerr(&mut self.counters);
                }
                return Parsed::Answer(status::OK, n as u32);
            }
            request_type::IN | request_type::OUT | request_type::FLUSH | request_type::GET_ID => {
                return ioerr(&mut self.counters);
            }
            _ => {
                self.counters.unsupported += 1;
                return Parsed::Answer(status::UNSUPP, 0);
            }
        };
        let in_range = sector.checked_add(data / SECTOR_SIZE).is_some_and(|end| end <= self.capacity);
        if data == 0 || data % SECTOR_SIZE != 0 || data > MAX_DATA || !in_range {
            return ioerr(&mut self.counters);
        }
        let start = if writable { 0 } else { HEADER_LEN };
        let segments = chain.pieces(writable, start, data);
        if segments.len() > SEG_MAX as usize {
            return ioerr(&mut self.counters);
        }
        Parsed::Request(kind, sector, segments)
    }

    /// Writes the status byte and gives the chain back with `written` data bytes (and the
    /// status byte) filled; false if the device broke.
    fn answer(
        &mut self,
        mem: &mut impl GuestMemory,
        head: u16,
        status_gpa: u64,
        status: u8,
        written: u32,
    ) -> bool {
        if !mem.write(status_gpa, &[status]) {
            let error = QueueError::BufferOutsideRam { index: head, gpa: status_gpa, len: 1 };
            self.transport.fail(Broken::Queue { queue: Self::QUEUE, error });
            return false;
        }
        self.transport.push_used(Self::QUEUE, mem, head, written.saturating_add(1));
        self.transport.broken().is_none()
    }

    /// Whether request `id` is still waiting for its completion: taken since the guest
    /// last reset the device, and not completed. A VMM checks this before it writes a
    /// request's data into guest RAM (after a reset the guest may use that memory anew).
    pub fn is_pending(&self, id: RequestId) -> bool {
        self.transport.broken().is_none()
            && id.resets == self.transport.resets()
            && self.in_flight.get(usize::from(id.head)).is_some_and(Option::is_some)
    }

    /// Completes request `id` with `status` ([`status`]) after the backend filled
    /// `written` bytes of its data (0 for writes and flushes): writes the status byte,
    /// gives the chain back and interrupts (unless the guest suppressed it). False if the
    /// request is not in flight (completed already, or taken before the guest reset the
    /// device) or the device is broken: nothing is written then.
    pub fn complete(&mut self, mem: &mut impl GuestMemory, id: RequestId, status: u8, written: u32) -> bool {
        if self.transport.broken().is_some() {
            return false;
        }
        let entry = if id.resets == self.transport.resets() {
            self.in_flight.get_mut(usize::from(id.head)).and_then(Option::take)
        } else {
            None
        };
        let Some(entry) = entry else {
            self.counters.stale_completions += 1;
            return false;
        };
        self.answer(mem, id.head, entry.status_gpa, status, written.min(entry.writable_data))
    }
}

impl PciDevice for VirtioBlk {
    fn config(&self) -> &ConfigSpace {
        self.transport.config()
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        self.transport.config_mut()
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            0 => self.transport.bar_read(offset, data),
            _ => data.fill(0xff),
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.transport.bar_write(offset, data);
        }
    }
    fn interrupt(&self) -> bool {
        self.transport.interrupt()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }
}
