//! `cleave xenstored`: XenStore-Logic and XenStore-State (the same code the components run)
//! as a daemon on the host, over Unix sockets, so Xen's own clients (Debian's `xenstore-utils`,
//! pointed at it with `XENSTORED_PATH`) can be used against it. A connection to the main
//! socket is domain 0, as with Xen's daemon; each `--domain N=PATH` socket makes its
//! connections domain N, to try the permission rules from the host.

use cleave_xenstore::logic::Logic;
use cleave_xenstore::state::State;
use cleave_xenstore::state_protocol as state;
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{self, Framed};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The store and every connection's outbox. The lock is held only to handle one request
/// or to take a connection's events, never while writing to a socket: a client that stops
/// reading stalls its own writer thread and nothing else.
struct Shared {
    logic: Logic,
    /// What Logic commits before it acknowledges anything, as in the running system.
    state: State,
    outboxes: HashMap<u64, Arc<Outbox>>,
}

/// One connection's replies on their way out, and whether Logic holds events for it.
/// Its own writer thread empties it.
struct Outbox {
    queue: Mutex<Queue>,
    /// Signalled when something is queued, written or the connection closes.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    replies: VecDeque<Vec<u8>>,
    /// Replies queued and not yet written to the socket (those taken by the writer
    /// included): the connection's output quota counts these.
    unwritten: usize,
    /// Logic holds watch events for this connection.
    events: bool,
    closed: bool,
}

/// Most replies one connection may have unwritten; past it, its further requests wait
/// (it is not read from) until its client reads. Xen's daemons bound the same thing
/// (C xenstored's outstanding-request quota; oxenstored's output queue limit).
pub const MAX_UNWRITTEN_REPLIES: usize = 32;

/// Most bytes of watch events one connection takes from Logic at a time; the rest stay
/// in Logic, under its rule for a client that does not collect them.
const EVENT_BATCH: usize = 64 * 1024;

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
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
        outboxes: HashMap::new(),
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

/// Reads messages and answers each into the connection's outbox, which its writer thread
/// sends; the watch events a request causes wait in Logic until their connections' writers
/// take them. A message announcing more than Xen's payload limit ends the connection (the
/// stream cannot be resynchronised), as does any I/O error.
fn connection(mut stream: UnixStream, id: u64, domid: u32, shared: &Arc<Mutex<Shared>>) {
    let Ok(socket) = stream.try_clone() else { return };
    let outbox = Arc::new(Outbox { queue: Mutex::new(Queue::default()), changed: Condvar::new() });
    match shared.lock() {
        Ok(mut s) => s.outboxes.insert(id, Arc::clone(&outbox)),
        Err(_) => return,
    };
    let writer = {
        let (outbox, shared) = (Arc::clone(&outbox), Arc::clone(shared));
        std::thread::spawn(move || write_out(socket, id, &outbox, &shared))
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
                    // A client that does not read its replies waits here, alone.
                    {
                        let mut q = outbox.lock();
                        while q.unwritten >= MAX_UNWRITTEN_REPLIES && !q.closed {
                            q = outbox.changed.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        if q.closed {
                            break 'read;
                        }
                    }
                    let Ok(mut s) = shared.lock() else { break 'read };
                    let reply = s.logic.handle(id, domid, &header, payload);
                    let reply = s.commit(reply, &header);
                    {
                        let mut q = outbox.lock();
                        q.replies.push_back(reply);
                        q.unwritten += 1;
                    }
                    outbox.changed.notify_all();
                    for to in s.logic.connections_with_events() {
                        if let Some(o) = s.outboxes.get(&to) {
                            o.lock().events = true;
                            o.changed.notify_all();
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
        s.outboxes.remove(&id);
    }
    outbox.close();
    // A writer blocked on a client that reads nothing returns once the socket is shut.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
}

/// A connection's writer: sends its replies in order, then the watch events Logic holds
/// for it, until the connection closes. Blocking on a client that does not read holds no
/// lock anyone else needs.
fn write_out(mut socket: UnixStream, id: u64, outbox: &Outbox, shared: &Mutex<Shared>) {
    loop {
        let (replies, events) = {
            let mut q = outbox.lock();
            while q.replies.is_empty() && !q.events && !q.closed {
                q = outbox.changed.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if q.closed {
                return;
            }
            (core::mem::take(&mut q.replies), core::mem::take(&mut q.events))
        };
        for reply in &replies {
            if socket.write_all(reply).is_err() {
                outbox.close();
                return;
            }
        }
        if !replies.is_empty() {
            outbox.lock().unwritten -= replies.len();
            outbox.changed.notify_all();
        }
        if events {
            let batch = {
                let Ok(mut s) = shared.lock() else { return };
                let batch = s.logic.take_events_for(id, EVENT_BATCH);
                let journal = s.logic.take_journal();
                let state = &mut s.state;
                let _ = state::commit(journal, STATE_ROOM, |r| Some(state.handle(r.clone(), STATE_ROOM)));
                if s.logic.pending_events(id) > 0 {
                    outbox.lock().events = true;
                }
                batch
            };
            for event in &batch {
                if socket.write_all(event).is_err() {
                    outbox.close();
                    return;
                }
            }
        }
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
