//! The audit log and its two questions: which guests relied on a component between two
//! times, and what a guest relied on at a time. The log is append-only text, one event per
//! line, times in microseconds since boot, never decreasing:
//!
//! ```text
//! 0 boot
//! 120 start netback#1
//! 5000 serve alice netback#1
//! 90000 restart netback#1 netback#2
//! 200000 unserve alice netback#2
//! 250000 dispose builder#1
//! ```
//!
//! `start` begins an instance; `restart` ends one and begins its successor, which goes on
//! serving the guests the old one served; `dispose` ends one (destroyed), and so does `end`
//! (a restartable component's program ended: it is not restarted again); `serve`/`unserve` begin and
//! end a guest's reliance on an instance; `build GUEST builder#N` and `destroy GUEST
//! builder#N` record which instance of the Builder made or took back an on-request guest's
//! RAM, and a `destroy` ends the guest's reliance on its VMM (stopped before it).
//!
//! Components record events with `cleave_rt::audit!`: the loader (`boot`, a `start` per
//! component), the supervisor (`restart`, `end`, `dispose`), the Builder (`build`,
//! `destroy`), the backends and each guest's VMM (`serve`, `unserve`). The kernel keeps
//! them in its audit log, stamped with the time and the writer's thread name, and writes
//! each to the console as `audit: TIME EVENT`. `cargo xtask` collects those lines of a
//! run, in time order, into `audit.log` next to its serial log; `cleave ctl audit` reads
//! the kernel's own copy from the running system ([`MachineLog`]), whose writers it checks.
//! This module reads a log strictly: any malformed line or impossible event is an error
//! naming the line.

use std::collections::BTreeMap;

/// A component instance: `netback#2`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    /// The component.
    pub component: String,
    /// Which start of it (1 for the first).
    pub number: u64,
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.component, self.number)
    }
}

/// A guest's reliance on an instance over `[from, to)` (`to` = `None`: still at the end of
/// the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reliance {
    /// The guest.
    pub guest: String,
    /// The instance.
    pub instance: Instance,
    /// Start time (µs).
    pub from: u64,
    /// End time (µs), if it ended.
    pub to: Option<u64>,
}

impl Reliance {
    fn overlaps(&self, t1: u64, t2: u64) -> bool {
        self.from <= t2 && self.to.is_none_or(|to| to > t1)
    }
}

/// A read log: every reliance interval.
#[derive(Debug, Default)]
pub struct Log {
    /// In the order they began.
    pub reliances: Vec<Reliance>,
    /// Guests the Builder built (`true`) or destroyed (`false`), when, and which of its
    /// instances did.
    pub builds: Vec<(u64, String, bool, Instance)>,
}

fn instance(text: &str) -> Option<Instance> {
    let (component, number) = text.split_once('#')?;
    let number = number.parse().ok().filter(|n| *n > 0)?;
    (!component.is_empty()).then(|| Instance { component: component.to_string(), number })
}

/// Reads a log; errors name the line (1-based) and what is wrong.
pub fn read(text: &str) -> Result<Log, String> {
    let mut log = Log::default();
    let mut last = 0u64;
    // Live instances, and per live instance the guests it serves (index into reliances).
    let mut live: BTreeMap<Instance, Vec<usize>> = BTreeMap::new();
    let mut ever: BTreeMap<Instance, ()> = BTreeMap::new();
    let mut booted = false;
    for (n, line) in text.lines().enumerate() {
        let at = n + 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let err = |what: String| format!("line {at}: {what}: `{line}`");
        let time: u64 =
            words[0].parse().map_err(|_| err("the time is not a number of microseconds".into()))?;
        if time < last {
            return Err(err(format!("time goes backwards (after {last})")));
        }
        last = time;
        let inst = |i: usize| -> Result<Instance, String> {
            words.get(i).and_then(|w| instance(w)).ok_or_else(|| err("expected COMPONENT#N".into()))
        };
        let arity = |k: usize| {
            if words.len() == k { Ok(()) } else { Err(err(format!("`{}` takes {} words", words[1], k - 2))) }
        };
        match words.get(1).copied() {
            Some("boot") => {
                arity(2)?;
                if booted {
                    return Err(err("a second boot".into()));
                }
                booted = true;
            }
            _ if !booted => return Err(err("events before `boot`".into())),
            Some("start") => {
                arity(3)?;
                let i = inst(2)?;
                if ever.insert(i.clone(), ()).is_some() {
                    return Err(err(format!("{i} started before")));
                }
                live.insert(i, Vec::new());
            }
            Some("restart") => {
                arity(4)?;
                let (old, new) = (inst(2)?, inst(3)?);
                if old.component != new.component {
                    return Err(err("a restart keeps the component".into()));
                }
                let served = live.remove(&old).ok_or_else(|| err(format!("{old} is not running")))?;
                if ever.insert(new.clone(), ()).is_some() {
                    return Err(err(format!("{new} started before")));
                }
                let mut moved = Vec::new();
                for r in served {
                    let guest = log.reliances[r].guest.clone();
                    log.reliances[r].to = Some(time);
                    moved.push(log.reliances.len());
                    log.reliances.push(Reliance { guest, instance: new.clone(), from: time, to: None });
                }
                live.insert(new, moved);
            }
            Some("dispose" | "end") => {
                arity(3)?;
                let i = inst(2)?;
                let served = live.remove(&i).ok_or_else(|| err(format!("{i} is not running")))?;
                for r in served {
                    log.reliances[r].to = Some(time);
                }
            }
            Some(verb @ ("serve" | "unserve")) => {
                arity(4)?;
                let guest = words[2].to_string();
                let i = inst(3)?;
                let served = live.get_mut(&i).ok_or_else(|| err(format!("{i} is not running")))?;
                let current = served.iter().position(|&r| log.reliances[r].guest == guest);
                match (verb, current) {
                    ("serve", None) => {
                        served.push(log.reliances.len());
                        log.reliances.push(Reliance { guest, instance: i, from: time, to: None });
                    }
                    ("serve", Some(_)) => return Err(err(format!("{i} already serves {guest}"))),
                    (_, Some(k)) => {
                        let r = served.remove(k);
                        log.reliances[r].to = Some(time);
                    }
                    (_, None) => return Err(err(format!("{i} does not serve {guest}"))),
                }
            }
            Some(verb @ ("build" | "destroy")) => {
                arity(4)?;
                let i = inst(3)?;
                if !live.contains_key(&i) {
                    return Err(err(format!("{i} is not running")));
                }
                let guest = words[2].to_string();
                if verb == "destroy" {
                    // Its VMM was stopped before the Builder took its RAM: the guest no
                    // longer relies on it (a later `create` starts a new instance, which
                    // says `serve` again).
                    let vmm = format!("vmm-{guest}");
                    for (_, served) in live.iter_mut().filter(|(k, _)| k.component == vmm) {
                        served.retain(|&r| {
                            let ends = log.reliances[r].guest == guest;
                            if ends {
                                log.reliances[r].to = Some(time);
                            }
                            !ends
                        });
                    }
                }
                log.builds.push((time, guest, verb == "build", i));
            }
            _ => {
                return Err(err(
                    "unknown event (boot, start, restart, dispose, end, serve, unserve, build, destroy)"
                        .into(),
                ));
            }
        }
    }
    if !booted {
        return Err("the log has no `boot` line".into());
    }
    Ok(log)
}

/// The kernel's audit log as the toolstack sends it (`cleave ctl audit`): its lines, with
/// who wrote each, and whether it still holds everything since `boot`.
#[derive(Debug)]
pub struct MachineLog {
    /// The offset of its first byte and past its last, in all the kernel recorded.
    pub bytes: (u64, u64),
    /// How many of the oldest lines the kernel dropped to make room.
    pub dropped: u64,
    /// `TIME WRITER EVENT`, each.
    pub lines: Vec<String>,
}

impl MachineLog {
    /// Reads the body of the toolstack's reply: the header line
    /// (`cleave_ctl::AUDIT_HEADER`), then the lines.
    pub fn parse(body: &[String]) -> Result<Self, String> {
        let header = body.first().ok_or("the reply has no audit log")?;
        let bad = || format!("the audit log's header is not understood: `{header}`");
        let rest = header.strip_prefix(cleave_ctl::AUDIT_HEADER).ok_or_else(bad)?;
        let (range, dropped) =
            rest.trim().strip_prefix("bytes ").and_then(|r| r.split_once(", ")).ok_or_else(bad)?;
        let (first, end) = range.split_once("..").ok_or_else(bad)?;
        let number = |t: &str| t.parse::<u64>().map_err(|_| bad());
        let dropped = number(dropped.strip_suffix(" lines dropped").ok_or_else(bad)?)?;
        Ok(Self { bytes: (number(first)?, number(end)?), dropped, lines: body[1..].to_vec() })
    }

    /// The log in `cleave audit`'s format (`TIME EVENT`), having checked that each event
    /// was written by the component it speaks for, as the kernel stamped it: `boot` and
    /// each first `start` by the loader (the root task, whoever wrote `boot`), `restart`,
    /// `end` and `dispose` by the supervisor, and `serve`, `unserve`, `build` and `destroy`
    /// by the instance they name. An event in another's name is a forgery: an error that
    /// names the line.
    pub fn events(&self) -> Result<String, String> {
        let mut out = String::new();
        let mut loader: Option<&str> = None;
        for (n, line) in self.lines.iter().enumerate() {
            let err = |what: String| format!("line {} of the machine's log: {what}: `{line}`", n + 1);
            let mut words = line.splitn(3, ' ');
            let (Some(time), Some(writer), Some(event)) = (words.next(), words.next(), words.next()) else {
                return Err(err("expected TIME WRITER EVENT".into()));
            };
            let mut fields = event.split_whitespace();
            let verb = fields.next().unwrap_or("");
            let speaker = match verb {
                "boot" => {
                    loader = Some(writer);
                    None
                }
                "start" => Some(loader.ok_or_else(|| err("a `start` before `boot`".into()))?.to_string()),
                "restart" | "end" | "dispose" => Some("supervisor".to_string()),
                "serve" | "unserve" | "build" | "destroy" => match fields.nth(1).and_then(instance) {
                    Some(i) => Some(i.component),
                    None => return Err(err("expected GUEST COMPONENT#N".into())),
                },
                _ => None,
            };
            if let Some(speaker) = speaker.filter(|s| s != writer) {
                return Err(err(format!(
                    "written by `{writer}`, not by `{speaker}`: an event in another's name"
                )));
            }
            out.push_str(&format!("{time} {event}\n"));
        }
        Ok(out)
    }

    /// The log, read as `cleave audit` reads one, if the kernel still holds all of it
    /// (else the answer would miss what began before its oldest line).
    pub fn read(&self) -> Result<Log, String> {
        if self.dropped > 0 {
            return Err(format!(
                "the machine's audit log no longer holds its {} oldest lines (the kernel keeps the newest 256 KiB), so \
                 an answer would miss what began before them: ask `cleave audit` of the host's copy (`audit.log` \
                 next to the run's serial log)",
                self.dropped
            ));
        }
        read(&self.events()?)
    }
}

impl Log {
    /// Every reliance on an instance of `component` that overlaps `[t1, t2]`.
    pub fn relied_on(&self, component: &str, t1: u64, t2: u64) -> Vec<&Reliance> {
        self.reliances.iter().filter(|r| r.instance.component == component && r.overlaps(t1, t2)).collect()
    }

    /// The instances serving `guest` at time `t`, in name order.
    pub fn relied_at(&self, guest: &str, t: u64) -> Vec<&Instance> {
        let mut at: Vec<&Instance> = self
            .reliances
            .iter()
            .filter(|r| r.guest == guest && r.from <= t && r.to.is_none_or(|to| to > t))
            .map(|r| &r.instance)
            .collect();
        at.sort();
        at
    }
}

/// One line per reliance: `alice netback#1 5000..90000` (`..` open at the end).
pub fn describe(reliances: &[&Reliance]) -> String {
    reliances
        .iter()
        .map(|r| match r.to {
            Some(to) => format!("{} {} {}..{}\n", r.guest, r.instance, r.from, to),
            None => format!("{} {} {}..\n", r.guest, r.instance, r.from),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
0 boot
100 start netback#1
100 start xenstore-logic#1
5000 serve alice netback#1
6000 serve bob netback#1
6000 serve alice xenstore-logic#1
90000 restart netback#1 netback#2
120000 unserve bob netback#2
200000 restart xenstore-logic#1 xenstore-logic#2
250000 dispose netback#2
";

    #[test]
    fn who_relied_on_a_component_and_when() {
        let log = read(LOG).unwrap();
        // netback was bad between 10 ms and 20 ms: alice and bob relied on instance 1.
        let bad = log.relied_on("netback", 10_000, 20_000);
        assert_eq!(describe(&bad), "alice netback#1 5000..90000\nbob netback#1 6000..90000\n");
        // After its restart, only alice remained with it (bob left at 120 ms).
        let later = log.relied_on("netback", 130_000, 140_000);
        assert_eq!(describe(&later), "alice netback#2 90000..250000\n");
        assert!(log.relied_on("netback", 260_000, 300_000).is_empty(), "disposed at 250 ms");
        assert!(log.relied_on("builder", 0, u64::MAX).is_empty());
    }

    #[test]
    fn what_a_guest_relied_on_at_a_time() {
        let log = read(LOG).unwrap();
        let names = |v: Vec<&Instance>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(log.relied_at("alice", 7000)), ["netback#1", "xenstore-logic#1"]);
        assert_eq!(names(log.relied_at("alice", 95_000)), ["netback#2", "xenstore-logic#1"]);
        assert_eq!(names(log.relied_at("alice", 300_000)), ["xenstore-logic#2"]);
        assert_eq!(names(log.relied_at("bob", 130_000)), Vec::<String>::new());
        assert_eq!(names(log.relied_at("alice", 4999)), Vec::<String>::new());
    }

    #[test]
    fn the_builders_instances_are_recorded_with_what_they_built() {
        let log = read(
            "0 boot\n1 start builder#1\n2 build carol builder#1\n3 restart builder#1 builder#2\n4 destroy carol builder#2\n",
        )
        .unwrap();
        let b = |n| Instance { component: "builder".into(), number: n };
        assert_eq!(log.builds, [(2, "carol".into(), true, b(1)), (4, "carol".into(), false, b(2))]);
    }

    /// An on-request guest made, destroyed and made again: its VMM is restarted for each
    /// `create` and says `serve` each time; a destroy ends the guest's reliance on it (and
    /// only on it), so the next instance's `serve` is no repeat.
    #[test]
    fn a_destroyed_guest_no_longer_relies_on_its_vmm() {
        let log = read(
            "0 boot\n1 start builder#1\n1 start vmm-carol#1\n1 start blk#1\n2 serve carol blk#1\n\
             3 build carol builder#1\n4 restart vmm-carol#1 vmm-carol#2\n5 serve carol vmm-carol#2\n\
             6 destroy carol builder#1\n7 restart vmm-carol#2 vmm-carol#3\n8 serve carol vmm-carol#3\n",
        )
        .unwrap();
        let names = |v: Vec<&Instance>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(log.relied_at("carol", 5)), ["blk#1", "vmm-carol#2"]);
        assert_eq!(names(log.relied_at("carol", 6)), ["blk#1"]);
        assert_eq!(names(log.relied_at("carol", 8)), ["blk#1", "vmm-carol#3"]);
    }

    fn machine(lines: &[&str], dropped: u64) -> MachineLog {
        let mut body = vec![format!("{} bytes 0..100, {dropped} lines dropped", cleave_ctl::AUDIT_HEADER)];
        body.extend(lines.iter().map(|l| l.to_string()));
        MachineLog::parse(&body).unwrap()
    }

    #[test]
    fn the_machines_log_is_read_with_its_writers_checked() {
        let log = machine(
            &[
                "0 loader boot",
                "1 loader start blk#1",
                "1 loader start vmm-carol#1",
                "1 loader start builder#1",
                "2 blk serve carol blk#1",
                "3 supervisor restart blk#1 blk#2",
                "4 builder build carol builder#1",
            ],
            0,
        );
        assert_eq!((log.bytes, log.dropped), ((0, 100), 0));
        let read = log.read().unwrap();
        let names = |v: Vec<&Instance>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(read.relied_at("carol", 3)), ["blk#2"]);
        assert_eq!(read.builds.len(), 1);
    }

    /// A component that writes in another's name (a restart that would move a guest's
    /// reliance, a serve for another backend, a build) is caught by the kernel's stamp.
    #[test]
    fn an_event_in_anothers_name_is_a_forgery() {
        for (forged, message) in [
            ("2 blk restart blk#1 blk#2", "written by `blk`, not by `supervisor`"),
            ("2 vmm-carol serve carol blk#1", "written by `vmm-carol`, not by `blk`"),
            ("2 vmm-carol start other#1", "written by `vmm-carol`, not by `loader`"),
            ("2 blk build carol builder#1", "written by `blk`, not by `builder`"),
            ("2 blk", "expected TIME WRITER EVENT"),
            ("2 blk serve carol", "expected GUEST COMPONENT#N"),
        ] {
            let log = machine(&["0 loader boot", "1 loader start blk#1", forged], 0);
            let e = log.events().unwrap_err();
            assert!(e.contains(message) && e.contains("line 3"), "{forged}: {e}");
        }
    }

    #[test]
    fn a_log_that_lost_its_oldest_lines_answers_no_question() {
        let log = machine(&["9 supervisor restart blk#4 blk#5"], 3);
        let e = log.read().unwrap_err();
        assert!(e.contains("no longer holds its 3 oldest lines"), "{e}");
        for header in ["", "kernel audit log: bytes 0..x, 0 lines dropped", "kernel audit log: 0..1"] {
            assert!(MachineLog::parse(&[header.to_string()]).is_err(), "{header}");
        }
    }

    #[test]
    fn malformed_logs_are_refused_with_the_line() {
        for (text, message) in [
            ("", "no `boot`"),
            ("5 start a#1\n", "line 1: events before `boot`"),
            ("0 boot\n10 start a#1\n5 start b#1\n", "line 3: time goes backwards"),
            ("0 boot\nx start a#1\n", "line 2: the time is not"),
            ("0 boot\n1 start a\n", "line 2: expected COMPONENT#N"),
            ("0 boot\n1 start a#0\n", "line 2: expected COMPONENT#N"),
            ("0 boot\n1 start a#1\n2 start a#1\n", "line 3: a#1 started before"),
            ("0 boot\n1 restart a#1 a#2\n", "line 2: a#1 is not running"),
            ("0 boot\n1 start a#1\n2 restart a#1 b#2\n", "line 3: a restart keeps the component"),
            ("0 boot\n1 start a#1\n2 serve g a#1\n3 serve g a#1\n", "line 4: a#1 already serves g"),
            ("0 boot\n1 start a#1\n2 unserve g a#1\n", "line 3: a#1 does not serve g"),
            ("0 boot\n1 start a#1\n2 dispose a#1\n3 serve g a#1\n", "line 4: a#1 is not running"),
            (
                "0 boot\n1 start a#1\n2 restart a#1 a#2\n3 end a#2\n4 restart a#2 a#3\n",
                "line 5: a#2 is not running",
            ),
            ("0 boot\n1 start a#1\n2 end a#1\n3 end a#1\n", "line 4: a#1 is not running"),
            ("0 boot\n1 explode\n", "line 2: unknown event"),
            ("0 boot\n1 start a#1 extra\n", "line 2: `start` takes 1 words"),
            ("0 boot\n1 boot\n", "line 2: a second boot"),
            ("0 boot\n1 build carol builder#1\n", "line 2: builder#1 is not running"),
            ("0 boot\n1 start b#1\n2 destroy carol\n", "line 3: `destroy` takes 2 words"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(message), "{text:?}: {e}");
        }
    }
}
