//! VT-x: turning VMX on at boot, loading and initialising a Vcpu's VMCS, VMREAD/VMWRITE
//! for the Vcpu invocations, and running a guest until an exit (`VmEnter`).
//!
//! At most one VMCS is active at a time: before another is loaded, the active one is
//! cleared (its next entry is then a VMLAUNCH again), so destroying a Vcpu only ever needs
//! the active one cleared. Control fields start from what the guest needs (EPT,
//! unrestricted guest, exits on HLT, external interrupts and NMIs, I/O and MSRs through
//! bitmaps in the Vcpu that start with every bit set)
//! adjusted to what the processor's capability MSRs allow; a fresh VMCS describes a
//! real-mode guest at 0000:0000 that a VMM then points where it wants.

use super::{KERNEL_BASE, cpu, gdt};
use crate::arch::global::KernelCell;
use cleave_abi::Error;
use cleave_abi::vcpu::state;
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::vcpu::{STATE_OFFSET, SYSCALL_MSRS, VcpuState, field as policy, launch};
use cleave_kernel_core::vmx_caps::VmxCapabilities;
use cleave_kernel_core::{guest_state, vmcs};
use x86::vmx::vmcs::{control, guest, host, ro};

/// The capability MSRs the controls are adjusted with.
const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_EXIT_CTLS: u32 = 0x483;
const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
const IA32_VMX_CR0_FIXED0: u32 = 0x486;
const IA32_VMX_CR0_FIXED1: u32 = 0x487;
const IA32_VMX_CR4_FIXED0: u32 = 0x488;
const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_EFER: u32 = 0xc000_0080;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Pin-based: external-interrupt exiting, NMI exiting.
const PIN_WANTED: u32 = (1 << 0) | (1 << 3);
/// Primary: HLT exiting, CR8-load and CR8-store exiting (the guest's CR8 would otherwise be
/// the host's APIC task priority), MOV-DR exiting (debug registers are not switched between
/// guests), I/O bitmaps, MSR bitmaps, secondary controls.
const PRIMARY_WANTED: u32 = (1 << 7) | (1 << 19) | (1 << 20) | (1 << 23) | (1 << 25) | (1 << 28) | (1 << 31);
/// Secondary: EPT, unrestricted guest.
const SECONDARY_WANTED: u32 = (1 << 1) | (1 << 7);
/// Exit: 64-bit host, save and load IA32_EFER.
const EXIT_WANTED: u32 = (1 << 9) | (1 << 20) | (1 << 21);
const EXIT_LOAD_EFER: u32 = 1 << 21;
/// Entry: load IA32_EFER.
const ENTRY_WANTED: u32 = 1 << 15;
const ENTRY_LOAD_EFER: u32 = 1 << 15;

/// VMX as turned on at boot.
#[derive(Clone, Copy)]
struct Vmx {
    revision: u32,
    /// (must be 1, may be 1) masks of each control field.
    pin: (u32, u32),
    primary: (u32, u32),
    secondary: (u32, u32),
    exit: (u32, u32),
    entry: (u32, u32),
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    /// The VMCS the processor has active (a Vcpu's address), or 0.
    active: u64,
}

static VMX: KernelCell<Option<Vmx>> = KernelCell::new(None);

/// The VMXON region: one page, 4 KiB aligned, in the kernel image.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static VMXON_REGION: KernelCell<Page> = KernelCell::new(Page([0; 4096]));

unsafe extern "C" {
    /// Runs the guest (entry.s): loads its general registers from `gprs`, VMLAUNCHes (or
    /// VMRESUMEs if `launched`), and on the VM exit stores them back. Returns 0 after an
    /// exit, 1 or 2 when the entry failed (VMfailInvalid, VMfailValid).
    fn vmx_run(gprs: *mut [u64; 15], launched: u64) -> u64;
    /// Where a VM exit lands (HOST_RIP).
    fn vmx_exit();
}

/// A capability MSR's (allowed-0, allowed-1) halves.
fn allowed(msr: u32) -> (u32, u32) {
    let v = cpu::read_msr(msr);
    (v as u32, (v >> 32) as u32)
}

/// `wanted` adjusted to what the processor allows.
fn adjust(wanted: u32, (must, may): (u32, u32)) -> u32 {
    (wanted | must) & may
}

/// Turns VMX on if the processor can host guests; returns whether it did.
pub fn enable(caps: &VmxCapabilities) -> bool {
    if !caps.can_host_guests() {
        return false;
    }
    let feature = cpu::read_msr(IA32_FEATURE_CONTROL);
    if feature & 1 == 0 {
        // Unlocked: allow VMXON outside SMX and lock.
        cpu::write_msr(IA32_FEATURE_CONTROL, feature | 1 | (1 << 2));
    } else if feature & (1 << 2) == 0 {
        return false;
    }
    let (pin_msr, primary_msr, exit_msr, entry_msr) = if caps.true_controls {
        (
            IA32_VMX_TRUE_PINBASED_CTLS,
            IA32_VMX_TRUE_PROCBASED_CTLS,
            IA32_VMX_TRUE_EXIT_CTLS,
            IA32_VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_EXIT_CTLS, IA32_VMX_ENTRY_CTLS)
    };
    let vmx = Vmx {
        revision: caps.vmcs_revision,
        pin: allowed(pin_msr),
        primary: allowed(primary_msr),
        secondary: allowed(IA32_VMX_PROCBASED_CTLS2),
        exit: allowed(exit_msr),
        entry: allowed(entry_msr),
        cr0_fixed: (cpu::read_msr(IA32_VMX_CR0_FIXED0), cpu::read_msr(IA32_VMX_CR0_FIXED1)),
        cr4_fixed: (cpu::read_msr(IA32_VMX_CR4_FIXED0), cpu::read_msr(IA32_VMX_CR4_FIXED1)),
        active: 0,
    };
    // The host's CR0 and CR4 must satisfy the fixed bits (CR4.VMXE among them).
    cpu::write_cr0((cpu::read_cr0() | vmx.cr0_fixed.0) & vmx.cr0_fixed.1);
    cpu::write_cr4((cpu::read_cr4() | vmx.cr4_fixed.0) & vmx.cr4_fixed.1);
    let region = VMXON_REGION.with(|page| {
        page.0[..4].copy_from_slice(&vmx.revision.to_le_bytes());
        page as *const Page as u64 - KERNEL_BASE
    });
    // SAFETY: CR4.VMXE is set and CR0/CR4 meet the fixed bits (above); the region is a
    // page-aligned page of the kernel image holding the VMCS revision, at this physical
    // address (the image is mapped at KERNEL_BASE + physical), never used for anything else.
    if unsafe { x86::bits64::vmx::vmxon(region) }.is_err() {
        return false;
    }
    VMX.with(|v| *v = Some(vmx));
    true
}

/// Whether VMX is on.
pub fn enabled() -> bool {
    VMX.with(|v| v.is_some())
}

/// The active VMCS's Vcpu address, or 0.
pub fn active() -> u64 {
    VMX.with(|v| v.map_or(0, |v| v.active))
}

fn vmread(field: u32) -> Result<u64, Error> {
    // SAFETY: VMX is on and a VMCS is current (every caller first made it so); VMREAD has
    // no effect but reading the field, and a bad field is reported as VMfail.
    unsafe { x86::bits64::vmx::vmread(field) }.map_err(|_| Error::InvalidArgument)
}

fn vmwrite(field: u32, value: u64) -> Result<(), Error> {
    // SAFETY: as in `vmread`; the policy (object code) and `Machine::vmcs_write` let only
    // guest-state and VMM-owned control values through, the kernel's own writes are the
    // host state and controls set up here.
    unsafe { x86::bits64::vmx::vmwrite(field, value) }.map_err(|_| Error::InvalidArgument)
}

/// The state page of the Vcpu at `vcpu`.
fn state(vcpu: PhysAddr) -> *mut VcpuState {
    super::physmem::virt(PhysAddr(vcpu.0 + STATE_OFFSET)) as *mut VcpuState
}

fn read_page(vcpu: PhysAddr) -> VcpuState {
    // SAFETY: `vcpu` comes from a Vcpu capability: two pages of kernel-object memory in
    // the direct map; the kernel is single-threaded and no reference to it exists.
    unsafe { state(vcpu).read() }
}

fn write_page(vcpu: PhysAddr, s: &VcpuState) {
    // SAFETY: as in `read_page`.
    unsafe { state(vcpu).write(*s) }
}

/// Makes the Vcpu at `vcpu` the current VMCS, clearing the previously active one and
/// initialising a fresh one. `Err` if VMX is off.
pub fn make_current(vcpu: PhysAddr) -> Result<(), Error> {
    // The common case, the VMCS already current, reads nothing else.
    if VMX.with(|v| v.map(|v| v.active)).ok_or(Error::IllegalOperation)? == vcpu.0 {
        return Ok(());
    }
    let vmx = VMX.with(|v| *v).ok_or(Error::IllegalOperation)?;
    if vmx.active != 0 {
        clear_active();
    }
    let mut st = read_page(vcpu);
    let fresh = st.launch == launch::FRESH;
    if fresh {
        let region = super::physmem::virt(vcpu) as *mut u32;
        // SAFETY: the VMCS region is the first page of the Vcpu object (direct map); its
        // first word must hold the revision identifier before VMCLEAR/VMPTRLD.
        unsafe { region.write(vmx.revision) };
        // SAFETY: VMX is on; the region is a page-aligned VMCS region with the revision.
        unsafe { x86::bits64::vmx::vmclear(vcpu.0) }.map_err(|_| Error::InvalidArgument)?;
    }
    // SAFETY: as above; the VMCS is clear (just now, or when it stopped being active).
    unsafe { x86::bits64::vmx::vmptrld(vcpu.0) }.map_err(|_| Error::InvalidArgument)?;
    VMX.with(|v| {
        if let Some(v) = v {
            v.active = vcpu.0;
        }
    });
    if fresh {
        initialise(&vmx, vcpu)?;
        st.launch = launch::CLEAR;
        write_page(vcpu, &st);
    }
    Ok(())
}

/// VMCLEARs the active VMCS (its Vcpu's next entry is a VMLAUNCH), if there is one.
pub fn clear_active() {
    let Some(active) = VMX.with(|v| v.as_mut().map(|v| core::mem::take(&mut v.active))) else { return };
    if active == 0 {
        return;
    }
    // SAFETY: `active` is the VMCS region this kernel VMPTRLDed, still the Vcpu's memory
    // (destroying a Vcpu clears it before the memory can be reused).
    let _ = unsafe { x86::bits64::vmx::vmclear(active) };
    let mut st = read_page(PhysAddr(active));
    if st.launch == launch::LAUNCHED {
        st.launch = launch::CLEAR;
        write_page(PhysAddr(active), &st);
    }
}

/// Writes a fresh VMCS (of the Vcpu at `vcpu`): controls, its bitmaps, host state, and a
/// real-mode guest at 0000:0000.
fn initialise(vmx: &Vmx, vcpu: PhysAddr) -> Result<(), Error> {
    use cleave_kernel_core::object::vcpu::{IO_BITMAP_OFFSET, MSR_BITMAP_OFFSET};
    let sel = gdt::selectors();
    let gdtr = x86_64::instructions::tables::sgdt();
    let idtr = x86_64::instructions::tables::sidt();
    let exit = adjust(EXIT_WANTED, vmx.exit);
    let entry = adjust(ENTRY_WANTED, vmx.entry);
    let writes: &[(u32, u64)] = &[
        (control::PINBASED_EXEC_CONTROLS, u64::from(adjust(PIN_WANTED, vmx.pin))),
        (control::PRIMARY_PROCBASED_EXEC_CONTROLS, u64::from(adjust(PRIMARY_WANTED, vmx.primary))),
        (control::SECONDARY_PROCBASED_EXEC_CONTROLS, u64::from(adjust(SECONDARY_WANTED, vmx.secondary))),
        (control::VMEXIT_CONTROLS, u64::from(exit)),
        (control::VMENTRY_CONTROLS, u64::from(entry)),
        (control::EXCEPTION_BITMAP, 0),
        (control::IO_BITMAP_A_ADDR_FULL, vcpu.0 + IO_BITMAP_OFFSET),
        (control::IO_BITMAP_B_ADDR_FULL, vcpu.0 + IO_BITMAP_OFFSET + 4096),
        (control::MSR_BITMAPS_ADDR_FULL, vcpu.0 + MSR_BITMAP_OFFSET),
        (control::PAGE_FAULT_ERR_CODE_MASK, 0),
        (control::PAGE_FAULT_ERR_CODE_MATCH, 0),
        (control::CR3_TARGET_COUNT, 0),
        (control::VMEXIT_MSR_STORE_COUNT, 0),
        (control::VMEXIT_MSR_LOAD_COUNT, 0),
        (control::VMENTRY_MSR_LOAD_COUNT, 0),
        (control::VMENTRY_INTERRUPTION_INFO_FIELD, 0),
        // CR4.VMXE is the host's: the guest sees it clear and cannot change it; nor can it
        // set PKE without its VMM (PKRU is not switched between guests).
        (control::CR0_GUEST_HOST_MASK, 0),
        (control::CR4_GUEST_HOST_MASK, cleave_kernel_core::object::vcpu::CR4_KERNEL_BITS),
        (control::CR0_READ_SHADOW, 0),
        (control::CR4_READ_SHADOW, 0),
        // Host state (HOST_RSP, HOST_CR3 and the FS/GS bases are written at each entry).
        (host::CR0, cpu::read_cr0()),
        (host::CR4, cpu::read_cr4()),
        (host::CS_SELECTOR, u64::from(sel.kernel_code.0)),
        (host::SS_SELECTOR, u64::from(sel.kernel_data.0)),
        (host::DS_SELECTOR, u64::from(sel.kernel_data.0)),
        (host::ES_SELECTOR, u64::from(sel.kernel_data.0)),
        (host::FS_SELECTOR, 0),
        (host::GS_SELECTOR, 0),
        (host::TR_SELECTOR, u64::from(sel.tss.0)),
        (host::TR_BASE, gdt::tss_base()),
        (host::GDTR_BASE, gdtr.base.as_u64()),
        (host::IDTR_BASE, idtr.base.as_u64()),
        (host::IA32_SYSENTER_CS, 0),
        (host::IA32_SYSENTER_ESP, 0),
        (host::IA32_SYSENTER_EIP, 0),
        (host::IA32_EFER_FULL, cpu::read_msr(IA32_EFER)),
        (host::RIP, vmx_exit as *const () as u64),
        // A real-mode guest at 0000:0000 (unrestricted guest).
        (guest::CR0, (vmx.cr0_fixed.0 & !((1 << 0) | (1 << 31))) | (1 << 4)),
        (guest::CR3, 0),
        (guest::CR4, vmx.cr4_fixed.0),
        (guest::DR7, 0x400),
        (guest::RSP, 0),
        (guest::RIP, 0),
        (guest::RFLAGS, 0x2),
        (guest::CS_SELECTOR, 0),
        (guest::CS_BASE, 0),
        (guest::CS_LIMIT, 0xffff),
        (guest::CS_ACCESS_RIGHTS, 0x9b),
        (guest::SS_SELECTOR, 0),
        (guest::SS_BASE, 0),
        (guest::SS_LIMIT, 0xffff),
        (guest::SS_ACCESS_RIGHTS, 0x93),
        (guest::DS_SELECTOR, 0),
        (guest::DS_BASE, 0),
        (guest::DS_LIMIT, 0xffff),
        (guest::DS_ACCESS_RIGHTS, 0x93),
        (guest::ES_SELECTOR, 0),
        (guest::ES_BASE, 0),
        (guest::ES_LIMIT, 0xffff),
        (guest::ES_ACCESS_RIGHTS, 0x93),
        (guest::FS_SELECTOR, 0),
        (guest::FS_BASE, 0),
        (guest::FS_LIMIT, 0xffff),
        (guest::FS_ACCESS_RIGHTS, 0x93),
        (guest::GS_SELECTOR, 0),
        (guest::GS_BASE, 0),
        (guest::GS_LIMIT, 0xffff),
        (guest::GS_ACCESS_RIGHTS, 0x93),
        (guest::LDTR_SELECTOR, 0),
        (guest::LDTR_BASE, 0),
        (guest::LDTR_LIMIT, 0),
        (guest::LDTR_ACCESS_RIGHTS, 1 << 16),
        (guest::TR_SELECTOR, 0),
        (guest::TR_BASE, 0),
        (guest::TR_LIMIT, 0xffff),
        (guest::TR_ACCESS_RIGHTS, 0x8b),
        (guest::GDTR_BASE, 0),
        (guest::GDTR_LIMIT, 0xffff),
        (guest::IDTR_BASE, 0),
        (guest::IDTR_LIMIT, 0xffff),
        (guest::INTERRUPTIBILITY_STATE, 0),
        (guest::ACTIVITY_STATE, 0),
        (guest::PENDING_DBG_EXCEPTIONS, 0),
        (guest::IA32_SYSENTER_CS, 0),
        (guest::IA32_SYSENTER_ESP, 0),
        (guest::IA32_SYSENTER_EIP, 0),
        (guest::IA32_DEBUGCTL_FULL, 0),
        (guest::LINK_PTR_FULL, u64::MAX),
    ];
    for &(field, value) in writes {
        vmwrite(field, value)?;
    }
    if entry & ENTRY_LOAD_EFER != 0 {
        vmwrite(guest::IA32_EFER_FULL, 0)?;
    }
    let _ = exit & EXIT_LOAD_EFER;
    Ok(())
}

/// `Machine::vmcs_read`: the field of the Vcpu's VMCS.
pub fn read_field(vcpu: PhysAddr, field: u32) -> Result<u64, Error> {
    make_current(vcpu)?;
    vmread(field)
}

/// `Machine::vmcs_write`: the policy let it through; the processor must also allow the
/// control bits asked for.
pub fn write_field(vcpu: PhysAddr, field: u32, value: u64) -> Result<(), Error> {
    make_current(vcpu)?;
    let vmx = VMX.with(|v| *v).ok_or(Error::IllegalOperation)?;
    let value = match field {
        policy::PRIMARY_CONTROLS => checked_control(value, vmx.primary)?,
        policy::SECONDARY_CONTROLS => checked_control(value, vmx.secondary)?,
        // The entry controls the kernel chose stay; the VMM's choice is added.
        policy::ENTRY_CONTROLS => {
            checked_control(value | u64::from(adjust(ENTRY_WANTED, vmx.entry)), vmx.entry)?
        }
        _ => value,
    };
    vmwrite(field, value)
}

/// A control value the processor allows (bits it requires added), or `IllegalOperation`.
fn checked_control(value: u64, (must, may): (u32, u32)) -> Result<u64, Error> {
    let value = u32::try_from(value).map_err(|_| Error::InvalidArgument)? | must;
    if value & !may != 0 {
        return Err(Error::IllegalOperation);
    }
    Ok(u64::from(value))
}

/// Invalidates every EPT-derived translation (INVEPT, all contexts).
pub fn invept_all() {
    let descriptor = [0u64; 2];
    // SAFETY: VMX is on (callers check); INVEPT type 2 (all contexts) reads the 16-byte
    // descriptor and only drops cached translations.
    unsafe {
        core::arch::asm!(
            "invept {}, [{}]",
            in(reg) 2u64,
            in(reg) descriptor.as_ptr(),
            options(nostack)
        )
    }
}

/// Runs the guest of the Vcpu at `vcpu` in the guest-physical space rooted at `ept_root`
/// until a VM exit (or a failed entry).
pub fn run(vcpu: PhysAddr, ept_root: PhysAddr, flush_ept: bool) -> Result<[u64; 4], Error> {
    make_current(vcpu)?;
    if flush_ept {
        invept_all();
    }
    // Write-back, 4-level walk.
    vmwrite(control::EPTP_FULL, ept_root.0 | (3 << 3) | 6)?;
    vmwrite(host::CR3, cpu::read_cr3())?;
    vmwrite(host::FS_BASE, cpu::read_msr(IA32_FS_BASE))?;
    vmwrite(host::GS_BASE, cpu::read_msr(IA32_GS_BASE))?;
    // The Vcpu's state page is used in place (fields through the raw pointer, the
    // registers by `vmx_run`), not copied in and out.
    let st = state(vcpu);
    // SAFETY: `vcpu` comes from a Vcpu capability, whose state page is kernel-object
    // memory in the direct map; the kernel is single-threaded and no reference to the
    // page exists. (The state-page accesses below rely on the same.)
    let (launch_state, kernel_gs_base, cr2, switch_syscall) =
        unsafe { ((*st).launch, (*st).kernel_gs_base, (*st).cr2, (*st).switch_syscall != 0) };
    let launched = u64::from(launch_state == launch::LAUNCHED);
    // What the VMCS does not switch is this guest's own (doc/virtualization.md lists it all).
    cpu::write_msr(IA32_KERNEL_GS_BASE, kernel_gs_base);
    cpu::write_cr2(cr2);
    // The SYSCALL MSRs, once the guest may reach them: its own in, the kernel's back
    // after (interrupts are off throughout; nothing runs a `syscall` in between).
    let host_syscall = if switch_syscall { SYSCALL_MSRS.map(cpu::read_msr) } else { [0; 4] };
    if switch_syscall {
        // SAFETY: as above.
        let guest_syscall = unsafe { (*st).syscall_msrs };
        for (msr, value) in SYSCALL_MSRS.iter().zip(guest_syscall) {
            cpu::write_msr(*msr, value);
        }
    }
    // SAFETY: the current VMCS is this Vcpu's, fully initialised (host state pointing at
    // `vmx_exit`, this kernel's CR3, segments and tables); `vmx_run` saves and restores
    // every register the Rust ABI needs and writes the guest's registers back to `gprs`,
    // the state page's register block (see above).
    let result = unsafe { vmx_run(&raw mut (*st).gprs, launched) };
    // A VM exit (or a failed entry's return) leaves GDTR and IDTR limits at 0xFFFF: the
    // real ones again before anything else runs.
    gdt::reload();
    super::idt::reload();
    let (kernel_gs_base, cr2) = (cpu::read_msr(IA32_KERNEL_GS_BASE), super::trap::cr2());
    // SAFETY: as above.
    unsafe {
        (*st).kernel_gs_base = kernel_gs_base;
        (*st).cr2 = cr2;
    }
    if switch_syscall {
        let guest_syscall = SYSCALL_MSRS.map(cpu::read_msr);
        // SAFETY: as above.
        unsafe { (*st).syscall_msrs = guest_syscall };
        for (msr, value) in SYSCALL_MSRS.iter().zip(host_syscall) {
            cpu::write_msr(*msr, value);
        }
    }
    match result {
        0 => {
            // SAFETY: as above.
            unsafe { (*st).launch = launch::LAUNCHED };
            let reason = vmread(ro::EXIT_REASON)?;
            let basic = reason & 0xffff;
            let interruption =
                if basic == vmcs::code::EXCEPTION { vmread(ro::VMEXIT_INTERRUPTION_INFO)? } else { 0 };
            let words = vmcs::exit_words(
                reason,
                vmread(ro::EXIT_QUALIFICATION)?,
                vmread(ro::GUEST_PHYSICAL_ADDR_FULL)?,
                vmread(ro::VMEXIT_INSTRUCTION_LEN)?,
                interruption,
            );
            // An event whose delivery the exit interrupted is delivered at the next entry
            // (the exit cleared the entry's event).
            let vectoring = vmread(ro::IDT_VECTORING_INFO)?;
            let code = vmread(ro::IDT_VECTORING_ERR_CODE)?;
            if let Some(event) = guest_state::redelivered(vectoring | code << 32) {
                vmcs::write(&mut Current(vcpu), state::EVENT, event)?;
            }
            Ok(words)
        }
        1 => Ok(vmcs::entry_failed(0)),
        _ => Ok(vmcs::entry_failed(vmread(ro::VM_INSTRUCTION_ERROR).unwrap_or(0))),
    }
}

/// The current VMCS (of the Vcpu at `.0`) as the neutral fields reach it.
struct Current(PhysAddr);

impl vmcs::Vmcs for Current {
    fn read(&mut self, encoding: u32) -> Result<u64, Error> {
        vmread(encoding)
    }
    fn write(&mut self, encoding: u32, value: u64) -> Result<(), Error> {
        write_field(self.0, encoding, value)
    }
    fn cr2(&mut self) -> u64 {
        read_page(self.0).cr2
    }
    fn set_cr2(&mut self, value: u64) {
        let mut st = read_page(self.0);
        st.cr2 = value;
        write_page(self.0, &st);
    }
}

/// `Machine::guest_state_read` on VT-x.
pub fn read_state(vcpu: PhysAddr, field: u64) -> Result<u64, Error> {
    make_current(vcpu)?;
    vmcs::read(&mut Current(vcpu), field)
}

/// `Machine::guest_state_write` on VT-x.
pub fn write_state(vcpu: PhysAddr, field: u64, value: u64) -> Result<(), Error> {
    make_current(vcpu)?;
    vmcs::write(&mut Current(vcpu), field, value)
}
