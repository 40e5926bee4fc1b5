//! Disk rings with well-behaved peers: every operation, the handshake in both start orders,
//! indexes wrapping past `u32::MAX`, full rings.

use super::{Completions, DISK_ID, Disk, GEOMETRY, blk_region, pair, pattern, serve_all, write_bytes};
use crate::blk::{Backend, Event, Geometry, MAX_SLOTS, Op, Request, Status, Vmm};
use crate::error::{Error, RegionError, RequestError};
use crate::layout::{offset, untag};
use std::vec;
use std::vec::Vec;

fn read(id: u64, sector: u64, len: u32) -> Request {
    Request { id, op: Op::Read, sector, len }
}

fn write(id: u64, sector: u64, len: u32) -> Request {
    Request { id, op: Op::Write, sector, len }
}

#[test]
fn every_operation_goes_through() {
    let (region, mut vmm, mut backend) = pair(GEOMETRY, 0);
    let mut disk = Disk::new(64);
    let mut seen = Completions::default();
    let data = write_bytes(1, 1024);
    assert_eq!(vmm.submit(write(1, 8, 1024), &data), Ok(true));
    assert_eq!(vmm.submit(read(2, 20, 4096), &[]), Ok(true));
    assert_eq!(vmm.submit(Request { id: 3, op: Op::Flush, sector: 0, len: 0 }, &[]), Ok(true));
    assert_eq!(vmm.submit(Request { id: 4, op: Op::GetId, sector: 0, len: 20 }, &[]), Ok(true));
    assert_eq!(vmm.submit(read(5, 63, 1024), &[]), Ok(true), "past the disk's end: an I/O error");
    assert_eq!(vmm.in_flight(), 5);
    assert_eq!(backend.next_request(), Ok(None), "nothing before publish");
    assert_eq!(vmm.publish(), Ok(true));
    assert_eq!(vmm.publish(), Ok(false), "nothing new");
    assert_eq!(serve_all(&mut backend, &mut disk), 5);
    seen.drain(&mut vmm);
    assert_eq!(vmm.in_flight(), 0);
    assert_eq!(seen.done[&1], (Status::Ok, vec![]));
    assert_eq!(&disk.bytes[8 * 512..8 * 512 + 1024], &data[..]);
    let expected: Vec<u8> = (0..4096).map(|i| pattern(20 + i as u64 / 512, i % 512)).collect();
    assert_eq!(seen.done[&2], (Status::Ok, expected));
    assert_eq!(seen.done[&3], (Status::Ok, vec![]));
    assert_eq!(seen.done[&4], (Status::Ok, DISK_ID.to_vec()));
    assert_eq!(seen.done[&5], (Status::IoError, vec![]));
    assert!(region.guards_intact());
}

#[test]
fn a_backend_started_before_the_vmm_is_served_at_once() {
    let region = blk_region(GEOMETRY);
    let mut backend = Backend::start(region.shared(), GEOMETRY).unwrap();
    assert_eq!(backend.next_request(), Ok(None), "not formatted yet");
    let mut vmm = Vmm::format(region.shared(), GEOMETRY).unwrap();
    assert_eq!(vmm.acknowledged(), backend.epoch());
    let mut disk = Disk::new(16);
    assert_eq!(vmm.submit(read(7, 0, 512), &[]), Ok(true));
    vmm.publish().unwrap();
    assert_eq!(serve_all(&mut backend, &mut disk), 1);
    let mut seen = Completions::default();
    seen.drain(&mut vmm);
    assert_eq!(seen.resyncs, 0);
    assert_eq!(seen.done[&7].0, Status::Ok);
}

#[test]
fn requests_the_vmm_side_refuses() {
    let (region, mut vmm, _backend) = pair(GEOMETRY, 0);
    let refused = |e| Err(Error::Request(e));
    assert_eq!(vmm.submit(read(1, 0, 0), &[]), refused(RequestError::Length(0)));
    assert_eq!(vmm.submit(read(1, 0, 100), &[]), refused(RequestError::Length(100)));
    assert_eq!(vmm.submit(read(1, 0, 8192), &[]), refused(RequestError::Length(8192)));
    assert_eq!(
        vmm.submit(Request { id: 1, op: Op::Flush, sector: 0, len: 512 }, &[]),
        refused(RequestError::Length(512))
    );
    assert_eq!(vmm.submit(read(1, u64::MAX, 512), &[]), refused(RequestError::SectorOverflow));
    assert_eq!(vmm.submit(write(1, 0, 512), &[0; 100]), refused(RequestError::DataLength));
    assert_eq!(vmm.submit(read(1, 0, 512), &[0; 512]), refused(RequestError::DataLength));
    assert_eq!(vmm.in_flight(), 0);
    assert!(region.guards_intact());
}

#[test]
fn geometry_and_region_are_checked() {
    let region = blk_region(GEOMETRY);
    for bad in [
        Geometry { slots: 0, slot_size: 4096 },
        Geometry { slots: 12, slot_size: 4096 },
        Geometry { slots: MAX_SLOTS * 2, slot_size: 4096 },
        Geometry { slots: 16, slot_size: 1000 },
        Geometry { slots: 16, slot_size: 0 },
        Geometry { slots: 16, slot_size: 2 << 20 },
    ] {
        assert_eq!(Vmm::format(region.shared(), bad).err(), Some(RegionError::Geometry), "{bad:?}");
        assert_eq!(Backend::start(region.shared(), bad).err(), Some(RegionError::Geometry), "{bad:?}");
    }
    let big = Geometry { slots: 32, slot_size: 4096 };
    let needed = big.region_size().unwrap();
    let have = region.shared().len();
    assert_eq!(Vmm::format(region.shared(), big).err(), Some(RegionError::TooSmall { needed, have }));
    assert_eq!(Backend::start(region.shared(), big).err(), Some(RegionError::TooSmall { needed, have }));
    // The layout: header, 16 request and 16 response entries in one page, 16 slots.
    assert_eq!(GEOMETRY.region_size(), Ok(4096 + 4096 + 16 * 4096));
    assert_eq!(region.shared().part(4096, 4096).map(|p| p.len()), Ok(4096));
    assert_eq!(region.shared().part(100, 4096).err(), Some(RegionError::Misaligned));
    assert_eq!(region.shared().part(4096, have).err(), Some(RegionError::Length));
}

#[test]
fn indexes_wrap_past_u32_max() {
    let geometry = Geometry { slots: 4, slot_size: 1024 };
    let (region, mut vmm, mut backend) = pair(geometry, u32::MAX - 5);
    let mut disk = Disk::new(256);
    let mut seen = Completions::default();
    for round in 0..10u64 {
        for i in 0..3 {
            let id = round * 3 + i;
            let data = write_bytes(id, 512);
            assert_eq!(vmm.submit(write(id, id, 512), &data), Ok(true));
        }
        vmm.publish().unwrap();
        assert_eq!(serve_all(&mut backend, &mut disk), 3);
        seen.drain(&mut vmm);
    }
    assert_eq!(seen.done.len(), 30);
    for id in 0..30u64 {
        let at = id as usize * 512;
        assert_eq!(&disk.bytes[at..at + 512], &write_bytes(id, 512)[..], "write {id}");
    }
    // 30 requests from u32::MAX - 5: the published indexes have wrapped.
    let (_, req_prod) = untag(region.shared().load_u64(offset::REQ_PROD).unwrap());
    let (_, rsp_prod) = untag(region.shared().load_u64(offset::RSP_PROD).unwrap());
    assert_eq!((req_prod, rsp_prod), (24, 24));
    assert!(region.guards_intact());
}

#[test]
fn full_rings_refuse_until_a_completion() {
    let geometry = Geometry { slots: 4, slot_size: 512 };
    let (_region, mut vmm, mut backend) = pair(geometry, u32::MAX - 1);
    let mut disk = Disk::new(16);
    for id in 0..4 {
        assert_eq!(vmm.submit(read(id, id, 512), &[]), Ok(true));
    }
    assert_eq!(vmm.submit(read(4, 4, 512), &[]), Ok(false), "every slot in flight");
    vmm.publish().unwrap();
    assert_eq!(serve_all(&mut backend, &mut disk), 4);
    assert_eq!(vmm.submit(read(4, 4, 512), &[]), Ok(false), "answered, not taken yet");
    let mut buf = vec![0; 512];
    assert!(matches!(vmm.poll(&mut buf), Ok(Some(Event::Completed(_)))));
    assert_eq!(vmm.submit(read(4, 4, 512), &[]), Ok(true));
    assert_eq!(vmm.submit(read(5, 5, 512), &[]), Ok(false));
    vmm.publish().unwrap();
    // The backend has three responses unread and takes the fifth request: all fit.
    assert_eq!(serve_all(&mut backend, &mut disk), 1);
    let mut seen = Completions::default();
    seen.drain(&mut vmm);
    assert_eq!(seen.done.len(), 4);
    assert_eq!(vmm.in_flight(), 0);
}

#[test]
fn a_short_buffer_is_refused_and_the_response_stays() {
    let (_region, mut vmm, mut backend) = pair(GEOMETRY, 0);
    let mut disk = Disk::new(16);
    vmm.submit(read(9, 0, 2048), &[]).unwrap();
    vmm.publish().unwrap();
    serve_all(&mut backend, &mut disk);
    let mut short = vec![0; 1024];
    assert_eq!(vmm.poll(&mut short), Err(Error::Request(RequestError::BufferTooSmall { needed: 2048 })));
    let mut seen = Completions::default();
    seen.drain(&mut vmm);
    assert_eq!(seen.done[&9].1, disk.bytes[..2048].to_vec());
}

#[test]
fn a_backend_answering_wrongly_answers_an_io_error() {
    let (_region, mut vmm, mut backend) = pair(GEOMETRY, 0);
    vmm.submit(read(1, 0, 1024), &[]).unwrap();
    vmm.publish().unwrap();
    let request = backend.next_request().unwrap().unwrap();
    assert_eq!(
        backend.respond(request, Status::Ok, &[0; 512]),
        Err(Error::Request(RequestError::DataLength)),
        "a read answers with all its bytes"
    );
    backend.publish().unwrap();
    let mut seen = Completions::default();
    seen.drain(&mut vmm);
    assert_eq!(seen.done[&1], (Status::IoError, vec![]));
}
