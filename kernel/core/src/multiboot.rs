//! Parsing of the Multiboot (version 1) information structure.
//!
//! The boot loader leaves a structure in physical memory full of pointers to more
//! structures. None of it is trusted: every pointer is read through [`PhysMemory`], which
//! refuses addresses it cannot back, every length is bounded, and anything that does not
//! fit the kernel's fixed-size tables is an error rather than a silent truncation. (The
//! `multiboot` crate exists, but it turns boot-loader pointers into slices by `unsafe`; this
//! parser keeps all of that behind one checked read.)

use crate::addr::PhysAddr;
use core::fmt;
use heapless::{String, Vec};

/// Value of `eax` when a Multiboot v1 loader jumps to the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// Most memory-map entries the kernel keeps.
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Most boot modules the kernel keeps.
pub const MAX_MODULES: usize = 16;
/// Longest command line (kernel's or a module's) the kernel keeps, in bytes.
pub const MAX_STRING: usize = 256;

/// `mem_lower`/`mem_upper` valid: the old summary, which Cleave ignores for the full map.
#[cfg(test)]
const FLAG_MEMORY: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MODULES: u32 = 1 << 3;
const FLAG_MEMORY_MAP: u32 = 1 << 6;
const FLAG_LOADER_NAME: u32 = 1 << 9;

/// Read access to physical memory, as the kernel's direct map provides it.
pub trait PhysMemory {
    /// Fills `buf` from physical address `addr`; `Err` if any byte is outside what this
    /// memory can reach.
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), Unreachable>;
}

/// A read that [`PhysMemory`] could not satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable;

/// The kind of a memory-map entry, as the BIOS (E820) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// RAM the kernel may use.
    Available,
    /// ACPI tables; reclaimable after they have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective RAM.
    Defective,
    /// Anything else: reserved.
    Reserved(u32),
}

impl RegionKind {
    fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Available,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Defective,
            other => Self::Reserved(other),
        }
    }
}

/// One entry of the boot loader's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes.
    pub len: u64,
    /// What the firmware says the range is.
    pub kind: RegionKind,
}

impl MemoryRegion {
    /// One past the last byte, saturating at the top of the address space.
    pub fn end(&self) -> PhysAddr {
        PhysAddr(self.start.0.saturating_add(self.len))
    }
}

/// A boot module: a file the boot loader placed in memory next to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
    /// The module's command line (GRUB: the path and arguments after `module`).
    pub cmdline: String<MAX_STRING>,
}

impl Module {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }
    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// What the kernel keeps of the Multiboot information.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootInformation {
    /// Where the information structure itself lies (so it can be kept from the allocator).
    pub info_addr: PhysAddr,
    /// The kernel command line, if the loader passed one.
    pub cmdline: String<MAX_STRING>,
    /// The boot loader's name, if it said.
    pub loader_name: String<MAX_STRING>,
    /// Boot modules in the order the loader lists them.
    pub modules: Vec<Module, MAX_MODULES>,
    /// The memory map, in the loader's order.
    pub memory: Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
}

/// Why the Multiboot information was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultibootError {
    /// `eax` did not hold the Multiboot v1 magic: not started by a Multiboot loader.
    BadMagic(u32),
    /// A structure lies where physical memory cannot be read.
    Unreadable { what: &'static str, addr: PhysAddr },
    /// The loader passed no memory map (flag bit 6 clear).
    NoMemoryMap,
    /// A memory-map entry declares a size too small to hold an entry.
    BadMemoryMapEntry { offset: u32, size: u32 },
    /// More memory-map entries than [`MAX_MEMORY_REGIONS`].
    TooManyRegions,
    /// More modules than [`MAX_MODULES`].
    TooManyModules(u32),
    /// A module ends before it starts.
    BadModuleBounds { index: usize, start: u32, end: u32 },
    /// A string is longer than [`MAX_STRING`] or not UTF-8.
    BadString { what: &'static str },
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => {
                write!(f, "not started by a Multiboot loader (eax = {m:#x}, expected {BOOTLOADER_MAGIC:#x})")
            }
            Self::Unreadable { what, addr } => {
                write!(f, "multiboot {what} at {addr} is outside readable memory")
            }
            Self::NoMemoryMap => write!(f, "the boot loader passed no memory map"),
            Self::BadMemoryMapEntry { offset, size } => {
                write!(f, "memory map entry at offset {offset} has bad size {size}")
            }
            Self::TooManyRegions => {
                write!(f, "memory map has more than {MAX_MEMORY_REGIONS} entries")
            }
            Self::TooManyModules(n) => {
                write!(f, "{n} boot modules, at most {MAX_MODULES} supported")
            }
            Self::BadModuleBounds { index, start, end } => {
                write!(f, "boot module {index} ends ({end:#x}) before it starts ({start:#x})")
            }
            Self::BadString { what } => {
                write!(f, "{what} is longer than {MAX_STRING} bytes or not UTF-8")
            }
        }
    }
}

fn read_u32(mem: &impl PhysMemory, addr: PhysAddr, what: &'static str) -> Result<u32, MultibootError> {
    let mut b = [0u8; 4];
    mem.read(addr, &mut b).map_err(|Unreachable| MultibootError::Unreadable { what, addr })?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(mem: &impl PhysMemory, addr: PhysAddr, what: &'static str) -> Result<u64, MultibootError> {
    let mut b = [0u8; 8];
    mem.read(addr, &mut b).map_err(|Unreachable| MultibootError::Unreadable { what, addr })?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a NUL-terminated string of at most [`MAX_STRING`] bytes.
fn read_string(
    mem: &impl PhysMemory,
    addr: PhysAddr,
    what: &'static str,
) -> Result<String<MAX_STRING>, MultibootError> {
    let mut bytes: Vec<u8, MAX_STRING> = Vec::new();
    let mut cursor = addr;
    loop {
        let mut b = [0u8; 1];
        mem.read(cursor, &mut b).map_err(|Unreachable| MultibootError::Unreadable { what, addr: cursor })?;
        if b[0] == 0 {
            break;
        }
        bytes.push(b[0]).map_err(|_| MultibootError::BadString { what })?;
        cursor = cursor.checked_add(1).ok_or(MultibootError::Unreadable { what, addr: cursor })?;
    }
    String::from_utf8(bytes).map_err(|_| MultibootError::BadString { what })
}

/// Parses the information structure at `info_addr`, handed over with `magic` in `eax`.
pub fn parse(
    mem: &impl PhysMemory,
    magic: u32,
    info_addr: PhysAddr,
) -> Result<BootInformation, MultibootError> {
    if magic != BOOTLOADER_MAGIC {
        return Err(MultibootError::BadMagic(magic));
    }
    let field = |offset: u64| PhysAddr(info_addr.0.saturating_add(offset));
    let flags = read_u32(mem, info_addr, "information structure")?;
    let mut info = BootInformation { info_addr, ..BootInformation::default() };

    if flags & FLAG_CMDLINE != 0 {
        let ptr = read_u32(mem, field(16), "information structure")?;
        info.cmdline = read_string(mem, PhysAddr(ptr.into()), "kernel command line")?;
    }
    if flags & FLAG_LOADER_NAME != 0 {
        let ptr = read_u32(mem, field(64), "information structure")?;
        info.loader_name = read_string(mem, PhysAddr(ptr.into()), "boot loader name")?;
    }
    if flags & FLAG_MODULES != 0 {
        let count = read_u32(mem, field(20), "information structure")?;
        let base = read_u32(mem, field(24), "information structure")?;
        if count as usize > MAX_MODULES {
            return Err(MultibootError::TooManyModules(count));
        }
        for index in 0..count as usize {
            let entry = PhysAddr(u64::from(base) + 16 * index as u64);
            let start = read_u32(mem, entry, "module list")?;
            let end = read_u32(mem, PhysAddr(entry.0 + 4), "module list")?;
            let string = read_u32(mem, PhysAddr(entry.0 + 8), "module list")?;
            if end < start {
                return Err(MultibootError::BadModuleBounds { index, start, end });
            }
            let cmdline = if string == 0 {
                String::new()
            } else {
                read_string(mem, PhysAddr(string.into()), "module command line")?
            };
            let module = Module { start: PhysAddr(start.into()), end: PhysAddr(end.into()), cmdline };
            // Cannot fail: count <= MAX_MODULES was checked above.
            let _ = info.modules.push(module);
        }
    }
    if flags & FLAG_MEMORY_MAP == 0 {
        // Loaders that only give mem_lower/mem_upper (flag 0) are too old to be worth
        // guessing for: every loader Cleave supports passes a full map.
        return Err(MultibootError::NoMemoryMap);
    }
    let map_len = read_u32(mem, field(44), "information structure")?;
    let map_addr = read_u32(mem, field(48), "information structure")?;
    let mut offset: u32 = 0;
    // Each entry: u32 size (not counting itself), u64 base, u64 length, u32 type.
    while offset < map_len {
        let entry = PhysAddr(u64::from(map_addr) + u64::from(offset));
        let size = read_u32(mem, entry, "memory map")?;
        if size < 20 {
            return Err(MultibootError::BadMemoryMapEntry { offset, size });
        }
        let start = read_u64(mem, PhysAddr(entry.0 + 4), "memory map")?;
        let len = read_u64(mem, PhysAddr(entry.0 + 12), "memory map")?;
        let kind = read_u32(mem, PhysAddr(entry.0 + 20), "memory map")?;
        if len != 0 {
            let region = MemoryRegion { start: PhysAddr(start), len, kind: RegionKind::from_raw(kind) };
            info.memory.push(region).map_err(|_| MultibootError::TooManyRegions)?;
        }
        offset = offset
            .checked_add(size)
            .and_then(|o| o.checked_add(4))
            .ok_or(MultibootError::BadMemoryMapEntry { offset, size })?;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec as StdVec;

    /// Fake physical memory: a byte array that starts at `base`.
    struct FakeMemory {
        base: u64,
        bytes: StdVec<u8>,
    }

    impl FakeMemory {
        fn new(base: u64, size: usize) -> Self {
            Self { base, bytes: std::vec![0; size] }
        }
        fn put(&mut self, addr: u64, data: &[u8]) {
            let at = (addr - self.base) as usize;
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }
        fn put_u32(&mut self, addr: u64, v: u32) {
            self.put(addr, &v.to_le_bytes());
        }
        fn put_u64(&mut self, addr: u64, v: u64) {
            self.put(addr, &v.to_le_bytes());
        }
    }

    impl PhysMemory for FakeMemory {
        fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), Unreachable> {
            let start = addr.0.checked_sub(self.base).ok_or(Unreachable)? as usize;
            let end = start.checked_add(buf.len()).ok_or(Unreachable)?;
            buf.copy_from_slice(self.bytes.get(start..end).ok_or(Unreachable)?);
            Ok(())
        }
    }

    const INFO: u64 = 0x9000;

    /// Lays out what QEMU's loader passes: command line, two modules, a three-entry map.
    fn qemu_like() -> FakeMemory {
        let mut m = FakeMemory::new(0x8000, 0x4000);
        m.put_u32(INFO, FLAG_MEMORY | FLAG_CMDLINE | FLAG_MODULES | FLAG_MEMORY_MAP | FLAG_LOADER_NAME);
        m.put_u32(INFO + 16, 0xa000);
        m.put(0xa000, b"kernel.elf cleave.selftest=none\0");
        m.put_u32(INFO + 64, 0xa100);
        m.put(0xa100, b"qemu\0");
        m.put_u32(INFO + 20, 2);
        m.put_u32(INFO + 24, 0xa200);
        for (i, (s, e, name)) in
            [(0x20_0000u32, 0x20_1000u32, 0xa300u32), (0x20_1000, 0x20_3000, 0)].into_iter().enumerate()
        {
            let at = 0xa200 + 16 * i as u64;
            m.put_u32(at, s);
            m.put_u32(at + 4, e);
            m.put_u32(at + 8, name);
        }
        m.put(0xa300, b"hello\0");
        let map = [(0u64, 0x9fc00u64, 1u32), (0xf0000, 0x10000, 2), (0x10_0000, 0x7ee_0000, 1)];
        m.put_u32(INFO + 44, (map.len() * 24) as u32);
        m.put_u32(INFO + 48, 0xb000);
        for (i, (base, len, kind)) in map.into_iter().enumerate() {
            let at = 0xb000 + 24 * i as u64;
            m.put_u32(at, 20);
            m.put_u64(at + 4, base);
            m.put_u64(at + 12, len);
            m.put_u32(at + 20, kind);
        }
        m
    }

    #[test]
    fn parses_what_qemu_passes() {
        let info = parse(&qemu_like(), BOOTLOADER_MAGIC, PhysAddr(INFO)).unwrap();
        assert_eq!(info.cmdline.as_str(), "kernel.elf cleave.selftest=none");
        assert_eq!(info.loader_name.as_str(), "qemu");
        assert_eq!(info.modules.len(), 2);
        assert_eq!(info.modules[0].cmdline.as_str(), "hello");
        assert_eq!(info.modules[0].len(), 0x1000);
        assert_eq!(info.modules[1].cmdline.as_str(), "");
        assert_eq!(info.memory.len(), 3);
        assert_eq!(info.memory[1].kind, RegionKind::Reserved(2));
        assert_eq!(info.memory[2].end(), PhysAddr(0x7fe_0000));
    }

    #[test]
    fn rejects_wrong_magic() {
        let err = parse(&qemu_like(), 0x1bad_b002, PhysAddr(INFO)).unwrap_err();
        assert_eq!(err, MultibootError::BadMagic(0x1bad_b002));
        assert!(std::format!("{err}").contains("not started by a Multiboot loader"));
    }

    #[test]
    fn rejects_missing_memory_map() {
        let mut m = qemu_like();
        m.put_u32(INFO, FLAG_CMDLINE);
        assert_eq!(parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)), Err(MultibootError::NoMemoryMap));
    }

    #[test]
    fn rejects_pointers_outside_memory() {
        let mut m = qemu_like();
        m.put_u32(INFO + 16, 0xdead_0000);
        let err = parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)).unwrap_err();
        assert_eq!(
            err,
            MultibootError::Unreadable { what: "kernel command line", addr: PhysAddr(0xdead_0000) }
        );
        assert!(parse(&m, BOOTLOADER_MAGIC, PhysAddr(0xffff_ffff)).is_err());
    }

    #[test]
    fn rejects_unterminated_string() {
        let mut m = qemu_like();
        m.put(0xa000, &[b'x'; 300]);
        let err = parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)).unwrap_err();
        assert_eq!(err, MultibootError::BadString { what: "kernel command line" });
    }

    #[test]
    fn rejects_bad_modules() {
        let mut m = qemu_like();
        m.put_u32(INFO + 20, 1000);
        assert_eq!(parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)), Err(MultibootError::TooManyModules(1000)));
        let mut m = qemu_like();
        m.put_u32(0xa204, 0x10_0000);
        assert_eq!(
            parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)),
            Err(MultibootError::BadModuleBounds { index: 0, start: 0x20_0000, end: 0x10_0000 })
        );
    }

    #[test]
    fn rejects_zero_sized_map_entry_instead_of_looping() {
        let mut m = qemu_like();
        m.put_u32(0xb018, 0);
        assert_eq!(
            parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)),
            Err(MultibootError::BadMemoryMapEntry { offset: 24, size: 0 })
        );
    }

    #[test]
    fn skips_empty_regions_and_bounds_the_table() {
        let mut m = qemu_like();
        m.put_u64(0xb000 + 12, 0);
        let info = parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)).unwrap();
        assert_eq!(info.memory.len(), 2);
        // A map longer than the table: 100 entries, all 24 bytes.
        let mut m = FakeMemory::new(0x8000, 0x8000);
        m.put_u32(INFO, FLAG_MEMORY_MAP);
        m.put_u32(INFO + 44, 100 * 24);
        m.put_u32(INFO + 48, 0xa000);
        for i in 0..100u64 {
            m.put_u32(0xa000 + 24 * i, 20);
            m.put_u64(0xa000 + 24 * i + 4, i << 20);
            m.put_u64(0xa000 + 24 * i + 12, 4096);
            m.put_u32(0xa000 + 24 * i + 20, 1);
        }
        assert_eq!(parse(&m, BOOTLOADER_MAGIC, PhysAddr(INFO)), Err(MultibootError::TooManyRegions));
    }
}
