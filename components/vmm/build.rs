//! Embeds the guest image named by `CLEAVE_GUEST_IMAGE` (cargo xtask builds the guest
//! first, then this with the variable set; without it the image is empty and the VMM
//! says so), and links with the user-program layout.
fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let target = std::path::Path::new(&out).join("guest.elf");
    println!("cargo:rerun-if-env-changed=CLEAVE_GUEST_IMAGE");
    match std::env::var("CLEAVE_GUEST_IMAGE") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("cannot read CLEAVE_GUEST_IMAGE {path}: {e}"));
        }
        Err(_) => std::fs::write(&target, []).expect("writing an empty guest image"),
    }
    let image_name = std::env::var("CLEAVE_GUEST_IMAGE")
        .ok()
        .as_deref()
        .and_then(|p| std::path::Path::new(p).file_name()?.to_str().map(String::from))
        .unwrap_or_default();
    let layout = cleave_system::codegen::vmm_layout_source(&image_name);
    std::fs::write(std::path::Path::new(&out).join("layout.rs"), layout).expect("writing layout.rs");
    let script = std::env::var("DEP_CLEAVE_RT_LINKER_SCRIPT").expect("cleave-rt publishes its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
