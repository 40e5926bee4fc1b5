//! Request handling through the wire format, as a client sees it.

use super::*;
use std::format;
use std::string::String as StdString;

/// Sends `payload` as a `ty` request in transaction `tx` from `domid`; returns the reply's
/// type and payload.
fn send(logic: &mut Logic, domid: u32, ty: MsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    // One connection per domain in most tests.
    send_on(logic, u64::from(domid), domid, ty, tx, payload)
}

/// `send` on a given connection of `domid`: its reply type and body.
fn send_on(
    logic: &mut Logic,
    connection: u64,
    domid: u32,
    ty: MsgType,
    tx: u32,
    payload: &[u8],
) -> (u32, Vec<u8>) {
    let header = Header { msg_type: ty as u32, req_id: 42, tx_id: tx, len: payload.len() as u32 };
    let reply = logic.handle(connection, domid, &header, payload);
    let h = Header::from_bytes(&reply).unwrap();
    assert_eq!((h.req_id, h.tx_id, h.len as usize), (42, tx, reply.len() - 16));
    (h.msg_type, reply[16..].to_vec())
}

fn ok(logic: &mut Logic, domid: u32, ty: MsgType, tx: u32, payload: &[u8]) -> Vec<u8> {
    let (t, body) = send(logic, domid, ty, tx, payload);
    assert_eq!(
        t,
        ty as u32,
        "{ty:?} {:?} failed: {}",
        StdString::from_utf8_lossy(payload),
        StdString::from_utf8_lossy(&body)
    );
    body
}

fn error(logic: &mut Logic, domid: u32, ty: MsgType, tx: u32, payload: &[u8]) -> StdString {
    let (t, body) = send(logic, domid, ty, tx, payload);
    assert_eq!(t, MsgType::Error as u32, "{ty:?} succeeded");
    StdString::from_utf8(body).unwrap()
}

fn logic() -> Logic {
    let mut l = Logic::new(Quota::default());
    ok(&mut l, 0, MsgType::Mkdir, 0, b"/local/domain/1\0");
    ok(&mut l, 0, MsgType::SetPerms, 0, b"/local/domain/1\0n1\0");
    l
}

#[test]
fn reads_writes_listings_and_permissions_over_the_wire() {
    let mut l = logic();
    assert_eq!(ok(&mut l, 1, MsgType::Write, 0, b"name\0alice"), b"OK\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"name\0"), b"alice");
    assert_eq!(ok(&mut l, 0, MsgType::Read, 0, b"/local/domain/1/name\0"), b"alice");
    assert_eq!(ok(&mut l, 1, MsgType::Directory, 0, b"/local/domain/1\0"), b"name\0");
    assert_eq!(ok(&mut l, 1, MsgType::GetPerms, 0, b"name\0"), b"n1\0");
    assert_eq!(error(&mut l, 2, MsgType::Read, 0, b"/local/domain/1/name\0"), "EACCES\0");
    assert_eq!(ok(&mut l, 1, MsgType::SetPerms, 0, b"name\0n1\0r2\0"), b"OK\0");
    assert_eq!(ok(&mut l, 2, MsgType::Read, 0, b"/local/domain/1/name\0"), b"alice");
    assert_eq!(ok(&mut l, 3, MsgType::GetDomainPath, 0, b"3\0"), b"/local/domain/3\0");
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"missing\0"), "ENOENT\0");
    assert_eq!(ok(&mut l, 1, MsgType::Rm, 0, b"name\0"), b"OK\0");
    assert_eq!(ok(&mut l, 1, MsgType::Directory, 0, b"/local/domain/1\0"), b"");
}

#[test]
fn directory_part_pages_whole_names() {
    let mut l = logic();
    for i in 0..300 {
        let mut p = std::format!("/local/domain/1/a-fairly-long-child-name-{i:04}").into_bytes();
        p.push(0);
        ok(&mut l, 0, MsgType::Mkdir, 0, &p);
    }
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let mut req = b"/local/domain/1\0".to_vec();
        req.extend_from_slice(offset.to_string().as_bytes());
        req.push(0);
        let body = ok(&mut l, 0, MsgType::DirectoryPart, 0, &req);
        let after_gen = body.iter().position(|&b| b == 0).unwrap() + 1;
        let chunk = &body[after_gen..];
        let done = chunk.ends_with(b"\0\0") || chunk == b"\0";
        let list = if done { &chunk[..chunk.len() - 1] } else { chunk };
        offset += list.len();
        names.extend(list.split(|&b| b == 0).filter(|n| !n.is_empty()).map(<[u8]>::to_vec));
        if done {
            break;
        }
    }
    assert_eq!(names.len(), 300);
    assert_eq!(names[299], b"a-fairly-long-child-name-0299");
}

#[test]
fn transactions_commit_abort_and_conflict() {
    let mut l = logic();
    let tx: u32 = StdString::from_utf8(ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0"))
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    ok(&mut l, 1, MsgType::Write, tx, b"a\x001");
    // Not visible outside the transaction until it commits.
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"a\0"), "ENOENT\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, tx, b"a\0"), b"1");
    ok(&mut l, 1, MsgType::TransactionEnd, tx, b"T\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"a\0"), b"1");

    // Aborted: nothing lands.
    let tx = 2;
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Write, tx, b"a\x002");
    ok(&mut l, 1, MsgType::TransactionEnd, tx, b"F\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"a\0"), b"1");

    // Conflict: the node the transaction read changes underneath it.
    let tx = 3;
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, tx, b"a\0"), b"1");
    ok(&mut l, 1, MsgType::Write, tx, b"b\0from tx");
    ok(&mut l, 1, MsgType::Write, 0, b"a\0changed");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, tx, b"T\0"), "EAGAIN\0");
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"b\0"), "ENOENT\0", "a failed commit lands nothing");

    // Unrelated changes do not conflict.
    let tx = 4;
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Write, tx, b"x/y\0new");
    ok(&mut l, 0, MsgType::Write, 0, b"/elsewhere\0z");
    ok(&mut l, 1, MsgType::TransactionEnd, tx, b"T\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"x/y\0"), b"new");

    // Someone else's or an unknown transaction.
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(error(&mut l, 2, MsgType::Read, 5, b"/local/domain/1\0"), "ENOENT\0");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, 99, b"T\0"), "ENOENT\0");
}

#[test]
fn removal_in_a_transaction_conflicts_with_changes_below() {
    let mut l = logic();
    ok(&mut l, 1, MsgType::Write, 0, b"dir/child\0v");
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Rm, 1, b"dir\0");
    ok(&mut l, 1, MsgType::Write, 0, b"dir/child\0w");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, 1, b"T\0"), "EAGAIN\0");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"dir/child\0"), b"w");
}

#[test]
fn bad_messages_get_errors_and_change_nothing() {
    let mut l = logic();
    let before = l.store().len();
    assert_eq!(error(&mut l, 1, MsgType::Write, 0, b"a//b\0x"), "EINVAL\0");
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"no-nul"), "EINVAL\0");
    assert_eq!(error(&mut l, 1, MsgType::Watch, 0, b"/a//b\0t\0"), "EINVAL\0");
    assert_eq!(error(&mut l, 1, MsgType::Unwatch, 0, b"/a\0t\0"), "ENOENT\0");
    assert_eq!(error(&mut l, 1, MsgType::WatchEvent, 0, b"/a\0t\0"), "ENOSYS\0");
    let unknown = Header { msg_type: 77, req_id: 1, tx_id: 0, len: 0 };
    let reply = l.handle(1, 1, &unknown, b"");
    assert_eq!(&reply[16..], b"ENOSYS\0");
    assert_eq!(l.store().len(), before);
}

#[test]
fn a_closed_connection_ends_its_transactions() {
    let mut l = logic();
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Write, 1, b"a\0v");
    l.close(1);
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, 1, b"T\0"), "ENOENT\0");
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"a\0"), "ENOENT\0");
}

/// The watch events waiting for `connection`, as (path, token).
fn events(l: &mut Logic, connection: u64) -> Vec<(StdString, StdString)> {
    let mut out = Vec::new();
    for (c, m) in l.take_events() {
        let h = Header::from_bytes(&m).unwrap();
        assert_eq!(h.msg_type, MsgType::WatchEvent as u32);
        if c == connection {
            let parts: Vec<StdString> = m[16..]
                .split(|&b| b == 0)
                .take(2)
                .map(|p| StdString::from_utf8(p.to_vec()).unwrap())
                .collect();
            out.push((parts[0].clone(), parts[1].clone()));
        }
    }
    out
}

fn pair(a: &str, b: &str) -> (StdString, StdString) {
    (a.into(), b.into())
}

#[test]
fn watches_fire_on_changes_at_and_below_them() {
    let mut l = logic();
    ok(&mut l, 1, MsgType::Watch, 0, b"device\0tok\0");
    // Registering fires once, with the path as registered.
    assert_eq!(events(&mut l, 1), [pair("device", "tok")]);
    assert_eq!(error(&mut l, 1, MsgType::Watch, 0, b"device\0tok\0"), "EEXIST\0");
    ok(&mut l, 1, MsgType::Write, 0, b"device/vif/0\0up");
    assert_eq!(events(&mut l, 1), [pair("device/vif/0", "tok")], "relative watch, relative path");
    ok(&mut l, 1, MsgType::Write, 0, b"name\0x");
    assert_eq!(events(&mut l, 1), [], "outside the watch");
    // Domain 0 watches absolutely; removal of an ancestor reaches a watch below it.
    ok(&mut l, 0, MsgType::Watch, 0, b"/local/domain/1/device/vif\0d0\0");
    events(&mut l, 0);
    ok(&mut l, 1, MsgType::Rm, 0, b"device\0");
    assert_eq!(events(&mut l, 0), [pair("/local/domain/1/device/vif", "d0")]);
    // Domain 2 cannot read domain 1's nodes, so its watch stays quiet.
    ok(&mut l, 2, MsgType::Watch, 0, b"/local/domain/1\0d2\0");
    events(&mut l, 2);
    ok(&mut l, 1, MsgType::Write, 0, b"secret\0s");
    assert_eq!(events(&mut l, 2), []);
    // Unwatch and reset.
    ok(&mut l, 1, MsgType::Unwatch, 0, b"device\0tok\0");
    ok(&mut l, 1, MsgType::Write, 0, b"device/x\0y");
    assert_eq!(events(&mut l, 1), []);
    ok(&mut l, 0, MsgType::ResetWatches, 0, b"");
    ok(&mut l, 1, MsgType::Write, 0, b"device/vif/1\0y");
    assert_eq!(events(&mut l, 0), []);
}

#[test]
fn transaction_changes_fire_when_they_land() {
    let mut l = logic();
    ok(&mut l, 0, MsgType::Watch, 0, b"/local/domain/1\0w\0");
    events(&mut l, 0);
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Write, 1, b"a\0v");
    assert_eq!(events(&mut l, 0), [], "not before the commit");
    ok(&mut l, 1, MsgType::TransactionEnd, 1, b"T\0");
    assert_eq!(events(&mut l, 0), [pair("/local/domain/1/a", "w")]);
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::Write, 2, b"b\0v");
    ok(&mut l, 1, MsgType::TransactionEnd, 2, b"F\0");
    assert_eq!(events(&mut l, 0), [], "an aborted transaction fires nothing");
    // A closed connection's watches go.
    l.close(0);
    ok(&mut l, 1, MsgType::Write, 0, b"c\0v");
    assert_eq!(events(&mut l, 0), []);
}

#[test]
fn removals_reach_only_watchers_that_could_read_and_no_ops_fire_nothing() {
    let mut l = logic();
    ok(&mut l, 1, MsgType::Write, 0, b"private/key\0v");
    // Domain 2 watches the root: it may not read anything of domain 1.
    ok(&mut l, 2, MsgType::Watch, 0, b"/\0spy\0");
    ok(&mut l, 0, MsgType::Watch, 0, b"/local/domain/1\0d0\0");
    events(&mut l, 0);
    events(&mut l, 2);
    ok(&mut l, 1, MsgType::Rm, 0, b"private\0");
    assert_eq!(events(&mut l, 2), [], "a removal under a closed node leaks nothing");
    // Removing what is gone, or making what exists, changes nothing and fires nothing.
    let before = l.take_events();
    assert!(before.is_empty());
    ok(&mut l, 1, MsgType::Rm, 0, b"private\0");
    ok(&mut l, 0, MsgType::Mkdir, 0, b"/local/domain/1\0");
    assert_eq!(events(&mut l, 0), []);
}

#[test]
fn reset_watches_ends_transactions_and_unprivileged_limits() {
    let mut l = logic();
    ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    ok(&mut l, 1, MsgType::ResetWatches, 0, b"");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, 1, b"T\0"), "ENOENT\0");
    for _ in 0..MAX_TRANSACTIONS_PER_DOMAIN {
        ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    }
    assert_eq!(error(&mut l, 1, MsgType::TransactionStart, 0, b"\0"), "ENOSPC\0");
    // Domain 0 is not held to the per-domain limit.
    for _ in 0..MAX_TRANSACTIONS_PER_DOMAIN + 1 {
        ok(&mut l, 0, MsgType::TransactionStart, 0, b"\0");
    }
}

/// Issue 15: 103 connections of one unprivileged domain, then 200 unprivileged domains,
/// each opening transactions until refused, must not shut domain 0 out; and a domain's
/// watches are counted over all its connections.
#[test]
fn unprivileged_domains_cannot_exhaust_transactions_or_watches() {
    let mut l = logic();
    // One domain, many connections: 10 in all, not 10 per connection.
    let mut opened = 0;
    let mut first = None;
    for connection in 100..203u64 {
        for _ in 0..10 {
            let (t, body) = send_on(&mut l, connection, 1, MsgType::TransactionStart, 0, b"\0");
            if t == MsgType::TransactionStart as u32 {
                opened += 1;
                let id: u32 = StdString::from_utf8_lossy(&body).trim_end_matches('\0').parse().unwrap();
                first.get_or_insert((connection, id));
            }
        }
    }
    assert_eq!(opened, MAX_TRANSACTIONS_PER_DOMAIN);
    // Many domains: together they stop short of the table, leaving domain 0 its reserve.
    let mut total = opened;
    for domid in 2..202u32 {
        for _ in 0..20 {
            let (t, body) =
                send_on(&mut l, 1000 + u64::from(domid), domid, MsgType::TransactionStart, 0, b"\0");
            if t == MsgType::TransactionStart as u32 {
                total += 1;
            } else {
                assert_eq!(body, b"ENOSPC\0");
            }
        }
    }
    assert_eq!(total, MAX_TRANSACTIONS - RESERVED_FOR_DOM0);
    for _ in 0..RESERVED_FOR_DOM0 {
        ok(&mut l, 0, MsgType::TransactionStart, 0, b"\0");
    }
    assert_eq!(error(&mut l, 0, MsgType::TransactionStart, 0, b"\0"), "ENOSPC\0");
    // Ending one of domain 1's frees exactly one place, for domain 1 on any connection;
    // the transaction is gone, so ending it again fails.
    let (connection, id) = first.unwrap();
    let end = |l: &mut Logic| send_on(l, connection, 1, MsgType::TransactionEnd, id, b"F\0").0;
    assert_eq!(end(&mut l), MsgType::TransactionEnd as u32);
    assert_eq!(end(&mut l), MsgType::Error as u32);
    let start = |l: &mut Logic| send_on(l, 150, 1, MsgType::TransactionStart, 0, b"\0").0;
    assert_eq!(start(&mut l), MsgType::TransactionStart as u32);
    assert_eq!(start(&mut l), MsgType::Error as u32);
    assert_eq!(error(&mut l, 0, MsgType::TransactionStart, 0, b"\0"), "ENOSPC\0");

    // Watches: domain 1's 128 spread over two connections; the 129th is refused on a third.
    let watch = |l: &mut Logic, connection: u64, i: usize| {
        let payload = std::format!("/local/domain/1/w{i}\0t\0");
        send_on(l, connection, 1, MsgType::Watch, 0, payload.as_bytes())
    };
    for i in 0..MAX_WATCHES {
        assert_eq!(watch(&mut l, 100 + (i % 2) as u64, i).0, MsgType::Watch as u32);
    }
    let _ = l.take_events();
    assert_eq!(watch(&mut l, 102, MAX_WATCHES), (MsgType::Error as u32, b"ENOSPC\0".to_vec()));
}

mod random {
    //! Random request sequences from several domains: whatever arrives, every reply is a
    //! well-formed message for its request, and the tree stays a tree.

    use super::*;
    use proptest::prelude::*;
    use std::vec;

    fn request() -> impl Strategy<Value = (u32, u32, u32, Vec<u8>)> {
        let path = prop::sample::select(vec![
            "/",
            "/a",
            "/a/b",
            "/a/b/c",
            "x",
            "x/y",
            "/local/domain/1/z",
            "@releaseDomain",
            "/a//b",
            "",
        ]);
        let ty = prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 21, 22, 99]);
        (0u32..3, ty, 0u32..4, path, prop::collection::vec(any::<u8>(), 0..6), any::<bool>()).prop_map(
            |(domid, ty, tx, path, extra, nul)| {
                let mut payload = path.as_bytes().to_vec();
                if nul {
                    payload.push(0);
                }
                payload.extend_from_slice(&extra);
                (domid, ty, tx, payload)
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn replies_stay_well_formed_and_the_tree_a_tree(requests in prop::collection::vec(request(), 1..60)) {
            let mut l = logic();
            for (i, (domid, ty, tx, payload)) in requests.iter().enumerate() {
                let header = Header { msg_type: *ty, req_id: i as u32, tx_id: *tx, len: payload.len() as u32 };
                let reply = l.handle(u64::from(*domid), *domid, &header, payload);
                let h = Header::from_bytes(&reply).expect("a reply header");
                prop_assert_eq!((h.req_id, h.tx_id), (i as u32, *tx));
                prop_assert_eq!(h.len as usize, reply.len() - wire::HEADER_LEN);
                prop_assert!(h.msg_type == *ty || h.msg_type == MsgType::Error as u32);
                if h.msg_type == MsgType::Error as u32 {
                    let name = core::str::from_utf8(&reply[16..reply.len() - 1]).unwrap();
                    prop_assert!(Error::from_name(name).is_some(), "unknown error {}", name);
                }
                for (c, event) in l.take_events() {
                    prop_assert!(c <= 2);
                    let eh = Header::from_bytes(&event).unwrap();
                    prop_assert_eq!(eh.msg_type, MsgType::WatchEvent as u32);
                }
            }
            for (p, node) in l.store().nodes() {
                prop_assert!(!node.perms.is_empty(), "{} has no permissions", p);
                if p != "/" {
                    let parent = crate::path::parent(p).unwrap();
                    prop_assert!(l.store().node(parent).is_some(), "{} has no parent", p);
                    prop_assert_eq!(crate::path::check(p, crate::path::PathKind::Node), Ok(()));
                }
            }
        }
    }
}

/// Issue 15's first case: a transaction that removes a child must not write back its
/// stale copy of the parent (value and permissions) over a newer one.
#[test]
fn a_transaction_never_installs_a_stale_parent() {
    let mut l = logic();
    ok(&mut l, 0, MsgType::Write, 0, b"/p\0v0");
    ok(&mut l, 0, MsgType::SetPerms, 0, b"/p\0n0\0b1\0");
    ok(&mut l, 0, MsgType::Write, 0, b"/p/child\0x");
    let tx: u32 = StdString::from_utf8(ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0"))
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    ok(&mut l, 1, MsgType::Rm, tx, b"/p/child\0");
    ok(&mut l, 0, MsgType::SetPerms, 0, b"/p\0n0\0");
    ok(&mut l, 0, MsgType::Write, 0, b"/p\0v1");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, tx, b"T\0"), "EAGAIN\0");
    assert_eq!(ok(&mut l, 0, MsgType::Read, 0, b"/p\0"), b"v1");
    assert_eq!(ok(&mut l, 0, MsgType::GetPerms, 0, b"/p\0"), b"n0\0");
    assert_eq!(error(&mut l, 1, MsgType::Write, 0, b"/p\0mine"), "EACCES\0");
    assert_eq!(ok(&mut l, 0, MsgType::Read, 0, b"/p/child\0"), b"x");
}

/// A reference model of serialisable transactions: random interleavings of plain and
/// transactional requests (two transactions at a time, domain 0, a small tree so that
/// they collide often). Every plain request must do what it does to the model; every
/// commit the server accepts must be what replaying the transaction's requests, at that
/// moment, on the model's committed state gives (same replies, same resulting tree); a
/// commit refused with `EAGAIN` must change nothing.
#[test]
fn transactions_serialise_against_a_reference_model() {
    use std::collections::BTreeMap as Map;
    const PATHS: [&str; 6] = ["/t", "/t/a", "/t/a/x", "/t/b", "/t/b/y", "/t/c"];
    type Tree = Map<StdString, Vec<u8>>;
    #[derive(Clone, Debug)]
    enum Op {
        Read(usize),
        Write(usize, u8),
        Mkdir(usize),
        Rm(usize),
    }
    let parent =
        |p: &str| p.rsplit_once('/').map(|(a, _)| if a.is_empty() { "/".to_string() } else { a.to_string() });
    // Applies `op` to `tree` as the store does; returns the reply (value, "OK" or error).
    let apply = |tree: &mut Tree, op: &Op| -> StdString {
        let exists = |t: &Tree, p: &str| p == "/" || t.contains_key(p);
        let create = |t: &mut Tree, p: &str| {
            let mut at = p.to_string();
            while !exists(t, &at) {
                t.insert(at.clone(), Vec::new());
                at = parent(&at).unwrap();
            }
        };
        match *op {
            Op::Read(i) => {
                tree.get(PATHS[i]).map_or("ENOENT".into(), |v| StdString::from_utf8_lossy(v).into())
            }
            Op::Write(i, v) => {
                create(tree, PATHS[i]);
                tree.insert(PATHS[i].into(), std::vec![b'0' + v]);
                "OK".into()
            }
            Op::Mkdir(i) => {
                create(tree, PATHS[i]);
                "OK".into()
            }
            Op::Rm(i) => {
                let p = PATHS[i];
                if tree.contains_key(p) {
                    tree.retain(|k, _| !(k == p || k.starts_with(&format!("{p}/"))));
                    "OK".into()
                } else if exists(tree, &parent(p).unwrap()) {
                    "OK".into()
                } else {
                    "ENOENT".into()
                }
            }
        }
    };
    // The same request to the server; its reply in the model's terms.
    let request = |l: &mut Logic, tx: u32, op: &Op| -> StdString {
        let (ty, payload) = match *op {
            Op::Read(i) => (MsgType::Read, format!("{}\0", PATHS[i]).into_bytes()),
            Op::Write(i, v) => (MsgType::Write, format!("{}\0{}", PATHS[i], v).into_bytes()),
            Op::Mkdir(i) => (MsgType::Mkdir, format!("{}\0", PATHS[i]).into_bytes()),
            Op::Rm(i) => (MsgType::Rm, format!("{}\0", PATHS[i]).into_bytes()),
        };
        let (t, body) = send(l, 0, ty, tx, &payload);
        let text = StdString::from_utf8_lossy(&body).trim_end_matches('\0').to_string();
        if t == MsgType::Error as u32 || ty == MsgType::Read { text } else { "OK".into() }
    };
    let snapshot = |l: &mut Logic| -> Tree {
        PATHS
            .iter()
            .filter_map(|p| {
                let (t, body) = send(l, 0, MsgType::Read, 0, format!("{p}\0").as_bytes());
                (t == MsgType::Read as u32).then(|| (p.to_string(), body))
            })
            .collect()
    };
    let mut seed = 0x5eed_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut commits, mut refusals) = (0, 0);
    for _ in 0..400 {
        let mut l = Logic::new(Quota::default());
        ok(&mut l, 0, MsgType::Mkdir, 0, b"/t\0");
        let mut model: Tree = Map::from([("/t".to_string(), Vec::new())]);
        // Open transactions: id and the requests made in them with their replies.
        let mut open: Vec<(u32, Vec<(Op, StdString)>)> = Vec::new();
        for _ in 0..40 {
            let op = match rand(4) {
                0 => Op::Read(rand(6) as usize),
                1 => Op::Write(rand(6) as usize, rand(10) as u8),
                2 => Op::Mkdir(rand(6) as usize),
                _ => Op::Rm(rand(6) as usize),
            };
            match rand(10) {
                0 if open.len() < 2 => {
                    let id: u32 = StdString::from_utf8(ok(&mut l, 0, MsgType::TransactionStart, 0, b"\0"))
                        .unwrap()
                        .trim_end_matches('\0')
                        .parse()
                        .unwrap();
                    open.push((id, Vec::new()));
                }
                1 | 2 if !open.is_empty() => {
                    let (id, ops) = open.remove(rand(open.len() as u64) as usize);
                    let (t, body) = send(&mut l, 0, MsgType::TransactionEnd, id, b"T\0");
                    if t == MsgType::TransactionEnd as u32 {
                        // Accepted: replaying it now must give what it saw and what landed.
                        let mut replay = model.clone();
                        for (op, seen) in &ops {
                            assert_eq!(
                                &apply(&mut replay, op),
                                seen,
                                "a committed transaction saw {op:?} differently"
                            );
                        }
                        model = replay;
                        assert_eq!(snapshot(&mut l), model, "the committed tree is not the transaction's");
                        commits += 1;
                    } else {
                        assert_eq!(body, b"EAGAIN\0");
                        assert_eq!(snapshot(&mut l), model, "a refused commit changed the tree");
                        refusals += 1;
                    }
                }
                3..=5 if !open.is_empty() => {
                    let k = rand(open.len() as u64) as usize;
                    let reply = request(&mut l, open[k].0, &op);
                    open[k].1.push((op, reply));
                }
                _ => {
                    let reply = request(&mut l, 0, &op);
                    assert_eq!(reply, apply(&mut model, &op), "plain {op:?}");
                }
            }
        }
    }
    assert!(commits > 100 && refusals > 100, "too few of each: {commits} commits, {refusals} refusals");
}

/// Issue 15's second case: transactions that each stay within a domain's node quota must
/// not, together, commit it past the quota.
#[test]
fn commits_respect_node_quotas() {
    let mut l = Logic::new(Quota { nodes: 10, ..Quota::default() });
    ok(&mut l, 0, MsgType::Mkdir, 0, b"/local/domain/1\0");
    ok(&mut l, 0, MsgType::SetPerms, 0, b"/local/domain/1\0n1\0");
    let start = |l: &mut Logic| -> u32 {
        StdString::from_utf8(ok(l, 1, MsgType::TransactionStart, 0, b"\0"))
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap()
    };
    // Two directories (the domain's 2nd and 3rd nodes), so the transactions do not
    // conflict: each adds 5 nodes below its own.
    ok(&mut l, 1, MsgType::Mkdir, 0, b"a\0");
    ok(&mut l, 1, MsgType::Mkdir, 0, b"b\0");
    let (a, b) = (start(&mut l), start(&mut l));
    for (tx, name) in [(a, "a"), (b, "b")] {
        for i in 0..5 {
            ok(&mut l, 1, MsgType::Write, tx, format!("{name}/{i}\0v").as_bytes());
        }
    }
    ok(&mut l, 1, MsgType::TransactionEnd, a, b"T\0");
    assert_eq!(error(&mut l, 1, MsgType::TransactionEnd, b, b"T\0"), "ENOSPC\0");
    assert_eq!(error(&mut l, 1, MsgType::Read, 0, b"b/0\0"), "ENOENT\0", "the refused commit landed");
    assert_eq!(ok(&mut l, 1, MsgType::Read, 0, b"a/4\0"), b"v");
}

#[test]
fn a_client_that_collects_its_events_loses_none_and_one_that_does_not_is_bounded() {
    let mut l = logic();
    // Domain 0 (no watch quota): 10,000 watches on one connection, then one write. Each
    // watch hears of it, although the write caused far more than MAX_QUEUED_EVENTS.
    for i in 0..10_000 {
        ok(&mut l, 0, MsgType::Watch, 0, std::format!("/tool\0t{i}\0").as_bytes());
    }
    let _ = l.take_events();
    ok(&mut l, 0, MsgType::Write, 0, b"/tool/x\0v");
    let heard = events(&mut l, 0);
    assert_eq!(heard.len(), 10_000);
    assert!(heard.iter().all(|(p, _)| p == "/tool/x"));

    // Domain 1, one connection that never collects: every write adds 100 events until
    // its backlog from earlier requests reaches MAX_QUEUED_EVENTS; then it gets none.
    for i in 0..100 {
        ok(&mut l, 1, MsgType::Watch, 0, std::format!("/local/domain/1\0w{i}\0").as_bytes());
    }
    for i in 0..30 {
        ok(&mut l, 1, MsgType::Write, 0, std::format!("n{i}\0v").as_bytes());
    }
    let stuck = l.pending_events(1);
    assert!((MAX_QUEUED_EVENTS..MAX_QUEUED_EVENTS + 100).contains(&stuck), "{stuck} queued");
    // Domain 0's connection, which collects, is not affected.
    ok(&mut l, 0, MsgType::Write, 0, b"/tool/y\0v");
    assert_eq!(l.pending_events(0), 10_000);
    // Once it collects, it hears of changes again.
    let collected = l.take_events_for(1, usize::MAX).len();
    assert_eq!(collected, stuck);
    ok(&mut l, 1, MsgType::Write, 0, b"again\0v");
    assert_eq!(l.pending_events(1), 100);
}

#[test]
fn an_unprivileged_domain_cannot_fill_logic_with_events() {
    let mut l = logic();
    // 128 watches over four connections, then transactions that each change 40 paths:
    // 5,120 events per commit would be due; the domain holds at most MAX_EVENTS_PER_DOMAIN.
    for i in 0..MAX_WATCHES {
        let payload = std::format!("/local/domain/1\0w{i}\0");
        assert_eq!(
            send_on(&mut l, 10 + (i % 4) as u64, 1, MsgType::Watch, 0, payload.as_bytes()).0,
            MsgType::Watch as u32
        );
    }
    for round in 0..3 {
        let (_, body) = send_on(&mut l, 10, 1, MsgType::TransactionStart, 0, b"\0");
        let id: u32 = StdString::from_utf8_lossy(&body).trim_end_matches('\0').parse().unwrap();
        for i in 0..40 {
            let payload = std::format!("r{round}/n{i}\0v");
            assert_eq!(
                send_on(&mut l, 10, 1, MsgType::Write, id, payload.as_bytes()).0,
                MsgType::Write as u32
            );
        }
        // The same path again changes nothing in what fires.
        send_on(&mut l, 10, 1, MsgType::Write, id, std::format!("r{round}/n0\0w").as_bytes());
        assert_eq!(
            send_on(&mut l, 10, 1, MsgType::TransactionEnd, id, b"T\0").0,
            MsgType::TransactionEnd as u32
        );
    }
    let held: usize = (10..14).map(|c| l.pending_events(c)).sum();
    assert_eq!(held, MAX_EVENTS_PER_DOMAIN);
    // Domain 0 still hears of its own changes.
    ok(&mut l, 0, MsgType::Watch, 0, b"/tool\0mine\0");
    ok(&mut l, 0, MsgType::Write, 0, b"/tool/z\0v");
    assert_eq!(l.pending_events(0), 2);
}
