//! Building the kernel and user programs, and where the results go.

use crate::workspace_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every program that runs on Cleave is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Crates built for the host (tested with `cargo test`).
pub const HOST_PACKAGES: &[&str] = &[
    "cleave-abi",
    "cleave-capdl",
    "cleave-kernel-core",
    "cleave-xenstore",
    "cleave-supervisor-policy",
    "cleave-vmm-core",
    "cleave",
    "cleave-system",
    "xtask",
];

/// Crates built for [`TARGET`]: the kernel, the runtime and every user program. (The
/// capDL crate is built for the target through the loader, without its `alloc` feature.)
pub const TARGET_PACKAGES: &[&str] = &[
    "cleave-kernel",
    "cleave-rt",
    "xenstore-state",
    "xenstore-logic",
    "xenstore-bridge",
    "guest-hello",
    "supervisor",
    "bootstrap",
    "heartbeat",
    "scribbler",
    "crasher",
    "worker",
    "lingerer",
    "vmm",
    "toolstack",
    "vga",
    "emulator-tests",
    "cleave-loader",
];

/// User programs that become boot modules, by binary name.
pub const PROGRAMS: &[&str] = &[
    "hello",
    "boot-test",
    "user-fault",
    "bad-syscall",
    "cap-test",
    "thread-test",
    "hostile-test",
    "chaos-test",
    "bench-retype",
    "bench-ipc",
    "vmx-test",
    "bench-vmx",
    "vmm-guests",
    "loader-guests",
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

/// Runs `cargo ARGS` in `dir` with `env` set, streaming its output.
fn cargo_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command.status().with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    Ok(status.success())
}

/// Builds the kernel and every user program, then the boot image from `system.toml` and
/// the capDL loader that embeds it, and checks the kernel's load layout.
pub fn build() -> Result<Artifacts> {
    crate::deps::ensure_toolchain()?;
    let root = workspace_root();
    let mut args = vec!["build", "--release", "--target", TARGET];
    // The loader embeds the boot image, and the VMM and `vmm-guests` the guest: they are
    // built after the rest.
    for package in
        TARGET_PACKAGES.iter().filter(|p| !matches!(**p, "cleave-loader" | "vmm" | "emulator-tests"))
    {
        args.extend(["-p", package]);
    }
    if !cargo(&root, &args)? {
        bail!("building the kernel and user programs failed");
    }
    let programs = root.join("target").join(TARGET).join("release");
    let work = root.join("target").join("cleave");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let guest = programs.join("guest-hello");
    let vmm = ["build", "--release", "--target", TARGET, "-p", "vmm", "-p", "emulator-tests"];
    if !cargo_with_env(&root, &vmm, &[("CLEAVE_GUEST_IMAGE", &guest)])? {
        bail!("building the VMM and the test programs (with the guest image) failed");
    }
    // A loader per system description: first the guest systems' (copied aside), then the
    // repository's own, which stays `loader`.
    for (system, name) in EXTRA_SYSTEMS {
        let image = work.join(format!("{name}.bin"));
        build_image(&root.join(system), &programs, &image)?;
        if !cargo_with_env(&root, &loader_args(), &[("CLEAVE_IMAGE", &image)])? {
            bail!("building the capDL loader for {system} failed");
        }
        std::fs::copy(programs.join("loader"), programs.join(name))
            .with_context(|| format!("copying the loader for {system}"))?;
    }
    let image = work.join("image.bin");
    build_image(&root.join("system.toml"), &programs, &image)?;
    if !cargo_with_env(&root, &loader_args(), &[("CLEAVE_IMAGE", &image)])? {
        bail!("building the capDL loader failed");
    }
    let out = root.join("target").join(TARGET).join("release");
    let kernel = out.join("cleave-kernel");
    let image = std::fs::read(&kernel).with_context(|| format!("reading {}", kernel.display()))?;
    cleave_elf::kernel_image::check(&image)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} cannot be loaded by a Multiboot loader", kernel.display()))?;
    Ok(Artifacts { kernel, programs: out, work })
}

/// System descriptions besides the repository's `system.toml` that tests boot, and the
/// name their loader is kept under among the programs.
pub const EXTRA_SYSTEMS: &[(&str, &str)] = &[("systems/guests.toml", "loader-guests")];

fn loader_args() -> [&'static str; 6] {
    ["build", "--release", "--target", TARGET, "-p", "cleave-loader"]
}

/// Compiles `system` and writes the loader's boot image (encoded spec + programs).
fn build_image(system: &Path, programs: &Path, image: &Path) -> Result<()> {
    let text = std::fs::read_to_string(system).with_context(|| format!("reading {}", system.display()))?;
    let file = cleave::system::load(&text).map_err(|e| {
        anyhow::anyhow!("{}", cleave::diagnostic::render(&e, &system.display().to_string(), &text))
    })?;
    let compiled = cleave::compile::compile(&file);
    let encoded = cleave_capdl::binary::encode(&compiled.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes =
        cleave::image::build(&encoded, programs, &compiled.files).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(image, bytes).with_context(|| format!("writing {}", image.display()))
}

/// The digest the loader must report for `system`.
pub fn expected_digest(system: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(system).with_context(|| format!("reading {}", system.display()))?;
    let file =
        cleave::system::load(&text).map_err(|_| anyhow::anyhow!("{} does not check", system.display()))?;
    let encoded = cleave_capdl::binary::encode(&cleave::compile::compile(&file).spec)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cleave_capdl::binary::EncodedSpec::new(&encoded).map_err(|e| anyhow::anyhow!("{e}"))?.digest())
}
