//! XenStore-State: the committed tree, the registered watches and the watch events not yet
//! delivered, kept apart from XenStore-Logic so that a restarted Logic resumes exactly where
//! the last one stopped; and the narrow protocol between the two.
//!
//! Logic keeps a working copy of the tree and, before it answers a request that changed
//! anything, sends State the change as one [`Request::Commit`]: the nodes it put or
//! removed, the store's new generation, watches added or removed, events queued or
//! delivered, and (for a transaction) the generation of every node the transaction read.
//! State applies all of it or, if a node read has changed since, none of it
//! ([`Reply::Conflict`]). A change too large for one message goes as [`Request::Stage`]
//! parts followed by the commit, still applied at once. A new Logic sends
//! [`Request::Start`] and reads everything back ([`load`]).
//!
//! What a Logic restart ends: open transactions. Their ids carry the Logic incarnation
//! that opened them, so a later request in one, or its `TRANSACTION_END`, gets `EAGAIN`
//! (Xen's "conflict, retry"), which Xen's clients already handle by starting again.
//! Acknowledged writes, watches and undelivered events survive.

use crate::store::Node;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A registered watch, as State keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// The connection that registered it.
    pub connection: u64,
    /// Its domain (which nodes it may hear of).
    pub domid: u32,
    /// The path as registered (a relative one is reported relative).
    pub registered: String,
    /// Absolute, or a special `@` path.
    pub absolute: String,
    /// The client's token.
    pub token: String,
}

/// One change Logic makes to what State keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// The node at this path is now this (created or changed).
    Put(String, Node),
    /// The node at this path is gone (each removed path is listed).
    Remove(String),
    /// A watch was registered.
    Watch(WatchRecord),
    /// A watch was removed: connection, absolute path, token.
    Unwatch(u64, String, String),
    /// A connection closed or reset its watches: they and its queued events go.
    Forget(u64),
    /// A `WATCH_EVENT` message (whole) queued for a connection.
    Event(u64, Vec<u8>),
    /// The connection's first N queued events were delivered.
    Delivered(u64, u32),
}

/// What Logic asks State.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A Logic (re)starts: drops any staged part; answered with [`Reply::Started`].
    Start,
    /// The node at a path.
    Get(String),
    /// The names of a node's children.
    Children(String),
    /// Nodes in path order, starting after the given path (or from the first).
    Nodes(Option<String>),
    /// Registered watches from this index on.
    Watches(u32),
    /// Queued events from this index on (all connections, in queue order).
    Events(u32),
    /// Part of a change too large for one message (reads, updates): kept until the commit.
    Stage(Vec<(String, Option<u64>)>, Vec<Update>),
    /// Applies the staged parts and these updates, and sets the store generation, if every
    /// node in `reads` has the generation given (`None`: absent).
    Commit {
        /// What a transaction saw: path and generation.
        reads: Vec<(String, Option<u64>)>,
        /// The rest of the change.
        updates: Vec<Update>,
        /// The store's generation afterwards.
        generation: u64,
    },
}

/// What State answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// To `Start`: how many Logics started before this one, and the store generation.
    Started {
        /// 0 for the first.
        incarnation: u32,
        /// The generation of the last commit.
        generation: u64,
    },
    /// To `Get`.
    Node(Option<Node>),
    /// To `Children`: `None` if the node does not exist.
    Children(Option<Vec<String>>),
    /// To `Nodes`: some nodes, and whether they were the last.
    Nodes(Vec<(String, Node)>, bool),
    /// To `Watches`: some watches, and whether they were the last.
    Watches(Vec<WatchRecord>, bool),
    /// To `Events`: some (connection, event) pairs, and whether they were the last.
    Events(Vec<(u64, Vec<u8>)>, bool),
    /// To `Stage`.
    Staged,
    /// To `Commit`: applied.
    Committed,
    /// To `Commit`: this node changed since it was read; nothing applied.
    Conflict(String),
    /// The request could not be read or would exceed State's limits; nothing changed.
    Refused(Refusal),
}

/// Why State refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Not a request in this protocol.
    Malformed,
    /// More staged updates than [`MAX_STAGED`].
    TooLarge,
    /// The reply would not fit the reply buffer.
    NoRoom,
}

/// Most updates staged for one commit.
pub const MAX_STAGED: usize = 1 << 16;

/// The backlog after which a connection that does not collect its events gets no more
/// (Logic's rule; see `logic`'s event queue).
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Most events State holds in all, whatever Logic sends: a bound on its memory. Logic
/// drops events at the same bound, so the two agree.
pub const MAX_EVENTS: usize = 1 << 14;

/// Everything a Logic needs to resume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Which Logic this is (0 for the first).
    pub incarnation: u32,
    /// The store generation.
    pub generation: u64,
    /// Every node, in path order.
    pub nodes: Vec<(String, Node)>,
    /// Every registered watch, in registration order.
    pub watches: Vec<WatchRecord>,
    /// Every undelivered event, in queue order.
    pub events: Vec<(u64, Vec<u8>)>,
}

/// XenStore-State.
#[derive(Clone, Debug)]
pub struct State {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    watches: Vec<WatchRecord>,
    events: VecDeque<(u64, Vec<u8>)>,
    staged: Vec<Update>,
    staged_reads: Vec<(String, Option<u64>)>,
    starts: u32,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Encoded size of `value` in this protocol.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).map_or(usize::MAX, |v| v.len())
}

/// Room kept in every reply for the enum tag, lengths and the final flag.
const SLACK: usize = 32;

impl State {
    /// Holds the tree a fresh store starts with: the root, owned by domain 0.
    pub fn new() -> Self {
        let fresh = crate::store::Store::new(crate::store::Quota::default());
        let nodes = fresh.nodes().map(|(p, n)| (String::from(p), n.clone())).collect();
        Self {
            nodes,
            generation: fresh.generation(),
            watches: Vec::new(),
            events: VecDeque::new(),
            staged: Vec::new(),
            staged_reads: Vec::new(),
            starts: 0,
        }
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never empty: the root is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decodes a request, handles it and encodes the reply into `out`; returns its length.
    /// Anything unreadable gets [`Refusal::Malformed`] and changes nothing.
    pub fn serve(&mut self, request: &[u8], out: &mut [u8]) -> usize {
        let reply = match postcard::from_bytes::<Request>(request) {
            Ok(r) => self.handle(r, out.len()),
            Err(_) => Reply::Refused(Refusal::Malformed),
        };
        match postcard::to_slice(&reply, out) {
            Ok(used) => used.len(),
            Err(_) => postcard::to_slice(&Reply::Refused(Refusal::NoRoom), out).map_or(0, |u| u.len()),
        }
    }

    /// Handles one request; `room` bounds the encoded size of the reply.
    pub fn handle(&mut self, request: Request, room: usize) -> Reply {
        let room = room.saturating_sub(SLACK);
        match request {
            Request::Start => {
                self.staged.clear();
                self.staged_reads.clear();
                let incarnation = self.starts;
                self.starts = self.starts.wrapping_add(1);
                Reply::Started { incarnation, generation: self.generation }
            }
            Request::Get(path) => Reply::Node(self.nodes.get(&path).cloned()),
            Request::Children(path) => {
                if !self.nodes.contains_key(&path) {
                    return Reply::Children(None);
                }
                let prefix = if path == "/" { String::from("/") } else { alloc::format!("{path}/") };
                let names = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
                    .map(|(k, _)| String::from(&k[prefix.len()..]))
                    .collect();
                Reply::Children(Some(names))
            }
            Request::Nodes(after) => {
                let mut used = 0;
                let mut out = Vec::new();
                let start = match &after {
                    Some(p) => core::ops::Bound::Excluded(p.clone()),
                    None => core::ops::Bound::Unbounded,
                };
                let mut done = true;
                for (path, node) in self.nodes.range((start, core::ops::Bound::Unbounded)) {
                    let item = (path.clone(), node.clone());
                    let n = encoded_len(&item);
                    if used + n > room {
                        done = false;
                        break;
                    }
                    used += n;
                    out.push(item);
                }
                if !done && out.is_empty() {
                    return Reply::Refused(Refusal::NoRoom);
                }
                Reply::Nodes(out, done)
            }
            Request::Watches(from) => {
                let (items, done) = pack(self.watches.iter().skip(from as usize).cloned(), room);
                if !done && items.is_empty() {
                    return Reply::Refused(Refusal::NoRoom);
                }
                Reply::Watches(items, done)
            }
            Request::Events(from) => {
                let (items, done) = pack(self.events.iter().skip(from as usize).cloned(), room);
                if !done && items.is_empty() {
                    return Reply::Refused(Refusal::NoRoom);
                }
                Reply::Events(items, done)
            }
            Request::Stage(reads, updates) => {
                if self.staged.len() + self.staged_reads.len() + updates.len() + reads.len() > MAX_STAGED {
                    self.staged.clear();
                    self.staged_reads.clear();
                    return Reply::Refused(Refusal::TooLarge);
                }
                self.staged_reads.extend(reads);
                self.staged.extend(updates);
                Reply::Staged
            }
            Request::Commit { reads, updates, generation } => {
                let staged = core::mem::take(&mut self.staged);
                let staged_reads = core::mem::take(&mut self.staged_reads);
                for (path, seen) in staged_reads.iter().chain(&reads) {
                    if self.nodes.get(path).map(|n| n.generation) != *seen {
                        return Reply::Conflict(path.clone());
                    }
                }
                for update in staged.into_iter().chain(updates) {
                    self.apply(update);
                }
                self.generation = generation;
                Reply::Committed
            }
        }
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Put(path, node) => {
                self.nodes.insert(path, node);
            }
            Update::Remove(path) => {
                // The root always exists.
                if path != "/" {
                    self.nodes.remove(&path);
                }
            }
            Update::Watch(w) => self.watches.push(w),
            Update::Unwatch(connection, absolute, token) => {
                if let Some(at) = self
                    .watches
                    .iter()
                    .position(|w| w.connection == connection && w.absolute == absolute && w.token == token)
                {
                    self.watches.remove(at);
                }
            }
            Update::Forget(connection) => {
                self.watches.retain(|w| w.connection != connection);
                self.events.retain(|(c, _)| *c != connection);
            }
            Update::Event(connection, event) => {
                // Logic decided which events to keep; State only guards its own memory.
                if self.events.len() < MAX_EVENTS {
                    self.events.push_back((connection, event));
                }
            }
            Update::Delivered(connection, count) => {
                let mut left = count;
                self.events.retain(|(c, _)| {
                    if *c == connection && left > 0 {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
}

/// As many of `items` as fit in `room` encoded bytes, and whether that was all of them.
fn pack<T: Serialize>(items: impl Iterator<Item = T>, room: usize) -> (Vec<T>, bool) {
    let mut used = 0;
    let mut out = Vec::new();
    for item in items {
        let n = encoded_len(&item);
        if used + n > room {
            return (out, false);
        }
        used += n;
        out.push(item);
    }
    (out, true)
}

/// Why talking to State failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// No answer (the transport failed) or one that could not be read.
    Transport,
    /// State answered something that does not fit the question.
    Unexpected(Reply),
    /// A commit's read set had changed: nothing was applied.
    Conflict(String),
}

/// Starts a Logic against State: sends `Start` and reads everything back, asking through
/// `ask` (one request, one reply).
pub fn load(mut ask: impl FnMut(&Request) -> Option<Reply>) -> Result<Snapshot, StateError> {
    let mut snapshot = match ask(&Request::Start).ok_or(StateError::Transport)? {
        Reply::Started { incarnation, generation } => {
            Snapshot { incarnation, generation, ..Snapshot::default() }
        }
        other => return Err(StateError::Unexpected(other)),
    };
    loop {
        let after = snapshot.nodes.last().map(|(p, _)| p.clone());
        match ask(&Request::Nodes(after)).ok_or(StateError::Transport)? {
            Reply::Nodes(nodes, done) => {
                snapshot.nodes.extend(nodes);
                if done {
                    break;
                }
            }
            other => return Err(StateError::Unexpected(other)),
        }
    }
    loop {
        match ask(&Request::Watches(snapshot.watches.len() as u32)).ok_or(StateError::Transport)? {
            Reply::Watches(watches, done) => {
                snapshot.watches.extend(watches);
                if done {
                    break;
                }
            }
            other => return Err(StateError::Unexpected(other)),
        }
    }
    loop {
        match ask(&Request::Events(snapshot.events.len() as u32)).ok_or(StateError::Transport)? {
            Reply::Events(events, done) => {
                snapshot.events.extend(events);
                if done {
                    break;
                }
            }
            other => return Err(StateError::Unexpected(other)),
        }
    }
    Ok(snapshot)
}

/// Sends a change to State: as one `Commit` if it fits `room` encoded bytes, else as
/// `Stage` parts and a final `Commit`.
pub fn commit(
    journal: crate::logic::Journal,
    room: usize,
    mut ask: impl FnMut(&Request) -> Option<Reply>,
) -> Result<(), StateError> {
    let room = room.saturating_sub(SLACK);
    let crate::logic::Journal { reads, updates, generation } = journal;
    let mut part_reads = Vec::new();
    let mut part = Vec::new();
    let mut used = 0;
    let mut stage = |part_reads: &mut Vec<_>, part: &mut Vec<_>| -> Result<(), StateError> {
        let request = Request::Stage(core::mem::take(part_reads), core::mem::take(part));
        match ask(&request).ok_or(StateError::Transport)? {
            Reply::Staged => Ok(()),
            other => Err(StateError::Unexpected(other)),
        }
    };
    for read in reads {
        let n = encoded_len(&read);
        if used + n > room && !part_reads.is_empty() {
            stage(&mut part_reads, &mut part)?;
            used = 0;
        }
        used += n;
        part_reads.push(read);
    }
    for update in updates {
        let n = encoded_len(&update);
        if used + n > room && !(part.is_empty() && part_reads.is_empty()) {
            stage(&mut part_reads, &mut part)?;
            used = 0;
        }
        used += n;
        part.push(update);
    }
    let request = Request::Commit { reads: part_reads, updates: part, generation };
    match ask(&request).ok_or(StateError::Transport)? {
        Reply::Committed => Ok(()),
        Reply::Conflict(path) => Err(StateError::Conflict(path)),
        other => Err(StateError::Unexpected(other)),
    }
}

/// Encodes a request into `out` (for a transport over shared memory); `None` if it does not
/// fit.
pub fn encode_request(request: &Request, out: &mut [u8]) -> Option<usize> {
    postcard::to_slice(request, out).ok().map(|u| u.len())
}

/// Decodes a reply read from shared memory.
pub fn decode_reply(bytes: &[u8]) -> Option<Reply> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests;
