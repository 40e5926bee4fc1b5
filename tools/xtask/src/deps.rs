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

fn is_root() -> bool {
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
