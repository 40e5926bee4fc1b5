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
