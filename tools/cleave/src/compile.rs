//! From a checked `system.toml` to a capDL specification of its authority: per component a
//! TCB, a CNode and a VSpace root; an object per channel, region and device; and in each
//! component's CNode exactly the capabilities its description gives it, in a fixed order.

use crate::system::{SystemFile, parse_ports, parse_size};
use cleave_capdl::model::{Cap, CapParams, ObjRef, Object, ObjectKind, Rights, Spec, Target, TcbParams};
use std::collections::BTreeMap;

/// Radix of every component's CNode (256 slots).
pub const COMPONENT_CNODE_BITS: u32 = 8;
/// Default component priority.
pub const DEFAULT_PRIORITY: u64 = 100;

/// What a component finds in its CNode, by slot: the capability names its code uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapTable {
    /// (slot, name, what) in slot order.
    pub entries: Vec<(u64, String, String)>,
}

/// The compiled system.
#[derive(Debug)]
pub struct Compiled {
    /// The capDL specification.
    pub spec: Spec,
    /// Per component, its capability table.
    pub tables: BTreeMap<String, CapTable>,
}

fn cap(target: &str, index: Option<u32>, params: CapParams) -> Cap {
    Cap { target: Target::Object(ObjRef { name: target.into(), index }), params }
}

fn rights(read: bool, write: bool, grant: bool) -> Rights {
    Rights { read, write, grant, grant_reply: false }
}

/// Compiles a checked description.
pub fn compile(file: &SystemFile) -> Compiled {
    let mut spec = Spec { arch: "x86_64".into(), ..Spec::default() };
    let mut slots: BTreeMap<String, BTreeMap<u64, Cap>> = BTreeMap::new();
    let mut tables: BTreeMap<String, CapTable> = BTreeMap::new();
    let mut add = |component: &str,
                   name: String,
                   what: String,
                   cap: Cap,
                   slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>| {
        let table = tables.entry(component.to_string()).or_default();
        let slot = table.entries.last().map_or(1, |e| e.0 + 1);
        table.entries.push((slot, name, what));
        slots.entry(component.to_string()).or_default().insert(slot, cap);
    };

    for (name, c) in &file.components {
        let n = name.get_ref();
        let tcb = TcbParams {
            prio: Some(c.priority.as_ref().map_or(DEFAULT_PRIORITY, |p| *p.get_ref())),
            max_prio: Some(0),
            resume: Some(true),
            elf: Some(c.binary.as_ref().map_or_else(|| n.clone(), |b| b.get_ref().clone())),
            ..TcbParams::default()
        };
        spec.objects.push(Object { name: format!("{n}_tcb"), count: None, kind: ObjectKind::Tcb(tcb) });
        spec.objects.push(Object {
            name: format!("{n}_cnode"),
            count: None,
            kind: ObjectKind::CNode { size_bits: COMPONENT_CNODE_BITS },
        });
        spec.objects.push(Object { name: format!("{n}_vspace"), count: None, kind: ObjectKind::Pml4 });
        let mut tcb_slots = BTreeMap::new();
        let guard = CapParams { guard_size: u64::from(64 - COMPONENT_CNODE_BITS), ..CapParams::default() };
        tcb_slots.insert(0, cap(&format!("{n}_cnode"), None, guard));
        tcb_slots.insert(1, cap(&format!("{n}_vspace"), None, CapParams::default()));
        spec.caps.insert(ObjRef::named(&format!("{n}_tcb")), tcb_slots);
    }
    for (name, ch) in &file.channels {
        let n = name.get_ref();
        let endpoint = ch.kind.get_ref() == "endpoint";
        spec.objects.push(Object {
            name: n.clone(),
            count: None,
            kind: if endpoint { ObjectKind::Endpoint } else { ObjectKind::Notification },
        });
        add(
            ch.server.get_ref(),
            n.clone(),
            format!("{} (receive)", ch.kind.get_ref()),
            cap(n, None, CapParams { rights: rights(true, false, false), ..CapParams::default() }),
            &mut slots,
        );
        for (i, client) in ch.clients.get_ref().iter().enumerate() {
            let badge = ch
                .badges
                .iter()
                .find(|(k, _)| k.get_ref() == client.get_ref())
                .map_or(i as u64 + 1, |(_, b)| *b.get_ref());
            let params = CapParams { rights: rights(false, true, ch.grant), badge, ..CapParams::default() };
            add(
                client.get_ref(),
                n.clone(),
                format!("{} (send, badge {badge})", ch.kind.get_ref()),
                cap(n, None, params),
                &mut slots,
            );
        }
    }
    for (name, r) in &file.regions {
        let n = name.get_ref();
        let pages = parse_size(r.size.get_ref()).unwrap_or(4096) / 4096;
        spec.objects.push(Object {
            name: n.clone(),
            count: Some(pages as u32),
            kind: ObjectKind::Frame { size: 4096, paddr: None, fill: Vec::new() },
        });
        for (component, mode) in r.map.get_ref() {
            let m = mode.get_ref();
            for page in 0..pages as u32 {
                let params =
                    CapParams { rights: rights(true, m.contains('w'), false), ..CapParams::default() };
                add(
                    component.get_ref(),
                    format!("{n}[{page}]"),
                    format!("region page ({m})"),
                    cap(n, Some(page), params),
                    &mut slots,
                );
            }
        }
    }
    for (name, d) in &file.devices {
        let n = name.get_ref();
        let owner = d.owner.get_ref();
        if let Some(irq) = &d.irq {
            spec.objects.push(Object { name: format!("{n}_irq"), count: None, kind: ObjectKind::Irq });
            spec.objects.push(Object {
                name: format!("{n}_irq_signal"),
                count: None,
                kind: ObjectKind::Notification,
            });
            let mut irq_slots = BTreeMap::new();
            irq_slots.insert(
                0,
                cap(
                    &format!("{n}_irq_signal"),
                    None,
                    CapParams { rights: rights(false, true, false), badge: 1, ..CapParams::default() },
                ),
            );
            spec.caps.insert(ObjRef::named(&format!("{n}_irq")), irq_slots);
            spec.irqs.insert(*irq.get_ref(), ObjRef::named(&format!("{n}_irq")));
            add(
                owner,
                format!("{n}_irq"),
                format!("IRQ {} handler", irq.get_ref()),
                cap(&format!("{n}_irq"), None, CapParams::default()),
                &mut slots,
            );
            add(
                owner,
                format!("{n}_irq_signal"),
                "IRQ notification (wait)".into(),
                cap(
                    &format!("{n}_irq_signal"),
                    None,
                    CapParams { rights: rights(true, false, false), ..CapParams::default() },
                ),
                &mut slots,
            );
        }
        if let Some((first, last)) = d.io_ports.as_ref().and_then(|p| parse_ports(p.get_ref())) {
            spec.objects.push(Object {
                name: format!("{n}_ports"),
                count: None,
                kind: ObjectKind::IoPorts { first, last },
            });
            add(
                owner,
                format!("{n}_ports"),
                format!("I/O ports {first:#x}-{last:#x}"),
                cap(&format!("{n}_ports"), None, CapParams::default()),
                &mut slots,
            );
        }
        for (i, m) in d.mmio.iter().enumerate() {
            let pages = parse_size(m.size.get_ref()).unwrap_or(4096) / 4096;
            let object = format!("{n}_mmio{i}");
            for page in 0..pages {
                let paddr = m.base.get_ref() + page * 4096;
                spec.objects.push(Object {
                    name: format!("{object}_{page}"),
                    count: None,
                    kind: ObjectKind::Frame { size: 4096, paddr: Some(paddr), fill: Vec::new() },
                });
                let params =
                    CapParams { rights: rights(true, true, false), uncached: true, ..CapParams::default() };
                add(
                    owner,
                    format!("{object}_{page}"),
                    format!("MMIO page at {paddr:#x}"),
                    cap(&format!("{object}_{page}"), None, params),
                    &mut slots,
                );
            }
        }
    }
    for (component, caps) in slots {
        spec.caps.insert(ObjRef::named(&format!("{component}_cnode")), caps);
    }
    Compiled { spec, tables }
}
