//! The worker: busy work below the crasher's priority. It finishes its rounds only if the
//! crasher's crash loop leaves it processor time (the supervisor's restart backoff), then
//! signals `worker-done` to the observer, which waits for it.
#![no_std]
#![no_main]

use cleave_rt::cap::kind::Notification;
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "CAPS and REGIONS are for reports this component does not print")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Rounds of work.
const ROUNDS: u64 = 4;
/// Steps per round (tens of millions of instructions).
const STEPS: u64 = 4_000_000;

fn main() -> i32 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for round in 1..=ROUNDS {
        for i in 0..STEPS {
            x = core::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
        println!("worker: round {round} of {ROUNDS} done ({:#06x})", x & 0xffff);
    }
    let done: Cap<Notification> = caps::WORKER_DONE;
    if done.signal().is_err() {
        println!("worker: cannot signal that it is done");
    }
    // Nothing more to do. It holds nothing it could wait on (its one capability only
    // signals), and it is the lowest priority in the system: yielding forever takes
    // processor time from no one.
    loop {
        cleave_rt::syscall::yield_now();
    }
}
