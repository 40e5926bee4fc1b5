//! The shared-ring protocol between a guest's VMM and its I/O backends (blkback, netback).
//!
//! The VMM emulates the guest's virtio devices and passes disk requests and network frames
//! to a backend over one shared region per (guest, backend) pair, with a notification in
//! each direction. No backend maps guest memory: the VMM copies bytes between the guest and
//! the region. Either side may be hostile to the other, so each keeps its own copy of the
//! indexes it owns, reads every word the peer writes once ([`Shared`]), and checks it
//! before use; a peer that breaks the protocol gets a [`ProtocolError`], never a panic, a
//! loop, or an access outside the region. Backends are restarted from a pristine image;
//! [`blk`] resends what a restarted backend lost, [`pipe`] loses at most the frames in
//! flight.
//!
//! `no_std`, no allocation; the only `unsafe` code is in [`shared`].
//!
//! # Layout
//!
//! A region is whole pages and starts on a page. The VMM formats it when it starts (it
//! knows the geometry from its configuration) and writes the magic last; the backend is
//! told the same geometry by the system description and refuses a region whose header
//! disagrees. All words are little-endian, at offsets that are multiples of their size.
//!
//! The header page (each index word on its own 64-byte line):
//!
//! | offset | size | word | written by |
//! |---|---|---|---|
//! | 0x000 | u32 | magic, `CLIO` in memory order (0x4f49_4c43) | VMM (format) |
//! | 0x004 | u32 | version, 1 | VMM (format) |
//! | 0x008 | u32 | kind: 1 disk, 2 pipe | VMM (format) |
//! | 0x00c | u32 | slots (entries in each ring): a power of two | VMM (format) |
//! | 0x010 | u32 | slot size in bytes | VMM (format) |
//! | 0x040 | u64 | disk: request producer index; pipe: producer index (u32) | VMM; the producer |
//! | 0x080 | u64 | disk: request consumer index; pipe: consumer index (u32) | backend; the consumer |
//! | 0x0c0 | u64 | disk: response producer index | backend |
//! | 0x100 | u64 | disk: response consumer index | VMM |
//! | 0x140 | u32 | disk: epoch; pipe: the session netback attached to | backend |
//! | 0x180 | u32 | disk: ack, the epoch the VMM acknowledged | VMM |
//! | 0x1c0 | u32 | closed: non-zero once the VMM closed the region for good | VMM |
//! | 0x200 | u32 | session, one more at each format (a guest's new VMM); a pipe's is never 0 | VMM |
//!
//! Indexes run free (they wrap at 2^32; an entry's position is the index modulo the slot
//! count). A disk index word holds the generation it belongs to (the acknowledged epoch)
//! in its high half and the index in its low half, so that an index the previous backend
//! instance left is never taken for one of the current layout.
//!
//! A disk region after the header:
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0x1000 | slots × 32 | request entries: `id` u64 at 0, `sector` u64 at 8, `op` u32 at 16, `len` u32 at 20, `slot` u32 at 24 (VMM) |
//! | 0x1000 + slots × 32 | slots × 16 | response entries: `id` u64 at 0, `status` u32 at 8, `len` u32 at 12 (backend) |
//! | the next page | slots × slot size | data slots: a write's bytes in (VMM), a read's out (backend) |
//!
//! A pipe after the header (slot size 2048):
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0x1000 | slots × 4 | frame lengths, u32 (producer) |
//! | the next page | slots × 2048 | frames (producer) |
//!
//! # Notifications
//!
//! This crate does not signal; the components do, with seL4 notifications, after:
//! - a producer's `publish` returned `true` (a batch of requests, responses or frames);
//! - a backend's [`blk::Backend::start`] (its epoch changed);
//! - the VMM's [`blk::Vmm::poll`] returned [`blk::Event::Resynced`] (it acknowledged an
//!   epoch).
//!
//! Consumers need not signal: a full disk ring cannot happen while slots are free, and a
//! full pipe drops rather than waits. A signalled side calls `poll`, `next_request` or
//! `receive` until it returns `None`; a signal with nothing behind it is harmless.

#![no_std]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "testing"))]
extern crate std;

pub mod blk;
pub mod console;
pub mod error;
mod layout;
pub mod pipe;
#[allow(unsafe_code, reason = "the one module that touches shared memory: every block says why it is sound")]
pub mod shared;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, ProtocolError, RegionError, RequestError, Ring};
pub use layout::{MAGIC, VERSION};
pub use shared::{PAGE, Shared};
