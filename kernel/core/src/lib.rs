//! Kernel logic that needs no machine: parsing what the boot loader hands over, planning
//! physical memory, checking user ELF images, decoding VT-x capabilities, queueing console
//! output.
//!
//! The kernel crate calls into this crate; `cargo test` runs it on the host with fixtures,
//! so the rules that guard the kernel against bad boot data and bad images are tested
//! without an emulator. Nothing here touches hardware, and nothing here is `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

pub mod audit_log;
pub mod console_queue;
pub mod guest_state;
pub mod memory;
pub mod multiboot;
pub mod object;
pub mod svm_caps;
pub mod vmcb;
pub mod vmcs;
pub mod vmx_caps;

pub use addr::{GuestPhysAddr, PhysAddr, VirtAddr};
/// Address newtypes, defined with the kernel-user contract.
pub use cleave_abi::addr;
