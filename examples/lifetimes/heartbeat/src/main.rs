//! The heartbeat: a small server the supervisor restarts on a timer (`restart = { every =
//! … }` in system.toml). It answers each request on `heartbeat-query` with when this
//! instance started and how many requests it has served; both live in its writable
//! memory, which every restart puts back as it was, so a client sees the start time change
//! and the count begin again, and goes on being answered. A request with label 2 keeps it
//! busy past its period, so the supervisor restarts it regardless, cutting that request
//! off.
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};
use core::sync::atomic::{AtomicU64, Ordering};

// It does not report its authority at start: it starts again every period.
#[allow(dead_code, reason = "CAPS and REGIONS are for reports this component does not print")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Requests this instance served (in its writable memory: a restart zeroes it).
static SERVED: AtomicU64 = AtomicU64::new(0);

/// The label of a slow request: answered only after [`SLOW_TICKS`], to show that the
/// supervisor restarts a component that stays busy, and that the client waiting for it
/// gets an error.
const SLOW: u64 = 2;
/// Time-stamp counter ticks a slow request takes: far longer than the restart period.
const SLOW_TICKS: u64 = 2_000_000_000;

fn main() -> i32 {
    let started = cleave_rt::console::audit_time();
    let endpoint: Cap<Endpoint> = caps::HEARTBEAT_QUERY;
    let mut request = endpoint.recv();
    loop {
        if request.is_err() {
            println!("heartbeat: receive failed");
            return 1;
        }
        if request.is_ok_and(|m| m.info.label() == SLOW) {
            let until = cleave_rt::syscall::rdtsc() + SLOW_TICKS;
            while cleave_rt::syscall::rdtsc() < until {
                core::hint::spin_loop();
            }
        }
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        request = endpoint.reply_recv(MessageInfo::new(0, 0, 0, 2), [started, served, 0, 0]);
    }
}
