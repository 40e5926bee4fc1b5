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
//! each to the console as `audit: TIME WRITER EVENT`. `cargo xtask` collects those lines
//! of a run, in time order, into `audit.log` next to its serial log; `cleave ctl audit`
//! reads the kernel's own copy from the running system ([`MachineLog`]). Both are read by
//! [`read_stamped`], which checks each event against its writer and refuses (and lists)
//! the lines that fail; [`read`] reads the plain format above strictly: any malformed line
//! or impossible event is an error naming the line.

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

/// What a reader knows so far.
#[derive(Default)]
struct Reader {
    log: Log,
    last: u64,
    booted: bool,
    /// Live instances, and per live instance the guests it serves (index into reliances).
    live: BTreeMap<Instance, Vec<usize>>,
    ever: BTreeMap<Instance, ()>,
}

impl Reader {
    /// Takes one event (`words`: its time, then the event's words). Nothing changes unless
    /// the event is possible: an error leaves the reader as it was.
    fn event(&mut self, words: &[&str]) -> Result<(), String> {
        let time: u64 =
            words[0].parse().map_err(|_| "the time is not a number of microseconds".to_string())?;
        if time < self.last {
            return Err(format!("time goes backwards (after {})", self.last));
        }
        let inst = |i: usize| -> Result<Instance, String> {
            words.get(i).and_then(|w| instance(w)).ok_or_else(|| "expected COMPONENT#N".to_string())
        };
        let verb = words.get(1).copied().unwrap_or("");
        let arity =
            |k: usize| if words.len() == k { Ok(()) } else { Err(format!("`{verb}` takes {} words", k - 2)) };
        match verb {
            "boot" => {
                arity(2)?;
                if self.booted {
                    return Err("a second boot".into());
                }
                self.booted = true;
            }
            _ if !self.booted => return Err("events before `boot`".into()),
            "start" => {
                arity(3)?;
                let i = inst(2)?;
                if self.ever.contains_key(&i) {
                    return Err(format!("{i} started before"));
                }
                self.ever.insert(i.clone(), ());
                self.live.insert(i, Vec::new());
            }
            "restart" => {
                arity(4)?;
                let (old, new) = (inst(2)?, inst(3)?);
                if old.component != new.component {
                    return Err("a restart keeps the component".into());
                }
                if !self.live.contains_key(&old) {
                    return Err(format!("{old} is not running"));
                }
                if self.ever.contains_key(&new) {
                    return Err(format!("{new} started before"));
                }
                let served = self.live.remove(&old).unwrap_or_default();
                self.ever.insert(new.clone(), ());
                let mut moved = Vec::new();
                for r in served {
                    let guest = self.log.reliances[r].guest.clone();
                    self.log.reliances[r].to = Some(time);
                    moved.push(self.log.reliances.len());
                    self.log.reliances.push(Reliance { guest, instance: new.clone(), from: time, to: None });
                }
                self.live.insert(new, moved);
            }
            "dispose" | "end" => {
                arity(3)?;
                let i = inst(2)?;
                let served = self.live.remove(&i).ok_or_else(|| format!("{i} is not running"))?;
                for r in served {
                    self.log.reliances[r].to = Some(time);
                }
            }
            "serve" | "unserve" => {
                arity(4)?;
                let guest = words[2].to_string();
                let i = inst(3)?;
                let served = self.live.get_mut(&i).ok_or_else(|| format!("{i} is not running"))?;
                let current = served.iter().position(|&r| self.log.reliances[r].guest == guest);
                match (verb, current) {
                    ("serve", None) => {
                        served.push(self.log.reliances.len());
                        self.log.reliances.push(Reliance { guest, instance: i, from: time, to: None });
                    }
                    ("serve", Some(_)) => return Err(format!("{i} already serves {guest}")),
                    (_, Some(k)) => {
                        let r = served.remove(k);
                        self.log.reliances[r].to = Some(time);
                    }
                    (_, None) => return Err(format!("{i} does not serve {guest}")),
                }
            }
            "build" | "destroy" => {
                arity(4)?;
                let i = inst(3)?;
                if !self.live.contains_key(&i) {
                    return Err(format!("{i} is not running"));
                }
                let guest = words[2].to_string();
                if verb == "destroy" {
                    // Its VMM was stopped before the Builder took its RAM: the guest no
                    // longer relies on it (a later `create` starts a new instance, which
                    // says `serve` again).
                    let vmm = format!("vmm-{guest}");
                    let reliances = &mut self.log.reliances;
                    for (_, served) in self.live.iter_mut().filter(|(k, _)| k.component == vmm) {
                        served.retain(|&r| {
                            let ends = reliances[r].guest == guest;
                            if ends {
                                reliances[r].to = Some(time);
                            }
                            !ends
                        });
                    }
                }
                self.log.builds.push((time, guest, verb == "build", i));
            }
            _ => {
                return Err(
                    "unknown event (boot, start, restart, dispose, end, serve, unserve, build, destroy)"
                        .into(),
                );
            }
        }
        self.last = time;
        Ok(())
    }

    fn finish(self) -> Result<Log, String> {
        if !self.booted {
            return Err("the log has no `boot` line".into());
        }
        Ok(self.log)
    }
}

/// Reads a log in the plain format (`TIME EVENT`, as the module's example); errors name
/// the line (1-based) and what is wrong.
pub fn read(text: &str) -> Result<Log, String> {
    let mut reader = Reader::default();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.is_empty() {
            reader.event(&words).map_err(|what| format!("line {}: {what}: `{line}`", n + 1))?;
        }
    }
    reader.finish()
}

/// The Builder's component name: `cleave check` holds the component that runs the
/// Builder's program to it, so that the log's `build` and `destroy` events can be taken
/// only from it.
pub const BUILDER: &str = "builder";

/// A log of stamped lines, read.
#[derive(Debug)]
pub struct Checked {
    /// What the accepted lines say.
    pub log: Log,
    /// The lines refused, each `line N: why: `LINE``: in another's name, malformed, or
    /// impossible after the lines before it.
    pub refused: Vec<String>,
}

/// Reads a log of stamped lines, `TIME WRITER EVENT`, as the kernel keeps them (`cleave
/// ctl audit` reads its copy) and writes them to the console as `audit: TIME WRITER
/// EVENT` (`cargo xtask`'s `audit.log` holds those, without the prefix). The kernel
/// stamped the time and the writer, so each event is checked against who wrote it:
/// `boot` must be the first line, and its writer is the loader (the root task), which
/// alone writes the first `start`s; `restart`, `end` and `dispose` come from the
/// supervisor; `serve` and `unserve` from the instance they name; `build` and `destroy`
/// from the Builder ([`BUILDER`]). A line that fails (another's name, malformed,
/// impossible) is refused and listed, and the rest is read without it: a component that
/// writes nonsense in its own name spoils only its own lines.
pub fn read_stamped(text: &str) -> Result<Checked, String> {
    let mut reader = Reader::default();
    let mut refused = Vec::new();
    let mut loader: Option<&str> = None;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if n == 0 {
            if words.get(2) != Some(&"boot") {
                return Err(format!("line 1: the log does not begin with `boot`: `{line}`"));
            }
            loader = words.get(1).copied();
        }
        let check = || -> Result<Vec<&str>, String> {
            let &[time, writer, verb, ..] = words.as_slice() else {
                return Err("expected TIME WRITER EVENT".into());
            };
            let speaker = match verb {
                "boot" if n == 0 => None,
                "boot" => return Err(format!("a second boot, by `{writer}`")),
                "start" => loader.map(str::to_string),
                "restart" | "end" | "dispose" => Some("supervisor".to_string()),
                "serve" | "unserve" => Some(
                    words.get(4).and_then(|w| instance(w)).ok_or("expected GUEST COMPONENT#N")?.component,
                ),
                "build" | "destroy" => {
                    let i = words.get(4).and_then(|w| instance(w)).ok_or("expected GUEST COMPONENT#N")?;
                    if i.component != BUILDER {
                        return Err(format!("only the Builder (`{BUILDER}`) builds and destroys guests"));
                    }
                    Some(i.component)
                }
                _ => None,
            };
            if let Some(speaker) = speaker.filter(|s| s != writer) {
                return Err(format!("written by `{writer}`, not by `{speaker}`: an event in another's name"));
            }
            let mut event = std::vec![time];
            event.extend_from_slice(&words[2..]);
            Ok(event)
        };
        if let Err(why) = check().and_then(|event| reader.event(&event)) {
            refused.push(format!("line {}: {why}: `{line}`", n + 1));
        }
    }
    Ok(Checked { log: reader.finish()?, refused })
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
        let log = Self { bytes: (number(first)?, number(end)?), dropped, lines: body[1..].to_vec() };
        // Every byte the header promises arrived (each line and its newline).
        let arrived: u64 = log.lines.iter().map(|l| l.len() as u64 + 1).sum();
        if log.bytes.1.checked_sub(log.bytes.0) != Some(arrived) {
            return Err(format!(
                "the audit log's header promises bytes {}..{}, but {arrived} arrived",
                log.bytes.0, log.bytes.1
            ));
        }
        Ok(log)
    }

    /// The log, read as [`read_stamped`] reads one, if the kernel still holds all of it
    /// (else the answer would miss what began before its oldest line).
    pub fn read(&self) -> Result<Checked, String> {
        if self.dropped > 0 || self.bytes.0 > 0 {
            return Err(format!(
                "the machine's audit log no longer holds its {} oldest lines (the kernel keeps the newest 256 KiB), so \
                 an answer would miss what began before them: ask `cleave audit` of the host's copy (`audit.log` \
                 next to the run's serial log)",
                self.dropped
            ));
        }
        read_stamped(&self.lines.join("\n"))
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
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        let first = if dropped > 0 { 1000 } else { 0 };
        let mut body = vec![format!(
            "{} bytes {first}..{}, {dropped} lines dropped",
            cleave_ctl::AUDIT_HEADER,
            first + bytes
        )];
        body.extend(lines.iter().map(|l| l.to_string()));
        MachineLog::parse(&body).unwrap()
    }

    const STAMPED: [&str; 7] = [
        "0 loader boot",
        "1 loader start blk#1",
        "1 loader start vmm-carol#1",
        "1 loader start builder#1",
        "2 blk serve carol blk#1",
        "3 supervisor restart blk#1 blk#2",
        "4 builder build carol builder#1",
    ];

    #[test]
    fn the_machines_log_is_read_with_its_writers_checked() {
        let log = machine(&STAMPED, 0);
        assert_eq!(log.dropped, 0);
        let read = log.read().unwrap();
        assert_eq!(read.refused, Vec::<String>::new());
        let names = |v: Vec<&Instance>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(read.log.relied_at("carol", 3)), ["blk#2"]);
        assert_eq!(read.log.builds.len(), 1);
    }

    /// A component that writes in another's name (a restart that would move a guest's
    /// reliance, a serve for another backend, a build, a second boot and the starts after
    /// it) is caught by the kernel's stamp: its lines are refused, the rest still read. So
    /// are its malformed and impossible lines, one at a time.
    #[test]
    fn an_event_in_anothers_name_is_refused_and_the_rest_read() {
        for (forged, message) in [
            ("2 blk restart blk#1 blk#2", "written by `blk`, not by `supervisor`"),
            ("2 vmm-carol serve carol blk#1", "written by `vmm-carol`, not by `blk`"),
            ("2 vmm-carol start other#1", "written by `vmm-carol`, not by `loader`"),
            ("2 blk build carol builder#1", "written by `blk`, not by `builder`"),
            ("2 blk destroy carol blk#1", "only the Builder (`builder`) builds and destroys guests"),
            ("2 blk boot", "a second boot, by `blk`"),
            ("2 blk", "expected TIME WRITER EVENT"),
            ("2 blk serve carol", "expected GUEST COMPONENT#N"),
            ("2 blk explode now", "unknown event"),
            ("2 blk serve carol blk#1", "blk#1 already serves carol"),
            ("2 blk unserve dave blk#1", "blk#1 does not serve dave"),
            ("0 blk unserve carol blk#1", "time goes backwards"),
        ] {
            let mut lines = STAMPED.to_vec();
            lines.insert(5, forged);
            let read = read_stamped(&lines.join("\n")).unwrap();
            assert_eq!(read.refused.len(), 1, "{forged}: {:?}", read.refused);
            assert!(
                read.refused[0].contains(message) && read.refused[0].starts_with("line 6: "),
                "{forged}: {read:?}"
            );
            // Carol's reliance is what the honest lines say.
            let names = |v: Vec<&Instance>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
            assert_eq!(names(read.log.relied_at("carol", 3)), ["blk#2"], "{forged}");
        }
        // A log that does not begin with the loader's boot is no log.
        assert!(
            read_stamped("1 blk start blk#1\n0 loader boot\n")
                .unwrap_err()
                .contains("does not begin with `boot`")
        );
    }

    #[test]
    fn a_log_that_lost_its_oldest_lines_answers_no_question() {
        let log = machine(&["9 supervisor restart blk#4 blk#5"], 3);
        let e = log.read().unwrap_err();
        assert!(e.contains("no longer holds its 3 oldest lines"), "{e}");
        for header in ["", "kernel audit log: bytes 0..x, 0 lines dropped", "kernel audit log: 0..1"] {
            assert!(MachineLog::parse(&[header.to_string()]).is_err(), "{header}");
        }
        // A header promising more than arrived (a line lost on the way) is refused.
        let short =
            [format!("{} bytes 0..50, 0 lines dropped", cleave_ctl::AUDIT_HEADER), "0 loader boot".into()];
        assert!(MachineLog::parse(&short).unwrap_err().contains("but 14 arrived"));
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
