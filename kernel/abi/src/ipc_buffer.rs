//! The IPC buffer: a per-thread region of 1 KiB inside a frame, shared between the thread
//! and the kernel, that carries the message words beyond the registers and the capability
//! addresses of a transfer.

use crate::message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS};

/// Size and required alignment of an IPC buffer.
pub const IPC_BUFFER_SIZE: usize = 1024;

/// The IPC buffer layout.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct IpcBuffer {
    /// The last message's [`crate::message::MessageInfo`] (informational).
    pub tag: u64,
    /// Message words; words 0-3 travel in registers, the kernel uses `msg[4..]` here.
    pub msg: [u64; MAX_MESSAGE_WORDS],
    /// Free for the thread's own use (thread-local pointer).
    pub user_data: u64,
    /// On send: addresses of the capabilities to transfer. On receive: badges of
    /// capabilities that were unwrapped.
    pub caps_or_badges: [u64; MAX_EXTRA_CAPS],
    /// Where a received capability goes: CNode (resolved in the receiver's CSpace)…
    pub receive_cnode: u64,
    /// …slot index within it…
    pub receive_index: u64,
    /// …and the depth of `receive_cnode`'s address (0: the CSpace root itself).
    pub receive_depth: u64,
}

const _: () = assert!(core::mem::size_of::<IpcBuffer>() == IPC_BUFFER_SIZE);

/// Byte offset of `msg[i]` within the buffer.
pub const fn message_word_offset(i: usize) -> usize {
    8 + 8 * i
}

// Message words lie one after another (the kernel copies them as one run).
const _: () = assert!(message_word_offset(5) == message_word_offset(4) + 8);

/// Byte offset of `caps_or_badges[i]`.
pub const fn cap_offset(i: usize) -> usize {
    8 + 8 * MAX_MESSAGE_WORDS + 8 + 8 * i
}

/// Byte offset of `receive_cnode`; `receive_index` and `receive_depth` follow.
pub const RECEIVE_OFFSET: usize = 8 + 8 * MAX_MESSAGE_WORDS + 8 + 8 * MAX_EXTRA_CAPS;

const _: () = assert!(core::mem::offset_of!(IpcBuffer, msg) == message_word_offset(0));
const _: () = assert!(core::mem::offset_of!(IpcBuffer, caps_or_badges) == cap_offset(0));
const _: () = assert!(core::mem::offset_of!(IpcBuffer, receive_cnode) == RECEIVE_OFFSET);
