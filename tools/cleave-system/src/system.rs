//! `system.toml`: reading a description (`load`) and the checks that make it valid. Its
//! types and value readers (`schema`) are re-exported here, so that a user of this crate
//! finds the description and what may be asked of it in one place. The reference for
//! users is `doc/system-toml.md`.

use crate::error::SystemError;
use crate::layout::{
    DEVICE_WINDOW, DISPOSABLE_UNTYPED_BITS, GUEST_RAM_MAX, MAX_VMM_CONFIG, PIT_PORTS, REGION_WINDOW,
    SUPERVISOR, SUPERVISOR_PRIORITY, vmm_config, vmm_name,
};
pub use crate::schema::{
    Channel, Component, Device, Guest, Mmio, Policy, Region, Restart, SharedRegion, SystemFile,
    SystemSection, parse_duration_ms, parse_ports, parse_size, ring_name, shared_regions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

/// The programs the build makes (found by build.rs in the workspace).
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// Lowest priority a component may have.
pub const MIN_PRIORITY: u64 = 1;
/// Highest priority a component may have (255 is the loader's).
pub const MAX_PRIORITY: u64 = 254;
/// The interrupt lines the kernel keeps (cascade, COM1: `cleave_abi::platform`).
pub const KERNEL_IRQS: [u64; 2] = {
    let [a, b] = cleave_abi::platform::KERNEL_IRQS;
    [a as u64, b as u64]
};
/// The I/O ports the kernel keeps (PICs and COM1: `cleave_abi::platform`).
pub const KERNEL_PORTS: [(u64, u64); 3] = {
    let [(a, b), (c, d), (e, f)] = cleave_abi::platform::KERNEL_PORTS;
    [(a as u64, b as u64), (c as u64, d as u64), (e as u64, f as u64)]
};

fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

/// The most `stack` or `memory` a component may ask for (its pages are counted in 32 bits
/// and copied on every restart).
pub const MAX_COMPONENT_MEMORY: u64 = 1 << 30;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

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

/// Reads and checks `text`. Returns the description, or every error found.
pub fn load(text: &str) -> Result<SystemFile, Vec<SystemError>> {
    let file: SystemFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = text.get(span.clone()).unwrap_or("").trim().to_string();
        vec![SystemError::new(
            if key.is_empty() { "(file)".into() } else { key },
            span,
            e.message().to_string(),
        )]
    })?;
    let errors = check(&file);
    if !errors.is_empty() {
        return Err(errors);
    }
    let errors = loader_limits(&file);
    if errors.is_empty() { Ok(file) } else { Err(errors) }
}

/// Compiles a checked description and holds it to what the rest of the pipeline can do:
/// the spec validates, encodes, and has no more objects than the loader builds. Each
/// error is placed at the component (or guest) the offending object belongs to, so that
/// `check` finds what `image` or the loader would otherwise find first.
fn loader_limits(file: &SystemFile) -> Vec<SystemError> {
    // The component or guest whose name an object's starts with (the longest such): the
    // object's name, or a prefix of it ending before a `_`. A map, so that this stays
    // linear in the size of the system.
    let names: BTreeMap<&str, (String, Range<usize>)> = file
        .components
        .keys()
        .map(|k| (k.get_ref().as_str(), (format!("components.{}", k.get_ref()), span(k))))
        .chain(
            file.guests.keys().map(|k| (k.get_ref().as_str(), (format!("guests.{}", k.get_ref()), span(k)))),
        )
        .collect();
    let owner = |object: &str| -> (String, Range<usize>) {
        let cuts = object.match_indices('_').map(|(i, _)| i).rev();
        core::iter::once(object.len())
            .chain(cuts)
            .find_map(|end| names.get(&object[..end]))
            .cloned()
            .unwrap_or_else(|| ("(file)".to_string(), 0..0))
    };
    let compiled = crate::compile::compile(file);
    let mut errors = Vec::new();
    let count: usize = compiled.spec.objects.iter().map(|o| o.count.map_or(1, |n| n as usize)).sum();
    let limit = cleave_capdl::binary::LOADER_MAX_OBJECTS;
    if count > limit {
        // Point at the biggest contributor: that is what to shrink.
        let mut by_owner: BTreeMap<(String, usize, usize), usize> = BTreeMap::new();
        for o in &compiled.spec.objects {
            let (key, at) = owner(&o.name);
            *by_owner.entry((key, at.start, at.end)).or_default() += o.count.map_or(1, |n| n as usize);
        }
        let ((key, start, end), most) = by_owner
            .into_iter()
            .filter(|((k, _, _), _)| k != "(file)")
            .max_by_key(|(_, n)| *n)
            .unwrap_or((("(file)".to_string(), 0, 0), 0));
        let at = start..end;
        errors.push(
            SystemError::new(
                key.clone(),
                at,
                format!(
                    "the specification has {count} objects, {most} of them for `{}`; the loader builds at most {limit}",
                    key.split_once('.').map_or(key.as_str(), |(_, n)| n)
                ),
            )
            .help("fewer components, or less `memory` for restartable ones (one object per page)"),
        );
    }
    if !errors.is_empty() {
        return errors;
    }
    // Validation is quadratic in places; the count first bounds what it is given.
    for problem in cleave_capdl::validate::validate(&compiled.spec) {
        let text = problem.to_string();
        let object = text.split('`').nth(1).unwrap_or("");
        let (key, at) = owner(object);
        errors.push(SystemError::new(
            key,
            at,
            format!("the specification this compiles to is inconsistent: {text}"),
        ));
    }
    if !errors.is_empty() {
        return errors;
    }
    match cleave_capdl::binary::encode(&compiled.spec) {
        Ok(_) => {}
        Err(e) => {
            let text = e.to_string();
            let (key, at) = owner(text.split('`').nth(1).unwrap_or(""));
            return vec![SystemError::new(
                key,
                at,
                format!("the loader's encoding cannot hold this: {text}"),
            )];
        }
    };
    errors
}

/// The semantic checks.
pub fn check(file: &SystemFile) -> Vec<SystemError> {
    let mut errors = Vec::new();
    let components: BTreeSet<&str> = file.components.keys().map(|k| k.get_ref().as_str()).collect();
    let guests: BTreeSet<&str> = file.guests.keys().map(|k| k.get_ref().as_str()).collect();
    let is_component = |n: &str| components.contains(n);

    // Names: one namespace for everything that can be named.
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
            if !valid_name(n) {
                errors.push(
                    SystemError::new(
                        format!("{section}.{n}"),
                        span(name),
                        format!("`{n}` is not a valid name"),
                    )
                    .help("names are lower-case letters, digits and `-`, starting with a letter"),
                );
            }
            if let Some(other) = seen.insert(n, section) {
                errors.push(SystemError::new(
                    format!("{section}.{n}"),
                    span(name),
                    format!("`{n}` is already the name of one of the {other}"),
                ));
            }
        }
    }

    // Programs are named, never given as paths: the build packs the program of that name
    // into the boot image, and a path would pack whatever host file it names. The name
    // must be one the build makes, of the right kind.
    let mut programs: Vec<(String, &Spanned<String>, &[&str], &str)> = Vec::new();
    if let Some(s) = &file.system {
        programs.push(("system.root".into(), &s.root, programs::ROOT_PROGRAMS, "root task"));
    }
    for (name, c) in &file.components {
        if let Some(b) = &c.binary {
            let key = format!("components.{}.binary", name.get_ref());
            programs.push((key, b, programs::COMPONENT_PROGRAMS, "component program"));
        }
    }
    for (name, g) in &file.guests {
        let key = format!("guests.{}.image", name.get_ref());
        programs.push((key, &g.image, programs::GUEST_PROGRAMS, "guest image"));
    }
    for (key, program, known, kind) in programs {
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

    // The supervisor is a component cleave adds when lifetimes need one.
    // Nothing else may have its name: components, channels, regions and devices share one
    // namespace in the compiled system.
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

    let mut disposable_count = 0usize;
    for (name, c) in &file.components {
        let key = |field: &str| format!("components.{}.{field}", name.get_ref());
        let disposable = c.is_disposable();
        // The supervisor's notification gives each disposable component one bit, below
        // the clock's (bit 63).
        if disposable {
            disposable_count += 1;
            if disposable_count == 64
                && let Some(l) = &c.lifetime
            {
                errors.push(SystemError::new(
                    key("lifetime"),
                    span(l),
                    "more than 63 disposable components: the supervisor tells them apart by one \
                     badge bit each, and bit 63 is its clock's",
                ));
            }
        }
        // A supervisor that cannot preempt the component cannot enforce its deadline or
        // restart it on time.
        let enforced = c.restart.is_some() || (disposable && c.deadline.is_some());
        if let Some(p) = c.priority.as_ref().filter(|p| enforced && *p.get_ref() >= SUPERVISOR_PRIORITY) {
            errors.push(
                SystemError::new(
                    key("priority"),
                    span(p),
                    format!(
                        "priority {} is not below the supervisor's ({}), which must preempt it to \
                         enforce its {}",
                        p.get_ref(),
                        SUPERVISOR_PRIORITY,
                        if c.restart.is_some() { "restarts" } else { "deadline" }
                    ),
                )
                .help(format!("use a priority below {}", SUPERVISOR_PRIORITY)),
            );
        }
        if let Some(r) = &c.restart
            && matches!(r.get_ref(), Restart::Keyword(k) if k == "per-request")
            && !file
                .channels
                .values()
                .any(|ch| ch.kind.get_ref() == "endpoint" && ch.server.get_ref() == name.get_ref())
        {
            errors.push(
                SystemError::new(
                    key("restart"),
                    span(r),
                    format!("`{}` is rolled back after each request, but serves no endpoint", name.get_ref()),
                )
                .help("make it the server of an endpoint channel, or use restart = { every = … }"),
            );
        }
        if disposable {
            let size =
                |v: &Option<Spanned<String>>| v.as_ref().and_then(|v| parse_size(v.get_ref())).unwrap_or(0);
            let (stack, memory) = (size(&c.stack), size(&c.memory));
            let untyped = 1u64 << DISPOSABLE_UNTYPED_BITS;
            if stack.saturating_add(memory) >= untyped
                && let Some(v) = c.memory.as_ref().or(c.stack.as_ref())
            {
                errors.push(
                    SystemError::new(
                        key(if c.memory.is_some() { "memory" } else { "stack" }),
                        span(v),
                        format!(
                            "stack and memory ({} KiB) do not fit in the {} KiB a disposable component \
                             is made from, with its TCB, tables and program",
                            (stack + memory) >> 10,
                            untyped >> 10
                        ),
                    )
                    .help("a disposable component is small: shrink its stack or memory"),
                );
            }
        }
        if let Some(p) = &c.priority
            && !(MIN_PRIORITY..=MAX_PRIORITY).contains(p.get_ref())
        {
            errors.push(SystemError::new(
                key("priority"),
                span(p),
                format!("priority {} is outside {MIN_PRIORITY}-{MAX_PRIORITY}", p.get_ref()),
            ));
        }
        for (field, value) in [("stack", &c.stack), ("memory", &c.memory)] {
            if let Some(v) = value {
                match parse_size(v.get_ref()) {
                    Some(n) if n > MAX_COMPONENT_MEMORY => errors.push(SystemError::new(
                        key(field),
                        span(v),
                        format!("{field} `{}` is more than the 1 GiB a component may have", v.get_ref()),
                    )),
                    Some(n) if n % 4096 == 0 && n > 0 => {}
                    Some(_) => errors.push(SystemError::new(
                        key(field),
                        span(v),
                        format!("{field} `{}` is not a whole number of 4 KiB pages", v.get_ref()),
                    )),
                    None => errors.push(
                        SystemError::new(key(field), span(v), format!("`{}` is not a size", v.get_ref()))
                            .help("write a size like \"16K\" or \"1M\""),
                    ),
                }
            }
        }
        if let Some(l) = &c.lifetime
            && !["persistent", "disposable"].contains(&l.get_ref().as_str())
        {
            errors.push(
                SystemError::new(key("lifetime"), span(l), format!("unknown lifetime `{}`", l.get_ref()))
                    .help("lifetime is \"persistent\" or \"disposable\""),
            );
        }
        if let Some(i) = &c.instances
            && !["shared", "per-guest"].contains(&i.get_ref().as_str())
        {
            errors.push(
                SystemError::new(key("instances"), span(i), format!("unknown instancing `{}`", i.get_ref()))
                    .help("instances is \"shared\" or \"per-guest\""),
            );
        }
        if let Some(r) = &c.restart {
            match r.get_ref() {
                Restart::Keyword(k) if k == "per-request" => {}
                Restart::Keyword(k) => errors.push(
                    SystemError::new(key("restart"), span(r), format!("unknown restart policy `{k}`"))
                        .help("restart is \"per-request\" or { every = \"10s\" }"),
                ),
                Restart::Every { every } => match parse_duration_ms(every) {
                    Some(ms) if ms > cleave_capdl::binary::lifetime::MAX_RESTART_MS => errors.push(
                        SystemError::new(
                            key("restart.every"),
                            span(r),
                            format!(
                                "`{every}` is longer than the longest restart period, {} ms (about 4.6 hours)",
                                cleave_capdl::binary::lifetime::MAX_RESTART_MS
                            ),
                        ),
                    ),
                    Some(ms) if ms > 0 => {}
                    Some(_) => errors.push(SystemError::new(
                        key("restart.every"),
                        span(r),
                        format!("`{every}`: a restart period must be at least 1 ms"),
                    )),
                    None => errors.push(
                        SystemError::new(
                            key("restart.every"),
                            span(r),
                            format!("`{every}` is not a duration"),
                        )
                        .help("write a duration like \"100ms\", \"10s\" or \"1m\""),
                    ),
                },
            }
            if c.is_disposable() {
                errors.push(SystemError::new(
                    key("restart"),
                    span(r),
                    "a disposable component is never restarted",
                ));
            }
        }
        if let Some(e) = c.ends_run.as_ref().filter(|e| *e.get_ref() && c.is_disposable()) {
            errors.push(
                SystemError::new(key("ends-run"), span(e), "a disposable component cannot end the run")
                    .help("its supervisor holds what it is made from; remove `lifetime` or `ends-run`"),
            );
        }
        if let Some(e) = c.ends_run.as_ref().filter(|e| *e.get_ref() && c.restart.is_some()) {
            errors.push(
                SystemError::new(
                    key("ends-run"),
                    span(e),
                    "a component that may end the run cannot be restarted",
                )
                .help(
                    "its supervisor would hold its TCB and could steer it into ending the run; \
                         remove `restart` or `ends-run`",
                ),
            );
        }
        if let Some(d) = &c.deadline {
            if !c.is_disposable() {
                errors.push(
                    SystemError::new(key("deadline"), span(d), "only a disposable component has a deadline")
                        .help("add lifetime = \"disposable\", or remove the deadline"),
                );
            } else if parse_duration_ms(d.get_ref()).is_none_or(|ms| ms == 0) {
                errors.push(
                    SystemError::new(
                        key("deadline"),
                        span(d),
                        format!("`{}` is not a duration", d.get_ref()),
                    )
                    .help("write a duration like \"100ms\", \"10s\" or \"1m\""),
                );
            }
        }
    }

    for (name, ch) in &file.channels {
        let key = |field: &str| format!("channels.{}.{field}", name.get_ref());
        if let Some(ring) = &ch.ring {
            if ch.kind.get_ref() != "endpoint" {
                errors.push(SystemError::new(
                    key("ring"),
                    span(ring),
                    "only endpoint channels have rings".to_string(),
                ));
            }
            match parse_size(ring.get_ref()) {
                Some(n) if n > 0 && n % 4096 == 0 && (n / 4096).is_power_of_two() => {}
                Some(n) if n > 0 && n % 4096 == 0 => errors.push(
                    SystemError::new(
                        key("ring"),
                        span(ring),
                        format!("ring size `{}` is {} pages, not a power of two", ring.get_ref(), n / 4096),
                    )
                    .help("a ring's indices wrap by masking: use 4K, 8K, 16K, …"),
                ),
                _ => errors.push(SystemError::new(
                    key("ring"),
                    span(ring),
                    format!("ring size `{}` is not a whole number of 4 KiB pages", ring.get_ref()),
                )),
            }
        }
        if !["endpoint", "notification"].contains(&ch.kind.get_ref().as_str()) {
            errors.push(
                SystemError::new(
                    key("kind"),
                    span(&ch.kind),
                    format!("unknown channel kind `{}`", ch.kind.get_ref()),
                )
                .help("kind is \"endpoint\" or \"notification\""),
            );
        }
        if !is_component(ch.server.get_ref()) {
            errors.push(SystemError::new(
                key("server"),
                span(&ch.server),
                format!(
                    "channel `{}` has server `{}`, which is not a component",
                    name.get_ref(),
                    ch.server.get_ref()
                ),
            ));
        }
        if ch.clients.get_ref().is_empty() {
            errors.push(SystemError::new(
                key("clients"),
                span(&ch.clients),
                format!("channel `{}` has no clients", name.get_ref()),
            ));
        }
        let mut clients = BTreeSet::new();
        for client in ch.clients.get_ref() {
            let c = client.get_ref().as_str();
            if !is_component(c) {
                errors.push(SystemError::new(
                    key("clients"),
                    span(client),
                    format!("channel `{}` has client `{c}`, which is not a component", name.get_ref()),
                ));
            }
            if c == ch.server.get_ref() {
                errors.push(SystemError::new(
                    key("clients"),
                    span(client),
                    format!("`{c}` is both server and client of channel `{}`", name.get_ref()),
                ));
            }
            if !clients.insert(c) {
                errors.push(SystemError::new(
                    key("clients"),
                    span(client),
                    format!("`{c}` is listed twice as a client"),
                ));
            }
        }
        let mut badges = BTreeMap::new();
        for (client, badge) in &ch.badges {
            if !clients.contains(client.get_ref().as_str()) {
                errors.push(SystemError::new(
                    key("badges"),
                    span(client),
                    format!(
                        "badge for `{}`, which is not a client of `{}`",
                        client.get_ref(),
                        name.get_ref()
                    ),
                ));
            }
            if *badge.get_ref() == 0 {
                errors.push(SystemError::new(
                    key("badges"),
                    span(badge),
                    "badge 0 means no badge: use 1 or more",
                ));
            } else if let Some(other) = badges.insert(*badge.get_ref(), client.get_ref()) {
                errors.push(SystemError::new(
                    key("badges"),
                    span(badge),
                    format!("badge {} is also `{other}`'s", badge.get_ref()),
                ));
            }
        }
        // What each client's capability actually carries, defaults included: two
        // clients with one badge (or, on a notification, one bit) are one to the server.
        let clients_list = ch.clients.get_ref();
        if ch.is_notification() && clients_list.len() > 64 {
            errors.push(SystemError::new(
                key("clients"),
                span(&ch.clients),
                format!(
                    "notification `{}` has {} clients, but a badge word has 64 bits, one per client",
                    name.get_ref(),
                    clients_list.len()
                ),
            ));
        } else {
            // (badge, client, whether `badges` gave it)
            let mut carried: Vec<(u64, &str, bool)> = Vec::new();
            for (i, client) in clients_list.iter().enumerate() {
                let c = client.get_ref().as_str();
                let badge = ch.badge_of(i, c);
                let explicit = ch.badges.iter().find(|(k, _)| k.get_ref() == c).map(|(_, b)| b);
                let at = explicit.map_or_else(|| span(client), span);
                let how = if explicit.is_some() { "" } else { " (its default)" };
                for &(other_badge, other, other_explicit) in &carried {
                    // Two explicit badges that are equal were reported above; a zero badge too.
                    let same = other_badge == badge && !(explicit.is_some() && other_explicit);
                    let overlapping =
                        ch.is_notification() && other_badge != badge && other_badge & badge != 0;
                    if badge == 0 || other == c || !(same || overlapping) {
                        continue;
                    }
                    let message = if same {
                        format!("`{c}`'s badge {badge}{how} is also `{other}`'s")
                    } else {
                        format!(
                            "`{c}`'s badge {badge:#x}{how} shares bits with `{other}`'s ({other_badge:#x}): \
                             notification badges OR together, so the server could not tell them apart"
                        )
                    };
                    errors.push(SystemError::new(key("badges"), at.clone(), message).help(
                        "give each client its own badge (on a notification, its own bits) in `badges`",
                    ));
                }
                carried.push((badge, c, explicit.is_some()));
            }
        }
        if let Some(g) = ch.grant.as_ref().filter(|g| *g.get_ref() && ch.is_notification()) {
            errors.push(
                SystemError::new(key("grant"), span(g), "a notification carries no capabilities to grant")
                    .help("grant is for endpoint channels"),
            );
        }
    }

    let mut mmio_ranges: Vec<(u64, u64, &Spanned<u64>, &str)> = Vec::new();
    let mut port_ranges: Vec<(u64, u64, &Spanned<String>, &str)> = Vec::new();
    let mut irqs: BTreeMap<u64, &str> = BTreeMap::new();
    for (name, r) in &file.regions {
        let key = |field: &str| format!("regions.{}.{field}", name.get_ref());
        match parse_size(r.size.get_ref()) {
            Some(n) if n > 0 && n % 4096 == 0 => {}
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
                span(r.size),
                format!("the ring region `{}` would take a name already used", r.name),
            ));
        }
        if region_names.insert(r.name.clone(), ()).is_some() {
            // Two rings (`x` with client `b-c`, `x-b` with client `c`) named alike: one
            // would silently vanish.
            errors.push(
                SystemError::new(
                    r.key.clone(),
                    span(r.size),
                    format!("two channels' rings would both be named `{}`", r.name),
                )
                .help("a ring is named CHANNEL-CLIENT: rename the channel or the client"),
            );
            continue;
        }
        let Some(size) = parse_size(r.size.get_ref()).filter(|n| *n > 0 && n % 4096 == 0) else { continue };
        region_space = region_space.saturating_add(size);
        if region_space > REGION_WINDOW {
            errors.push(
                SystemError::new(
                    r.key.clone(),
                    span(r.size),
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
        region_space += 4096;
    }
    let mut device_space = 0u64;
    'devices: for (name, d) in &file.devices {
        for m in &d.mmio {
            let Some(size) = parse_size(m.size.get_ref()).filter(|n| *n > 0 && n % 4096 == 0) else {
                continue;
            };
            device_space = device_space.saturating_add(size);
            if device_space > DEVICE_WINDOW {
                errors.push(SystemError::new(
                    format!("devices.{}.mmio", name.get_ref()),
                    span(&m.size),
                    format!(
                        "MMIO of device `{}` does not fit: device MMIO shares {} MiB of address space",
                        name.get_ref(),
                        DEVICE_WINDOW >> 20
                    ),
                ));
                break 'devices;
            }
            device_space += 4096;
        }
    }
    for (name, d) in &file.devices {
        let dn = name.get_ref().as_str();
        let key = |field: &str| format!("devices.{dn}.{field}");
        // The supervisor takes the PIT (IRQ 0, ports 0x40-0x43) as its clock when any
        // component restarts on a timer or has a deadline (`compile::supervisor`).
        let supervisor_clock = file.components.values().any(|c| c.restart.is_some() || c.deadline.is_some());
        if !is_component(d.owner.get_ref()) {
            errors.push(SystemError::new(
                key("owner"),
                span(&d.owner),
                format!("device `{dn}` is owned by `{}`, which is not a component", d.owner.get_ref()),
            ));
        }
        if let Some(irq) = &d.irq {
            let n = *irq.get_ref();
            if n > 15 {
                errors.push(SystemError::new(
                    key("irq"),
                    span(irq),
                    format!("IRQ {n} is not a legacy line (0-15)"),
                ));
            } else if KERNEL_IRQS.contains(&n) {
                errors.push(SystemError::new(key("irq"), span(irq), format!("IRQ {n} is the kernel's")));
            } else if n == 0 && supervisor_clock {
                errors.push(
                    SystemError::new(key("irq"), span(irq), "IRQ 0 is the supervisor's clock (the PIT)")
                        .help("a system with restarts or deadlines gives the PIT to its supervisor"),
                );
            } else if let Some(other) = irqs.insert(n, dn) {
                errors.push(SystemError::new(
                    key("irq"),
                    span(irq),
                    format!("IRQ {n} is also device `{other}`'s"),
                ));
            }
        }
        if let Some(ports) = &d.io_ports {
            match parse_ports(ports.get_ref()) {
                None => errors.push(
                    SystemError::new(
                        key("io-ports"),
                        span(ports),
                        format!("`{}` is not a port range", ports.get_ref()),
                    )
                    .help("write \"0x3f8-0x3ff\""),
                ),
                Some((a, b)) => {
                    if KERNEL_PORTS.iter().any(|&(x, y)| a <= y && x <= b) {
                        errors.push(SystemError::new(
                            key("io-ports"),
                            span(ports),
                            format!("ports {a:#x}-{b:#x} include the kernel's"),
                        ));
                    }
                    if supervisor_clock && a <= PIT_PORTS.1 && PIT_PORTS.0 <= b {
                        errors.push(
                            SystemError::new(
                                key("io-ports"),
                                span(ports),
                                format!("ports {a:#x}-{b:#x} include the PIT's (0x40-0x43), the supervisor's clock"),
                            )
                            .help("a system with restarts or deadlines gives the PIT to its supervisor"),
                        );
                    }
                    if let Some((_, _, _, other)) = port_ranges.iter().find(|(x, y, _, _)| a <= *y && *x <= b)
                    {
                        errors.push(SystemError::new(
                            key("io-ports"),
                            span(ports),
                            format!("ports {a:#x}-{b:#x} overlap device `{other}`'s"),
                        ));
                    }
                    port_ranges.push((a, b, ports, dn));
                }
            }
        }
        for m in &d.mmio {
            let size = parse_size(m.size.get_ref());
            let base = *m.base.get_ref();
            match size {
                Some(s) if s > 0 && s % 4096 == 0 && base % 4096 == 0 => {
                    use cleave_abi::layout::{DEVICE_WINDOW_END, DEVICE_WINDOW_START};
                    if base < DEVICE_WINDOW_START || base.saturating_add(s) > DEVICE_WINDOW_END {
                        errors.push(
                            SystemError::new(
                                key("mmio"),
                                span(&m.base),
                                format!(
                                    "MMIO at {base:#x} lies outside the device memory the kernel hands out"
                                ),
                            )
                            .help(format!(
                                "device memory is {DEVICE_WINDOW_START:#x}-{DEVICE_WINDOW_END:#x}"
                            )),
                        );
                    }
                    if let Some((_, _, _, other)) =
                        mmio_ranges.iter().find(|(x, y, _, _)| base < *y && *x < base + s)
                    {
                        errors.push(SystemError::new(
                            key("mmio"),
                            span(&m.base),
                            format!("MMIO at {base:#x} overlaps device `{other}`'s"),
                        ));
                    }
                    mmio_ranges.push((base, base + s, &m.base, dn));
                }
                _ => errors.push(SystemError::new(
                    key("mmio"),
                    span(&m.base),
                    format!("MMIO range at {base:#x} is not page-aligned whole pages"),
                )),
            }
        }
    }
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
    // The supervisor cleave adds for disposable components takes its name.
    let disposable = file.components.values().any(|c| c.is_disposable());
    if disposable && let Some((k, _)) = file.components.iter().find(|(k, _)| k.get_ref() == SUPERVISOR) {
        errors.push(SystemError::new(
            format!("components.{}", k.get_ref()),
            span(k),
            "`supervisor` is the name of the component cleave adds to dispose of disposable components"
                .to_string(),
        ));
    }
    if let Some(policy) = &file.policy {
        check_policy(file, policy, &components, &guests, &mut errors);
    }
    errors
}

/// The components a guest or component stands for: a component itself; a guest's backends.
fn reach<'a>(file: &'a SystemFile, name: &str) -> BTreeSet<&'a str> {
    if let Some((k, _)) = file.components.iter().find(|(k, _)| k.get_ref() == name) {
        return BTreeSet::from([k.get_ref().as_str()]);
    }
    file.guests
        .iter()
        .find(|(k, _)| k.get_ref() == name)
        .map_or_else(BTreeSet::new, |(_, g)| g.backends.iter().map(|b| b.get_ref().as_str()).collect())
}

fn check_policy(
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
            // A guest's backends, and its VMM, which maps all of its RAM (the compiler's
            // test `only_the_vmm_maps_guest_ram` keeps this list true).
            "map-guest-memory" => file
                .guests
                .iter()
                .flat_map(|(name, g)| {
                    g.backends.iter().map(|b| b.get_ref().clone()).chain([vmm_name(name.get_ref())])
                })
                .collect(),
            other => {
                errors.push(
                    SystemError::new("policy.only", span(authority), format!("unknown authority `{other}`"))
                        .help("known: \"devices\", \"map-guest-memory\""),
                );
                continue;
            }
        };
        for holder in &holders {
            if !patterns.iter().any(|p| glob(p.get_ref(), holder)) {
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
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("vmm-*", "vmm-alice") && glob("builder", "builder") && !glob("vmm-*", "builder"));
        assert!(glob("*-back", "net-back") && !glob("a*c", "ab"));
    }
}
