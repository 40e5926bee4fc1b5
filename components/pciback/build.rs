//! Generates this component's capability constants from the system being built
//! (`CLEAVE_SYSTEM`, set by `cargo xtask run --system`;
//! by default the nearest system.toml above the crate), and
//! links with the user-program layout (`cleave_system::codegen::component_build_script`).
fn main() {
    cleave_system::codegen::component_build_script();
}
