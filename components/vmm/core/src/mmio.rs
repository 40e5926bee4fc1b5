//! Emulating the instruction that touched MMIO: only `mov` between memory and a general
//! register or an immediate (what drivers use for device registers); anything else is
//! refused, and the VMM stops the guest. Also decoding a `mov` to a control register,
//! which SVM without decode assists reports without its source, and `mov` to or from a
//! debug register.
//!
//! The decoder is this module's own, for those forms only: prefixes (operand and address
//! size, segment, REP, REX), the opcodes 88, 89, 8A, 8B, C6 /0, C7 /0, A0-A3, 0F 20-23,
//! ModRM, SIB, displacement, immediate. A general decoder (iced-x86, which the tests
//! compare this one with on millions of byte strings) builds 112 KiB of tables on each
//! VMM's heap at its first decode: 448 KiB of the control plane's memory with four guests.
//! Whatever is not one of these forms, or is not a valid instruction, is `None`.

use crate::guest::Cpu;

/// One device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read of this many bytes.
    Read(usize),
    /// A write of this many bytes of the value.
    Write(usize, u64),
}

/// The longest instruction x86 executes.
const MAX_LENGTH: usize = 15;

/// A general register as an instruction names it: its number (0 rAX, 1 rCX, 2 rDX, 3 rBX,
/// 4 rSP, 5 rBP, 6 rSI, 7 rDI, 8-15 r8-r15) and whether it is a high byte (AH, CH, DH,
/// BH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gpr {
    number: u8,
    high: bool,
}

impl Gpr {
    /// Register `number` of an operand of `size` bytes: without a REX prefix, byte
    /// registers 4-7 are AH, CH, DH, BH; with one, SPL, BPL, SIL, DIL.
    fn of(number: u8, size: usize, rex: bool) -> Self {
        if size == 1 && !rex && (4..8).contains(&number) {
            Self { number: number - 4, high: true }
        } else {
            Self { number, high: false }
        }
    }

    /// Where it lives in [`Cpu::regs`], and the bit it starts at (8 for a high byte).
    /// `None` for rSP (a VMCS field).
    fn slot(self) -> Option<(usize, u32)> {
        const INDEX: [Option<usize>; 16] = [
            Some(0),  // rAX
            Some(2),  // rCX
            Some(3),  // rDX
            Some(1),  // rBX
            None,     // rSP
            Some(6),  // rBP
            Some(4),  // rSI
            Some(5),  // rDI
            Some(7),  // r8
            Some(8),  // r9
            Some(9),  // r10
            Some(10), // r11
            Some(11), // r12
            Some(12), // r13
            Some(13), // r14
            Some(14), // r15
        ];
        let index = INDEX[usize::from(self.number & 15)]?;
        Some((index, if self.high { 8 } else { 0 }))
    }
}

/// The forms of `mov` this module decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mov {
    /// `mov [mem], reg` (a store of `size` bytes).
    Store { size: usize, reg: Gpr },
    /// `mov [mem], imm` (the immediate as the instruction extends it to `size` bytes).
    StoreImmediate { size: usize, value: u64 },
    /// `mov reg, [mem]`.
    Load { size: usize, reg: Gpr },
    /// `mov crN, reg`.
    ToCr { cr: u8, reg: Gpr },
    /// `mov reg, crN`.
    FromCr,
    /// `mov drN, reg` (`write`) or `mov reg, drN`.
    Dr { dr: u8, reg: Gpr, write: bool },
}

/// What the prefixes said.
#[derive(Clone, Copy, Default)]
struct Prefixes {
    operand_size: bool,
    address_size: bool,
    rex: Option<u8>,
}

impl Prefixes {
    fn rex_bit(&self, bit: u8) -> u8 {
        self.rex.map_or(0, |r| (r >> bit) & 1)
    }
}

/// Decodes the instruction in `bytes` for `bitness` (16, 32 or 64): the `mov` it is and
/// its length, or `None` for anything else (another instruction, a register-to-register
/// `mov`, an invalid encoding, too few bytes).
fn decode(bytes: &[u8], bitness: u32) -> Option<(Mov, usize)> {
    let bytes = &bytes[..bytes.len().min(MAX_LENGTH)];
    let mut p = Prefixes::default();
    let mut at = 0;
    let opcode = loop {
        let b = *bytes.get(at)?;
        at += 1;
        match b {
            0x66 => p.operand_size = true,
            0x67 => p.address_size = true,
            // Segment overrides (the exit gives the address) and REP (no effect on mov).
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0xf2 | 0xf3 => {}
            // LOCK: mov does not take it (#UD).
            0xf0 => return None,
            0x40..=0x4f if bitness == 64 => {
                p.rex = Some(b);
                continue;
            }
            _ => break b,
        }
        // A REX prefix counts only right before the opcode.
        p.rex = None;
    };
    let operand_size = match (bitness, p.rex_bit(3) == 1, p.operand_size) {
        (64, true, _) => 8,
        (16, _, false) | (32 | 64, _, true) => 2,
        _ => 4,
    };
    let address_size = match (bitness, p.address_size) {
        (64, false) => 8,
        (16, false) | (32, true) => 2,
        _ => 4,
    };
    let rex = p.rex.is_some();
    let byte_or = |wide: bool| if wide { operand_size } else { 1 };
    let mov = match opcode {
        0x88..=0x8b | 0xc6 | 0xc7 => {
            let (modrm, length) = modrm(bytes, at, address_size)?;
            let reg = (modrm >> 3) & 7;
            if modrm >> 6 == 3 {
                return None;
            }
            at = length;
            let size = byte_or(opcode & 1 == 1);
            let reg = Gpr::of(reg | (p.rex_bit(2) << 3), size, rex);
            match opcode {
                0x88 | 0x89 => Mov::Store { size, reg },
                0x8a | 0x8b => Mov::Load { size, reg },
                _ if modrm & 0x38 != 0 => return None,
                _ => {
                    let width = size.min(4);
                    let raw = little_endian(bytes.get(at..at + width)?);
                    at += width;
                    // A 4-byte immediate of a 64-bit mov is sign-extended.
                    let value = if size == 8 { raw as i32 as i64 as u64 } else { raw };
                    Mov::StoreImmediate { size, value }
                }
            }
        }
        0xa0..=0xa3 => {
            // The address is in the instruction (`moffs`), as wide as addresses are.
            bytes.get(at..at + address_size)?;
            at += address_size;
            let size = byte_or(opcode & 1 == 1);
            let reg = Gpr { number: 0, high: false };
            if opcode < 0xa2 { Mov::Load { size, reg } } else { Mov::Store { size, reg } }
        }
        0x0f => {
            let second = *bytes.get(at)?;
            // The ModRM byte's mode is ignored: these always name registers.
            let modrm = *bytes.get(at + 1)?;
            at += 2;
            let control = (modrm >> 3) & 7 | (p.rex_bit(2) << 3);
            let reg = Gpr { number: modrm & 7 | (p.rex_bit(0) << 3), high: false };
            match second {
                0x20 | 0x22 if matches!(control, 0 | 2 | 3 | 4) || (control == 8 && bitness == 64) => {
                    if second == 0x22 {
                        Mov::ToCr { cr: control, reg }
                    } else {
                        Mov::FromCr
                    }
                }
                // There are only DR0-DR7.
                0x21 | 0x23 if p.rex_bit(2) == 0 => Mov::Dr { dr: control, reg, write: second == 0x23 },
                _ => return None,
            }
        }
        _ => return None,
    };
    (at <= MAX_LENGTH).then_some((mov, at))
}

/// The ModRM byte at `at` and where the instruction goes on after it, its SIB byte and its
/// displacement (for addresses `address_size` bytes wide).
fn modrm(bytes: &[u8], at: usize, address_size: usize) -> Option<(u8, usize)> {
    let modrm = *bytes.get(at)?;
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let mut next = at + 1;
    if mode != 3 {
        let displacement = if address_size == 2 {
            match (mode, rm) {
                (0, 6) | (2, _) => 2,
                (1, _) => 1,
                _ => 0,
            }
        } else {
            let mut base = rm;
            if rm == 4 {
                base = *bytes.get(next)? & 7;
                next += 1;
            }
            match (mode, base) {
                (0, 5) | (2, _) => 4,
                (1, _) => 1,
                _ => 0,
            }
        };
        next += displacement;
    }
    (next <= bytes.len()).then_some((modrm, next))
}

/// The little-endian value of up to eight bytes.
fn little_endian(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b))
}

fn mask(size: usize) -> u64 {
    if size >= 8 { u64::MAX } else { (1 << (size * 8)) - 1 }
}

/// Emulates the instruction in `bytes` (decoded for `bitness` 16, 32 or 64) against
/// `device`, updating `cpu`'s registers; returns its length, or `None` if it is not an
/// access this VMM emulates.
pub fn emulate(
    bytes: &[u8],
    bitness: u32,
    cpu: &mut Cpu,
    mut device: impl FnMut(Access) -> u64,
) -> Option<u64> {
    let (mov, length) = decode(bytes, bitness)?;
    match mov {
        Mov::Store { size, reg } => {
            let (index, shift) = reg.slot()?;
            let value = (cpu.regs[index] >> shift) & mask(size);
            device(Access::Write(size, value));
        }
        Mov::StoreImmediate { size, value } => {
            device(Access::Write(size, value & mask(size)));
        }
        Mov::Load { size, reg } => {
            let (index, shift) = reg.slot()?;
            let value = device(Access::Read(size)) & mask(size);
            let r = &mut cpu.regs[index];
            // A 32-bit destination clears the upper half; 8- and 16-bit ones keep it.
            *r = if size == 4 { value } else { (*r & !(mask(size) << shift)) | (value << shift) };
        }
        Mov::ToCr { .. } | Mov::FromCr | Mov::Dr { .. } => return None,
    }
    Some(length as u64)
}

/// Decodes `mov crN, reg` in `bytes` (for `bitness`): the control register's number, the
/// source ([`Cpu::regs`] index, or `None` for RSP) and the instruction's length; `None` if
/// the bytes are something else.
pub fn mov_to_cr(bytes: &[u8], bitness: u32) -> Option<(u64, Option<usize>, u64)> {
    match decode(bytes, bitness)? {
        (Mov::ToCr { cr, reg }, length) => Some((u64::from(cr), reg.slot().map(|(i, _)| i), length as u64)),
        _ => None,
    }
}

/// Decodes `mov drN, reg` or `mov reg, drN` in `bytes` (for `bitness`): the debug
/// register's number, the general register ([`Cpu::regs`] index, or `None` for RSP),
/// whether it is a write to the debug register, and the instruction's length. DR4 and
/// DR5 (aliases of DR6 and DR7 only while CR4.DE is clear) are refused.
pub fn mov_dr(bytes: &[u8], bitness: u32) -> Option<(usize, Option<usize>, bool, u64)> {
    match decode(bytes, bitness)? {
        (Mov::Dr { dr, reg, write }, length) if !matches!(dr, 4 | 5) => {
            Some((usize::from(dr), reg.slot().map(|(i, _)| i), write, length as u64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
