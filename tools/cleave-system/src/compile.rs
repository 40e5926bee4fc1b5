//! From a checked `system.toml` to a capDL specification of its authority: per component a
//! TCB, a CNode and a VSpace root; an object per channel, region and device; and in each
//! component's CNode exactly the capabilities its description gives it, in a fixed order.

use crate::layout::{
    CLOCK_BADGE, COMPONENT_CNODE_BITS, DEFAULT_RESTART_MEMORY, DISPOSABLE_UNTYPED_BITS, GUEST_RAM_BASE,
    GUEST_RAM_MAX, MmioPlace, PIT_IRQ, PIT_PORTS, REGION_BASE, SUPERVISOR, SUPERVISOR_PRIORITY, VMM_CONFIG,
    VMM_PROGRAM, VMM_SLOTS, device_layout, region_layout, vmm_config, vmm_name,
};
use crate::schema::{
    Component, Restart, SystemFile, parse_duration_ms, parse_ports, parse_size, shared_regions,
};
use cleave_capdl::model::{
    Cap, CapParams, Lifetime, ObjRef, Object, ObjectKind, Rights, Spec, Target, TcbParams,
};
use std::collections::BTreeMap;

/// Default component priority.
pub const DEFAULT_PRIORITY: u64 = 100;

/// A page to map: in whose VSpace, where, which frame, with what rights.
type Mapping = (String, u64, ObjRef, Rights);

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
                    place.vaddr + page * 4096,
                    ObjRef { name: place.name.clone(), index: Some(page as u32) },
                    rights(true, mode.contains('w'), mode.contains('x')),
                ));
            }
        }
    }
    out
}

/// Builds `mappings` the capDL way: frame capabilities in page-table slots, page tables
/// in page-directory slots, and so on up to each component's PML4 (slot 1, which covers
/// [`REGION_BASE`] and [`DEVICE_BASE`]).
fn map_pages(spec: &mut Spec, mappings: Vec<Mapping>) {
    let slot_of = |vaddr: u64, shift: u32| (vaddr >> shift) & 511;
    for (component, vaddr, frame, rights) in mappings {
        let pdpt = format!("{component}_map_pdpt");
        let pd = format!("{component}_map_pd{}", slot_of(vaddr, 30));
        let pt = format!("{component}_map_pt{}_{}", slot_of(vaddr, 30), slot_of(vaddr, 21));
        for (parent, shift, child, kind) in [
            (format!("{component}_vspace"), 39, &pdpt, ObjectKind::Pdpt),
            (pdpt.clone(), 30, &pd, ObjectKind::PageDirectory),
            (pd.clone(), 21, &pt, ObjectKind::PageTable),
        ] {
            let slots = spec.caps.entry(ObjRef::named(&parent)).or_default();
            if let std::collections::btree_map::Entry::Vacant(e) = slots.entry(slot_of(vaddr, shift)) {
                e.insert(cap(child, None, CapParams::default()));
                spec.objects.push(Object { name: child.clone(), count: None, kind });
            }
        }
        let params = CapParams { rights, ..CapParams::default() };
        spec.caps
            .entry(ObjRef::named(&pt))
            .or_default()
            .insert(slot_of(vaddr, 12), Cap { target: Target::Object(frame), params });
    }
}

/// TCB slots as seL4 numbers them (`cleave_capdl::model::TCB_SLOT_NAMES`): the fault
/// endpoint and the bound notification.
const FAULT_ENDPOINT_SLOT: u64 = cleave_capdl::binary::tcb_slot::FAULT_ENDPOINT as u64;
const BOUND_NOTIFICATION_SLOT: u64 = cleave_capdl::binary::tcb_slot::BOUND_NOTIFICATION as u64;

/// With any `lifetime = "disposable"` or `restart = …` component: the supervisor, a
/// component holding its own CNode (slot 1, to revoke and retype with), a notification the
/// disposable components and its clock signal (slot 2, also bound to its thread), and then:
///
/// - per disposable component, in name order, the untyped memory everything of that
///   component is made from: its TCB, CNode, VSpace and tables, the endpoints and
///   notifications it serves, and (by the loader) its program's pages, stack and IPC
///   buffer. Each disposable component gets the notification (`supervisor-done`) with
///   badge bit N for its N-th place;
/// - per restartable component (`restart = { every = … }` or `"per-request"`): its TCB;
///   its writable memory (`NAME_rw`: frames the loader puts its program's writable pages
///   and stack in) and a pristine copy (`NAME_pristine`, filled by the loader), both
///   mapped into the supervisor; the component's fault endpoint is the supervisor's
///   `faults` endpoint with badge N + 1 for its N-th place, so that a crash (and, per
///   request, the end of each request) reaches the supervisor;
/// - with any restartable component: the `faults` endpoint (receive) and the PIT (ports
///   0x40-0x43, IRQ 0, signalling the notification with [`CLOCK_BADGE`]) as its clock
///   (which disposable components with a `deadline` need too).
fn supervisor(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) -> Vec<RestartPlace> {
    let disposable: Vec<&String> =
        file.components.iter().filter(|(_, c)| c.is_disposable()).map(|(k, _)| k.get_ref()).collect();
    let restartable: Vec<(&String, u64, u64)> = file
        .components
        .iter()
        .filter_map(|(k, c)| match lifetime_of(c) {
            Some(l @ (Lifetime::RestartEvery { .. } | Lifetime::PerRequest)) => {
                let bytes =
                    c.memory.as_ref().and_then(|m| parse_size(m.get_ref())).unwrap_or(DEFAULT_RESTART_MEMORY);
                let ms = if let Lifetime::RestartEvery { ms } = l { ms } else { 0 };
                Some((k.get_ref(), ms, bytes.div_ceil(4096) * 4096))
            }
            _ => None,
        })
        .collect();
    if disposable.is_empty() && restartable.is_empty() {
        return Vec::new();
    }
    let n = SUPERVISOR;
    let tcb = TcbParams {
        prio: Some(SUPERVISOR_PRIORITY),
        max_prio: Some(0),
        resume: Some(true),
        elf: Some(n.into()),
        ..TcbParams::default()
    };
    let done = format!("{n}_done");
    component_objects(spec, n, tcb, &[(BOUND_NOTIFICATION_SLOT, cap(&done, None, CapParams::default()))]);
    spec.objects.push(Object { name: done.clone(), count: None, kind: ObjectKind::Notification });
    let mut entries = vec![
        (
            "cnode".to_string(),
            "its own CNode".to_string(),
            cap(&format!("{n}_cnode"), None, CapParams::default()),
        ),
        (
            "done".to_string(),
            "notification (wait): disposable components signal here".to_string(),
            cap(&done, None, CapParams { rights: rights(true, false, false), ..CapParams::default() }),
        ),
    ];
    let mut untyped_objects = Vec::new();
    for (i, d) in disposable.iter().enumerate() {
        let untyped = format!("{d}_untyped");
        // Everything of the component, and what it serves.
        let mut children: Vec<ObjRef> = spec
            .objects
            .iter()
            .filter(|o| o.name.starts_with(&format!("{d}_")))
            .flat_map(|o| match o.count {
                None => vec![ObjRef::named(&o.name)],
                Some(k) => (0..k).map(|j| ObjRef { name: o.name.clone(), index: Some(j) }).collect(),
            })
            .collect();
        for (name, ch) in &file.channels {
            if ch.server.get_ref() == *d {
                children.push(ObjRef::named(name.get_ref()));
            }
        }
        spec.covers.insert(ObjRef::named(&untyped), children);
        untyped_objects.push(Object {
            name: untyped.clone(),
            count: None,
            kind: ObjectKind::Untyped { size_bits: Some(DISPOSABLE_UNTYPED_BITS), paddr: None },
        });
        entries.push((
            format!("{d}-untyped"),
            format!("untyped {} KiB: all of `{d}`", (1u64 << DISPOSABLE_UNTYPED_BITS) >> 10),
            cap(&untyped, None, CapParams::default()),
        ));
        let table = tables.entry((*d).clone()).or_default();
        let slot = table.entries.last().map_or(1, |e| e.0 + 1);
        table.entries.push((
            slot,
            "supervisor-done".into(),
            format!("notification (signal, badge {})", 1u64 << i),
        ));
        let params = CapParams { rights: rights(false, true, false), badge: 1 << i, ..CapParams::default() };
        slots.entry((*d).clone()).or_default().insert(slot, cap(&done, None, params));
    }
    // An untyped comes before the objects made from it.
    spec.objects.splice(0..0, untyped_objects);
    let mut restarts = Vec::new();
    let mut mappings = Vec::new();
    let mut window = REGION_BASE;
    let faults = format!("{n}_faults");
    if !restartable.is_empty() {
        spec.objects.push(Object { name: faults.clone(), count: None, kind: ObjectKind::Endpoint });
        entries.push((
            "faults".into(),
            "endpoint (receive): the restartable components' faults and finished requests".into(),
            cap(&faults, None, CapParams { rights: rights(true, false, false), ..CapParams::default() }),
        ));
    }
    for (i, &(c, period_ms, bytes)) in restartable.iter().enumerate() {
        let badge = i as u64 + 1;
        let fault = CapParams { rights: rights(false, true, false), badge, ..CapParams::default() };
        spec.caps
            .entry(ObjRef::named(&format!("{c}_tcb")))
            .or_default()
            .insert(FAULT_ENDPOINT_SLOT, cap(&faults, None, fault));
        let pages = (bytes / 4096) as u32;
        for what in ["rw", "pristine"] {
            spec.objects.push(Object {
                name: format!("{c}_{what}"),
                count: Some(pages),
                kind: ObjectKind::Frame { size: 4096, paddr: None, fill: Vec::new() },
            });
        }
        let (memory, pristine) = (window, window + bytes + 4096);
        for page in 0..pages {
            let at = u64::from(page) * 4096;
            let frame = |what: &str| ObjRef { name: format!("{c}_{what}"), index: Some(page) };
            mappings.push((n.to_string(), memory + at, frame("rw"), rights(true, true, false)));
            mappings.push((n.to_string(), pristine + at, frame("pristine"), rights(true, false, false)));
        }
        window = pristine + bytes + 4096;
        let tcb_slot = entries.len() as u64 + 1;
        let policy = if period_ms == 0 {
            "rolled back after every request".to_string()
        } else {
            format!("restarted every {period_ms} ms")
        };
        entries.push((
            format!("{c}-tcb"),
            format!("TCB of `{c}` ({policy}; its faults come with badge {badge})"),
            cap(&format!("{c}_tcb"), None, CapParams::default()),
        ));
        restarts.push(RestartPlace {
            component: c.clone(),
            tcb_slot,
            memory,
            pristine,
            bytes,
            period_ms,
            badge,
        });
    }
    map_pages(spec, mappings);
    let deadlines = file.components.values().any(|c| c.deadline.is_some());
    if !restartable.is_empty() || deadlines {
        let (irq, ports) = (format!("{n}_clock"), format!("{n}_clock_ports"));
        spec.objects.push(Object { name: irq.clone(), count: None, kind: ObjectKind::Irq });
        spec.objects.push(Object {
            name: ports.clone(),
            count: None,
            kind: ObjectKind::IoPorts { first: PIT_PORTS.0, last: PIT_PORTS.1 },
        });
        let signal =
            CapParams { rights: rights(false, true, false), badge: CLOCK_BADGE, ..CapParams::default() };
        spec.caps.insert(ObjRef::named(&irq), BTreeMap::from([(0, cap(&done, None, signal))]));
        spec.irqs.insert(PIT_IRQ, ObjRef::named(&irq));
        entries.push((
            "clock".into(),
            format!("IRQ {PIT_IRQ} handler (the PIT)"),
            cap(&irq, None, CapParams::default()),
        ));
        entries.push((
            "clock-ports".into(),
            format!("I/O ports {:#x}-{:#x} (the PIT)", PIT_PORTS.0, PIT_PORTS.1),
            cap(&ports, None, CapParams::default()),
        ));
    }
    let table = tables.entry(n.to_string()).or_default();
    let cnode = slots.entry(n.to_string()).or_default();
    for (k, (name, what, c)) in entries.into_iter().enumerate() {
        table.entries.push((k as u64 + 1, name, what));
        cnode.insert(k as u64 + 1, c);
    }
    restarts
}

/// Per guest: a VMM component (program [`VMM_PROGRAM`], started with the guest's index
/// plus one as its argument) holding the guest's Vcpu, EPT root and its own TCB; the
/// Vcpu bound to that TCB and EPT root; the EPT tables; the guest's RAM in 2 MiB frames,
/// mapped at guest-physical 0 up (read, write, execute) and at [`GUEST_RAM_BASE`] in the
/// VMM; and the VMM's configuration page at [`VMM_CONFIG`]. Returns the configuration
/// files.
fn guests(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut config_pages = Vec::new();
    for (index, (name, g)) in file.guests.iter().enumerate() {
        let g_name = name.get_ref();
        let vmm = vmm_name(g_name);
        let tcb = TcbParams {
            prio: Some(DEFAULT_PRIORITY),
            max_prio: Some(0),
            resume: Some(true),
            elf: Some(VMM_PROGRAM.into()),
            init: vec![index as u64 + 1],
            ..TcbParams::default()
        };
        component_objects(spec, &vmm, tcb, &[]);

        let (vcpu, ept, pdpt, pd, ram) = (
            format!("{g_name}_vcpu"),
            format!("{g_name}_ept"),
            format!("{g_name}_ept_pdpt"),
            format!("{g_name}_ept_pd"),
            format!("{g_name}_ram"),
        );
        let frames = (parse_size(g.memory.get_ref()).unwrap_or(2 << 20).min(GUEST_RAM_MAX) >> 21) as u32;
        spec.objects.push(Object { name: vcpu.clone(), count: None, kind: ObjectKind::Vcpu });
        for (table, level) in [(&ept, 4), (&pdpt, 3), (&pd, 2)] {
            spec.objects.push(Object {
                name: table.clone(),
                count: None,
                kind: ObjectKind::EptTable { level },
            });
        }
        spec.objects.push(Object {
            name: ram.clone(),
            count: Some(frames),
            kind: ObjectKind::Frame { size: 2 << 20, paddr: None, fill: Vec::new() },
        });
        let vcpu_slots = BTreeMap::from([
            (0, cap(&format!("{vmm}_tcb"), None, CapParams::default())),
            (1, cap(&ept, None, CapParams::default())),
        ]);
        spec.caps.insert(ObjRef::named(&vcpu), vcpu_slots);
        spec.caps.insert(ObjRef::named(&ept), BTreeMap::from([(0, cap(&pdpt, None, CapParams::default()))]));
        spec.caps.insert(ObjRef::named(&pdpt), BTreeMap::from([(0, cap(&pd, None, CapParams::default()))]));
        // Guest RAM: read, write and (grant) execute, from guest-physical 0.
        let rwx = CapParams { rights: rights(true, true, true), ..CapParams::default() };
        spec.caps.insert(
            ObjRef::named(&pd),
            (0..frames).map(|k| (u64::from(k), cap(&ram, Some(k), rwx.clone()))).collect(),
        );
        // The same frames in the VMM, 2 MiB pages in a page directory of its own.
        let slot_of = |vaddr: u64, shift: u32| (vaddr >> shift) & 511;
        let vmm_pdpt = format!("{vmm}_map_pdpt");
        let vmm_pd = format!("{vmm}_map_pd{}", slot_of(GUEST_RAM_BASE, 30));
        spec.objects.push(Object { name: vmm_pdpt.clone(), count: None, kind: ObjectKind::Pdpt });
        spec.objects.push(Object { name: vmm_pd.clone(), count: None, kind: ObjectKind::PageDirectory });
        spec.caps.insert(
            ObjRef::named(&format!("{vmm}_vspace")),
            BTreeMap::from([(slot_of(GUEST_RAM_BASE, 39), cap(&vmm_pdpt, None, CapParams::default()))]),
        );
        spec.caps.insert(
            ObjRef::named(&vmm_pdpt),
            BTreeMap::from([(slot_of(GUEST_RAM_BASE, 30), cap(&vmm_pd, None, CapParams::default()))]),
        );
        let rw = CapParams { rights: rights(true, true, false), ..CapParams::default() };
        spec.caps.insert(
            ObjRef::named(&vmm_pd),
            (0..frames)
                .map(|k| (slot_of(GUEST_RAM_BASE, 21) + u64::from(k), cap(&ram, Some(k), rw.clone())))
                .collect(),
        );
        // Its configuration, one page filled from a generated file, read only.
        let config = format!("{vmm}_config");
        let config_file = format!("{vmm}.config");
        files.insert(config_file.clone(), vmm_config(g_name, g));
        spec.objects.push(Object {
            name: config.clone(),
            count: None,
            kind: ObjectKind::Frame { size: 4096, paddr: None, fill: vec![config_file] },
        });
        config_pages.push((vmm.clone(), VMM_CONFIG, ObjRef::named(&config), rights(true, false, false)));
        // The VMM's CNode.
        let table = tables.entry(vmm.clone()).or_default();
        let cnode = slots.entry(vmm.clone()).or_default();
        for (slot, ((what_name, what), target)) in
            VMM_SLOTS.iter().zip([vcpu.clone(), ept.clone(), format!("{vmm}_tcb")]).enumerate()
        {
            let slot = slot as u64 + 1;
            table.entries.push((slot, (*what_name).to_string(), (*what).to_string()));
            cnode.insert(slot, cap(&target, None, CapParams::default()));
        }
    }
    map_pages(spec, config_pages);
    files
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
    /// Files the boot image must carry for frames filled from them (a VMM's configuration),
    /// by name.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The components the supervisor restarts on a timer.
    pub restarts: Vec<RestartPlace>,
}

/// A component the supervisor restarts every `period_ms`: where the supervisor maps its
/// writable memory and the pristine copy, and which slot holds its TCB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPlace {
    /// The component.
    pub component: String,
    /// The supervisor's slot for its TCB.
    pub tcb_slot: u64,
    /// Where its writable memory is mapped in the supervisor.
    pub memory: u64,
    /// Where the pristine copy is mapped in the supervisor (read only).
    pub pristine: u64,
    /// Bytes of each.
    pub bytes: u64,
    /// The period; 0 for a component rolled back after every request.
    pub period_ms: u64,
    /// The badge its faults (and finished requests) reach the supervisor with.
    pub badge: u64,
}

/// A component's thread, CNode and address space (`NAME_tcb`, `NAME_cnode`,
/// `NAME_vspace`), with the TCB's CSpace (guarded, so that a slot number is a capability
/// address) and VSpace slots filled; `extra` adds more TCB slots.
fn component_objects(spec: &mut Spec, n: &str, tcb: TcbParams, extra: &[(u64, Cap)]) {
    spec.objects.push(Object { name: format!("{n}_tcb"), count: None, kind: ObjectKind::Tcb(tcb) });
    spec.objects.push(Object {
        name: format!("{n}_cnode"),
        count: None,
        kind: ObjectKind::CNode { size_bits: COMPONENT_CNODE_BITS },
    });
    spec.objects.push(Object { name: format!("{n}_vspace"), count: None, kind: ObjectKind::Pml4 });
    let guard = CapParams { guard_size: u64::from(64 - COMPONENT_CNODE_BITS), ..CapParams::default() };
    let mut slots = BTreeMap::from([
        (0, cap(&format!("{n}_cnode"), None, guard)),
        (1, cap(&format!("{n}_vspace"), None, CapParams::default())),
    ]);
    slots.extend(extra.iter().cloned());
    spec.caps.insert(ObjRef::named(&format!("{n}_tcb")), slots);
}

fn cap(target: &str, index: Option<u32>, params: CapParams) -> Cap {
    Cap { target: Target::Object(ObjRef { name: target.into(), index }), params }
}

fn rights(read: bool, write: bool, grant: bool) -> Rights {
    Rights { read, write, grant, grant_reply: false }
}

/// A component's lifetime as the spec records it; `None` when it is the default
/// (persistent, no restart).
fn lifetime_of(c: &Component) -> Option<Lifetime> {
    if c.is_disposable() {
        return Some(Lifetime::Disposable);
    }
    match c.restart.as_ref().map(|r| r.get_ref()) {
        Some(Restart::Every { every }) => parse_duration_ms(every).map(|ms| Lifetime::RestartEvery { ms }),
        Some(Restart::Keyword(_)) => Some(Lifetime::PerRequest),
        None => None,
    }
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
            lifetime: lifetime_of(c),
            ends_run: c.ends_run.as_ref().is_some_and(|e| *e.get_ref()),
            quiet: c.console.as_ref().is_some_and(|e| !*e.get_ref()),
            ..TcbParams::default()
        };
        component_objects(&mut spec, n, tcb, &[]);
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
            let badge = ch.badge_of(i, client.get_ref());
            let params =
                CapParams { rights: rights(false, true, ch.grants()), badge, ..CapParams::default() };
            add(
                client.get_ref(),
                n.clone(),
                format!("{} (send, badge {badge})", ch.kind.get_ref()),
                cap(n, None, params),
                &mut slots,
            );
        }
    }
    for place in region_layout(file) {
        spec.objects.push(Object {
            name: place.name,
            count: Some(place.pages as u32),
            kind: ObjectKind::Frame { size: 4096, paddr: None, fill: Vec::new() },
        });
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
    }
    let mut mappings = region_mappings(file);
    for MmioPlace { device, index: i, vaddr, pages, paddr } in device_layout(file) {
        let owner = file.devices.iter().find(|(k, _)| k.get_ref() == &device).map(|(_, d)| d.owner.get_ref());
        for page in 0..pages {
            let name = format!("{device}_mmio{i}_{page}");
            spec.objects.push(Object {
                name: name.clone(),
                count: None,
                kind: ObjectKind::Frame { size: 4096, paddr: Some(paddr + page * 4096), fill: Vec::new() },
            });
            if let Some(owner) = owner {
                mappings.push((
                    owner.clone(),
                    vaddr + page * 4096,
                    ObjRef::named(&name),
                    rights(true, true, false),
                ));
            }
        }
    }
    map_pages(&mut spec, mappings);
    let files = guests(file, &mut spec, &mut slots, &mut tables);
    let restarts = supervisor(file, &mut spec, &mut slots, &mut tables);
    for (component, caps) in slots {
        spec.caps.insert(ObjRef::named(&format!("{component}_cnode")), caps);
    }
    Compiled { spec, tables, files, restarts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{DEVICE_BASE, RegionPlace};
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
        let pt = |c: &str| spec.caps.get(&ObjRef::named(&format!("{c}_map_pt0_0"))).unwrap();
        // `next` is page 3 of the window in both a and c; c maps it executable (grant).
        assert_eq!(pt("a")[&3].target, Target::Object(ObjRef { name: "next".into(), index: Some(0) }));
        assert!(!pt("a")[&3].params.rights.grant && pt("c")[&3].params.rights.grant);
        assert!(pt("b")[&1].params.rights.write && !pt("c")[&1].params.rights.write);
        assert!(!pt("c").contains_key(&2), "the guard page is mapped");
        assert_eq!(cleave_capdl::validate::validate(&spec), Vec::new());
    }

    /// `[policy] only.map-guest-memory` counts a guest's VMM and backends as the holders of
    /// its memory; this keeps that true: of every component, only the VMM reaches the RAM.
    #[test]
    fn only_the_vmm_maps_guest_ram() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cleave/tests/fixtures/valid/guests.toml"
        ))
        .unwrap();
        let file = crate::system::load(&text).unwrap();
        let spec = compile(&file).spec;
        let mut holders = BTreeSet::new();
        for o in spec.objects.iter().filter(|o| o.name.ends_with("_tcb")) {
            let component = o.name.trim_end_matches("_tcb");
            if reach(&spec, component).iter().any(|r| r.name.ends_with("_ram")) {
                holders.insert(component.to_string());
            }
        }
        assert_eq!(holders, BTreeSet::from(["vmm-alice".to_string(), "vmm-bob".to_string()]));
    }

    #[test]
    fn each_guest_gets_a_vmm_holding_exactly_its_vcpu_ept_memory_and_configuration() {
        let text = "[guests.alice]\nmemory = \"4M\"\nimage = \"guest-hello\"\ncmdline = \"x=1\"\n[guests.bob]\nmemory = \"2M\"\nimage = \"guest-hello\"\n";
        let file = crate::system::load(text).unwrap();
        let compiled = compile(&file);
        let spec = &compiled.spec;
        assert_eq!(cleave_capdl::validate::validate(spec), Vec::new());
        let (alice, bob) = (reach(spec, "vmm-alice"), reach(spec, "vmm-bob"));
        let names = |set: &BTreeSet<ObjRef>| set.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&alice),
            [
                "alice_ept",
                "alice_ept_pd",
                "alice_ept_pdpt",
                "alice_ram[0]",
                "alice_ram[1]",
                "alice_vcpu",
                "vmm-alice_cnode",
                "vmm-alice_config",
                "vmm-alice_map_pd1",
                "vmm-alice_map_pd2",
                "vmm-alice_map_pdpt",
                "vmm-alice_map_pt1_0",
                "vmm-alice_tcb",
                "vmm-alice_vspace"
            ]
        );
        assert!(
            alice.is_disjoint(&bob),
            "the two VMMs share {:?}",
            names(&alice.intersection(&bob).cloned().collect())
        );
        // The Vcpu is bound to its VMM's thread and EPT root; guest RAM is executable in the
        // guest, not in the VMM.
        let vcpu = &spec.caps[&ObjRef::named("alice_vcpu")];
        assert_eq!(vcpu[&0].target, Target::Object(ObjRef::named("vmm-alice_tcb")));
        assert_eq!(vcpu[&1].target, Target::Object(ObjRef::named("alice_ept")));
        assert!(spec.caps[&ObjRef::named("alice_ept_pd")][&1].params.rights.grant);
        assert!(!spec.caps[&ObjRef::named("vmm-alice_map_pd2")][&1].params.rights.grant);
        // Started with its guest's index plus one; configuration generated for the image.
        let Some(ObjectKind::Tcb(t)) = spec.objects.iter().find(|o| o.name == "vmm-bob_tcb").map(|o| &o.kind)
        else {
            panic!()
        };
        assert_eq!((t.init.as_slice(), t.elf.as_deref()), (&[2][..], Some(VMM_PROGRAM)));
        assert_eq!(
            compiled.files["vmm-alice.config"],
            b"name=alice\nmemory=4194304\nimage=guest-hello\ncmdline=x=1\n"
        );
        assert_eq!(compiled.tables["vmm-alice"].entries.len(), VMM_SLOTS.len());
    }

    #[test]
    fn disposable_components_are_made_from_an_untyped_the_supervisor_alone_holds() {
        let text = "[components.boot]\nlifetime = \"disposable\"\n[components.user]\n[channels.q]\nkind = \"endpoint\"\nserver = \"boot\"\nclients = [\"user\"]\n";
        let compiled = compile(&crate::system::load(text).unwrap());
        let spec = &compiled.spec;
        assert_eq!(cleave_capdl::validate::validate(spec), Vec::new());
        // The untyped comes first and covers the component and the endpoint it serves.
        assert_eq!(spec.objects[0].name, "boot_untyped");
        assert!(matches!(spec.objects[0].kind, ObjectKind::Untyped { .. }));
        let names: Vec<String> =
            spec.covers[&ObjRef::named("boot_untyped")].iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["boot_tcb", "boot_cnode", "boot_vspace", "q"]);
        // Only the supervisor can reach it; the component signals it with its badge bit.
        assert!(reach(spec, "supervisor").contains(&ObjRef::named("boot_untyped")));
        assert!(!reach(spec, "user").contains(&ObjRef::named("boot_untyped")));
        let boot = &spec.caps[&ObjRef::named("boot_cnode")];
        assert_eq!(boot[&2].target, Target::Object(ObjRef::named("supervisor_done")));
        assert_eq!((boot[&2].params.badge, boot[&2].params.rights.write), (1, true));
        let table: Vec<&str> = compiled.tables["supervisor"].entries.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(table, ["cnode", "done", "boot-untyped"]);
        // The binary form records the parent; nothing without a disposable gets a supervisor.
        let encoded = cleave_capdl::binary::encode(spec).unwrap();
        let e = cleave_capdl::binary::EncodedSpec::new(&encoded).unwrap();
        let tcb = (0..e.object_count())
            .filter_map(|i| e.object(i))
            .find(|o| e.name(o.name) == Some("boot_tcb"))
            .unwrap();
        assert_eq!(tcb.parent(), Some(0));
        let plain = compile(&crate::system::load("[components.a]\n").unwrap());
        assert!(!plain.tables.contains_key("supervisor"));
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
    fn lifetimes_are_recorded_in_the_spec_and_its_encoding() {
        let text = "[components.a]\nrestart = { every = \"2s\" }\n[components.b]\nlifetime = \"disposable\"\n[components.c]\nrestart = \"per-request\"\n[components.d]\n[channels.req]\nkind = \"endpoint\"\nserver = \"c\"\nclients = [\"d\"]\n";
        let spec = compile(&crate::system::load(text).unwrap()).spec;
        let lifetime = |name: &str| match &spec.objects.iter().find(|o| o.name == name).unwrap().kind {
            ObjectKind::Tcb(t) => t.lifetime,
            _ => panic!(),
        };
        assert_eq!(lifetime("a_tcb"), Some(Lifetime::RestartEvery { ms: 2000 }));
        assert_eq!(lifetime("b_tcb"), Some(Lifetime::Disposable));
        assert_eq!(lifetime("c_tcb"), Some(Lifetime::PerRequest));
        assert_eq!(lifetime("d_tcb"), None);
        let bytes = cleave_capdl::binary::encode(&spec).unwrap();
        let encoded = cleave_capdl::binary::EncodedSpec::new(&bytes).unwrap();
        let record = (0..encoded.object_count())
            .filter_map(|i| encoded.object(i))
            .find(|o| encoded.name(o.name) == Some("a_tcb"))
            .unwrap();
        assert_eq!(record.param2, 2 | 2000 << 8);
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
