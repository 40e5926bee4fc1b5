//! The contract between the Cleave kernel and everything that runs on it.
//!
//! Everything both sides must agree on is defined here once, never copied: system call
//! numbers and their register convention, error codes, the user address-space layout the
//! kernel guarantees, and the debug-exit values the emulator harness recognises.
//! `doc/abi.md` is the prose version of this crate; keep them in step.
#![no_std]
#![forbid(unsafe_code)]

pub mod debug;
pub mod error;
pub mod layout;
pub mod syscall;

pub use error::Error;
pub use syscall::Syscall;
