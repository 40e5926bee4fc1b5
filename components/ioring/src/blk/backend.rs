//! The backend's side of a disk region. An instance starts from a pristine image, so it
//! remembers nothing: it reads the epoch from the region, publishes the next one, and waits
//! until the VMM acknowledges it (the VMM has then taken what the previous instance
//! finished and put every request still in flight in the request ring again). Then it
//! serves requests from the start of the rings, until the VMM breaks the protocol.
//!
//! The states: `Waiting` (epoch published, not acknowledged, or the region not formatted
//! yet), `Serving`, and `Failed` (the VMM broke the protocol; for good: only a restart
//! of the backend serves that VMM again).

use super::{Geometry, Layout, Op, Status, check_shape, request_entry, response_entry, response_length_ok};
use crate::error::{Error, ProtocolError, RegionError, RequestError, Ring};
use crate::layout::{self, Kind, NO_BACKEND, offset, tagged, untag};
use crate::shared::Shared;

/// The epoch after `epoch` (never [`NO_BACKEND`]).
fn next_epoch(epoch: u32) -> u32 {
    match epoch.wrapping_add(1) {
        NO_BACKEND => NO_BACKEND + 1,
        epoch => epoch,
    }
}

/// The indexes of a serving backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Indexes {
    /// The request ring's consumer index.
    req_cons: u32,
    /// The response ring's producer index (this side's copy, ahead of what is published).
    rsp_prod: u32,
    /// The producer index last published.
    rsp_published: u32,
    /// Requests taken and not answered yet.
    outstanding: u32,
}

/// Where the backend is in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the region to be formatted and the epoch acknowledged.
    Waiting,
    Serving(Indexes),
    /// The VMM broke the protocol.
    Failed(ProtocolError),
}

/// A request taken from the ring, checked: its operation is known, its slot exists, its
/// length fits the operation and the slot, and its sectors do not pass 2^64 - 1. Answer it
/// with [`Backend::respond`], which consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The id on the wire, given back in the response.
    id: u64,
    op: Op,
    sector: u64,
    len: u32,
    slot: u32,
    /// The epoch of the instance that took it.
    epoch: u32,
}

impl Received {
    /// What to do.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The first sector, from the start of the guest's disk.
    pub fn sector(&self) -> u64 {
        self.sector
    }

    /// Bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it carries no bytes (a flush).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether its sectors lie inside a disk of `capacity` sectors (blkback checks this
    /// against the guest's slice before touching the disk).
    pub fn fits(&self, capacity: u64) -> bool {
        // The end does not overflow: `check_shape` made sure.
        self.sector.checked_add(u64::from(self.len / super::SECTOR)).is_some_and(|end| end <= capacity)
    }
}

/// The backend's side of one disk region.
pub struct Backend {
    shared: Shared,
    layout: Layout,
    /// This instance's epoch.
    epoch: u32,
    /// The VMM's session word when this epoch was published.
    session: u32,
    state: State,
}

impl Backend {
    /// Starts a backend instance on `shared`, whose geometry the system description gives
    /// as `geometry`: publishes the epoch after the one in the region. Signal the VMM
    /// afterwards. The region's header is checked against `geometry` when it is formatted
    /// (a region that disagrees is refused with [`ProtocolError::GeometryMismatch`]).
    pub fn start(shared: Shared, geometry: Geometry) -> Result<Self, RegionError> {
        let layout = geometry.layout()?;
        layout.fits(shared.len())?;
        // `fits` covers the header page these words are in.
        let old = shared.load_u32(offset::EPOCH).map_err(|_| RegionError::Length)?;
        let epoch = next_epoch(old);
        let session = shared.load_u32(offset::SESSION).map_err(|_| RegionError::Length)?;
        shared.store_u32(offset::EPOCH, epoch).map_err(|_| RegionError::Length)?;
        Ok(Self { shared, layout, epoch, session, state: State::Waiting })
    }

    /// Whether the region was formatted again since this epoch was published (its guest's
    /// VMM is a new one: an on-request guest destroyed and made again): then it starts
    /// over with the new VMM as a restarted backend would, whatever it was doing (even
    /// refusing the old VMM for a protocol error), and returns `true`: signal the VMM,
    /// which acknowledges the new epoch. Requests the old VMM left are not answered (the
    /// new one did not send them). Call it before taking requests.
    pub fn check_session(&mut self) -> bool {
        let Ok(session) = self.shared.load_u32(offset::SESSION) else { return false };
        if session == self.session {
            return false;
        }
        let epoch = next_epoch(self.epoch);
        if self.shared.store_u32(offset::EPOCH, epoch).is_err() {
            return false;
        }
        self.session = session;
        self.epoch = epoch;
        self.state = State::Waiting;
        true
    }

    /// The ring's slots: the most requests the VMM can have in flight.
    pub fn slots(&self) -> u32 {
        self.layout.geometry.slots
    }

    /// This instance's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether the VMM closed the region ([`super::Vmm::close`]): its guest is gone.
    pub fn vmm_closed(&self) -> bool {
        self.shared.load_u32(offset::CLOSED).is_ok_and(|word| word != 0)
    }

    /// Whether the VMM acknowledged this instance and it serves requests.
    pub fn is_serving(&self) -> bool {
        matches!(self.state, State::Serving(_))
    }

    /// The protocol error the VMM is refused for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The next request, checked; `None` if there is none or the VMM has not acknowledged
    /// this instance yet. Call it until `None` when signalled.
    pub fn next_request(&mut self) -> Result<Option<Received>, Error> {
        let result = self.step();
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result.map_err(Error::from)
    }

    fn step(&mut self) -> Result<Option<Received>, ProtocolError> {
        let mut indexes = match self.state {
            State::Failed(e) => return Err(e),
            State::Serving(indexes) => indexes,
            State::Waiting => match self.acknowledged()? {
                Some(indexes) => indexes,
                None => return Ok(None),
            },
        };
        self.state = State::Serving(indexes);
        if self.shared.load_u32(offset::ACK)? != self.epoch {
            return Err(ProtocolError::AckChanged);
        }
        let slots = self.layout.geometry.slots;
        let prod = self.vmm_index(offset::REQ_PROD, Ring::Request)?;
        let waiting = prod.wrapping_sub(indexes.req_cons);
        if waiting > slots {
            return Err(ProtocolError::ProducerAhead(Ring::Request));
        }
        if waiting == 0 {
            return Ok(None);
        }
        // Loaded after the producer index: a VMM that published the request had taken the
        // responses it freed the request's slot with.
        let rsp_cons = self.vmm_index(offset::RSP_CONS, Ring::Response)?;
        let unread = indexes.rsp_prod.wrapping_sub(rsp_cons);
        if unread > slots {
            return Err(ProtocolError::ConsumerAhead(Ring::Response));
        }
        // Every response this instance owes must fit the response ring.
        if unread + indexes.outstanding >= slots {
            return Err(ProtocolError::TooManyInFlight);
        }
        let at = self.layout.request(indexes.req_cons);
        let id = self.shared.load_u64(at + request_entry::ID)?;
        let sector = self.shared.load_u64(at + request_entry::SECTOR)?;
        let op = self.shared.load_u32(at + request_entry::OP)?;
        let len = self.shared.load_u32(at + request_entry::LEN)?;
        let slot = self.shared.load_u32(at + request_entry::SLOT)?;
        let op = Op::from_u32(op).ok_or(ProtocolError::UnknownOp(op))?;
        if slot >= slots {
            return Err(ProtocolError::SlotOutOfRange(slot));
        }
        check_shape(op, sector, len, self.layout.geometry.slot_size).map_err(ProtocolError::BadRequest)?;
        indexes.req_cons = indexes.req_cons.wrapping_add(1);
        indexes.outstanding += 1;
        self.shared.store_u64(offset::REQ_CONS, tagged(self.epoch, indexes.req_cons))?;
        self.state = State::Serving(indexes);
        Ok(Some(Received { id, op, sector, len, slot, epoch: self.epoch }))
    }

    /// If the VMM acknowledged this epoch (and the region is formatted as configured), the
    /// indexes to serve from (where the VMM started the rings), which it writes.
    fn acknowledged(&self) -> Result<Option<Indexes>, ProtocolError> {
        if self.shared.load_u32(offset::ACK)? != self.epoch {
            return Ok(None);
        }
        // The VMM wrote the header before the acknowledgement: it must be there now.
        let geometry = self.layout.geometry;
        if !layout::check(&self.shared, Kind::Blk, geometry.slots, geometry.slot_size)? {
            return Err(ProtocolError::NotThisProtocol);
        }
        // The VMM starts both rings at one index and consumes no response before this
        // instance writes one: its response consumer index is where both start.
        let start = self.vmm_index(offset::RSP_CONS, Ring::Response)?;
        self.shared.store_u64(offset::REQ_CONS, tagged(self.epoch, start))?;
        self.shared.store_u64(offset::RSP_PROD, tagged(self.epoch, start))?;
        Ok(Some(Indexes { req_cons: start, rsp_prod: start, rsp_published: start, outstanding: 0 }))
    }

    /// The VMM's index at `at`, which must carry this instance's epoch.
    fn vmm_index(&self, at: usize, ring: Ring) -> Result<u32, ProtocolError> {
        let (generation, index) = untag(self.shared.load_u64(at)?);
        if generation != self.epoch {
            return Err(ProtocolError::StaleIndex(ring));
        }
        Ok(index)
    }

    /// Copies the bytes `request` carries in (a write's) into `out`; returns how many.
    pub fn request_data(&self, request: &Received, out: &mut [u8]) -> Result<usize, Error> {
        if !matches!(self.state, State::Serving(_)) || request.epoch != self.epoch {
            return Err(RequestError::NotServing.into());
        }
        let len = if request.op == Op::Write { request.len as usize } else { 0 };
        let out = out.get_mut(..len).ok_or(RequestError::BufferTooSmall { needed: len })?;
        self.shared.read(self.layout.slot(request.slot), out)?;
        Ok(len)
    }

    /// Answers `request` with `status` and, for a successful read or get-id, `data` (a
    /// read's `len()` bytes, at most `len()` for get-id). The response reaches the VMM at
    /// the next [`Backend::publish`]. Data that does not fit the request is refused with
    /// [`RequestError::DataLength`], and the request is answered [`Status::IoError`] so
    /// that it is still answered once.
    pub fn respond(&mut self, request: Received, status: Status, data: &[u8]) -> Result<(), Error> {
        let mut indexes = match self.state {
            State::Serving(indexes) if request.epoch == self.epoch => indexes,
            State::Failed(e) => return Err(e.into()),
            _ => return Err(RequestError::NotServing.into()),
        };
        let fits = response_length_ok(request.op, status, request.len, data.len() as u32)
            && data.len() <= request.len as usize;
        let (status, data) = if fits { (status, data) } else { (Status::IoError, &[][..]) };
        self.shared.write(self.layout.slot(request.slot), data)?;
        let at = self.layout.response(indexes.rsp_prod);
        self.shared.store_u64(at + response_entry::ID, request.id)?;
        self.shared.store_u32(at + response_entry::STATUS, status as u32)?;
        self.shared.store_u32(at + response_entry::LEN, data.len() as u32)?;
        indexes.rsp_prod = indexes.rsp_prod.wrapping_add(1);
        indexes.outstanding = indexes.outstanding.saturating_sub(1);
        self.state = State::Serving(indexes);
        if fits { Ok(()) } else { Err(RequestError::DataLength.into()) }
    }

    /// Publishes the responses written since the last call: `true` if there were any
    /// (signal the VMM).
    pub fn publish(&mut self) -> Result<bool, Error> {
        let State::Serving(mut indexes) = self.state else { return Ok(false) };
        if indexes.rsp_prod == indexes.rsp_published {
            return Ok(false);
        }
        self.shared.store_u64(offset::RSP_PROD, tagged(self.epoch, indexes.rsp_prod))?;
        indexes.rsp_published = indexes.rsp_prod;
        self.state = State::Serving(indexes);
        Ok(true)
    }
}
