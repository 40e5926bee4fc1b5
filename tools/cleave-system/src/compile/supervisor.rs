//! The supervisor cleave adds when components are disposable or restarted: its own
//! objects, what it holds of the components it watches, and its clock.

use super::{CapTable, cap, component_objects, lifetime_of, map_pages, rights};
use crate::layout::{
    CLOCK_BADGE, DEFAULT_RESTART_MEMORY, ON_REQUEST_VMM_MEMORY, PIT_IRQ, PIT_PORTS, REGION_BASE, SUPERVISOR,
    SUPERVISOR_PRIORITY, VMM_GONE_SLOT, disposable_untyped_bits, gone_badge, vmm_name,
};
use crate::schema::{SystemFile, parse_duration_ms, parse_size};
use cleave_abi::layout::PAGE_SIZE;
use cleave_capdl::model::{Cap, CapParams, Lifetime, ObjRef, Object, ObjectKind, Spec, TcbParams};
use std::collections::BTreeMap;

/// The restart period of a component restarted only when asked (an on-request guest's
/// VMM), as the supervisor's policy reads it.
pub use cleave_supervisor_policy::ON_REQUEST;

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
///   and stack in) and a pristine copy of its first pages (`NAME_pristine`, filled by the
///   loader: the program's initialized data), both mapped into the supervisor; the component's fault endpoint is the supervisor's
///   `faults` endpoint with badge N + 1 for its N-th place, so that a crash (and, per
///   request, the end of each request) reaches the supervisor;
/// - with any restartable component: the `faults` endpoint (receive) and the PIT (ports
///   0x40-0x43, IRQ 0, signalling the notification with [`CLOCK_BADGE`]) as its clock
///   (which disposable components with a `deadline` need too).
pub(super) fn supervisor(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) -> (Vec<RestartPlace>, Vec<DisposablePlace>) {
    let disposable: Vec<&String> =
        file.components.iter().filter(|(_, c)| c.is_disposable()).map(|(k, _)| k.get_ref()).collect();
    let mut restartable: Vec<(&String, u64, u64)> = file
        .components
        .iter()
        .filter_map(|(k, c)| match lifetime_of(c) {
            Some(l @ (Lifetime::RestartEvery { .. } | Lifetime::PerRequest)) => {
                let bytes =
                    c.memory.as_ref().and_then(|m| parse_size(m.get_ref())).unwrap_or(DEFAULT_RESTART_MEMORY);
                let ms = if let Lifetime::RestartEvery { ms } = l { ms } else { 0 };
                Some((k.get_ref(), ms, bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE))
            }
            _ => None,
        })
        .collect();
    // An on-request guest's VMM is started, and started afresh after a `destroy`, by the
    // supervisor when the toolstack asks ([`ON_REQUEST`]: never on a timer).
    let on_request_vmms: Vec<String> =
        file.guests.iter().filter(|(_, g)| g.on_request()).map(|(k, _)| vmm_name(k.get_ref())).collect();
    restartable.extend(on_request_vmms.iter().map(|v| (v, ON_REQUEST, ON_REQUEST_VMM_MEMORY)));
    if disposable.is_empty() && restartable.is_empty() {
        return (Vec::new(), Vec::new());
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
    let mut disposables = Vec::new();
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
        let component = file.components.iter().find(|(k, _)| k.get_ref() == *d).map(|(_, c)| c);
        let stack = component.and_then(|c| c.stack.as_ref()).and_then(|v| parse_size(v.get_ref()));
        let bits = disposable_untyped_bits(stack);
        untyped_objects.push(Object {
            name: untyped.clone(),
            count: None,
            kind: ObjectKind::Untyped { size_bits: Some(bits), paddr: None },
        });
        entries.push((
            format!("{d}-untyped"),
            format!("untyped {} KiB: all of `{d}`", (1u64 << bits) >> 10),
            cap(&untyped, None, CapParams::default()),
        ));
        let deadline_ms = file
            .components
            .iter()
            .find(|(k, _)| k.get_ref() == *d)
            .and_then(|(_, c)| c.deadline.as_ref())
            .and_then(|t| parse_duration_ms(t.get_ref()))
            .unwrap_or(0);
        // Slots follow the order of `entries`, from 1.
        disposables.push(DisposablePlace {
            component: (*d).clone(),
            untyped_slot: entries.len() as u64,
            badge: 1 << i,
            deadline_ms,
        });
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
    // The guests of restartable I/O backends, with the backends they use and their bits.
    let gone: Vec<(&str, Vec<&str>, u64)> = file
        .guests
        .iter()
        .map(|(name, g)| {
            let disk = g.disk.as_ref().map(|d| d.get_ref().backend.get_ref().as_str());
            let net = g.network.as_ref().map(|n| n.get_ref().backend.get_ref().as_str());
            let backends: Vec<&str> = disk
                .into_iter()
                .chain(net)
                .filter(|b| restartable.iter().any(|r| r.0.as_str() == *b))
                .collect();
            (name.get_ref().as_str(), backends)
        })
        .filter(|(_, backends)| !backends.is_empty())
        .enumerate()
        .filter_map(|(k, (name, backends))| Some((name, backends, gone_badge(k)?)))
        .collect();
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
    // The toolstack (a component running the `toolstack` program) asks the supervisor
    // about components and for restarts on the same endpoint, with a badge of its own
    // (`cleave_ctl::supervisor`); it gets nothing else of the supervisor's.
    if !restartable.is_empty() {
        for (name, c) in &file.components {
            let name = name.get_ref();
            if c.package(name) != "toolstack" {
                continue;
            }
            let badge = cleave_ctl::supervisor::SUPERVISOR_BADGE;
            let table = tables.entry(name.clone()).or_default();
            let slot = table.entries.iter().map(|e| e.0).max().map_or(1, |s| s + 1);
            table.entries.push((
                slot,
                "supervisor".into(),
                format!(
                    "endpoint (send, badge {badge:#x}): asks the supervisor about components and for restarts"
                ),
            ));
            let params = CapParams { rights: rights(false, true, false), badge, ..CapParams::default() };
            slots.entry(name.clone()).or_default().insert(slot, cap(&faults, None, params));
        }
    }
    for (i, &(c, period_ms, bytes)) in restartable.iter().enumerate() {
        let badge = i as u64 + 1;
        let fault = CapParams { rights: rights(false, true, false), badge, ..CapParams::default() };
        spec.caps
            .entry(ObjRef::named(&format!("{c}_tcb")))
            .or_default()
            .insert(FAULT_ENDPOINT_SLOT, cap(&faults, None, fault));
        let pages = (bytes / PAGE_SIZE) as u32;
        // The pristine copy: the first pages only (the program's initialized data); the
        // rest starts zero and a restart zeroes it.
        let pristine_pages = (crate::layout::PRISTINE_PAGES as u32).min(pages);
        for (what, count) in [("rw", pages), ("pristine", pristine_pages)] {
            spec.objects.push(Object {
                name: format!("{c}_{what}"),
                count: Some(count),
                kind: ObjectKind::Frame { size: PAGE_SIZE, paddr: None, fill: Vec::new() },
            });
        }
        let pristine_bytes = u64::from(pristine_pages) * PAGE_SIZE;
        let (memory, pristine) = (window, window + bytes + PAGE_SIZE);
        for page in 0..pages {
            let at = u64::from(page) * PAGE_SIZE;
            let frame = |what: &str| ObjRef { name: format!("{c}_{what}"), index: Some(page) };
            mappings.push((n.to_string(), memory + at, frame("rw"), rights(true, true, false)));
            if page < pristine_pages {
                mappings.push((n.to_string(), pristine + at, frame("pristine"), rights(true, false, false)));
            }
        }
        window = pristine + pristine_bytes + PAGE_SIZE;
        let tcb_slot = entries.len() as u64 + 1;
        let policy = if period_ms == ON_REQUEST {
            "started and restarted when the toolstack asks".to_string()
        } else if period_ms == 0 {
            "rolled back after every request".to_string()
        } else {
            format!("restarted every {period_ms} ms")
        };
        entries.push((
            format!("{c}-tcb"),
            format!("TCB of `{c}` ({policy}; its faults come with badge {badge})"),
            cap(&format!("{c}_tcb"), None, CapParams::default()),
        ));
        let guests =
            gone.iter().filter(|(_, backends, _)| backends.contains(&c.as_str())).fold(0, |m, g| m | g.2);
        restarts.push(RestartPlace {
            component: c.clone(),
            tcb_slot,
            memory,
            pristine,
            pristine_bytes,
            bytes,
            period_ms,
            badge,
            guests,
        });
    }
    // Each guest of a restartable I/O backend: its VMM signals `done` with its bit once
    // the guest has stopped.
    for (guest, _, bit) in &gone {
        let vmm = vmm_name(guest);
        let what = format!("notification (signal, badge {bit:#x}): tells the supervisor the guest is gone");
        tables.entry(vmm.clone()).or_default().entries.push((VMM_GONE_SLOT, "gone".into(), what));
        let params = CapParams { rights: rights(false, true, false), badge: *bit, ..CapParams::default() };
        slots.entry(vmm).or_default().insert(VMM_GONE_SLOT, cap(&done, None, params));
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
    (restarts, disposables)
}

/// A disposable component, as the supervisor sees it: the untyped memory everything of it
/// was made from (revoking it destroys the component), the bit its "done" signal sets, and
/// its deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisposablePlace {
    /// The component.
    pub component: String,
    /// The supervisor's slot for its untyped memory.
    pub untyped_slot: u64,
    /// The badge its signal on the supervisor's `done` notification carries (one bit).
    pub badge: u64,
    /// When the supervisor destroys it even if it never said it was done, in ms from
    /// boot; 0 for never.
    pub deadline_ms: u64,
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
    /// Bytes of the pristine copy: the first of the writable memory's
    /// ([`crate::layout::PRISTINE_PAGES`]).
    pub pristine_bytes: u64,
    /// Bytes of writable memory.
    pub bytes: u64,
    /// The period; 0 for a component rolled back after every request.
    pub period_ms: u64,
    /// The badge its faults (and finished requests) reach the supervisor with.
    pub badge: u64,
    /// For a guest I/O backend, its guests' bits on `done` (`layout::gone_badge`); 0
    /// otherwise.
    pub guests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::reach;
    use cleave_capdl::model::Target;

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

    /// The VMM of every guest of a restartable I/O backend can tell the supervisor its
    /// guest is gone (signal only, its own bit), and the backend's restart entry names those
    /// bits; a guest of a backend that is not restarted, and any other restartable
    /// component, have none.
    #[test]
    fn the_vmms_of_restartable_backends_guests_can_say_they_are_gone() {
        let text = "[components.blk]\nrestart = { every = \"1s\" }\nmemory = \"160K\"\n\
            [components.net]\n[components.beat]\nrestart = { every = \"1s\" }\n\
            [devices.disk]\nowner = \"blk\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
            [guests.alice]\nmemory = \"16M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n\
            network = { backend = \"net\" }\n\
            [guests.bob]\nmemory = \"16M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"net\" }\n\
            [guests.carol]\nmemory = \"16M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n";
        let compiled = compile(&crate::system::load(text).unwrap());
        let spec = &compiled.spec;
        assert_eq!(cleave_capdl::validate::validate(spec), Vec::new());
        let gone = |guest: &str| {
            let cnode = &spec.caps[&ObjRef::named(&format!("{}_cnode", vmm_name(guest)))];
            cnode.get(&VMM_GONE_SLOT).map(|c| {
                assert_eq!(c.target, Target::Object(ObjRef::named("supervisor_done")));
                assert!(c.params.rights.write && !c.params.rights.read, "signal only");
                c.params.badge
            })
        };
        assert_eq!((gone("alice"), gone("bob"), gone("carol")), (Some(1 << 32), None, Some(1 << 33)));
        let guests: Vec<(&str, u64)> =
            compiled.restarts.iter().map(|r| (r.component.as_str(), r.guests)).collect();
        assert_eq!(guests, [("beat", 0), ("blk", 3 << 32)]);
    }
}
