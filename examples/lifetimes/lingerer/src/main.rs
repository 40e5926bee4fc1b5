//! The lingerer: a disposable component that never says it is done. It answers every
//! request on `linger-query` until its `deadline` (system.toml) passes; then the supervisor
//! destroys it as if it had signalled, and its clients' calls fail.
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "CAPS and REGIONS are for reports this component does not print")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

fn main() -> i32 {
    let endpoint: Cap<Endpoint> = caps::LINGER_QUERY;
    let started = cleave_rt::console::audit_time();
    let mut request = endpoint.recv();
    loop {
        if request.is_err() {
            println!("lingerer: receive failed");
            return 1;
        }
        request = endpoint.reply_recv(MessageInfo::new(0, 0, 0, 1), [started, 0, 0, 0]);
    }
}
