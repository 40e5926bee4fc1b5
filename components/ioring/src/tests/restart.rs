//! The restart handshake: a backend restarted from a pristine image (a fresh `Backend` over
//! the same region) while requests are in flight; every request completes exactly once,
//! and every write reaches the disk.

use super::{Completions, Disk, GEOMETRY, Rng, blk_region, pattern, serve_all, write_bytes};
use crate::blk::{Backend, Event, Op, Request, Status, Vmm};
use std::vec;
use std::vec::Vec;

/// The requests of the story: even ids write 1 KiB at sector `8 * id`, odd ids read 2 KiB
/// at sector `100 + 8 * id` (no read overlaps a write).
fn story_request(id: u64) -> (Request, Vec<u8>) {
    if id.is_multiple_of(2) {
        (Request { id, op: Op::Write, sector: 8 * id, len: 1024 }, write_bytes(id, 1024))
    } else {
        (Request { id, op: Op::Read, sector: 100 + 8 * id, len: 2048 }, Vec::new())
    }
}

/// Checks that ids `0..n` completed once each with the right bytes and that every write is
/// on the disk.
fn check_story(seen: &Completions, disk: &Disk, n: u64) {
    assert_eq!(seen.done.len() as u64, n, "{:?}", seen.done.keys());
    for id in 0..n {
        let (request, data) = story_request(id);
        let (status, out) = &seen.done[&id];
        assert_eq!(*status, Status::Ok, "id {id}");
        let at = request.sector as usize * 512;
        match request.op {
            Op::Write => assert_eq!(&disk.bytes[at..at + data.len()], &data[..], "write {id} lost"),
            _ => {
                let expected: Vec<u8> = (0..request.len as usize)
                    .map(|i| pattern(request.sector + i as u64 / 512, i % 512))
                    .collect();
                assert_eq!(out, &expected, "read {id}");
            }
        }
    }
}

/// The VMM with ten requests submitted and published to an acknowledged backend.
fn ten_in_flight() -> (crate::testing::Region, Vmm, Backend) {
    let region = blk_region(GEOMETRY);
    let mut vmm = Vmm::format(region.shared(), GEOMETRY).unwrap();
    let backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 1, resent: 0 })));
    for id in 0..10 {
        let (request, data) = story_request(id);
        assert_eq!(vmm.submit(request, &data), Ok(true));
    }
    assert_eq!(vmm.publish(), Ok(true));
    (region, vmm, backend)
}

/// The backend takes `take` requests, answers `answer` of them and publishes the first
/// `publish` answers; then it is gone (the caller drops or replaces it).
fn serve_partly(backend: &mut Backend, disk: &mut Disk, take: usize, answer: usize, publish: usize) {
    let mut taken = Vec::new();
    for _ in 0..take {
        taken.push(backend.next_request().unwrap().expect("a request"));
    }
    for (i, request) in taken.into_iter().take(answer).enumerate() {
        disk.serve(backend, request);
        if i + 1 == publish {
            backend.publish().unwrap();
        }
    }
}

#[test]
fn a_restart_resends_what_was_not_answered() {
    let (region, mut vmm, mut backend) = ten_in_flight();
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    // Three answered, two of them published; then the backend restarts.
    serve_partly(&mut backend, &mut disk, 5, 3, 2);
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    assert_eq!(backend.epoch(), 2);
    assert_eq!(backend.next_request(), Ok(None), "not acknowledged yet");
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    for _ in 0..2 {
        let event = vmm.poll(&mut buf).unwrap().unwrap();
        assert!(matches!(event, Event::Completed(_)), "{event:?}");
        seen.record(event, &buf);
    }
    assert_eq!(seen.done.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 2, resent: 8 })));
    assert_eq!(vmm.poll(&mut buf), Ok(None));
    assert_eq!(serve_all(&mut backend, &mut disk), 8);
    seen.drain(&mut vmm);
    check_story(&seen, &disk, 10);
    assert_eq!(disk.writes, 6, "write 2 was answered but not published: done again");
    assert!(region.guards_intact());
}

#[test]
fn two_restarts_in_a_row() {
    let (region, mut vmm, mut backend) = ten_in_flight();
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    serve_partly(&mut backend, &mut disk, 5, 3, 2);
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    seen.drain(&mut vmm);
    assert_eq!((seen.done.len(), seen.resyncs, vmm.in_flight()), (2, 1, 8));
    // The second instance takes all eight, answers four, publishes three, and restarts.
    serve_partly(&mut backend, &mut disk, 8, 4, 3);
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    assert_eq!(backend.epoch(), 3);
    seen.drain(&mut vmm);
    assert_eq!((seen.done.len(), seen.resyncs, vmm.in_flight()), (5, 2, 5));
    assert_eq!(serve_all(&mut backend, &mut disk), 5);
    seen.drain(&mut vmm);
    check_story(&seen, &disk, 10);
    assert!(region.guards_intact());
}

#[test]
fn a_restart_while_the_vmm_drains() {
    let (region, mut vmm, mut backend) = ten_in_flight();
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    serve_partly(&mut backend, &mut disk, 6, 3, 3);
    let _second = Backend::start(region.shared(), GEOMETRY).unwrap();
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    let event = vmm.poll(&mut buf).unwrap().unwrap();
    seen.record(event, &buf);
    // The second instance restarts before the VMM has acknowledged it.
    let mut third = Backend::start(region.shared(), GEOMETRY).unwrap();
    // A request submitted meanwhile waits for the new layout.
    let (request, data) = story_request(10);
    assert_eq!(vmm.submit(request, &data), Ok(true));
    seen.drain(&mut vmm);
    assert_eq!((seen.done.len(), seen.resyncs), (3, 1));
    assert_eq!(vmm.acknowledged(), 3, "the latest epoch");
    assert_eq!(serve_all(&mut third, &mut disk), 8);
    seen.drain(&mut vmm);
    check_story(&seen, &disk, 11);
    assert!(region.guards_intact());
}

#[test]
fn a_restart_right_after_the_acknowledgement() {
    let (region, mut vmm, mut backend) = ten_in_flight();
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    serve_partly(&mut backend, &mut disk, 2, 2, 2);
    let mut second = Backend::start(region.shared(), GEOMETRY).unwrap();
    seen.drain(&mut vmm);
    assert_eq!((seen.done.len(), seen.resyncs), (2, 1));
    // The second instance answers one of the resent requests, publishes it, and restarts
    // before the VMM has looked.
    serve_partly(&mut second, &mut disk, 1, 1, 1);
    let mut third = Backend::start(region.shared(), GEOMETRY).unwrap();
    seen.drain(&mut vmm);
    assert_eq!((seen.done.len(), seen.resyncs), (3, 2));
    assert_eq!(serve_all(&mut third, &mut disk), 7);
    seen.drain(&mut vmm);
    check_story(&seen, &disk, 10);
}

/// Random interleavings of submissions, partial service, publication, polling and
/// restarts (a restart is also taken in the middle of a resync): every request completes
/// once, every write is on the disk, whatever the order.
#[test]
fn random_restarts_lose_nothing_and_repeat_no_completion() {
    for seed in 0..20 {
        let mut rng = Rng::new(seed);
        let region = blk_region(GEOMETRY);
        let mut vmm =
            Vmm::format_with_base(region.shared(), GEOMETRY, u32::MAX - rng.below(40) as u32).unwrap();
        let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
        let mut disk = Disk::new(4096);
        let mut seen = Completions::default();
        let mut held = Vec::new();
        let mut buf = vec![0; GEOMETRY.slot_size as usize];
        let (mut next_id, total) = (0u64, 300u64);
        let mut steps = 0;
        while seen.done.len() as u64 != total {
            steps += 1;
            assert!(steps < 100_000, "seed {seed}: no progress");
            match rng.below(10) {
                0..=2 if next_id < total => {
                    let (request, data) = story_request(next_id);
                    if vmm.submit(request, &data).unwrap() {
                        next_id += 1;
                    }
                }
                3 => {
                    vmm.publish().unwrap();
                }
                4 | 5 => {
                    if let Some(request) = backend.next_request().unwrap() {
                        held.push(request);
                    }
                }
                6 if !held.is_empty() => {
                    let request = held.swap_remove(rng.below(held.len() as u64) as usize);
                    disk.serve(&mut backend, request);
                }
                7 => {
                    backend.publish().unwrap();
                }
                8 => {
                    if let Some(event) = vmm.poll(&mut buf).unwrap() {
                        seen.record(event, &buf);
                    }
                }
                9 if rng.one_in(8) => {
                    held.clear();
                    backend = Backend::start(region.shared(), GEOMETRY).unwrap();
                }
                _ => {}
            }
        }
        assert_eq!(vmm.in_flight(), 0);
        check_story(&seen, &disk, total);
        assert!(seen.resyncs > 1, "seed {seed}: restarts happened");
        assert!(region.guards_intact());
    }
}

/// A VMM closes its region when its guest is gone: every backend instance, restarted or
/// not, sees it; formatting the region anew (a new guest) opens it again.
#[test]
fn a_closed_region_stays_closed_for_every_backend_until_formatted_again() {
    let region = blk_region(GEOMETRY);
    let vmm = Vmm::format(region.shared(), GEOMETRY).unwrap();
    let backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    assert!(!backend.vmm_closed());
    vmm.close();
    assert!(backend.vmm_closed());
    let restarted = Backend::start(region.shared(), GEOMETRY).unwrap();
    assert!(restarted.vmm_closed(), "a restart does not reopen it");
    let _again = Vmm::format(region.shared(), GEOMETRY).unwrap();
    assert!(!restarted.vmm_closed());
    assert!(region.guards_intact());
}

/// A guest made again (an on-request guest destroyed and created): a new VMM formats the
/// region its guest's old VMM left mid-story, while the backend keeps running. The backend
/// sees the new session, starts a new epoch for it, and the new VMM's requests are served
/// from the rings' start; what the old VMM left is answered to no one.
#[test]
fn a_new_vmm_over_a_used_region_is_served_by_the_running_backend() {
    let (region, _old, mut backend) = ten_in_flight();
    let mut disk = Disk::new(256);
    // The old VMM is gone with requests taken, one answered and published.
    serve_partly(&mut backend, &mut disk, 4, 1, 1);
    let left: Vec<_> = std::iter::from_fn(|| backend.next_request().unwrap()).collect();
    assert_eq!(left.len(), 6);
    let mut vmm = Vmm::format(region.shared(), GEOMETRY).unwrap();
    // The new VMM acknowledges no epoch yet (the current one served the old VMM): what it
    // submits waits in its ring, and it takes nothing the old backend instance wrote.
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    for id in 0..10 {
        let (request, data) = story_request(id);
        assert_eq!(vmm.submit(request, &data), Ok(true));
    }
    assert_eq!(vmm.publish(), Ok(true));
    assert_eq!(vmm.poll(&mut buf), Ok(None), "waiting for the backend's new epoch");
    // Before the backend looks at the session, it finds the acknowledgement gone: that
    // stops it...
    assert!(backend.next_request().is_err(), "the acknowledgement is withdrawn");
    assert!(backend.failed().is_some());
    // ...until it sees the session, which starts it over whatever it was doing.
    assert!(backend.check_session());
    assert!(!backend.check_session(), "once per format");
    assert_eq!(backend.epoch(), 2);
    for request in left {
        assert!(backend.respond(request, Status::Ok, &[]).is_err(), "the old VMM's request is nobody's");
    }
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 2, resent: 10 })));
    assert_eq!(serve_all(&mut backend, &mut disk), 10);
    let mut seen = Completions::default();
    seen.drain(&mut vmm);
    check_story(&seen, &disk, 10);
    assert!(region.guards_intact());
}

/// A hostile VMM that bumps the session word over and over only starts its own ring over
/// each time (a new epoch it must acknowledge); a VMM that acknowledges then gets served.
#[test]
fn a_vmm_that_keeps_bumping_the_session_only_restarts_its_own_ring() {
    let (region, mut vmm, mut backend) = super::pair(GEOMETRY, 0);
    let mut buf = vec![0; GEOMETRY.slot_size as usize];
    for round in 0..5u32 {
        let session = region.shared().load_u32(0x200).unwrap();
        region.shared().store_u32(0x200, session.wrapping_add(7)).unwrap();
        assert!(backend.check_session(), "round {round}");
        assert_eq!(backend.next_request(), Ok(None), "not acknowledged: nothing is served");
    }
    assert_eq!(backend.epoch(), 6);
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 6, resent: 0 })));
    let (request, data) = story_request(0);
    assert_eq!(vmm.submit(request, &data), Ok(true));
    assert_eq!(vmm.publish(), Ok(true));
    let mut disk = Disk::new(256);
    assert_eq!(serve_all(&mut backend, &mut disk), 1);
    assert!(region.guards_intact());
}
