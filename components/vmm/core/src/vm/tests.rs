//! Exit handling with synthetic exits, as the kernel would report them.

use super::*;
use crate::paging::{self, layout};
use std::string::String;
use std::vec;
use std::vec::Vec;

/// 2 MiB of guest RAM at guest-physical 0.
struct Ram(Vec<u8>);

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        let start = gpa as usize;
        match self.0.get(start..start + out.len()) {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let start = gpa as usize;
        match self.0.get_mut(start..start + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

#[derive(Default)]
struct Lines(Vec<String>);

impl Console for Lines {
    fn line(&mut self, text: &[u8]) {
        self.0.push(String::from_utf8_lossy(text).into_owned());
    }
}

fn ram() -> Ram {
    Ram(vec![0; 2 << 20])
}

fn host_cpuid(leaf: u32, _: u32) -> [u32; 4] {
    match leaf {
        0 => [0x16, u32::from_le_bytes(*b"Genu"), u32::from_le_bytes(*b"ntel"), u32::from_le_bytes(*b"ineI")],
        1 => [0x906e9, 0x0010_0800, 0xffff_ffff, 0xffff_ffff],
        _ => [0; 4],
    }
}

fn exit(reason: u64, detail: u64, length: u64) -> Exit {
    Exit { reason, detail, guest_physical: 0, instruction_length: length }
}

/// A port I/O exit's detail: `size` bytes, out or in, port.
fn io(port: u16, size: u64, is_in: bool) -> u64 {
    use cleave_abi::vcpu::exit::io;
    u64::from(port) | size << io::SIZE_SHIFT | if is_in { io::IN } else { 0 }
}

/// A CR4 write exit's detail, from register `number` (x86 encoding) if the processor said.
fn cr4_write(number: Option<u64>) -> u64 {
    use cleave_abi::vcpu::exit::cr;
    4 | cr::WRITE | number.map_or(0, |n| n << cr::REGISTER_SHIFT | cr::REGISTER_KNOWN)
}

/// A 64-bit guest with identity paging (what the VMM sets up), at `rip`.
fn long_mode_cpu(mem: &mut Ram, rip: u64) -> Cpu {
    let lm = paging::long_mode(mem).unwrap();
    Cpu { rip, rflags: 0x202, cr0: lm.cr0, cr3: lm.cr3, cr4: lm.cr4, efer: lm.efer, ..Cpu::default() }
}

#[test]
fn cpuid_follows_the_policy_and_moves_on() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu { rip: 0x1000, ..Cpu::default() };
    cpu.regs[gpr::RAX] = 1;
    assert_eq!(vm.handle(&exit(reason::CPUID, 0, 2), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu.rip, 0x1002);
    assert_eq!(cpu.regs[gpr::RCX] & (1 << 5), 0, "VMX hidden");
    assert_ne!(cpu.regs[gpr::RCX] & (1 << 31), 0, "hypervisor present");
}

#[test]
fn ports_reach_the_uart_pic_and_pit_and_the_power_off_port_ends_the_guest() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu::default();
    for b in b"Hello\n" {
        cpu.regs[gpr::RAX] = u64::from(*b);
        assert_eq!(
            vm.handle(&exit(reason::PORT_IO, io(COM1, 1, false), 1), &mut cpu, &mut mem, host_cpuid),
            Outcome::Resume
        );
    }
    assert_eq!(vm.console.0, ["Hello"]);
    assert_eq!(cpu.rip, 6);
    // The line-status register says the transmitter is empty (bit 5).
    cpu.regs[gpr::RAX] = 0xdead_0000;
    vm.handle(&exit(reason::PORT_IO, io(COM1 + 5, 1, true), 1), &mut cpu, &mut mem, host_cpuid);
    assert_eq!(cpu.regs[gpr::RAX] & 0xffff_ff00, 0xdead_0000, "an 8-bit in keeps the rest of rax");
    assert_ne!(cpu.regs[gpr::RAX] & 0x20, 0);
    // Nothing at port 0x80 (reads all ones), and string I/O is not emulated.
    vm.handle(&exit(reason::PORT_IO, io(0x80, 2, true), 1), &mut cpu, &mut mem, host_cpuid);
    assert_eq!(cpu.regs[gpr::RAX] & 0xffff, 0xffff);
    assert!(matches!(
        vm.handle(
            &exit(reason::PORT_IO, io(COM1, 1, false) | cleave_abi::vcpu::exit::io::STRING, 1),
            &mut cpu,
            &mut mem,
            host_cpuid
        ),
        Outcome::Stop(Stop::Unhandled { .. })
    ));
    cpu.regs[gpr::RAX] = 3;
    assert_eq!(
        vm.handle(&exit(reason::PORT_IO, io(POWER_OFF_PORT, 1, false), 1), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::PoweredOff(3))
    );
}

#[test]
fn the_timer_path_hlt_waits_for_the_pit_and_interrupts_wait_for_an_open_window() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    let out = |vm: &mut Vm<Lines>, cpu: &mut Cpu, mem: &mut Ram, port: u16, value: u8| {
        cpu.regs[gpr::RAX] = u64::from(value);
        vm.handle(&exit(reason::PORT_IO, io(port, 1, false), 1), cpu, mem, host_cpuid)
    };
    // The guest programs the PICs (vectors 0x20/0x28, only IRQ 0 unmasked) and a 1 kHz PIT.
    for (port, value) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 4),
        (0x21, 1),
        (0x21, 0xfe),
        (0x43, 0x34),
        (0x40, 0xa9),
        (0x40, 0x04),
    ] {
        assert_eq!(out(&mut vm, &mut cpu, &mut mem, port, value), Outcome::Resume);
    }
    assert_eq!(vm.injection(&cpu), Injection::None);
    // HLT with interrupts on: guest time jumps to the next tick, which is then injected.
    assert_eq!(vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert!(vm.time_ns >= 999_000 && vm.time_ns <= 1_001_000, "{}", vm.time_ns);
    // Not while the guest has interrupts off or is in an STI shadow.
    let closed = Cpu { rflags: 0x2, ..cpu };
    assert_eq!(vm.injection(&closed), Injection::WhenOpen);
    assert_eq!(vm.injection(&Cpu { shadow: 1, ..cpu }), Injection::WhenOpen);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x20));
    assert_eq!(vm.timer_interrupts, 1);
    // Until the guest acknowledges (EOI), nothing more.
    vm.advance_time(5_000_000);
    assert_eq!(vm.injection(&cpu), Injection::None);
    out(&mut vm, &mut cpu, &mut mem, 0x20, 0x20);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x20));
    // HLT with interrupts off and nothing to wake it: stopped.
    let mut vm2 = Vm::new(Lines::default());
    assert_eq!(
        vm2.handle(&exit(reason::HLT, 0, 1), &mut Cpu::default(), &mut mem, host_cpuid),
        Outcome::Stop(Stop::HaltedForever)
    );
}

#[test]
fn mmio_to_the_test_device_is_decoded_and_emulated() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    // mov dword [rax], 0x1234; mov ebx, [rax+4]; mov cl, [rax]; mov [rax], rdx
    let code = [
        0xc7, 0x00, 0x34, 0x12, 0x00, 0x00, // mov dword [rax], 0x1234
        0x8b, 0x58, 0x04, // mov ebx, [rax+4]
        0x8a, 0x08, // mov cl, [rax]
        0x48, 0x89, 0x10, // mov [rax], rdx
        0xf3, 0xa4, // rep movsb (not emulated)
    ];
    assert!(mem.write(0x10_0000, &code));
    let mut cpu = long_mode_cpu(&mut mem, 0x10_0000);
    cpu.regs[gpr::RAX] = test_device::BASE;
    cpu.regs[gpr::RBX] = u64::MAX;
    cpu.regs[gpr::RCX] = 0xffff_ff00;
    cpu.regs[gpr::RDX] = 0x1122_3344_5566_7788;
    let ept = |gpa: u64, write: bool| Exit {
        reason: reason::MEMORY,
        detail: if write { memory::WRITE } else { memory::READ },
        guest_physical: gpa,
        instruction_length: 0,
    };
    let base = test_device::BASE;
    assert_eq!(vm.handle(&ept(base, true), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!((vm.test_device.scratch, cpu.rip), (0x1234, 0x10_0006));
    assert_eq!(vm.handle(&ept(base + 4, false), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu.regs[gpr::RBX], test_device::ID, "a 32-bit load clears the upper half");
    assert_eq!(vm.handle(&ept(base, false), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu.regs[gpr::RCX], 0xffff_ff34, "an 8-bit load keeps the rest");
    assert_eq!(vm.handle(&ept(base, true), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(vm.test_device.scratch, 0x1122_3344_5566_7788);
    assert_eq!(cpu.rip, 0x10_000e);
    assert_eq!(
        vm.handle(&ept(base, true), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::Undecodable { rip: 0x10_000e })
    );
}

#[test]
fn hostile_guests_are_stopped_with_the_reason() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu { rip: 0x4242, ..Cpu::default() };
    let ept = |gpa: u64, detail: u64| Exit {
        reason: reason::MEMORY,
        detail,
        guest_physical: gpa,
        instruction_length: 0,
    };
    // A read of nothing, a write to a read-only page (mapped, without write access).
    assert_eq!(
        vm.handle(&ept(0x4000_0000, memory::READ), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::UnmappedAccess { gpa: 0x4000_0000, write: false, rip: 0x4242 })
    );
    assert_eq!(
        vm.handle(&ept(0x8000, memory::WRITE | memory::MAPPED), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::ReadOnlyWrite { gpa: 0x8000, rip: 0x4242 })
    );
    cpu.regs[gpr::RCX] = 0x1b;
    assert_eq!(
        vm.handle(&exit(reason::MSR_READ, 0, 2), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::BadMsr { msr: 0x1b, write: false })
    );
    assert_eq!(
        vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::BadMsr { msr: 0x1b, write: true })
    );
    assert_eq!(
        vm.handle(&exit(reason::SHUTDOWN, 0, 0), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::TripleFault)
    );
    let entry_failed = cleave_abi::vcpu::exit::other::SVM | 0xffff_ffff;
    assert_eq!(
        vm.handle(&exit(reason::ENTRY_FAILED, entry_failed, 0), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::EntryFailed(entry_failed))
    );
    // MOV from CR3 (it never exits with the kernel's controls): not handled.
    assert!(matches!(
        vm.handle(&exit(reason::CR_ACCESS, 3, 3), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::Unhandled { reason: reason::CR_ACCESS, .. })
    ));
    // SVM's instructions, a hypercall: not offered, the guest stops with the reason named.
    let svm = exit(reason::VIRTUALIZATION_INSTRUCTION, cleave_abi::vcpu::exit::other::SVM | 0x82, 0);
    let stop = vm.handle(&svm, &mut cpu, &mut mem, host_cpuid);
    assert!(
        std::format!(
            "{}",
            match stop {
                Outcome::Stop(s) => s,
                _ => panic!("{stop:?}"),
            }
        )
        .contains("virtualization instruction")
    );
    // MOV to CR4 from rbx (register 3, as VT-x reports it): lands as it is; asking for
    // VMXE is nested VMX, not offered.
    cpu.regs[gpr::RBX] = 0x20;
    cpu.rip = 0x100;
    assert_eq!(
        vm.handle(&exit(reason::CR_ACCESS, cr4_write(Some(3)), 3), &mut cpu, &mut mem, host_cpuid),
        Outcome::Resume
    );
    assert_eq!((cpu.cr4, cpu.rip), (0x20, 0x103));
    cpu.regs[gpr::RBX] = 0x2020;
    assert_eq!(
        vm.handle(&exit(reason::CR_ACCESS, cr4_write(Some(3)), 3), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::NotOffered("VMX (CR4.VMXE)"))
    );
    // Protection keys are not offered either (PKRU is not switched between guests).
    cpu.regs[gpr::RBX] = 0x20 | (1 << 22);
    assert_eq!(
        vm.handle(&exit(reason::CR_ACCESS, cr4_write(Some(3)), 3), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::NotOffered("protection keys (CR4.PKE)"))
    );
    // EFER reads come from what the kernel shows; writes of offered bits land, SVME is
    // nested SVM, not offered.
    cpu.regs[gpr::RCX] = 0xc000_0080;
    cpu.efer = 0xd00;
    assert_eq!(vm.handle(&exit(reason::MSR_READ, 0, 2), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!((cpu.regs[gpr::RAX], cpu.regs[gpr::RDX]), (0xd00, 0));
    cpu.regs[gpr::RAX] = 0x501;
    assert_eq!(vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu.efer, 0x501);
    cpu.regs[gpr::RAX] = 0x1d01;
    assert_eq!(
        vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::NotOffered("SVM (EFER.SVME)"))
    );
    assert!(std::format!("{}", Stop::BadMsr { msr: 0x1b, write: true }).contains("MSR 0x1b"));
}

#[test]
fn long_mode_paging_is_an_identity_map_and_translation_walks_it() {
    let mut mem = ram();
    let cpu = long_mode_cpu(&mut mem, 0);
    assert_eq!(paging::translate(&cpu, &mem, 0x10_1234), Some(0x10_1234));
    assert_eq!(paging::translate(&cpu, &mem, test_device::BASE + 8), Some(test_device::BASE + 8));
    assert_eq!(paging::translate(&cpu, &mem, 1 << 40), None, "only the first 4 GiB");
    assert_eq!(paging::translate(&Cpu::default(), &mem, 0x7c00), Some(0x7c00), "no paging");
    let mut gdt = [0u8; 8];
    assert!(mem.read(layout::GDT + 8, &mut gdt));
    assert_eq!(u64::from_le_bytes(gdt) >> 40 & 0xff, 0x9b, "a present code segment");
    let mut tiny = Ram(vec![0; 0x3000]);
    assert!(paging::long_mode(&mut tiny).is_none(), "RAM too small for the tables");
}

/// A minimal ELF64 image: one PT_LOAD segment of `code` at `address`, `extra` bytes of
/// .bss after it.
fn elf_image(address: u64, entry: u64, code: &[u8], extra: u64) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // executable
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R X
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // offset
    f[ph + 16..ph + 24].copy_from_slice(&address.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&address.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + extra).to_le_bytes());
    f[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

#[test]
fn elf_images_load_at_their_addresses_with_bss_zeroed() {
    let mut mem = ram();
    assert!(mem.write(0x10_0004, &[0xaa; 9]));
    let image = elf_image(0x10_0000, 0x10_0002, &[0x90, 0x90, 0xf4, 0xcc], 8);
    assert_eq!(crate::elf::load(&image, &mut mem), Ok(0x10_0002));
    // Read in place: the same bytes one byte off their alignment are refused.
    let mut shifted = vec![0u8; image.len() + 1];
    shifted[1..].copy_from_slice(&image);
    assert_eq!(crate::elf::load(&shifted[1..], &mut mem), Err(crate::elf::ElfError::Misaligned));
    let mut back = [0u8; 13];
    assert!(mem.read(0x10_0000, &mut back));
    assert_eq!(back, [0x90, 0x90, 0xf4, 0xcc, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa], "bss zeroed, nothing past it");
    let mut junk = vec![0u8; 16];
    junk[..10].copy_from_slice(b"not an elf");
    assert_eq!(crate::elf::load(&junk, &mut mem), Err(crate::elf::ElfError::NotElf));
    let far = elf_image(0x4000_0000, 0x4000_0000, &[0xf4], 0);
    assert_eq!(
        crate::elf::load(&far, &mut mem),
        Err(crate::elf::ElfError::OutsideRam { address: 0x4000_0000 })
    );
}

/// A hostile guest, as the VMM sees it: exits with random reasons, qualifications,
/// addresses and lengths, from random processor states, over guest memory full of random
/// bytes (so MMIO decoding walks random page tables and decodes random instructions), with
/// time passing and interrupts injected in between. Every exit must end in `Resume` or a
/// `Stop` with a reason; none may panic (in a test build, arithmetic overflow panics too).
#[test]
fn random_exits_from_a_hostile_guest_never_panic_the_vmm() {
    let mut state = 0x0123_4567_89ab_cdefu64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    const REASONS: [u64; 17] = [
        reason::CPUID,
        reason::HLT,
        reason::PORT_IO,
        reason::MSR_READ,
        reason::MSR_WRITE,
        reason::CR_ACCESS,
        reason::MEMORY,
        reason::SHUTDOWN,
        reason::INTERRUPT_WINDOW,
        reason::EXCEPTION,
        reason::ENTRY_FAILED,
        reason::HYPERCALL,
        reason::VIRTUALIZATION_INSTRUCTION,
        reason::DEBUG_REGISTER,
        reason::OTHER,
        reason::INTERRUPTED,
        0x7fff,
    ];
    let (mut resumed, mut stopped) = (0u32, 0u32);
    for round in 0..64 {
        let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
        vm.console_input = round % 4 < 2;
        vm.msr_policy = if round % 3 == 0 { MsrPolicy::Fault } else { MsrPolicy::Stop };
        let mut cpu = if round % 2 == 0 {
            long_mode_cpu(&mut mem, 0x10_0000)
        } else {
            // Random control registers: paging on or off, random tables.
            Cpu {
                rip: next() % (3 << 20),
                rflags: next(),
                cr0: next(),
                cr3: next() % (4 << 20),
                cr4: next(),
                efer: next(),
                ..Cpu::default()
            }
        };
        // Random bytes where the code and the page tables are (or would be).
        for gpa in (0..0x20_0000u64).step_by(8) {
            if round % 2 == 1 || gpa >= 0x10_0000 {
                mem.0[gpa as usize..gpa as usize + 8].copy_from_slice(&next().to_le_bytes());
            }
        }
        for _ in 0..2000 {
            for r in &mut cpu.regs {
                if next() % 4 == 0 {
                    *r = if next() % 2 == 0 { next() % 0x1000 } else { next() };
                }
            }
            if round % 2 == 1 && next() % 8 == 0 {
                cpu.rip = next();
            }
            let reason = REASONS[(next() % REASONS.len() as u64) as usize];
            let detail = match next() % 3 {
                0 => next() % 0x1_0000,
                1 => (next() % 0x1_0000) | (next() % 0x80) << 16 | (next() % 0x20) << 8,
                _ => next(),
            };
            let guest_physical = match next() % 3 {
                0 => 0xd000_0000 + next() % 0x2000,
                1 => next() % (3 << 20),
                _ => next(),
            };
            let e = Exit { reason, detail, guest_physical, instruction_length: next() % 20 };
            match vm.handle(&e, &mut cpu, &mut mem, host_cpuid) {
                Outcome::Resume | Outcome::WaitForInput | Outcome::WaitForIo => resumed += 1,
                Outcome::Stop(why) => {
                    assert!(!std::format!("{why}").is_empty());
                    stopped += 1;
                }
            }
            vm.advance_time(next() % 5_000_000);
            let _ = vm.injection(&cpu);
        }
    }
    assert!(resumed > 1000 && stopped > 1000, "too tame: {resumed} resumed, {stopped} stopped");
}

/// SVM without decode assists reports a CR4 write without its source: the VMM decodes the
/// MOV at RIP (in long mode, with a REX prefix too) and steps over it.
#[test]
fn a_cr4_write_without_its_register_is_decoded() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    // mov cr4, rbx; mov cr4, r9; mov cr4, rsp
    let code = [0x0f, 0x22, 0xe3, 0x41, 0x0f, 0x22, 0xe1, 0x0f, 0x22, 0xe4];
    assert!(mem.write(0x10_0000, &code));
    let mut cpu = long_mode_cpu(&mut mem, 0x10_0000);
    cpu.regs[gpr::RBX] = 0x6f0;
    cpu.regs[8] = 0x620;
    let unknown = exit(reason::CR_ACCESS, cr4_write(None), 0);
    assert_eq!(vm.handle(&unknown, &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!((cpu.cr4, cpu.rip), (0x6f0, 0x10_0003));
    assert_eq!(vm.handle(&unknown, &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!((cpu.cr4, cpu.rip), (0x620, 0x10_0007));
    assert_eq!(
        vm.handle(&unknown, &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::Undecodable { rip: 0x10_0007 })
    );
    // Something else at RIP: not a CR4 write, stopped rather than guessed.
    cpu.rip = 0x10_0000 + 3;
    mem.write(0x10_0003, &[0x90, 0x90, 0x90]);
    assert_eq!(
        vm.handle(&unknown, &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::Undecodable { rip: 0x10_0003 })
    );
}

/// An operating system probes MSRs and takes #GP for those the VMM does not offer: the
/// exception is injected before any interrupt, the instruction is not skipped; a test
/// guest is stopped instead. Debug registers are the guest's own copy.
#[test]
fn msrs_not_offered_fault_an_os_and_debug_registers_are_kept() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    vm.msr_policy = MsrPolicy::Fault;
    let mut cpu = Cpu { rip: 0x100, rflags: 0x202, ..Cpu::default() };
    cpu.regs[gpr::RCX] = 0x1b;
    assert_eq!(vm.handle(&exit(reason::MSR_READ, 0, 2), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu.rip, 0x100, "the faulting RDMSR is not skipped");
    assert_eq!(vm.injection(&cpu), Injection::Exception(GENERAL_PROTECTION));
    assert_eq!(vm.injection(&cpu), Injection::None, "once");
    // Not while an interrupted event waits to be delivered.
    cpu.regs[gpr::RCX] = 0xc000_0103;
    vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid);
    let busy = Cpu { event: cleave_abi::vcpu::state::event::external(0x30), ..cpu };
    assert_eq!(vm.injection(&busy), Injection::None);
    assert_eq!(vm.injection(&cpu), Injection::Exception(GENERAL_PROTECTION));
    assert_eq!(vm.msr_faults, 2);
    // PAT: kept if every entry is a memory type, #GP otherwise.
    cpu.regs[gpr::RCX] = 0x277;
    cpu.regs[gpr::RAX] = 0x0106_0406;
    cpu.regs[gpr::RDX] = 0x0007_0406;
    assert_eq!(vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(vm.pat, 0x0007_0406_0106_0406);
    cpu.regs[gpr::RAX] = 0x0206_0406;
    vm.handle(&exit(reason::MSR_WRITE, 0, 2), &mut cpu, &mut mem, host_cpuid);
    assert_eq!(vm.pat, 0x0007_0406_0106_0406, "type 2 is reserved");
    // mov dr7, rax; mov rbx, dr7 (long mode): kept per guest, fixed bits set.
    let code = [0x0f, 0x23, 0xf8, 0x0f, 0x21, 0xfb];
    assert!(mem.write(0x10_0000, &code));
    let mut cpu = long_mode_cpu(&mut mem, 0x10_0000);
    cpu.regs[gpr::RAX] = 0x1;
    let dr = exit(reason::DEBUG_REGISTER, 0, 0);
    assert_eq!(vm.handle(&dr, &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(vm.handle(&dr, &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!((cpu.regs[gpr::RBX], cpu.rip), (0x401, 0x10_0006));
    // A test guest is stopped at an MSR not offered.
    let mut strict = Vm::new(Lines::default());
    cpu.regs[gpr::RCX] = 0x1b;
    assert_eq!(
        strict.handle(&exit(reason::MSR_READ, 0, 2), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::BadMsr { msr: 0x1b, write: false })
    );
}

/// A guest with console input that halts with interrupts on and no timer waits for input;
/// one without is stopped (it would never wake).
#[test]
fn a_halt_with_nothing_to_wake_it_waits_for_console_input_if_there_is_any() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    assert_eq!(
        vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::HaltedForever)
    );
    vm.console_input = true;
    assert_eq!(
        vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::HaltedForever),
        "input cannot interrupt it: the UART's receive interrupt is off"
    );
    vm.uart.write(crate::devices::uart16550::reg::MCR, 0x08, &mut Lines::default());
    vm.uart.write(crate::devices::uart16550::reg::IER, 0x01, &mut Lines::default());
    assert_eq!(vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid), Outcome::WaitForInput);
    assert_eq!(vm.console_typed(b"ls\n"), 1, "one byte fits with the FIFO off");
    assert_eq!(vm.uart.read(crate::devices::uart16550::reg::DATA), b'l');
}

/// A guest that halts while its disk has requests in flight waits for them, with or
/// without a timer armed; with interrupts off it is stopped as before; and once nothing is
/// in flight a halt skips ahead to its timer again.
#[test]
fn a_halt_with_io_in_flight_waits_for_the_backend() {
    let (mut vm, mut mem) = (Vm::new(Lines::default()), ram());
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    vm.io_pending = true;
    assert_eq!(vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid), Outcome::WaitForIo);
    assert_eq!(cpu.rip, 1, "past the HLT");
    cpu.rflags = 0x2;
    assert_eq!(
        vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::HaltedForever),
        "interrupts off: nothing can wake it, I/O or not"
    );
    cpu.rflags = 0x202;
    // An interrupt already pending at the processor (SVM holds one back over `sti; hlt`):
    // no waiting, the guest takes it when it runs.
    cpu.event = cleave_abi::vcpu::state::event::external(0x3b);
    assert_eq!(vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    cpu.event = 0;
    vm.io_pending = false;
    assert_eq!(
        vm.handle(&exit(reason::HLT, 0, 1), &mut cpu, &mut mem, host_cpuid),
        Outcome::Stop(Stop::HaltedForever)
    );
}

/// No RAM: port I/O does not touch it.
fn no_ram() -> Ram {
    Ram(Vec::new())
}

/// `out` of `size` bytes of `value` to `port`, as the kernel reports it.
fn port_out(vm: &mut Vm<Lines>, cpu: &mut Cpu, port: u16, size: u64, value: u64) -> Outcome {
    cpu.regs[gpr::RAX] = value;
    vm.handle(&exit(reason::PORT_IO, io(port, size, false), 1), cpu, &mut no_ram(), host_cpuid)
}

/// `in` of `size` bytes from `port`: the value (rax as the instruction left it).
fn port_in(vm: &mut Vm<Lines>, cpu: &mut Cpu, port: u16, size: u64) -> u64 {
    let outcome = vm.handle(&exit(reason::PORT_IO, io(port, size, true), 1), cpu, &mut no_ram(), host_cpuid);
    assert_eq!(outcome, Outcome::Resume);
    cpu.regs[gpr::RAX]
}

/// The PICs as Linux programs them: vectors 0x30 and 0x38, cascade on 2, everything
/// unmasked.
fn linux_pics(vm: &mut Vm<Lines>, cpu: &mut Cpu) {
    for (port, value) in [
        (0x21, 0xff),
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 4),
        (0x21, 1),
        (0xa0, 0x11),
        (0xa1, 0x38),
        (0xa1, 2),
        (0xa1, 1),
    ] {
        assert_eq!(port_out(vm, cpu, port, 1, value), Outcome::Resume);
    }
    port_out(vm, cpu, 0x21, 1, 0);
    port_out(vm, cpu, 0xa1, 1, 0);
}

#[test]
fn every_pc_port_reaches_its_device() {
    let mut vm = Vm::new(Lines::default());
    let mut cpu = Cpu::default();
    // ELCR, both bytes with one 16-bit access (the ISA bus splits it).
    port_out(&mut vm, &mut cpu, 0x4d0, 2, 0x0c20);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x4d0, 1) & 0xff, 0x20);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x4d1, 1) & 0xff, 0x0c);
    // PIT channel 2 through port 0x61: gate on, mode 0, 1000 clocks; OUT2 rises.
    port_out(&mut vm, &mut cpu, 0x61, 1, 1);
    port_out(&mut vm, &mut cpu, 0x43, 1, 0xb0);
    port_out(&mut vm, &mut cpu, 0x42, 1, 0xe8);
    port_out(&mut vm, &mut cpu, 0x42, 1, 0x03);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x61, 1) & 0x21, 0x01);
    vm.advance_time(1_000_000);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x61, 1) & 0x21, 0x21);
    // The RTC: register D says valid; seconds count in BCD.
    port_out(&mut vm, &mut cpu, 0x70, 1, 0x0d);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x71, 1) & 0xff, 0x80);
    vm.advance_time(12_000_000_000);
    port_out(&mut vm, &mut cpu, 0x70, 1, 0x80); // seconds, NMIs masked
    assert_eq!(port_in(&mut vm, &mut cpu, 0x71, 1) & 0xff, 0x12);
    assert!(vm.rtc.nmi_masked());
    // The keyboard controller's self-test.
    port_out(&mut vm, &mut cpu, 0x64, 1, 0xaa);
    assert_ne!(port_in(&mut vm, &mut cpu, 0x64, 1) & 1, 0);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x60, 1) & 0xff, 0x55);
    // PCI: the host bridge's IDs with a dword, its class with a word at 0xcfe.
    port_out(&mut vm, &mut cpu, 0xcf8, 4, 0x8000_0000);
    assert_eq!(port_in(&mut vm, &mut cpu, 0xcf8, 4), 0x8000_0000);
    cpu.regs[gpr::RAX] = u64::MAX;
    assert_eq!(port_in(&mut vm, &mut cpu, 0xcfc, 4), 0x1237_8086, "a 32-bit IN zero-extends");
    port_out(&mut vm, &mut cpu, 0xcf8, 4, 0x8000_0008);
    assert_eq!(port_in(&mut vm, &mut cpu, 0xcfe, 2) & 0xffff, 0x0600);
    assert_eq!(port_in(&mut vm, &mut cpu, 0xcff, 1) & 0xff, 0x06);
    // The POST delay port and unknown ports: nothing there.
    assert_eq!(port_out(&mut vm, &mut cpu, 0x80, 1, 0), Outcome::Resume);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x80, 1) & 0xff, 0xff);
    assert_eq!(port_in(&mut vm, &mut cpu, 0x2f8, 4), 0xffff_ffff);
    // Sizes the kernel never reports are refused rather than guessed.
    assert!(matches!(
        vm.handle(&exit(reason::PORT_IO, io(0x60, 3, true), 1), &mut cpu, &mut no_ram(), host_cpuid),
        Outcome::Stop(Stop::Unhandled { .. })
    ));
}

#[test]
fn the_guest_resets_through_the_keyboard_controller_or_port_cf9() {
    let mut vm = Vm::new(Lines::default());
    let mut cpu = Cpu::default();
    for b in b"Restarting system" {
        port_out(&mut vm, &mut cpu, COM1, 1, u64::from(*b));
    }
    // Linux's `reboot=k`: wait for the input buffer to empty, then pulse the reset line.
    assert_eq!(port_in(&mut vm, &mut cpu, 0x64, 1) & 2, 0);
    let stop = port_out(&mut vm, &mut cpu, 0x64, 1, 0xfe);
    assert_eq!(stop, Outcome::Stop(Stop::Reset("keyboard controller's reset line")));
    assert_eq!(vm.console.0, ["Restarting system"], "the unfinished line is flushed");
    let Outcome::Stop(why) = stop else { unreachable!() };
    assert!(std::format!("{why}").starts_with("reset itself"));
    let mut vm = Vm::new(Lines::default());
    port_out(&mut vm, &mut cpu, 0xcf9, 1, 2);
    assert_eq!(
        port_out(&mut vm, &mut cpu, 0xcf9, 1, 6),
        Outcome::Stop(Stop::Reset("PCI reset control register"))
    );
}

/// The UART's line to the PIC: with THRE interrupts on, each byte written raises IRQ 4
/// again (the guest's interrupt handler reads IIR, which lowers it); received bytes
/// raise it too. Timer and UART interrupts pending together arrive in priority order.
#[test]
fn the_uart_raises_irq_4_and_interrupts_arrive_by_priority() {
    let mut vm = Vm::new(Lines::default());
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    linux_pics(&mut vm, &mut cpu);
    port_out(&mut vm, &mut cpu, COM1 + 4, 1, 0x08); // OUT2
    port_out(&mut vm, &mut cpu, COM1 + 1, 1, 0x03); // IER: received data, THRE
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x34), "THRE at once");
    assert_eq!(port_in(&mut vm, &mut cpu, COM1 + 2, 1) & 0x0f, 0x02, "IIR: THRE");
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x64); // specific EOI 4
    assert_eq!(vm.injection(&cpu), Injection::None, "IIR read lowered the line");
    port_out(&mut vm, &mut cpu, COM1, 1, u64::from(b'x'));
    // The timer ticks while IRQ 4 is pending: IRQ 0 goes first.
    port_out(&mut vm, &mut cpu, 0x43, 1, 0x34);
    port_out(&mut vm, &mut cpu, 0x40, 1, 0xa9);
    port_out(&mut vm, &mut cpu, 0x40, 1, 0x04);
    vm.advance_time(1_000_000);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x30));
    assert_eq!(vm.injection(&cpu), Injection::None, "IRQ 4 waits for the timer's EOI");
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x60);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x34));
    assert_eq!(port_in(&mut vm, &mut cpu, COM1 + 2, 1) & 0x0f, 0x02);
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x64);
    // Typed input: the UART takes 16 bytes with its FIFO on; IRQ 4 for received data.
    port_out(&mut vm, &mut cpu, COM1 + 2, 1, 0x01);
    assert_eq!(vm.console_room(), 16);
    assert_eq!(vm.console_typed(&[b'l'; 20]), 16);
    assert_eq!(vm.console_room(), 0);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x34));
    assert_eq!(port_in(&mut vm, &mut cpu, COM1 + 2, 1) & 0x0f, 0x04, "IIR: received data");
    for _ in 0..16 {
        assert_eq!(port_in(&mut vm, &mut cpu, COM1, 1) & 0xff, u64::from(b'l'));
    }
    assert_eq!(port_in(&mut vm, &mut cpu, COM1 + 5, 1) & 1, 0, "all read");
    assert_eq!(vm.console_typed(b"ls\r"), 3);
}

/// A halted guest with interrupts on and no timer waits for console input only if input
/// can interrupt it (receive interrupt on, IRQ 4 unmasked); an RTC interrupt counts as a
/// timer.
#[test]
fn a_halted_guest_waits_for_input_it_can_take_or_for_the_rtc() {
    let mut vm = Vm::new(Lines::default());
    vm.console_input = true;
    let mut mem = ram();
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    linux_pics(&mut vm, &mut cpu);
    let hlt = exit(reason::HLT, 0, 1);
    assert_eq!(vm.handle(&hlt, &mut cpu, &mut mem, host_cpuid), Outcome::Stop(Stop::HaltedForever));
    port_out(&mut vm, &mut cpu, COM1 + 4, 1, 0x08);
    port_out(&mut vm, &mut cpu, COM1 + 1, 1, 0x01);
    assert_eq!(vm.handle(&hlt, &mut cpu, &mut mem, host_cpuid), Outcome::WaitForInput);
    assert_eq!(vm.console_typed(b"y"), 1);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x34));
    // Masked at the PIC, input cannot wake it.
    port_in(&mut vm, &mut cpu, COM1, 1);
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x64);
    port_out(&mut vm, &mut cpu, 0x21, 1, 0x10);
    assert_eq!(vm.handle(&hlt, &mut cpu, &mut mem, host_cpuid), Outcome::Stop(Stop::HaltedForever));
    // The RTC's update interrupt: the halt lasts until the next second.
    port_out(&mut vm, &mut cpu, 0x70, 1, 0x0b);
    port_out(&mut vm, &mut cpu, 0x71, 1, 0x12);
    let before = vm.time_ns;
    assert_eq!(vm.handle(&hlt, &mut cpu, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(vm.time_ns - before, 1_000_000_000);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x38));
}

/// A PCI device on an I/O BAR and a memory BAR, and its INTx line: level-triggered, so a
/// device that still asserts it after the guest's EOI interrupts again.
struct Doorbell {
    config: crate::devices::pci::ConfigSpace,
    /// Register 0: nonzero asserts INTx. Register 1: scratch.
    registers: [u8; 8],
}

impl crate::devices::pci::PciDevice for Doorbell {
    fn config(&self) -> &crate::devices::pci::ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut crate::devices::pci::ConfigSpace {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.registers.get(offset as usize + i).copied().unwrap_or(0xff);
        }
    }
    fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8]) {
        for (i, d) in data.iter().enumerate() {
            if let Some(r) = self.registers.get_mut(offset as usize + i) {
                *r = *d;
            }
        }
    }
    fn interrupt(&self) -> bool {
        self.registers[0] != 0
    }
}

#[test]
fn a_pci_device_answers_at_its_bars_and_its_level_interrupt_repeats_until_cleared() {
    use crate::devices::pci::{BarKind, ConfigSpace};
    let mut config = ConfigSpace::new(0x1af4, 0x1000, 0x02_00_00, 0);
    assert!(config.set_bar(0, BarKind::Io, 8) && config.set_bar(1, BarKind::Memory32, 4096));
    config.set_interrupt_pin(1);
    let mut vm = Vm::new(Lines::default());
    vm.attach_pci(2, 11, Box::new(Doorbell { config, registers: [0; 8] })).unwrap();
    assert_eq!(vm.pic.read(0x4d1), 0x08, "IRQ 11 level-triggered");
    let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
    linux_pics(&mut vm, &mut cpu);
    // Place the BARs, enable decoding (as Linux would after reading the sizes).
    for (register, value) in [(0x10, 0xc040), (0x14, 0xd000_1000), (0x04, 0x3)] {
        port_out(&mut vm, &mut cpu, 0xcf8, 4, 0x8000_1000 | register);
        port_out(&mut vm, &mut cpu, 0xcfc, 4, value);
    }
    port_out(&mut vm, &mut cpu, 0xc041, 1, 0x5a);
    assert_eq!(port_in(&mut vm, &mut cpu, 0xc040, 2) & 0xffff, 0x5a00);
    // The memory BAR through an EPT violation: mov eax, [rbx] at the BAR.
    let mut mem = ram();
    assert!(mem.write(0x10_0000, &[0x8b, 0x03]));
    let mut cpu64 = long_mode_cpu(&mut mem, 0x10_0000);
    cpu64.regs[gpr::RBX] = 0xd000_1000;
    let read = Exit {
        reason: reason::MEMORY,
        detail: memory::READ,
        guest_physical: 0xd000_1000,
        instruction_length: 0,
    };
    assert_eq!(vm.handle(&read, &mut cpu64, &mut mem, host_cpuid), Outcome::Resume);
    assert_eq!(cpu64.regs[gpr::RAX], 0x5a00);
    // Past the BAR: nothing mapped there.
    let outside = Exit { guest_physical: 0xd000_2000, ..read };
    assert!(matches!(
        vm.handle(&outside, &mut cpu64, &mut mem, host_cpuid),
        Outcome::Stop(Stop::UnmappedAccess { gpa: 0xd000_2000, .. })
    ));
    // INTx held: delivered, and again after the EOI while the device still asserts it.
    port_out(&mut vm, &mut cpu, 0xc040, 1, 1);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x3b));
    port_out(&mut vm, &mut cpu, 0xa0, 1, 0x63);
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x62);
    assert_eq!(vm.injection(&cpu), Injection::Vector(0x3b), "still asserted");
    port_out(&mut vm, &mut cpu, 0xc040, 1, 0); // the driver clears the device's cause
    port_out(&mut vm, &mut cpu, 0xa0, 1, 0x63);
    port_out(&mut vm, &mut cpu, 0x20, 1, 0x62);
    assert_eq!(vm.injection(&cpu), Injection::None);
    assert_eq!(
        vm.attach_pci(2, 10, Box::new(Doorbell { config: ConfigSpace::new(1, 1, 0, 0), registers: [0; 8] })),
        Err(AttachError::SlotTaken(2))
    );
}

/// A hostile guest at the PC's ports: random ins and outs of every size to every device's
/// ports, in long runs, with time passing and interrupts taken and acknowledged. Nothing
/// may panic; the only stops are the resets and the power-off the ports offer.
#[test]
fn random_port_traffic_never_panics_the_devices() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ports: Vec<u16> = [
        0x20..0x22,
        0xa0..0xa2,
        0x4d0..0x4d2,
        0x40..0x44,
        0x60..0x62,
        0x64..0x65,
        0x70..0x72,
        0x80..0x81,
        0xcf8..0xd00,
        0x3f8..0x400,
        0x501..0x502,
    ]
    .into_iter()
    .flatten()
    .collect();
    let (mut resets, mut power_offs, mut vectors) = (0, 0, 0);
    for round in 0..40 {
        let mut vm = Vm::new(Lines::default());
        let mut cpu = Cpu { rflags: 0x202, ..Cpu::default() };
        if round % 2 == 0 {
            linux_pics(&mut vm, &mut cpu);
        }
        for _ in 0..5000 {
            let r = next();
            let port = ports[(r % ports.len() as u64) as usize];
            let size = [1, 1, 1, 2, 4][((r >> 16) % 5) as usize];
            cpu.regs[gpr::RAX] = next();
            let detail = io(port, size, r & (1 << 30) != 0);
            match vm.handle(&exit(reason::PORT_IO, detail, 1), &mut cpu, &mut no_ram(), host_cpuid) {
                Outcome::Resume | Outcome::WaitForInput | Outcome::WaitForIo => {}
                Outcome::Stop(Stop::Reset(_)) => resets += 1,
                Outcome::Stop(Stop::PoweredOff(_)) => power_offs += 1,
                Outcome::Stop(other) => panic!("{other}"),
            }
            if r & (1 << 40) != 0 {
                vm.advance_time((r >> 44) % 2_000_000);
            }
            if let Injection::Vector(_) = vm.injection(&cpu) {
                vectors += 1;
                if r & (1 << 41) != 0 {
                    port_out(&mut vm, &mut cpu, 0x20, 1, 0x20);
                }
            }
            if r & (1 << 42) != 0 {
                vm.console_typed(&r.to_le_bytes());
            }
        }
    }
    assert!(
        resets > 0 && power_offs > 0 && vectors > 0,
        "{resets} resets, {power_offs} power-offs, {vectors} vectors"
    );
}
