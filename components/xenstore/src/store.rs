//! The tree XenStore-State keeps: nodes by absolute path, each with a value, permissions
//! and a generation, and the operations XenStore-Logic performs on it on behalf of a
//! domain, with Xen's permission rules and error names. (Transactions and watches build
//! on the generations; they live in Logic.)

use crate::path;
use crate::perms::{self, Access, Perm};
use crate::wire::Error;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// Limits on what an unprivileged domain may hold (Xen's quotas; domain 0 has none).
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    /// Most nodes one domain owns.
    pub nodes: usize,
    /// Longest value in bytes.
    pub value: usize,
    /// Most permission entries per node.
    pub perms: usize,
}

impl Default for Quota {
    fn default() -> Self {
        // Xen's defaults: 1000 nodes per domain, 2048-byte values, 5 permission entries.
        Self { nodes: 1000, value: 2048, perms: 5 }
    }
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Its value (any bytes).
    pub value: Vec<u8>,
    /// Owner and default first, then per-domain entries.
    pub perms: Vec<Perm>,
    /// The store generation of its last change (transactions compare these).
    pub generation: u64,
}

/// The committed tree.
#[derive(Clone, Debug)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    quota: Quota,
    /// How many nodes each domain owns (what its node quota counts), kept as nodes come
    /// and go so that a write need not count the whole tree.
    owned: BTreeMap<u32, usize>,
    /// When kept: every path created, changed or removed, with the generation it had
    /// before its first change (`None`: it did not exist). What Logic journals to State.
    changes: Option<BTreeMap<String, Option<u64>>>,
}

/// A transaction's own changes over the committed tree: only the nodes it created,
/// changed or removed (`None`), so a transaction costs what it touches, not a copy of the
/// store, and its memory goes when it ends.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    nodes: BTreeMap<String, Option<Node>>,
    /// The generation counter for its own changes (they get real ones when they land).
    generation: u64,
    /// Every path it changed, with the committed generation it had before the first
    /// change (`None`: absent then). A change counts as a read at commit.
    changed_from: BTreeMap<String, Option<u64>>,
    /// How its changes move each domain's owned-node count.
    owned_delta: BTreeMap<u32, i64>,
}

/// A transaction's view: its overlay over the committed tree.
pub struct TxView<'a> {
    /// The committed tree, which the transaction reads through where it changed nothing.
    pub base: &'a Store,
    /// The transaction's own changes.
    pub overlay: &'a mut Overlay,
}

/// Whether `child` is a direct child of `parent` (both absolute).
fn is_child(parent: &str, child: &str) -> bool {
    path::parent(child) == Some(parent)
}

fn owner(node: Option<&Node>) -> Option<u32> {
    node.and_then(|n| n.perms.first()).map(|p| p.domid)
}

/// The keys of `map` strictly below `path`, in order.
fn keys_below<'a, V>(map: &'a BTreeMap<String, V>, path: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    let prefix = if path == "/" { String::from("/") } else { alloc::format!("{path}/") };
    map.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k)
        .filter(move |k| k.as_str() != path)
}

/// What XenStore's requests need of a tree: the committed store, or a transaction's view
/// of it. The requests themselves (with Xen's permission rules and error names) are the
/// provided methods, written once for both.
pub trait Tree {
    /// The node at absolute `path`, without permission checks.
    fn node(&self, path: &str) -> Option<&Node>;
    /// Puts `node` (or its absence) at `path`, recording the change.
    fn set(&mut self, path: &str, node: Option<Node>);
    /// Every path strictly below `path`, in path order.
    fn below(&self, path: &str) -> Vec<String>;
    /// How many nodes domain `domid` owns.
    fn owned_by(&self, domid: u32) -> usize;
    /// The quotas.
    fn quota(&self) -> Quota;
    /// Advances the generation counter; returns the new value.
    fn bump(&mut self) -> u64;
    /// The generation a transaction's read of `path` must find unchanged at commit:
    /// for the committed tree, the node's own.
    fn original_generation(&self, path: &str) -> Option<u64> {
        self.node(path).map(|n| n.generation)
    }

    /// The node if `domid` may access it as `want`.
    fn check(&self, path: &str, domid: u32, want: Access) -> Result<&Node, Error> {
        let Some(node) = self.node(path) else { return Err(self.missing(path, domid)) };
        if perms::allowed(&node.perms, domid, want) { Ok(node) } else { Err(Error::Acces) }
    }

    /// The error for a missing node, as Xen reports it: `ENOENT` only to a domain that may
    /// read the nearest existing ancestor, `EACCES` otherwise (so that what exists below a
    /// closed node stays hidden).
    fn missing(&self, path: &str, domid: u32) -> Error {
        let mut at = path::parent(path);
        while let Some(p) = at {
            if let Some(n) = self.node(p) {
                return if perms::allowed(&n.perms, domid, Access::Read) {
                    Error::NoEnt
                } else {
                    Error::Acces
                };
            }
            at = path::parent(p);
        }
        Error::NoEnt
    }

    /// `XS_READ`.
    fn read(&self, path: &str, domid: u32) -> Result<&[u8], Error> {
        self.check(path, domid, Access::Read).map(|n| n.value.as_slice())
    }

    /// `XS_DIRECTORY`: the names of the children, in order.
    fn directory(&self, path: &str, domid: u32) -> Result<Vec<String>, Error> {
        self.check(path, domid, Access::Read)?;
        let skip = if path == "/" { 1 } else { path.len() + 1 };
        Ok(self
            .below(path)
            .into_iter()
            .filter(|k| is_child(path, k))
            .map(|k| k[skip..].to_string())
            .collect())
    }

    /// `XS_GET_PERMS`.
    fn get_perms(&self, path: &str, domid: u32) -> Result<&[Perm], Error> {
        self.check(path, domid, Access::Read).map(|n| n.perms.as_slice())
    }

    /// Creates `path` and any missing ancestors, as `domid`: each new node inherits its
    /// parent's permissions, owned by `domid` (domain 0's nodes keep the parent's owner).
    /// Writing needs write permission on the nearest existing ancestor.
    fn create(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        let mut missing = Vec::new();
        let mut at = path;
        while self.node(at).is_none() {
            missing.push(at);
            at = path::parent(at).ok_or(Error::NoEnt)?;
        }
        let ancestor = self.check(at, domid, Access::Write)?.clone();
        if domid != 0 && self.owned_by(domid) + missing.len() > self.quota().nodes {
            return Err(Error::NoSpc);
        }
        let generation = self.bump();
        let mut perms = ancestor.perms.clone();
        if domid != 0 {
            perms[0].domid = domid;
        }
        for p in missing.into_iter().rev() {
            self.set(p, Some(Node { value: Vec::new(), perms: perms.clone(), generation }));
        }
        // The existing ancestor's child list changed.
        self.set(at, Some(Node { generation, ..ancestor }));
        Ok(())
    }

    /// `XS_WRITE`: sets the value, creating the node (and its ancestors) if needed.
    fn write(&mut self, path: &str, value: &[u8], domid: u32) -> Result<(), Error> {
        if domid != 0 && value.len() > self.quota().value {
            return Err(Error::NoSpc);
        }
        if self.node(path).is_some() {
            self.check(path, domid, Access::Write)?;
        } else {
            self.create(path, domid)?;
        }
        let perms = self.node(path).ok_or(Error::NoEnt)?.perms.clone();
        let generation = self.bump();
        self.set(path, Some(Node { value: value.to_vec(), perms, generation }));
        Ok(())
    }

    /// `XS_MKDIR`: creates the node if missing (an existing one is left alone).
    fn mkdir(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        if self.node(path).is_some() {
            return self.check(path, domid, Access::Write).map(drop);
        }
        self.create(path, domid)
    }

    /// `XS_RM`: removes the node and everything below it. The root cannot be removed;
    /// removing a missing node whose parent exists succeeds, as in Xen.
    fn rm(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        if path == "/" {
            return Err(Error::Inval);
        }
        if self.node(path).is_none() {
            // Already gone: fine if the parent exists and this domain may change it.
            let parent = path::parent(path).ok_or(Error::Inval)?;
            return self.check(parent, domid, Access::Write).map(drop);
        }
        self.check(path, domid, Access::Write)?;
        for k in self.below(path) {
            self.set(&k, None);
        }
        self.set(path, None);
        let generation = self.bump();
        // The parent changed: its child list is part of what transactions read.
        if let Some(parent) = path::parent(path)
            && let Some(node) = self.node(parent).cloned()
        {
            self.set(parent, Some(Node { generation, ..node }));
        }
        Ok(())
    }

    /// `XS_SET_PERMS`: only the owner (or domain 0) may change them, and only domain 0 may
    /// make another domain the owner (`EPERM`).
    fn set_perms(&mut self, path: &str, new: &[Perm], domid: u32) -> Result<(), Error> {
        if new.is_empty() {
            return Err(Error::Inval);
        }
        if domid != 0 && new.len() > self.quota().perms {
            return Err(Error::NoSpc);
        }
        let node = self.check(path, domid, Access::Write)?.clone();
        if domid != 0 && owner(Some(&node)) != Some(domid) {
            return Err(Error::Acces);
        }
        // Only domain 0 may give a node away.
        if domid != 0 && new[0].domid != domid {
            return Err(Error::Perm);
        }
        let generation = self.bump();
        self.set(path, Some(Node { perms: new.to_vec(), generation, ..node }));
        Ok(())
    }
}

impl Store {
    /// A store holding only the root, owned by domain 0 and closed to everyone else.
    pub fn new(quota: Quota) -> Self {
        let root =
            Node { value: Vec::new(), perms: vec![Perm { access: Access::None, domid: 0 }], generation: 0 };
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), root);
        Self { nodes, generation: 0, quota, owned: BTreeMap::from([(0, 1)]), changes: None }
    }

    /// A store holding `nodes` (which must include the root) at `generation`: how a
    /// restarted Logic takes back what XenStore-State kept.
    pub fn from_nodes(quota: Quota, nodes: Vec<(String, Node)>, generation: u64) -> Self {
        let mut store = Self::new(quota);
        for (p, n) in nodes {
            store.put(&p, Some(n));
        }
        store.generation = generation;
        store
    }

    /// From now on, records every path created, changed or removed (`take_changes`).
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Default::default);
    }

    /// The paths changed since the last call, in path order.
    pub fn take_changes(&mut self) -> Vec<String> {
        self.changes.as_mut().map(|c| core::mem::take(c).into_keys().collect()).unwrap_or_default()
    }

    /// An empty overlay for a transaction starting now.
    pub fn overlay(&self) -> Overlay {
        Overlay { generation: self.generation, ..Overlay::default() }
    }

    /// The store's generation counter.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces the node at `path` (or removes it), keeping the owner counts.
    fn put(&mut self, path: &str, node: Option<Node>) {
        let old = match node {
            Some(n) => {
                if let Some(d) = owner(Some(&n)) {
                    *self.owned.entry(d).or_default() += 1;
                }
                self.nodes.insert(path.to_string(), n)
            }
            None => self.nodes.remove(path),
        };
        if let Some(d) = owner(old.as_ref())
            && let Some(count) = self.owned.get_mut(&d)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.owned.remove(&d);
            }
        }
    }

    /// Whether a transaction's changes still apply: every node it read (`reads`) and every
    /// node it changed is as it was.
    pub fn unchanged<'a>(
        &self,
        reads: impl Iterator<Item = (&'a str, Option<u64>)>,
        overlay: &'a Overlay,
    ) -> bool {
        let changed = overlay.changed_from.iter().map(|(p, g)| (p.as_str(), *g));
        reads.chain(changed).all(|(p, generation)| self.node(p).map(|n| n.generation) == generation)
    }

    /// Whether installing `overlay` keeps every unprivileged domain within its node quota:
    /// a commit must not do what the transaction's requests one by one could not.
    pub fn within_quota(&self, overlay: &Overlay) -> bool {
        let mut delta: BTreeMap<u32, i64> = BTreeMap::new();
        for (path, new) in &overlay.nodes {
            if let Some(d) = owner(self.nodes.get(path)) {
                *delta.entry(d).or_default() -= 1;
            }
            if let Some(d) = owner(new.as_ref()) {
                *delta.entry(d).or_default() += 1;
            }
        }
        delta
            .into_iter()
            .filter(|&(d, change)| d != 0 && change > 0)
            .all(|(d, change)| self.owned_by(d) as i64 + change <= self.quota.nodes as i64)
    }

    /// Installs a transaction's changes, each with a new generation; returns the paths, in
    /// path order, with whether each was removed.
    pub fn install(&mut self, overlay: Overlay) -> Vec<String> {
        let mut paths = Vec::with_capacity(overlay.nodes.len());
        for (path, node) in overlay.nodes {
            let generation = self.bump();
            self.set(&path, node.map(|n| Node { generation, ..n }));
            paths.push(path);
        }
        paths
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root is left (never empty).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every node with its path, in path order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Tree for Store {
    fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    fn set(&mut self, path: &str, node: Option<Node>) {
        if let Some(changes) = self.changes.as_mut()
            && !changes.contains_key(path)
        {
            changes.insert(path.to_string(), self.nodes.get(path).map(|n| n.generation));
        }
        self.put(path, node);
    }

    fn below(&self, path: &str) -> Vec<String> {
        keys_below(&self.nodes, path).cloned().collect()
    }

    fn owned_by(&self, domid: u32) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn quota(&self) -> Quota {
        self.quota
    }

    fn bump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

impl Overlay {
    /// The node at `path` as the transaction sees it over `base`.
    pub fn node<'a>(&'a self, base: &'a Store, path: &str) -> Option<&'a Node> {
        match self.nodes.get(path) {
            Some(mine) => mine.as_ref(),
            None => base.nodes.get(path),
        }
    }

    /// How many nodes it holds (created, changed or removed): what it costs.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it changed nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Tree for TxView<'_> {
    fn node(&self, path: &str) -> Option<&Node> {
        self.overlay.node(self.base, path)
    }

    fn set(&mut self, path: &str, node: Option<Node>) {
        let base = self.base.nodes.get(path);
        let overlay = &mut *self.overlay;
        if !overlay.changed_from.contains_key(path) {
            overlay.changed_from.insert(path.to_string(), base.map(|n| n.generation));
        }
        let old = match overlay.nodes.get(path) {
            Some(mine) => owner(mine.as_ref()),
            None => owner(base),
        };
        if let Some(d) = old {
            *overlay.owned_delta.entry(d).or_default() -= 1;
        }
        if let Some(d) = owner(node.as_ref()) {
            *overlay.owned_delta.entry(d).or_default() += 1;
        }
        overlay.nodes.insert(path.to_string(), node);
    }

    fn below(&self, path: &str) -> Vec<String> {
        let mut all: alloc::collections::BTreeSet<&String> = keys_below(&self.base.nodes, path).collect();
        for k in keys_below(&self.overlay.nodes, path) {
            match self.overlay.nodes.get(k) {
                Some(Some(_)) => all.insert(k),
                _ => all.remove(k),
            };
        }
        all.into_iter().cloned().collect()
    }

    fn owned_by(&self, domid: u32) -> usize {
        let delta = self.overlay.owned_delta.get(&domid).copied().unwrap_or(0);
        (self.base.owned_by(domid) as i64 + delta).max(0) as usize
    }

    fn quota(&self) -> Quota {
        self.base.quota
    }

    fn bump(&mut self) -> u64 {
        self.overlay.generation += 1;
        self.overlay.generation
    }

    fn original_generation(&self, path: &str) -> Option<u64> {
        match self.overlay.changed_from.get(path) {
            Some(before) => *before,
            None => self.base.nodes.get(path).map(|n| n.generation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn p(text: &str) -> Perm {
        Perm::parse(text).unwrap()
    }

    fn store() -> Store {
        let mut s = Store::new(Quota::default());
        // The toolstack (domain 0) makes a home for domain 1, owned by it.
        s.write("/local/domain/1", b"", 0).unwrap();
        s.set_perms("/local/domain/1", &[p("n1")], 0).unwrap();
        s
    }

    #[test]
    fn write_read_directory_and_rm() {
        let mut s = store();
        s.write("/local/domain/1/name", b"alice", 1).unwrap();
        s.write("/local/domain/1/device/vif/0", b"", 1).unwrap();
        assert_eq!(s.read("/local/domain/1/name", 1), Ok(&b"alice"[..]));
        assert_eq!(s.directory("/local/domain/1", 1), Ok(vec!["device".to_string(), "name".to_string()]));
        assert_eq!(s.directory("/", 0), Ok(vec!["local".to_string()]));
        // Created ancestors belong to the writer.
        assert_eq!(s.get_perms("/local/domain/1/device", 1), Ok(&[p("n1")][..]));
        s.rm("/local/domain/1/device", 1).unwrap();
        assert_eq!(s.read("/local/domain/1/device/vif/0", 1), Err(Error::NoEnt));
        assert_eq!(s.directory("/local/domain/1", 1), Ok(vec!["name".to_string()]));
        // A missing node under an existing parent: removed already, fine.
        assert_eq!(s.rm("/local/domain/1/gone", 1), Ok(()));
        assert_eq!(s.rm("/local/domain/9/gone", 0), Err(Error::NoEnt));
        assert_eq!(s.rm("/", 0), Err(Error::Inval));
    }

    #[test]
    fn other_domains_are_kept_out_unless_allowed() {
        let mut s = store();
        s.write("/local/domain/1/secret", b"k", 1).unwrap();
        assert_eq!(s.read("/local/domain/1/secret", 2), Err(Error::Acces));
        assert_eq!(s.write("/local/domain/1/x", b"y", 2), Err(Error::Acces));
        assert_eq!(s.read("/local/domain/1/secret", 0), Ok(&b"k"[..]), "domain 0 reads anything");
        // The owner lets domain 2 read this one node.
        s.set_perms("/local/domain/1/secret", &[p("n1"), p("r2")], 1).unwrap();
        assert_eq!(s.read("/local/domain/1/secret", 2), Ok(&b"k"[..]));
        assert_eq!(s.write("/local/domain/1/secret", b"z", 2), Err(Error::Acces));
        // Only the owner changes permissions.
        assert_eq!(s.set_perms("/local/domain/1/secret", &[p("b2")], 2), Err(Error::Acces));
        assert_eq!(s.rm("/local/domain/1/secret", 2), Err(Error::Acces));
    }

    #[test]
    fn quotas_hold_for_unprivileged_domains_only() {
        let mut s = Store::new(Quota { nodes: 3, value: 4, perms: 1 });
        s.write("/local/domain/1", b"", 0).unwrap();
        s.set_perms("/local/domain/1", &[p("n1")], 0).unwrap();
        let home = "/local/domain/1";
        assert_eq!(s.write(&format!("{home}/a"), b"12345", 1), Err(Error::NoSpc), "value too long");
        s.write(&format!("{home}/a/b"), b"1234", 1).unwrap();
        assert_eq!(s.write(&format!("{home}/c"), b"", 1), Err(Error::NoSpc), "a fourth node");
        assert_eq!(s.read(&format!("{home}/c"), 1), Err(Error::NoEnt), "a refused write leaves nothing");
        assert_eq!(s.set_perms(&format!("{home}/a"), &[p("n1"), p("r2")], 1), Err(Error::NoSpc));
        // Domain 0 is not limited.
        s.write("/tool/x", b"a long value", 0).unwrap();
        s.set_perms("/tool/x", &[p("n0"), p("r1"), p("r2")], 0).unwrap();
    }

    #[test]
    fn xens_finer_rules() {
        let mut s = store();
        s.write("/local/domain/1/a", b"", 1).unwrap();
        // Only domain 0 gives nodes away.
        assert_eq!(s.set_perms("/local/domain/1/a", &[p("n2")], 1), Err(Error::Perm));
        // MKDIR of an existing node needs write permission.
        s.write("/closed", b"", 0).unwrap();
        s.set_perms("/closed", &[p("r0")], 0).unwrap();
        assert_eq!(s.mkdir("/closed", 1), Err(Error::Acces));
        // What is below a node a domain may not read stays hidden.
        assert_eq!(s.read("/local/domain/1/missing", 2), Err(Error::Acces));
        assert_eq!(s.read("/local/domain/1/missing", 1), Err(Error::NoEnt));
        // Removing what is already gone needs write permission on the parent.
        assert_eq!(s.rm("/local/domain/1/missing", 2), Err(Error::Acces));
        assert_eq!(s.rm("/local/domain/1/missing", 1), Ok(()));
    }

    #[test]
    fn generations_move_with_changes() {
        let mut s = store();
        s.write("/local/domain/1/a", b"1", 1).unwrap();
        let before = s.node("/local/domain/1/a").unwrap().generation;
        s.write("/local/domain/1/a", b"2", 1).unwrap();
        assert!(s.node("/local/domain/1/a").unwrap().generation > before);
        let parent = s.node("/local/domain/1").unwrap().generation;
        s.rm("/local/domain/1/a", 1).unwrap();
        assert!(s.node("/local/domain/1").unwrap().generation > parent);
    }

    #[test]
    fn a_transaction_view_reads_through_and_keeps_its_changes_apart() {
        let mut s = store();
        s.write("/local/domain/1/a/x", b"1", 1).unwrap();
        s.write("/local/domain/1/b", b"2", 1).unwrap();
        let mut overlay = s.overlay();
        let mut view = TxView { base: &s, overlay: &mut overlay };
        view.rm("/local/domain/1/a", 1).unwrap();
        view.write("/local/domain/1/c/y", b"3", 1).unwrap();
        assert_eq!(view.directory("/local/domain/1", 1), Ok(vec!["b".to_string(), "c".to_string()]));
        assert_eq!(view.read("/local/domain/1/a/x", 1), Err(Error::NoEnt));
        assert_eq!(view.read("/local/domain/1/b", 1), Ok(&b"2"[..]), "read through");
        // Owned: home, a, a/x, b before; a and a/x gone, c and c/y new.
        assert_eq!(view.owned_by(1), 4);
        // What the view changed: the removed subtree, the new nodes and their parent.
        assert_eq!(overlay.len(), 5);
        // The committed store saw none of it.
        assert_eq!(s.read("/local/domain/1/a/x", 1), Ok(&b"1"[..]));
        assert_eq!(s.owned_by(1), 4);
        assert!(s.unchanged(core::iter::empty(), &overlay));
        s.install(overlay);
        assert_eq!(s.directory("/local/domain/1", 1), Ok(vec!["b".to_string(), "c".to_string()]));
        assert_eq!(s.owned_by(1), 4);
    }
}
