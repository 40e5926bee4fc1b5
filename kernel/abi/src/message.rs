//! `MessageInfo`: the word that describes a message (label, length, capabilities).
//!
//! Bit layout (as in seL4 on 64-bit): length in bits 0-6, extra capabilities in bits 7-8,
//! unwrapped-capability mask in bits 9-11, label in bits 12-63.

/// Most message words a message carries (registers plus IPC buffer).
pub const MAX_MESSAGE_WORDS: usize = 120;
/// Most capabilities a message carries.
pub const MAX_EXTRA_CAPS: usize = 3;

/// The descriptor of a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo(pub u64);

impl MessageInfo {
    /// Builds a descriptor; `length` is clamped to [`MAX_MESSAGE_WORDS`], `extra_caps` to
    /// [`MAX_EXTRA_CAPS`], `label` to 52 bits.
    pub const fn new(label: u64, caps_unwrapped: u64, extra_caps: u64, length: u64) -> Self {
        let length = if length > MAX_MESSAGE_WORDS as u64 { MAX_MESSAGE_WORDS as u64 } else { length };
        let extra = if extra_caps > MAX_EXTRA_CAPS as u64 { MAX_EXTRA_CAPS as u64 } else { extra_caps };
        Self((label << 12) | ((caps_unwrapped & 0x7) << 9) | (extra << 7) | length)
    }
    /// The label: the operation for invocations, free for user protocols.
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }
    /// Which transferred capabilities were unwrapped into badges (bit i = cap i).
    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> 9) & 0x7
    }
    /// Number of capabilities the message carries (at most [`MAX_EXTRA_CAPS`]).
    pub const fn extra_caps(self) -> usize {
        let n = ((self.0 >> 7) & 0x3) as usize;
        if n > MAX_EXTRA_CAPS { MAX_EXTRA_CAPS } else { n }
    }
    /// Number of message words (at most [`MAX_MESSAGE_WORDS`]).
    pub const fn length(self) -> usize {
        let n = (self.0 & 0x7f) as usize;
        if n > MAX_MESSAGE_WORDS { MAX_MESSAGE_WORDS } else { n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_clamp() {
        let m = MessageInfo::new(0xabcde, 5, 2, 17);
        assert_eq!((m.label(), m.caps_unwrapped(), m.extra_caps(), m.length()), (0xabcde, 5, 2, 17));
        let big = MessageInfo::new(1, 0, 9, 500);
        assert_eq!((big.extra_caps(), big.length()), (3, 120));
        // A raw word from user space with length bits above the maximum is clamped.
        assert_eq!(MessageInfo(0x7f).length(), 120);
        assert_eq!(MessageInfo::new(u64::MAX >> 12, 0, 0, 0).label(), u64::MAX >> 12);
    }
}
