//! Processor-wide registers and instructions: time stamp, CPUID-gated features, MSRs, the
//! legacy PIC.

use raw_cpuid::CpuId;
use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

/// Reads the time-stamp counter (under QEMU `-icount shift=0`, executed instructions).
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; CR4.TSD is clear so it is allowed in ring 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads a model-specific register. Only for MSRs whose existence the caller has checked
/// through CPUID or capability MSRs; the VMX decoder guarantees that for its reads.
pub fn read_msr(msr: u32) -> u64 {
    // SAFETY: reading an existing MSR has no side effect on the MSRs this kernel reads
    // (feature control and VMX capabilities); callers only name MSRs whose presence the
    // capability bits established.
    unsafe { Msr::new(msr).read() }
}

/// Writes an MSR: the feature-control MSR at VMX start-up, IA32_CSTAR at boot, a guest's
/// IA32_KERNEL_GS_BASE around its runs.
pub fn write_msr(msr: u32, value: u64) {
    // SAFETY: the callers set IA32_FEATURE_CONTROL's lock and VMX-enable bits while it is
    // unlocked (which changes nothing but whether VMXON is allowed), point IA32_CSTAR at
    // the kernel's compatibility-mode stub, or load IA32_KERNEL_GS_BASE, which only
    // `swapgs` reads and the kernel never executes.
    unsafe { Msr::new(msr).write(value) }
}

/// Sets CR2 (a guest's last page-fault address, before it runs).
pub fn write_cr2(value: u64) {
    // SAFETY: CR2 is only an information register: the processor writes it on a page
    // fault and reads it never; the kernel reads it only in its page-fault reports.
    unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// CR0.
pub fn read_cr0() -> u64 {
    x86_64::registers::control::Cr0::read_raw()
}

/// Sets CR0 (VMX start-up adds the bits VMX operation fixes to 1; `switch_fpu` turns EM
/// and TS off and back on).
pub fn write_cr0(value: u64) {
    // SAFETY: the callers keep paging and protection on (they only add VMX's fixed bits,
    // which the running kernel already has: PE, PG, NE, or toggle EM and TS, which only
    // decide which floating-point instructions fault).
    unsafe { x86_64::registers::control::Cr0::write_raw(value) }
}

/// CR4.
pub fn read_cr4() -> u64 {
    x86_64::registers::control::Cr4::read_raw()
}

/// Sets CR4 (VMX start-up: adds VMXE and the other bits VMX operation fixes to 1).
pub fn write_cr4(value: u64) {
    // SAFETY: the caller keeps every bit the kernel set (PAE, PGE, NX-related, SMEP/SMAP)
    // within what VMX allows and only adds the fixed-1 bits.
    unsafe { x86_64::registers::control::Cr4::write_raw(value) }
}

/// CR3 as a raw value.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// CPUID leaf `leaf`, subleaf `subleaf`: `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // CPUID exists on every x86-64 processor and only reads identification.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Whether CPUID reports VMX.
pub fn has_vmx() -> bool {
    CpuId::new().get_feature_info().is_some_and(|f| f.has_vmx())
}

/// Whether SMAP is on: the interrupt and exception stubs then clear RFLAGS.AC (`clac`),
/// which user code may have set and which would switch SMAP off in the kernel (`syscall`
/// clears it through IA32_FMASK). Read by `entry.s`.
#[unsafe(no_mangle)]
static SMAP_ON: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Turns on the paging protections the processor has: no-execute pages, and supervisor
/// mode execution and access prevention (the kernel reaches user memory only through its
/// direct map, never through user addresses).
pub fn enable_protections() {
    let cpuid = CpuId::new();
    if cpuid.get_extended_processor_and_feature_identifiers().is_some_and(|f| f.has_execute_disable()) {
        // SAFETY: setting NXE only makes bit 63 of page-table entries meaningful; every
        // entry the kernel has written so far keeps it clear.
        unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) }
    }
    if let Some(features) = cpuid.get_extended_feature_info() {
        let mut add = Cr4Flags::empty();
        if features.has_smep() {
            add |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
        }
        if features.has_smap() {
            add |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
        }
        // SAFETY: the kernel neither executes nor accesses user-accessible pages through
        // user addresses; with no user pages mapped yet this changes nothing now.
        unsafe { Cr4::update(|f| f.insert(add)) }
        SMAP_ON.store(features.has_smap(), core::sync::atomic::Ordering::Relaxed);
    }
    // Floating point: threads have no x87, MMX or SSE state of their own (the kernel and
    // its user programs are soft-float), so they may not use the unit at all, or they
    // would share its registers: CR0.EM makes x87 and MMX instructions fault with #NM and
    // SSE ones with #UD, in ring 3 and in the kernel. Guests have their own CR0 and state
    // (`switch_fpu`); CR4.OSFXSR lets FXSAVE and FXRSTOR carry their SSE registers.
    // SAFETY: EM and TS only decide which floating-point instructions fault, and nothing
    // the kernel runs uses them; OSFXSR only widens what FXSAVE/FXRSTOR move.
    unsafe {
        Cr0::update(|f| {
            f.insert(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
            f.remove(Cr0Flags::TASK_SWITCHED);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
    // AVX and the other XSAVE-managed state ignore CR0.EM: whatever the boot loader left
    // in XCR0 goes back to its reset value (x87 only) and CR4.OSXSAVE is cleared, so
    // neither threads nor guests (whose XSETBV always exits to their VMM) can use state
    // FXSAVE does not switch.
    if cpuid.get_feature_info().is_some_and(|f| f.has_xsave()) {
        // SAFETY: XSAVE is supported, so CR4.OSXSAVE may be set; XSETBV with ecx = 0 and
        // 1 (x87 only, which XCR0 must always hold) is valid; nothing uses XSAVE state.
        unsafe {
            Cr4::update(|f| f.insert(Cr4Flags::OSXSAVE));
            core::arch::asm!("xsetbv", in("ecx") 0u32, in("edx") 0u32, in("eax") 1u32, options(nomem, nostack));
            Cr4::update(|f| f.remove(Cr4Flags::OSXSAVE));
        }
    }
}

/// Puts a guest's floating-point state in the processor: saves what it holds into the
/// 512-byte FXSAVE image at `save` (the previous owner's, if any), then loads the one at
/// `load` (both 16-aligned, in the direct map; `ObjectSpace::fpu_switch` says which).
/// CR0.EM is off only in between.
pub fn switch_fpu(save: Option<u64>, load: u64) {
    let cr0 = read_cr0();
    write_cr0(cr0 & !(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED).bits());
    // SAFETY: with EM and TS clear and CR4.OSFXSR set, FXSAVE64 writes and FXRSTOR64 reads
    // exactly 512 bytes at a 16-aligned address; both images are inside Vcpu objects (at
    // `FPU_OFFSET`, page-aligned) that only the kernel can reach, so a loaded image was
    // either written by FXSAVE or is the kernel's fresh one (valid MXCSR): no #GP.
    unsafe {
        if let Some(save) = save {
            core::arch::asm!("fxsave64 [{}]", in(reg) save, options(nostack, preserves_flags));
        }
        core::arch::asm!("fxrstor64 [{}]", in(reg) load, options(nostack, preserves_flags));
    }
    write_cr0(cr0);
}

/// Whether `EFER.NXE` is on, so that page-table entries may carry execute-never.
pub fn no_execute_enabled() -> bool {
    Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE)
}

/// Stops this processor for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Reads an address the kernel never maps, to show the kernel's exception report (behind
/// `cleave.selftest=kernel-page-fault` only).
pub fn self_test_page_fault() -> ! {
    let unmapped = 0xffff_9000_dead_0000usize as *const u64;
    // SAFETY: deliberately faulting: nothing is mapped at this address (the direct map ends
    // at 4 GiB above its base), so the read raises #PF and the exception handler ends the
    // run; no memory is read.
    let value = unsafe { core::ptr::read_volatile(unmapped) };
    panic!("read of an unmapped address returned {value:#x}")
}

/// The machine as invocations see it: port I/O for IoPort holders (the object code
/// checked the range), interrupt-line masking for IrqHandler holders.
pub struct Machine;

impl cleave_kernel_core::object::invoke::Hardware for Machine {
    fn time_us(&mut self) -> u64 {
        // The time-stamp counter taken as 1 GHz, as components count it
        // (`cleave_rt::console::audit_time`).
        rdtsc() / 1000
    }

    fn read(&mut self, port: u16, width: u8) -> u32 {
        // SAFETY: the caller holds an IoPort capability covering these ports, issued only
        // for ports the kernel does not use itself (COM1 and the PICs are reserved), so the
        // access cannot disturb kernel state; port reads have no memory effects.
        unsafe {
            match width {
                1 => u32::from(Port::<u8>::new(port).read()),
                2 => u32::from(Port::<u16>::new(port).read()),
                _ => Port::<u32>::new(port).read(),
            }
        }
    }

    fn write(&mut self, port: u16, width: u8, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            match width {
                1 => Port::<u8>::new(port).write(value as u8),
                2 => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    }

    fn set_irq_masked(&mut self, irq: u8, masked: bool) {
        super::interrupt::set_line_masked(irq, masked);
    }

    fn interrupt_pending(&mut self) -> bool {
        super::interrupt::pending()
    }

    fn vmcs_read(
        &mut self,
        vcpu: cleave_kernel_core::PhysAddr,
        encoding: u32,
    ) -> Result<u64, cleave_abi::Error> {
        super::vmx::read_field(vcpu, encoding)
    }

    fn vmcs_write(
        &mut self,
        vcpu: cleave_kernel_core::PhysAddr,
        encoding: u32,
        value: u64,
    ) -> Result<(), cleave_abi::Error> {
        super::vmx::write_field(vcpu, encoding, value)
    }

    fn guest_state_read(
        &mut self,
        vcpu: cleave_kernel_core::PhysAddr,
        field: u64,
    ) -> Result<u64, cleave_abi::Error> {
        if super::svm::enabled().is_some() {
            super::svm::read_state(vcpu, field)
        } else {
            super::vmx::read_state(vcpu, field)
        }
    }

    fn guest_state_write(
        &mut self,
        vcpu: cleave_kernel_core::PhysAddr,
        field: u64,
        value: u64,
    ) -> Result<(), cleave_abi::Error> {
        if super::svm::enabled().is_some() {
            super::svm::write_state(vcpu, field, value)
        } else {
            super::vmx::write_state(vcpu, field, value)
        }
    }
}
