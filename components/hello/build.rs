//! Links with the user-program layout published by cleave-rt.
fn main() {
    let script = std::env::var("DEP_CLEAVE_RT_LINKER_SCRIPT").expect("cleave-rt publishes its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
