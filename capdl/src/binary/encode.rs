//! Encoding a [`Spec`] into the binary form.
//!
//! The encoder refuses, with a message naming the object (or slot) and what is wrong,
//! everything the loader cannot build: specs for another architecture, objects of kinds
//! Cleave has no use for (ASID pools, scheduling contexts, reply objects, I/O APIC and MSI
//! interrupts, IOMMU devices and page tables), untyped memory at a physical address or of no
//! given size, thread parameters the loader does not honour, capabilities it cannot give
//! (`asid_control`, `io_space_master`, `domain`, `sched_control`, reply capabilities, TCB
//! slots other than its CSpace, VSpace, fault endpoint and bound notification), a
//! derivation tree and a domain schedule. What it leaves out is annotation only: capability
//! names, `asid:` and `mapping:` (the loader assigns ASIDs and maps what page-table slots
//! hold).

use super::{CAP_RECORD, Kind, MAGIC, OBJECT_RECORD, special};
use crate::model::{ObjRef, Object, ObjectKind, Spec, TCB_SLOT_NAMES, Target};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use cleave_abi::layout::PAGE_SHIFT;
use cleave_abi::object::SLOT_SIZE_BITS;

/// Why a specification cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

fn rights_bits(r: &crate::model::Rights) -> u8 {
    u8::from(r.write) | u8::from(r.read) << 1 | u8::from(r.grant) << 2 | u8::from(r.grant_reply) << 3
}

/// Most objects (arrays expanded) an encoding holds: far above what any loader builds
/// (`LOADER_MAX_OBJECTS`), low enough that encoding a hostile spec cannot exhaust memory.
pub const MAX_ENCODED_OBJECTS: u64 = 1 << 20;

/// The TCB slots the loader fills (when it sets the thread up): CSpace, VSpace, fault
/// endpoint, bound notification.
const TCB_SLOTS_BUILT: [u64; 4] = [0, 1, 5, 8];

/// The most interrupt lines the loader takes (`IrqControl::get` takes a byte).
const MAX_IRQ_LINE: u64 = 255;

/// Why the loader cannot build object `r` (an element of `o`), if it cannot.
fn refusal(o: &Object, r: &ObjRef) -> Option<String> {
    let keyword = o.kind.keyword();
    let cannot = |why: String| Some(format!("object `{r}` of kind {keyword}: {why}"));
    match &o.kind {
        ObjectKind::AsidPool { .. }
        | ObjectKind::SchedContext { .. }
        | ObjectKind::Reply
        | ObjectKind::IoApicIrq { .. }
        | ObjectKind::MsiIrq { .. }
        | ObjectKind::IoDevice { .. }
        | ObjectKind::IoPageTable { .. } => {
            cannot(format!("the Cleave loader cannot build {keyword} objects"))
        }
        ObjectKind::Untyped { size_bits: None, .. } => {
            cannot("the Cleave loader makes untyped memory of a given size only (`N bits`)".into())
        }
        ObjectKind::Untyped { paddr: Some(p), .. } => cannot(format!(
            "the Cleave loader cannot place untyped memory at a physical address (`paddr: {p:#x}`)"
        )),
        ObjectKind::Tcb(t) => {
            let given = [("addr", t.addr), ("ip", t.ip), ("sp", t.sp), ("fault_ep", t.fault_ep)];
            if let Some((key, _)) = given.iter().find(|(_, v)| v.is_some()) {
                return cannot(format!(
                    "the Cleave loader starts a thread at its ELF image's entry, with its own stack and \
                     IPC buffer and the fault endpoint in `fault_ep_slot`: it cannot honour `{key}:`"
                ));
            }
            if t.elf.is_none() {
                return cannot(
                    "the Cleave loader starts a thread from an ELF image it names (`elf: NAME`)".into(),
                );
            }
            match (t.affinity, t.dom, t.fpu_disabled, t.init.len(), t.prio.max(t.max_prio)) {
                (Some(a), ..) if a != 0 => cannot(format!("Cleave runs on one processor (`affinity: {a}`)")),
                (_, Some(d), ..) if d != 0 => {
                    cannot(format!("Cleave has no scheduling domains (`dom: {d}`)"))
                }
                (_, _, Some(true), ..) => cannot(
                    "the Cleave loader cannot start a thread without its FPU (`fpu_disabled: True`)".into(),
                ),
                (_, _, _, n, _) if n > 1 => {
                    cannot(format!("the Cleave loader passes one initial argument (`init: [a]`), not {n}"))
                }
                (.., Some(p)) if p > 255 => cannot(format!("priority {p} is above 255")),
                _ => None,
            }
        }
        ObjectKind::Endpoint
        | ObjectKind::Notification
        | ObjectKind::CNode { .. }
        | ObjectKind::Untyped { .. }
        | ObjectKind::Frame { .. }
        | ObjectKind::PageTable
        | ObjectKind::PageDirectory
        | ObjectKind::Pdpt
        | ObjectKind::Pml4
        | ObjectKind::Irq
        | ObjectKind::IoPorts { .. }
        | ObjectKind::Vcpu
        | ObjectKind::EptTable { .. } => None,
    }
}

/// Refusals of the whole spec beyond its objects and capabilities: its derivation tree,
/// domain schedule and interrupt lines.
fn spec_refusal(spec: &Spec) -> Option<String> {
    if let Some((child, parent)) = spec.cdt.iter().next() {
        return Some(format!(
            "the spec's derivation tree ({} entries; {child} from {parent}): the Cleave loader \
             derives every capability from its object's original and cannot build another tree",
            spec.cdt.len()
        ));
    }
    if spec.domains.as_ref().is_some_and(|d| !d.schedule.is_empty()) {
        return Some("the spec's domain schedule: Cleave has no scheduling domains".into());
    }
    if let Some((&irq, r)) = spec.irqs.range(MAX_IRQ_LINE + 1..).next() {
        return Some(format!("IRQ {irq} (`{r}`): the Cleave loader takes lines 0-{MAX_IRQ_LINE}"));
    }
    None
}

/// The size of every paging table's record: a table is one page.
const TABLE_BITS: u8 = PAGE_SHIFT as u8;

/// Encodes `spec` (which should have passed [`crate::validate::validate`]).
pub fn encode(spec: &Spec) -> Result<Vec<u8>, EncodeError> {
    if spec.arch != "x86_64" {
        return Err(EncodeError(format!(
            "the spec is for `arch {}`; the Cleave loader builds `arch x86_64`",
            spec.arch
        )));
    }
    // Arrays are expanded below: bound the total first (a declaration `f[4294967295]` is
    // short text but billions of records).
    let total = spec.objects.iter().try_fold(0u64, |sum, o| sum.checked_add(u64::from(o.count.unwrap_or(1))));
    match total {
        Some(n) if n <= MAX_ENCODED_OBJECTS => {}
        _ => {
            return Err(EncodeError(format!(
                "{} objects with arrays expanded; the encoding holds at most {MAX_ENCODED_OBJECTS}",
                total.map_or_else(|| "more than 2^64".into(), |n| format!("{n}"))
            )));
        }
    }
    let mut names: Vec<String> = Vec::new();
    let mut name_index: BTreeMap<String, u32> = BTreeMap::new();
    let mut intern = |s: &str, names: &mut Vec<String>| -> u32 {
        *name_index.entry(s.into()).or_insert_with(|| {
            names.push(s.into());
            (names.len() - 1) as u32
        })
    };
    // Where each declaration's records start (arrays expanded; at most 2^20 in all).
    let mut first: BTreeMap<&str, (u32, &Object)> = BTreeMap::new();
    let mut next_index = 0u32;
    for o in &spec.objects {
        first.entry(o.name.as_str()).or_insert((next_index, o));
        next_index += o.count.unwrap_or(1);
    }
    let position = |r: &ObjRef| -> Option<(u32, &Object)> {
        let &(at, o) = first.get(r.name.as_str())?;
        match (o.count, r.index) {
            (None, None) => Some((at, o)),
            (Some(n), Some(i)) if i < n => Some((at + i, o)),
            _ => None,
        }
    };
    // Which untyped object each object is made from (its index + 1; 0: the loader's pool).
    // An untyped must come before its children.
    let mut parent_of: BTreeMap<&ObjRef, u32> = BTreeMap::new();
    for (untyped, objects) in &spec.covers {
        let parent = match position(untyped) {
            Some((at, Object { kind: ObjectKind::Untyped { .. }, .. })) => at + 1,
            _ => return Err(EncodeError(format!("`{untyped}` covers objects but is no untyped"))),
        };
        for c in objects {
            if parent_of.insert(c, parent).is_some_and(|p| p != parent) {
                return Err(EncodeError(format!("`{c}` is covered by two untypeds")));
            }
        }
    }
    // Objects, arrays expanded, in declaration order.
    let mut index: BTreeMap<ObjRef, u32> = BTreeMap::new();
    let mut objects: Vec<[u8; OBJECT_RECORD]> = Vec::new();
    for o in &spec.objects {
        let elements: Vec<Option<u32>> = match o.count {
            None => alloc::vec![None],
            Some(n) => (0..n).map(Some).collect(),
        };
        for element in elements {
            let r = ObjRef { name: o.name.clone(), index: element };
            if let Some(why) = refusal(o, &r) {
                return Err(EncodeError(why));
            }
            let mut rec = [0u8; OBJECT_RECORD];
            let (kind, size_bits, p0, p1): (Kind, u8, u64, u64) = match &o.kind {
                // `refusal` took those without a size or with an address; the size is
                // below 64 (the reader's bound; validation holds it to 4-47).
                ObjectKind::Untyped { size_bits, .. } => (Kind::Untyped, size_bits.unwrap_or(0) as u8, 0, 0),
                ObjectKind::Endpoint => (Kind::Endpoint, 0, 0, 0),
                ObjectKind::Notification => (Kind::Notification, 0, 0, 0),
                ObjectKind::Tcb(t) => {
                    rec[2] = t.prio.unwrap_or(0) as u8;
                    rec[3] = t.max_prio.unwrap_or(0) as u8;
                    if let Some(crate::model::Lifetime::RestartEvery { ms }) = t.lifetime
                        && ms > crate::binary::lifetime::MAX_RESTART_MS
                    {
                        return Err(EncodeError(format!("`{r}`: restart period of {ms} ms too long")));
                    }
                    let lifetime = t.lifetime.map_or(0, crate::model::Lifetime::encode);
                    let lifetime = u32::try_from(lifetime)
                        .map_err(|_| EncodeError(format!("`{r}`: restart period too long")))?;
                    rec[24..28].copy_from_slice(&lifetime.to_le_bytes());
                    let elf =
                        t.elf.as_deref().map_or(u64::from(u32::MAX), |e| u64::from(intern(e, &mut names)));
                    // Bit 0: resume; the rest: the first initial argument (`init: [a]`),
                    // which the loader puts in rdi.
                    let arg = t.init.first().copied().unwrap_or(0);
                    if arg >> 63 != 0 {
                        return Err(EncodeError(format!("`{r}`: initial argument {arg:#x} too large")));
                    }
                    let stack = match t.stack_pages {
                        None => 0,
                        Some(n @ 1..=crate::binary::MAX_STACK_PAGES) => n << crate::binary::STACK_PAGES_SHIFT,
                        Some(n) => {
                            return Err(EncodeError(format!(
                                "`{r}`: a stack of {n} pages (1 to {} the loader makes)",
                                crate::binary::MAX_STACK_PAGES
                            )));
                        }
                    };
                    let flags = if t.ends_run { crate::binary::tcb_flag::ENDS_RUN } else { 0 }
                        | if t.quiet { crate::binary::tcb_flag::QUIET } else { 0 }
                        | if t.reads_audit { crate::binary::tcb_flag::READS_AUDIT } else { 0 }
                        | stack;
                    (Kind::Tcb, 0, elf | flags, u64::from(t.resume.unwrap_or(false)) | arg << 1)
                }
                // The CNode's size: validation holds the radix to 1-20, so it fits.
                ObjectKind::CNode { size_bits } => (Kind::CNode, (*size_bits + SLOT_SIZE_BITS) as u8, 0, 0),
                ObjectKind::Frame { size, paddr, fill } => {
                    // Cleave's fill: one entry, `NAME` or `NAME@OFFSET`: the frame starts as
                    // those bytes of the boot image's file NAME. param1: name index + 1,
                    // and the offset above bit 32.
                    let fill = match fill.as_slice() {
                        [] => 0,
                        [one] => {
                            let (name, offset) = match one.split_once('@') {
                                Some((n, o)) => (
                                    n,
                                    o.parse::<u32>()
                                        .map_err(|_| EncodeError(format!("`{r}`: bad fill offset `{o}`")))?,
                                ),
                                None => (one.as_str(), 0),
                            };
                            (u64::from(intern(name, &mut names)) + 1) | u64::from(offset) << 32
                        }
                        _ => return Err(EncodeError(format!("`{r}`: Cleave fills a frame from one file"))),
                    };
                    (Kind::Frame, size.trailing_zeros() as u8, paddr.unwrap_or(0), fill)
                }
                ObjectKind::PageTable => (Kind::PageTable, TABLE_BITS, 0, 0),
                ObjectKind::PageDirectory => (Kind::PageDirectory, TABLE_BITS, 0, 0),
                ObjectKind::Pdpt => (Kind::Pdpt, TABLE_BITS, 0, 0),
                ObjectKind::Pml4 => (Kind::Pml4, TABLE_BITS, 0, 0),
                ObjectKind::Irq => {
                    if !spec.irqs.values().any(|i| *i == r) {
                        return Err(EncodeError(format!(
                            "object `{r}` of kind irq: no `irq maps` entry gives its line, which the loader needs"
                        )));
                    }
                    (Kind::Irq, 0, 0, 0)
                }
                ObjectKind::IoPorts { first, last } => (Kind::IoPorts, 0, first | last << 16, 0),
                ObjectKind::Vcpu => (Kind::Vcpu, 13, 0, 0),
                ObjectKind::EptTable { level: 4 } => (Kind::EptPml4, TABLE_BITS, 0, 0),
                ObjectKind::EptTable { level: 3 } => (Kind::EptPdpt, TABLE_BITS, 0, 0),
                ObjectKind::EptTable { level: 2 } => (Kind::EptPd, TABLE_BITS, 0, 0),
                ObjectKind::EptTable { level: 1 } => (Kind::EptPt, TABLE_BITS, 0, 0),
                ObjectKind::EptTable { level } => {
                    return Err(EncodeError(format!("object `{r}`: no EPT table has level {level}")));
                }
                // `refusal` refused these above.
                ObjectKind::AsidPool { .. }
                | ObjectKind::SchedContext { .. }
                | ObjectKind::Reply
                | ObjectKind::IoApicIrq { .. }
                | ObjectKind::MsiIrq { .. }
                | ObjectKind::IoDevice { .. }
                | ObjectKind::IoPageTable { .. } => {
                    return Err(EncodeError(format!(
                        "object `{r}` of kind {0}: the Cleave loader cannot build {0} objects",
                        o.kind.keyword()
                    )));
                }
            };
            // The untyped it is made from: by element, or the whole array.
            let parent = parent_of
                .get(&r)
                .or_else(|| parent_of.get(&ObjRef { name: o.name.clone(), index: None }))
                .copied()
                .unwrap_or(0);
            if parent != 0 && parent > objects.len() as u32 {
                return Err(EncodeError(format!("`{r}` comes before the untyped it is made from")));
            }
            rec[28..32].copy_from_slice(&parent.to_le_bytes());
            rec[0] = kind as u8;
            rec[1] = size_bits;
            rec[4..8].copy_from_slice(&intern(&r.to_string(), &mut names).to_le_bytes());
            rec[8..16].copy_from_slice(&p0.to_le_bytes());
            rec[16..24].copy_from_slice(&p1.to_le_bytes());
            index.insert(r, objects.len() as u32);
            objects.push(rec);
        }
    }
    let find = |r: &ObjRef| index.get(r).copied().ok_or_else(|| EncodeError(format!("no object `{r}`")));
    let mut caps: Vec<[u8; CAP_RECORD]> = Vec::new();
    for (container, slots) in &spec.caps {
        let c = find(container)?;
        let is_tcb = position(container).is_some_and(|(_, o)| matches!(o.kind, ObjectKind::Tcb(_)));
        for (&slot, cap) in slots {
            let at = || format!("`{container}` slot {slot}");
            if is_tcb && !TCB_SLOTS_BUILT.contains(&slot) {
                let name = TCB_SLOT_NAMES.iter().find(|(_, s)| *s == slot).map_or("", |(n, _)| n);
                return Err(EncodeError(format!(
                    "{} ({name}): the Cleave loader fills a TCB's cspace, vspace, fault_ep_slot and \
                     bound_notification slots only",
                    at()
                )));
            }
            let target = match &cap.target {
                Target::Object(r) => find(r)?,
                Target::IrqControl => special::IRQ_CONTROL,
                other @ (Target::AsidControl
                | Target::IoSpaceMaster
                | Target::Domain
                | Target::SchedControl) => {
                    let name = match other {
                        Target::AsidControl => "asid_control",
                        Target::IoSpaceMaster => "io_space_master",
                        Target::Domain => "domain",
                        _ => "sched_control",
                    };
                    return Err(EncodeError(format!(
                        "{}: the Cleave loader cannot give out `{name}` capabilities",
                        at()
                    )));
                }
            };
            if cap.params.reply || cap.params.master_reply {
                return Err(EncodeError(format!(
                    "{}: Cleave's kernel has no reply capabilities to threads (`reply`, `master_reply`)",
                    at()
                )));
            }
            let mut rec = [0u8; CAP_RECORD];
            rec[0..4].copy_from_slice(&c.to_le_bytes());
            rec[4..8].copy_from_slice(
                &u32::try_from(slot)
                    .map_err(|_| EncodeError(format!("`{container}` slot {slot} too large")))?
                    .to_le_bytes(),
            );
            rec[8..12].copy_from_slice(&target.to_le_bytes());
            rec[12] = rights_bits(&cap.params.rights);
            rec[13] = cap.params.guard_size as u8;
            rec[14] = u8::from(cap.params.uncached);
            rec[16..24].copy_from_slice(&cap.params.badge.to_le_bytes());
            rec[24..32].copy_from_slice(&cap.params.guard.to_le_bytes());
            caps.push(rec);
        }
    }
    if let Some(why) = spec_refusal(spec) {
        return Err(EncodeError(why));
    }
    let mut irqs: Vec<[u8; 8]> = Vec::new();
    for (&irq, r) in &spec.irqs {
        let mut rec = [0u8; 8];
        // At most MAX_IRQ_LINE (`spec_refusal`).
        rec[0..4].copy_from_slice(&(irq as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&find(r)?.to_le_bytes());
        irqs.push(rec);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    for n in [objects.len(), caps.len(), irqs.len(), names.len()] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    out.resize(super::HEADER, 0);
    objects.iter().for_each(|r| out.extend_from_slice(r));
    caps.iter().for_each(|r| out.extend_from_slice(r));
    irqs.iter().for_each(|r| out.extend_from_slice(r));
    let table_at = out.len();
    out.resize(table_at + names.len() * 8, 0);
    for (i, name) in names.iter().enumerate() {
        let offset = out.len() as u32;
        out.extend_from_slice(name.as_bytes());
        let at = table_at + i * 8;
        out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&(name.len() as u32).to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{DecodeError, EncodedSpec, Kind};
    use super::*;
    use crate::text::read;

    const TEXT: &str = "arch x86_64\nobjects {\n  t = tcb (prio: 100, max_prio: 0, resume: True, elf: server, ends_run: True)\n  c = cnode (8 bits)\n  e = ep\n  f[2] = frame (4k)\n  i = irq\n  p = io_ports (ports: [0x40..0x43])\n}\ncaps {\n  c {\n    1: e (W, badge: 5)\n    2: f[1] (R, uncached)\n    3: irq_control\n  }\n  t {\n    0: c (guard_size: 56)\n  }\n}\nirq maps {\n  3: i\n}\n";

    #[test]
    fn restart_periods_the_encoding_cannot_hold_are_refused() {
        for (ms, ok) in
            [(1u64, true), (super::super::lifetime::MAX_RESTART_MS, true), (1 << 24, false), (1 << 56, false)]
        {
            let text = TEXT.replace("ends_run: True", &format!("lifetime: restart, restart_ms: {ms}"));
            let spec = read(&text).unwrap();
            assert_eq!(encode(&spec).is_ok(), ok, "{ms} ms");
        }
    }

    /// Found by the text fuzzer: `f[4294967295]` made the encoder allocate 34 GB and abort.
    #[test]
    fn huge_arrays_are_refused_before_they_are_expanded() {
        for (count, ok) in
            [(MAX_ENCODED_OBJECTS - 8, true), (MAX_ENCODED_OBJECTS, false), (u64::from(u32::MAX), false)]
        {
            let text = TEXT.replace("f[2] = frame", &format!("f[{count}] = frame"));
            let spec = read(&text).unwrap();
            let result = encode(&spec);
            assert_eq!(result.is_ok(), ok, "{count}");
            if let Err(e) = result {
                assert!(e.0.contains("the encoding holds at most"), "{e}");
            }
        }
        // Several arrays whose sizes overflow a 32-bit sum.
        let text =
            TEXT.replace("f[2] = frame (4k)", "f[4294967295] = frame (4k)\n  g[4294967295] = frame (4k)");
        assert!(encode(&read(&text).unwrap()).is_err());
    }

    #[test]
    fn encodes_and_reads_back_in_place() {
        let spec = read(TEXT).unwrap();
        let bytes = encode(&spec).unwrap();
        let e = EncodedSpec::new(&bytes).unwrap();
        assert_eq!((e.object_count(), e.cap_count(), e.irq_count()), (7, 4, 1));
        let t = e.object(0).unwrap();
        assert_eq!((t.kind, t.priority, t.param1), (Kind::Tcb, 100, 1));
        assert_eq!(e.name(t.param0 as u32), Some("server"));
        assert_eq!(t.param0 & super::super::tcb_flag::ENDS_RUN, super::super::tcb_flag::ENDS_RUN);
        assert_eq!(e.name(e.object(4).unwrap().name), Some("f[1]"));
        assert_eq!(e.object(1).unwrap().size_bits, 14);
        assert_eq!(e.object(6).unwrap().param0, 0x40 | 0x43 << 16);
        let caps: Vec<_> = (0..4).map(|i| e.cap(i).unwrap()).collect();
        assert!(caps.iter().any(|c| c.target == 2 && c.badge == 5 && c.rights == 1 && c.slot == 1));
        assert!(caps.iter().any(|c| c.target == 4 && c.flags == 1 && c.rights == 2));
        assert!(caps.iter().any(|c| c.target == special::IRQ_CONTROL));
        assert!(caps.iter().any(|c| c.container == 0 && c.guard_size == 56));
        assert_eq!(e.irq(0), Some((3, 5)));
        // The digest depends on the distribution: a different badge changes it.
        let other = encode(&read(&TEXT.replace("badge: 5", "badge: 6")).unwrap()).unwrap();
        assert_ne!(EncodedSpec::new(&other).unwrap().digest(), e.digest());
        assert_eq!(EncodedSpec::new(&encode(&spec).unwrap()).unwrap().digest(), e.digest());
    }

    /// Issue 15: what the loader cannot build is refused by name and kind, not dropped.
    #[test]
    fn what_the_loader_cannot_build_is_refused_by_name() {
        let refused = |objects: &str, caps: &str, rest: &str| -> String {
            let text = format!(
                "arch x86_64\nobjects {{\n  t = tcb (elf: a)\n  c = cnode (4 bits)\n  e = ep\n  i = irq\n{objects}\n}}\n\
                 caps {{\n  c {{\n{caps}\n  }}\n}}\nirq maps {{\n  3: i\n}}\n{rest}"
            );
            let spec = read(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            encode(&spec).expect_err(&text).0
        };
        let kinds = [
            (
                "irq_3 = ioapic_irq (ioapic_num: 0, ioapic_pin: 3, ioapic_level: 0, ioapic_polarity: 0)",
                "irq_3",
                "ioapic_irq",
            ),
            ("m = msi_irq (msi_handle: 0, msi_pci_bus: 0, msi_pci_dev: 3, msi_pci_fun: 0)", "m", "msi_irq"),
            ("d = io_device (domainID: 1, 0:3.0)", "d", "io_device"),
            ("p = io_pt (level: 1)", "p", "io_pt"),
            ("a = asid_pool", "a", "asid_pool"),
            ("s[2] = sc (period: 10, budget: 10)", "s[0]", "sc"),
            ("r = rtreply", "r", "rtreply"),
        ];
        for (declaration, name, kind) in kinds {
            assert_eq!(
                refused(declaration, "", ""),
                format!("object `{name}` of kind {kind}: the Cleave loader cannot build {kind} objects")
            );
        }
        let objects = [
            ("u = ut", "object `u` of kind ut: the Cleave loader makes untyped memory of a given size only"),
            (
                "u = ut (12 bits, paddr: 0x1000)",
                "cannot place untyped memory at a physical address (`paddr: 0x1000`)",
            ),
            (
                "x = tcb (elf: a, ip: 0x1000)",
                "object `x` of kind tcb: the Cleave loader starts a thread at its ELF",
            ),
            ("x = tcb (elf: a, fault_ep: 3)", "it cannot honour `fault_ep:`"),
            ("x = tcb (elf: a, affinity: 1)", "Cleave runs on one processor (`affinity: 1`)"),
            ("x = tcb (elf: a, dom: 2)", "Cleave has no scheduling domains (`dom: 2`)"),
            ("x = tcb (elf: a, fpu_disabled: True)", "without its FPU (`fpu_disabled: True`)"),
            ("x = tcb (elf: a, init: [1, 2])", "passes one initial argument (`init: [a]`), not 2"),
            ("x = tcb (prio: 1)", "from an ELF image it names (`elf: NAME`)"),
            ("x = tcb (elf: a, prio: 300)", "priority 300 is above 255"),
            ("j = irq", "object `j` of kind irq: no `irq maps` entry gives its line"),
        ];
        for (declaration, message) in objects {
            let e = refused(declaration, "", "");
            assert!(e.contains(message), "{declaration}: {e}");
        }
        // What passes: the defaults of what the loader does not set.
        let text = TEXT.replace("ends_run: True", "affinity: 0, dom: 0, fpu_disabled: False, init: [7]");
        assert!(encode(&read(&text).unwrap()).is_ok());
        let caps = [
            (
                "    1: asid_control",
                "`c` slot 1: the Cleave loader cannot give out `asid_control` capabilities",
            ),
            ("    1: sched_control (core: 0)", "cannot give out `sched_control` capabilities"),
            ("    1: io_space_master", "cannot give out `io_space_master` capabilities"),
            ("    1: domain", "cannot give out `domain` capabilities"),
            ("    1: t (reply)", "`c` slot 1: Cleave's kernel has no reply capabilities to threads"),
        ];
        for (cap, message) in caps {
            let e = refused("", cap, "");
            assert!(e.contains(message), "{cap}: {e}");
        }
        let e = refused("", "", "caps {\n  t { ipc_buffer_slot: e }\n}\n");
        assert!(e.contains("`t` slot 4 (ipc_buffer_slot): the Cleave loader fills a TCB's cspace"), "{e}");
        let e = refused("", "    1: e\n    2: e", "cdt {\n  (c, 1) { (c, 2) }\n}\n");
        assert!(e.contains("the spec's derivation tree (1 entries; (c, 2) from (c, 1))"), "{e}");
        let e = refused("", "", "domains {\n  schedule: [(0, 1)]\n}\n");
        assert!(e.contains("domain schedule: Cleave has no scheduling domains"), "{e}");
        let e = refused("  k = irq", "", "irq maps {\n  300: k\n}\n");
        assert!(e.contains("IRQ 300 (`k`): the Cleave loader takes lines 0-255"), "{e}");
        let spec = read("arch ia32\nobjects {\n  e = ep\n}\n").unwrap();
        assert_eq!(
            encode(&spec).unwrap_err().0,
            "the spec is for `arch ia32`; the Cleave loader builds `arch x86_64`"
        );
    }

    #[test]
    fn untyped_covers_give_each_object_its_parent() {
        let text = "arch x86_64\nobjects {\n  u[2] = ut (16 bits)\n  u[1] = ut (16 bits) { e = ep, f[] }\n  f[2] = frame (4k)\n  v = ut (14 bits) { c = cnode (4 bits) }\n}\n";
        let bytes = encode(&read(text).unwrap()).unwrap();
        let e = EncodedSpec::new(&bytes).unwrap();
        let parents: Vec<Option<u32>> =
            (0..e.object_count()).map(|i| e.object(i).unwrap().parent()).collect();
        // u[0], u[1], e, f[0], f[1], v, c.
        assert_eq!(parents, [None, None, Some(1), Some(1), Some(1), None, Some(5)]);
        // An untyped declared after what it covers cannot be made first.
        let text = "arch x86_64\nobjects {\n  e = ep\n  u = ut (16 bits) { e }\n}\n";
        let e = encode(&read(text).unwrap()).unwrap_err();
        assert_eq!(e.0, "`e` comes before the untyped it is made from");
    }

    #[test]
    fn corrupt_images_are_refused() {
        let bytes = encode(&read(TEXT).unwrap()).unwrap();
        assert_eq!(EncodedSpec::new(b"nonsense").unwrap_err(), DecodeError::BadMagic);
        assert_eq!(EncodedSpec::new(&bytes[..40]).unwrap_err(), DecodeError::Truncated);
        let mut bad = bytes.clone();
        bad[32] = 99; // first object's kind
        assert_eq!(EncodedSpec::new(&bad).unwrap_err(), DecodeError::BadKind { index: 0 });
        let mut bad = bytes.clone();
        let cap0 = 32 + 7 * 32;
        bad[cap0 + 8..cap0 + 12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(EncodedSpec::new(&bad).unwrap_err(), DecodeError::BadReference { index: 0 });
        // Every truncation of a valid image is refused or still consistent, never a panic.
        for len in 0..bytes.len() {
            let _ = EncodedSpec::new(&bytes[..len]);
        }
    }
}
