//! Starting a Linux kernel with its x86 boot protocol (Linux's
//! `Documentation/arch/x86/boot.rst`), at the 64-bit entry point: the VMM reads the
//! bzImage's setup header, copies the protected-mode kernel to where it prefers to run,
//! puts the initramfs at the top of RAM, and writes the "zero page" (`boot_params`: the
//! setup header, the loader's type, the command line's and initramfs's addresses, and an
//! e820 memory map) that the kernel finds through RSI. The kernel is entered in long mode
//! with identity paging (the VMM's [`crate::paging::long_mode`]), flat code at selector
//! 0x10 and data at 0x18 (`__BOOT_CS`, `__BOOT_DS`) and interrupts off.
//!
//! Why the 64-bit entry rather than PVH: Debian's bzImage has it (boot protocol 2.12 and
//! later, `XLF_KERNEL_64`), it needs no ELF note or start-info structure, and it is what the
//! kernel's own loaders (kexec, EFI stub) use; the VMM already starts its guests in long
//! mode.

use crate::guest::GuestMemory;
use crate::paging::layout::GDT_SIZE;
use core::fmt;

/// Where the VMM puts what the kernel reads at entry (below 1 MiB, above the long-mode
/// tables of [`crate::paging::layout`]).
pub mod layout {
    /// The zero page (`boot_params`), 4 KiB.
    pub const ZERO_PAGE: u64 = 0x1_0000;
    /// The kernel command line, NUL-terminated.
    pub const CMDLINE: u64 = 0x2_0000;
    /// The longest command line this VMM passes (boot protocol 2.06+ kernels say their own
    /// limit in `cmdline_size`; the smaller wins).
    pub const CMDLINE_MAX: usize = 4096;
    /// The first byte of RAM above the legacy hole (where e820's second RAM range starts).
    pub const HIGH_MEMORY: u64 = 0x10_0000;
    /// The end of conventional memory below the EBDA.
    pub const LOW_MEMORY_END: u64 = 0x9_fc00;
}

/// Offsets in the setup header and the zero page (boot.rst's tables).
mod offset {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// Zero page: the high halves of the initramfs address and size.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    /// Zero page: the e820 map's entry count and entries (20 bytes each, up to 128).
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const E820_TABLE: usize = 0x2d0;
}

/// `xloadflags`: the kernel has a 64-bit entry point at its start plus 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// `loadflags`: the protected-mode kernel is loaded at 0x100000 or above.
const LOADED_HIGH: u8 = 1 << 0;
/// The 64-bit entry's offset from the protected-mode kernel's start.
pub const ENTRY_64: u64 = 0x200;
/// e820 types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Why a kernel cannot be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// No boot-protocol header ("HdrS" and the 0xAA55 boot flag).
    NotBzImage,
    /// A boot protocol older than 2.12, which has no 64-bit entry to speak of.
    TooOld {
        /// The header's version.
        version: u16,
    },
    /// The kernel says it has no 64-bit entry point.
    No64BitEntry,
    /// The image is shorter than its header says.
    Truncated,
    /// The command line does not fit.
    CommandLineTooLong {
        /// The kernel's (or this VMM's) limit.
        limit: usize,
    },
    /// The kernel (with the room it needs to decompress) and the initramfs do not fit the
    /// guest's RAM.
    TooLittleMemory {
        /// Bytes of RAM needed at least.
        needed: u64,
    },
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBzImage => write!(f, "not a Linux bzImage (no boot-protocol header)"),
            Self::TooOld { version } => {
                write!(
                    f,
                    "boot protocol {}.{:02} has no 64-bit entry (2.12 needed)",
                    version >> 8,
                    version & 0xff
                )
            }
            Self::No64BitEntry => write!(f, "the kernel has no 64-bit entry point (XLF_KERNEL_64 clear)"),
            Self::Truncated => write!(f, "the image is shorter than its header says"),
            Self::CommandLineTooLong { limit } => write!(f, "the command line is longer than {limit} bytes"),
            Self::TooLittleMemory { needed } => {
                write!(f, "the kernel and initramfs need at least {} MiB of RAM", needed.div_ceil(1 << 20))
            }
        }
    }
}

/// What the VMM enters the kernel with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boot {
    /// RIP: the 64-bit entry point.
    pub entry: u64,
    /// RSI: the zero page.
    pub zero_page: u64,
    /// Where the protected-mode kernel was loaded.
    pub kernel: u64,
    /// Where the initramfs was put, and its size.
    pub initrd: (u64, u64),
}

/// The first bytes of a Linux guest image as `cargo xtask` packs it: this magic, the
/// kernel's length and the initramfs's length (little-endian u64s), the kernel (a bzImage),
/// then the initramfs.
pub const IMAGE_MAGIC: &[u8; 16] = b"CLEAVE-LINUX-IMG";

/// The kernel and initramfs of a Linux guest image ([`IMAGE_MAGIC`]); `None` if `image` is
/// not one or its lengths run past its end.
pub fn unpack(image: &[u8]) -> Option<(&[u8], &[u8])> {
    let header = image.get(..32)?;
    if &header[..16] != IMAGE_MAGIC {
        return None;
    }
    let kernel_len = usize::try_from(u64_at(header, 16)).ok()?;
    let initrd_len = usize::try_from(u64_at(header, 24)).ok()?;
    let kernel_end = 32usize.checked_add(kernel_len)?;
    let kernel = image.get(32..kernel_end)?;
    let initrd = image.get(kernel_end..kernel_end.checked_add(initrd_len)?)?;
    Some((kernel, initrd))
}

/// Packs `kernel` and `initrd` as [`unpack`] reads them.
pub fn pack(kernel: &[u8], initrd: &[u8], out: &mut impl Extend<u8>) {
    out.extend(IMAGE_MAGIC.iter().copied());
    out.extend((kernel.len() as u64).to_le_bytes());
    out.extend((initrd.len() as u64).to_le_bytes());
    out.extend(kernel.iter().copied());
    out.extend(initrd.iter().copied());
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// The e820 map of a guest with `ram` bytes of RAM from guest-physical 0: conventional
/// memory, the EBDA and BIOS area reserved (no firmware, but Linux expects the hole), and
/// the rest of RAM from 1 MiB.
pub fn e820(ram: u64) -> [(u64, u64, u32); 4] {
    [
        (0, layout::LOW_MEMORY_END, E820_RAM),
        (layout::LOW_MEMORY_END, 0xa_0000 - layout::LOW_MEMORY_END, E820_RESERVED),
        (0xf_0000, 0x1_0000, E820_RESERVED),
        (layout::HIGH_MEMORY, ram.saturating_sub(layout::HIGH_MEMORY), E820_RAM),
    ]
}

/// Loads `kernel` (a bzImage) and `initrd` into `mem` (`ram` bytes from guest-physical 0)
/// with `cmdline`, and writes the zero page; returns where to enter. The identity-mapped
/// long-mode tables ([`crate::paging::long_mode`]) are the caller's.
pub fn load(
    mem: &mut impl GuestMemory,
    ram: u64,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<Boot, LinuxError> {
    if kernel.len() < offset::INIT_SIZE + 4
        || u16_at(kernel, offset::BOOT_FLAG) != 0xaa55
        || &kernel[offset::HEADER..offset::HEADER + 4] != b"HdrS"
    {
        return Err(LinuxError::NotBzImage);
    }
    let version = u16_at(kernel, offset::VERSION);
    if version < 0x020c {
        return Err(LinuxError::TooOld { version });
    }
    if u16_at(kernel, offset::XLOADFLAGS) & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    // The real-mode part: the boot sector and `setup_sects` sectors (0 means 4).
    let setup_sects = match kernel[offset::SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let protected = kernel.get((setup_sects + 1) * 512..).ok_or(LinuxError::Truncated)?;
    let header_end = offset::JUMP + 2 + usize::from(kernel[offset::JUMP + 1]);
    let header = kernel.get(offset::SETUP_SECTS..header_end).ok_or(LinuxError::Truncated)?;
    // Where the kernel runs: its preferred address (a relocatable kernel could go
    // elsewhere; the preferred one is simplest and what it was linked for), aligned.
    let alignment = u64::from(u32_at(kernel, offset::KERNEL_ALIGNMENT)).max(1 << 21);
    let preferred = u64_at(kernel, offset::PREF_ADDRESS).max(layout::HIGH_MEMORY);
    let load_at = preferred.next_multiple_of(alignment);
    let _relocatable = kernel[offset::RELOCATABLE_KERNEL];
    let init_size = u64::from(u32_at(kernel, offset::INIT_SIZE)).max(protected.len() as u64);
    let kernel_end = load_at + init_size;
    // The initramfs at the top of RAM (below the kernel's limit for it), page-aligned.
    let initrd_max = u64::from(u32_at(kernel, offset::INITRD_ADDR_MAX)).max(0x37ff_ffff);
    let top = ram.min(initrd_max + 1);
    let initrd_at = top.saturating_sub(initrd.len() as u64) & !0xfff;
    let needed = kernel_end + (initrd.len() as u64).next_multiple_of(0x1000);
    if initrd_at < kernel_end || needed > ram {
        return Err(LinuxError::TooLittleMemory { needed: needed.max(kernel_end) });
    }
    let limit = match u32_at(kernel, offset::CMDLINE_SIZE) {
        0 => 255,
        n => n as usize,
    }
    .min(layout::CMDLINE_MAX - 1);
    if cmdline.len() > limit {
        return Err(LinuxError::CommandLineTooLong { limit });
    }
    let room = |ok: bool| if ok { Ok(()) } else { Err(LinuxError::TooLittleMemory { needed }) };
    room(mem.write(load_at, protected))?;
    if !initrd.is_empty() {
        room(mem.write(initrd_at, initrd))?;
    }
    room(
        mem.write(layout::CMDLINE, cmdline.as_bytes())
            && mem.write(layout::CMDLINE + cmdline.len() as u64, &[0]),
    )?;
    // The zero page: zero, the setup header at its offset, then what the loader fills in.
    let mut zero = [0u8; 4096];
    zero[offset::SETUP_SECTS..header_end].copy_from_slice(header);
    zero[offset::TYPE_OF_LOADER] = 0xff;
    zero[offset::LOADFLAGS] |= LOADED_HIGH;
    let initrd_len = initrd.len() as u64;
    let (initrd_at, initrd_len) = if initrd.is_empty() { (0, 0) } else { (initrd_at, initrd_len) };
    zero[offset::RAMDISK_IMAGE..][..4].copy_from_slice(&(initrd_at as u32).to_le_bytes());
    zero[offset::RAMDISK_SIZE..][..4].copy_from_slice(&(initrd_len as u32).to_le_bytes());
    zero[offset::EXT_RAMDISK_IMAGE..][..4].copy_from_slice(&((initrd_at >> 32) as u32).to_le_bytes());
    zero[offset::EXT_RAMDISK_SIZE..][..4].copy_from_slice(&((initrd_len >> 32) as u32).to_le_bytes());
    zero[offset::CMD_LINE_PTR..][..4].copy_from_slice(&(layout::CMDLINE as u32).to_le_bytes());
    let map = e820(ram);
    zero[offset::E820_ENTRIES] = map.len() as u8;
    for (i, (address, size, kind)) in map.iter().enumerate() {
        let at = offset::E820_TABLE + 20 * i;
        zero[at..at + 8].copy_from_slice(&address.to_le_bytes());
        zero[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        zero[at + 16..at + 20].copy_from_slice(&kind.to_le_bytes());
    }
    room(mem.write(layout::ZERO_PAGE, &zero))?;
    const _: () = assert!(crate::paging::layout::GDT + GDT_SIZE <= layout::ZERO_PAGE);
    Ok(Boot {
        entry: load_at + ENTRY_64,
        zero_page: layout::ZERO_PAGE,
        kernel: load_at,
        initrd: (initrd_at, initrd_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// RAM as a vector.
    struct Ram(Vec<u8>);

    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
            let Some(src) = self.0.get(gpa as usize..gpa as usize + out.len()) else { return false };
            out.copy_from_slice(src);
            true
        }
        fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
            let Some(dst) = self.0.get_mut(gpa as usize..gpa as usize + data.len()) else { return false };
            dst.copy_from_slice(data);
            true
        }
    }

    /// A bzImage as far as the header goes: 4 setup sectors, protocol 2.15, 64-bit entry,
    /// preferred address 16 MiB, `init_size` 8 MiB, then `body` as the protected-mode part.
    fn bzimage(body: &[u8]) -> Vec<u8> {
        let mut k = vec![0u8; 5 * 512];
        k[offset::SETUP_SECTS] = 4;
        k[offset::BOOT_FLAG..][..2].copy_from_slice(&0xaa55u16.to_le_bytes());
        k[offset::JUMP] = 0xeb;
        k[offset::JUMP + 1] = 0x6a; // the header ends at 0x26c
        k[offset::HEADER..][..4].copy_from_slice(b"HdrS");
        k[offset::VERSION..][..2].copy_from_slice(&0x020fu16.to_le_bytes());
        k[offset::LOADFLAGS] = LOADED_HIGH;
        k[offset::INITRD_ADDR_MAX..][..4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        k[offset::KERNEL_ALIGNMENT..][..4].copy_from_slice(&0x20_0000u32.to_le_bytes());
        k[offset::RELOCATABLE_KERNEL] = 1;
        k[offset::XLOADFLAGS..][..2].copy_from_slice(&0x7fu16.to_le_bytes());
        k[offset::CMDLINE_SIZE..][..4].copy_from_slice(&2047u32.to_le_bytes());
        k[offset::PREF_ADDRESS..][..8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        k[offset::INIT_SIZE..][..4].copy_from_slice(&0x80_0000u32.to_le_bytes());
        k.extend_from_slice(body);
        k
    }

    #[test]
    fn a_kernel_is_loaded_where_it_prefers_with_its_zero_page() {
        let mut ram = Ram(vec![0; 64 << 20]);
        let initrd = vec![0x5a; 10_000];
        let boot = load(&mut ram, 64 << 20, &bzimage(b"KERNEL"), &initrd, "console=ttyS0").unwrap();
        assert_eq!(boot.kernel, 0x100_0000);
        assert_eq!(boot.entry, 0x100_0200);
        assert_eq!(&ram.0[0x100_0000..0x100_0006], b"KERNEL");
        // The initramfs sits page-aligned at the top of RAM.
        assert_eq!(boot.initrd, ((64 << 20) - 0x3000, 10_000));
        assert_eq!(ram.0[(64 << 20) - 0x3000], 0x5a);
        let zp = &ram.0[layout::ZERO_PAGE as usize..][..4096];
        assert_eq!(&zp[offset::HEADER..offset::HEADER + 4], b"HdrS", "the setup header is copied");
        assert_eq!(zp[offset::TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(zp, offset::RAMDISK_IMAGE), (64 << 20) - 0x3000);
        assert_eq!(u32_at(zp, offset::RAMDISK_SIZE), 10_000);
        assert_eq!(u32_at(zp, offset::CMD_LINE_PTR), layout::CMDLINE as u32);
        assert_eq!(&ram.0[layout::CMDLINE as usize..][..14], b"console=ttyS0\0");
        // e820: four entries, the last RAM from 1 MiB to the end.
        assert_eq!(zp[offset::E820_ENTRIES], 4);
        let last = offset::E820_TABLE + 3 * 20;
        assert_eq!(
            (u64_at(zp, last), u64_at(zp, last + 8), u32_at(zp, last + 16)),
            (0x10_0000, (63 << 20), 1)
        );
    }

    #[test]
    fn images_pack_and_unpack() {
        let mut image = Vec::new();
        pack(b"KERNEL", b"INITRD!", &mut image);
        assert_eq!(unpack(&image), Some((&b"KERNEL"[..], &b"INITRD!"[..])));
        assert_eq!(unpack(&image[..image.len() - 1]), None, "truncated");
        assert_eq!(unpack(b"\x7fELF and the rest of an ELF file"), None);
        let mut lying = image.clone();
        lying[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(unpack(&lying), None, "a length past the end");
    }

    #[test]
    fn bad_kernels_and_small_guests_are_refused_with_the_reason() {
        let mut ram = Ram(vec![0; 32 << 20]);
        assert_eq!(load(&mut ram, 32 << 20, b"MZ not linux", &[], ""), Err(LinuxError::NotBzImage));
        let mut old = bzimage(b"K");
        old[offset::VERSION..][..2].copy_from_slice(&0x0204u16.to_le_bytes());
        assert_eq!(load(&mut ram, 32 << 20, &old, &[], ""), Err(LinuxError::TooOld { version: 0x0204 }));
        let mut k32 = bzimage(b"K");
        k32[offset::XLOADFLAGS] = 0;
        assert_eq!(load(&mut ram, 32 << 20, &k32, &[], ""), Err(LinuxError::No64BitEntry));
        // 16 MiB + 8 MiB of init_size + a 10 MiB initramfs do not fit 32 MiB.
        let big = vec![1u8; 10 << 20];
        assert!(matches!(
            load(&mut ram, 32 << 20, &bzimage(b"K"), &big, ""),
            Err(LinuxError::TooLittleMemory { .. })
        ));
        let long = "x".repeat(3000);
        assert_eq!(
            load(&mut ram, 32 << 20, &bzimage(b"K"), &[], &long),
            Err(LinuxError::CommandLineTooLong { limit: 2047 })
        );
        // A header claiming more than the image has.
        let mut short = bzimage(b"");
        short[offset::SETUP_SECTS] = 200;
        assert_eq!(load(&mut ram, 32 << 20, &short, &[], ""), Err(LinuxError::Truncated));
        // Random bytes never panic the loader.
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut k = bzimage(b"KERNEL");
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = 0x1f0 + (state % 0x80) as usize;
                k[at] = (state >> 32) as u8;
            }
            let _ = load(&mut ram, 32 << 20, &k, &[1, 2, 3], "console=ttyS0");
        }
    }
}
