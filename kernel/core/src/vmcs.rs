//! VT-x's side of the neutral Vcpu interface: how a VM exit (basic reason, qualification,
//! guest-physical address, instruction length) becomes the neutral exit words
//! (`cleave_abi::vcpu::exit`), and which VMCS field holds each neutral guest-state field
//! (`cleave_abi::vcpu::state`). Pure, host-tested with a synthetic VMCS; the kernel does
//! the VMREADs and VMWRITEs.

use crate::guest_state::{CR4_VMXE, checked, segment_of};
use cleave_abi::Error;
use cleave_abi::vcpu::exit::{cr, io, memory, other, reason};
use cleave_abi::vcpu::state::{self, event, part, segment};
use x86::vmx::vmcs::{control, guest};

/// VT-x basic exit reasons (SDM vol. 3, appendix C) this translation names.
pub mod code {
    /// Exception or NMI.
    pub const EXCEPTION: u64 = 0;
    /// External interrupt.
    pub const EXTERNAL_INTERRUPT: u64 = 1;
    /// Triple fault.
    pub const TRIPLE_FAULT: u64 = 2;
    /// Interrupt window.
    pub const INTERRUPT_WINDOW: u64 = 7;
    /// CPUID.
    pub const CPUID: u64 = 10;
    /// HLT.
    pub const HLT: u64 = 12;
    /// VMCALL.
    pub const VMCALL: u64 = 18;
    /// VMCLEAR … VMXON, the VMX instructions but VMCALL (19-27).
    pub const VMX_INSTRUCTIONS: core::ops::RangeInclusive<u64> = 19..=27;
    /// INVEPT, INVVPID, VMFUNC (50, 53, 59): VMX instructions too.
    pub const MORE_VMX_INSTRUCTIONS: [u64; 3] = [50, 53, 59];
    /// Control-register access.
    pub const CR_ACCESS: u64 = 28;
    /// MOV DR.
    pub const DR_ACCESS: u64 = 29;
    /// I/O instruction.
    pub const IO: u64 = 30;
    /// RDMSR.
    pub const RDMSR: u64 = 31;
    /// WRMSR.
    pub const WRMSR: u64 = 32;
    /// Entry failed: invalid guest state.
    pub const INVALID_GUEST_STATE: u64 = 33;
    /// Entry failed: MSR loading.
    pub const MSR_LOADING: u64 = 34;
    /// EPT violation.
    pub const EPT_VIOLATION: u64 = 48;
    /// Bit 31 of the exit reason: the entry failed.
    pub const ENTRY_FAILURE: u64 = 1 << 31;
}

/// The neutral exit words for a VT-x exit: `exit_reason` as the VMCS reports it (bit 31
/// set if the entry failed), the qualification, the guest-physical address, the
/// instruction length and the exit interruption information (exceptions).
pub fn exit_words(
    exit_reason: u64,
    qualification: u64,
    gpa: u64,
    length: u64,
    interruption: u64,
) -> [u64; 4] {
    let basic = exit_reason & 0xffff;
    if exit_reason & code::ENTRY_FAILURE != 0 {
        return [reason::ENTRY_FAILED, other::VMX | basic, 0, 0];
    }
    match basic {
        code::EXTERNAL_INTERRUPT => [reason::INTERRUPTED, 0, 0, 0],
        // A physical NMI (NMI exiting is on) is the host's, like an external interrupt;
        // only exceptions the VMM asked to intercept are its own.
        code::EXCEPTION if (interruption >> 8) & 7 == 2 => [reason::INTERRUPTED, 0, 0, 0],
        code::EXCEPTION => [reason::EXCEPTION, interruption & 0xff, 0, 0],
        code::TRIPLE_FAULT => [reason::SHUTDOWN, 0, 0, 0],
        code::INTERRUPT_WINDOW => [reason::INTERRUPT_WINDOW, 0, 0, 0],
        code::CPUID => [reason::CPUID, 0, 0, length],
        code::HLT => [reason::HLT, 0, 0, length],
        code::VMCALL => [reason::HYPERCALL, 0, 0, length],
        code::RDMSR => [reason::MSR_READ, 0, 0, length],
        code::WRMSR => [reason::MSR_WRITE, 0, 0, length],
        code::DR_ACCESS => [reason::DEBUG_REGISTER, 0, 0, length],
        code::IO => {
            // VT-x: size-1 in bits 2:0, IN in 3, string in 4, REP in 5, port in 31:16.
            let q = qualification;
            let detail = (q >> 16 & io::PORT)
                | ((q & 7) + 1) << io::SIZE_SHIFT
                | if q & (1 << 3) != 0 { io::IN } else { 0 }
                | if q & (1 << 4) != 0 { io::STRING } else { 0 }
                | if q & (1 << 5) != 0 { io::REP } else { 0 };
            [reason::PORT_IO, detail, 0, length]
        }
        code::CR_ACCESS => {
            // VT-x: CR number in 3:0, access type in 5:4 (0: MOV to CR), register in 11:8.
            let q = qualification;
            let detail = if (q >> 4) & 3 == 0 {
                (q & cr::NUMBER) | cr::WRITE | ((q >> 8) & 0xf) << cr::REGISTER_SHIFT | cr::REGISTER_KNOWN
            } else {
                q & cr::NUMBER
            };
            [reason::CR_ACCESS, detail, 0, length]
        }
        code::EPT_VIOLATION => {
            // VT-x: read, write, fetch in bits 2:0; what the translation allowed in 5:3.
            let q = qualification;
            let mapped = if q & 0x38 != 0 { memory::MAPPED } else { 0 };
            [reason::MEMORY, (q & 7) | mapped, gpa, 0]
        }
        code::INVALID_GUEST_STATE | code::MSR_LOADING => [reason::ENTRY_FAILED, other::VMX | basic, 0, 0],
        c if code::VMX_INSTRUCTIONS.contains(&c) || code::MORE_VMX_INSTRUCTIONS.contains(&c) => {
            [reason::VIRTUALIZATION_INSTRUCTION, other::VMX | c, 0, length]
        }
        c => [reason::OTHER, other::VMX | c, qualification, 0],
    }
}

/// The neutral words when VMLAUNCH or VMRESUME itself failed with VM-instruction error
/// `error` (0: VMfailInvalid).
pub fn entry_failed(error: u64) -> [u64; 4] {
    [reason::ENTRY_FAILED, other::VMX | other::VMX_INSTRUCTION_ERROR | (error & 0xffff), 0, 0]
}

/// A VMCS as the neutral fields reach it: the kernel's VMREAD/VMWRITE of the current VMCS
/// (control writes checked against what the processor allows), and the guest CR2, which
/// the VMCS does not hold (the Vcpu's state page does).
pub trait Vmcs {
    /// VMREAD.
    fn read(&mut self, encoding: u32) -> Result<u64, Error>;
    /// VMWRITE.
    fn write(&mut self, encoding: u32, value: u64) -> Result<(), Error>;
    /// The guest's CR2.
    fn cr2(&mut self) -> u64;
    /// Sets the guest's CR2.
    fn set_cr2(&mut self, value: u64);
}

/// Primary controls: interrupt-window exiting.
const INTERRUPT_WINDOW_EXITING: u64 = 1 << 2;
/// Entry controls: IA-32e mode guest.
const ENTRY_IA32E: u64 = 1 << 9;
/// EFER.LMA.
const EFER_LMA: u64 = 1 << 10;

/// The VMCS field of a neutral segment field (ES, CS, SS, DS, FS, GS, LDTR, TR are
/// consecutive in each of VT-x's four groups; GDTR and IDTR follow TR's base and limit).
fn segment_field(seg: u64, p: u64) -> Option<u32> {
    let i = seg as u32;
    Some(match (seg, p) {
        (segment::GDTR, part::BASE) => guest::GDTR_BASE,
        (segment::GDTR, part::LIMIT) => guest::GDTR_LIMIT,
        (segment::IDTR, part::BASE) => guest::IDTR_BASE,
        (segment::IDTR, part::LIMIT) => guest::IDTR_LIMIT,
        (segment::GDTR | segment::IDTR, _) => return None,
        (_, part::SELECTOR) => guest::ES_SELECTOR + 2 * i,
        (_, part::BASE) => guest::ES_BASE + 2 * i,
        (_, part::LIMIT) => guest::ES_LIMIT + 2 * i,
        _ => guest::ES_ACCESS_RIGHTS + 2 * i,
    })
}

/// The VMCS field that holds a plain neutral field (one stored as it is).
fn plain(field: u64) -> Option<u32> {
    Some(match field {
        state::RIP => guest::RIP,
        state::RSP => guest::RSP,
        state::RFLAGS => guest::RFLAGS,
        state::CR0 => guest::CR0,
        state::CR3 => guest::CR3,
        state::DR7 => guest::DR7,
        _ => {
            let (seg, p) = segment_of(field)?;
            return segment_field(seg, p);
        }
    })
}

/// Reads neutral `field` from `vmcs`.
pub fn read(vmcs: &mut impl Vmcs, field: u64) -> Result<u64, Error> {
    if !crate::guest_state::exists(field) {
        return Err(Error::InvalidArgument);
    }
    match field {
        state::CR2 => Ok(vmcs.cr2()),
        state::CR4 => Ok(vmcs.read(guest::CR4)? & !CR4_VMXE),
        state::EFER => vmcs.read(guest::IA32_EFER_FULL),
        state::INTERRUPT_SHADOW => Ok(u64::from(vmcs.read(guest::INTERRUPTIBILITY_STATE)? & 3 != 0)),
        state::INTERRUPT_WINDOW => Ok(u64::from(
            vmcs.read(control::PRIMARY_PROCBASED_EXEC_CONTROLS)? & INTERRUPT_WINDOW_EXITING != 0,
        )),
        state::EVENT => {
            let info = vmcs.read(control::VMENTRY_INTERRUPTION_INFO_FIELD)? & 0xffff_ffff;
            if info & event::VALID == 0 {
                return Ok(0);
            }
            let code = if info & event::ERROR_CODE != 0 {
                vmcs.read(control::VMENTRY_EXCEPTION_ERR_CODE)? << 32
            } else {
                0
            };
            Ok(info | code)
        }
        f => vmcs.read(plain(f).ok_or(Error::InvalidArgument)?),
    }
}

/// Writes `value` to neutral `field` of `vmcs`, as [`checked`] allows.
pub fn write(vmcs: &mut impl Vmcs, field: u64, value: u64) -> Result<(), Error> {
    let value = checked(field, value)?;
    match field {
        state::CR2 => {
            vmcs.set_cr2(value);
            Ok(())
        }
        // VMX operation needs CR4.VMXE set under the guest (the mask and shadow hide it).
        state::CR4 => vmcs.write(guest::CR4, value | CR4_VMXE),
        state::EFER => {
            // The processor checks "IA-32e mode guest" against EFER.LMA at entry.
            vmcs.write(guest::IA32_EFER_FULL, value)?;
            let entry = vmcs.read(control::VMENTRY_CONTROLS)? & !ENTRY_IA32E;
            let ia32e = if value & EFER_LMA != 0 { ENTRY_IA32E } else { 0 };
            vmcs.write(control::VMENTRY_CONTROLS, entry | ia32e)
        }
        state::INTERRUPT_SHADOW => {
            let now = vmcs.read(guest::INTERRUPTIBILITY_STATE)? & !3;
            vmcs.write(guest::INTERRUPTIBILITY_STATE, now | value)
        }
        state::INTERRUPT_WINDOW => {
            let now = vmcs.read(control::PRIMARY_PROCBASED_EXEC_CONTROLS)? & !INTERRUPT_WINDOW_EXITING;
            let bit = if value != 0 { INTERRUPT_WINDOW_EXITING } else { 0 };
            vmcs.write(control::PRIMARY_PROCBASED_EXEC_CONTROLS, now | bit)
        }
        state::EVENT => {
            if value & event::ERROR_CODE != 0 {
                vmcs.write(control::VMENTRY_EXCEPTION_ERR_CODE, value >> 32)?;
            }
            vmcs.write(control::VMENTRY_INTERRUPTION_INFO_FIELD, value & 0xffff_ffff)
        }
        f => vmcs.write(plain(f).ok_or(Error::InvalidArgument)?, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_abi::vcpu::state::segment as seg;

    /// A VMCS as a map of fields.
    struct Fake {
        fields: [(u32, u64); 64],
        used: usize,
        cr2: u64,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self { fields: [(0, 0); 64], used: 0, cr2: 0 }
        }
    }

    impl Vmcs for Fake {
        fn read(&mut self, encoding: u32) -> Result<u64, Error> {
            Ok(self.fields[..self.used].iter().find(|f| f.0 == encoding).map_or(0, |f| f.1))
        }
        fn write(&mut self, encoding: u32, value: u64) -> Result<(), Error> {
            if let Some(f) = self.fields[..self.used].iter_mut().find(|f| f.0 == encoding) {
                f.1 = value;
            } else {
                self.fields[self.used] = (encoding, value);
                self.used += 1;
            }
            Ok(())
        }
        fn cr2(&mut self) -> u64 {
            self.cr2
        }
        fn set_cr2(&mut self, value: u64) {
            self.cr2 = value;
        }
    }

    #[test]
    fn exits_translate() {
        // OUT 0x80, AL (2 bytes).
        assert_eq!(exit_words(30, 0x0080_0000, 0, 2, 0), [reason::PORT_IO, 0x80 | 1 << 16, 0, 2]);
        // REP INSW from DX = 0x3f8.
        let w = exit_words(30, 0x03f8_0000 | 1 | 1 << 3 | 1 << 4 | 1 << 5, 0, 2, 0);
        assert_eq!(w[1], 0x3f8 | 2 << 16 | io::IN | io::STRING | io::REP);
        // MOV CR4, RBX (register 3).
        assert_eq!(exit_words(28, 4 | 3 << 8, 0, 3, 0)[1], 4 | cr::WRITE | 3 << 8 | cr::REGISTER_KNOWN);
        assert_eq!(exit_words(28, 4 | 1 << 4, 0, 3, 0)[1], 4, "a read: no register claimed");
        // An EPT violation: a write where a read-only translation exists.
        assert_eq!(
            exit_words(48, 2 | 1 << 3, 0x9000, 0, 0),
            [reason::MEMORY, memory::WRITE | memory::MAPPED, 0x9000, 0]
        );
        assert_eq!(exit_words(48, 1, 0x4000_0000, 0, 0)[1], memory::READ);
        assert_eq!(exit_words(1, 0, 0, 0, 0)[0], reason::INTERRUPTED);
        assert_eq!(exit_words(2, 0, 0, 0, 0)[0], reason::SHUTDOWN);
        assert_eq!(exit_words(10, 0, 0, 2, 0), [reason::CPUID, 0, 0, 2]);
        assert_eq!(exit_words(18, 0, 0, 3, 0), [reason::HYPERCALL, 0, 0, 3]);
        assert_eq!(exit_words(24, 0, 0, 3, 0), [reason::VIRTUALIZATION_INSTRUCTION, other::VMX | 24, 0, 3]);
        assert_eq!(exit_words(33 | 1 << 31, 0, 0, 0, 0), [reason::ENTRY_FAILED, other::VMX | 33, 0, 0]);
        assert_eq!(exit_words(55, 0, 0, 3, 0), [reason::OTHER, other::VMX | 55, 0, 0], "XSETBV");
        assert_eq!(exit_words(0, 0, 0, 0, 0x8000_030e)[..2], [reason::EXCEPTION, 14]);
        assert_eq!(exit_words(0, 0, 0, 0, 0x8000_0202)[0], reason::INTERRUPTED, "a host NMI");
        assert_eq!(entry_failed(7)[1], other::VMX | other::VMX_INSTRUCTION_ERROR | 7);
    }

    #[test]
    fn fields_land_where_vt_x_keeps_them() {
        let mut v = Fake::default();
        write(&mut v, state::RIP, 0x1000).unwrap();
        assert_eq!(v.read(guest::RIP), Ok(0x1000));
        write(&mut v, state::segment(seg::TR, part::ATTRIBUTES), 0x8b).unwrap();
        assert_eq!(v.read(guest::TR_ACCESS_RIGHTS), Ok(0x8b));
        write(&mut v, state::segment(seg::GS, part::BASE), 0xdead).unwrap();
        assert_eq!(v.read(guest::GS_BASE), Ok(0xdead));
        write(&mut v, state::segment(seg::IDTR, part::LIMIT), 0xfff).unwrap();
        assert_eq!(v.read(guest::IDTR_LIMIT), Ok(0xfff));
        write(&mut v, state::segment(seg::LDTR, part::SELECTOR), 0x28).unwrap();
        assert_eq!(v.read(guest::LDTR_SELECTOR), Ok(0x28));
        // CR4: VMXE underneath, never seen.
        write(&mut v, state::CR4, 0x20).unwrap();
        assert_eq!(v.read(guest::CR4), Ok(0x20 | CR4_VMXE));
        assert_eq!(read(&mut v, state::CR4), Ok(0x20));
        assert_eq!(write(&mut v, state::CR4, 1 << 22), Err(Error::IllegalOperation));
        // EFER carries the IA-32e entry control with it.
        v.write(control::VMENTRY_CONTROLS, 1 << 15).unwrap();
        write(&mut v, state::EFER, 0x500).unwrap();
        assert_eq!(v.read(control::VMENTRY_CONTROLS), Ok(1 << 15 | ENTRY_IA32E));
        write(&mut v, state::EFER, 0).unwrap();
        assert_eq!(v.read(control::VMENTRY_CONTROLS), Ok(1 << 15));
        // The interrupt window is one control bit; the others stay.
        v.write(control::PRIMARY_PROCBASED_EXEC_CONTROLS, 0x9000_0080).unwrap();
        write(&mut v, state::INTERRUPT_WINDOW, 1).unwrap();
        assert_eq!(read(&mut v, state::INTERRUPT_WINDOW), Ok(1));
        write(&mut v, state::INTERRUPT_WINDOW, 0).unwrap();
        assert_eq!(v.read(control::PRIMARY_PROCBASED_EXEC_CONTROLS), Ok(0x9000_0080));
        // Events with an error code.
        let gp = 13 | event::EXCEPTION << 8 | event::ERROR_CODE | event::VALID | (8 << 32);
        write(&mut v, state::EVENT, gp).unwrap();
        assert_eq!(read(&mut v, state::EVENT), Ok(gp));
        write(&mut v, state::CR2, 0x7000).unwrap();
        assert_eq!(read(&mut v, state::CR2), Ok(0x7000));
        v.write(guest::INTERRUPTIBILITY_STATE, 2).unwrap();
        assert_eq!(read(&mut v, state::INTERRUPT_SHADOW), Ok(1));
        assert_eq!(read(&mut v, state::segment(seg::GDTR, part::SELECTOR)), Err(Error::InvalidArgument));
    }
}
