//! The narrow protocol between XenStore-Logic and XenStore-State: the messages they
//! exchange, the limits both keep, and Logic's side of it (resuming, committing). Neither
//! `logic` nor `state` imports the other; both speak this.
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

/// The change one or more requests made, for XenStore-State ([`commit`] sends it; Logic's
/// `take_journal` makes it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// A committed transaction's read set: path and generation when first seen.
    pub reads: Vec<(String, Option<u64>)>,
    /// Nodes, watches and events changed, in order.
    pub updates: Vec<Update>,
    /// The store's generation afterwards.
    pub generation: u64,
}

impl Journal {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.updates.is_empty()
    }
}

/// Encoded size of `value` in this protocol.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).map_or(usize::MAX, |v| v.len())
}

/// Room kept in every reply for the enum tag, lengths and the final flag.
pub(crate) const SLACK: usize = 32;

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
    journal: Journal,
    room: usize,
    mut ask: impl FnMut(&Request) -> Option<Reply>,
) -> Result<(), StateError> {
    let room = room.saturating_sub(SLACK);
    let Journal { reads, updates, generation } = journal;
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
