//! Links the kernel with its own linker script: a Multiboot-loadable image whose low part
//! runs at its physical address and whose rest runs in the higher half.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    // Position-independent code, linked at fixed addresses: no dynamic relocations to apply.
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
}
