//! `cargo xtask`: the one entry point for building, running, testing, checking and
//! benchmarking Cleave.
//!
//! It installs the emulator packages it needs (as root on Debian), builds the kernel and
//! user programs for `x86_64-unknown-none`, boots them in QEMU (TCG) or Bochs (for VT-x),
//! and judges emulator runs by exit status and serial output.

mod artifacts;
mod bench;
mod console;
mod deps;
mod emulator;
mod fuzz;
mod judge;
mod linux;
mod profile;
mod suite;
mod system;
mod workspace;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test, check and benchmark Cleave")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the kernel, a system's programs and its loader (release, with debug info).
    Build {
        /// The system description to build (default: the repository's system.toml).
        #[arg(long, value_name = "PATH")]
        system: Option<PathBuf>,
    },
    /// Build and boot a system under QEMU; exits 0 if the run succeeds.
    Run {
        /// The system description to boot (default: the repository's system.toml).
        #[arg(long, value_name = "PATH")]
        system: Option<PathBuf>,
        /// Start QEMU halted with a GDB server on localhost:1234 (QEMU `-s -S`), no timeout.
        #[arg(long)]
        gdb: bool,
        /// Boot from a GRUB ISO in Bochs (VT-x capable CPU model) instead of QEMU.
        #[arg(long, conflicts_with = "gdb")]
        bochs: bool,
        /// QEMU's `-icount shift=0`: the TSC, and so every guest's clock and every timed
        /// restart, counts the machine's instructions (the bench's timing, reproducible).
        #[arg(long, conflicts_with = "bochs")]
        icount: bool,
        /// Extra kernel command-line words, e.g. `cleave.selftest=panic`.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// Leave the running system to its operator: no timeout, and the host runs none of
        /// its own steps; drive it with `cleave ctl --socket PATH COMMAND` (the path is
        /// printed) and end it with `cleave ctl --socket PATH shutdown` (doc/ctl.md).
        #[arg(long, conflicts_with_all = ["bochs", "gdb"])]
        ctl: bool,
    },
    /// Run the host unit tests, then the emulator tests; ends with `N passed, N failed`.
    Test {
        /// Only run tests whose name contains this text (emulator tests only).
        filter: Option<String>,
        /// Skip the host unit tests.
        #[arg(long)]
        no_host: bool,
        /// Skip the emulator tests.
        #[arg(long)]
        no_emulator: bool,
    },
    /// rustfmt check and clippy with -D warnings on host and target crates.
    Check,
    /// Measure boot figures (instruction counts under QEMU -icount, wall time).
    Bench {
        /// Only run the groups of figures whose name contains this text (a text no group
        /// contains lists them, e.g. `svm` or `ipc`).
        filter: Option<String>,
    },
    /// Count the kernel's instructions per function on the most common system-call paths
    /// of a test program (QEMU instruction trace); see doc/testing.md.
    Profile {
        /// The program to boot as root task, e.g. bench-ipc.
        program: String,
    },
    /// Check (and as root on Debian, install) the emulator packages.
    Deps,
    /// Fetch Debian's kernel and busybox packages and build the Linux guest from them:
    /// target/linux/vmlinuz and target/linux/initramfs.cpio.gz (doc/linux-guest.md).
    LinuxGuest,
    /// Boot the Linux guest in QEMU without Cleave: check its shell, and measure the wall
    /// time and the instructions to its prompt (doc/linux-guest.md).
    LinuxBaseline {
        /// Boot a hostile variant instead and check that it misbehaves as asked.
        #[arg(long, value_enum)]
        misbehave: Option<linux::Misbehave>,
    },
    /// Fuzz the kernel's object layer: random system calls, invocations, faults and
    /// interrupts from several components, every invariant checked after every step.
    Fuzz {
        /// Operations to run.
        #[arg(long, default_value_t = 1_000_000)]
        ops: u64,
        /// Seed of the random sequence (the same seed replays the same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run only this episode (a violation's report names it).
        #[arg(long)]
        episode: Option<u64>,
        /// Steps per episode (each starts from a fresh world).
        #[arg(long)]
        steps: Option<u64>,
        /// Print how many system calls of each kind succeeded.
        #[arg(long)]
        stats: bool,
        /// Fuzz the text formats instead (capDL text and system.toml): this many mutated
        /// inputs of each, from the fixtures (`tools/cleave/tests/text_fuzz.rs`).
        #[arg(long, conflicts_with_all = ["episode", "steps", "stats"])]
        text: Option<u64>,
    },
}

/// The workspace root (xtask lives in tools/xtask).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).expect("tools/xtask lies two levels below the root").to_path_buf()
}

/// The repository's own system description, the one `build` and `run` take by default.
pub fn default_system() -> PathBuf {
    workspace_root().join("system.toml")
}

/// `--system PATH` (relative to where the command runs) made absolute, or the default.
fn system_path(system: Option<PathBuf>) -> Result<PathBuf> {
    let Some(path) = system else { return Ok(default_system()) };
    let path = std::path::absolute(&path)?;
    anyhow::ensure!(path.is_file(), "no system description at {}", path.display());
    Ok(path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<bool> = match cli.command {
        Command::Build { system } => {
            system_path(system).and_then(|s| artifacts::build(&s, artifacts::Scope::System)).map(|_| true)
        }
        Command::Run { system, gdb, bochs, icount, cmdline, ctl } => {
            system_path(system).and_then(|s| emulator::run_system(&s, gdb, bochs, icount, ctl, &cmdline))
        }
        Command::Test { filter, no_host, no_emulator } => {
            suite::run(filter.as_deref(), !no_host, !no_emulator)
        }
        Command::Check => check(),
        Command::Bench { filter } => bench::run(filter.as_deref()).map(|()| true),
        Command::Profile { program } => profile::run(&program).map(|()| true),
        Command::Deps => deps::ensure().map(|()| true),
        Command::LinuxGuest => linux::run_prepare().map(|()| true),
        Command::LinuxBaseline { misbehave } => linux::run_baseline(misbehave),
        Command::Fuzz { text: Some(n), .. } => fuzz::run_text(n),
        Command::Fuzz { ops, seed, episode, steps, stats, text: None } => {
            let options = fuzz::Options { ops: Some(ops), seed: Some(seed), episode, steps, stats };
            fuzz::run(&options, true).map(|(ok, _)| ok)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask check`.
fn check() -> Result<bool> {
    deps::ensure_toolchain()?;
    let root = workspace_root();
    let mut ok = artifacts::cargo(&root, &["fmt", "--all", "--", "--check"])?;
    let packages = workspace::packages(&root)?;
    let mut host = vec!["clippy", "--all-targets"];
    for package in &packages.host {
        host.extend(["-p", package]);
    }
    host.extend(["--", "-D", "warnings"]);
    ok &= artifacts::cargo(&root, &host)?;
    let mut target = vec!["clippy", "--release", "--target", artifacts::TARGET];
    for package in &packages.target {
        target.extend(["-p", package]);
    }
    target.extend(["--", "-D", "warnings"]);
    ok &= artifacts::cargo(&root, &target)?;
    println!("{}", if ok { "check: clean" } else { "check: FAILED" });
    Ok(ok)
}
