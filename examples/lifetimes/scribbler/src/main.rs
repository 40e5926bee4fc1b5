//! The scribbler: a server the supervisor rolls back to its pristine memory after every
//! request (`restart = "per-request"` in system.toml). Each request on `scribble` asks for
//! the square of a number below 64; it looks the answer up in a table in its writable
//! memory, counts the request, then scribbles over the whole table. It answers correctly,
//! and counts 1, only if every request finds it as the loader made it.
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

// It does not report its authority at start: it starts again after every request.
#[allow(dead_code, reason = "CAPS and REGIONS are for reports this component does not print")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Entries in the table.
const ENTRIES: usize = 64;

/// `n * n` for every `n` below [`ENTRIES`], in its writable memory (initialised data).
static TABLE: [AtomicU64; ENTRIES] = squares();
/// Requests this instance served.
static SERVED: AtomicU64 = AtomicU64::new(0);

const fn squares() -> [AtomicU64; ENTRIES] {
    let mut table = [const { AtomicU64::new(0) }; ENTRIES];
    let mut i = 0;
    while i < ENTRIES {
        table[i] = AtomicU64::new((i * i) as u64);
        i += 1;
    }
    table
}

fn main() -> i32 {
    let endpoint: Cap<Endpoint> = caps::SCRIBBLE;
    let mut request = endpoint.recv();
    loop {
        let Ok(m) = request else {
            println!("scribbler: receive failed");
            return 1;
        };
        let n = m.words[0] as usize % ENTRIES;
        let answer = TABLE[n].load(Relaxed);
        let served = SERVED.fetch_add(1, Relaxed) + 1;
        // Wreck the state, as a compromised or buggy server might.
        for (i, entry) in TABLE.iter().enumerate() {
            entry.store(0xdead_0000 | i as u64, Relaxed);
        }
        // Replying ends the request: the receive half of this call goes to the supervisor,
        // which rolls it back and starts it again.
        request = endpoint.reply_recv(MessageInfo::new(0, 0, 0, 2), [answer, served, 0, 0]);
    }
}
