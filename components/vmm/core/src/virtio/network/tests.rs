//! The bridge against netback's side of real pipes: frames both ways, a guest slow to post
//! receive buffers, full pipes, a switch restarted between frames, and a hostile switch
//! (indexes out of range, frames of impossible lengths) several steps in a row.

use super::super::net::VirtioNet;
use super::super::pci::register;
use super::super::testing::{Driver, Ram};
use super::super::tests::{DATA, RAM, reg_write, set_up};
use super::*;
use crate::devices::pci::PciDevice;
use alloc::vec;
use alloc::vec::Vec;
use cleave_ioring::pipe::{self, Consumer, Producer};
use cleave_ioring::testing::{PIPE_CONS, PIPE_PROD, Region};

const SLOTS: u32 = 8;

struct World {
    ram: Ram,
    device: VirtioNet,
    rx_driver: Driver,
    tx_driver: Driver,
    bridge: NetBridge,
    /// netback's side: it consumes tx, produces rx.
    switch_tx: Consumer,
    switch_rx: Producer,
    /// The pipes' memory (the `Shared` values point into it).
    _region: Region,
    tx_pipe: Shared,
    rx_pipe: Shared,
    /// Where the next receive buffer goes.
    next_buffer: u64,
}

impl World {
    fn new() -> Self {
        let half = pipe::region_size(SLOTS).unwrap();
        let region = Region::new(2 * half);
        let shared = region.shared();
        let bridge = NetBridge::format(shared, SLOTS).unwrap();
        let (tx_pipe, rx_pipe) = (shared.part(0, half).unwrap(), shared.part(half, half).unwrap());
        let mut device = VirtioNet::new([2, 0, 0, 0, 0, 1]);
        let mut drivers = set_up(&mut device, 2);
        assert_eq!(device.take_notified(), 0b11);
        let tx_driver = drivers.pop().unwrap();
        let rx_driver = drivers.pop().unwrap();
        // The switch attaches to the bridge's session at once, as netback does when the VMM
        // signals it after formatting (until then the guest's frames are dropped).
        let (mut switch_tx, mut switch_rx) =
            (Consumer::attach(tx_pipe, SLOTS).unwrap(), Producer::attach(rx_pipe, SLOTS).unwrap());
        assert_eq!((switch_tx.ready(), switch_rx.ready()), (Ok(true), Ok(true)));
        World {
            ram: Ram::new(RAM),
            device,
            rx_driver,
            tx_driver,
            bridge,
            switch_tx,
            switch_rx,
            _region: region,
            tx_pipe,
            rx_pipe,
            next_buffer: DATA + 0x8_0000,
        }
    }

    /// The guest sends `frame` (header and frame in one buffer) and notifies.
    fn guest_sends(&mut self, frame: &[u8], slot: u64) {
        let at = DATA + slot * 0x800;
        assert!(self.ram.write(at, &[0x55; HEADER_LEN]) && self.ram.write(at + HEADER_LEN as u64, frame));
        self.tx_driver.add(&mut self.ram, &[(at, (HEADER_LEN + frame.len()) as u32, false)]);
        reg_write(&mut self.device, register::QUEUE_NOTIFY, 2, 1);
    }

    /// The guest posts `n` receive buffers of Linux's size (header and 1518 bytes).
    fn guest_posts(&mut self, n: usize) -> Vec<(u16, u64)> {
        (0..n)
            .map(|_| {
                let at = self.next_buffer;
                self.next_buffer += 0x800;
                (self.rx_driver.add(&mut self.ram, &[(at, 1528, true)]), at)
            })
            .collect()
    }

    /// What the switch takes from the tx pipe.
    fn switch_takes(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buffer = [0u8; pipe::MAX_FRAME];
        while let Some(len) = self.switch_tx.receive(&mut buffer).unwrap() {
            out.push(buffer[..len].to_vec());
        }
        out
    }

    /// The switch puts `frame` (with a header) in the rx pipe and publishes.
    fn switch_sends(&mut self, frame: &[u8]) -> bool {
        let mut with_header = vec![0u8; HEADER_LEN];
        with_header.extend_from_slice(frame);
        let sent = self.switch_rx.send(&with_header).unwrap();
        self.switch_rx.publish().unwrap();
        sent
    }
}

/// An Ethernet frame of `len` bytes.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

#[test]
fn frames_go_out_through_the_tx_pipe_with_a_zero_header() {
    let mut w = World::new();
    let (a, b) = (frame(60, 1), frame(1514, 2));
    w.guest_sends(&a, 0);
    w.guest_sends(&b, 1);
    assert!(w.bridge.transmit(&mut w.device, &mut w.ram), "published: signal the switch");
    assert!(!w.bridge.transmit(&mut w.device, &mut w.ram), "nothing new");
    let taken = w.switch_takes();
    assert_eq!(taken.len(), 2);
    assert_eq!((&taken[0][..HEADER_LEN], &taken[0][HEADER_LEN..]), (&[0u8; HEADER_LEN][..], &a[..]));
    assert_eq!(&taken[1][HEADER_LEN..], &b[..]);
    assert_eq!(w.tx_driver.used(&w.ram).len(), 2, "the guest has its buffers back");
    assert_eq!(w.bridge.counters.sent, 2);
    // The guest is gone: the VMM closes the tx pipe, and the switch sees it.
    assert!(!w.switch_tx.closed());
    w.bridge.close();
    assert!(w.switch_tx.closed());
}

#[test]
fn a_full_tx_pipe_drops_what_the_guest_sends_and_recovers() {
    let mut w = World::new();
    for i in 0..SLOTS as u64 + 3 {
        w.guest_sends(&frame(100, i as u8), i);
    }
    assert!(w.bridge.transmit(&mut w.device, &mut w.ram));
    assert_eq!((w.bridge.counters.sent, w.bridge.counters.tx_full), (SLOTS as u64, 3));
    assert_eq!(w.tx_driver.used(&w.ram).len(), SLOTS as usize + 3, "every chain went back");
    assert_eq!(w.switch_takes().len(), SLOTS as usize);
    w.guest_sends(&frame(100, 9), 0);
    assert!(w.bridge.transmit(&mut w.device, &mut w.ram));
    assert_eq!(w.switch_takes(), vec![[&[0u8; HEADER_LEN][..], &frame(100, 9)].concat()]);
}

#[test]
fn frames_wait_in_the_rx_pipe_until_the_guest_posts_buffers() {
    let mut w = World::new();
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(200 + i, i as u8)).collect();
    for f in &frames {
        assert!(w.switch_sends(f));
    }
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 0, "no buffer posted: they stay in the pipe");
    assert_eq!(w.device.counters.rx_no_buffer, 0, "none was taken and dropped");
    let buffers = w.guest_posts(2);
    reg_write(&mut w.device, register::QUEUE_NOTIFY, 2, 0);
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 2);
    assert!(w.device.interrupt());
    for ((_, at), f) in buffers.iter().zip(&frames) {
        assert_eq!(w.ram.bytes(*at, HEADER_LEN), &[0; HEADER_LEN]);
        assert_eq!(w.ram.bytes(*at + HEADER_LEN as u64, f.len()), &f[..]);
    }
    w.guest_posts(4);
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 1, "the third");
    let used = w.rx_driver.used(&w.ram);
    assert_eq!(used.len(), 3);
    assert_eq!(used[2].1 as usize, HEADER_LEN + frames[2].len());
    assert_eq!(w.bridge.counters.received, 3);
}

#[test]
fn a_restarted_switch_continues_from_the_pipes_indexes() {
    let mut w = World::new();
    w.guest_sends(&frame(64, 1), 0);
    w.guest_sends(&frame(64, 2), 1);
    w.bridge.transmit(&mut w.device, &mut w.ram);
    let mut buffer = [0u8; pipe::MAX_FRAME];
    assert!(w.switch_tx.receive(&mut buffer).unwrap().is_some());
    assert!(w.switch_sends(&frame(80, 3)));
    // A new instance attaches to the same pipes: it takes the second frame, not the first
    // again, and its frame follows the first instance's.
    w.switch_tx = Consumer::attach(w.tx_pipe, SLOTS).unwrap();
    w.switch_rx = Producer::attach(w.rx_pipe, SLOTS).unwrap();
    assert_eq!(w.switch_takes(), vec![[&[0u8; HEADER_LEN][..], &frame(64, 2)].concat()]);
    assert!(w.switch_sends(&frame(90, 4)));
    let buffers = w.guest_posts(4);
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 2);
    assert_eq!(w.ram.bytes(buffers[0].1 + HEADER_LEN as u64, 80), &frame(80, 3)[..]);
    assert_eq!(w.ram.bytes(buffers[1].1 + HEADER_LEN as u64, 90), &frame(90, 4)[..]);
}

/// A hostile switch, step after step: frames of lengths no Ethernet frame has are dropped,
/// then an rx producer index far ahead stops receiving for good, then a tx consumer index
/// ahead of what was sent stops transmitting; the guest's device is never broken, and each
/// refusal stays.
#[test]
fn a_hostile_switch_stops_only_the_pipe_it_breaks() {
    let mut w = World::new();
    let buffers = w.guest_posts(4);
    // Too short for a frame, shorter than the header, then a good one: the bad ones use
    // no receive buffer.
    assert!(w.switch_sends(&frame(5, 0)));
    assert!(w.switch_rx.send(&[1, 2, 3, 4]).unwrap());
    assert!(w.switch_sends(&frame(1514, 1)));
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 1, "only the 1514-byte frame");
    assert_eq!(w.bridge.counters.rx_dropped, 2);
    assert_eq!(w.ram.bytes(buffers[0].1 + HEADER_LEN as u64, 1514), &frame(1514, 1)[..]);
    assert!(w.device.broken().is_none());
    // The producer index far ahead: refused for good, whatever comes after.
    w.rx_pipe.store_u32(PIPE_PROD, 0x8000_0000).unwrap();
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 0);
    assert!(w.bridge.failed().is_some());
    w.rx_pipe.store_u32(PIPE_PROD, 0).unwrap();
    assert_eq!(w.bridge.receive(&mut w.device, &mut w.ram), 0, "still refused");
    // Transmitting goes on until the switch breaks the tx pipe too.
    w.guest_sends(&frame(60, 3), 0);
    assert!(w.bridge.transmit(&mut w.device, &mut w.ram));
    assert_eq!(w.switch_takes().len(), 1);
    w.tx_pipe.store_u32(PIPE_CONS, 1000).unwrap();
    for i in 0..3 {
        w.guest_sends(&frame(60, i), i as u64);
        assert!(!w.bridge.transmit(&mut w.device, &mut w.ram));
    }
    assert_eq!(w.bridge.counters.tx_full, 3);
    assert_eq!(w.tx_driver.used(&w.ram).len(), 4, "the guest gets every buffer back");
    assert!(w.device.broken().is_none(), "the guest's device was never broken");
}
