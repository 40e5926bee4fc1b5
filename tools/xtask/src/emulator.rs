//! Running the kernel in QEMU and Bochs: building the command line (and for Bochs the GRUB
//! ISO and bochsrc), capturing the serial port to a file while echoing it, enforcing the
//! timeout, and reporting how the run ended.

use crate::artifacts::{self, Artifacts};
use crate::judge::{self, Emulator, Ending, Expectation, Outcome};
use crate::{deps, system};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The machine's memory when a run does not say (enough for the kernel, the loader and
/// small guests).
pub const MEMORY_MIB: u32 = 128;

/// Makes the process `command` starts end when this program does (Linux's parent-death
/// signal): an emulator must not run on after the run that started it was killed (by a
/// test's timeout, or the user).
pub fn dies_with_parent(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
    // which is async-signal-safe; it touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// One emulator run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Which emulator.
    pub emulator: Emulator,
    /// A short name, used for the work directory and log file.
    pub name: String,
    /// The user program passed as the first boot module, if any.
    pub module: Option<PathBuf>,
    /// Kernel command-line words.
    pub cmdline: String,
    /// Kill the emulator after this long (`None`: never, for GDB sessions).
    pub timeout: Option<Duration>,
    /// QEMU only: start halted with a GDB server on :1234.
    pub gdb: bool,
    /// QEMU only: `-icount shift=0`, so the TSC counts instructions.
    pub icount: bool,
    /// Echo serial output to stdout as it arrives.
    pub echo: bool,
    /// QEMU only: connect the second serial port (the XenStore bridge's) to a Unix socket
    /// and, when the toolstack asks for it, drive Xen's XenStore tools through it
    /// ([`host_xenstore_session`]); their output joins the log as `[host]` lines.
    pub host_xenstore: bool,
    /// With `host_xenstore`: `cargo xtask run --ctl`, the operator drives the run with
    /// `cleave ctl` on the third serial port's socket; the host session neither runs its
    /// own `cleave ctl` steps nor ends the run (`cleave ctl --socket PATH shutdown` does).
    pub operator: bool,
    /// With `host_xenstore` and not `operator`: the host's `cleave ctl` session drives
    /// this on-request guest (its console relayed by the toolstack) through a whole life
    /// ([`host_guest_session`]) instead of the system test's steps.
    pub ctl_guest: Option<String>,
    /// With `ctl_guest`: on-request guests the session makes first and takes apart last,
    /// for its guest to reach over the network.
    pub ctl_peers: Vec<String>,
    /// Serial texts that must all have appeared before the host session starts (and so
    /// before it ends the run): each guest's last line, so that a run ends only after its
    /// guests did ([`guests_done`]).
    pub host_waits_for: Vec<String>,
    /// The machine's memory, MiB.
    pub memory_mib: u32,
    /// A guest's console is the machine's second serial port (`console = "com2"`):
    /// connect it to this program's standard input and output, byte for byte (QEMU's
    /// through a Unix socket, [`console_bridge`]; Bochs's through a pseudo-terminal,
    /// [`Pty`]), and keep the system's log (the first serial port) off the terminal.
    pub guest_console: bool,
    /// QEMU only: the machine's disks, raw images attached as legacy virtio-blk PCI
    /// devices (the disk backends'), each at its PCI slot, kept between runs
    /// ([`disk_images_for`]).
    pub disks: Vec<(PathBuf, usize)>,
}

/// The PCI slot of the `index`th machine disk. QEMU's `pc` routes a slot's INTA to the
/// PIIX's PIRQ (slot - 1) mod 4, which its firmware wires to IRQs 10, 10, 11, 11: slot 3
/// is IRQ 11 (the first disk's, as before there were several) and slot 5 is IRQ 10; the
/// firmware places the disks' I/O BARs from 0xc000 up in slot order, 0x80 bytes each.
/// The slots after those share the two lines. (PCIBack will name devices by what they
/// are instead.)
pub fn disk_slot(index: usize) -> usize {
    if index == 0 { 3 } else { index + 4 }
}

/// The machine's disks for `system`, if its guests have disks: under
/// `target/cleave/disks/`, `NAME.img` (NAME the system file's stem) for a system with one,
/// `NAME-DEVICE.img` for each of several (a per-guest disk backend's instances each drive
/// their own); each created empty and grown (never shrunk) to hold its guests' slices.
/// What the guests write stays there for the next run of the same system.
pub fn disk_images_for(system: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let disks = crate::system::machine_disks(system)?;
    let stem = system.file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    let dir = crate::workspace_root().join("target/cleave/disks");
    let mut out = Vec::new();
    for (index, disk) in disks.iter().enumerate() {
        let (device, bytes) = (&disk.device, &disk.bytes);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = if disks.len() == 1 {
            dir.join(format!("{stem}.img"))
        } else {
            dir.join(format!("{stem}-{device}.img"))
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the machine's disk {}", path.display()))?;
        if file.metadata()?.len() < *bytes {
            file.set_len(*bytes).with_context(|| format!("cannot grow {}", path.display()))?;
        }
        out.push((path, disk.slot.map_or_else(|| disk_slot(index), usize::from)));
    }
    Ok(out)
}

/// The machine memory a system needs: [`MEMORY_MIB`] plus twice its guests' RAM (the
/// guests' RAM, and room for the loader's copies of their images).
pub fn memory_for(system: &Path) -> Result<u32> {
    let guests = crate::system::guests_memory(system)?;
    Ok(MEMORY_MIB + u32::try_from((2 * guests) >> 20).unwrap_or(u32::MAX))
}

/// Ctrl-A, then X: ends a run whose terminal is a guest's console (as QEMU's own
/// multiplexer does).
const ESCAPE: u8 = 0x01;

/// How fast typed bytes go to Bochs's second serial port: at most 8 at a time, 30 ms
/// apart. Bochs's UART takes a byte from the terminal at every character time (87 us of
/// its clock at 115200 baud) whether or not its 16-byte receive FIFO has room, and drops
/// what does not fit; the VMM empties the port between guest exits (at least once per
/// guest timer tick, 4 ms for Debian's kernel), so a pasted line longer than the FIFO
/// could lose bytes if it went all at once (QEMU's UART holds the sender back instead).
/// A person types far slower than this; a test driver writing whole lines does not.
const BOCHS_TYPING: (usize, Duration) = (8, Duration::from_millis(30));

/// Connects the guest console's socket (QEMU's second serial port) to this program's
/// standard input and output until QEMU closes it or the user types Ctrl-A X (then
/// `quit` is sent).
fn console_bridge(socket: PathBuf, quit: mpsc::Sender<()>) {
    let stream = (0..200).find_map(|_| {
        std::os::unix::net::UnixStream::connect(&socket).ok().or_else(|| {
            std::thread::sleep(Duration::from_millis(25));
            None
        })
    });
    let Some(stream) = stream else {
        eprintln!("xtask: cannot connect to the guest console at {}", socket.display());
        return;
    };
    let Ok(to_guest) = stream.try_clone() else { return };
    bridge(stream, to_guest, &quit, None);
}

/// A pseudo-terminal for Bochs's second serial port (`mode=term`): Bochs opens the
/// returned path (the terminal's device) and this program keeps the other end.
struct Pty {
    /// The controlling side, this program's.
    master: std::fs::File,
    /// The device side, held open so that the terminal stays up while Bochs opens and
    /// closes it.
    _device: std::fs::File,
    /// The device's path.
    path: PathBuf,
}

impl Pty {
    fn open() -> Result<Self> {
        use std::os::fd::FromRawFd;
        let (mut master, mut device) = (-1, -1);
        // SAFETY: openpty writes two descriptors into the two integers and reads the null
        // pointers as "no name buffer, default settings, default size".
        let status = unsafe {
            libc::openpty(&mut master, &mut device, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
        };
        if status != 0 {
            bail!("cannot open a pseudo-terminal: {}", std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are open and owned by nobody else; each File closes its own.
        let (master, device) =
            unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(device)) };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&device)))
            .context("the pseudo-terminal's device path")?;
        Ok(Self { master, _device: device, path })
    }
}

/// Connects `from_guest`/`to_guest` (a guest's serial console) to this program's standard
/// input and output until the guest's side closes or the user types Ctrl-A X (then `quit`
/// is sent). With a terminal on standard input, it is put in raw mode for the session
/// (`stty`) and restored after. With `pace`, what is typed goes to the guest at most
/// `pace.0` bytes at a time, `pace.1` apart (see [`BOCHS_TYPING`]).
fn bridge(
    mut from_guest: impl Read + Send + 'static,
    mut to_guest: impl Write,
    quit: &mpsc::Sender<()>,
    pace: Option<(usize, Duration)>,
) {
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_guest.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let saved = terminal
        .then(|| Command::new("stty").arg("-g").stdin(Stdio::inherit()).output().ok())
        .flatten()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if terminal {
        let _ = Command::new("stty").args(["raw", "-echo"]).stdin(Stdio::inherit()).status();
    }
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 256];
    let mut escaped = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut forward = Vec::with_capacity(n);
        for &b in &buf[..n] {
            match (escaped, b) {
                (true, b'x' | b'X') => {
                    let _ = quit.send(());
                    if let Some(saved) = &saved {
                        let _ = Command::new("stty").arg(saved).stdin(Stdio::inherit()).status();
                    }
                    return;
                }
                (true, _) => {
                    escaped = false;
                    forward.push(b);
                }
                (false, ESCAPE) => escaped = true,
                (false, _) => forward.push(b),
            }
        }
        let sent = match pace {
            None => to_guest.write_all(&forward),
            Some((chunk, gap)) => forward.chunks(chunk.max(1)).try_for_each(|part| {
                to_guest.write_all(part)?;
                to_guest.flush()?;
                std::thread::sleep(gap);
                Ok(())
            }),
        };
        if sent.is_err() {
            break;
        }
    }
    if let Some(saved) = &saved {
        let _ = Command::new("stty").arg(saved).stdin(Stdio::inherit()).status();
    }
}

/// What a VMM prints when its guest `name` has stopped, for any reason (its start line
/// has a colon after the name instead).
pub fn guest_done(name: &str) -> String {
    format!("vmm: guest '{name}' ")
}

/// [`guest_done`] for every guest of the system description at `system`.
pub fn guests_done(system: &Path) -> Result<Vec<String>> {
    Ok(crate::system::boot_guest_names(system)?.iter().map(|g| guest_done(g)).collect())
}

/// Marks the end of QEMU's output on the line channel (no serial line contains a NUL).
const END_OF_OUTPUT: &str = "\0end of output";

/// What the toolstack prints when it waits for the host's XenStore session.
pub const HOST_XENSTORE_CUE: &str = "toolstack: waiting for the host to write /tool/host-done";

/// The host's side of the XenStore bridge: Xen's own tools, pointed at the socket QEMU
/// connects to the machine's COM2, list the running system's tree, read one node the VGA
/// driver published, and write `/tool/host-done`, which ends the run. Each line to log goes
/// to `emit` as soon as it exists, before the next tool starts, so every line of a step is
/// logged before anything the system prints in reaction to a later step.
pub fn host_xenstore_session(
    socket: &Path,
    ctl: Option<&Path>,
    guest: Option<&str>,
    peers: &[String],
    mut emit: impl FnMut(String),
) {
    let steps: [&[&str]; 3] = [
        &["xenstore-ls", "-f"],
        &["xenstore-read", "/local/domain/1/display/vbe-id"],
        &["xenstore-write", "/tool/host-done", "yes"],
    ];
    for (k, step) in steps.into_iter().enumerate() {
        if k == 2
            && let Some(ctl) = ctl
        {
            match guest {
                Some(guest) => host_guest_session(ctl, guest, peers, &mut emit),
                None => host_ctl_session(ctl, &mut emit),
            }
        }
        emit(format!("[host] $ XENSTORED_PATH={} {}", socket.display(), step.join(" ")));
        match Command::new(step[0]).args(&step[1..]).env("XENSTORED_PATH", socket).output() {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines().for_each(|l| emit(format!("[host] {l}")));
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    emit(format!("[host] {} failed ({}): {}", step[0], out.status, err.trim()));
                }
            }
            Err(e) => emit(format!("[host] cannot run {} (cargo xtask deps installs it): {e}", step[0])),
        }
    }
}

/// The operator's side of the toolstack's line, as `cleave ctl` drives it: what the
/// system is, a restart, the privilege table and a guest's exposure; then requests it must
/// refuse (a component that is not restartable, a disposable one, an unknown command, a
/// line too long, bytes that are not text) and a client that leaves in the middle of a
/// request, after each of which the line must still answer.
/// Logs a `cleave ctl` request (`what`) and its reply as `[host]` lines, as the operator
/// would see them.
fn show(emit: &mut dyn FnMut(String), what: &str, reply: &Result<cleave::ctl::Reply, String>) {
    emit(format!("[host] $ cleave ctl {what}"));
    match reply {
        Ok(reply) => {
            reply.body.iter().for_each(|l| emit(format!("[host] {l}")));
            match &reply.status {
                Ok(()) => emit("[host] ok".into()),
                Err(why) => emit(format!("[host] error: {why}")),
            }
        }
        Err(e) => emit(format!("[host] {e}")),
    }
}

pub fn host_ctl_session(ctl: &Path, emit: &mut impl FnMut(String)) {
    use std::time::Duration;
    let timeout = Duration::from_secs(10);
    let words = |text: &str| text.split(' ').map(String::from).collect::<Vec<_>>();
    for request in
        ["list", "restart xenstore-logic", "restart vga", "restart bootstrap", "exposure alice", "privileges"]
    {
        show(emit, request, &cleave::ctl::request(ctl, &words(request), timeout));
    }
    let long = "x".repeat(cleave_ctl::MAX_LINE + 100);
    let raw: [(&str, &[u8]); 3] = [
        ("(raw) frobnicate --now", b"frobnicate --now"),
        ("(raw) a 300-byte line", long.as_bytes()),
        ("(raw) bytes that are not UTF-8", b"list \xff\xfe"),
    ];
    for (what, bytes) in raw {
        show(emit, what, &cleave::ctl::exchange(ctl, bytes, timeout));
    }
    // Half a request, then gone: the next client's request is answered, and the half one
    // is never carried out (carried out, it would end the run before this session writes
    // /tool/host-done, and the system test expects that write's `Some("yes")`).
    match std::os::unix::net::UnixStream::connect(ctl) {
        Ok(mut half) => {
            let _ = std::io::Write::write_all(&mut half, b"shutdown");
            emit("[host] $ (a client sends `shutdown` without its newline and leaves)".into());
        }
        Err(e) => emit(format!("[host] cannot connect to {}: {e}", ctl.display())),
    }
    show(emit, "exposure bob", &cleave::ctl::request(ctl, &words("exposure bob"), timeout));
    // An on-request guest, made, refused twice over, destroyed, refused, made again; and
    // guests the Builder cannot make. Each `create` gives the guest a moment to run.
    let steps: [(&str, u64); 11] = [
        ("console alice", 0),
        ("console nobody", 0),
        ("restart vmm-carol", 0),
        ("create alice", 0),
        ("create nobody", 0),
        ("create carol", 1500),
        ("create carol", 0),
        ("destroy carol", 0),
        ("destroy carol", 0),
        ("create carol", 1500),
        ("list", 0),
    ];
    for (request, wait_ms) in steps {
        show(emit, request, &cleave::ctl::request(ctl, &words(request), timeout));
        std::thread::sleep(Duration::from_millis(wait_ms));
    }
    // The running system's audit log: every writer checked, then a question of it.
    show_audit(emit, ctl, &[]);
    show_audit(emit, ctl, &["--component", "vmm-carol", "--from", "0", "--to", "18446744073709551615"]);
}

/// Logs `cleave ctl audit QUESTION` and its answer as `[host]` lines; of the whole log
/// (no question), its header, how many lines it has, and the lines that show who wrote
/// them: the loader's `boot`, the supervisor's first restart of XenStore-Logic, and the
/// Builder's builds and destroys.
fn show_audit(emit: &mut dyn FnMut(String), ctl: &Path, question: &[&str]) {
    let words: Vec<String> = question.iter().map(|w| w.to_string()).collect();
    emit(format!("[host] $ cleave ctl audit {}", question.join(" ")));
    match cleave::ctl::audit(ctl, &words) {
        Ok(text) if question.is_empty() => {
            let mut lines = text.lines();
            lines.next().into_iter().for_each(|header| emit(format!("[host] {header}")));
            let events: Vec<&str> = lines.collect();
            emit(format!("[host] ({} events, each writer checked)", events.len()));
            let shown = |l: &&&str| {
                l.ends_with(" boot")
                    || l.ends_with(" restart xenstore-logic#1 xenstore-logic#2")
                    || l.contains(" builder build ")
                    || l.contains(" builder destroy ")
            };
            events.iter().filter(shown).for_each(|l| emit(format!("[host] {l}")));
        }
        Ok(text) => text.lines().for_each(|l| emit(format!("[host] {l}"))),
        Err(e) => emit(format!("[host] {}", e.trim_end())),
    }
}

/// What the host's guest session prints when a check held (`ctl-linux` looks for them).
pub mod guest_session {
    /// The shell answered through the relayed console.
    pub const SHELL: &str = "[host] console: the shell answered SUM=42";
    /// The disk loop ran across blkback's restarts with every read-back right.
    pub const IO: &str = "[host] disk under blkback restarts: every read-back matched";
    /// The disk held the data after the guest was destroyed and made again.
    pub const KEPT: &str = "[host] the guest made again reads its disk as the first one left it";
    /// The guest reached its peer over the network (said once for each VMM it had).
    pub const NET: &str = "[host] network: the guest's pings reached its peer";
}

/// Has the guest ping its peer on the switch (`systems/ctl-linux.toml`'s `peer`, which may
/// still be booting: up to 60 tries) and says [`guest_session::NET`] if one came back.
fn ping_peer(console: &mut cleave::ctl::Console, e: &mut impl FnMut(String)) -> Result<(), String> {
    let answer = console_value(
        console,
        "PING",
        "n=0; while [ $n -lt 60 ]; do ping -c 1 -W 2 169.254.0.2 >/dev/null 2>&1 && break; n=$((n+1)); done; echo $n",
        std::time::Duration::from_secs(300),
        e,
    )?;
    if answer.parse::<u32>().is_ok_and(|n| n < 60) {
        e(guest_session::NET.into());
    }
    Ok(())
}

/// Types `command` at the console and returns its output's value, printed as
/// `key=VALUE` up to the line's end (the typed line's echo shows `"key""=`, which does
/// not match; a key is one no output of the command holds).
fn console_value(
    console: &mut cleave::ctl::Console,
    key: &str,
    command: &str,
    timeout: std::time::Duration,
    emit: &mut impl FnMut(String),
) -> Result<String, String> {
    console.send(format!("echo \"{key}\"\"=$({command})\"\n").as_bytes())?;
    let before = console.wait_for(&format!("{key}="), timeout)?;
    let value = console.wait_for("\n", timeout)?;
    let text = before + &value;
    for line in text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
        emit(format!("[host] | {line}"));
    }
    Ok(value.trim().to_string())
}

/// The host's side of a whole guest life through `cleave ctl` (`systems/ctl-linux.toml`):
/// `list`; `create GUEST` (the Builder makes its RAM, the supervisor starts its VMM);
/// `console GUEST` reaches the shell, which answers, writes 1 MiB of random data to its
/// disk and goes on writing and reading it back in a loop; detached, `restart blkback`
/// twice under that I/O; attached again, the loop stops and says whether every read-back
/// matched; `destroy GUEST` and `list` (its RAM back in the Builder's pool); `create
/// GUEST` again (a fresh Builder instance, a fresh VMM), whose disk still holds the data;
/// `destroy GUEST`. Each check that holds prints one of [`guest_session`]'s lines.
pub fn host_guest_session(ctl: &Path, guest: &str, peers: &[String], emit: &mut impl FnMut(String)) {
    if let Err(e) = guest_life(ctl, guest, peers, emit) {
        emit(format!("[host] the guest session stopped: {e}"));
        // The guests go (so the run can end).
        for g in peers.iter().map(String::as_str).chain([guest]) {
            let _ =
                cleave::ctl::request(ctl, &[String::from("destroy"), g.to_string()], Duration::from_secs(10));
        }
    }
}

fn guest_life(
    ctl: &Path,
    guest: &str,
    peers: &[String],
    emit: &mut impl FnMut(String),
) -> Result<(), String> {
    use std::time::Duration;
    let short = Duration::from_secs(30);
    let boot = Duration::from_secs(600);
    // A request, logged; its refusal (or no reply) stops the session.
    let ask = |emit: &mut dyn FnMut(String), words: &[&str]| -> Result<(), String> {
        let owned: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let reply = cleave::ctl::request(ctl, &owned, short);
        show(emit, &words.join(" "), &reply);
        reply?.status
    };
    // Attaches to the guest's console and waits for its shell (it was just created).
    let attach_booted = |emit: &mut dyn FnMut(String)| -> Result<cleave::ctl::Console, String> {
        emit(format!("[host] $ cleave ctl console {guest}"));
        let mut console = cleave::ctl::Console::attach(ctl, guest, short)?;
        console.wait_for(crate::linux::initramfs::INIT_DONE, boot)?;
        console.wait_for(crate::linux::initramfs::PROMPT, short)?;
        Ok(console)
    };
    let mut e = |line: String| emit(line);
    ask(&mut e, &["list"])?;
    for peer in peers {
        ask(&mut e, &["create", peer])?;
    }
    ask(&mut e, &["create", guest])?;
    let mut console = attach_booted(&mut e)?;
    if console_value(&mut console, "SUM", "echo $((6*7))", short, &mut e)? == "42" {
        e(guest_session::SHELL.into());
    }
    ping_peer(&mut console, &mut e)?;
    let wrote = console_value(
        &mut console,
        "R",
        "dd if=/dev/urandom of=/tmp/r bs=65536 count=16 2>/dev/null; dd if=/tmp/r of=/dev/vda bs=65536 oflag=direct 2>/dev/null; sha256sum /tmp/r | cut -c1-16",
        short,
        &mut e,
    )?;
    // The loop: the whole 1 MiB written and read back, round after round, until told to
    // stop; the count of read-backs that did not match at the end.
    console.send(
        format!(
            "(n=0; b=0; while [ ! -e /tmp/stop ]; do dd if=/tmp/r of=/dev/vda bs=65536 oflag=direct 2>/dev/null; s=$(dd if=/dev/vda bs=65536 count=16 iflag=direct 2>/dev/null | sha256sum | cut -c1-16); [ \"$s\" = \"{wrote}\" ] || b=$((b+1)); n=$((n+1)); done; echo \"IO\"\"=$n $b\") &\n"
        )
        .as_bytes(),
    )?;
    console.wait_for(crate::linux::initramfs::PROMPT, short)?;
    std::thread::sleep(Duration::from_secs(2));
    e(format!("[host] (detached from {guest}'s console; its disk loop runs on)"));
    console.detach(short)?;
    for _ in 0..2 {
        ask(&mut e, &["restart", "blkback"])?;
        std::thread::sleep(Duration::from_secs(2));
    }
    // A client that attaches, types half a line and leaves attached: the next client's
    // request is answered (it detaches first: without that, its request would be typed at
    // the guest).
    e(format!(
        "[host] $ (a client attaches to {guest}'s console, types `echo half-typed` without its newline and leaves)"
    ));
    let mut gone = cleave::ctl::Console::attach(ctl, guest, short)?;
    gone.send(b"echo half-typed")?;
    drop(gone);
    ask(&mut e, &["list"])?;
    e(format!("[host] $ cleave ctl console {guest}"));
    let mut console = cleave::ctl::Console::attach(ctl, guest, short)?;
    // (The newline ends the half-typed line the client that left attached typed.)
    console.send(b"\ntouch /tmp/stop\n")?;
    // (The typed loop shows `"IO""=`: only its output has `IO=`.)
    let before = console.wait_for("IO=", Duration::from_secs(120))?;
    let counts = console.wait_for("\n", short)?;
    let text = before + &counts;
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .for_each(|l| e(format!("[host] | {l}")));
    let (rounds, bad) = counts.trim().split_once(' ').ok_or("the loop's counts do not read")?;
    e(format!(
        "[host] the disk loop: {rounds} rounds of 1 MiB written and read back, {bad} read-backs wrong"
    ));
    if bad == "0" && rounds.parse::<u32>().is_ok_and(|n| n > 0) {
        e(guest_session::IO.into());
    }
    console.detach(short)?;
    ask(&mut e, &["destroy", guest])?;
    ask(&mut e, &["list"])?;
    ask(&mut e, &["create", guest])?;
    let mut console = attach_booted(&mut e)?;
    let read = console_value(
        &mut console,
        "D",
        "dd if=/dev/vda bs=65536 count=16 iflag=direct 2>/dev/null | sha256sum | cut -c1-16",
        short,
        &mut e,
    )?;
    e(format!("[host] the first guest wrote {wrote}; the one made again read {read}"));
    // Its new VMM has the old one's pipes, which netback takes over.
    ping_peer(&mut console, &mut e)?;
    if read == wrote {
        e(guest_session::KEPT.into());
    }
    console.detach(short)?;
    ask(&mut e, &["destroy", guest])?;
    for peer in peers {
        ask(&mut e, &["destroy", peer])?;
    }
    ask(&mut e, &["list"])?;
    // Who relied on blkback, asked of the running system's own audit log (the test
    // compares the answer with the one the host's copy gives).
    show_audit(&mut e, ctl, &["--component", "blkback", "--from", "0", "--to", "18446744073709551615"]);
    Ok(())
}

/// How a run went.
#[derive(Debug)]
pub struct Finished {
    /// How the emulator ended.
    pub ending: Ending,
    /// Everything the serial port printed (CR removed).
    pub serial: String,
    /// Where the serial output was saved.
    pub log: PathBuf,
    /// When each serial line arrived, measured from the emulator's start.
    pub arrivals: Vec<Duration>,
}

impl Finished {
    /// The last `n` serial lines.
    pub fn tail(&self, n: usize) -> Vec<&str> {
        let lines: Vec<&str> = self.serial.lines().collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// When the first line containing `text` arrived.
    pub fn arrival_of(&self, text: &str) -> Option<Duration> {
        self.serial.lines().zip(&self.arrivals).find(|(l, _)| l.contains(text)).map(|(_, t)| *t)
    }
}

impl Run {
    /// Boots the kernel with this run's settings and waits for it to end.
    pub fn execute(&self, artifacts: &Artifacts) -> Result<Finished> {
        let dir = artifacts.work.join(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("serial.log");
        match self.emulator {
            Emulator::Qemu => self.execute_qemu(artifacts, log),
            Emulator::Bochs => self.execute_bochs(artifacts, &dir, log),
        }
    }

    fn execute_qemu(&self, artifacts: &Artifacts, log: PathBuf) -> Result<Finished> {
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-machine", "pc", "-cpu", "max", "-accel", "tcg"])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
            // No network card: guests' networks exist only inside the machine, never through
            // QEMU's user networking (the default NIC's backend).
            .args(["-nic", "none"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&artifacts.kernel)
            .args(["-append", &self.cmdline]);
        if let Some(module) = &self.module {
            // QEMU splits -initrd at commas; our paths never contain one.
            command.arg("-initrd").arg(module);
        }
        if self.icount {
            command.args(["-icount", "shift=0"]);
        }
        for (i, (disk, slot)) in self.disks.iter().enumerate() {
            // Legacy virtio (an I/O BAR, INTx) only: the disk backends' driver.
            command
                .arg("-drive")
                .arg(format!("file={},format=raw,if=none,id=disk{i}", disk.display()))
                .arg("-device")
                // QEMU reads the slot in hex.
                .arg(format!("virtio-blk-pci,drive=disk{i},disable-modern=on,addr={slot:x}"));
        }
        // The XenStore bridge's serial port, a Unix socket QEMU listens on (short, in the
        // temporary directory: socket paths are limited to 108 bytes).
        let socket = self.host_xenstore.then(|| {
            std::env::temp_dir().join(format!("cleave-xs-{}-{}.sock", std::process::id(), self.name))
        });
        if let Some(socket) = &socket {
            let _ = std::fs::remove_file(socket);
            command.arg("-serial").arg(format!("unix:{},server=on,wait=off", socket.display()));
        }
        // A guest's console on the second serial port: a socket this program bridges to
        // the terminal.
        let console = self.guest_console.then(|| {
            std::env::temp_dir().join(format!("cleave-console-{}-{}.sock", std::process::id(), self.name))
        });
        if let Some(console) = &console {
            let _ = std::fs::remove_file(console);
            command.arg("-serial").arg(format!("unix:{},server=on,wait=off", console.display()));
        }
        // The toolstack's operator line (`cleave ctl`), the third serial port, with the
        // XenStore bridge's.
        let ctl = self.host_xenstore.then(|| {
            std::env::temp_dir().join(format!("cleave-ctl-{}-{}.sock", std::process::id(), self.name))
        });
        if let Some(ctl) = &ctl {
            if console.is_some() {
                bail!("a guest console and the operator's line cannot both be connected");
            }
            let _ = std::fs::remove_file(ctl);
            command.arg("-serial").arg(format!("unix:{},server=on,wait=off", ctl.display()));
        }
        if self.gdb {
            command.args(["-s", "-S"]);
            println!("QEMU is waiting for GDB on localhost:1234. In another terminal:");
            println!(
                "  gdb {} -ex 'target remote localhost:1234' -ex 'break kernel_entry' -ex continue",
                artifacts.kernel.display()
            );
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = dies_with_parent(&mut command).spawn().context("cannot start qemu-system-x86_64")?;
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let (sender, lines) = mpsc::channel();
        let host_sender = sender.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                let text = String::from_utf8_lossy(&line).replace('\r', "");
                if sender.send((text, start.elapsed())).is_err() {
                    break;
                }
                line.clear();
            }
            // QEMU's output ended (host-session threads may still hold senders).
            let _ = sender.send((String::from(END_OF_OUTPUT), start.elapsed()));
        });
        let (quit_sender, quit) = mpsc::channel();
        if let Some(console) = console.clone() {
            println!(
                "xtask: the system's log goes to {}; this terminal is the guest's console (Ctrl-A X ends the run)",
                log.display()
            );
            std::thread::spawn(move || console_bridge(console, quit_sender));
        }
        let mut capture = Capture::new(Some(&log), self.echo && console.is_none())?;
        let deadline = self.timeout.map(|t| start + t);
        // The host session starts once the toolstack asks for it and every awaited text
        // has appeared, whichever comes last.
        let mut cue_seen = false;
        let mut awaited = self.host_waits_for.clone();
        let ending = loop {
            let wait =
                deadline.map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()));
            match lines.recv_timeout(wait.min(Duration::from_millis(200))) {
                Ok((text, _)) if text == END_OF_OUTPUT => break wait_exit(&mut child)?,
                Ok((text, at)) => {
                    let was_ready = cue_seen && awaited.is_empty();
                    cue_seen |= text.contains(HOST_XENSTORE_CUE);
                    awaited.retain(|a| !text.contains(a.as_str()));
                    let ready = cue_seen && awaited.is_empty() && !was_ready;
                    if let Some(socket) = socket.as_ref().filter(|_| ready) {
                        let (socket, sender) = (socket.clone(), host_sender.clone());
                        let (ctl, operator, guest) = (ctl.clone(), self.operator, self.ctl_guest.clone());
                        let peers = self.ctl_peers.clone();
                        std::thread::spawn(move || {
                            let emit = |line: String| {
                                let _ = sender.send((line + "\n", start.elapsed()));
                            };
                            match (&ctl, operator) {
                                (Some(ctl), true) => emit(format!(
                                    "[host] the operator's line is up: cleave ctl --socket {} list (help lists the commands; shutdown ends the run)",
                                    ctl.display()
                                )),
                                _ => host_xenstore_session(
                                    &socket,
                                    ctl.as_deref(),
                                    guest.as_deref(),
                                    &peers,
                                    emit,
                                ),
                            }
                        });
                    }
                    capture.add(&text, at)?
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break wait_exit(&mut child)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break kill(&mut child);
                    }
                }
            }
            if quit.try_recv().is_ok() {
                child.kill().ok();
                child.wait().ok();
                break Ending::Quit;
            }
        };
        if let Ending::Exited(1) = ending {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut stderr).ok();
            }
            if !stderr.trim().is_empty() {
                eprintln!("QEMU said: {}", stderr.trim());
            }
        }
        for path in socket.iter().chain(console.iter()).chain(ctl.iter()) {
            let _ = std::fs::remove_file(path);
        }
        Ok(capture.finish(ending, log))
    }

    fn execute_bochs(&self, artifacts: &Artifacts, dir: &Path, log: PathBuf) -> Result<Finished> {
        let iso = make_iso(artifacts, dir, self.module.as_deref(), &self.cmdline)?;
        let bochsrc = dir.join("bochsrc");
        let mut config = bochs_config(&iso, &log, &dir.join("bochs.log"), self.memory_mib);
        // A guest's console: the second serial port on a pseudo-terminal bridged to this
        // program's standard input and output.
        let pty = self.guest_console.then(Pty::open).transpose()?;
        if let Some(pty) = &pty {
            config.push_str(&format!("com2: enabled=1, mode=term, dev={}\n", pty.path.display()));
        }
        std::fs::write(&bochsrc, config)?;
        let commands = dir.join("debugger.rc");
        // Bochs stops in its debugger before the first instruction and at the magic
        // breakpoint: continue, then quit (exit status 0).
        std::fs::write(&commands, "c\nquit\n")?;
        std::fs::write(&log, "")?;
        let output = std::fs::File::create(dir.join("bochs.out"))?;
        let start = Instant::now();
        let mut child = dies_with_parent(&mut Command::new("bochs"))
            .arg("-q")
            .arg("-f")
            .arg(&bochsrc)
            .arg("-rc")
            .arg(&commands)
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("cannot start bochs")?;
        let (quit_sender, quit) = mpsc::channel();
        if let Some(pty) = &pty {
            println!(
                "xtask: the system's log goes to {}; this terminal is the guest's console (Ctrl-A X ends the run)",
                log.display()
            );
            let (from_guest, to_guest) = (pty.master.try_clone()?, pty.master.try_clone()?);
            std::thread::spawn(move || bridge(from_guest, to_guest, &quit_sender, Some(BOCHS_TYPING)));
        }
        // Bochs writes the serial log itself; the capture only echoes and times it.
        let mut capture = Capture::new(None, self.echo && pty.is_none())?;
        let mut serial = std::fs::File::open(&log)?;
        let mut pending = Vec::new();
        let mut poll = |capture: &mut Capture| -> Result<()> {
            let mut chunk = Vec::new();
            serial.read_to_end(&mut chunk)?;
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                capture.add(&String::from_utf8_lossy(&line).replace('\r', ""), start.elapsed())?;
            }
            Ok(())
        };
        let deadline = self.timeout.map(|t| start + t);
        let ending = loop {
            poll(&mut capture)?;
            if let Some(status) = child.try_wait()? {
                break status.code().map_or(Ending::Signalled, Ending::Exited);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break kill(&mut child);
            }
            if quit.try_recv().is_ok() {
                child.kill().ok();
                child.wait().ok();
                break Ending::Quit;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        poll(&mut capture)?;
        if !pending.is_empty() {
            capture.add(&String::from_utf8_lossy(&pending).replace('\r', ""), start.elapsed())?;
        }
        Ok(capture.finish(ending, log))
    }
}

/// Serial lines as they arrive: saved, optionally echoed, timed.
struct Capture {
    file: Option<std::fs::File>,
    echo: bool,
    serial: String,
    arrivals: Vec<Duration>,
}

impl Capture {
    fn new(path: Option<&Path>, echo: bool) -> Result<Self> {
        let file = path
            .map(|p| std::fs::File::create(p).with_context(|| format!("creating {}", p.display())))
            .transpose()?;
        Ok(Self { file, echo, serial: String::new(), arrivals: Vec::new() })
    }

    fn add(&mut self, line: &str, at: Duration) -> Result<()> {
        if let Some(file) = &mut self.file {
            file.write_all(line.as_bytes())?;
        }
        if self.echo {
            print!("{line}");
            std::io::stdout().flush().ok();
        }
        self.serial.push_str(line);
        self.arrivals.extend(std::iter::repeat_n(at, line.matches('\n').count().max(1)));
        Ok(())
    }

    fn finish(self, ending: Ending, log: PathBuf) -> Finished {
        // The audit events, as the log file `cleave audit` reads, next to the serial log.
        let audit = audit_log(&self.serial);
        if !audit.is_empty() {
            let _ = std::fs::write(log.with_file_name("audit.log"), &audit);
        }
        Finished { ending, serial: self.serial, log, arrivals: self.arrivals }
    }
}

fn wait_exit(child: &mut Child) -> Result<Ending> {
    let status = child.wait()?;
    Ok(status.code().map_or(Ending::Signalled, Ending::Exited))
}

fn kill(child: &mut Child) -> Ending {
    child.kill().ok();
    child.wait().ok();
    Ending::TimedOut
}

/// Builds a GRUB rescue ISO that boots the kernel with `module` as its first module.
fn make_iso(artifacts: &Artifacts, dir: &Path, module: Option<&Path>, cmdline: &str) -> Result<PathBuf> {
    let root = dir.join("iso");
    let boot = root.join("boot");
    std::fs::create_dir_all(boot.join("grub"))?;
    std::fs::copy(&artifacts.kernel, boot.join("kernel.elf"))?;
    let mut config = format!(
        "set timeout=0\nset default=0\nmenuentry \"Cleave\" {{\n  multiboot /boot/kernel.elf {cmdline}\n"
    );
    if let Some(module) = module {
        let name = module.file_name().and_then(|n| n.to_str()).context("module file name")?;
        std::fs::copy(module, boot.join(name))?;
        config.push_str(&format!("  module /boot/{name} {name}\n"));
    }
    config.push_str("  boot\n}\n");
    std::fs::write(boot.join("grub").join("grub.cfg"), config)?;
    let iso = dir.join("cleave.iso");
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .context("cannot run grub-mkrescue")?;
    if !output.status.success() {
        bail!("grub-mkrescue failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(iso)
}

/// A bochsrc for a headless run of `iso` with a VT-x capable CPU model.
fn bochs_config(iso: &Path, serial: &Path, log: &Path, memory_mib: u32) -> String {
    format!(
        "# Generated by cargo xtask.\n\
         cpu: model=corei7_skylake_x, count=1, ips=50000000, reset_on_triple_fault=0\n\
         megs: {memory_mib}\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         ata0-master: type=cdrom, path={}, status=inserted\n\
         boot: cdrom\n\
         clock: sync=none\n\
         com1: enabled=1, mode=file, dev={}\n\
         magic_break: enabled=1\n\
         display_library: term\n\
         sound: driver=dummy\n\
         speaker: enabled=0\n\
         mouse: enabled=0\n\
         panic: action=fatal\n\
         log: {}\n",
        iso.display(),
        serial.display(),
        log.display()
    )
}

/// The audit log a run's serial output carries: the kernel's `audit: TIME WRITER EVENT`
/// lines, without the prefix, in time order (as the kernel stamped them; a component's own
/// line that starts so reaches the console as `audit? ...`). Empty if there are none.
pub fn audit_log(serial: &str) -> String {
    let mut events: Vec<(u64, &str)> = serial
        .lines()
        .filter_map(|l| l.strip_prefix("audit: "))
        .filter_map(|e| Some((e.split_whitespace().next()?.parse().ok()?, e)))
        .collect();
    events.sort_by_key(|&(t, _)| t);
    events.iter().map(|(_, e)| format!("{e}\n")).collect()
}

/// Prints why a run failed and the last serial lines.
pub fn report_failure(run: &Run, finished: &Finished, reason: &str) {
    println!("--- {} FAILED: {reason}", run.name);
    println!("--- last 40 serial lines ({}):", finished.log.display());
    for line in finished.tail(40) {
        println!("    | {line}");
    }
}

/// `cargo xtask run`: builds `system` and boots the root task it names.
pub fn run_system(
    system: &Path,
    gdb: bool,
    bochs: bool,
    icount: bool,
    operator: bool,
    cmdline: &str,
) -> Result<bool> {
    let (mut run, artifacts) = system_run(system, gdb, bochs, cmdline)?;
    run.icount = icount;
    if operator {
        if !run.host_xenstore {
            bail!(
                "{}: --ctl needs the toolstack's line, which a run with a guest console has not",
                system.display()
            );
        }
        run.operator = true;
        run.timeout = None;
    }
    let guest_console = run.guest_console;
    if bochs && !run.disks.is_empty() {
        bail!(
            "{}: its guests have disks, which the machine's virtio-blk device backs; Bochs has none: run it in QEMU",
            system.display()
        );
    }
    let finished = run.execute(&artifacts)?;
    if guest_console {
        println!(
            "\r\nxtask: the run ended ({:?}); the system's log is {}",
            finished.ending,
            finished.log.display()
        );
        for line in finished.serial.lines().filter(|l| l.starts_with("vmm: guest ")) {
            println!("{line}");
        }
    }
    // A system with a component that may end the run must end it; one without (guests
    // only) ends when nothing is left to run, or when the user quits its console.
    let outcome = if system::ends_run(system)? { Outcome::Success } else { Outcome::Idle };
    if finished.ending == Ending::Quit {
        return Ok(true);
    }
    let expect = Expectation { outcome, judges_itself: false, anywhere: &[], patterns: &[] };
    match judge::judge(run.emulator, &expect, finished.ending, &finished.serial) {
        Ok(()) => Ok(true),
        Err(reason) => {
            println!("xtask: the run did not succeed: {reason} (serial log: {})", finished.log.display());
            Ok(false)
        }
    }
}

/// Boots `system` in QEMU as `cargo xtask run` does, but under `-icount shift=0` (the TSC,
/// and so every guest's clock, counts instructions of the whole machine) and quietly, for
/// benchmarks; the run must end by itself within `timeout`.
pub fn run_system_icount(system: &Path, timeout: Duration) -> Result<Finished> {
    let (mut run, artifacts) = system_run(system, false, false, "")?;
    run.name = "bench-system".into();
    run.icount = true;
    run.echo = false;
    run.timeout = Some(timeout);
    run.execute(&artifacts)
}

/// The run `cargo xtask run` makes of `system`, and its built artifacts.
fn system_run(system: &Path, gdb: bool, bochs: bool, cmdline: &str) -> Result<(Run, Artifacts)> {
    deps::ensure()?;
    let root_program = system::root_program(system)?;
    let artifacts = artifacts::build(system, artifacts::Scope::System)?;
    let guest_console = system::has_com2_console(system)?;
    let run = Run {
        emulator: if bochs { Emulator::Bochs } else { Emulator::Qemu },
        name: "run".into(),
        module: Some(artifacts.program(&root_program)?),
        cmdline: cmdline.into(),
        // A guest's console on the terminal runs until the guest ends it or the user does;
        // Linux guests take longer to boot than the test guest.
        timeout: if gdb || guest_console {
            None
        } else if system::has_linux_guest(system)? {
            Some(Duration::from_secs(if bochs { 3600 } else { 600 }))
        } else {
            Some(Duration::from_secs(if bochs { 120 } else { 60 }))
        },
        gdb,
        icount: false,
        echo: true,
        host_xenstore: !bochs && !guest_console,
        operator: false,
        host_waits_for: guests_done(system)?,
        ctl_guest: system::ctl_console_guest(system)?,
        ctl_peers: system::ctl_peer_guests(system)?,
        memory_mib: memory_for(system)?,
        guest_console,
        disks: disk_images_for(system)?,
    };
    Ok((run, artifacts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_the_prefixed_lines_in_time_order() {
        let serial = "loader: built\naudit: 10 loader boot\nvmm: x\naudit: 30 vmm-a serve a vmm-a#1\naudit: 20 loader start vmm-a#1\naudit: junk\naudit? 5 loader boot\n";
        assert_eq!(audit_log(serial), "10 loader boot\n20 loader start vmm-a#1\n30 vmm-a serve a vmm-a#1\n");
        assert_eq!(audit_log("no events\n"), "");
    }
}
