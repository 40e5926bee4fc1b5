//! `cleave-fuzz`: the object-layer fuzzer's command line (`cargo xtask fuzz` runs it).
//!
//! `cleave-fuzz [--ops N] [--seed S] [--episode E] [--steps L]` runs N random steps in
//! episodes of L steps (each a fresh world), checking every kernel invariant after every
//! step, and prints the rate. A violation prints the seed, the episode, the step and the
//! shortest sequence it shrinks to, and exits 1.

use cleave_kernel_core::object::fuzz;
use std::time::Instant;

fn main() {
    let mut ops: u64 = 100_000;
    let mut seed: u64 = 1;
    let mut only: Option<u64> = None;
    let mut length: usize = 1_000;
    let mut stats = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            let text = args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
            text.replace('_', "").parse().unwrap_or_else(|_| usage(&format!("{name}: not a number: {text}")))
        };
        match arg.as_str() {
            "--ops" => ops = value("--ops"),
            "--seed" => seed = value("--seed"),
            "--episode" => only = Some(value("--episode")),
            "--steps" => length = value("--steps").max(1) as usize,
            "--stats" => stats = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    // Panics in the kernel code are violations the runner reports; keep their default
    // report out of the shrinking's way.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let episodes: Vec<u64> = match only {
        Some(e) => vec![e],
        None => (0..ops.div_ceil(length as u64)).collect(),
    };
    // Episodes are independent: one worker per processor takes every n-th.
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()).min(episodes.len().max(1));
    let results: Vec<(u64, std::collections::BTreeMap<(u64, u64), u64>, Option<(u64, fuzz::Violation)>)> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..jobs)
                .map(|j| {
                    let mine: Vec<u64> = episodes.iter().copied().skip(j).step_by(jobs).collect();
                    scope.spawn(move || {
                        let mut successes = std::collections::BTreeMap::new();
                        let mut done = 0u64;
                        for e in mine {
                            let steps = fuzz::episode(seed, e, length);
                            if let Err(v) =
                                fuzz::run_counting(fuzz::guest_format_of(e), &steps, &mut successes)
                            {
                                return (done, successes, Some((e, v)));
                            }
                            done += length as u64;
                        }
                        (done, successes, None)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a fuzz worker panicked outside a run")).collect()
        });
    let mut done = 0u64;
    let mut successes: std::collections::BTreeMap<(u64, u64), u64> = std::collections::BTreeMap::new();
    let mut failure = None;
    for (n, counts, violation) in results {
        done += n;
        for (k, v) in counts {
            *successes.entry(k).or_default() += v;
        }
        if failure.is_none() {
            failure = violation;
        }
    }
    if let Some((e, v)) = failure {
        println!(
            "fuzz: VIOLATION (seed {seed}, episode {e}, guests' spaces in {:?}, step {}): {}",
            fuzz::guest_format_of(e),
            v.step,
            v.message
        );
        let steps = fuzz::episode(seed, e, length);
        let format = fuzz::guest_format_of(e);
        let shrunk = fuzz::shrink(format, &steps);
        let again = fuzz::run(format, &shrunk).err().map(|v| v.message).unwrap_or_default();
        println!("fuzz: shrunk to {} steps, which fail with: {again}", shrunk.len());
        for (i, step) in shrunk.iter().enumerate() {
            println!("  {i}: {step:?}");
        }
        println!("fuzz: replay with: cargo xtask fuzz --seed {seed} --episode {e} --steps {length}");
        std::process::exit(1);
    }
    let seconds = started.elapsed().as_secs_f64();
    if stats {
        for ((number, label), n) in &successes {
            if *label == fuzz::VM_ENTER_NOTIFIED {
                println!("fuzz: system call {number} (VmEnter) returned NOTIFIED, a signal pending: {n}");
            } else {
                println!("fuzz: system call {number} label {label}: {n} succeeded");
            }
        }
    }
    println!(
        "fuzz: {done} operations in {seconds:.1} s ({:.0} operations per second), 0 violations; seed {seed}",
        done as f64 / seconds.max(1e-9)
    );
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("cleave-fuzz: {problem}");
    }
    eprintln!("usage: cleave-fuzz [--ops N] [--seed S] [--episode E] [--steps L] [--stats]");
    std::process::exit(2);
}
