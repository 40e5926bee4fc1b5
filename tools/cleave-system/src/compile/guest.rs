//! The guests: per guest a VMM component cleave adds, the guest's Vcpu, EPT tables and
//! RAM, and the VMM's configuration page.

use super::{CapTable, DEFAULT_PRIORITY, cap, component_objects, map_large, map_pages, rights};
use crate::layout::{
    COM2_PORTS, GUEST_RAM_BASE, GUEST_RAM_MAX, VMM_CONFIG, VMM_CONSOLE_SLOT, VMM_DISK_SLOT, VMM_NET_SLOT,
    VMM_PROGRAM, VMM_SIGNAL_SLOT, VMM_SLOTS, disk_slices, net_ports, vmm_config, vmm_name,
};
use crate::schema::{SystemFile, parse_size};
use cleave_abi::layout::{LARGE_PAGE_SIZE, PAGE_SIZE};
use cleave_capdl::binary::tcb_slot;
use cleave_capdl::model::{Cap, CapParams, ObjRef, Object, ObjectKind, Spec, TcbParams};
use std::collections::BTreeMap;

/// Per guest: a VMM component (program [`VMM_PROGRAM`], started with the guest's index
/// plus one as its argument) holding the guest's Vcpu, EPT root and its own TCB; the
/// Vcpu bound to that TCB and EPT root; the EPT tables; the guest's RAM in 2 MiB frames,
/// mapped at guest-physical 0 up (read, write, execute) and at [`GUEST_RAM_BASE`] in the
/// VMM; and the VMM's configuration page at [`VMM_CONFIG`]. Returns the configuration
/// files.
pub(super) fn guests(
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
        // An on-request guest's VMM waits, never started, until the toolstack asks the
        // supervisor to start it (after the Builder made its RAM).
        let on_request = g.on_request();
        let tcb = TcbParams {
            prio: Some(DEFAULT_PRIORITY),
            max_prio: Some(0),
            resume: Some(!on_request),
            elf: Some(VMM_PROGRAM.into()),
            init: vec![index as u64 + 1],
            ..TcbParams::default()
        };
        // Its own notification, bound to its thread: a signal (its disk's or network's backend's) ends
        // its `VmEnter` with `NOTIFIED`.
        let signal = format!("{vmm}_signal");
        spec.objects.push(Object { name: signal.clone(), count: None, kind: ObjectKind::Notification });
        let bound = (u64::from(tcb_slot::BOUND_NOTIFICATION), cap(&signal, None, CapParams::default()));
        component_objects(spec, &vmm, tcb, &[bound]);

        let (vcpu, ept, pdpt, pd, ram) = (
            format!("{g_name}_vcpu"),
            format!("{g_name}_ept"),
            format!("{g_name}_ept_pdpt"),
            format!("{g_name}_ept_pd"),
            format!("{g_name}_ram"),
        );
        let frames = (parse_size(g.memory.get_ref()).unwrap_or(LARGE_PAGE_SIZE).min(GUEST_RAM_MAX)
            / LARGE_PAGE_SIZE) as u32;
        spec.objects.push(Object { name: vcpu.clone(), count: None, kind: ObjectKind::Vcpu });
        for (table, level) in [(&ept, 4), (&pdpt, 3), (&pd, 2)] {
            spec.objects.push(Object {
                name: table.clone(),
                count: None,
                kind: ObjectKind::EptTable { level },
            });
        }
        // An on-request guest's RAM is the Builder's to make (from its pool) and map: its
        // tables are here, empty.
        let frames = if on_request { 0 } else { frames };
        if !on_request {
            spec.objects.push(Object {
                name: ram.clone(),
                count: Some(frames),
                kind: ObjectKind::Frame { size: LARGE_PAGE_SIZE, paddr: None, fill: Vec::new() },
            });
        }
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
        let rw = rights(true, true, false);
        map_large(
            spec,
            &vmm,
            GUEST_RAM_BASE,
            (0..frames).map(|k| (ObjRef { name: ram.clone(), index: Some(k) }, rw)).collect(),
        );
        // Its configuration, one page filled from a generated file, read only.
        let config = format!("{vmm}_config");
        let config_file = format!("{vmm}.config");
        files.insert(config_file.clone(), vmm_config(file, g_name, g));
        spec.objects.push(Object {
            name: config.clone(),
            count: None,
            kind: ObjectKind::Frame { size: PAGE_SIZE, paddr: None, fill: vec![config_file] },
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
        // A console on the machine's second serial port: its I/O ports, in the VMM alone.
        if g.console.as_ref().is_some_and(|c| c.get_ref() == "com2") {
            let ports = format!("{vmm}_console_ports");
            spec.objects.push(Object {
                name: ports.clone(),
                count: None,
                kind: ObjectKind::IoPorts { first: COM2_PORTS.0, last: COM2_PORTS.1 },
            });
            table.entries.push((
                VMM_CONSOLE_SLOT,
                "console".to_string(),
                format!("I/O ports {:#x}-{:#x} (the guest's console, COM2)", COM2_PORTS.0, COM2_PORTS.1),
            ));
            cnode.insert(VMM_CONSOLE_SLOT, cap(&ports, None, CapParams::default()));
        }
        table.entries.push((
            VMM_SIGNAL_SLOT,
            "signal".into(),
            "its own notification (wait; bound to its thread)".into(),
        ));
        cnode.insert(
            VMM_SIGNAL_SLOT,
            cap(&signal, None, CapParams { rights: rights(true, false, false), ..CapParams::default() }),
        );
        // A disk: its backend's notification, with this guest's bit.
        if let Some(slice) = disk_slices(file).into_iter().find(|s| &s.guest == g_name) {
            let badge = 1u64 << slice.client;
            table.entries.push((
                VMM_DISK_SLOT,
                "disk".into(),
                format!("notification (send, badge {badge}): `{}`, its disk's backend", slice.backend),
            ));
            cnode.insert(
                VMM_DISK_SLOT,
                cap(
                    &format!("{}_signal", slice.backend),
                    None,
                    CapParams { rights: rights(false, true, false), badge, ..CapParams::default() },
                ),
            );
        }
        // A network: its backend's notification, with this guest's bit.
        if let Some(port) = net_ports(file).into_iter().find(|p| &p.guest == g_name) {
            let badge = 1u64 << port.client;
            table.entries.push((
                VMM_NET_SLOT,
                "net".into(),
                format!("notification (send, badge {badge}): `{}`, its network's backend", port.backend),
            ));
            cnode.insert(
                VMM_NET_SLOT,
                cap(
                    &format!("{}_signal", port.backend),
                    None,
                    CapParams { rights: rights(false, true, false), badge, ..CapParams::default() },
                ),
            );
        }
    }
    map_pages(spec, config_pages);
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::reach;
    use cleave_capdl::model::Target;
    use std::collections::BTreeSet;

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
                "vmm-alice_signal",
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
            b"name=alice\nmemory=4194304\nimage=guest-hello\nconsole=log\ncmdline=x=1\n"
        );
        // Its fixed slots and its own notification, bound to its thread.
        assert_eq!(compiled.tables["vmm-alice"].entries.len(), VMM_SLOTS.len() + 1);
        let tcb = &spec.caps[&ObjRef::named("vmm-alice_tcb")];
        assert_eq!(
            tcb[&u64::from(tcb_slot::BOUND_NOTIFICATION)].target,
            Target::Object(ObjRef::named("vmm-alice_signal"))
        );
    }

    /// Two guests with disks on one backend: each VMM shares its own ring with the backend
    /// and nothing else; the backend holds the rings, its DMA memory, its device and the
    /// VMMs' notifications (send only), and no guest RAM.
    #[test]
    fn a_disk_backend_shares_one_ring_per_guest_and_maps_no_guest_memory() {
        let text = "[components.blkback]\n\
                    [devices.disk]\nowner = \"blkback\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
                    [guests.alice]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blkback\", size = \"8M\" }\n\
                    [guests.bob]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blkback\", size = \"4M\" }\n";
        let file = crate::system::load(text).unwrap();
        let compiled = compile(&file);
        let spec = &compiled.spec;
        assert_eq!(cleave_capdl::validate::validate(spec), Vec::new());
        let (alice, bob, back) = (reach(spec, "vmm-alice"), reach(spec, "vmm-bob"), reach(spec, "blkback"));
        let ring = |g: &str| ObjRef { name: format!("disk-{g}"), index: Some(0) };
        assert!(alice.contains(&ring("alice")) && !alice.contains(&ring("bob")));
        assert!(bob.contains(&ring("bob")) && !bob.contains(&ring("alice")));
        assert!(back.contains(&ring("alice")) && back.contains(&ring("bob")));
        assert!(back.iter().all(|r| !r.name.ends_with("_ram")), "the backend reaches guest RAM");
        assert!(back.contains(&ObjRef { name: "disk_dma".into(), index: Some(0) }));
        assert!(!alice.contains(&ObjRef { name: "disk_dma".into(), index: Some(0) }));
        // Slices one after the other; the configuration tells each VMM its ring and size.
        let slices = disk_slices(&file);
        assert_eq!((slices[0].first_sector, slices[0].sectors, slices[1].first_sector), (0, 16384, 16384));
        let config = String::from_utf8(compiled.files["vmm-bob.config"].clone()).unwrap();
        assert!(config.contains(",8192\ncmdline="), "{config}");
        // The backend's notification: bob's VMM signals bit 1, the interrupt bit 63; the
        // backend may only signal the VMMs.
        let bob_cnode = &spec.caps[&ObjRef::named("vmm-bob_cnode")];
        assert_eq!(bob_cnode[&VMM_DISK_SLOT].params.badge, 2);
        assert_eq!(spec.caps[&ObjRef::named("disk_irq")][&0].params.badge, crate::layout::BACKEND_IRQ_BADGE);
        let back_cnode = &spec.caps[&ObjRef::named("blkback_cnode")];
        let to_alice = back_cnode
            .values()
            .find(|c| c.target == Target::Object(ObjRef::named("vmm-alice_signal")))
            .expect("blkback can signal alice's VMM");
        assert!(!to_alice.params.rights.read && to_alice.params.rights.write);
    }
}
