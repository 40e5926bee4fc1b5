//! The observer: the lifetimes example's oracle. It asks each demonstration what its
//! lifetime made of it (the heartbeat before and after its timed restarts, and a request
//! cut off by a forced one; the lingerer before and after its deadline; the scribbler,
//! rolled back after every request; the worker, below the crash-looping crasher), checks
//! it holds nothing else, prints a verdict per check and over all (`TEST PASS (6 cases)`)
//! and ends the run (`ends-run`).
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::{Endpoint, Notification};
use cleave_rt::{Cap, println};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// How often the observer asks again, 10 ms apart, for something the supervisor does on
/// its own clock (a restart, a deadline) before it concludes the supervisor missed it:
/// about 10 s of time-stamp counter.
const POLLS: u32 = 1000;

/// The one request the demos' servers take (the heartbeat's label 2 is the slow one).
fn ask() -> MessageInfo {
    MessageInfo::new(1, 0, 0, 0)
}

/// Asks the heartbeat (restarted every 50 ms) when its instance started and how many
/// requests it served, retrying if a restart interrupts the call.
fn heartbeat() -> Option<(u64, u64)> {
    let h: Cap<Endpoint> = caps::HEARTBEAT_QUERY;
    h.call_retrying(ask(), [0; 4], 5).ok().map(|m| (m.words[0], m.words[1]))
}

/// Asks the scribbler (rolled back after every request) for `n * n` for many `n`: every
/// answer must be right and every request the first its instance served, although it
/// wrecks its table and bumps its count each time. Returns (right, asked).
fn scribble_all() -> (u64, u64) {
    let s: Cap<Endpoint> = caps::SCRIBBLE;
    let mut right = 0;
    let asked = 20;
    for n in 0..asked {
        let x = (n * 7 + 3) % 64;
        match s.call(MessageInfo::new(1, 0, 0, 1), [x, 0, 0, 0]) {
            Ok(m) if m.words[0] == x * x && m.words[1] == 1 => right += 1,
            Ok(m) => {
                println!("observer: scribbler answered {x}² = {} as request {}", m.words[0], m.words[1])
            }
            Err(e) => println!("observer: scribbler did not answer: {e}"),
        }
    }
    (right, asked)
}

/// Lets about `ms` milliseconds of time-stamp counter pass (taken as 1 GHz), yielding.
fn pause(ms: u64) {
    let until = cleave_rt::syscall::rdtsc() + ms * 1_000_000;
    while cleave_rt::syscall::rdtsc() < until {
        cleave_rt::syscall::yield_now();
    }
}

/// The heartbeat is restarted every 50 ms: between two calls far enough apart, it started
/// again (later start, count from 1) and still answers. (Asked every 10 ms until the
/// instance changes: the supervisor's timer is the PIT, which a loaded host can make lag
/// the time-stamp counter `pause` counts.)
fn heartbeat_restarts() -> bool {
    let first = heartbeat();
    let mut second = first;
    for _ in 0..POLLS {
        pause(10);
        second = heartbeat();
        if second.zip(first).is_none_or(|((t1, _), (t0, _))| t1 != t0) {
            break;
        }
    }
    match (first, second) {
        (Some((t0, _)), Some((t1, n1))) => {
            println!(
                "observer: heartbeat answered before and after its restarts (instance started at {t0} us, then {t1} us; {n1} request served by the new one)"
            );
            t1 > t0 && n1 == 1
        }
        other => {
            println!("observer: heartbeat did not answer: {other:?}");
            false
        }
    }
}

/// Past the lingerer's deadline it is gone. The supervisor keeps its deadlines by the PIT,
/// which a loaded host can make lag the time-stamp counter this thread measures with, so
/// ask again (every 10 ms, for up to about 10 s) until it is gone.
fn lingerer_gone(lingerer: Cap<Endpoint>, lingered: bool) -> bool {
    let mut overdue = lingerer.call(ask(), [0; 4]);
    for _ in 0..POLLS {
        if overdue.is_err() {
            break;
        }
        pause(10);
        overdue = lingerer.call(ask(), [0; 4]);
    }
    println!(
        "observer: lingerer answered before its deadline: {lingered}; after it: {:?}",
        overdue.map(|m| m.words[0])
    );
    lingered && overdue == Err(cleave_abi::Error::InvalidCapability)
}

/// A request that keeps the heartbeat busy past its period and grace: the supervisor
/// restarts it regardless, and this call, cut off, fails; the next instance answers.
fn heartbeat_forced() -> bool {
    let h: Cap<Endpoint> = caps::HEARTBEAT_QUERY;
    let cut_off = h.call(MessageInfo::new(2, 0, 0, 0), [0; 4]);
    let after = heartbeat();
    println!(
        "observer: a request the heartbeat was still busy with when it was restarted: {:?}; then {}",
        cut_off.map(|m| m.words),
        if after.is_some() { "the next instance answered" } else { "no answer" }
    );
    cut_off == Err(cleave_abi::Error::ReplyLost) && after.is_some()
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("observer", caps::CAPS, caps::REGIONS);
    // The lingerer answers until its deadline (then the supervisor destroys it): ask first.
    let lingerer: Cap<Endpoint> = caps::LINGER_QUERY;
    let lingered = lingerer.call(ask(), [0; 4]).is_ok();
    let restarted = heartbeat_restarts();
    let deadline_kept = lingerer_gone(lingerer, lingered);
    let (right, asked) = scribble_all();
    println!(
        "observer: scribbler answered {right} of {asked} requests correctly, each as the first of its instance (rolled back after every request)"
    );
    let rolled_back = right == asked;
    // The worker, below the crash-looping crasher, still finishes its work.
    let worker: Cap<Notification> = caps::WORKER_DONE;
    let worked = worker.wait().is_ok();
    println!("observer: the worker finished its rounds while the crasher crash-looped above it");
    let forced = heartbeat_forced();
    // Every other slot of its CNode is empty: probing them must fail.
    let alone = cleave_rt::cap::report_ungiven("observer", caps::CAPS);
    let cases = [
        ("heartbeat-restarts", restarted),
        ("lingerer-deadline", deadline_kept),
        ("scribbler-rollback", rolled_back),
        ("worker-below-crasher", worked),
        ("heartbeat-forced-restart", forced),
        ("no-ungiven-capability", alone),
    ];
    // The verdict in the form `cargo xtask test` checks (`doc/testing.md`).
    println!("TEST PLAN {}", cases.len());
    for (name, ok) in cases {
        println!("TEST {} {name}", if ok { "PASS" } else { "FAIL" });
    }
    let failed = cases.iter().filter(|(_, ok)| !ok).count();
    println!("TEST {} ({} cases)", if failed == 0 { "PASS" } else { "FAIL" }, cases.len());
    i32::from(failed != 0)
}
