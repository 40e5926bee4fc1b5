//! Generated code for components: each receives its capabilities as named constants (slot
//! numbers in its CNode), produced from `system.toml` by the component's build script.

use crate::{compile, error, layout, system};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Rust source declaring `component`'s capability slots as constants, plus a `CAPS` table
/// (name, slot, what) the component can print.
pub fn caps_source(system_toml: &Path, component: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(system_toml)
        .map_err(|e| format!("cannot read {}: {e}", system_toml.display()))?;
    let file = system::load(&text)
        .map_err(|e| error::render_plain(&e, &system_toml.display().to_string(), &text))?;
    let compiled = compile::compile(&file);
    // A declared component, or one cleave adds (the supervisor).
    if !file.components.keys().any(|k| k.get_ref() == component) && !compiled.tables.contains_key(component) {
        return Err(format!("{} declares no component `{component}`", system_toml.display()));
    }
    let mut out =
        format!("// Generated from {} for component `{component}`. Do not edit.\n", system_toml.display());
    if component == layout::SUPERVISOR {
        let _ = writeln!(
            out,
            "/// The components restarted on a timer (period ms) or rolled back after every request (period 0): (name, TCB slot, writable memory, pristine copy, bytes, period ms, fault badge).\npub const RESTARTS: &[(&str, u64, usize, usize, usize, u64, u64)] = &["
        );
        for r in &compiled.restarts {
            let _ = writeln!(
                out,
                "    ({:?}, {}, {:#x}, {:#x}, {:#x}, {}, {}),",
                r.component, r.tcb_slot, r.memory, r.pristine, r.bytes, r.period_ms, r.badge
            );
        }
        let _ = writeln!(out, "];");
        let _ = writeln!(
            out,
            "/// The disposable components' deadlines in ms, in name order (0: none).\npub const DEADLINES: &[(&str, u64)] = &["
        );
        for (name, c) in &file.components {
            if c.is_disposable() {
                let ms =
                    c.deadline.as_ref().and_then(|d| system::parse_duration_ms(d.get_ref())).unwrap_or(0);
                let _ = writeln!(out, "    ({:?}, {ms}),", name.get_ref());
            }
        }
        let _ = writeln!(out, "];");
    }
    let entries = compiled.tables.get(component).map(|t| t.entries.clone()).unwrap_or_default();
    for (slot, name, what) in &entries {
        let constant = constant_name(name);
        let _ = writeln!(out, "/// `{name}`: {what}.\npub const {constant}: u64 = {slot};");
    }
    let mut regions = Vec::new();
    let shared = system::shared_regions(&file);
    for place in layout::region_layout(&file) {
        let Some(region) = shared.iter().find(|r| r.name == place.name) else { continue };
        let Some((_, mode)) = region.map.iter().find(|(c, _)| c == component) else { continue };
        regions.push((place.name.clone(), place.vaddr, place.bytes(), mode.clone()));
        if region.key.starts_with("channels.") {
            continue; // a ring: named RING_/RINGS_ below
        }
        let constant = constant_name(&place.name);
        let _ = writeln!(
            out,
            "/// Shared region `{}`, mapped `{}`: its first address.\npub const REGION_{constant}: usize = {:#x};",
            place.name, mode, place.vaddr
        );
        let _ = writeln!(
            out,
            "/// Size of shared region `{}` in bytes.\npub const REGION_{constant}_SIZE: usize = {:#x};",
            place.name,
            place.bytes()
        );
    }
    for place in layout::device_layout(&file) {
        let owner =
            file.devices.iter().find(|(k, _)| k.get_ref() == &place.device).map(|(_, d)| d.owner.get_ref());
        if owner.map(String::as_str) != Some(component) {
            continue;
        }
        let constant = format!("DEVICE_{}_MMIO{}", constant_name(&place.device), place.index);
        let _ = writeln!(
            out,
            "/// MMIO range {} of device `{}` (physical {:#x}), mapped uncached: its first address.\npub const {constant}: usize = {:#x};",
            place.index, place.device, place.paddr, place.vaddr
        );
        let _ = writeln!(
            out,
            "/// Size of that MMIO range in bytes.\npub const {constant}_SIZE: usize = {:#x};",
            place.bytes()
        );
        regions.push((
            format!("{}.mmio{}", place.device, place.index),
            place.vaddr,
            place.bytes(),
            format!("rw device memory at {:#x}", place.paddr),
        ));
    }
    // Rings: a client names its own as RING_<CHANNEL>; a server gets (badge, address, bytes)
    // per client as RINGS_<CHANNEL>.
    let layout = layout::region_layout(&file);
    for (name, ch) in file.channels.iter().filter(|(_, ch)| ch.ring.is_some()) {
        let place_of =
            |client: &str| layout.iter().find(|p| p.name == system::ring_name(name.get_ref(), client));
        let constant = constant_name(name.get_ref());
        for client in ch.clients.get_ref() {
            if client.get_ref() == component
                && let Some(p) = place_of(client.get_ref())
            {
                let _ = writeln!(
                    out,
                    "/// This component's ring on channel `{}`.\npub const RING_{constant}: usize = {:#x};\n/// Its size in bytes.\npub const RING_{constant}_SIZE: usize = {:#x};",
                    name.get_ref(),
                    p.vaddr,
                    p.bytes()
                );
            }
        }
        if ch.server.get_ref() == component {
            let _ = writeln!(
                out,
                "/// The rings of channel `{}`, one per client: (badge, address, bytes).\npub const RINGS_{constant}: &[(u64, usize, usize)] = &[",
                name.get_ref()
            );
            for (i, client) in ch.clients.get_ref().iter().enumerate() {
                if let Some(p) = place_of(client.get_ref()) {
                    let _ = writeln!(
                        out,
                        "    ({}, {:#x}, {:#x}),",
                        ch.badge_of(i, client.get_ref()),
                        p.vaddr,
                        p.bytes()
                    );
                }
            }
            let _ = writeln!(out, "];");
        }
    }
    let _ = writeln!(
        out,
        "/// Every shared region and device MMIO range this component maps: (name, address, bytes, rights)."
    );
    let _ = writeln!(out, "pub const REGIONS: &[(&str, usize, usize, &str)] = &[");
    for (name, vaddr, bytes, mode) in &regions {
        let _ = writeln!(out, "    ({name:?}, {vaddr:#x}, {bytes:#x}, {mode:?}),");
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(out, "/// Every capability this component was given: (name, slot, what).");
    let _ = writeln!(out, "pub const CAPS: &[(&str, u64, &str)] = &[");
    for (slot, name, what) in &entries {
        let _ = writeln!(out, "    ({name:?}, {slot}, {what:?}),");
    }
    let _ = writeln!(out, "];");
    Ok(out)
}

/// `xs-ring` -> `XS_RING`.
fn constant_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect::<String>()
        .trim_end_matches('_')
        .to_string()
}

/// The environment variable naming the system description a build is for (an absolute
/// path; `cargo xtask` sets it from `--system`, as it sets `CLEAVE_IMAGE` for the loader).
pub const SYSTEM_VAR: &str = "CLEAVE_SYSTEM";

/// The system description a component crate at `manifest_dir` is built for: `system`
/// (from [`SYSTEM_VAR`]) when set, otherwise the nearest `system.toml` above the crate
/// (the repository's for a product component, an example's own for its demos), so that a
/// plain `cargo build` or `cargo clippy` of one crate still works.
pub fn system_for(manifest_dir: &Path, system: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    if let Some(path) = system {
        return Ok(PathBuf::from(path));
    }
    manifest_dir
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("system.toml"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!("{SYSTEM_VAR} is not set and no system.toml lies above {}", manifest_dir.display())
        })
}

/// The whole build script of a component crate: generates `caps.rs` in `OUT_DIR` for the
/// crate's package name from the system being built ([`system_for`]), and links the binary
/// with the user-program layout `cleave-rt` publishes. Panics with the reason (a build
/// script's way to fail the build), among them a system that has no such component.
pub fn component_build_script() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
    println!("cargo:rerun-if-env-changed={SYSTEM_VAR}");
    let chosen = std::env::var_os(SYSTEM_VAR);
    let system = system_for(Path::new(&var("CARGO_MANIFEST_DIR")), chosen.as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rerun-if-changed={}", system.display());
    let name = var("CARGO_PKG_NAME");
    let source = caps_source(&system, &name)
        .unwrap_or_else(|e| panic!("component `{name}` cannot be built for {}: {e}", system.display()));
    std::fs::write(Path::new(&var("OUT_DIR")).join("caps.rs"), source).expect("writing caps.rs");
    println!("cargo:rustc-link-arg-bins=-T{}", var("DEP_CLEAVE_RT_LINKER_SCRIPT"));
    println!("cargo:rustc-link-arg-bins=--no-pie");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_every_ring_by_badge_and_clients_their_own() {
        let dir = std::env::temp_dir().join(format!("cleave-codegen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("system.toml");
        std::fs::write(
            &path,
            "[components.s]\n[components.a]\n[components.b]\n[channels.q]\nkind = \"endpoint\"\nserver = \"s\"\nclients = [\"a\", \"b\"]\nbadges = { b = 7 }\nring = \"8K\"\n",
        )
        .unwrap();
        let server = caps_source(&path, "s").unwrap();
        assert!(server.contains("pub const RINGS_Q: &[(u64, usize, usize)] = &[\n    (1, 0x8000000000, 0x2000),\n    (7, 0x8000003000, 0x2000),\n];"), "{server}");
        let b = caps_source(&path, "b").unwrap();
        assert!(b.contains("pub const RING_Q: usize = 0x8000003000;"), "{b}");
        assert!(!b.contains("0x8000000000"), "b knows nothing of a's ring: {b}");
        assert!(caps_source(&path, "nobody").unwrap_err().contains("declares no component `nobody`"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_chosen_system_wins_and_otherwise_the_nearest_one_above_the_crate() {
        let dir = std::env::temp_dir().join(format!("cleave-codegen-system-{}", std::process::id()));
        let crate_dir = dir.join("examples/demo/part");
        std::fs::create_dir_all(&crate_dir).unwrap();
        std::fs::write(dir.join("system.toml"), "").unwrap();
        assert_eq!(system_for(&crate_dir, None).unwrap(), dir.join("system.toml"));
        std::fs::write(dir.join("examples/demo/system.toml"), "").unwrap();
        assert_eq!(system_for(&crate_dir, None).unwrap(), dir.join("examples/demo/system.toml"));
        let chosen = std::ffi::OsStr::new("/somewhere/systems/x.toml");
        assert_eq!(system_for(&crate_dir, Some(chosen)).unwrap(), PathBuf::from("/somewhere/systems/x.toml"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
