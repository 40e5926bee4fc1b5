//! Tests that drive a guest's console the way its user does: `cargo xtask run --system
//! FILE` with the guest's console on the terminal (`console = "com2"`), standard input and
//! output piped. A session is a list of steps, each a line to type and a text to wait for
//! in what the console prints after it; then the run must end by itself and print what
//! the test expects (its VMMs' last lines).

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One step of a console session.
#[derive(Clone, Debug)]
pub struct Step {
    /// What to type (a newline is added), or nothing (wait only).
    pub send: Option<String>,
    /// What the console must print after it (the typed text echoed does not count: see
    /// [`Session`]).
    pub expect: String,
    /// How long to wait for it.
    pub timeout: Duration,
}

impl Step {
    /// Types `line` and waits for `expect`.
    pub fn line(line: &str, expect: &str, seconds: u64) -> Self {
        Self { send: Some(line.into()), expect: expect.into(), timeout: Duration::from_secs(seconds) }
    }
    /// Waits for `expect` without typing.
    pub fn wait(expect: &str, seconds: u64) -> Self {
        Self { send: None, expect: expect.into(), timeout: Duration::from_secs(seconds) }
    }
}

/// A console session: a command to run, the steps, and what its output must hold once the
/// run has ended. Expected texts are best written so that the typed line cannot match
/// them (`echo KREL=$(uname -r)` waits for `KREL=6.1`: the echo of the typed line shows
/// `KREL=$(`).
#[derive(Clone, Debug)]
pub struct Session {
    /// `cargo xtask` arguments.
    pub args: Vec<String>,
    /// The steps.
    pub steps: Vec<Step>,
    /// Texts the whole output must hold after the run ended (in any order).
    pub at_end: Vec<String>,
    /// How long the run may take to end after the last step.
    pub end_timeout: Duration,
}

/// How a session went: `Err` says which step failed and why; the output is returned either
/// way for the log.
pub fn run(session: &Session) -> (Result<Duration, String>, String) {
    let output = Arc::new(Mutex::new(String::new()));
    let result = drive(session, &output);
    let text = output.lock().map(|o| o.clone()).unwrap_or_default();
    (result, text)
}

fn drive(session: &Session, output: &Arc<Mutex<String>>) -> Result<Duration, String> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(&session.args)
        .current_dir(crate::workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start cargo xtask: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let sink = Arc::clone(output);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut o) = sink.lock() {
                o.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            }
        }
    });
    let seen = || output.lock().map(|o| o.len()).unwrap_or(0);
    let holds = |from: usize, text: &str| {
        output.lock().map(|o| o[from.min(o.len())..].contains(text)).unwrap_or(false)
    };
    let mut prompt_at = None;
    for (i, step) in session.steps.iter().enumerate() {
        let from = seen();
        if let Some(line) = &step.send
            && stdin.write_all(format!("{line}\n").as_bytes()).and_then(|()| stdin.flush()).is_err()
        {
            let _ = child.kill();
            return Err(format!("step {i}: the run's console closed before `{line}` could be typed"));
        }
        let deadline = Instant::now() + step.timeout;
        while !holds(from, &step.expect) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "step {i} ({}): `{}` did not appear within {} s",
                    step.send.as_deref().unwrap_or("waiting"),
                    step.expect,
                    step.timeout.as_secs()
                ));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("step {i}: the run ended ({status}) before `{}` appeared", step.expect));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        prompt_at.get_or_insert(started.elapsed());
    }
    drop(stdin);
    let deadline = Instant::now() + session.end_timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the run did not end within {} s of the last step",
                session.end_timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    if let Some(mut err) = child.stderr.take() {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        if let Ok(mut o) = output.lock() {
            o.push_str(&text);
        }
    }
    if !status.success() {
        return Err(format!("the run ended with {status}"));
    }
    let text = output.lock().map(|o| o.clone()).unwrap_or_default();
    if let Some(missing) = session.at_end.iter().find(|t| !text.contains(t.as_str())) {
        return Err(format!("the run's output lacks `{missing}`"));
    }
    prompt_at.context("no step").map_err(|e| e.to_string())
}
