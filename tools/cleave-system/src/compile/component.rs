//! The components a description declares: each one's thread, CNode and address space, and
//! the capabilities and mappings its channels, regions and devices give it.

use super::{
    CapTable, DEFAULT_PRIORITY, Mapping, cap, component_objects, lifetime_of, map_large, map_pages, rights,
};
use crate::layout::{
    BACKEND_IRQ_BADGE, MmioPlace, VMM_DISK_BADGE, VMM_NET_BADGE, device_layout, disk_slices, dma_layout,
    net_ports, region_layout, serves_guest_io, vmm_name,
};
use crate::schema::{SystemFile, parse_ports, parse_size, shared_regions};
use cleave_abi::layout::{LARGE_PAGE_SIZE, PAGE_SIZE};
use cleave_capdl::model::{Cap, CapParams, ObjRef, Object, ObjectKind, Spec, TcbParams};
use std::collections::BTreeMap;

/// Every region page, in the VSpace of each component that maps it. Rights: `r` read, `rw`
/// read and write, `rx` read and grant, which the loader maps executable (seL4's capDL
/// reads `X` as grant).
fn region_mappings(file: &SystemFile) -> Vec<Mapping> {
    let regions = shared_regions(file);
    let mut out = Vec::new();
    for place in region_layout(file) {
        let Some(region) = regions.iter().find(|r| r.name == place.name) else { continue };
        for (component, mode) in &region.map {
            for page in 0..place.pages {
                out.push((
                    component.clone(),
                    place.vaddr + page * PAGE_SIZE,
                    ObjRef { name: place.name.clone(), index: Some(page as u32) },
                    rights(true, mode.contains('w'), mode.contains('x')),
                ));
            }
        }
    }
    out
}

/// Per declared component, in name order, its objects (`component_objects`); then per
/// channel its endpoint or notification, received by the server and sent to by each
/// client with its badge; each region's frames, mapped where the layout puts them; each
/// device's IRQ handler and notification, I/O ports and MMIO frames, all for its owner.
/// Capabilities go into `slots` and `tables` in that order, from slot 1 up.
pub(super) fn components(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) {
    // The next free slot of `component`'s CNode gets `cap`, listed as `name`: `what`.
    let mut add = |component: &str, name: String, what: String, cap: Cap| {
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
            elf: Some(c.program(n)),
            lifetime: lifetime_of(c),
            ends_run: c.ends_run.as_ref().is_some_and(|e| *e.get_ref()),
            quiet: c.console.as_ref().is_some_and(|e| !*e.get_ref()),
            // The toolstack answers `cleave ctl audit` from the kernel's audit log.
            reads_audit: c.package(n) == "toolstack",
            // `check` holds it to whole pages within the loader's limit.
            stack_pages: c.stack.as_ref().and_then(|s| parse_size(s.get_ref())).map(|b| b / PAGE_SIZE),
            ..TcbParams::default()
        };
        component_objects(spec, n, tcb, &[]);
        // A backend waits on one notification: its clients' VMMs signal it (bit `i` for
        // the `i`th guest it serves) and so does its device's interrupt.
        if serves_guest_io(file, n) {
            let signal = format!("{n}_signal");
            spec.objects.push(Object { name: signal.clone(), count: None, kind: ObjectKind::Notification });
            add(
                n,
                "signal".into(),
                "notification (wait): its guests' VMMs and its device's interrupt".into(),
                cap(&signal, None, CapParams { rights: rights(true, false, false), ..CapParams::default() }),
            );
        }
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
        );
        for (i, client) in ch.clients.get_ref().iter().enumerate() {
            let badge = ch.badge_of(i, client.get_ref());
            let params =
                CapParams { rights: rights(false, true, ch.grants()), badge, ..CapParams::default() };
            add(
                client.get_ref(),
                n.clone(),
                format!("{} (send, badge {badge})", ch.kind.get_ref()),
                cap(n, None, params),
            );
        }
    }
    for place in region_layout(file) {
        spec.objects.push(Object {
            name: place.name,
            count: Some(place.pages as u32),
            kind: ObjectKind::Frame { size: PAGE_SIZE, paddr: None, fill: Vec::new() },
        });
    }
    for (name, d) in &file.devices {
        let n = name.get_ref();
        let owner = d.owner.get_ref();
        if let Some(irq) = &d.irq {
            spec.objects.push(Object { name: format!("{n}_irq"), count: None, kind: ObjectKind::Irq });
            // The interrupt signals the owner's own notification if it is a backend, else
            // one of its own the owner waits on.
            let (signal, badge) = if serves_guest_io(file, owner) {
                (format!("{owner}_signal"), BACKEND_IRQ_BADGE)
            } else {
                spec.objects.push(Object {
                    name: format!("{n}_irq_signal"),
                    count: None,
                    kind: ObjectKind::Notification,
                });
                (format!("{n}_irq_signal"), 1)
            };
            let mut irq_slots = BTreeMap::new();
            irq_slots.insert(
                0,
                cap(
                    &signal,
                    None,
                    CapParams { rights: rights(false, true, false), badge, ..CapParams::default() },
                ),
            );
            spec.caps.insert(ObjRef::named(&format!("{n}_irq")), irq_slots);
            spec.irqs.insert(*irq.get_ref(), ObjRef::named(&format!("{n}_irq")));
            add(
                owner,
                format!("{n}_irq"),
                format!("IRQ {} handler", irq.get_ref()),
                cap(&format!("{n}_irq"), None, CapParams::default()),
            );
            if badge == 1 {
                add(
                    owner,
                    format!("{n}_irq_signal"),
                    "IRQ notification (wait)".into(),
                    cap(
                        &format!("{n}_irq_signal"),
                        None,
                        CapParams { rights: rights(true, false, false), ..CapParams::default() },
                    ),
                );
            }
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
            );
        }
    }
    // DMA memory: 2 MiB frames, mapped into the owner and held by it so that it can ask
    // each one's physical address.
    for place in dma_layout(file) {
        let frames = format!("{}_dma", place.device);
        spec.objects.push(Object {
            name: frames.clone(),
            count: Some(place.frames as u32),
            kind: ObjectKind::Frame { size: LARGE_PAGE_SIZE, paddr: None, fill: Vec::new() },
        });
        for k in 0..place.frames as u32 {
            add(
                &place.owner,
                format!("{frames}{k}"),
                format!(
                    "DMA frame {k} of device `{}` (2 MiB, its physical address to program DMA)",
                    place.device
                ),
                cap(&frames, Some(k), CapParams::default()),
            );
        }
        let rw = rights(true, true, false);
        map_large(
            spec,
            &place.owner,
            place.vaddr,
            (0..place.frames as u32).map(|k| (ObjRef { name: frames.clone(), index: Some(k) }, rw)).collect(),
        );
    }
    // A backend signals each guest's VMM (its bound notification) with the bit of what it
    // serves (a component serves disks or networks, not both: `system::check`).
    let served = disk_slices(file)
        .into_iter()
        .map(|s| (s.backend, s.guest, VMM_DISK_BADGE, "disk"))
        .chain(net_ports(file).into_iter().map(|p| (p.backend, p.guest, VMM_NET_BADGE, "network")));
    for (backend, guest, badge, what) in served {
        let vmm = vmm_name(&guest);
        add(
            &backend,
            format!("{vmm}_signal"),
            format!("notification (send, badge {badge}): guest `{guest}`'s VMM, for its {what}"),
            cap(
                &format!("{vmm}_signal"),
                None,
                CapParams { rights: rights(false, true, false), badge, ..CapParams::default() },
            ),
        );
    }
    let mut mappings = region_mappings(file);
    for MmioPlace { device, index: i, vaddr, pages, paddr } in device_layout(file) {
        let owner = file.devices.iter().find(|(k, _)| k.get_ref() == &device).map(|(_, d)| d.owner.get_ref());
        for page in 0..pages {
            let name = format!("{device}_mmio{i}_{page}");
            spec.objects.push(Object {
                name: name.clone(),
                count: None,
                kind: ObjectKind::Frame {
                    size: PAGE_SIZE,
                    paddr: Some(paddr + page * PAGE_SIZE),
                    fill: Vec::new(),
                },
            });
            if let Some(owner) = owner {
                mappings.push((
                    owner.clone(),
                    vaddr + page * PAGE_SIZE,
                    ObjRef::named(&name),
                    rights(true, true, false),
                ));
            }
        }
    }
    map_pages(spec, mappings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{SYSTEM, reach};
    use crate::layout::{DEVICE_BASE, REGION_BASE, RegionPlace};
    use cleave_capdl::model::Target;

    #[test]
    fn a_component_kept_off_the_console_is_quiet_in_the_spec() {
        let text = SYSTEM.replace("[components.b]\n", "[components.b]\nconsole = false\n");
        let spec = compile(&crate::system::load(&text).unwrap()).spec;
        let quiet =
            |name: &str| match spec.objects.iter().find(|o| o.name == format!("{name}_tcb")).map(|o| &o.kind)
            {
                Some(cleave_capdl::model::ObjectKind::Tcb(t)) => t.quiet,
                other => panic!("{name}_tcb: {other:?}"),
            };
        assert!(quiet("b") && !quiet("a") && !quiet("c"));
        assert!(cleave_capdl::text::write(&spec).contains("quiet: True"));
    }

    #[test]
    fn regions_sit_at_the_same_address_everywhere_with_guard_pages() {
        let text = format!("{SYSTEM}[regions.next]\nsize = \"4K\"\nmap = {{ a = \"r\", c = \"rx\" }}\n");
        let file = crate::system::load(&text).unwrap();
        let layout = region_layout(&file);
        assert_eq!(layout[0], RegionPlace { name: "bc".into(), vaddr: REGION_BASE, pages: 2 });
        assert_eq!(layout[1], RegionPlace { name: "next".into(), vaddr: REGION_BASE + 3 * 4096, pages: 1 });
        let spec = compile(&file).spec;
        let pt = |c: &str| spec.caps.get(&ObjRef::named(&format!("{c}_map_pt0_0"))).unwrap();
        // `next` is page 3 of the window in both a and c; c maps it executable (grant).
        assert_eq!(pt("a")[&3].target, Target::Object(ObjRef { name: "next".into(), index: Some(0) }));
        assert!(!pt("a")[&3].params.rights.grant && pt("c")[&3].params.rights.grant);
        assert!(pt("b")[&1].params.rights.write && !pt("c")[&1].params.rights.write);
        assert!(!pt("c").contains_key(&2), "the guard page is mapped");
        assert_eq!(cleave_capdl::validate::validate(&spec), Vec::new());
    }

    #[test]
    fn device_mmio_is_mapped_into_its_owner_only() {
        let text = format!(
            "{SYSTEM}[devices.vga]\nowner = \"c\"\nmmio = [{{ base = 0xfebf0000, size = \"8K\" }}]\n"
        );
        let file = crate::system::load(&text).unwrap();
        let layout = device_layout(&file);
        assert_eq!(
            layout,
            [MmioPlace { device: "vga".into(), index: 0, vaddr: DEVICE_BASE, pages: 2, paddr: 0xfebf_0000 }]
        );
        let spec = compile(&file).spec;
        let frame = spec.objects.iter().find(|o| o.name == "vga_mmio0_1").unwrap();
        assert_eq!(frame.kind, ObjectKind::Frame { size: 4096, paddr: Some(0xfebf_1000), fill: Vec::new() });
        // DEVICE_BASE is PDPT slot 1 of PML4 slot 1; its pages are PT slots 0 and 1.
        let pt = spec.caps.get(&ObjRef::named("c_map_pt1_0")).unwrap();
        assert_eq!(pt[&1].target, Target::Object(ObjRef::named("vga_mmio0_1")));
        assert!(pt[&1].params.rights.write);
        let (a, c) = (reach(&spec, "a"), reach(&spec, "c"));
        assert!(c.contains(&ObjRef::named("vga_mmio0_0")) && !a.contains(&ObjRef::named("vga_mmio0_0")));
        assert_eq!(cleave_capdl::validate::validate(&spec), Vec::new());
    }

    #[test]
    fn each_client_gets_its_own_ring_shared_with_the_server_only() {
        let text = format!(
            "{SYSTEM}[channels.ring]\nkind = \"endpoint\"\nserver = \"b\"\nclients = [\"a\", \"c\"]\nring = \"8K\"\n"
        );
        let file = crate::system::load(&text).unwrap();
        let names: Vec<String> = region_layout(&file).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["bc", "ring-a", "ring-c"], "declared regions first, then rings");
        let spec = compile(&file).spec;
        let (a, b, c) = (reach(&spec, "a"), reach(&spec, "b"), reach(&spec, "c"));
        let ring_a = ObjRef { name: "ring-a".into(), index: Some(1) };
        let ring_c = ObjRef { name: "ring-c".into(), index: Some(0) };
        assert!(a.contains(&ring_a) && b.contains(&ring_a) && !c.contains(&ring_a));
        assert!(c.contains(&ring_c) && b.contains(&ring_c) && !a.contains(&ring_c));
        assert_eq!(cleave_capdl::validate::validate(&spec), Vec::new());
    }
}
