//! capDL text in the forms seL4's tools write (`tests/data`): the layout of seL4's Python
//! library, which CAmkES uses (`camkes-x86_64.cdl`), the layout of seL4's Haskell capDL
//! tool's printer (`capdl-tool-x86_64.cdl`), and the hand-written forms that tool reads
//! (`handwritten-ia32.cdl`). Each reads, validates, writes back and reads again to the same
//! spec; encoding refuses, by name and kind, what the loader cannot build.

use cleave_capdl::binary::encode;
use cleave_capdl::model::{Cap, CapRef, Domains, ObjRef, ObjectKind, Rights, Spec, Target, TcbParams};
use cleave_capdl::{text, validate};

const FILES: [(&str, &str); 3] = [
    ("camkes-x86_64.cdl", include_str!("data/camkes-x86_64.cdl")),
    ("capdl-tool-x86_64.cdl", include_str!("data/capdl-tool-x86_64.cdl")),
    ("handwritten-ia32.cdl", include_str!("data/handwritten-ia32.cdl")),
];

fn read(name: &str) -> Spec {
    let (_, text) = FILES.iter().find(|(n, _)| *n == name).expect("a data file");
    text::read(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn kind<'a>(spec: &'a Spec, name: &str) -> &'a ObjectKind {
    &spec.objects.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no object {name}")).kind
}

fn cap(spec: &Spec, container: ObjRef, slot: u64) -> &Cap {
    &spec.caps[&container][&slot]
}

fn names(refs: &[ObjRef]) -> Vec<String> {
    refs.iter().map(ToString::to_string).collect()
}

#[test]
fn every_file_reads_validates_and_round_trips() {
    for (name, text) in FILES {
        let spec = text::read(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let problems = validate::validate(&spec);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        let written = text::write(&spec);
        let again = text::read(&written).unwrap_or_else(|e| panic!("{name}: {e}\n{written}"));
        assert_eq!(again, spec, "{name}: the canonical form reads to another spec\n{written}");
        assert_eq!(text::write(&again), written, "{name}");
    }
}

#[test]
fn the_python_tools_layout_keeps_every_object_and_parameter() {
    let spec = read("camkes-x86_64.cdl");
    let ObjectKind::Tcb(t) = kind(&spec, "tcb_driver_0_control") else { panic!() };
    let expect = TcbParams {
        addr: Some(0x72b000),
        ip: Some(0x601c1a),
        sp: Some(0x72a000),
        prio: Some(254),
        max_prio: Some(254),
        affinity: Some(0),
        init: vec![1, 2],
        fault_ep: Some(2),
        dom: Some(0),
        fpu_disabled: Some(false),
        ..TcbParams::default()
    };
    assert_eq!(*t, expect);
    assert_eq!(
        *kind(&spec, "irq_serial_ioapic"),
        ObjectKind::IoApicIrq { ioapic: 0, pin: 4, level: 0, polarity: 0 }
    );
    assert_eq!(*kind(&spec, "irq_nic_msi"), ObjectKind::MsiIrq { handle: 0, bus: 0, dev: 3, fun: 0 });
    assert_eq!(*kind(&spec, "io_device_nic"), ObjectKind::IoDevice { domain_id: 1, bus: 0, dev: 3, fun: 0 });
    assert_eq!(*kind(&spec, "io_pt_nic_3"), ObjectKind::IoPageTable { level: 3 });
    assert_eq!(*kind(&spec, "io_ports_serial"), ObjectKind::IoPorts { first: 0x3f8, last: 0x3ff });
    assert_eq!(
        *kind(&spec, "sc_client_0_control"),
        ObjectKind::SchedContext {
            period: Some(10000),
            budget: Some(10000),
            data: Some(0),
            size_bits: Some(8)
        }
    );
    assert_eq!(*kind(&spec, "reply_client_0_control"), ObjectKind::Reply);
    assert_eq!(*kind(&spec, "asid_pool_0"), ObjectKind::AsidPool { asid_high: Some(1) });
    assert_eq!(*kind(&spec, "vcpu_guest"), ObjectKind::Vcpu);
    let ObjectKind::Frame { fill, .. } = kind(&spec, "frame_client_group_bin_0001") else { panic!() };
    assert_eq!(fill, &["0 4096 CDL_FrameFill_FileData \"client_group_bin\" 4096"]);
    // Untyped covers, the kids one a line.
    assert_eq!(
        names(&spec.covers[&ObjRef::named("untyped_nic_mmio")]),
        ["frame_nic_mmio_0", "frame_nic_mmio_1"]
    );
    assert_eq!(spec.covers[&ObjRef::named("untyped_ram_0")].len(), 7);
    assert!(!spec.covers.contains_key(&ObjRef::named("untyped_ram_1")));
    // Symbolic TCB slots, bound_vcpu among them; capability parameters.
    let driver = ObjRef::named("tcb_driver_0_control");
    assert_eq!(cap(&spec, driver.clone(), 9).target, Target::Object(ObjRef::named("vcpu_guest")));
    assert_eq!(cap(&spec, driver, 6).target, Target::Object(ObjRef::named("sc_driver_0_control")));
    let dma = cap(&spec, ObjRef::named("cnode_driver"), 6);
    assert_eq!(
        dma.params.mapping,
        Some(CapRef { object: ObjRef::named("pt_driver_group_bin_0x600000"), slot: 64 })
    );
    assert_eq!(cap(&spec, ObjRef::named("cnode_driver"), 8).params.core, Some(0));
    assert_eq!(cap(&spec, ObjRef::named("cnode_driver"), 10).target, Target::AsidControl);
    assert_eq!(spec.irqs[&4], ObjRef::named("irq_serial_ioapic"));
    assert_eq!(spec.irqs[&25], ObjRef::named("irq_nic_msi"));
    assert_eq!(
        spec.domains,
        Some(Domains { schedule: vec![(0, 10), (1, 10)], start: Some(0), index_shift: 0 })
    );
    assert!(spec.caps[&ObjRef::named("cnode_spare")].is_empty());
}

#[test]
fn the_haskell_tools_layout_keeps_covers_of_elements_and_the_derivation_tree() {
    let spec = read("capdl-tool-x86_64.cdl");
    // `uts[2] = ut (16 bits)`, then each element again with what it covers.
    assert_eq!(names(&spec.covers[&ObjRef::element("uts", 0)]), ["client_cnode", "client_tcb"]);
    assert_eq!(
        names(&spec.covers[&ObjRef::element("uts", 1)]),
        ["ep_a", "ntfn", "server_cnode", "server_tcb"]
    );
    assert_eq!(spec.objects.iter().filter(|o| o.name == "uts").count(), 1);
    assert_eq!(
        names(&spec.covers[&ObjRef::named("ram")])[..5],
        ["client_frames[0]", "client_frames[1]", "client_frames[2]", "client_frames[3]", "client_ipc"]
    );
    let ObjectKind::Tcb(t) = kind(&spec, "client_tcb") else { panic!() };
    assert_eq!((t.resume, t.fpu_disabled, t.fault_ep, t.dom), (Some(true), Some(false), Some(3), Some(0)));
    // A range of slots; a group of containers with the same slots.
    let cnode = ObjRef::named("client_cnode");
    assert_eq!(cap(&spec, cnode.clone(), 6).target, Target::Object(ObjRef::element("client_frames", 3)));
    assert_eq!(cap(&spec, cnode.clone(), 6).params.asid, Some((1, 2)));
    assert!(cap(&spec, cnode.clone(), 9).params.reply && cap(&spec, cnode.clone(), 10).params.master_reply);
    assert_eq!(cap(&spec, cnode, 1).params.badge, 5);
    for i in 0..2 {
        assert_eq!(cap(&spec, ObjRef::element("spare_cnodes", i), 0).params.badge, 3);
        assert_eq!(cap(&spec, ObjRef::element("irqs", i), 0).params.badge, 4);
    }
    let at = |object: &str, slot| CapRef { object: ObjRef::named(object), slot };
    assert_eq!(spec.cdt.len(), 3);
    assert_eq!(spec.cdt[&at("server_tcb", 5)], at("client_cnode", 1));
    assert_eq!(spec.cdt[&at("client_cnode", 1)], at("server_cnode", 1));
    assert_eq!(
        (spec.irqs[&5].clone(), spec.irqs[&6].clone()),
        (ObjRef::element("irqs", 0), ObjRef::element("irqs", 1))
    );
    assert_eq!(*kind(&spec, "nic"), ObjectKind::IoDevice { domain_id: 1, bus: 0, dev: 3, fun: 0 });
    assert_eq!(spec.domains.as_ref().map(|d| d.schedule.len()), Some(3));
}

#[test]
fn hand_written_forms_are_resolved() {
    let spec = read("handwritten-ia32.cdl");
    // Declared inside the braces, in order, each covered by the untyped around it.
    let order: Vec<&str> = spec.objects.iter().map(|o| o.name.as_str()).take(10).collect();
    assert_eq!(
        order,
        [
            "boot_ut",
            "boot_tcb",
            "cnode_ut",
            "boot_cn",
            "boot_pd",
            "boot_ap",
            "small_uts",
            "frames_a",
            "timer",
            "control"
        ]
    );
    assert_eq!(
        names(&spec.covers[&ObjRef::named("boot_ut")]),
        [
            "boot_tcb",
            "cnode_ut",
            "boot_pd",
            "boot_ap",
            "small_uts",
            "frames_a",
            "timer",
            "control",
            "io_pt1",
            "late_ep"
        ]
    );
    assert_eq!(names(&spec.covers[&ObjRef::named("cnode_ut")]), ["boot_cn"]);
    assert_eq!(*kind(&spec, "boot_ut"), ObjectKind::Untyped { size_bits: None, paddr: None });
    // Ranges that run to either end.
    assert_eq!(spec.covers[&ObjRef::named("pool")].len(), 9);
    // A path: the untypeds it made took the sizes declared later.
    assert_eq!(names(&spec.covers[&ObjRef::named("pool2")]), ["sub", "y"]);
    assert_eq!(names(&spec.covers[&ObjRef::named("sub")]), ["x"]);
    assert_eq!(*kind(&spec, "pool2"), ObjectKind::Untyped { size_bits: Some(18), paddr: None });
    assert_eq!(*kind(&spec, "sub"), ObjectKind::Untyped { size_bits: Some(14), paddr: None });
    let cn = ObjRef::named("boot_cn");
    let target = |slot| cap(&spec, cn.clone(), slot).target.clone();
    assert_eq!(target(0x11), Target::Object(ObjRef::element("small_uts", 1)));
    assert_eq!(target(0x2f), Target::Object(ObjRef::element("frames_a", 15)));
    assert_eq!(target(0x40), Target::Object(ObjRef::element("irq_handler", 2)));
    // Copies: the named capability, its rights cut by the mask; a copy of a copy.
    let copy = cap(&spec, cn.clone(), 0x51);
    assert_eq!((copy.params.badge, copy.params.rights), (11, Rights { write: true, ..Rights::NONE }));
    let read_only = Rights { read: true, ..Rights::NONE };
    assert_eq!(target(0x53), Target::Object(ObjRef::element("drv_frames", 1)));
    assert_eq!(cap(&spec, cn.clone(), 0x53).params.rights, read_only);
    assert_eq!(cap(&spec, cn.clone(), 0x54), cap(&spec, cn.clone(), 0x53));
    // A descending range fills slots upwards.
    assert_eq!(
        cap(&spec, ObjRef::named("drv_pt"), 0x100).target,
        Target::Object(ObjRef::element("drv_frames", 6))
    );
    let at = |object: &str, slot| CapRef { object: ObjRef::named(object), slot };
    assert_eq!(spec.cdt[&at("boot_tcb", 5)], at("boot_cn", 0x50));
    assert_eq!(spec.cdt[&at("boot_cn", 0x55)], at("boot_cn", 0x41));
    assert_eq!(spec.cdt[&at("boot_tcb", 0)], at("boot_cn", 2));
    assert_eq!(spec.cdt[&at("boot_cn", 0x56)], at("boot_cn", 0x51));
    assert_eq!(*kind(&spec, "nic"), ObjectKind::IoDevice { domain_id: 50, bus: 15, dev: 10, fun: 3 });
    assert_eq!(spec.irqs.len(), 5);
}

#[test]
fn encoding_refuses_what_the_loader_cannot_build_by_name_and_kind() {
    let expect = [
        (
            "camkes-x86_64.cdl",
            "object `asid_pool_0` of kind asid_pool: the Cleave loader cannot build asid_pool objects",
        ),
        (
            "capdl-tool-x86_64.cdl",
            "object `asid_pool_0` of kind asid_pool: the Cleave loader cannot build asid_pool objects",
        ),
        ("handwritten-ia32.cdl", "the spec is for `arch ia32`; the Cleave loader builds `arch x86_64`"),
    ];
    for (name, message) in expect {
        assert_eq!(encode(&read(name)).unwrap_err().0, message, "{name}");
    }
}

/// Where `needle` starts in `text`: (line, column), 1-based.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("`{needle}` is not in the text"));
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, column)
}

#[test]
fn hostile_variants_of_the_files_are_refused_where_they_are() {
    // (file, text replaced, replacement, where the error is (the replacement's first
    // occurrence, plus an offset in columns), what it says).
    let cases: &[(&str, &str, &str, &str, usize, &str)] = &[
        (
            "camkes-x86_64.cdl",
            "ioapic_pin:4",
            "ioapic_pin:18446744073709551616",
            "18446744073709551616",
            0,
            "bad number `18446744073709551616`",
        ),
        (
            "camkes-x86_64.cdl",
            "0x0:3.0",
            "0x0:99999999999999999999.0",
            "99999999999999999999",
            0,
            "bad number `99999999999999999999`",
        ),
        (
            "camkes-x86_64.cdl",
            "{ frame_nic_mmio_0\nframe_nic_mmio_1 }",
            "{ frame_nic_mmio_0[0..4294967296] }",
            "frame_nic_mmio_0[",
            0,
            "`frame_nic_mmio_0` is not an array, so it takes no range",
        ),
        (
            "capdl-tool-x86_64.cdl",
            "8 bits)\n  client_tcb",
            "70 bits)\n  client_tcb",
            "70 bits",
            0,
            "70 bits is more than a 64-bit word",
        ),
        (
            "capdl-tool-x86_64.cdl",
            "uts[1] = ut (16 bits) {ep_a",
            "uts[1] = ut (16 bits) {ep_a[0..99999999999]",
            "ep_a[",
            0,
            "`ep_a` is not an array, so it takes no range",
        ),
        (
            "capdl-tool-x86_64.cdl",
            "  ep_a = ep\n",
            "  ep_a = ep { x = ep }\n",
            "{ x = ep }",
            0,
            "only an untyped covers objects",
        ),
        // A cover's brace left open: the objects section runs on into `caps`.
        (
            "handwritten-ia32.cdl",
            "    boot_cn = cnode (8 bits)\n  }\n",
            "    boot_cn = cnode (8 bits)\n",
            "caps {",
            5,
            "expected `=`, found `{`",
        ),
        (
            "handwritten-ia32.cdl",
            "io_pt (level: 1)",
            "io_pt (level: 1, domainID: 2)",
            "io_pt (level",
            0,
            "`io_pt` takes no parameter `domainID`",
        ),
        ("handwritten-ia32.cdl", "(masked: W)", "(masked: Q)", "Q)", 0, "`masked:` takes rights"),
        (
            "handwritten-ia32.cdl",
            "tcb_cspace = (boot_tcb, cspace)\n",
            "",
            "tcb_cspace }",
            0,
            "no capability named `tcb_cspace`",
        ),
    ];
    for &(file, from, to, at, offset, message) in cases {
        let (_, text) = FILES.iter().find(|(n, _)| *n == file).unwrap();
        assert!(text.contains(from), "{file}: `{from}`");
        let hostile = text.replacen(from, to, 1);
        let Err(e) = text::read(&hostile) else { panic!("{file}: `{to}` reads") };
        assert!(e.message.contains(message), "{file}, `{to}`: {e}");
        let (line, column) = position(&hostile, at);
        assert_eq!((e.line, e.column), (line, column + offset), "{file}, `{to}`: {e}");
    }
    // A cover's brace never closed: the error is at the end of the file, just after its
    // last character.
    let text = FILES[2].1;
    let inner = "    boot_cn = cnode (8 bits)\n";
    let cut = &text[..text.find(inner).unwrap() + inner.len()];
    let Err(e) = text::read(cut) else { panic!("a file cut inside a cover reads") };
    assert!(e.message.contains("found the end of the file"), "{e}");
    assert_eq!((e.line, e.column), (cut.lines().count(), inner.len()), "{e}");
    // Out of range, but numbers: validation names the object.
    let hostile = FILES[0].1.replace("0x0:3.0", "0x0:99999999999.0");
    let problems: Vec<String> =
        validate::validate(&text::read(&hostile).unwrap()).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        ["`io_device_nic`: PCI address 0:99999999999.0 is outside bus 0-255, device 0-31, function 0-7"]
    );
    // Covers that do not fit, found by validation, name the untyped.
    let hostile = FILES[1].1.replace("ram = ut (20 bits)", "ram = ut (14 bits)");
    let problems: Vec<String> =
        validate::validate(&text::read(&hostile).unwrap()).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "`ram`: what it covers takes 36864 bytes (each object aligned to its size), more than its 16384 bytes"
        ]
    );
}
