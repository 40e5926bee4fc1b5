//! The debug console: `print!`/`println!` through the kernel's debug put-char call.

use core::fmt;

/// A `fmt::Write` sink over [`crate::syscall::debug_put_char`].
pub struct DebugConsole;

impl fmt::Write for DebugConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                crate::syscall::debug_put_char(b'\r');
            }
            crate::syscall::debug_put_char(byte);
        }
        Ok(())
    }
}

/// Prints to the debug console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        // The debug console cannot fail.
        let _ = write!($crate::console::DebugConsole, $($arg)*);
    }};
}

/// Prints a line to the debug console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::DebugConsole, $($arg)*);
    }};
}

/// Microseconds since boot as the audit log counts them: the time-stamp counter taken as
/// 1 GHz (under QEMU's `-icount` and in Bochs it counts instructions; the log only needs
/// an order and rough intervals).
pub fn audit_time() -> u64 {
    crate::syscall::rdtsc() / 1000
}

/// Records one audit-log event (`cleave::audit`'s format, without the time): the kernel
/// keeps it in its audit log stamped with the time and this thread's name (`cleave ctl
/// audit` reads it there) and writes `audit: TIME WRITER EVENT` to the console, from which
/// the host collects its own copy. The event is this thread's console line so far: call it
/// at the start of a line. An event the kernel refuses (longer than 160 bytes, not
/// printable ASCII) is reported on the console instead.
#[macro_export]
macro_rules! audit {
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        if let Err(e) = $crate::syscall::audit_event() {
            $crate::println!("the kernel refused an audit event: {e:?}");
        }
    }};
}
