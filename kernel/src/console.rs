//! The kernel console: `kprint!` and `kprintln!` to COM1.

use crate::arch::serial;
use core::fmt;

/// A `fmt::Write` sink for the serial console; newlines become CR LF.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                serial::write_byte(b'\r');
            }
            serial::write_byte(byte);
        }
        Ok(())
    }
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        // Writing to the console cannot fail.
        let _ = write!($crate::console::Console, $($arg)*);
    }};
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}
