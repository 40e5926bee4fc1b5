//! Emulating the instruction that touched MMIO: decoded with iced-x86, only `mov` between
//! memory and a general register or an immediate (what drivers use for device registers);
//! anything else is refused, and the VMM stops the guest. Also decoding a `mov` to a
//! control register, which SVM without decode assists reports without its source.

use crate::guest::Cpu;
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

/// One device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read of this many bytes.
    Read(usize),
    /// A write of this many bytes of the value.
    Write(usize, u64),
}

/// Where a general register lives in [`Cpu::regs`], and the bit it starts at (8 for
/// AH, BH, CH, DH). `None` for RSP (a VMCS field) and non-general registers.
fn slot(register: Register) -> Option<(usize, u32)> {
    let high = matches!(register, Register::AH | Register::BH | Register::CH | Register::DH);
    let index = match register.full_register() {
        Register::RAX => 0,
        Register::RBX => 1,
        Register::RCX => 2,
        Register::RDX => 3,
        Register::RSI => 4,
        Register::RDI => 5,
        Register::RBP => 6,
        Register::R8 => 7,
        Register::R9 => 8,
        Register::R10 => 9,
        Register::R11 => 10,
        Register::R12 => 11,
        Register::R13 => 12,
        Register::R14 => 13,
        Register::R15 => 14,
        _ => return None,
    };
    Some((index, if high { 8 } else { 0 }))
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
    let mut decoder = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE);
    let ins = decoder.decode();
    if ins.is_invalid() || ins.mnemonic() != Mnemonic::Mov || ins.op_count() != 2 {
        return None;
    }
    let size = ins.memory_size().size();
    if !matches!(size, 1 | 2 | 4 | 8) {
        return None;
    }
    match (ins.op0_kind(), ins.op1_kind()) {
        (OpKind::Memory, OpKind::Register) => {
            let (index, shift) = slot(ins.op1_register())?;
            let value = (cpu.regs[index] >> shift) & mask(size);
            device(Access::Write(size, value));
        }
        (
            OpKind::Memory,
            OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate32to64,
        ) => {
            device(Access::Write(size, ins.immediate(1) & mask(size)));
        }
        (OpKind::Register, OpKind::Memory) => {
            let (index, shift) = slot(ins.op0_register())?;
            let value = device(Access::Read(size)) & mask(size);
            let r = &mut cpu.regs[index];
            // A 32-bit destination clears the upper half; 8- and 16-bit ones keep it.
            *r = if size == 4 { value } else { (*r & !(mask(size) << shift)) | (value << shift) };
        }
        _ => return None,
    }
    Some(ins.len() as u64)
}

/// Decodes `mov crN, reg` in `bytes` (for `bitness`): the control register's number, the
/// source ([`Cpu::regs`] index, or `None` for RSP) and the instruction's length; `None` if
/// the bytes are something else.
pub fn mov_to_cr(bytes: &[u8], bitness: u32) -> Option<(u64, Option<usize>, u64)> {
    let mut decoder = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE);
    let ins = decoder.decode();
    if ins.is_invalid() || ins.mnemonic() != Mnemonic::Mov || ins.op_count() != 2 {
        return None;
    }
    let cr = match ins.op0_register() {
        Register::CR0 => 0,
        Register::CR2 => 2,
        Register::CR3 => 3,
        Register::CR4 => 4,
        Register::CR8 => 8,
        _ => return None,
    };
    let source = ins.op1_register();
    let index = if source.full_register() == Register::RSP { None } else { Some(slot(source)?.0) };
    Some((cr, index, ins.len() as u64))
}

/// Decodes `mov drN, reg` or `mov reg, drN` in `bytes` (for `bitness`): the debug
/// register's number, the general register ([`Cpu::regs`] index, or `None` for RSP),
/// whether it is a write to the debug register, and the instruction's length.
pub fn mov_dr(bytes: &[u8], bitness: u32) -> Option<(usize, Option<usize>, bool, u64)> {
    let mut decoder = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE);
    let ins = decoder.decode();
    if ins.is_invalid() || ins.mnemonic() != Mnemonic::Mov || ins.op_count() != 2 {
        return None;
    }
    let dr = |r: Register| match r {
        Register::DR0 => Some(0),
        Register::DR1 => Some(1),
        Register::DR2 => Some(2),
        Register::DR3 => Some(3),
        Register::DR6 => Some(6),
        Register::DR7 => Some(7),
        _ => None,
    };
    let general = |r: Register| {
        if r.full_register() == Register::RSP { Some(None) } else { slot(r).map(|(i, _)| Some(i)) }
    };
    let length = ins.len() as u64;
    if let Some(n) = dr(ins.op0_register()) {
        return Some((n, general(ins.op1_register())?, true, length));
    }
    let n = dr(ins.op1_register())?;
    Some((n, general(ins.op0_register())?, false, length))
}
