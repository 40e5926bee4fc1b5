//! AMD SVM: turning it on at boot (EFER.SVME and the host save area `VMRUN` uses).
//!
//! With SVM on, guests' physical address spaces are written as nested page tables (the
//! object layer's `Format::Npt`); running a guest (`VMRUN` for `VmEnter`) comes with the
//! VMCB-backed Vcpu.

use super::{KERNEL_BASE, cpu};
use crate::arch::global::KernelCell;
use cleave_kernel_core::svm_caps::{EFER_SVME, SvmCapabilities, VM_HSAVE_PA};

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

/// The host save area: one page, 4 KiB aligned, in the kernel image, the processor's alone.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static HOST_SAVE_AREA: KernelCell<Page> = KernelCell::new(Page([0; 4096]));

/// Turns SVM on if the processor can host guests the way Cleave runs them; returns
/// whether it did.
pub fn enable(caps: &SvmCapabilities) -> bool {
    if !caps.can_host_guests() {
        return false;
    }
    let area = HOST_SAVE_AREA.with(|page| page as *const Page as u64 - KERNEL_BASE);
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
