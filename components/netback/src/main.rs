//! netback, Xoar's Network: a learning Ethernet switch between the guests' virtio network
//! cards. Each guest is a port: its VMM shares one region with netback holding two frame
//! pipes (tx, the frames the guest sent; rx, the frames for it). netback maps no guest's
//! RAM and owns no device: guest networks exist only inside the machine.
//!
//! It waits on one notification: bit `i` is its `i`th guest's VMM (frames published).
//! After each wake-up it polls the switch (`cleave_netback_core::Switch`), which takes a
//! bounded number of frames from each port in turn, and signals the VMMs whose rx pipes
//! got frames; while a port used its whole budget it polls again after yielding, so a guest
//! flooding its pipe gets its share and no more. It keeps nothing a restart from its
//! pristine image could lose: a new instance attaches to the same pipes, continues from
//! their indexes and learns its table again (doc/io-path.md).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use cleave_ioring::Shared;
use cleave_ioring::pipe::{Consumer, Producer};
use cleave_netback_core::{Mac, Port, PortId, Switch};
use cleave_rt::cap::kind::Notification;
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "generated: names every capability, region and client")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(64 * 1024);

/// The switch's ports: one per guest whose network it serves.
const PORTS: usize = caps::NETS.len();

/// Entries of the learning table. Every guest's card has its address in the system
/// description, and the switch knows configured addresses without an entry; the table
/// holds only what else a guest sends from (anti-spoofing drops most of it). The table is
/// part of the switch (about 1 KiB), whose ports and frame buffer are on the heap.
const TABLE: usize = 64;

/// Polls in a row before netback yields to let the VMMs (and everyone else) run.
const POLLS_BEFORE_YIELD: u32 = 16;

/// Guest `guest`'s port over its region: its tx pipe in the first half, its rx pipe in the
/// second, with the address the description gives its card.
fn port(guest: &str, region: usize, bytes: usize, mac: [u8; 6]) -> Option<Port> {
    // SAFETY: cleave maps this guest's network region read-write at `region`, `bytes`
    // long, into this component and the guest's VMM only, for as long as this component
    // runs; only `Shared` values (here and in the VMM) touch it.
    let shared = unsafe { Shared::new(region as *mut u8, bytes) }.ok()?;
    let half = caps::NET_PIPE_BYTES;
    let pipes = shared.part(0, half).and_then(|tx| Ok((tx, shared.part(half, half)?)));
    let Ok((tx, rx)) = pipes else {
        println!("{}: guest '{guest}': its region does not hold two pipes", caps::COMPONENT);
        return None;
    };
    let tx = Consumer::attach(tx, caps::NET_PIPE_SLOTS).ok()?;
    let rx = Producer::attach(rx, caps::NET_PIPE_SLOTS).ok()?;
    Some(Port::new(tx, rx).with_mac(Mac(mac)))
}

/// The switch, on the heap; `None` (said why) if a port cannot be made. The ports go
/// from a vector into the switch without passing through the stack (63 of them would
/// fill it).
#[inline(never)]
fn switch() -> Option<Box<Switch<PORTS, TABLE>>> {
    let mut made = alloc::vec::Vec::with_capacity(PORTS);
    for &(guest, region, bytes, mac, _) in caps::NETS {
        let Some(port) = port(guest, region, bytes, mac) else {
            println!("{}: guest '{guest}': its pipes cannot be attached", caps::COMPONENT);
            return None;
        };
        made.push(port);
    }
    match Switch::new(made) {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            println!("{}: the ports cannot make a switch: {e}", caps::COMPONENT);
            None
        }
    }
}

/// Cut-offs reported per port (each later one is only counted).
const REPORTS_PER_PORT: u32 = 4;

fn main() -> i32 {
    let signal: Cap<Notification> = caps::SIGNAL;
    let instance = cleave_rt::instance();
    let Some(mut switch) = switch() else { return 1 };
    for &(guest, _, _, mac, vmm) in caps::NETS {
        // A restarted instance takes over the guests its predecessor served (the
        // supervisor's `restart` line says so).
        if instance == 1 {
            cleave_rt::audit!("serve {guest} {}#1", caps::COMPONENT);
        }
        let m = mac;
        if instance > 1 {
            // Restarts are frequent (the supervisor and the audit log count them).
            let _ = vmm.signal();
            continue;
        }
        println!(
            "{}#{instance}: guest '{guest}': port {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            caps::COMPONENT,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5]
        );
        // Frames may be waiting for a guest that a previous instance had no time to
        // deliver: the VMM looks.
        let _ = vmm.signal();
    }
    // Per port: whether its current cut-off was reported, and how many were (a VMM that
    // breaks its pipes, is made again and breaks them again is reported a few times, then
    // counted in silence).
    let mut reported = [false; PORTS];
    let mut reports = [0u32; PORTS];
    loop {
        // Frames left in a pipe (by a previous instance, or behind a budget) bring no new
        // signal: poll first, then wait.
        let mut rounds = 0;
        loop {
            let polled = switch.poll();
            for (i, &(_, _, _, _, vmm)) in caps::NETS.iter().enumerate() {
                if polled.signal.get(i).copied().unwrap_or(false) {
                    let _ = vmm.signal();
                }
            }
            for (i, (done, count)) in reported.iter_mut().zip(&mut reports).enumerate() {
                let Some(why) = switch.port(PortId(i)).and_then(Port::cut_off) else { continue };
                if !*done {
                    *done = true;
                    *count += 1;
                    let guest = caps::NETS.get(i).map_or("?", |n| n.0);
                    if *count <= REPORTS_PER_PORT {
                        println!(
                            "{}#{instance}: guest '{guest}': {why}; the other ports go on",
                            caps::COMPONENT
                        );
                    }
                }
            }
            if !polled.more {
                break;
            }
            if switch.ports().iter().all(Port::closed) {
                break;
            }
            rounds += 1;
            if rounds == POLLS_BEFORE_YIELD {
                rounds = 0;
                cleave_rt::syscall::yield_now();
            }
        }
        // A port cut off by a guest's old VMM and open again to a new one is reported
        // again if that one breaks the protocol too.
        for (i, done) in reported.iter_mut().enumerate() {
            if switch.port(PortId(i)).is_some_and(|p| p.cut_off().is_none()) {
                *done = false;
            }
        }
        // Every guest is gone: nothing can come any more (unless a guest starts on
        // request: its next VMM takes its pipes over).
        if PORTS > 0 && !caps::SERVES_ON_REQUEST_GUESTS && switch.ports().iter().all(Port::closed) {
            for &(guest, ..) in caps::NETS {
                cleave_rt::audit!("unserve {guest} {}#{instance}", caps::COMPONENT);
            }
            println!("{}#{instance}: every guest's VMM closed its pipes; stopping", caps::COMPONENT);
            for (i, &(guest, ..)) in caps::NETS.iter().enumerate() {
                if let Some(port) = switch.port(PortId(i)) {
                    println!("{}#{instance}: guest '{guest}': {}", caps::COMPONENT, port.counters());
                }
            }
            return 0;
        }
        if let Err(e) = signal.wait() {
            println!("{}#{instance}: waiting failed: {e:?}", caps::COMPONENT);
            return 1;
        }
    }
}
