//! The guest's initramfs: busybox with links for its applets, an `/init` script, the
//! kernel's virtio modules and a file whose SHA-256 the host knows, as a gzip-compressed
//! `newc` cpio archive. It is written again only when its contents change.

use super::cpio::{self, Entry};
use super::debian::Fetched;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The virtio modules of the kernel package, in the order `/init` loads them (Debian builds
/// virtio as modules; each needs only those before it).
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
];

/// The modules of Linux's ext4 (which mounts ext2, what busybox `mke2fs` makes), in the
/// order the file-system benchmark loads them; in the archive, but loaded only then.
pub const FS_MODULES: &[&str] = &["crc16", "mbcache", "jbd2", "crc32c_generic", "ext4"];

/// The busybox applets linked in `/bin`: what `/init` and the tests use, and what a person
/// at the shell reaches for first (every other applet is `busybox NAME`).
pub const APPLETS: &[&str] = &[
    "[",
    "ash",
    "cat",
    "cp",
    "cttyhack",
    "cut",
    "date",
    "dd",
    "devmem",
    "df",
    "dmesg",
    "echo",
    "env",
    "false",
    "free",
    "grep",
    "head",
    "hexdump",
    "httpd",
    "ifconfig",
    "insmod",
    "ip",
    "kill",
    "ln",
    "ls",
    "lsmod",
    "mkdir",
    "mke2fs",
    "mknod",
    "modinfo",
    "more",
    "mount",
    "mv",
    "nc",
    "od",
    "ping",
    "poweroff",
    "printf",
    "ps",
    "reboot",
    "rm",
    "rmmod",
    "sed",
    "seq",
    "setsid",
    "sh",
    "sha256sum",
    "sleep",
    "sync",
    "tail",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "umount",
    "uname",
    "uptime",
    "vi",
    "wc",
    "wget",
];

/// A file of known contents in the initramfs ([`test_file`]); the guest hashes it and the
/// host compares.
pub const TEST_FILE: &str = "/etc/cleave-test";

/// How big [`TEST_FILE`] is.
const TEST_FILE_BYTES: usize = 8192;

/// The shell's prompt on the guest's console.
pub const PROMPT: &str = "cleave# ";

/// What `/init` prints once it is about to start the shell.
pub const INIT_DONE: &str = "cleave-guest: init done";

/// The kernel command-line parameter that chooses a hostile variant
/// (`cleave.misbehave=unmapped` or `cleave.misbehave=triple`).
pub const MISBEHAVE: &str = "cleave.misbehave";

/// What `/init` prints before the unmapped access, followed by the address.
pub const UNMAPPED_ACCESS: &str = "cleave-guest: misbehaving: reading guest-physical";

/// What `/init` prints when the unmapped page answered (QEMU without Cleave answers).
pub const UNMAPPED_SURVIVED: &str = "cleave-guest: misbehaving: the unmapped page answered";

/// What `/init` prints just before it triple-faults.
pub const TRIPLE_FAULT: &str = "cleave-guest: misbehaving: triple fault";

/// The contents of [`TEST_FILE`]: pseudo-random bytes from SplitMix64 with a fixed seed.
pub fn test_file() -> Vec<u8> {
    let mut state: u64 = 0x636c_6561_7665; // "cleave"
    let mut bytes = Vec::with_capacity(TEST_FILE_BYTES);
    while bytes.len() < TEST_FILE_BYTES {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The written initramfs.
#[derive(Clone, Debug)]
pub struct Initramfs {
    /// `initramfs.cpio.gz`.
    pub path: PathBuf,
    /// The size of the cpio archive inside.
    pub cpio_bytes: u64,
}

/// Writes the initramfs for the unpacked packages to `path` (and the SHA-256 of its cpio
/// archive next to it, `path.sha256`), unless that archive is already there.
pub fn build(fetched: &Fetched, path: &Path) -> Result<Initramfs> {
    let archive = cpio::archive(&entries(fetched)?);
    let digest = sha256_hex(&archive);
    let stamp = path.with_extension("gz.sha256");
    let cpio_bytes = archive.len() as u64;
    let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == digest) && path.is_file();
    if !current {
        let partial = path.with_extension("gz.partial");
        let file =
            std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        // No file name and time 0 in the gzip header: the same archive gives the same bytes.
        let mut encoder = flate2::GzBuilder::new().mtime(0).write(file, flate2::Compression::best());
        encoder.write_all(&archive)?;
        encoder.finish()?.sync_all()?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
        std::fs::write(&stamp, format!("{digest}\n"))?;
    }
    Ok(Initramfs { path: path.to_path_buf(), cpio_bytes })
}

/// The members of the archive, parents before children.
fn entries(fetched: &Fetched) -> Result<Vec<Entry>> {
    let release = &fetched.release;
    let modules_dir = fetched.root.join("lib/modules").join(release);
    let modules = module_paths(&modules_dir, MODULES)?;
    let fs_modules = module_paths(&modules_dir, FS_MODULES)?;
    let mut entries: Vec<Entry> =
        ["bin", "dev", "etc", "proc", "sys", "tmp", "root"].iter().map(|d| Entry::directory(d)).collect();
    // Linux opens /dev/console before it runs /init; devtmpfs comes later.
    entries.push(Entry::char_device("dev/console", 5, 1));
    let busybox = std::fs::read(fetched.root.join("bin/busybox")).context("reading the unpacked busybox")?;
    entries.push(Entry::file("bin/busybox", busybox, true));
    entries.extend(APPLETS.iter().map(|a| Entry::symlink(&format!("bin/{a}"), "busybox")));
    entries.push(Entry::file("init", init_script(release, &modules, &fs_modules).into_bytes(), true));
    entries.push(Entry::file(TEST_FILE.trim_start_matches('/'), test_file(), false));
    let mut made = std::collections::BTreeSet::new();
    for module in modules.iter().chain(&fs_modules) {
        let inside = format!("lib/modules/{release}/{module}");
        let mut parent = String::new();
        for part in inside.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, p)| p) {
            parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
            if made.insert(parent.clone()) {
                entries.push(Entry::directory(&parent));
            }
        }
        let data = std::fs::read(modules_dir.join(module)).with_context(|| format!("reading {module}"))?;
        entries.push(Entry::file(&inside, data, false));
    }
    Ok(entries)
}

/// Where each of `names` ([`MODULES`], [`FS_MODULES`]) lies under `modules_dir`
/// (`lib/modules/RELEASE`), in that order. Busybox's `insmod` loads only uncompressed
/// modules (`.ko`): a compressed one is an error, not something to load at boot and fail.
fn module_paths(modules_dir: &Path, names: &[&str]) -> Result<Vec<String>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![modules_dir.join("kernel")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                let relative = path.strip_prefix(modules_dir)?.to_string_lossy().into_owned();
                found.insert(name.to_string(), relative);
            }
        }
    }
    names
        .iter()
        .map(|module| {
            if let Some(path) = found.get(&format!("{module}.ko")) {
                return Ok(path.clone());
            }
            if let Some(path) =
                [".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| found.get(&format!("{module}{s}")))
            {
                bail!(
                    "the kernel package's {path} is compressed; busybox insmod loads only plain .ko modules"
                );
            }
            bail!("the kernel package has no module {module} under {}", modules_dir.display())
        })
        .collect()
}

/// A shell function: the first page above the highest RAM that no top-level range of the
/// memory map in file `$1` (`/proc/iomem`) claims, a guest-physical address with nothing
/// behind it.
const UNCLAIMED_PAGE: &str = r#"unclaimed_page() {
    page=0
    while IFS= read -r line; do
        case "$line" in
        " "*) ;;
        *" : System RAM")
            range=${line%% *}
            end=$((0x${range#*-} + 1))
            if [ "$end" -gt "$page" ]; then page=$end; fi ;;
        esac
    done < "$1"
    page=$(( (page + 4095) / 4096 * 4096 ))
    moved=1
    while [ "$moved" = 1 ]; do
        moved=0
        while IFS= read -r line; do
            case "$line" in " "*) continue ;; esac
            range=${line%% *}
            start=$((0x${range%-*}))
            end=$((0x${range#*-}))
            if [ "$page" -ge "$start" ] && [ "$page" -le "$end" ]; then
                page=$(( (end + 4096) / 4096 * 4096 ))
                moved=1
            fi
        done < "$1"
    done
    printf '0x%x\n' "$page"
}
"#;

/// The kernel command-line word that chooses a disk test: `cleave.disk=persist` (the
/// guest's disk keeps what an earlier run wrote: check it if it is there, else write it)
/// or `cleave.disk=scan` (count the bytes of the guest's disk that are not zero) or
/// `cleave.disk=roundtrip` (write 4 MiB of random data past the page cache, read it back
/// the same way, and compare) or `cleave.disk=bench` (64 MiB written and read with 64 KiB
/// blocks past the page cache, then 4096 reads of 4 KiB, then a small-file workload on
/// ext2 mounted `sync`, each timed).
pub const DISK: &str = "cleave.disk";
/// How a `persist` guest says it wrote its data (then its SHA-256).
pub const DISK_WROTE: &str = "cleave-guest: disk: wrote 1048576 bytes of random data, sha256";
/// How a `persist` guest says it found the data of an earlier run intact (then its SHA-256).
pub const DISK_FOUND: &str = "cleave-guest: disk: found the data an earlier run wrote, intact, sha256";
/// How a `bench` guest reports (then `64 MiB written in N us, read in N us; 4096 reads of
/// 4 KiB in N us`: microseconds of guest time, from the kernel's clock in
/// /proc/timer_list, which under `-icount shift=0` are 1000 instructions of the whole
/// machine each).
pub const DISK_BENCH: &str = "cleave-guest: bench: disk:";
/// How a `bench` guest reports its small-file workload, in the spirit of Postmark, on
/// ext2 mounted `sync` (then `200 files created in N us, 400 transactions in N us, deleted
/// in N us`).
pub const FS_BENCH: &str = "cleave-guest: bench: fs:";
/// How a fetcher reports its transfer's time (then `16777216 bytes in N us, P packets`).
pub const NET_BENCH: &str = "cleave-guest: bench: net:";
/// How a `roundtrip` guest says what it wrote (then its SHA-256; a line of its own, as
/// long console lines are cut).
pub const DISK_ROUNDTRIP: &str = "cleave-guest: disk: wrote 4194304 bytes directly, sha256";
/// How a `roundtrip` guest says what it read back (then its SHA-256).
pub const DISK_READ_BACK: &str = "cleave-guest: disk: read them back directly, sha256";
/// How a `scan` guest reports (then `N bytes not zero`).
pub const DISK_SCANNED: &str = "cleave-guest: disk: scanned /dev/vda:";

/// Shell functions for the disk tests. A `persist` guest's disk holds, after a run, a
/// first sector `CLEAVE-DISK-TEST SHA256` (zero-padded) and 1 MiB of random bytes from
/// 64 KiB on; `sync` pushes them through the guest's virtio-blk flush.
const DISK_TEST: &str = r#"microseconds() {
    while read -r now at ns _; do
        if [ "$now $at" = "now at" ]; then echo $((ns / 1000)); return; fi
    done < /proc/timer_list
}
disk_bench() {
    if [ ! -b "$1" ]; then echo "cleave-guest: disk: no $1"; return; fi
    t0=$(microseconds)
    dd if=/dev/zero of="$1" bs=65536 count=1024 oflag=direct 2>/dev/null
    t1=$(microseconds)
    dd if="$1" of=/dev/null bs=65536 count=1024 iflag=direct 2>/dev/null
    t2=$(microseconds)
    dd if="$1" of=/dev/null bs=4096 count=4096 iflag=direct 2>/dev/null
    t3=$(microseconds)
    echo "cleave-guest: bench: disk: 64 MiB written in $((t1 - t0)) us, read in $((t2 - t1)) us; 4096 reads of 4 KiB in $((t3 - t2)) us"
}
fs_bench() {
    for module in $fs_modules; do
        insmod "/lib/modules/$release/$module" || { echo "cleave-guest: cannot load $module"; return; }
    done
    mke2fs -F "$1" > /dev/null 2>&1 || { echo "cleave-guest: fs: mke2fs $1 failed"; return; }
    mkdir -p /mnt
    mount -t ext4 -o sync "$1" /mnt || { echo "cleave-guest: fs: cannot mount $1"; return; }
    t0=$(microseconds)
    for i in $(seq 0 199); do
        dd if=/dev/zero of=/mnt/f$i bs=$((512 + i * 79 % 15872)) count=1 2>/dev/null
    done
    t1=$(microseconds)
    for t in $(seq 0 399); do
        k=$((t * 37 % 200))
        case $((t % 4)) in
        0) cat /mnt/f$k > /dev/null 2>&1 ;;
        1) echo "transaction $t" >> /mnt/f$k ;;
        2) rm -f /mnt/f$k ;;
        3) dd if=/dev/zero of=/mnt/f$k bs=$((512 + t * 53 % 15872)) count=1 2>/dev/null ;;
        esac
    done
    t2=$(microseconds)
    rm -f /mnt/f*
    t3=$(microseconds)
    umount /mnt
    echo "cleave-guest: bench: fs: 200 files created in $((t1 - t0)) us, 400 transactions in $((t2 - t1)) us, deleted in $((t3 - t2)) us"
}
disk_persist() {
    if [ ! -b "$1" ]; then echo "cleave-guest: disk: no $1"; return; fi
    header=$(dd if="$1" bs=512 count=1 2>/dev/null | tr -d '\000' | head -n 1)
    case "$header" in
    "CLEAVE-DISK-TEST "*)
        want=${header#CLEAVE-DISK-TEST }
        got=$(dd if="$1" bs=65536 skip=1 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
        if [ "$got" = "$want" ]; then
            echo "cleave-guest: disk: found the data an earlier run wrote, intact, sha256 $got"
        else
            echo "cleave-guest: disk: the data an earlier run wrote changed: sha256 $got, not $want"
        fi ;;
    *)
        dd if=/dev/urandom of=/tmp/payload bs=65536 count=16 2>/dev/null
        sum=$(sha256sum /tmp/payload | cut -d' ' -f1)
        dd if=/tmp/payload of="$1" bs=65536 seek=1 2>/dev/null
        printf 'CLEAVE-DISK-TEST %s\n' "$sum" | dd of="$1" bs=512 count=1 conv=sync 2>/dev/null
        sync
        echo "cleave-guest: disk: wrote 1048576 bytes of random data, sha256 $sum" ;;
    esac
}
disk_roundtrip() {
    if [ ! -b "$1" ]; then echo "cleave-guest: disk: no $1"; return; fi
    dd if=/dev/urandom of=/tmp/payload bs=65536 count=64 2>/dev/null
    sum=$(sha256sum /tmp/payload | cut -d' ' -f1)
    dd if=/tmp/payload of="$1" bs=65536 seek=1 oflag=direct 2>/dev/null
    rm /tmp/payload
    got=$(dd if="$1" bs=65536 skip=1 count=64 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    echo "cleave-guest: disk: wrote 4194304 bytes directly, sha256 $sum"
    echo "cleave-guest: disk: read them back directly, sha256 $got"
}
disk_scan() {
    if [ ! -b "$1" ]; then echo "cleave-guest: disk: no $1"; return; fi
    sectors=$(cat /sys/block/${1#/dev/}/size)
    nonzero=$(dd if="$1" bs=65536 2>/dev/null | tr -d '\000' | wc -c)
    echo "cleave-guest: disk: scanned $1: $sectors sectors, $nonzero bytes not zero"
}
"#;

/// The kernel command-line word that gives the guest's network card its address:
/// `cleave.ip=169.254.0.1` (IPv4 link-local, 169.254.0.0/16).
pub const IP: &str = "cleave.ip";
/// The kernel command-line word that chooses a network test: `cleave.net=serve` (serve
/// 16 MiB of random data over HTTP until a fetcher says it is done) or
/// `cleave.net=fetch:ADDRESS` (fetch it from the server at ADDRESS, hash it, say done).
pub const NET: &str = "cleave.net";
/// How a server says what it serves (then its SHA-256).
pub const NET_SERVING: &str = "cleave-guest: net: serving 16777216 bytes, sha256";
/// How a fetcher reports (then `N bytes from ADDRESS, sha256 SUM`).
pub const NET_FETCHED: &str = "cleave-guest: net: fetched";
/// How a server says its fetcher is done.
pub const NET_DONE: &str = "cleave-guest: net: the fetcher is done";

/// Shell functions for the network tests. The server writes 16 MiB of random bytes to
/// `/www/blob`, serves `/www` with busybox `httpd` and waits for a connection to port 7
/// that ends when its fetcher is done. The fetcher tries `wget` up to 60 times a second
/// apart (the server may still be starting; each try is bounded with `timeout`, busybox
/// wget's own `-T` crashes, at 120 s: the transfer takes some 20 s of guest time when the
/// machine is idle, its cost per packet being the guests' own, and a loaded host must not
/// cut a sound transfer off and start it again), hashes what it got and connects to port 7.
const NET_TEST: &str = r#"packets() {
    read -r rx < /sys/class/net/eth0/statistics/rx_packets
    read -r tx < /sys/class/net/eth0/statistics/tx_packets
    echo $((rx + tx))
}
net_up() {
    ifconfig eth0 "$1" netmask 255.255.0.0 up || echo "cleave-guest: net: no eth0"
}
net_serve() {
    mkdir -p /www
    dd if=/dev/urandom of=/www/blob bs=65536 count=256 2>/dev/null
    sum=$(sha256sum /www/blob | cut -d' ' -f1)
    httpd -h /www -p 80
    echo "cleave-guest: net: serving 16777216 bytes, sha256 $sum"
    nc -l -p 7 > /dev/null
    echo "cleave-guest: net: the fetcher is done"
}
net_fetch() {
    tries=0
    while :; do
        t0=$(microseconds)
        p0=$(packets)
        if timeout 120 wget -q -O /tmp/blob "http://$1/blob"; then break; fi
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then echo "cleave-guest: net: cannot fetch from $1"; return; fi
        sleep 1
    done
    t1=$(microseconds)
    p1=$(packets)
    sum=$(sha256sum /tmp/blob | cut -d' ' -f1)
    echo "cleave-guest: net: fetched $(wc -c < /tmp/blob) bytes from $1, sha256 $sum"
    echo "cleave-guest: bench: net: 16777216 bytes in $((t1 - t0)) us, $((p1 - p0)) packets"
    echo done | timeout 30 nc "$1" 7
}
"#;

/// How a guest with `cleave.misbehave=virtio` reports each attack on its own devices (then
/// `DEVICE CASE: status N`; a device that refused the malformed ring shows NEEDS_RESET,
/// 0x40, in N).
pub const HOSTILE_VIRTIO: &str = "cleave-guest: hostile:";
/// What it prints when its rounds of attacks are over.
pub const HOSTILE_DONE: &str = "cleave-guest: hostile: done";
/// The attacks, by name, each on both devices' queues.
pub const HOSTILE_CASES: &[&str] =
    &["huge-length", "outside-ram", "loop", "index-ahead", "head-range", "no-status"];
/// Rounds of every attack on both devices.
pub const HOSTILE_ROUNDS: u32 = 8;

/// Shell functions for `cleave.misbehave=virtio`: the guest drives its own virtio devices
/// (00:01.0, the disk; 00:02.0, the network card; no Linux driver bound to them) through
/// /dev/port and builds malformed rings in memory the kernel command line reserved
/// (`memmap=1M$0x6f00000`, through /dev/mem): a buffer far longer than RAM, a buffer
/// outside RAM, a descriptor chain that loops, an available index far ahead of the ring, a
/// head beyond the ring, and (for the disk) a request without a byte for its status. After
/// each it reads the device's status: the VMM must have stopped the device (NEEDS_RESET)
/// and nothing else. The rounds repeat every attack, so the guest keeps its devices busy
/// being refused while the other guests do their I/O.
const HOSTILE_TEST: &str = r#"port_out() {
    printf "\\$(printf %o "$2")" | dd of=/dev/port bs=1 seek="$1" count=1 conv=notrunc 2>/dev/null
}
port_out16() { port_out "$1" $(($2 & 255)); port_out $(($1 + 1)) $(($2 >> 8)); }
port_out32() { port_out16 "$1" $(($2 & 65535)); port_out16 $(($1 + 2)) $(($2 >> 16)); }
port_in() { dd if=/dev/port bs=1 skip="$1" count=1 2>/dev/null | od -An -tu1 | tr -d ' '; }
ring=$((0x6f00000))
vq_attack() {
    base=$1; queue=$2; case=$3
    port_out $((base + 0x12)) 0
    port_out $((base + 0x12)) 3
    port_out16 $((base + 0x0e)) "$queue"
    port_out32 $((base + 0x08)) $((ring >> 12))
    port_out $((base + 0x12)) 7
    avail=$((ring + 0x1000))
    head=0
    idx=1
    devmem $((ring + 0x8)) 32 512
    devmem $((ring + 0xc)) 32 0
    devmem $ring 32 $((ring + 0x4000))
    devmem $((ring + 4)) 32 0
    case "$case" in
    huge-length) devmem $((ring + 0x8)) 32 0xfffff000 ;;
    outside-ram) devmem $((ring + 4)) 32 1 ;;
    loop) devmem $((ring + 0xc)) 32 0x00000001 ;;
    index-ahead) idx=$((0x8001)) ;;
    head-range) head=300 ;;
    no-status) ;;
    esac
    devmem $((avail + 4)) 16 $head
    devmem $((avail + 2)) 16 $idx
    port_out $((base + 0x10)) "$queue"
    echo "cleave-guest: hostile: $4 $case: status $(port_in $((base + 0x12)))"
}
hostile_virtio() {
    for dev in 0000:00:01.0 0000:00:02.0; do echo 1 > /sys/bus/pci/devices/$dev/enable; done
    read -r blk _ < /sys/bus/pci/devices/0000:00:01.0/resource
    read -r net _ < /sys/bus/pci/devices/0000:00:02.0/resource
    blk=$((blk)); net=$((net))
    round=0
    while [ "$round" -lt "$1" ]; do
        for case in huge-length outside-ram loop index-ahead head-range no-status; do
            vq_attack "$blk" 0 "$case" disk
            if [ "$case" != no-status ]; then vq_attack "$net" 1 "$case" net; fi
        done
        round=$((round + 1))
    done
    echo "cleave-guest: hostile: done"
}
"#;

/// The `/init` script: mounts, the virtio modules (`modules`, relative to
/// `/lib/modules/RELEASE`), the misbehaviour the command line asks for, then a shell on
/// the console.
pub fn init_script(release: &str, modules: &[String], fs_modules: &[String]) -> String {
    let modules = modules.join(" \\\n        ");
    let fs_modules = fs_modules.join(" ");
    format!(
        r#"#!/bin/sh
# /init of Cleave's Linux guest, written by `cargo xtask` (tools/xtask/src/linux/initramfs.rs;
# doc/linux-guest.md).
release={release}
fs_modules="{fs_modules}"
echo "cleave-guest: /init started"
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

{UNCLAIMED_PAGE}
# Hostile variants, chosen on the kernel command line: cleave.misbehave=unmapped reads and
# writes a guest-physical page nothing backs (cleave.poke=ADDRESS, else the first unclaimed
# page above RAM) through /dev/mem; cleave.misbehave=triple reboots by triple fault (Linux
# loads an empty IDT and executes int3).
misbehave=
poke=
then=
disk=
ip=
net=
for word in $(cat /proc/cmdline); do
    case "$word" in
    {MISBEHAVE}=*) misbehave=${{word#*=}} ;;
    {DISK}=*) disk=${{word#*=}} ;;
    {IP}=*) ip=${{word#*=}} ;;
    {NET}=*) net=${{word#*=}} ;;
    cleave.poke=*) poke=${{word#*=}} ;;
    cleave.then=*) then=${{word#*=}} ;;
    esac
done
# The virtio drivers, in dependency order; they load whether or not there is a device,
# unless the guest is to drive its devices itself (cleave.misbehave=virtio).
if [ "$misbehave" != virtio ]; then
    for module in \
        {modules}
    do
        insmod "/lib/modules/{release}/$module" || echo "cleave-guest: cannot load $module"
    done
fi

{HOSTILE_TEST}
case "$misbehave" in
"") ;;
virtio) hostile_virtio {HOSTILE_ROUNDS} ;;
unmapped)
    if [ -z "$poke" ]; then poke=$(unclaimed_page /proc/iomem); fi
    echo "{UNMAPPED_ACCESS} $poke, which nothing backs"
    value=$(devmem "$poke" 32)
    echo "cleave-guest: misbehaving: read $value; writing 0x600dcafe there"
    devmem "$poke" 32 0x600dcafe
    echo "{UNMAPPED_SURVIVED}; going on"
    ;;
triple)
    echo "{TRIPLE_FAULT}"
    echo triple > /sys/kernel/reboot/type
    reboot -f
    echo "cleave-guest: misbehaving: still running after the triple fault"
    ;;
*)
    echo "cleave-guest: unknown {MISBEHAVE}=$misbehave"
    ;;
esac

{DISK_TEST}
case "$disk" in
"") ;;
persist) disk_persist /dev/vda ;;
scan) disk_scan /dev/vda ;;
roundtrip) disk_roundtrip /dev/vda ;;
bench) disk_bench /dev/vda; fs_bench /dev/vda ;;
*) echo "cleave-guest: unknown {DISK}=$disk" ;;
esac

{NET_TEST}
if [ -n "$ip" ]; then net_up "$ip"; fi
case "$net" in
"") ;;
serve) net_serve ;;
fetch:*) net_fetch "${{net#fetch:}}" ;;
*) echo "cleave-guest: unknown {NET}=$net" ;;
esac

echo "{INIT_DONE}"
# cleave.then=reboot: a guest with nobody at its console ends itself once it is up.
if [ "$then" = reboot ]; then
    echo "cleave-guest: up; rebooting as the command line asks"
    reboot -f
fi
export HOME=/root PS1='{PROMPT}'
# A session of its own with the console's real terminal (ttyS0) as its controlling
# terminal, so that job control and Ctrl-C work.
setsid cttyhack sh
echo "cleave-guest: the shell ended; powering off"
poweroff -f
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-initramfs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `unclaimed_page` in the host's POSIX shell on a memory map.
    fn unclaimed_page(iomem: &str) -> String {
        let dir = scratch("iomem");
        let map = dir.join("iomem");
        std::fs::write(&map, iomem).unwrap();
        let script = format!("{UNCLAIMED_PAGE}\nunclaimed_page {}\n", map.display());
        let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn the_unmapped_page_is_above_ram_and_outside_every_claimed_range() {
        // QEMU's `pc` machine with 256 MiB: the end of RAM holds firmware tables.
        let qemu = "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n000f0000-000fffff : Reserved\n  000f0000-000fffff : System ROM\n00100000-0ffdffff : System RAM\n  08e00000-09c01d31 : Kernel code\n0ffe0000-0fffffff : Reserved\nfd000000-fdffffff : 0000:00:02.0\nfec00000-fec003ff : IOAPIC 0\nfd00000000-ffffffffff : Reserved\n";
        assert_eq!(unclaimed_page(qemu), "0x10000000");
        // RAM alone, ending off a page boundary, then two claimed ranges back to back.
        let packed =
            "00100000-07ffefff : System RAM\n07fff000-07ffffff : Reserved\n08000000-08000fff : PCI Bus\n";
        assert_eq!(unclaimed_page(packed), "0x8001000");
        // A reserved range nested under RAM does not count; RAM above 4 GiB does.
        let high = "00100000-bfffffff : System RAM\n  00200000-002fffff : Reserved\n100000000-13fffffff : System RAM\n";
        assert_eq!(unclaimed_page(high), "0x140000000");
    }

    #[test]
    fn the_init_script_parses_and_loads_the_modules_in_order() {
        let modules: Vec<String> = MODULES.iter().map(|m| format!("kernel/x/{m}.ko")).collect();
        let script = init_script("6.1.0-57-amd64", &modules, &["kernel/fs/ext4/ext4.ko".to_string()]);
        let dir = scratch("init");
        let path = dir.join("init");
        std::fs::write(&path, &script).unwrap();
        let check = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(check.status.success(), "sh -n: {}", String::from_utf8_lossy(&check.stderr));
        let mut at = 0;
        for module in &modules {
            at += script[at..].find(module.as_str()).unwrap_or_else(|| panic!("{module} out of order"));
        }
        assert!(script.contains("insmod \"/lib/modules/6.1.0-57-amd64/$module\""));
        assert!(script.contains(&format!("PS1='{PROMPT}'")));
        let done = script.find(INIT_DONE).unwrap();
        assert!(script.find(&format!("{MISBEHAVE}=*)")).unwrap() < done);
        for line in [UNMAPPED_ACCESS, UNMAPPED_SURVIVED, TRIPLE_FAULT] {
            assert!(script[..done].contains(&format!("echo \"{line}")), "{line}");
        }
    }

    /// The hostile guest's port functions, run by the host's shell on a file standing in
    /// for /dev/port: bytes, 16- and 32-bit values little-endian, and reads back.
    #[test]
    fn the_hostile_guests_port_functions_write_and_read_bytes() {
        let dir = scratch("port");
        let file = dir.join("port");
        std::fs::write(&file, [0u8; 64]).unwrap();
        let functions = HOSTILE_TEST.replace("/dev/port", &file.display().to_string());
        let script = format!(
            "{functions}\nport_out 18 7\nport_out 19 0\nport_out16 14 258\nport_out32 8 $((0x6f00000 >> 12))\necho \"$(port_in 18) $(port_in 9)\"\n"
        );
        let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "7 111");
        assert_eq!(&bytes[8..20], &[0x00, 0x6f, 0, 0, 0, 0, 2, 1, 0, 0, 7, 0]);
    }

    #[test]
    fn modules_are_found_by_name_and_compressed_ones_refused() {
        let dir = scratch("modules");
        for path in ["kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"] {
            std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.join(path), b"").unwrap();
        }
        let missing = module_paths(&dir, MODULES).unwrap_err().to_string();
        assert!(missing.contains("no module virtio_pci_legacy_dev"), "{missing}");
        for module in &MODULES[2..] {
            let path = dir.join(format!("kernel/other/{module}.ko"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let found = module_paths(&dir, MODULES).unwrap();
        assert_eq!(found[0], "kernel/drivers/virtio/virtio_ring.ko");
        assert_eq!(found[8], "kernel/other/virtio_net.ko");
        std::fs::remove_file(dir.join("kernel/other/virtio_blk.ko")).unwrap();
        std::fs::write(dir.join("kernel/other/virtio_blk.ko.xz"), b"").unwrap();
        let compressed = module_paths(&dir, MODULES).unwrap_err().to_string();
        assert!(compressed.contains("virtio_blk.ko.xz is compressed"), "{compressed}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_test_file_is_fixed() {
        let data = test_file();
        assert_eq!(data.len(), TEST_FILE_BYTES);
        // SplitMix64's first output for this seed (computed apart, in Python), and the
        // digest of the whole file (a change to the file is a change to this test).
        assert_eq!(&data[..8], &0xd406_e1bc_8a72_c959u64.to_le_bytes());
        assert_eq!(sha256_hex(&data), "dea398cb2c05c4848ca220ef7aece418e954678e1ee5867b568d53fc8ad79f49");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
