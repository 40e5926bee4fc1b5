//! Hostile peers on a disk region: a VMM that writes what it likes into the header and the
//! request entries, and a backend that does the same with its words and the responses.
//! The side under test returns errors (or resynchronises), never panics, never touches
//! memory outside the region (the guard pages stay intact, and no access is refused as
//! out of the region), and the VMM never completes a request twice.

use super::{Completions, Disk, GEOMETRY, Rng, blk_region, pair, serve_all};
use crate::blk::{Backend, Event, Op, Request, Status, Vmm, request_entry, response_entry};
use crate::error::{Error, ProtocolError, RequestError, Ring};
use crate::layout::{offset, tagged, untag};
use crate::shared::Shared;
use std::collections::BTreeSet;
use std::string::String;
use std::vec;
use std::vec::Vec;

fn read(id: u64, sector: u64, len: u32) -> Request {
    Request { id, op: Op::Read, sector, len }
}

fn protocol(e: ProtocolError) -> Error {
    Error::Protocol(e)
}

/// A pair with one read published, ready for the VMM's entry to be tampered with.
fn one_published() -> (crate::testing::Region, Vmm, Backend) {
    let (region, mut vmm, backend) = pair(GEOMETRY, 0);
    vmm.submit(read(1, 0, 512), &[]).unwrap();
    vmm.publish().unwrap();
    (region, vmm, backend)
}

/// Offset of the request entry the first request went into.
fn first_request() -> usize {
    GEOMETRY.layout().unwrap().request(0)
}

/// Sets `field` of the first request entry, runs the backend, expects `error` (twice: it
/// stays refused).
fn tampered_request(field: usize, value: u64, error: ProtocolError) {
    let (region, _vmm, mut backend) = one_published();
    let at = first_request() + field;
    let shared = region.shared();
    match field {
        request_entry::ID | request_entry::SECTOR => shared.store_u64(at, value).unwrap(),
        _ => shared.store_u32(at, value as u32).unwrap(),
    }
    assert_eq!(backend.next_request(), Err(protocol(error)));
    assert_eq!(backend.next_request(), Err(protocol(error)), "refused for good");
    assert_eq!(backend.failed(), Some(error));
    assert!(region.guards_intact());
}

#[test]
fn a_request_naming_a_slot_outside_the_region() {
    tampered_request(request_entry::SLOT, 16, ProtocolError::SlotOutOfRange(16));
    tampered_request(request_entry::SLOT, u32::MAX.into(), ProtocolError::SlotOutOfRange(u32::MAX));
}

#[test]
fn a_request_longer_than_a_slot() {
    let len = GEOMETRY.slot_size + 512;
    tampered_request(request_entry::LEN, len.into(), ProtocolError::BadRequest(RequestError::Length(len)));
    tampered_request(request_entry::LEN, 100, ProtocolError::BadRequest(RequestError::Length(100)));
}

#[test]
fn a_request_with_an_unknown_operation() {
    tampered_request(request_entry::OP, 3, ProtocolError::UnknownOp(3));
}

#[test]
fn a_request_past_the_last_sector() {
    tampered_request(
        request_entry::SECTOR,
        u64::MAX,
        ProtocolError::BadRequest(RequestError::SectorOverflow),
    );
}

#[test]
fn a_producer_index_far_ahead() {
    let (region, _vmm, mut backend) = one_published();
    let epoch = backend.epoch();
    region.shared().store_u64(offset::REQ_PROD, tagged(epoch, 1000)).unwrap();
    assert_eq!(backend.next_request(), Err(protocol(ProtocolError::ProducerAhead(Ring::Request))));
    let (region, _vmm, mut backend) = one_published();
    region.shared().store_u64(offset::REQ_PROD, tagged(epoch + 1, 1)).unwrap();
    assert_eq!(backend.next_request(), Err(protocol(ProtocolError::StaleIndex(Ring::Request))));
    assert!(region.guards_intact());
}

#[test]
fn an_ack_the_backend_never_gave() {
    let region = blk_region(GEOMETRY);
    let mut vmm = Vmm::format(region.shared(), GEOMETRY).unwrap();
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    vmm.submit(read(1, 0, 512), &[]).unwrap();
    vmm.publish().unwrap();
    for ack in [0, 7, u32::MAX, backend.epoch() + 1] {
        region.shared().store_u32(offset::ACK, ack).unwrap();
        assert_eq!(backend.next_request(), Ok(None), "ack {ack}: not served");
        assert!(!backend.is_serving());
    }
    // The acknowledgement alone, without the rings laid out for it.
    region.shared().store_u32(offset::ACK, backend.epoch()).unwrap();
    assert_eq!(backend.next_request(), Err(protocol(ProtocolError::StaleIndex(Ring::Response))));
    // A served backend whose acknowledgement is taken back.
    let (region, _vmm, mut backend) = one_published();
    assert!(backend.next_request().unwrap().is_some());
    region.shared().store_u32(offset::ACK, backend.epoch() + 1).unwrap();
    assert_eq!(backend.next_request(), Err(protocol(ProtocolError::AckChanged)));
    assert!(region.guards_intact());
}

#[test]
fn a_header_that_disagrees() {
    let region = blk_region(GEOMETRY);
    let smaller = crate::blk::Geometry { slots: 8, slot_size: 4096 };
    Vmm::format(region.shared(), smaller).unwrap();
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    region.shared().store_u32(offset::ACK, backend.epoch()).unwrap();
    assert_eq!(
        backend.next_request(),
        Err(protocol(ProtocolError::GeometryMismatch { slots: 8, slot_size: 4096 }))
    );
    for (at, value) in [(offset::MAGIC, 0x1234), (offset::VERSION, 2), (offset::KIND, 2)] {
        let region = blk_region(GEOMETRY);
        Vmm::format(region.shared(), GEOMETRY).unwrap();
        let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
        region.shared().store_u32(at, value).unwrap();
        region.shared().store_u32(offset::ACK, backend.epoch()).unwrap();
        assert_eq!(backend.next_request(), Err(protocol(ProtocolError::NotThisProtocol)), "{at:#x}");
    }
}

#[test]
fn more_requests_than_slots() {
    let (region, mut vmm, mut backend) = pair(GEOMETRY, 0);
    let mut disk = Disk::new(64);
    for id in 0..16 {
        vmm.submit(read(id, id, 512), &[]).unwrap();
    }
    vmm.publish().unwrap();
    assert_eq!(serve_all(&mut backend, &mut disk), 16);
    // Sixteen responses unread, and the VMM publishes a seventeenth request (reusing an
    // entry) instead of taking them.
    let epoch = backend.epoch();
    region.shared().store_u64(offset::REQ_PROD, tagged(epoch, 17)).unwrap();
    assert_eq!(backend.next_request(), Err(protocol(ProtocolError::TooManyInFlight)));
    assert!(region.guards_intact());
}

/// Writes `n` random bytes at a random place of the header's used part or the entries.
fn scribble(rng: &mut Rng, shared: &Shared, entries_end: usize) {
    let at = if rng.one_in(2) {
        rng.below(0x1c0) as usize
    } else {
        0x1000 + rng.below(entries_end as u64 - 0x1000) as usize
    };
    let n = 1 + rng.below(8) as usize;
    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    let _ = shared.write(at, &bytes[..n.min(entries_end - at)]);
}

/// The entries' end: everything before it is header and entries.
fn entries_end() -> usize {
    GEOMETRY.layout().unwrap().data
}

/// A hostile VMM: 10,000 rounds in which a real VMM submits and polls while its words,
/// the backend's words and the request entries are overwritten with garbage, whole or
/// plausible (an acknowledgement of the backend's epoch, an index a little ahead, small
/// field values). The backend errors, is restarted, serves again; nothing outside the
/// region is touched.
#[test]
fn garbage_from_the_vmm() {
    let mut rng = Rng::new(0x5eed);
    let region = blk_region(GEOMETRY);
    let shared = region.shared();
    let mut vmm = Vmm::format(shared, GEOMETRY).unwrap();
    let mut backend = Backend::start(shared, GEOMETRY).unwrap();
    let mut disk = Disk::new(1 << 12);
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    let (mut served, mut errors) = (0, BTreeSet::<String>::new());
    let layout = GEOMETRY.layout().unwrap();
    for round in 0..10_000u64 {
        // The VMM does its part; it may be stopped by what the test scribbles.
        for _ in 0..rng.below(3) {
            let op = [Op::Read, Op::Write, Op::Flush, Op::GetId][rng.below(4) as usize];
            let len = match op {
                Op::Flush => 0,
                _ => 512 * (1 + rng.below(8) as u32),
            };
            let data = if op == Op::Write { vec![round as u8; len as usize] } else { vec![] };
            let _ = vmm.submit(Request { id: round, op, sector: rng.below(1 << 13), len }, &data);
        }
        let _ = vmm.publish();
        while let Ok(Some(_)) = vmm.poll(&mut buf) {}
        // The garbage, in one round of three.
        match if rng.one_in(3) { rng.below(32) } else { u64::MAX } {
            0 => {
                for at in (0..entries_end()).step_by(8) {
                    if !(0x1c0..0x1000).contains(&at) {
                        shared.store_u64(at, rng.next()).unwrap();
                    }
                }
            }
            1..=4 => shared.store_u32(offset::ACK, backend.epoch()).unwrap(),
            5..=8 => {
                let (_, index) = untag(shared.load_u64(offset::REQ_CONS).unwrap());
                let ahead = index.wrapping_add(rng.below(20) as u32);
                shared.store_u64(offset::REQ_PROD, tagged(backend.epoch(), ahead)).unwrap();
            }
            9..=16 => {
                let at = layout.request(rng.below(16) as u32);
                let field =
                    [request_entry::OP, request_entry::LEN, request_entry::SLOT][rng.below(3) as usize];
                shared
                    .store_u32(at + field, rng.below(40) as u32 * if rng.one_in(2) { 512 } else { 1 })
                    .unwrap();
            }
            17..=18 => {
                shared.store_u64(offset::RSP_CONS, tagged(backend.epoch(), rng.next() as u32)).unwrap()
            }
            19..=31 => {
                for _ in 0..1 + rng.below(4) {
                    scribble(&mut rng, &shared, entries_end());
                }
            }
            _ => {}
        }
        // The backend serves what it can and answers; when refused, it is restarted.
        loop {
            match backend.next_request() {
                Ok(Some(request)) => {
                    served += 1;
                    disk.serve(&mut backend, request);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_ne!(e, protocol(ProtocolError::OutOfRegion), "round {round}");
                    if let Error::Protocol(e) = e {
                        errors.insert(
                            std::format!("{e:?}").split(['(', ' ']).next().unwrap_or_default().into(),
                        );
                    }
                    // The backend is restarted; now and then the VMM starts over too (a
                    // wrecked header would otherwise refuse every instance).
                    backend = Backend::start(shared, GEOMETRY).unwrap();
                    if rng.one_in(4) {
                        vmm = Vmm::format(shared, GEOMETRY).unwrap();
                    }
                    break;
                }
            }
        }
        let _ = backend.publish();
        if round % 1000 == 0 {
            assert!(region.guards_intact(), "round {round}");
        }
    }
    assert!(region.guards_intact());
    assert!(served > 1000, "the backend served {served} requests");
    assert!(errors.len() >= 6, "the kinds of error seen: {errors:?}");
}

/// A VMM-side pair past the handshake, with requests 0..n (reads) published and taken by
/// the backend, which answers none yet.
fn taken(n: u64) -> (crate::testing::Region, Vmm, Backend, Vec<crate::blk::Received>) {
    let (region, mut vmm, mut backend) = pair(GEOMETRY, 0);
    for id in 0..n {
        vmm.submit(read(id, id, 512), &[]).unwrap();
    }
    vmm.publish().unwrap();
    let received = (0..n).map(|_| backend.next_request().unwrap().unwrap()).collect();
    (region, vmm, backend, received)
}

/// Publishes one more response entry at the backend's response producer index, with
/// `id`, `status` and `len`.
fn forge_response(shared: &Shared, id: u64, status: u32, len: u32) {
    let (epoch, index) = untag(shared.load_u64(offset::RSP_PROD).unwrap());
    let at = GEOMETRY.layout().unwrap().response(index);
    shared.store_u64(at + response_entry::ID, id).unwrap();
    shared.store_u32(at + response_entry::STATUS, status).unwrap();
    shared.store_u32(at + response_entry::LEN, len).unwrap();
    shared.store_u64(offset::RSP_PROD, tagged(epoch, index.wrapping_add(1))).unwrap();
}

/// The wire id of the request entry at `index`.
fn wire_id(shared: &Shared, index: u32) -> u64 {
    shared.load_u64(GEOMETRY.layout().unwrap().request(index) + request_entry::ID).unwrap()
}

#[test]
fn a_response_for_an_id_not_in_flight() {
    let (region, mut vmm, _backend, _received) = taken(2);
    let shared = region.shared();
    let mut buf = vec![0; 4096];
    // An id whose slot is free, one whose slot is outside, one whose sequence is stale.
    for id in [5, 1 << 40, wire_id(&shared, 0) + (7 << 32)] {
        let (region, mut vmm, _backend, _received) = taken(2);
        forge_response(&region.shared(), id, 0, 512);
        assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::UnknownId(id))));
        assert_eq!(vmm.submit(read(9, 0, 512), &[]), Err(protocol(ProtocolError::UnknownId(id))));
    }
    forge_response(&shared, wire_id(&shared, 0), 9, 0);
    assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::UnknownStatus(9))));
    let (region, mut vmm, _backend, _received) = taken(2);
    let shared = region.shared();
    forge_response(&shared, wire_id(&shared, 0), 0, 100);
    assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::ResponseLength(100))), "a short read");
    let (region, mut vmm, _backend, _received) = taken(2);
    let shared = region.shared();
    shared.store_u64(offset::RSP_PROD, tagged(vmm.acknowledged(), 17)).unwrap();
    assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::ProducerAhead(Ring::Response))));
    assert!(region.guards_intact());
}

#[test]
fn a_response_published_twice_completes_once() {
    let (region, mut vmm, mut backend, mut received) = taken(2);
    let shared = region.shared();
    let mut disk = Disk::new(16);
    let first = received.remove(0);
    disk.serve(&mut backend, first);
    backend.publish().unwrap();
    let mut seen = Completions::default();
    let mut buf = vec![0; 4096];
    let event = vmm.poll(&mut buf).unwrap().unwrap();
    seen.record(event, &buf);
    // The backend publishes the same response again.
    let id = wire_id(&shared, 0);
    forge_response(&shared, id, 0, 512);
    assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::UnknownId(id))));
    assert_eq!(vmm.poll(&mut buf), Err(protocol(ProtocolError::UnknownId(id))), "stopped");
    // A restarted backend is served again: the request still in flight is resent.
    let mut backend = Backend::start(shared, GEOMETRY).unwrap();
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 2, resent: 1 })));
    assert_eq!(serve_all(&mut backend, &mut disk), 1);
    seen.drain(&mut vmm);
    assert_eq!(seen.done.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert!(region.guards_intact());
}

/// A backend whose epoch changes at every step: a new instance starts each time, and the
/// previous one, not stopped, sometimes answers the requests it still held afterwards.
#[test]
fn a_backend_that_bumps_its_epoch_every_step() {
    let region = blk_region(GEOMETRY);
    let shared = region.shared();
    let mut vmm = Vmm::format(shared, GEOMETRY).unwrap();
    let mut backend = Backend::start(shared, GEOMETRY).unwrap();
    let mut previous: Option<(Backend, Vec<crate::blk::Received>)> = None;
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    let mut buf = vec![0; 4096];
    let mut rng = Rng::new(7);
    let (mut next, mut errors) = (0u64, 0);
    for step in 0..2000 {
        while next < 100_000 && vmm.submit(read(next, next % 256, 512), &[]).unwrap_or(false) {
            next += 1;
        }
        let _ = vmm.publish();
        // The current instance answers a request or two, publishes, and holds one more.
        for _ in 0..rng.below(3) {
            if let Ok(Some(request)) = backend.next_request() {
                disk.serve(&mut backend, request);
            }
        }
        let _ = backend.publish();
        let held: Vec<_> = backend.next_request().ok().flatten().into_iter().collect();
        // The previous instance answers what it held, under its old epoch.
        if let Some((mut old, held)) = previous.take()
            && rng.one_in(2)
        {
            for request in held {
                disk.serve(&mut old, request);
            }
            let _ = old.publish();
        }
        previous = Some((backend, held));
        backend = Backend::start(shared, GEOMETRY).unwrap();
        // The VMM takes what it trusts; every id once (`record` checks).
        loop {
            match vmm.poll(&mut buf) {
                Ok(Some(event)) => seen.record(event, &buf),
                Ok(None) => break,
                Err(e) => {
                    assert_ne!(e, protocol(ProtocolError::OutOfRegion), "step {step}");
                    errors += 1;
                    break;
                }
            }
        }
    }
    assert!(seen.resyncs >= 1000, "{} resyncs", seen.resyncs);
    // The old instance's answers carry its epoch: the VMM never takes them.
    assert!(seen.done.len() > 500 && errors == 0, "{} completions, {errors} errors", seen.done.len());
    assert!(seen.done.keys().all(|&id| id < next));
    assert!(region.guards_intact());
}

/// A hostile backend: 10,000 rounds of a real backend serving while its words, the
/// epoch and the response entries are overwritten with garbage or replayed. The VMM
/// errors or resynchronises; no id completes twice or without having been submitted.
#[test]
fn garbage_from_the_backend() {
    let mut rng = Rng::new(0xbad);
    let region = blk_region(GEOMETRY);
    let shared = region.shared();
    let mut vmm = Vmm::format(shared, GEOMETRY).unwrap();
    let mut backend = Backend::start(shared, GEOMETRY).unwrap();
    let mut disk = Disk::new(1 << 12);
    let mut seen = Completions::default();
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    let layout = GEOMETRY.layout().unwrap();
    let (mut next, mut resyncs, mut errors) = (0u64, 0, 0);
    let mut replay: Vec<(u64, u32, u32)> = Vec::new();
    for round in 0..10_000u64 {
        for _ in 0..rng.below(4) {
            if vmm.submit(read(next, rng.below(1 << 12), 512), &[]).unwrap_or(false) {
                next += 1;
            }
        }
        let _ = vmm.publish();
        for _ in 0..rng.below(4) {
            match backend.next_request() {
                Ok(Some(request)) => disk.serve(&mut backend, request),
                Ok(None) => break,
                Err(_) => {
                    backend = Backend::start(shared, GEOMETRY).unwrap();
                    break;
                }
            }
        }
        let _ = backend.publish();
        // Remember a published response to replay later.
        let (_, prod) = untag(shared.load_u64(offset::RSP_PROD).unwrap());
        let at = layout.response(prod.wrapping_sub(1));
        replay.push((
            shared.load_u64(at + response_entry::ID).unwrap(),
            shared.load_u32(at + response_entry::STATUS).unwrap(),
            shared.load_u32(at + response_entry::LEN).unwrap(),
        ));
        match if rng.one_in(3) { rng.below(8) } else { u64::MAX } {
            0 => {
                let (id, status, len) = replay[rng.below(replay.len() as u64) as usize];
                forge_response(&shared, id, status, len);
            }
            1 => forge_response(&shared, rng.next(), rng.below(4) as u32, rng.below(1024) as u32),
            2 => {
                let epoch = shared.load_u32(offset::EPOCH).unwrap();
                shared.store_u32(offset::EPOCH, epoch.wrapping_add(rng.below(3) as u32)).unwrap();
            }
            3 => shared.store_u64(offset::RSP_PROD, rng.next()).unwrap(),
            4 => shared.store_u64(offset::REQ_CONS, rng.next()).unwrap(),
            5 => backend = Backend::start(shared, GEOMETRY).unwrap(),
            _ => {
                for _ in 0..1 + rng.below(4) {
                    scribble(&mut rng, &shared, entries_end());
                }
            }
        }
        for _ in 0..rng.below(6) {
            match vmm.poll(&mut buf) {
                Ok(Some(event)) => {
                    if let Event::Completed(c) = event {
                        assert!(c.id < next, "round {round}: id {} was never submitted", c.id);
                        assert!(matches!(c.status, Status::Ok | Status::IoError | Status::Unsupported));
                    } else {
                        resyncs += 1;
                    }
                    seen.record(event, &buf);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_ne!(e, protocol(ProtocolError::OutOfRegion), "round {round}");
                    errors += 1;
                    break;
                }
            }
        }
        if round % 1000 == 0 {
            assert!(region.guards_intact(), "round {round}");
        }
    }
    assert!(region.guards_intact());
    assert!(seen.done.len() > 1000, "{} completions", seen.done.len());
    assert!(resyncs > 100 && errors > 100, "{resyncs} resyncs, {errors} errors");
}
