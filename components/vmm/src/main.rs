//! The VMM, first form: a root task that builds one guest and runs it. It makes the
//! guest's objects from untyped memory (a Vcpu bound to its own thread, a guest-physical
//! address space of EPT tables, 2 MiB of RAM mapped there and into the VMM), loads the
//! embedded guest ELF image, starts it in long mode with identity paging, and then handles
//! every exit with `cleave_vmm::vm` until the guest powers off or is stopped. The guest's
//! console lines are printed with its name in front. (Wiring guests from system.toml, so
//! that the VMM holds only caps the loader gives it, is the next step.)
#![no_std]
#![no_main]

extern crate alloc;

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, EptRoot, EptTable, Frame, PageTable, Tcb, Untyped, VSpace, Vcpu};
use cleave_rt::{Cap, println};
use cleave_vmm::devices::uart16550::Console;
use cleave_vmm::paging;
use cleave_vmm::vm::{Cpu, Exit, GuestMemory, Injection, Outcome, Vm};

cleave_rt::entry!(main);
cleave_rt::heap!(2 * 1024 * 1024);

static GUEST_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.elf"));
/// The guest's name (its console lines carry it).
const NAME: &str = "hello";

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Guest RAM: one 2 MiB frame at guest-physical 0.
const RAM_SIZE: u64 = 2 << 20;
/// Where the VMM maps the guest's RAM (2 MiB aligned).
const RAM_VA: u64 = 0x5000_0000_0000;
/// The guest's initial stack pointer (the guest sets its own as it starts).
const GUEST_STACK: u64 = RAM_SIZE - 16;

/// VMCS field encodings (Intel SDM vol. 3, appendix B).
mod field {
    pub const GUEST_ES_SELECTOR: u32 = 0x800;
    pub const GUEST_CS_SELECTOR: u32 = 0x802;
    pub const GUEST_SS_SELECTOR: u32 = 0x804;
    pub const GUEST_DS_SELECTOR: u32 = 0x806;
    pub const GUEST_FS_SELECTOR: u32 = 0x808;
    pub const GUEST_GS_SELECTOR: u32 = 0x80a;
    pub const GUEST_EFER: u32 = 0x2806;
    pub const PRIMARY_CONTROLS: u32 = 0x4002;
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    pub const GUEST_CS_LIMIT: u32 = 0x4802;
    pub const GUEST_SS_LIMIT: u32 = 0x4804;
    pub const GUEST_DS_LIMIT: u32 = 0x4806;
    pub const GUEST_FS_LIMIT: u32 = 0x4808;
    pub const GUEST_GS_LIMIT: u32 = 0x480a;
    pub const GUEST_TR_LIMIT: u32 = 0x480e;
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub const GUEST_ES_RIGHTS: u32 = 0x4814;
    pub const GUEST_CS_RIGHTS: u32 = 0x4816;
    pub const GUEST_SS_RIGHTS: u32 = 0x4818;
    pub const GUEST_DS_RIGHTS: u32 = 0x481a;
    pub const GUEST_FS_RIGHTS: u32 = 0x481c;
    pub const GUEST_GS_RIGHTS: u32 = 0x481e;
    pub const GUEST_TR_RIGHTS: u32 = 0x4822;
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub const GUEST_CR0: u32 = 0x6800;
    pub const GUEST_CR3: u32 = 0x6802;
    pub const GUEST_CR4: u32 = 0x6804;
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    pub const GUEST_RSP: u32 = 0x681c;
    pub const GUEST_RIP: u32 = 0x681e;
    pub const GUEST_RFLAGS: u32 = 0x6820;
}

/// Primary controls this VMM asks for: HLT exiting, plus interrupt-window exiting while
/// an interrupt waits for the guest to take it (the kernel adds what it requires).
const HLT_EXITING: u64 = 1 << 7;
const INTERRUPT_WINDOW_EXITING: u64 = 1 << 2;

/// The guest's RAM as the VMM maps it.
struct Ram;

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        if gpa.checked_add(out.len() as u64).is_none_or(|end| end > RAM_SIZE) {
            return false;
        }
        // SAFETY: RAM_VA maps the guest's 2 MiB frame read-write (set up before any use);
        // the range is inside it (checked); the guest does not run while the VMM copies.
        unsafe { core::ptr::copy_nonoverlapping((RAM_VA + gpa) as *const u8, out.as_mut_ptr(), out.len()) }
        true
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa.checked_add(data.len() as u64).is_none_or(|end| end > RAM_SIZE) {
            return false;
        }
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (RAM_VA + gpa) as *mut u8, data.len()) }
        true
    }
}

/// The guest's console: each line printed with its name.
struct Named;

impl Console for Named {
    fn line(&mut self, text: &[u8]) {
        println!("{NAME}: {}", core::str::from_utf8(text).unwrap_or("(not UTF-8)"));
    }
}

/// Root-CNode slots, from the first free one.
struct Slots(u64);

impl Slots {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0 - 1
    }
}

/// The guest's objects.
struct Guest {
    vcpu: Cap<Vcpu>,
}

fn build(untyped: Cap<Untyped>, slots: &mut Slots) -> Result<Guest, Error> {
    let make = |ty: ObjectType, slots: &mut Slots| -> Result<u64, Error> {
        let at = slots.next();
        untyped.retype(ty, 0, ROOT, 0, 0, at, 1)?;
        Ok(at)
    };
    let vcpu: Cap<Vcpu> = Cap::from_cptr(make(ObjectType::Vcpu, slots)?);
    let root: Cap<EptRoot> = Cap::from_cptr(make(ObjectType::EptPml4, slots)?);
    for ty in [ObjectType::EptPdpt, ObjectType::EptPd] {
        Cap::<EptTable>::from_cptr(make(ty, slots)?).map(root, 0)?;
    }
    let ram: Cap<Frame> = Cap::from_cptr(make(ObjectType::Frame2M, slots)?);
    ram.map_ept(root, 0, Rights::ALL, false)?;
    // The VMM's view of the same RAM: a copy of the capability, mapped at RAM_VA.
    let alias = slots.next();
    ROOT.copy(ROOT.slot(alias, 64), ROOT.slot(ram.cptr(), 64), Rights::ALL)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    for ty in [ObjectType::Pdpt, ObjectType::PageDirectory] {
        match Cap::<PageTable>::from_cptr(make(ty, slots)?).map(me, RAM_VA) {
            Ok(()) | Err(Error::DeleteFirst) => {}
            Err(e) => return Err(e),
        }
    }
    Cap::<Frame>::from_cptr(alias).map(me, RAM_VA, Rights::ALL, true)?;
    vcpu.set_tcb(Cap::<Tcb>::from_cptr(slot::TCB))?;
    vcpu.set_ept(root)?;
    Ok(Guest { vcpu })
}

/// Loads the image and writes the long-mode start state.
fn start(vcpu: Cap<Vcpu>) -> Result<(), &'static str> {
    let mut ram = Ram;
    let entry = cleave_vmm::elf::load(GUEST_IMAGE, &mut ram).map_err(|_| "the guest image does not load")?;
    let lm = paging::long_mode(&mut ram).ok_or("no room for the guest's page tables")?;
    let flat = 0xffff_ffff;
    let writes = [
        (field::GUEST_CR0, lm.cr0),
        (field::GUEST_CR3, lm.cr3),
        (field::GUEST_CR4, lm.cr4),
        (field::GUEST_EFER, lm.efer),
        (field::ENTRY_CONTROLS, 1 << 9),
        (field::GUEST_CS_SELECTOR, paging::layout::CODE_SELECTOR),
        (field::GUEST_CS_RIGHTS, lm.code_rights),
        (field::GUEST_CS_LIMIT, flat),
        (field::GUEST_DS_SELECTOR, paging::layout::DATA_SELECTOR),
        (field::GUEST_DS_RIGHTS, lm.data_rights),
        (field::GUEST_DS_LIMIT, flat),
        (field::GUEST_ES_SELECTOR, paging::layout::DATA_SELECTOR),
        (field::GUEST_ES_RIGHTS, lm.data_rights),
        (field::GUEST_ES_LIMIT, flat),
        (field::GUEST_SS_SELECTOR, paging::layout::DATA_SELECTOR),
        (field::GUEST_SS_RIGHTS, lm.data_rights),
        (field::GUEST_SS_LIMIT, flat),
        (field::GUEST_FS_SELECTOR, paging::layout::DATA_SELECTOR),
        (field::GUEST_FS_RIGHTS, lm.data_rights),
        (field::GUEST_FS_LIMIT, flat),
        (field::GUEST_GS_SELECTOR, paging::layout::DATA_SELECTOR),
        (field::GUEST_GS_RIGHTS, lm.data_rights),
        (field::GUEST_GS_LIMIT, flat),
        (field::GUEST_TR_RIGHTS, 0x8b),
        (field::GUEST_TR_LIMIT, 0x67),
        (field::GUEST_GDTR_BASE, lm.gdt.0),
        (field::GUEST_GDTR_LIMIT, lm.gdt.1),
        (field::GUEST_RIP, entry),
        (field::GUEST_RSP, GUEST_STACK),
        (field::GUEST_RFLAGS, 0x2),
        (field::PRIMARY_CONTROLS, HLT_EXITING),
    ];
    for (f, value) in writes {
        if vcpu.write_vmcs(f, value).is_err() {
            println!("vmm: VMCS field {f:#x} refused");
            return Err("the kernel refused the guest's start state");
        }
    }
    Ok(())
}

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Reads what exit handling needs.
fn read_cpu(vcpu: Cap<Vcpu>) -> Result<Cpu, Error> {
    Ok(Cpu {
        regs: vcpu.read_registers()?,
        rip: vcpu.read_vmcs(field::GUEST_RIP)?,
        rflags: vcpu.read_vmcs(field::GUEST_RFLAGS)?,
        cr0: vcpu.read_vmcs(field::GUEST_CR0)?,
        cr3: vcpu.read_vmcs(field::GUEST_CR3)?,
        cr4: vcpu.read_vmcs(field::GUEST_CR4)?,
        efer: vcpu.read_vmcs(field::GUEST_EFER)?,
        interruptibility: vcpu.read_vmcs(field::GUEST_INTERRUPTIBILITY)?,
    })
}

/// Runs the guest until it stops; returns the stop reason's text and the machine.
fn run(vcpu: Cap<Vcpu>) -> Result<(cleave_vmm::vm::Stop, Vm<Named>), Error> {
    let mut vm = Vm::new(Named);
    let mut ram = Ram;
    let mut window = false;
    let mut last = cleave_rt::syscall::rdtsc();
    loop {
        let cpu = read_cpu(vcpu)?;
        match vm.injection(&cpu) {
            Injection::Vector(v) => {
                vcpu.write_vmcs(field::ENTRY_INTERRUPTION_INFO, u64::from(v) | (1 << 31))?;
                if window {
                    vcpu.write_vmcs(field::PRIMARY_CONTROLS, HLT_EXITING)?;
                    window = false;
                }
            }
            Injection::WhenOpen if !window => {
                vcpu.write_vmcs(field::PRIMARY_CONTROLS, HLT_EXITING | INTERRUPT_WINDOW_EXITING)?;
                window = true;
            }
            Injection::WhenOpen | Injection::None => {}
        }
        let words = cleave_rt::syscall::vm_enter()?;
        // Guest time follows the TSC (one tick taken as a nanosecond).
        let now = cleave_rt::syscall::rdtsc();
        vm.advance_time(now.wrapping_sub(last));
        last = now;
        let exit = Exit {
            reason: words[0],
            qualification: words[1],
            guest_physical: words[2],
            instruction_length: words[3],
        };
        let mut cpu = read_cpu(vcpu)?;
        let before = cpu;
        match vm.handle(&exit, &mut cpu, &mut ram, host_cpuid) {
            Outcome::Resume => {
                if cpu.regs != before.regs {
                    vcpu.write_registers(&cpu.regs)?;
                }
                if cpu.rip != before.rip {
                    vcpu.write_vmcs(field::GUEST_RIP, cpu.rip)?;
                }
            }
            Outcome::Stop(stop) => return Ok((stop, vm)),
        }
    }
}

fn main() -> i32 {
    if GUEST_IMAGE.is_empty() {
        println!("vmm: no guest image was built in (CLEAVE_GUEST_IMAGE); nothing to run");
        println!("TEST FAIL: vmm");
        return 1;
    }
    let info = boot_info();
    let mut slots = Slots(info.empty_first);
    let (ut_index, _) = (0..info.untyped_count as usize)
        .filter(|&i| info.untyped[i].is_device == 0)
        .map(|i| (i, info.untyped[i].size_bits))
        .max_by_key(|&(_, bits)| bits)
        .unwrap_or((0, 0));
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + ut_index as u64);
    let ut = slots.next();
    if big.retype(ObjectType::Untyped, 23, ROOT, 0, 0, ut, 1).is_err() {
        println!("vmm: no 8 MiB of memory for the guest");
        println!("TEST FAIL: vmm");
        return 1;
    }
    let guest = match build(Cap::from_cptr(ut), &mut slots) {
        Ok(g) => g,
        Err(e) => {
            println!("vmm: building the guest failed: {e:?}");
            println!("TEST FAIL: vmm");
            return 1;
        }
    };
    if let Err(e) = start(guest.vcpu) {
        println!("vmm: {e}");
        println!("TEST FAIL: vmm");
        return 1;
    }
    println!("vmm: guest '{NAME}' loaded ({} bytes of image), starting in long mode", GUEST_IMAGE.len());
    match run(guest.vcpu) {
        Ok((stop, vm)) => {
            println!(
                "vmm: guest '{NAME}' {stop}; {} exits, {} timer interrupts, {} MMIO accesses",
                vm.exits,
                vm.timer_interrupts,
                vm.test_device.reads + vm.test_device.writes
            );
            if stop == cleave_vmm::vm::Stop::PoweredOff(0) && vm.timer_interrupts >= 100 {
                println!("TEST PASS");
                0
            } else {
                println!("TEST FAIL: vmm");
                1
            }
        }
        Err(e) => {
            println!("vmm: the kernel refused a VMM operation: {e:?}");
            println!("TEST FAIL: vmm");
            1
        }
    }
}
