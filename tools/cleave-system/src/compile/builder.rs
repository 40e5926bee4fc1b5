//! The Builder (Xoar's): what the component running the `builder` program holds to make
//! on-request guests (`start = "on-request"`): a pool of memory and, per such guest, the
//! roots of its guest-physical space and of its VMM's address space, whose tables the
//! loader made empty for the guest's RAM.

use super::{CapTable, cap};
use crate::layout::{BUILD_MAX_GUESTS, BUILDER_PROGRAM, vmm_name};
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

/// Log2 of the Builder's pool: room for every on-request guest at once, each guest's RAM
/// an untyped of its own (a power of two) made from it.
pub fn pool_bits(file: &SystemFile) -> Option<u32> {
    let guests = on_request_guests(file);
    if guests.is_empty() {
        return None;
    }
    let total: u64 = guests.iter().map(|(_, b)| b.next_power_of_two()).sum();
    Some(total.next_power_of_two().trailing_zeros())
}

/// The Builder's capabilities, after those its description gives it: its own CNode (to
/// make objects in and revoke them), the pool, and per on-request guest `GUEST-ept` and
/// `GUEST-vspace` (its VMM's).
pub(super) fn builder(
    file: &SystemFile,
    spec: &mut Spec,
    slots: &mut BTreeMap<String, BTreeMap<u64, Cap>>,
    tables: &mut BTreeMap<String, CapTable>,
) {
    let Some(bits) = pool_bits(file) else { return };
    let Some(name) = file
        .components
        .iter()
        .find(|(k, c)| c.package(k.get_ref()) == BUILDER_PROGRAM)
        .map(|(k, _)| k.get_ref().clone())
    else {
        return;
    };
    let pool = format!("{name}_pool");
    spec.objects.push(Object {
        name: pool.clone(),
        count: None,
        kind: ObjectKind::Untyped { size_bits: Some(bits), paddr: None },
    });
    let mut entries = vec![
        (
            "cnode".to_string(),
            "its own CNode (to make the guests' RAM in and revoke it)".to_string(),
            cap(&format!("{name}_cnode"), None, CapParams::default()),
        ),
        (
            "pool".to_string(),
            format!("untyped {} KiB: the on-request guests' RAM", (1u64 << bits) >> 10),
            cap(&pool, None, CapParams::default()),
        ),
    ];
    for (guest, bytes) in on_request_guests(file) {
        entries.push((
            format!("{guest}-ept"),
            format!("EPT root of guest `{guest}` ({} MiB of RAM on request)", bytes >> 20),
            cap(&format!("{guest}_ept"), None, CapParams::default()),
        ));
        let vmm = vmm_name(&guest);
        entries.push((
            format!("{guest}-vspace"),
            format!("VSpace of `{vmm}` (where it sees its guest's RAM)"),
            cap(&format!("{vmm}_vspace"), None, CapParams::default()),
        ));
    }
    let table = tables.entry(name.clone()).or_default();
    let cnode = slots.entry(name).or_default();
    let mut slot = table.entries.iter().map(|e| e.0).max().unwrap_or(0);
    for (what_name, what, c) in entries {
        slot += 1;
        table.entries.push((slot, what_name, what));
        cnode.insert(slot, c);
    }
}
