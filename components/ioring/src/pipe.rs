//! Frames in one direction between a guest's VMM and netback: a ring of slots, each one
//! Ethernet frame with its virtio-net header (at most [`MAX_FRAME`] bytes). Two per
//! (guest, netback) pair: tx, where the VMM produces, and rx, where netback produces.
//!
//! The VMM formats both pipes when it starts, each a new session (the region's session
//! word, one more than the last VMM's: a guest destroyed and made again gets a new VMM
//! over the same pipes). Netback attaches ([`Producer::attach`], [`Consumer::attach`]):
//! to a session it attached to before (it was restarted), it takes its index from the
//! region, where its previous instance left it, so a restart loses at most the frames in
//! flight: the consumer publishes its index as soon as it has copied a frame out (a frame
//! being forwarded when netback restarts is lost, none is delivered twice), and the
//! producer publishes only whole frames (a half-written one is written again by the next
//! instance). To a new session it starts at the VMM's index (what its old self may have
//! written meanwhile is overwritten), then says so in the region's attached word; the VMM
//! produces and consumes nothing until it reads its session there. Netback looks at the
//! session before every operation, so a new VMM is taken over at once, even after the
//! old one broke the protocol. A full pipe drops the frame and counts it; a producer never
//! waits.

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

/// Writes a fresh pipe for a new session: the magic cleared first (netback waits), then
/// netback's attached word (what the region's previous VMM, if it was hostile, may have
/// written there in advance must not pass for netback's word on this session; and netback
/// attaches again whenever that word is not what it wrote), the session one more than the
/// region held (never 0), both indexes at `base`, then the header, magic last. Returns the
/// session.
fn format(shared: &Shared, layout: &Layout, base: u32) -> Result<u32, RegionError> {
    let write = || -> Result<u32, OutOfRegion> {
        shared.store_u32(offset::MAGIC, 0)?;
        shared.store_u32(offset::PIPE_ATTACHED, 0)?;
        let session = match shared.load_u32(offset::SESSION)?.wrapping_add(1) {
            0 => 1,
            s => s,
        };
        shared.store_u32(offset::SESSION, session)?;
        shared.store_u32(offset::PIPE_PROD, base)?;
        shared.store_u32(offset::PIPE_CONS, base)?;
        shared.store_u32(offset::CLOSED, 0)?;
        layout::format(shared, Kind::Pipe, layout.slots, FRAME_SLOT)?;
        Ok(session)
    };
    // `fitting` checked the header page is inside the region.
    write().map_err(|_| RegionError::Length)
}

/// Whether netback attached to `session` (the VMM's side waits for it).
fn attached(shared: &Shared, session: u32) -> Result<bool, ProtocolError> {
    Ok(shared.load_u32(offset::PIPE_ATTACHED)? == session)
}

/// Netback's side of a pipe: whether it must attach (again) before its next operation: the
/// region's session is not the one it is in, or its attached word is not what it wrote
/// (a new VMM cleared it; a hostile one may have written anything).
fn must_attach(shared: &Shared, session: u32) -> Result<bool, ProtocolError> {
    Ok(shared.load_u32(offset::SESSION)? != session || !attached(shared, session)?)
}

/// Netback's side of a pipe the VMM formatted, attaching: `Ok(None)` while the VMM is
/// formatting it (the magic is not there, or the session or the magic changed while this
/// looked), else the session and the index netback goes on at: its own (`own`: a word
/// netback writes) if it attached to this session before, else the VMM's (`theirs`),
/// written to its own word before it says it attached.
fn attach_session(
    shared: &Shared,
    slots: u32,
    own: usize,
    theirs: usize,
) -> Result<Option<(u32, u32)>, ProtocolError> {
    // The session first: a session the VMM wrote came after it cleared the magic, so a
    // magic seen after it is this session's (the VMM writes it last).
    let session = shared.load_u32(offset::SESSION)?;
    if !layout::check(shared, Kind::Pipe, slots, FRAME_SLOT)? {
        return Ok(None);
    }
    let continuing = session != 0 && attached(shared, session)?;
    let (prod, cons) = (shared.load_u32(offset::PIPE_PROD)?, shared.load_u32(offset::PIPE_CONS)?);
    let index = shared.load_u32(if continuing { own } else { theirs })?;
    // A format that began meanwhile: what was read may be the old session's.
    if shared.load_u32(offset::SESSION)? != session || shared.load_u32(offset::MAGIC)? != layout::MAGIC {
        return Ok(None);
    }
    if !continuing {
        shared.store_u32(own, index)?;
        shared.store_u32(offset::PIPE_ATTACHED, session)?;
        return Ok(Some((session, index)));
    }
    if prod.wrapping_sub(cons) > slots {
        return Err(if own == offset::PIPE_PROD {
            ProtocolError::ConsumerAhead(Ring::Pipe)
        } else {
            ProtocolError::ProducerAhead(Ring::Pipe)
        });
    }
    Ok(Some((session, index)))
}

/// Where one side of a pipe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Netback before the VMM formatted the pipe, or before it attached to the VMM's
    /// session.
    Attaching,
    /// The VMM before netback attached to its session.
    Unacknowledged,
    Ready,
    /// The peer broke the protocol.
    Failed(ProtocolError),
}

/// Where one side of a pipe is in the sessions: what [`Producer`] and [`Consumer`] share.
struct Side {
    state: State,
    /// Netback's side (it attaches to the VMM's sessions), not the VMM's.
    netback: bool,
    /// The session this side is in (0: none yet).
    session: u32,
}

/// What [`Side::ready`] found.
enum Readiness {
    /// Not yet (the VMM formats, or waits for netback to attach).
    Wait,
    /// Now.
    Now,
    /// Netback attached just now: its index is this.
    Attached(u32),
}

impl Side {
    /// The VMM's side of a pipe it formatted as `session`.
    fn vmm(session: u32) -> Self {
        Self { state: State::Unacknowledged, netback: false, session }
    }

    /// Netback's side, before it attached.
    fn netback() -> Self {
        Self { state: State::Attaching, netback: true, session: 0 }
    }

    /// Whether this side may use the pipe now. Netback first looks for a new session (a
    /// guest's new VMM, which starts over whatever happened before) and attaches to it,
    /// its index in the word at `own` (the VMM's in `theirs` for a new session); the VMM
    /// waits until netback attached to its session.
    fn ready(
        &mut self,
        shared: &Shared,
        slots: u32,
        own: usize,
        theirs: usize,
    ) -> Result<Readiness, ProtocolError> {
        if self.netback && self.state != State::Attaching && must_attach(shared, self.session)? {
            self.state = State::Attaching;
        }
        match self.state {
            State::Failed(e) => Err(e),
            State::Ready => Ok(Readiness::Now),
            State::Unacknowledged => {
                if !attached(shared, self.session)? {
                    return Ok(Readiness::Wait);
                }
                self.state = State::Ready;
                Ok(Readiness::Now)
            }
            State::Attaching => {
                let Some((session, index)) = attach_session(shared, slots, own, theirs)? else {
                    return Ok(Readiness::Wait);
                };
                (self.session, self.state) = (session, State::Ready);
                Ok(Readiness::Attached(index))
            }
        }
    }

    /// Takes `error` from an operation: this side is refused for good, unless a new VMM
    /// that formatted the pipe during the operation (on a pipe netback was using, not one
    /// it was attaching to) explains it: that one is not to blame, and netback attaches to
    /// it at the next operation (`true`).
    fn failed(&mut self, shared: &Shared, error: ProtocolError) -> bool {
        let explained =
            self.netback && self.state == State::Ready && must_attach(shared, self.session).unwrap_or(false);
        self.state = if explained { State::Attaching } else { State::Failed(error) };
        explained
    }
}

/// The producing side of a pipe: the VMM's on tx, netback's on rx.
pub struct Producer {
    shared: Shared,
    layout: Layout,
    side: Side,
    /// The producer index (this side's copy, ahead of what is published).
    prod: u32,
    published: u32,
    dropped: u64,
}

impl Producer {
    /// Formats `shared` as a pipe of `slots` slots that this side produces into (the VMM's
    /// tx pipe), a new session: frames sent before netback attached to it are dropped.
    pub fn format(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        Self::format_with_base(shared, slots, 0)
    }

    /// [`Producer::format`] with both indexes starting at `base`.
    pub(crate) fn format_with_base(shared: Shared, slots: u32, base: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        let session = format(&shared, &layout, base)?;
        Ok(Self { shared, layout, side: Side::vmm(session), prod: base, published: base, dropped: 0 })
    }

    /// The producing side of a pipe the VMM formats (netback's rx pipe): once it is
    /// formatted, at the producer index in the region (a session netback attached to
    /// before) or at the VMM's consumer index (a new one).
    pub fn attach(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        Ok(Self { shared, layout, side: Side::netback(), prod: 0, published: 0, dropped: 0 })
    }

    /// Frames dropped because the pipe was full (or not formatted, or not attached yet).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The protocol error the consumer is refused for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.side.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Puts `frame` in the pipe: `false` if it was dropped (the pipe is full, or the two
    /// sides are not in one session yet). The frame reaches the consumer at the next
    /// [`Producer::publish`].
    pub fn send(&mut self, frame: &[u8]) -> Result<bool, Error> {
        if frame.len() > MAX_FRAME {
            return Err(RequestError::FrameTooLong(frame.len()).into());
        }
        let mut result = self.put(frame);
        if let Err(e) = result
            && self.side.failed(&self.shared, e)
        {
            result = Ok(false);
        }
        let sent = result?;
        if !sent {
            self.dropped += 1;
        }
        Ok(sent)
    }

    fn put(&mut self, frame: &[u8]) -> Result<bool, ProtocolError> {
        if !self.ready()? {
            return Ok(false);
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

    /// Whether this side may produce now ([`Side::ready`]: netback attaches to a new
    /// session, the VMM waits for it to). [`Producer::send`] asks it first; netback may
    /// ask it on its own to attach before it has a frame to send.
    pub fn ready(&mut self) -> Result<bool, ProtocolError> {
        Ok(match self.side.ready(&self.shared, self.layout.slots, offset::PIPE_PROD, offset::PIPE_CONS)? {
            Readiness::Wait => false,
            Readiness::Now => true,
            Readiness::Attached(prod) => {
                (self.prod, self.published) = (prod, prod);
                true
            }
        })
    }

    /// The region's session word (a new VMM's format changes it; netback reopens a port it
    /// cut off when it has).
    pub fn session_word(&self) -> u32 {
        self.shared.load_u32(offset::SESSION).unwrap_or(0)
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
        if self.side.state != State::Ready || self.prod == self.published {
            return Ok(false);
        }
        if let Err(e) = self.shared.store_u32(offset::PIPE_PROD, self.prod) {
            self.side.state = State::Failed(e.into());
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
    side: Side,
    cons: u32,
}

impl Consumer {
    /// Formats `shared` as a pipe of `slots` slots that this side consumes (the VMM's rx
    /// pipe), a new session: nothing arrives before netback attached to it.
    pub fn format(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        Self::format_with_base(shared, slots, 0)
    }

    /// [`Consumer::format`] with both indexes starting at `base`.
    pub(crate) fn format_with_base(shared: Shared, slots: u32, base: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        let session = format(&shared, &layout, base)?;
        Ok(Self { shared, layout, side: Side::vmm(session), cons: base })
    }

    /// The consuming side of a pipe the VMM formats (netback's tx pipe): once it is
    /// formatted, at the consumer index in the region (a session netback attached to
    /// before) or at the VMM's producer index (a new one).
    pub fn attach(shared: Shared, slots: u32) -> Result<Self, RegionError> {
        let layout = Layout::fitting(slots, &shared)?;
        Ok(Self { shared, layout, side: Side::netback(), cons: 0 })
    }

    /// The region's session word: as [`Producer::session_word`].
    pub fn session_word(&self) -> u32 {
        self.shared.load_u32(offset::SESSION).unwrap_or(0)
    }

    /// Whether the producer closed the pipe for good ([`Producer::close`]).
    pub fn closed(&self) -> bool {
        self.shared.load_u32(offset::CLOSED).is_ok_and(|word| word != 0)
    }

    /// The protocol error the producer is refused for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.side.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Copies the next frame into `out` and returns its length; `None` if the pipe is
    /// empty (or the two sides are not in one session yet). Call it until `None` when
    /// signalled. An `out` shorter than the frame is refused and the frame stays (an `out`
    /// of [`MAX_FRAME`] bytes always fits).
    pub fn receive(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let result = self.take(out);
        if let Err(Error::Protocol(e)) = result
            && self.side.failed(&self.shared, e)
        {
            return Ok(None);
        }
        result
    }

    fn take(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if !self.ready()? {
            return Ok(None);
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

    /// Whether this side may consume now: as [`Producer::ready`]. [`Consumer::receive`]
    /// asks it first; netback may ask it on its own to attach (the VMM's frames are
    /// dropped until it has).
    pub fn ready(&mut self) -> Result<bool, ProtocolError> {
        Ok(match self.side.ready(&self.shared, self.layout.slots, offset::PIPE_CONS, offset::PIPE_PROD)? {
            Readiness::Wait => false,
            Readiness::Now => true,
            Readiness::Attached(cons) => {
                self.cons = cons;
                true
            }
        })
    }
}
