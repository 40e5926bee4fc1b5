//! Netback's logic: a learning Ethernet switch between guests, over the frame pipes each
//! guest's VMM shares with netback (`cleave_ioring::pipe`).
//!
//! Each port is one guest: its tx pipe carries the frames it sends (the VMM produces,
//! the switch consumes), its rx pipe the frames for it. Every frame in a pipe starts with
//! the 10-byte legacy virtio-net header. The switch learns which port each source address
//! is on, sends unicast to a known address out of that port only, floods broadcast,
//! multicast and unknown unicast to every other port, and never sends a frame back out of
//! the port it came in on. It drops runts, group sources and (per port) spoofed sources,
//! and frames for a full rx pipe, counting each; a port whose VMM breaks a pipe's protocol
//! is cut off and the others go on. `poll` takes a bounded number of frames from each
//! port in turn, so a guest that floods its pipe cannot starve the others.
//!
//! The component `components/netback` owns the capabilities and notifications and calls
//! [`Switch::poll`] when signalled; this crate is `no_std`, without `unsafe`, allocates
//! only the switch's ports and frame buffer (so that netback's stack holds neither), and
//! `cargo test -p cleave-netback-core` tests it on the host. doc/io-path.md
//! ("netback") describes the behaviour.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod frame;
pub mod port;
pub mod switch;
mod table;
#[cfg(test)]
mod tests;

pub use frame::{HEADER_LEN, MIN_FRAME, Mac};
pub use port::{Counters, CutOff, Drops, Port, PortId};
pub use switch::{ConfigError, FRAMES_PER_PORT, Poll, Switch, TABLE_ENTRIES};
pub use table::TableStats;
