//! Validation of a specification: every name resolves, containers hold only what they can,
//! slots fit, capability parameters belong to the capability's type, parameters lie in
//! their ranges, untyped covers hold memory objects that fit (at the sizes of Cleave's
//! kernel, each aligned to its size, in the order the loader makes them), each object is
//! covered at most once, and neither covers nor the derivation tree go round in a cycle.
//! Every error names the object (and the slot) it is about.

use crate::model::{Cap, CapRef, ObjRef, Object, ObjectKind, Spec, Target};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use cleave_abi::layout::{LARGE_PAGE_SIZE, PAGE_SIZE};
use cleave_abi::object::{MAX_CNODE_RADIX, MAX_UNTYPED_BITS, MIN_CNODE_RADIX, MIN_UNTYPED_BITS};
use core::fmt;

/// One problem with a specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The object the problem is about (`domains` for the domain schedule).
    pub object: String,
    /// The slot, for problems with a capability.
    pub slot: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot {
            Some(slot) => write!(f, "`{}` slot {slot}: {}", self.object, self.message),
            None => write!(f, "`{}`: {}", self.object, self.message),
        }
    }
}

/// Objects by name, with their place in the declaration order.
type Index<'a> = BTreeMap<&'a str, (usize, &'a Object)>;

fn find<'a>(index: &Index<'a>, r: &ObjRef) -> Result<&'a Object, String> {
    let &(_, object) = index.get(r.name.as_str()).ok_or_else(|| format!("no object named `{}`", r.name))?;
    match (object.count, r.index) {
        (None, None) => Ok(object),
        (Some(n), Some(i)) if i < n => Ok(object),
        (Some(n), Some(i)) => Err(format!("`{}` has {n} elements, not an element {i}", r.name)),
        (Some(_), None) => Err(format!("`{}` is an array: name an element", r.name)),
        (None, Some(_)) => Err(format!("`{}` is not an array", r.name)),
    }
}

/// How many slots a container has, or `None` if the object holds no capabilities.
fn slot_count(kind: &ObjectKind) -> Option<u64> {
    match kind {
        ObjectKind::CNode { size_bits } => Some(1u64.checked_shl(*size_bits).unwrap_or(u64::MAX)),
        ObjectKind::Tcb(_) => Some(crate::model::TCB_SLOT_NAMES.len() as u64),
        ObjectKind::PageTable
        | ObjectKind::PageDirectory
        | ObjectKind::Pdpt
        | ObjectKind::Pml4
        | ObjectKind::EptTable { .. }
        | ObjectKind::IoPageTable { .. } => Some(512),
        // seL4 on x86_64: 2^9 ASIDs a pool.
        ObjectKind::AsidPool { .. } => Some(512),
        // Slot 0: the notification an interrupt signals.
        ObjectKind::Irq | ObjectKind::IoApicIrq { .. } | ObjectKind::MsiIrq { .. } => Some(1),
        // Slot 0: the device's top I/O page table.
        ObjectKind::IoDevice { .. } => Some(1),
        // Cleave: slot 0 the TCB that runs it, slot 1 its EPT root.
        ObjectKind::Vcpu => Some(2),
        ObjectKind::Endpoint
        | ObjectKind::Notification
        | ObjectKind::Untyped { .. }
        | ObjectKind::Frame { .. }
        | ObjectKind::IoPorts { .. }
        | ObjectKind::SchedContext { .. }
        | ObjectKind::Reply => None,
    }
}

fn check_cap(spec: &Spec, index: &Index<'_>, cap: &Cap) -> Result<(), String> {
    let p = &cap.params;
    let r = match &cap.target {
        Target::Object(r) => r,
        Target::SchedControl => {
            let core = p.core;
            let rest = crate::model::CapParams { core: None, ..p.clone() };
            return match (core, rest == Default::default()) {
                (Some(_), true) => Ok(()),
                (None, _) => Err("`sched_control` needs `core: N`".into()),
                (_, false) => Err("`sched_control` takes `core:` only".into()),
            };
        }
        other => {
            return if *p == Default::default() {
                Ok(())
            } else {
                Err(format!("`{}` takes no parameters", special_name(other)))
            };
        }
    };
    let target = find(index, r)?;
    let kind = &target.kind;
    let rights_ok =
        matches!(kind, ObjectKind::Endpoint | ObjectKind::Notification | ObjectKind::Frame { .. });
    if !p.rights.is_empty() && !rights_ok {
        return Err(format!("a capability to a `{}` takes no rights", kind.keyword()));
    }
    // An untyped capability's badge word restricts it: `cleave_abi::UNTYPED_FRAMES_ONLY`
    // (frames only) is the one restriction there is.
    let untyped_restriction =
        matches!(kind, ObjectKind::Untyped { .. }) && p.badge == cleave_abi::UNTYPED_FRAMES_ONLY;
    if p.badge != 0
        && !matches!(kind, ObjectKind::Endpoint | ObjectKind::Notification)
        && !untyped_restriction
    {
        return Err(format!(
            "a capability to a `{}` takes no badge{}",
            kind.keyword(),
            if matches!(kind, ObjectKind::Untyped { .. }) { " but 1 (frames only)" } else { "" }
        ));
    }
    if (p.guard != 0 || p.guard_size != 0) && !matches!(kind, ObjectKind::CNode { .. }) {
        return Err(format!("a capability to a `{}` takes no guard", kind.keyword()));
    }
    if let ObjectKind::CNode { size_bits } = kind
        && u64::from(*size_bits) + p.guard_size > 64
    {
        return Err(format!("guard size {} plus radix {size_bits} exceeds 64 bits", p.guard_size));
    }
    if p.guard_size < 64 && p.guard >> p.guard_size != 0 {
        return Err(format!("guard {:#x} does not fit in {} bits", p.guard, p.guard_size));
    }
    if (p.uncached || p.asid.is_some())
        && !matches!(
            kind,
            ObjectKind::Frame { .. }
                | ObjectKind::PageTable
                | ObjectKind::PageDirectory
                | ObjectKind::Pdpt
                | ObjectKind::Pml4
        )
    {
        return Err(format!("a capability to a `{}` takes no mapping attributes", kind.keyword()));
    }
    if (p.reply || p.master_reply) && !matches!(kind, ObjectKind::Tcb(_)) {
        return Err("only TCB capabilities can be reply capabilities".into());
    }
    if p.reply && p.master_reply {
        return Err("a capability is `reply` or `master_reply`, not both".into());
    }
    if p.core.is_some() {
        return Err(format!("a capability to a `{}` takes no `core`", kind.keyword()));
    }
    if let Some(m) = &p.mapping {
        if !matches!(kind, ObjectKind::Frame { .. }) {
            return Err(format!("a capability to a `{}` takes no `mapping`", kind.keyword()));
        }
        let table = find(index, &m.object).map_err(|e| format!("mapping {m}: {e}"))?;
        if !matches!(
            table.kind,
            ObjectKind::PageTable
                | ObjectKind::PageDirectory
                | ObjectKind::Pdpt
                | ObjectKind::EptTable { .. }
                | ObjectKind::IoPageTable { .. }
        ) {
            return Err(format!("mapping {m}: a `{}` maps no frames", table.kind.keyword()));
        }
        let mapped = spec.caps.get(&m.object).and_then(|s| s.get(&m.slot));
        if mapped.map(|c| &c.target) != Some(&cap.target) {
            return Err(format!("mapping {m}: that slot holds no capability to `{r}`"));
        }
    }
    Ok(())
}

fn special_name(target: &Target) -> &'static str {
    match target {
        Target::Object(_) => "an object",
        Target::IrqControl => "irq_control",
        Target::AsidControl => "asid_control",
        Target::IoSpaceMaster => "io_space_master",
        Target::Domain => "domain",
        Target::SchedControl => "sched_control",
    }
}

/// Problems of one object's own parameters.
fn check_object(o: &Object) -> Option<String> {
    let pci = |bus: u64, dev: u64, fun: u64| {
        (bus > 255 || dev > 31 || fun > 7)
            .then(|| format!("PCI address {bus}:{dev}.{fun} is outside bus 0-255, device 0-31, function 0-7"))
    };
    match &o.kind {
        ObjectKind::CNode { size_bits } if !(MIN_CNODE_RADIX..=MAX_CNODE_RADIX).contains(size_bits) => {
            Some(format!("cnode radix {size_bits} outside {MIN_CNODE_RADIX}-{MAX_CNODE_RADIX}"))
        }
        ObjectKind::Untyped { size_bits: Some(b), .. }
            if !(MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS).contains(b) =>
        {
            Some(format!("untyped size {b} bits outside {MIN_UNTYPED_BITS}-{MAX_UNTYPED_BITS}"))
        }
        ObjectKind::Frame { size, .. } if *size != PAGE_SIZE && *size != LARGE_PAGE_SIZE => {
            Some(format!("frame size {size} is neither 4k nor 2M (x86_64)"))
        }
        ObjectKind::Tcb(t) if t.prio.is_some_and(|p| p > 255) || t.max_prio.is_some_and(|p| p > 255) => {
            Some("priority above 255".into())
        }
        ObjectKind::IoPorts { first, last } if first > last || *last > 0xffff => {
            Some(format!("port range {first:#x}..{last:#x} is not within 0..0xffff"))
        }
        ObjectKind::SchedContext { size_bits: Some(b), .. } if !(7..=47).contains(b) => {
            Some(format!("sc size {b} bits outside 7-47"))
        }
        ObjectKind::IoApicIrq { level, .. } if *level > 1 => {
            Some(format!("ioapic_level {level} is neither 0 (edge) nor 1 (level)"))
        }
        ObjectKind::IoApicIrq { polarity, .. } if *polarity > 1 => {
            Some(format!("ioapic_polarity {polarity} is neither 0 (active high) nor 1 (active low)"))
        }
        ObjectKind::MsiIrq { bus, dev, fun, .. } => pci(*bus, *dev, *fun),
        ObjectKind::IoDevice { domain_id, .. } if *domain_id > 0xffff => {
            Some(format!("IOMMU domain {domain_id} does not fit in 16 bits"))
        }
        ObjectKind::IoDevice { bus, dev, fun, .. } => pci(*bus, *dev, *fun),
        ObjectKind::IoPageTable { level } if !(1..=5).contains(level) => {
            Some(format!("io_pt level {level} outside 1-5 (VT-d tables have at most 5 levels)"))
        }
        _ => None,
    }
}

/// What one cover entry names: a whole object (every element of an array), or one element.
fn covered_object<'a>(index: &Index<'a>, r: &ObjRef) -> Result<(usize, &'a Object), String> {
    let &(position, object) = index
        .get(r.name.as_str())
        .ok_or_else(|| format!("covers `{r}`, but there is no object named `{}`", r.name))?;
    match (object.count, r.index) {
        (_, None) => Ok((position, object)),
        (Some(n), Some(i)) if i < n => Ok((position, object)),
        (Some(n), Some(_)) => Err(format!("covers `{r}`, but `{}` has {n} elements", r.name)),
        (None, Some(_)) => Err(format!("covers `{r}`, but `{}` is not an array", r.name)),
    }
}

/// Untyped covers: each names an untyped and objects made from memory that fit in it;
/// nothing is covered twice; no untyped covers itself.
fn check_covers(spec: &Spec, index: &Index<'_>, problem: &mut dyn FnMut(String, Option<u64>, String)) {
    // Who covers each object (exactly as named), and who covers whole arrays.
    let mut exact: BTreeMap<&ObjRef, &ObjRef> = BTreeMap::new();
    let mut whole: BTreeMap<&str, &ObjRef> = BTreeMap::new();
    for (untyped, objects) in &spec.covers {
        let name = untyped.to_string();
        let (bits, base) = match find(index, untyped) {
            Ok(Object { kind: ObjectKind::Untyped { size_bits, paddr }, .. }) => (*size_bits, *paddr),
            Ok(o) => {
                problem(name, None, format!("a `{}` covers nothing: only untypeds do", o.kind.keyword()));
                continue;
            }
            Err(e) => {
                problem(name, None, e);
                continue;
            }
        };
        // Objects made from the untyped in the order the loader makes them (declaration
        // order), as (position, element, size in bits, how many).
        let mut made: Vec<(usize, u32, u32, u64)> = Vec::new();
        let mut sizes_known = true;
        for r in objects {
            let (position, object) = match covered_object(index, r) {
                Ok(found) => found,
                Err(e) => {
                    problem(name.clone(), None, e);
                    continue;
                }
            };
            let earlier = match r.index {
                None if object.count.is_some() => whole.insert(&r.name, untyped),
                _ => exact.insert(r, untyped),
            };
            if let Some(other) = earlier {
                let message = if other == untyped {
                    format!("covers `{r}` twice")
                } else {
                    format!("covers `{r}`, which `{other}` covers too")
                };
                problem(name.clone(), None, message);
            }
            let Some(size) = object.kind.memory_bits() else {
                if matches!(object.kind, ObjectKind::Untyped { size_bits: None, .. }) {
                    sizes_known = false;
                } else {
                    problem(
                        name.clone(),
                        None,
                        format!("covers `{r}`, a `{}`, which is not made from memory", object.kind.keyword()),
                    );
                }
                continue;
            };
            let paddr = match &object.kind {
                ObjectKind::Frame { paddr, .. } | ObjectKind::Untyped { paddr, .. } => *paddr,
                _ => None,
            };
            if let Some(p) = paddr {
                // Device memory: made at its address, which must lie in the untyped's.
                if let (Some(b), Some(base)) = (bits, base) {
                    let end = p.checked_add(1u64 << size);
                    if p < base
                        || end.is_none_or(|e| e > base.saturating_add(1u64.checked_shl(b).unwrap_or(0)))
                    {
                        problem(name.clone(), None, format!("covers `{r}` at {p:#x}, outside the untyped"));
                    }
                }
                continue;
            }
            let count = match (r.index, object.count) {
                (None, Some(n)) => u64::from(n),
                _ => 1,
            };
            made.push((position, r.index.unwrap_or(0), size, count));
        }
        let Some(bits) = bits.filter(|_| sizes_known) else { continue };
        made.sort_unstable();
        // Each object aligned to its size, as retyping places it.
        let mut watermark: u128 = 0;
        for &(_, _, size, count) in &made {
            let align = 1u128 << size;
            watermark = watermark.div_ceil(align) * align + u128::from(count) * align;
        }
        if watermark > 1u128 << bits {
            problem(
                name,
                None,
                format!(
                    "what it covers takes {watermark} bytes (each object aligned to its size), more than its {} bytes",
                    1u128 << bits
                ),
            );
        }
    }
    for (r, untyped) in &exact {
        if r.index.is_some()
            && let Some(other) = whole.get(r.name.as_str())
        {
            problem(
                untyped.to_string(),
                None,
                format!("covers `{r}`, which `{other}` covers too (all of `{}`)", r.name),
            );
        }
    }
    // An untyped's parent: who covers it, as an element or as its whole array.
    let parent = |u: &ObjRef| -> Option<&ObjRef> {
        exact.get(u).copied().or_else(|| u.index.and_then(|_| whole.get(u.name.as_str()).copied()))
    };
    // Walk up from each untyped; `done` holds those known to end without a cycle.
    let mut done: BTreeMap<&ObjRef, ()> = BTreeMap::new();
    for start in spec.covers.keys() {
        let mut path: Vec<&ObjRef> = Vec::new();
        let mut at = Some(start);
        while let Some(u) = at {
            if done.contains_key(u) {
                break;
            }
            if path.contains(&u) {
                problem(u.to_string(), None, "covers itself (through the untypeds that cover it)".into());
                break;
            }
            path.push(u);
            at = parent(u);
        }
        for u in path {
            done.insert(u, ());
        }
    }
}

/// The derivation tree: both ends hold capabilities, and nothing is its own ancestor.
fn check_cdt(spec: &Spec, problem: &mut dyn FnMut(String, Option<u64>, String)) {
    let holds = |c: &CapRef| spec.caps.get(&c.object).is_some_and(|s| s.contains_key(&c.slot));
    for (child, parent) in &spec.cdt {
        for end in [child, parent] {
            if !holds(end) {
                problem(
                    end.object.to_string(),
                    Some(end.slot),
                    format!("the derivation tree names {end}, which holds no capability"),
                );
            }
        }
    }
    let mut done: BTreeMap<&CapRef, ()> = BTreeMap::new();
    for start in spec.cdt.keys() {
        let mut path: Vec<&CapRef> = Vec::new();
        let mut at = Some(start);
        while let Some(c) = at {
            if done.contains_key(c) {
                break;
            }
            if path.contains(&c) {
                problem(
                    c.object.to_string(),
                    Some(c.slot),
                    "is its own ancestor in the derivation tree".into(),
                );
                break;
            }
            path.push(c);
            at = spec.cdt.get(c);
        }
        for c in path {
            done.insert(c, ());
        }
    }
}

fn check_domains(spec: &Spec, problem: &mut dyn FnMut(String, Option<u64>, String)) {
    let Some(d) = &spec.domains else { return };
    let mut report = |message: String| problem("domains".into(), None, message);
    for (i, &(domain, time)) in d.schedule.iter().enumerate() {
        if time == 0 && domain != 0 {
            report(format!("schedule entry {i} ({domain}, 0): only the end marker (0, 0) has no duration"));
        }
        if domain > 255 {
            report(format!("schedule entry {i}: domain {domain} outside 0-255"));
        }
        if time >= 1 << 56 {
            report(format!("schedule entry {i}: duration {time} is not below 2^56"));
        }
    }
    if let Some(s) = d.start
        && !d.schedule.is_empty()
    {
        match usize::try_from(s).ok().and_then(|s| d.schedule.get(s)) {
            None => {
                report(format!("domain_set_start {s} is past the schedule's {} entries", d.schedule.len()))
            }
            Some((0, 0)) => report(format!("domain_set_start {s} is the end marker (0, 0)")),
            Some(_) => {}
        }
    }
}

/// Checks `spec`; returns every problem found (empty: valid).
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut index: Index<'_> = BTreeMap::new();
    for (position, o) in spec.objects.iter().enumerate() {
        // The first declaration of a name counts, as for the reader.
        index.entry(o.name.as_str()).or_insert((position, o));
    }
    let mut problems = Vec::new();
    let mut problem = |object: String, slot: Option<u64>, message: String| {
        problems.push(Problem { object, slot, message });
    };
    for o in &spec.objects {
        if let Some(message) = check_object(o) {
            problem(o.name.clone(), None, message);
        }
    }
    check_covers(spec, &index, &mut problem);
    for (container, slots) in &spec.caps {
        let name = container.to_string();
        let count = match find(&index, container) {
            Ok(object) => match slot_count(&object.kind) {
                Some(n) => n,
                None => {
                    problem(name, None, format!("a `{}` holds no capabilities", object.kind.keyword()));
                    continue;
                }
            },
            Err(e) => {
                problem(name, None, e);
                continue;
            }
        };
        for (&slot, cap) in slots {
            if slot >= count {
                problem(name.clone(), Some(slot), format!("slot beyond the container's {count} slots"));
            }
            if let Err(e) = check_cap(spec, &index, cap) {
                problem(name.clone(), Some(slot), e);
            }
        }
    }
    check_cdt(spec, &mut problem);
    for (irq, r) in &spec.irqs {
        let name = r.to_string();
        match find(&index, r) {
            Ok(o) if o.kind.is_irq() => {}
            Ok(o) => {
                problem(name, None, format!("IRQ {irq} maps to a `{}`, not an interrupt", o.kind.keyword()))
            }
            Err(e) => problem(name, None, e),
        }
    }
    check_domains(spec, &mut problem);
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::read;

    fn problems(text: &str) -> Vec<String> {
        validate(&read(text).unwrap()).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_consistent_spec_has_no_problems() {
        let text = "arch x86_64\nobjects {\n  e = ep\n  c = cnode (2 bits)\n  f[2] = frame (4k)\n  i = irq\n  n = notification\n}\ncaps {\n  c {\n    0: e (RW, badge: 3)\n    1: f[1] (R, uncached)\n    2: c (guard: 1, guard_size: 2)\n  }\n  i { 0: n (W) }\n}\nirq maps {\n  5: i\n}\n";
        assert_eq!(problems(text), Vec::<String>::new());
    }

    /// An untyped capability takes one badge, the frames-only restriction, and no other.
    #[test]
    fn an_untyped_capability_takes_the_frames_only_badge_and_no_other() {
        let text = "arch x86_64\nobjects {\n  u = ut (16 bits)\n  v = ut (16 bits)\n  c = cnode (2 bits)\n}\ncaps {\n  c {\n    0: u (badge: 1)\n    1: v (badge: 2)\n  }\n}\n";
        assert_eq!(problems(text), ["`c` slot 1: a capability to a `ut` takes no badge but 1 (frames only)"]);
    }

    #[test]
    fn problems_name_the_object_and_slot() {
        let text = "arch x86_64\nobjects {\n  e = ep\n  c = cnode (1 bits)\n  f[2] = frame (4k)\n  t = tcb (prio: 300)\n  big = cnode (30 bits)\n  odd = frame (8k)\n  empty = cnode (0 bits)\n}\ncaps {\n  c {\n    0: missing\n    1: f[5]\n    2: e\n  }\n  e { 0: c }\n  ghost { 0: e }\n  t {\n    0: e (guard_size: 3)\n    1: c (badge: 4)\n    2: f[0] (reply)\n    3: c (RW)\n  }\n}\nirq maps {\n  1: e\n}\n";
        let found = problems(text);
        let expect = [
            "`t`: priority above 255",
            "`big`: cnode radix 30 outside 1-20",
            "`odd`: frame size 8192 is neither 4k nor 2M (x86_64)",
            // One slot: below the smallest CNode the kernel makes.
            "`empty`: cnode radix 0 outside 1-20",
            "`c` slot 0: no object named `missing`",
            "`c` slot 1: `f` has 2 elements, not an element 5",
            "`c` slot 2: slot beyond the container's 2 slots",
            "`e`: a `ep` holds no capabilities",
            "`ghost`: no object named `ghost`",
            "`t` slot 0: a capability to a `ep` takes no guard",
            "`t` slot 1: a capability to a `cnode` takes no badge",
            "`t` slot 2: only TCB capabilities can be reply capabilities",
            "`t` slot 3: a capability to a `cnode` takes no rights",
            "`e`: IRQ 1 maps to a `ep`, not an interrupt",
        ];
        for e in expect {
            assert!(found.iter().any(|f| f == e), "missing `{e}` in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    fn problems_of(objects: &str, caps: &str, rest: &str) -> Vec<String> {
        problems(&format!("arch x86_64\nobjects {{\n{objects}\n}}\ncaps {{\n{caps}\n}}\n{rest}"))
    }

    #[test]
    fn untyped_covers_hold_memory_that_fits_once() {
        // Fits exactly, each object aligned to its size: 32 bytes, then a page at 4 KiB.
        assert_eq!(
            problems_of("  u = ut (13 bits) { e = ep, f = frame (4k) }", "", ""),
            Vec::<String>::new()
        );
        let cases: &[(&str, &str)] = &[
            (
                "  u = ut (13 bits) { e = ep, f = frame (4k), g = ep }",
                "`u`: what it covers takes 8224 bytes (each object aligned to its size), more than its 8192 bytes",
            ),
            (
                "  u = ut (12 bits) { c = cnode (8 bits) }",
                "`u`: what it covers takes 16384 bytes (each object aligned to its size), more than its 4096 bytes",
            ),
            ("  u = ut (16 bits) { f[] }\n  f[32] = frame (4k)", "more than its 65536 bytes"),
            ("  u = ut (20 bits) { i = irq }", "`u`: covers `i`, a `irq`, which is not made from memory"),
            (
                "  u = ut (20 bits) { e }\n  v = ut (20 bits) { e }\n  e = ep",
                "`v`: covers `e`, which `u` covers too",
            ),
            (
                "  u = ut (20 bits) { f[] }\n  v = ut (20 bits) { f[1] }\n  f[2] = frame (4k)",
                "`v`: covers `f[1]`, which `u` covers too (all of `f`)",
            ),
            (
                "  u = ut (20 bits) { v }\n  v = ut (16 bits) { u }",
                "covers itself (through the untypeds that cover it)",
            ),
            ("  u = ut (20 bits) { ghost }", "`u`: covers `ghost`, but there is no object named `ghost`"),
            (
                "  u = ut (20 bits) { f[7] }\n  f[2] = frame (4k)",
                "`u`: covers `f[7]`, but `f` has 2 elements",
            ),
            (
                "  u = ut (13 bits, paddr: 0x10000) { d = frame (4k, paddr: 0x12000) }",
                "`u`: covers `d` at 0x12000, outside the untyped",
            ),
        ];
        for (objects, message) in cases {
            let found = problems_of(objects, "", "");
            assert!(found.iter().any(|f| f.contains(message)), "{objects}: {found:#?}");
        }
        // A device frame inside its untyped is not counted against the watermark.
        let found = problems_of(
            "  u = ut (12 bits, paddr: 0x10000) { d = frame (4k, paddr: 0x10000), e = ep }",
            "",
            "",
        );
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn new_objects_parameters_are_checked() {
        let cases = [
            (
                "  i = ioapic_irq (ioapic_num: 0, ioapic_pin: 1, ioapic_level: 2, ioapic_polarity: 0)",
                "`i`: ioapic_level 2 is neither 0 (edge) nor 1 (level)",
            ),
            (
                "  i = ioapic_irq (ioapic_num: 0, ioapic_pin: 1, ioapic_level: 0, ioapic_polarity: 5)",
                "ioapic_polarity 5 is neither",
            ),
            (
                "  m = msi_irq (msi_handle: 0, msi_pci_bus: 0, msi_pci_dev: 40, msi_pci_fun: 0)",
                "`m`: PCI address 0:40.0 is outside bus 0-255, device 0-31, function 0-7",
            ),
            ("  d = io_device (domainID: 70000, 0:1.0)", "`d`: IOMMU domain 70000 does not fit in 16 bits"),
            ("  d = io_device (domainID: 1, 256:1.0)", "PCI address 256:1.0 is outside"),
            ("  p = io_pt (level: 9)", "`p`: io_pt level 9 outside 1-5"),
            ("  s = sc (3 bits)", "`s`: sc size 3 bits outside 7-47"),
        ];
        for (objects, message) in cases {
            let found = problems_of(objects, "", "");
            assert!(found.len() == 1 && found[0].contains(message), "{objects}: {found:#?}");
        }
    }

    #[test]
    fn capabilities_of_the_whole_grammar_are_checked() {
        let objects = "  t = tcb\n  c = cnode (4 bits)\n  f = frame (4k)\n  g = frame (4k)\n  pt = pt\n  i = ioapic_irq (ioapic_num: 0, ioapic_pin: 1, ioapic_level: 0, ioapic_polarity: 0)\n  n = notification";
        let ok = "  t { bound_vcpu: c }\n  pt { 1: f (RW) }\n  c {\n    1: f (RW, mapping: (pt, 1))\n    2: sched_control (core: 1)\n    3: t (master_reply)\n  }\n  i { 0: n (W) }";
        let found = problems_of(objects, ok, "irq maps {\n  4: i\n}\n");
        // `bound_vcpu` is slot 9 of a TCB: it fits (what it holds is the loader's business).
        assert_eq!(found, Vec::<String>::new());
        let cases = [
            (
                "  c { 1: g (RW, mapping: (pt, 1)) }",
                "`c` slot 1: mapping (pt, 1): that slot holds no capability to `g`",
            ),
            ("  c { 1: f (mapping: (c, 1)) }", "mapping (c, 1): a `cnode` maps no frames"),
            ("  c { 1: c (mapping: (pt, 1)) }", "a capability to a `cnode` takes no `mapping`"),
            ("  c { 1: sched_control }", "`c` slot 1: `sched_control` needs `core: N`"),
            ("  c { 1: irq_control (RW) }", "`irq_control` takes no parameters"),
            ("  c { 1: t (reply, master_reply) }", "`reply` or `master_reply`, not both"),
            ("  t { 10: c }", "`t` slot 10: slot beyond the container's 10 slots"),
        ];
        for (caps, message) in cases {
            let found = problems_of(objects, caps, "");
            assert!(found.iter().any(|f| f == message || f.contains(message)), "{caps}: {found:#?}");
        }
    }

    #[test]
    fn the_derivation_tree_and_the_domain_schedule_are_checked() {
        let objects = "  c = cnode (4 bits)\n  e = ep";
        let caps = "  c {\n    1: e\n    2: e\n  }";
        let found = problems_of(objects, caps, "cdt {\n  (c, 1) { (c, 2) { (c, 1) } (c, 3) }\n}\n");
        assert!(
            found
                .iter()
                .any(|f| f == "`c` slot 3: the derivation tree names (c, 3), which holds no capability"),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.ends_with("is its own ancestor in the derivation tree")),
            "{found:#?}"
        );
        let domains = "domains {\n  schedule: [(1, 0), (300, 5), (0, 72057594037927936), (0, 0)]\n  domain_set_start: 3\n}\n";
        let found = problems_of(objects, "", domains);
        let expect = [
            "`domains`: schedule entry 0 (1, 0): only the end marker (0, 0) has no duration",
            "`domains`: schedule entry 1: domain 300 outside 0-255",
            "`domains`: schedule entry 2: duration 72057594037927936 is not below 2^56",
            "`domains`: domain_set_start 3 is the end marker (0, 0)",
        ];
        assert_eq!(found, expect);
        let found = problems_of(objects, "", "domains {\n  schedule: [(0, 5)]\n  domain_set_start: 1\n}\n");
        assert_eq!(found, ["`domains`: domain_set_start 1 is past the schedule's 1 entries"]);
    }
}
