//! The contract between the Cleave kernel and everything that runs on it.
//!
//! Everything both sides must agree on is defined here once, never copied: system call
//! numbers and their register convention, error codes, message descriptors, the IPC buffer,
//! object types and sizes, rights, invocation labels, the BootInfo page and well-known
//! slots, the user address-space layout, and the debug-exit values the emulator harness
//! recognises. Layouts are pinned by `const` assertions.
//! `doc/abi.md` is the prose version of this crate; keep them in step.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod boot_info;
pub mod debug;
pub mod error;
pub mod ipc_buffer;
pub mod layout;
pub mod message;
pub mod object;
pub mod platform;
pub mod syscall;
pub mod vcpu;

pub use error::Error;

/// The badge word of a mutate of an untyped capability: this bit restricts it to making
/// frames: no thread, CNode, Vcpu, endpoint, table or smaller untyped (which could escape
/// the restriction) can come from it. Nothing lifts it. Any other bit is refused.
pub const UNTYPED_FRAMES_ONLY: u64 = 1;
pub use message::MessageInfo;
pub use object::{ObjectType, Rights};
pub use syscall::Syscall;
