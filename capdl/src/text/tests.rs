//! Tests of the text syntax: round trips, files written the way seL4's tools write them,
//! and errors with their locations.

use super::*;
use crate::model::{Cap, CapParams, ObjRef, Object, ObjectKind, Rights, Spec, Target, TcbParams};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;

fn sample() -> Spec {
    let mut spec = Spec { arch: "x86_64".into(), ..Spec::default() };
    let tcb = TcbParams {
        addr: Some(0x7fff_0000),
        ip: Some(0x40_1000),
        sp: Some(0x7fff_f000),
        prio: Some(100),
        max_prio: Some(100),
        affinity: Some(0),
        resume: Some(true),
        dom: None,
        fault_ep: None,
        init: vec![1, 2],
        elf: Some("client".into()),
        lifetime: Some(crate::model::Lifetime::RestartEvery { ms: 250 }),
        ends_run: true,
        quiet: true,
        reads_audit: true,
        stack_pages: Some(16),
        fpu_disabled: Some(false),
    };
    let objects = [
        ("client_tcb", None, ObjectKind::Tcb(tcb)),
        ("client_cnode", None, ObjectKind::CNode { size_bits: 4 }),
        ("channel", None, ObjectKind::Endpoint),
        ("signal", None, ObjectKind::Notification),
        ("guest_ept", None, ObjectKind::EptTable { level: 4 }),
        ("guest_ept_pt", Some(2), ObjectKind::EptTable { level: 1 }),
        ("guest_vcpu", None, ObjectKind::Vcpu),
        ("stack", Some(4), ObjectKind::Frame { size: 4096, paddr: None, fill: vec![] }),
        ("big", None, ObjectKind::Frame { size: 2 << 20, paddr: Some(0xfe00_0000), fill: vec![] }),
        (
            "image",
            None,
            ObjectKind::Frame {
                size: 4096,
                paddr: None,
                fill: vec!["0 4096 CDL_FrameFill_FileData \"client\" 0".into()],
            },
        ),
        ("vspace", None, ObjectKind::Pml4),
        ("pdpt0", None, ObjectKind::Pdpt),
        ("pd0", None, ObjectKind::PageDirectory),
        ("pt0", None, ObjectKind::PageTable),
        ("serial_irq", None, ObjectKind::Irq),
        ("serial_ports", None, ObjectKind::IoPorts { first: 0x3f8, last: 0x3ff }),
        ("pool", None, ObjectKind::Untyped { size_bits: Some(20), paddr: Some(0x100_0000) }),
    ];
    for (name, count, kind) in objects {
        spec.objects.push(Object { name: name.into(), count, kind });
    }
    let ep_cap = |badge| Cap {
        target: Target::Object(ObjRef::named("channel")),
        params: CapParams {
            rights: Rights { read: false, write: true, grant: true, grant_reply: true },
            badge,
            ..CapParams::default()
        },
    };
    let mut cnode = BTreeMap::new();
    cnode.insert(1, ep_cap(7));
    cnode.insert(2, Cap { target: Target::IrqControl, params: CapParams::default() });
    cnode.insert(
        3,
        Cap {
            target: Target::Object(ObjRef::element("stack", 2)),
            params: CapParams {
                rights: Rights { read: true, write: true, ..Rights::NONE },
                uncached: true,
                asid: Some((1, 2)),
                ..CapParams::default()
            },
        },
    );
    spec.caps.insert(ObjRef::named("client_cnode"), cnode);
    let mut tcb_slots = BTreeMap::new();
    tcb_slots.insert(
        0,
        Cap {
            target: Target::Object(ObjRef::named("client_cnode")),
            params: CapParams { guard: 0, guard_size: 60, ..CapParams::default() },
        },
    );
    tcb_slots
        .insert(1, Cap { target: Target::Object(ObjRef::named("vspace")), params: CapParams::default() });
    spec.caps.insert(ObjRef::named("client_tcb"), tcb_slots);
    spec.irqs.insert(4, ObjRef::named("serial_irq"));
    spec.covers.insert(ObjRef::named("pool"), vec![ObjRef::named("channel"), ObjRef::named("stack")]);
    spec
}

#[test]
fn write_then_read_round_trips_exactly() {
    let spec = sample();
    let text = write(&spec);
    let back = read(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, spec);
    assert_eq!(write(&back), text);
}

#[test]
fn reads_the_python_tools_style() {
    // One object per line, hex slots, symbolic TCB slots, rights before badges, guards
    // always printed, X for grant, comments of both kinds.
    let text = r#"arch x86_64
-- written by a tool
objects {
adder_tcb = tcb (addr: 0x4ff000,ip: 0x401000,sp: 0x50f000,prio: 254,max_prio: 254,affinity: 0,resume: True,init: [])
adder_cnode = cnode (4 bits)
adder_fault_ep = ep /* a /* nested */ comment */
s_data_0_obj = frame (4k)
}
caps {
adder_cnode {
0x2: adder_fault_ep (RWP, badge: 1)
0x5: s_data_0_obj (RWX, uncached)
0xf: adder_cnode (guard: 0, guard_size: 28)
}
adder_tcb {
cspace: adder_cnode (guard: 0, guard_size: 28)
ipc_buffer_slot: s_data_0_obj (RW)
}
}
"#;
    let spec = read(text).unwrap();
    let cnode = &spec.caps[&ObjRef::named("adder_cnode")];
    assert_eq!(cnode[&2].params.badge, 1);
    assert!(cnode[&2].params.rights.grant_reply && cnode[&2].params.rights.read);
    assert!(cnode[&5].params.rights.grant && cnode[&5].params.uncached);
    assert_eq!(cnode[&15].params.guard_size, 28);
    let tcb = &spec.caps[&ObjRef::named("adder_tcb")];
    assert!(tcb.contains_key(&0) && tcb.contains_key(&4));
    let ObjectKind::Tcb(t) = &spec.objects[0].kind else { panic!() };
    assert_eq!((t.prio, t.resume, t.init.len()), (Some(254), Some(true), 0));
}

#[test]
fn reads_the_haskell_tools_style() {
    // Indented, sections joined by `} caps {`, arrays, ranges filling consecutive slots,
    // unnumbered slots continuing from the last, inline single-slot containers, irq maps.
    let text = "arch x86_64\n\nobjects {\n  frame_nic[4] = frame (4k)\n  irq_handler[2] = irq\n  rm_cnode = cnode (8 bits)\n  rm_tcb = tcb (fault_ep: 15, dom: 5, init: [10])\n} caps {\n  rm_cnode {\n    230: frame_nic[0..3] (RW, asid: (0x1, 0x1))\n    frame_nic[0] (R)\n  }\n  rm_tcb {1: rm_cnode}\n} irq maps {\n  0: irq_handler[0]\n  irq_handler[1]\n}\n";
    let spec = read(text).unwrap();
    let cnode = &spec.caps[&ObjRef::named("rm_cnode")];
    assert_eq!(cnode.len(), 5);
    assert_eq!(cnode[&233].target, Target::Object(ObjRef::element("frame_nic", 3)));
    assert_eq!(cnode[&234].params.rights, Rights { read: true, ..Rights::NONE });
    assert_eq!(spec.irqs[&1], ObjRef::element("irq_handler", 1));
    assert_eq!(spec.objects[0].count, Some(4));
}

fn error_of(text: &str) -> ParseError {
    read(text).expect_err("should not parse")
}

#[test]
fn errors_say_where_and_what() {
    let e = error_of("arch x86_64\nobjects {\n  a = widget\n}\n");
    assert_eq!((e.line, e.column), (3, 7));
    assert!(e.message.contains("unknown object type `widget`"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  a = ep\n  a = ep\n}\n");
    assert!(e.message.contains("declared twice"), "{e}");
    let e = error_of("arch x86_64\ncaps {\n  c {\n    1: a (RW, colour: 3)\n  }\n}\n");
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown capability parameter `colour`"), "{e}");
    let e = error_of("arch x86_64\ncaps {\n  c {\n    1: a\n    1: b\n  }\n}\n");
    assert!(e.message.contains("slot 1 of `c` filled twice"), "{e}");
    let e = error_of("arch pdp11\n");
    assert!(e.message.contains("unknown architecture `pdp11`"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  f = frame (3k)\n}\n");
    assert!(e.message.contains("not a power of two"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  f = frame\n}\n");
    assert!(e.message.contains("needs a size"), "{e}");
    let e = error_of("arch x86_64 /* never closed\n");
    assert!(e.message.contains("unterminated comment"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  c = cnode\n}\n");
    assert!(e.message.contains("needs `N bits`"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  a = ep (prio: 3)\n}\n");
    assert!(e.message.contains("takes no parameter `prio`"), "{e}");
    let e = error_of("arch x86_64\ncaps {\n  t {\n    bogus_slot: a\n  }\n}\n");
    assert!(e.message.contains("unknown slot name `bogus_slot`"), "{e}");
    let e = error_of("arch x86_64\nobjects {\n  a = ep\n");
    assert!(e.message.contains("end of the file"), "{e}");
    let e = error_of("objects { }");
    assert!(e.message.contains("expected `arch`"), "{e}");
}

#[test]
fn numbers_in_every_base() {
    let spec = read("arch x86_64\nobjects {\n  f = frame (4k, paddr: 0o17000)\n  c = cnode (010 bits)\n}\n")
        .unwrap();
    assert_eq!(spec.objects[0].kind, ObjectKind::Frame { size: 4096, paddr: Some(0o17000), fill: vec![] });
    // A leading zero is not octal.
    assert_eq!(spec.objects[1].kind, ObjectKind::CNode { size_bits: 10 });
}

#[test]
fn lifetimes_read_back_and_bad_ones_are_refused() {
    use crate::model::Lifetime;
    for (text, lifetime) in [
        ("lifetime: disposable", Lifetime::Disposable),
        ("lifetime: per_request", Lifetime::PerRequest),
        ("lifetime: persistent", Lifetime::Persistent),
        ("lifetime: restart, restart_ms: 10", Lifetime::RestartEvery { ms: 10 }),
    ] {
        let spec = read(&format!("arch x86_64\nobjects {{\n  t = tcb ({text})\n}}\n")).unwrap();
        let ObjectKind::Tcb(t) = &spec.objects[0].kind else { panic!() };
        assert_eq!(t.lifetime, Some(lifetime));
    }
    for (text, message) in [
        ("lifetime: restart", "needs `restart_ms: N`"),
        ("lifetime: restart, restart_ms: 0", "needs `restart_ms: N`"),
        ("restart_ms: 5", "goes with `lifetime: restart` only"),
        ("lifetime: disposable, restart_ms: 5", "goes with `lifetime: restart` only"),
        ("lifetime: forever", "unknown lifetime `forever`"),
    ] {
        let e = error_of(&format!("arch x86_64\nobjects {{\n  t = tcb ({text})\n}}\n"));
        assert!(e.message.contains(message), "{text}: {e}");
    }
}

/// Issue 15: every number is checked before it is narrowed or multiplied, a range is
/// checked against its array before anything is built, and every error has a location.
#[test]
fn hostile_numbers_and_ranges_are_refused_where_they_are() {
    let head = "arch x86_64\nobjects {\n  f[2] = frame (4k)\n  s = ep\n}\n";
    let cases: &[(&str, (usize, usize), &str)] = &[
        // The range the review tried: 6.8 TB of capabilities.
        ("caps {\n  c { 0: f[0..429496729558] }\n}\n", (7, 10), "outside the array (`f` has 2 elements)"),
        ("caps {\n  c { 0: f[429496729558..0] }\n}\n", (7, 10), "outside the array"),
        ("caps {\n  c { 0: g[0..30000000] }\n}\n", (7, 10), "names no array declared before it"),
        ("caps {\n  c { 0: s[0..1] }\n}\n", (7, 10), "`s` is not an array"),
        // Narrowing: these used to read as f[0], 8 bits and 20 bits.
        ("caps {\n  c { 0: f[4294967296] }\n}\n", (7, 12), "an index 4294967296 does not fit in 32 bits"),
        ("irq maps {\n  0: f[4294967296]\n}\n", (7, 8), "an index 4294967296 does not fit in 32 bits"),
        (
            "objects {\n  c = cnode (4294967304 bits)\n}\n",
            (7, 14),
            "4294967304 bits is more than a 64-bit word",
        ),
        ("objects {\n  u = ut (4294967316 bits)\n}\n", (7, 11), "4294967316 bits is more than a 64-bit word"),
        (
            "objects {\n  g[4294967296] = frame (4k)\n}\n",
            (7, 5),
            "an array size 4294967296 does not fit in 32 bits",
        ),
        ("objects {\n  g = frame (18014398509481984k)\n}\n", (7, 14), "does not fit in 64 bits"),
        ("objects {\n  g = frame (17592186044416M)\n}\n", (7, 14), "does not fit in 64 bits"),
        // Counters that would wrap.
        ("irq maps {\n  18446744073709551615: s\n  s\n}\n", (8, 3), "IRQ numbers run past 2^64"),
        ("irq maps {\n  3: s\n  3: f[1]\n}\n", (8, 6), "IRQ 3 mapped twice"),
        ("caps {\n  c {\n    18446744073709551615: s\n    s\n  }\n}\n", (9, 5), "slot numbers run past 2^64"),
    ];
    for (tail, (line, column), message) in cases {
        let text = format!("{head}{tail}");
        let e = error_of(&text);
        assert!(e.message.contains(message), "{tail}: {e}");
        assert_eq!((e.line, e.column), (*line, *column), "{tail}: {e}");
    }
}

#[test]
fn the_reader_bounds_what_ranges_build() {
    // An array of 40 million frames is only a declaration, but filling slots from it
    // would build 30 million capabilities: the reader refuses before building them.
    let text =
        "arch x86_64\nobjects {\n  f[40000000] = frame (4k)\n}\ncaps {\n  c { 0: f[0..30000000] }\n}\n";
    let e = error_of(text);
    assert!(e.message.contains("the reader's limit"), "{e}");
    assert_eq!(e.line, 6);
    // Many small ranges reach the same limit.
    let mut text = String::from("arch x86_64\nobjects {\n  f[1000] = frame (4k)\n}\ncaps {\n");
    for c in 0..=MAX_CAPS / 1000 {
        text.push_str(&format!("  c{c} {{ 0: f[0..999] }}\n"));
    }
    text.push_str("}\n");
    let e = error_of(&text);
    assert!(e.message.contains("the reader's limit"), "{e}");
    // Just under the limit still reads.
    let text = format!(
        "arch x86_64\nobjects {{\n  f[{MAX_CAPS}] = frame (4k)\n}}\ncaps {{\n  c {{ 0: f[0..{}] }}\n}}\n",
        MAX_CAPS - 1
    );
    assert_eq!(read(&text).unwrap().caps.values().map(|s| s.len()).sum::<usize>(), MAX_CAPS);
}

#[test]
fn the_largest_slot_and_irq_numbers_still_read() {
    let text = "arch x86_64\nobjects {\n  s = ep\n}\ncaps {\n  c { 18446744073709551615: s }\n}\nirq maps {\n  18446744073709551615: s\n}\n";
    let spec = read(text).unwrap();
    assert!(spec.caps[&ObjRef::named("c")].contains_key(&u64::MAX));
    assert!(spec.irqs.contains_key(&u64::MAX));
}

/// Found by the text fuzzer: punctuation inside fill data was written back as its error
/// message form (`` `{` ``), which does not read.
#[test]
fn fill_data_with_punctuation_round_trips() {
    let text = "arch x86_64\nobjects {\n  f = frame (4k, fill: [{v{mm : 1..2 , ( ) [ ] \"s\"}])\n}\n";
    let spec = read(text).unwrap();
    let again = read(&write(&spec)).unwrap_or_else(|e| panic!("{e}\n{}", write(&spec)));
    assert_eq!(again, spec);
}

/// Issue 15: the grammar's new forms take hostile text too: every error has the line and
/// column of what is wrong, numbers are checked before they are narrowed, ranges before they
/// are expanded, nesting is bounded.
#[test]
fn hostile_covers_params_and_names_are_refused_where_they_are() {
    let head = "arch x86_64\nobjects {\n  f[2] = frame (4k)\n  e = ep\n";
    let cases: &[(&str, (usize, usize), &str)] = &[
        // Covers: only untypeds have them, braces must close, arrays give them per element.
        ("  a = ep { b = ep }\n}\n", (5, 10), "only an untyped covers objects; `ep` takes no `{ … }`"),
        // The end of the file is just after its last character.
        ("  u = ut (12 bits) {\n    a = ep\n", (6, 11), "found the end of the file"),
        ("  u = ut (12 bits) { a = ep ", (5, 29), "found the end of the file"),
        ("  u[2] = ut (12 bits) { a = ep }\n}\n", (5, 23), "`u` is an array of untypeds"),
        (
            "  u[2] = ut (12 bits)\n  u[5] = ut (12 bits) { e }\n}\n",
            (6, 5),
            "`u` has 2 elements, not an element 5",
        ),
        (
            "  u = ut (12 bits)\n  u = ut (14 bits) { e }\n}\n",
            (6, 7),
            "untyped `u` declared again with other parameters",
        ),
        ("  e = ut (12 bits)\n}\n", (5, 3), "object `e` declared twice"),
        (
            "  u = ut (12 bits) { f[0..4294967296] }\n}\n",
            (5, 22),
            "the range `f[0..4294967296]` is outside the array (`f` has 2 elements)",
        ),
        ("  u = ut (12 bits) { f[4294967296] }\n}\n", (5, 24), "an index 4294967296 does not fit in 32 bits"),
        (
            "  u = ut (12 bits) { g[0..3] }\n}\n",
            (5, 22),
            "the range `g[0..3]` names no array declared in the file",
        ),
        ("  u = ut (12 bits) { e[] }\n}\n", (5, 22), "`e` is not an array, so it takes no range"),
        // Paths.
        ("  e/x = ep\n}\n", (5, 3), "`e` is not an untyped, so it covers nothing"),
        ("  w[1]/x = ep\n}\n", (5, 3), "`w[1]` names no untyped declared before it"),
        ("  f[0..1]/x = ep\n}\n", (5, 3), "a path names one untyped each step"),
        ("  x[0..1] = ep\n}\n", (5, 3), "a declaration is `name` or `name[N]`"),
        // Huge numbers in the new parameters.
        (
            "  i = ioapic_irq (ioapic_num: 0, ioapic_pin: 18446744073709551616, ioapic_level: 0, ioapic_polarity: 0)\n}\n",
            (5, 46),
            "bad number `18446744073709551616`",
        ),
        ("  s = sc (period: 1, 4294967304 bits)\n}\n", (5, 22), "4294967304 bits is more than a 64-bit word"),
        (
            "  d = io_device (domainID: 1, 0:99999999999999999999.0)\n}\n",
            (5, 33),
            "bad number `99999999999999999999`",
        ),
        ("  d = io_device (domainID: 1, 0:3)\n}\n", (5, 34), "expected `.`, found `)`"),
        ("  d = io_device (domainID: 1, 0:3.0, 1:2.0)\n}\n", (5, 38), "a second PCI address"),
        ("  d = io_device (domainID: 1)\n}\n", (5, 7), "`io_device` needs its PCI address, `bus:dev.fun`"),
        ("  p = io_pt\n}\n", (5, 7), "`io_pt` needs `level: N`"),
        ("  i = ioapic_irq (ioapic_num: 0)\n}\n", (5, 7), "`ioapic_irq` needs `ioapic_pin: N`"),
        (
            "  m = msi_irq (msi_handle: 0, msi_pci_bus: 0, msi_pci_dev: 0)\n}\n",
            (5, 7),
            "`msi_irq` needs `msi_pci_fun: N`",
        ),
        ("  t = tcb (fpu_disabled: 3)\n}\n", (5, 7), "`fpu_disabled` takes True or False"),
        ("  g = frame (4k, 0:1.0)\n}\n", (5, 7), "`frame` takes no PCI address"),
        ("  g = ep (4k)\n}\n", (5, 7), "`ep` takes no frame size"),
        (
            "  g = arm_irq (trigger: level, target: 0)\n}\n",
            (5, 7),
            "`arm_irq` is an object of seL4's Arm grammar",
        ),
        // Capability names, copies, derivations.
        ("}\ncaps {\n  c { 0: a = f[0..1] }\n}\n", (7, 10), "one name for 2 capabilities: write `a[] = …`"),
        ("}\ncaps {\n  c { 0: a[0] = f[0] }\n}\n", (7, 10), "a capability name takes `[]` or nothing"),
        ("}\ncaps {\n  c { 0: a = e\n  1: a = e }\n}\n", (8, 6), "capability name `a` given twice"),
        ("}\ncaps {\n  c { 0: e (masked: R) }\n}\n", (7, 10), "`masked:` goes with a copy (`<name>`) only"),
        (
            "}\ncaps {\n  c { 0: a = e\n  1: <a> (badge: 3) }\n}\n",
            (8, 6),
            "a copy (`<name>`) takes `masked:` only",
        ),
        ("}\ncaps {\n  c { 0: <nobody> }\n}\n", (7, 10), "no capability named `nobody`"),
        (
            "}\ncaps {\n  c { 0: a = <b>\n  1: b = <a> }\n}\n",
            (8, 10),
            "copies of capabilities go round in a cycle",
        ),
        (
            "}\ncaps {\n  c { 0: <n[0..9]> }\n  n = (c, 0)\n}\n",
            (7, 11),
            "the range `n[0..9]` names no array of capabilities named before it",
        ),
        (
            "}\ncaps {\n  n = (c, 5)\n  c { 0: <n[0..9]> }\n}\n",
            (8, 11),
            "`n` is not an array, so it takes no range",
        ),
        (
            "}\ncaps {\n  c { 0: f[0..1] - child_of (c, 5) }\n}\n",
            (7, 10),
            "`- child_of` needs a single capability",
        ),
        ("}\ncaps {\n  c { 0: e - child_of nobody }\n}\n", (7, 10), "no capability named `nobody`"),
        (
            "}\ncaps {\n  c { 0: e\n  1: e }\n}\ncdt {\n  (c, 0) { (c, 1) }\n  (c, 2) { (c, 1) }\n}\n",
            (12, 12),
            "(c, 1) has two parents in the derivation tree",
        ),
        (
            "}\ncaps {\n  c[0..1] { 0: e }\n}\n",
            (7, 3),
            "the range `c[0..1]` names no array declared before it",
        ),
        ("}\ndomains {\n  index_shift: 1\n  index_shift: 2\n}\n", (8, 3), "`index_shift` given twice"),
        ("}\ndomains {\n  schedule: []\n}\n", (7, 14), "expected `(`, found `]`"),
        ("}\ndomains {\n  start: 1\n}\n", (7, 3), "unknown domains item `start`"),
        ("}\nirq maps {\n  0: f[0..5]\n}\n", (7, 6), "the range `f[0..5]` is outside the array"),
    ];
    let mut wrong = Vec::new();
    for (tail, (line, column), message) in cases {
        let text = format!("{head}{tail}");
        let e = error_of(&text);
        if !e.message.contains(message) || (e.line, e.column) != (*line, *column) {
            wrong.push(format!("{tail:?}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn nesting_is_bounded() {
    let deep = |n: usize| {
        let mut text = String::from("arch x86_64\nobjects {\n");
        for i in 0..n {
            text.push_str(&format!("u{i} = ut (40 bits) {{\n"));
        }
        text.push_str(&"}\n".repeat(n + 1));
        text
    };
    // MAX_NESTING untypeds in each other's braces: each but the last covers the next.
    let spec = read(&deep(MAX_NESTING)).unwrap();
    assert_eq!(spec.covers.len(), MAX_NESTING - 1);
    let e = error_of(&deep(MAX_NESTING + 1));
    assert_eq!((e.line, e.column), (MAX_NESTING + 3, 20), "{e}");
    let e = error_of(&deep(100_000));
    assert_eq!((e.line, e.column), (MAX_NESTING + 3, 20), "{e}");
    assert!(e.message.contains("untyped covers nest more than 64 deep"), "{e}");
    let mut cdt = String::from("arch x86_64\ncdt {\n");
    for i in 0..100_000 {
        cdt.push_str(&format!("(c, {i}) {{ "));
    }
    let e = error_of(&cdt);
    assert_eq!(e.line, 3);
    assert!(e.message.contains("the derivation tree nests more than 64 deep"), "{e}");
}

#[test]
fn ranges_of_covers_containers_and_irqs_are_bounded_before_they_are_built() {
    let head =
        "arch x86_64\nobjects {\n  f[4000000] = frame (4k)\n  c[4000000] = cnode (1 bits)\n  e[1000] = ep\n";
    for (tail, line) in [
        ("  u = ut (40 bits) { f[0..2000000] }\n}\n", 6),
        ("}\nirq maps {\n  f[..1999999]\n}\n", 8),
        ("}\ncaps {\n  c[1..] { }\n}\n", 8),
        // 2,000 containers of 1,000 capabilities: two million.
        ("}\ncaps {\n  c[0..1999] { 0: e[] }\n}\n", 8),
    ] {
        let e = error_of(&format!("{head}{tail}"));
        assert!(e.message.contains("(the reader's limit)"), "{tail}: {e}");
        assert_eq!(e.line, line, "{tail}: {e}");
    }
    // The name of a whole array stands for it: nothing is expanded.
    let spec = read(&format!("{head}  u = ut (40 bits) {{ f[] }}\n}}\n")).unwrap();
    assert_eq!(spec.covers[&ObjRef::named("u")], [ObjRef::named("f")]);
}

#[test]
fn the_canonical_form_of_the_new_grammar_round_trips() {
    let text = "arch x86_64\nobjects {\n  u[2] = ut (16 bits)\n  u[1] = ut (16 bits) { e = ep, f[] }\n  f[2] = frame (4k)\n  p/q/t = tcb (fpu_disabled: True, dom: 1, affinity: 0)\n  s = sc (period: 5, 8 bits)\n  d = io_device (domainID: 3, 1:2.3)\n  m = msi_irq (msi_handle: 1, msi_pci_bus: 2, msi_pci_dev: 3, msi_pci_fun: 4)\n  pt = pt\n}\ncaps {\n  c { 0: f[1] (RW, mapping: (pt, 3)) }\n  pt { 3: f[1] (RW) }\n}\ncdt {\n  (pt, 3) { (c, 0) }\n}\nirq maps {\n  2: m\n}\ndomains {\n  domain_set_start: no_start\n}\n";
    let spec = read(text).unwrap();
    let written = write(&spec);
    assert_eq!(read(&written).unwrap_or_else(|e| panic!("{e}\n{written}")), spec);
    // Covers of elements are declared again after the objects; `f[]` names all of `f`.
    assert!(written.contains("  u[2] = ut (16 bits)\n"), "{written}");
    assert!(written.contains("  u[1] = ut (16 bits) {e, f[]}\n"), "{written}");
    assert!(written.contains("  p = ut {q}\n  q = ut {t}\n"), "{written}");
    assert!(written.contains("d = io_device (domainID: 3, 1:2.3)"), "{written}");
    assert!(written.contains("cdt {\n  (pt, 3) {\n    (c, 0)\n  }\n}\n"), "{written}");
    assert!(written.contains("domains {\n  domain_set_start: no_start\n  index_shift: 0\n}\n"), "{written}");
}
