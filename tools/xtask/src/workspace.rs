//! The workspace's package lists, read from the root `Cargo.toml` so that they are written
//! down once: its `default-members` are the crates built for the host (what plain `cargo
//! test` touches), every other member builds for `x86_64-unknown-none`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The workspace's packages by where they run.
#[derive(Debug)]
pub struct Packages {
    /// Built for the host and tested with `cargo test`: the `default-members`.
    pub host: Vec<String>,
    /// Built for the target: the kernel, the runtime and every user program.
    pub target: Vec<String>,
}

/// The packages of the workspace at `root`.
pub fn packages(root: &Path) -> Result<Packages> {
    let manifest = root.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let list = |key: &str| -> Result<Vec<String>> {
        let Some(values) = table.get("workspace").and_then(|w| w.get(key)).and_then(|v| v.as_array()) else {
            bail!("{} has no workspace.{key} list", manifest.display());
        };
        values
            .iter()
            .map(|v| v.as_str().map(String::from).with_context(|| format!("workspace.{key}: not a path")))
            .collect()
    };
    let mut host = Vec::new();
    for dir in list("default-members")? {
        host.push(package_name(&root.join(dir))?);
    }
    let mut target = Vec::new();
    for pattern in list("members")? {
        for dir in expand(root, &pattern)? {
            let name = package_name(&dir)?;
            if !host.contains(&name) {
                target.push(name);
            }
        }
    }
    host.sort();
    target.sort();
    Ok(Packages { host, target })
}

/// The member directories `pattern` names: a path whose segments may be `*` (any
/// directory holding a `Cargo.toml`, as Cargo takes the glob).
fn expand(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![root.to_path_buf()];
    for segment in pattern.split('/') {
        let mut next = Vec::new();
        for dir in dirs {
            if segment == "*" {
                let entries =
                    std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
                let mut found: Vec<PathBuf> =
                    entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
                found.sort();
                next.extend(found);
            } else {
                next.push(dir.join(segment));
            }
        }
        dirs = next;
    }
    Ok(dirs.into_iter().filter(|d| d.join("Cargo.toml").is_file()).collect())
}

/// The `package.name` in `dir`'s Cargo.toml.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(String::from)
        .with_context(|| format!("{} names no package", manifest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_target_packages_come_from_the_workspace() {
        let packages = packages(&crate::workspace_root()).unwrap();
        for host in ["cleave-abi", "cleave-capdl", "cleave-vmm-core", "cleave-system", "xtask"] {
            assert!(packages.host.iter().any(|p| p == host), "{host}: {packages:?}");
        }
        // Found through the globs `components/*`, `guests/*`, `examples/*/*`.
        for target in [
            "cleave-kernel",
            "cleave-loader",
            "toolstack",
            "vmm",
            "guest-hello",
            "observer",
            "emulator-tests",
        ] {
            assert!(packages.target.iter().any(|p| p == target), "{target}: {packages:?}");
        }
        assert!(packages.target.iter().all(|t| !packages.host.contains(t)));
    }

    #[test]
    fn a_star_is_any_directory_with_a_manifest() {
        let dir = std::env::temp_dir().join(format!("xtask-workspace-{}", std::process::id()));
        for crate_dir in ["a/one", "a/two", "a/notes"] {
            std::fs::create_dir_all(dir.join(crate_dir)).unwrap();
        }
        std::fs::write(dir.join("a/one/Cargo.toml"), "[package]\nname = \"one\"\n").unwrap();
        std::fs::write(dir.join("a/two/Cargo.toml"), "[package]\nname = \"two\"\n").unwrap();
        std::fs::write(dir.join("a/system.toml"), "").unwrap();
        let found = expand(&dir, "a/*").unwrap();
        assert_eq!(found, [dir.join("a/one"), dir.join("a/two")]);
        assert_eq!(package_name(&found[1]).unwrap(), "two");
        std::fs::remove_dir_all(&dir).ok();
    }
}
