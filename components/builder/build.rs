//! Generates this component's capability constants and its guests' table
//! (`BUILD_GUESTS`) from the system being built, and links with the user-program layout
//! (`cleave_system::codegen::component_build_script`).
fn main() {
    cleave_system::codegen::component_build_script();
}
