//! Checking a user program's ELF image and planning how to load it.
//!
//! A boot module is untrusted input: the plan accepts only a static little-endian x86-64
//! executable whose loadable segments lie in the user half between
//! [`USER_IMAGE_MIN`] and the initial stack, do not share pages, keep their file bytes inside
//! the file, and whose entry point lies in an executable segment.

use cleave_abi::addr::VirtAddr;
use cleave_abi::layout::{PAGE_SIZE, USER_IMAGE_MIN, USER_STACK_SIZE, USER_STACK_TOP};
use core::fmt;
use core::ops::Range;
use elf::ElfBytes;
use elf::abi::{EM_X86_64, ET_EXEC, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD};
use elf::endian::LittleEndian;
use elf::file::Class;
use heapless::Vec;

/// Most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 8;

/// Highest address (exclusive) an image segment may reach: the initial stack lies above.
pub const IMAGE_TOP: u64 = USER_STACK_TOP - USER_STACK_SIZE - PAGE_SIZE;

/// One loadable segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment starts in the address space (not necessarily page aligned).
    pub vaddr: VirtAddr,
    /// Bytes in memory; past `file.len()` they are zero.
    pub mem_size: u64,
    /// The bytes of the file copied to `vaddr`.
    pub file: Range<usize>,
    /// Mapped writable.
    pub writable: bool,
    /// Mapped executable.
    pub executable: bool,
}

impl Segment {
    /// The page-aligned virtual range the segment occupies.
    pub fn pages(&self) -> Range<u64> {
        let start = self.vaddr.align_down(PAGE_SIZE).0;
        // Cannot overflow: the plan checked vaddr + mem_size <= IMAGE_TOP.
        let end = (self.vaddr.0 + self.mem_size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        start..end
    }
}

/// How to load a checked image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Where the first user thread starts.
    pub entry: VirtAddr,
    /// The loadable segments, sorted by address.
    pub segments: Vec<Segment, MAX_SEGMENTS>,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not an ELF file, or its headers are malformed.
    NotElf,
    /// An ELF file, but not a 64-bit little-endian x86-64 one.
    WrongArchitecture,
    /// Not a static executable (`ET_EXEC` without an interpreter or dynamic section).
    NotStaticExecutable,
    /// No `PT_LOAD` segment.
    NoSegments,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// Segment `index` has more file bytes than memory bytes.
    FileLargerThanMemory { index: usize },
    /// Segment `index` refers to bytes past the end of the file.
    OutsideFile { index: usize },
    /// Segment `index` lies outside the user image window.
    OutsideUserWindow { index: usize, vaddr: u64 },
    /// Segments `first` and `second` share a page.
    Overlap { first: usize, second: usize },
    /// The entry point is not inside an executable segment.
    BadEntry(u64),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => write!(f, "not an ELF file"),
            Self::WrongArchitecture => write!(f, "not a 64-bit little-endian x86-64 ELF file"),
            Self::NotStaticExecutable => write!(f, "not a static executable"),
            Self::NoSegments => write!(f, "no loadable segment"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            Self::FileLargerThanMemory { index } => {
                write!(f, "segment {index}: file size exceeds memory size")
            }
            Self::OutsideFile { index } => write!(f, "segment {index}: file bytes past end of file"),
            Self::OutsideUserWindow { index, vaddr } => write!(
                f,
                "segment {index} at {vaddr:#x} is outside the user image window \
                 [{USER_IMAGE_MIN:#x}, {IMAGE_TOP:#x})"
            ),
            Self::Overlap { first, second } => {
                write!(f, "segments {first} and {second} share a page")
            }
            Self::BadEntry(e) => write!(f, "entry point {e:#x} is not in an executable segment"),
        }
    }
}

/// Checks `image` and plans its loading.
pub fn plan(image: &[u8]) -> Result<LoadPlan, ImageError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(|_| ImageError::NotElf)?;
    if file.ehdr.class != Class::ELF64 || file.ehdr.e_machine != EM_X86_64 {
        return Err(ImageError::WrongArchitecture);
    }
    if file.ehdr.e_type != ET_EXEC {
        return Err(ImageError::NotStaticExecutable);
    }
    let headers = file.segments().ok_or(ImageError::NoSegments)?;
    let mut segments: Vec<Segment, MAX_SEGMENTS> = Vec::new();
    for (index, ph) in headers.iter().enumerate() {
        match ph.p_type {
            PT_INTERP | PT_DYNAMIC => return Err(ImageError::NotStaticExecutable),
            PT_LOAD if ph.p_memsz > 0 => {}
            _ => continue,
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(ImageError::FileLargerThanMemory { index });
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz).ok_or(ImageError::OutsideFile { index })?;
        if file_end > image.len() as u64 {
            return Err(ImageError::OutsideFile { index });
        }
        let outside = ImageError::OutsideUserWindow { index, vaddr: ph.p_vaddr };
        let end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or(outside)?;
        if ph.p_vaddr < USER_IMAGE_MIN || end > IMAGE_TOP {
            return Err(outside);
        }
        let segment = Segment {
            vaddr: VirtAddr(ph.p_vaddr),
            mem_size: ph.p_memsz,
            // In range of usize: both bounds are <= image.len().
            file: ph.p_offset as usize..file_end as usize,
            writable: ph.p_flags & PF_W != 0,
            executable: ph.p_flags & PF_X != 0,
        };
        segments.push(segment).map_err(|_| ImageError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(ImageError::NoSegments);
    }
    // Page-level overlap check on the segments in file order (indices match the headers'
    // PT_LOAD order), then sort by address.
    for i in 0..segments.len() {
        for j in i + 1..segments.len() {
            let (a, b) = (segments[i].pages(), segments[j].pages());
            if a.start < b.end && b.start < a.end {
                return Err(ImageError::Overlap { first: i, second: j });
            }
        }
    }
    segments.sort_unstable_by_key(|s| s.vaddr);
    let entry = file.ehdr.e_entry;
    if !segments.iter().any(|s| s.executable && s.vaddr.0 <= entry && entry < s.vaddr.0 + s.mem_size) {
        return Err(ImageError::BadEntry(entry));
    }
    Ok(LoadPlan { entry: VirtAddr(entry), segments })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_elf::{Ph, elf};
    use std::vec::Vec as StdVec;

    const TEXT: Ph = (PT_LOAD, PF_X | elf::abi::PF_R, 0x1000, 0x40_1000, 0x20, 0x20);
    const DATA: Ph = (PT_LOAD, PF_W | elf::abi::PF_R, 0x1020, 0x40_2020, 0x10, 0x3000);

    #[test]
    fn plans_a_text_and_bss_image() {
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[DATA, TEXT], &[0x90; 0x30]);
        let plan = plan(&f).unwrap();
        assert_eq!(plan.entry, VirtAddr(0x40_1000));
        assert_eq!(plan.segments.len(), 2);
        assert_eq!(plan.segments[0].vaddr, VirtAddr(0x40_1000));
        assert!(plan.segments[0].executable && !plan.segments[0].writable);
        assert_eq!(plan.segments[1].file, 0x1020..0x1030);
        assert_eq!(plan.segments[1].pages(), 0x40_2000..0x40_6000);
    }

    #[test]
    fn rejects_non_elf_and_wrong_kinds() {
        assert_eq!(plan(b"MZ not an elf"), Err(ImageError::NotElf));
        assert_eq!(plan(&[]), Err(ImageError::NotElf));
        let arm = elf(ET_EXEC, elf::abi::EM_AARCH64, 0x40_1000, &[TEXT], &[0; 0x20]);
        assert_eq!(plan(&arm), Err(ImageError::WrongArchitecture));
        let shared = elf(elf::abi::ET_DYN, EM_X86_64, 0x40_1000, &[TEXT], &[0; 0x20]);
        assert_eq!(plan(&shared), Err(ImageError::NotStaticExecutable));
        let interp = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[(PT_INTERP, 0, 0, 0, 0, 0), TEXT], &[0; 0x20]);
        assert_eq!(plan(&interp), Err(ImageError::NotStaticExecutable));
        let nothing = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[], &[]);
        assert_eq!(plan(&nothing), Err(ImageError::NoSegments));
    }

    #[test]
    fn rejects_segments_that_lie() {
        let big_file = (PT_LOAD, PF_X, 0x1000, 0x40_1000, 0x40, 0x20);
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[big_file], &[0; 0x40]);
        assert_eq!(plan(&f), Err(ImageError::FileLargerThanMemory { index: 0 }));
        let past_end = (PT_LOAD, PF_X, 0x1000, 0x40_1000, 0x1000, 0x1000);
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[past_end], &[0; 0x20]);
        assert_eq!(plan(&f), Err(ImageError::OutsideFile { index: 0 }));
        let wrapping = (PT_LOAD, PF_X, u64::MAX, 0x40_1000, 2, 2);
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[wrapping], &[]);
        assert_eq!(plan(&f), Err(ImageError::OutsideFile { index: 0 }));
    }

    #[test]
    fn rejects_addresses_outside_the_user_window() {
        for vaddr in [0, 0x1000, IMAGE_TOP, 0xffff_ffff_8000_0000, u64::MAX - 4] {
            let seg = (PT_LOAD, PF_X, 0x1000, vaddr, 0x10, 0x10);
            let f = elf(ET_EXEC, EM_X86_64, vaddr, &[seg], &[0; 0x10]);
            assert_eq!(plan(&f), Err(ImageError::OutsideUserWindow { index: 0, vaddr }), "{vaddr:#x}");
        }
        // Ends exactly at the top: accepted; one byte more: refused.
        let seg = (PT_LOAD, PF_X, 0x1000, IMAGE_TOP - 0x10, 0x10, 0x10);
        assert!(plan(&elf(ET_EXEC, EM_X86_64, IMAGE_TOP - 0x10, &[seg], &[0; 0x10])).is_ok());
        let seg = (PT_LOAD, PF_X, 0x1000, IMAGE_TOP - 0x10, 0x10, 0x11);
        assert!(plan(&elf(ET_EXEC, EM_X86_64, IMAGE_TOP - 0x10, &[seg], &[0; 0x10])).is_err());
    }

    #[test]
    fn rejects_overlap_and_bad_entry() {
        let clash = (PT_LOAD, PF_W, 0x1020, 0x40_1800, 0x10, 0x10);
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1000, &[TEXT, clash], &[0; 0x30]);
        assert_eq!(plan(&f), Err(ImageError::Overlap { first: 0, second: 1 }));
        let f = elf(ET_EXEC, EM_X86_64, 0x40_2020, &[TEXT, DATA], &[0; 0x30]);
        assert_eq!(plan(&f), Err(ImageError::BadEntry(0x40_2020)));
        let f = elf(ET_EXEC, EM_X86_64, 0x40_1020, &[TEXT], &[0; 0x30]);
        assert_eq!(plan(&f), Err(ImageError::BadEntry(0x40_1020)));
    }

    #[test]
    fn rejects_too_many_segments() {
        let phs: StdVec<Ph> =
            (0..9u64).map(|i| (PT_LOAD, PF_X, 0x1000, 0x40_0000 + i * 0x1000, 0, 0x10)).collect();
        let f = elf(ET_EXEC, EM_X86_64, 0x40_0000, &phs, &[0; 0x10]);
        assert_eq!(plan(&f), Err(ImageError::TooManySegments));
    }
}
