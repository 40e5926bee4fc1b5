//! `[channels.NAME]`: kinds, server and clients, badges, grant and rings.

use crate::error::SystemError;
use crate::schema::{SystemFile, parse_size};
use crate::system::span;
use cleave_abi::layout::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};

/// Each channel, against the components there are.
pub(super) fn check(file: &SystemFile, components: &BTreeSet<&str>, errors: &mut Vec<SystemError>) {
    let is_component = |n: &str| components.contains(n);
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
                Some(n) if n > 0 && n.is_multiple_of(PAGE_SIZE) && (n / PAGE_SIZE).is_power_of_two() => {}
                Some(n) if n > 0 && n.is_multiple_of(PAGE_SIZE) => errors.push(
                    SystemError::new(
                        key("ring"),
                        span(ring),
                        format!(
                            "ring size `{}` is {} pages, not a power of two",
                            ring.get_ref(),
                            n / PAGE_SIZE
                        ),
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{components, error, found, parse};
    use super::*;

    const COMPONENTS: &str = "[components.server]\n[components.a]\n[components.b]\n";

    #[test]
    fn endpoints_and_notifications_with_distinct_badges_are_accepted() {
        let text = format!(
            "{COMPONENTS}[channels.calls]\nkind = \"endpoint\"\nserver = \"server\"\nclients = [\"a\", \"b\"]\nbadges = {{ b = 7 }}\ngrant = true\nring = \"8K\"\n\
             [channels.bells]\nkind = \"notification\"\nserver = \"server\"\nclients = [\"a\", \"b\"]\nbadges = {{ a = 0x10 }}\n"
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        assert_eq!(errors, []);
    }

    #[test]
    fn clients_the_server_cannot_tell_apart_are_refused() {
        // `a` has badge 1 by default, which `b` is given too; on the notification, `b`'s
        // default bit 1 (0x2) is inside `a`'s 0x3.
        let text = format!(
            "{COMPONENTS}[channels.calls]\nkind = \"endpoint\"\nserver = \"server\"\nclients = [\"a\", \"b\"]\nbadges = {{ b = 1 }}\n\
             [channels.bells]\nkind = \"notification\"\nserver = \"server\"\nclients = [\"a\", \"b\"]\nbadges = {{ a = 3 }}\ngrant = true\n"
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        assert_eq!(
            found(&errors, &text),
            [
                error(
                    "channels.bells.badges",
                    "\"b\"",
                    "`b`'s badge 0x2 (its default) shares bits with `a`'s (0x3): notification badges OR together, so the server could not tell them apart"
                ),
                error("channels.bells.grant", "true", "a notification carries no capabilities to grant"),
                error("channels.calls.badges", "1", "`b`'s badge 1 is also `a`'s"),
            ]
        );
    }

    #[test]
    fn ends_that_are_not_components_and_bad_rings_are_refused() {
        let text = format!(
            "{COMPONENTS}[channels.q]\nkind = \"endpoint\"\nserver = \"nobody\"\nclients = [\"a\", \"a\", \"ghost\"]\nring = \"12K\"\n"
        );
        let file = parse(&text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        assert_eq!(
            found(&errors, &text),
            [
                error("channels.q.ring", "\"12K\"", "ring size `12K` is 3 pages, not a power of two"),
                error(
                    "channels.q.server",
                    "\"nobody\"",
                    "channel `q` has server `nobody`, which is not a component"
                ),
                error("channels.q.clients", "\"a\"", "`a` is listed twice as a client"),
                error(
                    "channels.q.clients",
                    "\"ghost\"",
                    "channel `q` has client `ghost`, which is not a component"
                ),
            ]
        );
    }
}
