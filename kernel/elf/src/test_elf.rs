//! A builder for small ELF64 files, shared by the tests of the image checks.
extern crate std;
use std::vec::Vec as StdVec;

/// A program header for the fixture builder: (type, flags, offset, vaddr, filesz, memsz).
pub type Ph = (u32, u32, u64, u64, u64, u64);

/// Builds a minimal ELF64 file: header, program headers, then `body` at offset 0x1000.
pub fn elf(e_type: u16, machine: u16, entry: u64, phs: &[Ph], body: &[u8]) -> StdVec<u8> {
    let mut f = std::vec![0u8; 0x1000];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&e_type.to_le_bytes());
    f[18..20].copy_from_slice(&machine.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
    for (i, &(p_type, flags, offset, vaddr, filesz, memsz)) in phs.iter().enumerate() {
        let at = 64 + 56 * i;
        f[at..at + 4].copy_from_slice(&p_type.to_le_bytes());
        f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
        f[at + 24..at + 32].copy_from_slice(&paddr_of(vaddr).to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        f[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    }
    f.extend_from_slice(body);
    f
}

/// The physical address a fixture segment declares: the kernel's higher-half convention
/// (virtual minus `0xffff_ffff_8000_0000`) for higher-half addresses, else the virtual one.
fn paddr_of(vaddr: u64) -> u64 {
    if vaddr >= 0xffff_ffff_8000_0000 { vaddr - 0xffff_ffff_8000_0000 } else { vaddr }
}
