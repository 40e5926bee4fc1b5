//! XenStore-Logic: Xen's wire protocol for every connection `system.toml` gives
//! (`xs-request`), with Xen's permissions, transactions and watches
//! (`cleave_xenstore::logic`), over the tree XenStore-State keeps (`xs-state`).
//!
//! Nothing is acknowledged before State holds it: after each request, the change it made
//! (nodes, watches, queued events, a transaction's read set) goes to State as one commit,
//! and only then does the reply go out. If State refuses or does not answer, this
//! component reads everything back from State and the client gets `EIO`. On start it
//! reads everything from State too, so a restarted Logic goes on where the last one
//! stopped; transactions open at that moment end (`EAGAIN`, see
//! `cleave_xenstore::state_protocol`).
//! The repository's system.toml has the supervisor restart it every 100 ms.
//!
//! The client transport is described in `cleave_xenstore::connection`. A connection is its
//! badge; its domain is the badge's low 16 bits minus one.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::shm::Shared;
use cleave_rt::{Cap, println};
use cleave_xenstore::connection::{LABEL_EVENTS, LABEL_REQUEST, domain_of_badge};
use cleave_xenstore::logic::Logic;
use cleave_xenstore::state_protocol::{self as state, Reply, Request};
use cleave_xenstore::store::Quota;
use cleave_xenstore::wire::{self, Framed};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(512 * 1024);

/// One page of a client's two-page ring: the request in the first, the answer in the second.
const PAGE: usize = cleave_abi::layout::PAGE_SIZE as usize;

/// The ring of the client with `badge`, if it has one of two pages or more.
fn client_ring(badge: u64) -> Option<Shared> {
    caps::RINGS_XS_REQUEST.iter().find(|&&(b, _, size)| b == badge && size >= 2 * PAGE).map(|&(_, a, _)| {
        // SAFETY: RINGS_XS_REQUEST lists the rings the loader mapped read-write into this
        // component; only `Shared` copies touch them; two pages are used.
        unsafe { Shared::new(a, 2 * PAGE) }
    })
}

/// Talks to XenStore-State: one request, one reply, through the `xs-state` ring.
struct StateLink {
    endpoint: Cap<Endpoint>,
    ring: Shared,
    out: Vec<u8>,
    buffer: Vec<u8>,
}

impl StateLink {
    fn new() -> Self {
        // SAFETY: the loader mapped this component's `xs-state` ring read-write at
        // RING_XS_STATE, RING_XS_STATE_SIZE bytes; only `Shared` copies touch it.
        let ring = unsafe { Shared::new(caps::RING_XS_STATE, caps::RING_XS_STATE_SIZE) };
        let half = ring.len() / 2;
        Self { endpoint: caps::XS_STATE, ring, out: alloc::vec![0u8; half], buffer: alloc::vec![0u8; half] }
    }

    /// Most encoded bytes one message holds.
    fn room(&self) -> usize {
        self.ring.len() / 2
    }

    fn ask(&mut self, request: &Request) -> Option<Reply> {
        let n = state::encode_request(request, &mut self.buffer)?;
        match self.ring.call(self.endpoint, 1, &self.buffer[..n], &mut self.out) {
            Ok((m, len, _)) if m.info.label() == 0 => state::decode_reply(&self.out[..len]),
            _ => None,
        }
    }

    /// Everything State holds, as a new Logic.
    fn load(&mut self) -> Option<Logic> {
        match state::load(|r| self.ask(r)) {
            Ok(snapshot) => Some(Logic::restore(Quota::default(), snapshot)),
            Err(e) => {
                println!("xenstore-logic: cannot read XenStore-State: {e:?}");
                None
            }
        }
    }

    /// Hands Logic's change to State; false if State did not take it.
    fn commit(&mut self, logic: &mut Logic) -> bool {
        let journal = logic.take_journal();
        if journal.is_empty() {
            return true;
        }
        let room = self.room();
        match state::commit(journal, room, |r| self.ask(r)) {
            Ok(()) => true,
            Err(e) => {
                println!("xenstore-logic: XenStore-State refused a change: {e:?}");
                false
            }
        }
    }
}

/// Handles one client message; returns the reply length and the events length written to
/// its ring, or `None` (label 1, nothing written).
fn serve(
    logic: &mut Logic,
    link: &mut StateLink,
    badge: u64,
    label: u64,
    length: usize,
) -> Option<(usize, usize)> {
    let domid = domain_of_badge(badge)?;
    let ring = client_ring(badge)?;
    let mut reply = match label {
        LABEL_REQUEST if length <= PAGE => {
            let mut bytes = alloc::vec![0u8; length];
            ring.read(0, &mut bytes).then_some(())?;
            match wire::frame(&bytes) {
                Framed::Message(header, payload, used) if used == bytes.len() => {
                    let reply = logic.handle(badge, domid, &header, payload);
                    Some((reply, header))
                }
                _ => None,
            }
        }
        LABEL_EVENTS => None,
        _ => return None,
    };
    // The events that fit the reply page go out with it; the rest wait for the next call.
    let used = reply.as_ref().map_or(0, |(r, _)| r.len());
    let mut events: Vec<u8> = logic.take_events_for(badge, PAGE - used).concat();
    if !link.commit(logic) {
        // Not acknowledged: start again from what State holds; the client gets EIO.
        *logic = link.load()?;
        let (_, header) = reply.as_ref()?;
        let mut out = alloc::vec![0u8; 32];
        let n = wire::encode_error(&mut out, header, wire::Error::Io)?;
        out.truncate(n);
        reply = Some((out, *header));
        events = Vec::new();
    }
    let reply = reply.map(|(r, _)| r).unwrap_or_default();
    (ring.write(PAGE, &reply) && ring.write(PAGE + reply.len(), &events))
        .then_some((reply.len(), events.len()))
}

fn main() -> i32 {
    // The supervisor may restart it (system.toml): the first instance reports its
    // authority, later ones only that they resumed (the first few) and the audit log has
    // every restart.
    let instance = cleave_rt::instance();
    if instance == 1 {
        cleave_rt::cap::report_authority("xenstore-logic", caps::CAPS, caps::REGIONS);
        if !cleave_rt::cap::report_ungiven("xenstore-logic", caps::CAPS) {
            return 1;
        }
    }
    let mut link = StateLink::new();
    let Some(mut logic) = link.load() else { return 1 };
    if instance <= 3 {
        println!(
            "xenstore-logic: instance {instance} resumed from XenStore-State: {} nodes, {} watches",
            logic.store().len(),
            logic.watch_count()
        );
    }
    let endpoint: Cap<Endpoint> = caps::XS_REQUEST;
    let mut incoming = endpoint.recv();
    loop {
        let m = match incoming {
            Ok(m) => m,
            Err(e) => {
                println!("xenstore-logic: receive failed: {e}");
                return 1;
            }
        };
        incoming = match serve(&mut logic, &mut link, m.badge, m.info.label(), m.words[0] as usize) {
            Some((reply, events)) => {
                endpoint.reply_recv(MessageInfo::new(0, 0, 0, 2), [reply as u64, events as u64, 0, 0])
            }
            None => endpoint.reply_recv(MessageInfo::new(1, 0, 0, 0), [0; 4]),
        };
    }
}
