//! The supervisor's policy: when a restartable component is restarted and when a
//! disposable one is destroyed, given what happened and the time. Pure and `no_std`, so the
//! supervisor (`components/supervisor`) carries it out on Cleave and `cargo test` checks
//! it on the host.
//!
//! - A crash restarts the component after a backoff: [`BACKOFF_FIRST_MS`], doubling with
//!   each crash that comes within [`STABLE_MS`] of its start, up to [`BACKOFF_MAX_MS`]; a
//!   component that ran longer before crashing starts afresh. Until then it stays stopped,
//!   so a crash loop costs the other components nothing.
//! - A component restarted every period is restarted when it next waits for a request
//!   (no client's request is cut off), or regardless once it has stayed busy for
//!   [`GRACE_MS`] more.
//! - A component rolled back after every request is restarted as each request ends.
//! - A component whose program ended with status 0 (its `main` returned: it has no more
//!   work, say a backend whose guests are all gone) is finished: it is not restarted again, not on its
//!   clock and not after a crash.
//! - A disposable component is destroyed when it says it is done, or at its deadline.
//!
//! Times are milliseconds since the supervisor's clock started. Every sum and difference
//! saturates, so a clock that jumps backwards or reaches `u64::MAX` gives a late or early
//! restart, never a wrapped one.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// A crashed component waits this long before its first restart.
pub const BACKOFF_FIRST_MS: u64 = 10;
/// The period of a component started only when asked (an on-request guest's VMM): never
/// restarted on a timer, and after a crash it stays stopped until asked again.
pub const ON_REQUEST: u64 = u64::MAX;
/// The longest a crashed component waits.
pub const BACKOFF_MAX_MS: u64 = 1000;
/// A component that ran this long before crashing starts its backoff afresh.
pub const STABLE_MS: u64 = 2000;
/// A component due for its timed restart and still busy is restarted regardless after
/// this long.
pub const GRACE_MS: u64 = 20;
/// How many restarts of each kind per component the console shows (the audit log has all).
pub const SHOWN: u64 = 4;

/// Doublings after which the backoff stops growing (long past [`BACKOFF_MAX_MS`]).
const MAX_DOUBLINGS: u64 = 16;

/// What stopped a restartable component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// It finished a request (the kernel stops a per-request component at its next
    /// receive).
    RequestDone,
    /// Its program ended (`main` returned) with status 0: its work is done. (One that
    /// ended with a failure status is a crash.)
    Exited,
    /// Anything else: a crash.
    Crash,
}

/// Why the supervisor restarts a component now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// A per-request component finished a request: roll it back.
    RollBack,
    /// Its backoff after a crash is over.
    AfterCrash,
    /// Its period is over and it waits for a request.
    Timed,
    /// Its period and the grace period are over and it is still busy.
    Forced,
    /// The operator asked for it (`cleave ctl restart`, through the toolstack).
    Operator,
}

/// What to do about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFault {
    /// Restart it now (a finished request).
    Restart(Restart),
    /// Its program ended: it stays stopped for good.
    Finished,
    /// A component started only when asked crashed: it stays stopped until asked again.
    Stopped,
    /// It crashed: it stays stopped until `due`, `wait` ms from now.
    Backoff {
        /// Its crashes in all, this one included.
        crash: u64,
        /// How long it waits.
        wait: u64,
        /// When it is restarted.
        due: u64,
        /// Whether the console shows this crash (the first few, then powers of two).
        show: bool,
    },
}

/// One restartable component's restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarts {
    /// 0: rolled back after every request.
    period_ms: u64,
    /// When it last started.
    started: u64,
    /// Which instance runs (1 for the first).
    instance: u64,
    /// Crashes in a row, each soon after its start.
    crashes: u64,
    /// All its crashes.
    crashes_total: u64,
    /// A crashed component's restart time.
    due: Option<u64>,
    /// Requests after which it was rolled back.
    rollbacks: u64,
    /// Its program ended: never restarted again.
    finished: bool,
    /// Stopped until asked again (`stop`, or a crash of an on-request component): no
    /// timer and no backoff restarts it.
    stopped: bool,
}

impl Restarts {
    /// A component that started at time 0, restarted every `period_ms` (0: rolled back
    /// after every request instead).
    pub const fn new(period_ms: u64) -> Self {
        Self {
            period_ms,
            started: 0,
            instance: 1,
            crashes: 0,
            crashes_total: 0,
            due: None,
            rollbacks: 0,
            finished: false,
            // One started only when asked has not been asked yet.
            stopped: period_ms == ON_REQUEST,
        }
    }

    /// Which instance runs (1 for the first).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// How many requests it was rolled back after.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    /// Its crashes in all.
    pub fn total_crashes(&self) -> u64 {
        self.crashes_total
    }

    /// Its restart period in ms (0: rolled back after every request).
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Whether it is stopped until asked again.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Stopped until asked again: a pending backoff restart is dropped.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.due = None;
    }

    /// Whether its program ended (it is not restarted again).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// When a crashed component is restarted, if it is waiting for that.
    pub fn due(&self) -> Option<u64> {
        self.due
    }

    /// A fault at `now`. A finished request of a per-request component is a rollback; any
    /// other fault (a finished request of a timed one included) is a crash. An end of its
    /// program finishes it, and a finished component stays so whatever comes after.
    pub fn on_fault(&mut self, fault: Fault, now: u64) -> OnFault {
        if fault == Fault::Exited || self.finished {
            self.finished = true;
            self.due = None;
            return OnFault::Finished;
        }
        if fault == Fault::RequestDone && self.period_ms == 0 {
            return OnFault::Restart(Restart::RollBack);
        }
        if self.period_ms == ON_REQUEST {
            self.crashes_total = self.crashes_total.saturating_add(1);
            self.stop();
            return OnFault::Stopped;
        }
        let quick = now.saturating_sub(self.started) < STABLE_MS;
        self.crashes = if quick { self.crashes.saturating_add(1) } else { 1 };
        self.crashes_total = self.crashes_total.saturating_add(1);
        let wait = (BACKOFF_FIRST_MS << (self.crashes - 1).min(MAX_DOUBLINGS)).min(BACKOFF_MAX_MS);
        let due = now.saturating_add(wait);
        self.due = Some(due);
        let crash = self.crashes_total;
        OnFault::Backoff { crash, wait, due, show: crash <= SHOWN || crash.is_power_of_two() }
    }

    /// A clock tick at `now`: whether to restart it. `quiet` says whether it waits for a
    /// request now; it is asked only when a timed restart is due.
    pub fn on_tick(&self, now: u64, quiet: impl FnOnce() -> bool) -> Option<Restart> {
        if self.finished || self.stopped {
            return None;
        }
        if let Some(due) = self.due {
            return (now >= due).then_some(Restart::AfterCrash);
        }
        if self.period_ms == 0 {
            return None;
        }
        let running = now.saturating_sub(self.started);
        if running < self.period_ms {
            return None;
        }
        if quiet() {
            Some(Restart::Timed)
        } else if running >= self.period_ms.saturating_add(GRACE_MS) {
            Some(Restart::Forced)
        } else {
            None
        }
    }

    /// The supervisor carried out `restart` at `now` (`done`: the thread runs again; if
    /// not, a crashed component stays due and is tried again). Returns whether the console
    /// shows it.
    pub fn restarted(&mut self, restart: Restart, now: u64, done: bool) -> bool {
        if done {
            self.instance = self.instance.saturating_add(1);
            self.started = now;
            self.due = None;
            self.stopped = false;
        }
        match restart {
            Restart::RollBack => {
                self.rollbacks = self.rollbacks.saturating_add(1);
                self.rollbacks <= SHOWN
            }
            Restart::AfterCrash => self.crashes_total <= SHOWN,
            Restart::Timed => self.instance <= SHOWN,
            Restart::Forced | Restart::Operator => true,
        }
    }
}

/// Why a disposable component is destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposal {
    /// It said it was done.
    Done,
    /// It had not said so by its deadline.
    Late,
}

/// Whether to destroy a disposable component at `now`: it `signalled` that it is done, or
/// its deadline (`deadline_ms`; 0: none) has come.
pub fn disposal(signalled: bool, deadline_ms: u64, now: u64) -> Option<Disposal> {
    if signalled {
        Some(Disposal::Done)
    } else if deadline_ms != 0 && now >= deadline_ms {
        Some(Disposal::Late)
    } else {
        None
    }
}

/// Whether a component that ended its program with status 0 has finished for good: only a
/// guest I/O backend (`guests`, its guests' bits; 0 for any other component) all of whose
/// guests are `gone` (the bits their VMMs set once the guests stopped). Any other end is
/// taken for a crash, so that a compromised component cannot stop its restarts by ending.
pub fn end_verified(guests: u64, gone: u64) -> bool {
    guests != 0 && gone & guests == guests
}

#[cfg(test)]
mod tests;
