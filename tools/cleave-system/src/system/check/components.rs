//! `[components.NAME]`: programs, priorities, memory, lifetimes and restarts.

use super::check_program;
use crate::error::SystemError;
use crate::layout::SUPERVISOR_PRIORITY;
use crate::schema::{Restart, SystemFile, parse_duration_ms, parse_size};
use crate::system::{programs, span};
use cleave_abi::layout::PAGE_SIZE;
use toml::Spanned;

/// Lowest priority a component may have.
pub const MIN_PRIORITY: u64 = 1;
/// Highest priority a component may have (255 is the loader's).
pub const MAX_PRIORITY: u64 = 254;
/// The most `stack` or `memory` a component may ask for (its pages are counted in 32 bits
/// and copied on every restart).
pub const MAX_COMPONENT_MEMORY: u64 = 1 << 30;
/// The largest `stack` (the capDL loader's limit, `binary::MAX_STACK_PAGES` pages).
pub const MAX_STACK: u64 = cleave_capdl::binary::MAX_STACK_PAGES * PAGE_SIZE;

/// Each component's `binary` is a component program the build makes.
pub(super) fn check_binaries(file: &SystemFile, errors: &mut Vec<SystemError>) {
    for (name, c) in &file.components {
        if let Some(b) = &c.binary {
            let key = format!("components.{}.binary", name.get_ref());
            check_program(key, b, programs::COMPONENT_PROGRAMS, "component program", errors);
        }
    }
}

/// Each component's priority, stack and memory, lifetime, deadline, restart policy and
/// `ends-run`, and how they go together.
pub(super) fn check(file: &SystemFile, errors: &mut Vec<SystemError>) {
    let mut disposable_count = 0usize;
    for (name, c) in &file.components {
        let key = |field: &str| format!("components.{}.{field}", name.get_ref());
        let disposable = c.is_disposable();
        // The supervisor's notification gives each disposable component one bit, 0-31
        // (guests' gone bits are 32-62, the clock's 63).
        if disposable {
            disposable_count += 1;
            if disposable_count == 33
                && let Some(l) = &c.lifetime
            {
                errors.push(SystemError::new(
                    key("lifetime"),
                    span(l),
                    "more than 32 disposable components: the supervisor tells them apart by one \
                     badge bit each (bits 0-31; guests' gone bits and its clock's are above)",
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
                    Some(n) if field == "stack" && n > MAX_STACK => errors.push(SystemError::new(
                        key(field),
                        span(v),
                        format!(
                            "stack `{}` is more than the 1 MiB stack the loader makes at most",
                            v.get_ref()
                        ),
                    )),
                    Some(n) if n.is_multiple_of(PAGE_SIZE) && n > 0 => {}
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
        // A restarted component's stack is part of its writable memory.
        let size = |v: &Option<Spanned<String>>| v.as_ref().and_then(|v| parse_size(v.get_ref()));
        let writable = size(&c.memory).unwrap_or(crate::layout::DEFAULT_RESTART_MEMORY);
        if c.restart.is_some()
            && let (Some(stack), Some(s)) = (size(&c.stack), c.stack.as_ref())
            && stack >= writable
        {
            errors.push(
                SystemError::new(
                    key("stack"),
                    span(s),
                    format!(
                        "stack `{}` does not fit in the writable memory of a restarted component (`memory`, {} KiB), which also holds its program's data",
                        s.get_ref(),
                        writable >> 10
                    ),
                )
                .help("give it more `memory`"),
            );
        }
        // `memory` is the writable memory the supervisor restores on each restart; any other
        // component's memory is its program's own (its data and `cleave_rt::heap!`), which
        // no setting here would change.
        if let Some(m) = c.memory.as_ref().filter(|_| c.restart.is_none()) {
            errors.push(
                SystemError::new(
                    key("memory"),
                    span(m),
                    format!(
                        "`memory` sizes a restarted component's writable memory; `{}` is not restarted, so its memory is its program's own",
                        name.get_ref()
                    ),
                )
                .help("drop `memory`, or give it `restart`; `cleave memory` shows what each component takes"),
            );
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
        // Audit events are console lines the kernel also keeps (`AuditEvent`): a component
        // kept off the console records none, and the log would not say whom it served.
        let n = name.get_ref();
        if let Some(e) = c.console.as_ref().filter(|e| !*e.get_ref())
            && (crate::layout::serves_guest_io(file, n) || c.package(n) == crate::layout::BUILDER_PROGRAM)
        {
            errors.push(
                SystemError::new(
                    key("console"),
                    span(e),
                    format!("`{n}` records audit events (the guests it serves or builds), which a component kept off the console cannot"),
                )
                .help("remove `console = false`: the audit log must say which guests relied on it"),
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error, found, parse};
    use super::*;

    #[test]
    fn components_using_every_field_well_are_accepted() {
        let text = format!(
            "[components.timer]\nbinary = \"{}\"\npriority = 200\nstack = \"16K\"\nmemory = \"1M\"\nrestart = {{ every = \"1s\" }}\ninstances = \"per-guest\"\nconsole = false\n\
             [components.boot]\nlifetime = \"disposable\"\ndeadline = \"500ms\"\nstack = \"8K\"\n\
             [components.server]\nrestart = \"per-request\"\n\
             [components.main]\npriority = 254\nends-run = true\nlifetime = \"persistent\"\n\
             [channels.requests]\nkind = \"endpoint\"\nserver = \"server\"\nclients = [\"main\"]\n",
            programs::COMPONENT_PROGRAMS[0]
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        check_binaries(&file, &mut errors);
        check(&file, &mut errors);
        assert_eq!(errors, []);
    }

    /// A backend or a Builder kept off the console would leave the audit log silent
    /// about the guests it serves or builds; any other component may be quiet.
    #[test]
    fn components_that_record_audit_events_keep_the_console() {
        let text = "[components.blk]\nconsole = false\n\
                    [components.builder]\nconsole = false\n\
                    [components.quiet]\nconsole = false\n\
                    [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n";
        let mut errors = Vec::new();
        check(&parse(text), &mut errors);
        assert_eq!(
            found(&errors, text),
            [
                error(
                    "components.blk.console",
                    "false",
                    "`blk` records audit events (the guests it serves or builds), which a component kept off the console cannot"
                ),
                error(
                    "components.builder.console",
                    "false",
                    "`builder` records audit events (the guests it serves or builds), which a component kept off the console cannot"
                ),
            ]
        );
    }

    #[test]
    fn fields_out_of_range_or_at_odds_are_refused() {
        let text = "[components.a]\npriority = 0\nstack = \"6K\"\nmemory = \"2G\"\n\
                    [components.e]\nstack = \"2M\"\n\
                    [components.f]\nrestart = { every = \"1s\" }\nstack = \"64K\"\n\
                    [components.b]\nlifetime = \"disposable\"\nrestart = { every = \"1s\" }\nends-run = true\n\
                    [components.c]\nrestart = \"per-request\"\npriority = 251\n\
                    [components.d]\ndeadline = \"1s\"\n";
        let mut errors = Vec::new();
        check(&parse(text), &mut errors);
        assert_eq!(
            found(&errors, text),
            [
                error("components.a.priority", "0", "priority 0 is outside 1-254"),
                error("components.a.stack", "\"6K\"", "stack `6K` is not a whole number of 4 KiB pages"),
                error(
                    "components.a.memory",
                    "\"2G\"",
                    "memory `2G` is more than the 1 GiB a component may have"
                ),
                error(
                    "components.a.memory",
                    "\"2G\"",
                    "`memory` sizes a restarted component's writable memory; `a` is not restarted, so its memory is its program's own"
                ),
                error(
                    "components.b.restart",
                    "{ every = \"1s\" }",
                    "a disposable component is never restarted"
                ),
                error("components.b.ends-run", "true", "a disposable component cannot end the run"),
                error(
                    "components.b.ends-run",
                    "true",
                    "a component that may end the run cannot be restarted"
                ),
                error(
                    "components.c.priority",
                    "251",
                    "priority 251 is not below the supervisor's (250), which must preempt it to enforce its restarts"
                ),
                error(
                    "components.c.restart",
                    "\"per-request\"",
                    "`c` is rolled back after each request, but serves no endpoint"
                ),
                error("components.d.deadline", "\"1s\"", "only a disposable component has a deadline"),
                error(
                    "components.e.stack",
                    "\"2M\"",
                    "stack `2M` is more than the 1 MiB stack the loader makes at most"
                ),
                error(
                    "components.f.stack",
                    "\"64K\"",
                    "stack `64K` does not fit in the writable memory of a restarted component (`memory`, 64 KiB), which also holds its program's data"
                ),
            ]
        );
    }
}
