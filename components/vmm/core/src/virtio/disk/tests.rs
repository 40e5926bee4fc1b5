//! The bridge against a backend that serves a disk image over a real ring region: pieces,
//! order, a ring smaller than the guest's requests, backend restarts mid-request, and a
//! backend that fails or answers what was not asked.

use super::super::blk::{VirtioBlk, request_type};
use super::super::testing::{Driver, Ram};
use super::super::tests::{DATA, RAM, STATUS, blk_request, set_up};
use super::*;
use cleave_ioring::Shared;
use cleave_ioring::blk::{Backend, Geometry};
use cleave_ioring::testing::Region;

/// A ring of `slots` slots of 4 KiB (so a 3-page request is three pieces).
const SLOT: u32 = 4096;

struct World {
    ram: Ram,
    device: VirtioBlk,
    driver: Driver,
    bridge: DiskBridge,
    backend: Backend,
    geometry: Geometry,
    disk: Vec<u8>,
    /// The ring's memory (the `Shared` values point into it).
    region_memory: Region,
    region: Shared,
    served: u32,
}

impl World {
    fn new(slots: u32, sectors: u64) -> Self {
        let geometry = Geometry { slots, slot_size: SLOT };
        let region = Region::new(geometry.region_size().unwrap());
        let shared = region.shared();
        let ring = Vmm::format(shared, geometry).unwrap();
        let backend = Backend::start(shared, geometry).unwrap();
        let mut device = VirtioBlk::new(sectors, b"serial");
        let driver = set_up(&mut device, 1).pop().unwrap();
        assert!(device.take_notified());
        let mut world = World {
            ram: Ram::new(RAM),
            device,
            driver,
            bridge: DiskBridge::new(Box::new(ring), SLOT),
            backend,
            geometry,
            disk: (0..sectors as usize * 512).map(|i| (i * 13 % 241) as u8).collect(),
            region_memory: region,
            region: shared,
            served: 0,
        };
        // The backend started after the VMM formatted the ring: the VMM acknowledges it.
        assert!(world.bridge.on_signal(&mut world.device, &mut world.ram));
        assert_eq!(world.bridge.counters.resyncs, 1);
        world
    }

    /// The backend answers up to `budget` requests as a disk would; true if it published.
    fn serve(&mut self, budget: u32) -> bool {
        let mut buffer = vec![0u8; SLOT as usize];
        for _ in 0..budget {
            let Some(request) = self.backend.next_request().unwrap() else { break };
            let (at, len) = (request.sector() as usize * 512, request.len() as usize);
            match request.op() {
                Op::Read => {
                    let data = self.disk[at..at + len].to_vec();
                    self.backend.respond(request, Status::Ok, &data).unwrap();
                }
                Op::Write => {
                    assert_eq!(self.backend.request_data(&request, &mut buffer).unwrap(), len);
                    self.disk[at..at + len].copy_from_slice(&buffer[..len]);
                    self.backend.respond(request, Status::Ok, &[]).unwrap();
                }
                _ => self.backend.respond(request, Status::Ok, &[]).unwrap(),
            }
            self.served += 1;
        }
        self.backend.publish().unwrap()
    }

    /// Posts a request as Linux does and lets the bridge take it.
    fn post(&mut self, n: u64, kind: u32, sector: u64, data: &[(u64, u32)]) -> u16 {
        let head = blk_request(&mut self.driver, &mut self.ram, n, kind, sector, data);
        self.bridge.pump(&mut self.device, &mut self.ram);
        head
    }

    /// Serves and signals until nothing moves (bounded).
    fn settle(&mut self) {
        for _ in 0..64 {
            let published = self.serve(u32::MAX);
            let again = self.bridge.on_signal(&mut self.device, &mut self.ram);
            if !published && !again && self.backend.next_request().unwrap().is_none() {
                return;
            }
        }
        panic!("the bridge and the backend did not settle");
    }
}

#[test]
fn a_write_and_a_read_of_several_pieces_reach_the_disk_and_come_back() {
    let mut w = World::new(8, 64);
    let pattern: Vec<u8> = (0..3 * 4096).map(|i| (i % 199) as u8).collect();
    assert!(w.ram.write(DATA, &pattern[..4096]));
    assert!(w.ram.write(DATA + 0x1000, &pattern[4096..8192]));
    assert!(w.ram.write(DATA + 0x2000, &pattern[8192..]));
    // 12 KiB at sector 8: three pieces, over three segments.
    let write =
        w.post(0, request_type::OUT, 8, &[(DATA, 4096), (DATA + 0x1000, 4096), (DATA + 0x2000, 4096)]);
    assert_eq!(w.bridge.counters.pieces, 3);
    w.settle();
    assert_eq!(&w.disk[8 * 512..8 * 512 + 3 * 4096], &pattern[..]);
    // Read it back into segments of another shape: 1 KiB, then 11 KiB.
    let read = w.post(1, request_type::IN, 8, &[(DATA + 0x8000, 1024), (DATA + 0x9000, 11 * 1024)]);
    w.settle();
    assert_eq!(w.ram.bytes(DATA + 0x8000, 1024), &pattern[..1024]);
    assert_eq!(w.ram.bytes(DATA + 0x9000, 11 * 1024), &pattern[1024..]);
    assert_eq!(w.driver.used(&w.ram), vec![(write, 1), (read, 12 * 1024 + 1)]);
    assert_eq!(w.ram.bytes(STATUS, 2), &[0, 0]);
    assert_eq!((w.bridge.in_flight(), w.bridge.counters.errors), (0, 0));
}

#[test]
fn requests_wait_for_a_full_ring_and_all_complete_once() {
    // Two slots for ten pieces: the rest wait in the bridge until slots free up.
    let mut w = World::new(2, 64);
    let mut heads = Vec::new();
    for n in 0..5u64 {
        heads.push(w.post(n, request_type::IN, n * 8, &[(DATA + n * 0x2000, 8192)]));
    }
    assert_eq!(w.bridge.counters.pieces, 2, "only two fit");
    w.settle();
    let used = w.driver.used(&w.ram);
    assert_eq!(used.len(), 5);
    assert!(heads.iter().all(|h| used.iter().filter(|u| u.0 == *h).count() == 1));
    assert_eq!((w.bridge.counters.pieces, w.served), (10, 10));
    for n in 0..5usize {
        assert_eq!(w.ram.bytes(DATA + n as u64 * 0x2000, 8192), &w.disk[n * 8 * 512..n * 8 * 512 + 8192]);
    }
}

#[test]
fn a_backend_restarted_mid_request_gets_the_pieces_again_and_the_guest_sees_no_error() {
    let mut w = World::new(8, 64);
    assert!(w.ram.write(DATA, &[0x77; 3 * 4096]));
    let write = w.post(0, request_type::OUT, 0, &[(DATA, 3 * 4096)]);
    // The backend answers one piece, publishes nothing, and is restarted.
    let mut scratch = [0u8; 4096];
    let first = w.backend.next_request().unwrap().unwrap();
    assert_eq!(w.backend.request_data(&first, &mut scratch).unwrap(), 4096);
    w.backend = Backend::start(w.region, w.geometry).unwrap();
    // The VMM resynchronises (and signals), then every piece is served once more.
    assert!(w.bridge.on_signal(&mut w.device, &mut w.ram), "a restart is acknowledged with a signal");
    w.settle();
    assert_eq!(w.bridge.counters.resyncs, 2);
    assert_eq!(w.driver.used(&w.ram), vec![(write, 1)]);
    assert_eq!(w.ram.bytes(STATUS, 1), &[0]);
    assert_eq!(&w.disk[..3 * 4096], &[0x77; 3 * 4096][..]);
    // Restarted twice more with nothing in flight: still nothing twice, nothing lost.
    for _ in 0..2 {
        w.backend = Backend::start(w.region, w.geometry).unwrap();
        w.bridge.on_signal(&mut w.device, &mut w.ram);
    }
    let read = w.post(1, request_type::IN, 0, &[(DATA + 0x8000, 4096)]);
    w.settle();
    assert_eq!(w.driver.used(&w.ram), vec![(read, 4097)]);
    assert_eq!(w.ram.bytes(DATA + 0x8000, 4096), &[0x77; 4096][..]);
}

#[test]
fn a_failing_backend_fails_the_whole_request_once() {
    let mut w = World::new(8, 64);
    let read = w.post(0, request_type::IN, 0, &[(DATA, 3 * 4096)]);
    // The middle piece fails; the others succeed.
    for i in 0..3 {
        let request = w.backend.next_request().unwrap().unwrap();
        let status = if i == 1 { Status::IoError } else { Status::Ok };
        let data = if status == Status::Ok { vec![1u8; 4096] } else { Vec::new() };
        w.backend.respond(request, status, &data).unwrap();
    }
    assert!(w.backend.publish().unwrap());
    w.bridge.on_signal(&mut w.device, &mut w.ram);
    assert_eq!(w.driver.used(&w.ram), vec![(read, 1)], "an error completes with only the status byte");
    assert_eq!(w.ram.bytes(STATUS, 1), &[status::IOERR]);
    assert_eq!((w.bridge.counters.errors, w.bridge.in_flight()), (1, 0));
    // A later request on the same head works.
    let again = w.post(1, request_type::IN, 0, &[(DATA, 4096)]);
    w.settle();
    assert_eq!(w.driver.used(&w.ram), vec![(again, 4097)]);
}

#[test]
fn a_guest_reset_voids_what_was_in_flight() {
    let mut w = World::new(8, 64);
    w.post(0, request_type::IN, 0, &[(DATA, 4096)]);
    // The guest resets the device and sets it up again before the backend answers.
    let mut driver = set_up(&mut w.device, 1).pop().unwrap();
    w.device.take_notified();
    w.settle();
    assert_eq!(driver.used(&w.ram), vec![], "the old request is not given to the new queue");
    assert_eq!(w.ram.bytes(DATA, 4), &[0, 0, 0, 0], "nothing written for the void request");
    assert!(w.region_memory.guards_intact());
    // The new queue works (its first chain reuses head 0).
    let head = blk_request(&mut driver, &mut w.ram, 1, request_type::IN, 1, &[(DATA + 0x4000, 512)]);
    w.bridge.pump(&mut w.device, &mut w.ram);
    w.settle();
    assert_eq!(driver.used(&w.ram), vec![(head, 513)]);
    assert_eq!(w.ram.bytes(DATA + 0x4000, 512), &w.disk[512..1024]);
}
