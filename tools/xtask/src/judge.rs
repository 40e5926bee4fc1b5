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
}

/// What a run must show to pass.
#[derive(Clone, Copy, Debug)]
pub struct Expectation<'a> {
    /// How it must end.
    pub outcome: Outcome,
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Expectation<'static> =
        Expectation { outcome: Outcome::Success, anywhere: &[], patterns: &["hello", "TEST PASS"] };

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
        let same_line = Expectation { outcome: Outcome::Success, anywhere: &[], patterns: &["a", "b"] };
        assert_eq!(judge(Emulator::Qemu, &same_line, Ending::Exited(67), "x a y b"), Ok(()));
        assert!(judge(Emulator::Qemu, &same_line, Ending::Exited(67), "x b y a").is_err());
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(67), "nothing").unwrap_err();
        assert_eq!(err, "expected serial output `hello` not found");
        // `anywhere` texts may come in any order, but must all come.
        let anywhere = Expectation { outcome: Outcome::Success, anywhere: &["b", "a"], patterns: &[] };
        assert_eq!(judge(Emulator::Qemu, &anywhere, Ending::Exited(67), "a\nb\n"), Ok(()));
        let err = judge(Emulator::Qemu, &anywhere, Ending::Exited(67), "a\n").unwrap_err();
        assert_eq!(err, "expected serial output `b` not found");
    }

    #[test]
    fn a_fail_marker_fails_unless_failure_is_expected() {
        let serial = "hello\nTEST FAIL: something\nTEST PASS\n";
        let err = judge(Emulator::Qemu, &PASS, Ending::Exited(67), serial).unwrap_err();
        assert!(err.contains("TEST FAIL: something"), "{err}");
        let expect_failure =
            Expectation { outcome: Outcome::Failure, anywhere: &[], patterns: &["TEST FAIL"] };
        assert_eq!(judge(Emulator::Qemu, &expect_failure, Ending::Exited(69), serial), Ok(()));
        let idle = Expectation { outcome: Outcome::Idle, anywhere: &[], patterns: &[] };
        assert!(judge(Emulator::Qemu, &idle, Ending::Exited(71), serial).is_err());
    }
}
