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
/// Where shared regions start in every component's address space: the second 512 GiB
/// (PML4 entry 1), away from the program (entry 0) and the stack and IPC buffer (entry 255).
pub const REGION_BASE: u64 = 0x80_0000_0000;
/// How much address space regions may take together, one page directory's worth.
pub const REGION_WINDOW: u64 = 1 << 30;

/// Where a shared region lives: the same address in every component that maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPlace {
    /// The region's name.
    pub name: String,
    /// Its first virtual address.
    pub vaddr: u64,
    /// Its size in 4 KiB pages.
    pub pages: u64,
}

/// The address of every region, in declaration order (by name), each followed by one
/// unmapped guard page. Regions that do not fit the window are left out; `system::check`
/// reports them.
pub fn region_layout(file: &SystemFile) -> Vec<RegionPlace> {
    let mut places = Vec::new();
    let mut offset = 0;
    for (name, r) in &file.regions {
        let pages = parse_size(r.size.get_ref()).unwrap_or(4096) / 4096;
        if offset + pages * 4096 > REGION_WINDOW {
            break;
        }
        places.push(RegionPlace { name: name.get_ref().clone(), vaddr: REGION_BASE + offset, pages });
        offset += (pages + 1) * 4096;
    }
    places
}

/// Maps every region page into the VSpace of each component that maps it, as capDL does:
/// frame capabilities in page-table slots, page tables in page-directory slots, and so on up
/// to the component's PML4. Rights: `r` read, `rw` read and write, `rx` read and grant, which
/// the loader maps executable (seL4's capDL reads `X` as grant).
fn map_regions(file: &SystemFile, spec: &mut Spec) {
    let places = region_layout(file);
    // component -> (vaddr, region, page, mode)
    let mut pages: BTreeMap<String, Vec<(u64, String, u32, String)>> = BTreeMap::new();
    for place in &places {
        let Some(region) = file.regions.iter().find(|(k, _)| k.get_ref() == &place.name).map(|(_, r)| r)
        else {
            continue;
        };
        for (component, mode) in region.map.get_ref() {
            for page in 0..place.pages {
                pages.entry(component.get_ref().clone()).or_default().push((
                    place.vaddr + page * 4096,
                    place.name.clone(),
                    page as u32,
                    mode.get_ref().clone(),
                ));
            }
        }
    }
    for (component, list) in pages {
        let pdpt = format!("{component}_regions_pdpt");
        let pd = format!("{component}_regions_pd");
        spec.objects.push(Object { name: pdpt.clone(), count: None, kind: ObjectKind::Pdpt });
        spec.objects.push(Object { name: pd.clone(), count: None, kind: ObjectKind::PageDirectory });
        let slot_of = |vaddr: u64, shift: u32| (vaddr >> shift) & 511;
        spec.caps
            .entry(ObjRef::named(&format!("{component}_vspace")))
            .or_default()
            .insert(slot_of(REGION_BASE, 39), cap(&pdpt, None, CapParams::default()));
        spec.caps
            .entry(ObjRef::named(&pdpt))
            .or_default()
            .insert(slot_of(REGION_BASE, 30), cap(&pd, None, CapParams::default()));
        for (vaddr, region, page, mode) in list {
            let pt = format!("{component}_regions_pt{}", slot_of(vaddr, 21));
            if !spec.caps.contains_key(&ObjRef::named(&pt)) {
                spec.objects.push(Object { name: pt.clone(), count: None, kind: ObjectKind::PageTable });
                spec.caps
                    .entry(ObjRef::named(&pd))
                    .or_default()
                    .insert(slot_of(vaddr, 21), cap(&pt, None, CapParams::default()));
            }
            let params = CapParams {
                rights: rights(true, mode.contains('w'), mode.contains('x')),
                ..CapParams::default()
            };
            spec.caps
                .entry(ObjRef::named(&pt))
                .or_default()
                .insert(slot_of(vaddr, 12), cap(&region, Some(page), params));
        }
    }
}

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
        spec.objects.push(Object {
            name: name.get_ref().clone(),
            count: Some((parse_size(r.size.get_ref()).unwrap_or(4096) / 4096) as u32),
            kind: ObjectKind::Frame { size: 4096, paddr: None, fill: Vec::new() },
        });
    }
    map_regions(file, &mut spec);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every object a component can name: what its TCB holds, and transitively what its
    /// CNode and its address-space tables hold.
    fn reach(spec: &Spec, component: &str) -> BTreeSet<ObjRef> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![ObjRef::named(&format!("{component}_tcb"))];
        while let Some(at) = todo.pop() {
            if !seen.insert(at.clone()) {
                continue;
            }
            for cap in spec.caps.get(&at).into_iter().flat_map(|slots| slots.values()) {
                if let Target::Object(target) = &cap.target {
                    todo.push(target.clone());
                }
            }
        }
        seen
    }

    const SYSTEM: &str = r#"
[components.a]
[components.b]
[components.c]
[channels.ab]
kind = "endpoint"
server = "b"
clients = ["a"]
[regions.bc]
size = "8K"
map = { b = "rw", c = "r" }
"#;

    #[test]
    fn components_share_exactly_what_the_description_connects() {
        let spec = compile(&crate::system::load(SYSTEM).unwrap()).spec;
        let (a, b, c) = (reach(&spec, "a"), reach(&spec, "b"), reach(&spec, "c"));
        let names = |set: BTreeSet<&ObjRef>| set.into_iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(names(a.intersection(&b).collect()), ["ab"]);
        assert_eq!(names(b.intersection(&c).collect()), ["bc[0]", "bc[1]"]);
        // No channel and no region between a and c: nothing either can name is the other's.
        assert!(a.is_disjoint(&c), "a and c share {:?}", names(a.intersection(&c).collect()));
    }

    #[test]
    fn regions_sit_at_the_same_address_everywhere_with_guard_pages() {
        let text = format!("{SYSTEM}[regions.next]\nsize = \"4K\"\nmap = {{ a = \"r\", c = \"rx\" }}\n");
        let file = crate::system::load(&text).unwrap();
        let layout = region_layout(&file);
        assert_eq!(layout[0], RegionPlace { name: "bc".into(), vaddr: REGION_BASE, pages: 2 });
        assert_eq!(layout[1], RegionPlace { name: "next".into(), vaddr: REGION_BASE + 3 * 4096, pages: 1 });
        let spec = compile(&file).spec;
        let pt = |c: &str| spec.caps.get(&ObjRef::named(&format!("{c}_regions_pt0"))).unwrap();
        // `next` is page 3 of the window in both a and c; c maps it executable (grant).
        assert_eq!(pt("a")[&3].target, Target::Object(ObjRef { name: "next".into(), index: Some(0) }));
        assert!(!pt("a")[&3].params.rights.grant && pt("c")[&3].params.rights.grant);
        assert!(pt("b")[&1].params.rights.write && !pt("c")[&1].params.rights.write);
        assert!(!pt("c").contains_key(&2), "the guard page is mapped");
        assert_eq!(cleave_capdl::validate::validate(&spec), Vec::new());
    }
}
