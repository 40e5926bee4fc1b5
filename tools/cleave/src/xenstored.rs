//! `cleave xenstored`: XenStore-Logic and the store (the same code the components run) as a
//! daemon on the host, over Unix sockets, so Xen's own clients (Debian's `xenstore-utils`,
//! pointed at it with `XENSTORED_PATH`) can be used against it. A connection to the main
//! socket is domain 0, as with Xen's daemon; each `--domain N=PATH` socket makes its
//! connections domain N, to try the permission rules from the host.

use cleave_xenstore::logic::Logic;
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{self, Framed};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Serves until killed. Errors only for sockets that cannot be made.
pub fn serve(main: &Path, domains: &[(u32, PathBuf)]) -> Result<(), String> {
    let logic = Arc::new(Mutex::new(Logic::new(Quota::default())));
    let next = Arc::new(AtomicU64::new(1));
    let mut listeners = Vec::new();
    for (domid, path) in core::iter::once((0, main.to_path_buf())).chain(domains.iter().cloned()) {
        // A stale socket file from an earlier run is replaced; anything else is an error.
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| format!("cleave: cannot replace {}: {e}\n", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cleave: cannot listen on {}: {e}\n", path.display()))?;
        eprintln!("cleave xenstored: domain {domid} connects at {}", path.display());
        listeners.push((domid, listener));
    }
    let mut threads = Vec::new();
    for (domid, listener) in listeners {
        let (logic, next) = (Arc::clone(&logic), Arc::clone(&next));
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (logic, id) = (Arc::clone(&logic), next.fetch_add(1, Ordering::Relaxed));
                std::thread::spawn(move || connection(stream, id, domid, &logic));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Reads messages, answers each; a message announcing more than Xen's payload limit ends
/// the connection (the stream cannot be resynchronised), as does any I/O error.
fn connection(mut stream: UnixStream, id: u64, domid: u32, logic: &Mutex<Logic>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    'read: loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            match wire::frame(&pending) {
                Framed::Incomplete => break,
                Framed::TooLong(_) => break 'read,
                Framed::Message(header, payload, used) => {
                    let reply = match logic.lock() {
                        Ok(mut l) => l.handle(id, domid, &header, payload),
                        Err(_) => break 'read,
                    };
                    if stream.write_all(&reply).is_err() {
                        break 'read;
                    }
                    pending.drain(..used);
                }
            }
        }
    }
    if let Ok(mut l) = logic.lock() {
        l.close(id);
    }
}

/// Reads `N=PATH`.
pub fn parse_domain(text: &str) -> Result<(u32, PathBuf), String> {
    let (n, path) = text.split_once('=').ok_or_else(|| format!("`{text}`: expected DOMID=PATH"))?;
    let domid = n.parse().map_err(|_| format!("`{n}` is not a domain id"))?;
    if path.is_empty() {
        return Err(format!("`{text}`: no socket path"));
    }
    Ok((domid, PathBuf::from(path)))
}
