//! The Linux guest booted directly in QEMU, without Cleave: proof that the kernel and the
//! initramfs work before any VMM runs them, and the figures Cleave's are compared with.
//!
//! `cargo xtask linux-baseline` boots `target/linux/vmlinuz` with the initramfs (QEMU's own
//! `-kernel` loader: SeaBIOS, QEMU's option ROM, then the kernel's real-mode setup code),
//! waits for the shell prompt, checks `uname -r` and the test file's SHA-256 through the
//! console and powers the guest off. It measures:
//! - wall time from starting QEMU (TCG) to the prompt;
//! - guest instructions from the kernel's 64-bit entry (the protected-mode image at 1 MiB,
//!   +0x200, where a VMM enters it under the 64-bit boot protocol) to the prompt, in a
//!   second run under `-icount shift=0` with record/replay on, whose monitor command
//!   `info replay` reports the number of instructions executed so far. The run starts
//!   halted with a GDB stub: a hardware breakpoint at the entry gives the count there, and
//!   the machine is stopped again as soon as the prompt has arrived on the console.
//!   The guest idles at the prompt; what runs between the prompt and that stop (timer
//!   interrupts) is counted too, a few hundred thousand instructions at most.

use super::initramfs::{MISBEHAVE, MODULES, TRIPLE_FAULT, UNMAPPED_ACCESS, UNMAPPED_SURVIVED};
use super::{CMDLINE, Guest, INIT_DONE, PROMPT, TEST_FILE, gdb};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where QEMU's `-kernel` loader puts the protected-mode kernel (bzImage with boot protocol
/// 2.x, loaded high), plus 0x200: the 64-bit entry `startup_64`.
const ENTRY_64: u64 = 0x10_0200;

/// QEMU's most capable processor without 5-level paging: a guest under Cleave never sees
/// LA57 (its VMM hides it in CPUID, and Linux 6.1 has no `no5lvl`), so neither does the
/// baseline's.
const CPU: &str = "max,la57=off";

/// The guest's memory, as under Cleave.
const MEMORY: &str = "256M";

/// Under `-icount shift=0` the TSC advances by one per nanosecond of virtual time, so it
/// runs at exactly 1 GHz.
const ICOUNT_TSC_KHZ: u32 = 1_000_000;

/// How long the kernel may take to reach the prompt (about 10 s here), and a command to
/// answer.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(240);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A hostile variant of the guest (`cleave.misbehave=` on its command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Misbehave {
    /// Read and write a guest-physical page that nothing backs.
    Unmapped,
    /// Reboot by triple fault.
    Triple,
}

impl Misbehave {
    /// The kernel command-line word that asks for it.
    pub fn word(self) -> String {
        match self {
            Misbehave::Unmapped => format!("{MISBEHAVE}=unmapped"),
            Misbehave::Triple => format!("{MISBEHAVE}=triple"),
        }
    }
}

/// The baseline's figures.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// From starting QEMU to the prompt on the console.
    pub wall_to_prompt: Duration,
    /// Instructions from the 64-bit entry to the prompt (`-icount shift=0`).
    pub instructions_to_prompt: u64,
    /// Instructions before the 64-bit entry: SeaBIOS, QEMU's option ROM, the kernel's
    /// real-mode setup and its 32-bit start (a VMM entering at the 64-bit entry runs none).
    pub instructions_before_entry: u64,
}

/// `cargo xtask linux-baseline`: makes the guest, boots it in QEMU, checks it and prints
/// the figures; with `misbehave`, boots that hostile variant instead and checks that it
/// does what it says. Returns whether every check passed.
pub fn run_baseline(misbehave: Option<Misbehave>) -> Result<bool> {
    crate::deps::ensure()?;
    let guest = super::prepare()?;
    super::describe(&guest)?;
    match misbehave {
        None => {
            let figures = measure(&guest)?;
            println!(
                "bench linux.baseline_wall_to_prompt = {:.0} ms (QEMU TCG without Cleave, -m {MEMORY}, one run)",
                figures.wall_to_prompt.as_secs_f64() * 1000.0
            );
            println!(
                "bench linux.baseline_instructions_to_prompt = {} instructions (QEMU -icount shift=0 without Cleave, from the kernel's 64-bit entry at {ENTRY_64:#x}; {} more before it in firmware and setup code)",
                figures.instructions_to_prompt, figures.instructions_before_entry
            );
            Ok(true)
        }
        Some(Misbehave::Unmapped) => unmapped(&guest),
        Some(Misbehave::Triple) => triple(&guest),
    }
}

/// Boots the guest twice, for wall time (checking it on the way) and for instructions.
pub fn measure(guest: &Guest) -> Result<Figures> {
    let wall_to_prompt = wall_run(guest)?;
    let (instructions_before_entry, at_prompt) = icount_run(guest)?;
    Ok(Figures {
        wall_to_prompt,
        instructions_to_prompt: at_prompt - instructions_before_entry,
        instructions_before_entry,
    })
}

/// Boots to the prompt, checks the guest's answers, powers it off; returns the time to the
/// prompt.
fn wall_run(guest: &Guest) -> Result<Duration> {
    let mut qemu = Qemu::start(guest, "wall", &[], CMDLINE)?;
    let boot = qemu.wait_for(PROMPT, PROMPT_TIMEOUT)?;
    let wall = qemu.started.elapsed();
    anyhow::ensure!(boot.contains(INIT_DONE), "no `{INIT_DONE}` before the prompt ({})", qemu.log.display());
    println!("linux-baseline: prompt after {:.2} s", wall.as_secs_f64());
    let release = qemu.command("uname -r")?;
    anyhow::ensure!(
        release == [guest.release.as_str()],
        "uname -r printed {release:?}, the package's release is {}",
        guest.release
    );
    println!("linux-baseline: uname -r: {} (the package's release)", release[0]);
    let sum = qemu.command(&format!("sha256sum {TEST_FILE}"))?;
    let expected = format!("{}  {TEST_FILE}", guest.test_file_sha256);
    anyhow::ensure!(sum == [expected.as_str()], "sha256sum printed {sum:?}, the host computes {expected}");
    println!("linux-baseline: sha256sum {TEST_FILE}: {} (the host's)", guest.test_file_sha256);
    let loaded: Vec<String> = qemu
        .command("cat /proc/modules")?
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let missing: Vec<&str> = MODULES.iter().copied().filter(|m| !loaded.iter().any(|l| l == m)).collect();
    anyhow::ensure!(missing.is_empty(), "modules not loaded: {} (loaded: {loaded:?})", missing.join(", "));
    println!("linux-baseline: /proc/modules lists all {} virtio modules", MODULES.len());
    qemu.power_off()?;
    Ok(wall)
}

/// Boots under `-icount shift=0` with record/replay, stopping at the 64-bit entry and at
/// the prompt; returns the instruction counts there.
fn icount_run(guest: &Guest) -> Result<(u64, u64)> {
    let dir = baseline_dir("icount")?;
    let replay = dir.join("replay.bin");
    let socket = std::env::temp_dir().join(format!("cleave-linux-{}-gdb.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let icount = format!("shift=0,rr=record,rrfile={}", replay.display());
    let gdb = format!("unix:{},server=on,wait=off", socket.display());
    let cmdline = icount_cmdline();
    let mut qemu = Qemu::start(guest, "icount", &["-icount", &icount, "-S", "-gdb", &gdb], &cmdline)?;
    let counts = counts_to_prompt(&mut qemu, &socket, ENTRY_64, PROMPT_TIMEOUT, |remote| {
        let registers = remote.monitor("info registers")?;
        anyhow::ensure!(
            registers.contains(&format!("RIP={ENTRY_64:016x}")) && registers.contains("CS64"),
            "the machine stopped elsewhere than the 64-bit entry:\n{registers}"
        );
        Ok(())
    });
    let _ = std::fs::remove_file(&socket);
    let counts = counts?;
    qemu.power_off()?;
    Ok(counts)
}

/// In a QEMU started halted under `-icount` with record/replay and a GDB stub at `socket`:
/// the instruction counts at the first time `entry` runs (after `check` there) and once
/// the prompt has arrived on the console.
pub(super) fn counts_to_prompt(
    qemu: &mut Qemu,
    socket: &std::path::Path,
    entry: u64,
    timeout: Duration,
    check: impl FnOnce(&mut gdb::Remote) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut remote = gdb::Remote::connect(socket, Duration::from_secs(10))?;
    remote.breakpoint(entry, true)?;
    remote.resume_until_stop(timeout)?;
    check(&mut remote)?;
    let at_entry = replay_count(&remote.monitor("info replay")?)?;
    remote.breakpoint(entry, false)?;
    remote.resume()?;
    qemu.wait_for(PROMPT, timeout)?;
    remote.interrupt()?;
    let at_prompt = replay_count(&remote.monitor("info replay")?)?;
    remote.detach()?;
    Ok((at_entry, at_prompt))
}

/// The disk benchmark (`cleave.disk=bench`) directly in QEMU under `-icount shift=0`, on a
/// legacy virtio-blk PCI device backed by `image` as under Cleave: the guest's report
/// (after [`super::initramfs::DISK_BENCH`]) and its small-file workload's (after
/// [`super::initramfs::FS_BENCH`]).
pub(super) fn disk_bench(guest: &Guest, image: &std::path::Path) -> Result<(String, String)> {
    let drive = format!("file={},format=raw,if=none,id=disk", image.display());
    let cmdline = format!("{} {}=bench cleave.then=reboot", icount_cmdline(), super::initramfs::DISK);
    let extra =
        ["-icount", "shift=0", "-drive", &drive, "-device", "virtio-blk-pci,drive=disk,disable-modern=on"];
    let mut qemu = Qemu::start(guest, "bench-disk", &extra, &cmdline)?;
    qemu.wait_for(super::initramfs::DISK_BENCH, Duration::from_secs(1200))?;
    let disk = qemu.wait_for("\n", COMMAND_TIMEOUT)?;
    qemu.wait_for(super::initramfs::FS_BENCH, Duration::from_secs(1200))?;
    let fs = qemu.wait_for("\n", COMMAND_TIMEOUT)?;
    qemu.wait_exit(Duration::from_secs(120))?;
    Ok((disk.trim().to_string(), fs.trim().to_string()))
}

/// The kernel command line of the `-icount` run: with the TSC's rate, as a VMM passes it.
fn icount_cmdline() -> String {
    format!("{CMDLINE} tsc_early_khz={ICOUNT_TSC_KHZ}")
}

/// The hostile variant that touches an unmapped page: QEMU answers such accesses, so the
/// guest must report the access and go on to its prompt.
fn unmapped(guest: &Guest) -> Result<bool> {
    let cmdline = format!("{CMDLINE} {}", Misbehave::Unmapped.word());
    let mut qemu = Qemu::start(guest, "unmapped", &[], &cmdline)?;
    let said = qemu.wait_for(UNMAPPED_SURVIVED, PROMPT_TIMEOUT)?;
    anyhow::ensure!(
        said.contains(UNMAPPED_ACCESS),
        "no `{UNMAPPED_ACCESS}` line before `{UNMAPPED_SURVIVED}`"
    );
    for line in said.lines().filter(|l| l.starts_with("cleave-guest: misbehaving")) {
        println!("linux-baseline: guest: {}", line.trim_end_matches('\r'));
    }
    qemu.wait_for(PROMPT, PROMPT_TIMEOUT)?;
    qemu.power_off()?;
    println!("linux-baseline: the guest read and wrote an unmapped page, then reached its prompt");
    Ok(true)
}

/// The hostile variant that triple-faults: with `-no-reboot` QEMU stops, and its reset log
/// (`-d cpu_reset`) must name a triple fault.
fn triple(guest: &Guest) -> Result<bool> {
    let log = baseline_dir("triple")?.join("qemu-resets.log");
    let _ = std::fs::remove_file(&log);
    let cmdline = format!("{CMDLINE} {}", Misbehave::Triple.word());
    let log_arg = log.display().to_string();
    let mut qemu = Qemu::start(guest, "triple", &["-d", "cpu_reset", "-D", &log_arg], &cmdline)?;
    qemu.wait_for(TRIPLE_FAULT, PROMPT_TIMEOUT)?;
    let status = qemu.wait_exit(COMMAND_TIMEOUT)?;
    let resets = std::fs::read_to_string(&log).unwrap_or_default();
    let faulted = resets.contains("Triple fault");
    println!(
        "linux-baseline: QEMU stopped ({status}); its reset log {} a triple fault",
        if faulted { "shows" } else { "does NOT show" }
    );
    Ok(faulted && status.success() && !qemu.received_text().contains(PROMPT))
}

/// `target/linux/baseline/NAME`, created.
pub(super) fn baseline_dir(name: &str) -> Result<PathBuf> {
    let dir = crate::workspace_root().join("target/linux/baseline").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The count in `info replay`'s answer (`Recording execution 'FILE': instruction count = N`).
pub(super) fn replay_count(answer: &str) -> Result<u64> {
    answer
        .split("instruction count = ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .with_context(|| format!("no instruction count in `info replay`'s answer {answer:?}"))
}

/// A QEMU running the guest, its console on our pipes.
pub(super) struct Qemu {
    child: Child,
    stdin: ChildStdin,
    output: mpsc::Receiver<Vec<u8>>,
    received: Vec<u8>,
    /// How much of `received` the waits have gone past.
    consumed: usize,
    serial: std::fs::File,
    log: PathBuf,
    pub(super) started: Instant,
}

impl Qemu {
    /// Starts QEMU with the guest, `extra` arguments and kernel command line `cmdline`; the
    /// console is saved to `target/linux/baseline/NAME/serial.log`.
    fn start(guest: &Guest, name: &str, extra: &[&str], cmdline: &str) -> Result<Qemu> {
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-machine", "pc", "-cpu", CPU, "-accel", "tcg", "-m", MEMORY])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
            // No network, ever.
            .args(["-nic", "none"])
            .arg("-kernel")
            .arg(&guest.kernel)
            // QEMU splits -initrd at commas; target/linux/ paths have none.
            .arg("-initrd")
            .arg(&guest.initramfs)
            .args(["-append", cmdline])
            .args(extra);
        Qemu::spawn(command, name)
    }

    /// Starts `command` (a QEMU whose standard input and output are the console); the
    /// console is saved to `target/linux/baseline/NAME/serial.log`.
    pub(super) fn spawn(mut command: Command, name: &str) -> Result<Qemu> {
        let dir = baseline_dir(name)?;
        let log = dir.join("serial.log");
        let serial = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stderr = std::fs::File::create(dir.join("qemu.stderr"))?;
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let started = Instant::now();
        let mut child = crate::emulator::dies_with_parent(&mut command)
            .spawn()
            .context("cannot start qemu-system-x86_64")?;
        let stdin = child.stdin.take().context("QEMU's stdin")?;
        let mut stdout = child.stdout.take().context("QEMU's stdout")?;
        let (sender, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                if sender.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(Qemu { child, stdin, output, received: Vec::new(), consumed: 0, serial, log, started })
    }

    /// Everything the console printed so far.
    fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Waits until `text` appears after what earlier waits went past; returns the console
    /// output up to and including it.
    pub(super) fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.received[self.consumed..], text.as_bytes()) {
                let end = self.consumed + at + text.len();
                let seen = String::from_utf8_lossy(&self.received[self.consumed..end]).into_owned();
                self.consumed = end;
                return Ok(seen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(chunk) => {
                    self.serial.write_all(&chunk)?;
                    self.received.extend_from_slice(&chunk);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(why) => {
                    let ended = if matches!(why, mpsc::RecvTimeoutError::Disconnected) {
                        format!("QEMU ended ({})", self.child.wait()?)
                    } else {
                        format!("{} s passed", timeout.as_secs())
                    };
                    bail!("{ended} before the console showed {text:?}; its end:\n{}", self.tail(30));
                }
            }
        }
    }

    /// The console's last `n` lines.
    fn tail(&self, n: usize) -> String {
        let text = self.received_text().replace('\r', "");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    | {l}\n")).collect()
    }

    /// Types `command` at the prompt and returns what it printed (without the echo and the
    /// next prompt).
    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        self.stdin.write_all(format!("{command}\n").as_bytes())?;
        self.stdin.flush()?;
        let raw = self.wait_for(PROMPT, COMMAND_TIMEOUT).with_context(|| format!("running `{command}`"))?;
        Ok(command_output(&raw, command))
    }

    /// Types `line` at the console.
    pub(super) fn type_line(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes())?;
        self.stdin.flush()?;
        Ok(())
    }

    /// `poweroff -f`: without ACPI Linux can only halt, so QEMU is stopped once it says so.
    fn power_off(mut self) -> Result<()> {
        self.stdin.write_all(b"poweroff -f\n")?;
        self.stdin.flush()?;
        self.wait_for("reboot: System halted", COMMAND_TIMEOUT)?;
        Ok(())
    }

    /// Waits for QEMU to end by itself, keeping the console.
    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(chunk) = self.output.try_recv() {
                self.serial.write_all(&chunk)?;
                self.received.extend_from_slice(&chunk);
            }
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "QEMU did not stop within {} s; the console's end:\n{}",
                    timeout.as_secs(),
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a command typed at the shell printed, from the console output `raw` that follows
/// the typing up to the next prompt: without terminal escape sequences (busybox's line
/// editor asks the terminal where the cursor is), carriage returns, the echoed command
/// line, the prompt and kernel messages that came in between.
fn command_output(raw: &str, command: &str) -> Vec<String> {
    let text = strip_escapes(raw).replace('\r', "");
    let text = text.strip_suffix(PROMPT).unwrap_or(&text);
    let echo = format!("{command}\n");
    let after = text.find(&echo).map_or(text, |at| &text[at + echo.len()..]);
    after.lines().filter(|l| !is_kernel_message(l)).map(String::from).collect()
}

/// `text` without ANSI escape sequences (ESC `[` parameters final-byte, or ESC and one
/// character).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Whether `line` is a kernel message (`[   12.345678] text`).
fn is_kernel_message(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else { return false };
    let Some((stamp, _)) = rest.split_once(']') else { return false };
    let stamp = stamp.trim_start();
    stamp.split_once('.').is_some_and(|(s, us)| {
        !s.is_empty()
            && !us.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && us.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_output_is_what_lies_between_its_echo_and_the_prompt() {
        // As busybox's ash on a serial console prints it.
        let raw = "\x1b[6nuname -r\r\n6.1.0-57-amd64\r\ncleave# ";
        assert_eq!(command_output(raw, "uname -r"), ["6.1.0-57-amd64"]);
        let raw = "\x1b[6nsha256sum /etc/cleave-test\r\n[    9.120000] random: crng init done\r\nab12  /etc/cleave-test\r\ncleave# ";
        assert_eq!(command_output(raw, "sha256sum /etc/cleave-test"), ["ab12  /etc/cleave-test"]);
        assert_eq!(command_output("\x1b[6ntrue\r\ncleave# ", "true"), Vec::<String>::new());
        // A line that only looks like a kernel message stays.
        assert_eq!(command_output("x\n[a.1] b\ncleave# ", "x"), ["[a.1] b"]);
    }

    #[test]
    fn the_instruction_baseline_boots_as_the_linux_system_does() {
        // The figure is compared with Cleave's for systems/linux.toml's guest: the command
        // lines must match but for words that change nothing on the way to the prompt.
        let path = crate::workspace_root().join("systems/linux.toml");
        let system: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let guests = system["guests"].as_table().unwrap();
        assert_eq!(guests.len(), 1, "{}: one guest", path.display());
        let guest = guests.values().next().unwrap();
        assert_eq!(guest["memory"].as_str(), Some(MEMORY));
        let theirs: Vec<&str> = guest["cmdline"].as_str().unwrap().split_whitespace().collect();
        let ours = icount_cmdline();
        for word in ours.split_whitespace() {
            assert!(theirs.contains(&word), "{}'s command line lacks {word}", path.display());
        }
        // Linux 6.1 does not know `no5lvl` (it passes it on to /init), the reboot method
        // and the panic timeout matter only at the end.
        let harmless = ["no5lvl", "reboot=k", "panic=-1"];
        for word in theirs {
            assert!(
                ours.split_whitespace().any(|w| w == word) || harmless.contains(&word),
                "{}'s guest boots with {word}, the baseline without",
                path.display()
            );
        }
    }

    #[test]
    fn the_replay_count_is_read_from_the_monitors_answer() {
        let answer = "Recording execution '/x/replay.bin': instruction count = 5961561437\r\n";
        assert_eq!(replay_count(answer).unwrap(), 5_961_561_437);
        let error = replay_count("Record/replay is not active\r\n").unwrap_err().to_string();
        assert!(error.contains("no instruction count"), "{error}");
    }
}
