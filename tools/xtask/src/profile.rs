//! `cargo xtask profile PROGRAM`: where the kernel's instructions go on system calls.
//!
//! Boots the kernel with PROGRAM as root task in QEMU with one instruction per translation
//! block and `-d exec` (a line per executed instruction, on QEMU's stderr, read as a stream),
//! cuts the trace into kernel runs (from `syscall_entry` to the next user instruction),
//! groups them by length, and for the most common lengths prints one run's instructions by
//! kernel function, in the order they ran. `-icount shift=0` keeps the run the one `bench`
//! measures. The figures are counts of executed instructions (a `rep` iteration counts as
//! one), so they add up to what the benchmarks report.

use crate::artifacts::{self, Artifacts};
use crate::deps;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kernel addresses start here (the higher half).
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// Run lengths shown in detail.
const SHOWN: usize = 12;

/// The kernel's function symbols, sorted by address.
fn symbols(artifacts: &Artifacts) -> Result<Vec<(u64, String)>> {
    let out = Command::new("nm")
        .args(["-C", "--defined-only"])
        .arg(&artifacts.kernel)
        .output()
        .context("running nm (binutils) on the kernel")?;
    if !out.status.success() {
        bail!("nm failed on {}", artifacts.kernel.display());
    }
    let mut symbols: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let address = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            matches!(kind, "t" | "T").then(|| (address, name.to_string()))
        })
        .collect();
    symbols.sort();
    Ok(symbols)
}

/// The function containing `pc`.
fn function(symbols: &[(u64, String)], pc: u64) -> &str {
    match symbols.partition_point(|(a, _)| *a <= pc) {
        0 => "?",
        i => &symbols[i - 1].1,
    }
}

/// The program counter of a `-d exec` line: `Trace N: HOST [CS_BASE/PC/FLAGS/...]`.
fn pc_of(line: &str) -> Option<u64> {
    let fields = line.split_once('[')?.1;
    let pc = fields.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// Profiles `program` and prints the report.
pub fn run(program: &str) -> Result<()> {
    deps::ensure()?;
    let artifacts = artifacts::build(&crate::default_system(), artifacts::Scope::Tests)?;
    let module = artifacts.program(program)?;
    let symbols = symbols(&artifacts)?;
    let entry = symbols
        .iter()
        .find(|(_, n)| n == "syscall_entry")
        .map(|(a, _)| *a)
        .context("the kernel has no `syscall_entry` symbol")?;
    let serial = std::env::temp_dir().join(format!("cleave-profile-{}.serial", std::process::id()));
    let mut child = crate::emulator::dies_with_parent(&mut Command::new("qemu-system-x86_64"))
        .args(["-machine", "pc", "-cpu", "max", "-accel", "tcg", "-singlestep", "-m", "128M"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-icount", "shift=0"])
        .args(["-d", "exec,nochain"])
        .arg("-kernel")
        .arg(&artifacts.kernel)
        .arg("-initrd")
        .arg(&module)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let trace = BufReader::with_capacity(1 << 20, child.stderr.take().context("no QEMU stderr")?);

    // Kernel runs that began at syscall_entry: length -> (how many, the first one's PCs).
    let mut runs: HashMap<usize, (usize, Vec<u64>)> = HashMap::new();
    let mut current: Option<Vec<u64>> = None;
    let mut total = 0u64;
    for line in trace.lines() {
        let line = line.context("reading the QEMU trace")?;
        let Some(pc) = pc_of(&line) else { continue };
        total += 1;
        if pc == entry && current.is_none() {
            current = Some(Vec::with_capacity(1024));
        }
        if pc < KERNEL_HALF {
            if let Some(run) = current.take() {
                let slot = runs.entry(run.len()).or_insert((0, Vec::new()));
                if slot.0 == 0 {
                    slot.1 = run;
                }
                slot.0 += 1;
            }
        } else if let Some(run) = current.as_mut() {
            run.push(pc);
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    let output = std::fs::read_to_string(&serial).unwrap_or_default();
    std::fs::remove_file(&serial).ok();
    for line in output.lines().filter(|l| l.starts_with("bench ")) {
        println!("{line}");
    }
    println!(
        "profile: {total} instructions traced (QEMU exit status {}); kernel runs from syscall_entry:",
        status.code().unwrap_or(-1)
    );
    let mut lengths: Vec<(usize, usize)> = runs.iter().map(|(len, (n, _))| (*len, *n)).collect();
    lengths.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for &(length, count) in lengths.iter().take(SHOWN) {
        println!("\n{count} runs of {length} instructions; one of them by function, in order:");
        let mut last: Option<(&str, usize)> = None;
        for &pc in &runs[&length].1 {
            let name = function(&symbols, pc);
            match last.as_mut() {
                Some((n, c)) if *n == name => *c += 1,
                _ => {
                    if let Some((n, c)) = last {
                        println!("  {c:5}  {n}");
                    }
                    last = Some((name, 1));
                }
            }
        }
        if let Some((n, c)) = last {
            println!("  {c:5}  {n}");
        }
        // CLEAVE_PROFILE_ADDRESSES=1 also lists every instruction's address, to read the
        // run against the disassembly.
        if std::env::var_os("CLEAVE_PROFILE_ADDRESSES").is_some() {
            let addresses: Vec<String> = runs[&length].1.iter().map(|pc| format!("{pc:x}")).collect();
            println!("  addresses: {}", addresses.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_give_their_program_counter() {
        let line = "Trace 0: 0x7f70900003c0 [0000000000000000/ffffffff801173f1/00000040/ff020201] ";
        assert_eq!(pc_of(line), Some(0xffff_ffff_8011_73f1));
        assert_eq!(pc_of("Linking TBs 0x1 [ffffffff80100000] index 0"), None);
        let symbols = vec![(0x10, "a".to_string()), (0x20, "b".to_string())];
        assert_eq!(function(&symbols, 0x1f), "a");
        assert_eq!(function(&symbols, 0x20), "b");
        assert_eq!(function(&symbols, 0x5), "?");
    }
}
