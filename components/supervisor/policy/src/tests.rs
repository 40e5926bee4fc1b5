//! The policy against sequences of events: backoff, grace, deadlines, and hostile ones.

use super::*;

/// Crashes `r` at `now` and returns the backoff it gets.
fn crash(r: &mut Restarts, now: u64) -> u64 {
    match r.on_fault(Fault::Crash, now) {
        OnFault::Backoff { wait, due, .. } => {
            assert_eq!(due, now + wait);
            wait
        }
        other => panic!("a crash gave {other:?}"),
    }
}

/// Runs the clock from `from` until `r` is restarted; returns when.
fn restart_when_due(r: &mut Restarts, from: u64) -> u64 {
    for now in from..from + 10 * BACKOFF_MAX_MS {
        if let Some(restart) = r.on_tick(now, || panic!("a crashed component is not asked")) {
            assert_eq!(restart, Restart::AfterCrash);
            r.restarted(restart, now, true);
            return now;
        }
    }
    panic!("never restarted");
}

#[test]
fn backoff_doubles_while_it_keeps_crashing_and_stops_at_the_cap() {
    let mut r = Restarts::new(10_000);
    let mut now = 0;
    let mut waits = std::vec::Vec::new();
    for _ in 0..12 {
        let wait = crash(&mut r, now);
        waits.push(wait);
        now = restart_when_due(&mut r, now);
        assert_eq!(r.due(), None);
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 1000]);
    assert_eq!(r.instance(), 13);
}

#[test]
fn a_component_that_ran_long_enough_starts_its_backoff_afresh() {
    let mut r = Restarts::new(0);
    assert_eq!(crash(&mut r, 0), 10);
    let restarted = restart_when_due(&mut r, 0);
    assert_eq!(crash(&mut r, restarted + 1), 20);
    let restarted = restart_when_due(&mut r, restarted + 1);
    // Just short of stable: still doubling.
    assert_eq!(crash(&mut r, restarted + STABLE_MS - 1), 40);
    let restarted = restart_when_due(&mut r, restarted + STABLE_MS - 1);
    // Stable: back to the first backoff.
    assert_eq!(crash(&mut r, restarted + STABLE_MS), BACKOFF_FIRST_MS);
}

#[test]
fn a_crashed_component_is_not_restarted_before_it_is_due_and_stays_due_if_the_restart_fails() {
    let mut r = Restarts::new(50);
    let wait = crash(&mut r, 100);
    for now in 100..100 + wait {
        assert_eq!(r.on_tick(now, || true), None, "at {now}");
    }
    assert_eq!(r.on_tick(100 + wait, || true), Some(Restart::AfterCrash));
    r.restarted(Restart::AfterCrash, 100 + wait, false);
    assert_eq!(r.instance(), 1);
    assert_eq!(r.on_tick(101 + wait, || true), Some(Restart::AfterCrash));
}

#[test]
fn the_console_shows_the_first_crashes_then_powers_of_two() {
    let mut r = Restarts::new(0);
    let shown: std::vec::Vec<u64> = (1..=40u64)
        .filter(|_| matches!(r.on_fault(Fault::Crash, 0), OnFault::Backoff { show: true, .. }))
        .collect();
    assert_eq!(shown, [1, 2, 3, 4, 8, 16, 32]);
}

#[test]
fn a_timed_restart_waits_for_a_quiet_moment_then_is_forced_after_the_grace_period() {
    let mut r = Restarts::new(100);
    assert_eq!(r.on_tick(99, || panic!("not due: not asked")), None);
    // Due and waiting for a request: now.
    assert_eq!(r.on_tick(100, || true), Some(Restart::Timed));
    // Due and busy: not until the grace period is over.
    for now in 100..100 + GRACE_MS {
        assert_eq!(r.on_tick(now, || false), None, "at {now}");
    }
    assert_eq!(r.on_tick(100 + GRACE_MS, || false), Some(Restart::Forced));
    assert!(r.restarted(Restart::Forced, 120, true), "a forced restart is always shown");
    assert_eq!(r.instance(), 2);
    // The next period counts from the restart.
    assert_eq!(r.on_tick(219, || true), None);
    assert_eq!(r.on_tick(220, || true), Some(Restart::Timed));
}

#[test]
fn timed_restarts_are_shown_for_the_first_instances_only() {
    let mut r = Restarts::new(10);
    let shown: std::vec::Vec<bool> = (1..=6u64).map(|k| r.restarted(Restart::Timed, k * 10, true)).collect();
    assert_eq!(shown, [true, true, true, false, false, false]);
}

#[test]
fn a_per_request_component_is_rolled_back_after_each_request_and_never_restarted_on_a_timer() {
    let mut r = Restarts::new(0);
    assert_eq!(r.on_tick(1_000_000, || panic!("no period")), None);
    for k in 1..=6 {
        assert_eq!(r.on_fault(Fault::RequestDone, k), OnFault::Restart(Restart::RollBack));
        assert_eq!(r.restarted(Restart::RollBack, k, true), k <= SHOWN);
        assert_eq!(r.rollbacks(), k);
    }
    // A crash of a per-request component backs off like any other.
    assert!(matches!(r.on_fault(Fault::Crash, 7), OnFault::Backoff { wait: 10, .. }));
}

#[test]
fn a_finished_request_of_a_timed_component_counts_as_a_crash() {
    let mut r = Restarts::new(50);
    assert!(matches!(r.on_fault(Fault::RequestDone, 5), OnFault::Backoff { crash: 1, wait: 10, .. }));
}

#[test]
fn disposal_on_signal_or_at_the_deadline_only() {
    assert_eq!(disposal(true, 0, 0), Some(Disposal::Done));
    assert_eq!(disposal(true, 400, 10), Some(Disposal::Done));
    assert_eq!(disposal(true, 400, 500), Some(Disposal::Done));
    assert_eq!(disposal(false, 400, 399), None);
    assert_eq!(disposal(false, 400, 400), Some(Disposal::Late));
    assert_eq!(disposal(false, 400, u64::MAX), Some(Disposal::Late));
    // No deadline: never late.
    assert_eq!(disposal(false, 0, 0), None);
    assert_eq!(disposal(false, 0, u64::MAX), None);
}

#[test]
fn a_crash_storm_never_waits_longer_than_the_cap_nor_overflows() {
    let mut r = Restarts::new(100);
    for k in 0..100_000u64 {
        let wait = crash(&mut r, k % 7);
        assert!((BACKOFF_FIRST_MS..=BACKOFF_MAX_MS).contains(&wait));
    }
    assert_eq!(crash(&mut r, 3), BACKOFF_MAX_MS);
}

#[test]
fn time_going_backwards_neither_wraps_nor_restarts_early() {
    let mut r = Restarts::new(100);
    r.restarted(Restart::Timed, 1_000, true);
    // Earlier than its start: not a period elapsed (a wrapped difference would be huge).
    assert_eq!(r.on_tick(10, || panic!("not due: not asked")), None);
    // A crash "before" its start counts as a quick one.
    assert_eq!(crash(&mut r, 500), 10);
    assert_eq!(crash(&mut r, 400), 20);
    // Due at 420 by the later clock: not restarted at an earlier time.
    assert_eq!(r.on_tick(419, || true), None);
    assert_eq!(r.on_tick(420, || true), Some(Restart::AfterCrash));
}

#[test]
fn times_near_the_end_of_the_clock_saturate() {
    // (u64::MAX itself is ON_REQUEST: never timed, and a crash stops it.)
    let mut r = Restarts::new(u64::MAX - 1);
    // A crash at the very end is due at the very end, not at a wrapped early time.
    match r.on_fault(Fault::Crash, u64::MAX - 1) {
        OnFault::Backoff { due, .. } => assert_eq!(due, u64::MAX),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.on_tick(u64::MAX - 1, || true), None);
    assert_eq!(r.on_tick(u64::MAX, || true), Some(Restart::AfterCrash));
    r.restarted(Restart::AfterCrash, u64::MAX, true);
    // The longest period, the grace period past it: no overflow, no restart before it.
    assert_eq!(r.on_tick(u64::MAX, || false), None);
    let mut r = Restarts::new(u64::MAX - 5);
    assert_eq!(r.on_tick(u64::MAX - 6, || true), None);
    assert_eq!(r.on_tick(u64::MAX - 5, || false), None);
    assert_eq!(r.on_tick(u64::MAX, || false), Some(Restart::Forced));
    r.restarted(Restart::Forced, u64::MAX, true);
    assert_eq!(r.instance(), 2);
}

/// A program that ended is finished: no timed restart, no restart after a crash that was
/// already due, and later faults (a crash, a finished request, another end) change nothing.
#[test]
fn a_finished_component_is_never_restarted() {
    for period in [0, 200] {
        let mut r = Restarts::new(period);
        assert!(matches!(r.on_fault(Fault::Crash, 5), OnFault::Backoff { .. }));
        assert_eq!(r.on_fault(Fault::Exited, 6), OnFault::Finished);
        assert!(r.finished());
        assert_eq!(r.due(), None, "the pending restart after the crash is off");
        for now in [7, 15, 200, 1_000, u64::MAX] {
            assert_eq!(r.on_tick(now, || true), None);
            assert_eq!(r.on_tick(now, || false), None);
        }
        for fault in [Fault::Crash, Fault::RequestDone, Fault::Exited] {
            assert_eq!(r.on_fault(fault, 2_000), OnFault::Finished);
        }
        assert_eq!((r.instance(), r.due()), (1, None));
    }
}

/// A backend's end is verified only by its guests' VMMs: all of its guests gone (other
/// guests' bits change nothing), and never for a component that serves no guest.
#[test]
fn an_end_is_verified_only_when_every_guest_of_the_backend_is_gone() {
    let (alice, bob, carol) = (1u64 << 32, 1u64 << 33, 1u64 << 34);
    assert!(!end_verified(0, u64::MAX), "a component serving no guest never finishes");
    assert!(!end_verified(alice | bob, 0));
    assert!(!end_verified(alice | bob, alice | carol), "bob still runs");
    assert!(end_verified(alice | bob, alice | bob));
    assert!(end_verified(alice, alice | carol));
}

#[test]
fn an_operators_restart_starts_a_new_period_and_ends_a_backoff_but_not_an_end() {
    let mut r = Restarts::new(100);
    // Asked for mid-period: a new instance, and the next timed restart a period later.
    assert!(r.restarted(Restart::Operator, 60, true));
    assert_eq!((r.instance(), r.period_ms(), r.total_crashes()), (2, 100, 0));
    assert_eq!(r.on_tick(100, || true), None);
    assert_eq!(r.on_tick(160, || true), Some(Restart::Timed));
    // Asked for while a crash waits out its backoff: restarted now, nothing is due after.
    crash(&mut r, 200);
    r.restarted(Restart::Operator, 201, true);
    assert_eq!((r.due(), r.total_crashes(), r.instance()), (None, 1, 3));
    // Asked for again and again: each is one instance more, never a crash.
    for k in 0..5 {
        r.restarted(Restart::Operator, 202 + k, true);
    }
    assert_eq!((r.instance(), r.total_crashes()), (8, 1));
    // A failed one changes nothing.
    r.restarted(Restart::Operator, 300, false);
    assert_eq!(r.instance(), 8);
}

#[test]
fn an_on_request_component_runs_only_when_asked_and_a_crash_stops_it() {
    let mut r = Restarts::new(ON_REQUEST);
    // Never on a timer, however long.
    assert_eq!(r.on_tick(u64::MAX - 1, || true), None);
    // Asked: instance 2. A crash stops it (no backoff restart), counted.
    r.restarted(Restart::Operator, 10, true);
    assert_eq!(r.on_fault(Fault::Crash, 11), OnFault::Stopped);
    assert!(r.stopped() && r.due().is_none() && r.total_crashes() == 1);
    for now in 11..5000 {
        assert_eq!(r.on_tick(now, || true), None, "at {now}");
    }
    // Asked again: it runs again.
    r.restarted(Restart::Operator, 5000, true);
    assert!(!r.stopped() && r.instance() == 3);
}

#[test]
fn a_stopped_component_is_not_restarted_by_its_backoff() {
    let mut r = Restarts::new(100);
    crash(&mut r, 0);
    r.stop();
    for now in 0..5000 {
        assert_eq!(r.on_tick(now, || true), None, "at {now}");
    }
    r.restarted(Restart::Operator, 5000, true);
    assert_eq!(r.on_tick(5100, || true), Some(Restart::Timed));
}
