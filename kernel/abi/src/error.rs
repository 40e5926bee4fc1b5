//! Error codes a system call returns in `rax`.

/// Why a system call failed. The numeric value is what the kernel puts in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// An argument is outside the range the call accepts.
    InvalidArgument = 1,
}

impl Error {
    /// Decodes a non-zero `rax` value; `None` for values the ABI does not define.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            1 => Some(Self::InvalidArgument),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_not_an_error() {
        assert_eq!(Error::from_raw(0), None);
        assert_eq!(Error::from_raw(1), Some(Error::InvalidArgument));
    }
}
