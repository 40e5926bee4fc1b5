//! A root task that builds several guests and runs them at once, one VMM thread per guest,
//! with the same guest machinery as the `vmm` component. For each it makes the guest's
//! objects from untyped memory (a Vcpu bound to that guest's VMM thread, a guest-physical
//! address space of EPT tables, 2 MiB of RAM mapped there and into this program, and a
//! read-only page above it), loads the embedded guest image (`CLEAVE_GUEST_IMAGE`), and
//! runs it until it powers off or is stopped. Each guest's console lines are printed with
//! its name in front.
//!
//! Two guests behave; the others are hostile (an unmapped access, a write to a read-only
//! page, an MSR not offered, a triple fault, CR4.PKE, EFER.SVME, and on SVM an SVM
//! instruction) and must be stopped with that reason while the others go on. One case per
//! guest: it ended as it must.
#![no_std]
#![no_main]

extern crate alloc;

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, EptRoot, EptTable, Frame, PageTable, Tcb, Untyped, VSpace, Vcpu};
use cleave_rt::{Cap, println};
use cleave_vmm_core::vm::{MsrPolicy, Stop};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use emulator_tests::{Suite, check};
use vmm::{Ram, line, run, start};

cleave_rt::entry!(main);
cleave_rt::heap!(2 * 1024 * 1024);

/// The guest image built in.
static GUEST_IMAGE: &[u8] = vmm::guest_image!();

/// How a guest must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// Powered off with code 0 (its own checks passed) after 100 timer interrupts.
    PoweredOff,
    /// Stopped at a read of this guest-physical address, where nothing is mapped.
    Unmapped(u64),
    /// Stopped at a write to this guest-physical address, mapped read-only.
    ReadOnly(u64),
    /// Stopped at a read of this MSR, which the VMM does not offer.
    BadMsr(u32),
    TripleFault,
    /// Stopped when it asked for this, which the VMM does not offer.
    NotOffered(&'static str),
    /// Stopped at an SVM instruction it ran (SVM only: on VT-x the instruction is
    /// undefined and the guest takes #UD itself).
    VirtualizationInstruction,
}

impl Expected {
    /// Whether a guest that ended with `stop` after `timer_interrupts` ended this way.
    fn matches(self, stop: Stop, timer_interrupts: u64) -> bool {
        match (self, stop) {
            (Expected::PoweredOff, Stop::PoweredOff(0)) => timer_interrupts >= 100,
            (Expected::Unmapped(want), Stop::UnmappedAccess { gpa, write, .. }) => gpa == want && !write,
            (Expected::ReadOnly(want), Stop::ReadOnlyWrite { gpa, .. }) => gpa == want,
            (Expected::BadMsr(want), Stop::BadMsr { msr, write }) => msr == want && !write,
            (Expected::TripleFault, Stop::TripleFault) => true,
            (Expected::NotOffered(want), Stop::NotOffered(what)) => want == what,
            (Expected::VirtualizationInstruction, Stop::Unhandled { reason, .. }) => {
                reason == cleave_vmm_core::vm::reason::VIRTUALIZATION_INSTRUCTION
            }
            _ => false,
        }
    }
}

/// The case name: how the guest must end.
impl core::fmt::Display for Expected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Expected::PoweredOff => write!(f, "powers off with code 0 after 100 timer interrupts"),
            Expected::Unmapped(gpa) => write!(f, "is stopped at its read of unmapped {gpa:#x}"),
            Expected::ReadOnly(gpa) => write!(f, "is stopped at its write to read-only {gpa:#x}"),
            Expected::BadMsr(msr) => write!(f, "is stopped at its read of MSR {msr:#x}"),
            Expected::TripleFault => write!(f, "is stopped at its triple fault"),
            Expected::NotOffered(what) => write!(f, "is stopped when it asks for {what}"),
            Expected::VirtualizationInstruction => write!(f, "is stopped at its SVM instruction"),
        }
    }
}

/// Where a guest finds its read-only page (just above its RAM).
const READ_ONLY_GPA: u64 = 0x20_0000;

/// The guests: name, command line, what must happen (`guests/hello` says what each
/// `misbehave=` does: the unmapped guest reads 1 GiB, the MSR guest the APIC base).
const GUESTS: [(&str, &str, Expected); 9] = [
    ("hello", "name=hello", Expected::PoweredOff),
    ("alice", "name=alice", Expected::PoweredOff),
    ("unmapped", "name=unmapped misbehave=unmapped", Expected::Unmapped(0x4000_0000)),
    ("readonly", "name=readonly misbehave=readonly", Expected::ReadOnly(READ_ONLY_GPA)),
    ("badmsr", "name=badmsr misbehave=msr", Expected::BadMsr(0x1b)),
    ("triple", "name=triple misbehave=triple", Expected::TripleFault),
    ("pke", "name=pke misbehave=pke", Expected::NotOffered("protection keys (CR4.PKE)")),
    ("svme", "name=svme misbehave=svme", Expected::NotOffered("SVM (EFER.SVME)")),
    // SVM only (the last): see `Expected::VirtualizationInstruction`.
    ("vmload", "name=vmload misbehave=vmload", Expected::VirtualizationInstruction),
];

/// How many of [`GUESTS`] run here: all on SVM, all but the SVM-only last one on VT-x. (The
/// kernel runs guests with VT-x when the processor has it, else with SVM.)
fn guest_count() -> usize {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let extended = core::arch::x86_64::__cpuid(0x8000_0001);
    let svm = leaf1.ecx & (1 << 5) == 0 && extended.ecx & (1 << 2) != 0;
    if svm { GUESTS.len() } else { GUESTS.len() - 1 }
}

/// One VMM thread's stack.
const STACK_SIZE: usize = 64 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static mut STACKS: [Stack; GUESTS.len()] = [const { Stack([0; STACK_SIZE]) }; GUESTS.len()];

/// Each guest's result: 0 running, 1 ended as expected, 2 ended otherwise.
static RESULTS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];
/// Each guest's Vcpu capability.
static VCPUS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];
/// Each guest's MSR policy (`start` chose it): true for [`MsrPolicy::Fault`].
static POLICIES: [AtomicBool; GUESTS.len()] = [const { AtomicBool::new(false) }; GUESTS.len()];
/// Each guest's VMM thread (its TCB capability).
static THREADS: [AtomicU64; GUESTS.len()] = [const { AtomicU64::new(0) }; GUESTS.len()];

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Guest RAM: one 2 MiB frame at guest-physical 0.
const RAM_SIZE: u64 = 2 << 20;
/// Where this program maps guest RAM (2 MiB aligned).
const RAM_VA: u64 = 0x5000_0000_0000;

/// Guest `index`'s RAM: 2 MiB at `RAM_VA + index * 2 MiB`.
fn ram_of(index: usize) -> Ram {
    Ram { base: RAM_VA + index as u64 * RAM_SIZE, size: RAM_SIZE }
}

/// Root-CNode slots, from the first free one.
struct Slots(u64);

impl Slots {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0 - 1
    }
}

/// Builds guest `index`'s objects around its RAM frame `ram` and its VMM thread (not yet
/// started); returns the Vcpu and the thread.
fn build(
    untyped: Cap<Untyped>,
    slots: &mut Slots,
    index: usize,
    ram: Cap<Frame>,
) -> Result<(Cap<Vcpu>, Cap<Tcb>), Error> {
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
    ram.map_ept(root, 0, Rights::ALL, false)?;
    // A read-only page just above the RAM (a 4 KiB table for that 2 MiB).
    Cap::<EptTable>::from_cptr(make(ObjectType::EptPt, slots)?).map(root, READ_ONLY_GPA)?;
    let read_only: Cap<Frame> = Cap::from_cptr(make(ObjectType::Frame4K, slots)?);
    read_only.map_ept(root, READ_ONLY_GPA, Rights::READ, true)?;
    // The VMM's view of the same RAM: a copy of the capability, mapped at its window.
    let alias = slots.next();
    ROOT.copy(ROOT.slot(alias, 64), ROOT.slot(ram.cptr(), 64), Rights::ALL)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    let window = ram_of(index).base;
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

/// A guest's VMM thread: runs guest `index` and records how it ended.
extern "C" fn vmm_thread(index: u64) -> ! {
    let index = index as usize;
    let (name, _, expected) = GUESTS[index];
    let vcpu: Cap<Vcpu> = Cap::from_cptr(VCPUS[index].load(Ordering::Acquire));
    let policy = if POLICIES[index].load(Ordering::Acquire) { MsrPolicy::Fault } else { MsrPolicy::Stop };
    let ok = match run(vcpu, ram_of(index), vmm::Named::log(name), policy, vmm::Io::default()) {
        Ok((stop, vm)) => {
            line!(
                "vmm: guest '{name}' {stop}; {} exits, {} timer interrupts, {} MMIO accesses",
                vm.exits,
                vm.timer_interrupts,
                vm.test_device.reads + vm.test_device.writes
            );
            expected.matches(stop, vm.timer_interrupts)
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

/// One case per guest: it ended as it must.
fn main() -> i32 {
    let count = guest_count();
    let t = Suite::plan(count as u32);
    if GUEST_IMAGE.is_empty() {
        return t.abandon("no guest image was built in (CLEAVE_GUEST_IMAGE); nothing to run");
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
        return t.abandon("no 32 MiB of memory for the guests");
    }
    // Every guest's RAM first, so that no 2 MiB frame waits for alignment behind smaller
    // objects.
    let mut rams = [Cap::<Frame>::from_cptr(0); GUESTS.len()];
    for ram in rams.iter_mut().take(count) {
        let at = slots.next();
        if Cap::<Untyped>::from_cptr(ut).retype(ObjectType::Frame2M, 0, ROOT, 0, 0, at, 1).is_err() {
            return t.abandon("no memory for the guests' RAM");
        }
        *ram = Cap::from_cptr(at);
    }
    let mut threads = [Cap::<Tcb>::from_cptr(0); GUESTS.len()];
    for (index, (name, _, _)) in GUESTS.iter().enumerate().take(count) {
        match build(Cap::from_cptr(ut), &mut slots, index, rams[index]) {
            Ok((vcpu, thread)) => {
                VCPUS[index].store(vcpu.cptr(), Ordering::Release);
                THREADS[index].store(thread.cptr(), Ordering::Release);
                threads[index] = thread;
                match start(vcpu, ram_of(index), GUEST_IMAGE, GUESTS[index].0, GUESTS[index].1) {
                    Ok(policy) => POLICIES[index].store(policy == MsrPolicy::Fault, Ordering::Release),
                    Err(e) => return t.abandon(e),
                }
            }
            Err(e) => {
                println!("vmm: building guest '{name}' failed: {e:?}");
                return t.abandon("guest set-up");
            }
        }
    }
    println!(
        "vmm: {} guests loaded ({} bytes of image each), each with its own Vcpu, EPT and RAM; starting their VMM threads",
        count,
        GUEST_IMAGE.len()
    );
    // The VMM threads (priority 100) share the processor round-robin; this one waits below.
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    if me.set_priority(10).is_err() {
        return t.abandon("cannot lower the root thread's priority");
    }
    for (index, thread) in threads.iter().enumerate().take(count) {
        // SAFETY: only the address is taken; each stack belongs to one thread.
        let top = unsafe { &raw mut STACKS[index] } as u64 + STACK_SIZE as u64 - 8;
        let entry = vmm_thread as *const () as u64;
        // Each VMM thread prints its guest's console: it needs the privilege.
        if thread.allow_console().is_err() {
            return t.abandon("cannot let a VMM thread write to the console");
        }
        if thread.write_registers(true, &[entry, top, 0x202, 0, 0, 0, 0, 0, index as u64]).is_err() {
            return t.abandon("cannot start a VMM thread");
        }
    }
    while RESULTS[..count].iter().any(|r| r.load(Ordering::Acquire) == 0) {
        cleave_rt::syscall::yield_now();
    }
    let mut t = t;
    for (index, (name, _, expected)) in GUESTS.iter().enumerate().take(count) {
        let ended = RESULTS[index].load(Ordering::Acquire) == 1;
        let why = "it ended otherwise (its VMM's line above says how)";
        t.case(&alloc::format!("guest '{name}' {expected}"), check(ended, why));
    }
    t.finish()
}
