//! The Xoar privilege matrix, computed from a capDL specification: which component can
//! touch arbitrary memory, access PCI configuration space, create VMs, manage VMs, manage
//! devices, boot the system, or end the run.

use cleave_capdl::model::{ObjRef, ObjectKind, Spec, Target};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The columns of the matrix.
pub const COLUMNS: [&str; 7] = [
    "arbitrary memory",
    "PCI config",
    "create VMs",
    "manage VMs",
    "manage devices",
    "system boot",
    "end run",
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
    /// Holds capabilities to VCPUs of guests.
    pub manage_vms: bool,
    /// Holds interrupt, I/O port or device-memory capabilities.
    pub manage_devices: bool,
    /// Holds IRQ control or untyped memory at boot.
    pub system_boot: bool,
    /// Its thread may end the whole run (`ends-run`: the kernel's `DebugExit`).
    pub end_run: bool,
}

impl Row {
    fn cells(&self) -> [bool; 7] {
        [
            self.arbitrary_memory,
            self.pci_config,
            self.create_vms,
            self.manage_vms,
            self.manage_devices,
            self.system_boot,
            self.end_run,
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
                    Some(ObjectKind::Vcpu) => row.manage_vms = true,
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
        row.end_run =
            matches!(kind_of(&ObjRef { name: tcb, index: None }), Some(ObjectKind::Tcb(t)) if t.ends_run);
    }
    rows
}

/// The matrix as a text table.
pub fn table(spec: &Spec) -> String {
    let rows = matrix(spec);
    let width = rows.keys().map(String::len).max().unwrap_or(9).max(9);
    let mut out = format!("{:width$}", "component");
    for c in COLUMNS {
        let _ = write!(out, " | {c}");
    }
    out.push('\n');
    for (name, row) in rows {
        let _ = write!(out, "{name:width$}");
        for (c, set) in COLUMNS.iter().zip(row.cells()) {
            let _ = write!(out, " | {:^w$}", if set { "yes" } else { "-" }, w = c.len());
        }
        out.push('\n');
    }
    out
}
