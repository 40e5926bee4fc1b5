//! Fixture tests: every invalid `system.toml` in `fixtures/invalid` fails with the message
//! and location its first line states; every valid one compiles to its golden capDL spec
//! and privilege table.

use cleave::{compile, diagnostic, exposure, graph, privileges, system};
use std::path::Path;

fn fixtures(dir: &str, extension: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_fixture_fails_where_and_how_it_says() {
    let files = fixtures("invalid", "toml");
    assert!(files.len() >= 40, "only {} invalid fixtures", files.len());
    let mut wrong = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks `# expect:`", path.display()));
        let (location, message) = expect.split_once(' ').unwrap();
        let (line, column) = location.split_once(':').unwrap();
        let want = (line.parse::<usize>().unwrap(), column.parse::<usize>().unwrap());
        match system::load(&text) {
            Ok(_) => wrong.push(format!("{}: accepted", path.display())),
            Err(errors) => {
                let found =
                    errors.iter().any(|e| e.line_column(&text) == want && e.message.contains(message));
                if !found {
                    let got: Vec<String> = errors
                        .iter()
                        .map(|e| {
                            let (l, c) = e.line_column(&text);
                            format!("{l}:{c} {} [{}]", e.message, e.key)
                        })
                        .collect();
                    wrong.push(format!("{}: expected {expect}, got {got:?}", path.display()));
                }
                // The rendered report names the file and location.
                let rendered = diagnostic::render(&errors, "system.toml", &text);
                assert!(rendered.contains("system.toml:"), "{rendered}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn valid_fixtures_match_their_golden_outputs() {
    for path in fixtures("valid", "toml") {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = system::load(&text)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), diagnostic::render(&e, "x", &text)));
        let compiled = compile::compile(&file);
        assert!(cleave_capdl::validate::validate(&compiled.spec).is_empty());
        let mut exposures = String::new();
        for guest in file.guests.keys() {
            exposures.push_str(&format!("guest {}:\n", guest.get_ref()));
            for (component, why) in exposure::exposure(&file, guest.get_ref()).unwrap() {
                exposures.push_str(&format!("  {component}: {why}\n"));
            }
        }
        let svg = graph::svg(&file).unwrap();
        assert!(
            svg.contains("<svg") && file.components.keys().all(|c| svg.contains(c.get_ref().as_str())),
            "{svg}"
        );
        let outputs = [
            ("cdl", cleave_capdl::text::write(&compiled.spec)),
            ("privileges", privileges::table(&compiled.spec)),
            ("dot", graph::dot(&file)),
            ("exposure", exposures),
        ];
        for (extension, actual) in outputs {
            let golden = path.with_extension(extension);
            if std::env::var_os("CLEAVE_BLESS").is_some() {
                std::fs::write(&golden, &actual).unwrap();
            }
            let expected =
                std::fs::read_to_string(&golden).unwrap_or_else(|_| panic!("missing {}", golden.display()));
            assert_eq!(actual, expected, "{} differs (CLEAVE_BLESS=1 rewrites it)", golden.display());
            // The spec text reads back to the same specification.
            if extension == "cdl" {
                assert_eq!(cleave_capdl::text::read(&actual).unwrap(), compiled.spec);
            }
        }
    }
}

#[test]
fn the_command_writes_nothing_on_error() {
    let dir = std::env::temp_dir().join(format!("cleave-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("system.toml");
    std::fs::write(&bad, "[components.a]\npriority = 999\n").unwrap();
    let out = dir.join("spec.cdl");
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_cleave"))
        .args(["spec", bad.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("system.toml:2:12: priority 999 is outside 1-254"), "{stderr}");
    assert!(stderr.contains("components.a.priority"), "{stderr}");
    assert!(!out.exists(), "a spec was written despite the error");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_binary_spec_carries_the_digest_the_loader_checks() {
    let dir = std::env::temp_dir().join(format!("cleave-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let system = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/valid/control-plane.toml");
    let out = dir.join("spec.bin");
    let cleave = |args: &[&str]| {
        let result = std::process::Command::new(env!("CARGO_BIN_EXE_cleave")).args(args).output().unwrap();
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        String::from_utf8(result.stdout).unwrap()
    };
    cleave(&["spec", system, "--binary", "--output", out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    let encoded = cleave_capdl::binary::EncodedSpec::new(&bytes).unwrap();
    let digest = cleave(&["spec", system, "--digest"]);
    assert_eq!(format!("{:#018x}\n", encoded.digest()), digest);
    // The encoding holds what the text names: every object and capability.
    let spec = cleave_capdl::text::read(&cleave(&["spec", system])).unwrap();
    assert_eq!(
        encoded.object_count() as usize,
        spec.objects.iter().map(|o| o.count.unwrap_or(1) as usize).sum()
    );
    assert_eq!(encoded.cap_count() as usize, spec.caps.values().map(|slots| slots.len()).sum());
    std::fs::remove_dir_all(&dir).ok();
}

/// A reader that closes the pipe early (`cleave spec system.toml | head -1`) ends the
/// command quietly, as for any Unix tool: no panic, success.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let system = concat!(env!("CARGO_MANIFEST_DIR"), "/../../system.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cleave"))
        .args(["spec", system])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end at once: the whole spec is written into a closed pipe.
    drop(child.stdout.take());
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(result.status.success(), "exit {:?}: {stderr}", result.status.code());
}

/// Issue 15: `cleave graph --svg` of a system too big for the in-process layout (whose
/// cost grows with the cube of the graph) is refused at once with what to do instead;
/// DOT output of the same system is immediate. Checking a system far past the loader's
/// limits stays fast too (it is refused by its object count before anything quadratic).
#[test]
fn big_systems_get_a_clear_answer_quickly() {
    let system = |n: usize| {
        let mut text = String::from("[system]\nroot = \"loader\"\n");
        for i in 0..n {
            text.push_str(&format!("[components.c{i}]\npriority = 100\nbinary = \"vga\"\n"));
        }
        for i in 0..n - 1 {
            text.push_str(&format!(
                "[channels.ch{i}]\nkind = \"endpoint\"\nserver = \"c{i}\"\nclients = [\"c{}\"]\n",
                i + 1
            ));
        }
        text
    };
    let dir = std::env::temp_dir().join(format!("cleave-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: &str, args: &[&str]| {
        let path = dir.join("system.toml");
        std::fs::write(&path, text).unwrap();
        let mut all: Vec<&str> = args.to_vec();
        all.push(path.to_str().unwrap());
        std::process::Command::new(env!("CARGO_BIN_EXE_cleave")).args(&all).output().unwrap()
    };
    let hundred = system(100);
    let out = run(&hundred, &["graph", "--svg"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        stderr.contains("the graph has 100 nodes and 99 edges; `--svg` lays out at most 64 nodes"),
        "{stderr}"
    );
    assert!(stderr.contains("cleave graph FILE | dot -Tsvg"), "{stderr}");
    let dot = run(&hundred, &["graph"]);
    assert!(dot.status.success());
    assert_eq!(String::from_utf8_lossy(&dot.stdout).matches(" -> ").count(), 99);
    // 10,000 components: refused by the loader's object limit, located.
    let out = run(&system(10_000), &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("objects") && stderr.contains("the loader builds at most 2048"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 12: every component has a row in the privilege table, even one that holds no
/// capability, and device memory a component maps counts as managing devices.
#[test]
fn every_component_has_a_privilege_row() {
    let dir = std::env::temp_dir().join(format!("cleave-privileges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("system.toml");
    let text = "[components.lonely]\n[components.driver]\n[devices.display]\nowner = \"driver\"\nmmio = [{ base = 0xfebf0000, size = \"4K\" }]\n";
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cleave"))
        .args(["privileges", path.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = |name: &str| table.lines().find(|l| l.starts_with(name)).map(|l| l.matches("yes").count());
    assert_eq!(row("lonely "), Some(0), "{table}");
    assert_eq!(row("driver "), Some(1), "the device it maps: {table}");
    std::fs::remove_dir_all(&dir).ok();
}
