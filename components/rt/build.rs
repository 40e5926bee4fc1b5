//! Hands the user-program linker script to dependent programs' build scripts.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:linker-script={dir}/user.ld");
}
