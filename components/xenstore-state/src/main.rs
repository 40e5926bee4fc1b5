//! XenStore-State, first form: a table of numeric keys and values that clients read and
//! write over the `xs-request` endpoint. (The Xen wire protocol, the tree and the Logic
//! half arrive with the XenStore work.)
//!
//! Protocol: label 1 WRITE(key, value) → reply (0); label 2 READ(key) → reply (found,
//! value); anything else → reply with label 1 (unknown request).
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
            _ => (1, [0; 4], 0),
        };
        let (label, words, length) = reply;
        request = endpoint.reply_recv(MessageInfo::new(label, 0, 0, length), words);
    }
}
