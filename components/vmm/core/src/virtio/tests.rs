//! The devices driven as Linux drives them, and as a hostile guest might: through their
//! registers and through the rings a [`Driver`] builds in a vector of RAM; and through the
//! `Vm`'s port I/O exits and interrupt controller.

use super::blk::{self, BlockRequest, RequestKind, VirtioBlk};
use super::net::{self, VirtioNet};
use super::pci::{isr, register};
use super::queue::{Queue, QueueError, Ring, flag};
use super::testing::{Driver, Ram};
use super::{Broken, status};
use crate::devices::pci::PciDevice;
use crate::devices::uart16550::Console;
use crate::guest::GuestMemory;
use crate::vm::{Cpu, Exit, Injection, Outcome, Vm, gpr, reason};
use std::vec;
use std::vec::Vec;

/// 1 MiB of guest RAM.
pub(super) const RAM: usize = 1 << 20;
/// Where the test drivers put their rings (page 0x10: 0x10000-0x12fff).
const PFN: u32 = 0x10;
/// Where request headers, status bytes and data go.
const HEADERS: u64 = 0x20000;
pub(super) const STATUS: u64 = 0x30000;
pub(super) const DATA: u64 = 0x40000;

pub(super) fn reg_write(device: &mut dyn PciDevice, at: u64, size: usize, value: u32) {
    device.bar_write(0, at, &value.to_le_bytes()[..size]);
}

fn reg_read(device: &mut dyn PciDevice, at: u64, size: usize) -> u32 {
    let mut data = [0u8; 4];
    device.bar_read(0, at, &mut data[..size]);
    u32::from_le_bytes(data)
}

/// What Linux's `virtio_pci` does with a device before using it: reset, ACKNOWLEDGE,
/// DRIVER, features (all offered), each queue's PFN, DRIVER_OK. Returns the drivers.
pub(super) fn set_up(device: &mut dyn PciDevice, queues: u16) -> Vec<Driver> {
    reg_write(device, register::STATUS, 1, 0);
    assert_eq!(reg_read(device, register::STATUS, 1), 0);
    reg_write(device, register::STATUS, 1, u32::from(status::ACKNOWLEDGE));
    reg_write(device, register::STATUS, 1, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    let features = reg_read(device, register::HOST_FEATURES, 4);
    reg_write(device, register::GUEST_FEATURES, 4, features);
    let mut drivers = Vec::new();
    for queue in 0..queues {
        reg_write(device, register::QUEUE_SELECT, 2, u32::from(queue));
        let size = reg_read(device, register::QUEUE_SIZE, 2) as u16;
        assert_eq!(reg_read(device, register::QUEUE_PFN, 4), 0, "not active yet");
        let pfn = PFN + 3 * u32::from(queue);
        reg_write(device, register::QUEUE_PFN, 4, pfn);
        drivers.push(Driver::new(pfn, size));
    }
    reg_write(
        device,
        register::STATUS,
        1,
        u32::from(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK),
    );
    drivers
}

/// A block request as Linux's `virtblk_add_req` builds it: the header, the data buffers,
/// the status byte, each its own descriptor. `n` numbers the request (where its header and
/// status go).
pub(super) fn blk_request(
    driver: &mut Driver,
    ram: &mut Ram,
    n: u64,
    kind: u32,
    sector: u64,
    data: &[(u64, u32)],
) -> u16 {
    let header = HEADERS + 16 * n;
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&kind.to_le_bytes());
    bytes[8..].copy_from_slice(&sector.to_le_bytes());
    assert!(ram.write(header, &bytes));
    assert!(ram.write(STATUS + n, &[0xee]));
    let writable = kind != blk::request_type::OUT;
    let mut buffers = vec![(header, 16, false)];
    buffers.extend(data.iter().map(|&(gpa, len)| (gpa, len, writable)));
    buffers.push((STATUS + n, 1, true));
    driver.add(ram, &buffers)
}

/// The VMM's backend: a disk image; serves a request the way the VMM will (copying
/// between the segments and the image).
struct Disk(Vec<u8>);

impl Disk {
    fn serve(&mut self, ram: &mut Ram, request: &BlockRequest) -> (u8, u32) {
        let mut at = request.sector as usize * 512;
        let mut written = 0;
        for &(gpa, len) in &request.segments {
            let len = len as usize;
            match request.kind {
                RequestKind::Read => {
                    assert!(ram.write(gpa, &self.0[at..at + len]));
                    written += len as u32;
                }
                RequestKind::Write => assert!(ram.read(gpa, &mut self.0[at..at + len])),
                RequestKind::Flush => unreachable!("a flush has no data"),
            }
            at += len;
        }
        (blk::status::OK, written)
    }
}

fn ready_blk(capacity: u64) -> (VirtioBlk, Driver) {
    let mut device = VirtioBlk::new(capacity, b"cleave-disk-serial-0123");
    let driver = set_up(&mut device, 1).pop().unwrap();
    assert!(device.take_notified(), "DRIVER_OK makes the device look at its queue");
    (device, driver)
}

#[test]
fn block_reads_writes_flushes_and_get_id() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(64);
    let mut disk = Disk((0..64 * 512).map(|i| (i * 7 % 251) as u8).collect());
    assert_eq!(device.next_request(&mut ram), None, "nothing posted");
    // Write 3 sectors at sector 10 from two segments; read them back into two others.
    assert!(ram.write(DATA, &[0x5a; 1024]));
    assert!(ram.write(DATA + 0x1000, &[0xa5; 512]));
    let w = blk_request(
        &mut driver,
        &mut ram,
        0,
        blk::request_type::OUT,
        10,
        &[(DATA, 1024), (DATA + 0x1000, 512)],
    );
    let r = blk_request(
        &mut driver,
        &mut ram,
        1,
        blk::request_type::IN,
        10,
        &[(DATA + 0x2000, 512), (DATA + 0x3000, 1024)],
    );
    let f = blk_request(&mut driver, &mut ram, 2, blk::request_type::FLUSH, 0, &[]);
    let id = blk_request(&mut driver, &mut ram, 3, blk::request_type::GET_ID, 0, &[(DATA + 0x4000, 20)]);
    reg_write(&mut device, register::QUEUE_NOTIFY, 2, 0);
    assert!(device.take_notified());
    let write = device.next_request(&mut ram).unwrap();
    assert_eq!(
        (write.id.head, write.kind, write.sector, write.segments.clone(), write.status_gpa, write.len()),
        (w, RequestKind::Write, 10, vec![(DATA, 1024), (DATA + 0x1000, 512)], STATUS, 1536)
    );
    let (s, n) = disk.serve(&mut ram, &write);
    assert!(device.complete(&mut ram, write.id, s, n));
    let read = device.next_request(&mut ram).unwrap();
    assert_eq!(
        (read.id.head, read.kind, read.sector, read.status_gpa),
        (r, RequestKind::Read, 10, STATUS + 1)
    );
    let (s, n) = disk.serve(&mut ram, &read);
    assert!(device.complete(&mut ram, read.id, s, n));
    assert_eq!(ram.bytes(DATA + 0x2000, 512), &[0x5a; 512]);
    assert_eq!(ram.bytes(DATA + 0x3000, 512), &[0x5a; 512]);
    assert_eq!(ram.bytes(DATA + 0x3200, 512), &[0xa5; 512]);
    let flush = device.next_request(&mut ram).unwrap();
    assert_eq!((flush.id.head, flush.kind, flush.is_empty()), (f, RequestKind::Flush, true));
    // GET_ID was answered on the way; nothing more.
    assert_eq!(device.next_request(&mut ram), None);
    assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0));
    assert_eq!(driver.used(&ram), vec![(w, 1), (r, 1537), (id, 21), (f, 1)]);
    assert_eq!(ram.bytes(STATUS, 4), &[0, 0, 0, 0]);
    assert_eq!(ram.bytes(DATA + 0x4000, 20), b"cleave-disk-serial-0");
    assert_eq!(
        device.counters,
        blk::BlockCounters { reads: 1, writes: 1, flushes: 1, get_ids: 1, ..Default::default() }
    );
    assert!(device.interrupt());
    assert_eq!(reg_read(&mut device, register::ISR, 1), u32::from(isr::QUEUE));
    assert!(!device.interrupt(), "reading the ISR lowers the line");
    // The configuration Linux reads: capacity, size_max, seg_max, blk_size.
    let config: Vec<u32> = (0..6).map(|i| reg_read(&mut device, register::CONFIG + 4 * i, 4)).collect();
    assert_eq!(config, vec![64, 0, blk::SIZE_MAX, blk::SEG_MAX, 0, 512]);
}

#[test]
fn block_requests_complete_out_of_order_and_once() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(1024);
    let heads: Vec<u16> = (0..3)
        .map(|n| {
            blk_request(&mut driver, &mut ram, n, blk::request_type::IN, n * 8, &[(DATA + n * 0x1000, 4096)])
        })
        .collect();
    let requests: Vec<BlockRequest> = (0..3).map(|_| device.next_request(&mut ram).unwrap()).collect();
    assert_eq!(device.in_flight(), 3);
    for i in [2, 0, 1] {
        assert!(device.complete(&mut ram, requests[i].id, blk::status::OK, 4096));
    }
    assert!(!device.complete(&mut ram, requests[0].id, blk::status::OK, 4096), "completed already");
    assert_eq!(device.counters.stale_completions, 1);
    assert_eq!(driver.used(&ram), vec![(heads[2], 4097), (heads[0], 4097), (heads[1], 4097)]);
    assert_eq!(device.in_flight(), 0);
    // The written length is bounded by the request's own buffers.
    blk_request(&mut driver, &mut ram, 0, blk::request_type::IN, 0, &[(DATA, 512)]);
    let request = device.next_request(&mut ram).unwrap();
    assert!(device.complete(&mut ram, request.id, blk::status::IOERR, 1 << 30));
    assert_eq!(driver.used(&ram), vec![(request.id.head, 513)]);
    assert_eq!(ram.bytes(STATUS, 1), &[blk::status::IOERR]);
}

#[test]
fn block_requests_of_a_bad_shape_get_ioerr_and_unknown_ones_unsupp() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(100);
    use blk::request_type::{FLUSH, GET_ID, IN, OUT};
    let many: Vec<(u64, u32)> = (0..65).map(|i| (DATA + i * 512, 512)).collect();
    type Case<'a> = (&'a str, u32, u64, &'a [(u64, u32)], u8);
    let cases: [Case; 11] = [
        ("past the capacity", IN, 99, &[(DATA, 1024)], blk::status::IOERR),
        ("the sector overflows", OUT, u64::MAX, &[(DATA, 512)], blk::status::IOERR),
        ("not whole sectors", IN, 0, &[(DATA, 500)], blk::status::IOERR),
        ("more than SEG_MAX segments", IN, 0, &many, blk::status::IOERR),
        ("more than MAX_DATA", OUT, 0, &[(DATA, 0x40000), (DATA, 512)], blk::status::IOERR),
        ("a flush with data", FLUSH, 0, &[(DATA, 512)], blk::status::IOERR),
        ("a read of nothing", IN, 0, &[], blk::status::IOERR),
        ("a SCSI command", 2, 0, &[], blk::status::UNSUPP),
        ("a discard", 11, 0, &[(DATA, 16)], blk::status::UNSUPP),
        ("GET_ID with nowhere to put the serial", GET_ID, 0, &[], blk::status::IOERR),
        ("the last two sectors", IN, 98, &[(DATA, 1024)], blk::status::OK),
    ];
    for (n, &(case, kind, sector, data, expected)) in cases.iter().enumerate() {
        let n = n as u64;
        let head = blk_request(&mut driver, &mut ram, n, kind, sector, data);
        let request = device.next_request(&mut ram);
        if expected == blk::status::OK {
            let request = request.unwrap();
            assert!(device.complete(&mut ram, request.id, blk::status::OK, 1024));
        } else {
            assert_eq!(request, None, "{case}: answered by the device");
        }
        let used = driver.used(&ram);
        assert_eq!(used.len(), 1, "{case}");
        assert_eq!(used[0].0, head);
        assert_eq!(ram.bytes(STATUS + n, 1), &[expected], "{case}");
    }
    // A header shorter than 16 bytes.
    driver.add(&mut ram, &[(HEADERS, 8, false), (STATUS, 1, true)]);
    assert_eq!(device.next_request(&mut ram), None);
    assert_eq!(ram.bytes(STATUS, 1), &[blk::status::IOERR]);
    assert_eq!((device.counters.rejected, device.counters.unsupported), (9, 2));
    assert_eq!(device.broken(), None, "a bad request is not a broken queue");
}

/// `VIRTIO_F_ANY_LAYOUT`: the header and the data in one buffer, the data and the status
/// byte in one buffer.
#[test]
fn block_requests_may_be_cut_into_buffers_anyhow() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(100);
    let mut header = [0u8; 16];
    header[0] = blk::request_type::OUT as u8;
    header[8] = 5;
    assert!(ram.write(DATA, &header));
    assert!(ram.write(DATA + 16, &[0x11; 512]));
    let w = driver.add(&mut ram, &[(DATA, 16 + 300, false), (DATA + 316, 212, false), (STATUS, 1, true)]);
    let write = device.next_request(&mut ram).unwrap();
    assert_eq!((write.id.head, write.sector), (w, 5));
    assert_eq!(write.segments, vec![(DATA + 16, 300), (DATA + 316, 212)]);
    header[0] = blk::request_type::IN as u8;
    assert!(ram.write(HEADERS, &header));
    let r = driver.add(&mut ram, &[(HEADERS, 16, false), (DATA + 0x1000, 513, true)]);
    let read = device.next_request(&mut ram).unwrap();
    assert_eq!(
        (read.id.head, read.segments.clone(), read.status_gpa),
        (r, vec![(DATA + 0x1000, 512)], DATA + 0x1200)
    );
    assert!(device.complete(&mut ram, read.id, blk::status::OK, 512));
    assert_eq!(ram.bytes(DATA + 0x1200, 1), &[0]);
}

#[test]
fn interrupts_wait_while_the_guest_suppresses_them() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(100);
    driver.suppress_interrupts(&mut ram, true);
    blk_request(&mut driver, &mut ram, 0, blk::request_type::GET_ID, 0, &[(DATA, 20)]);
    blk_request(&mut driver, &mut ram, 1, blk::request_type::FLUSH, 0, &[]);
    let flush = device.next_request(&mut ram).unwrap();
    assert!(!device.interrupt(), "GET_ID answered without an interrupt");
    assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0));
    assert!(!device.interrupt());
    assert_eq!(driver.used(&ram).len(), 2, "used all the same");
    driver.suppress_interrupts(&mut ram, false);
    blk_request(&mut driver, &mut ram, 2, blk::request_type::FLUSH, 0, &[]);
    let flush = device.next_request(&mut ram).unwrap();
    assert!(!device.interrupt());
    assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0));
    assert!(device.interrupt());
}

#[test]
fn a_reset_forgets_the_queues_and_voids_requests_in_flight() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(100);
    blk_request(&mut driver, &mut ram, 0, blk::request_type::IN, 0, &[(DATA, 512)]);
    let old = device.next_request(&mut ram).unwrap();
    reg_write(&mut device, register::STATUS, 1, 0);
    assert_eq!((device.transport().status(), device.transport().guest_features()), (0, 0));
    assert_eq!(device.transport().queue(0).unwrap().pfn(), 0);
    assert!(!device.complete(&mut ram, old.id, blk::status::OK, 512), "taken before the reset");
    assert_eq!(ram.bytes(STATUS, 1), &[0xee], "its status byte untouched");
    // Set up again on fresh rings: the same head works, the old completion stays void.
    ram = Ram::new(RAM);
    let mut driver = set_up(&mut device, 1).pop().unwrap();
    let head = blk_request(&mut driver, &mut ram, 0, blk::request_type::IN, 0, &[(DATA, 512)]);
    assert_eq!(head, old.id.head);
    let new = device.next_request(&mut ram).unwrap();
    assert!(!device.complete(&mut ram, old.id, blk::status::OK, 512));
    assert!(device.complete(&mut ram, new.id, blk::status::OK, 512));
    assert_eq!(driver.used(&ram), vec![(head, 513)]);
    // Before DRIVER_OK the device does nothing.
    reg_write(&mut device, register::STATUS, 1, 0);
    reg_write(&mut device, register::STATUS, 1, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    reg_write(&mut device, register::QUEUE_PFN, 4, PFN);
    ram = Ram::new(RAM);
    let mut driver = Driver::new(PFN, 256);
    blk_request(&mut driver, &mut ram, 0, blk::request_type::FLUSH, 0, &[]);
    assert_eq!(device.next_request(&mut ram), None);
    reg_write(
        &mut device,
        register::STATUS,
        1,
        u32::from(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK),
    );
    assert!(device.take_notified());
    assert!(device.next_request(&mut ram).is_some());
}

/// An Ethernet frame of `len` bytes.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn ready_net() -> (VirtioNet, Driver, Driver) {
    let mut device = VirtioNet::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let mut drivers = set_up(&mut device, 2);
    assert_eq!(device.take_notified(), 0b11);
    let tx = drivers.pop().unwrap();
    let rx = drivers.pop().unwrap();
    (device, rx, tx)
}

#[test]
fn net_sends_and_receives_frames() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut rx, mut tx) = ready_net();
    let mac: Vec<u32> = (0..8).map(|i| reg_read(&mut device, register::CONFIG + i, 1)).collect();
    assert_eq!(mac, vec![0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0], "MAC, then the link up");
    assert_eq!(reg_read(&mut device, register::HOST_FEATURES, 4), net::FEATURES);
    // Transmit: the header in its own buffer (Linux without ANY_LAYOUT), the frame in two;
    // then header and frame in one.
    let (a, b) = (frame(60, 1), frame(1514, 2));
    assert!(ram.write(DATA, &[0x01; 10]));
    assert!(ram.write(DATA + 0x100, &a[..20]) && ram.write(DATA + 0x200, &a[20..]));
    assert!(ram.write(DATA + 0x1000, &[0; 10]) && ram.write(DATA + 0x100a, &b));
    let h1 = tx.add(&mut ram, &[(DATA, 10, false), (DATA + 0x100, 20, false), (DATA + 0x200, 40, false)]);
    let h2 = tx.add(&mut ram, &[(DATA + 0x1000, 1524, false)]);
    reg_write(&mut device, register::QUEUE_NOTIFY, 2, 1);
    assert_eq!(device.take_notified(), 0b10);
    assert_eq!(device.take_tx(&mut ram).unwrap().as_bytes(), &a[..]);
    assert_eq!(device.take_tx(&mut ram).unwrap().as_bytes(), &b[..]);
    assert!(device.take_tx(&mut ram).is_none());
    assert_eq!(tx.used(&ram), vec![(h1, 0), (h2, 0)]);
    // Too long, too short, or with a writable buffer: dropped, given back.
    let h3 = tx.add(&mut ram, &[(DATA + 0x1000, 1525, false)]);
    let h4 = tx.add(&mut ram, &[(DATA, 10, false), (DATA + 0x100, 13, false)]);
    let h5 = tx.add(&mut ram, &[(DATA, 10, false), (DATA + 0x100, 60, true)]);
    assert!(device.take_tx(&mut ram).is_none());
    assert_eq!(tx.used(&ram), vec![(h3, 0), (h4, 0), (h5, 0)]);
    assert_eq!((device.counters.tx_frames, device.counters.tx_dropped), (2, 3));
    // Receive: nothing posted, then Linux's small buffers (header + 1518 bytes each).
    let c = frame(342, 3);
    assert!(!device.deliver(&mut ram, &c));
    assert_eq!(device.counters.rx_no_buffer, 1);
    let r1 = rx.add(&mut ram, &[(DATA + 0x4000, 1528, true)]);
    let r2 = rx.add(&mut ram, &[(DATA + 0x5000, 1528, true)]);
    assert!(ram.write(DATA + 0x4000, &[0xff; 10]));
    reg_write(&mut device, register::QUEUE_NOTIFY, 2, 0);
    assert_eq!(device.take_notified(), 0b01);
    reg_read(&mut device, register::ISR, 1);
    assert!(device.deliver(&mut ram, &c));
    assert!(device.interrupt());
    assert_eq!(ram.bytes(DATA + 0x4000, 10), &[0; 10], "a zero header");
    assert_eq!(ram.bytes(DATA + 0x400a, 342), &c[..]);
    assert!(!device.deliver(&mut ram, &frame(1515, 0)), "too long to be a frame");
    assert!(!device.deliver(&mut ram, &frame(13, 0)), "too short");
    assert!(device.deliver(&mut ram, &b));
    assert_eq!(ram.bytes(DATA + 0x500a, 1514), &b[..]);
    assert_eq!(rx.used(&ram), vec![(r1, 352), (r2, 1524)]);
    // A buffer too small for the frame goes back empty.
    let r3 = rx.add(&mut ram, &[(DATA + 0x6000, 100, true)]);
    assert!(!device.deliver(&mut ram, &c));
    assert_eq!(rx.used(&ram), vec![(r3, 0)]);
    assert_eq!(
        device.counters,
        net::NetCounters { tx_frames: 2, tx_dropped: 3, rx_frames: 2, rx_no_buffer: 1, rx_dropped: 3 }
    );
}

/// The guest's hostile moves, one after another on the same device, each breaking it with
/// its reason; after each the device ignores good requests until the guest resets it, and
/// then works again.
#[test]
fn each_queue_error_breaks_the_device_until_a_reset() {
    type Move = fn(&mut Driver, &mut Ram);
    let moves: [(Move, QueueError); 11] = [
        (
            |d, ram| {
                d.descriptor(ram, 0, DATA, 16, flag::NEXT, 300);
                d.publish(ram, 0);
            },
            QueueError::NextOutOfRange(300),
        ),
        (|d, ram| d.publish(ram, 256), QueueError::HeadOutOfRange(256)),
        (
            // A loop of two descriptors.
            |d, ram| {
                d.descriptor(ram, 0, DATA, 16, flag::NEXT, 1);
                d.descriptor(ram, 1, DATA, 16, flag::NEXT, 0);
                d.publish(ram, 0);
            },
            QueueError::ChainTooLong(0),
        ),
        (
            // A buffer ending past RAM.
            |d, ram| {
                d.descriptor(ram, 0, DATA, 16, flag::NEXT, 1);
                d.descriptor(ram, 1, RAM as u64 - 8, 16, flag::WRITE, 0);
                d.publish(ram, 0);
            },
            QueueError::BufferOutsideRam { index: 1, gpa: RAM as u64 - 8, len: 16 },
        ),
        (
            |d, ram| {
                d.descriptor(ram, 3, u64::MAX - 4, 16, 0, 0);
                d.publish(ram, 3);
            },
            QueueError::AddressOverflow { index: 3, gpa: u64::MAX - 4, len: 16 },
        ),
        (
            |d, ram| {
                d.descriptor(ram, 0, DATA, 0, 0, 0);
                d.publish(ram, 0);
            },
            QueueError::ZeroLength(0),
        ),
        (
            |d, ram| {
                d.descriptor(ram, 0, DATA, 1, flag::WRITE | flag::NEXT, 1);
                d.descriptor(ram, 1, DATA, 16, 0, 0);
                d.publish(ram, 0);
            },
            QueueError::ReadableAfterWritable(1),
        ),
        (|d, ram| d.set_avail_idx(ram, 257), QueueError::AvailTooFarAhead { avail: 257, seen: 0 }),
        (
            |d, ram| {
                d.descriptor(ram, 5, DATA, 16, flag::INDIRECT, 0);
                d.publish(ram, 5);
            },
            QueueError::Indirect(5),
        ),
        (
            // The same head offered twice while the device holds it.
            |d, ram| {
                let head = d.add(ram, &[(HEADERS, 16, false), (STATUS, 1, true)]);
                d.publish(ram, head);
            },
            QueueError::HeadInUse(0),
        ),
        (
            // Rings past RAM: set up at a PFN beyond it.
            |_, _| {},
            QueueError::RingNotInRam { ring: Ring::Available, gpa: 0x1_0000_0000 + 16 * 256 + 2 },
        ),
    ];
    let mut device = VirtioBlk::new(100, b"");
    for (i, (hostile, error)) in moves.into_iter().enumerate() {
        let expected = Broken::Queue { queue: 0, error };
        let mut ram = Ram::new(RAM);
        let mut driver = set_up(&mut device, 1).pop().unwrap();
        if let QueueError::RingNotInRam { .. } = error {
            reg_write(&mut device, register::QUEUE_PFN, 4, 0x10_0000);
        }
        // The flush of HEADERS is good when the guest does not spoil it.
        let mut header = [0u8; 16];
        header[0] = blk::request_type::FLUSH as u8;
        assert!(ram.write(HEADERS, &header));
        hostile(&mut driver, &mut ram);
        while device.next_request(&mut ram).is_some() {}
        assert_eq!(device.broken(), Some(expected), "move {i}");
        assert_eq!(device.transport().breaks(), i as u64 + 1);
        assert_ne!(reg_read(&mut device, register::STATUS, 1) & u32::from(status::NEEDS_RESET), 0);
        // Broken: good requests wait.
        let mut fresh = Driver::new(PFN, 256);
        let mut clean = Ram::new(RAM);
        blk_request(&mut fresh, &mut clean, 0, blk::request_type::FLUSH, 0, &[]);
        assert_eq!(device.next_request(&mut clean), None, "move {i}: broken until reset");
        // A reset, and the device works again.
        let mut driver = set_up(&mut device, 1).pop().unwrap();
        assert_eq!(device.broken(), None);
        let mut ram = Ram::new(RAM);
        blk_request(&mut driver, &mut ram, 0, blk::request_type::FLUSH, 0, &[]);
        let flush = device.next_request(&mut ram).unwrap();
        assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0), "move {i}");
        assert_eq!(driver.used(&ram).len(), 1);
    }
}

/// A chain with no writable byte cannot carry a status: the device breaks.
#[test]
fn a_block_request_without_a_status_byte_breaks_the_device() {
    let mut ram = Ram::new(RAM);
    let (mut device, mut driver) = ready_blk(100);
    let head = driver.add(&mut ram, &[(HEADERS, 16, false)]);
    assert_eq!(device.next_request(&mut ram), None);
    assert_eq!(device.broken(), Some(Broken::NoStatusByte { head }));
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    /// An address for a buffer: mostly well inside `ram` bytes, sometimes just below its
    /// end, sometimes anywhere.
    fn address(&mut self, ram: u64) -> u64 {
        let r = self.next();
        match r % 128 {
            0 => self.next(),
            1 => ram - (r >> 8) % 64,
            _ => (r >> 8) % (ram - 4096),
        }
    }
}

/// A random chain for a driver's queue of `size`: up to 6 descriptors, each field usually
/// plausible and now and then hostile (a zero or huge length, an address out of RAM, a
/// readable buffer after a writable one, the indirect flag, a random link), then usually
/// published, now and then a random head or available index instead. With `header`, the
/// first buffer starts with a block request header of a random type.
fn random_chain(rng: &mut Rng, d: &mut Driver, ram: &mut Ram, size: u16, header: bool) {
    let r = rng.next();
    let count = if header { 2 + (r >> 4) % 5 } else { 1 + (r >> 4) % 6 };
    let first_writable = 1 + (r >> 8) % count;
    let start = (r >> 20) as u16 % size;
    for i in 0..count as u16 {
        let last = u64::from(i) + 1 == count;
        let index = if rng.one_in(64) { rng.next() as u16 % size } else { (start + i) % size };
        let len = match rng.next() % 64 {
            0 => 0,
            1 => rng.next() as u32,
            _ if header && last && !rng.one_in(4) => 1,
            2..=20 => 16,
            21..=50 => 512 * (1 + rng.next() as u32 % 8),
            _ => 1 + rng.next() as u32 % 4096,
        };
        let mut flags = if u64::from(i) >= first_writable { flag::WRITE } else { 0 };
        if rng.one_in(32) {
            flags ^= flag::WRITE;
        }
        if rng.one_in(64) {
            flags |= flag::INDIRECT;
        }
        if !last {
            flags |= flag::NEXT;
        }
        let link =
            if rng.one_in(32) { (rng.next() % (u64::from(size) + 8)) as u16 } else { (index + 1) % size };
        let gpa = rng.address(ram.0.len() as u64);
        if header && i == 0 && len >= 16 && gpa.checked_add(16).is_some_and(|end| end <= ram.0.len() as u64) {
            let kind = [0, 1, 4, 8, rng.next() as u32][(rng.next() % 5) as usize];
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&kind.to_le_bytes());
            bytes[8..].copy_from_slice(&(rng.next() % 2048).to_le_bytes());
            assert!(ram.write(gpa, &bytes));
        }
        d.descriptor(ram, index, gpa, len, flags, link);
    }
    match rng.next() % 64 {
        0 => d.set_avail_idx(ram, rng.next() as u16),
        1 => d.publish(ram, (rng.next() % (u64::from(size) + 2)) as u16),
        _ => d.publish(ram, start),
    }
    if rng.one_in(8) {
        d.suppress_interrupts(ram, rng.one_in(2));
    }
}

/// Random rings, with plausible values often enough that many chains pass: nothing panics,
/// and every buffer the queue hands out, and every segment a request carries, is in RAM.
#[test]
fn ten_thousand_random_chains_never_escape_ram() {
    const SMALL_RAM: usize = 256 * 1024;
    let in_ram = |gpa: u64, len: u64| gpa.checked_add(len).is_some_and(|end| end <= SMALL_RAM as u64);
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let (mut popped, mut errors, mut requests) = (0, 0, 0);
    let mut ram = Ram::new(SMALL_RAM);
    // A bare queue of 16 at page 1, and a disk's queue of 256 at PFN.
    let mut queue = Queue::new(16);
    queue.set_pfn(1);
    let mut driver = Driver::new(1, 16);
    let mut device = VirtioBlk::new(1 << 20, b"random");
    let mut device_driver = set_up(&mut device, 1).pop().unwrap();
    for round in 0..10_000 {
        if round % 2 == 1 {
            random_chain(&mut rng, &mut device_driver, &mut ram, 256, true);
            while let Some(request) = device.next_request(&mut ram) {
                requests += 1;
                assert!(request.segments.iter().all(|&(gpa, len)| in_ram(gpa, u64::from(len))));
                assert!(in_ram(request.status_gpa, 1));
                assert!(device.complete(&mut ram, request.id, blk::status::OK, rng.next() as u32));
            }
            if device.broken().is_some() {
                errors += 1;
                device_driver = set_up(&mut device, 1).pop().unwrap();
                ram = Ram::new(SMALL_RAM);
                (driver, queue) = (Driver::new(1, 16), Queue::new(16));
                queue.set_pfn(1);
            }
            continue;
        }
        random_chain(&mut rng, &mut driver, &mut ram, 16, false);
        loop {
            match queue.pop(&ram) {
                Ok(Some(chain)) => {
                    popped += 1;
                    assert!(!chain.buffers.is_empty() && chain.buffers.len() <= 16);
                    assert!(chain.buffers.iter().all(|b| b.len > 0 && in_ram(b.gpa, u64::from(b.len))));
                    assert_eq!(queue.push_used(&mut ram, chain.head, rng.next() as u32), Ok(true));
                }
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    ram = Ram::new(SMALL_RAM);
                    (driver, queue) = (Driver::new(1, 16), Queue::new(16));
                    queue.set_pfn(1);
                    device_driver = set_up(&mut device, 1).pop().unwrap();
                    break;
                }
            }
        }
    }
    // Both kinds of outcome, often: the generator is neither too tame nor too hostile.
    assert!(
        popped > 2000 && errors > 2000 && requests > 20,
        "{popped} chains, {errors} errors, {requests} requests"
    );
    assert!(device.counters.rejected > 0 && device.counters.unsupported > 0 && device.counters.get_ids > 0);
}

/// A console that keeps nothing.
struct Quiet;

impl Console for Quiet {
    fn line(&mut self, _: &[u8]) {}
}

/// The guest's processor as port I/O needs it: interrupts on.
struct Guest {
    vm: Vm<Quiet>,
    cpu: Cpu,
}

impl Guest {
    fn new() -> Self {
        Self { vm: Vm::new(Quiet), cpu: Cpu { rflags: 0x202, ..Cpu::default() } }
    }

    fn exit(&mut self, port: u16, size: u64, is_in: bool) {
        use cleave_abi::vcpu::exit::io;
        let detail = u64::from(port) | size << io::SIZE_SHIFT | if is_in { io::IN } else { 0 };
        let exit = Exit { reason: reason::PORT_IO, detail, guest_physical: 0, instruction_length: 1 };
        let outcome = self.vm.handle(&exit, &mut self.cpu, &mut Ram::new(0), |_, _| [0; 4]);
        assert_eq!(outcome, Outcome::Resume);
    }

    fn out(&mut self, port: u16, size: u64, value: u32) {
        self.cpu.regs[gpr::RAX] = u64::from(value);
        self.exit(port, size, false);
    }

    fn inp(&mut self, port: u16, size: u64) -> u32 {
        self.exit(port, size, true);
        let mask = if size == 4 { u64::from(u32::MAX) } else { (1 << (8 * size)) - 1 };
        (self.cpu.regs[gpr::RAX] & mask) as u32
    }

    fn config_read(&mut self, slot: u8, register: u8, size: u64) -> u32 {
        self.out(0xcf8, 4, 0x8000_0000 | u32::from(slot) << 11 | u32::from(register & 0xfc));
        self.inp(0xcfc + u16::from(register & 3), size)
    }

    fn config_write(&mut self, slot: u8, register: u8, size: u64, value: u32) {
        self.out(0xcf8, 4, 0x8000_0000 | u32::from(slot) << 11 | u32::from(register & 0xfc));
        self.out(0xcfc + u16::from(register & 3), size, value);
    }

    /// The PICs as Linux programs them: vectors 0x30 and 0x38, all lines open.
    fn linux_pics(&mut self) {
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 4),
            (0x21, 1),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 2),
            (0xa1, 1),
            (0x21, 0),
            (0xa1, 0),
        ] {
            self.out(port, 1, value);
        }
    }

    fn eoi(&mut self, irq: u8) {
        if irq >= 8 {
            self.out(0xa0, 1, 0x20);
        }
        self.out(0x20, 1, 0x20);
    }

    /// Linux's probe of the virtio device in `slot`, through configuration mechanism #1
    /// and the device's I/O BAR: the IDs, BAR 0's size and place, I/O decoding and bus
    /// mastering, then `virtio_pci`'s sequence up to DRIVER_OK with every queue at a page
    /// of its own. Returns the BAR and the queues' drivers.
    fn probe(&mut self, slot: u8, device_id: u32, subsystem: u32, pfn: u32) -> (u16, Vec<Driver>) {
        assert_eq!(self.config_read(slot, 0, 4), 0x1af4 | device_id << 16);
        assert_eq!(self.config_read(slot, 0x08, 1), 0, "revision 0: the legacy ABI");
        assert_eq!(self.config_read(slot, 0x2e, 2), subsystem);
        assert_eq!(self.config_read(slot, 0x0e, 1), 0, "a type 0 header");
        let bar = self.config_read(slot, 0x10, 4);
        assert_eq!(bar & 1, 1, "an I/O BAR");
        assert_eq!(bar & !3, u32::from(super::pci::io_bar(slot)), "placed by the VMM as firmware");
        self.config_write(slot, 0x10, 4, 0xffff_ffff);
        let size = !(self.config_read(slot, 0x10, 4) & !3) + 1;
        assert!((0x20..=0x100).contains(&size), "{size:#x}");
        self.config_write(slot, 0x10, 4, bar);
        let command = self.config_read(slot, 0x04, 2);
        self.config_write(slot, 0x04, 2, command | 0x5);
        let base = (bar & !3) as u16;
        self.out(base + register::STATUS as u16, 1, 0);
        assert_eq!(self.inp(base + register::STATUS as u16, 1), 0);
        self.out(base + register::STATUS as u16, 1, 1);
        self.out(base + register::STATUS as u16, 1, 3);
        let features = self.inp(base + register::HOST_FEATURES as u16, 4);
        self.out(base + register::GUEST_FEATURES as u16, 4, features);
        let mut drivers = Vec::new();
        for queue in 0.. {
            self.out(base + register::QUEUE_SELECT as u16, 2, queue);
            let size = self.inp(base + register::QUEUE_SIZE as u16, 2) as u16;
            if size == 0 {
                break;
            }
            assert_eq!(self.inp(base + register::QUEUE_PFN as u16, 4), 0);
            let pfn = pfn + 3 * queue;
            self.out(base + register::QUEUE_PFN as u16, 4, pfn);
            drivers.push(Driver::new(pfn, size));
        }
        self.out(base + register::STATUS as u16, 1, 7);
        assert_eq!(self.inp(base + register::STATUS as u16, 1), 7);
        (base, drivers)
    }
}

/// Linux's probe through the `Vm`'s ports, a request each way, and the level-triggered
/// INTx line: asserted until the guest reads the ISR, which lowers it.
#[test]
fn linux_probes_the_devices_through_the_vm_and_their_interrupts_follow_the_isr() {
    let mut guest = Guest::new();
    guest.vm.attach_virtio_blk(3, 11, 2048, b"vda").unwrap();
    guest.vm.attach_virtio_net(4, 10, [2, 0, 0, 0, 0, 1]).unwrap();
    assert_eq!(
        guest.vm.attach_virtio_net(3, 10, [0; 6]).err(),
        Some(crate::devices::pci::AttachError::SlotTaken(3))
    );
    assert!(
        guest.vm.virtio_net(3).is_none()
            && guest.vm.virtio_blk(4).is_none()
            && guest.vm.virtio_blk(5).is_none()
    );
    assert_eq!(guest.config_read(3, 0x3c, 2), 0x010b, "INTA on IRQ 11, written as firmware would");
    assert_eq!(guest.vm.pic.read(0x4d1), 0x0c, "IRQs 10 and 11 level-triggered");
    guest.linux_pics();
    let (blk_base, mut blk_drivers) = guest.probe(3, 0x1001, 2, PFN);
    let (net_base, net_drivers) = guest.probe(4, 0x1000, 1, PFN + 8);
    assert_eq!((blk_base, blk_drivers.len(), net_base, net_drivers.len()), (0xc300, 1, 0xc400, 2));
    assert_eq!(guest.inp(blk_base + register::CONFIG as u16, 4), 2048, "capacity");
    assert_eq!(guest.inp(net_base + register::CONFIG as u16 + 4, 2), 0x0100, "the MAC's last bytes");
    // A read request: posted, notified through the port, served by the VMM's loop.
    let mut ram = Ram::new(RAM);
    let driver = &mut blk_drivers[0];
    blk_request(driver, &mut ram, 0, blk::request_type::IN, 0, &[(DATA, 512)]);
    guest.out(blk_base + register::QUEUE_NOTIFY as u16, 2, 0);
    let device = guest.vm.virtio_blk(3).unwrap();
    assert!(device.take_notified());
    let request = device.next_request(&mut ram).unwrap();
    assert!(device.complete(&mut ram, request.id, blk::status::OK, 512));
    assert_eq!(driver.used(&ram), vec![(request.id.head, 513)]);
    // IRQ 11: vector 0x3b, again after the EOI while the ISR is unread, then no more.
    assert_eq!(guest.vm.injection(&guest.cpu), Injection::Vector(0x3b));
    guest.eoi(11);
    assert_eq!(guest.vm.injection(&guest.cpu), Injection::Vector(0x3b), "level-triggered: still high");
    assert_eq!(guest.inp(blk_base + register::ISR as u16, 1), 1);
    guest.eoi(11);
    assert_eq!(guest.vm.injection(&guest.cpu), Injection::None, "the ISR read lowered the line");
    assert_eq!(guest.inp(blk_base + register::ISR as u16, 1), 0);
    // The card receives a frame on IRQ 10.
    let mut rx = net_drivers.into_iter().next().unwrap();
    rx.add(&mut ram, &[(DATA + 0x8000, 1528, true)]);
    let frame = frame(64, 9);
    assert!(guest.vm.virtio_net(4).unwrap().deliver(&mut ram, &frame));
    assert_eq!(guest.vm.injection(&guest.cpu), Injection::Vector(0x3a));
    assert_eq!(guest.inp(net_base + register::ISR as u16, 1), 1);
    guest.eoi(10);
    assert_eq!(guest.vm.injection(&guest.cpu), Injection::None);
}

/// One guest's hostile disk does not stop its other disk: the first breaks, the second
/// keeps serving requests and interrupting; the first works again after the guest resets
/// it.
#[test]
fn a_broken_device_leaves_the_guests_other_devices_working() {
    let mut guest = Guest::new();
    guest.vm.attach_virtio_blk(5, 11, 100, b"bad").unwrap();
    guest.vm.attach_virtio_blk(6, 11, 100, b"good").unwrap();
    guest.linux_pics();
    let (bad_base, mut bad) = guest.probe(5, 0x1001, 2, PFN);
    let (_, mut good) = guest.probe(6, 0x1001, 2, PFN + 3);
    let (bad, good) = (&mut bad[0], &mut good[0]);
    let mut ram = Ram::new(RAM);
    // The bad disk gets a descriptor loop; the good one flushes, again and again.
    bad.descriptor(&mut ram, 0, DATA, 16, flag::NEXT, 1);
    bad.descriptor(&mut ram, 1, DATA, 16, flag::NEXT, 0);
    bad.publish(&mut ram, 0);
    guest.out(bad_base + register::QUEUE_NOTIFY as u16, 2, 0);
    let device = guest.vm.virtio_blk(5).unwrap();
    assert!(device.take_notified());
    assert_eq!(device.next_request(&mut ram), None);
    let why = device.broken().unwrap();
    assert_eq!(
        std::format!("{why}"),
        "queue 0: a chain from head 0 is longer than the queue's size (its links loop)"
    );
    for n in 0..10 {
        blk_request(good, &mut ram, n, blk::request_type::FLUSH, 0, &[]);
        let device = guest.vm.virtio_blk(6).unwrap();
        let flush = device.next_request(&mut ram).unwrap();
        assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0));
        assert_eq!(good.used(&ram).len(), 1);
        assert_eq!(guest.vm.injection(&guest.cpu), Injection::Vector(0x3b));
        guest.inp(super::pci::io_bar(6) + register::ISR as u16, 1);
        guest.eoi(11);
        assert_eq!(guest.vm.injection(&guest.cpu), Injection::None);
        // The bad disk stays broken, whatever it is asked.
        bad.publish(&mut ram, 0);
        assert_eq!(guest.vm.virtio_blk(5).unwrap().next_request(&mut ram), None);
    }
    // The guest resets the bad disk and sets it up again: it works.
    let mut ram = Ram::new(RAM);
    let (_, mut again) = guest.probe(5, 0x1001, 2, PFN);
    blk_request(&mut again[0], &mut ram, 0, blk::request_type::FLUSH, 0, &[]);
    let device = guest.vm.virtio_blk(5).unwrap();
    assert_eq!(device.broken(), None);
    assert_eq!(device.transport().breaks(), 1, "the count stays");
    let flush = device.next_request(&mut ram).unwrap();
    assert!(device.complete(&mut ram, flush.id, blk::status::OK, 0));
}
