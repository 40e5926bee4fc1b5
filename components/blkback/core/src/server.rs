//! The glue between the guests' disk rings and the driver: each client (a guest's VMM) has
//! an `ioring` [`Backend`] over its region and a slice of the disk (a first sector and a
//! size, from the system description). [`Server::poll`] answers what the device finished,
//! takes new requests from every client in turn, checks each against its slice and
//! submits it at `first_sector + sector`, and publishes the responses.
//!
//! Nothing here outlives a restart: the requests in flight live in the rings (the VMM
//! resends what a restarted backend did not answer) and the data on the disk. A new
//! `Server` starts each client's [`Backend`] afresh (a new epoch) over a driver whose
//! `init` reset the device.

use crate::driver::{self, Command, Dma, Driver, PortIo};
use alloc::vec;
use alloc::vec::Vec;
use cleave_ioring::blk::{Backend, Geometry, Op, Received, Status};
use cleave_ioring::{Error, ProtocolError, RegionError, Shared};
use core::fmt;

/// The most clients a server serves (one bit each in [`Signals`]).
pub const MAX_CLIENTS: usize = 64;

/// Requests [`Server::poll`] takes from the rings at most per call, over all clients.
pub const TAKE_PER_POLL: usize = 64;

/// The part of the disk a client sees as its whole disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The disk sector the client's sector 0 is.
    pub first_sector: u64,
    /// Sectors the client has.
    pub sectors: u64,
}

impl Slice {
    /// The sector after its last, if it does not pass 2^64 - 1.
    fn end(self) -> Option<u64> {
        self.first_sector.checked_add(self.sectors)
    }
}

/// A client's number: its bit in [`Signals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientId(u8);

impl ClientId {
    /// Its number, counted from 0 in the order the clients were added.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The clients whose VMM must be signalled (responses published).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signals(pub u64);

impl Signals {
    /// Whether `client` is among them.
    pub fn contains(self, client: ClientId) -> bool {
        self.0 & (1 << client.0) != 0
    }

    /// Whether there are none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What a [`Server::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Polled {
    /// The clients to signal.
    pub signals: Signals,
    /// It stopped at [`TAKE_PER_POLL`] requests: more may be waiting, poll again (no
    /// signal will come for them).
    pub again: bool,
}

/// What a client asked for and how it went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Reads submitted to the device.
    pub reads: u64,
    /// Writes submitted to the device.
    pub writes: u64,
    /// Flushes (passed to the device, or answered here if it has no write cache).
    pub flushes: u64,
    /// Get-id requests submitted to the device.
    pub get_ids: u64,
    /// Requests refused for reaching outside the slice (answered I/O error, the disk
    /// untouched).
    pub outside_slice: u64,
    /// Requests that ended in an error: the device's, a refusal of the driver's, or a
    /// broken device.
    pub failed: u64,
}

/// Why a client cannot be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// the server has its most clients already
    TooManyClients,
    /// the region's slot size is more than a request of the driver carries
    SlotTooBig {
        /// The region's slot size.
        slot_size: u32,
        /// The driver's request size.
        request_bytes: u32,
    },
    /// the slice is empty or passes the disk's end
    OutsideDisk(Slice),
    /// the slice overlaps client {0}'s
    Overlaps(ClientId),
    /// the region or its geometry cannot be used
    Region(RegionError),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyClients => write!(f, "the server has {MAX_CLIENTS} clients already"),
            Self::SlotTooBig { slot_size, request_bytes } => write!(
                f,
                "the region's slot size {slot_size} is more than a driver request's {request_bytes} bytes"
            ),
            Self::OutsideDisk(s) => write!(
                f,
                "the slice of {} sectors from {} is empty or passes the disk's end",
                s.sectors, s.first_sector
            ),
            Self::Overlaps(c) => write!(f, "the slice overlaps client {}'s", c.index()),
            Self::Region(e) => write!(f, "the region cannot be used: {e}"),
        }
    }
}

/// One guest's ring and slice.
struct Client {
    backend: Backend,
    slice: Slice,
    counters: Counters,
}

/// A request submitted to the device, and whose it is.
struct Pending {
    client: u8,
    request: Received,
}

/// blkback's logic: the driver and the clients.
pub struct Server<P, D> {
    driver: Driver<P, D>,
    clients: Vec<Client>,
    /// By driver token.
    pending: Vec<Option<Pending>>,
    /// A request's bytes on their way between a ring and the DMA buffer.
    scratch: Vec<u8>,
    /// The client the next poll takes from first.
    next_client: usize,
}

impl<P: PortIo, D: Dma> Server<P, D> {
    /// A server over `driver` (initialised), with no clients yet.
    pub fn new(driver: Driver<P, D>) -> Self {
        let pending = (0..driver.requests()).map(|_| None).collect();
        let scratch = vec![0; driver.request_bytes() as usize];
        Self { driver, clients: Vec::new(), pending, scratch, next_client: 0 }
    }

    /// Adds a client: starts the backend's side of the disk region `shared` (formatted by
    /// the VMM with `geometry`, now or later) serving `slice`. The backend published a new
    /// epoch: signal the client's VMM, which acknowledges it and resends what it has in
    /// flight. Refused if the slot size is more than a driver request carries, or the slice
    /// is empty, passes the disk's end or overlaps another client's.
    pub fn add_client(
        &mut self,
        shared: Shared,
        geometry: Geometry,
        slice: Slice,
    ) -> Result<ClientId, AddError> {
        if self.clients.len() >= MAX_CLIENTS {
            return Err(AddError::TooManyClients);
        }
        if geometry.slot_size > self.driver.request_bytes() {
            return Err(AddError::SlotTooBig {
                slot_size: geometry.slot_size,
                request_bytes: self.driver.request_bytes(),
            });
        }
        let end = slice.end().filter(|&end| slice.sectors != 0 && end <= self.driver.capacity());
        let Some(end) = end else { return Err(AddError::OutsideDisk(slice)) };
        for (i, other) in self.clients.iter().enumerate() {
            let other_end = other.slice.first_sector + other.slice.sectors;
            if slice.first_sector < other_end && other.slice.first_sector < end {
                return Err(AddError::Overlaps(ClientId(i as u8)));
            }
        }
        let backend = Backend::start(shared, geometry).map_err(AddError::Region)?;
        let id = ClientId(self.clients.len() as u8);
        self.clients.push(Client { backend, slice, counters: Counters::default() });
        Ok(id)
    }

    /// Whether every client's VMM closed its ring (its guest is gone): with no client
    /// left to serve, the component may stop. False with no clients.
    pub fn all_closed(&self) -> bool {
        !self.clients.is_empty() && self.clients.iter().all(|c| c.backend.vmm_closed())
    }

    /// The driver (for its interrupt: [`Driver::interrupt`] before a poll).
    pub fn driver_mut(&mut self) -> &mut Driver<P, D> {
        &mut self.driver
    }

    /// The driver.
    pub fn driver(&self) -> &Driver<P, D> {
        &self.driver
    }

    /// `client`'s counters.
    pub fn counters(&self, client: ClientId) -> Option<Counters> {
        self.clients.get(client.index()).map(|c| c.counters)
    }

    /// The protocol error `client`'s VMM is refused for, if it is (its ring is left
    /// alone until blkback restarts).
    pub fn client_failed(&self, client: ClientId) -> Option<ProtocolError> {
        self.clients.get(client.index()).and_then(|c| c.backend.failed())
    }

    /// Does what can be done now: answers the requests the device finished, takes up to
    /// [`TAKE_PER_POLL`] new ones from the clients in turn (while the driver has room),
    /// notifies the device, and publishes; returns the clients to signal and whether to
    /// poll again at once. Call it when signalled by a client or interrupted by the device;
    /// a poll with nothing to do is harmless. (Requests left in the rings because the
    /// driver is full are taken at the poll after the device's next interrupt.)
    pub fn poll(&mut self) -> Polled {
        // A client whose guest has a new VMM (made again on request) starts over: its
        // requests still at the device are answered to no one (their epoch is gone).
        // At once, so that nothing the old VMM asked for is answered into the new one's
        // rings (its requests still at the device are answered to no one).
        let mut signals = 0u64;
        for (i, client) in self.clients.iter_mut().enumerate() {
            if client.backend.check_session() {
                signals |= 1 << i;
            }
        }
        self.answer_completions();
        let again = self.take_requests();
        self.driver.notify();
        for (i, client) in self.clients.iter_mut().enumerate() {
            if let Ok(true) = client.backend.publish() {
                signals |= 1 << i;
            }
        }
        Polled { signals: Signals(signals), again }
    }

    /// Answers every request the device finished; if the device broke, every request in
    /// flight with an I/O error.
    fn answer_completions(&mut self) {
        // Each completion frees a request: there are at most that many.
        for _ in 0..=self.pending.len() {
            match self.driver.complete(&mut self.scratch) {
                Ok(Some(done)) => {
                    let status = match done.status {
                        driver::Status::Ok => Status::Ok,
                        driver::Status::IoError => Status::IoError,
                        driver::Status::Unsupported => Status::Unsupported,
                    };
                    let data = self.scratch.get(..done.len as usize).unwrap_or_default();
                    answer(&mut self.clients, &mut self.pending, done.token.index(), status, data);
                }
                Ok(None) => return,
                // The scratch buffer holds any request: only a broken device is left.
                Err(_) => break,
            }
        }
        if self.driver.broken().is_some() {
            for index in 0..self.pending.len() {
                answer(&mut self.clients, &mut self.pending, index, Status::IoError, &[]);
            }
        }
    }

    /// Takes requests from the clients, one from each in turn, starting with a different
    /// client each poll; stops when none has more, the driver is full, or the budget is
    /// spent (then true). A request the driver has no room for stays in its ring.
    fn take_requests(&mut self) -> bool {
        let count = self.clients.len();
        if count == 0 {
            return false;
        }
        let start = self.next_client % count;
        self.next_client = (start + 1) % count;
        let mut taken = 0;
        while taken < TAKE_PER_POLL {
            let mut progress = false;
            for k in 0..count {
                // A broken device answers at once; otherwise a request needs room.
                if taken >= TAKE_PER_POLL {
                    return true;
                }
                if self.driver.broken().is_none() && !self.driver.has_room() {
                    return false;
                }
                let i = (start + k) % count;
                // A client has at most its ring's slots at the device, whatever its epoch:
                // a VMM that starts its ring over and over (a new session each time)
                // cannot fill the device with requests nobody will take.
                let at_device = self.pending.iter().flatten().filter(|p| usize::from(p.client) == i).count();
                let client = &mut self.clients[i];
                if client.backend.failed().is_some() || at_device >= client.backend.slots() as usize {
                    continue;
                }
                // A protocol error stops the client's ring for good (`failed` above).
                if let Ok(Some(request)) = client.backend.next_request() {
                    taken += 1;
                    progress = true;
                    self.serve(i, request);
                }
            }
            if !progress {
                return false;
            }
        }
        true
    }

    /// Submits `request` from client `i` to the device, or answers it here.
    fn serve(&mut self, i: usize, request: Received) {
        let Some(client) = self.clients.get_mut(i) else { return };
        let slice = client.slice;
        let counters = &mut client.counters;
        let command = match request.op() {
            Op::Read | Op::Write if !request.fits(slice.sectors) => {
                counters.outside_slice += 1;
                let _ = client.backend.respond(request, Status::IoError, &[]);
                return;
            }
            // Inside the slice, which is inside the disk: no overflow.
            Op::Read => {
                counters.reads += 1;
                Command::Read { sector: slice.first_sector + request.sector(), len: request.len() }
            }
            Op::Write => {
                counters.writes += 1;
                let data = match client.backend.request_data(&request, &mut self.scratch) {
                    Ok(n) => self.scratch.get(..n).unwrap_or_default(),
                    Err(_) => &[],
                };
                Command::Write { sector: slice.first_sector + request.sector(), data }
            }
            Op::Flush => {
                counters.flushes += 1;
                if !self.driver.has_flush() {
                    // No write cache: completed writes are already where the device keeps
                    // them.
                    let _ = client.backend.respond(request, Status::Ok, &[]);
                    return;
                }
                Command::Flush
            }
            Op::GetId => {
                counters.get_ids += 1;
                Command::GetId { len: request.len() }
            }
        };
        match self.driver.submit(command) {
            Ok(token) => {
                if let Some(slot) = self.pending.get_mut(token.index()) {
                    *slot = Some(Pending { client: i as u8, request });
                }
            }
            Err(e) => {
                client.counters.failed += 1;
                let status =
                    if e == driver::Error::Unsupported { Status::Unsupported } else { Status::IoError };
                let _ = client.backend.respond(request, status, &[]);
            }
        }
    }

    /// Gives the driver back (the clients' backends are dropped: a new server starts
    /// them again).
    pub fn into_driver(self) -> Driver<P, D> {
        self.driver
    }
}

/// Answers the request pending under driver token `index`, if there is one, with
/// `status` and `data`.
fn answer(
    clients: &mut [Client],
    pending: &mut [Option<Pending>],
    index: usize,
    status: Status,
    data: &[u8],
) {
    let Some(Pending { client, request }) = pending.get_mut(index).and_then(Option::take) else {
        return;
    };
    let Some(client) = clients.get_mut(usize::from(client)) else { return };
    if status != Status::Ok {
        client.counters.failed += 1;
    }
    // Refused only if the ring failed meanwhile (then nothing is answered) or the data
    // does not fit (then it is answered with an I/O error).
    let result: Result<(), Error> = client.backend.respond(request, status, data);
    if let Err(Error::Request(_)) = result {
        client.counters.failed += 1;
    }
}
