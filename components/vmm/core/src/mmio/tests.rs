//! The decoder against iced-x86, a general x86 decoder: on millions of byte strings built
//! around the forms it decodes (their prefixes, opcodes, ModRM and SIB bytes, and random
//! bytes, whole and cut short), in 16-, 32- and 64-bit code, `emulate`, `mov_to_cr` and
//! `mov_dr` must do exactly what the same functions written over iced do: the same
//! accesses, the same registers after, the same lengths, the same refusals.

use super::*;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

/// Where a general register lives in [`Cpu::regs`] and its first bit, by iced's name.
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

fn decode(bytes: &[u8], bitness: u32) -> Option<iced_x86::Instruction> {
    let ins = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE).decode();
    (!ins.is_invalid() && ins.mnemonic() == Mnemonic::Mov && ins.op_count() == 2).then_some(ins)
}

fn reference_emulate(
    bytes: &[u8],
    bitness: u32,
    cpu: &mut Cpu,
    mut device: impl FnMut(Access) -> u64,
) -> Option<u64> {
    let ins = decode(bytes, bitness)?;
    let size = ins.memory_size().size();
    if !matches!(size, 1 | 2 | 4 | 8) {
        return None;
    }
    match (ins.op0_kind(), ins.op1_kind()) {
        (OpKind::Memory, OpKind::Register) => {
            let (index, shift) = slot(ins.op1_register())?;
            device(Access::Write(size, (cpu.regs[index] >> shift) & mask(size)));
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
            *r = if size == 4 { value } else { (*r & !(mask(size) << shift)) | (value << shift) };
        }
        _ => return None,
    }
    Some(ins.len() as u64)
}

fn reference_mov_to_cr(bytes: &[u8], bitness: u32) -> Option<(u64, Option<usize>, u64)> {
    let ins = decode(bytes, bitness)?;
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

fn reference_mov_dr(bytes: &[u8], bitness: u32) -> Option<(usize, Option<usize>, bool, u64)> {
    let ins = decode(bytes, bitness)?;
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

/// xorshift64*: the same cases every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len() as u64) as usize]
    }
}

/// A byte string around the decoded forms: up to four prefixes, an opcode (mostly one
/// of the decoded ones), a ModRM byte (often a memory form), then random bytes; cut short
/// now and then.
fn case(r: &mut Rng) -> Vec<u8> {
    const PREFIXES: [u8; 14] =
        [0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf2, 0xf3, 0xf0, 0x40, 0x48, 0x4d];
    const OPCODES: [u8; 11] = [0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0xa0, 0xa1, 0xa2, 0xa3, 0x0f];
    let mut bytes = Vec::new();
    // Up to four prefixes, and now and then up to fifteen (past the longest instruction).
    let prefixes = if r.below(16) == 0 { r.below(16) } else { r.below(5) };
    for _ in 0..prefixes {
        bytes.push(match r.below(4) {
            0 => 0x40 + r.below(16) as u8,
            1 => r.next() as u8,
            _ => r.pick(&PREFIXES),
        });
    }
    let opcode = if r.below(8) == 0 { r.next() as u8 } else { r.pick(&OPCODES) };
    bytes.push(opcode);
    if opcode == 0x0f {
        bytes.push(if r.below(8) == 0 { r.next() as u8 } else { 0x20 + r.below(4) as u8 });
    }
    // ModRM: a register form a quarter of the time; then a SIB byte.
    let mode = if r.below(4) == 0 { 3 } else { r.below(3) as u8 };
    bytes.push((mode << 6) | (r.next() as u8 & 0x3f));
    while bytes.len() < 24 {
        bytes.push(r.next() as u8);
    }
    if r.below(6) == 0 {
        bytes.truncate(r.below(bytes.len() as u64) as usize);
    }
    bytes
}

#[test]
fn the_decoder_does_what_a_general_decoder_does_on_millions_of_byte_strings() {
    let mut r = Rng(0x5eed_cafe_f00d_0001);
    let cases = if cfg!(debug_assertions) { 300_000 } else { 3_000_000 };
    let (mut emulated, mut crs, mut drs) = (0u32, 0u32, 0u32);
    for n in 0..cases {
        let bytes = case(&mut r);
        let bitness = [16, 32, 64][n % 3];
        let mut cpu = Cpu::default();
        for reg in &mut cpu.regs {
            *reg = r.next();
        }
        let read = r.next();
        let (mut ours, mut theirs) = (cpu, cpu);
        let (mut ours_seen, mut theirs_seen) = (Vec::new(), Vec::new());
        let a = emulate(&bytes, bitness, &mut ours, |x| {
            ours_seen.push(x);
            read
        });
        let b = reference_emulate(&bytes, bitness, &mut theirs, |x| {
            theirs_seen.push(x);
            read
        });
        let what = || format!("{bitness}-bit {bytes:02x?}");
        assert_eq!(a, b, "emulate: {}", what());
        assert_eq!(ours_seen, theirs_seen, "accesses: {}", what());
        assert_eq!(ours, theirs, "registers: {}", what());
        emulated += u32::from(a.is_some());
        let cr = mov_to_cr(&bytes, bitness);
        assert_eq!(cr, reference_mov_to_cr(&bytes, bitness), "mov_to_cr: {}", what());
        crs += u32::from(cr.is_some());
        let dr = mov_dr(&bytes, bitness);
        assert_eq!(dr, reference_mov_dr(&bytes, bitness), "mov_dr: {}", what());
        drs += u32::from(dr.is_some());
    }
    // The cases reached every kind of answer, often.
    assert!(emulated as usize > cases / 5 && crs > 500 && drs > 500, "{emulated} {crs} {drs}");
}

/// A few forms by hand: what a driver's register accesses look like.
#[test]
fn device_register_accesses_decode() {
    let mut cpu = Cpu::default();
    cpu.regs[0] = 0x1122_3344_5566_7788;
    let mut seen = Vec::new();
    // mov dword [rdi+0x10], eax
    assert_eq!(
        emulate(&[0x89, 0x47, 0x10], 64, &mut cpu, |a| {
            seen.push(a);
            0
        }),
        Some(3)
    );
    // mov rax, qword [rip+disp32]
    assert_eq!(
        emulate(&[0x48, 0x8b, 0x05, 1, 2, 3, 4], 64, &mut cpu, |a| {
            seen.push(a);
            0xabcd
        }),
        Some(7)
    );
    // mov byte [rbx], 0x7f ; mov qword [rbx], -1 (sign-extended)
    assert_eq!(
        emulate(&[0xc6, 0x03, 0x7f], 64, &mut cpu, |a| {
            seen.push(a);
            0
        }),
        Some(3)
    );
    assert_eq!(
        emulate(&[0x48, 0xc7, 0x03, 0xff, 0xff, 0xff, 0xff], 64, &mut cpu, |a| {
            seen.push(a);
            0
        }),
        Some(7)
    );
    assert_eq!(
        seen,
        [Access::Write(4, 0x5566_7788), Access::Read(8), Access::Write(1, 0x7f), Access::Write(8, u64::MAX)]
    );
    assert_eq!(cpu.regs[0], 0xabcd);
    // A register-to-register mov, a lock prefix, a mov with rsp, and anything else: no.
    for bytes in [&[0x89, 0xc0][..], &[0xf0, 0x89, 0x07], &[0x89, 0x27], &[0x01, 0x07], &[]] {
        assert_eq!(emulate(bytes, 64, &mut cpu, |_| 0), None, "{bytes:02x?}");
    }
    // mov cr3, rax; mov dr7, rcx
    assert_eq!(mov_to_cr(&[0x0f, 0x22, 0xd8], 64), Some((3, Some(0), 3)));
    assert_eq!(mov_dr(&[0x0f, 0x23, 0xf9], 64), Some((7, Some(2), true, 3)));
    // mov cr8, rax (REX.R) in 64-bit code, not in 32-bit; a debug register with REX.R is no
    // register at all.
    assert_eq!(mov_to_cr(&[0x44, 0x0f, 0x22, 0xc0], 64), Some((8, Some(0), 4)));
    assert_eq!(mov_to_cr(&[0x44, 0x0f, 0x22, 0xc0], 32), None);
    assert_eq!(mov_dr(&[0x44, 0x0f, 0x23, 0xf8], 64), None);
    // mov eax, [moffs32] with 67 in 64-bit code (a 4-byte address); mov rax, [moffs64].
    assert_eq!(emulate(&[0x67, 0xa1, 1, 2, 3, 4], 64, &mut cpu, |_| 5), Some(6));
    assert_eq!(emulate(&[0x48, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8], 64, &mut cpu, |_| 5), Some(10));
    // Fifteen bytes at most: fourteen prefixes and a one-byte opcode would fit, but no mov
    // is that short; eleven prefixes and `mov [rax], eax` make sixteen.
    let mut long = vec![0x3e; 11];
    long.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]);
    assert_eq!(emulate(&long, 64, &mut cpu, |_| 0), None);
    long.drain(..2);
    assert_eq!(emulate(&long, 64, &mut cpu, |_| 0), Some(15));
}
