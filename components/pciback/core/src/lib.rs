//! PCIBack's core (Xoar's PCI Config), pure logic over a configuration-space interface so
//! that the host tests it against a model of a bus: finding the functions on bus 0, finding
//! the one `system.toml` assigns (by vendor and device ID, or by address), placing its I/O
//! BAR at the ports the description gives its owner, routing its interrupt pin to the
//! description's line through the PIIX's PIRQ registers, and turning off whatever else
//! decodes those ports. Only I/O BARs are placed: memory BARs stay where the firmware put
//! them (the loader checks device memory against them).
#![no_std]

use heapless::Vec;

/// A function's address on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus.
    pub bus: u8,
    /// Device (slot), 0-31.
    pub dev: u8,
    /// Function, 0-7.
    pub func: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Configuration space, a dword at a time (mechanism #1: ports 0xCF8 and 0xCFC).
pub trait Config {
    /// The dword at `offset` (a multiple of 4) of `at`'s configuration space; all ones
    /// where nothing answers.
    fn read(&mut self, at: Bdf, offset: u8) -> u32;
    /// Writes the dword at `offset` (a multiple of 4).
    fn write(&mut self, at: Bdf, offset: u8, value: u32);
}

/// A function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub at: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
}

/// Most functions kept from a scan (32 devices of up to 8 functions on bus 0).
pub const MAX_FUNCTIONS: usize = 256;

/// The functions of bus 0, by address.
pub fn scan(config: &mut impl Config) -> Vec<Function, MAX_FUNCTIONS> {
    let mut out = Vec::new();
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let at = Bdf { bus: 0, dev, func };
            let id = config.read(at, 0);
            if id & 0xffff == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            let _ = out.push(Function { at, vendor: id as u16, device: (id >> 16) as u16 });
            let header = config.read(at, 0xc) >> 16 & 0xff;
            if func == 0 && header & 0x80 == 0 {
                break;
            }
        }
    }
    out
}

/// Which function an assignment means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The `index`th function (from 0, in address order) with these IDs.
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
        /// Which of the functions with these IDs.
        index: u8,
    },
    /// The function at this address.
    Address(Bdf),
}

/// What `system.toml` assigns: a function, the ports its owner holds (where its I/O BAR
/// goes), the memory its owner maps (which its memory BARs must hold), the interrupt line
/// its owner's handler is for, and whether it may master the bus (its owner gives it DMA
/// memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment<'a> {
    /// The device's name in `system.toml`.
    pub name: &'a str,
    /// Which function.
    pub function: Match,
    /// The owner's ports (first, last): a power-of-two window aligned to its size.
    pub ports: Option<(u16, u16)>,
    /// The owner's memory ranges (base, bytes), where the firmware put the BARs: the loader
    /// maps them, so they are checked, not moved.
    pub memory: &'a [(u64, u64)],
    /// The owner's interrupt line.
    pub irq: Option<u8>,
    /// Whether the function may master the bus (DMA).
    pub bus_master: bool,
}

/// Why a function could not be placed (nothing was changed on the bus then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// No function matches.
    NotFound,
    /// The function has no I/O BAR.
    NoIoBar,
    /// Its I/O BAR is larger than the owner's ports (its size).
    TooLarge(u32),
    /// The window is not a power of two aligned to its size, so no BAR fits it exactly.
    BadWindow,
    /// The function has no interrupt pin, or one the PIIX cannot route.
    NoInterruptPin,
    /// None of the function's memory BARs holds this range of the owner's memory (base).
    MemoryNotAtBar(u64),
    /// Another assignment placed this function already (one function, one owner).
    PlacedAlready,
    /// Its pin shares a PIRQ line already routed to another interrupt.
    PirqTaken {
        /// The PIRQ (0-3: A-D).
        pirq: u8,
        /// The line it goes to already.
        irq: u8,
    },
}

impl core::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => write!(f, "no such function on bus 0"),
            Self::NoIoBar => write!(f, "the function has no I/O BAR"),
            Self::TooLarge(size) => write!(f, "its I/O BAR is {size} bytes, more than the owner's ports"),
            Self::BadWindow => write!(f, "the owner's ports are not a power of two aligned to their size"),
            Self::NoInterruptPin => write!(f, "the function has no interrupt pin"),
            Self::PlacedAlready => write!(f, "another device placed this function already"),
            Self::MemoryNotAtBar(base) => {
                write!(f, "none of its memory BARs holds the owner's memory at {base:#x}")
            }
            Self::PirqTaken { pirq, irq } => {
                write!(f, "its pin is on PIRQ{}, which already goes to IRQ {irq}", (b'A' + pirq) as char)
            }
        }
    }
}

/// Where a function was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The function.
    pub function: Function,
    /// Its I/O BAR's index (0-5) and size in bytes, when it has ports.
    pub io: Option<(u8, u32)>,
    /// Its interrupt pin (1-4: INTA-INTD) and the PIRQ line that pin is wired to (0-3:
    /// A-D), when it has a line.
    pub interrupt: Option<(u8, u8)>,
    /// How many memory ranges were found at its BARs.
    pub memory: usize,
}

/// The function `wanted` means among `functions`.
pub fn find(functions: &[Function], wanted: Match) -> Option<Function> {
    match wanted {
        Match::Address(at) => functions.iter().find(|f| f.at == at).copied(),
        Match::Id { vendor, device, index } => functions
            .iter()
            .filter(|f| f.vendor == vendor && f.device == device)
            .nth(usize::from(index))
            .copied(),
    }
}

/// The PIIX3's wiring of a slot's interrupt pin to its four PIRQ lines (QEMU's `pc`
/// machine): pin INTA of slot 1 is PIRQA, and each slot further on rotates by one.
pub fn pirq(dev: u8, pin: u8) -> u8 {
    (pin.wrapping_sub(1)).wrapping_add(dev.wrapping_sub(1)) & 3
}

/// The PIIX3's PIRQ routing registers (PIRQA-D at 0x60-0x63 of the ISA bridge's
/// configuration space): bits 0-3 the IRQ, bit 7 set when the line is not routed.
pub const PIRQ_ROUTE: u8 = 0x60;

/// The PCI-to-ISA bridge of a PIIX: 00:01.0.
pub const ISA_BRIDGE: Bdf = Bdf { bus: 0, dev: 1, func: 0 };

/// The command register's I/O space, memory space and bus master bits. (The command
/// register is the low half of its dword; the high half, the status register, is written
/// as zeros, since writing a one there clears the bit.)
const IO_SPACE: u32 = 1;
const MEMORY_SPACE: u32 = 1 << 1;
const BUS_MASTER: u32 = 1 << 2;

/// The size of an I/O BAR from what reads back after writing all ones: the lowest
/// address bit that stuck (only the low 16 bits decode on a PC).
pub fn io_bar_size(readback: u32) -> u32 {
    let mask = (readback & 0xffff_fffc) | 0xffff_0000;
    mask & mask.wrapping_neg()
}

/// Places functions one assignment after another, remembering the PIRQ lines it routed so
/// that two assignments never pull one line two ways.
#[derive(Debug, Default)]
pub struct Placer {
    routed: [Option<u8>; 4],
    placed: Vec<Bdf, MAX_FUNCTIONS>,
}

impl Placer {
    /// Nothing placed yet (the firmware's routing is overridden as needed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `assignment`'s function: its first I/O BAR at the first of the owner's
    /// ports (decoding off while it moves), its memory BARs checked to hold the owner's
    /// memory, its interrupt line register set to the owner's line and its pin's PIRQ
    /// routed there; then decoding on for what the owner holds, and bus mastering if it
    /// gives the function DMA memory. Every other function among `functions` whose I/O
    /// BARs overlap the owner's ports stops decoding I/O, so that only the assigned
    /// function answers them. On an error nothing was changed.
    pub fn place(
        &mut self,
        config: &mut impl Config,
        functions: &[Function],
        assignment: &Assignment<'_>,
    ) -> Result<Placed, PlaceError> {
        let window = match assignment.ports {
            Some((first, last)) => {
                let size = (u32::from(last) + 1).saturating_sub(u32::from(first));
                if last < first || !size.is_power_of_two() || !u32::from(first).is_multiple_of(size) {
                    return Err(PlaceError::BadWindow);
                }
                Some((first, last, size))
            }
            None => None,
        };
        let function = find(functions, assignment.function).ok_or(PlaceError::NotFound)?;
        let at = function.at;
        if self.placed.contains(&at) {
            return Err(PlaceError::PlacedAlready);
        }
        let command = config.read(at, 4);
        // Its BARs, sized with decoding off (and put back as they were).
        config.write(at, 4, command & !(IO_SPACE | MEMORY_SPACE | BUS_MASTER) & 0xffff);
        let own = bars(config, at);
        config.write(at, 4, command & 0xffff);
        for &(base, bytes) in assignment.memory {
            let held = own.iter().any(|b| {
                !b.io && b.base <= base && base.saturating_add(bytes) <= b.base.saturating_add(b.size)
            });
            if !held {
                return Err(PlaceError::MemoryNotAtBar(base));
            }
        }
        let io = match window {
            Some((_, _, size)) => {
                let bar = own.iter().find(|b| b.io).ok_or(PlaceError::NoIoBar)?;
                if bar.size > u64::from(size) {
                    return Err(PlaceError::TooLarge(bar.size as u32));
                }
                Some((bar.index, bar.offset, bar.size as u32))
            }
            None => None,
        };
        let interrupt = match assignment.irq {
            Some(irq) => {
                let pin = (config.read(at, 0x3c) >> 8 & 0xff) as u8;
                if !(1..=4).contains(&pin) {
                    return Err(PlaceError::NoInterruptPin);
                }
                let line = pirq(at.dev, pin);
                if let Some(routed) = self.routed[usize::from(line)].filter(|&r| r != irq) {
                    return Err(PlaceError::PirqTaken { pirq: line, irq: routed });
                }
                Some((irq, pin, line))
            }
            None => None,
        };
        // Checked: now change the bus.
        if let (Some((first, last, _)), Some((_, offset, _))) = (window, io) {
            for other in functions.iter().filter(|f| f.at != at) {
                let overlaps = bars(config, other.at).iter().any(|b| {
                    b.io && b.base != 0 && b.base <= u64::from(last) && u64::from(first) < b.base + b.size
                });
                if overlaps {
                    let c = config.read(other.at, 4);
                    config.write(other.at, 4, c & !IO_SPACE & 0xffff);
                }
            }
            config.write(at, 4, command & !(IO_SPACE | BUS_MASTER) & 0xffff);
            config.write(at, offset, u32::from(first) | 1);
        }
        if let Some((irq, _, line)) = interrupt {
            let register = config.read(at, 0x3c);
            config.write(at, 0x3c, (register & !0xff) | u32::from(irq));
            let routes = config.read(ISA_BRIDGE, PIRQ_ROUTE);
            let routes = (routes & !(0xff << (8 * line))) | u32::from(irq) << (8 * line);
            config.write(ISA_BRIDGE, PIRQ_ROUTE, routes);
            self.routed[usize::from(line)] = Some(irq);
        }
        let mut enable = 0;
        if window.is_some() {
            enable |= IO_SPACE;
        }
        if !assignment.memory.is_empty() {
            enable |= MEMORY_SPACE;
        }
        if assignment.bus_master {
            enable |= BUS_MASTER;
        }
        // Only what the owner holds: bus mastering the firmware turned on goes unless the
        // owner gives the function DMA memory.
        config.write(at, 4, ((command & !(IO_SPACE | MEMORY_SPACE | BUS_MASTER)) | enable) & 0xffff);
        self.placed.push(at).ok();
        Ok(Placed {
            function,
            io: io.map(|(index, _, size)| (index, size)),
            interrupt: interrupt.map(|(_, pin, line)| (pin, line)),
            memory: assignment.memory.len(),
        })
    }
}

/// A base address register.
#[derive(Clone, Copy, Debug)]
struct Bar {
    index: u8,
    offset: u8,
    io: bool,
    base: u64,
    size: u64,
}

/// A function's BARs (type 0 header: six; a bridge's: two), each sized by writing all ones
/// and putting the value back. Callers turn decoding off around it when it matters.
fn bars(config: &mut impl Config, at: Bdf) -> Vec<Bar, 6> {
    let mut out = Vec::new();
    let header = config.read(at, 0xc) >> 16 & 0x7f;
    let count = if header == 0 { 6 } else { 2 };
    let mut index = 0u8;
    while index < count {
        let offset = 0x10 + 4 * index;
        let value = config.read(at, offset);
        config.write(at, offset, 0xffff_ffff);
        let sized = config.read(at, offset);
        config.write(at, offset, value);
        if value & 1 == 1 {
            let _ = out.push(Bar {
                index,
                offset,
                io: true,
                base: u64::from(value & 0xffff_fffc),
                size: u64::from(io_bar_size(sized)),
            });
            index += 1;
            continue;
        }
        let wide = value & 0b110 == 0b100;
        let (high, high_sized) = if wide && index + 1 < count {
            let high = config.read(at, offset + 4);
            config.write(at, offset + 4, 0xffff_ffff);
            let s = config.read(at, offset + 4);
            config.write(at, offset + 4, high);
            (high, s)
        } else {
            (0, 0)
        };
        // The size is the lowest address bit that stuck; a BAR where none did is not there.
        let mask = u64::from(high_sized) << 32 | u64::from(sized & !0xf);
        if mask != 0 {
            let _ = out.push(Bar {
                index,
                offset,
                io: false,
                base: u64::from(high) << 32 | u64::from(value & !0xf),
                size: mask & mask.wrapping_neg(),
            });
        }
        index += if wide { 2 } else { 1 };
    }
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;

    /// A model of bus 0: per function its dwords, and per BAR offset its size (a BAR keeps
    /// only the address bits its size lets through, as hardware does).
    #[derive(Default)]
    struct Bus {
        space: BTreeMap<(u8, u8, u8), [u32; 64]>,
        bar_sizes: BTreeMap<(u8, u8, u8, u8), u32>,
        writes: usize,
    }

    impl Bus {
        fn function(&mut self, at: Bdf, vendor: u16, device: u16, multi: bool, pin: u8) {
            let mut s = [0u32; 64];
            s[0] = u32::from(vendor) | u32::from(device) << 16;
            s[3] = if multi { 0x80 << 16 } else { 0 };
            s[15] = u32::from(pin) << 8;
            s[1] = 1; // I/O decoding on, as the firmware leaves it
            self.space.insert((at.bus, at.dev, at.func), s);
        }
        fn io_bar(&mut self, at: Bdf, index: u8, base: u32, size: u32) {
            self.space.get_mut(&(at.bus, at.dev, at.func)).unwrap()[4 + usize::from(index)] = base | 1;
            self.bar_sizes.insert((at.bus, at.dev, at.func, index), size);
        }
        fn memory_bar(&mut self, at: Bdf, index: u8, base: u32, size: u32) {
            self.space.get_mut(&(at.bus, at.dev, at.func)).unwrap()[4 + usize::from(index)] = base | 8;
            self.bar_sizes.insert((at.bus, at.dev, at.func, index), size);
        }
        fn dword(&self, at: Bdf, offset: u8) -> u32 {
            self.space[&(at.bus, at.dev, at.func)][usize::from(offset / 4)]
        }
    }

    impl Config for Bus {
        fn read(&mut self, at: Bdf, offset: u8) -> u32 {
            self.space.get(&(at.bus, at.dev, at.func)).map_or(0xffff_ffff, |s| s[usize::from(offset / 4)])
        }
        fn write(&mut self, at: Bdf, offset: u8, value: u32) {
            self.writes += 1;
            let bar = offset.checked_sub(0x10).map(|o| o / 4).filter(|&i| i < 6 && offset.is_multiple_of(4));
            let size = bar.and_then(|i| self.bar_sizes.get(&(at.bus, at.dev, at.func, i)).copied());
            if let Some(s) = self.space.get_mut(&(at.bus, at.dev, at.func)) {
                let old = s[usize::from(offset / 4)];
                s[usize::from(offset / 4)] = match (size, bar) {
                    (Some(size), _) if old & 1 == 1 => (value & !(size - 1) & 0xffff) | 1,
                    (Some(size), _) => (value & !(size - 1)) | (old & 0xf),
                    // An unimplemented BAR reads zero whatever is written.
                    (None, Some(_)) => 0,
                    (None, None) => value,
                };
            }
        }
    }

    const DISK0: Bdf = Bdf { bus: 0, dev: 3, func: 0 };
    const DISK1: Bdf = Bdf { bus: 0, dev: 5, func: 0 };
    const IDE: Bdf = Bdf { bus: 0, dev: 1, func: 1 };
    const VGA: Bdf = Bdf { bus: 0, dev: 2, func: 0 };

    /// QEMU `pc` with two legacy virtio-blk devices, as its firmware leaves them.
    fn pc() -> Bus {
        let mut bus = Bus::default();
        bus.function(Bdf { bus: 0, dev: 0, func: 0 }, 0x8086, 0x1237, false, 0);
        bus.function(ISA_BRIDGE, 0x8086, 0x7000, true, 0);
        bus.space.get_mut(&(0, 1, 0)).unwrap()[usize::from(PIRQ_ROUTE / 4)] = 0x0b0b_0a0a;
        bus.function(IDE, 0x8086, 0x7010, false, 0);
        bus.io_bar(IDE, 4, 0xc100, 16);
        bus.function(VGA, 0x1234, 0x1111, false, 0);
        bus.memory_bar(VGA, 0, 0xfd00_0000, 16 << 20);
        bus.memory_bar(VGA, 2, 0xfebf_0000, 4096);
        bus.function(DISK0, 0x1af4, 0x1001, false, 1);
        bus.io_bar(DISK0, 0, 0xc000, 128);
        bus.function(DISK1, 0x1af4, 0x1001, false, 1);
        bus.io_bar(DISK1, 0, 0xc080, 128);
        bus
    }

    fn disk(index: u8, ports: (u16, u16), irq: u8) -> Assignment<'static> {
        Assignment {
            name: "disk",
            function: Match::Id { vendor: 0x1af4, device: 0x1001, index },
            ports: Some(ports),
            memory: &[],
            irq: Some(irq),
            bus_master: true,
        }
    }

    #[test]
    fn the_bus_is_scanned_function_by_function() {
        let found: std::vec::Vec<(Bdf, u16)> = scan(&mut pc()).iter().map(|f| (f.at, f.device)).collect();
        assert_eq!(
            found,
            [
                (Bdf { bus: 0, dev: 0, func: 0 }, 0x1237),
                (ISA_BRIDGE, 0x7000),
                (IDE, 0x7010),
                (Bdf { bus: 0, dev: 2, func: 0 }, 0x1111),
                (DISK0, 0x1001),
                (DISK1, 0x1001)
            ]
        );
    }

    #[test]
    fn a_function_is_found_by_its_ids_and_index_or_its_address() {
        let functions = scan(&mut pc());
        let by_id =
            |index| find(&functions, Match::Id { vendor: 0x1af4, device: 0x1001, index }).map(|f| f.at);
        assert_eq!((by_id(0), by_id(1), by_id(2)), (Some(DISK0), Some(DISK1), None));
        assert_eq!(find(&functions, Match::Address(DISK1)).map(|f| f.device), Some(0x1001));
        assert_eq!(find(&functions, Match::Address(Bdf { bus: 0, dev: 9, func: 0 })), None);
    }

    #[test]
    fn a_disk_moves_to_its_owners_ports_and_line() {
        let mut bus = pc();
        let functions = scan(&mut bus);
        let mut placer = Placer::new();
        // The second disk, moved from 0xc080 to 0xd000, its INTA (slot 5: PIRQA) on IRQ 5.
        let placed = placer.place(&mut bus, &functions, &disk(1, (0xd000, 0xd07f), 5)).unwrap();
        assert_eq!((placed.function.at, placed.io, placed.interrupt), (DISK1, Some((0, 128)), Some((1, 0))));
        assert_eq!(bus.dword(DISK1, 0x10), 0xd001);
        assert_eq!(bus.dword(DISK1, 0x3c) & 0xff, 5);
        assert_eq!(bus.dword(DISK1, 4) & 0b101, 0b101, "I/O decoding and bus mastering on");
        assert_eq!(bus.dword(ISA_BRIDGE, PIRQ_ROUTE), 0x0b0b_0a05, "PIRQA to IRQ 5, the others as they were");
        // The first disk to where the second was: the second no longer answers there, the
        // IDE controller is left alone.
        let placed = placer.place(&mut bus, &functions, &disk(0, (0xc080, 0xc0ff), 11)).unwrap();
        assert_eq!((placed.function.at, placed.interrupt), (DISK0, Some((1, 2))));
        assert_eq!(bus.dword(DISK0, 0x10), 0xc081);
        assert_eq!(bus.dword(IDE, 4) & 1, 1);
    }

    #[test]
    fn a_function_goes_to_one_owner_and_masters_the_bus_only_with_dma() {
        let mut bus = pc();
        let functions = scan(&mut bus);
        let mut placer = Placer::new();
        // The firmware left bus mastering on; an owner without DMA memory does not keep it.
        let c = bus.dword(DISK0, 4);
        bus.space.get_mut(&(0, 3, 0)).unwrap()[1] = c | 0b100;
        placer
            .place(&mut bus, &functions, &Assignment { bus_master: false, ..disk(0, (0xc000, 0xc07f), 11) })
            .unwrap();
        assert_eq!(bus.dword(DISK0, 4) & 0b111, 0b001);
        // The same function again, by address: refused.
        let again = Assignment { function: Match::Address(DISK0), ..disk(0, (0xd000, 0xd07f), 11) };
        assert_eq!(placer.place(&mut bus, &functions, &again), Err(PlaceError::PlacedAlready));
    }

    #[test]
    fn whatever_else_decodes_the_ports_stops() {
        let mut bus = pc();
        let functions = scan(&mut bus);
        // The window holds the IDE controller's BAR (0xc100, 16 bytes).
        Placer::new().place(&mut bus, &functions, &disk(0, (0xc100, 0xc17f), 11)).unwrap();
        assert_eq!(bus.dword(IDE, 4) & 1, 0, "the IDE controller stopped decoding I/O");
        assert_eq!(bus.dword(DISK1, 4) & 1, 1, "the other disk, elsewhere, did not");
    }

    #[test]
    fn what_cannot_be_placed_is_refused_and_nothing_changes() {
        let mut bus = pc();
        let functions = scan(&mut bus);
        let mut placer = Placer::new();
        let before = bus.space.clone();
        let cases = [
            (disk(2, (0xd000, 0xd07f), 11), PlaceError::NotFound),
            (disk(0, (0xd000, 0xd03f), 11), PlaceError::TooLarge(128)),
            (disk(0, (0xd000, 0xd05f), 11), PlaceError::BadWindow),
            (disk(0, (0xd040, 0xd0bf), 11), PlaceError::BadWindow),
            (
                Assignment { function: Match::Address(VGA), ..disk(0, (0xd000, 0xd07f), 11) },
                PlaceError::NoIoBar,
            ),
            (
                Assignment { function: Match::Address(IDE), ..disk(0, (0xd000, 0xd00f), 11) },
                PlaceError::NoInterruptPin,
            ),
            (
                Assignment {
                    function: Match::Address(VGA),
                    ports: None,
                    irq: None,
                    memory: &[(0xfe00_0000, 4096)],
                    ..disk(0, (0, 0), 0)
                },
                PlaceError::MemoryNotAtBar(0xfe00_0000),
            ),
            (
                Assignment {
                    function: Match::Address(VGA),
                    ports: None,
                    irq: None,
                    memory: &[(0xfebf_0000, 8192)],
                    ..disk(0, (0, 0), 0)
                },
                PlaceError::MemoryNotAtBar(0xfebf_0000),
            ),
        ];
        for (assignment, error) in cases {
            assert_eq!(placer.place(&mut bus, &functions, &assignment), Err(error), "{assignment:?}");
            assert!(bus.space == before, "{assignment:?} changed the bus");
        }
    }

    #[test]
    fn two_functions_on_one_pirq_line_cannot_go_two_ways() {
        let mut bus = pc();
        // Slot 7's INTA is PIRQC, as slot 3's is.
        let other = Bdf { bus: 0, dev: 7, func: 0 };
        bus.function(other, 0x1af4, 0x1000, false, 1);
        bus.io_bar(other, 0, 0xc200, 32);
        let functions = scan(&mut bus);
        let mut placer = Placer::new();
        placer.place(&mut bus, &functions, &disk(0, (0xc000, 0xc07f), 11)).unwrap();
        let net = Assignment {
            function: Match::Address(other),
            ports: Some((0xc200, 0xc21f)),
            ..disk(0, (0, 0), 10)
        };
        assert_eq!(placer.place(&mut bus, &functions, &net), Err(PlaceError::PirqTaken { pirq: 2, irq: 11 }));
        // The same line is fine.
        placer.place(&mut bus, &functions, &Assignment { irq: Some(11), ..net }).unwrap();
    }

    #[test]
    fn a_display_adapters_memory_is_checked_where_the_firmware_put_it() {
        let mut bus = pc();
        bus.space.get_mut(&(0, 2, 0)).unwrap()[1] = 0; // decoding off
        let functions = scan(&mut bus);
        let vga = Assignment {
            name: "vga",
            function: Match::Id { vendor: 0x1234, device: 0x1111, index: 0 },
            ports: None,
            memory: &[(0xfebf_0000, 4096), (0xfd00_0000, 8 << 20)],
            irq: None,
            bus_master: false,
        };
        let placed = Placer::new().place(&mut bus, &functions, &vga).unwrap();
        assert_eq!((placed.io, placed.interrupt, placed.memory), (None, None, 2));
        assert_eq!(bus.dword(VGA, 4) & 0b111, 0b010, "memory decoding only");
        assert_eq!(
            (bus.dword(VGA, 0x10), bus.dword(VGA, 0x18)),
            (0xfd00_0008, 0xfebf_0008),
            "BARs as they were"
        );
    }

    #[test]
    fn the_piix_rotates_pins_by_slot_and_sizes_io_bars_by_their_low_bit() {
        assert_eq!((pirq(3, 1), pirq(5, 1), pirq(1, 1), pirq(4, 2)), (2, 0, 0, 0));
        assert_eq!(io_bar_size(0xffff_ff81), 128);
        assert_eq!(io_bar_size(0x0000_ffe1), 32);
    }
}
