//! Generated code for components: each receives its capabilities as named constants (slot
//! numbers in its CNode), produced from `system.toml` by the component's build script.

use crate::{compile, diagnostic, system};
use std::fmt::Write;
use std::path::Path;

/// Rust source declaring `component`'s capability slots as constants, plus a `CAPS` table
/// (name, slot, what) the component can print.
pub fn caps_source(system_toml: &Path, component: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(system_toml)
        .map_err(|e| format!("cannot read {}: {e}", system_toml.display()))?;
    let file =
        system::load(&text).map_err(|e| diagnostic::render(&e, &system_toml.display().to_string(), &text))?;
    if !file.components.keys().any(|k| k.get_ref() == component) {
        return Err(format!("{} declares no component `{component}`", system_toml.display()));
    }
    let compiled = compile::compile(&file);
    let mut out =
        format!("// Generated from {} for component `{component}`. Do not edit.\n", system_toml.display());
    let entries = compiled.tables.get(component).map(|t| t.entries.clone()).unwrap_or_default();
    for (slot, name, what) in &entries {
        let constant = constant_name(name);
        let _ = writeln!(out, "/// `{name}`: {what}.\npub const {constant}: u64 = {slot};");
    }
    let mut regions = Vec::new();
    for place in compile::region_layout(&file) {
        let Some((_, region)) = file.regions.iter().find(|(k, _)| k.get_ref() == &place.name) else {
            continue;
        };
        let Some((_, mode)) = region.map.get_ref().iter().find(|(c, _)| c.get_ref() == component) else {
            continue;
        };
        let constant = constant_name(&place.name);
        let _ = writeln!(
            out,
            "/// Shared region `{}`, mapped `{}`: its first address.\npub const REGION_{constant}: usize = {:#x};",
            place.name,
            mode.get_ref(),
            place.vaddr
        );
        let _ = writeln!(
            out,
            "/// Size of shared region `{}` in bytes.\npub const REGION_{constant}_SIZE: usize = {:#x};",
            place.name,
            place.pages * 4096
        );
        regions.push((place.name.clone(), place.vaddr, place.pages * 4096, mode.get_ref().clone()));
    }
    for place in compile::device_layout(&file) {
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
            place.pages * 4096
        );
        regions.push((
            format!("{}.mmio{}", place.device, place.index),
            place.vaddr,
            place.pages * 4096,
            format!("rw device memory at {:#x}", place.paddr),
        ));
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

/// The whole build script of a component crate: generates `caps.rs` in `OUT_DIR` for the
/// crate's package name from the repository's `system.toml` (two directories up), and
/// links the binary with the user-program layout `cleave-rt` publishes. Panics with the
/// reason (a build script's way to fail the build).
pub fn component_build_script() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
    let system = Path::new(&var("CARGO_MANIFEST_DIR")).join("../../system.toml");
    println!("cargo:rerun-if-changed={}", system.display());
    let source = caps_source(&system, &var("CARGO_PKG_NAME")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(Path::new(&var("OUT_DIR")).join("caps.rs"), source).expect("writing caps.rs");
    println!("cargo:rustc-link-arg-bins=-T{}", var("DEP_CLEAVE_RT_LINKER_SCRIPT"));
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
