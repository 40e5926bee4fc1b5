//! The core of Cleave's per-guest virtual machine monitor, as pure logic that builds for
//! the host (tested with `cargo test`) and for `x86_64-unknown-none` (the VMM component):
//! exit handling ([`vm`]), device models (the PC's in [`devices`], virtio's in
//! [`virtio`]), the CPUID policy, MMIO instruction emulation, the guest's paging and
//! long-mode set-up, ELF loading, and Linux's boot protocol.
#![no_std]
#![forbid(unsafe_code)]

// PCI devices are trait objects on the bus (the VMM component has a heap).
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cpuid;
pub mod devices;
pub mod elf;
pub mod guest;
pub mod linux;
pub mod mmio;
pub mod paging;
pub mod test_device;
pub mod virtio;
pub mod vm;
