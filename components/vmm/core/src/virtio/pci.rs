//! The legacy virtio-pci transport: a PCI function with Red Hat's virtio vendor ID, a
//! transitional device ID (0x1000 + type - 1) and the virtio device type as subsystem ID,
//! revision 0 (the legacy ABI, which Linux's `virtio_pci_legacy_probe` requires), INTA, and
//! BAR 0 an I/O region holding the legacy header followed by the device-specific
//! configuration. There is no capability list (so Linux's modern probe leaves the device
//! to the legacy driver) and no MSI-X (so the configuration starts at 0x14).
//!
//! The register file (little-endian, any access width; each byte lands in the field it
//! belongs to):
//!
//! | offset | size | register | access |
//! | --- | --- | --- | --- |
//! | 0x00 | 4 | host (device) features | read |
//! | 0x04 | 4 | guest (driver) features | read, write (kept to the offered ones) |
//! | 0x08 | 4 | the selected queue's PFN (address / 4096; 0 takes it down) | read, write |
//! | 0x0c | 2 | the selected queue's size (0 past the last queue) | read |
//! | 0x0e | 2 | queue select | read, write |
//! | 0x10 | 2 | queue notify | write |
//! | 0x12 | 1 | device status (0 resets the device) | read, write |
//! | 0x13 | 1 | ISR status: bit 0 queue, bit 1 configuration; a read clears it | read |
//! | 0x14 | - | device-specific configuration | read |
//!
//! The function's INTx line is high while the ISR status is not zero.

use super::queue::{Chain, Queue};
use super::{Broken, status};
use crate::devices::pci::{BarKind, ConfigSpace, offset};
use crate::guest::GuestMemory;
use alloc::vec::Vec;

/// Red Hat's vendor ID for virtio devices (also the subsystem vendor).
pub const VENDOR: u16 = 0x1af4;

/// Registers: offsets in BAR 0.
pub mod register {
    /// Host (device) features, 32 bits.
    pub const HOST_FEATURES: u64 = 0x00;
    /// Guest (driver) features, 32 bits.
    pub const GUEST_FEATURES: u64 = 0x04;
    /// The selected queue's page frame number, 32 bits.
    pub const QUEUE_PFN: u64 = 0x08;
    /// The selected queue's size, 16 bits.
    pub const QUEUE_SIZE: u64 = 0x0c;
    /// Queue select, 16 bits.
    pub const QUEUE_SELECT: u64 = 0x0e;
    /// Queue notify, 16 bits.
    pub const QUEUE_NOTIFY: u64 = 0x10;
    /// Device status, 8 bits.
    pub const STATUS: u64 = 0x12;
    /// ISR status, 8 bits.
    pub const ISR: u64 = 0x13;
    /// The device-specific configuration (without MSI-X).
    pub const CONFIG: u64 = 0x14;
}

/// ISR status bits.
pub mod isr {
    /// A queue has used buffers.
    pub const QUEUE: u8 = 1;
    /// The device's configuration changed.
    pub const CONFIG: u8 = 2;
}

/// Where the VMM, acting as firmware, puts the I/O BAR of the virtio device in PCI slot
/// `n` (1-31): `IO_BASE + IO_STRIDE * n`, so 0xc100-0xdfff, clear of every PC port.
pub const IO_BASE: u16 = 0xc000;
/// See [`IO_BASE`]: each slot's 256 ports, of which a device uses its BAR's size.
pub const IO_STRIDE: u16 = 0x100;

/// The I/O BAR address of the device in `slot` (taken modulo 32; slots are 1-31).
pub fn io_bar(slot: u8) -> u16 {
    IO_BASE + IO_STRIDE * u16::from(slot & 0x1f)
}

/// The virtio device types offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    /// A network card (virtio type 1).
    Net,
    /// A block device (virtio type 2).
    Block,
}

impl DeviceType {
    /// The virtio device type: the PCI subsystem ID.
    pub fn id(self) -> u16 {
        match self {
            Self::Net => 1,
            Self::Block => 2,
        }
    }

    /// The transitional PCI device ID.
    pub fn pci_device(self) -> u16 {
        match self {
            Self::Net => 0x1000,
            Self::Block => 0x1001,
        }
    }

    /// The PCI class code: an Ethernet controller, a mass-storage controller of class
    /// "other" (what QEMU gives virtio-blk).
    pub fn class(self) -> u32 {
        match self {
            Self::Net => 0x02_00_00,
            Self::Block => 0x01_80_00,
        }
    }
}

/// The transport's state: the PCI function and the legacy registers, the queues, whether
/// the device is broken.
pub struct Transport {
    config: ConfigSpace,
    host_features: u32,
    guest_features: u32,
    queues: Vec<Queue>,
    select: u16,
    status: u8,
    isr: u8,
    /// Queues notified since [`Transport::take_notified`] (bit n: queue n).
    notified: u32,
    /// The device-specific configuration (read-only to the guest).
    device_config: Vec<u8>,
    broken: Option<Broken>,
    breaks: u64,
    resets: u32,
}

/// The legacy header fields, (offset, size), in order.
const FIELDS: [(u64, usize); 8] = [
    (register::HOST_FEATURES, 4),
    (register::GUEST_FEATURES, 4),
    (register::QUEUE_PFN, 4),
    (register::QUEUE_SIZE, 2),
    (register::QUEUE_SELECT, 2),
    (register::QUEUE_NOTIFY, 2),
    (register::STATUS, 1),
    (register::ISR, 1),
];

impl Transport {
    /// A device of `kind` offering `host_features`, with `queues` queues (at most 32) of
    /// `queue_size` entries and `device_config` after the header; BAR 0 is sized to hold
    /// both and not yet placed.
    pub fn new(
        kind: DeviceType,
        host_features: u32,
        queues: u16,
        queue_size: u16,
        device_config: Vec<u8>,
    ) -> Self {
        let mut config = ConfigSpace::new(VENDOR, kind.pci_device(), kind.class(), 0);
        config.set_subsystem(VENDOR, kind.id());
        config.set_interrupt_pin(1);
        let size = (register::CONFIG + device_config.len() as u64).next_power_of_two();
        // BAR 0 of a function always fits.
        config.set_bar(0, BarKind::Io, size);
        Self {
            config,
            host_features,
            guest_features: 0,
            queues: (0..queues.min(32)).map(|_| Queue::new(queue_size)).collect(),
            select: 0,
            status: 0,
            isr: 0,
            notified: 0,
            device_config,
            broken: None,
            breaks: 0,
            resets: 0,
        }
    }

    /// Places BAR 0 at `port`, as firmware does before the guest starts.
    pub fn place(&mut self, port: u16) {
        self.config.write(offset::BAR0, 4, u32::from(port));
    }

    /// The configuration space.
    pub fn config(&self) -> &ConfigSpace {
        &self.config
    }

    /// The configuration space, to change.
    pub fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    /// The features the device offers.
    pub fn host_features(&self) -> u32 {
        self.host_features
    }

    /// The features the driver took.
    pub fn guest_features(&self) -> u32 {
        self.guest_features
    }

    /// The device status as the driver wrote it (without [`status::NEEDS_RESET`]).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The ISR status.
    pub fn isr(&self) -> u8 {
        self.isr
    }

    /// Queue `index`, if the device has it.
    pub fn queue(&self, index: u16) -> Option<&Queue> {
        self.queues.get(usize::from(index))
    }

    /// Why the device is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// How many times a guest broke the device.
    pub fn breaks(&self) -> u64 {
        self.breaks
    }

    /// How many times the guest reset the device (status 0): requests taken before the
    /// last reset are void.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// The queues notified since the last call (bit n: queue n), forgetting them. Writing
    /// DRIVER_OK counts as a notify of every queue, so work posted before it is seen.
    pub fn take_notified(&mut self) -> u32 {
        core::mem::take(&mut self.notified)
    }

    /// Whether queue `index` may be used now: the driver said DRIVER_OK, set the queue
    /// up, and the device is not broken.
    pub fn usable(&self, index: u16) -> bool {
        self.broken.is_none()
            && self.status & status::DRIVER_OK != 0
            && self.queue(index).is_some_and(Queue::is_ready)
    }

    /// Stops the device for `why` (the first reason is kept).
    pub fn fail(&mut self, why: Broken) {
        if self.broken.is_none() {
            self.broken = Some(why);
            self.breaks += 1;
        }
    }

    /// Whether queue `index` is usable and has a chain the device has not taken; a queue
    /// error breaks the device.
    pub fn has_available(&mut self, index: u16, mem: &impl GuestMemory) -> bool {
        if !self.usable(index) {
            return false;
        }
        let Some(queue) = self.queues.get(usize::from(index)) else { return false };
        match queue.has_available(mem) {
            Ok(available) => available,
            Err(error) => {
                self.fail(Broken::Queue { queue: index, error });
                false
            }
        }
    }

    /// The next chain on queue `index`, if the queue is usable and has one; a queue error
    /// breaks the device.
    pub fn pop(&mut self, index: u16, mem: &impl GuestMemory) -> Option<Chain> {
        if !self.usable(index) {
            return None;
        }
        let queue = self.queues.get_mut(usize::from(index))?;
        match queue.pop(mem) {
            Ok(chain) => chain,
            Err(error) => {
                self.fail(Broken::Queue { queue: index, error });
                None
            }
        }
    }

    /// Gives the chain from `head` back on queue `index` with `written` bytes filled, and
    /// interrupts unless the driver suppressed it; false (nothing done) if the device is
    /// broken or does not hold that head. A queue error breaks the device.
    pub fn push_used(&mut self, index: u16, mem: &mut impl GuestMemory, head: u16, written: u32) -> bool {
        if !self.usable(index) {
            return false;
        }
        let Some(queue) = self.queues.get_mut(usize::from(index)) else { return false };
        let pushed = queue.push_used(mem, head, written).and_then(|pushed| {
            let interrupt = pushed && queue.interrupt_wanted(mem)?;
            Ok((pushed, interrupt))
        });
        match pushed {
            Ok((pushed, interrupt)) => {
                if interrupt {
                    self.isr |= isr::QUEUE;
                }
                pushed
            }
            Err(error) => {
                self.fail(Broken::Queue { queue: index, error });
                false
            }
        }
    }

    /// Status 0: queues forgotten, features cleared, the ISR and any breakage cleared.
    fn reset(&mut self) {
        for queue in &mut self.queues {
            queue.reset();
        }
        self.guest_features = 0;
        self.select = 0;
        self.status = 0;
        self.isr = 0;
        self.notified = 0;
        self.broken = None;
        self.resets = self.resets.wrapping_add(1);
    }

    /// The value of the header field at `at` (one of [`FIELDS`]) as a read sees it.
    fn field(&self, at: u64) -> u32 {
        let selected = self.queue(self.select);
        match at {
            register::HOST_FEATURES => self.host_features,
            register::GUEST_FEATURES => self.guest_features,
            register::QUEUE_PFN => selected.map_or(0, Queue::pfn),
            register::QUEUE_SIZE => selected.map_or(0, |q| u32::from(q.size())),
            register::QUEUE_SELECT => u32::from(self.select),
            register::STATUS => {
                let needs_reset = if self.broken.is_some() { status::NEEDS_RESET } else { 0 };
                u32::from(self.status | needs_reset)
            }
            register::ISR => u32::from(self.isr),
            _ => 0,
        }
    }

    /// A guest write of `value` to the header field at `at`.
    fn set_field(&mut self, at: u64, value: u32) {
        match at {
            register::GUEST_FEATURES => self.guest_features = value & self.host_features,
            register::QUEUE_PFN => {
                if let Some(queue) = self.queues.get_mut(usize::from(self.select)) {
                    queue.set_pfn(value);
                }
            }
            register::QUEUE_SELECT => self.select = value as u16,
            register::QUEUE_NOTIFY => {
                if let Some(bit) = 1u32.checked_shl(value & 0xffff)
                    && usize::from(value as u16) < self.queues.len()
                {
                    self.notified |= bit;
                }
            }
            register::STATUS => {
                let value = value as u8;
                if value == 0 {
                    self.reset();
                    return;
                }
                if value & status::DRIVER_OK != 0 && self.status & status::DRIVER_OK == 0 {
                    self.notified |= 1u32.checked_shl(self.queues.len() as u32).map_or(u32::MAX, |b| b - 1);
                }
                self.status = value & !status::NEEDS_RESET;
            }
            // Host features, queue size and the ISR are read-only.
            _ => {}
        }
    }

    /// A read of `data.len()` bytes at `offset` in BAR 0. Reading the ISR status clears
    /// it (and so lowers the INTx line).
    pub fn bar_read(&mut self, offset: u64, data: &mut [u8]) {
        let mut isr_read = false;
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            *byte = if at < register::CONFIG {
                let Some(&(field, _)) = FIELDS.iter().rev().find(|(field, _)| *field <= at) else { continue };
                isr_read |= field == register::ISR;
                self.field(field).to_le_bytes()[(at - field) as usize % 4]
            } else {
                let index = usize::try_from(at - register::CONFIG).unwrap_or(usize::MAX);
                self.device_config.get(index).copied().unwrap_or(0xff)
            };
        }
        if isr_read {
            self.isr = 0;
        }
    }

    /// A write of `data` at `offset` in BAR 0: each header field it touches takes the
    /// bytes it covers (the rest of the field keeps its value; a notify's rest is 0).
    /// The device-specific configuration is read-only.
    pub fn bar_write(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        for (field, size) in FIELDS {
            let field_end = field + size as u64;
            if end <= field || offset >= field_end {
                continue;
            }
            let mut bytes =
                if field == register::QUEUE_NOTIFY { [0; 4] } else { self.field(field).to_le_bytes() };
            for at in offset.max(field)..end.min(field_end) {
                bytes[(at - field) as usize] = data[(at - offset) as usize];
            }
            self.set_field(field, u32::from_le_bytes(bytes));
        }
    }

    /// Whether the INTx line is high: the ISR status is not zero.
    pub fn interrupt(&self) -> bool {
        self.isr & (isr::QUEUE | isr::CONFIG) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::pci::PciDevice;
    use crate::virtio::blk::VirtioBlk;
    use crate::virtio::net::VirtioNet;
    use alloc::vec;

    fn read(t: &mut Transport, at: u64, size: usize) -> u32 {
        let mut data = [0u8; 4];
        t.bar_read(at, &mut data[..size]);
        u32::from_le_bytes(data)
    }

    fn write(t: &mut Transport, at: u64, size: usize, value: u32) {
        t.bar_write(at, &value.to_le_bytes()[..size]);
    }

    #[test]
    fn the_pci_identity_of_each_device() {
        let blk = VirtioBlk::new(2048, b"disk-0");
        let c = blk.config();
        assert_eq!((c.read(0, 2), c.read(2, 2)), (0x1af4, 0x1001));
        assert_eq!(c.read(offset::REVISION, 4), 0x0180_0000, "class 01:80:00, revision 0");
        assert_eq!((c.read(offset::SUBSYSTEM_VENDOR_ID, 2), c.read(offset::SUBSYSTEM_ID, 2)), (0x1af4, 2));
        assert_eq!(c.interrupt_pin(), 1, "INTA");
        assert_eq!(c.read(offset::STATUS, 2) & 0x10, 0, "no capability list");
        let net = VirtioNet::new([2, 0, 0, 0, 0, 1]);
        let c = net.config();
        assert_eq!((c.read(0, 2), c.read(2, 2)), (0x1af4, 0x1000));
        assert_eq!(c.read(offset::REVISION, 4), 0x0200_0000, "class 02:00:00, revision 0");
        assert_eq!(c.read(offset::SUBSYSTEM_ID, 2), 1);
        assert_eq!(io_bar(1), 0xc100);
        assert_eq!(io_bar(31), 0xdf00);
    }

    #[test]
    fn registers_take_any_width_and_status_0_resets() {
        let mut t = Transport::new(DeviceType::Net, 0x0001_0020, 2, 256, vec![1, 2, 3, 4, 5, 6, 1, 0]);
        assert_eq!(t.config().bar(0).unwrap().size, 0x20);
        assert_eq!(read(&mut t, register::HOST_FEATURES, 4), 0x0001_0020);
        assert_eq!(read(&mut t, register::HOST_FEATURES + 2, 1), 0x01, "one byte of a field");
        write(&mut t, register::GUEST_FEATURES, 4, 0xffff_ffff);
        assert_eq!(t.guest_features(), 0x0001_0020, "only what is offered");
        write(&mut t, register::HOST_FEATURES, 4, 0);
        assert_eq!(read(&mut t, register::HOST_FEATURES, 4), 0x0001_0020, "read-only");
        // Queues: 0 and 1 exist, 2 reads size 0 and takes no PFN.
        for (queue, size) in [(0, 256), (1, 256), (2, 0)] {
            write(&mut t, register::QUEUE_SELECT, 2, queue);
            assert_eq!(read(&mut t, register::QUEUE_SIZE, 2), size);
            write(&mut t, register::QUEUE_PFN, 4, 0x100 + queue);
            assert_eq!(read(&mut t, register::QUEUE_PFN, 4), if size == 0 { 0 } else { 0x100 + queue });
        }
        // Notifies are recorded, of existing queues only.
        write(&mut t, register::QUEUE_NOTIFY, 2, 1);
        write(&mut t, register::QUEUE_NOTIFY, 2, 7);
        write(&mut t, register::QUEUE_NOTIFY, 2, 0x40);
        assert_eq!(t.take_notified(), 0b10);
        assert_eq!(t.take_notified(), 0);
        // Status, and DRIVER_OK counts as a notify of every queue.
        write(&mut t, register::STATUS, 1, 1);
        write(&mut t, register::STATUS, 1, 3);
        write(&mut t, register::STATUS, 1, 7);
        assert_eq!(read(&mut t, register::STATUS, 1), 7);
        assert_eq!(t.take_notified(), 0b11);
        // The configuration, read-only, all ones past its end.
        assert_eq!(read(&mut t, register::CONFIG, 4), 0x0403_0201);
        assert_eq!(read(&mut t, register::CONFIG + 6, 2), 1);
        write(&mut t, register::CONFIG, 4, 0);
        assert_eq!(read(&mut t, register::CONFIG + 6, 4), 0xffff_0001);
        // The ISR: the line follows it, a read clears it.
        t.isr = isr::QUEUE | isr::CONFIG;
        assert!(t.interrupt());
        assert_eq!(read(&mut t, register::STATUS, 1), 7, "reading status leaves the ISR");
        assert!(t.interrupt());
        assert_eq!(read(&mut t, register::STATUS, 2), 0x0307, "a word over status and ISR reads both");
        assert!(!t.interrupt());
        assert_eq!(read(&mut t, register::ISR, 1), 0);
        // Reset.
        t.fail(Broken::NoStatusByte { head: 3 });
        assert_eq!(read(&mut t, register::STATUS, 1), 0x47, "NEEDS_RESET shows");
        t.isr = isr::QUEUE;
        write(&mut t, register::STATUS, 1, 0);
        assert_eq!(read(&mut t, register::STATUS, 1), 0);
        assert_eq!((t.guest_features(), t.isr(), t.broken(), t.breaks(), t.resets()), (0, 0, None, 1, 1));
        write(&mut t, register::QUEUE_SELECT, 2, 1);
        assert_eq!(read(&mut t, register::QUEUE_PFN, 4), 0, "queues forgotten");
    }

    #[test]
    fn random_register_traffic_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut t = Transport::new(DeviceType::Block, 0x246, 1, 256, vec![0; 60]);
        for _ in 0..100_000 {
            let r = next();
            let at = (r >> 8) % 0x90;
            let size = [1, 2, 4, 3, 8, 0][(r % 6) as usize];
            let mut data = [0u8; 8];
            if r & (1 << 20) != 0 {
                t.bar_read(at, &mut data[..size]);
            } else {
                data = (r >> 24).to_le_bytes();
                t.bar_write(at, &data[..size]);
            }
            t.bar_read(u64::MAX - (r % 4), &mut data[..size]);
            t.bar_write(u64::MAX - (r % 4), &data[..size]);
        }
    }
}
