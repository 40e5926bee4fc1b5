//! XenStore-State: the committed tree, the registered watches and the watch events not yet
//! delivered, kept apart from XenStore-Logic so that a restarted Logic resumes exactly where
//! the last one stopped. It answers the requests of the protocol in [`crate::state_protocol`],
//! where that protocol's messages, limits and Logic-side calls are defined.

use crate::state_protocol::{
    MAX_EVENTS, MAX_STAGED, Refusal, Reply, Request, SLACK, Update, WatchRecord, encoded_len,
};
use crate::store::Node;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;

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

#[cfg(test)]
mod tests;
