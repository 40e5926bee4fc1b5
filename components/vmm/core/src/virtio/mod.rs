//! Legacy virtio devices on the guest's PCI bus: a virtio-blk and a virtio-net device as
//! Linux's `virtio_pci` driver finds them (transitional device IDs, an I/O BAR with the
//! legacy register layout, INTx through the 8259), over split virtqueues in guest RAM.
//!
//! The device side only: [`queue`] walks the guest's rings, [`pci`] is the register
//! interface a guest programs, [`blk`] and [`net`] turn chains into block requests and
//! Ethernet frames. Nothing here reaches a backend: the VMM's loop asks a device, after an
//! exit, for the work the guest posted ([`blk::VirtioBlk::next_request`],
//! [`net::VirtioNet::take_tx`]) and hands it completions and received frames. A queue
//! notify only records which queue was notified ([`pci::Transport::take_notified`]),
//! because the register write has no guest memory at hand.
//!
//! A guest that breaks the queue protocol breaks only that device ([`Broken`]): it does
//! nothing more until the guest resets it (writes status 0). `doc/virtio.md` describes what
//! the devices offer.

pub mod blk;
pub mod disk;
pub mod net;
pub mod network;
pub mod pci;
pub mod queue;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use core::fmt;
pub use queue::QueueError;

/// Device status bits (virtio 1.x, 2.1), as the driver writes them to the status register.
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: the device may use its queues.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation done (not used by legacy drivers).
    pub const FEATURES_OK: u8 = 8;
    /// The device broke and needs a reset (set by the device).
    pub const NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Feature bits every device type may offer (virtio 1.x, 6: "Reserved Feature Bits").
pub mod feature {
    /// The device does not care how a request is cut into buffers (only the order of
    /// its bytes counts). Offered: the devices here read chains as byte streams.
    pub const ANY_LAYOUT: u32 = 1 << 27;
    /// Indirect descriptors. Not offered: a descriptor with the flag breaks the device.
    pub const INDIRECT_DESC: u32 = 1 << 28;
    /// Used and available event indices. Not offered: the driver's flag alone says
    /// whether it wants an interrupt.
    pub const EVENT_IDX: u32 = 1 << 29;
}

/// Why a device stopped until its guest resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Queue {queue}: {error}.
    Queue {
        /// The queue.
        queue: u16,
        /// What the guest did.
        error: QueueError,
    },
    /// A block request (head {head}) has no device-writable byte for its status, so it
    /// cannot be answered.
    NoStatusByte {
        /// The chain's head.
        head: u16,
    },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue { queue, error } => write!(f, "queue {queue}: {error}"),
            Self::NoStatusByte { head } => write!(
                f,
                "a block request (head {head}) has no device-writable byte for its status, so it cannot be answered"
            ),
        }
    }
}
