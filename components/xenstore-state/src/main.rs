//! XenStore in the running system, second form: Xen's wire protocol, its tree, permissions,
//! transactions and watches (the `cleave-xenstore` code the host daemon also runs), served
//! to the components `system.toml` connects over the `xs-request` endpoint. The split into
//! Logic and State comes next (issue 6); today this one component holds both.
//!
//! Transport: each client has its own two-page ring on the channel (`ring = "8K"` in
//! system.toml; `caps::RINGS_XS_REQUEST` lists them by badge). The client writes one
//! `xsd_sockmsg` (header and payload) at the start of page 0 and calls the endpoint with
//! label 1 and the message length in word 0; this component writes the reply, then any
//! watch events for that client, at the start of page 1 of that client's ring, and answers with
//! label 0, the reply length in word 0 and the events' total length in word 1. A client's
//! domain id is its capability's badge minus one (badge 0 means none). Anything else gets
//! label 1 and no reply.
#![no_std]
#![no_main]

extern crate alloc;

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};
use cleave_xenstore::logic::Logic;
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{self, Framed};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(256 * 1024);

const PAGE: usize = 4096;

/// The ring of the client with `badge`: its address, if it has one of at least two pages.
fn ring(badge: u64) -> Option<usize> {
    caps::RINGS_XS_REQUEST.iter().find(|&&(b, _, size)| b == badge && size >= 2 * PAGE).map(|&(_, a, _)| a)
}

/// Copies the request out of the client's request page (the client could change it while
/// it is read): `length` bytes, at most one page.
fn request(ring: usize, length: usize) -> Option<alloc::vec::Vec<u8>> {
    if length > PAGE {
        return None;
    }
    let mut copy = alloc::vec![0u8; length];
    for (i, b) in copy.iter_mut().enumerate() {
        // SAFETY: `ring` comes from RINGS_XS_REQUEST: the loader mapped that client's ring
        // read-write there, at least two pages (checked in `ring`); i < length <= PAGE.
        *b = unsafe { ((ring + i) as *const u8).read_volatile() };
    }
    Some(copy)
}

/// Writes `bytes` into the client's reply page at `offset`; false if they do not fit.
fn reply_at(ring: usize, offset: usize, bytes: &[u8]) -> bool {
    if offset + bytes.len() > PAGE {
        return false;
    }
    for (i, b) in bytes.iter().enumerate() {
        // SAFETY: as in `request`; the reply page is the ring's second page and
        // offset + i < PAGE.
        unsafe { ((ring + PAGE + offset + i) as *mut u8).write_volatile(*b) }
    }
    true
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("xenstore-state", caps::CAPS, caps::REGIONS);
    // Holding anything the description does not give is a broken build: stop (the
    // run fails).
    if !cleave_rt::cap::report_ungiven("xenstore-state", caps::CAPS) {
        return 1;
    }
    let mut logic = Logic::new(Quota::default());
    let endpoint: Cap<Endpoint> = Cap::from_cptr(caps::XS_REQUEST);
    let mut incoming = endpoint.recv();
    loop {
        let m = match incoming {
            Ok(m) => m,
            Err(e) => {
                println!("xenstore-state: receive failed: {e}");
                return 1;
            }
        };
        // Badge 0 means no badge, so a client's domain id is its badge minus one: the
        // toolstack's badge 1 makes it domain 0, the privileged one.
        let domid = m.badge.saturating_sub(1) as u32;
        let ring = ring(m.badge);
        let bytes = ring.and_then(|r| request(r, m.words[0] as usize));
        let answer = match (m.info.label(), ring, bytes) {
            (1, Some(ring), Some(bytes)) => match wire::frame(&bytes) {
                Framed::Message(header, payload, used) if used == bytes.len() => {
                    let reply = logic.handle(u64::from(domid), domid, &header, payload);
                    let mut events = 0;
                    if reply_at(ring, 0, &reply) {
                        for (connection, event) in logic.take_events() {
                            // One connection per domain here; events that do not fit
                            // this reply page are dropped (the client re-reads state).
                            if connection == u64::from(domid) && reply_at(ring, reply.len() + events, &event)
                            {
                                events += event.len();
                            }
                        }
                        Some([reply.len() as u64, events as u64, 0, 0])
                    } else {
                        None
                    }
                }
                _ => None,
            },
            _ => None,
        };
        incoming = match answer {
            Some(words) => endpoint.reply_recv(MessageInfo::new(0, 0, 0, 2), words),
            None => endpoint.reply_recv(MessageInfo::new(1, 0, 0, 0), [0; 4]),
        };
    }
}
