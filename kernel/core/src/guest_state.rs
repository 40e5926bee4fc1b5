//! The guest-state policy both architectures share: which neutral fields
//! (`cleave_abi::vcpu::state`) exist and what a VMM may write to them, before `vmcs` (VT-x)
//! or `vmcb` (SVM) puts the value where its processor keeps it. Pure, host-tested.

use cleave_abi::Error;
use cleave_abi::vcpu::state::{self, event, part, segment};

/// EFER bits a guest may have: SCE (0), LME (8), LMA (10), NXE (11). The rest are
/// reserved or the kernel's (SVM's SVME).
pub const EFER_GUEST: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
/// CR4.VMXE: VT-x's, which the kernel keeps set underneath on VT-x; never the guest's.
pub const CR4_VMXE: u64 = 1 << 13;
/// CR4.PKE: protection keys; PKRU is not switched between guests, so never offered.
pub const CR4_PKE: u64 = 1 << 22;
/// DR7's breakpoint enables (L0-G3): DR0-DR3 are not switched, so a guest cannot enable
/// them (its VMM emulates debug registers if it offers them).
pub const DR7_ENABLES: u64 = 0xff;
/// Bits of a segment's attributes (`state::part::ATTRIBUTES`) that mean something.
pub const ATTRIBUTES_VALID: u64 = 0xff | (0xf << 12) | (1 << 16);
/// Bits of an event that mean something (vector, type, error-code flag, valid, code).
const EVENT_VALID_BITS: u64 = 0xff | (7 << 8) | (1 << 11) | (1 << 31) | (0xffff_ffff << 32);

/// A neutral field's segment and part, if it is a segment field.
pub fn segment_of(field: u64) -> Option<(u64, u64)> {
    let rel = field.checked_sub(state::SEGMENT).filter(|&r| r < state::COUNT - state::SEGMENT)?;
    Some((rel / 4, rel % 4))
}

/// Whether `field` names a field (the descriptor tables have no selector or attributes).
pub fn exists(field: u64) -> bool {
    match segment_of(field) {
        Some((segment::GDTR | segment::IDTR, part::SELECTOR | part::ATTRIBUTES)) => false,
        Some(_) => true,
        None => field <= state::DR7,
    }
}

/// The value that may be written to `field` (which [`exists`]): `InvalidArgument` for a
/// value that is not one (a flag above 1, an attribute or event bit that means nothing,
/// a selector above 16 bits, a limit above 32), `IllegalOperation` for one that would
/// give the guest what the kernel does not switch or keeps (EFER bits but SCE, LME, LMA
/// and NXE; CR4.PKE or VMXE; DR7's breakpoint enables; event types other than external
/// interrupt, NMI (vector 2) and hardware exception (vectors 0-31)).
pub fn checked(field: u64, value: u64) -> Result<u64, Error> {
    if !exists(field) {
        return Err(Error::InvalidArgument);
    }
    match field {
        state::EFER if value & !EFER_GUEST != 0 => Err(Error::IllegalOperation),
        state::CR4 if value & (CR4_PKE | CR4_VMXE) != 0 => Err(Error::IllegalOperation),
        state::DR7 if value >> 32 != 0 => Err(Error::InvalidArgument),
        state::DR7 if value & DR7_ENABLES != 0 => Err(Error::IllegalOperation),
        state::INTERRUPT_SHADOW | state::INTERRUPT_WINDOW if value > 1 => Err(Error::InvalidArgument),
        state::EVENT => checked_event(value),
        _ => match segment_of(field) {
            Some((_, part::SELECTOR)) if value > 0xffff => Err(Error::InvalidArgument),
            Some((_, part::LIMIT)) if value > 0xffff_ffff => Err(Error::InvalidArgument),
            Some((_, part::ATTRIBUTES)) if value & !ATTRIBUTES_VALID != 0 => Err(Error::InvalidArgument),
            _ => Ok(value),
        },
    }
}

fn checked_event(value: u64) -> Result<u64, Error> {
    if value & event::VALID == 0 {
        // Nothing to inject: the rest is ignored, and stored as nothing.
        return Ok(0);
    }
    if value & !EVENT_VALID_BITS != 0 {
        return Err(Error::InvalidArgument);
    }
    let vector = value & 0xff;
    let allowed = match (value >> event::TYPE_SHIFT) & 7 {
        event::EXTERNAL => vector >= 32,
        event::NMI => vector == 2,
        event::EXCEPTION => vector < 32 && vector != 2,
        _ => false,
    };
    if !allowed {
        return Err(Error::IllegalOperation);
    }
    if value & event::ERROR_CODE == 0 && value >> 32 != 0 {
        return Err(Error::InvalidArgument);
    }
    Ok(value)
}

/// An event the processor was delivering when the guest exited (VT-x's IDT-vectoring
/// information, SVM's EXITINTINFO: the [`event`] format), if it must be delivered again:
/// external interrupts, NMIs and hardware exceptions. A software interrupt is simply
/// executed again, its instruction not having completed; so are INT3 and INTO, which SVM
/// reports as exceptions #BP and #OF (delivered again, they would return to the INT3 and
/// raise it forever).
pub fn redelivered(interrupted: u64) -> Option<u64> {
    if interrupted & event::VALID == 0 {
        return None;
    }
    let kind = (interrupted >> event::TYPE_SHIFT) & 7;
    if kind == event::EXCEPTION && matches!(interrupted & 0xff, 3 | 4) {
        return None;
    }
    let keep = 0xff | (7 << 8) | event::ERROR_CODE | event::VALID;
    let code = if interrupted & event::ERROR_CODE != 0 { interrupted & (0xffff_ffff << 32) } else { 0 };
    matches!(kind, event::EXTERNAL | event::NMI | event::EXCEPTION).then_some(interrupted & keep | code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_abi::vcpu::state::segment as seg;

    #[test]
    fn fields_and_refusals() {
        assert!(exists(state::RIP) && exists(state::DR7) && !exists(state::DR7 + 1));
        assert!(exists(state::segment(seg::GDTR, part::BASE)));
        assert!(!exists(state::segment(seg::IDTR, part::SELECTOR)));
        assert!(!exists(state::COUNT) && !exists(u64::MAX));
        assert_eq!(checked(state::COUNT, 0), Err(Error::InvalidArgument));
        assert_eq!(checked(state::EFER, 0x500), Ok(0x500));
        assert_eq!(checked(state::EFER, 1 << 12), Err(Error::IllegalOperation), "SVME");
        assert_eq!(checked(state::CR4, CR4_PKE), Err(Error::IllegalOperation));
        assert_eq!(checked(state::CR4, CR4_VMXE), Err(Error::IllegalOperation));
        assert_eq!(checked(state::CR4, 0x20), Ok(0x20));
        assert_eq!(checked(state::DR7, 0x400), Ok(0x400));
        assert_eq!(checked(state::DR7, 0x401), Err(Error::IllegalOperation));
        assert_eq!(checked(state::INTERRUPT_WINDOW, 2), Err(Error::InvalidArgument));
        assert_eq!(checked(state::segment(seg::CS, part::SELECTOR), 0x1_0000), Err(Error::InvalidArgument));
        assert_eq!(checked(state::segment(seg::CS, part::ATTRIBUTES), 0xa09b), Ok(0xa09b));
        assert_eq!(
            checked(state::segment(seg::CS, part::ATTRIBUTES), 0xa09b | 1 << 20),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn events() {
        assert_eq!(checked(state::EVENT, event::external(0x20)), Ok(event::external(0x20)));
        assert_eq!(checked(state::EVENT, event::external(3)), Err(Error::IllegalOperation));
        assert_eq!(checked(state::EVENT, 0x1234), Ok(0), "not valid: nothing");
        let gp = 13 | event::EXCEPTION << 8 | event::ERROR_CODE | event::VALID | (8 << 32);
        assert_eq!(checked(state::EVENT, gp), Ok(gp));
        assert_eq!(checked(state::EVENT, 2 | event::NMI << 8 | event::VALID), Ok(2 | 2 << 8 | event::VALID));
        assert_eq!(checked(state::EVENT, 3 | event::NMI << 8 | event::VALID), Err(Error::IllegalOperation));
        assert_eq!(
            checked(state::EVENT, 0x80 | 4 << 8 | event::VALID),
            Err(Error::IllegalOperation),
            "INT n"
        );
        assert_eq!(checked(state::EVENT, event::external(0x20) | 1 << 32), Err(Error::InvalidArgument));
        assert_eq!(checked(state::EVENT, event::external(0x20) | 1 << 12), Err(Error::InvalidArgument));
    }

    #[test]
    fn interrupted_events_are_delivered_again() {
        assert_eq!(redelivered(event::external(0x30)), Some(event::external(0x30)));
        assert_eq!(redelivered(0x30), None);
        assert_eq!(redelivered(0x80 | 4 << 8 | event::VALID), None, "a software interrupt runs again");
        assert_eq!(redelivered(3 | 3 << 8 | event::VALID), None, "so does INT3");
        assert_eq!(redelivered(4 | 3 << 8 | event::VALID), None, "and INTO");
        let pf = 14 | 3 << 8 | event::ERROR_CODE | event::VALID | 1 << 12 | (2 << 32);
        assert_eq!(redelivered(pf), Some(14 | 3 << 8 | event::ERROR_CODE | event::VALID | (2 << 32)));
    }
}
