//! AMD SVM's virtual machine control block: where its fields are, what a fresh one holds,
//! and how an exit it reports becomes the exit words a VMM reads (the same words VT-x
//! exits give, `cleave_abi::vcpu::exit`), so one VMM serves both. Pure, host-tested; the
//! kernel writes and reads the VMCB in the first page of a Vcpu.

use cleave_abi::vcpu::exit::reason;

/// Control-area offsets.
pub mod control {
    /// CR read (bits 0-15) and write (bits 16-31) intercepts.
    pub const CR_INTERCEPTS: usize = 0x000;
    /// DR read (bits 0-15) and write (bits 16-31) intercepts.
    pub const DR_INTERCEPTS: usize = 0x004;
    /// Intercept vector 3 (INTR, NMI, CPUID, HLT, IOIO, MSR, shutdown, …).
    pub const INTERCEPTS_1: usize = 0x00c;
    /// Intercept vector 4 (VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT, …).
    pub const INTERCEPTS_2: usize = 0x010;
    /// Physical address of the I/O permission map.
    pub const IOPM_BASE: usize = 0x040;
    /// Physical address of the MSR permission map.
    pub const MSRPM_BASE: usize = 0x048;
    /// The guest's ASID (32 bits).
    pub const GUEST_ASID: usize = 0x058;
    /// TLB control (8 bits): 1 flushes every ASID's translations.
    pub const TLB_CONTROL: usize = 0x05c;
    /// Virtual interrupt control; bit 24 is V_INTR_MASKING.
    pub const VINTR: usize = 0x060;
    /// The exit code.
    pub const EXIT_CODE: usize = 0x070;
    /// Exit information 1.
    pub const EXIT_INFO_1: usize = 0x078;
    /// Exit information 2.
    pub const EXIT_INFO_2: usize = 0x080;
    /// Nested paging enable (bit 0).
    pub const NP_ENABLE: usize = 0x090;
    /// Event injection.
    pub const EVENT_INJECTION: usize = 0x0a8;
    /// The nested page tables' root.
    pub const N_CR3: usize = 0x0b0;
}

/// State-save-area offsets (segments are 16 bytes: selector, attributes, limit, base).
pub mod state {
    /// ES; CS, SS, DS, FS, GS, GDTR, LDTR, IDTR and TR follow, 16 bytes apart.
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// GDTR.
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR.
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// EFER.
    pub const EFER: usize = 0x4d0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5d8;
    /// RAX (the rest of the general registers are the kernel's to switch).
    pub const RAX: usize = 0x5f8;
    /// The guest's PAT (used with nested paging).
    pub const G_PAT: usize = 0x668;
}

/// Exit codes (AMD APM vol. 2, appendix C).
pub mod code {
    /// A physical interrupt.
    pub const INTR: u64 = 0x60;
    /// A physical NMI.
    pub const NMI: u64 = 0x61;
    /// A write to CR4.
    pub const CR4_WRITE: u64 = 0x14 + 4;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN, OUT, INS, OUTS.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR or WRMSR.
    pub const MSR: u64 = 0x7c;
    /// Shutdown (a triple fault).
    pub const SHUTDOWN: u64 = 0x7f;
    /// A nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN found the guest state invalid (reported as -1; compare the low 32 bits).
    pub const INVALID: u64 = 0xffff_ffff;
}

/// Intercept vector 3: INTR, NMI, SMI, INIT, CPUID, HLT, INVLPGA, IOIO through the map, MSRs
/// through the map, shutdown.
pub const INTERCEPTS_1: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 18)
    | (1 << 24)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 31);
/// Intercept vector 4: VMRUN (which VMRUN requires), VMMCALL, VMLOAD, VMSAVE, STGI, CLGI,
/// SKINIT, and XSETBV (XCR0 is not switched between guests).
pub const INTERCEPTS_2: u32 = 0x7f | (1 << 13);
/// CR intercepts: writes to CR4 (PKE and the other bits whose state is not switched).
pub const CR_INTERCEPTS: u32 = 1 << (16 + 4);
/// DR intercepts: every read and write of a debug register (DR0-DR3 and DR6 are not
/// switched between guests: one guest's breakpoints would be the next one's to read).
pub const DR_INTERCEPTS: u32 = u32::MAX;
/// EFER.SVME: must stay set in a guest's EFER for VMRUN to accept it.
pub const EFER_SVME: u64 = 1 << 12;
/// The reset value of the PAT.
pub const RESET_PAT: u64 = 0x0007_0406_0007_0406;
/// The reason a VMM sees for an SVM exit VT-x has no counterpart for: this bit plus the
/// SVM exit code (a VMM stops a guest on a reason it does not know).
pub const SVM_ONLY: u64 = 1 << 16;

/// The fields of a fresh VMCB (offset, value, bytes): a real-mode guest at 0000:0000 with
/// nested paging, the intercepts the kernel needs, and the permission maps of the Vcpu at
/// `vcpu` (`crate::object::vcpu` offsets).
pub fn fresh(vcpu: u64, asid: u32) -> [(usize, u64, u8); 24] {
    use crate::object::vcpu::{IO_BITMAP_OFFSET, SVM_MSR_MAP_OFFSET};
    let segment = |at: usize, attributes: u64| (at, attributes << 16 | 0xffff << 32, 8);
    [
        (control::CR_INTERCEPTS, u64::from(CR_INTERCEPTS), 4),
        (control::DR_INTERCEPTS, u64::from(DR_INTERCEPTS), 4),
        (control::INTERCEPTS_1, u64::from(INTERCEPTS_1), 4),
        (control::INTERCEPTS_2, u64::from(INTERCEPTS_2), 4),
        (control::IOPM_BASE, vcpu + IO_BITMAP_OFFSET, 8),
        (control::MSRPM_BASE, vcpu + SVM_MSR_MAP_OFFSET, 8),
        (control::GUEST_ASID, u64::from(asid), 4),
        // The guest's RFLAGS.IF masks only virtual interrupts: physical ones always exit.
        (control::VINTR, 1 << 24, 8),
        (control::NP_ENABLE, 1, 8),
        segment(state::ES, 0x93),
        segment(state::CS, 0x9b),
        segment(state::CS + 0x10, 0x93),
        segment(state::CS + 0x20, 0x93),
        segment(state::CS + 0x30, 0x93),
        segment(state::CS + 0x40, 0x93),
        (state::GDTR + 4, 0xffff, 4),
        (state::IDTR + 4, 0xffff, 4),
        segment(state::TR, 0x8b),
        (state::EFER, EFER_SVME, 8),
        (state::CR0, 0x10, 8),
        (state::DR7, 0x400, 8),
        (state::DR6, 0xffff_0ff0, 8),
        (state::RFLAGS, 2, 8),
        (state::G_PAT, RESET_PAT, 8),
    ]
}

/// The exit words (`cleave_abi::vcpu::exit`: reason, qualification, guest-physical address,
/// instruction length) for an SVM exit with `code`, `info1`, `info2` at `rip`. Reasons and
/// qualifications are VT-x's, so one VMM reads both; an instruction length of 0 means the
/// processor did not say (QEMU saves no next RIP) and the VMM must decode it.
pub fn exit_words(code: u64, info1: u64, info2: u64, rip: u64) -> [u64; 4] {
    match code {
        code::INTR | code::NMI => [reason::EXTERNAL_INTERRUPT, 0, 0, 0],
        code::CPUID => [reason::CPUID, 0, 0, 2],
        code::HLT => [reason::HLT, 0, 0, 1],
        code::SHUTDOWN => [reason::TRIPLE_FAULT, 0, 0, 0],
        code::IOIO => {
            // SVM: bit 0 IN, bit 2 string, bit 3 REP, bits 4-6 size (1, 2, 4 bytes), port
            // in bits 16-31; the next RIP in EXITINFO2.
            let size = match (info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            };
            let qualification = (size - 1)
                | ((info1 & 1) << 3)
                | (((info1 >> 2) & 1) << 4)
                | (((info1 >> 3) & 1) << 5)
                | (info1 & 0xffff_0000);
            [reason::IO, qualification, 0, info2.wrapping_sub(rip) & 0xf]
        }
        code::MSR => [if info1 & 1 == 0 { reason::RDMSR } else { reason::WRMSR }, 0, 0, 2],
        // A CR4 write falls through to the SVM-only reasons: without decode assists
        // (QEMU has none) SVM does not say which register held the value, and VT-x's
        // qualification would name one; the VMM decodes the instruction itself.
        code::NPF => {
            // SVM gives a page-fault error code: present, write, user, …, fetch (bit 4).
            let access = if info1 & 2 != 0 {
                2
            } else if info1 & 0x10 != 0 {
                4
            } else {
                1
            };
            let present = if info1 & 1 != 0 { 1 << 3 } else { 0 };
            [reason::EPT_VIOLATION, access | present, info2, 0]
        }
        c if c & 0xffff_ffff == code::INVALID => [reason::INVALID_GUEST_STATE | (1 << 31), 0, 0, 0],
        other => [SVM_ONLY | (other & 0xffff), info1, info2, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_io_becomes_the_vmx_qualification() {
        // OUT 0x80, AL (2 bytes): SVM type 0 (out), size 8 bits.
        let w = exit_words(code::IOIO, 0x0080_0000 | (1 << 4), 0x1002, 0x1000);
        assert_eq!(w, [reason::IO, 0x0080_0000, 0, 2]);
        // IN EAX, DX at port 0x3f8, REP INSB-like string flags carried.
        let w = exit_words(code::IOIO, 0x03f8_0000 | (1 << 6) | 1, 0x2001, 0x2000);
        assert_eq!(w[1], 0x03f8_0000 | 3 | (1 << 3));
        let w = exit_words(code::IOIO, (1 << 5) | (1 << 2) | (1 << 3), 3, 1);
        assert_eq!(w[1] & 0x3f, 1 | (1 << 4) | (1 << 5), "16-bit, string, rep");
    }

    #[test]
    fn faults_and_stops_translate() {
        assert_eq!(exit_words(code::NPF, 0b110, 0x4000_0000, 0), [reason::EPT_VIOLATION, 2, 0x4000_0000, 0]);
        assert_eq!(exit_words(code::NPF, 0b10101, 0x9000, 0)[1], 4 | 8, "a fetch from a present page");
        assert_eq!(exit_words(code::NPF, 0b100, 0x8000, 0)[1], 1, "a read of an absent page");
        assert_eq!(exit_words(code::SHUTDOWN, 0, 0, 0)[0], reason::TRIPLE_FAULT);
        assert_eq!(exit_words(code::MSR, 1, 0, 0)[0], reason::WRMSR);
        assert_eq!(exit_words(code::MSR, 0, 0, 0)[0], reason::RDMSR);
        // VMEXIT_INVALID arrives as 0x00000000_ffffffff (or sign-extended).
        assert_eq!(exit_words(0xffff_ffff, 0, 0, 0)[0], reason::INVALID_GUEST_STATE | (1 << 31));
        assert_eq!(exit_words(u64::MAX, 0, 0, 0)[0], reason::INVALID_GUEST_STATE | (1 << 31));
        // SVM's own instructions have no VT-x reason: a reason no VMM handles.
        assert_eq!(exit_words(0x81, 0, 0, 0)[0], SVM_ONLY | 0x81, "VMMCALL");
        assert_eq!(exit_words(0x80, 0, 0, 0)[0], SVM_ONLY | 0x80, "VMRUN");
        assert_eq!(exit_words(code::INTR, 0, 0, 0)[0], reason::EXTERNAL_INTERRUPT);
        // A CR4 write never claims a source register SVM did not report.
        assert_eq!(exit_words(code::CR4_WRITE, 0, 0, 0), [SVM_ONLY | 0x18, 0, 0, 0]);
    }

    #[test]
    fn a_fresh_vmcb_intercepts_what_the_kernel_needs() {
        let fields = fresh(0x10_0000, 1);
        let get = |at: usize| fields.iter().find(|f| f.0 == at).map(|f| f.1);
        let one = get(control::INTERCEPTS_1).unwrap();
        for bit in [0, 1, 18, 24, 27, 28, 31] {
            assert!(one & (1 << bit) != 0, "intercept {bit}");
        }
        assert_eq!(get(control::INTERCEPTS_2).unwrap() & 0x7f, 0x7f, "every SVM instruction");
        assert_eq!(
            get(control::DR_INTERCEPTS),
            Some(u64::from(u32::MAX)),
            "debug registers are not switched"
        );
        assert_eq!(get(state::EFER), Some(EFER_SVME));
        assert_eq!(get(control::NP_ENABLE), Some(1));
        assert_eq!(get(control::GUEST_ASID), Some(1));
        assert!(fields.iter().all(|f| f.0 < 0x1000 && matches!(f.2, 4 | 8)));
    }
}
