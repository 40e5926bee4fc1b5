//! The Linux guest under Cleave, measured the way the baseline is (`baseline.rs`): the
//! system of `systems/linux.toml` booted in QEMU with the guest's console (COM2) on our
//! pipes and the system's log (COM1) in a file.
//! - Wall time from starting QEMU to the guest's prompt (TCG, on SVM).
//! - Instructions from the first `VmEnter` (the first time the kernel's `svm_run` runs) to
//!   the prompt, under `-icount shift=0` with record/replay (`info replay` counts every
//!   instruction the emulated processor executes: the kernel's, the VMM's and the guest's).
//! - The VMM's exits per second of guest time, by reason (its last lines, after the guest
//!   reboots).

use super::PROMPT;
use super::baseline::{Qemu, baseline_dir, counts_to_prompt};
use crate::artifacts::{self, Artifacts};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The system measured.
pub const SYSTEM: &str = "systems/linux.toml";

/// How long the guest may take to reach its prompt under Cleave.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(600);

/// Cleave's figures for the Linux guest.
#[derive(Clone, Debug)]
pub struct Figures {
    /// From starting QEMU to the prompt.
    pub wall_to_prompt: Duration,
    /// Instructions from the first `VmEnter` to the prompt.
    pub instructions_to_prompt: u64,
    /// Instructions before it (the kernel's boot, the loader building the system).
    pub instructions_before_entry: u64,
    /// The VMM's report of its exits by reason, after the guest rebooted.
    pub exits_by_reason: String,
}

/// Builds the system and boots it twice: for wall time and the VMM's exit counts, then
/// under `-icount` for instructions.
pub fn measure() -> Result<Figures> {
    let system = crate::workspace_root().join(SYSTEM);
    let artifacts = artifacts::build(&system, artifacts::Scope::System)?;
    let memory = crate::emulator::memory_for(&system)?;
    // Wall time, and the VMM's exit counts once the guest has rebooted.
    let log = baseline_dir("cleave-wall")?.join("system.log");
    let mut qemu = Qemu::spawn(command(&artifacts, memory, &log, &[])?, "cleave-wall")?;
    qemu.wait_for(PROMPT, PROMPT_TIMEOUT)?;
    let wall_to_prompt = qemu.started.elapsed();
    qemu.type_line("reboot -f")?;
    qemu.wait_exit(Duration::from_secs(120))?;
    let system_log = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let exits_by_reason = system_log
        .lines()
        .find(|l| l.starts_with("vmm: guest 'debian' exits by reason"))
        .context("the VMM did not report its exits by reason")?
        .to_string();
    // Instructions.
    let entry = symbol(&artifacts.kernel, "svm_run")?;
    let dir = baseline_dir("cleave-icount")?;
    let replay = dir.join("replay.bin");
    let socket = std::env::temp_dir().join(format!("cleave-linux-{}-cleave-gdb.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let icount = format!("shift=0,rr=record,rrfile={}", replay.display());
    let gdb_arg = format!("unix:{},server=on,wait=off", socket.display());
    let extra = ["-icount", &icount, "-S", "-gdb", &gdb_arg];
    let mut qemu =
        Qemu::spawn(command(&artifacts, memory, &dir.join("system.log"), &extra)?, "cleave-icount")?;
    let counts = counts_to_prompt(&mut qemu, &socket, entry, PROMPT_TIMEOUT, |_| Ok(()));
    let _ = std::fs::remove_file(&socket);
    let (at_entry, at_prompt) = counts?;
    Ok(Figures {
        wall_to_prompt,
        instructions_to_prompt: at_prompt - at_entry,
        instructions_before_entry: at_entry,
        exits_by_reason,
    })
}

/// QEMU booting the kernel with the system's loader, as `cargo xtask run` does, but with
/// the guest's console (COM2) on standard input and output and the system's log (COM1) in
/// `log`.
fn command(artifacts: &Artifacts, memory_mib: u32, log: &Path, extra: &[&str]) -> Result<Command> {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-machine", "pc", "-cpu", "max", "-accel", "tcg"])
        .args(["-m", &format!("{memory_mib}M")])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(["-serial", "stdio"])
        .args(["-nic", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(&artifacts.kernel)
        .args(["-append", ""])
        .arg("-initrd")
        .arg(artifacts.program("loader")?)
        .args(extra);
    Ok(command)
}

/// The address of `name` in the ELF file at `path` (binutils' `nm`).
fn symbol(path: &PathBuf, name: &str) -> Result<u64> {
    let out = Command::new("nm").arg(path).output().context("running nm (binutils)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let address = words.next()?;
            let _kind = words.next()?;
            (words.next()? == name).then(|| u64::from_str_radix(address, 16).ok()).flatten()
        })
        .with_context(|| format!("no symbol {name} in {}", path.display()))
}
