//! AMD SVM: turning it on at boot (EFER.SVME and the host save area `VMRUN` uses).
//!
//! With SVM on, guests' physical address spaces are written as nested page tables (the
//! object layer's `Format::Npt`) and a Vcpu's first page is its VMCB: `VmEnter` runs the
//! guest with `VMRUN` and reports its exits as neutral exit words (`vmcb::exit_words`);
//! the neutral guest-state fields are read and written in the VMCB (`vmcb::read`,
//! `vmcb::write`).

use super::{KERNEL_BASE, cpu};
use crate::arch::global::KernelCell;
use cleave_abi::Error;
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::vcpu::{STATE_OFFSET, VcpuState, launch};
use cleave_kernel_core::svm_caps::{EFER_SVME, SvmCapabilities, VM_HSAVE_PA};
use cleave_kernel_core::vmcb;
use core::cell::UnsafeCell;

const IA32_EFER: u32 = 0xc000_0080;

/// SVM as turned on at boot.
#[derive(Clone, Copy, Debug)]
pub struct Svm {
    /// Address space identifiers the processor has (ASID 0 is the host's).
    pub asids: u32,
    /// Whether intercepts save the next instruction's address.
    pub nrip_save: bool,
    /// Whether one ASID's translations can be flushed alone.
    pub flush_by_asid: bool,
}

static SVM: KernelCell<Option<Svm>> = KernelCell::new(None);

/// A page of the kernel image that only the processor reads and writes (VMRUN, VMSAVE,
/// VMLOAD): Rust code takes its physical address and never a reference into it.
#[repr(C, align(4096))]
struct ProcessorPage(UnsafeCell<[u8; 4096]>);

// SAFETY: Rust code never reads or writes the contents (see above), so sharing the static
// shares only its address.
unsafe impl Sync for ProcessorPage {}

impl ProcessorPage {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; 4096]))
    }

    /// The page's physical address.
    fn physical(&'static self) -> u64 {
        self as *const Self as u64 - KERNEL_BASE
    }
}

/// The host save area (`VM_HSAVE_PA`).
static HOST_SAVE_AREA: ProcessorPage = ProcessorPage::new();

/// Turns SVM on if the processor can host guests the way Cleave runs them; returns
/// whether it did.
pub fn enable(caps: &SvmCapabilities) -> bool {
    if !caps.can_host_guests() {
        return false;
    }
    let area = HOST_SAVE_AREA.physical();
    // Set EFER.SVME first: VM_HSAVE_PA is written with SVM on, as the manual orders.
    cpu::write_msr(IA32_EFER, cpu::read_msr(IA32_EFER) | EFER_SVME);
    cpu::write_msr(VM_HSAVE_PA, area);
    SVM.with(|s| {
        *s = Some(Svm { asids: caps.asids, nrip_save: caps.nrip_save, flush_by_asid: caps.flush_by_asid })
    });
    true
}

/// SVM as turned on, if it is.
pub fn enabled() -> Option<Svm> {
    SVM.with(|s| *s)
}

/// The host's VMLOAD/VMSAVE state (FS, GS, TR and LDTR with their hidden parts,
/// KERNEL_GS_BASE, the SYSCALL and SYSENTER MSRs) while a guest runs: one page.
static HOST_STATE: ProcessorPage = ProcessorPage::new();

/// The ASID every guest runs with: one, with every translation flushed at each entry (QEMU
/// offers no flush by ASID), so no guest ever sees another's.
const GUEST_ASID: u32 = 1;

unsafe extern "C" {
    /// Runs the guest (entry.s): saves the host's VMLOAD state at `host_state`, loads the
    /// guest's general registers but RAX (the VMCB holds it) from `gprs`, VMLOADs, VMRUNs
    /// and VMSAVEs the VMCB at `vmcb` with GIF clear and IF set (so a physical interrupt
    /// exits), stores the registers back, clears IF, reloads the host's state and sets GIF.
    fn svm_run(gprs: *mut [u64; 15], vmcb: u64, host_state: u64);
}

/// The Vcpu's VMCB, in the direct map.
fn vmcb(vcpu: PhysAddr) -> *mut u8 {
    super::physmem::virt(vcpu) as *mut u8
}

fn read(vcpu: PhysAddr, offset: usize) -> u64 {
    // SAFETY: the VMCB is the first page of a Vcpu object in the direct map, offsets come
    // from `vmcb` (below 4 KiB, 8-byte fields at aligned offsets, or smaller fields read
    // whole words as the processor lays them out); the kernel is single-threaded.
    unsafe { (vmcb(vcpu).add(offset) as *const u64).read_unaligned() }
}

fn write(vcpu: PhysAddr, offset: usize, value: u64, bytes: u8) {
    let p = vmcb(vcpu);
    // SAFETY: as in `read`; `bytes` is 4 or 8, so the write stays in the field.
    unsafe {
        match bytes {
            4 => (p.add(offset) as *mut u32).write_unaligned(value as u32),
            _ => (p.add(offset) as *mut u64).write_unaligned(value),
        }
    }
}

/// The Vcpu's state page (after its VMCB), in the direct map.
fn state(vcpu: PhysAddr) -> *mut VcpuState {
    super::physmem::virt(PhysAddr(vcpu.0 + STATE_OFFSET)) as *mut VcpuState
}

/// The Vcpu's VMCB as the neutral fields reach it (the kernel is single-threaded; the
/// guest does not run while a VMM reads or writes it).
struct Direct(PhysAddr);

impl vmcb::Vmcb for Direct {
    fn get(&self, offset: usize) -> u64 {
        read(self.0, offset & 0xff8)
    }
    fn set(&mut self, offset: usize, value: u64) {
        write(self.0, offset & 0xff8, value, 8);
    }
}

/// Makes the Vcpu at `vcpu`'s VMCB ready: on first use, a fresh one (`vmcb::fresh`).
fn prepare(vcpu: PhysAddr) -> Result<(), Error> {
    enabled().ok_or(Error::IllegalOperation)?;
    initialise(vcpu);
    Ok(())
}

/// Writes a fresh VMCB (`vmcb::fresh`) into a Vcpu that has never been used. SVM is on.
#[inline(always)]
fn initialise(vcpu: PhysAddr) {
    // SAFETY: the state page follows the VMCB in the Vcpu object (direct map); only its
    // `launch` word is read here, through a raw pointer (no reference exists).
    if unsafe { (&raw const (*state(vcpu)).launch).read() } == launch::FRESH {
        initialise_fresh(vcpu);
    }
}

/// [`initialise`] for a Vcpu used for the first time.
#[cold]
#[inline(never)]
fn initialise_fresh(vcpu: PhysAddr) {
    for offset in (0..4096).step_by(8) {
        write(vcpu, offset, 0, 8);
    }
    for (offset, value, bytes) in vmcb::fresh(vcpu.0, GUEST_ASID) {
        write(vcpu, offset, value, bytes);
    }
    // SAFETY: as in `initialise`; only the `launch` word is written.
    unsafe { (&raw mut (*state(vcpu)).launch).write(launch::CLEAR) };
}

/// `Machine::guest_state_read` on SVM.
pub fn read_state(vcpu: PhysAddr, field: u64) -> Result<u64, Error> {
    prepare(vcpu)?;
    vmcb::read(&Direct(vcpu), field)
}

/// `Machine::guest_state_write` on SVM.
pub fn write_state(vcpu: PhysAddr, field: u64, value: u64) -> Result<(), Error> {
    prepare(vcpu)?;
    vmcb::write(&mut Direct(vcpu), field, value)
}

/// Runs the guest of the Vcpu at `vcpu` in the nested-paging space rooted at `root` until
/// an exit; returns the neutral exit words (`vmcb::exit_words`). SVM is on: the caller
/// knows it from the object space, which lays Vcpus out for SVM only then (boot.rs).
#[inline(always)]
pub fn run(vcpu: PhysAddr, root: PhysAddr) -> Result<[u64; 4], Error> {
    initialise(vcpu);
    write(vcpu, vmcb::control::N_CR3, root.0, 8);
    write(vcpu, vmcb::control::TLB_CONTROL, 1, 4);
    // The guest's registers stay in the Vcpu's state page: `svm_run` loads and stores
    // them there, and RAX moves between it and the VMCB.
    // SAFETY: the state page follows the VMCB in the Vcpu object (direct map); no
    // reference to it exists while this raw pointer is used.
    let gprs = unsafe { &raw mut (*state(vcpu)).gprs };
    // SAFETY: as above; `gprs` points at 15 words.
    write(vcpu, vmcb::state::RAX, unsafe { (*gprs)[0] }, 8);
    let host = HOST_STATE.physical();
    // SAFETY: SVM is on; the VMCB is this Vcpu's, initialised (`initialise`) with the
    // intercepts the kernel needs (every SVM instruction, INTR, NMI, shutdown, I/O and
    // MSRs through the Vcpu's maps) and nested paging over `root`, a live guest root;
    // `host` is a page of the kernel image used for nothing else; `svm_run` saves and
    // restores every register the Rust ABI needs and the host's VMLOAD state, and `gprs`
    // is the Vcpu's register block, which nothing else refers to meanwhile.
    unsafe { svm_run(gprs, vcpu.0, host) };
    // SAFETY: as for `gprs` above.
    unsafe { (*gprs)[0] = read(vcpu, vmcb::state::RAX) };
    let words = vmcb::exit_words(
        read(vcpu, vmcb::control::EXIT_CODE),
        read(vcpu, vmcb::control::EXIT_INFO_1),
        read(vcpu, vmcb::control::EXIT_INFO_2),
        read(vcpu, vmcb::state::RIP),
    );
    vmcb::after_exit(&mut Direct(vcpu));
    Ok(words)
}
