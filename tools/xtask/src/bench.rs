//! `cargo xtask bench`: boot figures, measured in one run each.
//!
//! - instructions per kernel operation, measured by benchmark programs in `emulator-tests`
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
/// Requests per XenStore measurement.
const XS_REQUESTS: u32 = 20_000;

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
        host_xenstore: false,
        operator: false,
        ctl_guest: None,
        ctl_peers: Vec::new(),
        host_waits_for: Vec::new(),
        memory_mib: crate::emulator::MEMORY_MIB,
        guest_console: false,
        disks: Vec::new(),
    }
}

/// The groups of figures `cargo xtask bench FILTER` chooses from, each measured by one
/// part of [`run`].
pub const GROUPS: &str =
    "boot, retype, ipc, loader, memory, supervisor, vmx, svm, cleave, fuzz, xenstored, linux, io";

/// Runs every benchmark whose group ([`GROUPS`]) contains `filter` (all without one) and
/// prints one `bench NAME = VALUE UNIT` line per figure.
pub fn run(filter: Option<&str>) -> Result<()> {
    let wanted = |group: &str| filter.is_none_or(|f| group.contains(f));
    if !GROUPS.split(", ").any(wanted) {
        bail!("no benchmark group contains `{}` (groups: {GROUPS})", filter.unwrap_or_default());
    }
    deps::ensure()?;
    let artifacts = artifacts::build(&crate::default_system(), artifacts::Scope::Tests)?;
    if wanted("boot") {
        let instructions = boot_instructions(&artifacts)?;
        println!("bench boot.kernel_instructions_to_ring3 = {instructions} instructions");
    }
    for (group, program) in [("retype", "bench-retype"), ("ipc", "bench-ipc")] {
        if wanted(group) {
            for line in program_bench_lines(&artifacts, program)? {
                println!("{line}");
            }
        }
    }
    if wanted("loader") {
        let loader = program_lines(&artifacts, "loader", "loader: ")?;
        if let Some(line) = loader.iter().find(|l| l.contains("TSC ticks per object")) {
            let per = line.split_whitespace().nth(1).unwrap_or("?");
            println!(
                "bench loader.instructions_per_object = {per} instructions (whole build, including ELF loading)"
            );
        }
    }
    if wanted("memory") {
        for line in memory_figures(&artifacts)? {
            println!("{line}");
        }
    }
    if wanted("supervisor") {
        for line in restart_figures(&artifacts)? {
            println!("{line}");
        }
    }
    if wanted("vmx") {
        for line in vmx_figures(&artifacts)? {
            println!("{line}");
        }
    }
    if wanted("svm") {
        for line in svm_figures(&artifacts)? {
            println!("{line}");
        }
    }
    if wanted("cleave") {
        let (spec_ms, objects) = cleave_generation_ms(1000)?;
        println!(
            "bench cleave.spec_and_graph_1000_components = {spec_ms:.1} ms (median of 5; {objects} objects)"
        );
    }
    if wanted("fuzz") {
        let options = crate::fuzz::Options { ops: Some(crate::fuzz::SHORT_FUZZ_OPS), ..Default::default() };
        let (ok, output) = crate::fuzz::run(&options, false)?;
        match (ok, crate::fuzz::rate(&output)) {
            (true, Some(rate)) => println!(
                "bench fuzz.operations_per_second = {rate} (object-layer fuzzer, every invariant checked after every operation, {} operations, all processors)",
                crate::fuzz::SHORT_FUZZ_OPS
            ),
            _ => bail!("the object-layer fuzzer failed:\n{output}"),
        }
    }
    if wanted("linux") {
        for line in linux_figures()? {
            println!("{line}");
        }
    }
    if wanted("io") {
        crate::linux::io_bench::figures()?;
    }
    if wanted("xenstored") {
        let (reads, writes) = xenstore_rates()?;
        println!(
            "bench xenstored.read_requests_per_second = {reads:.0} (host daemon, Unix socket, one client, one processor, {XS_REQUESTS} requests)"
        );
        println!(
            "bench xenstored.write_requests_per_second = {writes:.0} (host daemon, Unix socket, one client, one processor, {XS_REQUESTS} requests)"
        );
    }
    if wanted("boot") {
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
    }
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
    program_lines(artifacts, program, "bench ")
}

/// Runs `program` as root task under `-icount shift=0` and returns the serial lines that
/// start with `prefix`; the run must pass and print at least one.
fn program_lines(artifacts: &Artifacts, program: &str, prefix: &str) -> Result<Vec<String>> {
    let mut run = boot_run(true);
    run.name = format!("bench-{program}");
    run.module = Some(artifacts.program(program)?);
    let finished = run.execute(artifacts)?;
    let lines: Vec<String> =
        finished.serial.lines().filter(|l| l.starts_with(prefix)).map(String::from).collect();
    if lines.is_empty() || !finished.serial.contains("TEST PASS") {
        bail!("benchmark {program} printed no result (serial log: {})", finished.log.display());
    }
    Ok(lines)
}

/// Xoar's memory table for the default system: the control plane's memory (every
/// component, VMMs included, what they share; not the guests' RAM) as `cleave memory`
/// counts it from the boot image, checked against what the loader reports making at boot.
fn memory_figures(artifacts: &Artifacts) -> Result<Vec<String>> {
    let system = crate::default_system();
    let table = artifacts::memory_table(&system, &artifacts::image_of(artifacts, "loader"))?;
    let loader = program_lines(artifacts, "loader", "loader: memory: ")?;
    let reported: Option<u64> = loader.first().and_then(|l| l.split_whitespace().nth(2)?.parse().ok());
    if reported != Some(table.machine()) {
        bail!("the loader reports {reported:?} bytes of memory; cleave counts {}", table.machine());
    }
    let biggest = table
        .rows
        .iter()
        .max_by_key(|r| r.total())
        .map_or(String::new(), |r| format!("; the largest, {}, {} KiB", r.component, r.total() >> 10));
    Ok(vec![
        format!(
            "bench control_plane.memory_bytes = {} bytes ({:.2} MiB, {} components and {} KiB they share, as the loader made them{biggest}; Xoar's was 512 MB, the goal at most 4 MiB)",
            table.control_plane(),
            table.control_plane() as f64 / f64::from(1u32 << 20),
            table.rows.len(),
            table.shared >> 10
        ),
        format!(
            "bench control_plane.memory_bytes_after_boot = {} bytes ({:.2} MiB: without the disposable components, whose memory is free once they are gone)",
            table.after_boot(),
            table.after_boot() as f64 / f64::from(1u32 << 20)
        ),
    ])
}

/// The lifetimes example under `-icount shift=0`: instructions per timed restart of the
/// heartbeat and per rollback of the scribbler (64 KiB of writable memory each), as the
/// supervisor measures them with the TSC around stop, copy, reset and start.
fn restart_figures(artifacts: &Artifacts) -> Result<Vec<String>> {
    let mut run = boot_run(true);
    run.name = "bench-restarts".into();
    run.module = Some(artifacts.program("loader-lifetimes")?);
    run.timeout = Some(Duration::from_secs(120));
    let finished = run.execute(artifacts)?;
    let figures = |marker: &str| -> Vec<u64> {
        finished
            .serial
            .lines()
            .filter(|l| l.starts_with("supervisor: ") && l.contains(marker))
            .filter_map(|l| l.split(" restored in ").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let mut lines = Vec::new();
    for (marker, name, what) in [
        ("restarted `heartbeat`", "supervisor.instructions_per_timed_restart_64k", "timed restarts"),
        ("rolled back `scribbler`", "supervisor.instructions_per_request_rollback_64k", "rollbacks"),
    ] {
        let mut values = figures(marker);
        if values.is_empty() {
            bail!("the supervisor reported no {what} (serial log: {})", finished.log.display());
        }
        values.sort_unstable();
        lines.push(format!(
            "bench {name} = {} instructions (median of {} {what} in one run; min {}, max {}; goal < 100000)",
            values[values.len() / 2],
            values.len(),
            values[0],
            values[values.len() - 1]
        ));
    }
    Ok(lines)
}

/// The VM exit benchmark program, on VT-x and on SVM alike.
const VCPU_PROGRAM: &str = "bench-vcpu";
/// The figures it prints (as `bench ARCH.NAME`), in instructions.
const VCPU_FIGURES: [&str; 2] = ["cpuid_exit_round_trip", "kernel_exit_round_trip"];

/// VT-x in Bochs (QEMU's TCG has none), whose TSC counts instructions: `bench-vcpu`'s
/// instruction figures and its wall-clock rate of handled exits, from one run.
fn vmx_figures(artifacts: &Artifacts) -> Result<Vec<String>> {
    let run = Run {
        emulator: Emulator::Bochs,
        name: "bench-vcpu-bochs".into(),
        module: Some(artifacts.program(VCPU_PROGRAM)?),
        cmdline: String::new(),
        timeout: Some(Duration::from_secs(180)),
        gdb: false,
        icount: false,
        echo: false,
        host_xenstore: false,
        operator: false,
        ctl_guest: None,
        ctl_peers: Vec::new(),
        host_waits_for: Vec::new(),
        memory_mib: crate::emulator::MEMORY_MIB,
        guest_console: false,
        disks: Vec::new(),
    };
    let finished = run.execute(artifacts)?;
    let mut lines = vcpu_lines(&finished, "vmx")?;
    lines.push(exit_rate(&finished, "vmx", "Bochs")?);
    Ok(lines)
}

/// SVM in QEMU: `bench-vcpu`'s instruction figures under `-icount shift=0`, and its rate
/// of handled exits in a second run without `-icount` (which slows QEMU down).
fn svm_figures(artifacts: &Artifacts) -> Result<Vec<String>> {
    let mut run = boot_run(true);
    run.name = "bench-vcpu-icount".into();
    run.module = Some(artifacts.program(VCPU_PROGRAM)?);
    run.timeout = Some(Duration::from_secs(120));
    let mut lines = vcpu_lines(&run.execute(artifacts)?, "svm")?;
    run.name = "bench-vcpu-wall".into();
    run.icount = false;
    let finished = run.execute(artifacts)?;
    lines.push(exit_rate(&finished, "svm", "QEMU TCG without -icount")?);
    Ok(lines)
}

/// `bench-vcpu`'s instruction figures for `arch` from a passed run; each must be there.
fn vcpu_lines(finished: &crate::emulator::Finished, arch: &str) -> Result<Vec<String>> {
    if !finished.serial.contains("TEST PASS") {
        bail!("{VCPU_PROGRAM} failed on {arch} (serial log: {})", finished.log.display());
    }
    VCPU_FIGURES
        .iter()
        .map(|name| {
            let prefix = format!("bench {arch}.{name} = ");
            finished.serial.lines().find(|l| l.starts_with(&prefix)).map(String::from).with_context(|| {
                format!("{VCPU_PROGRAM} printed no {arch}.{name} (serial log: {})", finished.log.display())
            })
        })
        .collect()
}

/// Handled CPUID exits per second of wall-clock time, from when `bench-vcpu`'s `start`
/// and `done` lines reached the host.
fn exit_rate(finished: &crate::emulator::Finished, arch: &str, emulator: &str) -> Result<String> {
    let (Some(start), Some(done)) =
        (finished.arrival_of("bench-vcpu: start"), finished.arrival_of("bench-vcpu: done"))
    else {
        bail!("{VCPU_PROGRAM} did not time its exits on {arch} (serial log: {})", finished.log.display());
    };
    let exits: f64 = finished
        .serial
        .lines()
        .find_map(|l| l.strip_prefix("bench-vcpu: done ")?.split_whitespace().next()?.parse().ok())
        .context("no exit count on the `done` line")?;
    let seconds = done.saturating_sub(start).as_secs_f64().max(1e-3);
    Ok(format!(
        "bench {arch}.exits_per_second = {:.0} ({emulator}, wall clock between two serial lines, {exits:.0} CPUID exits each handled by the VMM as in cpuid_exit_round_trip)",
        exits / seconds
    ))
}

/// A generated description: `n` components, each a server of one endpoint whose client is
/// the next component, so every component has a channel and the graph is one long chain.
fn generated_system(n: usize) -> String {
    let mut text = String::from("[system]\nroot = \"loader\"\n");
    for i in 0..n {
        text.push_str(&format!("\n[components.c{i}]\npriority = 100\n"));
    }
    for i in 0..n {
        let client = (i + 1) % n;
        text.push_str(&format!(
            "\n[channels.ch{i}]\nkind = \"endpoint\"\nserver = \"c{i}\"\nclients = [\"c{client}\"]\n"
        ));
    }
    text
}

/// Host time for `cleave` to read and check a generated description of `n` components,
/// compile it, write its capDL text and its sharing graph (median of five runs), and the
/// number of objects in the result.
fn cleave_generation_ms(n: usize) -> Result<(f64, usize)> {
    let text = generated_system(n);
    let mut times = Vec::new();
    let mut objects = 0;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let file = cleave::system::load(&text)
            .map_err(|errors| anyhow::anyhow!("generated description rejected: {:?}", errors.first()))?;
        let compiled = cleave::compile::compile(&file);
        let cdl = cleave_capdl::text::write(&compiled.spec);
        let dot = cleave::graph::dot(&file);
        times.push(start.elapsed());
        objects = compiled.spec.objects.len();
        if cdl.is_empty() || dot.is_empty() {
            bail!("cleave produced an empty specification or graph");
        }
    }
    times.sort_unstable();
    Ok((times[2].as_secs_f64() * 1000.0, objects))
}

fn wall_to_greeting(artifacts: &Artifacts) -> Result<Duration> {
    let finished = with_hello(boot_run(false), artifacts)?.execute(artifacts)?;
    match finished.arrival_of(GREETING) {
        Some(at) => Ok(at),
        None => bail!("no greeting in the serial output ({})", finished.log.display()),
    }
}

/// Starts `cleave xenstored` (release build) and measures, with a client written here,
/// how many WRITE and then READ requests per second one connection gets answered, each
/// request waiting for its reply as Xen's clients do; client and daemon share one processor.
fn xenstore_rates() -> Result<(f64, f64)> {
    use cleave_xenstore::wire::{self, Framed, Header, MsgType};
    use std::io::{Read, Write};
    let root = crate::workspace_root();
    if !artifacts::cargo(&root, &["build", "--release", "-p", "cleave"])? {
        bail!("building cleave failed");
    }
    // One processor for the client (this thread) and the daemon (which inherits it):
    // otherwise every request pays for waking the other processor, which in a virtual
    // machine costs ten times what the daemon does.
    let _pinned = PinnedToOneCpu::new();
    let dir = std::env::temp_dir().join(format!("cleave-bench-xs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("socket");
    let mut daemon = std::process::Command::new(root.join("target/release/cleave"))
        .arg("xenstored")
        .arg("--socket")
        .arg(&socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting cleave xenstored")?;
    let result = (|| -> Result<(f64, f64)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if std::time::Instant::now() > deadline {
                bail!("cleave xenstored made no socket");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut s = std::os::unix::net::UnixStream::connect(&socket)?;
        let mut pending = Vec::new();
        let mut buf = [0u8; 8192];
        let mut round = |ty: MsgType, payload: &[u8], req_id: u32| -> Result<()> {
            let header = Header { msg_type: ty as u32, req_id, tx_id: 0, len: payload.len() as u32 };
            s.write_all(&header.to_bytes())?;
            s.write_all(payload)?;
            loop {
                if let Framed::Message(h, _, used) = wire::frame(&pending) {
                    if h.msg_type != ty as u32 || h.req_id != req_id {
                        bail!("request {req_id}: unexpected reply type {}", h.msg_type);
                    }
                    pending.drain(..used);
                    return Ok(());
                }
                let n = s.read(&mut buf)?;
                if n == 0 {
                    bail!("cleave xenstored closed the connection");
                }
                pending.extend_from_slice(&buf[..n]);
            }
        };
        let start = std::time::Instant::now();
        for i in 0..XS_REQUESTS {
            let payload = format!("/bench/node{}\0value {i}", i % 100);
            round(MsgType::Write, payload.as_bytes(), i)?;
        }
        let writes = f64::from(XS_REQUESTS) / start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for i in 0..XS_REQUESTS {
            let payload = format!("/bench/node{}\0", i % 100);
            round(MsgType::Read, payload.as_bytes(), i)?;
        }
        let reads = f64::from(XS_REQUESTS) / start.elapsed().as_secs_f64();
        Ok((reads, writes))
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Keeps the calling thread on the first processor it may use, until dropped.
struct PinnedToOneCpu {
    previous: Option<libc::cpu_set_t>,
}

impl PinnedToOneCpu {
    fn new() -> Self {
        // SAFETY: cpu_set_t is plain data (all zeroes is an empty set); the calls get and set
        // this thread's own mask (pid 0) with the set's true size, and CPU_* only touch it.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut previous) != 0 {
                return Self { previous: None };
            }
            let Some(first) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &previous)) else {
                return Self { previous: None };
            };
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(first, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return Self { previous: None };
            }
            Self { previous: Some(previous) }
        }
    }
}

impl Drop for PinnedToOneCpu {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: as in `new`: this thread's own mask, a valid set of the right size.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous);
            }
        }
    }
}

/// The Linux guest (doc/linux-guest.md): the same kernel and initramfs booted to the
/// prompt directly in QEMU and under Cleave (on SVM), in instructions under `-icount`
/// (from the kernel's 64-bit entry, and from Cleave's first `VmEnter`) and wall time; the
/// ratio of the two instruction counts is the virtualization's cost of the boot (goal at
/// most 1.5x); and the VMM's exits per second of guest time, by reason.
fn linux_figures() -> Result<Vec<String>> {
    let guest = crate::linux::prepare()?;
    let baseline = crate::linux::baseline::measure(&guest)?;
    let cleave = crate::linux::under_cleave::measure()?;
    let vtx_to_shell = vtx_wall_to_shell()?;
    let ratio = cleave.instructions_to_prompt as f64 / baseline.instructions_to_prompt as f64;
    Ok(vec![
        format!(
            "bench linux.baseline_instructions_to_prompt = {} instructions (QEMU -icount shift=0 without Cleave, from the kernel's 64-bit entry)",
            baseline.instructions_to_prompt
        ),
        format!(
            "bench linux.cleave_instructions_to_prompt = {} instructions (QEMU -icount shift=0, Cleave on SVM, from the first VmEnter: the kernel's, the VMM's and the guest's; {} before it to boot Cleave and build the system)",
            cleave.instructions_to_prompt, cleave.instructions_before_entry
        ),
        format!(
            "bench linux.boot_overhead = {ratio:.2}x (Cleave's instructions to the prompt over the baseline's; goal <= 1.5x)"
        ),
        format!(
            "bench linux.baseline_wall_to_prompt = {:.0} ms (QEMU TCG without Cleave, one run)",
            baseline.wall_to_prompt.as_secs_f64() * 1000.0
        ),
        format!(
            "bench linux.svm_wall_to_prompt = {:.0} ms (QEMU TCG, Cleave on SVM, from starting QEMU, one run)",
            cleave.wall_to_prompt.as_secs_f64() * 1000.0
        ),
        format!(
            "bench linux.vtx_wall_to_shell = {:.0} ms (Bochs, Cleave on VT-x, from starting Bochs to the guest's last line before its shell's prompt, one run)",
            vtx_to_shell.as_secs_f64() * 1000.0
        ),
        format!(
            "bench linux.exits_by_reason: {}",
            cleave.exits_by_reason.trim_start_matches("vmm: guest 'debian' ")
        ),
    ])
}

/// The system the VT-x figure boots: the Linux guest with its console in the log, which
/// reboots itself once its init is done.
const LINUX_VTX_SYSTEM: &str = "systems/linux-reboot.toml";

/// Wall time in Bochs from its start to the Linux guest's `init done` line (its init
/// script's last line before it starts the shell, whose prompt comes next).
fn vtx_wall_to_shell() -> Result<Duration> {
    let system = crate::workspace_root().join(LINUX_VTX_SYSTEM);
    let artifacts = crate::artifacts::build(&system, crate::artifacts::Scope::System)?;
    let root = crate::system::root_program(&system)?;
    let run = Run {
        emulator: Emulator::Bochs,
        name: "bench-linux-bochs".into(),
        module: Some(artifacts.program(&root)?),
        cmdline: String::new(),
        timeout: Some(Duration::from_secs(1800)),
        gdb: false,
        icount: false,
        echo: false,
        host_xenstore: false,
        operator: false,
        ctl_guest: None,
        ctl_peers: Vec::new(),
        host_waits_for: Vec::new(),
        memory_mib: crate::emulator::memory_for(&system)?,
        guest_console: false,
        disks: Vec::new(),
    };
    let finished = run.execute(&artifacts)?;
    finished.arrival_of("debian: cleave-guest: init done").with_context(|| {
        format!("the guest did not reach its shell in Bochs (serial log: {})", finished.log.display())
    })
}
