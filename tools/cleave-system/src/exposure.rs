//! Exposure: every component whose failure or compromise can affect a guest, and through
//! which capability. A guest relies on its backends; a component is affected by every
//! component it shares a channel with (either end can misbehave towards the other) and by
//! every component that can write a region it maps.

use crate::system::SystemFile;
use std::collections::{BTreeMap, VecDeque};

/// For `guest`: component → how it reaches the guest (a chain of reasons), nearest first.
/// `None` if there is no such guest.
pub fn exposure(file: &SystemFile, guest: &str) -> Option<Vec<(String, String)>> {
    let (_, g) = file.guests.iter().find(|(k, _)| k.get_ref() == guest)?;
    let mut reason: BTreeMap<String, String> = BTreeMap::new();
    let mut order = Vec::new();
    let mut queue = VecDeque::new();
    // Its VMM holds its Vcpu, guest-physical space and memory.
    let vmm = crate::layout::vmm_name(guest);
    reason.insert(vmm.clone(), format!("runs guest `{guest}` (its Vcpu, guest-physical space and memory)"));
    order.push(vmm);
    for b in g.all_backends() {
        let b = b.get_ref().clone();
        if !reason.contains_key(&b) {
            // One instance serves every guest that names it: each can reach the others
            // through it.
            let others: Vec<String> = file
                .guests
                .iter()
                .filter(|(k, o)| k.get_ref() != guest && o.all_backends().iter().any(|x| x.get_ref() == &b))
                .map(|(k, _)| format!("`{}`", k.get_ref()))
                .collect();
            let component = file.components.iter().find(|(k, _)| *k.get_ref() == b).map(|(_, c)| c);
            let shared = if let Some(i) = component.and_then(|c| c.instance.as_ref()) {
                format!(" (its own instance of per-guest `{}`)", i.of)
            } else if others.is_empty() {
                String::new()
            } else {
                format!(
                    " (one instance, shared with guest{} {})",
                    if others.len() > 1 { "s" } else { "" },
                    others.join(", ")
                )
            };
            reason.insert(b.clone(), format!("serves guest `{guest}`{shared}"));
            order.push(b.clone());
            queue.push_back(b);
        }
    }
    while let Some(c) = queue.pop_front() {
        let mut reach = |other: &str, why: String, reason: &mut BTreeMap<String, String>| {
            if !reason.contains_key(other) {
                reason.insert(other.to_string(), format!("{why}, and `{c}` {}", reason[&c]));
                order.push(other.to_string());
                queue.push_back(other.to_string());
            }
        };
        for (name, ch) in &file.channels {
            let server = ch.server.get_ref();
            let clients: Vec<&str> = ch.clients.get_ref().iter().map(|x| x.get_ref().as_str()).collect();
            if server == &c {
                for client in &clients {
                    reach(
                        client,
                        format!("calls `{c}` through {} `{}`", ch.kind.get_ref(), name.get_ref()),
                        &mut reason,
                    );
                }
            } else if clients.contains(&c.as_str()) {
                reach(
                    server,
                    format!("answers `{c}` through {} `{}`", ch.kind.get_ref(), name.get_ref()),
                    &mut reason,
                );
            }
        }
        for (name, r) in &file.regions {
            let map = r.map.get_ref();
            if map.keys().any(|k| k.get_ref() == &c) {
                for (other, rights) in map {
                    if other.get_ref() != &c && rights.get_ref().contains('w') {
                        reach(
                            other.get_ref(),
                            format!("writes region `{}` that `{c}` maps", name.get_ref()),
                            &mut reason,
                        );
                    }
                }
            }
        }
    }
    Some(
        order
            .into_iter()
            .map(|c| {
                let why = reason[&c].clone();
                (c, why)
            })
            .collect(),
    )
}
