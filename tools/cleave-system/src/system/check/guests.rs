//! `[guests.NAME]`: images, memory, command lines, backends, and the name of the VMM
//! cleave adds for each.

use super::check_program;
use crate::error::SystemError;
use crate::layout::{GUEST_RAM_MAX, MAX_VMM_CONFIG, vmm_config, vmm_name};
use crate::schema::{SystemFile, parse_size};
use crate::system::{programs, span};
use std::collections::BTreeSet;

/// Each guest's `image` is a guest image the build makes.
pub(super) fn check_images(file: &SystemFile, errors: &mut Vec<SystemError>) {
    for (name, g) in &file.guests {
        let key = format!("guests.{}.image", name.get_ref());
        check_program(key, &g.image, programs::GUEST_PROGRAMS, "guest image", errors);
    }
}

/// Each guest's command line, memory, VMM name and backends, against the components
/// there are.
pub(super) fn check(file: &SystemFile, components: &BTreeSet<&str>, errors: &mut Vec<SystemError>) {
    let is_component = |n: &str| components.contains(n);
    for (name, g) in &file.guests {
        let key = |field: &str| format!("guests.{}.{field}", name.get_ref());
        // The VMM reads its configuration page as `key=value` lines: a line break in the
        // command line would add settings of its own, and the page is one page.
        if let Some(c) = &g.cmdline {
            let text = c.get_ref();
            if let Some(bad) = text.chars().find(|ch| ch.is_control()) {
                errors.push(SystemError::new(
                    key("cmdline"),
                    span(c),
                    format!("the command line holds the control character {:?}", bad),
                ));
            } else if vmm_config(name.get_ref(), g).len() > MAX_VMM_CONFIG {
                errors.push(SystemError::new(
                    key("cmdline"),
                    span(c),
                    format!(
                        "the command line ({} bytes) does not fit the VMM's {MAX_VMM_CONFIG}-byte configuration page",
                        text.len()
                    ),
                ));
            }
        }
        match parse_size(g.memory.get_ref()) {
            Some(n) if n > GUEST_RAM_MAX => errors.push(SystemError::new(
                key("memory"),
                span(&g.memory),
                format!("guest memory `{}` is more than the 1 GiB a guest may have", g.memory.get_ref()),
            )),
            Some(n) if n >= 1 << 20 && n % (2 << 20) == 0 => {}
            _ => errors.push(SystemError::new(
                key("memory"),
                span(&g.memory),
                format!("guest memory `{}` is not a whole number of 2 MiB", g.memory.get_ref()),
            )),
        }
        // Its VMM is a component cleave adds: nothing else may have that name (a ring or
        // region named after it would collide with the VMM's own objects).
        let vmm = vmm_name(name.get_ref());
        let named = [
            ("components", file.components.keys().find(|k| *k.get_ref() == vmm)),
            ("channels", file.channels.keys().find(|k| *k.get_ref() == vmm)),
            ("regions", file.regions.keys().find(|k| *k.get_ref() == vmm)),
            ("devices", file.devices.keys().find(|k| *k.get_ref() == vmm)),
        ];
        for (section, other) in named {
            if let Some(other) = other {
                errors.push(SystemError::new(
                    format!("{section}.{vmm}"),
                    span(other),
                    format!(
                        "`{vmm}` has the name of guest `{}`'s VMM, which cleave adds itself",
                        name.get_ref()
                    ),
                ));
            }
        }
        let mut listed = BTreeSet::new();
        for b in &g.backends {
            if !listed.insert(b.get_ref().as_str()) {
                errors.push(SystemError::new(
                    key("backends"),
                    span(b),
                    format!("`{}` is listed twice as a backend", b.get_ref()),
                ));
            }
            if !is_component(b.get_ref()) {
                errors.push(SystemError::new(
                    key("backends"),
                    span(b),
                    format!(
                        "guest `{}` is served by `{}`, which is not a component",
                        name.get_ref(),
                        b.get_ref()
                    ),
                ));
            }
        }
    }
}
