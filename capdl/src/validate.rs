//! Validation of a specification: every name resolves, containers hold only what they can,
//! slots fit, and capability parameters belong to the capability's type. Every error names
//! the object (and the slot) it is about.

use crate::model::{Cap, ObjRef, Object, ObjectKind, Spec, Target};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// One problem with a specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The object the problem is about.
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

fn find<'a>(spec: &'a Spec, r: &ObjRef) -> Result<&'a Object, String> {
    let object = spec
        .objects
        .iter()
        .find(|o| o.name == r.name)
        .ok_or_else(|| format!("no object named `{}`", r.name))?;
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
        ObjectKind::Tcb(_) => Some(9),
        ObjectKind::PageTable
        | ObjectKind::PageDirectory
        | ObjectKind::Pdpt
        | ObjectKind::Pml4
        | ObjectKind::EptTable { .. } => Some(512),
        ObjectKind::Irq => Some(1),
        // Cleave: slot 0 the TCB that runs it, slot 1 its EPT root.
        ObjectKind::Vcpu => Some(2),
        _ => None,
    }
}

fn check_cap(spec: &Spec, cap: &Cap) -> Result<(), String> {
    let Target::Object(r) = &cap.target else { return Ok(()) };
    let target = find(spec, r)?;
    let p = &cap.params;
    let kind = &target.kind;
    let rights_ok =
        matches!(kind, ObjectKind::Endpoint | ObjectKind::Notification | ObjectKind::Frame { .. });
    if !p.rights.is_empty() && !rights_ok {
        return Err(format!("a capability to a `{}` takes no rights", kind.keyword()));
    }
    if p.badge != 0 && !matches!(kind, ObjectKind::Endpoint | ObjectKind::Notification) {
        return Err(format!("a capability to a `{}` takes no badge", kind.keyword()));
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
    Ok(())
}

/// Checks `spec`; returns every problem found (empty: valid).
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |object: &str, slot: Option<u64>, message: String| {
        problems.push(Problem { object: object.into(), slot, message });
    };
    for o in &spec.objects {
        match &o.kind {
            ObjectKind::CNode { size_bits } if *size_bits == 0 || *size_bits > 20 => {
                problem(&o.name, None, format!("cnode radix {size_bits} outside 1-20"));
            }
            ObjectKind::Untyped { size_bits: Some(b), .. } if !(4..=47).contains(b) => {
                problem(&o.name, None, format!("untyped size {b} bits outside 4-47"));
            }
            ObjectKind::Untyped { children, .. } => {
                for c in children {
                    if let Err(e) = find(spec, c) {
                        problem(&o.name, None, e);
                    }
                }
            }
            ObjectKind::Frame { size, .. } if *size != 4096 && *size != 2 << 20 => {
                problem(&o.name, None, format!("frame size {size} is neither 4k nor 2M (x86_64)"));
            }
            ObjectKind::Tcb(t) if t.prio.is_some_and(|p| p > 255) || t.max_prio.is_some_and(|p| p > 255) => {
                problem(&o.name, None, "priority above 255".into());
            }
            ObjectKind::IoPorts { first, last } if first > last || *last > 0xffff => {
                problem(&o.name, None, format!("port range {first:#x}..{last:#x} is not within 0..0xffff"));
            }
            _ => {}
        }
    }
    for (container, slots) in &spec.caps {
        let name = container.to_string();
        let count = match find(spec, container) {
            Ok(object) => match slot_count(&object.kind) {
                Some(n) => n,
                None => {
                    problem(&name, None, format!("a `{}` holds no capabilities", object.kind.keyword()));
                    continue;
                }
            },
            Err(e) => {
                problem(&name, None, e);
                continue;
            }
        };
        for (&slot, cap) in slots {
            if slot >= count {
                problem(&name, Some(slot), format!("slot beyond the container's {count} slots"));
            }
            if let Err(e) = check_cap(spec, cap) {
                problem(&name, Some(slot), e);
            }
        }
    }
    for (irq, r) in &spec.irqs {
        let name = r.to_string();
        match find(spec, r) {
            Ok(o) if o.kind == ObjectKind::Irq => {}
            Ok(o) => {
                problem(&name, None, format!("IRQ {irq} maps to a `{}`, not an `irq`", o.kind.keyword()))
            }
            Err(e) => problem(&name, None, e),
        }
    }
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

    #[test]
    fn problems_name_the_object_and_slot() {
        let text = "arch x86_64\nobjects {\n  e = ep\n  c = cnode (1 bits)\n  f[2] = frame (4k)\n  t = tcb (prio: 300)\n  big = cnode (30 bits)\n  odd = frame (8k)\n}\ncaps {\n  c {\n    0: missing\n    1: f[5]\n    2: e\n  }\n  e { 0: c }\n  ghost { 0: e }\n  t {\n    0: e (guard_size: 3)\n    1: c (badge: 4)\n    2: f[0] (reply)\n    3: c (RW)\n  }\n}\nirq maps {\n  1: e\n}\n";
        let found = problems(text);
        let expect = [
            "`t`: priority above 255",
            "`big`: cnode radix 30 outside 1-20",
            "`odd`: frame size 8192 is neither 4k nor 2M (x86_64)",
            "`c` slot 0: no object named `missing`",
            "`c` slot 1: `f` has 2 elements, not an element 5",
            "`c` slot 2: slot beyond the container's 2 slots",
            "`e`: a `ep` holds no capabilities",
            "`ghost`: no object named `ghost`",
            "`t` slot 0: a capability to a `ep` takes no guard",
            "`t` slot 1: a capability to a `cnode` takes no badge",
            "`t` slot 2: only TCB capabilities can be reply capabilities",
            "`t` slot 3: a capability to a `cnode` takes no rights",
            "`e`: IRQ 1 maps to a `ep`, not an `irq`",
        ];
        for e in expect {
            assert!(found.iter().any(|f| f == e), "missing `{e}` in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }
}
