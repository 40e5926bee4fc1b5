//! Generates this component's capability constants from the system being built
//! (`CLEAVE_SYSTEM`, set by `cargo xtask run --system`;
//! by default the nearest system.toml above the crate), and what it tells an operator
//! about that system (`facts.rs`: components, guests, privileges, exposure), and links
//! with the user-program layout (`cleave_system::codegen::component_build_script`).
fn main() {
    cleave_system::codegen::component_build_script();
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let chosen = std::env::var_os(cleave_system::codegen::SYSTEM_VAR);
    let system =
        cleave_system::codegen::system_for(&dir, chosen.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    let facts = cleave_system::codegen::toolstack_facts_source(&system).unwrap_or_else(|e| panic!("{e}"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("facts.rs"), facts).expect("writing facts.rs");
}
