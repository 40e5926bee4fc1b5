//! A mutation fuzzer for the two text formats the tools take: capDL text (the reader in
//! `cleave_capdl::text`) and `system.toml` (`system::load` and everything run on what it
//! accepts). It starts from every fixture, applies random edits aimed at the classes of
//! bad input the reader and checker must refuse (huge numbers, ranges, broken brackets,
//! repeated or deleted lines), and holds each outcome to a rule:
//!
//! - nothing panics;
//! - an error has a real location (line and column 1 or more);
//! - capDL text that reads writes back to text that reads to the same spec;
//! - a `system.toml` that loads compiles to a spec that validates and encodes, and the
//!   graph, privilege table and exposures are built from it without panicking.
//!
//! `cargo test` runs a short pass (`CLEAVE_TEXT_FUZZ` inputs of each kind, default 1,500);
//! `cargo xtask fuzz --text N` runs N of each in release mode. A failing input is written
//! to `target/text-fuzz-failure.*` and named in the panic message.

use cleave::{compile, exposure, graph, privileges, system};
use cleave_capdl::{binary, text, validate};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A small xorshift generator: the run is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that have broken parsers before: numbers at and past every width, ranges,
/// sizes and durations that overflow, brackets and quotes that do not close.
const TOKENS: &[&str] = &[
    "4294967296",
    "4294967295",
    "18446744073709551615",
    "18446744073709551616",
    "429496729558",
    "0",
    "0x",
    "0o9",
    "[0..429496729558]",
    "[4294967296]",
    "[30000000]",
    "..",
    "(4294967304 bits)",
    "(65 bits)",
    "(18014398509481984k)",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    "\"",
    "=",
    "\n",
    "/*",
    "#",
    "\"16384G\"",
    "\"72057594037927936ms\"",
    "\"300m\"",
    "\"0ms\"",
    "\"../../../etc/os-release\"",
    "\"a\nb\"",
    "true",
    "-1",
    "1e9",
    "\"per-request\"",
    "\"disposable\"",
    "{ every = \"1ms\" }",
    "\"0x40-0x43\"",
    "\"0xffff-0x0\"",
    // capDL's larger grammar: paths, copies, derivations, PCI addresses, open ranges.
    "/",
    "<",
    ">",
    "[]",
    "[..4294967296]",
    "- child_of ",
    " = ut { u = ut {",
    "0:99999999999999999999.0",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut out: Vec<u8> = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            1 if at < out.len() => {
                // Replace the number (or word) at `at` with a token.
                let end = (at..out.len()).find(|&i| !out[i].is_ascii_alphanumeric()).unwrap_or(out.len());
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..end, token.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                // Duplicate a line somewhere else.
                let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                out.splice(at..at, line.into_iter().chain([b'\n']));
            }
            4 if at < out.len() => out[at] = (rng.next() & 0x7f) as u8,
            5 => {
                // Swap two lines.
                let text = String::from_utf8_lossy(&out).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                }
                out = lines.join("\n").into_bytes();
            }
            _ => {
                // Repeat a digit run, growing a number past its width.
                if let Some(i) = (at..out.len()).find(|&i| out[i].is_ascii_digit()) {
                    out.splice(i..i, b"99999999999".iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn corpus(ext: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    // The capDL files in the forms seL4's tools write (`capdl/tests/data`) bring the whole
    // grammar: covers, paths, names and copies, the derivation tree, domains.
    for dir in ["tests/fixtures/valid", "tests/fixtures/invalid", "../../systems", "../../capdl/tests/data"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            files.extend(
                entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)),
            );
        }
    }
    if ext == "toml" {
        files.push(root.join("../../system.toml"));
        files.push(root.join("../../examples/lifetimes/system.toml"));
    }
    files.sort();
    let texts: Vec<String> = files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect();
    assert!(!texts.is_empty(), "no .{ext} files to start from");
    texts
}

fn iterations() -> usize {
    std::env::var("CLEAVE_TEXT_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500)
}

/// Runs `check` on `input`; on a panic or a broken rule, saves the input and fails.
fn hold(kind: &str, input: &str, check: impl FnOnce(&str) -> Result<(), String>) {
    let outcome = catch_unwind(AssertUnwindSafe(|| check(input)));
    let problem = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(rule)) => rule,
        Err(_) => "panicked".to_string(),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/text-fuzz-failure.{kind}"));
    let _ = std::fs::write(&path, input);
    panic!("{kind} input broke a rule ({problem}); saved in {}", path.display());
}

fn check_capdl(input: &str) -> Result<(), String> {
    match text::read(input) {
        Err(e) if e.line == 0 || e.column == 0 => Err(format!("error without a location: {e}")),
        Err(_) => Ok(()),
        Ok(spec) => {
            let written = text::write(&spec);
            let again = text::read(&written).map_err(|e| format!("its canonical form does not read: {e}"))?;
            if again != spec {
                return Err("its canonical form reads to a different spec".into());
            }
            if validate::validate(&spec).is_empty() {
                // A valid spec either encodes or says why; either way, no panic.
                let _ = binary::encode(&spec);
            }
            Ok(())
        }
    }
}

fn check_system(input: &str) -> Result<(), String> {
    match system::load(input) {
        Err(errors) => {
            if errors.is_empty() {
                return Err("refused without an error".into());
            }
            let _ = cleave::diagnostic::render(&errors, "system.toml", input);
            Ok(())
        }
        Ok(file) => {
            let compiled = compile::compile(&file);
            let problems = validate::validate(&compiled.spec);
            if !problems.is_empty() {
                return Err(format!("accepted, but its spec does not validate: {problems:?}"));
            }
            binary::encode(&compiled.spec)
                .map_err(|e| format!("accepted, but its spec does not encode: {e}"))?;
            let _ = graph::dot(&file);
            let _ = privileges::table(&compiled.spec);
            for guest in file.guests.keys() {
                let _ = exposure::exposure(&file, guest.get_ref());
            }
            Ok(())
        }
    }
}

#[test]
fn mutated_capdl_text_is_read_or_refused_with_a_location() {
    let seeds = corpus("cdl");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..iterations() {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        hold("cdl", &input, check_capdl);
    }
}

#[test]
fn mutated_system_descriptions_are_loaded_whole_or_refused() {
    let seeds = corpus("toml");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..iterations() {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        hold("toml", &input, check_system);
    }
}
