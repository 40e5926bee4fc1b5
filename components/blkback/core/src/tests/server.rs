//! The server between `cleave-ioring` VMM sides and the device model: each guest's slice,
//! refusals, a failed ring, a broken device, back-pressure, and restarts mid-stream.

use super::{LIMITS, Machine, ModelDma, ModelPorts, Quirks, Region, Rng, SERIAL, bytes, pattern};
use crate::driver::{Broken, Driver, Limits};
use crate::legacy::{QueueLayout, feature};
use crate::server::{AddError, ClientId, MAX_CLIENTS, Server, Slice};
use cleave_ioring::blk::{Event, Geometry, Op, Request, Status, Vmm};
use cleave_ioring::{ProtocolError, RegionError, Ring};
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// The rings most tests use: 16 slots of 16 KiB (a driver request's size).
const GEOMETRY: Geometry = Geometry { slots: 16, slot_size: 16384 };

/// The request producer index word in a disk region's header (`cleave-ioring`'s layout
/// table: offset 0x040, the VMM's).
const REQ_PROD: usize = 0x40;

/// A guest: its VMM's side of the region, and what completed.
struct Guest {
    region: Region,
    vmm: Vmm,
    id: ClientId,
    /// Status and bytes out, by request id.
    done: BTreeMap<u64, (Status, Vec<u8>)>,
    resyncs: u32,
}

impl Guest {
    /// Submits and publishes `request`; false if the ring is full.
    fn submit(&mut self, id: u64, op: Op, sector: u64, len: u32, data: &[u8]) -> bool {
        let submitted = self.vmm.submit(Request { id, op, sector, len }, data).unwrap();
        self.vmm.publish().unwrap();
        submitted
    }

    /// Takes everything the backend answered; returns how many events. An id that
    /// completes twice fails the test.
    fn drain(&mut self) -> usize {
        let mut buf = vec![0; GEOMETRY.slot_size as usize];
        let mut events = 0;
        while let Some(event) = self.vmm.poll(&mut buf).unwrap() {
            events += 1;
            match event {
                Event::Completed(c) => {
                    let data = buf[..c.len as usize].to_vec();
                    assert!(
                        self.done.insert(c.id, (c.status, data)).is_none(),
                        "id {} completed twice",
                        c.id
                    );
                }
                Event::Resynced { .. } => self.resyncs += 1,
            }
        }
        events
    }
}

type TestServer = Server<ModelPorts, ModelDma>;

/// A machine, a server over it, and a guest per slice.
struct Rig {
    machine: Machine,
    server: TestServer,
    guests: Vec<Guest>,
    limits: Limits,
    geometry: Geometry,
}

impl Rig {
    fn new(sectors: u64, slices: &[Slice]) -> Self {
        Self::with(sectors, slices, Quirks::default(), LIMITS, GEOMETRY)
    }

    fn with(sectors: u64, slices: &[Slice], quirks: Quirks, limits: Limits, geometry: Geometry) -> Self {
        let machine = Machine::new(sectors);
        let (ports, dma) = machine.parts_with(quirks, super::DMA_BASE, super::DMA_LEN);
        let mut server = Server::new(Driver::init(ports, dma, limits).unwrap());
        let guests = slices
            .iter()
            .map(|&slice| {
                let region = Region::new(geometry.region_size().unwrap());
                let vmm = Vmm::format(region.shared(), geometry).unwrap();
                let id = server.add_client(region.shared(), geometry, slice).unwrap();
                Guest { region, vmm, id, done: BTreeMap::new(), resyncs: 0 }
            })
            .collect();
        Self { machine, server, guests, limits, geometry }
    }

    /// blkback restarts: a new driver (which resets the device: what it held is gone) and
    /// a new server over the same regions, with the same slices.
    fn restart(&mut self, slices: &[Slice]) {
        let mut server = Server::new(self.machine.driver(self.limits));
        self.machine.held.clear();
        for (guest, &slice) in self.guests.iter().zip(slices) {
            assert_eq!(server.add_client(guest.region.shared(), self.geometry, slice), Ok(guest.id));
        }
        self.server = server;
    }

    /// Polls, runs the device and drains the guests until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let polled = self.server.poll();
            let taken = self.machine.run();
            let events: usize = self.guests.iter_mut().map(Guest::drain).sum();
            if polled.signals.is_empty() && !polled.again && taken == 0 && events == 0 {
                return;
            }
        }
        panic!("the rig did not settle");
    }
}

#[test]
fn a_guest_reads_and_writes_its_slice() {
    let slice = Slice { first_sector: 1000, sectors: 500 };
    let mut rig = Rig::new(4096, &[slice]);
    let data = bytes(1, 8192);
    let g = 0;
    assert!(rig.guests[g].submit(1, Op::Write, 10, 8192, &data));
    rig.settle();
    assert_eq!(rig.guests[g].done[&1], (Status::Ok, vec![]));
    assert_eq!(rig.machine.sectors(1010, 16), &data[..], "at first_sector + sector");
    assert!(rig.guests[g].submit(2, Op::Read, 8, 12288, &[]));
    assert!(rig.guests[g].submit(3, Op::Flush, 0, 0, &[]));
    assert!(rig.guests[g].submit(4, Op::GetId, 0, 20, &[]));
    assert!(rig.guests[g].submit(5, Op::Read, 499, 512, &[]), "the slice's last sector");
    rig.settle();
    let done = &rig.guests[g].done;
    let mut expected: Vec<u8> = (0..1024).map(|i| pattern(1008 + i as u64 / 512, i % 512)).collect();
    expected.extend_from_slice(&data);
    expected.extend((0..3072).map(|i| pattern(1026 + i as u64 / 512, i % 512)));
    assert_eq!(done[&2], (Status::Ok, expected));
    assert_eq!(done[&3], (Status::Ok, vec![]));
    let mut id = SERIAL.to_vec();
    id.resize(20, 0);
    assert_eq!(done[&4], (Status::Ok, id));
    assert_eq!(done[&5], (Status::Ok, rig.machine.sectors(1499, 1).to_vec()));
    assert_eq!((rig.machine.flushes, rig.machine.writes), (1, 1));
    let counters = rig.server.counters(rig.guests[g].id).unwrap();
    assert_eq!((counters.reads, counters.writes, counters.flushes, counters.get_ids), (2, 1, 1, 1));
    assert_eq!((counters.outside_slice, counters.failed), (0, 0));
    assert_eq!(rig.guests[g].resyncs, 1, "the handshake");
    assert!(rig.machine.ram.guards_intact());
}

#[test]
fn two_guests_never_see_each_others_bytes() {
    let slices = [Slice { first_sector: 0, sectors: 256 }, Slice { first_sector: 256, sectors: 256 }];
    let mut rig = Rig::new(1024, &slices);
    let original = rig.machine.disk.clone();
    // Each guest fills its whole disk, 32 sectors a request.
    for (g, seed) in [(0usize, 0xa0u64), (1, 0xb0)] {
        for chunk in 0..8u64 {
            let data = bytes(seed + chunk, 16384);
            assert!(rig.guests[g].submit(chunk, Op::Write, chunk * 32, 16384, &data));
        }
    }
    rig.settle();
    for (g, seed) in [(0usize, 0xa0u64), (1, 0xb0)] {
        for chunk in 0..8u64 {
            assert_eq!(rig.guests[g].done[&chunk].0, Status::Ok);
            let at = slices[g].first_sector + chunk * 32;
            assert_eq!(
                rig.machine.sectors(at, 32),
                &bytes(seed + chunk, 16384)[..],
                "guest {g} chunk {chunk}"
            );
        }
        // Each reads back its own bytes only.
        for chunk in 0..8u64 {
            assert!(rig.guests[g].submit(100 + chunk, Op::Read, chunk * 32, 16384, &[]));
        }
    }
    rig.settle();
    for (g, seed) in [(0usize, 0xa0u64), (1, 0xb0)] {
        for chunk in 0..8u64 {
            assert_eq!(rig.guests[g].done[&(100 + chunk)], (Status::Ok, bytes(seed + chunk, 16384)));
        }
        // Its sector count is the slice's: one past it is outside.
        assert!(rig.guests[g].submit(200, Op::Read, 256, 512, &[]));
    }
    rig.settle();
    for g in 0..2 {
        assert_eq!(rig.guests[g].done[&200], (Status::IoError, vec![]));
    }
    assert_eq!(&rig.machine.disk[512 * 512..], &original[512 * 512..], "the rest of the disk is untouched");
    assert!(rig.machine.ram.guards_intact());
}

#[test]
fn requests_outside_the_slice_get_io_errors_and_leave_the_disk_alone() {
    let slice = Slice { first_sector: 100, sectors: 50 };
    let mut rig = Rig::new(1024, &[slice]);
    let original = rig.machine.disk.clone();
    let g = &mut rig.guests[0];
    assert!(g.submit(1, Op::Read, 50, 512, &[]), "just past the end");
    assert!(g.submit(2, Op::Read, 49, 1024, &[]), "across the end");
    assert!(g.submit(3, Op::Write, 49, 1024, &[9; 1024]), "a write across the end");
    assert!(g.submit(4, Op::Write, u64::MAX - 2, 1024, &[9; 1024]), "far away");
    assert!(g.submit(5, Op::Read, 1 << 40, 16384, &[]));
    rig.settle();
    for id in 1..=5 {
        assert_eq!(rig.guests[0].done[&id], (Status::IoError, vec![]), "id {id}");
    }
    assert_eq!(rig.machine.served, 0, "the device saw none");
    assert_eq!(rig.machine.disk, original);
    let counters = rig.server.counters(rig.guests[0].id).unwrap();
    assert_eq!((counters.outside_slice, counters.reads, counters.writes), (5, 0, 0));
}

#[test]
fn flush_is_answered_here_when_the_device_has_no_write_cache() {
    let slice = Slice { first_sector: 0, sectors: 64 };
    let quirks = Quirks { hide_features: feature::FLUSH, ..Quirks::default() };
    let mut rig = Rig::with(64, &[slice], quirks, LIMITS, GEOMETRY);
    assert!(rig.guests[0].submit(1, Op::Flush, 0, 0, &[]));
    rig.settle();
    assert_eq!(rig.guests[0].done[&1], (Status::Ok, vec![]));
    assert_eq!((rig.machine.served, rig.machine.flushes), (0, 0));
    // With the cache, it reaches the device.
    let mut rig = Rig::new(64, &[slice]);
    assert!(rig.guests[0].submit(1, Op::Flush, 0, 0, &[]));
    rig.settle();
    assert_eq!((rig.guests[0].done[&1].0, rig.machine.flushes), (Status::Ok, 1));
}

#[test]
fn a_failed_ring_leaves_the_other_guests_served() {
    let slices = [Slice { first_sector: 0, sectors: 64 }, Slice { first_sector: 64, sectors: 64 }];
    let mut rig = Rig::new(128, &slices);
    rig.settle();
    rig.machine.hold = true;
    assert!(rig.guests[0].submit(1, Op::Read, 0, 512, &[]));
    let _ = rig.server.poll();
    rig.machine.run();
    // Guest 0's VMM writes a request index of another generation, with one request in
    // the device.
    rig.guests[0].region.shared().store_u64(REQ_PROD, u64::MAX).unwrap();
    rig.machine.hold = false;
    rig.machine.release_all_reversed();
    for id in 0..20u64 {
        assert!(rig.guests[1].submit(id, Op::Read, id, 1024, &[]));
        rig.settle();
    }
    let a = rig.guests[0].id;
    assert_eq!(rig.server.client_failed(a), Some(ProtocolError::StaleIndex(Ring::Request)));
    assert_eq!(rig.server.client_failed(rig.guests[1].id), None);
    assert_eq!(rig.guests[1].done.len(), 20);
    for id in 0..20u64 {
        assert_eq!(rig.guests[1].done[&id], (Status::Ok, rig.machine.sectors(64 + id, 2).to_vec()));
    }
}

#[test]
fn a_broken_device_fails_every_request_and_the_guests_go_on() {
    let slice = Slice { first_sector: 0, sectors: 64 };
    let mut rig = Rig::new(64, &[slice]);
    rig.settle();
    rig.machine.hold = true;
    for id in 0..3 {
        assert!(rig.guests[0].submit(id, Op::Read, id, 512, &[]));
    }
    let _ = rig.server.poll();
    assert_eq!(rig.machine.run(), 3);
    // The device names descriptor 7 (no request's head: each has 6) in the used ring.
    let q = QueueLayout::new(256).unwrap();
    let used = super::DMA_BASE + q.used as u64;
    rig.machine.ram.poke(used + 4, &[7, 0, 0, 0, 1, 0, 0, 0]);
    rig.machine.ram.poke(used + 2, &1u16.to_le_bytes());
    rig.settle();
    assert_eq!(rig.server.driver().broken(), Some(Broken::UnknownHead(7)));
    for id in 3..6 {
        assert!(rig.guests[0].submit(id, Op::Write, id, 512, &[1; 512]));
    }
    rig.settle();
    for id in 0..6 {
        assert_eq!(rig.guests[0].done[&id], (Status::IoError, vec![]), "id {id}");
    }
    assert_eq!(rig.server.counters(rig.guests[0].id).unwrap().failed, 6);
    assert!(rig.machine.ram.guards_intact());
}

#[test]
fn requests_wait_in_their_ring_while_the_device_is_full() {
    let slices = [Slice { first_sector: 0, sectors: 256 }, Slice { first_sector: 256, sectors: 256 }];
    let mut rig =
        Rig::with(512, &slices, Quirks::default(), Limits { requests: 2, request_bytes: 16384 }, GEOMETRY);
    rig.settle();
    rig.machine.hold = true;
    for g in 0..2 {
        for id in 0..12u64 {
            assert!(rig.guests[g].submit(id, Op::Read, 8 * id, 4096, &[]));
        }
    }
    let _ = rig.server.poll();
    assert_eq!((rig.machine.run(), rig.server.driver().in_flight()), (2, 2));
    // Taken in turn: one from each guest.
    let mut sectors: Vec<u64> = rig.machine.held.iter().map(|r| r.sector).collect();
    sectors.sort();
    assert_eq!(sectors, [0, 256]);
    rig.machine.hold = false;
    rig.machine.release_all_reversed();
    rig.settle();
    for (g, slice) in slices.iter().enumerate() {
        assert_eq!(rig.guests[g].done.len(), 12);
        for id in 0..12u64 {
            let at = slice.first_sector + 8 * id;
            assert_eq!(rig.guests[g].done[&id], (Status::Ok, rig.machine.sectors(at, 8).to_vec()));
        }
    }
}

/// A VMM that starts its ring over (a new session, as a guest made again does) while its
/// requests are at the device, again and again: the old requests are answered to no one,
/// the new VMM's are served right, and the client never has more than its ring's slots
/// at the device, so the other guest is served all along.
#[test]
fn a_vmm_that_keeps_starting_over_gets_no_more_of_the_device() {
    let slices = [Slice { first_sector: 0, sectors: 256 }, Slice { first_sector: 256, sectors: 256 }];
    // A small ring and a device with room for three of them.
    let geometry = Geometry { slots: 4, slot_size: 16384 };
    let mut rig =
        Rig::with(512, &slices, Quirks::default(), Limits { requests: 12, request_bytes: 16384 }, geometry);
    rig.settle();
    rig.machine.hold = true;
    for round in 0..4u64 {
        // The hostile guest fills its ring, the server takes it to the device, and the
        // guest starts over (a new VMM formats the region).
        for id in 0..geometry.slots as u64 {
            rig.guests[0].submit(round * 100 + id, Op::Read, 8 * id, 4096, &[]);
        }
        let _ = rig.server.poll();
        rig.machine.run();
        let held_by_0 = rig.machine.held.iter().filter(|r| r.sector < 256).count();
        assert!(held_by_0 <= geometry.slots as usize, "round {round}: {held_by_0} at the device");
        rig.guests[0].vmm = Vmm::format(rig.guests[0].region.shared(), geometry).unwrap();
        rig.guests[0].done.clear();
    }
    // The other guest still gets the device.
    assert!(rig.guests[1].submit(7, Op::Read, 0, 4096, &[]));
    rig.machine.hold = false;
    rig.machine.release_all_reversed();
    rig.settle();
    assert_eq!(rig.guests[1].done[&7], (Status::Ok, rig.machine.sectors(256, 8).to_vec()));
    // The last VMM is served right, and got none of its predecessors' answers.
    assert!(rig.guests[0].done.is_empty(), "{:?}", rig.guests[0].done.keys());
    assert!(rig.guests[0].submit(1, Op::Read, 16, 4096, &[]));
    rig.settle();
    assert_eq!(rig.guests[0].done[&1], (Status::Ok, rig.machine.sectors(16, 8).to_vec()));
}

#[test]
fn a_poll_takes_at_most_its_budget_and_says_so() {
    let slices: Vec<Slice> = (0..5).map(|i| Slice { first_sector: 100 * i, sectors: 100 }).collect();
    let limits = Limits { requests: 64, request_bytes: 2048 };
    let geometry = Geometry { slots: 16, slot_size: 2048 };
    let mut rig = Rig::with(500, &slices, Quirks::default(), limits, geometry);
    rig.settle();
    rig.machine.hold = true;
    for guest in &mut rig.guests {
        for id in 0..16u64 {
            assert!(guest.submit(id, Op::Read, id, 512, &[]));
        }
    }
    let polled = rig.server.poll();
    assert!(polled.again, "80 requests waiting, 64 taken");
    assert_eq!(rig.server.driver().in_flight(), 64);
    assert_eq!(rig.machine.run(), 64);
    rig.machine.release_all_reversed();
    let polled = rig.server.poll();
    assert!(!polled.again && polled.signals.0 == 0b11111, "{polled:?}");
    assert_eq!(rig.server.driver().in_flight(), 16);
    rig.machine.hold = false;
    rig.machine.release_all_reversed();
    rig.settle();
    for (guest, slice) in rig.guests.iter().zip(&slices) {
        assert_eq!(guest.done.len(), 16);
        for id in 0..16u64 {
            let expected = rig.machine.sectors(slice.first_sector + id, 1).to_vec();
            assert!(guest.done[&id] == (Status::Ok, expected), "guest {:?} id {id}", guest.id);
        }
    }
}

/// Even ids write 2 KiB at sector `8 * id`, odd ids read 2 KiB at sector `200 + 8 * id`.
fn story(id: u64) -> (Op, u64, Vec<u8>) {
    if id.is_multiple_of(2) { (Op::Write, 8 * id, bytes(id, 2048)) } else { (Op::Read, 200 + 8 * id, vec![]) }
}

#[test]
fn a_restarted_server_completes_everything_once() {
    let slices = [Slice { first_sector: 512, sectors: 512 }];
    let mut rig = Rig::new(1024, &slices);
    rig.settle();
    rig.machine.hold = true;
    for id in 0..12 {
        let (op, sector, data) = story(id);
        assert!(rig.guests[0].submit(id, op, sector, 2048, &data));
    }
    let _ = rig.server.poll();
    assert_eq!(rig.machine.run(), 8, "the driver's eight requests");
    // Three finish and are answered and published; two more finish in the device only.
    for _ in 0..3 {
        rig.machine.release(0);
    }
    assert!(!rig.server.poll().signals.is_empty());
    rig.machine.release(0);
    rig.machine.release(0);
    // blkback restarts; the device is reset with three requests still held.
    rig.restart(&slices);
    rig.machine.hold = false;
    rig.settle();
    let guest = &rig.guests[0];
    assert_eq!(guest.resyncs, 2, "the first handshake and the restart's");
    assert_eq!(guest.done.len(), 12, "{:?}", guest.done.keys());
    for id in 0..12 {
        let (op, sector, data) = story(id);
        let disk = 512 + sector;
        match op {
            Op::Write => {
                assert_eq!(guest.done[&id], (Status::Ok, vec![]));
                assert_eq!(rig.machine.sectors(disk, 4), &data[..], "write {id}");
            }
            _ => {
                assert_eq!(guest.done[&id], (Status::Ok, rig.machine.sectors(disk, 4).to_vec()), "read {id}")
            }
        }
    }
    assert!(rig.machine.ram.guards_intact());
}

#[test]
fn clients_the_server_refuses() {
    let machine = Machine::new(1024);
    let mut server = Server::new(machine.driver(LIMITS));
    let region = Region::new(GEOMETRY.region_size().unwrap());
    let shared = region.shared();
    let big = Geometry { slots: 4, slot_size: 32768 };
    assert_eq!(
        server.add_client(shared, big, Slice { first_sector: 0, sectors: 8 }),
        Err(AddError::SlotTooBig { slot_size: 32768, request_bytes: 16384 })
    );
    for slice in [
        Slice { first_sector: 0, sectors: 0 },
        Slice { first_sector: 1000, sectors: 25 },
        Slice { first_sector: u64::MAX, sectors: 2 },
        Slice { first_sector: 1024, sectors: 1 },
    ] {
        assert_eq!(server.add_client(shared, GEOMETRY, slice), Err(AddError::OutsideDisk(slice)));
    }
    let first = server.add_client(shared, GEOMETRY, Slice { first_sector: 100, sectors: 100 }).unwrap();
    for (first_sector, sectors) in [(150, 10), (50, 51), (199, 1), (0, 1024)] {
        let slice = Slice { first_sector, sectors };
        assert_eq!(server.add_client(shared, GEOMETRY, slice), Err(AddError::Overlaps(first)), "{slice:?}");
    }
    let small = Region::new(4096);
    let needed = GEOMETRY.region_size().unwrap();
    assert_eq!(
        server.add_client(small.shared(), GEOMETRY, Slice { first_sector: 0, sectors: 100 }),
        Err(AddError::Region(RegionError::TooSmall { needed, have: 4096 }))
    );
    // The 65th client.
    let tiny = Geometry { slots: 1, slot_size: 512 };
    let regions: Vec<Region> = (0..MAX_CLIENTS).map(|_| Region::new(tiny.region_size().unwrap())).collect();
    for (i, region) in regions.iter().enumerate().skip(1) {
        let slice = Slice { first_sector: 200 + i as u64, sectors: 1 };
        assert!(server.add_client(region.shared(), tiny, slice).is_ok(), "client {i}");
    }
    let slice = Slice { first_sector: 500, sectors: 1 };
    assert_eq!(server.add_client(regions[0].shared(), tiny, slice), Err(AddError::TooManyClients));
}

/// What a random guest has in flight: where, and what it must get back.
struct Expected {
    sector: u64,
    sectors: u64,
    status: Status,
    data: Vec<u8>,
}

/// Three guests submit random requests (reads, writes, flushes, get-ids, some outside
/// their slice; never two overlapping ones in flight), the device serves them in random
/// order, and now and then blkback restarts. Every request completes once with the right
/// status and bytes, and each slice ends as its guest's shadow copy says.
#[test]
fn random_guests_with_restarts() {
    let slices = [
        Slice { first_sector: 0, sectors: 300 },
        Slice { first_sector: 300, sectors: 200 },
        Slice { first_sector: 600, sectors: 400 },
    ];
    let mut rng = Rng::new(0x5ca1e);
    let mut rig = Rig::new(1100, &slices);
    let mut shadows: Vec<Vec<u8>> =
        slices.iter().map(|s| rig.machine.sectors(s.first_sector, s.sectors).to_vec()).collect();
    let mut flights: Vec<BTreeMap<u64, Expected>> = slices.iter().map(|_| BTreeMap::new()).collect();
    let mut serial = SERIAL.to_vec();
    serial.resize(20, 0);
    let (mut next, mut restarts, mut checked) = (0u64, 0, 0);
    for round in 0..3000 {
        for (g, slice) in slices.iter().enumerate() {
            for _ in 0..rng.below(3) {
                let sectors = 1 + rng.below(16);
                let sector = rng.below(slice.sectors + 8);
                let overlaps =
                    flights[g].values().any(|f| sector < f.sector + f.sectors && f.sector < sector + sectors);
                if overlaps {
                    continue;
                }
                let len = sectors as u32 * 512;
                let inside = sector + sectors <= slice.sectors;
                let range = sector as usize * 512..(sector + sectors) as usize * 512;
                let (op, data, expected) = match rng.below(10) {
                    0 => (
                        Op::Flush,
                        vec![],
                        Expected { sector: 0, sectors: 0, status: Status::Ok, data: vec![] },
                    ),
                    1 => (
                        Op::GetId,
                        vec![],
                        Expected { sector: 0, sectors: 0, status: Status::Ok, data: serial.clone() },
                    ),
                    2..=5 => {
                        let status = if inside { Status::Ok } else { Status::IoError };
                        (
                            Op::Write,
                            bytes(next, len as usize),
                            Expected { sector, sectors, status, data: vec![] },
                        )
                    }
                    _ => {
                        let (status, data) = if inside {
                            (Status::Ok, shadows[g][range.clone()].to_vec())
                        } else {
                            (Status::IoError, vec![])
                        };
                        (Op::Read, vec![], Expected { sector, sectors, status, data })
                    }
                };
                let len = match op {
                    Op::Flush => 0,
                    Op::GetId => 20,
                    _ => len,
                };
                if !rig.guests[g].submit(next, op, sector, len, &data) {
                    continue;
                }
                if op == Op::Write && inside {
                    shadows[g][range].copy_from_slice(&data);
                }
                flights[g].insert(next, expected);
                next += 1;
            }
        }
        rig.machine.hold = !rng.one_in(4);
        let _ = rig.server.poll();
        rig.machine.run();
        for _ in 0..rng.below(6) {
            if !rig.machine.held.is_empty() {
                let i = rng.below(rig.machine.held.len() as u64) as usize;
                rig.machine.release(i);
            }
        }
        if rng.one_in(150) {
            rig.restart(&slices);
            restarts += 1;
        }
        let _ = rig.server.poll();
        for (g, guest) in rig.guests.iter_mut().enumerate() {
            guest.drain();
            for (id, done) in core::mem::take(&mut guest.done) {
                let expected =
                    flights[g].remove(&id).unwrap_or_else(|| panic!("round {round}: id {id} not in flight"));
                assert_eq!(done, (expected.status, expected.data), "round {round}: guest {g} id {id}");
                checked += 1;
            }
        }
    }
    rig.machine.hold = false;
    rig.machine.release_all_reversed();
    rig.settle();
    for (g, guest) in rig.guests.iter_mut().enumerate() {
        for (id, done) in core::mem::take(&mut guest.done) {
            let expected = flights[g].remove(&id).expect("in flight");
            assert_eq!(done, (expected.status, expected.data), "guest {g} id {id}");
            checked += 1;
        }
        assert!(flights[g].is_empty(), "guest {g}: {:?} never completed", flights[g].keys());
        let slice = slices[g];
        assert!(
            rig.machine.sectors(slice.first_sector, slice.sectors) == &shadows[g][..],
            "guest {g}'s slice"
        );
    }
    assert!(restarts >= 10 && checked > 5000, "{restarts} restarts, {checked} requests checked");
    assert_eq!(&rig.machine.disk[500 * 512..600 * 512], &Machine::new(1100).disk[500 * 512..600 * 512]);
    assert!(rig.machine.ram.guards_intact());
}

/// The server may stop only when every guest's VMM closed its ring: one closing is not
/// enough, a restart does not forget it, and a server with no clients never says so.
#[test]
fn the_server_is_done_only_when_every_vmm_closed() {
    let slices = [Slice { first_sector: 0, sectors: 64 }, Slice { first_sector: 64, sectors: 64 }];
    let mut rig = Rig::new(256, &slices);
    assert!(!rig.server.all_closed());
    rig.guests[0].vmm.close();
    rig.settle();
    assert!(!rig.server.all_closed(), "bob's guest is still there");
    rig.guests[1].vmm.close();
    assert!(rig.server.all_closed());
    rig.restart(&slices);
    assert!(rig.server.all_closed(), "closing survives a restart of blkback");
    let empty = Server::new(rig.machine.driver(LIMITS));
    assert!(!empty.all_closed());
}
