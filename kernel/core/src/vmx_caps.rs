//! Decoding what VT-x support the processor offers, from CPUID and the VMX capability MSRs.
//!
//! Optional MSRs are read only when the capability bits say they exist (reading an absent
//! one faults, in Bochs as on hardware), so the decoder drives the reads: it is given a
//! function that reads an MSR and asks only for the ones the previous answers allow.

use core::fmt;

/// `IA32_FEATURE_CONTROL`.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
/// `IA32_VMX_BASIC`.
pub const IA32_VMX_BASIC: u32 = 0x480;
/// `IA32_VMX_PROCBASED_CTLS`.
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
/// `IA32_VMX_PROCBASED_CTLS2`: exists only if the primary controls allow bit 31.
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// `IA32_VMX_EPT_VPID_CAP`: exists only if secondary controls allow EPT or VPID.
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// `IA32_VMX_TRUE_PROCBASED_CTLS`: exists only if `IA32_VMX_BASIC` bit 55 is set.
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;

const PRIMARY_ACTIVATE_SECONDARY: u32 = 1 << 31;
const SECONDARY_ENABLE_EPT: u32 = 1 << 1;
const SECONDARY_ENABLE_VPID: u32 = 1 << 5;
const SECONDARY_UNRESTRICTED_GUEST: u32 = 1 << 7;
const EPT_CAP_WALK_LENGTH_4: u64 = 1 << 6;
const EPT_CAP_WRITE_BACK: u64 = 1 << 14;
const EPT_CAP_2MIB_PAGES: u64 = 1 << 16;
const EPT_CAP_INVEPT: u64 = 1 << 20;

/// Whether and how far VT-x can be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxCapabilities {
    /// CPUID.1:ECX.VMX: the processor implements VMX.
    pub vmx: bool,
    /// `IA32_FEATURE_CONTROL` is locked with VMX outside SMX disabled: the firmware forbade
    /// VMX, and nothing short of a reset changes it.
    pub disabled_by_firmware: bool,
    /// VMCS revision identifier (`IA32_VMX_BASIC` bits 30:0).
    pub vmcs_revision: u32,
    /// VMCS region size in bytes (`IA32_VMX_BASIC` bits 44:32).
    pub vmcs_size: u32,
    /// The TRUE_* control MSRs exist (`IA32_VMX_BASIC` bit 55).
    pub true_controls: bool,
    /// Extended page tables can be enabled.
    pub ept: bool,
    /// EPT supports a 4-level walk with write-back paging structures and INVEPT: the
    /// configuration Cleave uses.
    pub ept_usable: bool,
    /// EPT can map 2 MiB pages.
    pub ept_2mib_pages: bool,
    /// Unrestricted guests (real mode and unpaged protected mode under EPT).
    pub unrestricted_guest: bool,
    /// Virtual processor identifiers.
    pub vpid: bool,
}

impl VmxCapabilities {
    /// Decodes the capabilities: `vmx` is CPUID.1:ECX.VMX, `read_msr` reads one MSR and is
    /// called only for MSRs that the answers so far say exist.
    pub fn probe(vmx: bool, mut read_msr: impl FnMut(u32) -> u64) -> Self {
        let mut caps = Self { vmx, ..Self::default() };
        if !caps.vmx {
            return caps;
        }
        let control = read_msr(IA32_FEATURE_CONTROL);
        let locked = control & 1 != 0;
        let outside_smx = control & (1 << 2) != 0;
        caps.disabled_by_firmware = locked && !outside_smx;
        let basic = read_msr(IA32_VMX_BASIC);
        caps.vmcs_revision = (basic & 0x7fff_ffff) as u32;
        caps.vmcs_size = ((basic >> 32) & 0x1fff) as u32;
        caps.true_controls = basic & (1 << 55) != 0;
        let primary_msr =
            if caps.true_controls { IA32_VMX_TRUE_PROCBASED_CTLS } else { IA32_VMX_PROCBASED_CTLS };
        let primary_allowed1 = (read_msr(primary_msr) >> 32) as u32;
        if primary_allowed1 & PRIMARY_ACTIVATE_SECONDARY == 0 {
            return caps;
        }
        let secondary_allowed1 = (read_msr(IA32_VMX_PROCBASED_CTLS2) >> 32) as u32;
        caps.ept = secondary_allowed1 & SECONDARY_ENABLE_EPT != 0;
        caps.vpid = secondary_allowed1 & SECONDARY_ENABLE_VPID != 0;
        caps.unrestricted_guest = secondary_allowed1 & SECONDARY_UNRESTRICTED_GUEST != 0;
        if caps.ept || caps.vpid {
            let ept_cap = read_msr(IA32_VMX_EPT_VPID_CAP);
            let needed = EPT_CAP_WALK_LENGTH_4 | EPT_CAP_WRITE_BACK | EPT_CAP_INVEPT;
            caps.ept_usable = caps.ept && ept_cap & needed == needed;
            caps.ept_2mib_pages = caps.ept && ept_cap & EPT_CAP_2MIB_PAGES != 0;
        }
        caps
    }

    /// Whether Cleave can run guests: VMX allowed, usable EPT, unrestricted guest.
    pub fn can_host_guests(&self) -> bool {
        self.vmx && !self.disabled_by_firmware && self.ept_usable && self.unrestricted_guest
    }
}

impl fmt::Display for VmxCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        if !self.vmx {
            return write!(f, "VMX no (CPUID.1:ECX.VMX = 0)");
        }
        if self.disabled_by_firmware {
            return write!(f, "VMX no (disabled by firmware in IA32_FEATURE_CONTROL)");
        }
        write!(
            f,
            "VMX yes, EPT {}, unrestricted guest {}, VPID {}, EPT 2M pages {}, VMCS revision {:#x} size {}",
            yes(self.ept_usable),
            yes(self.unrestricted_guest),
            yes(self.vpid),
            yes(self.ept_2mib_pages),
            self.vmcs_revision,
            self.vmcs_size
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::format;

    /// MSR values like Bochs' corei7_skylake_x model (bits that matter here).
    fn skylake() -> BTreeMap<u32, u64> {
        BTreeMap::from([
            (IA32_FEATURE_CONTROL, 5),
            (IA32_VMX_BASIC, (1 << 55) | (0x400 << 32) | 0x1d3),
            (IA32_VMX_TRUE_PROCBASED_CTLS, (0xfff9_fffe_u64 << 32) | 0x0401_e172),
            (IA32_VMX_PROCBASED_CTLS2, 0x0055_3cfe_u64 << 32),
            (IA32_VMX_EPT_VPID_CAP, 0x0f01_0611_4141),
        ])
    }

    /// Reads from `msrs`, failing the test on an MSR the decoder should not have touched.
    fn reader(msrs: &BTreeMap<u32, u64>) -> impl FnMut(u32) -> u64 + '_ {
        |msr| *msrs.get(&msr).unwrap_or_else(|| panic!("read of absent MSR {msr:#x}"))
    }

    #[test]
    fn skylake_can_host_guests() {
        let msrs = skylake();
        let caps = VmxCapabilities::probe(true, reader(&msrs));
        assert!(caps.can_host_guests(), "{caps:?}");
        assert!(caps.vpid && caps.ept_2mib_pages && caps.true_controls);
        assert_eq!(caps.vmcs_revision, 0x1d3);
        assert_eq!(caps.vmcs_size, 0x400);
        assert!(format!("{caps}").starts_with("VMX yes, EPT yes, unrestricted guest yes"));
    }

    #[test]
    fn no_vmx_reads_no_msr() {
        let caps = VmxCapabilities::probe(false, |msr| panic!("read MSR {msr:#x} without VMX"));
        assert!(!caps.can_host_guests());
        assert_eq!(format!("{caps}"), "VMX no (CPUID.1:ECX.VMX = 0)");
    }

    #[test]
    fn firmware_lock_disables() {
        let mut msrs = skylake();
        msrs.insert(IA32_FEATURE_CONTROL, 1);
        let caps = VmxCapabilities::probe(true, reader(&msrs));
        assert!(caps.disabled_by_firmware && !caps.can_host_guests());
        // Unlocked: the kernel may still turn it on itself.
        msrs.insert(IA32_FEATURE_CONTROL, 0);
        assert!(!VmxCapabilities::probe(true, reader(&msrs)).disabled_by_firmware);
    }

    #[test]
    fn optional_msrs_are_read_only_when_they_exist() {
        // No secondary controls (core2-like, no TRUE MSRs): 0x48b/0x48c/0x48e absent.
        let msrs = BTreeMap::from([
            (IA32_FEATURE_CONTROL, 5),
            (IA32_VMX_BASIC, 0x10),
            (IA32_VMX_PROCBASED_CTLS, 0x7fff_ffff_u64 << 32),
        ]);
        let caps = VmxCapabilities::probe(true, reader(&msrs));
        assert!(!caps.ept && !caps.unrestricted_guest && !caps.vpid);
        // Secondary controls without EPT or VPID: 0x48c stays unread.
        let msrs = BTreeMap::from([
            (IA32_FEATURE_CONTROL, 5),
            (IA32_VMX_BASIC, 0x10),
            (IA32_VMX_PROCBASED_CTLS, 0xffff_ffff_u64 << 32),
            (IA32_VMX_PROCBASED_CTLS2, 0x80_u64 << 32),
        ]);
        let caps = VmxCapabilities::probe(true, reader(&msrs));
        assert!(caps.unrestricted_guest && !caps.ept && !caps.can_host_guests());
    }

    #[test]
    fn lynnfield_lacks_unrestricted_guest() {
        let mut msrs = skylake();
        msrs.insert(IA32_VMX_PROCBASED_CTLS2, 0x0000_0042_u64 << 32);
        let caps = VmxCapabilities::probe(true, reader(&msrs));
        assert!(caps.ept_usable && !caps.unrestricted_guest && !caps.can_host_guests());
    }
}
