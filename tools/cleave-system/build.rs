//! Finds the programs the build makes, so that `binary`, guest `image` and `root` in a
//! system description can only name one of them: the workspace's `[[bin]]` targets under
//! `components/` and `examples/*/` (component programs), `guests/` (guest images), and
//! `capdl/loader`, `emulator-tests` and the component programs (root tasks). The directories are the one place those names are defined.

use std::fmt::Write as _;
use std::path::Path;

/// The `[[bin]]` names in the Cargo.toml files directly below `dir` (or in `dir` itself).
fn bins(root: &Path, dir: &str) -> Vec<String> {
    let base = root.join(dir);
    println!("cargo:rerun-if-changed={}", base.display());
    let mut manifests = vec![base.join("Cargo.toml")];
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            manifests.push(e.path().join("Cargo.toml"));
            println!("cargo:rerun-if-changed={}", e.path().join("Cargo.toml").display());
        }
    }
    let mut names = Vec::new();
    for m in manifests {
        let Ok(text) = std::fs::read_to_string(&m) else { continue };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin
                && let Some(value) =
                    line.strip_prefix("name").map(str::trim_start).and_then(|l| l.strip_prefix('='))
            {
                names.push(value.trim().trim_matches('"').to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The `[[bin]]` names of every example's crates (`examples/NAME/CRATE`).
fn examples(root: &Path) -> Vec<String> {
    let base = root.join("examples");
    println!("cargo:rerun-if-changed={}", base.display());
    let mut dirs: Vec<_> = std::fs::read_dir(&base)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    let mut names: Vec<String> =
        dirs.iter().flat_map(|d| bins(root, &d.strip_prefix(root).unwrap_or(d).to_string_lossy())).collect();
    names.sort();
    names.dedup();
    names
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let components = [bins(&root, "components"), examples(&root)].concat();
    let lists = [
        ("COMPONENT_PROGRAMS", "programs `binary` may name (components/, examples/*/)", components.clone()),
        (
            "GUEST_PROGRAMS",
            "images a guest's `image` may name (guests/, and `linux-debian`: Debian's kernel and a busybox initramfs, which `cargo xtask` assembles)",
            [bins(&root, "guests"), vec!["linux-debian".to_string()]].concat(),
        ),
        (
            "ROOT_PROGRAMS",
            "root tasks `root` may name (capdl/loader, emulator-tests, and a component program run alone)",
            [bins(&root, "capdl/loader"), bins(&root, "emulator-tests"), components].concat(),
        ),
    ];
    let mut out = String::new();
    for (name, doc, list) in lists {
        let _ = writeln!(out, "/// The {doc}.\npub const {name}: &[&str] = &{list:?};");
    }
    let path = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("programs.rs");
    std::fs::write(path, out).expect("OUT_DIR is writable");
}
