//! A driver for one legacy virtio-blk PCI device (QEMU's `virtio-blk-pci` with its legacy
//! interface, I/O BAR 0, INTx), reached through two seams: [`PortIo`] for the registers and
//! [`Dma`] for one physically contiguous buffer that holds the queue and every request's
//! header, status byte and data.
//!
//! The buffer is laid out once, at [`Driver::init`]:
//!
//! | offset | what |
//! |---|---|
//! | 0 | queue 0 in the legacy layout, its size the device's ([`QueueLayout`]) |
//! | after the queue | per request: the 16-byte header at `32 × n`, the status byte at `32 × n + 16` |
//! | the next page | per request: `request_bytes` of data at `request_bytes × n` |
//!
//! Request `n` (its [`Token`]) always uses the same descriptors, `n × d` to `n × d + d - 1`
//! where `d` is 2 plus the data segments a request may need, so there is no free list to
//! corrupt: a used-ring entry is checked against this arithmetic and against the requests
//! in flight. Whatever the device writes to the used ring is checked before it is used; a
//! device that names a request that is not in flight, reports more bytes than the request
//! could take, or moves its index too far is recorded as [`Broken`] and the driver does
//! nothing more with it (every later call returns the error), never panics.
//!
//! The used length of a read is checked (it may not pass the buffer) but otherwise ignored,
//! as the legacy interface advises (virtio 1.x, 2.7.8.1: legacy devices often set it
//! wrong): a read that ends with status OK has filled its buffer, a GET_ID answer is the
//! buffer as the device left it (zeroed first).

use crate::legacy::{self, QueueLayout, descriptor, feature, register, request_type, status};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Access to the device's registers: offsets in its I/O BAR 0.
pub trait PortIo {
    /// Reads `width` bytes (1, 2 or 4) at `offset`, zero-extended.
    fn read(&mut self, offset: u16, width: u8) -> u32;
    /// Writes the low `width` bytes (1, 2 or 4) of `value` at `offset`.
    fn write(&mut self, offset: u16, width: u8, value: u32);
}

/// One physically contiguous buffer the device reaches by DMA.
///
/// The driver writes a request's descriptors and available-ring entry before it writes the
/// ring's index, and reads the used ring's index before the entry and the data it names:
/// an implementation must perform each call's accesses in the order the calls are made
/// (volatile copies on x86, whose stores and loads to ordinary memory are seen by a
/// coherent device in program order) and before any later port access.
pub trait Dma {
    /// Its length in bytes.
    fn len(&self) -> usize;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The physical address of its first byte, as the device sees it.
    fn phys(&self) -> u64;
    /// Copies `out.len()` bytes from `offset`; false (nothing read) if the range is not
    /// inside the buffer.
    fn read(&self, offset: usize, out: &mut [u8]) -> bool;
    /// Copies `data` to `offset`; false (nothing written) if the range is not inside the
    /// buffer.
    fn write(&mut self, offset: usize, data: &[u8]) -> bool;
}

/// How many requests the driver keeps in flight and how big each may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at most (each has its own header, status byte and data area).
    pub requests: u16,
    /// Data bytes per request: whole sectors. Bigger requests are refused.
    pub request_bytes: u32,
}

/// Why the device cannot be driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// the DMA buffer does not start on a 4096-byte boundary
    Misaligned(u64),
    /// the DMA buffer's queue lies beyond what a 32-bit page number reaches
    QueueOutOfReach(u64),
    /// the limits ask for no requests, or for a request size that is not whole sectors
    Limits(Limits),
    /// the device did not read status 0 after the reset
    ResetTimedOut(u8),
    /// the device has no queue 0
    NoQueue,
    /// the device's queue size is not a power of two up to 32768
    QueueSize(u16),
    /// the device did not take the queue's page number
    QueueRefused {
        /// What was written.
        written: u32,
        /// What reads back.
        read: u32,
    },
    /// a request needs more data segments than the device's `seg_max`
    TooManySegments {
        /// Segments a request may need.
        segments: u32,
        /// The device's limit.
        seg_max: u32,
    },
    /// the queue has fewer descriptors than the requests need
    NotEnoughDescriptors {
        /// Descriptors needed.
        needed: u32,
        /// The queue's size.
        have: u16,
    },
    /// the DMA buffer is smaller than the queue and the requests need
    DmaTooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes the buffer has.
        have: usize,
    },
    /// the DMA buffer refused an access inside its stated length
    Dma,
    /// the device did not accept DRIVER_OK (its status reads back otherwise)
    DeviceFailed(u8),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned(phys) => write!(f, "the DMA buffer at {phys:#x} is not 4096-byte aligned"),
            Self::QueueOutOfReach(phys) => {
                write!(f, "the DMA buffer at {phys:#x} is beyond a 32-bit queue page number")
            }
            Self::Limits(l) => write!(
                f,
                "{} requests of {} bytes: need at least one request of whole sectors",
                l.requests, l.request_bytes
            ),
            Self::ResetTimedOut(s) => write!(f, "the device's status reads {s:#x} after the reset"),
            Self::NoQueue => write!(f, "the device has no queue 0"),
            Self::QueueSize(size) => {
                write!(f, "the device's queue size {size} is not a power of two up to 32768")
            }
            Self::QueueRefused { written, read } => {
                write!(f, "the device did not take queue page {written:#x} (reads {read:#x})")
            }
            Self::TooManySegments { segments, seg_max } => {
                write!(f, "a request needs {segments} segments, the device takes {seg_max}")
            }
            Self::NotEnoughDescriptors { needed, have } => {
                write!(f, "the requests need {needed} descriptors, the queue has {have}")
            }
            Self::DmaTooSmall { needed, have } => {
                write!(f, "the DMA buffer has {have} bytes, the queue and requests need {needed}")
            }
            Self::Dma => write!(f, "the DMA buffer refused an access inside its length"),
            Self::DeviceFailed(s) => write!(f, "the device did not accept DRIVER_OK (status {s:#x})"),
        }
    }
}

/// How the device broke the queue protocol; the driver does nothing more with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// the used index moved more entries ahead than requests are in flight
    UsedIndexAhead {
        /// The device's index.
        used: u16,
        /// The last one the driver took.
        seen: u16,
    },
    /// a used entry names a descriptor that heads no request of this driver
    UnknownHead(u32),
    /// a used entry names a request that is not in flight (completed already)
    NotInFlight(u16),
    /// a used entry reports more bytes written than the request's device-writable buffers
    UsedLength {
        /// The request.
        request: u16,
        /// The length reported.
        len: u32,
        /// The most it may be.
        max: u32,
    },
    /// the DMA buffer refused an access the driver computed (a bug, or a wrong `Dma`)
    Dma,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UsedIndexAhead { used, seen } => {
                write!(f, "the used index {used} is further ahead of {seen} than requests are in flight")
            }
            Self::UnknownHead(id) => write!(f, "a used entry names descriptor {id}, which heads no request"),
            Self::NotInFlight(request) => write!(f, "a used entry names request {request}, not in flight"),
            Self::UsedLength { request, len, max } => {
                write!(f, "request {request} reports {len} bytes written, more than its {max}")
            }
            Self::Dma => write!(f, "the DMA buffer refused an access the driver computed"),
        }
    }
}

/// Why a request was refused or a completion not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// every request is in flight (try again after a completion)
    Full,
    /// a read or write of no bytes, of bytes that are not whole sectors, or of more than a
    /// request carries; a get-id of no bytes
    Length(u32),
    /// the sectors pass the disk's end
    OutOfRange,
    /// the device does not flush (it has no write cache)
    Unsupported,
    /// the disk is read-only
    ReadOnly,
    /// the buffer is smaller than the completion's bytes; nothing was taken
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// the device is broken
    Broken(Broken),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Full => write!(f, "every request is in flight"),
            Self::Length(len) => write!(f, "a length of {len} bytes is not allowed for this request"),
            Self::OutOfRange => write!(f, "the sectors pass the disk's end"),
            Self::Unsupported => write!(f, "the device does not flush"),
            Self::ReadOnly => write!(f, "the disk is read-only"),
            Self::BufferTooSmall { needed } => write!(f, "the buffer is smaller than the {needed} bytes"),
            Self::Broken(b) => write!(f, "the device is broken: {b}"),
        }
    }
}

impl From<Broken> for Error {
    fn from(b: Broken) -> Self {
        Self::Broken(b)
    }
}

/// A request for the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Read `len` bytes (whole sectors) from `sector`.
    Read {
        /// The first sector.
        sector: u64,
        /// Bytes.
        len: u32,
    },
    /// Write `data` (whole sectors) at `sector`.
    Write {
        /// The first sector.
        sector: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Make completed writes durable.
    Flush,
    /// The device's identifier, at most `len` bytes (it has at most 20).
    GetId {
        /// Bytes wanted.
        len: u32,
    },
}

/// Which request a completion answers: the request's number, below [`Limits::requests`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Token(pub(crate) u16);

impl Token {
    /// The request's number.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// How the device answered a request (its status byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `VIRTIO_BLK_S_OK`.
    Ok,
    /// `VIRTIO_BLK_S_IOERR`, or a status byte the device did not write or wrote a value
    /// virtio-blk does not have.
    IoError,
    /// `VIRTIO_BLK_S_UNSUPP`.
    Unsupported,
}

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Which request.
    pub token: Token,
    /// How it ended.
    pub status: Status,
    /// Bytes copied out (a successful read's or get-id's).
    pub len: u32,
}

/// What the ISR said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interrupt {
    /// The device used buffers: call [`Driver::complete`] until `None`.
    pub queue: bool,
    /// The device's configuration changed (the capacity is read once, at `init`).
    pub config: bool,
}

/// What a request in flight is.
#[derive(Clone, Copy, Debug)]
struct Flight {
    kind: Kind,
    /// Data bytes.
    len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Flush,
    GetId,
}

impl Kind {
    /// Whether the device writes the data (it reads it otherwise).
    fn device_writes(self) -> bool {
        matches!(self, Self::Read | Self::GetId)
    }
}

/// The size of one request's control block: the header, then the status byte.
const CONTROL: usize = 32;
/// The status byte's offset in the control block.
const STATUS_AT: usize = legacy::HEADER_LEN;
/// What the status byte holds until the device writes it (not a virtio-blk status).
const NO_STATUS: u8 = 0xff;
/// Reads of the status register before a reset counts as failed.
const RESET_POLLS: u32 = 1000;

/// The driver of one legacy virtio-blk device.
pub struct Driver<P, D> {
    port: P,
    dma: D,
    queue: QueueLayout,
    capacity: u64,
    /// Features accepted.
    features: u32,
    /// Bytes per data descriptor at most.
    segment: u32,
    /// Descriptors per request.
    per_request: u16,
    request_bytes: u32,
    /// Offset of the control blocks.
    control: usize,
    /// Offset of the data areas.
    data: usize,
    flights: Vec<Option<Flight>>,
    in_flight: u16,
    /// Where the search for a free request starts.
    next: u16,
    avail_idx: u16,
    last_used: u16,
    /// Requests made available since the last notify.
    unnotified: bool,
    broken: Option<Broken>,
}

impl<P: PortIo, D: Dma> Driver<P, D> {
    /// Resets the device and drives it: ACKNOWLEDGE and DRIVER, the features of
    /// [`feature::ACCEPTED`] it offers, queue 0 in `dma` (the device's queue size; the
    /// requests of `limits` after it), DRIVER_OK. The device's requests of an earlier
    /// driver instance are void after the reset.
    pub fn init(mut port: P, mut dma: D, limits: Limits) -> Result<Self, InitError> {
        let phys = dma.phys();
        if !phys.is_multiple_of(legacy::QUEUE_ALIGN as u64) {
            return Err(InitError::Misaligned(phys));
        }
        let pfn =
            u32::try_from(phys / legacy::QUEUE_ALIGN as u64).map_err(|_| InitError::QueueOutOfReach(phys))?;
        if limits.requests == 0
            || limits.request_bytes == 0
            || !limits.request_bytes.is_multiple_of(legacy::SECTOR)
        {
            return Err(InitError::Limits(limits));
        }
        if phys.checked_add(dma.len() as u64).is_none() {
            return Err(InitError::QueueOutOfReach(phys));
        }

        port.write(register::STATUS, 1, 0);
        let mut reset = port.read(register::STATUS, 1) as u8;
        for _ in 0..RESET_POLLS {
            if reset == 0 {
                break;
            }
            reset = port.read(register::STATUS, 1) as u8;
        }
        if reset != 0 {
            return Err(InitError::ResetTimedOut(reset));
        }
        port.write(register::STATUS, 1, u32::from(status::ACKNOWLEDGE));
        let driving = status::ACKNOWLEDGE | status::DRIVER;
        port.write(register::STATUS, 1, u32::from(driving));
        let features = port.read(register::HOST_FEATURES, 4) & feature::ACCEPTED;
        port.write(register::GUEST_FEATURES, 4, features);

        // Any failure from here on tells the device the driver gave up.
        let result = Self::set_up(&mut port, &mut dma, limits, features, pfn);
        let (queue, segment, per_request, control, data) = match result {
            Ok(parts) => parts,
            Err(e) => {
                port.write(register::STATUS, 1, u32::from(driving | status::FAILED));
                return Err(e);
            }
        };
        let capacity = read_capacity(&mut port);
        let ready = driving | status::DRIVER_OK;
        port.write(register::STATUS, 1, u32::from(ready));
        let now = port.read(register::STATUS, 1) as u8;
        if now != ready {
            return Err(InitError::DeviceFailed(now));
        }
        Ok(Self {
            port,
            dma,
            queue,
            capacity,
            features,
            segment,
            per_request,
            request_bytes: limits.request_bytes,
            control,
            data,
            flights: vec![None; usize::from(limits.requests)],
            in_flight: 0,
            next: 0,
            avail_idx: 0,
            last_used: 0,
            unnotified: false,
            broken: None,
        })
    }

    /// Lays the buffer out for the device's queue and `limits`, and gives the device the
    /// queue: (queue, segment size, descriptors per request, control offset, data offset).
    fn set_up(
        port: &mut P,
        dma: &mut D,
        limits: Limits,
        features: u32,
        pfn: u32,
    ) -> Result<(QueueLayout, u32, u16, usize, usize), InitError> {
        port.write(register::QUEUE_SELECT, 2, 0);
        let size = port.read(register::QUEUE_SIZE, 2) as u16;
        if size == 0 {
            return Err(InitError::NoQueue);
        }
        let queue = QueueLayout::new(size).ok_or(InitError::QueueSize(size))?;
        let size_max = match features & feature::SIZE_MAX {
            0 => 0,
            _ => read_config(port, legacy::config::SIZE_MAX),
        };
        // A size_max of 0 says nothing (a device that means it can take no bytes cannot
        // be driven anyway).
        let segment = if size_max == 0 { limits.request_bytes } else { size_max.min(limits.request_bytes) };
        let segments = limits.request_bytes.div_ceil(segment);
        if features & feature::SEG_MAX != 0 {
            let seg_max = read_config(port, legacy::config::SEG_MAX);
            if seg_max != 0 && segments > seg_max {
                return Err(InitError::TooManySegments { segments, seg_max });
            }
        }
        let per_request = segments + 2;
        let needed = per_request.saturating_mul(u32::from(limits.requests));
        if needed > u32::from(size) {
            return Err(InitError::NotEnoughDescriptors { needed, have: size });
        }
        // Fits a u16: at most the queue's size.
        let per_request = per_request as u16;
        let requests = u64::from(limits.requests);
        let control = queue.bytes;
        let data = (control as u64 + requests * CONTROL as u64).next_multiple_of(legacy::QUEUE_ALIGN as u64);
        let total = data + requests * u64::from(limits.request_bytes);
        if total > dma.len() as u64 {
            return Err(InitError::DmaTooSmall { needed: total, have: dma.len() });
        }
        // Fits: at most the buffer's length.
        let data = data as usize;
        // The rings start zeroed: no buffer available, none used.
        let zeros = [0u8; 512];
        for at in (0..queue.bytes).step_by(zeros.len()) {
            let n = zeros.len().min(queue.bytes - at);
            if !dma.write(at, &zeros[..n]) {
                return Err(InitError::Dma);
            }
        }
        port.write(register::QUEUE_PFN, 4, pfn);
        let read = port.read(register::QUEUE_PFN, 4);
        if read != pfn {
            return Err(InitError::QueueRefused { written: pfn, read });
        }
        Ok((queue, segment, per_request, control, data))
    }

    /// The disk's size in 512-byte sectors (read at `init`).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the device flushes (it offered FLUSH: it has a write cache). Without it,
    /// a completed write is as durable as the device makes anything.
    pub fn has_flush(&self) -> bool {
        self.features & feature::FLUSH != 0
    }

    /// Whether the disk is read-only.
    pub fn read_only(&self) -> bool {
        self.features & feature::READ_ONLY != 0
    }

    /// The features accepted.
    pub fn features(&self) -> u32 {
        self.features
    }

    /// The device's queue size.
    pub fn queue_size(&self) -> u16 {
        self.queue.size
    }

    /// Requests in flight at most.
    pub fn requests(&self) -> u16 {
        self.flights.len() as u16
    }

    /// The most data bytes a request carries.
    pub fn request_bytes(&self) -> u32 {
        self.request_bytes
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Whether a request can be submitted now.
    pub fn has_room(&self) -> bool {
        self.broken.is_none() && usize::from(self.in_flight) < self.flights.len()
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// Makes `command` available to the device; it sees it at the next
    /// [`Driver::notify`]. Refused without touching the device if it is malformed, past
    /// the disk's end, not something the device does, or if every request is in flight.
    pub fn submit(&mut self, command: Command<'_>) -> Result<Token, Error> {
        if let Some(b) = self.broken {
            return Err(b.into());
        }
        let (kind, sector, len) = self.check(&command)?;
        let Some(index) = self.free_request() else { return Err(Error::Full) };
        let result = self.place(index, kind, sector, len, command);
        if let Err(b) = result {
            return Err(self.fail(b).into());
        }
        self.flights[usize::from(index)] = Some(Flight { kind, len });
        self.in_flight += 1;
        self.next = (index + 1) % self.requests();
        self.unnotified = true;
        Ok(Token(index))
    }

    /// The kind, first sector and data length of `command`, checked.
    fn check(&self, command: &Command<'_>) -> Result<(Kind, u64, u32), Error> {
        let (kind, sector, len) = match *command {
            Command::Read { sector, len } => (Kind::Read, sector, len),
            Command::Write { sector, data } => {
                let len = u32::try_from(data.len()).map_err(|_| Error::Length(u32::MAX))?;
                (Kind::Write, sector, len)
            }
            Command::Flush => (Kind::Flush, 0, 0),
            Command::GetId { len } => (Kind::GetId, 0, len),
        };
        match kind {
            Kind::Read | Kind::Write => {
                if len == 0 || !len.is_multiple_of(legacy::SECTOR) || len > self.request_bytes {
                    return Err(Error::Length(len));
                }
                let end = sector.checked_add(u64::from(len / legacy::SECTOR));
                if end.is_none_or(|end| end > self.capacity) {
                    return Err(Error::OutOfRange);
                }
                if kind == Kind::Write && self.read_only() {
                    return Err(Error::ReadOnly);
                }
                Ok((kind, sector, len))
            }
            Kind::Flush if !self.has_flush() => Err(Error::Unsupported),
            Kind::Flush => Ok((kind, 0, 0)),
            Kind::GetId if len == 0 => Err(Error::Length(0)),
            // The device writes at most 20 bytes: the buffer is no bigger.
            Kind::GetId => Ok((kind, 0, len.min(legacy::ID_BYTES))),
        }
    }

    /// A request not in flight.
    fn free_request(&self) -> Option<u16> {
        let requests = self.requests();
        (0..requests).map(|i| (self.next + i) % requests).find(|&i| self.flights[usize::from(i)].is_none())
    }

    /// Writes request `index`'s data, header, status byte and descriptors, then makes its
    /// head available.
    fn place(
        &mut self,
        index: u16,
        kind: Kind,
        sector: u64,
        len: u32,
        command: Command<'_>,
    ) -> Result<(), Broken> {
        let control = self.control + CONTROL * usize::from(index);
        let data = self.data + self.request_bytes as usize * usize::from(index);
        match command {
            Command::Write { data: bytes, .. } => self.put(data, bytes)?,
            // A device may answer GET_ID with fewer bytes than asked: the rest reads 0.
            Command::GetId { .. } => self.put(data, &[0; legacy::ID_BYTES as usize][..len as usize])?,
            Command::Read { .. } | Command::Flush => {}
        }
        let request_type = match kind {
            Kind::Read => request_type::IN,
            Kind::Write => request_type::OUT,
            Kind::Flush => request_type::FLUSH,
            Kind::GetId => request_type::GET_ID,
        };
        let mut header = [0u8; legacy::HEADER_LEN];
        header[..4].copy_from_slice(&request_type.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.put(control, &header)?;
        self.put(control + STATUS_AT, &[NO_STATUS])?;

        let head = index * self.per_request;
        let phys = self.dma.phys();
        // The header, device-readable.
        self.descriptor(head, phys + control as u64, legacy::HEADER_LEN as u32, descriptor::NEXT, head + 1)?;
        // The data, cut into segments the device takes.
        let data_flag = if kind.device_writes() { descriptor::WRITE } else { 0 };
        let mut next = head + 1;
        let mut done = 0u32;
        while done < len {
            let piece = self.segment.min(len - done);
            let address = phys + data as u64 + u64::from(done);
            self.descriptor(next, address, piece, data_flag | descriptor::NEXT, next + 1)?;
            done += piece;
            next += 1;
        }
        // The status byte, device-writable, last.
        self.descriptor(next, phys + (control + STATUS_AT) as u64, 1, descriptor::WRITE, 0)?;

        self.put(self.queue.avail_entry(self.avail_idx), &head.to_le_bytes())?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put(self.queue.avail_index(), &self.avail_idx.to_le_bytes())
    }

    /// Writes descriptor `index`.
    fn descriptor(
        &mut self,
        index: u16,
        address: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), Broken> {
        let mut d = [0u8; descriptor::SIZE];
        d[..8].copy_from_slice(&address.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.put(self.queue.descriptor(index), &d)
    }

    /// Tells the device about the requests submitted since the last call, if there were
    /// any. (It always notifies rather than reading the used ring's NO_NOTIFY hint: doing
    /// that right needs a full fence between the index store and the flag load, and a
    /// spurious notify is harmless.)
    pub fn notify(&mut self) {
        if self.unnotified && self.broken.is_none() {
            self.port.write(register::QUEUE_NOTIFY, 2, 0);
        }
        self.unnotified = false;
    }

    /// The next request the device finished, with a successful read's or get-id's bytes
    /// copied into `out`; `None` if there is none. Call it until `None` after an interrupt.
    /// A `out` too short is refused and nothing is taken. A device that broke the queue
    /// protocol is recorded as broken and the error returned, now and from every later
    /// call.
    pub fn complete(&mut self, out: &mut [u8]) -> Result<Option<Completion>, Error> {
        if let Some(b) = self.broken {
            return Err(b.into());
        }
        match self.take(out) {
            Err(Error::Broken(b)) => Err(self.fail(b).into()),
            other => other,
        }
    }

    fn take(&mut self, out: &mut [u8]) -> Result<Option<Completion>, Error> {
        let used = u16::from_le_bytes(self.get::<2>(self.queue.used_index())?);
        let ready = used.wrapping_sub(self.last_used);
        if ready == 0 {
            return Ok(None);
        }
        if ready > self.in_flight {
            return Err(Broken::UsedIndexAhead { used, seen: self.last_used }.into());
        }
        let entry = self.get::<8>(self.queue.used_entry(self.last_used))?;
        let id = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let written = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let per_request = u32::from(self.per_request);
        let index = u16::try_from(id / per_request)
            .ok()
            .filter(|&i| id % per_request == 0 && usize::from(i) < self.flights.len())
            .ok_or(Broken::UnknownHead(id))?;
        let flight = self.flights[usize::from(index)].ok_or(Broken::NotInFlight(index))?;
        // The device may write the data it reads into and the status byte.
        let max = if flight.kind.device_writes() { flight.len + 1 } else { 1 };
        if written > max {
            return Err(Broken::UsedLength { request: index, len: written, max }.into());
        }
        let control = self.control + CONTROL * usize::from(index);
        let [byte] = self.get::<1>(control + STATUS_AT)?;
        let status = match byte {
            0 => Status::Ok,
            2 => Status::Unsupported,
            _ => Status::IoError,
        };
        let len = if status == Status::Ok && flight.kind.device_writes() { flight.len } else { 0 };
        let Some(out) = out.get_mut(..len as usize) else {
            return Err(Error::BufferTooSmall { needed: len as usize });
        };
        let data = self.data + self.request_bytes as usize * usize::from(index);
        if !self.dma.read(data, out) {
            return Err(Broken::Dma.into());
        }
        self.flights[usize::from(index)] = None;
        self.in_flight -= 1;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(Completion { token: Token(index), status, len }))
    }

    /// Reads and so acknowledges the ISR (lowering INTx): what the device signalled.
    pub fn interrupt(&mut self) -> Interrupt {
        let isr = self.port.read(register::ISR, 1) as u8;
        Interrupt { queue: isr & legacy::isr::QUEUE != 0, config: isr & legacy::isr::CONFIG != 0 }
    }

    /// Gives the port and the buffer back (the device keeps running: reset it, or init a
    /// new driver, which does).
    pub fn into_parts(self) -> (P, D) {
        (self.port, self.dma)
    }

    /// Copies `bytes` to `offset` in the buffer.
    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Broken> {
        if self.dma.write(offset, bytes) { Ok(()) } else { Err(Broken::Dma) }
    }

    /// `N` bytes from `offset` in the buffer.
    fn get<const N: usize>(&self, offset: usize) -> Result<[u8; N], Broken> {
        let mut bytes = [0u8; N];
        if self.dma.read(offset, &mut bytes) { Ok(bytes) } else { Err(Broken::Dma) }
    }

    /// Records the device as broken for `b` (the first reason stays) and tells it so.
    fn fail(&mut self, b: Broken) -> Broken {
        if self.broken.is_none() {
            self.broken = Some(b);
            let failed = status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK | status::FAILED;
            self.port.write(register::STATUS, 1, u32::from(failed));
        }
        self.broken.unwrap_or(b)
    }
}

/// The 32-bit configuration field at `offset`.
fn read_config<P: PortIo>(port: &mut P, offset: u16) -> u32 {
    port.read(register::CONFIG + offset, 4)
}

/// The capacity: two 32-bit reads, the high half again to see that it did not change in
/// between (the legacy interface has no configuration generation); a few tries.
fn read_capacity<P: PortIo>(port: &mut P) -> u64 {
    let at = legacy::config::CAPACITY;
    let mut high = read_config(port, at + 4);
    let mut capacity = 0;
    for _ in 0..4 {
        let low = read_config(port, at);
        let again = read_config(port, at + 4);
        capacity = (u64::from(again) << 32) | u64::from(low);
        if again == high {
            break;
        }
        high = again;
    }
    capacity
}
