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

/// The tree.
#[derive(Clone, Debug)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    quota: Quota,
    /// When kept: every path created, changed or removed, with the generation it had
    /// before its first change (`None`: it did not exist). A transaction's commit needs
    /// those: each node it changes counts as read.
    changes: Option<BTreeMap<String, Option<u64>>>,
}

/// Whether `child` is a direct child of `parent` (both absolute).
fn is_child(parent: &str, child: &str) -> bool {
    path::parent(child) == Some(parent)
}

impl Store {
    /// A store holding only the root, owned by domain 0 and closed to everyone else.
    pub fn new(quota: Quota) -> Self {
        let root =
            Node { value: Vec::new(), perms: vec![Perm { access: Access::None, domid: 0 }], generation: 0 };
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), root);
        Self { nodes, generation: 0, quota, changes: None }
    }

    /// A store holding `nodes` (which must include the root) at `generation`: how a
    /// restarted Logic takes back what XenStore-State kept.
    pub fn from_nodes(quota: Quota, nodes: Vec<(String, Node)>, generation: u64) -> Self {
        let mut store = Self::new(quota);
        store.nodes.extend(nodes);
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

    /// A copy for a transaction: it records every path it changes.
    pub fn transaction_copy(&self) -> Self {
        Self { changes: Some(BTreeMap::new()), ..self.clone() }
    }

    /// The paths a transaction copy changed.
    pub fn changes(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().flat_map(|c| c.keys()).map(String::as_str)
    }

    /// The paths a transaction copy changed, each with the generation it had before the
    /// first change (`None`: absent then).
    pub fn changed_from(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.changes.iter().flat_map(|c| c.iter()).map(|(p, g)| (p.as_str(), *g))
    }

    /// The store's generation counter.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Puts `node` (or its absence) at `path` with a new generation: how a committed
    /// transaction's changes land.
    pub fn install(&mut self, path: &str, node: Option<&Node>) {
        self.changed(path);
        self.generation += 1;
        match node {
            Some(n) => {
                let node = Node { generation: self.generation, ..n.clone() };
                self.nodes.insert(path.to_string(), node);
            }
            None => {
                self.nodes.remove(path);
            }
        }
    }

    /// Records that `path` is about to change (call before changing it): its generation
    /// now is what it had before its first change.
    fn changed(&mut self, path: &str) {
        if let Some(changes) = self.changes.as_mut()
            && !changes.contains_key(path)
        {
            let before = self.nodes.get(path).map(|n| n.generation);
            changes.insert(path.to_string(), before);
        }
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

    /// The node at absolute `path`, without permission checks.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    fn check(&self, path: &str, domid: u32, want: Access) -> Result<&Node, Error> {
        let Some(node) = self.nodes.get(path) else { return Err(self.missing(path, domid)) };
        if perms::allowed(&node.perms, domid, want) { Ok(node) } else { Err(Error::Acces) }
    }

    /// The error for a missing node, as Xen reports it: `ENOENT` only to a domain that may
    /// read the nearest existing ancestor, `EACCES` otherwise (so that what exists below a
    /// closed node stays hidden).
    fn missing(&self, path: &str, domid: u32) -> Error {
        let mut at = path::parent(path);
        while let Some(p) = at {
            if let Some(n) = self.nodes.get(p) {
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

    /// How many nodes domain `domid` owns (what its node quota counts).
    /// Whether installing `changes` (each path with the node a transaction leaves there,
    /// or its absence) keeps every unprivileged domain within its node quota: a commit
    /// must not do what the transaction's requests one by one could not.
    pub fn within_quota<'a>(&self, changes: impl Iterator<Item = (&'a str, Option<&'a Node>)>) -> bool {
        let owner = |n: Option<&Node>| n.and_then(|n| n.perms.first()).map(|p| p.domid);
        let mut delta: BTreeMap<u32, i64> = BTreeMap::new();
        for (path, new) in changes {
            if let Some(d) = owner(self.nodes.get(path)) {
                *delta.entry(d).or_default() -= 1;
            }
            if let Some(d) = owner(new) {
                *delta.entry(d).or_default() += 1;
            }
        }
        delta
            .into_iter()
            .filter(|&(d, change)| d != 0 && change > 0)
            .all(|(d, change)| self.owned_by(d) as i64 + change <= self.quota.nodes as i64)
    }

    fn owned_by(&self, domid: u32) -> usize {
        self.nodes.values().filter(|n| n.perms.first().is_some_and(|p| p.domid == domid)).count()
    }

    /// `XS_READ`.
    pub fn read(&self, path: &str, domid: u32) -> Result<&[u8], Error> {
        self.check(path, domid, Access::Read).map(|n| n.value.as_slice())
    }

    /// `XS_DIRECTORY`: the names of the children, in order.
    pub fn directory(&self, path: &str, domid: u32) -> Result<Vec<&str>, Error> {
        self.check(path, domid, Access::Read)?;
        let prefix = if path == "/" { String::from("/") } else { alloc::format!("{path}/") };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| is_child(path, k))
            .map(|(k, _)| &k[prefix.len()..])
            .collect())
    }

    /// Every path strictly below `path` (no permission check): what removing it touches.
    pub fn directory_all(&self, path: &str) -> Vec<String> {
        self.nodes.keys().filter(|k| k.as_str() != path && path::is_within(k, path)).cloned().collect()
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms(&self, path: &str, domid: u32) -> Result<&[Perm], Error> {
        self.check(path, domid, Access::Read).map(|n| n.perms.as_slice())
    }

    /// Creates `path` and any missing ancestors, as `domid`: each new node inherits its
    /// parent's permissions, owned by `domid` (domain 0's nodes keep the parent's owner).
    /// Writing needs write permission on the nearest existing ancestor.
    fn create(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        let mut missing = Vec::new();
        let mut at = path;
        while !self.nodes.contains_key(at) {
            missing.push(at);
            at = path::parent(at).ok_or(Error::NoEnt)?;
        }
        self.check(at, domid, Access::Write)?;
        if domid != 0 && self.owned_by(domid) + missing.len() > self.quota.nodes {
            return Err(Error::NoSpc);
        }
        self.generation += 1;
        for p in missing.into_iter().rev() {
            let parent = path::parent(p).ok_or(Error::NoEnt)?;
            let mut perms = self.nodes.get(parent).map(|n| n.perms.clone()).ok_or(Error::NoEnt)?;
            if domid != 0 {
                perms[0].domid = domid;
            }
            self.changed(p);
            self.nodes.insert(p.to_string(), Node { value: Vec::new(), perms, generation: self.generation });
        }
        // The existing ancestor's child list changed.
        let at = at.to_string();
        self.changed(&at);
        let generation = self.generation;
        if let Some(n) = self.nodes.get_mut(&at) {
            n.generation = generation;
        }
        Ok(())
    }

    /// `XS_WRITE`: sets the value, creating the node (and its ancestors) if needed.
    pub fn write(&mut self, path: &str, value: &[u8], domid: u32) -> Result<(), Error> {
        if domid != 0 && value.len() > self.quota.value {
            return Err(Error::NoSpc);
        }
        if self.nodes.contains_key(path) {
            self.check(path, domid, Access::Write)?;
        } else {
            self.create(path, domid)?;
        }
        self.changed(path);
        self.generation += 1;
        let generation = self.generation;
        let node = self.nodes.get_mut(path).ok_or(Error::NoEnt)?;
        node.value = value.to_vec();
        node.generation = generation;
        Ok(())
    }

    /// `XS_MKDIR`: creates the node if missing (an existing one is left alone).
    pub fn mkdir(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        if self.nodes.contains_key(path) {
            return self.check(path, domid, Access::Write).map(drop);
        }
        self.create(path, domid)
    }

    /// `XS_RM`: removes the node and everything below it. The root cannot be removed;
    /// removing a missing node whose parent exists succeeds, as in Xen.
    pub fn rm(&mut self, path: &str, domid: u32) -> Result<(), Error> {
        if path == "/" {
            return Err(Error::Inval);
        }
        if !self.nodes.contains_key(path) {
            // Already gone: fine if the parent exists and this domain may change it.
            let parent = path::parent(path).ok_or(Error::Inval)?;
            return self.check(parent, domid, Access::Write).map(drop);
        }
        self.check(path, domid, Access::Write)?;
        let doomed: Vec<String> = self.nodes.keys().filter(|k| path::is_within(k, path)).cloned().collect();
        for k in doomed {
            self.changed(&k);
            self.nodes.remove(&k);
        }
        self.generation += 1;
        // The parent changed: its child list is part of what transactions read.
        let generation = self.generation;
        if let Some(parent) = path::parent(path) {
            self.changed(parent);
            if let Some(node) = self.nodes.get_mut(parent) {
                node.generation = generation;
            }
        }
        Ok(())
    }

    /// `XS_SET_PERMS`: only the owner (or domain 0) may change them, and only domain 0 may
    /// make another domain the owner (`EPERM`).
    pub fn set_perms(&mut self, path: &str, new: &[Perm], domid: u32) -> Result<(), Error> {
        if new.is_empty() {
            return Err(Error::Inval);
        }
        if domid != 0 && new.len() > self.quota.perms {
            return Err(Error::NoSpc);
        }
        let node = self.check(path, domid, Access::Write)?;
        let owner = node.perms.first().map(|p| p.domid);
        if domid != 0 && owner != Some(domid) {
            return Err(Error::Acces);
        }
        // Only domain 0 may give a node away.
        if domid != 0 && new[0].domid != domid {
            return Err(Error::Perm);
        }
        self.changed(path);
        self.generation += 1;
        let generation = self.generation;
        let node = self.nodes.get_mut(path).ok_or(Error::NoEnt)?;
        node.perms = new.to_vec();
        node.generation = generation;
        Ok(())
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
        assert_eq!(s.directory("/local/domain/1", 1), Ok(vec!["device", "name"]));
        assert_eq!(s.directory("/", 0), Ok(vec!["local"]));
        // Created ancestors belong to the writer.
        assert_eq!(s.get_perms("/local/domain/1/device", 1), Ok(&[p("n1")][..]));
        s.rm("/local/domain/1/device", 1).unwrap();
        assert_eq!(s.read("/local/domain/1/device/vif/0", 1), Err(Error::NoEnt));
        assert_eq!(s.directory("/local/domain/1", 1), Ok(vec!["name"]));
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
}
