//! The Xoar privilege matrix, computed from a capDL specification: which component can
//! touch arbitrary memory, access PCI configuration space, create VMs, manage VMs, manage
//! devices, boot the system, end the run, or read the kernel's audit log.

use cleave_capdl::model::{ObjRef, ObjectKind, Spec, Target};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The columns of the matrix.
pub const COLUMNS: [&str; 8] = [
    "arbitrary memory",
    "PCI config",
    "create VMs",
    "manage VMs",
    "manage devices",
    "system boot",
    "end run",
    "read audit",
];

/// One component's row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Holds untyped memory (can make, and so touch, arbitrary memory), or drives a device
    /// and holds a frame of ordinary memory, whose physical address it may ask to program
    /// the device's DMA: until an IOMMU confines the device, DMA reaches any memory.
    pub arbitrary_memory: bool,
    /// Holds I/O ports 0xcf8-0xcff (PCI configuration mechanism 1).
    pub pci_config: bool,
    /// Holds untyped memory and can make VCPUs (the builder's authority).
    pub create_vms: bool,
    /// Holds capabilities to VCPUs of guests, or to the roots of their guest-physical
    /// spaces.
    pub manage_vms: bool,
    /// Holds interrupt, I/O port or device-memory capabilities.
    pub manage_devices: bool,
    /// Holds IRQ control or untyped memory at boot.
    pub system_boot: bool,
    /// Its thread may end the whole run (`ends-run`: the kernel's `DebugExit`).
    pub end_run: bool,
    /// Its thread may read the kernel's audit log (the toolstack, which answers `cleave
    /// ctl audit`: the kernel's `AuditRead`).
    pub read_audit: bool,
}

impl Row {
    fn cells(&self) -> [bool; 8] {
        [
            self.arbitrary_memory,
            self.pci_config,
            self.create_vms,
            self.manage_vms,
            self.manage_devices,
            self.system_boot,
            self.end_run,
            self.read_audit,
        ]
    }
}

/// The matrix: component (by CNode object, without `_cnode`) → row.
pub fn matrix(spec: &Spec) -> BTreeMap<String, Row> {
    let kind_of = |r: &ObjRef| spec.objects.iter().find(|o| o.name == r.name).map(|o| &o.kind);
    // Every component has a row, even one that holds no capability (its thread is what
    // makes it a component); what its CNode holds fills the row in.
    let mut rows: BTreeMap<String, Row> = spec
        .objects
        .iter()
        .filter_map(|o| o.name.strip_suffix("_tcb"))
        .map(|component| (component.to_string(), Row::default()))
        .collect();
    for (container, slots) in &spec.caps {
        let Some(component) = container.name.strip_suffix("_cnode") else { continue };
        let mut row = Row::default();
        let mut dma_frame = false;
        for cap in slots.values() {
            match &cap.target {
                Target::IrqControl => row.system_boot = true,
                Target::Object(r) => match kind_of(r) {
                    Some(ObjectKind::Untyped { .. }) => {
                        row.arbitrary_memory = true;
                        row.system_boot = true;
                    }
                    Some(ObjectKind::IoPorts { first, last }) => {
                        row.manage_devices = true;
                        row.pci_config |= *first <= 0xcff && 0xcf8 <= *last;
                    }
                    Some(ObjectKind::Irq) => row.manage_devices = true,
                    Some(ObjectKind::Frame { paddr: Some(_), .. }) => row.manage_devices = true,
                    Some(ObjectKind::Frame { paddr: None, .. }) => dma_frame = true,
                    // A guest's Vcpu, or the root of its guest-physical space (what the
                    // Builder maps a guest's RAM through).
                    Some(ObjectKind::Vcpu | ObjectKind::EptTable { level: 4 }) => row.manage_vms = true,
                    _ => {}
                },
                _ => {}
            }
        }
        row.arbitrary_memory |= dma_frame && row.manage_devices;
        row.create_vms = row.arbitrary_memory && row.manage_vms;
        rows.insert(component.to_string(), row);
    }
    // Device memory a component's page tables map (`NAME_map_…`) is device authority as
    // much as a capability to it is.
    for (container, slots) in &spec.caps {
        let Some((component, _)) = container.name.split_once("_map_") else { continue };
        let device = slots.values().any(|cap| {
            matches!(&cap.target, Target::Object(r)
                if matches!(kind_of(r), Some(ObjectKind::Frame { paddr: Some(_), .. })))
        });
        if let Some(row) = rows.get_mut(component).filter(|_| device) {
            row.manage_devices = true;
        }
    }
    for (component, row) in &mut rows {
        let tcb = format!("{component}_tcb");
        let thread = match kind_of(&ObjRef { name: tcb, index: None }) {
            Some(ObjectKind::Tcb(t)) => Some(t),
            _ => None,
        };
        row.end_run = thread.is_some_and(|t| t.ends_run);
        row.read_audit = thread.is_some_and(|t| t.reads_audit);
    }
    rows
}

/// Which of Xoar's control-VM pieces a program is (Xoar's privilege table has a row per
/// piece), by the program's name; `None` for what Xen's control VM had no piece for.
pub fn xoar_role(program: &str) -> Option<&'static str> {
    const ROLES: [(&str, &str); 9] = [
        ("bootstrap", "System Boot"),
        ("pciback", "PCI Config (PCIBack)"),
        ("xenstore-logic", "XenStore-Logic"),
        ("xenstore-state", "XenStore-State"),
        ("builder", "Builder"),
        ("toolstack", "Tools"),
        ("blkback", "Block"),
        ("netback", "Network"),
        ("vmm", "device emulation (QEMU)"),
    ];
    // A per-guest instance's program is `NAME-GUEST`.
    ROLES
        .iter()
        .find(|(p, _)| program == *p || program.strip_prefix(p).is_some_and(|r| r.starts_with('-')))
        .map(|(_, r)| *r)
}

/// The matrix as a text table, with each component's piece of Xoar's control VM last.
pub fn table(spec: &Spec) -> String {
    let rows = matrix(spec);
    let width = rows.keys().map(String::len).max().unwrap_or(9).max(9);
    let mut out = format!("{:width$}", "component");
    for c in COLUMNS {
        let _ = write!(out, " | {c}");
    }
    out.push_str(" | Xoar\n");
    for (name, row) in rows {
        let _ = write!(out, "{name:width$}");
        for (c, set) in COLUMNS.iter().zip(row.cells()) {
            let _ = write!(out, " | {:^w$}", if set { "yes" } else { "-" }, w = c.len());
        }
        let tcb = format!("{name}_tcb");
        let program = spec.objects.iter().find(|o| o.name == tcb).and_then(|o| match &o.kind {
            ObjectKind::Tcb(t) => t.elf.clone(),
            _ => None,
        });
        let role = program.as_deref().and_then(xoar_role).unwrap_or("-");
        let _ = writeln!(out, " | {role}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_is_its_piece_of_xoars_control_vm_and_instances_too() {
        assert_eq!(xoar_role("pciback"), Some("PCI Config (PCIBack)"));
        assert_eq!(xoar_role("blkback-alice"), Some("Block"));
        assert_eq!(xoar_role("vmm"), Some("device emulation (QEMU)"));
        // A name that only starts like one is not it; Cleave's own pieces have none.
        assert_eq!(xoar_role("blkbackup"), None);
        assert_eq!(xoar_role("supervisor"), None);
        let text = "[components.toolstack]\n[components.xenstore-logic]\n";
        let file = crate::system::load(text).unwrap();
        let table = table(&crate::compile::compile(&file).spec);
        assert!(table.lines().next().unwrap().ends_with(" | Xoar"), "{table}");
        assert!(table.contains("| Tools\n") && table.contains("| XenStore-Logic\n"), "{table}");
    }
}
