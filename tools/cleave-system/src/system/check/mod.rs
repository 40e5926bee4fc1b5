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
    let components: BTreeSet<&str> = file.components.keys().map(|k| k.get_ref().as_str()).collect();
    let guests: BTreeSet<&str> = file.guests.keys().map(|k| k.get_ref().as_str()).collect();
    let seen = names::check(file, &mut errors);
    // Every program named (root, then components', then guests'), before anything else
    // about the sections that name them.
    system::check(file, &mut errors);
    components::check_binaries(file, &mut errors);
    guests::check_images(file, &mut errors);
    names::check_supervisor(file, &mut errors);
    components::check(file, &mut errors);
    channels::check(file, &components, &mut errors);
    regions::check(file, &components, &seen, &mut errors);
    devices::check(file, &components, &mut errors);
    guests::check(file, &components, &mut errors);
    names::check_disposer(file, &mut errors);
    if let Some(policy) = &file.policy {
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
