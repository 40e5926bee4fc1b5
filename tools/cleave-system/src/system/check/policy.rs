//! `[policy]`: the system's own rules about who may be connected to whom and who alone
//! may hold an authority, checked against everything else the description says.

use crate::error::SystemError;
use crate::layout::vmm_name;
use crate::schema::{Policy, SystemFile};
use crate::system::span;
use std::collections::BTreeSet;

/// Matches `pattern` (with `*` wildcards) against `name`.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() && name.starts_with(head) && {
                let rest = &name[head.len()..];
                (0..=rest.len()).any(|i| glob(tail, &rest[i..]))
            }
        }
    }
}

/// The components a guest or component stands for: a component itself; a guest's backends.
fn reach<'a>(file: &'a SystemFile, name: &str) -> BTreeSet<&'a str> {
    if let Some((k, _)) = file.components.iter().find(|(k, _)| k.get_ref() == name) {
        return BTreeSet::from([k.get_ref().as_str()]);
    }
    file.guests.iter().find(|(k, _)| k.get_ref() == name).map_or_else(BTreeSet::new, |(_, g)| {
        g.all_backends().into_iter().map(|b| b.get_ref().as_str()).collect()
    })
}

pub(super) fn check(
    file: &SystemFile,
    policy: &Policy,
    components: &BTreeSet<&str>,
    guests: &BTreeSet<&str>,
    errors: &mut Vec<SystemError>,
) {
    for group in &policy.isolate {
        let members = group.get_ref();
        for m in members {
            if !components.contains(m.get_ref().as_str()) && !guests.contains(m.get_ref().as_str()) {
                errors.push(SystemError::new(
                    "policy.isolate",
                    span(m),
                    format!("`{}` is neither a guest nor a component", m.get_ref()),
                ));
            }
        }
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                let (ra, rb) = (reach(file, a.get_ref()), reach(file, b.get_ref()));
                let why = if let Some(shared) = ra.intersection(&rb).next() {
                    Some(format!("component `{shared}` serves both"))
                } else {
                    file.channels
                        .iter()
                        .find_map(|(n, ch)| {
                            let ends: BTreeSet<&str> = ch
                                .clients
                                .get_ref()
                                .iter()
                                .map(|c| c.get_ref().as_str())
                                .chain([ch.server.get_ref().as_str()])
                                .collect();
                            (ends.iter().any(|e| ra.contains(e)) && ends.iter().any(|e| rb.contains(e)))
                                .then(|| format!("channel `{}` connects them", n.get_ref()))
                        })
                        .or_else(|| {
                            file.regions.iter().find_map(|(n, r)| {
                                let users: BTreeSet<&str> =
                                    r.map.get_ref().keys().map(|k| k.get_ref().as_str()).collect();
                                (users.iter().any(|u| ra.contains(u)) && users.iter().any(|u| rb.contains(u)))
                                    .then(|| format!("region `{}` is shared by both", n.get_ref()))
                            })
                        })
                };
                if let Some(why) = why {
                    errors.push(SystemError::new(
                        "policy.isolate",
                        span(group),
                        format!("`{}` and `{}` must be isolated, but {why}", a.get_ref(), b.get_ref()),
                    ));
                }
            }
        }
    }
    for (authority, patterns) in &policy.only {
        let holders: BTreeSet<String> = match authority.get_ref().as_str() {
            "devices" => file.devices.values().map(|d| d.owner.get_ref().clone()).collect(),
            // A guest's VMM alone maps its RAM; its backends get bytes from the VMM through
            // their rings (the compiler's test `only_the_vmm_maps_guest_ram` keeps this true).
            "map-guest-memory" => file.guests.keys().map(|name| vmm_name(name.get_ref())).collect(),
            other => {
                errors.push(
                    SystemError::new("policy.only", span(authority), format!("unknown authority `{other}`"))
                        .help("known: \"devices\", \"map-guest-memory\""),
                );
                continue;
            }
        };
        // A per-guest component's instances (`blkback-alice`) are what it names.
        let instance_of = |holder: &str| {
            file.components
                .iter()
                .find(|(k, _)| k.get_ref() == holder)
                .and_then(|(_, c)| c.instance.as_ref())
                .map(|i| i.of.clone())
        };
        for holder in &holders {
            let of = instance_of(holder);
            let named = |p: &str| glob(p, holder) || of.as_deref().is_some_and(|of| glob(p, of));
            if !patterns.iter().any(|p| named(p.get_ref())) {
                errors.push(SystemError::new(
                    format!("policy.only.{}", authority.get_ref()),
                    span(authority),
                    format!(
                        "`{holder}` holds `{}`, which the policy allows only to {}",
                        authority.get_ref(),
                        patterns.iter().map(|p| format!("`{}`", p.get_ref())).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{components, error, found, parse};
    use super::*;

    const SYSTEM: &str = "[components.drv-net]\n[components.a]\n[components.b]\n[components.c]\n\
                          [channels.ab]\nkind = \"endpoint\"\nserver = \"b\"\nclients = [\"a\"]\n\
                          [devices.nic]\nowner = \"drv-net\"\nirq = 5\n\
                          [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"c\"]\n";

    fn run(text: &str) -> Vec<SystemError> {
        let file = parse(text);
        let guests = file.guests.keys().map(|k| k.get_ref().as_str()).collect();
        let mut errors = Vec::new();
        check(&file, file.policy.as_ref().unwrap(), &components(&file), &guests, &mut errors);
        errors
    }

    #[test]
    fn a_policy_the_system_keeps_is_accepted() {
        let text = format!(
            "{SYSTEM}[policy]\nisolate = [[\"a\", \"c\"], [\"b\", \"g\"]]\nonly = {{ devices = [\"drv-*\"], map-guest-memory = [\"vmm-*\", \"c\"] }}\n"
        );
        assert_eq!(run(&text), []);
    }

    #[test]
    fn a_policy_the_system_breaks_is_refused() {
        let text = format!(
            "{SYSTEM}[policy]\nisolate = [[\"a\", \"b\"], [\"c\", \"g\", \"nobody\"]]\nonly = {{ devices = [\"a\"], map-guest-memory = [\"c\"], reboot = [\"a\"] }}\n"
        );
        assert_eq!(
            found(&run(&text), &text),
            [
                error(
                    "policy.isolate",
                    "[\"a\", \"b\"]",
                    "`a` and `b` must be isolated, but channel `ab` connects them"
                ),
                error("policy.isolate", "\"nobody\"", "`nobody` is neither a guest nor a component"),
                error(
                    "policy.isolate",
                    "[\"c\", \"g\", \"nobody\"]",
                    "`c` and `g` must be isolated, but component `c` serves both"
                ),
                error(
                    "policy.only.devices",
                    "devices",
                    "`drv-net` holds `devices`, which the policy allows only to `a`"
                ),
                error(
                    "policy.only.map-guest-memory",
                    "map-guest-memory",
                    "`vmm-g` holds `map-guest-memory`, which the policy allows only to `c`"
                ),
                error("policy.only", "reboot", "unknown authority `reboot`"),
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("vmm-*", "vmm-alice") && glob("builder", "builder") && !glob("vmm-*", "builder"));
        assert!(glob("*-back", "net-back") && !glob("a*c", "ab"));
    }
}
