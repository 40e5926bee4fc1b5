//! The I/O path's figures (`cargo xtask bench io`), as Xoar measured its Block and Network
//! components: a Linux guest's disk throughput and instructions per 4 KiB request, beside
//! the same workload run directly in QEMU on the same kind of virtio disk; guest-to-guest
//! `wget` throughput and instructions per packet; a small-file workload in the spirit of
//! Postmark (files created, read, appended, deleted on ext2 mounted `sync`), beside QEMU
//! alone too; and each again with blkback and netback restarted every second and every
//! 200 ms.
//!
//! Every run is under QEMU `-icount shift=0`: the TSC advances once per instruction the
//! emulated processor executes (the kernel's, the components', the VMMs' and the guests'),
//! and the guests' clocks follow it, so a guest's microsecond is 1000 instructions of the
//! whole machine and throughput is in bytes per second of that virtual time. One run each:
//! ratios and instruction counts, not wall time, on a noisy machine.

use super::initramfs::{DISK_BENCH, FS_BENCH, NET_BENCH};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one run may take (icount slows QEMU down).
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

/// Instructions per microsecond of guest time under `-icount shift=0` (1 GHz).
const INSTRUCTIONS_PER_US: f64 = 1e3;

/// The whole numbers in `report`, in order (a number too long for u64 makes it unreadable).
fn numbers(report: &str) -> Vec<u64> {
    report
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap_or(u64::MAX))
        .collect()
}

/// The disk workload's figures: microseconds for 64 MiB written, 64 MiB read (64 KiB
/// blocks, past the page cache) and 4096 reads of 4 KiB.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Disk {
    write_us: f64,
    read_us: f64,
    small_us: f64,
}

impl Disk {
    /// From a guest's report: `64 MiB written in N us, read in N us; 4096 reads of 4 KiB in N us`.
    fn parse(report: &str) -> Option<Self> {
        match numbers(report)[..] {
            [64, write, read, 4096, 4, small] if write > 0 && read > 0 && small > 0 => {
                Some(Self { write_us: write as f64, read_us: read as f64, small_us: small as f64 })
            }
            _ => None,
        }
    }

    fn write_mib_s(&self) -> f64 {
        64.0 / (self.write_us / 1e6)
    }

    fn read_mib_s(&self) -> f64 {
        64.0 / (self.read_us / 1e6)
    }

    fn instructions_per_4k(&self) -> f64 {
        self.small_us * INSTRUCTIONS_PER_US / 4096.0
    }
}

/// The small-file workload's figures: microseconds for 200 files created, 400
/// transactions (read, append, delete, create, in turn) and the rest deleted.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fs {
    create_us: f64,
    transactions_us: f64,
    delete_us: f64,
}

impl Fs {
    /// From a guest's report: `200 files created in N us, 400 transactions in N us, deleted in N us`.
    fn parse(report: &str) -> Option<Self> {
        match numbers(report)[..] {
            [200, create, 400, transactions, delete] if transactions > 0 => Some(Self {
                create_us: create as f64,
                transactions_us: transactions as f64,
                delete_us: delete as f64,
            }),
            _ => None,
        }
    }

    fn transactions_per_s(&self) -> f64 {
        400.0 / (self.transactions_us / 1e6)
    }

    /// The whole workload: creations, transactions and deletions.
    fn operations_per_s(&self) -> f64 {
        let all = self.create_us + self.transactions_us + self.delete_us;
        (200.0 + 400.0 + 200.0) / (all.max(1.0) / 1e6)
    }
}

/// The network workload's figures: microseconds for 16 MiB fetched, and the packets the
/// fetcher's card sent and received meanwhile.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Net {
    us: f64,
    packets: f64,
}

impl Net {
    /// From a fetcher's report: `16777216 bytes in N us, P packets`.
    fn parse(report: &str) -> Option<Self> {
        match numbers(report)[..] {
            [16_777_216, us, packets] if us > 0 && packets > 0 => {
                Some(Self { us: us as f64, packets: packets as f64 })
            }
            _ => None,
        }
    }

    fn mib_s(&self) -> f64 {
        16.0 / (self.us / 1e6)
    }

    fn instructions_per_packet(&self) -> f64 {
        self.us * INSTRUCTIONS_PER_US / self.packets
    }
}

/// The system each Cleave run boots: alice benchmarks her disk, then serves 16 MiB; bob
/// fetches it. `restart` is the backends' restart period, if any.
fn system(restart: Option<&str>) -> String {
    // A restarted backend's writable memory is sized (`memory`); a backend that is not
    // restarted has its program's own, and `memory` there is refused.
    let (blk, net) = match restart {
        Some(every) => (
            format!("restart = {{ every = \"{every}\" }}\nmemory = \"160K\"\n"),
            format!("restart = {{ every = \"{every}\" }}\nmemory = \"96K\"\n"),
        ),
        None => (String::new(), String::new()),
    };
    let cmdline =
        "console=ttyS0 nolapic acpi=off pci=nomsi tsc=reliable tsc_early_khz=1000000 reboot=k panic=-1";
    format!(
        "# Generated by `cargo xtask bench io` (tools/xtask/src/linux/io_bench.rs).\n\
         [system]\nroot = \"loader\"\n\n\
         [components.blkback]\npriority = 120\n{blk}\n\
         [components.netback]\npriority = 120\n{net}\n\
         [devices.disk]\nowner = \"blkback\"\npci = \"1af4:1001\"\nio-ports = \"0xc000-0xc07f\"\nirq = 11\ndma = \"2M\"\n\n\
         [guests.alice]\nmemory = \"128M\"\nimage = \"linux-debian\"\n\
         disk = {{ backend = \"blkback\", size = \"72M\" }}\n\
         network = {{ backend = \"netback\", mac = \"02:00:00:00:00:0a\" }}\n\
         cmdline = \"{cmdline} cleave.disk=bench cleave.ip=169.254.0.1 cleave.net=serve cleave.then=reboot\"\n\n\
         [guests.bob]\nmemory = \"128M\"\nimage = \"linux-debian\"\n\
         network = {{ backend = \"netback\", mac = \"02:00:00:00:00:0b\" }}\n\
         cmdline = \"{cmdline} cleave.ip=169.254.0.2 cleave.net=fetch:169.254.0.1 cleave.then=reboot\"\n"
    )
}

/// The text after `what` on the first line that has it.
fn after<'a>(output: &'a str, what: &str) -> Option<&'a str> {
    let line = output.lines().find(|l| l.contains(what))?;
    Some(line[line.find(what)? + what.len()..].trim())
}

/// One Cleave run with the backends restarted every `restart` (or never): its disk and
/// network figures and the restarts it saw.
fn cleave_run(name: &str, restart: Option<&str>) -> Result<(Disk, Fs, Net, usize)> {
    let dir = crate::workspace_root().join("target/cleave/bench");
    std::fs::create_dir_all(&dir)?;
    let path: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&path, system(restart)).with_context(|| format!("writing {}", path.display()))?;
    println!("bench io: {name}: booting {} under -icount shift=0", path.display());
    let finished = crate::emulator::run_system_icount(&path, RUN_TIMEOUT)?;
    let output = &finished.serial;
    let failed = |what: &str| format!("{name}: {what} (serial log {})", finished.log.display());
    let disk = after(output, DISK_BENCH).and_then(Disk::parse).with_context(|| failed("no disk figures"))?;
    let fs = after(output, FS_BENCH).and_then(Fs::parse).with_context(|| failed("no file-system figures"))?;
    let net = after(output, NET_BENCH).and_then(Net::parse).with_context(|| failed("no network figures"))?;
    let restarts = output.lines().filter(|l| l.contains("audit:") && l.contains(" restart ")).count();
    Ok((disk, fs, net, restarts))
}

/// The disk workload directly in QEMU, on a fresh image of the same size.
fn baseline_disk() -> Result<(Disk, Fs)> {
    let guest = super::prepare()?;
    let image = crate::workspace_root().join("target/cleave/bench/baseline-disk.img");
    std::fs::create_dir_all(image.parent().unwrap_or(Path::new(".")))?;
    let file = std::fs::File::create(&image).with_context(|| format!("creating {}", image.display()))?;
    file.set_len(72 << 20)?;
    println!("bench io: baseline: the disk workload directly in QEMU under -icount shift=0");
    let (disk, fs) = super::baseline::disk_bench(&guest, &image)?;
    Ok((
        Disk::parse(&disk).with_context(|| format!("the baseline's disk report does not read: {disk:?}"))?,
        Fs::parse(&fs).with_context(|| format!("the baseline's file-system report does not read: {fs:?}"))?,
    ))
}

/// Every figure, as `bench io.NAME = VALUE (how)` lines.
pub fn figures() -> Result<Vec<String>> {
    let (base, base_fs) = baseline_disk()?;
    let mut lines = Vec::new();
    let mut plain = None;
    for (label, restart) in [("", None), ("_restart_1s", Some("1s")), ("_restart_200ms", Some("200ms"))] {
        let name = format!("io{label}");
        let (disk, fs, net, restarts) = cleave_run(&name, restart)?;
        let how = match restart {
            None => "no restarts".to_string(),
            Some(every) => format!("blkback and netback restarted every {every}: {restarts} restarts"),
        };
        let (write, read, per) = (disk.write_mib_s(), disk.read_mib_s(), disk.instructions_per_4k());
        lines.push(format!(
            "bench io{label}.disk_write_mib_per_s = {write:.1} (64 MiB, 64 KiB blocks, O_DIRECT, guest time under -icount; QEMU alone {:.1}: {:.2}x; {how})",
            base.write_mib_s(),
            write / base.write_mib_s()
        ));
        lines.push(format!(
            "bench io{label}.disk_read_mib_per_s = {read:.1} (64 MiB, 64 KiB blocks, O_DIRECT; QEMU alone {:.1}: {:.2}x; {how})",
            base.read_mib_s(),
            read / base.read_mib_s()
        ));
        lines.push(format!(
            "bench io{label}.instructions_per_4k_read = {per:.0} (4096 O_DIRECT reads, end to end, every instruction of the machine; QEMU alone {:.0}: {:.2}x; {how})",
            base.instructions_per_4k(),
            per / base.instructions_per_4k()
        ));
        lines.push(format!(
            "bench io{label}.fs_transactions_per_s = {:.1} (400 small-file transactions on ext2 mounted sync, in the spirit of Postmark; {:.1} operations/s with creations and deletions; QEMU alone {:.1}: {:.2}x; {how})",
            fs.transactions_per_s(),
            fs.operations_per_s(),
            base_fs.transactions_per_s(),
            fs.transactions_per_s() / base_fs.transactions_per_s()
        ));
        lines.push(format!(
            "bench io{label}.wget_mib_per_s = {:.1} (16 MiB guest to guest through netback, busybox httpd and wget; {how})",
            net.mib_s()
        ));
        lines.push(format!(
            "bench io{label}.instructions_per_packet = {:.0} ({} packets at the fetcher's card; {how})",
            net.instructions_per_packet(),
            net.packets
        ));
        match plain {
            None => plain = Some((disk, fs, net)),
            Some((d, f, n)) => lines.push(format!(
                "bench io{label}.throughput_vs_no_restarts = disk write {:+.1}%, disk read {:+.1}%, fs transactions {:+.1}%, wget {:+.1}% (goal at 1 s: no worse than -5%)",
                (write / d.write_mib_s() - 1.0) * 100.0,
                (read / d.read_mib_s() - 1.0) * 100.0,
                (fs.transactions_per_s() / f.transactions_per_s() - 1.0) * 100.0,
                (net.mib_s() / n.mib_s() - 1.0) * 100.0
            )),
        }
        for line in lines.iter().filter(|l| l.starts_with(&format!("bench io{label}."))) {
            println!("{line}");
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_and_anything_else_does_not() {
        let disk =
            Disk::parse("64 MiB written in 2500000 us, read in 1250000 us; 4096 reads of 4 KiB in 800000 us")
                .unwrap();
        assert_eq!((disk.write_mib_s(), disk.read_mib_s()), (25.6, 51.2));
        assert_eq!(disk.instructions_per_4k(), 800_000.0 * 1e3 / 4096.0);
        assert_eq!(Disk::parse("64 MiB written in 0 us, read in 1 us; 4096 reads of 4 KiB in 1 us"), None);
        assert_eq!(Disk::parse("64 MiB written in us"), None);
        let net = Net::parse("16777216 bytes in 4000000 us, 12000 packets").unwrap();
        assert_eq!((net.mib_s(), net.instructions_per_packet()), (4.0, 4_000_000.0 * 1e3 / 12000.0));
        assert_eq!(Net::parse("16777215 bytes in 400 us, 12000 packets"), None);
        let fs = Fs::parse(
            "200 files created in 1000000 us, 400 transactions in 2000000 us, deleted in 1000000 us",
        )
        .unwrap();
        assert_eq!((fs.transactions_per_s(), fs.operations_per_s()), (200.0, 200.0));
        assert_eq!(Fs::parse("200 files created in 100 us, 400 transactions in 0 us, deleted in 1 us"), None);
        // The generated systems are valid descriptions.
        for restart in [None, Some("1s"), Some("200ms")] {
            let text = system(restart);
            cleave::system::load(&text).unwrap_or_else(|e| panic!("{restart:?}: {e:?}"));
        }
    }
}
