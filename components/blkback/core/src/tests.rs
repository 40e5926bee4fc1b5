//! Host tests: the driver and the server against the VMM's virtio-blk device model (the
//! same legacy register file and split virtqueue QEMU's device has), whose "guest RAM"
//! holds the DMA buffer at a non-zero physical address between guard bytes, with a disk in
//! a vector behind it; the clients are `cleave-ioring`'s VMM side over heap regions.

mod driver;
mod server;

use crate::driver::{Dma, Driver, Limits, PortIo};
use crate::legacy::register;
pub use cleave_ioring::testing::{Region, Rng};
use cleave_vmm_core::guest::GuestMemory;
use cleave_vmm_core::virtio::blk::{BlockRequest, RequestKind, VirtioBlk, status};
use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

/// Where the DMA buffer starts in the model's memory.
pub const DMA_BASE: u64 = 0x10000;
/// The DMA buffer's size.
pub const DMA_LEN: usize = 256 * 1024;
/// What the memory around the DMA buffer holds (it must stay so).
const GUARD: u8 = 0xa5;
/// The serial the model answers GET_ID with.
pub const SERIAL: &[u8] = b"cleave-test-disk";
/// The limits most tests use: 8 requests of 16 KiB.
pub const LIMITS: Limits = Limits { requests: 8, request_bytes: 16384 };

/// The byte at `offset` of sector `sector` of a fresh test disk.
pub fn pattern(sector: u64, offset: usize) -> u8 {
    (sector as u8).wrapping_mul(31) ^ (offset as u8).wrapping_add((sector >> 8) as u8) ^ 0x3c
}

/// `len` bytes a test writes, from `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed as u8) ^ (i as u8).wrapping_mul(7) ^ ((i >> 8) as u8) ^ 0x5a).collect()
}

/// The model's memory, shared by the device (as guest RAM) and the driver (as its DMA
/// buffer).
#[derive(Clone)]
pub struct Ram(Rc<RefCell<Vec<u8>>>);

impl Ram {
    fn range(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.0.borrow().len()).then_some(start..end)
    }

    /// The byte at `gpa`.
    pub fn byte(&self, gpa: u64) -> u8 {
        self.0.borrow()[gpa as usize]
    }

    /// Writes `data` at `gpa` (a hostile device's hand).
    pub fn poke(&self, gpa: u64, data: &[u8]) {
        assert!(self.clone().write(gpa, data));
    }

    /// Whether everything outside the DMA buffer still holds the guard pattern.
    pub fn guards_intact(&self) -> bool {
        let ram = self.0.borrow();
        let start = DMA_BASE as usize;
        ram[..start].iter().chain(&ram[start + DMA_LEN..]).all(|&b| b == GUARD)
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        match self.range(gpa, out.len()) {
            Some(r) => {
                out.copy_from_slice(&self.0.borrow()[r]);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.range(gpa, data.len()) {
            Some(r) => {
                self.0.borrow_mut()[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The DMA buffer: `[DMA_BASE, DMA_BASE + len)` of the model's memory.
pub struct ModelDma {
    ram: Ram,
    phys: u64,
    len: usize,
}

impl Dma for ModelDma {
    fn len(&self) -> usize {
        self.len
    }

    fn phys(&self) -> u64 {
        self.phys
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        offset.checked_add(out.len()).is_some_and(|end| end <= self.len)
            && self.ram.read(self.phys + offset as u64, out)
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        offset.checked_add(data.len()).is_some_and(|end| end <= self.len)
            && self.ram.write(self.phys + offset as u64, data)
    }
}

/// What the test's registers do differently from the model's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// Feature bits hidden from the host features.
    pub hide_features: u32,
    /// The queue size read instead of the model's.
    pub queue_size: Option<u16>,
    /// Feature bits shown in the host features though the model does not offer them.
    pub show_features: u32,
    /// The status read instead of the model's.
    pub status: Option<u8>,
    /// Bits added to the status whenever the model's is not 0.
    pub status_extra: u8,
    /// The queue's PFN reads 0.
    pub drop_pfn: bool,
}

/// The model's BAR 0, with quirks.
pub struct ModelPorts {
    device: Rc<RefCell<VirtioBlk>>,
    pub quirks: Quirks,
    /// Queue notifies written.
    pub notifies: u32,
}

impl PortIo for ModelPorts {
    fn read(&mut self, offset: u16, width: u8) -> u32 {
        let mut data = [0u8; 4];
        let width = usize::from(width).min(4);
        self.device.borrow_mut().transport_mut().bar_read(u64::from(offset), &mut data[..width]);
        let value = u32::from_le_bytes(data);
        match offset {
            register::HOST_FEATURES => (value & !self.quirks.hide_features) | self.quirks.show_features,
            register::QUEUE_SIZE => self.quirks.queue_size.map_or(value, u32::from),
            register::STATUS => match self.quirks.status {
                Some(status) => u32::from(status),
                None if value != 0 => value | u32::from(self.quirks.status_extra),
                None => value,
            },
            register::QUEUE_PFN if self.quirks.drop_pfn => 0,
            _ => value,
        }
    }

    fn write(&mut self, offset: u16, width: u8, value: u32) {
        if offset == register::QUEUE_NOTIFY {
            self.notifies += 1;
        }
        let width = usize::from(width).min(4);
        self.device.borrow_mut().transport_mut().bar_write(u64::from(offset), &value.to_le_bytes()[..width]);
    }
}

/// The machine: the device model, its memory, and the disk behind it.
pub struct Machine {
    pub device: Rc<RefCell<VirtioBlk>>,
    pub ram: Ram,
    pub disk: Vec<u8>,
    /// Requests the device holds instead of serving at once (while `hold` is set).
    pub held: Vec<BlockRequest>,
    pub hold: bool,
    /// Requests served (reads, writes, flushes), and of them writes.
    pub served: usize,
    pub writes: usize,
    pub flushes: usize,
}

impl Machine {
    /// A disk of `sectors` sectors, each filled with `pattern`.
    pub fn new(sectors: u64) -> Self {
        let ram = vec![GUARD; DMA_BASE as usize + DMA_LEN + 0x1000];
        let disk = (0..sectors as usize * 512).map(|i| pattern(i as u64 / 512, i % 512)).collect();
        Self {
            device: Rc::new(RefCell::new(VirtioBlk::new(sectors, SERIAL))),
            ram: Ram(Rc::new(RefCell::new(ram))),
            disk,
            held: Vec::new(),
            hold: false,
            served: 0,
            writes: 0,
            flushes: 0,
        }
    }

    /// The device's registers and the DMA buffer, for a driver.
    pub fn parts(&self) -> (ModelPorts, ModelDma) {
        self.parts_with(Quirks::default(), DMA_BASE, DMA_LEN)
    }

    /// The same with quirks and another buffer.
    pub fn parts_with(&self, quirks: Quirks, phys: u64, len: usize) -> (ModelPorts, ModelDma) {
        let ports = ModelPorts { device: self.device.clone(), quirks, notifies: 0 };
        (ports, ModelDma { ram: self.ram.clone(), phys, len })
    }

    /// A driver with `limits` over the device.
    pub fn driver(&self, limits: Limits) -> Driver<ModelPorts, ModelDma> {
        let (ports, dma) = self.parts();
        Driver::init(ports, dma, limits).expect("the model can be driven")
    }

    /// The device takes what the driver made available (if notified) and serves it, or
    /// holds it; returns how many it took.
    pub fn run(&mut self) -> usize {
        if !self.device.borrow_mut().take_notified() {
            return 0;
        }
        let mut taken = 0;
        loop {
            let request = self.device.borrow_mut().next_request(&mut self.ram.clone());
            let Some(request) = request else { break };
            taken += 1;
            if self.hold {
                self.held.push(request);
            } else {
                self.serve(request);
            }
        }
        taken
    }

    /// Serves held request `i`.
    pub fn release(&mut self, i: usize) {
        let request = self.held.remove(i);
        self.serve(request);
    }

    /// Serves every held request, last first.
    pub fn release_all_reversed(&mut self) {
        while let Some(request) = self.held.pop() {
            self.serve(request);
        }
    }

    /// Does `request` on the disk and completes it.
    fn serve(&mut self, request: BlockRequest) {
        let mut ram = self.ram.clone();
        let mut at = request.sector as usize * 512;
        let written = match request.kind {
            RequestKind::Read => {
                for &(gpa, len) in &request.segments {
                    assert!(ram.write(gpa, &self.disk[at..at + len as usize]));
                    at += len as usize;
                }
                request.len() as u32
            }
            RequestKind::Write => {
                for &(gpa, len) in &request.segments {
                    assert!(ram.read(gpa, &mut self.disk[at..at + len as usize]));
                    at += len as usize;
                }
                self.writes += 1;
                0
            }
            RequestKind::Flush => {
                self.flushes += 1;
                0
            }
        };
        self.served += 1;
        self.device.borrow_mut().complete(&mut ram, request.id, status::OK, written);
    }

    /// The disk's bytes of `sectors` from `sector`.
    pub fn sectors(&self, sector: u64, sectors: u64) -> &[u8] {
        &self.disk[sector as usize * 512..(sector + sectors) as usize * 512]
    }
}
