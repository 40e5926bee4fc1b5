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
