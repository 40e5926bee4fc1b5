//! The toolstack, first form: talks to XenStore in Xen's wire protocol (writes, reads, a
//! listing, a watch, a transaction, a removal) over its channel and shared pages, asks the
//! VGA driver about the display adapter, checks that it holds nothing else, and
//! ends the run (it is the last thing `cargo xtask run` does).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};
use cleave_xenstore::wire::{self, MsgType};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(64 * 1024);

const PAGE: usize = 4096;
const _: () = assert!(caps::RING_XS_REQUEST_SIZE >= 2 * PAGE);

/// One XenStore request over the shared pages (see xenstore-state): returns the reply's
/// type and payload, and how many bytes of watch events followed it.
fn xs(store: Cap<Endpoint>, ty: MsgType, tx: u32, parts: &[&[u8]]) -> Option<(u32, Vec<u8>, usize)> {
    let mut message = alloc::vec![0u8; wire::HEADER_LEN + wire::PAYLOAD_MAX];
    let n = wire::encode(&mut message, ty, 1, tx, parts)?;
    for (i, b) in message[..n].iter().enumerate() {
        // SAFETY: the loader mapped this component's ring read-write at RING_XS_REQUEST, at
        // least two pages (checked above); a message is at most 16 + 4096 bytes, n <= PAGE here as
        // the payloads below are short. Volatile: the other side reads it.
        unsafe { ((caps::RING_XS_REQUEST + i) as *mut u8).write_volatile(*b) }
    }
    let m = store.call(MessageInfo::new(1, 0, 0, 1), [n as u64, 0, 0, 0]).ok()?;
    if m.info.label() != 0 || m.words[0] as usize + m.words[1] as usize > PAGE {
        return None;
    }
    let reply: Vec<u8> = (0..m.words[0] as usize)
        // SAFETY: as above; the reply page is the second page and the lengths were checked
        // to fit it.
        .map(|i| unsafe { ((caps::RING_XS_REQUEST + PAGE + i) as *const u8).read_volatile() })
        .collect();
    let header = wire::Header::from_bytes(&reply)?;
    Some((header.msg_type, reply[wire::HEADER_LEN..].to_vec(), m.words[1] as usize))
}

/// Talks to XenStore the way Xen's toolstack does; returns how many of its requests got
/// the answer Xen's xenstored gives, of how many, and how many watch events arrived.
fn xenstore_session(store: Cap<Endpoint>) -> (usize, usize, usize) {
    let (mut right, mut events) = (0, 0);
    let mut check = |ty: MsgType, tx: u32, parts: &[&[u8]], want_type: MsgType, want: &[u8]| match xs(
        store, ty, tx, parts,
    ) {
        Some((t, body, e)) if t == want_type as u32 && body == want => {
            right += 1;
            events += e;
        }
        other => println!("toolstack: xenstore {ty:?}: unexpected {other:?}"),
    };
    check(MsgType::Write, 0, &[b"/vm/alice/name\0", b"alice"], MsgType::Write, b"OK\0");
    check(MsgType::Write, 0, &[b"/vm/alice/memory\0", b"1024"], MsgType::Write, b"OK\0");
    check(MsgType::Write, 0, &[b"/vm/bob/name\0", b"bob"], MsgType::Write, b"OK\0");
    check(MsgType::Read, 0, &[b"/vm/alice/name\0"], MsgType::Read, b"alice");
    check(MsgType::Directory, 0, &[b"/vm\0"], MsgType::Directory, b"alice\0bob\0");
    // A watch (its first event comes at once) and a transaction that fires it on commit.
    check(MsgType::Watch, 0, &[b"/vm/alice\0", b"tok\0"], MsgType::Watch, b"OK\0");
    check(MsgType::TransactionStart, 0, &[b"\0"], MsgType::TransactionStart, b"1\0");
    check(MsgType::Write, 1, &[b"/vm/alice/state\0", b"running"], MsgType::Write, b"OK\0");
    check(MsgType::TransactionEnd, 1, &[b"T\0"], MsgType::TransactionEnd, b"OK\0");
    check(MsgType::Rm, 0, &[b"/vm/bob\0"], MsgType::Rm, b"OK\0");
    check(MsgType::Read, 0, &[b"/vm/bob/name\0"], MsgType::Error, b"ENOENT\0");
    let event_len = wire::HEADER_LEN + b"/vm/alice\0tok\0".len();
    (right, 11, events / event_len.max(1))
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("toolstack", caps::CAPS, caps::REGIONS);
    let store: Cap<Endpoint> = Cap::from_cptr(caps::XS_REQUEST);
    let (right, asked, events) = xenstore_session(store);
    println!("toolstack: xenstore: {right} of {asked} requests answered as Xen's xenstored answers them");
    println!("toolstack: xenstore: {events} watch events (on registering, on the transaction's commit)");
    let good = right == asked && events == 2;
    // The display adapter, through its driver: the toolstack cannot touch the device itself.
    let vga: Cap<Endpoint> = Cap::from_cptr(caps::VGA_QUERY);
    let display = match vga.call(MessageInfo::new(1, 0, 0, 0), [0; 4]) {
        Ok(m) if m.info.label() == 0 => {
            println!(
                "toolstack: display adapter: VBE id {:#x}, EDID header {}",
                m.words[0],
                if m.words[1] == 1 { "valid" } else { "invalid" }
            );
            (0xb0c0..=0xb0cf).contains(&m.words[0]) && m.words[1] == 1
        }
        other => {
            println!("toolstack: vga: unexpected {other:?}");
            false
        }
    };
    // Every other slot of its CNode is empty: probing them must fail.
    let alone = cleave_rt::cap::report_ungiven("toolstack", caps::CAPS);
    if good && display && alone {
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: toolstack");
        1
    }
}
