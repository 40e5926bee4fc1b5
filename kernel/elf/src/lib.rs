//! ELF images Cleave loads, checked before anything is mapped: user programs (loaded by the
//! kernel for the root task and by the capDL loader for every component) and the kernel
//! itself (checked by the build against what a Multiboot loader does). Its own crate so
//! that the kernel and the loader share it without the loader depending on the kernel.
#![no_std]

pub mod kernel_image;
pub mod user_image;

/// A builder for small ELF files, for tests here and in crates whose tests need programs
/// (`features = ["test-elf"]`, a dev-dependency).
#[cfg(any(test, feature = "test-elf"))]
pub mod test_elf;
