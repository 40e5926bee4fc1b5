//! The Debian packages the emulator tests need, and installing the missing ones.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// QEMU, Bochs with its BIOS, VGA BIOS and terminal display (Debian's build has no
/// headless display; `term` is the one that needs neither a window nor a port), what
/// `grub-mkrescue` needs to make a bootable ISO, and Xen's XenStore clients, which the
/// tests point at `cleave xenstored`.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "bochs",
    "bochs-term",
    "bochsbios",
    "vgabios",
    "grub-pc-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "xenstore-utils",
];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .map(|o| o.status.success() && o.stdout == b"installed")
        .unwrap_or(false)
}

/// Whether xtask runs as root (and so may install packages).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

/// Makes sure every package is installed: installs the missing ones with apt-get when
/// running as root on Debian, otherwise says exactly what to run and fails.
pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    let debian = std::path::Path::new("/etc/debian_version").exists();
    if !debian || !is_root() {
        bail!(
            "missing emulator packages: {}\n  install them with:  sudo sh -c '{command}'",
            missing.join(", ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let run = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed; run `{command}` by hand", args.join(" "));
        }
        Ok(())
    };
    run(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(&missing);
    run(&install)
}

/// The targets and components `rust-toolchain.toml` names, read from its `targets = [..]`
/// and `components = [..]` lines.
fn toolchain_wants(text: &str) -> (Vec<String>, Vec<String>) {
    let list = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix('='))
            .flat_map(|v| v.trim().trim_start_matches('[').trim_end_matches(']').split(','))
            .map(|item| item.trim().trim_matches('"').to_string())
            .filter(|item| !item.is_empty())
            .collect()
    };
    (list("targets"), list("components"))
}

/// Makes sure the toolchain has what `rust-toolchain.toml` names (rustup installs it by
/// itself only when allowed to: with `RUSTUP_AUTO_INSTALL=0` a machine that has Rust 1.95
/// without the `x86_64-unknown-none` target fails with "can't find crate for `core`").
/// Installs what is missing with rustup, or says exactly what to run.
pub fn ensure_toolchain() -> Result<()> {
    let root = crate::workspace_root();
    let text = std::fs::read_to_string(root.join("rust-toolchain.toml"))
        .context("cannot read rust-toolchain.toml")?;
    let (targets, components) = toolchain_wants(&text);
    let installed = |what: &str| -> Option<Vec<String>> {
        let out =
            Command::new("rustup").args([what, "list", "--installed"]).current_dir(&root).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    };
    let (Some(have_targets), Some(have_components)) = (installed("target"), installed("component")) else {
        bail!(
            "cannot ask rustup what the toolchain has; install what rust-toolchain.toml names:\n  rustup target add {}\n  rustup component add {}",
            targets.join(" "),
            components.join(" ")
        );
    };
    // Installed components are listed with the host triple appended (`clippy-x86_64-…`).
    let missing_targets: Vec<&str> =
        targets.iter().filter(|t| !have_targets.contains(t)).map(String::as_str).collect();
    let missing_components: Vec<&str> = components
        .iter()
        .filter(|c| !have_components.iter().any(|h| h == *c || h.starts_with(&format!("{c}-"))))
        .map(String::as_str)
        .collect();
    for (what, missing) in [("target", &missing_targets), ("component", &missing_components)] {
        if missing.is_empty() {
            continue;
        }
        eprintln!("xtask: installing the toolchain's missing {what}s: {}", missing.join(" "));
        let status = Command::new("rustup")
            .args([what, "add"])
            .args(missing.iter())
            .current_dir(&root)
            .status()
            .context("cannot run rustup")?;
        if !status.success() {
            bail!("rustup {what} add {} failed; run it by hand", missing.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_toolchain_file_names() {
        let text = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"x86_64-unknown-none\"]\ncomponents = [\"rustfmt\", \"clippy\"]\n";
        assert_eq!(
            toolchain_wants(text),
            (vec!["x86_64-unknown-none".to_string()], vec!["rustfmt".to_string(), "clippy".to_string()])
        );
        let real = std::fs::read_to_string(crate::workspace_root().join("rust-toolchain.toml")).unwrap();
        assert!(toolchain_wants(&real).0.contains(&"x86_64-unknown-none".to_string()));
    }
}
