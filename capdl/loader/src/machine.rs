//! What device memory this machine has, found at boot: the memory BARs of the functions on
//! PCI bus 0 (configuration mechanism #1, ports 0xCF8-0xCFF, through a port capability
//! the loader makes for itself and deletes afterwards), plus the chipset's fixed windows.
//! The loader refuses a device frame whose address lies in none of them: the spec was
//! written for another machine's firmware (issue 18; PCIBack will place devices by what
//! they are).

use cleave_abi::boot_info::slot;
use cleave_abi::layout::PAGE_SIZE;
use cleave_rt::cap::kind::{CNode, IoPort, IoPortControl};
use cleave_rt::{Cap, println};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Device memory every PC chipset decodes without a BAR: the legacy VGA window, the
/// I/O APIC, the HPET and the local APIC (a page each).
const FIXED: [(u64, u64); 4] =
    [(0xa_0000, 0x2_0000), (0xfec0_0000, PAGE_SIZE), (0xfed0_0000, PAGE_SIZE), (0xfee0_0000, PAGE_SIZE)];

/// Most memory ranges kept (6 BARs for each of 32 devices, a few multi-function).
const MAX_RANGES: usize = 96;

/// The machine's device memory ranges: (base, size).
pub struct Machine {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
    /// Whether PCI configuration space could be read at all.
    pub scanned: bool,
}

struct Config(Cap<IoPort>);

impl Config {
    fn address(bus: u8, dev: u8, func: u8, offset: u8) -> u32 {
        1 << 31
            | u32::from(bus) << 16
            | u32::from(dev) << 11
            | u32::from(func) << 8
            | u32::from(offset & 0xfc)
    }
    fn read(&self, dev: u8, func: u8, offset: u8) -> Option<u32> {
        self.0.write(CONFIG_ADDRESS, 4, Self::address(0, dev, func, offset)).ok()?;
        self.0.read(CONFIG_DATA, 4).ok()
    }
    fn write(&self, dev: u8, func: u8, offset: u8, value: u32) -> Option<()> {
        self.0.write(CONFIG_ADDRESS, 4, Self::address(0, dev, func, offset)).ok()?;
        self.0.write(CONFIG_DATA, 4, value).ok()
    }
}

/// A memory BAR's size from what reads back after writing all ones (low dword; `high`
/// for the upper half of a 64-bit BAR): the lowest set address bit.
pub fn bar_size(low: u32, high: u32) -> u64 {
    let mask = u64::from(high) << 32 | u64::from(low & !0xf);
    if mask == 0 { 0 } else { mask & mask.wrapping_neg() }
}

impl Machine {
    /// No ranges, not scanned (every address taken on trust).
    pub const EMPTY: Self = Self { ranges: [(0, 0); MAX_RANGES], count: 0, scanned: false };

    /// Scans bus 0 through a port capability made in root slot `scratch` (deleted again).
    pub fn scan(scratch: u64) -> Self {
        let mut m = Self::EMPTY;
        let control: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
        let root: Cap<CNode> = Cap::from_cptr(slot::CNODE);
        if control.issue(CONFIG_ADDRESS, CONFIG_DATA + 3, root.slot(scratch, 64)).is_err() {
            println!("loader: cannot reach PCI configuration space: device addresses are not checked");
            return m;
        }
        let config = Config(Cap::from_cptr(scratch));
        m.scanned = true;
        for dev in 0..32u8 {
            for func in 0..8u8 {
                let Some(id) = config.read(dev, func, 0) else { continue };
                if id & 0xffff == 0xffff {
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                m.function(&config, dev, func, id);
                let header = config.read(dev, func, 0xc).unwrap_or(0) >> 16 & 0xff;
                if func == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
        let _ = Cap::<CNode>::delete(root.slot(scratch, 64));
        m
    }

    /// Sizes one function's memory BARs (memory decoding off meanwhile) and keeps them.
    fn function(&mut self, config: &Config, dev: u8, func: u8, id: u32) {
        let header = config.read(dev, func, 0xc).unwrap_or(0) >> 16 & 0x7f;
        // Type 0 headers have six BARs, bridges two.
        let bars = if header == 0 { 6 } else { 2 };
        let command = config.read(dev, func, 4).unwrap_or(0);
        let _ = config.write(dev, func, 4, command & !0x3);
        cleave_rt::print!("loader: pci 00:{dev:02x}.{func} {:04x}:{:04x}", id & 0xffff, id >> 16);
        let mut bar = 0u8;
        while bar < bars {
            let offset = 0x10 + 4 * bar;
            let low = config.read(dev, func, offset).unwrap_or(0);
            let wide = low & 1 == 0 && (low >> 1) & 3 == 2;
            if low & 1 == 0 {
                let high = if wide { config.read(dev, func, offset + 4).unwrap_or(0) } else { 0 };
                let _ = config.write(dev, func, offset, !0);
                let size_low = config.read(dev, func, offset).unwrap_or(0);
                let _ = config.write(dev, func, offset, low);
                let size_high = if wide {
                    let _ = config.write(dev, func, offset + 4, !0);
                    let s = config.read(dev, func, offset + 4).unwrap_or(0);
                    let _ = config.write(dev, func, offset + 4, high);
                    s
                } else {
                    !0
                };
                let base = u64::from(high) << 32 | u64::from(low & !0xf);
                let size = bar_size(size_low, size_high);
                if base != 0 && size != 0 && self.count < MAX_RANGES {
                    self.ranges[self.count] = (base, size);
                    self.count += 1;
                    cleave_rt::print!(" memory {base:#x}+{} KiB", size >> 10);
                }
            }
            bar += if wide { 2 } else { 1 };
        }
        let _ = config.write(dev, func, 4, command);
        println!();
    }

    /// Whether the page at `paddr` is device memory of this machine. Without a scan
    /// (no access to configuration space), every address is taken on trust.
    pub fn has_page(&self, paddr: u64) -> bool {
        let inside = |&(base, size): &(u64, u64)| {
            paddr >= base && paddr - base < size && size - (paddr - base) >= PAGE_SIZE
        };
        !self.scanned || FIXED.iter().any(inside) || self.ranges[..self.count].iter().any(inside)
    }
}
