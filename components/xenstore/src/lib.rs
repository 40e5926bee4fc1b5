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

pub mod connection;
#[cfg(feature = "alloc")]
pub mod logic;
pub mod path;
pub mod perms;
#[cfg(feature = "alloc")]
pub mod state;
#[cfg(feature = "alloc")]
pub mod state_protocol;
#[cfg(feature = "alloc")]
pub mod store;
pub mod wire;

pub use wire::{Error, Header, MsgType, Request};

/// `n` in decimal, written at the end of `buf`; returns the digits.
pub fn decimal(n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut n = n;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}
