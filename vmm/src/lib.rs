//! The core of Cleave's per-guest virtual machine monitor, as pure logic that builds for
//! the host (tested with `cargo test`) and for `x86_64-unknown-none` (the VMM component):
//! device models and the CPUID policy now; the rest of exit handling arrives with the
//! VT-x work (issue 5).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod cpuid;
pub mod devices;
