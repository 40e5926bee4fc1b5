//! The legacy virtio-pci interface of a virtio-blk device, as this driver uses it: the
//! register file in I/O BAR 0, the status and feature bits, the split virtqueue's legacy
//! layout, and virtio-blk's request numbers (virtio 1.x, 2.7 "Split Virtqueues" with its
//! "Legacy Interfaces" notes, 4.1.4.8 "Legacy Interfaces: A Note on PCI Device Layout",
//! 5.2 "Block Device"). Legacy fields are in the guest's native byte order, which on x86 is
//! little-endian.

/// Offsets in BAR 0 (without MSI-X: the device-specific configuration follows the common
/// header directly).
pub mod register {
    /// The features the device offers, 32 bits, read-only.
    pub const HOST_FEATURES: u16 = 0x00;
    /// The features the driver accepts, 32 bits.
    pub const GUEST_FEATURES: u16 = 0x04;
    /// The selected queue's address in 4096-byte pages, 32 bits; 0 takes the queue down.
    pub const QUEUE_PFN: u16 = 0x08;
    /// The selected queue's size, 16 bits, read-only: a legacy driver cannot change it.
    pub const QUEUE_SIZE: u16 = 0x0c;
    /// Queue select, 16 bits.
    pub const QUEUE_SELECT: u16 = 0x0e;
    /// Queue notify, 16 bits: the number of a queue with new available buffers.
    pub const QUEUE_NOTIFY: u16 = 0x10;
    /// Device status, 8 bits; writing 0 resets the device.
    pub const STATUS: u16 = 0x12;
    /// ISR status, 8 bits; reading it clears it (and lowers INTx).
    pub const ISR: u16 = 0x13;
    /// The device-specific configuration (`virtio_blk_config`).
    pub const CONFIG: u16 = 0x14;
}

/// Offsets in the device-specific configuration.
pub mod config {
    /// The capacity in 512-byte sectors, 64 bits.
    pub const CAPACITY: u16 = 0x00;
    /// The largest segment (`size_max`), 32 bits, valid with [`super::feature::SIZE_MAX`].
    pub const SIZE_MAX: u16 = 0x08;
    /// The most segments in a request (`seg_max`), 32 bits, valid with
    /// [`super::feature::SEG_MAX`].
    pub const SEG_MAX: u16 = 0x0c;
}

/// Device status bits.
pub mod status {
    /// The driver noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The driver can drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready; the device may use its queues.
    pub const DRIVER_OK: u8 = 4;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// ISR status bits.
pub mod isr {
    /// The device used buffers.
    pub const QUEUE: u8 = 1;
    /// The device's configuration changed.
    pub const CONFIG: u8 = 2;
}

/// virtio-blk feature bits (the low 32, all a legacy device has).
pub mod feature {
    /// `size_max` bounds each segment.
    pub const SIZE_MAX: u32 = 1 << 1;
    /// `seg_max` bounds the segments of a request.
    pub const SEG_MAX: u32 = 1 << 2;
    /// The disk is read-only.
    pub const READ_ONLY: u32 = 1 << 5;
    /// The device has a write cache and does FLUSH requests (legacy name: WCE).
    pub const FLUSH: u32 = 1 << 9;
    /// What this driver accepts of what a device offers: the limits it must respect, the
    /// read-only bit (so writes are refused here), and FLUSH. Nothing else changes how
    /// requests are framed or answered.
    pub const ACCEPTED: u32 = SIZE_MAX | SEG_MAX | READ_ONLY | FLUSH;
}

/// virtio-blk request types (the header's first field).
pub mod request_type {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// The device's identifier.
    pub const GET_ID: u32 = 8;
}

/// The request header: type u32, reserved u32, sector u64.
pub const HEADER_LEN: usize = 16;
/// The most bytes of a GET_ID answer (a NUL-padded string).
pub const ID_BYTES: u32 = 20;
/// Bytes per sector, whatever the device's block size.
pub const SECTOR: u32 = 512;

/// Descriptor flags.
pub mod descriptor {
    /// The size of a descriptor: address u64, length u32, flags u16, next u16.
    pub const SIZE: usize = 16;
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The buffer is device-writable.
    pub const WRITE: u16 = 2;
}

/// The legacy queue alignment, and the unit of the queue's PFN.
pub const QUEUE_ALIGN: usize = 4096;
/// The largest queue size a split virtqueue can have.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Where the parts of a legacy split virtqueue of `size` entries are, from its start: the
/// descriptor table, the available ring right after it, the used ring at the next
/// [`QUEUE_ALIGN`] boundary; `bytes` is the whole, rounded up to the alignment (the
/// formula of the legacy layout note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Entries (a power of two up to [`MAX_QUEUE_SIZE`]).
    pub size: u16,
    /// Offset of the available ring (flags u16, idx u16, `ring[size]` u16, used_event u16).
    pub avail: usize,
    /// Offset of the used ring (flags u16, idx u16, `ring[size]` of (id u32, len u32),
    /// avail_event u16).
    pub used: usize,
    /// Bytes the queue occupies.
    pub bytes: usize,
}

impl QueueLayout {
    /// The layout of a queue of `size` entries, if a split virtqueue can have that size.
    pub fn new(size: u16) -> Option<Self> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let entries = usize::from(size);
        let avail = descriptor::SIZE * entries;
        let used = (avail + 2 * (3 + entries)).next_multiple_of(QUEUE_ALIGN);
        let bytes = used + (2 * 3 + 8 * entries).next_multiple_of(QUEUE_ALIGN);
        Some(Self { size, avail, used, bytes })
    }

    /// Offset of descriptor `index` (below `size`).
    pub fn descriptor(&self, index: u16) -> usize {
        descriptor::SIZE * usize::from(index)
    }

    /// Offset of the available ring's index.
    pub fn avail_index(&self) -> usize {
        self.avail + 2
    }

    /// Offset of the available ring's entry for free-running index `index`.
    pub fn avail_entry(&self, index: u16) -> usize {
        self.avail + 4 + 2 * usize::from(index & (self.size - 1))
    }

    /// Offset of the used ring's index.
    pub fn used_index(&self) -> usize {
        self.used + 2
    }

    /// Offset of the used ring's entry for free-running index `index`.
    pub fn used_entry(&self, index: u16) -> usize {
        self.used + 4 + 8 * usize::from(index & (self.size - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::QueueLayout;

    #[test]
    fn the_legacy_queue_layout() {
        // 256 entries (QEMU's default): 4 KiB of descriptors, the available ring in the
        // second page, the used ring in the third.
        let q = QueueLayout::new(256).unwrap();
        assert_eq!((q.avail, q.used, q.bytes), (4096, 8192, 12288));
        assert_eq!((q.avail_entry(256 + 3), q.used_entry(u16::MAX)), (4096 + 4 + 6, 8192 + 4 + 8 * 255));
        // 128 entries: descriptors and available ring share a page.
        let q = QueueLayout::new(128).unwrap();
        assert_eq!((q.avail, q.used, q.bytes), (2048, 4096, 8192));
        // The largest: 512 KiB of descriptors.
        let q = QueueLayout::new(32768).unwrap();
        assert_eq!((q.avail, q.used), (524288, 524288 + 69632));
        for bad in [0, 3, 100, 0xffff] {
            assert_eq!(QueueLayout::new(bad), None, "{bad}");
        }
    }
}
