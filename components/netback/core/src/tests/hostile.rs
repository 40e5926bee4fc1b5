//! Hostile guests and VMMs: spoofed and group sources, runts, oversized frames, a flood,
//! full rx pipes, broken pipes, and garbage written over every pipe.

use super::{
    GUEST_HEADER, MULTICAST, Rng, SLOTS, delivered, guests, mac, nothing, plain, poll_all, ports, received,
    test_frame,
};
use crate::frame::{HEADER_LEN, MIN_FRAME, Mac};
use crate::port::{CutOff, Drops, PortId};
use crate::switch::Switch;
use cleave_ioring::pipe::MAX_FRAME;
use cleave_ioring::testing::{ENTRIES, PIPE_CONS, PIPE_PROD};
use cleave_ioring::{Error, ProtocolError, Ring};
use std::vec;
use std::vec::Vec;

#[test]
fn spoofed_sources_are_dropped_and_not_learnt() {
    let mut guests = guests::<3>();
    // Port 0 has an address and anti-spoofing; port 1 has an address without it; port 2
    // has none.
    let configure = |i, port: crate::Port| match i {
        0 => port.with_mac(mac(0)),
        1 => port.with_mac(mac(1)).with_anti_spoofing(false),
        _ => port,
    };
    let mut switch: Switch<3> = Switch::new(ports(&guests, configure)).unwrap();
    // Port 0 pretends to be someone else, then someone it knows is on port 2.
    guests[0].send(&test_frame(Mac::BROADCAST, mac(50), 1));
    guests[2].send(&test_frame(Mac::BROADCAST, mac(2), 2));
    poll_all(&mut switch);
    received(&mut guests);
    guests[0].send(&test_frame(mac(1), mac(2), 3));
    let poll = poll_all(&mut switch);
    assert_eq!(poll.signal, [false, false, false]);
    assert_eq!(received(&mut guests), nothing());
    assert_eq!(switch.lookup(mac(50)), None, "a spoofed source is not learnt");
    assert_eq!(switch.lookup(mac(2)), Some(PortId(2)), "nor does it move an entry");
    assert_eq!(switch.port(PortId(0)).unwrap().counters().drops, Drops { spoofed: 2, ..Drops::default() });
    // Port 1 may use other addresses (it is a bridge, say), but not port 0's configured one.
    let bridged = test_frame(mac(0), mac(60), 4);
    guests[1].send(&bridged);
    guests[1].send(&test_frame(mac(2), mac(0), 5));
    // Port 2 may not use a configured address either.
    guests[2].send(&test_frame(mac(0), mac(1), 6));
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![delivered(&bridged)], vec![], vec![]]);
    assert_eq!(switch.lookup(mac(60)), Some(PortId(1)));
    assert_eq!(switch.lookup(mac(0)), Some(PortId(0)));
    assert_eq!(switch.port(PortId(1)).unwrap().counters().drops.spoofed, 1);
    assert_eq!(switch.port(PortId(2)).unwrap().counters().drops.spoofed, 1);
    // Its own address goes through, of course.
    let honest = test_frame(mac(2), mac(0), 7);
    guests[0].send(&honest);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![], vec![delivered(&honest)]]);
}

#[test]
fn a_group_source_is_dropped_and_never_learnt() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests);
    for (n, source) in [Mac::BROADCAST, MULTICAST, Mac([0x03, 0, 0, 0, 0, 0])].into_iter().enumerate() {
        guests[0].send(&test_frame(mac(1), source, n as u32));
    }
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), nothing());
    assert_eq!(switch.table_len(), 0);
    assert_eq!(switch.lookup(MULTICAST), None);
    assert_eq!(
        switch.port(PortId(0)).unwrap().counters().drops,
        Drops { group_source: 3, ..Drops::default() }
    );
}

#[test]
fn runts_are_dropped_and_an_oversized_frame_cuts_its_port_off() {
    let mut guests = guests::<3>();
    let mut switch = plain(&guests);
    let whole = super::piped(&test_frame(Mac::BROADCAST, mac(0), 1));
    for len in [0, 1, HEADER_LEN, HEADER_LEN + 12, MIN_FRAME - 1] {
        guests[0].send_raw(&whole[..len]);
    }
    // The shortest frame the switch takes: header, addresses, type, nothing else.
    guests[0].send_raw(&whole[..MIN_FRAME]);
    poll_all(&mut switch);
    let shortest = delivered(&whole[HEADER_LEN..MIN_FRAME]);
    assert_eq!(received(&mut guests), [vec![], vec![shortest.clone()], vec![shortest]]);
    let counters = *switch.port(PortId(0)).unwrap().counters();
    assert_eq!(counters.drops, Drops { runt: 5, ..Drops::default() });
    assert_eq!(counters.tx_frames, 6);
    // The longest frame goes through.
    let mut longest = GUEST_HEADER.to_vec();
    longest.extend_from_slice(&test_frame(mac(2), mac(1), 2));
    longest.resize(MAX_FRAME, 0x77);
    guests[1].send_raw(&longest);
    poll_all(&mut switch);
    assert_eq!(
        received(&mut guests)[2].first().map(|f| f[HEADER_LEN..].to_vec()),
        Some(longest[HEADER_LEN..].to_vec())
    );
    // A VMM cannot send a longer one; a hostile one writes a longer length itself. That is
    // a broken pipe: the port is cut off, and its frame before it still went through.
    let before = test_frame(mac(2), mac(1), 3);
    guests[1].send(&before);
    let tx = guests[1].tx_shared();
    let prod = tx.load_u32(PIPE_PROD).unwrap();
    tx.store_u32(ENTRIES + 4 * (prod % SLOTS) as usize, MAX_FRAME as u32 + 1).unwrap();
    tx.store_u32(PIPE_PROD, prod + 1).unwrap();
    let poll = poll_all(&mut switch);
    assert_eq!(poll.cut_off, [false, true, false]);
    let reason = CutOff::Tx(Error::Protocol(ProtocolError::FrameTooLong(MAX_FRAME as u32 + 1)));
    assert_eq!(switch.port(PortId(1)).unwrap().cut_off(), Some(reason));
    assert_eq!(received(&mut guests)[2], [delivered(&before)]);
    // The others go on.
    let after = test_frame(mac(0), mac(2), 4);
    guests[2].send(&after);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![delivered(&after)], vec![], vec![]]);
}

#[test]
fn a_flooding_port_cannot_starve_the_others() {
    const BUDGET: usize = 8;
    let mut guests = guests::<3>();
    let mut switch = plain(&guests).with_budget(BUDGET);
    // Everyone known.
    for (i, guest) in guests.iter_mut().enumerate() {
        guest.send(&test_frame(Mac::BROADCAST, mac(i as u8), 0));
    }
    poll_all(&mut switch);
    received(&mut guests);
    // Guest 0 fills its whole tx pipe with frames for guest 2; guest 1 sends guest 2 one.
    for n in 0..SLOTS {
        guests[0].send(&test_frame(mac(2), mac(0), 100 + n));
    }
    let quiet = test_frame(mac(2), mac(1), 1);
    guests[1].send(&quiet);
    let poll = switch.poll();
    assert!(poll.more, "guest 0 has more");
    let got = guests[2].receive_all();
    assert_eq!(got.len(), BUDGET + 1, "guest 0's budget, and guest 1's frame");
    assert!(got.contains(&delivered(&quiet)), "guest 1's frame went in the first poll");
    // Guest 1 sends one frame before each of the next polls while guest 0's flood goes on
    // and nobody drains guest 2: each of guest 1's frames goes in the poll after it was
    // sent, next to guest 0's budget.
    let mut guest1_sent = Vec::new();
    for n in 0..4 {
        let frame = test_frame(mac(2), mac(1), 10 + n);
        guests[1].send(&frame);
        guest1_sent.push(delivered(&frame));
        switch.poll();
    }
    let got = guests[2].receive_all();
    for frame in &guest1_sent {
        assert!(got.contains(frame), "guest 1's frame {:?}", &frame[HEADER_LEN + 14..HEADER_LEN + 18]);
    }
    assert_eq!(got.len(), 4 * (BUDGET + 1));
    // The flood drains over later polls and nothing is lost while guest 2 keeps up.
    let mut total = 0;
    for _ in 0..SLOTS {
        let poll = switch.poll();
        total += guests[2].receive_all().len();
        if !poll.more {
            break;
        }
    }
    assert_eq!(total, SLOTS as usize - 5 * BUDGET);
    assert_eq!(switch.port(PortId(2)).unwrap().counters().drops.rx_full, 0);
}

#[test]
fn a_full_rx_pipe_drops_and_counts() {
    let mut guests = guests::<2>();
    let mut switch = plain(&guests).with_budget(SLOTS as usize);
    guests[1].send(&test_frame(Mac::BROADCAST, mac(1), 0));
    poll_all(&mut switch);
    // Guest 1 does not drain its rx pipe; guest 0 sends it one pipe's worth and then some,
    // in two batches.
    for n in 0..SLOTS - 4 {
        guests[0].send(&test_frame(mac(1), mac(0), n));
    }
    poll_all(&mut switch);
    for n in 0..8 {
        guests[0].send(&test_frame(mac(1), mac(0), 1000 + n));
    }
    let poll = poll_all(&mut switch);
    assert_eq!(poll.signal, [false, true], "the four that fitted were published");
    assert_eq!(switch.port(PortId(1)).unwrap().counters().drops.rx_full, 4);
    assert_eq!(switch.port(PortId(1)).unwrap().counters().rx_frames, SLOTS as u64);
    let got = guests[1].receive_all();
    assert_eq!(got.len(), SLOTS as usize);
    assert_eq!(got.last(), Some(&delivered(&test_frame(mac(1), mac(0), 1003))));
    // Drained, it takes frames again.
    guests[0].send(&test_frame(mac(1), mac(0), 2000));
    poll_all(&mut switch);
    assert_eq!(guests[1].receive_all().len(), 1);
}

#[test]
fn a_broken_pipe_cuts_off_its_port_only() {
    let mut guests = guests::<4>();
    let mut switch = plain(&guests);
    for (i, guest) in guests.iter_mut().enumerate() {
        guest.send(&test_frame(Mac::BROADCAST, mac(i as u8), 0));
    }
    poll_all(&mut switch);
    received(&mut guests);
    assert_eq!(switch.table_len(), 4);
    // VMM 0 moves its tx producer index far ahead; VMM 1 moves its rx consumer index past
    // what the switch produced.
    guests[0].tx_shared().store_u32(PIPE_PROD, 5000).unwrap();
    guests[1].rx_shared().store_u32(PIPE_CONS, 77).unwrap();
    let for_1 = test_frame(mac(1), mac(2), 1);
    let for_3 = test_frame(mac(3), mac(2), 2);
    guests[2].send(&for_1);
    guests[2].send(&for_3);
    let poll = switch.poll();
    assert_eq!(poll.cut_off, [true, true, false, false]);
    assert_eq!(poll.signal, [false, false, false, true]);
    assert_eq!(
        switch.port(PortId(0)).unwrap().cut_off(),
        Some(CutOff::Tx(Error::Protocol(ProtocolError::ProducerAhead(Ring::Pipe))))
    );
    assert_eq!(
        switch.port(PortId(1)).unwrap().cut_off(),
        Some(CutOff::Rx(Error::Protocol(ProtocolError::ConsumerAhead(Ring::Pipe))))
    );
    let text = std::format!("{}", switch.port(PortId(1)).unwrap().cut_off().unwrap());
    assert_eq!(
        text,
        "cut off: rx pipe: protocol error: frame pipe: the peer's consumer index is ahead of the producer"
    );
    assert_eq!(switch.lookup(mac(0)), None, "a cut-off port's addresses are forgotten");
    assert_eq!(switch.lookup(mac(1)), None);
    assert_eq!(switch.table_len(), 2);
    assert_eq!(switch.table_stats().forgotten, 2);
    assert_eq!(guests[3].receive_all(), [delivered(&for_3)]);
    // Cut off for good: the VMMs putting their pipes right changes nothing, and the next
    // poll reports no new cut.
    guests[0].tx_shared().store_u32(PIPE_PROD, 0).unwrap();
    let frozen = [*switch.port(PortId(0)).unwrap().counters(), *switch.port(PortId(1)).unwrap().counters()];
    guests[3].send(&test_frame(Mac::BROADCAST, mac(3), 3));
    let poll = poll_all(&mut switch);
    assert_eq!(poll.cut_off, [false; 4]);
    assert_eq!(poll.signal, [false, false, true, false]);
    assert_eq!(
        [*switch.port(PortId(0)).unwrap().counters(), *switch.port(PortId(1)).unwrap().counters()],
        frozen
    );
    assert_eq!(guests[2].receive_all().len(), 1);
    for guest in &guests {
        assert!(guest.region.guards_intact());
    }
}

/// 5,000 rounds of traffic between four guests while hostile VMMs write garbage over
/// their pipes' words: cut-offs, never a panic or a write outside a region; a cut-off
/// port is attached again by a fresh switch now and then, as a netback restart would.
#[test]
fn garbage_over_every_pipe() {
    let mut rng = Rng::new(0x5e7c4);
    let mut guests = guests::<4>();
    let mut switch = plain(&guests).with_budget(4);
    let (mut delivered, mut cuts, mut restarts) = (0usize, 0usize, 0usize);
    for round in 0..5000u32 {
        for _ in 0..rng.below(3) {
            let from = rng.below(4) as usize;
            let destination = match rng.below(4) {
                0 => Mac::BROADCAST,
                1 => MULTICAST,
                _ => mac(rng.below(6) as u8),
            };
            let source =
                if rng.below(20) == 0 { MULTICAST } else { mac(from as u8 + 10 * rng.below(2) as u8) };
            let mut frame = super::piped(&test_frame(destination, source, round));
            frame.truncate(rng.below(MAX_FRAME as u64 + 1) as usize);
            // A VMM whose pipe is broken stops; a fresh one takes over from its region.
            if guests[from].tx.send(&frame).is_err() || guests[from].tx.publish().is_err() {
                guests[from].tx =
                    cleave_ioring::pipe::Producer::format(guests[from].tx_shared(), SLOTS).unwrap();
            }
        }
        if rng.below(8) == 0 {
            let guest = &guests[rng.below(4) as usize];
            let shared = if rng.below(2) == 0 { guest.tx_shared() } else { guest.rx_shared() };
            let at = match rng.below(4) {
                0 => PIPE_PROD,
                1 => PIPE_CONS,
                2 => ENTRIES + 4 * rng.below(SLOTS as u64) as usize,
                _ => rng.below(0x40) as usize & !3,
            };
            let value =
                if rng.below(2) == 0 { rng.below(2 * MAX_FRAME as u64) as u32 } else { rng.next() as u32 };
            shared.store_u32(at, value).unwrap();
        }
        let poll = switch.poll();
        cuts += poll.cut_off.iter().filter(|&&c| c).count();
        for guest in guests.iter_mut() {
            let mut buf = vec![0; MAX_FRAME];
            for _ in 0..2 * SLOTS {
                match guest.rx.receive(&mut buf) {
                    Ok(Some(len)) => {
                        assert!((MIN_FRAME..=MAX_FRAME).contains(&len));
                        assert_eq!(&buf[..HEADER_LEN], &[0; HEADER_LEN]);
                        delivered += 1;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        guest.rx = cleave_ioring::pipe::Consumer::format(guest.rx_shared(), SLOTS).unwrap();
                        break;
                    }
                }
            }
        }
        if switch.ports().iter().any(|p| p.cut_off().is_some()) && rng.below(10) == 0 {
            switch = plain(&guests).with_budget(4);
            restarts += 1;
        }
    }
    for guest in &guests {
        assert!(guest.region.guards_intact());
    }
    // (A fresh VMM's frames are dropped until netback attached to its session, so fewer
    // get through than the rounds would carry.)
    assert!(
        delivered > 1500 && cuts > 50 && restarts > 20,
        "{delivered} delivered, {cuts} cuts, {restarts} restarts"
    );
}

#[test]
fn the_last_free_slot_does_not_always_go_to_the_same_port() {
    let mut guests = guests::<3>();
    let mut switch = plain(&guests).with_budget(1);
    guests[2].send(&test_frame(Mac::BROADCAST, mac(2), 0));
    poll_all(&mut switch);
    received(&mut guests);
    // Guest 2's rx pipe is filled.
    for n in 0..SLOTS {
        guests[1].send(&test_frame(mac(2), mac(1), n));
    }
    poll_all(&mut switch);
    // Guests 0 and 1 both send to guest 2, which takes one frame out before each poll:
    // one slot is free at each poll, and the port served first gets it.
    for n in 0..12 {
        guests[0].send(&test_frame(mac(2), mac(0), 100 + n));
        guests[1].send(&test_frame(mac(2), mac(1), 200 + n));
    }
    let mut buf = vec![0; MAX_FRAME];
    for _ in 0..12 {
        assert!(guests[2].rx.receive(&mut buf).unwrap().is_some());
        switch.poll();
    }
    let got = guests[2].receive_all();
    assert_eq!(got.len(), SLOTS as usize);
    let from = |m: Mac| got.iter().filter(|f| f[HEADER_LEN + 6..HEADER_LEN + 12] == m.0).count();
    let (zero, one) = (from(mac(0)), from(mac(1)) - (SLOTS as usize - 12));
    assert_eq!(zero + one, 12);
    assert!(zero >= 4 && one >= 4, "guest 0 got {zero} slots, guest 1 {one}");
}
