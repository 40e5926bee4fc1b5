//! XenStore-State: holds XenStore's committed tree, its registered watches and the watch
//! events not yet delivered (`cleave_xenstore::state`), for XenStore-Logic, its only
//! client, over the `xs-state` channel. It parses no client message and checks no
//! permission: that is Logic's work. Logic can be restarted at any time; a new Logic
//! reads everything back from here.
//!
//! Transport: the channel's ring (`ring = "64K"`); Logic writes a postcard-encoded
//! `state_protocol::Request` at its start and calls with label 1 and the length in word 0; this
//! component writes the `state_protocol::Reply` at the start of the second half and answers label 0
//! with its length in word 0. Any other message gets label 1 and no reply.
#![no_std]
#![no_main]

extern crate alloc;

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::shm::Shared;
use cleave_rt::{Cap, println};
use cleave_xenstore::state::State;

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(512 * 1024);

/// Logic's ring (there is one client).
fn ring(badge: u64) -> Option<Shared> {
    caps::RINGS_XS_STATE.iter().find(|&&(b, _, _)| b == badge).map(|&(_, address, size)| {
        // SAFETY: RINGS_XS_STATE lists the rings the loader mapped read-write into this
        // component at these addresses and sizes; only `Shared` copies touch them.
        unsafe { Shared::new(address, size) }
    })
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("xenstore-state", caps::CAPS, caps::REGIONS);
    // Holding anything the description does not give is a broken build: stop (the
    // run fails).
    if !cleave_rt::cap::report_ungiven("xenstore-state", caps::CAPS) {
        return 1;
    }
    let mut state = State::new();
    let endpoint: Cap<Endpoint> = caps::XS_STATE;
    let mut request = alloc::vec![0u8; 0];
    let mut reply = alloc::vec![0u8; 0];
    let mut incoming = endpoint.recv();
    loop {
        let m = match incoming {
            Ok(m) => m,
            Err(e) => {
                println!("xenstore-state: receive failed: {e}");
                return 1;
            }
        };
        let answer = ring(m.badge).and_then(|ring| {
            let half = ring.len() / 2;
            let length = m.words[0] as usize;
            if m.info.label() != 1 || length > half {
                return None;
            }
            request.resize(length, 0);
            reply.resize(half, 0);
            ring.read(0, &mut request).then_some(())?;
            let n = state.serve(&request, &mut reply);
            ring.write(half, &reply[..n]).then_some([n as u64, 0, 0, 0])
        });
        incoming = match answer {
            Some(words) => endpoint.reply_recv(MessageInfo::new(0, 0, 0, 1), words),
            None => endpoint.reply_recv(MessageInfo::new(1, 0, 0, 0), [0; 4]),
        };
    }
}
