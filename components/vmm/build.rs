//! Embeds the guest image named by `CLEAVE_GUEST_IMAGE` (without it the image is empty and
//! the VMM says so), generates the VMM's fixed layout, and links with the user-program
//! layout.
fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let image_name = cleave_system::codegen::embed_guest_image();
    let layout = cleave_system::codegen::vmm_layout_source(&image_name);
    std::fs::write(std::path::Path::new(&out).join("layout.rs"), layout).expect("writing layout.rs");
    let script = std::env::var("DEP_CLEAVE_RT_LINKER_SCRIPT").expect("cleave-rt publishes its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
