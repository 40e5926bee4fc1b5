//! `[regions.NAME]` and the channels' rings, which are regions too: sizes, who maps them
//! and how, their names, and the address space they share.

use crate::error::SystemError;
use crate::layout::REGION_WINDOW;
use crate::schema::{SystemFile, parse_size, shared_regions};
use crate::system::span;
use cleave_abi::layout::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};

/// Each region, against the components there are and the names already taken (`seen`,
/// name to section).
pub(super) fn check(
    file: &SystemFile,
    components: &BTreeSet<&str>,
    seen: &BTreeMap<&str, &str>,
    errors: &mut Vec<SystemError>,
) {
    let is_component = |n: &str| components.contains(n);
    for (name, r) in &file.regions {
        let key = |field: &str| format!("regions.{}.{field}", name.get_ref());
        match parse_size(r.size.get_ref()) {
            Some(n) if n > 0 && n.is_multiple_of(PAGE_SIZE) => {}
            None => errors.push(SystemError::new(
                key("size"),
                span(&r.size),
                format!("region size `{}` is not a size that fits 64 bits", r.size.get_ref()),
            )),
            _ => errors.push(SystemError::new(
                key("size"),
                span(&r.size),
                format!("region size `{}` is not a whole number of 4 KiB pages", r.size.get_ref()),
            )),
        }
        if r.map.get_ref().is_empty() {
            errors.push(SystemError::new(
                key("map"),
                span(&r.map),
                format!("region `{}` is mapped by no component", name.get_ref()),
            ));
        }
        for (component, rights) in r.map.get_ref() {
            if !is_component(component.get_ref()) {
                errors.push(SystemError::new(
                    key("map"),
                    span(component),
                    format!(
                        "region `{}` is mapped by `{}`, which is not a component",
                        name.get_ref(),
                        component.get_ref()
                    ),
                ));
            }
            if !["r", "rw", "rx"].contains(&rights.get_ref().as_str()) {
                errors.push(
                    SystemError::new(
                        key("map"),
                        span(rights),
                        format!("unknown rights `{}`", rights.get_ref()),
                    )
                    .help("rights are \"r\", \"rw\" or \"rx\""),
                );
            }
        }
    }
    for (name, r) in &file.regions {
        let map = r.map.get_ref();
        let writer = map.iter().find(|(_, m)| m.get_ref() == "rw");
        if let (Some((w, _)), Some((x, rights))) = (writer, map.iter().find(|(_, m)| m.get_ref() == "rx")) {
            errors.push(
                SystemError::new(
                    format!("regions.{}.map", name.get_ref()),
                    span(rights),
                    format!(
                        "region `{}` is writable by `{}` and executable by `{}`: code one component \
                         writes would run in another",
                        name.get_ref(),
                        w.get_ref(),
                        x.get_ref()
                    ),
                )
                .help("map it \"r\" where it is written, or keep code in a region nobody writes"),
            );
        }
    }
    let mut region_space = 0u64;
    let mut region_names: BTreeMap<String, ()> = BTreeMap::new();
    for r in shared_regions(file) {
        if !r.key.starts_with("regions.") && seen.contains_key(r.name.as_str()) {
            errors.push(SystemError::new(
                r.key.clone(),
                span(&r.size),
                format!("the ring region `{}` would take a name already used", r.name),
            ));
        }
        if region_names.insert(r.name.clone(), ()).is_some() {
            // Two rings (`x` with client `b-c`, `x-b` with client `c`) named alike: one
            // would silently vanish.
            errors.push(
                SystemError::new(
                    r.key.clone(),
                    span(&r.size),
                    format!("two channels' rings would both be named `{}`", r.name),
                )
                .help("a ring is named CHANNEL-CLIENT: rename the channel or the client"),
            );
            continue;
        }
        let Some(size) = parse_size(r.size.get_ref()).filter(|n| *n > 0 && n.is_multiple_of(PAGE_SIZE))
        else {
            continue;
        };
        region_space = region_space.saturating_add(size);
        if region_space > REGION_WINDOW {
            errors.push(
                SystemError::new(
                    r.key.clone(),
                    span(&r.size),
                    format!(
                        "region `{}` does not fit: regions share {} MiB of address space, one guard page after each",
                        r.name,
                        REGION_WINDOW >> 20
                    ),
                )
                .help("make the regions smaller or fewer"),
            );
            break;
        }
        region_space += PAGE_SIZE;
    }
}

#[cfg(test)]
mod tests {
    use super::super::names;
    use super::super::testing::{components, error, found, parse};
    use super::*;

    /// Runs the namespace check first, as `check` does, for the names regions may not take.
    fn run(text: &str) -> Vec<SystemError> {
        let file = parse(text);
        let mut errors = Vec::new();
        let seen = names::check(&file, &mut errors);
        assert_eq!(errors, []);
        check(&file, &components(&file), &seen, &mut errors);
        errors
    }

    #[test]
    fn regions_and_rings_that_fit_are_accepted() {
        let text = "[components.a]\n[components.b]\n[regions.shared]\nsize = \"1M\"\nmap = { a = \"rw\", b = \"r\" }\n\
                    [regions.code]\nsize = \"8K\"\nmap = { a = \"r\", b = \"rx\" }\n\
                    [channels.q]\nkind = \"endpoint\"\nserver = \"a\"\nclients = [\"b\"]\nring = \"16K\"\n";
        assert_eq!(run(text), []);
    }

    #[test]
    fn bad_sizes_maps_and_names_are_refused() {
        let text = "[components.a]\n[components.b]\n[components.q-b]\n\
                    [regions.odd]\nsize = \"6K\"\nmap = { a = \"rw\", ghost = \"w\" }\n\
                    [regions.jit]\nsize = \"4K\"\nmap = { a = \"rw\", b = \"rx\" }\n\
                    [channels.q]\nkind = \"endpoint\"\nserver = \"a\"\nclients = [\"b\"]\nring = \"4K\"\n";
        assert_eq!(
            found(&run(text), text),
            [
                error("regions.odd.size", "\"6K\"", "region size `6K` is not a whole number of 4 KiB pages"),
                error(
                    "regions.odd.map",
                    "ghost",
                    "region `odd` is mapped by `ghost`, which is not a component"
                ),
                error("regions.odd.map", "\"w\"", "unknown rights `w`"),
                error(
                    "regions.jit.map",
                    "\"rx\"",
                    "region `jit` is writable by `a` and executable by `b`: code one component writes would run in another"
                ),
                error("channels.q.ring", "\"4K\"", "the ring region `q-b` would take a name already used"),
            ]
        );
    }

    #[test]
    fn regions_past_the_window_are_refused() {
        // The first fills the window exactly; the second's page is one too many.
        let text = "[components.a]\n[regions.big]\nsize = \"1G\"\nmap = { a = \"rw\" }\n[regions.small]\nsize = \"4K\"\nmap = { a = \"r\" }\n";
        assert_eq!(
            found(&run(text), text),
            [error(
                "regions.small.size",
                "\"4K\"",
                "region `small` does not fit: regions share 1024 MiB of address space, one guard page after each"
            )]
        );
    }
}
