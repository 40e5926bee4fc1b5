//! XenStore-Logic's request handling: one wire message in, one reply out, for a connection
//! of a given domain, against the store; transactions with Xen's conflict rule (`EAGAIN`
//! when a node the transaction touched changed before it ended); watches, whose events
//! queue up for the connections that registered them (`take_events`).

use crate::path::{self, ABS_PATH_MAX};
use crate::perms::{self, Perm};
use crate::state_protocol::{Journal, MAX_EVENTS, MAX_QUEUED_EVENTS, Snapshot, Update, WatchRecord as Watch};
use crate::store::{Overlay, Quota, Store, Tree, TxView};
use crate::wire::{self, Error, Header, MsgType, Request};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Most transactions open at once over all connections (a bound on memory).
pub const MAX_TRANSACTIONS: usize = 1024;

struct Transaction {
    /// The connection that started it (only it may use it).
    connection: u64,
    /// That connection's domain (what the per-domain limit counts).
    domid: u32,
    /// What it created, changed or removed, over the committed store.
    overlay: Overlay,
    /// Every path the transaction looked at or changed, with its generation when it first
    /// did (`None`: it did not exist).
    seen: BTreeMap<String, Option<u64>>,
    /// The paths its requests changed (whether by removal, and the permissions before),
    /// fired when it commits.
    fired: Vec<Change>,
}

/// A change watches may hear of: the absolute path, whether it was removed, and the
/// node's permissions before the change (a watcher that could read it then hears of it).
type Change = (String, bool, Option<Vec<Perm>>);

/// Most transactions one unprivileged domain may have open, over all its connections
/// (Xen's default quota of 10): opening more connections buys a domain nothing.
pub const MAX_TRANSACTIONS_PER_DOMAIN: usize = 10;

/// Transactions kept for domain 0: unprivileged domains together may hold at most
/// `MAX_TRANSACTIONS - RESERVED_FOR_DOM0`, so however many of them there are, domain 0
/// can always start one.
pub const RESERVED_FOR_DOM0: usize = 64;

/// Most watches one unprivileged domain may hold over all its connections (Xen's default
/// quota of 128).
pub const MAX_WATCHES: usize = 128;

/// The store and its open transactions.
pub struct Logic {
    store: Store,
    transactions: BTreeMap<u32, Transaction>,
    next_tx: u32,
    /// Which Logic this is since State started (0 for the first): the top bits of its
    /// transaction ids.
    incarnation: u32,
    watches: Vec<Watch>,
    /// `XS_WATCH_EVENT` messages waiting to go out.
    events: EventQueue,
    /// What changed since the last `take_journal`: what State must be told.
    journal: Journal,
}

/// Transaction ids are the Logic incarnation (12 bits) over a counter (20 bits).
const TX_COUNTER_BITS: u32 = 20;
const TX_COUNTER_MASK: u32 = (1 << TX_COUNTER_BITS) - 1;

/// What a request produced: a reply payload, or an error.
type Outcome = Result<Vec<u8>, Error>;

const OK: &[u8] = b"OK\0";

impl Logic {
    /// A fresh store with `quota`.
    pub fn new(quota: Quota) -> Self {
        Self::restore(quota, Snapshot::default())
    }

    /// Resumes from what XenStore-State kept (`state_protocol::load`); a snapshot with no nodes is
    /// a fresh store. Transactions the previous Logic had open are over (`EAGAIN`).
    pub fn restore(quota: Quota, snapshot: Snapshot) -> Self {
        let mut store = if snapshot.nodes.is_empty() {
            Store::new(quota)
        } else {
            Store::from_nodes(quota, snapshot.nodes, snapshot.generation)
        };
        store.track_changes();
        let generation = store.generation();
        let events = EventQueue::restore(snapshot.events, &snapshot.watches);
        Self {
            store,
            transactions: BTreeMap::new(),
            next_tx: 1,
            incarnation: snapshot.incarnation & 0xfff,
            watches: snapshot.watches,
            events,
            journal: Journal { generation, ..Journal::default() },
        }
    }

    /// What changed since the last call (State must hold it before the replies that
    /// acknowledge it go out).
    pub fn take_journal(&mut self) -> Journal {
        for p in self.store.take_changes() {
            let update = match self.store.node(&p) {
                Some(n) => Update::Put(p, n.clone()),
                None => Update::Remove(p),
            };
            self.journal.updates.push(update);
        }
        let generation = self.store.generation();
        core::mem::replace(&mut self.journal, Journal { generation, ..Journal::default() })
    }

    /// The committed store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A connection closed: its open transactions end without committing, its watches go.
    pub fn close(&mut self, connection: u64) {
        self.transactions.retain(|_, tx| tx.connection != connection);
        self.watches.retain(|w| w.connection != connection);
        self.events.forget(connection);
        self.journal.updates.push(Update::Forget(connection));
    }

    /// Every queued watch event, each for its connection, in order.
    pub fn take_events(&mut self) -> Vec<(u64, Vec<u8>)> {
        let events = self.events.take_all();
        let mut delivered: BTreeMap<u64, u32> = BTreeMap::new();
        for (c, _) in &events {
            *delivered.entry(*c).or_default() += 1;
        }
        self.journal.updates.extend(delivered.into_iter().map(|(c, n)| Update::Delivered(c, n)));
        events
    }

    /// The watch events queued for `connection`, in order, as many as fit in `room` bytes
    /// (the rest stay queued).
    pub fn take_events_for(&mut self, connection: u64, room: usize) -> Vec<Vec<u8>> {
        let mine = self.events.take_for(connection, room);
        if !mine.is_empty() {
            self.journal.updates.push(Update::Delivered(connection, mine.len() as u32));
        }
        mine
    }

    /// The connections with events waiting, in order.
    pub fn connections_with_events(&self) -> Vec<u64> {
        self.events.queued.keys().copied().collect()
    }

    /// How many watches are registered.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// How many watch events wait for `connection`.
    pub fn pending_events(&self, connection: u64) -> usize {
        self.events.pending(connection)
    }

    /// Queues a watch event for `connection` of `domid`, under the rule `EventQueue`
    /// states.
    fn event(&mut self, connection: u64, domid: u32, path: &str, token: &str) {
        let mut out = alloc::vec![0u8; wire::HEADER_LEN + path.len() + token.len() + 2];
        if let Some(n) = wire::encode(
            &mut out,
            MsgType::WatchEvent,
            0,
            0,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        ) {
            out.truncate(n);
            if self.events.admits(connection, domid) {
                self.journal.updates.push(Update::Event(connection, out.clone()));
                self.events.push(connection, domid, out);
            }
        }
    }

    /// Fires the watches a change at `changed` (absolute) concerns: those at or above it,
    /// and, when it was removed, those below it. As in Xen, a watcher hears of it only if it
    /// may read the node or its parent, now or (`before`) before the change.
    fn fire(&mut self, changed: &str, removed: bool, before: Option<&[Perm]>) {
        let parent = path::parent(changed).and_then(|p| self.store.node(p)).map(|n| n.perms.clone());
        let now = self.store.node(changed).map(|n| n.perms.clone());
        let mut due = Vec::new();
        for w in &self.watches {
            let above = path::is_within(changed, &w.absolute);
            let below = removed && path::is_within(&w.absolute, changed);
            if !(above || below) {
                continue;
            }
            let may = |p: &Option<Vec<Perm>>| {
                p.as_deref().is_some_and(|p| perms::allowed(p, w.domid, perms::Access::Read))
            };
            let was = before.is_some_and(|p| perms::allowed(p, w.domid, perms::Access::Read));
            if !(may(&now) || may(&parent) || was) {
                continue;
            }
            let reported = if below { w.absolute.as_str() } else { changed };
            due.push((w.connection, w.domid, relative_to(reported, &w.registered, w.domid), w.token.clone()));
        }
        for (connection, domid, p, token) in due {
            self.event(connection, domid, &p, &token);
        }
    }

    /// Handles one message from `connection` (any number the caller keeps unique), of
    /// domain `domid`; returns the whole reply message (header and payload), which carries
    /// the request's `req_id` and `tx_id`.
    pub fn handle(&mut self, connection: u64, domid: u32, header: &Header, payload: &[u8]) -> Vec<u8> {
        self.events.new_request();
        // `decode` refuses unknown types, so a successful request has a type.
        let outcome = wire::decode(header, payload)
            .and_then(|request| self.perform(connection, domid, header, request));
        let (reply_type, body) = match (outcome, MsgType::from_u32(header.msg_type)) {
            (Ok(body), Some(ty)) => (ty, body),
            (Err(e), _) => {
                let mut body = e.name().as_bytes().to_vec();
                body.push(0);
                (MsgType::Error, body)
            }
            (Ok(_), None) => (MsgType::Error, b"ENOSYS\0".to_vec()),
        };
        let mut out = alloc::vec![0u8; wire::HEADER_LEN + body.len()];
        match wire::encode(&mut out, reply_type, header.req_id, header.tx_id, &[&body]) {
            Some(n) => {
                out.truncate(n);
                out
            }
            None => {
                let mut out = alloc::vec![0u8; 32];
                let n = wire::encode_error(&mut out, header, Error::TooBig).unwrap_or(0);
                out.truncate(n);
                out
            }
        }
    }

    fn perform(&mut self, connection: u64, domid: u32, header: &Header, request: Request<'_>) -> Outcome {
        match request {
            Request::TransactionStart => {
                if header.tx_id != 0 {
                    return Err(Error::Busy);
                }
                let domain = self.transactions.values().filter(|t| t.domid == domid).count();
                let unprivileged = self.transactions.values().filter(|t| t.domid != 0).count();
                let full = if domid == 0 {
                    self.transactions.len() >= MAX_TRANSACTIONS
                } else {
                    domain >= MAX_TRANSACTIONS_PER_DOMAIN
                        || unprivileged >= MAX_TRANSACTIONS - RESERVED_FOR_DOM0
                };
                if full {
                    return Err(Error::NoSpc);
                }
                // The next counter value not in use, under this Logic's incarnation.
                let mut id;
                loop {
                    id = (self.incarnation << TX_COUNTER_BITS) | self.next_tx;
                    self.next_tx = (self.next_tx + 1) & TX_COUNTER_MASK;
                    if self.next_tx == 0 {
                        self.next_tx = 1;
                    }
                    if !self.transactions.contains_key(&id) {
                        break;
                    }
                }
                let overlay = self.store.overlay();
                self.transactions.insert(
                    id,
                    Transaction { connection, domid, overlay, seen: BTreeMap::new(), fired: Vec::new() },
                );
                let mut body = id.to_string().into_bytes();
                body.push(0);
                Ok(body)
            }
            Request::TransactionEnd(commit) => {
                let tx =
                    self.transactions.remove(&header.tx_id).ok_or_else(|| self.unknown_tx(header.tx_id))?;
                if tx.connection != connection {
                    self.transactions.insert(header.tx_id, tx);
                    return Err(Error::NoEnt);
                }
                if commit {
                    let reads = tx.seen.iter().map(|(p, g)| (p.clone(), *g)).collect();
                    self.commit(tx)?;
                    self.journal.reads = reads;
                }
                Ok(OK.to_vec())
            }
            Request::GetDomainPath(id) => {
                let mut buf = [0u8; 32];
                let n = path::home(id, &mut buf)?;
                let mut body = buf[..n].to_vec();
                body.push(0);
                Ok(body)
            }
            Request::ResetWatches => {
                // As Xen: the connection's watches and its open transactions end.
                self.watches.retain(|w| w.connection != connection);
                self.transactions.retain(|_, tx| tx.connection != connection);
                self.events.forget(connection);
                self.journal.updates.push(Update::Forget(connection));
                Ok(OK.to_vec())
            }
            Request::Watch(p, token) => {
                let mut buf = [0u8; ABS_PATH_MAX + 32];
                let absolute = path::resolve(p, domid, &mut buf)?.to_string();
                if self
                    .watches
                    .iter()
                    .any(|w| w.connection == connection && w.absolute == absolute && w.token == token)
                {
                    return Err(Error::Exist);
                }
                if domid != 0 && self.watches.iter().filter(|w| w.domid == domid).count() >= MAX_WATCHES {
                    return Err(Error::NoSpc);
                }
                let watch = Watch {
                    connection,
                    domid,
                    registered: p.to_string(),
                    absolute,
                    token: token.to_string(),
                };
                self.journal.updates.push(Update::Watch(watch.clone()));
                self.watches.push(watch);
                // As Xen does: one event right away, so the client reads the initial state.
                self.event(connection, domid, p, token);
                Ok(OK.to_vec())
            }
            Request::Unwatch(p, token) => {
                let mut buf = [0u8; ABS_PATH_MAX + 32];
                let absolute = path::resolve(p, domid, &mut buf)?;
                let at = self
                    .watches
                    .iter()
                    .position(|w| w.connection == connection && w.absolute == absolute && w.token == token)
                    .ok_or(Error::NoEnt)?;
                let gone = self.watches.remove(at);
                self.journal.updates.push(Update::Unwatch(connection, gone.absolute, gone.token));
                Ok(OK.to_vec())
            }
            other => {
                let kind = match other {
                    Request::Write(p, _) | Request::SetPerms(p, _) => Some((p, false, false)),
                    Request::Mkdir(p) => Some((p, false, true)),
                    Request::Rm(p) => Some((p, true, false)),
                    _ => None,
                };
                let tx_id = header.tx_id;
                if tx_id != 0 {
                    let tx = self.transactions.get(&tx_id).ok_or_else(|| self.unknown_tx(tx_id))?;
                    if tx.connection != connection {
                        return Err(Error::NoEnt);
                    }
                }
                let overlay = match tx_id {
                    0 => None,
                    _ => Some(&self.transactions.get(&tx_id).ok_or(Error::NoEnt)?.overlay),
                };
                // What the change is, judged before it happens: removing a missing node or
                // making an existing one changes nothing and fires nothing.
                let mut buf = [0u8; ABS_PATH_MAX + 32];
                let change: Option<Change> = match kind {
                    Some((p, removed, mkdir)) => {
                        let absolute = path::resolve(p, domid, &mut buf)?;
                        let node = match overlay {
                            Some(o) => o.node(&self.store, absolute),
                            None => self.store.node(absolute),
                        };
                        let before = node.map(|n| n.perms.clone());
                        let no_op = (removed && before.is_none()) || (mkdir && before.is_some());
                        (!no_op).then(|| (absolute.to_string(), removed, before))
                    }
                    None => None,
                };
                if tx_id == 0 {
                    let body = node_request(&mut self.store, domid, other, None)?;
                    if let Some((p, removed, before)) = change {
                        self.fire(&p, removed, before.as_deref());
                    }
                    Ok(body)
                } else {
                    let tx = self.transactions.get_mut(&tx_id).ok_or(Error::NoEnt)?;
                    let mut view = TxView { base: &self.store, overlay: &mut tx.overlay };
                    let body = node_request(&mut view, domid, other, Some(&mut tx.seen))?;
                    // A path changed twice in one transaction fires once when it lands (a
                    // transaction must not multiply the events it causes).
                    if let Some((p, removed, before)) = change {
                        match tx.fired.iter_mut().find(|(q, _, _)| *q == p) {
                            Some(earlier) => earlier.1 |= removed,
                            None => tx.fired.push((p, removed, before)),
                        }
                    }
                    Ok(body)
                }
            }
        }
    }

    /// The error for a transaction id not open: `EAGAIN` if an earlier Logic opened it
    /// (its transactions ended with it: the client starts again), else `ENOENT`.
    fn unknown_tx(&self, tx_id: u32) -> Error {
        if tx_id >> TX_COUNTER_BITS != self.incarnation { Error::Again } else { Error::NoEnt }
    }

    /// Ends a transaction: if every node it saw is as it was, its changes land.
    fn commit(&mut self, tx: Transaction) -> Result<(), Error> {
        // Every node it read, and every node it changed (a change is computed from the
        // node as the transaction saw it: installing it over a newer one would lose that
        // one), must be as it was.
        if !self.store.unchanged(tx.seen.iter().map(|(p, g)| (p.as_str(), *g)), &tx.overlay) {
            return Err(Error::Again);
        }
        // Quotas hold for what lands, not only for each request in the transaction (three
        // transactions of 900 nodes each must not give a domain 2,700).
        if !self.store.within_quota(&tx.overlay) {
            return Err(Error::NoSpc);
        }
        self.store.install(tx.overlay);
        for (p, removed, before) in &tx.fired {
            self.fire(p, *removed, before.as_deref());
        }
        Ok(())
    }
}

/// Most watch events undelivered to one unprivileged domain over all its connections: a
/// memory bound (128 watches firing for 16 paths changed in one transaction fill it).
pub const MAX_EVENTS_PER_DOMAIN: usize = 2048;

/// The watch events waiting to go out, with the rule for dropping them, which follows
/// Xen's aim (a client that does not read its events costs only itself; one that does
/// loses none): an event for a connection is dropped only when
/// - that connection already had `MAX_QUEUED_EVENTS` undelivered events before the
///   request that caused it began (it is not collecting them; as soon as it does, events
///   reach it again), or
/// - its domain is unprivileged and has `MAX_EVENTS_PER_DOMAIN` undelivered, or
/// - `MAX_EVENTS` are queued in all (XenStore-State's bound; not reached by the rules
///   above with the system's connections).
///
/// So one request may queue any number of events for a connection that keeps up (10,000
/// watches of domain 0 all hear of one write), while a connection that stops collecting
/// holds at most `MAX_QUEUED_EVENTS` plus what one request adds.
#[derive(Default)]
struct EventQueue {
    /// (connection, whole `XS_WATCH_EVENT` message), in queue order.
    events: Vec<(u64, Vec<u8>)>,
    /// How many wait for each connection (only connections with some).
    queued: BTreeMap<u64, usize>,
    /// How many of those the current request added.
    this_request: BTreeMap<u64, usize>,
    /// Each connection's domain, as its watches say.
    domain_of: BTreeMap<u64, u32>,
    /// How many wait for each domain.
    per_domain: BTreeMap<u32, usize>,
}

impl EventQueue {
    /// The queue a restarted Logic takes back from State.
    fn restore(events: Vec<(u64, Vec<u8>)>, watches: &[Watch]) -> Self {
        let mut q =
            Self { domain_of: watches.iter().map(|w| (w.connection, w.domid)).collect(), ..Self::default() };
        for (c, e) in events {
            let domid = q.domain_of.get(&c).copied().unwrap_or(0);
            q.push(c, domid, e);
        }
        q
    }

    fn new_request(&mut self) {
        self.this_request.clear();
    }

    fn pending(&self, connection: u64) -> usize {
        self.queued.get(&connection).copied().unwrap_or(0)
    }

    fn admits(&self, connection: u64, domid: u32) -> bool {
        let backlog =
            self.pending(connection).saturating_sub(self.this_request.get(&connection).copied().unwrap_or(0));
        let domain = self.per_domain.get(&domid).copied().unwrap_or(0);
        backlog < MAX_QUEUED_EVENTS
            && (domid == 0 || domain < MAX_EVENTS_PER_DOMAIN)
            && self.events.len() < MAX_EVENTS
    }

    fn push(&mut self, connection: u64, domid: u32, event: Vec<u8>) {
        self.domain_of.insert(connection, domid);
        *self.queued.entry(connection).or_default() += 1;
        *self.this_request.entry(connection).or_default() += 1;
        *self.per_domain.entry(domid).or_default() += 1;
        self.events.push((connection, event));
    }

    /// Counts `n` events of `connection` as gone.
    fn gone(&mut self, connection: u64, n: usize) {
        let domid = self.domain_of.get(&connection).copied().unwrap_or(0);
        for (map, key) in [(&mut self.queued, connection), (&mut self.this_request, connection)] {
            if let Some(count) = map.get_mut(&key) {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        if let Some(count) = self.per_domain.get_mut(&domid) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_domain.remove(&domid);
            }
        }
    }

    fn take_all(&mut self) -> Vec<(u64, Vec<u8>)> {
        let events = core::mem::take(&mut self.events);
        self.queued.clear();
        self.this_request.clear();
        self.per_domain.clear();
        events
    }

    fn take_for(&mut self, connection: u64, room: usize) -> Vec<Vec<u8>> {
        let mut mine = Vec::new();
        let mut used = 0;
        let mut full = false;
        self.events.retain_mut(|(c, e)| {
            if *c != connection || full {
                return true;
            }
            if used + e.len() > room {
                full = true;
                return true;
            }
            used += e.len();
            mine.push(core::mem::take(e));
            false
        });
        self.gone(connection, mine.len());
        mine
    }

    fn forget(&mut self, connection: u64) {
        let n = self.pending(connection);
        self.events.retain(|(c, _)| *c != connection);
        self.gone(connection, n);
        self.domain_of.remove(&connection);
    }
}

/// `path` as a watch registered as `registered` reports it: relative to the domain's home
/// when the watch was registered with a relative path.
fn relative_to(path: &str, registered: &str, domid: u32) -> String {
    if registered.starts_with('/') || registered.starts_with('@') {
        return path.to_string();
    }
    let mut buf = [0u8; 32];
    let Ok(n) = path::home(domid, &mut buf) else { return path.to_string() };
    let home = core::str::from_utf8(&buf[..n]).unwrap_or("");
    path.strip_prefix(home).and_then(|rest| rest.strip_prefix('/')).unwrap_or(path).to_string()
}

/// Records, for a transaction, the generation of `p` when first seen (`None`: absent) and,
/// if it is absent, that of its nearest existing ancestor, whose child list creating `p`
/// changes. Changes elsewhere (even to other children of the same ancestors) do not
/// conflict.
fn note(store: &impl Tree, seen: &mut Option<&mut BTreeMap<String, Option<u64>>>, p: &str) {
    let Some(seen) = seen.as_deref_mut() else { return };
    let mut at = Some(p);
    while let Some(q) = at {
        let generation = store.original_generation(q);
        seen.entry(q.to_string()).or_insert(generation);
        if generation.is_some() {
            break;
        }
        at = path::parent(q);
    }
}

/// Performs a request on one node against `store` (the committed one, or a transaction's).
fn node_request(
    store: &mut impl Tree,
    domid: u32,
    request: Request<'_>,
    mut seen: Option<&mut BTreeMap<String, Option<u64>>>,
) -> Outcome {
    let mut buf = [0u8; ABS_PATH_MAX + 32];
    let target = match request {
        Request::Read(p)
        | Request::Write(p, _)
        | Request::Mkdir(p)
        | Request::Rm(p)
        | Request::Directory(p)
        | Request::DirectoryPart(p, _)
        | Request::GetPerms(p)
        | Request::SetPerms(p, _) => p,
        _ => return Err(Error::Inval),
    };
    let p = path::resolve(target, domid, &mut buf)?;
    path::check(p, path::PathKind::Node)?;
    note(store, &mut seen, p);
    if matches!(request, Request::Rm(_)) {
        // Removing touches the whole subtree.
        for q in &store.below(p) {
            note(store, &mut seen, q);
        }
    }
    match request {
        Request::Read(_) => store.read(p, domid).map(<[u8]>::to_vec),
        Request::Write(_, value) => store.write(p, value, domid).map(|()| OK.to_vec()),
        Request::Mkdir(_) => store.mkdir(p, domid).map(|()| OK.to_vec()),
        Request::Rm(_) => store.rm(p, domid).map(|()| OK.to_vec()),
        Request::Directory(_) => Ok(nul_list(store.directory(p, domid)?.iter().map(|s| s.as_bytes()))),
        Request::DirectoryPart(_, offset) => {
            let generation = store.node(p).map_or(0, |n| n.generation);
            let all = nul_list(store.directory(p, domid)?.iter().map(|s| s.as_bytes()));
            let start = (offset as usize).min(all.len());
            let mut body = generation.to_string().into_bytes();
            body.push(0);
            let room = wire::PAYLOAD_MAX - body.len() - 1;
            let rest = &all[start..];
            if rest.len() <= room {
                body.extend_from_slice(rest);
                body.push(0);
            } else {
                // Whole names only: cut after the last NUL that fits.
                let cut = rest[..room].iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
                body.extend_from_slice(&rest[..cut]);
            }
            Ok(body)
        }
        Request::GetPerms(_) => {
            let perms = store.get_perms(p, domid)?;
            let mut body = Vec::new();
            for perm in perms {
                let mut b = [0u8; 11];
                let n = perm.write(&mut b);
                body.extend_from_slice(&b[..n]);
                body.push(0);
            }
            Ok(body)
        }
        Request::SetPerms(_, list) => {
            let mut parsed = [Perm { access: perms::Access::None, domid: 0 }; 64];
            let n = perms::parse_list(list, &mut parsed)?;
            store.set_perms(p, &parsed[..n], domid).map(|()| OK.to_vec())
        }
        _ => Err(Error::Inval),
    }
}

/// Each item followed by a NUL.
fn nul_list<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests;
