//! Restarts: a new switch over the same regions (netback restarted from its pristine
//! image) continues from the pipes' indexes and learns its table again.

use super::{Guest, SLOTS, delivered, guests, mac, plain, poll_all, received, test_frame};
use crate::frame::Mac;
use crate::port::{Port, PortId};
use crate::switch::Switch;
use cleave_ioring::pipe::{Consumer, Producer};
use cleave_ioring::testing::Region;
use std::vec;
use std::vec::Vec;

#[test]
fn a_new_switch_forwards_again_after_learning_again() {
    let mut guests = guests::<3>();
    let mut switch = plain(&guests).with_budget(2);
    for (i, guest) in guests.iter_mut().enumerate() {
        guest.send(&test_frame(Mac::BROADCAST, mac(i as u8), 0));
    }
    poll_all(&mut switch);
    received(&mut guests);
    assert_eq!(switch.table_len(), 3);
    // Guest 0 sends five frames to guest 1; netback forwards two and restarts.
    let frames: Vec<Vec<u8>> = (1..6).map(|n| test_frame(mac(1), mac(0), n)).collect();
    for frame in &frames {
        guests[0].send(frame);
    }
    let poll = switch.poll();
    assert!(poll.more);
    // Netback restarts: a new switch, nothing kept from the old one.
    let mut switch = plain(&guests);
    assert_eq!(switch.table_len(), 0, "nothing learnt yet");
    // The new switch takes the other three from where the old one left the pipe; mac(1) is
    // unknown to it, so they are flooded, and mac(0) is learnt again.
    poll_all(&mut switch);
    let got = received(&mut guests);
    assert_eq!(got[1], frames.iter().map(|f| delivered(f)).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(got[2], frames[2..].iter().map(|f| delivered(f)).collect::<Vec<_>>());
    assert_eq!(switch.lookup(mac(0)), Some(PortId(0)));
    // Guest 1 answers: unicast at once (mac(0) is known again), and learnt.
    let answer = test_frame(mac(0), mac(1), 9);
    guests[1].send(&answer);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![delivered(&answer)], vec![], vec![]]);
    let again = test_frame(mac(1), mac(0), 10);
    guests[0].send(&again);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![delivered(&again)], vec![]]);
    // The counters started again with the new switch.
    assert_eq!(switch.port(PortId(1)).unwrap().counters().rx_frames, 4);
}

#[test]
fn a_switch_started_before_a_vmm_waits_for_its_pipes() {
    // Netback comes up first: its guest's region is still zero.
    let region = Region::new(2 * super::pipe_size());
    let early = Port::new(
        Consumer::attach(Guest::tx_part(&region), SLOTS).unwrap(),
        Producer::attach(Guest::rx_part(&region), SLOTS).unwrap(),
    );
    let mut other = Guest::new();
    let mut switch: Switch<2> = Switch::new([early, other.port()]).unwrap();
    other.send(&test_frame(Mac::BROADCAST, mac(1), 1));
    let poll = poll_all(&mut switch);
    assert_eq!(poll.cut_off, [false, false], "an unformatted pipe is not a broken one");
    assert_eq!(poll.signal, [false, false]);
    assert_eq!(switch.port(PortId(0)).unwrap().counters().drops.rx_full, 1, "nowhere to put it yet");
    // The VMM formats its pipes and, once netback attached, sends; both directions work.
    let mut late = Guest {
        tx: Producer::format(Guest::tx_part(&region), SLOTS).unwrap(),
        rx: Consumer::format(Guest::rx_part(&region), SLOTS).unwrap(),
        region,
    };
    let hello = test_frame(mac(1), mac(0), 2);
    // Its frames wait for netback to attach to its session (the VMM signals netback once
    // it has formatted): one poll.
    assert_eq!(late.tx.send(&super::piped(&hello)), Ok(false));
    poll_all(&mut switch);
    late.send(&hello);
    poll_all(&mut switch);
    assert_eq!(other.receive_all(), [delivered(&hello)]);
    let reply = test_frame(mac(0), mac(1), 3);
    other.send(&reply);
    assert_eq!(poll_all(&mut switch).signal, [true, false]);
    assert_eq!(late.receive_all(), [delivered(&reply)]);
}

/// An on-request guest's VMM broke its pipe and was destroyed; the guest's next VMM gets
/// the same pipes (a new session): the switch opens the port again at its next poll and
/// frames flow both ways, while the other port never stopped. A second break cuts it off
/// again, and a third VMM is taken over too.
#[test]
fn a_port_cut_off_is_open_again_to_the_guests_next_vmm() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests);
    for round in 0..2u8 {
        // The VMM breaks its tx pipe: a producer index far ahead (the pipe's word at 0x40).
        guests[0].tx_shared().store_u32(0x40, 5000 + u32::from(round)).unwrap();
        assert_eq!(poll_all(&mut switch).cut_off, [true, false], "round {round}");
        // Destroyed and made again: a new VMM formats the same region.
        let tx = Producer::format(Guest::tx_part(&guests[0].region), SLOTS).unwrap();
        let rx = Consumer::format(Guest::rx_part(&guests[0].region), SLOTS).unwrap();
        (guests[0].tx, guests[0].rx) = (tx, rx);
        poll_all(&mut switch);
        assert!(switch.port(PortId(0)).unwrap().cut_off().is_none(), "round {round}");
        let hello = test_frame(mac(1), mac(0), 5 + u32::from(round));
        guests[0].send(&hello);
        poll_all(&mut switch);
        assert_eq!(guests[1].receive_all(), [delivered(&hello)], "round {round}");
        let reply = test_frame(mac(0), mac(1), 7 + u32::from(round));
        guests[1].send(&reply);
        poll_all(&mut switch);
        assert_eq!(guests[0].receive_all(), [delivered(&reply)], "round {round}");
    }
}

/// A port cut off stays cut off, poll after poll, until its VMM's format changes the
/// session word: whatever its pipes' other words say (here its rx pipe never carried a
/// frame, so netback never attached to it), and however often its VMM signals.
#[test]
fn a_port_cut_off_stays_so_until_a_new_session() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests);
    guests[0].tx_shared().store_u32(0x40, 9000).unwrap();
    assert_eq!(poll_all(&mut switch).cut_off, [true, false]);
    for _ in 0..5 {
        assert_eq!(poll_all(&mut switch).cut_off, [false, false], "no new cut: it stays cut");
        assert!(switch.port(PortId(0)).unwrap().cut_off().is_some());
    }
    let before = switch.port(PortId(0)).unwrap().counters().rx_frames;
    guests[1].send(&test_frame(mac(0), mac(1), 3));
    poll_all(&mut switch);
    assert_eq!(switch.port(PortId(0)).unwrap().counters().rx_frames, before, "nothing delivered to it");
    guests[0].tx = Producer::format(Guest::tx_part(&guests[0].region), SLOTS).unwrap();
    guests[0].rx = Consumer::format(Guest::rx_part(&guests[0].region), SLOTS).unwrap();
    poll_all(&mut switch);
    assert!(switch.port(PortId(0)).unwrap().cut_off().is_none());
}
