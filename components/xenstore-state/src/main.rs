//! XenStore-State, first form: a table of numeric keys and values that clients read and
//! write over the `xs-request` endpoint. (The Xen wire protocol, the tree and the Logic
//! half arrive with the XenStore work.)
//!
//! Protocol: label 1 WRITE(key, value) → reply (0); label 2 READ(key) → reply (found,
//! value); label 3 RING(length) → reply (FNV-1a of the first `length` bytes of the shared
//! `xs-ring` region, which this component maps read-only); anything else → reply with
//! label 1 (unknown request).
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

const ENTRIES: usize = 64;

fn main() -> i32 {
    for (name, slot, what) in caps::CAPS {
        println!("xenstore-state: cap {slot}: {name} ({what})");
    }
    for (name, address, bytes, rights) in caps::REGIONS {
        println!("xenstore-state: region {name} at {address:#x}, {} KiB, {rights}", bytes / 1024);
    }
    // Nothing but what the description gives: every other slot is empty.
    let (refused, probed) = cleave_rt::cap::probe_ungiven_slots(caps::CAPS, 256);
    println!("xenstore-state: {refused} of {probed} ungiven slots refused");
    let mut table = [(0u64, 0u64, false); ENTRIES];
    let endpoint: Cap<Endpoint> = Cap::from_cptr(caps::XS_REQUEST);
    let mut request = endpoint.recv();
    loop {
        let (label, words) = match request {
            Ok(m) => (m.info.label(), m.words),
            Err(e) => {
                println!("xenstore-state: receive failed: {e}");
                return 1;
            }
        };
        let reply = match label {
            1 => {
                let [key, value, ..] = words;
                let at =
                    table.iter().position(|e| e.2 && e.0 == key).or_else(|| table.iter().position(|e| !e.2));
                match at {
                    Some(i) => {
                        table[i] = (key, value, true);
                        (0, [0, 0, 0, 0], 0)
                    }
                    None => (2, [0; 4], 0),
                }
            }
            2 => match table.iter().find(|e| e.2 && e.0 == words[0]) {
                Some(&(_, value, _)) => (0, [1, value, 0, 0], 2),
                None => (0, [0, 0, 0, 0], 2),
            },
            3 if words[0] as usize <= caps::REGION_XS_RING_SIZE => {
                (0, [ring_digest(words[0] as usize), 0, 0, 0], 1)
            }
            _ => (1, [0; 4], 0),
        };
        let (label, words, length) = reply;
        request = endpoint.reply_recv(MessageInfo::new(label, 0, 0, length), words);
    }
}

/// FNV-1a of the first `length` bytes of the shared ring (`length` is at most its size).
fn ring_digest(length: usize) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..length {
        // SAFETY: the loader mapped `xs-ring` readable at REGION_XS_RING for
        // REGION_XS_RING_SIZE bytes (the spec says so, and the boot digest checks it was
        // built); i < length <= that size. Volatile: the toolstack writes it.
        let byte = unsafe { ((caps::REGION_XS_RING + i) as *const u8).read_volatile() };
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}
