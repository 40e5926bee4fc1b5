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

/// Most guests one backend serves disks or networks to (their badge bits, below the
/// interrupt's).
pub const MAX_DISK_CLIENTS: usize = 63;

/// A guest's disk: a whole number of MiB, served by a component that owns a device with
/// DMA memory (the machine's disk; a per-guest backend's instance for the guest owns one
/// of its own), and no more than [`MAX_DISK_CLIENTS`] guests per backend.
fn check_disk(
    file: &SystemFile,
    guest: &str,
    disk: &toml::Spanned<crate::schema::Disk>,
    is_component: &dyn Fn(&str) -> bool,
    errors: &mut Vec<SystemError>,
) {
    let key = format!("guests.{guest}.disk");
    let (backend, size) = (&disk.get_ref().backend, &disk.get_ref().size);
    match parse_size(size.get_ref()) {
        Some(n) if n > 0 && n.is_multiple_of(1 << 20) => {}
        _ => errors.push(SystemError::new(
            key.clone(),
            span(size),
            format!("disk size `{}` is not a whole number of MiB", size.get_ref()),
        )),
    }
    let b = backend.get_ref().as_str();
    if !is_component(b) {
        errors.push(SystemError::new(
            key,
            span(backend),
            format!("guest `{guest}`'s disk is served by `{b}`, which is not a component"),
        ));
        return;
    }
    let component = file.components.iter().find(|(k, _)| k.get_ref() == b).map(|(_, c)| c);
    // A per-guest backend's instance for this guest drives a machine disk of its own.
    let per_guest = component.is_some_and(|c| c.is_per_guest());
    let driver = if per_guest { crate::system::instances::instance_name(b, guest) } else { b.to_string() };
    let disks: Vec<(&str, &crate::schema::Device)> = file
        .devices
        .iter()
        .filter(|(_, d)| *d.owner.get_ref() == driver && d.dma.is_some())
        .map(|(k, d)| (k.get_ref().as_str(), d))
        .collect();
    // Said once per driver: at its first guest.
    let first =
        per_guest || crate::layout::disk_slices(file).iter().any(|s| s.guest == guest && s.client == 0);
    match disks.as_slice() {
        [] => errors.push(SystemError::new(
            key.clone(),
            span(backend),
            if per_guest {
                format!(
                    "`{b}` is per-guest, and its instance `{driver}` for guest `{guest}` owns no device with `dma` memory (a machine disk of its own)"
                )
            } else {
                format!(
                    "`{b}` serves guest `{guest}`'s disk but owns no device with `dma` memory (the machine's disk)"
                )
            },
        )),
        [(name, d)] if first && (d.irq.is_none() || d.io_ports.is_none()) => errors.push(SystemError::new(
            format!("devices.{name}"),
            span(&d.owner),
            format!(
                "device `{name}`, the machine disk `{driver}` drives, needs `irq` and `io-ports` (its legacy virtio-pci interrupt line and I/O BAR)"
            ),
        )),
        [_] => {}
        [(name, d), ..] if first => errors.push(SystemError::new(
            format!("devices.{name}"),
            span(&d.owner),
            format!(
                "`{driver}` owns {} devices with `dma` memory: a disk backend drives one machine disk",
                disks.len()
            ),
        )),
        _ => {}
    }
    if component.is_some_and(|c| c.is_disposable()) {
        errors.push(SystemError::new(
            key.clone(),
            span(backend),
            format!("`{b}` is disposable: it would be gone while guest `{guest}` uses its disk"),
        ));
    }
    // Slices are numbered per backend in guest order: this guest's number is its bit (an
    // instance serves one guest).
    if !per_guest
        && crate::layout::disk_slices(file).iter().any(|s| s.guest == guest && s.client >= MAX_DISK_CLIENTS)
    {
        errors.push(SystemError::new(
            key,
            span(backend),
            format!("`{b}` serves more than {MAX_DISK_CLIENTS} guests' disks"),
        ));
    }
}

/// A guest's network: switched by a component (one instance for all its guests, not
/// disposable, serving no disks: its notification's bits are its guests'), no more than
/// [`MAX_DISK_CLIENTS`] guests per backend, and a unicast address no other guest on that
/// backend has.
fn check_network(
    file: &SystemFile,
    guest: &str,
    network: &toml::Spanned<crate::schema::Network>,
    is_component: &dyn Fn(&str) -> bool,
    errors: &mut Vec<SystemError>,
) {
    let key = format!("guests.{guest}.network");
    let backend = &network.get_ref().backend;
    let b = backend.get_ref().as_str();
    let ports = crate::layout::net_ports(file);
    let Some(port) = ports.iter().find(|p| p.guest == guest) else { return };
    let mac_span = network.get_ref().mac.as_ref().map_or_else(|| span(network), span);
    match port.mac {
        None => errors.push(SystemError::new(
            key.clone(),
            mac_span,
            format!(
                "`{}` is not a MAC address (six hex bytes, `02:00:00:00:00:01`)",
                network.get_ref().mac.as_ref().map_or("", |m| m.get_ref().as_str())
            ),
        )),
        Some(mac) if mac[0] & 1 == 1 => errors.push(SystemError::new(
            key.clone(),
            mac_span,
            format!("`{}` is a group (multicast) address, not a card's", crate::layout::format_mac(mac)),
        )),
        Some(mac) if mac == [0; 6] => errors.push(SystemError::new(
            key.clone(),
            mac_span,
            "00:00:00:00:00:00 is not a card's address".to_string(),
        )),
        Some(mac) => {
            if let Some(other) =
                ports.iter().find(|p| p.guest.as_str() < guest && p.backend == b && p.mac == Some(mac))
            {
                errors.push(SystemError::new(
                    key.clone(),
                    mac_span,
                    format!(
                        "guest `{guest}`'s network has the address {} of guest `{}`'s on the same switch{}",
                        crate::layout::format_mac(mac),
                        other.guest,
                        if network.get_ref().mac.is_none() {
                            " (derived from the names: set `mac`)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    if !is_component(b) {
        errors.push(SystemError::new(
            key,
            span(backend),
            format!("guest `{guest}`'s network is served by `{b}`, which is not a component"),
        ));
        return;
    }
    if crate::layout::serves_disks(file, b) {
        errors.push(SystemError::new(
            key.clone(),
            span(backend),
            format!("`{b}` serves disks and networks; a backend serves one or the other"),
        ));
    }
    let component = file.components.iter().find(|(k, _)| k.get_ref() == b).map(|(_, c)| c);
    // Said once per backend, at its first guest.
    let instances = component.and_then(|c| c.instances.as_ref()).filter(|_| port.client == 0);
    if let Some(i) = instances.filter(|i| i.get_ref() == "per-guest") {
        errors.push(SystemError::new(
            format!("components.{b}.instances"),
            span(i),
            format!(
                "`{b}` switches frames between the guests it serves: an instance per guest would connect each to nobody, so it cannot be per-guest"
            ),
        ));
    }
    if component.is_some_and(|c| c.is_disposable()) {
        errors.push(SystemError::new(
            key.clone(),
            span(backend),
            format!("`{b}` is disposable: it would be gone while guest `{guest}` uses its network"),
        ));
    }
    if port.client >= MAX_DISK_CLIENTS {
        errors.push(SystemError::new(
            key,
            span(backend),
            format!("`{b}` serves more than {MAX_DISK_CLIENTS} guests' networks"),
        ));
    }
}

/// Each guest's command line, memory, VMM name and backends, against the components
/// there are.
/// `start`: `"boot"` or `"on-request"`; a guest made on request needs the Builder (one
/// component running the `builder` program, rolled back after every request, as Xoar's
/// Builder is), and for now no network and at most
/// [`crate::layout::BUILD_MAX_FRAMES`] 2 MiB frames of RAM.
fn check_on_request(
    file: &SystemFile,
    guest: &str,
    g: &crate::schema::Guest,
    start: &toml::Spanned<String>,
    errors: &mut Vec<SystemError>,
) {
    let key = format!("guests.{guest}.start");
    match start.get_ref().as_str() {
        "boot" => return,
        "on-request" => {}
        other => {
            errors.push(SystemError::new(
                key,
                span(start),
                format!("start `{other}`: say \"boot\" (the loader starts it) or \"on-request\" (the Builder makes it when asked)"),
            ));
            return;
        }
    }
    let builders: Vec<(&String, &crate::schema::Component)> = file
        .components
        .iter()
        .filter(|(k, c)| c.package(k.get_ref()) == crate::layout::BUILDER_PROGRAM)
        .map(|(k, c)| (k.get_ref(), c))
        .collect();
    match builders.as_slice() {
        [] => errors.push(
            SystemError::new(key.clone(), span(start), format!("guest `{guest}` starts on request, but no component is the Builder"))
                .help("add [components.builder] with restart = \"per-request\", serving an endpoint the toolstack calls"),
        ),
        [(name, c)] if !c.restart.as_ref().is_some_and(|r| matches!(r.get_ref(), crate::schema::Restart::Keyword(k) if k == "per-request")) => {
            errors.push(
                SystemError::new(
                    key.clone(),
                    span(start),
                    format!("the Builder `{name}` must be rolled back after every request, so that a request that compromises it cannot reach the next"),
                )
                .help(format!("give [components.{name}] restart = \"per-request\"")),
            )
        }
        [(name, _)] if file.guests.iter().find(|(_, g)| g.on_request()).is_some_and(|(k, _)| k.get_ref() == guest) => {
            // (Said once, at the first on-request guest.) Only the toolstack may ask it (it
            // does not tell its clients apart); the supervisor watches at most 16
            // restartable components, and each on-request guest's VMM is one.
            let restarted = file.components.values().filter(|c| c.restart.is_some()).count()
                + file.guests.values().filter(|g| g.on_request()).count();
            if restarted > crate::layout::MAX_RESTARTABLE {
                errors.push(SystemError::new(
                    key.clone(),
                    span(start),
                    format!(
                        "{restarted} components are restarted (each on-request guest's VMM is one); the supervisor watches at most {}",
                        crate::layout::MAX_RESTARTABLE
                    ),
                ));
            }
            for (ch_name, ch) in file.channels.iter().filter(|(_, ch)| ch.server.get_ref() == *name) {
                for client in ch.clients.get_ref() {
                    let program = file.components.iter().find(|(k, _)| k.get_ref() == client.get_ref()).map(|(k, c)| c.package(k.get_ref()));
                    if program.as_deref() != Some("toolstack") {
                        errors.push(SystemError::new(
                            format!("channels.{}.clients", ch_name.get_ref()),
                            span(client),
                            format!("`{}` may not call the Builder: only the toolstack asks it to build and destroy guests", client.get_ref()),
                        ));
                    }
                }
            }
        }
        [_] => {}
        _ => errors.push(SystemError::new(key.clone(), span(start), "more than one component is the Builder".to_string())),
    }
    let place = file.guests.iter().filter(|(_, g)| g.on_request()).position(|(k, _)| k.get_ref() == guest);
    if place.is_some_and(|p| p >= crate::layout::BUILD_MAX_GUESTS) {
        errors.push(SystemError::new(
            key.clone(),
            span(start),
            format!(
                "more than {} guests start on request: the Builder has slots for that many",
                crate::layout::BUILD_MAX_GUESTS
            ),
        ));
    }
    let frames = parse_size(g.memory.get_ref()).unwrap_or(0).div_ceil(cleave_abi::layout::LARGE_PAGE_SIZE);
    if frames > crate::layout::BUILD_MAX_FRAMES {
        errors.push(SystemError::new(
            key,
            span(start),
            format!(
                "guest `{guest}` starts on request with {} MiB of RAM; the Builder makes at most {} MiB per guest",
                frames * 2,
                crate::layout::BUILD_MAX_FRAMES * 2
            ),
        ));
    }
}

pub(super) fn check(file: &SystemFile, components: &BTreeSet<&str>, errors: &mut Vec<SystemError>) {
    let is_component = |n: &str| components.contains(n);
    let mut gone_guests = 0usize;
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
            } else if vmm_config(file, name.get_ref(), g).len() > MAX_VMM_CONFIG {
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
        if let Some(s) = &g.start {
            check_on_request(file, name.get_ref(), g, s, errors);
        }
        if let Some(c) = &g.console {
            match c.get_ref().as_str() {
                "log" | "com2" => {}
                "ctl" if file.guests.values().filter(|g| g.console_relayed()).count() > crate::layout::MAX_RELAYED_CONSOLES
                    && file.guests.iter().filter(|(_, g)| g.console_relayed()).nth(crate::layout::MAX_RELAYED_CONSOLES).is_some_and(|(k, _)| k == name) =>
                {
                    errors.push(SystemError::new(
                        key("console"),
                        span(c),
                        format!(
                            "more than {} guests have console `ctl`: the toolstack keeps each one's last 4 KiB on its heap",
                            crate::layout::MAX_RELAYED_CONSOLES
                        ),
                    ))
                }
                "ctl" if crate::schema::toolstack_component(file).is_some() => {}
                "ctl" => errors.push(
                    SystemError::new(
                        key("console"),
                        span(c),
                        "console `ctl` is relayed by the toolstack, and no component runs the toolstack".to_string(),
                    )
                    .help("add the toolstack ([components.toolstack]), or say \"log\" or \"com2\""),
                ),
                other => errors.push(SystemError::new(
                    key("console"),
                    span(c),
                    format!(
                        "console `{other}`: say \"log\" (the system's log), \"com2\" (the second serial port) or \"ctl\" (relayed by the toolstack to `cleave ctl console`)"
                    ),
                )),
            }
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
        if let Some(disk) = &g.disk {
            check_disk(file, name.get_ref(), disk, &is_component, errors);
        }
        if let Some(network) = &g.network {
            check_network(file, name.get_ref(), network, &is_component, errors);
        }
        // Each guest of a restartable I/O backend has a bit on the supervisor's
        // notification (`layout::gone_badge`) to say it is gone; the bits run out after
        // `MAX_GONE_GUESTS`.
        let restarted =
            |b: &str| file.components.iter().any(|(k, c)| k.get_ref() == b && c.restart.is_some());
        let io =
            g.disk.iter().map(|d| &d.get_ref().backend).chain(g.network.iter().map(|n| &n.get_ref().backend));
        if let Some(backend) = io.into_iter().find(|b| restarted(b.get_ref())) {
            gone_guests += 1;
            if gone_guests == crate::layout::MAX_GONE_GUESTS + 1 {
                errors.push(SystemError::new(
                    key(if g.disk.as_ref().is_some_and(|d| restarted(d.get_ref().backend.get_ref())) {
                        "disk"
                    } else {
                        "network"
                    }),
                    span(backend),
                    format!(
                        "more than {} guests use restarted I/O backends: each needs a bit of the supervisor's notification to say it is gone",
                        crate::layout::MAX_GONE_GUESTS
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
                "console `tty`: say \"log\" (the system's log), \"com2\" (the second serial port) or \"ctl\" (relayed by the toolstack to `cleave ctl console`)",
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

    #[test]
    fn bad_disks_are_refused() {
        let text = "[components.blk]\ninstances = \"per-guest\"\n[components.nodma]\n\
                    [devices.disk]\nowner = \"blk\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
                    [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1500K\" }\n\
                    [guests.b]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"nodma\", size = \"1M\" }\n\
                    [guests.c]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"nobody\", size = \"1M\" }\n";
        assert_eq!(
            found(&run(text), text),
            [
                error("guests.a.disk", "\"1500K\"", "disk size `1500K` is not a whole number of MiB"),
                error(
                    "guests.a.disk",
                    "\"blk\"",
                    "`blk` is per-guest, and its instance `blk-a` for guest `a` owns no device with `dma` memory (a machine disk of its own)"
                ),
                error(
                    "guests.b.disk",
                    "\"nodma\"",
                    "`nodma` serves guest `b`'s disk but owns no device with `dma` memory (the machine's disk)"
                ),
                error(
                    "guests.c.disk",
                    "\"nobody\"",
                    "guest `c`'s disk is served by `nobody`, which is not a component"
                ),
            ]
        );
    }

    #[test]
    fn bad_networks_are_refused() {
        let text = "[components.sw]\ninstances = \"per-guest\"\n[components.blk]\n[components.once]\nlifetime = \"disposable\"\n\
                    [devices.disk]\nowner = \"blk\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
                    [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"sw\", mac = \"02:00:00:00:00:01\" }\n\
                    [guests.b]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"sw\", mac = \"02:00:00:00:00:01\" }\n\
                    [guests.c]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"sw\", mac = \"01:00:5e:00:00:01\" }\n\
                    [guests.d]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"sw\", mac = \"02:00:00:00:01\" }\n\
                    [guests.e]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"nobody\" }\n\
                    [guests.f]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"blk\" }\ndisk = { backend = \"blk\", size = \"1M\" }\n\
                    [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"once\", mac = \"00:00:00:00:00:00\" }\n";
        let messages: Vec<String> =
            run(text).into_iter().map(|e| format!("{}: {}", e.key, e.message)).collect();
        assert_eq!(
            messages,
            [
                "components.sw.instances: `sw` switches frames between the guests it serves: an instance per guest would connect each to nobody, so it cannot be per-guest",
                "guests.b.network: guest `b`'s network has the address 02:00:00:00:00:01 of guest `a`'s on the same switch",
                "guests.c.network: `01:00:5e:00:00:01` is a group (multicast) address, not a card's",
                "guests.d.network: `02:00:00:00:01` is not a MAC address (six hex bytes, `02:00:00:00:00:01`)",
                "guests.e.network: guest `e`'s network is served by `nobody`, which is not a component",
                "guests.f.network: `blk` serves disks and networks; a backend serves one or the other",
                "guests.g.network: 00:00:00:00:00:00 is not a card's address",
                "guests.g.network: `once` is disposable: it would be gone while guest `g` uses its network",
            ]
        );
        // Without `mac`, each guest's address comes from its name: locally administered,
        // unicast, and different for different names.
        let (x, y) = (crate::layout::derived_mac("alice"), crate::layout::derived_mac("bob"));
        assert_eq!((x[0], y[0]), (2, 2));
        assert_ne!(x, y);
        assert_eq!(crate::layout::parse_mac(&crate::layout::format_mac(x)), Some(x));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:00",
            "02:00:00:00:00:zz",
            "02-00-00-00-00-00",
            "02:00:00:00:00:+a",
            "02:00:00:00:-0:00",
        ] {
            assert_eq!(crate::layout::parse_mac(bad), None, "{bad:?}");
        }
    }

    /// A backend's 64th disk guest has no badge bit left (bit 63 is the interrupt's), and
    /// DMA memory comes in whole 2 MiB frames.
    #[test]
    fn at_most_30_guests_use_restarted_backends() {
        // 30 guests of a restarted switch, then a 31st on a restarted disk backend: the bits
        // run out; guests of a backend that is not restarted need none.
        let mut text = String::from(
            "[components.sw]\nrestart = { every = \"1s\" }\n[components.blk]\nrestart = { every = \"1s\" }\n\
             [components.plain]\n[devices.disk]\nowner = \"blk\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n",
        );
        for i in 0..32 {
            let io = match i {
                30 => "disk = { backend = \"blk\", size = \"1M\" }",
                31 => "network = { backend = \"plain\" }",
                _ => "network = { backend = \"sw\" }",
            };
            text.push_str(&format!("[guests.g{i:02}]\nmemory = \"2M\"\nimage = \"guest-hello\"\n{io}\n"));
        }
        let file = parse(&text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect();
        assert_eq!(
            messages,
            [
                "guests.g30.disk: more than 30 guests use restarted I/O backends: each needs a bit of the supervisor's notification to say it is gone"
            ]
        );
    }

    #[test]
    fn a_backend_serves_at_most_63_disks_and_dma_is_whole_large_frames() {
        let mut text = String::from(
            "[components.blk]\n[devices.disk]\nowner = \"blk\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"3M\"\n",
        );
        for i in 0..64 {
            text.push_str(&format!(
                "[guests.g{i:02}]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = {{ backend = \"blk\", size = \"1M\" }}\n"
            ));
        }
        let file = parse(&text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect();
        assert_eq!(messages, ["guests.g63.disk: `blk` serves more than 63 guests' disks"]);
        let mut errors = Vec::new();
        super::super::devices::check(&file, &components(&file), &mut errors);
        assert!(
            errors
                .iter()
                .any(|e| e.key == "devices.disk.dma" && e.message.contains("not a whole number of 2 MiB")),
            "{errors:?}"
        );
    }
}
