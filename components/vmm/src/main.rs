//! The VMM, first form: a root task that builds several guests and runs them at once, one
//! VMM thread per guest. For each it makes the guest's objects from untyped memory (a Vcpu
//! bound to that guest's VMM thread, a guest-physical address space of EPT tables, 2 MiB
//! of RAM mapped there and into the VMM), loads the embedded guest ELF image, leaves the
//! guest's command line at guest-physical 0x9000 (above the page tables), starts it in long mode with identity
//! paging, and then handles every exit with `cleave_vmm::vm` until the guest powers off or
//! is stopped. Each guest's console lines are printed with its name in front.
//!
//! Two guests behave; four are hostile (an unmapped access, a write to a read-only page,
//! an MSR not offered, a triple fault) and must be stopped with that reason while the
//! others go on.
//!
//! Started by the capDL loader instead (a `[guests.NAME]` in system.toml: its start
//! argument is not 0), it is that guest's VMM component: the loader already made the
//! Vcpu, bound to this thread with the guest's EPT root, and mapped the guest's RAM and
//! this VMM's configuration page (`cleave::compile`); it holds nothing else.
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
use cleave_vmm::vm::{Cpu, Exit, GuestMemory, Injection, Outcome, Stop, Vm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

cleave_rt::entry!(main);
cleave_rt::heap!(2 * 1024 * 1024);

/// The image, 16-byte aligned (the ELF reader reads headers in place).
#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);
static GUEST_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/guest.elf")));
static GUEST_IMAGE: &[u8] = &GUEST_ALIGNED.0;

/// How a guest must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    PoweredOff,
    Unmapped,
    ReadOnly,
    BadMsr,
    TripleFault,
}

/// The guests: name, command line, what must happen.
const GUESTS: [(&str, &str, Expected); 6] = [
    ("hello", "name=hello", Expected::PoweredOff),
    ("alice", "name=alice", Expected::PoweredOff),
    ("unmapped", "name=unmapped misbehave=unmapped", Expected::Unmapped),
    ("readonly", "name=readonly misbehave=readonly", Expected::ReadOnly),
    ("badmsr", "name=badmsr misbehave=msr", Expected::BadMsr),
    ("triple", "name=triple misbehave=triple", Expected::TripleFault),
];

/// Where the VMM leaves a guest's command line.
const CMDLINE_GPA: u64 = 0x9000;
/// Where a guest finds its read-only page (just above its RAM).
const READ_ONLY_GPA: u64 = 0x20_0000;

/// One VMM thread's stack.
const STACK_SIZE: usize = 64 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static mut STACKS: [Stack; GUESTS.len()] = [const { Stack([0; STACK_SIZE]) }; GUESTS.len()];

/// Each guest's result: 0 running, 1 ended as expected, 2 ended otherwise.
static RESULTS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];
/// Each guest's Vcpu capability.
static VCPUS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];
/// Each guest's VMM thread (its TCB capability).
static THREADS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];
/// Whole lines only: the VMM threads print one line at a time.
static PRINT_LOCK: AtomicBool = AtomicBool::new(false);

/// Prints one line without another thread's line cutting into it.
macro_rules! line {
    ($($arg:tt)*) => {{
        while PRINT_LOCK.swap(true, Ordering::Acquire) {
            cleave_rt::syscall::yield_now();
        }
        println!($($arg)*);
        PRINT_LOCK.store(false, Ordering::Release);
    }};
}

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Guest RAM: one 2 MiB frame at guest-physical 0.
const RAM_SIZE: u64 = 2 << 20;
/// Where the VMM maps the guest's RAM (2 MiB aligned).
const RAM_VA: u64 = 0x5000_0000_0000;

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

/// A guest's RAM as the VMM maps it: `size` bytes at `base`.
#[derive(Clone, Copy)]
struct Ram {
    base: u64,
    size: u64,
}

impl Ram {
    /// The root-task VMM's guest `index`: 2 MiB at `RAM_VA + index * 2 MiB`.
    fn of(index: usize) -> Self {
        Self { base: RAM_VA + index as u64 * RAM_SIZE, size: RAM_SIZE }
    }

    fn base(&self) -> u64 {
        self.base
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        if gpa.checked_add(out.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: `base()` maps this guest's RAM read-write (set up before any use, by this
        // program or the loader); the range is inside it (checked); only this guest's VMM
        // thread copies, and the guest does not run while it does.
        unsafe {
            core::ptr::copy_nonoverlapping((self.base() + gpa) as *const u8, out.as_mut_ptr(), out.len())
        }
        true
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa.checked_add(data.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (self.base() + gpa) as *mut u8, data.len()) }
        true
    }
}

/// A guest's console: each line printed with its name.
struct Named(&'static str);

impl Console for Named {
    fn line(&mut self, text: &[u8]) {
        let name = self.0;
        line!("{name}: {}", core::str::from_utf8(text).unwrap_or("(not UTF-8)"));
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

/// Builds guest `index`'s objects and its VMM thread (not yet started); returns the Vcpu
/// and the thread.
fn build(untyped: Cap<Untyped>, slots: &mut Slots, index: usize) -> Result<(Cap<Vcpu>, Cap<Tcb>), Error> {
    let make = |ty: ObjectType, slots: &mut Slots| -> Result<u64, Error> {
        let at = slots.next();
        untyped.retype(ty, 0, ROOT, 0, 0, at, 1)?;
        Ok(at)
    };
    let vcpu: Cap<Vcpu> = Cap::from_cptr(make(ObjectType::Vcpu, slots)?);
    let root: Cap<EptRoot> = Cap::from_cptr(make(ObjectType::EptPml4, slots)?);
    Cap::<cleave_rt::cap::kind::AsidPool>::from_cptr(slot::ASID_POOL).assign(root)?;
    for ty in [ObjectType::EptPdpt, ObjectType::EptPd] {
        Cap::<EptTable>::from_cptr(make(ty, slots)?).map(root, 0)?;
    }
    let ram: Cap<Frame> = Cap::from_cptr(make(ObjectType::Frame2M, slots)?);
    ram.map_ept(root, 0, Rights::ALL, false)?;
    // A read-only page just above the RAM (a 4 KiB table for that 2 MiB).
    Cap::<EptTable>::from_cptr(make(ObjectType::EptPt, slots)?).map(root, READ_ONLY_GPA)?;
    let read_only: Cap<Frame> = Cap::from_cptr(make(ObjectType::Frame4K, slots)?);
    read_only.map_ept(root, READ_ONLY_GPA, Rights::READ, true)?;
    // The VMM's view of the same RAM: a copy of the capability, mapped at its window.
    let alias = slots.next();
    ROOT.copy(ROOT.slot(alias, 64), ROOT.slot(ram.cptr(), 64), Rights::ALL)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let window = Ram::of(index).base();
    for ty in [ObjectType::Pdpt, ObjectType::PageDirectory] {
        match Cap::<PageTable>::from_cptr(make(ty, slots)?).map(me, window) {
            Ok(()) | Err(Error::DeleteFirst) => {}
            Err(e) => return Err(e),
        }
    }
    Cap::<Frame>::from_cptr(alias).map(me, window, Rights::ALL, true)?;
    // Its VMM thread, in this address space.
    let thread: Cap<Tcb> = Cap::from_cptr(make(ObjectType::Tcb, slots)?);
    thread.configure(ROOT, me, None, None)?;
    thread.set_priority(100)?;
    vcpu.set_tcb(thread)?;
    vcpu.set_ept(root)?;
    Ok((vcpu, thread))
}

/// Loads the image into `ram`, leaves the command line, and writes the long-mode start
/// state.
fn start(vcpu: Cap<Vcpu>, mut ram: Ram, name: &str, cmdline: &str) -> Result<(), &'static str> {
    let entry = match cleave_vmm::elf::load(GUEST_IMAGE, &mut ram) {
        Ok(entry) => entry,
        Err(e) => {
            line!("vmm: guest '{name}': {e}");
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
fn run(vcpu: Cap<Vcpu>, mut ram: Ram, name: &'static str) -> Result<(Stop, Vm<Named>), Error> {
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

/// A guest's VMM thread: runs guest `index` and records how it ended.
extern "C" fn vmm_thread(index: u64) -> ! {
    let index = index as usize;
    let (name, _, expected) = GUESTS[index];
    let vcpu: Cap<Vcpu> = Cap::from_cptr(VCPUS[index].load(Ordering::Acquire));
    let ok = match run(vcpu, Ram::of(index), name) {
        Ok((stop, vm)) => {
            line!(
                "vmm: guest '{name}' {stop}; {} exits, {} timer interrupts, {} MMIO accesses",
                vm.exits,
                vm.timer_interrupts,
                vm.test_device.reads + vm.test_device.writes
            );
            match (expected, stop) {
                (Expected::PoweredOff, Stop::PoweredOff(0)) => vm.timer_interrupts >= 100,
                (Expected::Unmapped, Stop::UnmappedAccess { .. })
                | (Expected::ReadOnly, Stop::ReadOnlyWrite { .. })
                | (Expected::BadMsr, Stop::BadMsr { .. })
                | (Expected::TripleFault, Stop::TripleFault) => true,
                _ => false,
            }
        }
        Err(e) => {
            line!("vmm: guest '{name}': the kernel refused a VMM operation: {e:?}");
            false
        }
    };
    RESULTS[index].store(if ok { 1 } else { 2 }, Ordering::Release);
    // Done: stop this thread (the root thread, below it, collects the results).
    let me: Cap<Tcb> = Cap::from_cptr(THREADS[index].load(Ordering::Acquire));
    let _ = me.suspend();
    loop {
        cleave_rt::syscall::yield_now();
    }
}

/// The layout cleave gives a VMM component.
mod layout {
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}

/// A VMM component's configuration (its page at `layout::CONFIG`, `key=value` lines).
struct Config {
    name: &'static str,
    memory: u64,
    image: &'static str,
    cmdline: &'static str,
}

fn config() -> Option<Config> {
    // SAFETY: the loader maps this component's configuration page read-only at CONFIG,
    // filled from the file cleave generated; nothing writes it.
    let page = unsafe { core::slice::from_raw_parts(layout::CONFIG as *const u8, 4096) };
    let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
    let text = core::str::from_utf8(&page[..end]).ok()?;
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    Some(Config {
        name: value("name")?,
        memory: value("memory")?.parse().ok()?,
        image: value("image")?,
        cmdline: value("cmdline").unwrap_or(""),
    })
}

/// A VMM component, as the loader starts one per `[guests.NAME]`: its guest's Vcpu (bound
/// to this thread, with its EPT root) and RAM are already there; it loads the guest image,
/// starts the guest and handles its exits until it stops, reports, and stops itself.
fn component() -> i32 {
    let Some(config) = config() else {
        println!("vmm: no readable configuration page");
        return 1;
    };
    let name = config.name;
    let me: Cap<Tcb> = Cap::from_cptr(layout::TCB);
    let stop_here = || -> i32 {
        // Nothing more to do: stop this thread (the rest of the system goes on).
        let _ = me.suspend();
        0
    };
    if config.image != layout::IMAGE_NAME {
        println!(
            "vmm: guest '{name}': image '{}' is not built into this VMM (it has '{}')",
            config.image,
            layout::IMAGE_NAME
        );
        return stop_here();
    }
    let vcpu: Cap<Vcpu> = Cap::from_cptr(layout::VCPU);
    let ram = Ram { base: layout::GUEST_RAM, size: config.memory };
    println!(
        "vmm: guest '{name}': {} MiB of RAM, image '{}', starting in long mode",
        config.memory >> 20,
        config.image
    );
    if let Err(e) = start(vcpu, ram, name, config.cmdline) {
        println!("vmm: guest '{name}': {e}");
        return stop_here();
    }
    // The audit log: this guest relies on this VMM while it runs.
    cleave_rt::audit!("serve {name} vmm-{name}#1");
    let outcome = run(vcpu, ram, name);
    cleave_rt::audit!("unserve {name} vmm-{name}#1");
    match outcome {
        Ok((stop, vm)) => println!(
            "vmm: guest '{name}' {stop}; {} exits, {} timer interrupts, {} MMIO accesses",
            vm.exits,
            vm.timer_interrupts,
            vm.test_device.reads + vm.test_device.writes
        ),
        Err(e) => println!("vmm: guest '{name}': the kernel refused a VMM operation: {e:?}"),
    }
    stop_here()
}

fn fail(why: &str) -> i32 {
    println!("vmm: {why}");
    println!("TEST FAIL: vmm");
    1
}

fn main() -> i32 {
    // Started by the loader with its guest's index plus one; by the kernel (root task)
    // with 0: then it builds and runs the test guests itself.
    if cleave_rt::start_argument() != 0 {
        return component();
    }
    if GUEST_IMAGE.is_empty() {
        return fail("no guest image was built in (CLEAVE_GUEST_IMAGE); nothing to run");
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
    if big.retype(ObjectType::Untyped, 25, ROOT, 0, 0, ut, 1).is_err() {
        return fail("no 32 MiB of memory for the guests");
    }
    let mut threads = [Cap::<Tcb>::from_cptr(0); GUESTS.len()];
    for (index, (name, _, _)) in GUESTS.iter().enumerate() {
        match build(Cap::from_cptr(ut), &mut slots, index) {
            Ok((vcpu, thread)) => {
                VCPUS[index].store(vcpu.cptr(), Ordering::Release);
                THREADS[index].store(thread.cptr(), Ordering::Release);
                threads[index] = thread;
                if let Err(e) = start(vcpu, Ram::of(index), GUESTS[index].0, GUESTS[index].1) {
                    return fail(e);
                }
            }
            Err(e) => {
                println!("vmm: building guest '{name}' failed: {e:?}");
                return fail("guest set-up");
            }
        }
    }
    println!(
        "vmm: {} guests loaded ({} bytes of image each), each with its own Vcpu, EPT and RAM; starting their VMM threads",
        GUESTS.len(),
        GUEST_IMAGE.len()
    );
    // The VMM threads (priority 100) share the processor round-robin; this one waits below.
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    if me.set_priority(10).is_err() {
        return fail("cannot lower the root thread's priority");
    }
    for (index, thread) in threads.iter().enumerate() {
        // SAFETY: only the address is taken; each stack belongs to one thread.
        let top = unsafe { &raw mut STACKS[index] } as u64 + STACK_SIZE as u64 - 8;
        let entry = vmm_thread as *const () as u64;
        // Each VMM thread prints its guest's console: it needs the privilege.
        if thread.allow_console().is_err() {
            return fail("cannot let a VMM thread write to the console");
        }
        if thread.write_registers(true, &[entry, top, 0x202, 0, 0, 0, 0, 0, index as u64]).is_err() {
            return fail("cannot start a VMM thread");
        }
    }
    while RESULTS.iter().any(|r| r.load(Ordering::Acquire) == 0) {
        cleave_rt::syscall::yield_now();
    }
    let good = RESULTS.iter().filter(|r| r.load(Ordering::Acquire) == 1).count();
    line!("vmm: {good} of {} guests ended as they should", GUESTS.len());
    if good == GUESTS.len() {
        line!("TEST PASS");
        0
    } else {
        line!("TEST FAIL: vmm");
        1
    }
}
