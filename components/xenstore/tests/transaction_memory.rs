//! What a transaction costs in memory: only what it touches, all of it returned when it
//! ends (issue 15: each transaction used to copy the whole store, so 1,024 of them over a
//! big store took ~1 GB). Measured with a counting allocator, so this file is its own
//! test binary.

use cleave_xenstore::logic::Logic;
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{Header, MsgType};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn send(logic: &mut Logic, domid: u32, ty: MsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let header = Header { msg_type: ty as u32, req_id: 1, tx_id: tx, len: payload.len() as u32 };
    let reply = logic.handle(u64::from(domid), domid, &header, payload);
    (u32::from_le_bytes(reply[..4].try_into().unwrap()), reply[16..].to_vec())
}

#[test]
fn a_transaction_costs_what_it_touches_and_gives_it_back() {
    let mut l = Logic::new(Quota::default());
    for i in 0..10_000 {
        let payload = format!("/big/node{i:05}\0{}", "v".repeat(64));
        assert_eq!(send(&mut l, 0, MsgType::Write, 0, payload.as_bytes()).0, MsgType::Write as u32);
    }
    send(&mut l, 0, MsgType::Write, 0, b"/local/domain/1\0");
    send(&mut l, 0, MsgType::SetPerms, 0, b"/local/domain/1\0n1\0");
    let _ = l.take_journal();
    let _ = l.take_events();
    let store_bytes = {
        let before = live();
        let copy: Vec<_> = l.store().nodes().map(|(p, n)| (p.to_string(), n.clone())).collect();
        let bytes = live() - before;
        drop(copy);
        bytes
    };
    assert!(store_bytes > 1_000_000, "the store is big enough to tell ({store_bytes} bytes)");

    let baseline = live();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (ty, body) = send(&mut l, 1, MsgType::TransactionStart, 0, b"\0");
        assert_eq!(ty, MsgType::TransactionStart as u32);
        let id: u32 = std::str::from_utf8(&body[..body.len() - 1]).unwrap().parse().unwrap();
        // Each reads a node of the big tree and writes one of its own.
        send(&mut l, 1, MsgType::Read, id, b"/big/node00042\0");
        assert_eq!(send(&mut l, 1, MsgType::Write, id, b"mine\0x").0, MsgType::Write as u32);
        ids.push(id);
    }
    let open = live() - baseline;
    assert!(
        open < store_bytes / 20,
        "10 open transactions hold {open} bytes; the store is {store_bytes}: they copy it"
    );
    for id in ids {
        send(&mut l, 1, MsgType::TransactionEnd, id, b"F\0");
    }
    let _ = l.take_journal();
    let after = live() - baseline;
    assert!(after < 4096, "{after} bytes stay after every transaction ended");
}
