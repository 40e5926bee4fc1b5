//! Embeds the boot image (`cleave image`) named by `CLEAVE_IMAGE`, and links with the
//! user-program layout. Without `CLEAVE_IMAGE` the image is empty and the loader says so.
fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let target = std::path::Path::new(&out).join("image.bin");
    println!("cargo:rerun-if-env-changed=CLEAVE_IMAGE");
    match std::env::var("CLEAVE_IMAGE") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("cannot read CLEAVE_IMAGE {path}: {e}"));
        }
        Err(_) => std::fs::write(&target, b"").expect("writing an empty image"),
    }
    let script = std::env::var("DEP_CLEAVE_RT_LINKER_SCRIPT").expect("cleave-rt publishes its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
