//! `[guests.NAME]`: images, memory, command lines, backends, and the name of the VMM
//! cleave adds for each.

use super::check_program;
use crate::error::SystemError;
use crate::layout::{COM2_PORTS, GUEST_RAM_MAX, MAX_VMM_CONFIG, vmm_config, vmm_name};
use crate::schema::{SystemFile, parse_ports, parse_size};
use crate::system::{programs, span};
use cleave_abi::layout::LARGE_PAGE_SIZE;
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
        if let Some(c) = &g.console
            && !matches!(c.get_ref().as_str(), "log" | "com2")
        {
            errors.push(SystemError::new(
                key("console"),
                span(c),
                format!(
                    "console `{}`: say \"log\" (the system's log) or \"com2\" (the second serial port)",
                    c.get_ref()
                ),
            ));
        }
        match parse_size(g.memory.get_ref()) {
            Some(n) if n > GUEST_RAM_MAX => errors.push(SystemError::new(
                key("memory"),
                span(&g.memory),
                format!("guest memory `{}` is more than the 1 GiB a guest may have", g.memory.get_ref()),
            )),
            Some(n) if n >= 1 << 20 && n.is_multiple_of(LARGE_PAGE_SIZE) => {}
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
    // The second serial port is one guest's console at most, and no device's.
    let mut com2 = None;
    for (name, g) in &file.guests {
        let Some(c) = g.console.as_ref().filter(|c| c.get_ref() == "com2") else { continue };
        let key = format!("guests.{}.console", name.get_ref());
        if let Some(first) = com2.replace(name.get_ref()) {
            errors.push(SystemError::new(
                key.clone(),
                span(c),
                format!("guest `{first}` already has COM2 as its console"),
            ));
        }
        for (dn, d) in &file.devices {
            let overlaps = d
                .io_ports
                .as_ref()
                .and_then(|p| parse_ports(p.get_ref()))
                .is_some_and(|(first, last)| first <= COM2_PORTS.1 && COM2_PORTS.0 <= last);
            if overlaps {
                errors.push(SystemError::new(
                    key.clone(),
                    span(c),
                    format!(
                        "device `{}` (owned by `{}`) holds COM2's ports",
                        dn.get_ref(),
                        d.owner.get_ref()
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

    fn run(text: &str) -> Vec<SystemError> {
        let file = parse(text);
        let mut errors = Vec::new();
        check_images(&file, &mut errors);
        check(&file, &components(&file), &mut errors);
        errors
    }

    #[test]
    fn guests_with_memory_images_and_backends_are_accepted() {
        let text = format!(
            "[components.net]\n[guests.alice]\nmemory = \"4M\"\nimage = \"{}\"\nbackends = [\"net\"]\ncmdline = \"console=ttyS0 quiet\"\n[guests.bob]\nmemory = \"1G\"\nimage = \"{0}\"\n",
            programs::GUEST_PROGRAMS[0]
        );
        assert_eq!(run(&text), []);
    }

    #[test]
    fn bad_memory_images_command_lines_backends_and_vmm_names_are_refused() {
        let text = "[components.vmm-alice]\n[components.net]\n\
                    [guests.alice]\nmemory = \"3M\"\nimage = \"/boot/vmlinuz\"\nbackends = [\"net\", \"net\", \"disk\"]\ncmdline = \"a\\nb=1\"\n\
                    [guests.bob]\nmemory = \"2G\"\nimage = \"no-such-guest\"\n";
        assert_eq!(
            found(&run(text), text),
            [
                error("guests.alice.image", "\"/boot/vmlinuz\"", "`/boot/vmlinuz` is not a program name"),
                error(
                    "guests.bob.image",
                    "\"no-such-guest\"",
                    "`no-such-guest` is no guest image the build makes"
                ),
                error(
                    "guests.alice.cmdline",
                    "\"a\\nb=1\"",
                    "the command line holds the control character '\\n'"
                ),
                error("guests.alice.memory", "\"3M\"", "guest memory `3M` is not a whole number of 2 MiB"),
                error(
                    "components.vmm-alice",
                    "vmm-alice",
                    "`vmm-alice` has the name of guest `alice`'s VMM, which cleave adds itself"
                ),
                error("guests.alice.backends", "\"net\"", "`net` is listed twice as a backend"),
                error(
                    "guests.alice.backends",
                    "\"disk\"",
                    "guest `alice` is served by `disk`, which is not a component"
                ),
                error(
                    "guests.bob.memory",
                    "\"2G\"",
                    "guest memory `2G` is more than the 1 GiB a guest may have"
                ),
            ]
        );
    }

    #[test]
    fn com2_is_one_guests_console_and_no_devices() {
        let g = programs::GUEST_PROGRAMS[0];
        let ok = format!(
            "[guests.a]\nmemory = \"2M\"\nimage = \"{g}\"\nconsole = \"com2\"\n[guests.b]\nmemory = \"2M\"\nimage = \"{g}\"\nconsole = \"log\"\n"
        );
        assert_eq!(run(&ok), []);
        let text = format!(
            "[components.drv]\n[devices.serial]\nowner = \"drv\"\nio-ports = \"0x2f8-0x2ff\"\n\
             [guests.a]\nmemory = \"2M\"\nimage = \"{g}\"\nconsole = \"com2\"\n\
             [guests.b]\nmemory = \"2M\"\nimage = \"{g}\"\nconsole = \"com2\"\n\
             [guests.c]\nmemory = \"2M\"\nimage = \"{g}\"\nconsole = \"tty\"\n"
        );
        let messages: Vec<String> = run(&text).into_iter().map(|e| e.message).collect();
        assert_eq!(
            messages,
            [
                "console `tty`: say \"log\" (the system's log) or \"com2\" (the second serial port)",
                "device `serial` (owned by `drv`) holds COM2's ports",
                "guest `a` already has COM2 as its console",
                "device `serial` (owned by `drv`) holds COM2's ports",
            ]
        );
    }

    #[test]
    fn a_command_line_too_long_for_the_configuration_page_is_refused() {
        let text = format!(
            "[guests.g]\nmemory = \"2M\"\nimage = \"{}\"\ncmdline = \"{}\"\n",
            programs::GUEST_PROGRAMS[0],
            "x".repeat(4050)
        );
        let messages: Vec<String> = run(&text).into_iter().map(|e| e.message).collect();
        assert_eq!(
            messages,
            ["the command line (4050 bytes) does not fit the VMM's 4096-byte configuration page"]
        );
    }
}
