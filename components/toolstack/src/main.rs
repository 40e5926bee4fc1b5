//! The toolstack, first form: writes a few keys into XenStore-State over its channel, reads
//! them back, reports, and ends the run (it is the last thing `cargo xtask run` does).
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println, syscall};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

fn main() -> i32 {
    for (name, slot, what) in caps::CAPS {
        println!("toolstack: cap {slot}: {name} ({what})");
    }
    let store: Cap<Endpoint> = Cap::from_cptr(caps::XS_REQUEST);
    let domains = [(1u64, 0x1000u64), (2, 0x2000), (7, 0x7000)];
    for (domain, memory) in domains {
        match store.call(MessageInfo::new(1, 0, 0, 2), [domain, memory, 0, 0]) {
            Ok(m) if m.info.label() == 0 => {}
            other => {
                println!("toolstack: TEST FAIL: write {domain} -> {other:?}");
                syscall::debug_exit(1);
            }
        }
    }
    let mut good = 0;
    for (domain, memory) in domains.into_iter().chain([(9, 0)]) {
        match store.call(MessageInfo::new(2, 0, 0, 1), [domain, 0, 0, 0]) {
            Ok(m) if m.words[0] == 1 && m.words[1] == memory => good += 1,
            Ok(m) if m.words[0] == 0 && memory == 0 => good += 1,
            other => println!("toolstack: read {domain}: unexpected {other:?}"),
        }
    }
    println!("toolstack: {good} of 4 answers from xenstore-state were right");
    // Every other slot of its CNode is empty: probing them must fail.
    let mut refused = 0;
    for slot in 1..256u64 {
        if caps::CAPS.iter().any(|&(_, s, _)| s == slot) {
            continue;
        }
        let probe: Cap<Endpoint> = Cap::from_cptr(slot);
        if probe.nb_send(MessageInfo::default(), [0; 4]) == Err(cleave_abi::Error::InvalidCapability) {
            refused += 1;
        }
    }
    println!("toolstack: {refused} of {} ungiven slots refused", 255 - caps::CAPS.len());
    if good == 4 && refused == 255 - caps::CAPS.len() {
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: toolstack");
        1
    }
}
