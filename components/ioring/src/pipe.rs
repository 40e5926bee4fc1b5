//! Frames in one direction between a guest's VMM and netback: a ring of slots, each one
//! Ethernet frame with its virtio-net header (at most [`MAX_FRAME`] bytes). Two per
//! (guest, netback) pair: tx, where the VMM produces, and rx, where netback produces.
//!
//! There is no handshake. The VMM formats both pipes when it starts; netback attaches
//! ([`Producer::attach`], [`Consumer::attach`]) and takes its index from the region, where
//! its previous instance left it, so a restart loses at most the frames in flight: the
//! consumer publishes its index as soon as it has copied a frame out (a frame being
//! forwarded when netback restarts is lost, none is delivered twice), and the producer
//! publishes only whole frames (a half-written one is written again by the next
//! instance). A full pipe drops the frame and counts it; a producer never waits.

use crate::error::{Error, ProtocolError, RegionError, RequestError, Ring};
use crate::layout::{self, Kind, offset, page_align, valid_slots};
use crate::shared::{OutOfRegion, Shared};

/// Bytes of data per slot.
pub const FRAME_SLOT: u32 = 2048;
/// The longest frame a pipe carries: an Ethernet frame without its checksum (1514 bytes)
/// and the legacy virtio-net header (10 bytes).
pub const MAX_FRAME: usize = 1514 + 10;
/// Most slots a pipe can have.
pub const MAX_SLOTS: u32 = 1024;
/// A length entry (u32) per slot.
const LENGTH_ENTRY: usize = 4;

/// Where a pipe's parts are.
#[derive(Clone, Copy, Debug)]
struct Layout {
    slots: u32,
    /// Offset of the length entries.
    lengths: usize,
    /// Offset of slot 0.
    data: usize,
    size: usize,
}

impl Layout {
    fn new(slots: u32) -> Result<Self, RegionError> {
        if !valid_slots(slots, MAX_SLOTS) {
            return Err(RegionError::Geometry);
        }
        let lengths = offset::ENTRIES;
        let data = page_align(lengths + slots as usize * LENGTH_ENTRY);
        Ok(Self { slots, lengths, data, size: data + slots as usize * FRAME_SLOT as usize })
    }

    fn fitting(slots: u32, shared: &Shared) -> Result<Self, RegionError> {
        let layout = Self::new(slots)?;
        if shared.len() < layout.size {
            return Err(RegionError::TooSmall { needed: layout.size, have: shared.len() });
        }
        Ok(layout)
    }

    fn position(&self, index: u32) -> usize {
        (index & (self.slots - 1)) as usize
    }

    fn length(&self, index: u32) -> usize {
        self.lengths + self.position(index) * LENGTH_ENTRY
    }

    fn slot(&self, index: u32) -> usize {
        self.data + self.position(index) * FRAME_SLOT as usize
    }
}

/// Bytes a pipe of `slots` slots (a power of two up to [`MAX_SLOTS`]) needs (whole pages).
pub fn region_size(slots: u32) -> Result<usize, RegionError> {
    Ok(Layout::new(slots)?.size)
}

/// Writes a fresh pipe: both indexes at `base`, then the header.
fn format(shared: &Shared, layout: &Layout, base: u32) -> Result<(), RegionError> {
    let write = || -> Result<(), OutOfRegion> {
        shared.store_u32(offset::PIPE_PROD, base)?;
        shared.store_u32(offset::PIPE_CONS, base)?;
        shared.store_u32(offset::CLOSED, 0)?;
        layout::format(shared, Kind::Pipe, layout.slots, FRAME_SLOT)
    };
    // `fitting` checked the header page is inside the region.
    write().map_err(|_| RegionError::Length)
}

/// Where one side of a pipe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Netback before the VMM formatted the pipe.
    Attaching,
    Ready,
    /// The peer broke the protocol.
    Failed(ProtocolError),
}

/// The producing side of a pipe: the VMM's on tx, netback's on rx.
pub struct Producer {
    shared: Shared,
    layout: Layout,
    state: State,
    /// The producer index (this side's copy, ahead of what is published).
    prod: u32,
    published: u32,
    dropped: u64,
}

impl Producer {
    /// Formats `shared` as a pipe of `slots` slots that this side produces into (the VMM's
    /// tx pipe).
    pub fn format(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        Self::format_with_base(shared, slots, 0)
    }

    /// [`Producer::format`] with both indexes starting at `base`.
    pub(crate) fn format_with_base(shared: Shared, slots: u32, base: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        format(&shared, &layout, base)?;
        Ok(Self { shared, layout, state: State::Ready, prod: base, published: base, dropped: 0 })
    }

    /// The producing side of a pipe the VMM formats (netback's rx pipe), continuing at the
    /// producer index in the region once it is formatted.
    pub fn attach(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        Ok(Self { shared, layout, state: State::Attaching, prod: 0, published: 0, dropped: 0 })
    }

    /// Frames dropped because the pipe was full (or not formatted yet).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The protocol error the consumer is refused for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Puts `frame` in the pipe: `false` if it was dropped (the pipe is full). The frame
    /// reaches the consumer at the next [`Producer::publish`].
    pub fn send(&mut self, frame: &[u8]) -> Result<bool, Error> {
        if frame.len() > MAX_FRAME {
            return Err(RequestError::FrameTooLong(frame.len()).into());
        }
        let result = self.put(frame);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        let sent = result?;
        if !sent {
            self.dropped += 1;
        }
        Ok(sent)
    }

    fn put(&mut self, frame: &[u8]) -> Result<bool, ProtocolError> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Attaching => {
                if !self.attach_now()? {
                    return Ok(false);
                }
            }
            State::Ready => {}
        }
        let cons = self.shared.load_u32(offset::PIPE_CONS)?;
        let used = self.prod.wrapping_sub(cons);
        if used > self.layout.slots {
            return Err(ProtocolError::ConsumerAhead(Ring::Pipe));
        }
        if used == self.layout.slots {
            return Ok(false);
        }
        self.shared.write(self.layout.slot(self.prod), frame)?;
        self.shared.store_u32(self.layout.length(self.prod), frame.len() as u32)?;
        self.prod = self.prod.wrapping_add(1);
        Ok(true)
    }

    /// Takes the producer index from the region if the VMM has formatted it.
    fn attach_now(&mut self) -> Result<bool, ProtocolError> {
        if !layout::check(&self.shared, Kind::Pipe, self.layout.slots, FRAME_SLOT)? {
            return Ok(false);
        }
        let prod = self.shared.load_u32(offset::PIPE_PROD)?;
        let cons = self.shared.load_u32(offset::PIPE_CONS)?;
        if prod.wrapping_sub(cons) > self.layout.slots {
            return Err(ProtocolError::ConsumerAhead(Ring::Pipe));
        }
        (self.prod, self.published, self.state) = (prod, prod, State::Ready);
        Ok(true)
    }

    /// Closes the pipe for good: from now on the consumer's [`Consumer::closed`] says so.
    /// The VMM closes its tx pipe when its guest is gone, so that netback can end once
    /// every guest has.
    pub fn close(&self) {
        // The header page is inside every region a pipe was made over.
        let _ = self.shared.store_u32(offset::CLOSED, 1);
    }

    /// Publishes the frames sent since the last call: `true` if there were any (signal the
    /// consumer).
    pub fn publish(&mut self) -> Result<bool, Error> {
        if self.state != State::Ready || self.prod == self.published {
            return Ok(false);
        }
        if let Err(e) = self.shared.store_u32(offset::PIPE_PROD, self.prod) {
            self.state = State::Failed(e.into());
            return Err(e.into());
        }
        self.published = self.prod;
        Ok(true)
    }
}

/// The consuming side of a pipe: netback's on tx, the VMM's on rx.
pub struct Consumer {
    shared: Shared,
    layout: Layout,
    state: State,
    cons: u32,
}

impl Consumer {
    /// Formats `shared` as a pipe of `slots` slots that this side consumes (the VMM's rx
    /// pipe).
    pub fn format(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        Self::format_with_base(shared, slots, 0)
    }

    /// [`Consumer::format`] with both indexes starting at `base`.
    pub(crate) fn format_with_base(shared: Shared, slots: u32, base: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        format(&shared, &layout, base)?;
        Ok(Self { shared, layout, state: State::Ready, cons: base })
    }

    /// The consuming side of a pipe the VMM formats (netback's tx pipe), continuing at the
    /// consumer index in the region once it is formatted.
    pub fn attach(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        Ok(Self { shared, layout, state: State::Attaching, cons: 0 })
    }

    /// Whether the producer closed the pipe for good ([`Producer::close`]).
    pub fn closed(&self) -> bool {
        self.shared.load_u32(offset::CLOSED).is_ok_and(|word| word != 0)
    }

    /// The protocol error the producer is refused for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Copies the next frame into `out` and returns its length; `None` if the pipe is
    /// empty. Call it until `None` when signalled. An `out` shorter than the frame is
    /// refused and the frame stays (an `out` of [`MAX_FRAME`] bytes always fits).
    pub fn receive(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let result = self.take(out);
        if let Err(Error::Protocol(e)) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn take(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        match self.state {
            State::Failed(e) => return Err(e.into()),
            State::Attaching => {
                if !self.attach_now()? {
                    return Ok(None);
                }
            }
            State::Ready => {}
        }
        let prod = self.shared.load_u32(offset::PIPE_PROD)?;
        let waiting = prod.wrapping_sub(self.cons);
        if waiting > self.layout.slots {
            return Err(ProtocolError::ProducerAhead(Ring::Pipe).into());
        }
        if waiting == 0 {
            return Ok(None);
        }
        let len = self.shared.load_u32(self.layout.length(self.cons))?;
        if len as usize > MAX_FRAME {
            return Err(ProtocolError::FrameTooLong(len).into());
        }
        let out = out.get_mut(..len as usize).ok_or(RequestError::BufferTooSmall { needed: len as usize })?;
        self.shared.read(self.layout.slot(self.cons), out)?;
        self.cons = self.cons.wrapping_add(1);
        self.shared.store_u32(offset::PIPE_CONS, self.cons)?;
        Ok(Some(len as usize))
    }

    /// Takes the consumer index from the region if the VMM has formatted it.
    fn attach_now(&mut self) -> Result<bool, ProtocolError> {
        if !layout::check(&self.shared, Kind::Pipe, self.layout.slots, FRAME_SLOT)? {
            return Ok(false);
        }
        let prod = self.shared.load_u32(offset::PIPE_PROD)?;
        let cons = self.shared.load_u32(offset::PIPE_CONS)?;
        if prod.wrapping_sub(cons) > self.layout.slots {
            return Err(ProtocolError::ProducerAhead(Ring::Pipe));
        }
        (self.cons, self.state) = (cons, State::Ready);
        Ok(true)
    }
}
