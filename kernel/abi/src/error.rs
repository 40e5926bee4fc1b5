//! Error codes a system call returns in `rax`, in the spirit of seL4's.

use core::fmt;

/// Why a system call or object invocation failed. The numeric value is what the kernel
/// puts in `rax`; 0 means success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// An argument is outside the range the operation accepts.
    InvalidArgument = 1,
    /// The capability is empty or of the wrong type for the operation.
    InvalidCapability = 2,
    /// The operation is not allowed on this object or in this state.
    IllegalOperation = 3,
    /// A numeric argument is outside its permitted range.
    RangeError = 4,
    /// An address or size is not suitably aligned.
    AlignmentError = 5,
    /// A capability address could not be resolved (guard mismatch, depth, missing level).
    FailedLookup = 6,
    /// The message is shorter than the operation needs.
    TruncatedMessage = 7,
    /// The destination slot is occupied.
    DeleteFirst = 8,
    /// The capability has derived children that must be revoked first.
    RevokeFirst = 9,
    /// The untyped memory has no room for the requested objects.
    NotEnoughMemory = 10,
    /// The capability lacks a right the operation needs.
    InsufficientRights = 11,
    /// The server of this call was stopped (restarted, destroyed) before it replied: the
    /// request may or may not have been carried out. A restarted server's next instance
    /// answers a new call on the same endpoint (`Cap::call_retrying`).
    ReplyLost = 12,
}

impl Error {
    /// Every error, for tables and tests.
    pub const ALL: [Self; 12] = [
        Self::InvalidArgument,
        Self::InvalidCapability,
        Self::IllegalOperation,
        Self::RangeError,
        Self::AlignmentError,
        Self::FailedLookup,
        Self::TruncatedMessage,
        Self::DeleteFirst,
        Self::RevokeFirst,
        Self::NotEnoughMemory,
        Self::InsufficientRights,
        Self::ReplyLost,
    ];

    /// Decodes a non-zero `rax` value; `None` for 0 and for values the ABI does not define.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| *e as u64 == raw)
    }

    /// `Ok(())` for 0, the error otherwise (unknown values become `IllegalOperation`).
    #[inline]
    pub fn check(raw: u64) -> Result<(), Self> {
        match raw {
            0 => Ok(()),
            other => Err(Self::from_raw(other).unwrap_or(Self::IllegalOperation)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::InvalidArgument => "invalid argument",
            Self::InvalidCapability => "invalid capability",
            Self::IllegalOperation => "illegal operation",
            Self::RangeError => "argument out of range",
            Self::AlignmentError => "misaligned address or size",
            Self::FailedLookup => "capability lookup failed",
            Self::TruncatedMessage => "message too short",
            Self::DeleteFirst => "destination slot is occupied",
            Self::RevokeFirst => "capability has children: revoke first",
            Self::NotEnoughMemory => "not enough untyped memory",
            Self::InsufficientRights => "capability lacks the needed rights",
            Self::ReplyLost => "the server stopped before it replied",
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_success() {
        for e in Error::ALL {
            assert_eq!(Error::from_raw(e as u64), Some(e));
            assert_eq!(Error::check(e as u64), Err(e));
        }
        assert_eq!(Error::from_raw(0), None);
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(999), Err(Error::IllegalOperation));
    }
}
