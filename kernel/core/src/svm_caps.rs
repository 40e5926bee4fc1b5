//! Decoding what AMD SVM support the processor offers, from CPUID and the `VM_CR` MSR.
//!
//! As for VT-x, the decoder drives the reads: `VM_CR` is read only when CPUID says SVM
//! exists (on a processor without it the MSR does not exist and reading it faults).

use core::fmt;

/// `VM_CR`: bit 4 (`SVMDIS`) set means the firmware disabled SVM (EFER.SVME cannot be set).
pub const VM_CR: u32 = 0xc001_0114;
/// `VM_HSAVE_PA`: the physical address of the host save area `VMRUN` uses.
pub const VM_HSAVE_PA: u32 = 0xc001_0117;
/// `EFER.SVME`: SVM instructions enabled.
pub const EFER_SVME: u64 = 1 << 12;

const VM_CR_SVMDIS: u64 = 1 << 4;
/// CPUID 0x8000_0001 ECX: SVM.
const EXT_ECX_SVM: u32 = 1 << 2;
/// CPUID 0x8000_000A EDX bits.
const NP: u32 = 1 << 0;
const NRIP_SAVE: u32 = 1 << 3;
const VMCB_CLEAN: u32 = 1 << 5;
const FLUSH_BY_ASID: u32 = 1 << 6;
const DECODE_ASSISTS: u32 = 1 << 7;

/// Whether and how far SVM can be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvmCapabilities {
    /// CPUID 0x8000_0001:ECX.SVM: the processor implements SVM.
    pub svm: bool,
    /// `VM_CR.SVMDIS`: the firmware turned SVM off.
    pub disabled_by_firmware: bool,
    /// SVM revision (CPUID 0x8000_000A:EAX bits 7:0).
    pub revision: u8,
    /// Address space identifiers (CPUID 0x8000_000A:EBX); ASID 0 is the host's.
    pub asids: u32,
    /// Nested paging.
    pub npt: bool,
    /// The processor saves the next instruction's address on intercepts (`NRIP`). QEMU's
    /// emulation does not, so the VMM finds instruction lengths itself.
    pub nrip_save: bool,
    /// VMCB clean bits.
    pub vmcb_clean: bool,
    /// `TLB_CONTROL` can flush one ASID's translations; without it a flush drops all.
    pub flush_by_asid: bool,
    /// Intercepts report decoded operands.
    pub decode_assists: bool,
}

impl SvmCapabilities {
    /// Decodes the capabilities: `cpuid(leaf, subleaf)` answers `[eax, ebx, ecx, edx]`,
    /// `read_msr` reads one MSR and is called only when SVM exists.
    pub fn probe(cpuid: impl Fn(u32, u32) -> [u32; 4], read_msr: impl Fn(u32) -> u64) -> Self {
        let max_extended = cpuid(0x8000_0000, 0)[0];
        if max_extended < 0x8000_0001 || cpuid(0x8000_0001, 0)[2] & EXT_ECX_SVM == 0 {
            return Self::default();
        }
        let mut caps = Self { svm: true, ..Self::default() };
        caps.disabled_by_firmware = read_msr(VM_CR) & VM_CR_SVMDIS != 0;
        if max_extended < 0x8000_000a {
            return caps;
        }
        let [eax, ebx, _, edx] = cpuid(0x8000_000a, 0);
        caps.revision = eax as u8;
        caps.asids = ebx;
        caps.npt = edx & NP != 0;
        caps.nrip_save = edx & NRIP_SAVE != 0;
        caps.vmcb_clean = edx & VMCB_CLEAN != 0;
        caps.flush_by_asid = edx & FLUSH_BY_ASID != 0;
        caps.decode_assists = edx & DECODE_ASSISTS != 0;
        caps
    }

    /// Whether guests can run the way Cleave runs them: SVM on, nested paging, and at
    /// least one ASID besides the host's.
    pub fn can_host_guests(&self) -> bool {
        self.svm && !self.disabled_by_firmware && self.npt && self.asids >= 2
    }
}

impl fmt::Display for SvmCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.svm {
            return write!(f, "no SVM");
        }
        if self.disabled_by_firmware {
            return write!(f, "SVM disabled by the firmware (VM_CR.SVMDIS)");
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "SVM revision {}, {} ASIDs, nested paging {}, next-RIP save {}, flush by ASID {}, decode assists {}",
            self.revision,
            self.asids,
            yes(self.npt),
            yes(self.nrip_save),
            yes(self.flush_by_asid),
            yes(self.decode_assists)
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::cell::Cell;
    use std::format;

    /// QEMU 7.2's `-cpu max` under TCG: SVM, NPT and vGIF, none of the other features.
    fn qemu(leaf: u32, _: u32) -> [u32; 4] {
        match leaf {
            0x8000_0000 => [0x8000_001f, 0, 0, 0],
            0x8000_0001 => [0, 0, EXT_ECX_SVM, 0],
            0x8000_000a => [1, 16, 0, NP | (1 << 16)],
            _ => [0; 4],
        }
    }

    #[test]
    fn qemu_max_can_host_guests_without_next_rip() {
        let caps = SvmCapabilities::probe(qemu, |_| 0);
        assert!(caps.can_host_guests());
        assert_eq!((caps.revision, caps.asids, caps.nrip_save, caps.flush_by_asid), (1, 16, false, false));
        assert_eq!(
            format!("{caps}"),
            "SVM revision 1, 16 ASIDs, nested paging yes, next-RIP save no, flush by ASID no, decode assists no"
        );
    }

    #[test]
    fn no_svm_reads_no_msr() {
        let reads = Cell::new(0);
        let intel = |leaf: u32, _: u32| if leaf == 0x8000_0000 { [0x8000_0008, 0, 0, 0] } else { [0; 4] };
        let caps = SvmCapabilities::probe(intel, |_| {
            reads.set(reads.get() + 1);
            0
        });
        assert_eq!((caps, reads.get()), (SvmCapabilities::default(), 0));
        assert_eq!(format!("{caps}"), "no SVM");
        assert!(!caps.can_host_guests());
    }

    #[test]
    fn firmware_disabled_or_missing_pieces_host_no_guests() {
        let caps = SvmCapabilities::probe(qemu, |msr| if msr == VM_CR { VM_CR_SVMDIS } else { 0 });
        assert!(caps.disabled_by_firmware && !caps.can_host_guests());
        let no_npt = |leaf: u32, sub: u32| if leaf == 0x8000_000a { [1, 16, 0, 0] } else { qemu(leaf, sub) };
        assert!(!SvmCapabilities::probe(no_npt, |_| 0).can_host_guests());
        let one_asid =
            |leaf: u32, sub: u32| if leaf == 0x8000_000a { [1, 1, 0, NP] } else { qemu(leaf, sub) };
        assert!(!SvmCapabilities::probe(one_asid, |_| 0).can_host_guests(), "ASID 0 is the host's");
        let short =
            |leaf: u32, sub: u32| if leaf == 0x8000_0000 { [0x8000_0001, 0, 0, 0] } else { qemu(leaf, sub) };
        let caps = SvmCapabilities::probe(short, |_| 0);
        assert!(caps.svm && !caps.npt && !caps.can_host_guests());
    }
}
