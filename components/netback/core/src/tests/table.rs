//! The learning table: eviction by share and by age, refreshes, moves, cut-offs.

use super::{Guest, delivered, guests, mac, poll_all, ports, received, test_frame};
use crate::frame::Mac;
use crate::port::PortId;
use crate::switch::{Switch, TABLE_ENTRIES};
use cleave_ioring::testing::PIPE_PROD;
use std::vec;

/// Guest `port` sends one broadcast from each of `sources`, one poll each (so the order
/// the switch sees them in is theirs).
fn announce<const N: usize, const E: usize>(
    switch: &mut Switch<N, E>,
    guests: &mut [Guest; N],
    port: usize,
    sources: impl IntoIterator<Item = Mac>,
) {
    for (n, source) in sources.into_iter().enumerate() {
        guests[port].send(&test_frame(Mac::BROADCAST, source, n as u32));
        poll_all(switch);
    }
    received(guests);
}

fn addresses(range: core::ops::Range<u8>) -> impl Iterator<Item = Mac> {
    range.map(|n| Mac([0x02, 0, 0, 0, 1, n]))
}

#[test]
fn a_port_at_its_share_evicts_its_own_oldest_entry() {
    let mut guests = guests::<2>();
    let mut switch: Switch<2, 8> = Switch::new(ports(&guests, |_, port| port)).unwrap();
    // Port 1 has one address; port 0 sprays ten, and its share is 8 / 2 = 4.
    announce(&mut switch, &mut guests, 1, [mac(1)]);
    announce(&mut switch, &mut guests, 0, addresses(0..4));
    assert_eq!(switch.table_len(), 5);
    // Refresh the first: the next new address evicts the second, seen least recently.
    announce(&mut switch, &mut guests, 0, addresses(0..1));
    announce(&mut switch, &mut guests, 0, addresses(4..5));
    assert_eq!(switch.lookup(addresses(1..2).next().unwrap()), None);
    for mac in addresses(0..1).chain(addresses(2..5)) {
        assert_eq!(switch.lookup(mac), Some(PortId(0)), "{mac}");
    }
    announce(&mut switch, &mut guests, 0, addresses(5..10));
    assert_eq!(switch.table_len(), 5, "four of port 0's, one of port 1's");
    for mac in addresses(6..10) {
        assert_eq!(switch.lookup(mac), Some(PortId(0)), "{mac}");
    }
    assert_eq!(addresses(0..6).filter_map(|m| switch.lookup(m)).count(), 0);
    assert_eq!(switch.lookup(mac(1)), Some(PortId(1)), "port 1 keeps its entry");
    assert_eq!(switch.table_stats().evicted, 6);
    assert_eq!(switch.table_stats().learnt, 11);
    // An evicted address is flooded again, never lost.
    let frame = test_frame(addresses(0..1).next().unwrap(), mac(1), 99);
    guests[1].send(&frame);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![delivered(&frame)], vec![]]);
}

#[test]
fn a_full_table_evicts_the_entry_seen_least_recently() {
    // More ports than entries: each port's share is one entry and the table fills.
    let mut guests = guests::<3>();
    let mut switch: Switch<3, 2> = Switch::new(ports(&guests, |_, port| port)).unwrap();
    announce(&mut switch, &mut guests, 0, [mac(0)]);
    announce(&mut switch, &mut guests, 1, [mac(1)]);
    announce(&mut switch, &mut guests, 0, [mac(0)]);
    announce(&mut switch, &mut guests, 2, [mac(2)]);
    assert_eq!(switch.lookup(mac(1)), None, "port 1's entry was the oldest");
    assert_eq!(switch.lookup(mac(0)), Some(PortId(0)));
    assert_eq!(switch.lookup(mac(2)), Some(PortId(2)));
    assert_eq!(switch.table_stats().evicted, 1);
}

#[test]
fn the_default_table_holds_its_size_and_no_more() {
    let mut guests = guests::<1>();
    let mut switch: Switch<1> = Switch::new(ports(&guests, |_, port| port)).unwrap();
    for batch in 0..5u8 {
        let sources = (0..60u8).map(|n| Mac([0x02, 0, 0, 0, batch, n]));
        announce(&mut switch, &mut guests, 0, sources);
    }
    assert_eq!(switch.table_len(), TABLE_ENTRIES);
    assert_eq!(switch.table_stats().evicted, 300 - TABLE_ENTRIES as u64);
    assert_eq!(switch.lookup(Mac([0x02, 0, 0, 0, 0, 43])), None);
    assert_eq!(switch.lookup(Mac([0x02, 0, 0, 0, 0, 44])), Some(PortId(0)));
}

#[test]
fn an_address_seen_on_another_port_moves_there() {
    let mut guests = guests::<3>();
    let mut switch: Switch<3, 6> = Switch::new(ports(&guests, |_, port| port)).unwrap();
    announce(&mut switch, &mut guests, 0, [mac(7)]);
    announce(&mut switch, &mut guests, 1, addresses(0..2));
    assert_eq!(switch.lookup(mac(7)), Some(PortId(0)));
    // The guest with mac(7) now talks from port 1, which is at its share (6 / 3 = 2).
    announce(&mut switch, &mut guests, 1, [mac(7)]);
    assert_eq!(switch.lookup(mac(7)), Some(PortId(1)));
    assert_eq!(switch.table_stats().moved, 1);
    assert_eq!(switch.lookup(addresses(0..1).next().unwrap()), None, "port 1 stays within its share");
    assert_eq!(switch.table_len(), 2);
    let frame = test_frame(mac(7), mac(50), 1);
    guests[2].send(&frame);
    poll_all(&mut switch);
    assert_eq!(received(&mut guests), [vec![], vec![delivered(&frame)], vec![]]);
}

#[test]
fn a_cut_off_port_frees_its_entries() {
    let mut guests = guests::<2>();
    let mut switch: Switch<2, 4> = Switch::new(ports(&guests, |_, port| port)).unwrap();
    announce(&mut switch, &mut guests, 0, addresses(0..2));
    announce(&mut switch, &mut guests, 1, addresses(2..4));
    guests[1].tx_shared().store_u32(PIPE_PROD, u32::MAX).unwrap();
    poll_all(&mut switch);
    assert!(switch.port(PortId(1)).unwrap().cut_off().is_some());
    assert_eq!(switch.table_len(), 2);
    assert_eq!(addresses(2..4).filter_map(|m| switch.lookup(m)).count(), 0);
    assert_eq!(addresses(0..2).filter_map(|m| switch.lookup(m)).count(), 2);
}
