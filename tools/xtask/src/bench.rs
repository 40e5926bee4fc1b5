//! `cargo xtask bench`: boot figures, measured in one run each.
//!
//! - instructions per kernel operation, measured by benchmark programs in `qemu/tests`
//!   that time system calls with the TSC under `-icount shift=0`;
//! - instructions the kernel executes from its first instruction to ring 3: QEMU with
//!   `-icount shift=0` makes the TSC advance once per instruction, and the kernel prints
//!   the TSC difference just before it enters ring 3 (`boot: N TSC ticks ...`);
//! - wall time from starting QEMU to the root task's greeting on the serial port (median of
//!   several runs, because wall time on these machines is noisy).

use crate::artifacts::{self, Artifacts};
use crate::deps;
use crate::emulator::Run;
use crate::judge::Emulator;
use anyhow::{Context, Result, bail};
use std::time::Duration;

const GREETING: &str = "Hello from ring 3!";
const WALL_RUNS: usize = 5;

fn boot_run(icount: bool) -> Run {
    Run {
        emulator: Emulator::Qemu,
        name: if icount { "bench-icount".into() } else { "bench-wall".into() },
        module: None,
        cmdline: String::new(),
        timeout: Some(Duration::from_secs(30)),
        gdb: false,
        icount,
        echo: false,
    }
}

/// Runs every benchmark and prints one `bench NAME = VALUE UNIT` line per figure.
pub fn run() -> Result<()> {
    deps::ensure()?;
    let artifacts = artifacts::build()?;
    let instructions = boot_instructions(&artifacts)?;
    println!("bench boot.kernel_instructions_to_ring3 = {instructions} instructions");
    for program in ["bench-retype", "bench-ipc"] {
        for line in program_bench_lines(&artifacts, program)? {
            println!("{line}");
        }
    }
    let mut walls = Vec::new();
    for _ in 0..WALL_RUNS {
        walls.push(wall_to_greeting(&artifacts)?);
    }
    walls.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "bench boot.wall_to_greeting = {:.1} ms (median of {WALL_RUNS}; min {:.1}, max {:.1})",
        ms(walls[WALL_RUNS / 2]),
        ms(walls[0]),
        ms(walls[WALL_RUNS - 1])
    );
    Ok(())
}

fn with_hello(mut run: Run, artifacts: &Artifacts) -> Result<Run> {
    run.module = Some(artifacts.program("hello")?);
    Ok(run)
}

fn boot_instructions(artifacts: &Artifacts) -> Result<u64> {
    let finished = with_hello(boot_run(true), artifacts)?.execute(artifacts)?;
    let line = finished
        .serial
        .lines()
        .find(|l| l.starts_with("boot: ") && l.contains("TSC ticks"))
        .context("the kernel did not print its boot TSC line")?;
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("cannot read `{line}`"))
}

/// Runs a benchmark program under `-icount shift=0` and returns its `bench ...` lines.
fn program_bench_lines(artifacts: &Artifacts, program: &str) -> Result<Vec<String>> {
    let mut run = boot_run(true);
    run.name = format!("bench-{program}");
    run.module = Some(artifacts.program(program)?);
    let finished = run.execute(artifacts)?;
    let lines: Vec<String> =
        finished.serial.lines().filter(|l| l.starts_with("bench ")).map(String::from).collect();
    if lines.is_empty() || !finished.serial.contains("TEST PASS") {
        bail!("benchmark {program} printed no result (serial log: {})", finished.log.display());
    }
    Ok(lines)
}

fn wall_to_greeting(artifacts: &Artifacts) -> Result<Duration> {
    let finished = with_hello(boot_run(false), artifacts)?.execute(artifacts)?;
    match finished.arrival_of(GREETING) {
        Some(at) => Ok(at),
        None => bail!("no greeting in the serial output ({})", finished.log.display()),
    }
}
