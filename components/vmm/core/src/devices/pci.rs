//! PCI bus 0 behind configuration mechanism #1 (address register at 0xCF8, data at
//! 0xCFC-0xCFF in byte, word or dword accesses), with an i440FX host bridge at 00:00.0 (an
//! operating system without firmware tables, Linux with no DMI, trusts mechanism #1 only
//! when it finds a host bridge on bus 0) and the PIIX's reset control register at 0xCF9.
//!
//! Devices implement [`PciDevice`]: a [`ConfigSpace`] (a type 0 header whose registers are
//! read-only except where the device makes them writable, with base address registers
//! sized as a BAR must be), reads and writes in the regions their BARs decode while the
//! command register enables them, and an INTx line the bus routes to a PC interrupt line.
//! Every other device, every function but 0 and every other bus read all ones.

use super::Effect;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Ports.
pub mod port {
    /// The configuration address register (dword accesses only).
    pub const ADDRESS: u16 = 0xcf8;
    /// The PIIX reset control register (byte accesses).
    pub const RESET_CONTROL: u16 = 0xcf9;
    /// The configuration data window, 0xCFC-0xCFF.
    pub const DATA: u16 = 0xcfc;
    /// The last port of the mechanism.
    pub const LAST: u16 = 0xcff;
}

/// Offsets in a type 0 configuration header.
pub mod offset {
    /// Vendor ID (16 bits).
    pub const VENDOR_ID: u8 = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE_ID: u8 = 0x02;
    /// Command register (16 bits, [`super::command`]).
    pub const COMMAND: u8 = 0x04;
    /// Status register (16 bits).
    pub const STATUS: u8 = 0x06;
    /// Revision ID, then programming interface, subclass and class (0x09-0x0b).
    pub const REVISION: u8 = 0x08;
    /// Cache line size.
    pub const CACHE_LINE_SIZE: u8 = 0x0c;
    /// Latency timer.
    pub const LATENCY_TIMER: u8 = 0x0d;
    /// Header type (bit 7: more functions).
    pub const HEADER_TYPE: u8 = 0x0e;
    /// Base address register 0 (BARs 0-5 follow, 4 bytes each).
    pub const BAR0: u8 = 0x10;
    /// Subsystem vendor ID.
    pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2c;
    /// Subsystem ID.
    pub const SUBSYSTEM_ID: u8 = 0x2e;
    /// Capabilities pointer.
    pub const CAPABILITIES: u8 = 0x34;
    /// Interrupt line (the PC IRQ the pin is wired to; firmware writes it).
    pub const INTERRUPT_LINE: u8 = 0x3c;
    /// Interrupt pin (1-4: INTA-INTD; 0: none).
    pub const INTERRUPT_PIN: u8 = 0x3d;
}

/// Command register bits.
pub mod command {
    /// The device decodes its I/O BARs.
    pub const IO: u16 = 1 << 0;
    /// The device decodes its memory BARs.
    pub const MEMORY: u16 = 1 << 1;
    /// The device may master the bus (DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx is not asserted whatever the device wants.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register bit: the device asserts INTx (read-only).
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB.
    Memory32,
    /// Memory anywhere (the BAR and the next one hold the address).
    Memory64,
}

/// A BAR as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    /// What it decodes.
    pub kind: BarKind,
    /// Where.
    pub address: u64,
    /// How much (a power of two).
    pub size: u64,
}

/// A function's 256-byte configuration space: the bytes, which bits of each the guest may
/// change, and the BARs' kinds and sizes.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    writable: [u8; 256],
    bars: [Option<(BarKind, u64)>; 6],
}

impl ConfigSpace {
    /// A type 0 header: the IDs, the 24-bit class code (class, subclass, programming
    /// interface), the revision; the command register's I/O, memory, bus-master and
    /// INTx-disable bits, the cache line size, the latency timer and the interrupt line are
    /// writable; no BARs, no interrupt pin.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut space = Self { bytes: [0; 256], writable: [0; 256], bars: [None; 6] };
        space.set_u16(offset::VENDOR_ID, vendor);
        space.set_u16(offset::DEVICE_ID, device);
        space.set_u32(offset::REVISION, class << 8 | u32::from(revision));
        let command_writable = command::IO | command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE;
        space.set_writable(offset::COMMAND, u32::from(command_writable), 2);
        space.set_writable(offset::CACHE_LINE_SIZE, 0xffff, 2);
        space.set_writable(offset::INTERRUPT_LINE, 0xff, 1);
        space
    }

    /// Sets `size` bytes at `offset` as the device (ignoring what the guest may write).
    fn set(&mut self, at: u8, value: u32, size: usize) {
        for (i, byte) in value.to_le_bytes().iter().take(size).enumerate() {
            if let Some(b) = self.bytes.get_mut(usize::from(at) + i) {
                *b = *byte;
            }
        }
    }

    /// Sets a byte (device side).
    pub fn set_u8(&mut self, at: u8, value: u8) {
        self.set(at, u32::from(value), 1);
    }

    /// Sets a 16-bit register (device side).
    pub fn set_u16(&mut self, at: u8, value: u16) {
        self.set(at, u32::from(value), 2);
    }

    /// Sets a 32-bit register (device side).
    pub fn set_u32(&mut self, at: u8, value: u32) {
        self.set(at, value, 4);
    }

    /// Makes the bits of `mask` writable by the guest in the `size` bytes at `at`.
    pub fn set_writable(&mut self, at: u8, mask: u32, size: usize) {
        for (i, byte) in mask.to_le_bytes().iter().take(size).enumerate() {
            if let Some(w) = self.writable.get_mut(usize::from(at) + i) {
                *w = *byte;
            }
        }
    }

    /// Sets the subsystem IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(offset::SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(offset::SUBSYSTEM_ID, id);
    }

    /// Gives the function an interrupt pin (1-4 for INTA-INTD).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(offset::INTERRUPT_PIN, pin.min(4));
    }

    /// Declares BAR `index` (0-5) as `kind` with `size` bytes (a power of two, at least 16
    /// for memory and 4 for I/O; smaller sizes are raised). A 64-bit BAR also takes the
    /// next one. Returns false (and declares nothing) if the BAR does not fit.
    pub fn set_bar(&mut self, index: usize, kind: BarKind, size: u64) -> bool {
        let last = if kind == BarKind::Memory64 { index + 1 } else { index };
        if last >= self.bars.len() {
            return false;
        }
        let minimum = if kind == BarKind::Io { 4 } else { 16 };
        let size = size.max(minimum).next_power_of_two();
        let at = offset::BAR0 + 4 * index as u8;
        let mask = !(size - 1);
        let (type_bits, low_mask) = match kind {
            BarKind::Io => (1, mask as u32 & !3),
            BarKind::Memory32 => (0, mask as u32 & !0xf),
            BarKind::Memory64 => (4, mask as u32 & !0xf),
        };
        self.set_u32(at, type_bits);
        self.set_writable(at, low_mask, 4);
        if kind == BarKind::Memory64 {
            self.set_u32(at + 4, 0);
            self.set_writable(at + 4, (mask >> 32) as u32, 4);
            self.bars[index + 1] = None;
        }
        self.bars[index] = Some((kind, size));
        true
    }

    /// The `size`-byte register at `at` (bytes past the end read as ones).
    pub fn read(&self, at: u8, size: usize) -> u32 {
        let mut value = [0xffu8; 4];
        for (i, v) in value.iter_mut().take(size.min(4)).enumerate() {
            if let Some(b) = self.bytes.get(usize::from(at) + i) {
                *v = *b;
            }
        }
        u32::from_le_bytes(value) & size_mask(size)
    }

    /// A guest write of `size` bytes at `at`: only the writable bits change.
    pub fn write(&mut self, at: u8, size: usize, value: u32) {
        for (i, v) in value.to_le_bytes().iter().take(size.min(4)).enumerate() {
            let index = usize::from(at) + i;
            if let (Some(b), Some(w)) = (self.bytes.get(index), self.writable.get(index)) {
                self.bytes[index] = (b & !w) | (v & w);
            }
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read(offset::COMMAND, 2) as u16
    }

    /// The interrupt line register.
    pub fn interrupt_line(&self) -> u8 {
        self.read(offset::INTERRUPT_LINE, 1) as u8
    }

    /// The interrupt pin (0: none).
    pub fn interrupt_pin(&self) -> u8 {
        self.read(offset::INTERRUPT_PIN, 1) as u8
    }

    /// Shows in the status register whether the function asserts INTx.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let status = self.read(offset::STATUS, 2) as u16;
        let status = if asserted { status | STATUS_INTERRUPT } else { status & !STATUS_INTERRUPT };
        self.set_u16(offset::STATUS, status);
    }

    /// BAR `index` as the guest programmed it, if declared (whether or not decoding is
    /// enabled).
    pub fn bar(&self, index: usize) -> Option<BarRegion> {
        let (kind, size) = (*self.bars.get(index)?)?;
        let at = offset::BAR0 + 4 * index as u8;
        let low = u64::from(self.read(at, 4));
        let address = match kind {
            BarKind::Io => low & !3,
            BarKind::Memory32 => low & !0xf,
            BarKind::Memory64 => (u64::from(self.read(at + 4, 4)) << 32) | (low & !0xf),
        };
        Some(BarRegion { kind, address, size })
    }

    /// The BAR (and offset into it) that decodes `address` of this kind now: the command
    /// register enables the kind and the BAR has been given an address.
    pub fn decode(&self, io: bool, address: u64) -> Option<(usize, u64)> {
        let enabled = if io { command::IO } else { command::MEMORY };
        if self.command() & enabled == 0 {
            return None;
        }
        (0..self.bars.len()).find_map(|i| {
            let bar = self.bar(i)?;
            let matches_kind = (bar.kind == BarKind::Io) == io;
            let inside = address.checked_sub(bar.address).filter(|&off| off < bar.size);
            match inside {
                Some(off) if matches_kind && bar.address != 0 => Some((i, off)),
                _ => None,
            }
        })
    }
}

/// All ones in the low `size` bytes.
fn size_mask(size: usize) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// A PCI function on bus 0.
pub trait PciDevice {
    /// Its configuration space.
    fn config(&self) -> &ConfigSpace;
    /// Its configuration space, to change.
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// A configuration read of `size` (1, 2 or 4) bytes at `at`, within one dword.
    fn config_read(&mut self, at: u8, size: usize) -> u32 {
        self.config().read(at, size)
    }
    /// A configuration write of `size` bytes at `at`, within one dword.
    fn config_write(&mut self, at: u8, size: usize, value: u32) {
        self.config_mut().write(at, size, value);
    }
    /// A read of `data.len()` bytes at `offset` in the region of BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        let _ = (bar, offset);
        data.fill(0xff);
    }
    /// A write of `data` at `offset` in the region of BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let _ = (bar, offset, data);
    }
    /// Whether the function asserts its INTx line.
    fn interrupt(&self) -> bool {
        false
    }
    /// The device as [`Any`](core::any::Any), so that the VMM can reach a device model's
    /// own interface through the bus ([`PciBus::device_mut`]); None for devices nothing
    /// reaches that way.
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        None
    }
}

/// The i440FX host bridge (what QEMU's PC presents): Intel 8086:1237, class 06:00:00.
pub struct HostBridge {
    config: ConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    /// Intel's vendor ID.
    pub const VENDOR: u16 = 0x8086;
    /// The 82441FX (i440FX) PCI and memory controller.
    pub const DEVICE: u16 = 0x1237;
    /// Bridge, host bridge.
    pub const CLASS: u32 = 0x06_00_00;

    /// The bridge after reset.
    pub fn new() -> Self {
        Self { config: ConfigSpace::new(Self::VENDOR, Self::DEVICE, Self::CLASS, 0x02) }
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
}

/// Why a device could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Device numbers are 1-31 (0 is the host bridge).
    NoSuchSlot(u8),
    /// Another device is there.
    SlotTaken(u8),
    /// PC interrupt lines are 0-15.
    NoSuchIrq(u8),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchSlot(d) => write!(f, "PCI device number {d} is not 1-31"),
            Self::SlotTaken(d) => write!(f, "PCI device number {d} is taken"),
            Self::NoSuchIrq(irq) => write!(f, "IRQ {irq} is not 0-15"),
        }
    }
}

/// A device in a slot: its number on bus 0, the IRQ its INTx line drives, the device.
struct Slot {
    number: u8,
    irq: u8,
    device: Box<dyn PciDevice>,
}

/// Bus 0 and the configuration mechanism.
pub struct PciBus {
    /// The address register (enable, bus, device, function, register; the low two bits
    /// and the reserved bits 30-24 read 0).
    address: u32,
    /// The reset control register (bits 1-3).
    reset_control: u8,
    host_bridge: HostBridge,
    slots: Vec<Slot>,
}

impl Default for PciBus {
    fn default() -> Self {
        Self::new()
    }
}

impl PciBus {
    /// A bus holding the host bridge.
    pub fn new() -> Self {
        Self { address: 0, reset_control: 0, host_bridge: HostBridge::new(), slots: Vec::new() }
    }

    /// Plugs `device` in as device `number` (1-31) of bus 0, its INTx line wired to
    /// interrupt line `irq`, which it writes in the device's interrupt line register as
    /// firmware would.
    pub fn attach(&mut self, number: u8, irq: u8, mut device: Box<dyn PciDevice>) -> Result<(), AttachError> {
        if !(1..32).contains(&number) {
            return Err(AttachError::NoSuchSlot(number));
        }
        if irq > 15 {
            return Err(AttachError::NoSuchIrq(irq));
        }
        if self.slots.iter().any(|s| s.number == number) {
            return Err(AttachError::SlotTaken(number));
        }
        device.config_mut().set_u8(offset::INTERRUPT_LINE, irq);
        self.slots.push(Slot { number, irq, device });
        Ok(())
    }

    /// The device of type `T` at `number` on bus 0, if that is what is there.
    pub fn device_mut<T: 'static>(&mut self, number: u8) -> Option<&mut T> {
        let slot = self.slots.iter_mut().find(|s| s.number == number)?;
        slot.device.as_any_mut()?.downcast_mut::<T>()
    }

    /// The device at `number` on bus 0 (0 is the host bridge).
    fn device(&mut self, number: u8) -> Option<&mut dyn PciDevice> {
        if number == 0 {
            return Some(&mut self.host_bridge);
        }
        let slot = self.slots.iter_mut().find(|s| s.number == number)?;
        Some(slot.device.as_mut())
    }

    /// The function the address register selects, if it exists: (device number, register).
    fn selected(&self) -> Option<(u8, u8)> {
        let a = self.address;
        let (enabled, bus, device, function) =
            (a >> 31 != 0, (a >> 16) as u8, (a >> 11 & 0x1f) as u8, a >> 8 & 7);
        (enabled && bus == 0 && function == 0).then_some((device, a as u8 & 0xfc))
    }

    /// A guest `in` of `size` bytes from `port` (0xCF8-0xCFF).
    pub fn read(&mut self, port: u16, size: usize) -> u32 {
        match (port, size) {
            (port::ADDRESS, 4) => self.address,
            (port::RESET_CONTROL, 1) => u32::from(self.reset_control),
            (port::DATA..=port::LAST, _) if usize::from(port & 3) + size <= 4 => {
                let Some((number, register)) = self.selected() else { return size_mask(size) };
                let at = register + (port & 3) as u8;
                match self.device(number) {
                    Some(device) => device.config_read(at, size) & size_mask(size),
                    None => size_mask(size),
                }
            }
            _ => size_mask(size),
        }
    }

    /// A guest `out` of `size` bytes to `port` (0xCF8-0xCFF). Setting the reset control
    /// register's CPU-reset bit resets the machine.
    pub fn write(&mut self, port: u16, size: usize, value: u32) -> Effect {
        match (port, size) {
            (port::ADDRESS, 4) => self.address = value & 0x80ff_fffc,
            (port::RESET_CONTROL, 1) => {
                let rising = value & 4 != 0 && self.reset_control & 4 == 0;
                self.reset_control = value as u8 & 0x0e;
                if rising {
                    return Effect::Reset;
                }
            }
            (port::DATA..=port::LAST, _) if usize::from(port & 3) + size <= 4 => {
                if let Some((number, register)) = self.selected() {
                    let at = register + (port & 3) as u8;
                    if let Some(device) = self.device(number) {
                        device.config_write(at, size, value & size_mask(size));
                    }
                }
            }
            _ => {}
        }
        Effect::None
    }

    /// The device and BAR decoding `address` (I/O or memory), and the offset in it.
    fn decode(&mut self, io: bool, address: u64) -> Option<(&mut (dyn PciDevice + 'static), usize, u64)> {
        self.slots.iter_mut().find_map(|slot| {
            let (bar, offset) = slot.device.config().decode(io, address)?;
            Some((slot.device.as_mut(), bar, offset))
        })
    }

    /// Whether a device's BAR decodes memory at `address`.
    pub fn decodes_memory(&mut self, address: u64) -> bool {
        self.decode(false, address).is_some()
    }

    /// A guest `in` of `size` bytes from `port`, if a device's I/O BAR decodes it.
    pub fn io_read(&mut self, port: u16, size: usize) -> Option<u32> {
        let (device, bar, offset) = self.decode(true, u64::from(port))?;
        let mut data = [0u8; 4];
        device.bar_read(bar, offset, &mut data[..size.min(4)]);
        Some(u32::from_le_bytes(data) & size_mask(size))
    }

    /// A guest `out` of `size` bytes to `port`; false if no device's I/O BAR decodes it.
    pub fn io_write(&mut self, port: u16, size: usize, value: u32) -> bool {
        let Some((device, bar, offset)) = self.decode(true, u64::from(port)) else { return false };
        device.bar_write(bar, offset, &value.to_le_bytes()[..size.min(4)]);
        true
    }

    /// A read of `size` (1-8) bytes of memory at `address`, if a device's BAR decodes it.
    pub fn memory_read(&mut self, address: u64, size: usize) -> Option<u64> {
        let (device, bar, offset) = self.decode(false, address)?;
        let mut data = [0u8; 8];
        device.bar_read(bar, offset, &mut data[..size.clamp(1, 8)]);
        Some(u64::from_le_bytes(data))
    }

    /// A write of the low `size` (1-8) bytes of `value` at `address`; false if no device's
    /// BAR decodes it.
    pub fn memory_write(&mut self, address: u64, size: usize, value: u64) -> bool {
        let Some((device, bar, offset)) = self.decode(false, address) else { return false };
        device.bar_write(bar, offset, &value.to_le_bytes()[..size.clamp(1, 8)]);
        true
    }

    /// Updates each device's interrupt status bit and returns the PC interrupt lines the
    /// devices' INTx lines hold high (bit n: IRQ n).
    pub fn interrupt_lines(&mut self) -> u16 {
        let mut lines = 0;
        for slot in &mut self.slots {
            let config = slot.device.config();
            let asserted = slot.device.interrupt() && config.interrupt_pin() != 0;
            let enabled = config.command() & command::INTX_DISABLE == 0;
            slot.device.config_mut().set_interrupt_status(asserted);
            if asserted && enabled {
                lines |= 1 << slot.irq;
            }
        }
        lines
    }

    /// The interrupt lines devices are wired to (bit n: IRQ n), for the interrupt
    /// controller to make level-triggered.
    pub fn wired_irqs(&self) -> u16 {
        self.slots.iter().fold(0, |lines, slot| lines | 1 << slot.irq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configuration read of `size` bytes at `register` of 00:`device`.0, as Linux's
    /// `pci_conf1_read` does it.
    fn conf1_read(bus: &mut PciBus, device: u8, register: u8, size: usize) -> u32 {
        bus.write(port::ADDRESS, 4, 0x8000_0000 | u32::from(device) << 11 | u32::from(register & 0xfc));
        let port = match size {
            1 => port::DATA + u16::from(register & 3),
            2 => port::DATA + u16::from(register & 2),
            _ => port::DATA,
        };
        bus.read(port, size)
    }

    fn conf1_write(bus: &mut PciBus, device: u8, register: u8, size: usize, value: u32) {
        bus.write(port::ADDRESS, 4, 0x8000_0000 | u32::from(device) << 11 | u32::from(register & 0xfc));
        let port = match size {
            1 => port::DATA + u16::from(register & 3),
            2 => port::DATA + u16::from(register & 2),
            _ => port::DATA,
        };
        bus.write(port, size, value);
    }

    /// Linux's `pci_check_type1` and `pci_sanity_check`: a byte to 0xCFB, the address
    /// register reads back 0x80000000, and a host bridge class on bus 0.
    #[test]
    fn linux_trusts_mechanism_1() {
        let mut bus = PciBus::new();
        assert_eq!(bus.write(0xcfb, 1, 0x01), Effect::None);
        let saved = bus.read(port::ADDRESS, 4);
        bus.write(port::ADDRESS, 4, 0x8000_0000);
        assert_eq!(bus.read(port::ADDRESS, 4), 0x8000_0000);
        bus.write(port::ADDRESS, 4, saved);
        let found = (0..=255u8).any(|devfn| {
            bus.write(port::ADDRESS, 4, 0x8000_0000 | u32::from(devfn) << 8 | 0x08);
            bus.read(0xcfe, 2) == 0x0600
        });
        assert!(found, "a host bridge on bus 0");
        // Mechanism #2's probe (bytes to 0xCF8 and 0xCFA reading back 0) fails.
        bus.write(0xcf8, 1, 0);
        bus.write(0xcfa, 1, 0);
        assert_ne!((bus.read(0xcf8, 1), bus.read(0xcfa, 1)), (0, 0));
    }

    #[test]
    fn the_host_bridge_and_all_ones_elsewhere() {
        let mut bus = PciBus::new();
        assert_eq!(conf1_read(&mut bus, 0, 0, 4), 0x1237_8086);
        assert_eq!(conf1_read(&mut bus, 0, 0x08, 4), 0x0600_0002, "class 06:00:00, revision 2");
        assert_eq!(conf1_read(&mut bus, 0, 0x0e, 1), 0, "type 0 header, one function");
        assert_eq!(conf1_read(&mut bus, 0, 0x0b, 1), 0x06);
        assert_eq!(conf1_read(&mut bus, 0, 0x02, 2), 0x1237);
        for device in 1..32 {
            assert_eq!(conf1_read(&mut bus, device, 0, 4), 0xffff_ffff);
        }
        // Function 1 of the bridge, another bus, the enable bit clear: nothing.
        bus.write(port::ADDRESS, 4, 0x8000_0100);
        assert_eq!(bus.read(port::DATA, 4), 0xffff_ffff);
        bus.write(port::ADDRESS, 4, 0x8001_0000);
        assert_eq!(bus.read(port::DATA, 2), 0xffff);
        bus.write(port::ADDRESS, 4, 0x0000_0000);
        assert_eq!(bus.read(port::DATA, 1), 0xff);
        assert_eq!(bus.read(0xcfa, 2), 0xffff, "word accesses to the address register");
        // Read-only registers ignore writes; the writable ones keep them.
        conf1_write(&mut bus, 0, 0, 4, 0);
        assert_eq!(conf1_read(&mut bus, 0, 0, 4), 0x1237_8086);
        conf1_write(&mut bus, 0, 0x3c, 1, 0x0b);
        assert_eq!(conf1_read(&mut bus, 0, 0x3c, 1), 0x0b);
        conf1_write(&mut bus, 0, 0x04, 2, 0xffff);
        assert_eq!(conf1_read(&mut bus, 0, 0x04, 2), 0x0407, "I/O, memory, bus master, INTx disable");
        // A dword access across the window's end is refused.
        assert_eq!(bus.read(0xcfe, 4), 0xffff_ffff);
    }

    #[test]
    fn the_reset_control_register_resets_on_its_cpu_reset_bit() {
        let mut bus = PciBus::new();
        // Linux's BOOT_CF9: the reset type first, then the reset bit.
        let cf9 = bus.read(port::RESET_CONTROL, 1);
        assert_eq!(bus.write(port::RESET_CONTROL, 1, (cf9 & !6) | 2), Effect::None);
        assert_eq!(bus.write(port::RESET_CONTROL, 1, cf9 | 6), Effect::Reset);
        assert_eq!(bus.write(port::RESET_CONTROL, 2, 0xffff), Effect::None, "bytes only");
    }

    /// A device with an I/O BAR of 32 ports and a 4 KiB memory BAR that echo what was
    /// written; its INTx line is high while its last I/O register is not zero.
    struct Echo {
        config: ConfigSpace,
        io: [u8; 32],
        memory: [u8; 4096],
    }

    impl Echo {
        fn new() -> Self {
            let mut config = ConfigSpace::new(0x1af4, 0x1000, 0x02_00_00, 0);
            assert!(config.set_bar(0, BarKind::Io, 32));
            assert!(config.set_bar(1, BarKind::Memory64, 4096));
            assert!(!config.set_bar(5, BarKind::Memory64, 4096), "BAR 5 has no next BAR");
            config.set_interrupt_pin(1);
            Self { config, io: [0; 32], memory: [0; 4096] }
        }
    }

    impl PciDevice for Echo {
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.config
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            let region: &[u8] = if bar == 0 { &self.io } else { &self.memory };
            for (i, d) in data.iter_mut().enumerate() {
                *d = region.get(offset as usize + i).copied().unwrap_or(0xff);
            }
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            let region: &mut [u8] = if bar == 0 { &mut self.io } else { &mut self.memory };
            for (i, d) in data.iter().enumerate() {
                if let Some(r) = region.get_mut(offset as usize + i) {
                    *r = *d;
                }
            }
        }
        fn interrupt(&self) -> bool {
            self.io[31] != 0
        }
    }

    /// What firmware or Linux does with a device: size the BARs (all ones, read back),
    /// place them, enable decoding; then the device's registers answer there.
    #[test]
    fn a_device_behind_its_bars_and_its_intx_line() {
        let mut bus = PciBus::new();
        assert_eq!(bus.attach(0, 5, Box::new(Echo::new())), Err(AttachError::NoSuchSlot(0)));
        assert_eq!(bus.attach(3, 16, Box::new(Echo::new())), Err(AttachError::NoSuchIrq(16)));
        bus.attach(3, 11, Box::new(Echo::new())).unwrap();
        assert_eq!(bus.attach(3, 11, Box::new(Echo::new())), Err(AttachError::SlotTaken(3)));
        assert_eq!(conf1_read(&mut bus, 3, 0, 4), 0x1000_1af4);
        assert_eq!(conf1_read(&mut bus, 3, 0x3c, 2), 0x010b, "INTA wired to IRQ 11");
        // Sizing.
        for (bar, size_mask) in [(0x10, 0xffff_ffe1u32), (0x14, 0xffff_f004), (0x18, 0xffff_ffff)] {
            conf1_write(&mut bus, 3, bar, 4, 0xffff_ffff);
            assert_eq!(conf1_read(&mut bus, 3, bar, 4), size_mask, "BAR at {bar:#x}");
        }
        assert_eq!(conf1_read(&mut bus, 3, 0x1c, 4), 0, "BAR 3 is not there");
        conf1_write(&mut bus, 3, 0x10, 4, 0xc000);
        conf1_write(&mut bus, 3, 0x14, 4, 0xfebf_1000);
        conf1_write(&mut bus, 3, 0x18, 4, 0x1);
        // Not decoded until the command register says so.
        assert_eq!(bus.io_read(0xc004, 1), None);
        assert!(!bus.io_write(0xc004, 1, 0x42));
        conf1_write(&mut bus, 3, 0x04, 2, u32::from(command::IO | command::MEMORY));
        assert!(bus.io_write(0xc004, 2, 0xbeef));
        assert_eq!(bus.io_read(0xc004, 4), Some(0x0000_beef));
        assert_eq!(bus.io_read(0xc020, 1), None, "past the BAR");
        let base = 0x1_febf_1000;
        assert!(bus.decodes_memory(base + 0xfff) && !bus.decodes_memory(base + 0x1000));
        assert!(bus.memory_write(base + 8, 8, 0x1122_3344_5566_7788));
        assert_eq!(bus.memory_read(base + 12, 4), Some(0x1122_3344));
        assert_eq!(bus.memory_read(0xfebf_1000, 4), None, "the high dword counts");
        // INTx: asserted, then disabled by the command register.
        assert_eq!(bus.interrupt_lines(), 0);
        assert!(bus.io_write(0xc01f, 1, 1));
        assert_eq!(bus.interrupt_lines(), 1 << 11);
        assert_ne!(conf1_read(&mut bus, 3, 0x06, 2) & u32::from(STATUS_INTERRUPT), 0);
        conf1_write(&mut bus, 3, 0x04, 2, u32::from(command::IO | command::INTX_DISABLE));
        assert_eq!(bus.interrupt_lines(), 0);
        assert_ne!(conf1_read(&mut bus, 3, 0x06, 2) & u32::from(STATUS_INTERRUPT), 0, "still shows it");
        assert_eq!(bus.wired_irqs(), 1 << 11);
    }

    #[test]
    fn random_traffic_never_panics() {
        let mut state = 0x5151_aaaa_0f0f_3c3cu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut bus = PciBus::new();
        bus.attach(1, 10, Box::new(Echo::new())).unwrap();
        for _ in 0..100_000 {
            let r = next();
            let port = 0xcf8 + (r % 8) as u16;
            let size = [1, 2, 4, 3, 0, 8][((r >> 8) % 6) as usize];
            match (r >> 16) % 6 {
                0 => {
                    bus.read(port, size);
                }
                1 => {
                    bus.write(port, size, (r >> 32) as u32);
                }
                2 => {
                    // Aim at the test device's registers, BARs and command register.
                    bus.write(port::ADDRESS, 4, 0x8000_0800 | (r >> 24) as u32 & 0xfc);
                }
                3 => {
                    bus.io_read((r >> 32) as u16, size);
                    bus.io_write((r >> 32) as u16, size, r as u32);
                }
                4 => {
                    bus.memory_read(r >> 20, size);
                    bus.memory_write(r >> 20, size, r);
                }
                _ => {
                    bus.interrupt_lines();
                }
            }
        }
    }
}
