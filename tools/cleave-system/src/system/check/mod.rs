//! The rules that make a description valid: one module per section of `system.toml`
//! (`system`, `components`, `channels`, `regions`, `devices`, `guests`) and one per rule
//! that spans sections (`names`, `policy`). [`check`] runs them in a fixed order, which
//! is the order errors are reported in.

pub(super) mod channels;
pub(super) mod components;
pub(super) mod devices;
pub(super) mod guests;
pub(super) mod names;
pub(super) mod policy;
pub(super) mod regions;
pub(super) mod system;

use crate::error::SystemError;
use crate::schema::SystemFile;
use crate::system::span;
use std::collections::BTreeSet;
use toml::Spanned;

/// The semantic checks: every error in `file`, in the order of the sections' checks.
pub fn check(file: &SystemFile) -> Vec<SystemError> {
    let mut errors = Vec::new();
    // What devices, channels and regions may name: the components, and the instances
    // per-guest components will have (`instances::check` refuses the per-guest component
    // itself there).
    let instances = crate::system::instances::instances(file);
    let mut components: BTreeSet<&str> = file.components.keys().map(|k| k.get_ref().as_str()).collect();
    components.extend(instances.iter().map(|(.., name)| name.as_str()));
    let guests: BTreeSet<&str> = file.guests.keys().map(|k| k.get_ref().as_str()).collect();
    let seen = names::check(file, &mut errors);
    crate::system::instances::check(file, &seen, &mut errors);
    crate::system::pci::check(file, &mut errors);
    // Every program named (root, then components', then guests'), before anything else
    // about the sections that name them.
    system::check(file, &mut errors);
    components::check_binaries(file, &mut errors);
    guests::check_images(file, &mut errors);
    names::check_supervisor(file, &mut errors);
    names::check_audit_names(file, &instances, &mut errors);
    components::check(file, &mut errors);
    channels::check(file, &components, &mut errors);
    regions::check(file, &components, &seen, &mut errors);
    devices::check(file, &components, &mut errors);
    guests::check(file, &components, &mut errors);
    names::check_disposer(file, &mut errors);
    // With per-guest components, the policy is checked on their instances
    // (`system::load` checks the expanded description again): who holds what and who
    // serves whom is only known of the instances.
    if let Some(policy) = file.policy.as_ref().filter(|_| instances.is_empty()) {
        policy::check(file, policy, &components, &guests, &mut errors);
    }
    errors
}

/// Whether `name` may name something: lower-case letters, digits and `-`, starting with a
/// letter and not ending with `-`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// Programs are named, never given as paths: the build packs the program of that name
/// into the boot image, and a path would pack whatever host file it names. The name
/// must be one the build makes (`known`), of the right `kind`.
fn check_program(
    key: String,
    program: &Spanned<String>,
    known: &[&str],
    kind: &str,
    errors: &mut Vec<SystemError>,
) {
    let name = program.get_ref();
    if !valid_name(name) {
        errors.push(
            SystemError::new(key, span(program), format!("`{name}` is not a program name"))
                .help("name a program the build makes (lower-case letters, digits and `-`), not a path"),
        );
    } else if !known.contains(&name.as_str()) {
        errors.push(
            SystemError::new(key, span(program), format!("`{name}` is no {kind} the build makes"))
                .help(format!("one of: {}", known.join(", "))),
        );
    }
}

/// What the section checkers' tests share: a description read without being checked, and
/// the errors a checker found, each as (key, the text it points at, message).
#[cfg(test)]
mod testing {
    use crate::error::SystemError;
    use crate::schema::SystemFile;
    use std::collections::BTreeSet;

    /// `text` read but not checked.
    pub(super) fn parse(text: &str) -> SystemFile {
        toml::from_str(text).expect("a test's description reads")
    }

    /// The names of `file`'s components.
    pub(super) fn components(file: &SystemFile) -> BTreeSet<&str> {
        file.components.keys().map(|k| k.get_ref().as_str()).collect()
    }

    /// Each error as its key, the text its span covers and its message.
    pub(super) fn found<'t>(errors: &[SystemError], text: &'t str) -> Vec<(String, &'t str, String)> {
        errors.iter().map(|e| (e.key.clone(), &text[e.span.clone()], e.message.clone())).collect()
    }

    /// (key, pointed-at text, message) from string slices.
    pub(super) fn error<'t>(key: &str, at: &'t str, message: &str) -> (String, &'t str, String) {
        (key.to_string(), at, message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{error, found, parse};
    use super::*;
    use crate::system::programs;

    #[test]
    fn programs_are_names_the_build_makes() {
        let text = format!(
            "[components.a]\nbinary = \"{}\"\n[components.b]\nbinary = \"../../bin/sh\"\n[components.c]\nbinary = \"no-such-program\"\n",
            programs::COMPONENT_PROGRAMS[0]
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        for (name, c) in &file.components {
            let key = format!("components.{}.binary", name.get_ref());
            let binary = c.binary.as_ref().unwrap();
            check_program(key, binary, programs::COMPONENT_PROGRAMS, "component program", &mut errors);
        }
        assert_eq!(
            found(&errors, &text),
            [
                error("components.b.binary", "\"../../bin/sh\"", "`../../bin/sh` is not a program name"),
                error(
                    "components.c.binary",
                    "\"no-such-program\"",
                    "`no-such-program` is no component program the build makes"
                ),
            ]
        );
    }

    #[test]
    fn check_reports_sections_in_order() {
        // One error from each of several sections, written in the reverse order: they come
        // back in the order of the checks, not of the text.
        let text = "[guests.g]\nmemory = \"3M\"\nimage = \"guest-hello\"\n[regions.r]\nsize = \"5000\"\nmap = { a = \"rw\" }\n[channels.c]\nkind = \"pipe\"\nserver = \"a\"\nclients = [\"b\"]\n[components.a]\npriority = 0\n[components.b]\n";
        let messages: Vec<String> = check(&parse(text)).into_iter().map(|e| e.message).collect();
        assert_eq!(
            messages,
            [
                "priority 0 is outside 1-254",
                "unknown channel kind `pipe`",
                "region size `5000` is not a whole number of 4 KiB pages",
                "guest memory `3M` is not a whole number of 2 MiB",
            ]
        );
    }
}
