//! The VMM's side of a disk region: it formats the region, submits requests (copying a
//! write's bytes into a free slot), takes responses (copying a read's bytes out), and
//! when the backend's epoch changes it takes what the old instance finished, lays the
//! rings out again from their start with every request still in flight, and acknowledges
//! the new epoch.
//!
//! The states: `Serving` (epoch = ack), `Draining` (the epoch changed: the responses the
//! old instance published before that are being taken, one per [`Vmm::poll`]), and
//! `Failed` (the backend broke the protocol: nothing it writes is taken until its epoch
//! changes, when every request in flight is sent again).

use super::{Geometry, response_length_ok};
use super::{Layout, MAX_SLOTS, Op, Request, Status, check_shape, request_entry, response_entry};
use crate::error::{Error, ProtocolError, RegionError, RequestError, Ring};
use crate::layout::{self, Kind, NO_BACKEND, offset, tagged, untag};
use crate::shared::{OutOfRegion, Shared};

/// A request in flight, in the slot it occupies.
#[derive(Clone, Copy, Debug)]
struct Flight {
    /// The caller's id.
    id: u64,
    op: Op,
    sector: u64,
    len: u32,
    /// Submission order; its low half is in the wire id.
    seq: u64,
}

impl Flight {
    /// The id on the wire: the sequence number's low half and the slot. A response for an
    /// earlier request in the same slot does not match it.
    fn wire_id(&self, slot: u32) -> u64 {
        ((self.seq as u32 as u64) << 32) | u64::from(slot)
    }
}

/// Where the VMM is in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The backend's epoch is the one acknowledged.
    Serving,
    /// The epoch changed; responses the old instance published up to `until` are still to
    /// be taken before the rings are laid out again.
    Draining { until: u32 },
    /// The backend broke the protocol; waiting for its epoch to change.
    Failed(ProtocolError),
}

/// What [`Vmm::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A request finished (each request finishes exactly once).
    Completed(Completion),
    /// The backend restarted: the rings were laid out again with `resent` requests still
    /// in flight, and `epoch` acknowledged. Signal the backend.
    Resynced {
        /// The epoch acknowledged.
        epoch: u32,
        /// Requests put in the request ring again.
        resent: u32,
    },
}

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The id it was submitted with.
    pub id: u64,
    /// Its operation.
    pub op: Op,
    /// How it ended.
    pub status: Status,
    /// Bytes copied into `poll`'s buffer (a successful read's or get-id's).
    pub len: u32,
}

/// What the VMM's side of a disk region holds and what the backend last wrote, for a
/// report when requests stop completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingState {
    /// The backend epoch acknowledged.
    pub acknowledged: u32,
    /// The backend epoch in the region now.
    pub epoch: u32,
    /// Taking what an old instance published before laying the rings out again.
    pub draining: bool,
    /// The backend broke the protocol (waiting for a new instance).
    pub failed: Option<ProtocolError>,
    /// Requests in flight.
    pub in_flight: u32,
    /// The request producer index: this side's, and the one published.
    pub req_prod: u32,
    /// The request producer index last published.
    pub req_published: u32,
    /// The response consumer index.
    pub rsp_cons: u32,
    /// The backend's request consumer index word: (generation, index).
    pub req_cons_word: (u32, u32),
    /// The backend's response producer index word: (generation, index).
    pub rsp_prod_word: (u32, u32),
}

impl core::fmt::Display for RingState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "epoch {} (acknowledged {}{}), {} in flight, requests {}/{} published, backend took to {}@{}, answered to {}@{}, responses taken to {}",
            self.epoch,
            self.acknowledged,
            if self.draining { ", draining" } else { "" },
            self.in_flight,
            self.req_prod,
            self.req_published,
            self.req_cons_word.1,
            self.req_cons_word.0,
            self.rsp_prod_word.1,
            self.rsp_prod_word.0,
            self.rsp_cons,
        )?;
        if let Some(e) = self.failed {
            write!(f, ", failed: {e}")?;
        }
        Ok(())
    }
}

/// The VMM's side of one disk region.
pub struct Vmm {
    shared: Shared,
    layout: Layout,
    state: State,
    /// The epoch acknowledged: the generation of every index word of the current layout.
    ack: u32,
    /// Where each generation's indexes start (0; tests start near `u32::MAX`).
    base: u32,
    /// The request ring's producer index (this side's copy, ahead of what is published).
    req_prod: u32,
    /// The producer index last published.
    req_published: u32,
    /// The response ring's consumer index.
    rsp_cons: u32,
    /// Requests in flight, by slot.
    flights: [Option<Flight>; MAX_SLOTS as usize],
    in_flight: u32,
    next_seq: u64,
    /// Where the search for a free slot starts.
    next_slot: u32,
    /// On a region its guest's earlier VMM used: the epoch of the backend instance that
    /// served that VMM, which this one never acknowledges (its indexes are the old VMM's);
    /// it waits until the backend starts a new epoch for it.
    stale: Option<u32>,
}

impl Vmm {
    /// Formats `shared` as a disk region with `geometry` (the VMM does this once, when it
    /// starts) and returns the VMM's side of it. Over a region no one has used yet the
    /// current epoch is taken as acknowledged: a backend that started earlier is served at
    /// once, one that starts later changes the epoch and is resynchronised. Over a region
    /// its guest's earlier VMM used (its session word is not 0) no epoch is acknowledged
    /// until the backend starts a new one for this VMM (it sees the session change):
    /// requests submitted meanwhile wait in the ring and are sent when it does.
    pub fn format(shared: Shared, geometry: Geometry) -> Result<Self, RegionError> {
        Self::format_with_base(shared, geometry, 0)
    }

    /// [`Vmm::format`] with the rings' indexes starting at `base` in every generation.
    pub(crate) fn format_with_base(
        shared: Shared,
        geometry: Geometry,
        base: u32,
    ) -> Result<Self, RegionError> {
        let layout = geometry.layout()?;
        layout.fits(shared.len())?;
        // (`fits` covers the header.)
        let epoch = shared.load_u32(offset::EPOCH).map_err(|_| RegionError::Length)?;
        let session = shared.load_u32(offset::SESSION).map_err(|_| RegionError::Length)?;
        let stale = (session != 0 && epoch != NO_BACKEND).then_some(epoch);
        let vmm = Self {
            shared,
            layout,
            state: State::Serving,
            ack: 0,
            base,
            req_prod: base,
            req_published: base,
            rsp_cons: base,
            flights: [None; MAX_SLOTS as usize],
            in_flight: 0,
            next_seq: 0,
            next_slot: 0,
            stale,
        };
        // `fits` checked every offset written here. A VMM that formats a region another
        // VMM of the same guest used (an on-request guest made again) says so: the backend
        // starts over with it (a new epoch, its rings from their start).
        vmm.shared.store_u32(offset::SESSION, session.wrapping_add(1)).map_err(|_| RegionError::Length)?;
        vmm.shared.store_u32(offset::CLOSED, 0).map_err(|_| RegionError::Length)?;
        let ack = if stale.is_some() { NO_BACKEND } else { epoch };
        vmm.write_format(ack).map_err(|_| RegionError::Length)?;
        Ok(Self { ack, ..vmm })
    }

    /// Writes the VMM's index words for `epoch`, the header, then the acknowledgement of
    /// `epoch` (a backend that sees it sees the rest).
    fn write_format(&self, epoch: u32) -> Result<(), OutOfRegion> {
        self.shared.store_u64(offset::REQ_PROD, tagged(epoch, self.base))?;
        self.shared.store_u64(offset::RSP_CONS, tagged(epoch, self.base))?;
        let geometry = self.layout.geometry;
        layout::format(&self.shared, Kind::Blk, geometry.slots, geometry.slot_size)?;
        self.shared.store_u32(offset::ACK, epoch)?;
        Ok(())
    }

    /// Closes the region for good: the guest is gone and will send nothing more (a
    /// backend with nothing else to serve may stop). Signal the backend afterwards.
    pub fn close(&self) {
        // `format` checked the offset.
        let _ = self.shared.store_u32(offset::CLOSED, 1);
    }

    /// The geometry it was formatted with.
    pub fn geometry(&self) -> Geometry {
        self.layout.geometry
    }

    /// Requests in flight (submitted, not completed).
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Its state and the backend's index words, as they are now (a region word that
    /// cannot be read shows as zero).
    pub fn state(&self) -> RingState {
        let word = |at| untag(self.shared.load_u64(at).unwrap_or(0));
        RingState {
            acknowledged: self.ack,
            epoch: self.shared.load_u32(offset::EPOCH).unwrap_or(0),
            draining: matches!(self.state, State::Draining { .. }),
            failed: self.failed(),
            in_flight: self.in_flight,
            req_prod: self.req_prod,
            req_published: self.req_published,
            rsp_cons: self.rsp_cons,
            req_cons_word: word(offset::REQ_CONS),
            rsp_prod_word: word(offset::RSP_PROD),
        }
    }

    /// The backend epoch last acknowledged.
    pub fn acknowledged(&self) -> u32 {
        self.ack
    }

    /// The protocol error the backend is stopped for, if it is.
    pub fn failed(&self) -> Option<ProtocolError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Submits `request`, with `data` its bytes if it is a write (empty otherwise): `false`
    /// if every slot is in use (try again after a completion). The request reaches the
    /// backend at the next [`Vmm::publish`]. While the backend is stopped for a protocol
    /// error, the error.
    pub fn submit(&mut self, request: Request, data: &[u8]) -> Result<bool, Error> {
        if let State::Failed(e) = self.state {
            return Err(e.into());
        }
        check_shape(request.op, request.sector, request.len, self.layout.geometry.slot_size)?;
        let carries = if request.op == Op::Write { request.len as usize } else { 0 };
        if data.len() != carries {
            return Err(RequestError::DataLength.into());
        }
        let Some(slot) = self.free_slot() else { return Ok(false) };
        if self.state == State::Serving {
            let cons = self.peer_index(offset::REQ_CONS);
            let cons = match cons {
                Ok(cons) => cons,
                Err(e) => return Err(self.fail(e)),
            };
            let used = self.req_prod.wrapping_sub(cons);
            if used > self.layout.geometry.slots {
                return Err(self.fail(ProtocolError::ConsumerAhead(Ring::Request)));
            }
            if used == self.layout.geometry.slots {
                return Ok(false);
            }
        }
        if let Err(e) = self.shared.write(self.layout.slot(slot), data) {
            return Err(self.fail(e.into()));
        }
        let flight = Flight {
            id: request.id,
            op: request.op,
            sector: request.sector,
            len: request.len,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.flights[slot as usize] = Some(flight);
        self.in_flight += 1;
        self.next_slot = (slot + 1) & (self.layout.geometry.slots - 1);
        // While draining, the request waits in `flights` for the new layout.
        if self.state == State::Serving {
            if let Err(e) = self.put(self.req_prod, slot, &flight) {
                return Err(self.fail(e));
            }
            self.req_prod = self.req_prod.wrapping_add(1);
        }
        Ok(true)
    }

    /// Publishes the requests submitted since the last call: `true` if there were any
    /// (signal the backend).
    pub fn publish(&mut self) -> Result<bool, Error> {
        if self.state != State::Serving || self.req_prod == self.req_published {
            return Ok(false);
        }
        if let Err(e) = self.shared.store_u64(offset::REQ_PROD, tagged(self.ack, self.req_prod)) {
            return Err(self.fail(e.into()));
        }
        self.req_published = self.req_prod;
        Ok(true)
    }

    /// The next thing the backend did: a completed request (a read's or get-id's bytes
    /// copied into `data`), or a finished resynchronisation after a backend restart;
    /// `None` if nothing is waiting. Call it until `None` when signalled. A `data` too short
    /// for the bytes is refused and nothing is taken.
    pub fn poll(&mut self, data: &mut [u8]) -> Result<Option<Event>, Error> {
        let result = self.step(data);
        if let Err(Error::Protocol(e)) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn step(&mut self, data: &mut [u8]) -> Result<Option<Event>, Error> {
        let epoch = self.shared.load_u32(offset::EPOCH)?;
        // The backend instance that served the old VMM: wait for a new one.
        if let Some(old) = self.stale {
            if epoch == old {
                return Ok(None);
            }
            self.stale = None;
        }
        match self.state {
            State::Failed(e) if epoch == self.ack => return Err(e.into()),
            // A new instance: what the old one wrote is not trusted, everything is resent.
            State::Failed(_) => return Ok(Some(self.relayout()?)),
            State::Serving if epoch != self.ack => {
                // The old instance is gone; what it published before is final.
                let until = self.response_producer()?;
                self.state = State::Draining { until };
            }
            _ => {}
        }
        let until = match self.state {
            State::Draining { until } => until,
            _ => self.response_producer()?,
        };
        if self.rsp_cons == until {
            return match self.state {
                State::Draining { .. } => Ok(Some(self.relayout()?)),
                _ => Ok(None),
            };
        }
        self.take(data).map(|c| Some(Event::Completed(c)))
    }

    /// Takes the response at the consumer index.
    fn take(&mut self, data: &mut [u8]) -> Result<Completion, Error> {
        let at = self.layout.response(self.rsp_cons);
        let id = self.shared.load_u64(at + response_entry::ID)?;
        let status = self.shared.load_u32(at + response_entry::STATUS)?;
        let len = self.shared.load_u32(at + response_entry::LEN)?;
        let slot = id as u32;
        // Slots past the geometry's count are never occupied.
        let flight = self
            .flights
            .get(slot as usize)
            .copied()
            .flatten()
            .filter(|f| f.wire_id(slot) == id)
            .ok_or(ProtocolError::UnknownId(id))?;
        let status = Status::from_u32(status).ok_or(ProtocolError::UnknownStatus(status))?;
        if !response_length_ok(flight.op, status, flight.len, len) {
            return Err(ProtocolError::ResponseLength(len).into());
        }
        let out =
            data.get_mut(..len as usize).ok_or(RequestError::BufferTooSmall { needed: len as usize })?;
        self.shared.read(self.layout.slot(slot), out)?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        self.shared.store_u64(offset::RSP_CONS, tagged(self.ack, self.rsp_cons))?;
        self.flights[slot as usize] = None;
        self.in_flight -= 1;
        Ok(Completion { id: flight.id, op: flight.op, status, len })
    }

    /// Lays the rings out again for the backend's current epoch: every request in flight
    /// in the order it was submitted, from the start, and the header; then acknowledges
    /// the epoch.
    fn relayout(&mut self) -> Result<Event, ProtocolError> {
        let epoch = self.shared.load_u32(offset::EPOCH)?;
        let mut order = [(0u64, 0u32); MAX_SLOTS as usize];
        let mut count = 0;
        for (slot, flight) in self.flights.iter().enumerate() {
            if let Some(f) = flight {
                order[count] = (f.seq, slot as u32);
                count += 1;
            }
        }
        let order = &mut order[..count];
        order.sort_unstable();
        let mut prod = self.base;
        for &(_, slot) in order.iter() {
            let flight = self.flights[slot as usize].ok_or(ProtocolError::OutOfRegion)?;
            self.put(prod, slot, &flight)?;
            prod = prod.wrapping_add(1);
        }
        self.shared.store_u64(offset::REQ_PROD, tagged(epoch, prod))?;
        self.shared.store_u64(offset::RSP_CONS, tagged(epoch, self.base))?;
        // The header again: an earlier instance may have overwritten it, and the new one
        // checks it once it sees the acknowledgement.
        let geometry = self.layout.geometry;
        layout::format(&self.shared, Kind::Blk, geometry.slots, geometry.slot_size)?;
        self.shared.store_u32(offset::ACK, epoch)?;
        self.ack = epoch;
        self.req_prod = prod;
        self.req_published = prod;
        self.rsp_cons = self.base;
        self.state = State::Serving;
        Ok(Event::Resynced { epoch, resent: count as u32 })
    }

    /// Writes the request entry for `flight` in `slot` at index `index`.
    fn put(&self, index: u32, slot: u32, flight: &Flight) -> Result<(), ProtocolError> {
        let at = self.layout.request(index);
        self.shared.store_u64(at + request_entry::ID, flight.wire_id(slot))?;
        self.shared.store_u64(at + request_entry::SECTOR, flight.sector)?;
        self.shared.store_u32(at + request_entry::OP, flight.op as u32)?;
        self.shared.store_u32(at + request_entry::LEN, flight.len)?;
        self.shared.store_u32(at + request_entry::SLOT, slot)?;
        Ok(())
    }

    /// The backend's index at `at` in the current generation: its start if the word
    /// carries another generation (the backend has not written it since the layout) or
    /// no backend has started yet (epoch 0, which no backend instance has).
    fn peer_index(&self, at: usize) -> Result<u32, ProtocolError> {
        let (generation, index) = untag(self.shared.load_u64(at)?);
        Ok(if generation == self.ack && self.ack != NO_BACKEND { index } else { self.base })
    }

    /// The response ring's producer index, checked against the consumer index.
    fn response_producer(&self) -> Result<u32, ProtocolError> {
        let prod = self.peer_index(offset::RSP_PROD)?;
        if prod.wrapping_sub(self.rsp_cons) > self.layout.geometry.slots {
            return Err(ProtocolError::ProducerAhead(Ring::Response));
        }
        Ok(prod)
    }

    /// A slot no request occupies.
    fn free_slot(&self) -> Option<u32> {
        let slots = self.layout.geometry.slots;
        (0..slots).map(|i| (self.next_slot + i) & (slots - 1)).find(|&s| self.flights[s as usize].is_none())
    }

    /// Stops serving the backend for `e`.
    fn fail(&mut self, e: ProtocolError) -> Error {
        self.state = State::Failed(e);
        e.into()
    }
}
