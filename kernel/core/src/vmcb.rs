//! AMD SVM's virtual machine control block: where its fields are, what a fresh one holds,
//! and how an exit it reports becomes the exit words a VMM reads (the same words VT-x
//! exits give, `cleave_abi::vcpu::exit`), so one VMM serves both. Pure, host-tested; the
//! kernel writes and reads the VMCB in the first page of a Vcpu.

use crate::guest_state::{checked, segment_of};
use cleave_abi::Error;
use cleave_abi::vcpu::exit::{cr, io, memory, other, reason};
use cleave_abi::vcpu::state::{self as fields, event, part, segment as seg};

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
    /// Bit 0: the guest is in an interrupt shadow (after STI or MOV SS).
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// The exit code.
    pub const EXIT_CODE: usize = 0x070;
    /// Exit information 1.
    pub const EXIT_INFO_1: usize = 0x078;
    /// Exit information 2.
    pub const EXIT_INFO_2: usize = 0x080;
    /// The event being delivered when the guest exited (EVENTINJ's format).
    pub const EXIT_INT_INFO: usize = 0x088;
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
    /// The CPL (one byte; the word at `CPL & !7` holds it in bits 31:24).
    pub const CPL: usize = 0x4cb;
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
    /// CR2.
    pub const CR2: usize = 0x640;
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
    /// A write to CR0 (CR1-CR15 follow).
    pub const CR_WRITE_FIRST: u64 = 0x10;
    /// A write to CR15.
    pub const CR_WRITE_LAST: u64 = 0x1f;
    /// A write to CR4.
    pub const CR4_WRITE: u64 = 0x14;
    /// A read of DR0 (reads of DR1-DR15 and writes of DR0-DR15 follow).
    pub const DR_FIRST: u64 = 0x20;
    /// A write of DR15.
    pub const DR_LAST: u64 = 0x3f;
    /// Exception 0 (1-31 follow).
    pub const EXCEPTION_FIRST: u64 = 0x40;
    /// Exception 31.
    pub const EXCEPTION_LAST: u64 = 0x5f;
    /// An SMI.
    pub const SMI: u64 = 0x62;
    /// The guest can take the virtual interrupt it was offered.
    pub const VINTR: u64 = 0x64;
    /// INVLPGA.
    pub const INVLPGA: u64 = 0x7a;
    /// VMRUN (VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT follow).
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
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
/// Intercept vector 3's VINTR bit: set while the VMM waits for the guest to take an
/// interrupt (`state::INTERRUPT_WINDOW`).
pub const INTERCEPT_VINTR: u32 = 1 << 4;
/// VINTR: a virtual interrupt is pending (V_IRQ).
pub const V_IRQ: u64 = 1 << 8;
/// VINTR: the pending virtual interrupt's priority (the highest).
pub const V_INTR_PRIO: u64 = 0xf << 16;
/// VINTR: the virtual interrupt ignores the guest's TPR.
pub const V_IGN_TPR: u64 = 1 << 20;
/// VINTR word: the virtual interrupt's vector (V_INTR_VECTOR, the byte at 0x064).
const V_INTR_VECTOR_SHIFT: u32 = 32;
/// Every bit of the VINTR word that says what virtual interrupt is pending.
const V_PENDING: u64 = V_IRQ | V_INTR_PRIO | V_IGN_TPR | 0xff << V_INTR_VECTOR_SHIFT;

/// Whether the VINTR intercept is on: the VMM asked for an interrupt window.
fn window_intercepted(vmcb: &impl Vmcb) -> bool {
    vmcb.get(control::INTERCEPTS_1 - 4) >> 32 & u64::from(INTERCEPT_VINTR) != 0
}

/// The external interrupt pending as a virtual interrupt (V_IRQ without the VINTR
/// intercept), if one is.
fn pending_virtual(vmcb: &impl Vmcb) -> Option<u8> {
    let vintr = vmcb.get(control::VINTR);
    (vintr & V_IRQ != 0 && !window_intercepted(vmcb)).then_some((vintr >> V_INTR_VECTOR_SHIFT) as u8)
}

/// Sets the virtual-interrupt bits of the VINTR word to `bits` (V_INTR_MASKING and the
/// rest stay).
fn set_virtual(vmcb: &mut impl Vmcb, bits: u64) {
    let vintr = vmcb.get(control::VINTR) & !V_PENDING;
    vmcb.set(control::VINTR, vintr | bits);
}

/// Makes external interrupt `vector` pending. SVM delivers it as a virtual interrupt
/// (V_IRQ with its vector, above any TPR, no VINTR intercept), which the processor takes
/// once the guest can: never through EVENTINJ. QEMU's emulated VMRUN (7.2) delivers an
/// EVENTINJ interrupt and leaves its vector as the pending exception, which it delivers
/// again at its next exit to its main loop (an -icount budget spent, an I/O thread's
/// kick): the guest took the interrupt a second time with interrupts off, inside its own
/// handler, and deadlocked on the handler's lock (seen with Linux under netback restarts).
/// A virtual interrupt has no such second delivery, and on a real processor means the same.
/// An interrupt window the VMM asked for is closed: the guest takes this interrupt when
/// the window would have opened.
fn pend_external(vmcb: &mut impl Vmcb, vector: u8) {
    set_virtual(vmcb, V_IRQ | V_INTR_PRIO | V_IGN_TPR | u64::from(vector) << V_INTR_VECTOR_SHIFT);
    let intercepts = vmcb.get(control::INTERCEPTS_1 - 4);
    vmcb.set(control::INTERCEPTS_1 - 4, intercepts & !(u64::from(INTERCEPT_VINTR) << 32));
    vmcb.set(control::EVENT_INJECTION, 0);
}

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

/// The neutral exit words (`cleave_abi::vcpu::exit`) for an SVM exit with `code`,
/// `info1`, `info2` at `rip`. Without next-RIP saving (QEMU has none) SVM gives an
/// instruction's length only for port I/O (the next RIP is in EXITINFO2); the kernel fills
/// it in for the fixed-length instructions (CPUID, HLT, RDMSR, WRMSR, VMMCALL; a guest
/// that puts prefixes before them only misleads itself) and leaves 0, "decode it", for the
/// rest.
#[inline]
pub fn exit_words(code: u64, info1: u64, info2: u64, rip: u64) -> [u64; 4] {
    match code {
        code::INTR | code::NMI | code::SMI => [reason::INTERRUPTED, 0, 0, 0],
        code::CPUID => [reason::CPUID, 0, 0, 2],
        code::HLT => [reason::HLT, 0, 0, 1],
        code::VMMCALL => [reason::HYPERCALL, 0, 0, 3],
        code::SHUTDOWN => [reason::SHUTDOWN, 0, 0, 0],
        code::VINTR => [reason::INTERRUPT_WINDOW, 0, 0, 0],
        code::IOIO => {
            // SVM: bit 0 IN, bit 2 string, bit 3 REP, bits 4-6 size (1, 2, 4 bytes), port
            // in bits 16-31; the next RIP in EXITINFO2.
            let size = match (info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            };
            let detail = (info1 >> 16 & io::PORT)
                | size << io::SIZE_SHIFT
                | if info1 & 1 != 0 { io::IN } else { 0 }
                | if info1 & (1 << 2) != 0 { io::STRING } else { 0 }
                | if info1 & (1 << 3) != 0 { io::REP } else { 0 };
            [reason::PORT_IO, detail, 0, info2.wrapping_sub(rip) & 0xf]
        }
        code::MSR => [if info1 & 1 == 0 { reason::MSR_READ } else { reason::MSR_WRITE }, 0, 0, 2],
        c @ code::CR_WRITE_FIRST..=code::CR_WRITE_LAST => {
            // With decode assists, EXITINFO1 bit 63 says the register is in bits 3:0;
            // without (QEMU), the VMM decodes the MOV.
            let register =
                if info1 >> 63 != 0 { (info1 & 0xf) << cr::REGISTER_SHIFT | cr::REGISTER_KNOWN } else { 0 };
            [reason::CR_ACCESS, (c - code::CR_WRITE_FIRST) | cr::WRITE | register, 0, 0]
        }
        code::DR_FIRST..=code::DR_LAST => [reason::DEBUG_REGISTER, 0, 0, 0],
        code::EXCEPTION_FIRST..=code::EXCEPTION_LAST => {
            [reason::EXCEPTION, code - code::EXCEPTION_FIRST, 0, 0]
        }
        code::NPF => {
            // SVM gives a page-fault error code: present, write, user, …, fetch (bit 4).
            let access = if info1 & 2 != 0 {
                memory::WRITE
            } else if info1 & 0x10 != 0 {
                memory::FETCH
            } else {
                memory::READ
            };
            let mapped = if info1 & 1 != 0 { memory::MAPPED } else { 0 };
            [reason::MEMORY, access | mapped, info2, 0]
        }
        code::INVLPGA | code::VMRUN..=code::SKINIT => {
            [reason::VIRTUALIZATION_INSTRUCTION, other::SVM | code, 0, 0]
        }
        c if c & 0xffff_ffff == code::INVALID => [reason::ENTRY_FAILED, other::SVM | code::INVALID, 0, 0],
        c => [reason::OTHER, other::SVM | (c & 0xffff_ffff), info1, 0],
    }
}

/// A VMCB as the neutral fields reach it: whole 8-byte words at 8-byte-aligned offsets
/// below 4 KiB (the kernel's, over a Vcpu's first page; a byte array in tests).
pub trait Vmcb {
    /// The word at `offset`.
    fn get(&self, offset: usize) -> u64;
    /// Sets the word at `offset`.
    fn set(&mut self, offset: usize, value: u64);
}

/// Where SVM keeps segment `segment` (`cleave_abi::vcpu::state::segment`): ES, CS, SS,
/// DS, FS, GS, then GDTR, LDTR, IDTR, TR, 16 bytes each (selector, attributes, limit in
/// the first word; base in the second).
fn segment_at(segment: u64) -> usize {
    let index = match segment {
        seg::LDTR => 7,
        seg::TR => 9,
        seg::GDTR => 6,
        seg::IDTR => 8,
        s => s as usize,
    };
    state::ES + 16 * index
}

/// SVM's 12-bit segment attributes from VT-x's access rights (the neutral layout); an
/// unusable segment is a not-present one.
pub fn attributes_to_svm(rights: u64) -> u64 {
    if rights & (1 << 16) != 0 { 0 } else { (rights & 0xff) | ((rights >> 4) & 0xf00) }
}

/// VT-x's access rights from SVM's attributes; a not-present segment is unusable.
pub fn attributes_from_svm(attributes: u64) -> u64 {
    let rights = (attributes & 0xff) | ((attributes & 0xf00) << 4);
    if attributes & 0x80 == 0 { rights | (1 << 16) } else { rights }
}

/// The VMCB word that holds a plain neutral field, stored as it is.
fn plain(field: u64) -> Option<usize> {
    Some(match field {
        fields::RIP => state::RIP,
        fields::RSP => state::RSP,
        fields::RFLAGS => state::RFLAGS,
        fields::CR0 => state::CR0,
        fields::CR2 => state::CR2,
        fields::CR3 => state::CR3,
        fields::CR4 => state::CR4,
        fields::DR7 => state::DR7,
        _ => return None,
    })
}

/// Reads neutral `field` from `vmcb`.
pub fn read(vmcb: &impl Vmcb, field: u64) -> Result<u64, Error> {
    if !crate::guest_state::exists(field) {
        return Err(Error::InvalidArgument);
    }
    if let Some(at) = plain(field) {
        return Ok(vmcb.get(at));
    }
    Ok(match field {
        fields::EFER => vmcb.get(state::EFER) & !EFER_SVME,
        fields::INTERRUPT_SHADOW => vmcb.get(control::INTERRUPT_SHADOW) & 1,
        fields::INTERRUPT_WINDOW => {
            u64::from(vmcb.get(control::VINTR) & V_IRQ != 0 && window_intercepted(vmcb))
        }
        // One event slot, as VT-x has: an exception (or NMI) in EVENTINJ, or an external
        // interrupt pending as a virtual interrupt (`pend_external`).
        fields::EVENT => {
            let injected = vmcb.get(control::EVENT_INJECTION);
            match pending_virtual(vmcb) {
                Some(vector) if injected & event::VALID == 0 => event::external(vector),
                _ => injected,
            }
        }
        f => {
            let (s, p) = segment_of(f).ok_or(Error::InvalidArgument)?;
            let at = segment_at(s);
            let first = vmcb.get(at);
            match p {
                part::SELECTOR => first & 0xffff,
                part::ATTRIBUTES => attributes_from_svm(first >> 16 & 0xfff),
                part::LIMIT => first >> 32,
                _ => vmcb.get(at + 8),
            }
        }
    })
}

/// Writes `value` to neutral `field` of `vmcb`, as `guest_state::checked` allows: EFER
/// keeps SVME set underneath; the interrupt window is a virtual interrupt the guest takes
/// as soon as it can, which exits (VINTR) instead of being delivered; SS's DPL is the CPL.
pub fn write(vmcb: &mut impl Vmcb, field: u64, value: u64) -> Result<(), Error> {
    let value = checked(field, value)?;
    if let Some(at) = plain(field) {
        vmcb.set(at, value);
        return Ok(());
    }
    match field {
        fields::EFER => vmcb.set(state::EFER, value | EFER_SVME),
        fields::INTERRUPT_SHADOW => {
            let now = vmcb.get(control::INTERRUPT_SHADOW) & !1;
            vmcb.set(control::INTERRUPT_SHADOW, now | value);
        }
        fields::INTERRUPT_WINDOW => {
            let intercepts = vmcb.get(control::INTERCEPTS_1 - 4);
            let bit = u64::from(INTERCEPT_VINTR) << 32;
            if value != 0 {
                // The virtual interrupt carries a pending external interrupt: the guest
                // takes that first (the VMM asks for the window after it did).
                if pending_virtual(vmcb).is_some() {
                    return Err(Error::IllegalOperation);
                }
                set_virtual(vmcb, V_IRQ | V_INTR_PRIO | V_IGN_TPR);
                vmcb.set(control::INTERCEPTS_1 - 4, intercepts | bit);
            } else if window_intercepted(vmcb) {
                set_virtual(vmcb, 0);
                vmcb.set(control::INTERCEPTS_1 - 4, intercepts & !bit);
            }
        }
        fields::EVENT => {
            // A new event replaces the pending one, as VT-x's one field does.
            if pending_virtual(vmcb).is_some() {
                set_virtual(vmcb, 0);
            }
            let kind = value >> event::TYPE_SHIFT & 7;
            if value & event::VALID != 0 && kind == event::EXTERNAL {
                pend_external(vmcb, value as u8);
            } else {
                vmcb.set(control::EVENT_INJECTION, value);
            }
        }
        f => {
            let (s, p) = segment_of(f).ok_or(Error::InvalidArgument)?;
            let at = segment_at(s);
            let first = vmcb.get(at);
            match p {
                part::SELECTOR => vmcb.set(at, first & !0xffff | value),
                part::ATTRIBUTES => {
                    let attributes = attributes_to_svm(value);
                    vmcb.set(at, first & !(0xffff << 16) | attributes << 16);
                    if s == seg::SS {
                        // The CPL is SS's DPL.
                        let cpl = vmcb.get(state::CPL & !7) & !(0xff << 24);
                        vmcb.set(state::CPL & !7, cpl | (attributes >> 5 & 3) << 24);
                    }
                }
                part::LIMIT => vmcb.set(at, first & 0xffff_ffff | value << 32),
                _ => vmcb.set(at + 8, value),
            }
        }
    }
    Ok(())
}

/// After an exit: the event that was being delivered (EXITINTINFO), to deliver again at
/// the next entry (`guest_state::redelivered`); VMRUN clears EVENTINJ at every exit.
pub fn after_exit(vmcb: &mut impl Vmcb) {
    if let Some(interrupted) = crate::guest_state::redelivered(vmcb.get(control::EXIT_INT_INFO)) {
        // An external interrupt goes back as a virtual interrupt (`pend_external`). QEMU
        // reports one it was delivering from a virtual interrupt as an exception with the
        // interrupt's vector, which no hardware exception has (they are 0-31).
        let kind = interrupted >> event::TYPE_SHIFT & 7;
        let vector = interrupted as u8;
        if kind == event::EXTERNAL || (kind == event::EXCEPTION && vector >= 32) {
            pend_external(vmcb, vector);
        } else {
            vmcb.set(control::EVENT_INJECTION, interrupted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_io_translates() {
        // OUT 0x80, AL (2 bytes): SVM type 0 (out), size 8 bits.
        let w = exit_words(code::IOIO, 0x0080_0000 | (1 << 4), 0x1002, 0x1000);
        assert_eq!(w, [reason::PORT_IO, 0x80 | 1 << io::SIZE_SHIFT, 0, 2]);
        // IN EAX, DX at port 0x3f8.
        let w = exit_words(code::IOIO, 0x03f8_0000 | (1 << 6) | 1, 0x2001, 0x2000);
        assert_eq!(w[1], 0x3f8 | 4 << io::SIZE_SHIFT | io::IN);
        let w = exit_words(code::IOIO, (1 << 5) | (1 << 2) | (1 << 3), 3, 1);
        assert_eq!(w[1], 2 << io::SIZE_SHIFT | io::STRING | io::REP, "16-bit, string, rep");
    }

    #[test]
    fn faults_and_stops_translate() {
        assert_eq!(
            exit_words(code::NPF, 0b110, 0x4000_0000, 0),
            [reason::MEMORY, memory::WRITE, 0x4000_0000, 0]
        );
        assert_eq!(exit_words(code::NPF, 0b10101, 0x9000, 0)[1], memory::FETCH | memory::MAPPED);
        assert_eq!(exit_words(code::NPF, 0b100, 0x8000, 0)[1], memory::READ, "a read of an absent page");
        assert_eq!(exit_words(code::SHUTDOWN, 0, 0, 0)[0], reason::SHUTDOWN);
        assert_eq!(exit_words(code::MSR, 1, 0, 0), [reason::MSR_WRITE, 0, 0, 2]);
        assert_eq!(exit_words(code::MSR, 0, 0, 0)[0], reason::MSR_READ);
        assert_eq!(exit_words(code::CPUID, 0, 0, 0), [reason::CPUID, 0, 0, 2]);
        assert_eq!(exit_words(code::HLT, 0, 0, 0), [reason::HLT, 0, 0, 1]);
        assert_eq!(exit_words(code::VMMCALL, 0, 0, 0), [reason::HYPERCALL, 0, 0, 3]);
        assert_eq!(exit_words(code::VINTR, 0, 0, 0)[0], reason::INTERRUPT_WINDOW);
        // VMEXIT_INVALID arrives as 0x00000000_ffffffff (or sign-extended).
        let invalid = [reason::ENTRY_FAILED, other::SVM | code::INVALID, 0, 0];
        assert_eq!(exit_words(0xffff_ffff, 0, 0, 0), invalid);
        assert_eq!(exit_words(u64::MAX, 0, 0, 0), invalid);
        // SVM's own instructions are never the guest's.
        for c in [code::VMRUN, 0x82, 0x83, 0x84, 0x85, code::SKINIT, code::INVLPGA] {
            assert_eq!(exit_words(c, 0, 0, 0)[..2], [reason::VIRTUALIZATION_INSTRUCTION, other::SVM | c]);
        }
        assert_eq!(exit_words(code::INTR, 0, 0, 0)[0], reason::INTERRUPTED);
        assert_eq!(exit_words(code::NMI, 0, 0, 0)[0], reason::INTERRUPTED);
        // A CR4 write without decode assists names no register; with them it does.
        assert_eq!(exit_words(code::CR4_WRITE, 0, 0, 0), [reason::CR_ACCESS, 4 | cr::WRITE, 0, 0]);
        assert_eq!(
            exit_words(code::CR4_WRITE, 1 << 63 | 3, 0, 0)[1],
            4 | cr::WRITE | 3 << cr::REGISTER_SHIFT | cr::REGISTER_KNOWN
        );
        assert_eq!(exit_words(0x21 + 0x10, 0, 0, 0)[0], reason::DEBUG_REGISTER, "a DR1 write");
        assert_eq!(exit_words(0x4e, 0, 0, 0)[..2], [reason::EXCEPTION, 14]);
        assert_eq!(exit_words(0x8d, 0, 0, 0)[..2], [reason::OTHER, other::SVM | 0x8d], "XSETBV");
    }

    /// A VMCB as bytes.
    struct Bytes([u8; 4096]);

    impl Vmcb for Bytes {
        fn get(&self, offset: usize) -> u64 {
            u64::from_le_bytes(self.0[offset..offset + 8].try_into().unwrap())
        }
        fn set(&mut self, offset: usize, value: u64) {
            assert_eq!(offset % 8, 0, "aligned words only");
            self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
    }

    fn fresh_bytes() -> Bytes {
        let mut b = Bytes([0; 4096]);
        for (offset, value, bytes) in fresh(0x10_0000, 1) {
            b.0[offset..offset + usize::from(bytes)]
                .copy_from_slice(&value.to_le_bytes()[..usize::from(bytes)]);
        }
        b
    }

    #[test]
    fn fields_land_where_svm_keeps_them() {
        let mut v = fresh_bytes();
        let kernel_words =
            |v: &Bytes| [v.get(0), v.get(8), v.get(0x10), v.get(0x40), v.get(0x48), v.get(0x90)];
        let before = kernel_words(&v);
        // Real mode at reset: CS is present code, EFER shows nothing.
        assert_eq!(read(&v, fields::segment(seg::CS, part::ATTRIBUTES)), Ok(0x9b));
        assert_eq!(read(&v, fields::segment(seg::CS, part::LIMIT)), Ok(0xffff));
        assert_eq!(read(&v, fields::EFER), Ok(0));
        // Long mode: EFER keeps SVME underneath, and reads without it.
        write(&mut v, fields::EFER, 0x500).unwrap();
        assert_eq!(v.get(state::EFER), 0x500 | EFER_SVME);
        assert_eq!(read(&v, fields::EFER), Ok(0x500));
        assert_eq!(write(&mut v, fields::EFER, EFER_SVME), Err(Error::IllegalOperation));
        assert_eq!(v.get(state::EFER), 0x500 | EFER_SVME, "a refused write changes nothing");
        // A 64-bit code segment: L and P survive the conversion both ways.
        write(&mut v, fields::segment(seg::CS, part::ATTRIBUTES), 0xa09b).unwrap();
        assert_eq!(v.0[state::CS + 2..state::CS + 4], 0xa9bu16.to_le_bytes());
        assert_eq!(read(&v, fields::segment(seg::CS, part::ATTRIBUTES)), Ok(0xa09b));
        write(&mut v, fields::segment(seg::CS, part::SELECTOR), 0x10).unwrap();
        write(&mut v, fields::segment(seg::CS, part::LIMIT), 0xffff_ffff).unwrap();
        write(&mut v, fields::segment(seg::CS, part::BASE), 0x1234_5000).unwrap();
        assert_eq!(read(&v, fields::segment(seg::CS, part::SELECTOR)), Ok(0x10));
        assert_eq!(read(&v, fields::segment(seg::CS, part::LIMIT)), Ok(0xffff_ffff));
        assert_eq!(read(&v, fields::segment(seg::CS, part::ATTRIBUTES)), Ok(0xa09b));
        assert_eq!(v.get(state::CS + 8), 0x1234_5000);
        // An unusable segment is not present, and reads back unusable.
        write(&mut v, fields::segment(seg::LDTR, part::ATTRIBUTES), 1 << 16).unwrap();
        assert_eq!(v.get(state::LDTR) >> 16 & 0xffff, 0);
        assert_eq!(read(&v, fields::segment(seg::LDTR, part::ATTRIBUTES)), Ok(1 << 16));
        // The descriptor tables and TR sit where SVM puts them.
        write(&mut v, fields::segment(seg::GDTR, part::BASE), 0x5000).unwrap();
        write(&mut v, fields::segment(seg::IDTR, part::LIMIT), 0xfff).unwrap();
        write(&mut v, fields::segment(seg::TR, part::ATTRIBUTES), 0x8b).unwrap();
        assert_eq!(v.get(state::GDTR + 8), 0x5000);
        assert_eq!(v.get(state::IDTR) >> 32, 0xfff);
        assert_eq!(v.get(state::TR) >> 16 & 0xfff, 0x8b);
        // SS's DPL is the CPL.
        write(&mut v, fields::segment(seg::SS, part::ATTRIBUTES), 0xc0f3).unwrap();
        assert_eq!(v.0[state::CPL], 3);
        write(&mut v, fields::segment(seg::SS, part::ATTRIBUTES), 0xc093).unwrap();
        assert_eq!(v.0[state::CPL], 0);
        // The interrupt window: a virtual interrupt and the VINTR intercept, both undone.
        write(&mut v, fields::INTERRUPT_WINDOW, 1).unwrap();
        assert_eq!(read(&v, fields::INTERRUPT_WINDOW), Ok(1));
        assert!(v.get(control::INTERCEPTS_1 - 4) >> 32 & u64::from(INTERCEPT_VINTR) != 0);
        assert!(v.get(control::VINTR) & (1 << 24) != 0, "V_INTR_MASKING stays");
        write(&mut v, fields::INTERRUPT_WINDOW, 0).unwrap();
        assert_eq!(read(&v, fields::INTERRUPT_WINDOW), Ok(0));
        // An external interrupt is a virtual interrupt, never EVENTINJ (QEMU delivers an
        // EVENTINJ interrupt twice); the event field reads it back while it is pending.
        write(&mut v, fields::EVENT, event::external(0x3b)).unwrap();
        assert_eq!(v.get(control::EVENT_INJECTION), 0);
        assert_eq!(v.get(control::VINTR) & V_PENDING, V_IRQ | V_INTR_PRIO | V_IGN_TPR | 0x3b << 32);
        assert!(!window_intercepted(&v), "it is delivered, not intercepted");
        assert_eq!(read(&v, fields::EVENT), Ok(event::external(0x3b)));
        assert_eq!(read(&v, fields::INTERRUPT_WINDOW), Ok(0));
        assert_eq!(write(&mut v, fields::INTERRUPT_WINDOW, 1), Err(Error::IllegalOperation));
        write(&mut v, fields::INTERRUPT_WINDOW, 0).unwrap();
        assert_eq!(read(&v, fields::EVENT), Ok(event::external(0x3b)), "closing no window keeps it");
        assert!(v.get(control::VINTR) & (1 << 24) != 0, "V_INTR_MASKING stays");
        // The processor took it: nothing is pending, and a window may be asked for.
        v.set(control::VINTR, v.get(control::VINTR) & !V_IRQ);
        assert_eq!(read(&v, fields::EVENT), Ok(0));
        write(&mut v, fields::INTERRUPT_WINDOW, 1).unwrap();
        assert_eq!(read(&v, fields::EVENT), Ok(0), "a window is no event");
        write(&mut v, fields::INTERRUPT_WINDOW, 0).unwrap();
        // Injecting while a window is open closes it (the VMM's order: the event, then
        // the window off, which then finds none).
        write(&mut v, fields::INTERRUPT_WINDOW, 1).unwrap();
        write(&mut v, fields::EVENT, event::external(0x31)).unwrap();
        assert!(!window_intercepted(&v));
        write(&mut v, fields::INTERRUPT_WINDOW, 0).unwrap();
        assert_eq!(read(&v, fields::EVENT), Ok(event::external(0x31)));
        // A new event replaces a pending one; an exception goes to EVENTINJ.
        write(&mut v, fields::EVENT, event::external(0x30)).unwrap();
        let gp = 13 | event::EXCEPTION << event::TYPE_SHIFT | event::ERROR_CODE | event::VALID;
        write(&mut v, fields::EVENT, gp).unwrap();
        assert_eq!(v.get(control::VINTR) & V_IRQ, 0);
        assert_eq!(read(&v, fields::EVENT), Ok(gp));
        write(&mut v, fields::EVENT, 0).unwrap();
        assert_eq!(read(&v, fields::EVENT), Ok(0));
        // One interrupted in delivery comes back: an exception to EVENTINJ, an interrupt
        // (or QEMU's report of one as an exception with a vector above 31) as a virtual
        // interrupt.
        for (interrupted, back) in [
            (event::external(0x21), event::external(0x21)),
            (0x3b | event::EXCEPTION << event::TYPE_SHIFT | event::VALID, event::external(0x3b)),
            (
                14 | event::EXCEPTION << event::TYPE_SHIFT | event::ERROR_CODE | event::VALID | 2 << 32,
                14 | event::EXCEPTION << event::TYPE_SHIFT | event::ERROR_CODE | event::VALID | 2 << 32,
            ),
        ] {
            v.set(control::EXIT_INT_INFO, interrupted);
            after_exit(&mut v);
            assert_eq!(read(&v, fields::EVENT), Ok(back), "{interrupted:#x}");
            write(&mut v, fields::EVENT, 0).unwrap();
        }
        v.set(control::EXIT_INT_INFO, 0);
        // CR4: protection keys refused; CR2 and RIP are plain.
        assert_eq!(write(&mut v, fields::CR4, 1 << 22), Err(Error::IllegalOperation));
        write(&mut v, fields::CR2, 0xdead_0000).unwrap();
        assert_eq!(v.get(state::CR2), 0xdead_0000);
        // Whatever the VMM wrote, the kernel's words (intercepts but VINTR, the maps,
        // nested paging) are as they were.
        let mut after = kernel_words(&v);
        after[1] &= !(u64::from(INTERCEPT_VINTR) << 32);
        assert_eq!(after, before);
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
