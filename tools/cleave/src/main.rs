//! The `cleave` command: check and compile `system.toml`, read capDL files, print the
//! privilege table, and drive a running system (`cleave ctl`).

use clap::{Parser, Subcommand};
use cleave::{audit, compile, diagnostic, exposure, graph, image, memory, privileges, system};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod xenstored;

#[derive(Parser)]
#[command(name = "cleave", about = "Compile and inspect Cleave system descriptions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a system description; every error points at file, line, column and key.
    Check {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
    },
    /// Print the capDL specification of a system description: text, or (`--binary`) the
    /// encoded form the loader reads.
    Spec {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
        /// Write it here instead of standard output (nothing is written on error).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Print only the digest of the capability distribution (what the loader reports).
        #[arg(long, conflicts_with = "binary")]
        digest: bool,
        /// Write the binary encoding the loader reads instead of text (needs --output).
        #[arg(long, requires = "output")]
        binary: bool,
    },
    /// Build the boot image the loader embeds: the encoded spec and the programs' ELFs.
    Image {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
        /// Where the built programs are.
        #[arg(long)]
        programs: PathBuf,
        /// The image file to write (nothing is written on error).
        #[arg(long)]
        output: PathBuf,
    },
    /// Drive a running system as its operator, through the toolstack's line (`cargo
    /// xtask run` prints the socket): list, create GUEST, destroy GUEST, console GUEST
    /// (Ctrl-] detaches), restart COMPONENT, privileges, exposure GUEST, shutdown, help.
    Ctl {
        /// The Unix socket the machine's third serial port is connected to.
        #[arg(long)]
        socket: PathBuf,
        /// The request: a command and its argument (`audit` takes `cleave audit`'s
        /// questions: `--component C --from T1 --to T2` or `--guest G --at T`).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        request: Vec<String>,
    },
    /// Print the Xoar privilege matrix of a system description.
    Privileges {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
    },
    /// Print Xoar's memory table: each component's memory (program, data, DMA, kernel
    /// objects, page tables), what components share, the guests' RAM and the control
    /// plane's total, counted as the capDL loader makes them.
    Memory {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
        /// Where the built programs are (`cargo xtask run` leaves them in
        /// target/x86_64-unknown-none/release).
        #[arg(long, default_value = "target/x86_64-unknown-none/release")]
        programs: PathBuf,
    },
    /// Print the sharing graph: DOT, or SVG rendered in-process.
    Graph {
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
        /// Write SVG instead of DOT.
        #[arg(long)]
        svg: bool,
    },
    /// Every component whose failure or compromise can affect GUEST, and through what.
    Exposure {
        /// The guest.
        guest: String,
        /// The description.
        #[arg(default_value = "system.toml")]
        system: PathBuf,
    },
    /// Read a capDL text file, validate it, print it in canonical form.
    Cdl {
        /// The capDL file.
        file: PathBuf,
    },
    /// Ask an audit log which guests relied on a component between two times
    /// (`--component C --from T1 --to T2`), or what a guest relied on at a time
    /// (`--guest G --at T`); times in microseconds since boot.
    Audit {
        /// The log.
        log: PathBuf,
        /// The component asked about.
        #[arg(long, requires_all = ["from", "to"], conflicts_with_all = ["guest", "at"])]
        component: Option<String>,
        /// Start of the interval (µs).
        #[arg(long)]
        from: Option<u64>,
        /// End of the interval (µs).
        #[arg(long)]
        to: Option<u64>,
        /// The guest asked about.
        #[arg(long, requires = "at")]
        guest: Option<String>,
        /// The time (µs).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Run XenStore (Logic and the store) as a daemon on a Unix socket, for Xen's own
    /// clients: `XENSTORED_PATH=PATH xenstore-ls`.
    Xenstored {
        /// The socket domain 0 connects to.
        #[arg(long)]
        socket: PathBuf,
        /// Another socket whose connections are domain N: `N=PATH` (repeatable).
        #[arg(long = "domain", value_parser = xenstored::parse_domain)]
        domains: Vec<(u32, PathBuf)>,
    },
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cleave: cannot read {}: {e}", path.display()))
}

fn load(path: &Path) -> Result<(String, system::SystemFile), String> {
    let text = read(path)?;
    match system::load(&text) {
        Ok(file) => Ok((text, file)),
        Err(errors) => Err(diagnostic::render(&errors, &path.display().to_string(), &text)),
    }
}

fn run(cli: Cli) -> Result<String, String> {
    match cli.command {
        Command::Check { system } => {
            let (_, file) = load(&system)?;
            let compiled = compile::compile(&file);
            let problems = cleave_capdl::validate::validate(&compiled.spec);
            if !problems.is_empty() {
                return Err(problems.iter().map(|p| format!("internal: generated spec: {p}\n")).collect());
            }
            Ok(format!(
                "{}: {} components, {} objects, {} capabilities: ok\n",
                system.display(),
                file.components.len(),
                compiled.spec.objects.len(),
                compiled.spec.caps.values().map(|s| s.len()).sum::<usize>()
            ))
        }
        Command::Image { system, programs, output } => {
            let (_, file) = load(&system)?;
            let compiled = compile::compile(&file);
            let spec = cleave_capdl::binary::encode(&compiled.spec).map_err(|e| format!("cleave: {e}\n"))?;
            let image = image::build(&spec, &programs, &compiled.files).map_err(|e| format!("{e}\n"))?;
            std::fs::write(&output, &image)
                .map_err(|e| format!("cleave: cannot write {}: {e}\n", output.display()))?;
            Ok(String::new())
        }
        Command::Spec { system, output, digest, binary } => {
            let (_, file) = load(&system)?;
            let spec = compile::compile(&file).spec;
            if let (true, Some(path)) = (binary, &output) {
                let bytes = cleave_capdl::binary::encode(&spec).map_err(|e| format!("cleave: {e}\n"))?;
                std::fs::write(path, &bytes)
                    .map_err(|e| format!("cleave: cannot write {}: {e}\n", path.display()))?;
                return Ok(String::new());
            }
            if digest {
                let bytes = cleave_capdl::binary::encode(&spec).map_err(|e| format!("cleave: {e}\n"))?;
                let encoded =
                    cleave_capdl::binary::EncodedSpec::new(&bytes).map_err(|e| format!("cleave: {e}\n"))?;
                return Ok(format!("{:#018x}\n", encoded.digest()));
            }
            let text = cleave_capdl::text::write(&spec);
            match output {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .map_err(|e| format!("cleave: cannot write {}: {e}", path.display()))?;
                    Ok(String::new())
                }
                None => Ok(text),
            }
        }
        Command::Privileges { system } => {
            let (_, file) = load(&system)?;
            Ok(privileges::table(&compile::compile(&file).spec))
        }
        Command::Memory { system, programs } => {
            let (_, file) = load(&system)?;
            let compiled = compile::compile(&file);
            let read = |name: &str| std::fs::read(programs.join(name)).ok();
            memory::table(&file, &compiled, &read)
                .map(|t| t.render())
                .map_err(|e| format!("cleave: {e} (in {}; build the system first)\n", programs.display()))
        }
        Command::Graph { system, svg } => {
            let (_, file) = load(&system)?;
            if svg { graph::svg(&file).map_err(|e| format!("cleave: {e}\n")) } else { Ok(graph::dot(&file)) }
        }
        Command::Exposure { guest, system } => {
            let (_, file) = load(&system)?;
            let list = exposure::exposure(&file, &guest)
                .ok_or_else(|| format!("cleave: no guest named `{guest}`\n"))?;
            Ok(list.iter().map(|(c, why)| format!("{c}: {why}\n")).collect())
        }
        Command::Audit { log, component, from, to, guest, at } => {
            let text = read(&log)?;
            let checked = audit::read_stamped(&text).map_err(|e| format!("{}: {e}\n", log.display()))?;
            let log_data = &checked.log;
            let answer: String = match (component, from, to, guest, at) {
                (Some(c), Some(t1), Some(t2), None, None) => audit::describe(&log_data.relied_on(&c, t1, t2)),
                (None, None, None, Some(g), Some(t)) => {
                    log_data.relied_at(&g, t).iter().map(|i| format!("{i}\n")).collect()
                }
                _ => {
                    return Err(
                        "cleave audit: ask --component C --from T1 --to T2, or --guest G --at T\n".into()
                    );
                }
            };
            let refused: String = checked.refused.iter().map(|r| format!("refused: {r}\n")).collect();
            Ok(answer + &refused)
        }
        Command::Ctl { socket, request } if request.first().is_some_and(|w| w == "console") => {
            match request.as_slice() {
                [_, guest] => cleave::ctl::interactive_console(&socket, guest)
                    .map(|()| String::new())
                    .map_err(|e| format!("{e}\n")),
                _ => Err("cleave ctl: `console` needs a guest's name\n".into()),
            }
        }
        Command::Ctl { socket, request } if request.first().is_some_and(|w| w == "audit") => {
            cleave::ctl::audit(&socket, &request[1..]).map_err(|e| format!("{e}\n"))
        }
        Command::Ctl { socket, request } => {
            let reply = cleave::ctl::request(&socket, &request, cleave::ctl::TIMEOUT)
                .map_err(|e| format!("{e}\n"))?;
            let body: String = reply.body.iter().map(|l| format!("{l}\n")).collect();
            match reply.status {
                Ok(()) => Ok(body),
                Err(why) => Err(format!("{body}cleave ctl: {why}\n")),
            }
        }
        Command::Xenstored { socket, domains } => xenstored::serve(&socket, &domains).map(|()| String::new()),
        Command::Cdl { file } => {
            let text = read(&file)?;
            let spec = cleave_capdl::text::read(&text)
                .map_err(|e| format!("{}:{}:{}: {}\n", file.display(), e.line, e.column, e.message))?;
            let problems = cleave_capdl::validate::validate(&spec);
            if !problems.is_empty() {
                return Err(problems.iter().map(|p| format!("{}: {p}\n", file.display())).collect());
            }
            Ok(cleave_capdl::text::write(&spec))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            // A reader that stops early (`cleave spec X | head -1`) closes the pipe: that is
            // no error, and certainly no panic, as for any Unix tool.
            use std::io::Write;
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("cleave: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::FAILURE
        }
    }
}
