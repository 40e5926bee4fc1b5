//! System call numbers and the register convention.
//!
//! A user thread executes `syscall` with:
//!
//! | register | in                         | out                               |
//! | -------- | -------------------------- | --------------------------------- |
//! | `rax`    | system call number         | 0 on success, or an [`Error`] code |
//! | `rdi`    | argument 0                 | result 0                          |
//! | `rsi`    | argument 1                 | result 1                          |
//! | `rdx`    | argument 2                 | result 2                          |
//! | `r8`     | argument 3                 | result 3                          |
//! | `r9`     | argument 4                 | result 4                          |
//! | `r10`    | argument 5                 | result 5                          |
//! | `rcx`, `r11` | destroyed by the `syscall` instruction (return RIP and RFLAGS) | |
//!
//! Every other register is preserved. A number the kernel does not know is not an error
//! return: it is a fault of the calling thread (see `doc/abi.md`).
//!
//! [`Error`]: crate::Error

/// A system call number, passed in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Syscall {
    /// Write the byte in `rdi` to the kernel's debug console (COM1). Debug builds only.
    DebugPutChar = 0x100,
    /// End the whole run: the kernel reports the status in `rdi` (0 = success) and stops the
    /// emulator with [`crate::debug::EXIT_SUCCESS`] or [`crate::debug::EXIT_FAILURE`].
    /// Meant for test programs; debug builds only.
    DebugExit = 0x101,
}

impl Syscall {
    /// Decodes a raw number from `rax`; `None` for numbers the kernel does not implement.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0x100 => Some(Self::DebugPutChar),
            0x101 => Some(Self::DebugExit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for s in [Syscall::DebugPutChar, Syscall::DebugExit] {
            assert_eq!(Syscall::from_raw(s as u64), Some(s));
        }
        assert_eq!(Syscall::from_raw(0), None);
        assert_eq!(Syscall::from_raw(u64::MAX), None);
    }
}
