//! Random traffic compared with a model of the rules the switch documents: which ports
//! each frame reaches, and every counter.

use super::{Rng, delivered, guests, mac, poll_all, ports, received, test_frame};
use crate::frame::{HEADER_LEN, MIN_FRAME, Mac};
use crate::port::{Counters, PortId};
use crate::switch::Switch;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

const PORTS: usize = 4;

/// The rules, written plainly: configured addresses, a table without eviction (the test's
/// addresses stay within each port's share), and the counters.
struct Model {
    configured: [Option<Mac>; PORTS],
    anti_spoofing: [bool; PORTS],
    table: BTreeMap<Mac, usize>,
    counters: [Counters; PORTS],
}

impl Model {
    /// The ports `frame` (a pipe frame from `from`) must reach.
    fn forward(&mut self, from: usize, frame: &[u8]) -> Vec<usize> {
        let counters = &mut self.counters[from];
        counters.tx_frames += 1;
        counters.tx_bytes += frame.len().saturating_sub(HEADER_LEN) as u64;
        if frame.len() < MIN_FRAME {
            counters.drops.runt += 1;
            return vec![];
        }
        let destination = Mac(frame[HEADER_LEN..HEADER_LEN + 6].try_into().unwrap());
        let source = Mac(frame[HEADER_LEN + 6..HEADER_LEN + 12].try_into().unwrap());
        if source.0[0] & 1 == 1 {
            counters.drops.group_source += 1;
            return vec![];
        }
        let owner = self.configured.iter().position(|&m| m == Some(source));
        let mine = owner == Some(from);
        if (owner.is_some() && !mine)
            || (self.anti_spoofing[from] && self.configured[from].is_some() && !mine)
        {
            counters.drops.spoofed += 1;
            return vec![];
        }
        if !mine {
            self.table.insert(source, from);
        }
        let known = match destination.0[0] & 1 {
            1 => None,
            _ => self
                .configured
                .iter()
                .position(|&m| m == Some(destination))
                .or(self.table.get(&destination).copied()),
        };
        let to = match known {
            Some(to) if to == from => {
                counters.drops.hairpin += 1;
                vec![]
            }
            Some(to) => vec![to],
            None => {
                counters.tx_flooded += 1;
                (0..PORTS).filter(|&p| p != from).collect()
            }
        };
        for &p in &to {
            self.counters[p].rx_frames += 1;
            self.counters[p].rx_bytes += (frame.len() - HEADER_LEN) as u64;
        }
        to
    }
}

/// 3,000 steps: one guest sends a batch of random frames (addresses from a small pool,
/// some group, some spoofed, some runts), the switch polls until done, and every guest's
/// rx pipe is compared with the model's.
#[test]
fn random_traffic_matches_the_model() {
    let mut rng = Rng::new(0x70de1);
    let mut guests = guests::<PORTS>();
    // Port 2 has an address and anti-spoofing, port 3 an address without.
    let configured = [None, None, Some(mac(2)), Some(mac(3))];
    let anti_spoofing = [false, false, true, false];
    let configure = |i: usize, port: crate::Port| match configured[i] {
        Some(mac) => port.with_mac(mac).with_anti_spoofing(anti_spoofing[i]),
        None => port,
    };
    let mut switch: Switch<PORTS> = Switch::new(ports(&guests, configure)).unwrap().with_budget(5);
    let mut model = Model { configured, anti_spoofing, table: BTreeMap::new(), counters: Default::default() };
    let pool: Vec<Mac> = (0..10).map(mac).chain([Mac::BROADCAST, Mac([0x01, 0, 0x5e, 0, 0, 9])]).collect();
    let (mut unicast, mut flooded) = (0, 0);
    for step in 0..3000u32 {
        let from = rng.below(PORTS as u64) as usize;
        let mut expected: [Vec<Vec<u8>>; PORTS] = Default::default();
        for n in 0..rng.below(13) as u32 {
            let destination = pool[rng.below(pool.len() as u64) as usize];
            let source = pool[rng.below(pool.len() as u64) as usize];
            let mut frame = super::piped(&test_frame(destination, source, step * 16 + n));
            if rng.below(15) == 0 {
                frame.truncate(rng.below(MIN_FRAME as u64 + 2) as usize);
            }
            guests[from].send_raw(&frame);
            let to = model.forward(from, &frame);
            match to.len() {
                1 => unicast += 1,
                0 => {}
                _ => flooded += 1,
            }
            for p in to {
                expected[p].push(delivered(&frame[HEADER_LEN..]));
            }
        }
        poll_all(&mut switch);
        assert_eq!(received(&mut guests), expected, "step {step}");
        for (p, counters) in model.counters.iter().enumerate() {
            assert_eq!(switch.port(PortId(p)).unwrap().counters(), counters, "step {step}, port {p}");
        }
    }
    for (&mac, &port) in &model.table {
        assert_eq!(switch.lookup(mac), Some(PortId(port)), "{mac}");
    }
    assert!(unicast > 1000 && flooded > 1000, "{unicast} unicast, {flooded} flooded");
    let drops: u64 = model.counters.iter().map(|c| c.drops.total()).sum();
    assert!(drops > 1000, "{drops} drops");
}
