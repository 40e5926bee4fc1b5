//! `cleave xenstored` driven by Xen's own clients (Debian's `xenstore-utils`, which
//! `cargo xtask deps` installs): write, read, ls, list, exists, rm, chmod with a read from
//! another domain first allowed, then denied, and a watch that fires.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(test: &str) -> Daemon {
    let dir = std::env::temp_dir().join(format!("cleave-xenstored-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cleave"))
        .arg("xenstored")
        .arg("--socket")
        .arg(dir.join("dom0"))
        .arg("--domain")
        .arg(format!("5={}", dir.join("dom5").display()))
        .spawn()
        .unwrap();
    let daemon = Daemon { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(daemon.dir.join("dom0").exists() && daemon.dir.join("dom5").exists()) {
        assert!(Instant::now() < deadline, "cleave xenstored did not create its sockets");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

fn tool(socket: &Path, name: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).env("XENSTORED_PATH", socket).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): install Debian's xenstore-utils (`cargo xtask deps` does)")
    })
}

fn ok(socket: &Path, name: &str, args: &[&str]) -> String {
    let out = tool(socket, name, args);
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn xens_own_clients_work_against_it() {
    let d = start("clients");
    let (dom0, dom5) = (d.dir.join("dom0"), d.dir.join("dom5"));
    ok(&dom0, "xenstore-write", &["/vm/alice/name", "alice", "/vm/alice/memory", "1024"]);
    assert_eq!(ok(&dom0, "xenstore-read", &["/vm/alice/name"]), "alice\n");
    assert_eq!(ok(&dom0, "xenstore-ls", &["/vm"]), "alice = \"\"\n memory = \"1024\"\n name = \"alice\"\n");
    assert_eq!(ok(&dom0, "xenstore-list", &["/vm/alice"]), "memory\nname\n");
    assert!(tool(&dom0, "xenstore-exists", &["/vm/alice"]).status.success());
    assert!(!tool(&dom0, "xenstore-exists", &["/vm/bob"]).status.success());

    // Nodes domain 0 makes are closed to others; opening one lets domain 5 read it.
    assert!(!tool(&dom5, "xenstore-read", &["/vm/alice/name"]).status.success());
    ok(&dom0, "xenstore-chmod", &["/vm/alice/name", "n0", "r5"]);
    assert_eq!(ok(&dom5, "xenstore-read", &["/vm/alice/name"]), "alice\n");
    assert!(!tool(&dom5, "xenstore-write", &["/vm/alice/name", "mallory"]).status.success());
    ok(&dom0, "xenstore-chmod", &["/vm/alice/name", "n0"]);
    let denied = tool(&dom5, "xenstore-read", &["/vm/alice/name"]);
    assert!(!denied.status.success(), "domain 5 still reads after chmod n0");
    assert_eq!(
        ok(&dom0, "xenstore-read", &["/vm/alice/name"]),
        "alice\n",
        "the failed write changed nothing"
    );

    ok(&dom0, "xenstore-rm", &["/vm/alice"]);
    assert!(!tool(&dom0, "xenstore-exists", &["/vm/alice/name"]).status.success());
    assert_eq!(ok(&dom0, "xenstore-list", &["/vm"]), "");
}

#[test]
fn a_hostile_client_loses_its_connection_and_nothing_else() {
    use std::io::{Read, Write};
    let d = start("hostile");
    let dom0 = d.dir.join("dom0");
    ok(&dom0, "xenstore-write", &["/kept", "yes"]);
    // A header announcing 5000 bytes: over Xen's limit, the stream cannot be trusted.
    let mut s = std::os::unix::net::UnixStream::connect(&dom0).unwrap();
    let mut header = Vec::new();
    for word in [11u32, 1, 0, 5000] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    s.write_all(&header).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "the connection was not closed");
    // An unknown message type and a malformed path get error replies on a live connection.
    let mut s = std::os::unix::net::UnixStream::connect(&dom0).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (ty, payload) in [(99u32, &b""[..]), (2, &b"/a//b\0"[..])] {
        let mut m = Vec::new();
        for word in [ty, 7, 0, payload.len() as u32] {
            m.extend_from_slice(&word.to_le_bytes());
        }
        m.extend_from_slice(payload);
        s.write_all(&m).unwrap();
        let mut reply = [0u8; 16];
        s.read_exact(&mut reply).unwrap();
        let len = u32::from_le_bytes(reply[12..16].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        assert_eq!(u32::from_le_bytes(reply[..4].try_into().unwrap()), 16, "not an XS_ERROR reply");
        assert!(body == b"ENOSYS\0" || body == b"EINVAL\0", "{body:?}");
    }
    assert_eq!(ok(&dom0, "xenstore-read", &["/kept"]), "yes\n");
}

#[test]
fn a_watch_fires_for_xenstore_watch() {
    use std::io::{BufRead, BufReader};
    let d = start("watch");
    let dom0 = d.dir.join("dom0");
    ok(&dom0, "xenstore-write", &["/vm/a", "1"]);
    // Three events: the one on registering, then one per write below /vm.
    let mut watcher = Command::new("xenstore-watch")
        .args(["-n", "3", "/vm"])
        .env("XENSTORED_PATH", &dom0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xenstore-watch (Debian's xenstore-utils)");
    let pid = watcher.id();
    // Never hang: the watcher is killed after 20 s, which fails the test below.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // The first event means the watch is registered: writes from now on fire it.
    assert_eq!(lines.next().unwrap().unwrap(), "/vm");
    ok(&dom0, "xenstore-write", &["/vm/a", "2"]);
    ok(&dom0, "xenstore-write", &["/vm/b/c", "3"]);
    assert_eq!(lines.next().unwrap().unwrap(), "/vm/a");
    assert_eq!(lines.next().unwrap().unwrap(), "/vm/b/c");
    assert!(watcher.wait().unwrap().success());
}

/// Issue 15: an unprivileged domain that opens connection after connection gets 64; the
/// rest are closed at once, and domain 0 is served throughout. Closing one frees a place.
#[test]
fn an_unprivileged_domain_gets_a_bounded_number_of_connections() {
    use std::io::{Read, Write};
    let d = start("connections");
    let dom5 = d.dir.join("dom5");
    // Answers one XS_READ of `/` on `s`, or says the connection is gone.
    let read_root = |s: &mut std::os::unix::net::UnixStream| -> bool {
        let mut m = Vec::new();
        for word in [2u32, 1, 0, 2] {
            m.extend_from_slice(&word.to_le_bytes());
        }
        m.extend_from_slice(b"/\0");
        if s.write_all(&m).is_err() {
            return false;
        }
        let mut reply = [0u8; 16];
        if s.read_exact(&mut reply).is_err() {
            return false;
        }
        let len = u32::from_le_bytes(reply[12..16].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).is_ok()
    };
    let mut streams = Vec::new();
    for _ in 0..100 {
        let s = std::os::unix::net::UnixStream::connect(&dom5).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        streams.push(s);
    }
    let served = streams.iter_mut().map(&read_root).filter(|&served| served).count();
    assert_eq!(served, 64, "connections served for domain 5");
    let dom0 = d.dir.join("dom0");
    ok(&dom0, "xenstore-write", &["/still", "served"]);
    assert_eq!(ok(&dom0, "xenstore-read", &["/still"]), "served\n");
    // Closing the served ones frees places for new connections.
    streams.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = std::os::unix::net::UnixStream::connect(&dom5).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if read_root(&mut s) {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed after the connections closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 15: clients that pipeline requests and never read their replies cost only
/// themselves. Each connection's replies go out through its own writer; domain 0 is
/// answered at once however many such clients there are (it used to wait a second per
/// stalled client, 12 s for 20), and a stalled client is not cut off: when it starts
/// reading it gets every reply, in order.
#[test]
fn clients_that_do_not_read_stall_only_themselves() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let d = start("stalled");
    let dom0 = d.dir.join("dom0");
    // A 4 KiB value, so that unread replies fill the sockets quickly.
    let big = "x".repeat(4000);
    ok(&dom0, "xenstore-write", &["/big", &big]);
    let request = |req_id: u32| {
        let mut m = Vec::new();
        for word in [2u32, req_id, 0, 5] {
            m.extend_from_slice(&word.to_le_bytes());
        }
        m.extend_from_slice(b"/big\0");
        m
    };
    // 20 clients each send 2,000 reads (8 MB of replies) and read nothing.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = UnixStream::connect(&dom0).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let all: Vec<u8> = (0..2000).flat_map(request).collect();
        let sent = s.write(&all).unwrap_or(0);
        let mut off = sent;
        while off < all.len() {
            match s.write(&all[off..]) {
                Ok(n) if n > 0 => off += n,
                _ => break,
            }
        }
        stalled.push((s, off / 21));
    }
    // Domain 0, on a fresh connection, is answered at once.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(ok(&dom0, "xenstore-read", &["/big"]).len(), 4001);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "5 reads took {took:?} beside stalled clients");
    // A stalled client that starts reading gets its replies, in order, for each request
    // the daemon took.
    let (mut s, sent) = stalled.pop().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..sent.min(200) {
        let mut header = [0u8; 16];
        s.read_exact(&mut header).unwrap();
        assert_eq!(u32::from_le_bytes(header[4..8].try_into().unwrap()), i as u32, "reply out of order");
        let len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body.len(), 4000);
    }
    // The stalled clients go away with replies still queued for them (their writers
    // blocked mid-write): the daemon cleans up and goes on serving, old and new clients.
    drop(s);
    drop(stalled);
    std::thread::sleep(Duration::from_millis(200));
    ok(&dom0, "xenstore-write", &["/after", "yes"]);
    assert_eq!(ok(&dom0, "xenstore-read", &["/after"]), "yes\n");
}
