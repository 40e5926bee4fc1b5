//! blkback's logic, host-testable: a driver for the machine's disk (a legacy virtio-blk
//! PCI device, as QEMU's `virtio-blk-pci` offers it) and the server that gives each guest's
//! disk ring (`cleave-ioring`) a slice of that disk.
//!
//! The blkback component wires this crate to real capabilities: it implements [`PortIo`]
//! over the device's I/O ports and [`Dma`] over one physically contiguous frame range,
//! builds a [`Driver`], adds a client per guest ([`Server::add_client`]) with the region
//! and slice its system description names, and then, whenever a notification arrives (a
//! VMM's signal or the device's interrupt, after [`Driver::interrupt`]), calls
//! [`Server::poll`] and signals the clients it returns (polling again at once while it
//! says so).
//!
//! - [`legacy`]: the register file, feature bits and queue layout of the legacy interface.
//! - [`driver`]: the device driver, which checks everything the device writes.
//! - [`server`]: the clients, their slices, and the path of a request.
//!
//! `no_std` with `alloc` (the request table and one bounce buffer are sized at start-up),
//! no `unsafe`; `doc/io-path.md` ("blkback") describes the design.

#![no_std]
#![cfg_attr(not(test), forbid(unsafe_code))]
// The tests build disk regions in heap memory, which takes `Shared::new`.
#![cfg_attr(test, deny(unsafe_code))]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod driver;
pub mod legacy;
pub mod server;
#[cfg(test)]
mod tests;

pub use driver::{
    Broken, Command, Completion, Dma, Driver, InitError, Interrupt, Limits, PortIo, Status, Token,
};
pub use server::{AddError, ClientId, Counters, Polled, Server, Signals, Slice};
