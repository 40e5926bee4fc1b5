//! Per-guest components (`instances = "per-guest"`, Xoar's "configurable sharing"): the
//! rules for them, and [`expand`], which turns each into one component per guest it
//! serves, `NAME-GUEST`, before anything is compiled. Everything after `load` (the spec,
//! the sharing graph, the privilege table, exposure, the audit) sees only the instances,
//! so it shows which guest relies on which instance without knowing about instancing.

use crate::error::SystemError;
use crate::layout::vmm_name;
use crate::schema::{Instance, SystemFile};
use crate::system::span;
use std::collections::BTreeMap;
use toml::Spanned;

/// The name of `component`'s instance for `guest`.
pub fn instance_name(component: &str, guest: &str) -> String {
    format!("{component}-{guest}")
}

/// Every instance the per-guest components of `file` get: (component, guest, instance
/// name), by component, then guest, in name order. A guest gets an instance of each
/// per-guest component that serves it (in `backends`, or as its disk's or network's
/// backend).
pub fn instances(file: &SystemFile) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, c) in &file.components {
        if !c.is_per_guest() {
            continue;
        }
        for (guest, g) in &file.guests {
            if g.all_backends().iter().any(|b| b.get_ref() == name.get_ref()) {
                let n = name.get_ref().clone();
                out.push((n.clone(), guest.get_ref().clone(), instance_name(&n, guest.get_ref())));
            }
        }
    }
    out
}

/// The rules for per-guest components, on the description as written: each serves some
/// guest; no instance's name is taken (by anything `names` records or by a VMM); and
/// nothing but guests names a per-guest component itself (a device, channel, region or
/// isolation group names one of its instances, as it is one of them it concerns).
pub(super) fn check(file: &SystemFile, seen: &BTreeMap<&str, &str>, errors: &mut Vec<SystemError>) {
    let all = instances(file);
    // A guest names the per-guest component, never one of its instances (which is
    // another guest's, or would be).
    for (guest, g) in &file.guests {
        for b in g.all_backends() {
            if let Some((of, owner, _)) = all.iter().find(|(.., name)| name == b.get_ref()) {
                errors.push(SystemError::new(
                    format!("guests.{}", guest.get_ref()),
                    span(b),
                    format!(
                        "`{}` is the instance of per-guest `{of}` for guest `{owner}`: a guest names `{of}`, and gets its own",
                        b.get_ref()
                    ),
                ));
            }
        }
    }
    // Two instances with one name (`a` for guest `b-c`, `a-b` for guest `c`).
    for (i, (of, guest, name)) in all.iter().enumerate() {
        if let Some((other, other_guest, _)) = all[..i].iter().find(|(.., n)| n == name)
            && let Some((key, c)) = file.components.iter().find(|(k, _)| k.get_ref() == of)
        {
            let at = c.instances.as_ref().map_or_else(|| span(key), span);
            errors.push(SystemError::new(
                format!("components.{of}.instances"),
                at,
                format!("`{of}`'s instance for guest `{guest}` and `{other}`'s for guest `{other_guest}` would both be `{name}`"),
            ));
        }
    }
    let vmms: BTreeMap<String, &str> =
        file.guests.keys().map(|g| (vmm_name(g.get_ref()), g.get_ref().as_str())).collect();
    for (name, c) in file.components.iter().filter(|(_, c)| c.is_per_guest()) {
        let n = name.get_ref().as_str();
        let Some(instancing) = &c.instances else { continue };
        let key = format!("components.{n}.instances");
        let mine: Vec<&str> = all.iter().filter(|(of, ..)| of == n).map(|(.., i)| i.as_str()).collect();
        if mine.is_empty() {
            errors.push(
                SystemError::new(
                    key.clone(),
                    span(instancing),
                    format!("`{n}` is per-guest but serves no guest: it would have no instance"),
                )
                .help("name it as a guest's disk or network backend, or in a guest's `backends`"),
            );
        }
        for instance in &mine {
            if let Some(section) = seen.get(instance) {
                errors.push(SystemError::new(
                    key.clone(),
                    span(instancing),
                    format!("`{n}`'s instance `{instance}` would take the name of one of the {section}"),
                ));
            }
            if let Some(guest) = vmms.get(*instance) {
                errors.push(SystemError::new(
                    key.clone(),
                    span(instancing),
                    format!("`{n}`'s instance `{instance}` would take the name of guest `{guest}`'s VMM"),
                ));
            }
        }
        let refused = |at: &Spanned<String>, key: String, errors: &mut Vec<SystemError>| {
            errors.push(
                SystemError::new(
                    key,
                    span(at),
                    format!("`{n}` is per-guest: there is no one `{n}`, only its instances"),
                )
                .help(format!("name the instance it concerns: {}", mine.join(", "))),
            );
        };
        for (dn, d) in file.devices.iter().filter(|(_, d)| d.owner.get_ref() == n) {
            refused(&d.owner, format!("devices.{}.owner", dn.get_ref()), errors);
        }
        for (cn, ch) in &file.channels {
            let ends = std::iter::once(&ch.server).chain(ch.clients.get_ref().iter());
            for end in ends.filter(|e| e.get_ref() == n) {
                refused(end, format!("channels.{}", cn.get_ref()), errors);
            }
        }
        for (rn, r) in &file.regions {
            for user in r.map.get_ref().keys().filter(|u| u.get_ref() == n) {
                refused(user, format!("regions.{}.map", rn.get_ref()), errors);
            }
        }
        for group in file.policy.iter().flat_map(|p| p.isolate.iter()) {
            for member in group.get_ref().iter().filter(|m| m.get_ref() == n) {
                refused(member, "policy.isolate".to_string(), errors);
            }
        }
    }
}

/// The description with each per-guest component replaced by its instances: copies of
/// it (same program, priority, memory, lifetime and restarts; its spans, so that errors
/// about an instance point at what was written), each serving only its guest, whose
/// backends now name it. Components that are not per-guest are left as they are.
pub fn expand(mut file: SystemFile) -> SystemFile {
    let all = instances(&file);
    if all.is_empty() {
        return file;
    }
    for (of, guest, name) in &all {
        let (key, component) =
            file.components.iter().find(|(k, _)| k.get_ref() == of).expect("instances() found it");
        let mut copy = component.clone();
        copy.instances = None;
        copy.instance = Some(Instance { of: of.clone(), guest: guest.clone() });
        let key = Spanned::new(key.span(), name.clone());
        file.components.insert(key, copy);
    }
    file.components.retain(|_, c| !c.is_per_guest());
    for (of, guest, name) in &all {
        let Some(g) = file.guests.iter_mut().find(|(k, _)| k.get_ref() == guest).map(|(_, g)| g) else {
            continue;
        };
        let rename = |b: &mut Spanned<String>| {
            if b.get_ref() == of {
                *b = Spanned::new(b.span(), name.clone());
            }
        };
        g.backends.iter_mut().for_each(rename);
        if let Some(disk) = &mut g.disk {
            let span = disk.span();
            let mut d = disk.get_ref().clone();
            rename(&mut d.backend);
            *disk = Spanned::new(span, d);
        }
        if let Some(network) = &mut g.network {
            let span = network.span();
            let mut n = network.get_ref().clone();
            rename(&mut n.backend);
            *network = Spanned::new(span, n);
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SystemFile {
        toml::from_str(text).expect("a test's description reads")
    }

    const PER_GUEST: &str = "[components.blk]\ninstances = \"per-guest\"\npriority = 120\nrestart = { every = \"1s\" }\n\
        [components.store]\n\
        [guests.alice]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store\"]\ndisk = { backend = \"blk\", size = \"4M\" }\n\
        [guests.bob]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"8M\" }\n\
        [guests.carol]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store\"]\n";

    #[test]
    fn each_guest_a_per_guest_component_serves_gets_its_own_instance() {
        let file = parse(PER_GUEST);
        assert_eq!(
            instances(&file),
            [
                ("blk".to_string(), "alice".to_string(), "blk-alice".to_string()),
                ("blk".to_string(), "bob".to_string(), "blk-bob".to_string()),
            ]
        );
        let expanded = expand(file);
        let names: Vec<&str> = expanded.components.keys().map(|k| k.get_ref().as_str()).collect();
        assert_eq!(names, ["blk-alice", "blk-bob", "store"]);
        let alice = expanded.components.iter().find(|(k, _)| k.get_ref() == "blk-alice").unwrap().1;
        assert_eq!(alice.instance, Some(Instance { of: "blk".into(), guest: "alice".into() }));
        assert_eq!(alice.priority.as_ref().map(|p| *p.get_ref()), Some(120));
        assert!(alice.restart.is_some() && !alice.is_per_guest());
        // Its program is built for it; its crate is the component's.
        assert_eq!(
            (alice.program("blk-alice"), alice.package("blk-alice")),
            ("blk-alice".into(), "blk".into())
        );
        let backend = |g: &str| {
            let guest = expanded.guests.iter().find(|(k, _)| k.get_ref() == g).unwrap().1;
            guest.disk.as_ref().map(|d| d.get_ref().backend.get_ref().clone())
        };
        assert_eq!(
            (backend("alice"), backend("bob"), backend("carol")),
            (Some("blk-alice".into()), Some("blk-bob".into()), None)
        );
        // A shared component is left alone, and so are guests it serves.
        let carol = expanded.guests.iter().find(|(k, _)| k.get_ref() == "carol").unwrap().1;
        assert_eq!(carol.backends.iter().map(|b| b.get_ref().as_str()).collect::<Vec<_>>(), ["store"]);
    }

    #[test]
    fn a_description_without_per_guest_components_is_left_as_it_is() {
        let file = parse(&PER_GUEST.replace("instances = \"per-guest\"", "instances = \"shared\""));
        assert!(instances(&file).is_empty());
        let expanded = expand(file);
        assert_eq!(expanded.components.len(), 2);
        assert!(expanded.components.values().all(|c| c.instance.is_none()));
    }

    /// A per-guest disk backend as `systems/linux-disks-per-guest.toml` has it: each
    /// instance owns a machine disk of its own.
    const DISKS: &str = "[components.blk]\ninstances = \"per-guest\"\npriority = 120\n\
        [devices.machine-disk-bob]\nowner = \"blk-bob\"\nio-ports = \"0xc080-0xc0ff\"\nirq = 10\ndma = \"2M\"\n\
        [devices.machine-disk-alice]\nowner = \"blk-alice\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
        [guests.alice]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"16M\" }\n\
        [guests.bob]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"8M\" }\n\
        [policy]\nisolate = [[\"alice\", \"bob\"]]\nonly = { devices = [\"blk\"] }\n";

    #[test]
    fn per_guest_disk_backends_load_as_instances_each_with_its_machine_disk() {
        let file = crate::system::load(DISKS).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = file.components.keys().map(|k| k.get_ref().as_str()).collect();
        assert_eq!(names, ["blk-alice", "blk-bob"]);
        // Each slice starts its instance's disk, client 0 of its instance.
        let slices: Vec<(String, String, usize, u64)> = crate::layout::disk_slices(&file)
            .into_iter()
            .map(|s| (s.guest, s.backend, s.client, s.first_sector))
            .collect();
        assert_eq!(
            slices,
            [("alice".into(), "blk-alice".into(), 0, 0), ("bob".into(), "blk-bob".into(), 0, 0)]
        );
        // The machine disks in the order of their ports, each as large as its one slice.
        let disks: Vec<(String, String, u64)> =
            crate::layout::machine_disks(&file).into_iter().map(|d| (d.device, d.owner, d.bytes)).collect();
        assert_eq!(
            disks,
            [
                ("machine-disk-alice".into(), "blk-alice".into(), 16 << 20),
                ("machine-disk-bob".into(), "blk-bob".into(), 8 << 20)
            ]
        );
        // Each ring is mapped by its guest's VMM and its instance, nobody else.
        let rings: Vec<(String, Vec<(String, String)>)> =
            crate::schema::shared_regions(&file).into_iter().map(|r| (r.name, r.map)).collect();
        assert_eq!(
            rings,
            [
                (
                    "disk-alice".into(),
                    vec![("vmm-alice".into(), "rw".into()), ("blk-alice".into(), "rw".into())]
                ),
                ("disk-bob".into(), vec![("vmm-bob".into(), "rw".into()), ("blk-bob".into(), "rw".into())]),
            ]
        );
    }

    #[test]
    fn the_same_backend_shared_cannot_keep_the_guests_isolated() {
        // One shared instance serves both: the isolation policy is broken, and said so.
        let shared = DISKS
            .replace("instances = \"per-guest\"\n", "")
            .replace("[devices.machine-disk-bob]\nowner = \"blk-bob\"\nio-ports = \"0xc080-0xc0ff\"\nirq = 10\ndma = \"2M\"\n", "")
            .replace("owner = \"blk-alice\"", "owner = \"blk\"");
        let errors = crate::system::load(&shared).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["`alice` and `bob` must be isolated, but component `blk` serves both"]);
    }

    /// Every way of getting per-guest instancing wrong, each refused with its reason (and
    /// nothing else said about the same mistakes).
    #[test]
    fn per_guest_mistakes_are_refused() {
        let cases: &[(&str, &[&str])] = &[
            // Serving nobody: no instance at all.
            (
                "[components.lonely]\ninstances = \"per-guest\"\n",
                &["`lonely` is per-guest but serves no guest: it would have no instance"],
            ),
            // An instance's name is taken, by a component or by a guest's VMM.
            (
                "[components.store]\ninstances = \"per-guest\"\n[components.store-g]\n\
                 [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store\"]\n",
                &["`store`'s instance `store-g` would take the name of one of the components"],
            ),
            (
                "[components.vmm]\ninstances = \"per-guest\"\n\
                 [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"vmm\"]\n",
                &["`vmm`'s instance `vmm-g` would take the name of guest `g`'s VMM"],
            ),
            // The component itself named where one instance must be.
            (
                "[components.store]\ninstances = \"per-guest\"\n[components.client]\n\
                 [channels.ask]\nkind = \"endpoint\"\nserver = \"store\"\nclients = [\"client\"]\n\
                 [regions.shared]\nsize = \"4K\"\nmap = { store = \"rw\", client = \"r\" }\n\
                 [devices.nic]\nowner = \"store\"\nirq = 5\n\
                 [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store\"]\n\
                 [guests.h]\nmemory = \"2M\"\nimage = \"guest-hello\"\n\
                 [policy]\nisolate = [[\"store\", \"h\"]]\n",
                &[
                    "`store` is per-guest: there is no one `store`, only its instances",
                    "`store` is per-guest: there is no one `store`, only its instances",
                    "`store` is per-guest: there is no one `store`, only its instances",
                    "`store` is per-guest: there is no one `store`, only its instances",
                ],
            ),
            // An instance without a machine disk of its own.
            (
                "[components.blk]\ninstances = \"per-guest\"\n\
                 [devices.machine-disk-a]\nowner = \"blk-a\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
                 [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n\
                 [guests.b]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n",
                &[
                    "`blk` is per-guest, and its instance `blk-b` for guest `b` owns no device with `dma` memory (a machine disk of its own)",
                ],
            ),
            // A device owned by an instance that will not exist.
            (
                "[components.blk]\ninstances = \"per-guest\"\n\
                 [devices.machine-disk-a]\nowner = \"blk-a\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\
                 [devices.machine-disk-z]\nowner = \"blk-z\"\nio-ports = \"0xc080-0xc0ff\"\nirq = 10\ndma = \"2M\"\n\
                 [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"1M\" }\n",
                &["device `machine-disk-z` is owned by `blk-z`, which is not a component"],
            ),
            // Two instances with one name.
            (
                "[components.a]\ninstances = \"per-guest\"\n[components.a-b]\ninstances = \"per-guest\"\n\
                 [guests.b-c]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"a\"]\n\
                 [guests.c]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"a-b\"]\n",
                &["`a-b`'s instance for guest `c` and `a`'s for guest `b-c` would both be `a-b-c`"],
            ),
            // A guest naming another guest's instance.
            (
                "[components.store]\ninstances = \"per-guest\"\n\
                 [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store\"]\n\
                 [guests.b]\nmemory = \"2M\"\nimage = \"guest-hello\"\nbackends = [\"store-a\"]\n",
                &[
                    "`store-a` is the instance of per-guest `store` for guest `a`: a guest names `store`, and gets its own",
                ],
            ),
            // A switch per guest connects nobody.
            (
                "[components.sw]\ninstances = \"per-guest\"\n\
                 [guests.a]\nmemory = \"2M\"\nimage = \"guest-hello\"\nnetwork = { backend = \"sw\" }\n",
                &[
                    "`sw` switches frames between the guests it serves: an instance per guest would connect each to nobody, so it cannot be per-guest",
                ],
            ),
        ];
        for (text, expected) in cases {
            let errors = crate::system::load(text).expect_err(text);
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            assert_eq!(&messages, expected, "{text}");
        }
    }
}
