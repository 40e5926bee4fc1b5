//! From a checked `system.toml` to a capDL specification of its authority: per component a
//! TCB, a CNode and a VSpace root; an object per channel, region and device; and in each
//! component's CNode exactly the capabilities its description gives it, in a fixed order.
//! The declared components come first (`component`), then what cleave adds: a VMM per
//! guest (`guest`) and, when lifetimes need one, the supervisor (`supervisor`).

pub mod builder;
mod component;
mod guest;
mod supervisor;

use crate::layout::COMPONENT_CNODE_BITS;
use crate::schema::{Component, Restart, SystemFile, parse_duration_ms};
use cleave_capdl::binary::Kind;
use cleave_capdl::model::{
    Cap, CapParams, Lifetime, ObjRef, Object, ObjectKind, Rights, Spec, Target, TcbParams,
};
use std::collections::BTreeMap;
pub use supervisor::{DisposablePlace, RestartPlace};

/// Default component priority.
pub const DEFAULT_PRIORITY: u64 = 100;

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
    /// The components the supervisor destroys once they are done.
    pub disposables: Vec<DisposablePlace>,
}

/// Compiles a checked description.
pub fn compile(file: &SystemFile) -> Compiled {
    let mut spec = Spec { arch: "x86_64".into(), ..Spec::default() };
    let mut slots: BTreeMap<String, BTreeMap<u64, Cap>> = BTreeMap::new();
    let mut tables: BTreeMap<String, CapTable> = BTreeMap::new();
    component::components(file, &mut spec, &mut slots, &mut tables);
    let mut files = guest::guests(file, &mut spec, &mut slots, &mut tables);
    toolstack_memory_page(file, &mut spec, &mut files);
    builder::builder(file, &mut spec, &mut slots, &mut tables);
    let (restarts, disposables) = supervisor::supervisor(file, &mut spec, &mut slots, &mut tables);
    for (component, caps) in slots {
        spec.caps.insert(ObjRef::named(&format!("{component}_cnode")), caps);
    }
    Compiled { spec, tables, files, restarts, disposables }
}

/// The toolstack's page of the memory table ([`crate::layout::TOOLSTACK_MEMORY_PAGE`]),
/// read only, filled from [`crate::layout::TOOLSTACK_MEMORY_FILE`] (here a placeholder;
/// `cargo xtask` writes the table once the programs are built).
fn toolstack_memory_page(file: &SystemFile, spec: &mut Spec, files: &mut BTreeMap<String, Vec<u8>>) {
    use crate::layout::{TOOLSTACK_MEMORY_FILE, TOOLSTACK_MEMORY_PAGE};
    let Some(toolstack) = crate::schema::toolstack_component(file) else { return };
    let name = format!("{toolstack}_memory");
    spec.objects.push(Object {
        name: name.clone(),
        count: None,
        kind: ObjectKind::Frame {
            size: cleave_abi::layout::PAGE_SIZE,
            paddr: None,
            fill: vec![TOOLSTACK_MEMORY_FILE.to_string()],
        },
    });
    files.insert(TOOLSTACK_MEMORY_FILE.to_string(), b"not computed\n".to_vec());
    map_pages(
        spec,
        vec![(toolstack, TOOLSTACK_MEMORY_PAGE, ObjRef::named(&name), rights(true, false, false))],
    );
}

/// A page to map: in whose VSpace, where, which frame, with what rights.
type Mapping = (String, u64, ObjRef, Rights);

/// Builds `mappings` the capDL way: frame capabilities in page-table slots, page tables
/// in page-directory slots, and so on up to each component's PML4 (slot 1, which covers
/// [`REGION_BASE`](crate::layout::REGION_BASE) and [`DEVICE_BASE`](crate::layout::DEVICE_BASE)).
fn map_pages(spec: &mut Spec, mappings: Vec<Mapping>) {
    for (component, vaddr, frame, rights) in mappings {
        let (in_pdpt, in_pd) = (slot_of(Kind::Pdpt, vaddr), slot_of(Kind::PageDirectory, vaddr));
        let pdpt = format!("{component}_map_pdpt");
        let pd = format!("{component}_map_pd{in_pdpt}");
        let pt = format!("{component}_map_pt{in_pdpt}_{in_pd}");
        for (parent, slot, child, kind) in [
            (format!("{component}_vspace"), slot_of(Kind::Pml4, vaddr), &pdpt, ObjectKind::Pdpt),
            (pdpt.clone(), in_pdpt, &pd, ObjectKind::PageDirectory),
            (pd.clone(), in_pd, &pt, ObjectKind::PageTable),
        ] {
            let slots = spec.caps.entry(ObjRef::named(&parent)).or_default();
            if let std::collections::btree_map::Entry::Vacant(e) = slots.entry(slot) {
                e.insert(cap(child, None, CapParams::default()));
                spec.objects.push(Object { name: child.clone(), count: None, kind });
            }
        }
        let params = CapParams { rights, ..CapParams::default() };
        spec.caps
            .entry(ObjRef::named(&pt))
            .or_default()
            .insert(slot_of(Kind::PageTable, vaddr), Cap { target: Target::Object(frame), params });
    }
}

/// Maps `frames` (2 MiB frames, with their rights) into `component`'s VSpace from `vaddr`
/// (2 MiB aligned, within one page directory), as [`map_pages`] does for 4 KiB pages and
/// sharing its tables: either may come first.
fn map_large(spec: &mut Spec, component: &str, vaddr: u64, frames: Vec<(ObjRef, Rights)>) {
    let in_pdpt = slot_of(Kind::Pdpt, vaddr);
    let pdpt = format!("{component}_map_pdpt");
    let pd = format!("{component}_map_pd{in_pdpt}");
    for (parent, slot, child, kind) in [
        (format!("{component}_vspace"), slot_of(Kind::Pml4, vaddr), &pdpt, ObjectKind::Pdpt),
        (pdpt.clone(), in_pdpt, &pd, ObjectKind::PageDirectory),
    ] {
        let slots = spec.caps.entry(ObjRef::named(&parent)).or_default();
        if let std::collections::btree_map::Entry::Vacant(e) = slots.entry(slot) {
            e.insert(cap(child, None, CapParams::default()));
            spec.objects.push(Object { name: child.clone(), count: None, kind });
        }
    }
    let first = slot_of(Kind::PageDirectory, vaddr);
    let slots = spec.caps.entry(ObjRef::named(&pd)).or_default();
    for (k, (frame, rights)) in frames.into_iter().enumerate() {
        let params = CapParams { rights, ..CapParams::default() };
        slots.insert(first + k as u64, Cap { target: Target::Object(frame), params });
    }
}

/// The slot of a paging table of kind `level` (IA-32e or EPT) that covers `vaddr`, by
/// capDL's one definition of the paging levels' shifts.
fn slot_of(level: Kind, vaddr: u64) -> u64 {
    level.slot_of(vaddr).map(u64::from).expect("called with paging levels only")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every object a component can name: what its TCB holds, and transitively what its
    /// CNode and its address-space tables hold.
    pub(super) fn reach(spec: &Spec, component: &str) -> BTreeSet<ObjRef> {
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

    pub(super) const SYSTEM: &str = r#"
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
}
