//! Host tests: both sides of each ring over a heap region with guard pages, driven step by
//! step (the interleavings are the test's choice), with restarts and hostile peers.

mod blk;
mod hostile;
mod pipe;
mod restart;

use crate::blk::{Backend, Event, Geometry, Op, Received, Status, Vmm};
use crate::testing::Region;
pub(crate) use crate::testing::Rng;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// The geometry most tests use: 16 slots of 4 KiB.
pub(crate) const GEOMETRY: Geometry = Geometry { slots: 16, slot_size: 4096 };

/// A region for a disk ring of `geometry`.
pub(crate) fn blk_region(geometry: Geometry) -> Region {
    Region::new(geometry.region_size().unwrap())
}

/// A VMM and a backend over one region, past the handshake.
pub(crate) fn pair(geometry: Geometry, base: u32) -> (Region, Vmm, Backend) {
    let region = blk_region(geometry);
    let mut vmm = Vmm::format_with_base(region.shared(), geometry, base).unwrap();
    let mut backend = Backend::start(region.shared(), geometry).unwrap();
    assert_eq!(backend.next_request(), Ok(None), "not acknowledged yet");
    assert!(!backend.is_serving());
    let mut buf = vec![0; geometry.slot_size as usize];
    assert_eq!(vmm.poll(&mut buf), Ok(Some(Event::Resynced { epoch: 1, resent: 0 })));
    assert_eq!(backend.next_request(), Ok(None));
    assert!(backend.is_serving());
    (region, vmm, backend)
}

/// The identifier the test disk answers get-id with.
pub(crate) const DISK_ID: &[u8] = b"cleave-test-disk";

/// A disk in memory, as blkback would drive one: serves what a backend receives.
pub(crate) struct Disk {
    pub bytes: Vec<u8>,
    /// Writes done, by sector (a repeated write counts again).
    pub writes: usize,
}

impl Disk {
    /// A disk of `sectors` sectors, each filled with a pattern of its number.
    pub fn new(sectors: u64) -> Self {
        let bytes = (0..sectors as usize * 512).map(|i| pattern(i as u64 / 512, i % 512)).collect();
        Self { bytes, writes: 0 }
    }

    pub fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / 512
    }

    /// Does `request` on the disk and answers it.
    pub fn serve(&mut self, backend: &mut Backend, request: Received) {
        if !request.fits(self.sectors()) {
            return backend.respond(request, Status::IoError, &[]).unwrap();
        }
        let start = request.sector() as usize * 512;
        let end = start + request.len() as usize;
        let (status, data) = match request.op() {
            Op::Read => (Status::Ok, self.bytes[start..end].to_vec()),
            Op::Write => {
                let mut data = vec![0; request.len() as usize];
                assert_eq!(backend.request_data(&request, &mut data), Ok(data.len()));
                self.bytes[start..end].copy_from_slice(&data);
                self.writes += 1;
                (Status::Ok, Vec::new())
            }
            Op::Flush => (Status::Ok, Vec::new()),
            Op::GetId => (Status::Ok, DISK_ID[..DISK_ID.len().min(request.len() as usize)].to_vec()),
        };
        backend.respond(request, status, &data).unwrap();
    }
}

/// The byte at `offset` of sector `sector` of a fresh test disk.
pub(crate) fn pattern(sector: u64, offset: usize) -> u8 {
    (sector as u8).wrapping_mul(31) ^ (offset as u8).wrapping_add((sector >> 8) as u8)
}

/// The bytes a test write with `id` puts on the disk.
pub(crate) fn write_bytes(id: u64, len: u32) -> Vec<u8> {
    (0..len as usize).map(|i| (id as u8) ^ (i as u8).wrapping_mul(7) ^ 0x5a).collect()
}

/// What the VMM side of a test saw complete, with checks that each id completes once.
#[derive(Default)]
pub(crate) struct Completions {
    /// Status and bytes out, by id.
    pub done: BTreeMap<u64, (Status, Vec<u8>)>,
    pub resyncs: u32,
}

impl Completions {
    /// Polls `vmm` until nothing is waiting; panics if an id completes twice.
    pub fn drain(&mut self, vmm: &mut Vmm) {
        let mut buf = vec![0; vmm.geometry().slot_size as usize];
        while let Some(event) = vmm.poll(&mut buf).unwrap() {
            self.record(event, &buf);
        }
    }

    /// Records one event from `poll`.
    pub fn record(&mut self, event: Event, buf: &[u8]) {
        match event {
            Event::Completed(c) => {
                let data = buf[..c.len as usize].to_vec();
                assert!(self.done.insert(c.id, (c.status, data)).is_none(), "id {} completed twice", c.id);
            }
            Event::Resynced { .. } => self.resyncs += 1,
        }
    }
}

/// Takes every request `backend` has and serves it on `disk`; publishes. Returns how many.
pub(crate) fn serve_all(backend: &mut Backend, disk: &mut Disk) -> usize {
    let mut served = 0;
    while let Some(request) = backend.next_request().unwrap() {
        disk.serve(backend, request);
        served += 1;
    }
    backend.publish().unwrap();
    served
}
