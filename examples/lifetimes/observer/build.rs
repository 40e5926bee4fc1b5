//! Generates this component's capability constants from the system being built (the
//! example's system.toml), and links with the user-program layout
//! (`cleave_system::codegen::component_build_script`).
fn main() {
    cleave_system::codegen::component_build_script();
}
