//! Rules across sections about names: components, channels, regions, devices and guests
//! share one namespace, and nothing may take the name of the supervisor cleave adds.

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
        if let Some(name) = name.filter(|_| supervised) {
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
        // Without lifetimes no supervisor is added, and the name is free.
        let mut errors = Vec::new();
        let file = parse("[components.supervisor]\n[components.w]\n");
        check_supervisor(&file, &mut errors);
        check_disposer(&file, &mut errors);
        assert_eq!(errors, []);
    }
}
