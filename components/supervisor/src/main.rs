//! The supervisor: what cleave adds to a system with disposable or restartable components
//! (`cleave::compile`). It holds exactly its own CNode, a notification, and:
//!
//! - per disposable component the untyped memory everything of it was made from (its TCB,
//!   CNode, address space, program pages, stack, and the endpoints it serves). On that
//!   component's signal it revokes the untyped: the kernel destroys all of it, and every
//!   capability others held to it is gone; then it makes a frame from the same memory to
//!   show it is free again and writes `dispose` to the audit log. A component with a
//!   `deadline` that has not signalled by then is disposed of the same way;
//! - per restartable component its TCB, its writable memory and a pristine copy of it
//!   (both mapped here); the component's faults arrive on its `faults` endpoint; and the
//!   PIT as a clock. A restart stops the thread (a client waiting for its reply gets an
//!   error and can call again), copies the pristine memory back, resets the registers to
//!   the ones it started with, starts it again, and writes `restart` to the audit log. It
//!   restarts a component every period (`restart = { every }`: when it next waits for a
//!   request, so that no client's request is cut off, or regardless once it has stayed
//!   busy for a 20 ms grace period); after every request
//!   (`restart = "per-request"`: the kernel stops such a thread at its second receive and
//!   sends `REQUEST_DONE` here); and after a crash, with a backoff that doubles while it
//!   keeps crashing soon after starting, so that a crash loop cannot starve other work.
//!
//! When to do each is decided by `cleave_supervisor_policy` (`policy/`), a pure state
//! machine the host tests; this program carries it out with its capabilities.
#![no_std]
#![no_main]

use cleave_abi::object::thread_state;
use cleave_abi::syscall::fault;
use cleave_abi::{MessageInfo, ObjectType};
use cleave_rt::cap::Message;
use cleave_rt::cap::kind::{CNode, Endpoint, IoPort, Notification, Tcb};
use cleave_rt::{Cap, println};
use cleave_supervisor_policy::{Disposal, Fault, OnFault, Restart, Restarts, disposal};

#[allow(dead_code, reason = "the per-component untyped slots are found through CAPS, by name")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Radix of its CNode (the slot depth for CNode invocations on it).
const DEPTH: u64 = 8;
/// A slot nothing is given in, where the proof-of-reuse frame goes for a moment.
const SCRATCH_SLOT: u64 = 255;
/// The notification's badge bit for the clock (`cleave_system::layout::CLOCK_BADGE`).
const CLOCK: u64 = 1 << 63;
/// Where `rsi` is among the registers `read_registers` gives (rip, rsp, rflags, rax, rbx,
/// rcx, rdx, rsi, ...).
const RSI: usize = 7;
/// Most restartable components (`cleave_system::layout::MAX_RESTARTABLE`; `cleave check`
/// refuses more when guests start on request).
const MAX_RESTARTS: usize = 16;

/// A component restarted on a timer or rolled back after every request.
#[derive(Clone, Copy)]
struct Restartable {
    name: &'static str,
    tcb: Cap<Tcb>,
    memory: usize,
    pristine: usize,
    /// Bytes of the pristine copy (the first of `bytes`).
    pristine_bytes: usize,
    bytes: usize,
    /// The badge its faults arrive with.
    badge: u64,
    /// For a guest I/O backend, its guests' bits on `done` (their VMMs set them once the
    /// guests have stopped); 0 for any other component.
    guests: u64,
    /// Its registers when the loader made it: rip, rsp, rflags, then the rest.
    registers: [u64; 18],
    /// When it restarts (`cleave_supervisor_policy`).
    restarts: Restarts,
}

/// Programs the PIT: channel 0, rate generator, 1 kHz.
fn start_clock() -> bool {
    let ports: Cap<IoPort> = caps::CLOCK_PORTS;
    let divisor = 1193u32;
    ports.write(0x43, 1, 0x34).is_ok()
        && ports.write(0x40, 1, divisor & 0xff).is_ok()
        && ports.write(0x40, 1, divisor >> 8).is_ok()
        && caps::CLOCK.ack().is_ok()
}

/// Restarts `r` at `now_ms` for `why`: stop, restore memory, reset registers, go. Returns
/// the TSC ticks it took and whether the console shows it.
fn restart(r: &mut Restartable, why: Restart, now_ms: u64) -> (u64, bool) {
    let t0 = cleave_rt::syscall::rdtsc();
    let _ = r.tcb.suspend();
    // Its first pages from the pristine copy (its program's initialized data), the rest
    // zero, as the loader made them.
    let copied = r.pristine_bytes.min(r.bytes);
    // SAFETY: RESTARTS names where cleave mapped this component's writable memory (read
    // write, `bytes`) and the pristine copy of its first `pristine_bytes` (read only) in
    // this address space; the component is suspended, so nothing else touches its memory
    // while it is written.
    unsafe {
        core::ptr::copy_nonoverlapping(r.pristine as *const u8, r.memory as *mut u8, copied);
        core::ptr::write_bytes((r.memory + copied) as *mut u8, 0, r.bytes - copied);
    }
    // The same registers, and the instance it is in `rsi` (`cleave_rt::instance`).
    let instance = r.restarts.instance();
    let mut registers = r.registers;
    registers[RSI] = instance + 1;
    let resumed = r.tcb.write_registers(true, &registers);
    let ticks = cleave_rt::syscall::rdtsc() - t0;
    if resumed.is_ok() {
        cleave_rt::audit!("restart {}#{} {}#{}", r.name, instance, r.name, instance + 1);
    } else {
        println!("supervisor: cannot restart `{}`", r.name);
    }
    (ticks, r.restarts.restarted(why, now_ms, resumed.is_ok()))
}

/// What a fault message says, for the report.
struct Described {
    label: u64,
    words: [u64; 4],
}

impl core::fmt::Display for Described {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let w = self.words;
        match self.label {
            fault::VM_FAULT => write!(f, "page fault at {:#x}, rip {:#x}", w[0], w[2]),
            fault::USER_EXCEPTION => {
                let (mnemonic, name) = fault::exception_name(w[0]);
                write!(f, "{name} ({mnemonic}), rip {:#x}", w[2])
            }
            fault::UNKNOWN_SYSCALL => write!(f, "unknown system call {:#x}, rip {:#x}", w[0], w[1]),
            fault::EXITED => write!(f, "its program ended with status {}", w[0] as i64),
            other => write!(f, "fault {other:#x}, rip {:#x}", w[2]),
        }
    }
}

/// A fault message from `r`: the end of a request (roll back now) or a crash (restart
/// after the backoff; until then it stays stopped, so a crash loop costs the others
/// nothing). `gone` holds the bits of the guests whose VMMs said they have stopped.
fn on_fault(r: &mut Restartable, label: u64, words: [u64; 4], now_ms: u64, gone: u64) {
    // A program may end for good only when the end is known from elsewhere: a guest I/O
    // backend once every guest it serves is gone (their VMMs, not the backend, say so).
    // Any other end, or one with a failure status, is a crash, restarted after a backoff:
    // a component compromised through its inputs cannot stop its timed restarts by ending.
    let verified = cleave_supervisor_policy::end_verified(r.guests, gone);
    let fault = match label {
        fault::REQUEST_DONE => Fault::RequestDone,
        fault::EXITED if words[0] == 0 && verified => Fault::Exited,
        _ => Fault::Crash,
    };
    let finished_before = r.restarts.finished();
    match r.restarts.on_fault(fault, now_ms) {
        // Stopped for good: suspended, it no longer waits for this thread's reply (a later
        // receive would otherwise resume it past its end).
        OnFault::Finished if finished_before => {
            let _ = r.tcb.suspend();
        }
        OnFault::Finished => {
            let _ = r.tcb.suspend();
            let instance = r.restarts.instance();
            cleave_rt::audit!("end {}#{instance}", r.name);
            println!(
                "supervisor: `{}` (instance {instance}) ended with status {}; it is not restarted again",
                r.name, words[0] as i64
            );
        }
        OnFault::Stopped => {
            let _ = r.tcb.suspend();
            println!(
                "supervisor: `{}` (instance {}) crashed at {now_ms} ms: {}; it stays stopped until the toolstack starts it again",
                r.name,
                r.restarts.instance(),
                Described { label, words },
            );
        }
        OnFault::Restart(why) => {
            let (ticks, show) = restart(r, why, now_ms);
            if show {
                println!(
                    "supervisor: rolled back `{}` after request {}: {} KiB restored in {ticks} TSC ticks",
                    r.name,
                    r.restarts.rollbacks(),
                    r.bytes >> 10
                );
            }
        }
        OnFault::Backoff { crash, wait, show, .. } => {
            // Stopped until its backoff is over: it waits for no reply (the next call this
            // thread receives, the toolstack's say, would otherwise discard the reply owed
            // and wake it with an error, and it would fault again and again).
            let _ = r.tcb.suspend();
            if show && label == fault::EXITED && words[0] == 0 {
                let why = if r.guests == 0 {
                    "with status 0, which only a guest I/O backend whose guests are all gone may"
                } else {
                    "while guests it serves still run"
                };
                println!(
                    "supervisor: `{}` (instance {}) ended at {now_ms} ms {why} (crash {crash}); restarting it in {wait} ms",
                    r.name,
                    r.restarts.instance(),
                );
            } else if show {
                println!(
                    "supervisor: `{}` (instance {}) crashed at {now_ms} ms: {} (crash {crash}); restarting it in {wait} ms",
                    r.name,
                    r.restarts.instance(),
                    Described { label, words },
                );
            }
        }
    }
}

/// A clock tick at `now_ms` for `r`: a crashed component's backoff may be over, a timed
/// one's period.
fn on_tick(r: &mut Restartable, now_ms: u64) {
    let tcb = r.tcb;
    let backend = r.guests != 0;
    // Waiting for a request: a quiet moment, when no client's request is cut off. A guest
    // I/O backend also waiting on its notification: its clients reach it only through
    // rings, which hold their requests across a restart. Any other component waiting on a
    // notification may hold a caller it has yet to answer, so that is no quiet moment.
    let quiet = || match tcb.state() {
        Ok(thread_state::BLOCKED_ON_RECEIVE | thread_state::INACTIVE) => true,
        Ok(thread_state::BLOCKED_ON_NOTIFICATION) => backend,
        _ => false,
    };
    let Some(why) = r.restarts.on_tick(now_ms, quiet) else { return };
    let (ticks, show) = restart(r, why, now_ms);
    if !show {
        return;
    }
    match why {
        Restart::AfterCrash => {
            println!(
                "supervisor: restarted `{}` (instance {}) after its crash",
                r.name,
                r.restarts.instance()
            )
        }
        _ => println!(
            "supervisor: restarted `{}` (instance {}) at {now_ms} ms{}: {} KiB restored in {ticks} TSC ticks",
            r.name,
            r.restarts.instance(),
            if why == Restart::Forced { " (forced: busy through the grace period)" } else { "" },
            r.bytes >> 10
        ),
    }
}

/// The toolstack's request `label` about the component named in `words`: its state, or
/// its restart now (`cleave_ctl::supervisor`). Returns the reply's label and words.
fn on_request(
    restartable: &mut [Option<Restartable>],
    disposable: &[Option<caps::Disposable>],
    label: u64,
    words: [u64; 4],
    now_ms: u64,
) -> (u64, [u64; 4]) {
    use cleave_ctl::supervisor::{RESTART, STATUS, STOP, kind, reply};
    let mut buf = [0u8; cleave_ctl::MAX_NAME];
    let Some(name) = cleave_ctl::unpack_name(words, &mut buf) else { return (reply::MALFORMED, [0; 4]) };
    if let Some(r) = restartable.iter_mut().flatten().find(|r| r.name == name) {
        let state = |r: &Restartable| {
            let k = if r.restarts.finished() {
                kind::ENDED
            } else if r.restarts.stopped() {
                kind::STOPPED
            } else if r.restarts.due().is_some() {
                kind::CRASHED
            } else {
                kind::RESTARTABLE
            };
            [k, r.restarts.instance(), r.restarts.total_crashes(), r.restarts.period_ms()]
        };
        return match label {
            STATUS => (reply::OK, state(r)),
            // Stopped until the next restart: an on-request guest's VMM, before its RAM goes.
            // Any other component is refused (a timed one would only come back at its
            // next period, a per-request one not at all).
            STOP if r.restarts.period_ms() != cleave_supervisor_policy::ON_REQUEST => {
                (reply::NOT_RESTARTABLE, state(r))
            }
            STOP => match r.tcb.suspend() {
                Ok(()) => {
                    r.restarts.stop();
                    println!(
                        "supervisor: stopped `{}` (instance {}), as the toolstack asked",
                        r.name,
                        r.restarts.instance()
                    );
                    (reply::OK, state(r))
                }
                Err(_) => (reply::FAILED, state(r)),
            },
            RESTART if r.restarts.finished() => (reply::FAILED, state(r)),
            RESTART if r.restarts.due().is_some() => (reply::BACKING_OFF, state(r)),
            RESTART => {
                let before = r.restarts.instance();
                let (ticks, _) = restart(r, Restart::Operator, now_ms);
                if r.restarts.instance() == before {
                    return (reply::FAILED, state(r));
                }
                println!(
                    "supervisor: restarted `{}` (instance {}) at {now_ms} ms, as the toolstack asked: {} KiB restored in {ticks} TSC ticks",
                    r.name,
                    r.restarts.instance(),
                    r.bytes >> 10
                );
                (reply::OK, state(r))
            }
            _ => (reply::MALFORMED, [0; 4]),
        };
    }
    let known = caps::DISPOSABLE.iter().find(|d| d.component == name);
    let Some(d) = known else { return (reply::UNKNOWN, [0; 4]) };
    let present = disposable.iter().flatten().any(|x| x.component == d.component);
    let state = [if present { kind::DISPOSABLE } else { kind::DISPOSED }, 1, 0, 0];
    match label {
        STATUS => (reply::OK, state),
        RESTART | STOP => (reply::NOT_RESTARTABLE, state),
        _ => (reply::MALFORMED, [0; 4]),
    }
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("supervisor", caps::CAPS, caps::REGIONS);
    if !cleave_rt::cap::report_ungiven("supervisor", caps::CAPS) {
        return 1;
    }
    let cnode: Cap<CNode> = caps::CNODE;
    let done: Cap<Notification> = caps::DONE;
    // The disposable components still there (an entry is emptied when its component goes).
    let mut disposable = [None::<caps::Disposable>; 32];
    for (entry, d) in disposable.iter_mut().zip(caps::DISPOSABLE) {
        *entry = Some(*d);
    }
    let count = caps::DISPOSABLE.len().min(disposable.len());
    // The restartable components, with the registers they start with (they have not run
    // yet: this thread's priority is above theirs).
    let mut restartable = [None::<Restartable>; MAX_RESTARTS];
    for (i, r) in caps::RESTARTS.iter().enumerate().take(MAX_RESTARTS) {
        match r.tcb.read_registers() {
            Ok(registers) => {
                restartable[i] = Some(Restartable {
                    name: r.component,
                    tcb: r.tcb,
                    memory: r.memory,
                    pristine: r.pristine,
                    pristine_bytes: r.pristine_bytes,
                    bytes: r.bytes,
                    badge: r.fault_badge,
                    guests: r.guests,
                    registers,
                    restarts: Restarts::new(r.period_ms),
                });
            }
            Err(e) => println!("supervisor: cannot read `{}`'s registers: {e}", r.component),
        }
    }
    let clocked = !caps::RESTARTS.is_empty() || caps::DISPOSABLE.iter().any(|d| d.deadline_ms != 0);
    if clocked && !start_clock() {
        println!("supervisor: cannot start the clock; no timed restarts, backoffs or deadlines");
    }
    // Faults (and finished requests) of the restartable components arrive on `faults`;
    // the notification is bound to this thread, so its signals arrive there too.
    let faults: Option<Cap<Endpoint>> = caps::FAULT_ENDPOINT;
    let mut now_ms = 0u64;
    let mut left = count;
    // The guests whose VMMs said they have stopped (`caps::GONE_BITS`).
    let mut gone = 0u64;
    // The answer to the toolstack's last request, sent as the next receive starts.
    let mut answer: Option<(MessageInfo, [u64; 4])> = None;
    loop {
        let message = match (faults, answer.take()) {
            (Some(endpoint), Some((info, words))) => endpoint.reply_recv(info, words),
            (Some(endpoint), None) => endpoint.recv(),
            (None, _) => {
                done.wait().map(|badge| Message { badge, info: MessageInfo::default(), words: [0; 4] })
            }
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                println!("supervisor: waiting failed: {e}");
                return 1;
            }
        };
        // A fault message has a non-zero label; a signal has none.
        let label = message.info.label();
        if message.badge == cleave_ctl::supervisor::SUPERVISOR_BADGE {
            let (reply, words) =
                on_request(&mut restartable, &disposable[..count], label, message.words, now_ms);
            answer = Some((MessageInfo::new(reply, 0, 0, 4), words));
            continue;
        }
        if label != 0 {
            match restartable.iter_mut().flatten().find(|r| r.badge == message.badge) {
                Some(r) => on_fault(r, label, message.words, now_ms, gone),
                None => println!("supervisor: a fault message with unknown badge {:#x}", message.badge),
            }
            continue;
        }
        let bits = message.badge;
        gone |= bits & caps::GONE_BITS;
        if bits & CLOCK != 0 {
            now_ms = now_ms.saturating_add(1);
            for r in restartable.iter_mut().flatten() {
                on_tick(r, now_ms);
            }
            // The clock runs while something is left to time: a component to restart, or
            // a disposable one's deadline. Unacknowledged, its line stays masked, so an
            // idle machine has nothing to wait for and the run can end.
            let timing = restartable.iter().flatten().any(|r| !r.restarts.finished())
                || disposable[..count].iter().flatten().any(|d| d.deadline_ms != 0);
            if timing {
                let _ = caps::CLOCK.ack();
            } else {
                println!("supervisor: nothing is left to restart or time at {now_ms} ms; the clock stops");
            }
        }
        for entry in disposable[..count].iter_mut() {
            let Some(d) = *entry else { continue };
            let (name, deadline) = (d.component, d.deadline_ms);
            let signalled = bits & d.badge != 0;
            let Some(why) = disposal(signalled, deadline, now_ms) else { continue };
            if let Err(e) = Cap::<CNode>::revoke(cnode.slot(d.untyped.cptr(), DEPTH)) {
                println!("supervisor: cannot dispose of `{name}`: {e}");
                continue;
            }
            cleave_rt::audit!("dispose {name}#1");
            if why == Disposal::Late {
                println!(
                    "supervisor: `{name}` did not say it was done by its {deadline} ms deadline: revoked the untyped it was made from; it is gone"
                );
            } else {
                println!("supervisor: `{name}` is done: revoked the untyped it was made from; it is gone");
            }
            match d.untyped.retype(ObjectType::Frame4K, 0, cnode, 0, 0, SCRATCH_SLOT, 1) {
                Ok(()) => {
                    println!("supervisor: `{name}`'s memory is free again: a new frame was made from it");
                    let _ = Cap::<CNode>::delete(cnode.slot(SCRATCH_SLOT, DEPTH));
                }
                Err(e) => println!("supervisor: `{name}`'s memory cannot be reused: {e}"),
            }
            *entry = None;
            left -= 1;
            if left == 0 {
                println!("supervisor: every disposable component is gone");
            }
        }
    }
}
