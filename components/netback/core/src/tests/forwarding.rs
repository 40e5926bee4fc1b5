//! Forwarding: learning, unicast to the right port only, flooding, ARP, no hairpin,
//! headers, counters, configured addresses.

use super::{
    GUEST_HEADER, MULTICAST, delivered, ethernet, guests, mac, nothing, piped, plain, poll_all, ports,
    received, test_frame,
};
use crate::frame::{HEADER_LEN, Mac};
use crate::port::{Drops, PortId};
use crate::switch::{ConfigError, Switch};
use std::vec;
use std::vec::Vec;

#[test]
fn a_source_is_learnt_and_unicast_goes_to_its_port_only() {
    let mut guests = guests::<4>();
    let mut switch = plain(&guests);
    // Guest 0 sends to guest 2, whose address the switch does not know yet: flooded.
    let first = test_frame(mac(2), mac(0), 1);
    guests[0].send(&first);
    let poll = poll_all(&mut switch);
    assert_eq!(poll.signal, [false, true, true, true]);
    assert_eq!(switch.lookup(mac(0)), Some(PortId(0)), "learnt from its source");
    assert_eq!(switch.lookup(mac(2)), None, "not seen as a source yet");
    let got = received(&mut guests);
    assert_eq!(got, [vec![], vec![delivered(&first)], vec![delivered(&first)], vec![delivered(&first)]]);
    // Guest 2 answers: guest 0 is known, so only guest 0 gets it.
    let answer = test_frame(mac(0), mac(2), 2);
    guests[2].send(&answer);
    let poll = poll_all(&mut switch);
    assert_eq!(poll.signal, [true, false, false, false]);
    assert_eq!(switch.lookup(mac(2)), Some(PortId(2)));
    assert_eq!(received(&mut guests), [vec![delivered(&answer)], vec![], vec![], vec![]]);
    // From now on both directions are unicast, whichever guest sends; guest 3 sends to
    // guest 2 and is learnt on the way.
    let frames = [(0, test_frame(mac(2), mac(0), 3)), (3, test_frame(mac(2), mac(3), 4))];
    for (from, frame) in &frames {
        guests[*from].send(frame);
    }
    poll_all(&mut switch);
    let mut got = received(&mut guests);
    // The order between ports is the round robin's.
    got[2].sort();
    let mut expected = vec![delivered(&frames[0].1), delivered(&frames[1].1)];
    expected.sort();
    assert_eq!(got, [vec![], vec![], expected, vec![]]);
    let back = test_frame(mac(3), mac(2), 5);
    guests[2].send(&back);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![], vec![], vec![delivered(&back)]]);
    assert_eq!(switch.table_len(), 3);
    assert_eq!(switch.table_stats().learnt, 3);
    assert_eq!(switch.port(PortId(0)).unwrap().counters().tx_flooded, 1);
    assert_eq!(switch.port(PortId(2)).unwrap().counters().rx_frames, 3);
    assert_eq!(switch.port(PortId(1)).unwrap().counters().rx_frames, 1, "only the first, flooded, frame");
    for guest in &guests {
        assert!(guest.region.guards_intact());
    }
}

#[test]
fn broadcast_multicast_and_unknown_unicast_are_flooded_to_every_other_port() {
    let mut guests = guests::<3>();
    let mut switch = plain(&guests);
    // Make every guest known first, so that flooding is not because of an unknown source.
    for (i, guest) in guests.iter_mut().enumerate() {
        guest.send(&test_frame(Mac::BROADCAST, mac(i as u8), i as u32));
    }
    poll_all(&mut switch);
    let got = received(&mut guests);
    for (i, frames) in got.iter().enumerate() {
        assert_eq!(frames.len(), 2, "guest {i} gets the others' broadcasts, not its own");
    }
    for (n, destination) in
        [Mac::BROADCAST, MULTICAST, mac(99), Mac([0x33, 0x33, 0, 0, 0, 1])].into_iter().enumerate()
    {
        let frame = test_frame(destination, mac(1), 10 + n as u32);
        guests[1].send(&frame);
        let poll = poll_all(&mut switch);
        assert_eq!(poll.signal, [true, false, true], "{destination}");
        assert_eq!(
            received(&mut guests),
            [vec![delivered(&frame)], vec![], vec![delivered(&frame)]],
            "{destination}"
        );
    }
    assert_eq!(switch.port(PortId(1)).unwrap().counters().tx_flooded, 5);
    assert_eq!(switch.lookup(MULTICAST), None);
    assert_eq!(switch.lookup(Mac::BROADCAST), None);
}

/// An ARP packet for IPv4 over Ethernet: operation, sender and target.
fn arp(operation: u16, sender: (Mac, [u8; 4]), target: (Mac, [u8; 4])) -> Vec<u8> {
    let mut packet = vec![0, 1, 0x08, 0, 6, 4];
    packet.extend_from_slice(&operation.to_be_bytes());
    packet.extend_from_slice(&sender.0.0);
    packet.extend_from_slice(&sender.1);
    packet.extend_from_slice(&target.0.0);
    packet.extend_from_slice(&target.1);
    packet
}

#[test]
fn an_arp_request_is_broadcast_and_its_reply_unicast() {
    const ARP: u16 = 0x0806;
    let (a, b) = ((mac(1), [169, 254, 0, 1]), (mac(2), [169, 254, 0, 2]));
    let mut guests = guests::<3>();
    let mut switch = plain(&guests);
    let request = ethernet(Mac::BROADCAST, a.0, ARP, &arp(1, a, (Mac([0; 6]), b.1)));
    guests[0].send(&request);
    poll_all(&mut switch);
    let got = received(&mut guests);
    assert_eq!(got, [vec![], vec![delivered(&request)], vec![delivered(&request)]]);
    // Both others see who asks; guest 1 is b and replies to a directly.
    let seen = &got[1][0];
    assert_eq!(&seen[..HEADER_LEN], &[0; HEADER_LEN], "the guest's header is not passed on");
    assert_eq!(&seen[HEADER_LEN + 12..HEADER_LEN + 14], &ARP.to_be_bytes());
    let asker = Mac(seen[HEADER_LEN + 6..HEADER_LEN + 12].try_into().unwrap());
    let reply = ethernet(asker, b.0, ARP, &arp(2, b, a));
    guests[1].send(&reply);
    poll_all(&mut switch);
    assert_eq!(
        received(&mut guests),
        [vec![delivered(&reply)], vec![], vec![]],
        "the third guest sees no reply"
    );
    // The IP traffic that follows is unicast both ways.
    let ping = test_frame(b.0, a.0, 7);
    guests[0].send(&ping);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![delivered(&ping)], vec![]]);
}

#[test]
fn a_frame_never_goes_back_out_of_its_port() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests);
    // Guest 0 is a bridge with two addresses behind it.
    guests[0].send(&test_frame(Mac::BROADCAST, mac(10), 1));
    guests[0].send(&test_frame(Mac::BROADCAST, mac(11), 2));
    poll_all(&mut switch);
    assert_eq!(received(&mut guests)[1].len(), 2);
    // One of them talks to the other: the switch has nothing to do.
    guests[0].send(&test_frame(mac(11), mac(10), 3));
    let poll = poll_all(&mut switch);
    assert_eq!(poll.signal, [false, false]);
    assert_eq!(received(&mut guests), nothing());
    let counters = switch.port(PortId(0)).unwrap().counters();
    assert_eq!(counters.drops, Drops { hairpin: 1, ..Drops::default() });
    assert_eq!(counters.tx_frames, 3);
    // Flooded frames do not go back either.
    guests[0].send(&test_frame(mac(77), mac(10), 4));
    poll_all(&mut switch);
    assert_eq!(received(&mut guests).map(|f| f.len()), [0, 1]);
}

#[test]
fn headers_are_zeroed_and_bytes_counted_without_them() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests);
    let frame = ethernet(mac(1), mac(0), 0x88b5, &[0xab; 100]);
    let mut raw = piped(&frame);
    assert_eq!(&raw[..HEADER_LEN], &GUEST_HEADER);
    raw[0] = 0x01; // NEEDS_CSUM, which no guest negotiated
    guests[0].send_raw(&raw);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![delivered(&frame)]]);
    let (tx, rx) = (switch.port(PortId(0)).unwrap().counters(), switch.port(PortId(1)).unwrap().counters());
    assert_eq!((tx.tx_frames, tx.tx_bytes, tx.rx_frames), (1, 114, 0));
    assert_eq!((rx.rx_frames, rx.rx_bytes, rx.tx_frames), (1, 114, 0));
    let text = std::format!("{tx}");
    assert!(text.starts_with("tx 1 frames 114 bytes (1 flooded), rx 0 frames"), "{text}");
}

#[test]
fn a_configured_address_is_known_before_its_guest_speaks() {
    let mut guests = guests::<3>();
    let mut switch: Switch<3> = Switch::new(ports(&guests, |i, port| port.with_mac(mac(i as u8)))).unwrap();
    assert_eq!(switch.lookup(mac(2)), Some(PortId(2)));
    let frame = test_frame(mac(2), mac(0), 1);
    guests[0].send(&frame);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![], vec![delivered(&frame)]], "not flooded");
    assert_eq!(switch.table_len(), 0, "configured addresses take no entry");
    assert_eq!(switch.port(PortId(1)).unwrap().mac(), Some(mac(1)));
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let guests = guests::<3>();
    let result =
        Switch::<3>::new(ports(&guests, |i, port| if i == 1 { port.with_mac(MULTICAST) } else { port }));
    assert_eq!(result.err(), Some(ConfigError::GroupMac(PortId(1))));
    let result = Switch::<3>::new(ports(&guests, |i, port| if i > 0 { port.with_mac(mac(5)) } else { port }));
    let error = result.err().unwrap();
    assert_eq!(error, ConfigError::DuplicateMac(PortId(1), PortId(2)));
    assert_eq!(std::format!("{error}"), "port 1 and port 2 are configured with the same address");
}
