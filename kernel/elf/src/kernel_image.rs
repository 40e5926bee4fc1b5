//! Checking that a kernel ELF file can be loaded by a Multiboot v1 loader through the
//! a.out-kludge fields (the build runs this on every kernel it produces).
//!
//! Such a loader ignores the ELF headers: it copies the file, from the offset that
//! corresponds to `load_addr`, as one flat block to physical `load_addr..load_end_addr`,
//! zeroes up to `bss_end_addr` and jumps to `entry_addr`. That only yields the intended
//! memory image if every loadable segment sits in the file exactly where the flat copy
//! puts it; this module checks that, and the header itself.

use core::fmt;
use elf::ElfBytes;
use elf::abi::PT_LOAD;
use elf::endian::LittleEndian;

/// The Multiboot v1 header magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// Header flag: the a.out-kludge address fields are valid.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// The header must lie entirely within this many bytes from the start of the file.
pub const SEARCH_LIMIT: usize = 8192;

/// The Multiboot header as found in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultibootHeader {
    /// Byte offset of the header in the file.
    pub offset: usize,
    /// Header flags.
    pub flags: u32,
    /// Physical address the header is loaded at.
    pub header_addr: u32,
    /// Physical address of the first loaded byte.
    pub load_addr: u32,
    /// Physical end of the loaded bytes.
    pub load_end_addr: u32,
    /// Physical end of the zeroed area after them.
    pub bss_end_addr: u32,
    /// Physical entry point.
    pub entry_addr: u32,
}

/// Why an image is not loadable the way the kernel expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No valid header (magic and checksum) in the first [`SEARCH_LIMIT`] bytes.
    NoHeader,
    /// The header lacks the a.out-kludge flag, so QEMU refuses an ELF64 kernel.
    NoAoutKludge,
    /// The header's address fields contradict each other or the file.
    BadAddresses(&'static str),
    /// The file is not a valid ELF file.
    NotElf,
    /// Segment `index` does not sit in the file where the flat copy puts it.
    SegmentMisplaced { index: usize, paddr: u64, offset: u64, expected_offset: u64 },
    /// Segment `index` lies (partly) outside the loaded or zeroed area.
    SegmentOutside { index: usize, paddr: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHeader => write!(f, "no Multiboot header in the first {SEARCH_LIMIT} bytes"),
            Self::NoAoutKludge => write!(f, "the Multiboot header lacks the a.out-kludge flag (bit 16)"),
            Self::BadAddresses(why) => write!(f, "Multiboot header addresses: {why}"),
            Self::NotElf => write!(f, "not an ELF file"),
            Self::SegmentMisplaced { index, paddr, offset, expected_offset } => write!(
                f,
                "segment {index} (physical {paddr:#x}) is at file offset {offset:#x}, \
                 but the flat copy expects it at {expected_offset:#x}"
            ),
            Self::SegmentOutside { index, paddr } => {
                write!(f, "segment {index} (physical {paddr:#x}) lies outside the loaded and zeroed area")
            }
        }
    }
}

fn word(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]])
}

/// Finds the Multiboot header: 4-byte aligned, magic, flags and a checksum summing to 0.
pub fn find_header(image: &[u8]) -> Result<MultibootHeader, LayoutError> {
    let limit = image.len().min(SEARCH_LIMIT);
    (0..limit.saturating_sub(31))
        .step_by(4)
        .find(|&at| {
            let (magic, flags, sum) = (word(image, at), word(image, at + 4), word(image, at + 8));
            magic == HEADER_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0
        })
        .map(|at| MultibootHeader {
            offset: at,
            flags: word(image, at + 4),
            header_addr: word(image, at + 12),
            load_addr: word(image, at + 16),
            load_end_addr: word(image, at + 20),
            bss_end_addr: word(image, at + 24),
            entry_addr: word(image, at + 28),
        })
        .ok_or(LayoutError::NoHeader)
}

/// Checks the header and that every loadable segment lands where its ELF header says.
pub fn check(image: &[u8]) -> Result<MultibootHeader, LayoutError> {
    let h = find_header(image)?;
    if h.flags & FLAG_AOUT_KLUDGE == 0 {
        return Err(LayoutError::NoAoutKludge);
    }
    let (load, load_end, bss_end) =
        (u64::from(h.load_addr), u64::from(h.load_end_addr), u64::from(h.bss_end_addr));
    let header_delta = u64::from(h.header_addr)
        .checked_sub(load)
        .ok_or(LayoutError::BadAddresses("header_addr below load_addr"))?;
    let load_offset = (h.offset as u64)
        .checked_sub(header_delta)
        .ok_or(LayoutError::BadAddresses("load_addr lies before the start of the file"))?;
    if load_end <= load {
        return Err(LayoutError::BadAddresses("load_end_addr not above load_addr"));
    }
    if load_offset + (load_end - load) > image.len() as u64 {
        return Err(LayoutError::BadAddresses("load_end_addr lies past the end of the file"));
    }
    if bss_end < load_end {
        return Err(LayoutError::BadAddresses("bss_end_addr below load_end_addr"));
    }
    if !(load..load_end).contains(&u64::from(h.entry_addr)) {
        return Err(LayoutError::BadAddresses("entry_addr outside the loaded bytes"));
    }
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(|_| LayoutError::NotElf)?;
    let segments = file.segments().ok_or(LayoutError::NotElf)?;
    for (index, ph) in segments.iter().enumerate().filter(|(_, ph)| ph.p_type == PT_LOAD && ph.p_memsz > 0) {
        let outside = LayoutError::SegmentOutside { index, paddr: ph.p_paddr };
        let mem_end = ph.p_paddr.checked_add(ph.p_memsz).ok_or(outside)?;
        let file_end = ph.p_paddr + ph.p_filesz;
        if ph.p_paddr < load || mem_end > bss_end || (ph.p_filesz > 0 && file_end > load_end) {
            return Err(outside);
        }
        // The zero-filled tail must fall in the area the loader zeroes.
        if ph.p_memsz > ph.p_filesz && file_end < load_end {
            return Err(outside);
        }
        let expected_offset = load_offset + (ph.p_paddr - load);
        if ph.p_filesz > 0 && ph.p_offset != expected_offset {
            return Err(LayoutError::SegmentMisplaced {
                index,
                paddr: ph.p_paddr,
                offset: ph.p_offset,
                expected_offset,
            });
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_elf::{Ph, elf};
    use elf::abi::{EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X};

    const HIGH: u64 = 0xffff_ffff_8000_0000;

    /// A header at the start of the body (file offset 0x1000) for a kernel loaded at 1 MiB.
    fn header(flags: u32, load_end: u32, bss_end: u32, entry: u32) -> [u8; 32] {
        let mut h = [0u8; 32];
        let fields = [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
            0x10_0000,
            0x10_0000,
            load_end,
            bss_end,
            entry,
        ];
        for (i, v) in fields.iter().enumerate() {
            h[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// Boot segment at 1 MiB (offset 0x1000), text in the higher half right after it
    /// (offset 0x2000), data + bss last.
    fn kernel(text_offset: u64, h: [u8; 32]) -> std::vec::Vec<u8> {
        let boot: Ph = (PT_LOAD, PF_R | PF_X, 0x1000, 0x10_0000, 0x1000, 0x1000);
        let text: Ph = (PT_LOAD, PF_R | PF_X, text_offset, HIGH + 0x10_1000, 0x1000, 0x1000);
        let data: Ph = (PT_LOAD, PF_R | PF_W, 0x3000, HIGH + 0x10_2000, 0x800, 0x1000);
        let bss: Ph = (PT_LOAD, PF_R | PF_W, 0x3800, HIGH + 0x10_3000, 0, 0x1000);
        let mut body = std::vec![0u8; 0x3000];
        body[..32].copy_from_slice(&h);
        elf(ET_EXEC, EM_X86_64, 0x10_0020, &[boot, text, data, bss], &body)
    }

    extern crate std;

    #[test]
    fn accepts_a_flat_layout() {
        let h = check(&kernel(0x2000, header(0x0001_0003, 0x10_2800, 0x10_4000, 0x10_0020))).unwrap();
        assert_eq!(h.offset, 0x1000);
        assert_eq!(h.load_end_addr, 0x10_2800);
    }

    #[test]
    fn rejects_a_misplaced_segment() {
        let err = check(&kernel(0x2200, header(0x0001_0003, 0x10_2800, 0x10_4000, 0x10_0020))).unwrap_err();
        assert_eq!(
            err,
            LayoutError::SegmentMisplaced {
                index: 1,
                paddr: 0x10_1000,
                offset: 0x2200,
                expected_offset: 0x2000
            }
        );
        assert!(std::format!("{err}").contains("flat copy expects it at 0x2000"));
    }

    #[test]
    fn rejects_bad_headers() {
        let missing = kernel(0x2000, [0; 32]);
        assert_eq!(check(&missing), Err(LayoutError::NoHeader));
        let mut bad_sum = header(0x0001_0003, 0x10_2800, 0x10_4000, 0x10_0020);
        bad_sum[8] ^= 1;
        assert_eq!(check(&kernel(0x2000, bad_sum)), Err(LayoutError::NoHeader));
        let no_kludge = header(0x3, 0x10_2800, 0x10_4000, 0x10_0020);
        assert_eq!(check(&kernel(0x2000, no_kludge)), Err(LayoutError::NoAoutKludge));
        let short_bss = header(0x0001_0003, 0x10_2800, 0x10_3800, 0x10_0020);
        assert_eq!(
            check(&kernel(0x2000, short_bss)),
            Err(LayoutError::SegmentOutside { index: 3, paddr: 0x10_3000 })
        );
        // Data whose zero-filled tail the loader would fill from the file instead.
        let long_load = header(0x0001_0003, 0x10_2c00, 0x10_4000, 0x10_0020);
        assert_eq!(
            check(&kernel(0x2000, long_load)),
            Err(LayoutError::SegmentOutside { index: 2, paddr: 0x10_2000 })
        );
        let past_file = header(0x0001_0003, 0x10_3100, 0x10_4000, 0x10_0020);
        assert!(matches!(check(&kernel(0x2000, past_file)), Err(LayoutError::BadAddresses(_))));
        let bad_entry = header(0x0001_0003, 0x10_2800, 0x10_4000, 0x50_0000);
        assert!(matches!(check(&kernel(0x2000, bad_entry)), Err(LayoutError::BadAddresses(_))));
        assert_eq!(check(&[]), Err(LayoutError::NoHeader));
    }
}
