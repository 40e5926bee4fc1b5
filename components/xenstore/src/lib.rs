//! XenStore as Xen defines it on the wire (`xs_wire.h`): message framing, request
//! decoding, reply encoding, error strings, path rules and permissions. `no_std` and
//! allocation-free: requests borrow from the message they were read from. XenStore-Logic,
//! XenStore-State and the host daemon (`cleave xenstored`) share it; `cargo test` covers it.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "alloc")]
pub mod logic;
pub mod path;
pub mod perms;
#[cfg(feature = "alloc")]
pub mod store;
pub mod wire;

pub use wire::{Error, Header, MsgType, Request};
