//! Host tests: guests' VMMs (the pipes' other ends) over heap regions with guard pages,
//! frames sent and polled step by step, hostile VMMs, restarts, and a model to compare
//! random traffic with.

mod forwarding;
mod hostile;
mod model;
mod restart;
mod table;

use crate::frame::{HEADER_LEN, Mac};
use crate::port::Port;
use crate::switch::{Poll, Switch};
use cleave_ioring::Shared;
use cleave_ioring::pipe::{Consumer, MAX_FRAME, Producer, region_size};
pub(crate) use cleave_ioring::testing::{Region, Rng};
use std::vec;
use std::vec::Vec;

/// Slots in each test pipe.
pub(crate) const SLOTS: u32 = 64;

/// What the guests' VMMs put in the header: garbage the switch must not pass on.
pub(crate) const GUEST_HEADER: [u8; HEADER_LEN] = [0xee; HEADER_LEN];

/// The locally administered address of test guest `n`.
pub(crate) const fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0, 0, n])
}

/// A multicast address (IPv4's all-hosts group).
pub(crate) const MULTICAST: Mac = Mac([0x01, 0x00, 0x5e, 0, 0, 1]);

/// Bytes of one pipe.
pub(crate) fn pipe_size() -> usize {
    region_size(SLOTS).unwrap()
}

/// A guest's VMM: one region holding its tx pipe then its rx pipe, formatted, and the
/// VMM's end of each.
pub(crate) struct Guest {
    pub region: Region,
    pub tx: Producer,
    pub rx: Consumer,
}

impl Guest {
    pub fn new() -> Self {
        let region = Region::new(2 * pipe_size());
        let tx = Producer::format(Self::tx_part(&region), SLOTS).unwrap();
        let rx = Consumer::format(Self::rx_part(&region), SLOTS).unwrap();
        Self { region, tx, rx }
    }

    pub fn tx_part(region: &Region) -> Shared {
        region.shared().part(0, pipe_size()).unwrap()
    }

    pub fn rx_part(region: &Region) -> Shared {
        region.shared().part(pipe_size(), pipe_size()).unwrap()
    }

    /// The tx pipe, as the VMM's peer sees it.
    pub fn tx_shared(&self) -> Shared {
        Self::tx_part(&self.region)
    }

    /// The rx pipe.
    pub fn rx_shared(&self) -> Shared {
        Self::rx_part(&self.region)
    }

    /// Netback's side of this guest, attached as a (re)started netback attaches (its tx
    /// side at once, as a switch's first poll would: the VMM's frames are dropped until
    /// netback attached to its session).
    pub fn port(&self) -> Port {
        let mut tx = Consumer::attach(self.tx_shared(), SLOTS).unwrap();
        let _ = tx.ready();
        Port::new(tx, Producer::attach(self.rx_shared(), SLOTS).unwrap())
    }

    /// Sends a pipe frame (header included) and publishes it.
    pub fn send_raw(&mut self, frame: &[u8]) {
        assert_eq!(self.tx.send(frame), Ok(true), "the tx pipe has room");
        self.tx.publish().unwrap();
    }

    /// Sends an Ethernet frame behind a garbage header.
    pub fn send(&mut self, ethernet: &[u8]) {
        self.send_raw(&piped(ethernet));
    }

    /// Every frame waiting in the rx pipe, headers included.
    pub fn receive_all(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0; MAX_FRAME];
        while let Some(len) = self.rx.receive(&mut buf).unwrap() {
            frames.push(buf[..len].to_vec());
        }
        frames
    }
}

/// `count` fresh guests.
pub(crate) fn guests<const N: usize>() -> [Guest; N] {
    core::array::from_fn(|_| Guest::new())
}

/// Netback's ports over `guests`, configured by `configure` (port index, port).
pub(crate) fn ports<const N: usize>(
    guests: &[Guest; N],
    configure: impl Fn(usize, Port) -> Port,
) -> [Port; N] {
    core::array::from_fn(|i| configure(i, guests[i].port()))
}

/// A switch over `guests` whose ports have no configured address.
pub(crate) fn plain<const N: usize>(guests: &[Guest; N]) -> Switch<N> {
    Switch::new(ports(guests, |_, port| port)).unwrap()
}

/// An Ethernet frame: destination, source, type, payload.
pub(crate) fn ethernet(destination: Mac, source: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&destination.0);
    frame.extend_from_slice(&source.0);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4-typed test frame whose payload names it.
pub(crate) fn test_frame(destination: Mac, source: Mac, id: u32) -> Vec<u8> {
    let mut payload = id.to_be_bytes().to_vec();
    payload.resize(46, id as u8);
    ethernet(destination, source, 0x0800, &payload)
}

/// `ethernet` behind the header a guest writes.
pub(crate) fn piped(ethernet: &[u8]) -> Vec<u8> {
    let mut frame = GUEST_HEADER.to_vec();
    frame.extend_from_slice(ethernet);
    frame
}

/// `ethernet` as the switch delivers it: behind a zero header.
pub(crate) fn delivered(ethernet: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; HEADER_LEN];
    frame.extend_from_slice(ethernet);
    frame
}

/// Polls until the switch says nothing more is waiting (at most 100 polls); the polls'
/// signals, merged.
pub(crate) fn poll_all<const N: usize, const E: usize>(switch: &mut Switch<N, E>) -> Poll<N> {
    let mut all = Poll { signal: [false; N], cut_off: [false; N], more: false };
    for _ in 0..100 {
        let poll = switch.poll();
        for i in 0..N {
            all.signal[i] |= poll.signal[i];
            all.cut_off[i] |= poll.cut_off[i];
        }
        if !poll.more {
            return all;
        }
    }
    panic!("the switch still has work after 100 polls");
}

/// What each guest received, in order.
pub(crate) fn received<const N: usize>(guests: &mut [Guest; N]) -> [Vec<Vec<u8>>; N] {
    core::array::from_fn(|i| guests[i].receive_all())
}

/// What guests that received nothing received.
pub(crate) fn nothing<const N: usize>() -> [Vec<Vec<u8>>; N] {
    core::array::from_fn(|_| Vec::new())
}

/// netback builds its switch on a 16 KiB stack and keeps it in a box: a switch of 63 ports
/// (the most one serves) keeps its ports and frame buffer on the heap, so the stack holds
/// some kilobytes at most. A wrong number of ports is refused, not cut or padded.
#[test]
fn a_switch_of_63_ports_keeps_its_ports_off_the_stack() {
    assert!(core::mem::size_of::<Switch<63, 64>>() < 2048, "{}", core::mem::size_of::<Switch<63, 64>>());
    assert!(core::mem::size_of::<crate::Poll<63>>() < 256);
    let guests = guests::<3>();
    let ports: Vec<Port> = guests.iter().map(Guest::port).collect();
    let refused = Switch::<4>::new(ports).err();
    assert_eq!(refused, Some(crate::ConfigError::PortCount { expected: 4, given: 3 }));
}
