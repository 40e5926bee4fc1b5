//! The Builder (Xoar's): what the component running the `builder` program holds to make
//! on-request guests (`start = "on-request"`): per such guest, the memory its RAM is made
//! from and the roots of its guest-physical space and of its VMM's address space, whose
//! tables the loader made empty for the guest's RAM.

use super::{CapTable, cap};
use crate::layout::{
    BUILD_MAX_GUESTS, BUILD_SLOTS, BUILDER_PROGRAM, COMPONENT_CNODE_BITS, builder_slots, vmm_name,
};
use crate::schema::{SystemFile, parse_size};
use cleave_abi::layout::LARGE_PAGE_SIZE;
use cleave_capdl::model::{Cap, CapParams, Object, ObjectKind, Spec};
use std::collections::BTreeMap;

/// The on-request guests, in the system description's order: (name, RAM bytes, whole
/// 2 MiB frames).
pub fn on_request_guests(file: &SystemFile) -> Vec<(String, u64)> {
    file.guests
        .iter()
        .filter(|(_, g)| g.on_request())
        .take(BUILD_MAX_GUESTS)
        .map(|(k, g)| {
            let bytes = parse_size(g.memory.get_ref()).unwrap_or(LARGE_PAGE_SIZE);
            (k.get_ref().clone(), bytes.div_ceil(LARGE_PAGE_SIZE) * LARGE_PAGE_SIZE)
        })
        .collect()
}

/// The name of the untyped guest `guest`'s RAM is made from (the Builder's, in the
/// guest's slot range).
pub fn ram_untyped(guest: &str) -> String {
    format!("{guest}_ram_pool")
}

/// The Builder's capabilities, after those its description gives it: its own CNode (to
/// make objects in and revoke them), and per on-request guest `GUEST-ept` and
/// `GUEST-vspace` (its VMM's) and, at the first slot of the guest's range
/// ([`BUILD_SLOTS`] on), `GUEST-ram`: an untyped of the guest's RAM (rounded up to a power
/// of two), restricted to frames (`cleave_abi::UNTYPED_FRAMES_ONLY`, the capability's
/// badge word), that only that guest's frames are made from. One per guest, so destroying one
/// guest gives its memory back for that guest whatever the others do.
pub(super) fn builder(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) {
    let guests = on_request_guests(file);
    if guests.is_empty() {
        return;
    }
    let Some(name) = file
        .components
        .iter()
        .find(|(k, c)| c.package(k.get_ref()) == BUILDER_PROGRAM)
        .map(|(k, _)| k.get_ref().clone())
    else {
        return;
    };
    let mut entries = vec![(
        "cnode".to_string(),
        "its own CNode (to make the guests' RAM in and revoke it)".to_string(),
        cap(&format!("{name}_cnode"), None, CapParams::default()),
    )];
    for (guest, bytes) in &guests {
        entries.push((
            format!("{guest}-ept"),
            format!("EPT root of guest `{guest}` ({} MiB of RAM on request)", bytes >> 20),
            cap(&format!("{guest}_ept"), None, CapParams::default()),
        ));
        let vmm = vmm_name(guest);
        entries.push((
            format!("{guest}-vspace"),
            format!("VSpace of `{vmm}` (where it sees its guest's RAM)"),
            cap(&format!("{vmm}_vspace"), None, CapParams::default()),
        ));
    }
    // Its CNode holds every guest's frames: as large as they need.
    let (places, bits) = builder_slots(file);
    if bits != COMPONENT_CNODE_BITS {
        let cnode_name = format!("{name}_cnode");
        if let Some(o) = spec.objects.iter_mut().find(|o| o.name == cnode_name) {
            o.kind = ObjectKind::CNode { size_bits: bits };
        }
        if let Some(root) = spec
            .caps
            .get_mut(&cleave_capdl::model::ObjRef::named(&format!("{name}_tcb")))
            .and_then(|t| t.get_mut(&0))
        {
            root.params.guard_size = u64::from(64 - bits);
        }
    }
    let table = tables.entry(name.clone()).or_default();
    let cnode = slots.entry(name).or_default();
    let mut slot = table.entries.iter().map(|e| e.0).max().unwrap_or(0);
    for (what_name, what, c) in entries {
        slot += 1;
        table.entries.push((slot, what_name, what));
        cnode.insert(slot, c);
    }
    assert!(slot < BUILD_SLOTS, "the Builder's own capabilities stay below its guests' slots (cleave check)");
    for (guest, bytes, at, _) in &places {
        let untyped = ram_untyped(guest);
        let bits = bytes.next_power_of_two().trailing_zeros();
        spec.objects.push(Object {
            name: untyped.clone(),
            count: None,
            kind: ObjectKind::Untyped { size_bits: Some(bits), paddr: None },
        });
        let at = *at;
        table.entries.push((
            at,
            format!("{guest}-ram"),
            format!(
                "untyped {} KiB, frames only: guest `{guest}`'s RAM, made on request",
                (1u64 << bits) >> 10
            ),
        ));
        // Frames only: nothing the Builder makes from it (a thread, a CNode) can outlive
        // the rollback of the instance that made it.
        let frames_only = CapParams { badge: cleave_abi::UNTYPED_FRAMES_ONLY, ..CapParams::default() };
        cnode.insert(at, cap(&untyped, None, frames_only));
    }
}
