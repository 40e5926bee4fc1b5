//! What the kernel gives the root task: the BootInfo page and its IPC buffer.

use cleave_abi::boot_info::{BOOT_INFO_ADDRESS, BootInfo, ROOT_IPC_BUFFER_ADDRESS};
use cleave_abi::ipc_buffer::IpcBuffer;

/// The BootInfo page (root task only).
pub fn boot_info() -> &'static BootInfo {
    // SAFETY: the kernel maps the BootInfo page read-only at BOOT_INFO_ADDRESS in the root
    // task before it starts, never changes it, and never unmaps it; it is page aligned
    // and holds a `BootInfo`, which has no invalid bit patterns.
    unsafe { &*(BOOT_INFO_ADDRESS as *const BootInfo) }
}

/// Writes message word `index` (4 or more: the first four travel in registers) into the
/// root task's IPC buffer.
pub fn set_message_word(index: usize, value: u64) {
    let buffer = ROOT_IPC_BUFFER_ADDRESS as *mut IpcBuffer;
    if let Some(slot) = (index < cleave_abi::message::MAX_MESSAGE_WORDS).then_some(index) {
        // SAFETY: the kernel maps the root task's IPC buffer read-write at
        // ROOT_IPC_BUFFER_ADDRESS; the program is single-threaded, so no other reference
        // to it is live; the index is in bounds (checked).
        unsafe { (&raw mut (*buffer).msg[slot]).write_volatile(value) }
    }
}

/// Reads message word `index` of a reply (4 or more: past the registers) from the root
/// task's IPC buffer; 0 past the buffer's end.
pub fn message_word(index: usize) -> u64 {
    let buffer = ROOT_IPC_BUFFER_ADDRESS as *const IpcBuffer;
    match (index < cleave_abi::message::MAX_MESSAGE_WORDS).then_some(index) {
        // SAFETY: as in `set_message_word`; reading has no side effect.
        Some(slot) => unsafe { (&raw const (*buffer).msg[slot]).read_volatile() },
        None => 0,
    }
}

/// Names the capability (`cptr`, in the sender's CSpace) that the next message sent with
/// `extra_caps = 1` transfers, in the IPC buffer at `buffer`.
pub fn set_transfer_cap(buffer: u64, cptr: u64) {
    let buffer = buffer as *mut IpcBuffer;
    // SAFETY: `buffer` is the caller's own IPC buffer, mapped read-write (the kernel
    // refuses to configure an unaligned one); single writer, field in bounds.
    unsafe { (&raw mut (*buffer).caps_or_badges[0]).write_volatile(cptr) }
}

/// Says where a received capability goes: slot `index` (resolved with `depth` bits) of the
/// CNode at `cnode`, in the IPC buffer at `buffer`.
pub fn set_receive_slot(buffer: u64, cnode: u64, index: u64, depth: u64) {
    let buffer = buffer as *mut IpcBuffer;
    // SAFETY: as in `set_transfer_cap`.
    unsafe {
        (&raw mut (*buffer).receive_cnode).write_volatile(cnode);
        (&raw mut (*buffer).receive_index).write_volatile(index);
        (&raw mut (*buffer).receive_depth).write_volatile(depth);
    }
}
