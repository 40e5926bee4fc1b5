//! Deciding whether an emulator run did what was expected, from its exit status and serial
//! output. Pure, so that its rules are tested on the host.

use cleave_abi::debug::{EXIT_FAILURE, EXIT_IDLE, EXIT_SUCCESS, qemu_status};

/// Which emulator ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// QEMU with TCG; ends through `isa-debug-exit`.
    Qemu,
    /// Bochs; ends with 0 through its magic breakpoint and `quit`, 1 through its shutdown
    /// port, a triple fault or a panic.
    Bochs,
}

/// How the kernel is expected to end the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The test program exited with status 0.
    Success,
    /// A kernel failure (exception, panic, refused boot) or a failed test program.
    Failure,
    /// The kernel stopped with nothing left to run (every thread stopped by a fault).
    Idle,
}

/// How the emulator process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by a signal.
    Signalled,
    /// It ran past the timeout and was killed.
    TimedOut,
    /// The user ended it (Ctrl-A X at a guest's console).
    Quit,
}

/// What a run must show to pass.
#[derive(Clone, Copy, Debug)]
pub struct Expectation<'a> {
    /// How it must end.
    pub outcome: Outcome,
    /// The test program judges itself ([`judge_cases`]): the run must show its plan, as
    /// many passed cases as planned, each named once, and its final verdict. The program
    /// alone names its cases; the patterns below are left for what it cannot judge (the
    /// kernel's, the loader's and the supervisor's own reports).
    pub judges_itself: bool,
    /// Texts that must appear in the serial output, each after the end of the previous one
    /// (on the same line or a later one).
    pub patterns: &'a [&'a str],
    /// Texts that must appear somewhere in the serial output, in any order: the reports of
    /// threads whose timing relative to the others is not fixed.
    pub anywhere: &'a [&'a str],
}

/// The exit status the emulator reports for `outcome`.
pub fn expected_status(emulator: Emulator, outcome: Outcome) -> i32 {
    match (emulator, outcome) {
        (Emulator::Qemu, Outcome::Success) => qemu_status(EXIT_SUCCESS),
        (Emulator::Qemu, Outcome::Failure) => qemu_status(EXIT_FAILURE),
        (Emulator::Qemu, Outcome::Idle) => qemu_status(EXIT_IDLE),
        (Emulator::Bochs, Outcome::Success) => 0,
        (Emulator::Bochs, Outcome::Failure | Outcome::Idle) => 1,
    }
}

/// What an exit status means.
pub fn describe_status(emulator: Emulator, status: i32) -> &'static str {
    match emulator {
        Emulator::Qemu => match status {
            s if s == qemu_status(EXIT_SUCCESS) => "kernel reported success",
            s if s == qemu_status(EXIT_FAILURE) => "kernel reported failure",
            s if s == qemu_status(EXIT_IDLE) => "kernel stopped with nothing to run",
            0 => "the machine reset (triple fault with -no-reboot?)",
            1 => "QEMU itself failed",
            _ => "unknown status",
        },
        Emulator::Bochs => match status {
            0 => "magic breakpoint: kernel reported success",
            1 => "shutdown port, triple fault or Bochs panic",
            _ => "unknown status",
        },
    }
}

/// Judges a run; `Err` says why it failed.
pub fn judge(
    emulator: Emulator,
    expect: &Expectation<'_>,
    ending: Ending,
    serial: &str,
) -> Result<(), String> {
    let status = match ending {
        Ending::TimedOut => return Err("timed out (no exit before the deadline)".into()),
        Ending::Signalled => return Err("the emulator was killed by a signal".into()),
        Ending::Quit => return Err("the user ended the run".into()),
        Ending::Exited(status) => status,
    };
    let want = expected_status(emulator, expect.outcome);
    if status != want {
        return Err(format!(
            "exit status {status} ({}), expected {want} ({})",
            describe_status(emulator, status),
            describe_status(emulator, want)
        ));
    }
    if expect.outcome != Outcome::Failure
        && let Some(line) = serial.lines().find(|l| l.contains("TEST FAIL"))
    {
        return Err(format!("the serial output reports a failure: {}", line.trim()));
    }
    if expect.judges_itself {
        judge_cases(serial)?;
    }
    if let Some(missing) = expect.anywhere.iter().find(|p| !serial.contains(**p)) {
        return Err(format!("expected serial output `{missing}` not found"));
    }
    let mut rest = serial;
    let mut previous: Option<&str> = None;
    for pattern in expect.patterns {
        let Some(at) = rest.find(pattern) else {
            return Err(match previous {
                None => format!("expected serial output `{pattern}` not found"),
                Some(p) => format!("expected serial output `{pattern}` not found after `{p}`"),
            });
        };
        rest = &rest[at + pattern.len()..];
        previous = Some(pattern);
    }
    Ok(())
}

/// The line a self-judging program opens with: how many cases it will run.
const PLAN: &str = "TEST PLAN ";
/// A passed case (`TEST PASS name`) or, followed by `(`, the final verdict.
const PASS: &str = "TEST PASS ";

/// The final verdict of a program whose `cases` all passed: `TEST PASS (14 cases)`.
pub fn final_verdict(cases: usize) -> String {
    format!("TEST PASS ({cases} case{})", if cases == 1 { "" } else { "s" })
}

/// Checks a self-judging program's report, in the manner of TAP: exactly one
/// `TEST PLAN n` line; after it exactly n `TEST PASS name` lines, no name twice; after
/// the last of them the final verdict `TEST PASS (n cases)`. (A `TEST FAIL` line anywhere
/// fails the run before this is asked.) So a program that skips a case, or stops before
/// its verdict, fails although it printed no failure.
pub fn judge_cases(serial: &str) -> Result<(), String> {
    let lines: Vec<&str> = serial.lines().map(str::trim).collect();
    let plans: Vec<(usize, &str)> =
        lines.iter().enumerate().filter_map(|(i, l)| Some((i, l.strip_prefix(PLAN)?))).collect();
    let (start, planned) = match plans.as_slice() {
        [] => return Err("the test program printed no `TEST PLAN n`".into()),
        [(at, n)] => match n.parse::<usize>() {
            Ok(n) => (*at, n),
            Err(_) => return Err(format!("unreadable plan `{}`", lines[*at])),
        },
        [..] => return Err(format!("{} `TEST PLAN` lines; a program plans once", plans.len())),
    };
    let mut names: Vec<&str> = Vec::new();
    let mut verdict = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix(PASS) else { continue };
        if rest.starts_with('(') {
            if let Some((_, v)) = verdict {
                return Err(format!("two final verdicts: `{v}`, then `{line}`"));
            }
            verdict = Some((i, *line));
            continue;
        }
        if i < start {
            return Err(format!("case `{rest}` passed before the plan"));
        }
        if let Some((_, v)) = verdict {
            return Err(format!("case `{rest}` passed after the final verdict `{v}`"));
        }
        if names.contains(&rest) {
            return Err(format!("case `{rest}` passed twice: a case is named once"));
        }
        names.push(rest);
    }
    if names.len() != planned {
        return Err(format!("the plan has {planned} cases, but {} passed", names.len()));
    }
    let want = final_verdict(planned);
    match verdict {
        None => Err(format!("no final verdict `{want}`")),
        Some((_, v)) if v != want => Err(format!("final verdict `{v}`, expected `{want}`")),
        Some((i, _)) if i < start => Err("the final verdict came before the plan".into()),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Expectation<'static> = Expectation {
        outcome: Outcome::Success,
        judges_itself: false,
        anywhere: &[],
        patterns: &["hello", "TEST PASS"],
    };

    #[test]
    fn passes_on_status_and_patterns_in_order() {
        let serial = "boot\nhello there\nTEST PASS\n";
        assert_eq!(judge(Emulator::Qemu, &PASS, Ending::Exited(67), serial), Ok(()));
        assert_eq!(judge(Emulator::Bochs, &PASS, Ending::Exited(0), serial), Ok(()));
    }

    #[test]
    fn fails_on_wrong_status_with_meaning() {
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(0), "hello\nTEST PASS").unwrap_err();
        assert!(err.contains("exit status 0 (the machine reset"), "{err}");
        assert!(err.contains("expected 67 (kernel reported success)"), "{err}");
        let err = judge(Emulator::Bochs, &PASS, Ending::Exited(1), "").unwrap_err();
        assert!(err.contains("shutdown port"), "{err}");
    }

    #[test]
    fn fails_on_timeout_and_signal() {
        assert!(judge(Emulator::Qemu, &PASS, Ending::TimedOut, "").unwrap_err().contains("timed out"));
        assert!(judge(Emulator::Qemu, &PASS, Ending::Signalled, "").unwrap_err().contains("signal"));
    }

    #[test]
    fn fails_on_missing_or_misordered_patterns() {
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(67), "TEST PASS\nhello\n").unwrap_err();
        assert_eq!(err, "expected serial output `TEST PASS` not found after `hello`");
        let same_line = Expectation {
            outcome: Outcome::Success,
            judges_itself: false,
            anywhere: &[],
            patterns: &["a", "b"],
        };
        assert_eq!(judge(Emulator::Qemu, &same_line, Ending::Exited(67), "x a y b"), Ok(()));
        assert!(judge(Emulator::Qemu, &same_line, Ending::Exited(67), "x b y a").is_err());
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(67), "nothing").unwrap_err();
        assert_eq!(err, "expected serial output `hello` not found");
        // `anywhere` texts may come in any order, but must all come.
        let anywhere = Expectation {
            outcome: Outcome::Success,
            judges_itself: false,
            anywhere: &["b", "a"],
            patterns: &[],
        };
        assert_eq!(judge(Emulator::Qemu, &anywhere, Ending::Exited(67), "a\nb\n"), Ok(()));
        let err = judge(Emulator::Qemu, &anywhere, Ending::Exited(67), "a\n").unwrap_err();
        assert_eq!(err, "expected serial output `b` not found");
    }

    #[test]
    fn a_fail_marker_fails_unless_failure_is_expected() {
        let serial = "hello\nTEST FAIL: something\nTEST PASS\n";
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(67), serial).unwrap_err();
        assert!(err.contains("TEST FAIL: something"), "{err}");
        let expect_failure = Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &["TEST FAIL"],
        };
        assert_eq!(judge(Emulator::Qemu, &expect_failure, Ending::Exited(69), serial), Ok(()));
        let idle = Expectation { outcome: Outcome::Idle, judges_itself: false, anywhere: &[], patterns: &[] };
        assert!(judge(Emulator::Qemu, &idle, Ending::Exited(71), serial).is_err());
    }

    /// A self-judging program's run: plan, cases, verdict.
    const SELF: Expectation<'static> =
        Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] };
    const GOOD: &str = "kernel: starting\r\nTEST PLAN 3\r\nTEST PASS a\r\nnoise\r\nTEST PASS b c\r\nTEST PASS d\r\nTEST PASS (3 cases)\r\n";

    #[test]
    fn a_self_judging_run_passes_with_its_plan_cases_and_verdict() {
        assert_eq!(judge(Emulator::Qemu, &SELF, Ending::Exited(67), GOOD), Ok(()));
        let one = "TEST PLAN 1\nTEST PASS ring-3\nTEST PASS (1 case)\n";
        assert_eq!(judge(Emulator::Bochs, &SELF, Ending::Exited(0), one), Ok(()));
        assert_eq!(final_verdict(14), "TEST PASS (14 cases)");
    }

    #[test]
    fn a_fail_line_anywhere_fails_a_self_judging_run() {
        let serial = GOOD.replace("noise", "TEST FAIL e: wrong answer");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "the serial output reports a failure: TEST FAIL e: wrong answer");
        // Even one printed after the verdict (by another thread, say).
        let serial = format!("{GOOD}TEST FAIL late\n");
        assert!(judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).is_err());
    }

    #[test]
    fn a_skipped_case_fails_although_nothing_failed() {
        let serial = GOOD.replace("TEST PASS b c\r\n", "");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "the plan has 3 cases, but 2 passed");
        // One too many is as wrong as one too few.
        let serial = GOOD.replace("noise", "TEST PASS extra");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "the plan has 3 cases, but 4 passed");
    }

    #[test]
    fn a_missing_or_wrong_verdict_fails() {
        let serial = GOOD.replace("TEST PASS (3 cases)\r\n", "");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "no final verdict `TEST PASS (3 cases)`");
        let serial = GOOD.replace("(3 cases)", "(2 cases)");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "final verdict `TEST PASS (2 cases)`, expected `TEST PASS (3 cases)`");
        // A bare `TEST PASS` is no verdict of a planned run.
        let serial = GOOD.replace("TEST PASS (3 cases)", "TEST PASS");
        assert!(judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).is_err());
        let serial = format!("{GOOD}TEST PASS (3 cases)\n");
        assert!(
            judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial)
                .unwrap_err()
                .contains("two final verdicts")
        );
    }

    #[test]
    fn a_case_named_twice_fails() {
        let serial = GOOD.replace("TEST PASS d", "TEST PASS a");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "case `a` passed twice: a case is named once");
    }

    #[test]
    fn the_plan_comes_once_and_first() {
        let serial = GOOD.replace("TEST PLAN 3\r\n", "");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "the test program printed no `TEST PLAN n`");
        let serial = GOOD.replace("noise", "TEST PLAN 3");
        assert!(
            judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err().contains("plans once")
        );
        let serial = format!("TEST PASS early\n{GOOD}");
        let err = judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial).unwrap_err();
        assert_eq!(err, "case `early` passed before the plan");
        let serial = GOOD.replace("TEST PLAN 3", "TEST PLAN three");
        assert!(
            judge(Emulator::Qemu, &SELF, Ending::Exited(67), &serial)
                .unwrap_err()
                .contains("unreadable plan")
        );
        // A program that does not judge itself is not asked for a plan.
        assert_eq!(judge(Emulator::Qemu, &PASS, Ending::Exited(67), "hello\nTEST PASS\n"), Ok(()));
    }
}
