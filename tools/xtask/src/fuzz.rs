//! `cargo xtask fuzz`: the object-layer fuzzer (`cleave_kernel_core::object::fuzz`, the
//! `cleave-fuzz` program), built in release mode on the host; `cargo xtask test` runs it
//! briefly and `cargo xtask bench` reports its rate. `cargo xtask fuzz --text N` runs the
//! text-format fuzzer instead (`cargo test` runs it briefly).

use crate::workspace_root;
use anyhow::{Context, Result};
use std::process::Command;

/// Operations the short fuzz in `cargo xtask test` runs (about 20-30 s on two processors).
pub const SHORT_FUZZ_OPS: u64 = 600_000;

/// The fuzzer's arguments as `cargo xtask fuzz` takes them.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Operations to run.
    pub ops: Option<u64>,
    /// The seed.
    pub seed: Option<u64>,
    /// Only this episode (to replay a violation).
    pub episode: Option<u64>,
    /// Steps per episode.
    pub steps: Option<u64>,
    /// Print how many system calls of each kind succeeded.
    pub stats: bool,
}

/// Builds and runs the fuzzer; returns its output and whether it found no violation.
pub fn run(options: &Options, echo: bool) -> Result<(bool, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["run", "--quiet", "--release", "-p", "cleave-kernel-core", "--features", "fuzz"])
        .args(["--bin", "cleave-fuzz", "--"]);
    for (flag, value) in [
        ("--ops", options.ops),
        ("--seed", options.seed),
        ("--episode", options.episode),
        ("--steps", options.steps),
    ] {
        if let Some(v) = value {
            command.args([flag, &v.to_string()]);
        }
    }
    if options.stats {
        command.arg("--stats");
    }
    let output = command.output().context("cannot run the fuzzer (cargo run -p cleave-kernel-core)")?;
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if echo {
        print!("{text}");
    }
    Ok((output.status.success(), text))
}

/// Runs the text-format fuzzer (`tools/cleave/tests/text_fuzz.rs`) in release mode with
/// `inputs` mutated inputs of each format.
pub fn run_text(inputs: u64) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = std::time::Instant::now();
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .env("CLEAVE_TEXT_FUZZ", inputs.to_string())
        .args(["test", "--quiet", "--release", "-p", "cleave", "--test", "text_fuzz"])
        .status()
        .context("cannot run the text fuzzer (cargo test -p cleave --test text_fuzz)")?;
    println!(
        "text fuzz: {inputs} capDL and {inputs} system.toml inputs in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        if status.success() {
            "no rule broken"
        } else {
            "FAILED (the input is in target/text-fuzz-failure.*)"
        }
    );
    Ok(status.success())
}

/// The operations-per-second figure of a fuzz run's summary line.
pub fn rate(output: &str) -> Option<u64> {
    let line = output.lines().find(|l| l.contains("operations per second"))?;
    let (before, _) = line.split_once(" operations per second")?;
    before.rsplit('(').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rate_is_read_from_the_summary() {
        let line = "fuzz: 20000 operations in 1.0 s (19847 operations per second), 0 violations; seed 1";
        assert_eq!(super::rate(line), Some(19847));
        assert_eq!(super::rate("fuzz: VIOLATION"), None);
    }
}
