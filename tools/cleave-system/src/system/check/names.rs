//! Rules across sections about names: components, channels, regions, devices and guests
//! share one namespace, nothing may take the name of the supervisor cleave adds, and the
//! names the audit log trusts (its writers' thread names) are what they say.

use crate::error::SystemError;
use crate::layout::SUPERVISOR;
use crate::schema::SystemFile;
use crate::system::span;
use std::collections::BTreeMap;
use toml::Spanned;

/// Names: one namespace for everything that can be named. Returns each name with the
/// section it is in.
pub(super) fn check<'a>(
    file: &'a SystemFile,
    errors: &mut Vec<SystemError>,
) -> BTreeMap<&'a str, &'static str> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let sections: [(&str, Vec<&Spanned<String>>); 5] = [
        ("components", file.components.keys().collect()),
        ("channels", file.channels.keys().collect()),
        ("regions", file.regions.keys().collect()),
        ("devices", file.devices.keys().collect()),
        ("guests", file.guests.keys().collect()),
    ];
    for (section, names) in &sections {
        for name in names {
            let n = name.get_ref().as_str();
            if !super::valid_name(n) {
                errors.push(
                    SystemError::new(
                        format!("{section}.{n}"),
                        span(name),
                        format!("`{n}` is not a valid name"),
                    )
                    .help("names are lower-case letters, digits and `-`, starting with a letter"),
                );
            }
            if let Some(other) = seen.insert(n, *section) {
                errors.push(SystemError::new(
                    format!("{section}.{n}"),
                    span(name),
                    format!("`{n}` is already the name of one of the {other}"),
                ));
            }
        }
    }
    seen
}

/// The supervisor is a component cleave adds when lifetimes need one.
/// Nothing else may have its name: components, channels, regions and devices share one
/// namespace in the compiled system.
pub(super) fn check_supervisor(file: &SystemFile, errors: &mut Vec<SystemError>) {
    let supervised = file.components.values().any(|c| c.restart.is_some() || c.is_disposable());
    let named = [
        ("components", file.components.keys().find(|k| k.get_ref() == SUPERVISOR)),
        ("channels", file.channels.keys().find(|k| k.get_ref() == SUPERVISOR)),
        ("regions", file.regions.keys().find(|k| k.get_ref() == SUPERVISOR)),
        ("devices", file.devices.keys().find(|k| k.get_ref() == SUPERVISOR)),
    ];
    for (section, name) in named {
        // A component may never have the name: the audit log takes restarts only from
        // the thread named so.
        if let Some(name) = name.filter(|_| supervised || section == "components") {
            errors.push(SystemError::new(
                format!("{section}.{}", name.get_ref()),
                span(name),
                format!(
                    "`{}` is the name of the supervisor this system's lifetimes need, which cleave adds itself",
                    name.get_ref()
                ),
            ));
        }
    }
}

/// The audit log stamps each event with its writer's thread name, which the loader sets to
/// the component's name (the kernel keeps 32 bytes of it), and trusts some names for some
/// events: the root task's for `boot` and the first `start`s, the Builder's (`builder`)
/// for `build` and `destroy`. So every component's name, per-guest instance's and guest's
/// VMM's (`vmm-GUEST`) fits 32 bytes, no component takes the root task's name, and the
/// component that runs the Builder's program is the one named `builder`.
pub(super) fn check_audit_names(
    file: &SystemFile,
    instances: &[(String, String, String)],
    errors: &mut Vec<SystemError>,
) {
    const MAX: usize = 32;
    let root = file.system.as_ref().map(|s| s.root.get_ref().as_str());
    let builder = crate::layout::BUILDER_PROGRAM;
    for (name, c) in &file.components {
        let n = name.get_ref().as_str();
        let key = format!("components.{n}");
        let mut refuse = |why: String| errors.push(SystemError::new(key.clone(), span(name), why));
        if n.len() > MAX {
            refuse(format!(
                "`{n}` is longer than the {MAX} bytes of a thread's name, which the audit log stamps its events with"
            ));
        }
        for (.., instance) in instances.iter().filter(|(of, _, i)| of == n && i.len() > MAX) {
            refuse(format!("its instance `{instance}` is longer than the {MAX} bytes of a thread's name"));
        }
        if Some(n) == root {
            refuse(format!(
                "`{n}` is the root task's name, which the audit log trusts for `boot` and the first `start`s"
            ));
        }
        let program = c.package(n);
        if (program == builder) != (n == builder) {
            refuse(if n == builder {
                format!(
                    "`{builder}` is the Builder's name (the audit log takes `build` and `destroy` only from it), but this component runs `{program}`"
                )
            } else {
                format!(
                    "the component that runs the Builder's program must be named `{builder}`: the audit log takes `build` and `destroy` only from that name"
                )
            });
        }
    }
    for guest in file.guests.keys() {
        let vmm = crate::layout::vmm_name(guest.get_ref());
        if vmm.len() > MAX {
            errors.push(SystemError::new(
                format!("guests.{}", guest.get_ref()),
                span(guest),
                format!("its VMM's name `{vmm}` is longer than the {MAX} bytes of a thread's name"),
            ));
        }
    }
}

/// The supervisor cleave adds for disposable components takes its name (a component
/// named so is refused here as well as by [`check_supervisor`]).
pub(super) fn check_disposer(file: &SystemFile, errors: &mut Vec<SystemError>) {
    let disposable = file.components.values().any(|c| c.is_disposable());
    if disposable && let Some((k, _)) = file.components.iter().find(|(k, _)| k.get_ref() == SUPERVISOR) {
        errors.push(SystemError::new(
            format!("components.{}", k.get_ref()),
            span(k),
            "`supervisor` is the name of the component cleave adds to dispose of disposable components"
                .to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error, found, parse};
    use super::*;

    #[test]
    fn distinct_valid_names_are_accepted_and_recorded_with_their_sections() {
        let file = parse(
            "[components.a]\n[components.b2]\n[channels.a-to-b]\nkind = \"endpoint\"\nserver = \"b2\"\nclients = [\"a\"]\n[guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\n",
        );
        let mut errors = Vec::new();
        let seen = check(&file, &mut errors);
        check_supervisor(&file, &mut errors);
        check_disposer(&file, &mut errors);
        assert_eq!(errors, []);
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [("a", "components"), ("a-to-b", "channels"), ("b2", "components"), ("g", "guests")]
        );
    }

    #[test]
    fn invalid_and_repeated_names_are_refused() {
        let text = "[components.Alpha]\n[components.x]\n[components.y-]\n[regions.x]\nsize = \"4K\"\nmap = { x = \"r\" }\n";
        let mut errors = Vec::new();
        check(&parse(text), &mut errors);
        assert_eq!(
            found(&errors, text),
            [
                error("components.Alpha", "Alpha", "`Alpha` is not a valid name"),
                error("components.y-", "y-", "`y-` is not a valid name"),
                error("regions.x", "x", "`x` is already the name of one of the components"),
            ]
        );
    }

    #[test]
    fn the_supervisors_name_is_refused_only_when_cleave_adds_one() {
        let text = "[components.supervisor]\n[components.w]\nlifetime = \"disposable\"\n";
        let mut errors = Vec::new();
        check_supervisor(&parse(text), &mut errors);
        check_disposer(&parse(text), &mut errors);
        assert_eq!(
            found(&errors, text),
            [
                error(
                    "components.supervisor",
                    "supervisor",
                    "`supervisor` is the name of the supervisor this system's lifetimes need, which cleave adds itself"
                ),
                error(
                    "components.supervisor",
                    "supervisor",
                    "`supervisor` is the name of the component cleave adds to dispose of disposable components"
                ),
            ]
        );
        // Without lifetimes no supervisor is added, and the name is free, but not for a
        // component: the audit log takes restarts only from a thread named so.
        let mut errors = Vec::new();
        let text = "[components.supervisor]\n[components.w]\n[channels.c]\nkind = \"endpoint\"\nserver = \"w\"\nclients = [\"supervisor\"]\n";
        let file = parse(text);
        check_supervisor(&file, &mut errors);
        check_disposer(&file, &mut errors);
        assert_eq!(found(&errors, text).len(), 1);
        let mut errors = Vec::new();
        let file = parse(
            "[channels.supervisor]\nkind = \"endpoint\"\nserver = \"w\"\nclients = [\"x\"]\n[components.w]\n[components.x]\n",
        );
        check_supervisor(&file, &mut errors);
        assert_eq!(errors, []);
    }

    /// The names the audit log trusts: the root task's, the Builder's, and none longer
    /// than a thread's name.
    #[test]
    fn names_the_audit_log_trusts_are_kept_for_what_it_trusts_them_with() {
        let long = "c".repeat(33);
        let guest = "g".repeat(29);
        let text = format!(
            "[system]\nroot = \"loader\"\n[components.loader]\n[components.builder]\nbinary = \"toolstack\"\n[components.mybuilder]\nbinary = \"builder\"\n\
             [components.{long}]\n[guests.{guest}]\nmemory = \"2M\"\nimage = \"guest-hello\"\n"
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        check_audit_names(&file, &[], &mut errors);
        let whys: Vec<String> = found(&errors, &text).into_iter().map(|(_, _, why)| why).collect();
        assert_eq!(whys.len(), 5, "{whys:#?}");
        assert!(whys.iter().any(|w| w.contains("is the Builder's name") && w.contains("runs `toolstack`")));
        assert!(whys.iter().any(|w| w.contains("`loader` is the root task's name")));
        assert!(whys.iter().any(|w| w.contains("must be named `builder`")));
        assert!(whys.iter().any(|w| w.contains(&format!("`{long}` is longer than the 32 bytes"))));
        assert!(whys.iter().any(|w| w.contains(&format!("`vmm-{guest}` is longer than the 32 bytes"))));
        // Per-guest instances too.
        let mut errors = Vec::new();
        let instance = ("blk".to_string(), guest.clone(), format!("blk-{guest}"));
        check_audit_names(&parse("[components.blk]\n"), &[instance], &mut errors);
        assert_eq!(errors.len(), 1);
    }
}
