//! What the switch reads in a frame: the virtio-net header it carries first, then the
//! Ethernet header's destination and source MAC addresses. Nothing else in a frame is
//! looked at.

use cleave_ioring::pipe::MAX_FRAME;
use core::fmt;

/// The legacy virtio-net header before every frame in a pipe (flags, GSO type, header
/// length, GSO size, checksum start, checksum offset).
pub const HEADER_LEN: usize = 10;
/// The shortest Ethernet frame the switch forwards: a destination, a source and a type.
pub const MIN_ETHERNET: usize = 14;
/// The longest Ethernet frame a pipe carries (without its checksum).
pub const MAX_ETHERNET: usize = 1514;
/// The shortest pipe frame the switch forwards.
pub const MIN_FRAME: usize = HEADER_LEN + MIN_ETHERNET;

const _: () = assert!(MAX_FRAME == HEADER_LEN + MAX_ETHERNET);

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// Whether the address names a group (multicast or broadcast): bit 0 of its first byte.
    /// A group address is never a source and never learnt.
    pub const fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The addresses of a pipe frame at least [`MIN_FRAME`] bytes long: `None` for a shorter
/// one (a runt).
pub(crate) fn addresses(frame: &[u8]) -> Option<(Mac, Mac)> {
    let ethernet = frame.get(HEADER_LEN..)?;
    let destination = ethernet.get(0..6)?.try_into().ok()?;
    let source = ethernet.get(6..12)?.try_into().ok()?;
    // The type field (bytes 12-13) must be there too.
    ethernet.get(12..MIN_ETHERNET)?;
    Some((Mac(destination), Mac(source)))
}
