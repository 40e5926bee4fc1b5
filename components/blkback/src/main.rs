//! blkback, Xoar's Block: the only component that drives the machine's disk (a legacy
//! virtio-blk PCI device: its I/O ports, its interrupt and DMA from its own DMA frame), and
//! the server of every guest's disk ring, giving each guest its slice of the disk. It maps
//! no guest's RAM: a guest's VMM copies the bytes through their ring.
//!
//! It waits on one notification: bit `i` is its `i`th guest's VMM (requests published, or
//! a restart acknowledged), bit 63 the device's interrupt. After each wake-up it polls the
//! server (`cleave_blkback_core::Server`) until nothing is left that a signal would not
//! bring, and signals the VMMs whose responses it published. It keeps nothing a restart
//! from its pristine image could lose: the rings and the disk hold it (doc/io-path.md).
#![no_std]
#![no_main]

extern crate alloc;

use cleave_blkback_core::{Dma, Driver, Limits, PortIo, Server, Slice};
use cleave_ioring::Shared;
use cleave_ioring::blk::Geometry;
use cleave_rt::cap::kind::{IoPort, Notification};
use cleave_rt::{Cap, println};
use core::sync::atomic::{Ordering, compiler_fence};

#[allow(dead_code, reason = "generated: names every capability, region and client")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(128 * 1024);

/// Requests in flight at the device, each carrying up to one ring slot.
const REQUESTS: u16 = 24;

/// The device's registers: its I/O ports, addressed from the first.
struct Ports {
    cap: Cap<IoPort>,
    first: u16,
}

impl PortIo for Ports {
    fn read(&mut self, offset: u16, width: u8) -> u32 {
        // A port the capability does not cover reads as a floating bus; the driver's
        // checks then refuse the device.
        self.first.checked_add(offset).and_then(|port| self.cap.read(port, width).ok()).unwrap_or(u32::MAX)
    }

    fn write(&mut self, offset: u16, width: u8, value: u32) {
        if let Some(port) = self.first.checked_add(offset) {
            let _ = self.cap.write(port, width, value);
        }
    }
}

/// The DMA frame as this component maps it, and where the device sees it.
struct Frame {
    base: usize,
    len: usize,
    phys: u64,
}

impl Frame {
    /// The range `offset..offset + len` as an address, if it is inside the frame.
    fn at(&self, offset: usize, len: usize) -> Option<usize> {
        (offset.checked_add(len)? <= self.len).then_some(self.base + offset)
    }
}

impl Dma for Frame {
    fn len(&self) -> usize {
        self.len
    }

    fn phys(&self) -> u64 {
        self.phys
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(at) = self.at(offset, out.len()) else { return false };
        compiler_fence(Ordering::SeqCst);
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: `at + i` lies in the DMA frame (checked by `at`), which the loader
            // maps read-write at `base` for this component's life; the device writes it
            // concurrently, so each byte is read once, volatile, in order.
            *byte = unsafe { ((at + i) as *const u8).read_volatile() };
        }
        compiler_fence(Ordering::SeqCst);
        true
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        let Some(at) = self.at(offset, data.len()) else { return false };
        compiler_fence(Ordering::SeqCst);
        for (i, &byte) in data.iter().enumerate() {
            // SAFETY: as in `read`; volatile so that the stores happen, in order, before
            // the port write that tells the device about them.
            unsafe { ((at + i) as *mut u8).write_volatile(byte) };
        }
        compiler_fence(Ordering::SeqCst);
        true
    }
}

fn main() -> i32 {
    let signal: Cap<Notification> = caps::SIGNAL;
    let phys = match caps::MACHINE_DISK_DMA0.physical_address() {
        Ok(p) => p,
        Err(e) => {
            println!("{}: the DMA frame's physical address: {e:?}", caps::COMPONENT);
            return 1;
        }
    };
    let frame = Frame { base: caps::MACHINE_DISK_DMA, len: caps::MACHINE_DISK_DMA_SIZE, phys };
    let ports = Ports { cap: caps::MACHINE_DISK_PORTS, first: caps::MACHINE_DISK_PORT_RANGE.0 };
    let limits = Limits { requests: REQUESTS, request_bytes: caps::DISK_RING_SLOT_SIZE };
    let driver = match Driver::init(ports, frame, limits) {
        Ok(d) => d,
        Err(e) => {
            println!("{}: the machine's disk cannot be driven: {e}", caps::COMPONENT);
            return 1;
        }
    };
    // Restarts are frequent (the supervisor and the audit log count them): the first
    // instance says what it found.
    let first = cleave_rt::instance() == 1;
    if first {
        println!(
            "{}: the machine's disk: {} MiB, queue of {}, {} requests in flight at most, DMA at {phys:#x}",
            caps::COMPONENT,
            driver.capacity() >> 11,
            driver.queue_size(),
            driver.requests()
        );
    }
    let mut server = Server::new(driver);
    let geometry = Geometry { slots: caps::DISK_RING_SLOTS, slot_size: caps::DISK_RING_SLOT_SIZE };
    let mut vmms: [Option<Cap<Notification>>; 64] = [None; 64];
    for &(guest, ring, bytes, first_sector, sectors, vmm) in caps::DISKS {
        // SAFETY: cleave maps this guest's disk ring read-write at `ring`, `bytes` long,
        // into this component and the guest's VMM only; only `Shared` values touch it.
        let shared = match unsafe { Shared::new(ring as *mut u8, bytes) } {
            Ok(s) => s,
            Err(e) => {
                println!("{}: guest '{guest}': its ring cannot be used: {e:?}", caps::COMPONENT);
                continue;
            }
        };
        match server.add_client(shared, geometry, Slice { first_sector, sectors }) {
            Ok(id) => {
                if let Some(slot) = vmms.get_mut(id.index()) {
                    *slot = Some(vmm);
                }
                // A new epoch: the VMM acknowledges it and sends what it has in flight.
                let _ = vmm.signal();
                // A restarted instance takes over the guests its predecessor served (the
                // supervisor's `restart` line says so).
                if first {
                    cleave_rt::audit!("serve {guest} {}#1", caps::COMPONENT);
                    println!(
                        "{}: guest '{guest}': {} MiB from sector {first_sector}",
                        caps::COMPONENT,
                        sectors >> 11
                    );
                }
            }
            Err(e) => println!("{}: guest '{guest}' is not served: {e}", caps::COMPONENT),
        }
    }
    let _ = caps::MACHINE_DISK_IRQ.ack();
    loop {
        let word = match signal.wait() {
            Ok(w) => w,
            Err(e) => {
                println!("{}: waiting failed: {e:?}", caps::COMPONENT);
                return 1;
            }
        };
        let interrupted = word & caps::IRQ_BADGE != 0;
        if interrupted {
            // Reading the ISR lowers the device's line before the interrupt is taken again.
            let _ = server.driver_mut().interrupt();
        }
        // Requests left behind by a poll's budget bring no signal: poll until none are.
        for _ in 0..64 {
            let polled = server.poll();
            for (i, vmm) in vmms.iter().enumerate() {
                if polled.signals.0 & (1 << i) != 0
                    && let Some(vmm) = vmm
                {
                    let _ = vmm.signal();
                }
            }
            if !polled.again {
                break;
            }
        }
        if interrupted {
            let _ = caps::MACHINE_DISK_IRQ.ack();
        }
        // (A guest made on request may be made again: its disk is served until then.)
        if server.all_closed() && !caps::SERVES_ON_REQUEST_GUESTS {
            for &(guest, ..) in caps::DISKS {
                cleave_rt::audit!("unserve {guest} {}#{}", caps::COMPONENT, cleave_rt::instance());
            }
            println!(
                "{}#{}: every guest's VMM closed its disk; stopping",
                caps::COMPONENT,
                cleave_rt::instance()
            );
            return 0;
        }
    }
}
