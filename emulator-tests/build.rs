//! Embeds the guest image named by `CLEAVE_GUEST_IMAGE` for `vmm-guests` (without it the
//! image is empty and `vmm-guests` says so), and links with the user-program layout
//! cleave-rt publishes.
fn main() {
    cleave_system::codegen::embed_guest_image();
    let script = std::env::var("DEP_CLEAVE_RT_LINKER_SCRIPT").expect("cleave-rt publishes its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
