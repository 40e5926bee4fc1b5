//! How a run ends under an emulator: the values the kernel writes to QEMU's `isa-debug-exit`
//! device, and the exit statuses the harness sees.
//!
//! QEMU exits with status `(value << 1) | 1` when a value is written to the device. Its own
//! errors exit 1 and a triple fault with `-no-reboot` exits 0, so every value here is chosen
//! to be distinct from those.

/// I/O port of QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=4`).
pub const EXIT_PORT: u16 = 0xf4;

/// Written when the run succeeded (a test program exited with status 0).
pub const EXIT_SUCCESS: u32 = 0x21;
/// Written when the run failed: a kernel exception or panic, a missing boot module, or a test
/// program that exited with a non-zero status.
pub const EXIT_FAILURE: u32 = 0x22;
/// Written when the kernel is healthy but has nothing left to run (every user thread was
/// stopped by a fault it had no handler for).
pub const EXIT_IDLE: u32 = 0x23;

/// The exit status QEMU reports for a value written to [`EXIT_PORT`].
pub const fn qemu_status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

/// Bochs' shutdown port: writing the bytes `Shutdown` to it ends Bochs with status 1.
pub const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

const _: () = assert!(qemu_status(EXIT_SUCCESS) == 67);
const _: () = assert!(qemu_status(EXIT_FAILURE) == 69);
const _: () = assert!(qemu_status(EXIT_IDLE) == 71);
