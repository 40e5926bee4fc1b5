//! `cleave xenstored`: XenStore-Logic and XenStore-State (the same code the components run)
//! as a daemon on the host, over Unix sockets, so Xen's own clients (Debian's `xenstore-utils`,
//! pointed at it with `XENSTORED_PATH`) can be used against it. A connection to the main
//! socket is domain 0, as with Xen's daemon; each `--domain N=PATH` socket makes its
//! connections domain N, to try the permission rules from the host.

use cleave_xenstore::logic::Logic;
use cleave_xenstore::state::{self, State};
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{self, Framed};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The store and every connection's write side. Replies and watch events are written
/// under this one lock, so messages to a connection never interleave.
struct Shared {
    logic: Logic,
    /// What Logic commits before it acknowledges anything, as in the running system.
    state: State,
    writers: HashMap<u64, UnixStream>,
}

/// How much one message between Logic and State may hold here (in the system, the ring's
/// half).
const STATE_ROOM: usize = 1 << 20;

impl Shared {
    /// Hands Logic's change to State. If State refuses it (it cannot here: the two are in
    /// one process and agree), Logic starts again from State and the reply becomes an
    /// error: nothing State does not hold is ever acknowledged.
    fn commit(&mut self, reply: Vec<u8>, header: &wire::Header) -> Vec<u8> {
        let journal = self.logic.take_journal();
        if journal.is_empty() {
            return reply;
        }
        let state = &mut self.state;
        match state::commit(journal, STATE_ROOM, |r| Some(state.handle(r.clone(), STATE_ROOM))) {
            Ok(()) => reply,
            Err(e) => {
                eprintln!("cleave xenstored: State refused a change ({e:?}); Logic restarts from State");
                let state = &mut self.state;
                if let Ok(snapshot) = state::load(|r| Some(state.handle(r.clone(), STATE_ROOM))) {
                    self.logic = Logic::restore(Quota::default(), snapshot);
                }
                let mut out = vec![0u8; 32];
                let n = wire::encode_error(&mut out, header, wire::Error::Io).unwrap_or(0);
                out.truncate(n);
                out
            }
        }
    }
}

/// Serves until killed. Errors only for sockets that cannot be made.
pub fn serve(main: &Path, domains: &[(u32, PathBuf)]) -> Result<(), String> {
    let shared = Arc::new(Mutex::new(Shared {
        logic: Logic::new(Quota::default()),
        state: State::new(),
        writers: HashMap::new(),
    }));
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
        let (shared, next) = (Arc::clone(&shared), Arc::clone(&next));
        // This domain's open connections: an unprivileged domain gets at most
        // `MAX_CONNECTIONS_PER_DOMAIN`, and one more is closed at once.
        let open = Arc::new(AtomicU64::new(0));
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if domid != 0 && open.load(Ordering::Relaxed) >= MAX_CONNECTIONS_PER_DOMAIN {
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (shared, open, id) =
                    (Arc::clone(&shared), Arc::clone(&open), next.fetch_add(1, Ordering::Relaxed));
                std::thread::spawn(move || {
                    connection(stream, id, domid, &shared);
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Most connections one unprivileged domain may have open at once (each costs a thread
/// and a writer here; domain 0 is not limited).
pub const MAX_CONNECTIONS_PER_DOMAIN: u64 = 64;

/// Reads messages, answers each, and sends the watch events they cause to whichever
/// connections registered the watches; a message announcing more than Xen's payload limit
/// ends the connection (the stream cannot be resynchronised), as does any I/O error.
fn connection(mut stream: UnixStream, id: u64, domid: u32, shared: &Mutex<Shared>) {
    let Ok(writer) = stream.try_clone() else { return };
    // Writes happen under the store's lock: a client that stops reading must not stall
    // everyone. After a second it is cut off.
    if writer.set_write_timeout(Some(std::time::Duration::from_secs(1))).is_err() {
        return;
    }
    match shared.lock() {
        Ok(mut s) => s.writers.insert(id, writer),
        Err(_) => return,
    };
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
                    let Ok(mut s) = shared.lock() else { break 'read };
                    let reply = s.logic.handle(id, domid, &header, payload);
                    let events = s.logic.take_events();
                    let reply = s.commit(reply, &header);
                    if stream.write_all(&reply).is_err() {
                        break 'read;
                    }
                    for (to, event) in events {
                        // A watcher that cannot take its event is cut off; its own thread
                        // then sees the connection end and cleans up.
                        if let Some(w) = s.writers.get_mut(&to)
                            && w.write_all(&event).is_err()
                        {
                            let _ = w.shutdown(std::net::Shutdown::Both);
                        }
                    }
                    drop(s);
                    pending.drain(..used);
                }
            }
        }
    }
    if let Ok(mut s) = shared.lock() {
        s.logic.close(id);
        let journal = s.logic.take_journal();
        let state = &mut s.state;
        let _ = state::commit(journal, STATE_ROOM, |r| Some(state.handle(r.clone(), STATE_ROOM)));
        s.writers.remove(&id);
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
