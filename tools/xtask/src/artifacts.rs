//! Building the kernel and user programs, and where the results go.

use crate::workspace_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every program that runs on Cleave is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Crates built for the host (tested with `cargo test`).
pub const HOST_PACKAGES: &[&str] = &["cleave-abi", "cleave-capdl", "cleave-kernel-core", "cleave", "xtask"];

/// Crates built for [`TARGET`]: the kernel, the runtime and every user program.
pub const TARGET_PACKAGES: &[&str] = &["cleave-kernel", "cleave-capdl", "cleave-rt", "hello", "cleave-tests"];

/// User programs that become boot modules, by binary name.
pub const PROGRAMS: &[&str] = &[
    "hello",
    "boot-test",
    "user-fault",
    "bad-syscall",
    "cap-test",
    "thread-test",
    "bench-retype",
    "bench-ipc",
];

/// Paths of the built images.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The kernel ELF (Multiboot-loadable).
    pub kernel: PathBuf,
    /// Where user programs live: `<dir>/<name>`.
    pub programs: PathBuf,
    /// Scratch space for ISOs, logs and generated emulator configuration.
    pub work: PathBuf,
}

impl Artifacts {
    /// The built program `name`.
    pub fn program(&self, name: &str) -> Result<PathBuf> {
        let path = self.programs.join(name);
        if !path.is_file() {
            bail!("no user program named '{name}' was built (known: {})", PROGRAMS.join(", "));
        }
        Ok(path)
    }
}

/// Runs `cargo ARGS` in `dir`, streaming its output; returns whether it succeeded.
pub fn cargo(dir: &Path, args: &[&str]) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    Ok(status.success())
}

/// Builds the kernel and every user program and checks the kernel's load layout.
pub fn build() -> Result<Artifacts> {
    let root = workspace_root();
    let mut args = vec!["build", "--release", "--target", TARGET];
    for package in TARGET_PACKAGES {
        args.extend(["-p", package]);
    }
    if !cargo(&root, &args)? {
        bail!("building the kernel and user programs failed");
    }
    let out = root.join("target").join(TARGET).join("release");
    let kernel = out.join("cleave-kernel");
    let image = std::fs::read(&kernel).with_context(|| format!("reading {}", kernel.display()))?;
    cleave_kernel_core::kernel_image::check(&image)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} cannot be loaded by a Multiboot loader", kernel.display()))?;
    let work = root.join("target").join("cleave");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    Ok(Artifacts { kernel, programs: out, work })
}
