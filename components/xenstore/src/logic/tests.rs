//! Request handling through the wire format, as a client sees it.

use super::*;
use std::string::String as StdString;

/// Sends `payload` as a `ty` request in transaction `tx` from `domid`; returns the reply's
/// type and payload.
fn send(logic: &mut Logic, domid: u32, ty: MsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let header = Header { msg_type: ty as u32, req_id: 42, tx_id: tx, len: payload.len() as u32 };
    // One connection per domain in these tests.
    let reply = logic.handle(u64::from(domid), domid, &header, payload);
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
    for _ in 0..MAX_TRANSACTIONS_PER_CONNECTION {
        ok(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
    }
    assert_eq!(error(&mut l, 1, MsgType::TransactionStart, 0, b"\0"), "ENOSPC\0");
    // Domain 0 is not held to the per-connection limit.
    for _ in 0..MAX_TRANSACTIONS_PER_CONNECTION + 1 {
        ok(&mut l, 0, MsgType::TransactionStart, 0, b"\0");
    }
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
