//! The per-guest VMM's side of the kernel interface, shared by the `vmm` component and the
//! multi-guest test program (`emulator-tests`, `vmm-guests`): guest RAM as the VMM maps it,
//! loading an image and writing the long-mode start state into the VMCS, and the exit loop
//! that hands every exit to `cleave_vmm_core::vm` until the guest stops.
#![no_std]

extern crate alloc;

use cleave_abi::Error;
use cleave_rt::cap::kind::Vcpu;
use cleave_rt::{Cap, println};
use cleave_vmm_core::devices::uart16550::Console;
use cleave_vmm_core::paging;
use cleave_vmm_core::vm::{Cpu, Exit, GuestMemory, Injection, Outcome, Stop, Vm};
use core::sync::atomic::{AtomicBool, Ordering};

/// Where the VMM leaves a guest's command line.
const CMDLINE_GPA: u64 = 0x9000;

/// Whole lines only: VMM threads of one program print one line at a time.
static PRINT_LOCK: AtomicBool = AtomicBool::new(false);

/// Prints one line without another thread's line cutting into it.
pub fn print_line(args: core::fmt::Arguments) {
    while PRINT_LOCK.swap(true, Ordering::Acquire) {
        cleave_rt::syscall::yield_now();
    }
    println!("{args}");
    PRINT_LOCK.store(false, Ordering::Release);
}

/// [`print_line`] with `format!` arguments.
#[macro_export]
macro_rules! line {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

/// The guest image the calling crate's build script embedded (`OUT_DIR/guest.elf`, see
/// `cleave_system::codegen::embed_guest_image`), 16-byte aligned because the ELF reader
/// reads its headers in place: `static GUEST_IMAGE: &[u8] = vmm::guest_image!();`.
#[macro_export]
macro_rules! guest_image {
    () => {{
        #[repr(C, align(16))]
        struct Aligned<B: ?Sized>(B);
        static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/guest.elf")));
        &ALIGNED.0
    }};
}

/// VMCS field encodings (Intel SDM vol. 3, appendix B).
pub mod field {
    use x86::vmx::vmcs::{control, guest};
    pub const GUEST_ES_SELECTOR: u32 = guest::ES_SELECTOR;
    pub const GUEST_CS_SELECTOR: u32 = guest::CS_SELECTOR;
    pub const GUEST_SS_SELECTOR: u32 = guest::SS_SELECTOR;
    pub const GUEST_DS_SELECTOR: u32 = guest::DS_SELECTOR;
    pub const GUEST_FS_SELECTOR: u32 = guest::FS_SELECTOR;
    pub const GUEST_GS_SELECTOR: u32 = guest::GS_SELECTOR;
    pub const GUEST_EFER: u32 = guest::IA32_EFER_FULL;
    pub const PRIMARY_CONTROLS: u32 = control::PRIMARY_PROCBASED_EXEC_CONTROLS;
    pub const ENTRY_CONTROLS: u32 = control::VMENTRY_CONTROLS;
    pub const ENTRY_INTERRUPTION_INFO: u32 = control::VMENTRY_INTERRUPTION_INFO_FIELD;
    pub const GUEST_ES_LIMIT: u32 = guest::ES_LIMIT;
    pub const GUEST_CS_LIMIT: u32 = guest::CS_LIMIT;
    pub const GUEST_SS_LIMIT: u32 = guest::SS_LIMIT;
    pub const GUEST_DS_LIMIT: u32 = guest::DS_LIMIT;
    pub const GUEST_FS_LIMIT: u32 = guest::FS_LIMIT;
    pub const GUEST_GS_LIMIT: u32 = guest::GS_LIMIT;
    pub const GUEST_TR_LIMIT: u32 = guest::TR_LIMIT;
    pub const GUEST_GDTR_LIMIT: u32 = guest::GDTR_LIMIT;
    pub const GUEST_ES_RIGHTS: u32 = guest::ES_ACCESS_RIGHTS;
    pub const GUEST_CS_RIGHTS: u32 = guest::CS_ACCESS_RIGHTS;
    pub const GUEST_SS_RIGHTS: u32 = guest::SS_ACCESS_RIGHTS;
    pub const GUEST_DS_RIGHTS: u32 = guest::DS_ACCESS_RIGHTS;
    pub const GUEST_FS_RIGHTS: u32 = guest::FS_ACCESS_RIGHTS;
    pub const GUEST_GS_RIGHTS: u32 = guest::GS_ACCESS_RIGHTS;
    pub const GUEST_TR_RIGHTS: u32 = guest::TR_ACCESS_RIGHTS;
    pub const GUEST_INTERRUPTIBILITY: u32 = guest::INTERRUPTIBILITY_STATE;
    pub const GUEST_CR0: u32 = guest::CR0;
    pub const GUEST_CR3: u32 = guest::CR3;
    pub const GUEST_CR4: u32 = guest::CR4;
    pub const GUEST_GDTR_BASE: u32 = guest::GDTR_BASE;
    pub const GUEST_RSP: u32 = guest::RSP;
    pub const GUEST_RIP: u32 = guest::RIP;
    pub const GUEST_RFLAGS: u32 = guest::RFLAGS;
}

/// Primary controls this VMM asks for: HLT exiting, plus interrupt-window exiting while
/// an interrupt waits for the guest to take it (the kernel adds what it requires).
pub const HLT_EXITING: u64 = 1 << 7;
pub const INTERRUPT_WINDOW_EXITING: u64 = 1 << 2;

/// A guest's RAM as the VMM maps it: `size` bytes at `base`.
#[derive(Clone, Copy)]
pub struct Ram {
    /// Where the VMM maps it.
    pub base: u64,
    /// Its size in bytes (guest-physical 0 up to this).
    pub size: u64,
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        if gpa.checked_add(out.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: `base()` maps this guest's RAM read-write (set up before any use, by this
        // program or the loader); the range is inside it (checked); only this guest's VMM
        // thread copies, and the guest does not run while it does.
        unsafe { core::ptr::copy_nonoverlapping((self.base + gpa) as *const u8, out.as_mut_ptr(), out.len()) }
        true
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa.checked_add(data.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (self.base + gpa) as *mut u8, data.len()) }
        true
    }
}

/// A guest's console: each line printed with its name.
pub struct Named(pub &'static str);

impl Console for Named {
    fn line(&mut self, text: &[u8]) {
        let name = self.0;
        crate::line!("{name}: {}", core::str::from_utf8(text).unwrap_or("(not UTF-8)"));
    }
}

/// Loads `image` into `ram`, leaves the command line, and writes the long-mode start
/// state.
pub fn start(
    vcpu: Cap<Vcpu>,
    mut ram: Ram,
    image: &[u8],
    name: &str,
    cmdline: &str,
) -> Result<(), &'static str> {
    let entry = match cleave_vmm_core::elf::load(image, &mut ram) {
        Ok(entry) => entry,
        Err(e) => {
            crate::line!("vmm: guest '{name}': {e}");
            return Err("the guest image does not load");
        }
    };
    let cmdline = cmdline.as_bytes();
    if !ram.write(CMDLINE_GPA, cmdline) || !ram.write(CMDLINE_GPA + cmdline.len() as u64, &[0]) {
        return Err("no room for the command line");
    }
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
        (field::GUEST_RSP, ram.size - 16),
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

/// Runs the guest until it stops; returns why, and the machine.
pub fn run(vcpu: Cap<Vcpu>, mut ram: Ram, name: &'static str) -> Result<(Stop, Vm<Named>), Error> {
    let mut vm = Vm::new(Named(name));
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
                if cpu.cr4 != before.cr4 {
                    vcpu.write_vmcs(field::GUEST_CR4, cpu.cr4)?;
                }
            }
            Outcome::Stop(stop) => return Ok((stop, vm)),
        }
    }
}
