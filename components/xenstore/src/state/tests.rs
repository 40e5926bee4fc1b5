//! State on its own, and Logic restarted against it: nothing acknowledged is lost.

use super::*;
use crate::logic::Logic;
use crate::state_protocol::{StateError, commit, decode_reply, encode_request, load};
use crate::store::{Quota, Tree};
use crate::wire::{Header, MsgType};
use alloc::string::ToString;
use alloc::vec;
use proptest::prelude::*;
use std::string::String as StdString;

/// Room for a State reply, Logic's events or a serve buffer in these tests: ample for
/// what they hold, and no page (the components' rooms are their rings').
const ROOM: usize = 4096;

/// One request to State through its encoding, as the components exchange it.
fn ask_through(state: &mut State, room: usize) -> impl FnMut(&Request) -> Option<Reply> + '_ {
    move |request| {
        let mut buf = vec![0u8; 1 << 20];
        let n = encode_request(request, &mut buf)?;
        let mut out = vec![0u8; room];
        let m = state.serve(&buf[..n], &mut out);
        decode_reply(&out[..m])
    }
}

/// A client request to Logic on `connection` (domain = connection here); the change goes
/// to State before the reply is returned, as the XenStore-Logic component does.
fn send(
    logic: &mut Logic,
    state: &mut State,
    connection: u64,
    ty: MsgType,
    tx: u32,
    payload: &[u8],
) -> (u32, StdString) {
    let header = Header { msg_type: ty as u32, req_id: 7, tx_id: tx, len: payload.len() as u32 };
    let reply = logic.handle(connection, connection as u32, &header, payload);
    commit(logic.take_journal(), 512, ask_through(state, 512)).expect("State takes the change");
    let h = Header::from_bytes(&reply).unwrap();
    (h.msg_type, StdString::from_utf8_lossy(&reply[16..]).into_owned())
}

fn restart(state: &mut State) -> Logic {
    Logic::restore(Quota::default(), load(ask_through(state, 512)).expect("State answers"))
}

fn event_text(event: &[u8]) -> StdString {
    StdString::from_utf8_lossy(&event[16..]).into_owned()
}

#[test]
fn a_restarted_logic_has_every_acknowledged_write_watch_and_event() {
    let mut state = State::new();
    let mut logic = restart(&mut state);
    let w = |l: &mut Logic, s: &mut State, c, ty, tx, p: &[u8]| send(l, s, c, ty, tx, p);
    assert_eq!(
        w(&mut logic, &mut state, 0, MsgType::Mkdir, 0, b"/local/domain/1\0").0,
        MsgType::Mkdir as u32
    );
    w(&mut logic, &mut state, 0, MsgType::SetPerms, 0, b"/local/domain/1\0n1\0");
    // Enough nodes that loading them back takes several messages of 512 bytes.
    for i in 0..40 {
        let payload = std::format!("/vm/guest{i}/name\0guest-{i}");
        assert_eq!(w(&mut logic, &mut state, 0, MsgType::Write, 0, payload.as_bytes()).1, "OK\0");
    }
    // Domain 1 watches its home; it has not collected the events yet.
    w(&mut logic, &mut state, 1, MsgType::Watch, 0, b"/local/domain/1\0tok\0");
    w(&mut logic, &mut state, 0, MsgType::Write, 0, b"/local/domain/1/memory\x001024");
    assert_eq!(logic.pending_events(1), 2, "the first event and the write's");
    // A transaction open when Logic stops.
    let (_, id) = w(&mut logic, &mut state, 0, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(id, "1\0");
    w(&mut logic, &mut state, 0, MsgType::Write, 1, b"/vm/guest0/state\0running");
    let before: Vec<(StdString, crate::store::Node)> =
        logic.store().nodes().map(|(p, n)| (p.to_string(), n.clone())).collect();

    // Logic restarts (its memory is gone); State is all it has.
    drop(logic);
    let mut logic = restart(&mut state);
    let after: Vec<(StdString, crate::store::Node)> =
        logic.store().nodes().map(|(p, n)| (p.to_string(), n.clone())).collect();
    assert_eq!(before, after, "every node, value, permission and generation");
    assert_eq!(state.len(), after.len());
    // The queued events survived and go out once.
    let events = logic.take_events_for(1, ROOM);
    assert_eq!(
        events.iter().map(|e| event_text(e)).collect::<Vec<_>>(),
        ["/local/domain/1\0tok\0", "/local/domain/1/memory\0tok\0"]
    );
    commit(logic.take_journal(), 512, ask_through(&mut state, 512)).unwrap();
    // The watch survived: a new change fires it.
    w(&mut logic, &mut state, 0, MsgType::Write, 0, b"/local/domain/1/vcpus\x002");
    assert_eq!(logic.take_events_for(1, ROOM).len(), 1);
    // The old transaction ended with the old Logic: EAGAIN, Xen's "start again".
    assert_eq!(
        w(&mut logic, &mut state, 0, MsgType::Write, 1, b"/vm/x\0y"),
        (MsgType::Error as u32, "EAGAIN\0".into())
    );
    assert_eq!(
        w(&mut logic, &mut state, 0, MsgType::TransactionEnd, 1, b"T\0"),
        (MsgType::Error as u32, "EAGAIN\0".into())
    );
    assert_eq!(
        w(&mut logic, &mut state, 0, MsgType::Read, 0, b"/vm/guest0/state\0").1,
        "ENOENT\0",
        "it never committed"
    );
    // A new one works, under a new id.
    let (_, id) = w(&mut logic, &mut state, 0, MsgType::TransactionStart, 0, b"\0");
    let id: u32 = id.trim_end_matches('\0').parse().unwrap();
    assert_ne!(id, 1);
    w(&mut logic, &mut state, 0, MsgType::Write, id, b"/vm/guest0/state\0running");
    assert_eq!(w(&mut logic, &mut state, 0, MsgType::TransactionEnd, id, b"T\0").1, "OK\0");
    // An unknown id of this Logic's own is ENOENT, as in Xen.
    assert_eq!(w(&mut logic, &mut state, 0, MsgType::TransactionEnd, id + 5, b"T\0").1, "ENOENT\0");
    let logic = restart(&mut state);
    assert_eq!(logic.store().read("/vm/guest0/state", 0), Ok(&b"running"[..]));
}

#[test]
fn a_commit_whose_reads_changed_applies_nothing() {
    let mut state = State::new();
    let node = |v: &[u8], g| crate::store::Node { value: v.to_vec(), perms: vec![], generation: g };
    let put = |p: &str, v: &[u8], g| Update::Put(p.to_string(), node(v, g));
    assert_eq!(
        state.handle(
            Request::Commit { reads: vec![], updates: vec![put("/a", b"1", 1)], generation: 1 },
            ROOM
        ),
        Reply::Committed
    );
    // Read /a at generation 1 and /b absent: still true, so it applies.
    let reads = vec![("/a".to_string(), Some(1)), ("/b".to_string(), None)];
    assert_eq!(
        state.handle(
            Request::Commit { reads: reads.clone(), updates: vec![put("/b", b"2", 2)], generation: 2 },
            ROOM
        ),
        Reply::Committed
    );
    // The same reads are stale now (/b exists): nothing of this commit lands.
    assert_eq!(
        state.handle(Request::Commit { reads, updates: vec![put("/c", b"3", 3)], generation: 3 }, ROOM),
        Reply::Conflict("/b".into())
    );
    assert_eq!(state.handle(Request::Get("/c".into()), ROOM), Reply::Node(None));
    assert_eq!(state.handle(Request::Get("/b".into()), ROOM), Reply::Node(Some(node(b"2", 2))));
    assert_eq!(
        state.handle(Request::Children("/".into()), ROOM),
        Reply::Children(Some(vec!["a".into(), "b".into()]))
    );
    assert_eq!(state.handle(Request::Children("/zz".into()), ROOM), Reply::Children(None));
    // The root cannot be removed.
    state.handle(
        Request::Commit { reads: vec![], updates: vec![Update::Remove("/".into())], generation: 4 },
        ROOM,
    );
    assert!(matches!(state.handle(Request::Get("/".into()), ROOM), Reply::Node(Some(_))));
}

#[test]
fn a_large_change_is_staged_and_lands_at_once_or_not_at_all() {
    let mut state = State::new();
    let mut journal = crate::state_protocol::Journal::default();
    for i in 0..100 {
        let node = crate::store::Node { value: vec![b'x'; 100], perms: vec![], generation: i };
        journal.updates.push(Update::Put(std::format!("/big/{i:03}"), node));
    }
    journal.generation = 100;
    let mut asked = 0;
    {
        let mut inner = ask_through(&mut state, 1024);
        commit(journal.clone(), 1024, |r| {
            asked += 1;
            inner(r)
        })
        .unwrap();
    }
    assert!(asked > 5, "staged in parts: {asked} messages");
    assert_eq!(state.len(), 101);
    // The same change again, but with a read that no longer holds: the staged parts go too.
    journal.reads.push(("/big/000".into(), Some(1234)));
    for update in &mut journal.updates {
        if let Update::Put(p, _) = update {
            p.push_str("-again");
        }
    }
    assert_eq!(
        commit(journal, 1024, ask_through(&mut state, 1024)),
        Err(StateError::Conflict("/big/000".into()))
    );
    assert_eq!(state.len(), 101);
    // A new Logic's Start drops anything a dead one staged.
    state.handle(Request::Stage(vec![], vec![Update::Remove("/big/000".into())]), ROOM);
    state.handle(Request::Start, ROOM);
    state.handle(Request::Commit { reads: vec![], updates: vec![], generation: 101 }, ROOM);
    assert_eq!(state.len(), 101);
}

#[test]
fn malformed_requests_are_refused_and_change_nothing() {
    let mut state = State::new();
    let mut out = [0u8; 64];
    let n = state.serve(&[0xff, 0xff, 0xff], &mut out);
    assert_eq!(decode_reply(&out[..n]), Some(Reply::Refused(Refusal::Malformed)));
    // A reply that cannot fit the buffer is refused, not cut.
    let mut tiny = [0u8; 8];
    let mut req = [0u8; 64];
    let r = encode_request(&Request::Nodes(None), &mut req).unwrap();
    let n = state.serve(&req[..r], &mut tiny);
    assert_eq!(decode_reply(&tiny[..n]), Some(Reply::Refused(Refusal::NoRoom)));
    assert_eq!(state.len(), 1);
}

proptest! {
    /// Whatever bytes arrive, State answers without panicking, and only a well-formed
    /// commit changes it.
    #[test]
    fn any_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut state = State::new();
        let mut out = [0u8; ROOM];
        let n = state.serve(&bytes, &mut out);
        prop_assert!(decode_reply(&out[..n]).is_some());
    }
}

#[test]
fn state_keeps_every_event_logic_keeps() {
    // Domain 0 with 3,000 watches hears of one write 3,000 times; a restarted Logic has
    // all of them still to deliver (State used to keep 1,024 per connection).
    let mut state = State::new();
    let mut logic = restart(&mut state);
    for i in 0..3000 {
        let payload = std::format!("/tool\0t{i}\0");
        send(&mut logic, &mut state, 0, MsgType::Watch, 0, payload.as_bytes());
        let _ = logic.take_events_for(0, usize::MAX);
        commit(logic.take_journal(), 512, ask_through(&mut state, 512)).unwrap();
    }
    send(&mut logic, &mut state, 0, MsgType::Write, 0, b"/tool/x\0v");
    assert_eq!(logic.pending_events(0), 3000);
    let mut restarted = restart(&mut state);
    assert_eq!(restarted.pending_events(0), 3000);
    let events = restarted.take_events_for(0, usize::MAX);
    assert!(events.iter().all(|e| event_text(e).starts_with("/tool/x\0")));
}
