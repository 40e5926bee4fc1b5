//! The driver against the device model: set-up, every request type, completions in any
//! order, refusals, and a device that writes nonsense to the used ring.

use super::{DMA_BASE, DMA_LEN, LIMITS, Machine, Quirks, Rng, SERIAL, bytes, pattern};
use crate::driver::{Broken, Command, Driver, Error, InitError, Limits, Status, Token};
use crate::legacy::{QueueLayout, feature};
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// The model's queue (256 entries) in the DMA buffer.
fn queue() -> QueueLayout {
    QueueLayout::new(256).unwrap()
}

/// Where request `token`'s status byte is (after the queue's three pages).
fn status_byte(token: usize) -> u64 {
    DMA_BASE + queue().bytes as u64 + 32 * token as u64 + 16
}

/// Writes used-ring entry `index` as (`id`, `len`) and sets the used index to `idx`.
fn forge_used(machine: &Machine, index: u16, id: u32, len: u32, idx: u16) {
    let q = queue();
    let mut entry = [0u8; 8];
    entry[..4].copy_from_slice(&id.to_le_bytes());
    entry[4..].copy_from_slice(&len.to_le_bytes());
    machine.ram.poke(DMA_BASE + q.used_entry(index) as u64, &entry);
    machine.ram.poke(DMA_BASE + q.used_index() as u64, &idx.to_le_bytes());
}

/// Submits `command`, lets the device serve it, and takes its completion.
fn round_trip(
    machine: &mut Machine,
    driver: &mut Driver<super::ModelPorts, super::ModelDma>,
    command: Command<'_>,
    out: &mut [u8],
) -> (Status, u32) {
    let token = driver.submit(command).unwrap();
    driver.notify();
    // The model answers GET_ID itself: it hands out no request for it.
    assert!(machine.run() <= 1);
    let done = driver.complete(out).unwrap().expect("a completion");
    assert_eq!(done.token, token);
    assert_eq!(driver.complete(out), Ok(None));
    (done.status, done.len)
}

#[test]
fn init_takes_the_offered_features_and_gives_the_queue() {
    let machine = Machine::new(4096);
    let driver = machine.driver(LIMITS);
    let device = machine.device.borrow();
    let transport = device.transport();
    assert_eq!(transport.status(), 7, "ACKNOWLEDGE | DRIVER | DRIVER_OK");
    let taken = feature::FLUSH | feature::SIZE_MAX | feature::SEG_MAX;
    assert_eq!(transport.guest_features(), taken, "not BLK_SIZE nor ANY_LAYOUT");
    assert_eq!(driver.features(), taken);
    assert_eq!(transport.queue(0).unwrap().pfn() as u64, DMA_BASE / 4096);
    assert_eq!((driver.capacity(), driver.queue_size(), driver.requests()), (4096, 256, 8));
    assert!(driver.has_flush() && !driver.read_only() && driver.has_room());
    assert!(machine.ram.guards_intact());
}

#[test]
fn reads_writes_flushes_and_get_id() {
    let mut machine = Machine::new(4096);
    let mut driver = machine.driver(LIMITS);
    let mut out = vec![0u8; 16384];
    // A request of four segments (the model's size_max is a page).
    let data = bytes(1, 16384);
    let write = Command::Write { sector: 100, data: &data };
    assert_eq!(round_trip(&mut machine, &mut driver, write, &mut out), (Status::Ok, 0));
    assert_eq!(machine.sectors(100, 32), &data[..]);
    assert_eq!(machine.sectors(99, 1), &(0..512).map(|i| pattern(99, i)).collect::<Vec<_>>()[..]);
    let read = Command::Read { sector: 104, len: 8192 };
    assert_eq!(round_trip(&mut machine, &mut driver, read, &mut out), (Status::Ok, 8192));
    assert_eq!(&out[..8192], &data[2048..2048 + 8192]);
    // The last sector.
    let read = Command::Read { sector: 4095, len: 512 };
    assert_eq!(round_trip(&mut machine, &mut driver, read, &mut out), (Status::Ok, 512));
    assert_eq!(&out[..512], machine.sectors(4095, 1));
    assert_eq!(round_trip(&mut machine, &mut driver, Command::Flush, &mut out), (Status::Ok, 0));
    assert_eq!(machine.flushes, 1);
    // GET_ID: the serial, NUL-padded to 20 bytes, or its first bytes.
    let mut id = SERIAL.to_vec();
    id.resize(20, 0);
    let get_id = Command::GetId { len: 512 };
    assert_eq!(round_trip(&mut machine, &mut driver, get_id, &mut out), (Status::Ok, 20));
    assert_eq!(&out[..20], &id[..]);
    let get_id = Command::GetId { len: 5 };
    assert_eq!(round_trip(&mut machine, &mut driver, get_id, &mut out), (Status::Ok, 5));
    assert_eq!(&out[..5], b"cleav");
    // The device interrupted; reading the ISR acknowledges it.
    assert!(driver.interrupt().queue);
    assert!(!driver.interrupt().queue);
    assert_eq!(driver.in_flight(), 0);
    assert!(machine.ram.guards_intact());
}

#[test]
fn completions_in_any_order_and_requests_reused() {
    let mut machine = Machine::new(4096);
    let mut driver = machine.driver(LIMITS);
    machine.hold = true;
    let mut sectors = BTreeMap::new();
    for round in 0..3u64 {
        for i in 0..8u64 {
            let sector = 64 * i + round;
            let token = driver.submit(Command::Read { sector, len: 1024 }).unwrap();
            assert!(sectors.insert(token, sector).is_none(), "token {token:?} in use twice");
        }
        assert_eq!(driver.submit(Command::Read { sector: 0, len: 512 }), Err(Error::Full));
        assert!(!driver.has_room());
        driver.notify();
        assert_eq!(machine.run(), 8);
        // Nothing done yet.
        let mut out = vec![0u8; 1024];
        assert_eq!(driver.complete(&mut out), Ok(None));
        machine.release_all_reversed();
        for _ in 0..8 {
            let done = driver.complete(&mut out).unwrap().unwrap();
            let sector = sectors.remove(&done.token).expect("a token in flight");
            assert_eq!((done.status, done.len), (Status::Ok, 1024));
            assert_eq!(&out[..], machine.sectors(sector, 2), "token {:?}", done.token);
        }
        assert_eq!(driver.complete(&mut out), Ok(None));
        assert_eq!(driver.in_flight(), 0);
    }
    assert!(machine.ram.guards_intact());
}

#[test]
fn requests_the_driver_refuses() {
    let mut machine = Machine::new(4096);
    let mut driver = machine.driver(LIMITS);
    let big = vec![0u8; 16384 + 512];
    for (command, error) in [
        (Command::Read { sector: 0, len: 0 }, Error::Length(0)),
        (Command::Read { sector: 0, len: 100 }, Error::Length(100)),
        (Command::Read { sector: 0, len: 16384 + 512 }, Error::Length(16896)),
        (Command::Write { sector: 0, data: &big }, Error::Length(16896)),
        (Command::Write { sector: 0, data: &big[..10] }, Error::Length(10)),
        (Command::Read { sector: 4095, len: 1024 }, Error::OutOfRange),
        (Command::Write { sector: 4096, data: &big[..512] }, Error::OutOfRange),
        (Command::Read { sector: u64::MAX, len: 512 }, Error::OutOfRange),
        (Command::GetId { len: 0 }, Error::Length(0)),
    ] {
        assert_eq!(driver.submit(command), Err(error), "{command:?}");
    }
    driver.notify();
    assert_eq!((machine.run(), machine.served, driver.in_flight()), (0, 0, 0), "the device saw nothing");
    // A completion for a buffer too short stays.
    driver.submit(Command::Read { sector: 7, len: 4096 }).unwrap();
    driver.notify();
    machine.run();
    assert_eq!(driver.complete(&mut [0; 100]), Err(Error::BufferTooSmall { needed: 4096 }));
    let mut out = vec![0u8; 4096];
    assert_eq!(driver.complete(&mut out).unwrap().map(|c| c.len), Some(4096));
    assert_eq!(&out[..], machine.sectors(7, 8));

    // A device without a write cache: no flushes. A read-only one: no writes.
    let machine = Machine::new(64);
    let quirks =
        Quirks { hide_features: feature::FLUSH, show_features: feature::READ_ONLY, ..Quirks::default() };
    let (ports, dma) = machine.parts_with(quirks, DMA_BASE, DMA_LEN);
    let mut driver = Driver::init(ports, dma, LIMITS).unwrap();
    assert!(!driver.has_flush() && driver.read_only());
    assert_eq!(driver.submit(Command::Flush), Err(Error::Unsupported));
    assert_eq!(driver.submit(Command::Write { sector: 0, data: &[1; 512] }), Err(Error::ReadOnly));
    assert_eq!(driver.submit(Command::Read { sector: 0, len: 512 }), Ok(Token(0)));
}

#[test]
fn init_refuses_devices_and_buffers_it_cannot_use() {
    let machine = Machine::new(64);
    let init = |quirks: Quirks, phys: u64, len: usize, limits: Limits| {
        let (ports, dma) = machine.parts_with(quirks, phys, len);
        Driver::init(ports, dma, limits).err()
    };
    let plain = Quirks::default();
    let cases = [
        (Quirks { queue_size: Some(0), ..plain }, DMA_BASE, DMA_LEN, LIMITS, InitError::NoQueue),
        (Quirks { queue_size: Some(100), ..plain }, DMA_BASE, DMA_LEN, LIMITS, InitError::QueueSize(100)),
        (plain, DMA_BASE + 8, DMA_LEN, LIMITS, InitError::Misaligned(DMA_BASE + 8)),
        (plain, 1 << 45, DMA_LEN, LIMITS, InitError::QueueOutOfReach(1 << 45)),
        (plain, !0xfff, DMA_LEN, LIMITS, InitError::QueueOutOfReach(!0xfff)),
        (
            plain,
            DMA_BASE,
            DMA_LEN,
            Limits { requests: 0, ..LIMITS },
            InitError::Limits(Limits { requests: 0, ..LIMITS }),
        ),
        (
            plain,
            DMA_BASE,
            DMA_LEN,
            Limits { request_bytes: 1000, ..LIMITS },
            InitError::Limits(Limits { request_bytes: 1000, ..LIMITS }),
        ),
        // Queue 12 KiB, 8 control blocks in a page, 8 × 16 KiB.
        (plain, DMA_BASE, 65536, LIMITS, InitError::DmaTooSmall { needed: 147456, have: 65536 }),
        // 64 requests of 6 descriptors.
        (
            plain,
            DMA_BASE,
            DMA_LEN,
            Limits { requests: 64, ..LIMITS },
            InitError::NotEnoughDescriptors { needed: 384, have: 256 },
        ),
        // 512 KiB in 4 KiB segments: 128, the model takes 64.
        (
            plain,
            DMA_BASE,
            DMA_LEN,
            Limits { requests: 1, request_bytes: 512 * 1024 },
            InitError::TooManySegments { segments: 128, seg_max: 64 },
        ),
        (
            Quirks { drop_pfn: true, ..plain },
            DMA_BASE,
            DMA_LEN,
            LIMITS,
            InitError::QueueRefused { written: 0x10, read: 0 },
        ),
        (Quirks { status: Some(3), ..plain }, DMA_BASE, DMA_LEN, LIMITS, InitError::ResetTimedOut(3)),
        (Quirks { status_extra: 0x40, ..plain }, DMA_BASE, DMA_LEN, LIMITS, InitError::DeviceFailed(0x47)),
    ];
    for (quirks, phys, len, limits, error) in cases {
        assert_eq!(init(quirks, phys, len, limits), Some(error), "{quirks:?} {phys:#x} {len} {limits:?}");
    }
    // A device given up on after the features were taken says so.
    init(Quirks { queue_size: Some(0), ..plain }, DMA_BASE, DMA_LEN, LIMITS);
    assert_eq!(machine.device.borrow().transport().status(), 0x83, "FAILED");
    assert!(machine.ram.guards_intact());
}

/// A driver with two reads made available (not served).
fn two_in_flight() -> (Machine, Driver<super::ModelPorts, super::ModelDma>) {
    let machine = Machine::new(64);
    let mut driver = machine.driver(LIMITS);
    assert_eq!(driver.submit(Command::Read { sector: 0, len: 512 }), Ok(Token(0)));
    assert_eq!(driver.submit(Command::Read { sector: 1, len: 512 }), Ok(Token(1)));
    (machine, driver)
}

/// Checks that `driver` stays broken for `why` and told the device.
fn stays_broken(machine: &Machine, driver: &mut Driver<super::ModelPorts, super::ModelDma>, why: Broken) {
    let mut out = vec![0u8; 16384];
    assert_eq!(driver.broken(), Some(why));
    assert_eq!(driver.complete(&mut out), Err(Error::Broken(why)));
    assert_eq!(driver.submit(Command::Read { sector: 0, len: 512 }), Err(Error::Broken(why)));
    assert!(!driver.has_room());
    assert_eq!(machine.device.borrow().transport().status() & 0x80, 0x80, "FAILED");
    assert!(machine.ram.guards_intact());
}

#[test]
fn a_used_entry_naming_no_request_breaks_the_driver() {
    let mut out = vec![0u8; 16384];
    // Request n heads descriptors 6n..6n+5 (header, four segments, status).
    for (id, why) in [
        (3, Broken::UnknownHead(3)),
        (6 * 8, Broken::UnknownHead(48)),
        (255, Broken::UnknownHead(255)),
        (1 << 31, Broken::UnknownHead(1 << 31)),
        (6 * 5, Broken::NotInFlight(5)),
    ] {
        let (machine, mut driver) = two_in_flight();
        forge_used(&machine, 0, id, 1, 1);
        assert_eq!(driver.complete(&mut out), Err(Error::Broken(why)), "id {id}");
        stays_broken(&machine, &mut driver, why);
    }
}

#[test]
fn a_duplicate_completion_breaks_the_driver() {
    let (mut machine, mut driver) = two_in_flight();
    let mut out = vec![0u8; 512];
    driver.notify();
    machine.run();
    assert_eq!(driver.complete(&mut out).unwrap().map(|c| c.token), Some(Token(0)));
    assert_eq!(driver.complete(&mut out).unwrap().map(|c| c.token), Some(Token(1)));
    // The device gives request 1 back again while request 0 is in flight once more.
    assert_eq!(driver.submit(Command::Read { sector: 5, len: 512 }), Ok(Token(2)));
    forge_used(&machine, 2, 6, 513, 3);
    assert_eq!(driver.complete(&mut out), Err(Error::Broken(Broken::NotInFlight(1))));
    stays_broken(&machine, &mut driver, Broken::NotInFlight(1));
    // With nothing in flight, any used entry is one too many.
    let (mut machine, mut driver) = two_in_flight();
    driver.notify();
    machine.run();
    while driver.complete(&mut out).unwrap().is_some() {}
    forge_used(&machine, 2, 0, 513, 3);
    let why = Broken::UsedIndexAhead { used: 3, seen: 2 };
    assert_eq!(driver.complete(&mut out), Err(Error::Broken(why)));
}

#[test]
fn a_used_index_too_far_ahead_breaks_the_driver() {
    let (machine, mut driver) = two_in_flight();
    forge_used(&machine, 0, 0, 1, 3);
    let why = Broken::UsedIndexAhead { used: 3, seen: 0 };
    assert_eq!(driver.complete(&mut [0; 512]), Err(Error::Broken(why)));
    stays_broken(&machine, &mut driver, why);
    let (machine, mut driver) = two_in_flight();
    forge_used(&machine, 0, 0, 1, u16::MAX);
    assert!(matches!(driver.complete(&mut [0; 512]), Err(Error::Broken(Broken::UsedIndexAhead { .. }))));
}

#[test]
fn an_absurd_used_length_breaks_the_driver() {
    let (machine, mut driver) = two_in_flight();
    forge_used(&machine, 0, 6, u32::MAX, 1);
    let why = Broken::UsedLength { request: 1, len: u32::MAX, max: 513 };
    assert_eq!(driver.complete(&mut [0; 512]), Err(Error::Broken(why)));
    stays_broken(&machine, &mut driver, why);
    // A write's chain has one writable byte.
    let machine = Machine::new(64);
    let mut driver = machine.driver(LIMITS);
    driver.submit(Command::Write { sector: 0, data: &[7; 512] }).unwrap();
    forge_used(&machine, 0, 0, 2, 1);
    let why = Broken::UsedLength { request: 0, len: 2, max: 1 };
    assert_eq!(driver.complete(&mut [0; 512]), Err(Error::Broken(why)));
    // A short length is legacy-normal: ignored.
    let (mut machine, mut driver) = two_in_flight();
    driver.notify();
    machine.run();
    forge_used(&machine, 0, 0, 0, 2);
    assert_eq!(driver.complete(&mut [0; 512]).unwrap().map(|c| (c.status, c.len)), Some((Status::Ok, 512)));
}

#[test]
fn status_bytes_the_device_made_up_are_io_errors() {
    let (mut machine, mut driver) = two_in_flight();
    driver.notify();
    machine.run();
    machine.ram.poke(status_byte(0), &[2]);
    machine.ram.poke(status_byte(1), &[9]);
    let mut out = vec![0xeeu8; 512];
    let statuses: Vec<_> = (0..2).map(|_| driver.complete(&mut out).unwrap().unwrap()).collect();
    assert_eq!((statuses[0].status, statuses[0].len), (Status::Unsupported, 0));
    assert_eq!((statuses[1].status, statuses[1].len), (Status::IoError, 0));
    assert_eq!(out, vec![0xee; 512], "no bytes out");
    // A status byte the device never wrote.
    let (machine, mut driver) = two_in_flight();
    forge_used(&machine, 0, 0, 513, 1);
    let done = driver.complete(&mut out).unwrap().unwrap();
    assert_eq!((done.status, done.len), (Status::IoError, 0));
    assert_eq!(driver.broken(), None);
}

/// A device that, while serving, scribbles over what it may write: the used ring and the
/// status bytes. The driver works or reports the device broken (and a new driver resets
/// it); it never panics, and nothing outside the DMA buffer changes.
#[test]
fn garbage_from_the_device_never_panics() {
    let mut rng = Rng::new(0xb10c);
    let mut machine = Machine::new(1024);
    let mut driver = machine.driver(LIMITS);
    let q = queue();
    let mut out = vec![0u8; 16384];
    let (mut completed, mut kinds) = (0, std::collections::BTreeSet::new());
    for round in 0..5000u64 {
        for _ in 0..rng.below(4) {
            let sector = rng.below(1024 - 32);
            let len = 512 * (1 + rng.below(32) as u32);
            let data = vec![round as u8; len as usize];
            let command = match rng.below(4) {
                0 => Command::Write { sector, data: &data },
                1 => Command::Flush,
                2 => Command::GetId { len },
                _ => Command::Read { sector, len },
            };
            let _ = driver.submit(command);
        }
        driver.notify();
        machine.run();
        match rng.below(12) {
            0 => machine.ram.poke(DMA_BASE + q.used_index() as u64, &(rng.next() as u16).to_le_bytes()),
            1 => {
                let at = DMA_BASE + q.used_entry(rng.next() as u16) as u64 + 4 * rng.below(2);
                let value = if rng.one_in(2) { rng.next() as u32 } else { rng.below(40) as u32 * 6 };
                machine.ram.poke(at, &value.to_le_bytes());
            }
            2 => machine.ram.poke(status_byte(rng.below(8) as usize), &[rng.next() as u8]),
            // A plausible entry: the head of some request, a small or a wild length.
            3 | 4 => {
                let at = DMA_BASE + q.used_index() as u64;
                let idx = u16::from_le_bytes([machine.ram.byte(at), machine.ram.byte(at + 1)]);
                let len = if rng.one_in(2) { rng.below(20_000) as u32 } else { rng.next() as u32 };
                forge_used(&machine, idx, 6 * rng.below(8) as u32, len, idx.wrapping_add(1));
            }
            _ => {}
        }
        for _ in 0..rng.below(10) {
            match driver.complete(&mut out) {
                Ok(Some(_)) => completed += 1,
                Ok(None) => break,
                Err(Error::Broken(why)) => {
                    kinds.insert(
                        std::format!("{why:?}")
                            .split([' ', '('])
                            .next()
                            .map(std::string::String::from)
                            .unwrap_or_default(),
                    );
                    driver = machine.driver(LIMITS);
                    break;
                }
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        let _ = driver.interrupt();
        // A device that took garbage for a completion may have freed a request it still
        // held, and then sees its head offered again: it stops. A new driver resets it.
        if machine.device.borrow().broken().is_some() {
            driver = machine.driver(LIMITS);
        }
        assert!(machine.ram.guards_intact(), "round {round}");
    }
    assert!(completed > 2000, "{completed} completions");
    assert!(kinds.len() >= 3, "the kinds of breakage seen: {kinds:?}");
}
