//! Loading a guest's ELF image into its RAM: every loadable segment at its physical
//! address (the guest runs identity-mapped), the rest of each segment zeroed.

use crate::guest::GuestMemory;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object};

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a 64-bit little-endian ELF file (or a damaged one).
    NotElf,
    /// The image is not 8-byte aligned in memory (its headers are read in place).
    Misaligned,
    /// A segment's file bytes lie outside the image.
    Truncated,
    /// A segment does not fit the guest's RAM.
    OutsideRam {
        /// Its guest-physical address.
        address: u64,
    },
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotElf => write!(f, "not a 64-bit ELF image"),
            Self::Misaligned => write!(f, "the image is not 8-byte aligned in memory"),
            Self::Truncated => write!(f, "a segment lies outside the image"),
            Self::OutsideRam { address } => {
                write!(f, "a segment at {address:#x} does not fit the guest's RAM")
            }
        }
    }
}

/// Loads `image` (8-byte aligned) into `mem`; returns its entry point.
pub fn load(image: &[u8], mem: &mut impl GuestMemory) -> Result<u64, ElfError> {
    if !(image.as_ptr() as usize).is_multiple_of(8) {
        return Err(ElfError::Misaligned);
    }
    let file = ElfFile64::<Endianness>::parse(image).map_err(|_| ElfError::NotElf)?;
    let endian = file.endian();
    for header in file.elf_program_headers() {
        if header.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let address = header.p_paddr(endian);
        let data = header.data(endian, image).map_err(|_| ElfError::Truncated)?;
        let memory_size = header.p_memsz(endian);
        if !mem.write(address, data) {
            return Err(ElfError::OutsideRam { address });
        }
        let zeros = [0u8; 256];
        let mut at = address + data.len() as u64;
        let end = address.checked_add(memory_size).ok_or(ElfError::OutsideRam { address })?;
        while at < end {
            let n = ((end - at) as usize).min(zeros.len());
            if !mem.write(at, &zeros[..n]) {
                return Err(ElfError::OutsideRam { address });
            }
            at += n as u64;
        }
    }
    Ok(file.entry())
}
