//! The writer: a [`Spec`] in one canonical text form, which the reader reads back to the
//! same spec.
//!
//! Objects in declaration order, one per line; an untyped's cover after its parameters
//! (`u = ut (20 bits) {a, f[]}`), and the cover of an element of an array of untypeds after
//! every object (`u[1] = ut (12 bits) {b}`); capabilities one per slot, numbered; then the
//! derivation tree, the IRQ maps and the domain schedule, each only if the spec has one.

use crate::model::{CapRef, Lifetime, ObjRef, ObjectKind, Spec, Target};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn flag(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The parameters of an object, as written in parentheses after its type.
fn params(kind: &ObjectKind) -> Vec<String> {
    let mut params: Vec<String> = Vec::new();
    match kind {
        ObjectKind::CNode { size_bits } => params.push(format!("{size_bits} bits")),
        ObjectKind::Untyped { size_bits, paddr } => {
            if let Some(b) = size_bits {
                params.push(format!("{b} bits"));
            }
            if let Some(p) = paddr {
                params.push(format!("paddr: {}", hex(*p)));
            }
        }
        ObjectKind::Frame { size, paddr, fill } => {
            params.push(if *size >= 1 << 20 && size % (1 << 20) == 0 {
                format!("{}M", size >> 20)
            } else {
                format!("{}k", size >> 10)
            });
            if let Some(p) = paddr {
                params.push(format!("paddr: {}", hex(*p)));
            }
            if !fill.is_empty() {
                let items: Vec<String> = fill.iter().map(|f| format!("{{{f}}}")).collect();
                params.push(format!("fill: [{}]", items.join(", ")));
            }
        }
        ObjectKind::Tcb(t) => {
            for (key, value, as_hex) in [
                ("addr", t.addr, true),
                ("ip", t.ip, true),
                ("sp", t.sp, true),
                ("prio", t.prio, false),
                ("max_prio", t.max_prio, false),
                ("affinity", t.affinity, false),
            ] {
                if let Some(v) = value {
                    params.push(format!("{key}: {}", if as_hex { hex(v) } else { v.to_string() }));
                }
            }
            if let Some(r) = t.resume {
                params.push(format!("resume: {}", flag(r)));
            }
            if let Some(d) = t.fpu_disabled {
                params.push(format!("fpu_disabled: {}", flag(d)));
            }
            for (key, value) in [("dom", t.dom), ("fault_ep", t.fault_ep)] {
                if let Some(v) = value {
                    params.push(format!("{key}: {v}"));
                }
            }
            if !t.init.is_empty() {
                let items: Vec<String> = t.init.iter().map(u64::to_string).collect();
                params.push(format!("init: [{}]", items.join(", ")));
            }
            if let Some(elf) = &t.elf {
                params.push(format!("elf: {elf}"));
            }
            if let Some(lifetime) = t.lifetime {
                params.push(format!("lifetime: {}", lifetime.keyword()));
                if let Lifetime::RestartEvery { ms } = lifetime {
                    params.push(format!("restart_ms: {ms}"));
                }
            }
            if t.ends_run {
                params.push("ends_run: True".into());
            }
            if t.quiet {
                params.push("quiet: True".into());
            }
            if t.reads_audit {
                params.push("reads_audit: True".into());
            }
            if let Some(pages) = t.stack_pages {
                params.push(format!("stack_pages: {pages}"));
            }
        }
        ObjectKind::IoPorts { first, last } => {
            params.push(format!("ports: [{}..{}]", hex(*first), hex(*last)))
        }
        ObjectKind::AsidPool { asid_high: Some(h) } => params.push(format!("asid_high: {}", hex(*h))),
        ObjectKind::SchedContext { period, budget, data, size_bits } => {
            for (key, value) in [("period", period), ("budget", budget), ("data", data)] {
                if let Some(v) = value {
                    params.push(format!("{key}: {v}"));
                }
            }
            if let Some(b) = size_bits {
                params.push(format!("{b} bits"));
            }
        }
        ObjectKind::IoApicIrq { ioapic, pin, level, polarity } => {
            params.push(format!("ioapic_num: {ioapic}"));
            params.push(format!("ioapic_pin: {pin}"));
            params.push(format!("ioapic_level: {level}"));
            params.push(format!("ioapic_polarity: {polarity}"));
        }
        ObjectKind::MsiIrq { handle, bus, dev, fun } => {
            params.push(format!("msi_handle: {handle}"));
            params.push(format!("msi_pci_bus: {bus}"));
            params.push(format!("msi_pci_dev: {dev}"));
            params.push(format!("msi_pci_fun: {fun}"));
        }
        ObjectKind::IoDevice { domain_id, bus, dev, fun } => {
            params.push(format!("domainID: {domain_id}"));
            params.push(format!("{bus}:{dev}.{fun}"));
        }
        ObjectKind::IoPageTable { level } => params.push(format!("level: {level}")),
        ObjectKind::Endpoint
        | ObjectKind::Notification
        | ObjectKind::PageTable
        | ObjectKind::PageDirectory
        | ObjectKind::Pdpt
        | ObjectKind::Pml4
        | ObjectKind::Irq
        | ObjectKind::AsidPool { asid_high: None }
        | ObjectKind::Vcpu
        | ObjectKind::EptTable { .. }
        | ObjectKind::Reply => {}
    }
    params
}

/// `{a, f[], g[2]}`: the name of an array stands for all of it, written `f[]`.
fn cover(objects: &[ObjRef], arrays: &BTreeMap<&str, bool>) -> String {
    let names: Vec<String> = objects
        .iter()
        .map(|r| match r.index {
            None if arrays.get(r.name.as_str()) == Some(&true) => format!("{}[]", r.name),
            _ => r.to_string(),
        })
        .collect();
    format!(" {{{}}}", names.join(", "))
}

/// Writes `spec` in the canonical text form.
pub fn write(spec: &Spec) -> String {
    let mut out = String::new();
    // Which names are arrays, and which untyped declarations carry their cover inline.
    let arrays: BTreeMap<&str, bool> =
        spec.objects.iter().map(|o| (o.name.as_str(), o.count.is_some())).collect();
    let _ = writeln!(out, "arch {}", spec.arch);
    let _ = writeln!(out, "\nobjects {{");
    for o in &spec.objects {
        let count = o.count.map(|n| format!("[{n}]")).unwrap_or_default();
        let _ = write!(out, "  {}{count} = {}", o.name, o.kind.keyword());
        let params = params(&o.kind);
        if !params.is_empty() {
            let _ = write!(out, " ({})", params.join(", "));
        }
        if o.count.is_none()
            && let Some(objects) = spec.covers.get(&ObjRef::named(&o.name))
            && !objects.is_empty()
        {
            out.push_str(&cover(objects, &arrays));
        }
        out.push('\n');
    }
    // Covers of elements of arrays of untypeds (and any other), as declarations again.
    for (untyped, objects) in &spec.covers {
        let inline = untyped.index.is_none() && arrays.get(untyped.name.as_str()) == Some(&false);
        if inline || objects.is_empty() {
            continue;
        }
        let kind = spec.objects.iter().find(|o| o.name == untyped.name).map(|o| &o.kind);
        let params = kind.map(params).unwrap_or_default();
        let params = if params.is_empty() { String::new() } else { format!(" ({})", params.join(", ")) };
        let _ = writeln!(out, "  {untyped} = ut{params}{}", cover(objects, &arrays));
    }
    let _ = writeln!(out, "}}\n\ncaps {{");
    for (container, slots) in &spec.caps {
        let _ = writeln!(out, "  {container} {{");
        for (slot, cap) in slots {
            let target = match &cap.target {
                Target::Object(r) => r.to_string(),
                Target::IrqControl => "irq_control".into(),
                Target::AsidControl => "asid_control".into(),
                Target::IoSpaceMaster => "io_space_master".into(),
                Target::Domain => "domain".into(),
                Target::SchedControl => "sched_control".into(),
            };
            let _ = write!(out, "    {slot}: {target}");
            let p = &cap.params;
            let mut params: Vec<String> = Vec::new();
            if !p.rights.is_empty() {
                params.push(p.rights.to_string());
            }
            for (key, value) in [("badge", p.badge), ("guard", p.guard), ("guard_size", p.guard_size)] {
                if value != 0 {
                    params.push(format!("{key}: {value}"));
                }
            }
            if p.uncached {
                params.push("uncached".into());
            }
            if let Some((h, l)) = p.asid {
                params.push(format!("asid: ({}, {})", hex(h), hex(l)));
            }
            if let Some(CapRef { object, slot }) = &p.mapping {
                params.push(format!("mapping: ({object}, {slot})"));
            }
            if p.reply {
                params.push("reply".into());
            }
            if p.master_reply {
                params.push("master_reply".into());
            }
            if let Some(c) = p.core {
                params.push(format!("core: {c}"));
            }
            if !params.is_empty() {
                let _ = write!(out, " ({})", params.join(", "));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    if !spec.cdt.is_empty() {
        let mut children: BTreeMap<&CapRef, Vec<&CapRef>> = BTreeMap::new();
        for (child, parent) in &spec.cdt {
            children.entry(parent).or_default().push(child);
        }
        let _ = writeln!(out, "\ncdt {{");
        for (parent, children) in children {
            let _ = writeln!(out, "  {parent} {{");
            for child in children {
                let _ = writeln!(out, "    {child}");
            }
            let _ = writeln!(out, "  }}");
        }
        let _ = writeln!(out, "}}");
    }
    let _ = writeln!(out, "\nirq maps {{");
    for (irq, object) in &spec.irqs {
        let _ = writeln!(out, "  {irq}: {object}");
    }
    let _ = writeln!(out, "}}");
    if let Some(d) = &spec.domains {
        let _ = writeln!(out, "\ndomains {{");
        if !d.schedule.is_empty() {
            let items: Vec<String> =
                d.schedule.iter().map(|(dom, time)| format!("({dom}, {time})")).collect();
            let _ = writeln!(out, "  schedule: [{}]", items.join(", "));
        }
        match d.start {
            Some(s) => {
                let _ = writeln!(out, "  domain_set_start: {s}");
            }
            None => {
                let _ = writeln!(out, "  domain_set_start: no_start");
            }
        }
        let _ = writeln!(out, "  index_shift: {}", d.index_shift);
        let _ = writeln!(out, "}}");
    }
    out
}
