//! Building the kernel and user programs, and where the results go.

use crate::workspace_root;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every program that runs on Cleave is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Paths of the built images.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The kernel ELF (Multiboot-loadable).
    pub kernel: PathBuf,
    /// Where user programs live: `<dir>/<name>`.
    pub programs: PathBuf,
    /// Scratch space for ISOs, logs and generated emulator configuration.
    pub work: PathBuf,
}

impl Artifacts {
    /// The built program `name`.
    pub fn program(&self, name: &str) -> Result<PathBuf> {
        let path = self.programs.join(name);
        if !path.is_file() {
            bail!("no user program named '{name}' was built (in {})", self.programs.display());
        }
        Ok(path)
    }
}

/// Runs `cargo ARGS` in `dir`, streaming its output; returns whether it succeeded.
pub fn cargo(dir: &Path, args: &[&str]) -> Result<bool> {
    cargo_with_env(dir, args, &[])
}

/// Runs `cargo ARGS` in `dir` with `env` set (and no system chosen unless `env` chooses
/// one), streaming its output.
fn cargo_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // A system chosen in the caller's environment must not leak into builds that choose none.
    command
        .args(args)
        .current_dir(dir)
        .env_remove(cleave::codegen::SYSTEM_VAR)
        .env_remove(cleave::codegen::COMPONENT_VAR);
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command.status().with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    Ok(status.success())
}

/// What [`build`] makes besides the kernel and the chosen system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only the chosen system: its programs and its loader (`run`, `build`).
    System,
    /// Also every test program and the other systems the emulator tests boot, each with
    /// its own loader (`test`, `bench`, `profile`).
    Tests,
}

/// A system description to build: where it is, the name its loader gets among the
/// programs, and what compiling it gave.
struct Planned {
    path: PathBuf,
    loader: &'static str,
    encoded: Vec<u8>,
    generated: std::collections::BTreeMap<String, Vec<u8>>,
    programs: Programs,
}

/// The programs a system description names, by how they are built (crate = program).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Programs {
    /// Guest images, built first (the VMM embeds one).
    pub guests: Vec<String>,
    /// Whether it runs guests, hence VMMs (the `vmm` program, built with its guest image).
    pub vmm: bool,
    /// Components whose constants are generated for this system: built with
    /// `CLEAVE_SYSTEM` naming it.
    pub components: Vec<String>,
    /// Instances of per-guest components: (program, crate). Each is its crate built again
    /// with `CLEAVE_COMPONENT` naming the instance (its constants are its own), kept as
    /// the program of the instance's name.
    pub instances: Vec<(String, String)>,
}

/// Compiles `system` into its encoded spec, the generated files its image carries, and
/// the programs it names.
fn plan(system: &Path, loader: &'static str) -> Result<Planned> {
    let text = std::fs::read_to_string(system).with_context(|| format!("reading {}", system.display()))?;
    let file = cleave::system::load(&text).map_err(|e| {
        anyhow::anyhow!("{}", cleave::diagnostic::render(&e, &system.display().to_string(), &text))
    })?;
    let compiled = cleave::compile::compile(&file);
    let encoded = cleave_capdl::binary::encode(&compiled.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = cleave_capdl::binary::EncodedSpec::new(&encoded).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Guest images are not in the boot image: each VMM embeds its guest's.
    let mut programs = Programs {
        guests: file.guests.values().map(|g| g.image.get_ref().clone()).collect(),
        ..Programs::default()
    };
    for name in cleave::image::file_names(&spec) {
        let instance = file.components.iter().find(|(k, c)| c.instance.is_some() && *k.get_ref() == name);
        if compiled.files.contains_key(name) {
            continue; // generated, not built
        } else if name == cleave::layout::VMM_PROGRAM {
            programs.vmm = true;
        } else if let Some((k, c)) = instance {
            programs.instances.push((name.to_string(), c.package(k.get_ref())));
        } else {
            programs.components.push(name.to_string());
        }
    }
    programs.components.sort();
    programs.guests.sort();
    programs.guests.dedup();
    Ok(Planned { path: system.to_path_buf(), loader, encoded, generated: compiled.files, programs })
}

/// The programs `system` names (what the build of it makes).
#[cfg(test)]
pub fn programs_of(system: &Path) -> Result<Programs> {
    Ok(plan(system, "loader")?.programs)
}

/// The guest image the VMM and `vmm-guests` embed.
const GUEST_IMAGE: &str = "guest-hello";
/// The guest image assembled from Debian's kernel and a busybox initramfs rather than
/// built by cargo (`crate::linux`).
pub const LINUX_IMAGE: &str = "linux-debian";

/// Makes the Linux guest (`crate::linux::prepare`: Debian's kernel and the busybox
/// initramfs in `target/linux/`, fetched and built when missing or out of date) and packs
/// it as the VMM reads a Linux guest image (`cleave_vmm_core::linux::unpack`: magic, the
/// two lengths, the two files) into `programs/linux-debian`.
fn linux_guest_image(programs: &Path) -> Result<PathBuf> {
    let guest = crate::linux::prepare()?;
    let kernel =
        std::fs::read(&guest.kernel).with_context(|| format!("reading {}", guest.kernel.display()))?;
    let initrd =
        std::fs::read(&guest.initramfs).with_context(|| format!("reading {}", guest.initramfs.display()))?;
    let mut image = Vec::with_capacity(32 + kernel.len() + initrd.len());
    image.extend_from_slice(b"CLEAVE-LINUX-IMG");
    image.extend_from_slice(&(kernel.len() as u64).to_le_bytes());
    image.extend_from_slice(&(initrd.len() as u64).to_le_bytes());
    image.extend_from_slice(&kernel);
    image.extend_from_slice(&initrd);
    let out = programs.join(LINUX_IMAGE);
    if std::fs::read(&out).ok().as_deref() != Some(&image[..]) {
        std::fs::create_dir_all(programs)?;
        std::fs::write(&out, &image).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(out)
}

/// Builds the kernel, the programs `system` names (its components with their constants
/// generated from it), its boot image and the capDL loader that embeds it (`loader`);
/// with [`Scope::Tests`] also the test programs and [`EXTRA_SYSTEMS`], each with its own
/// loader. Checks the kernel's load layout.
pub fn build(system: &Path, scope: Scope) -> Result<Artifacts> {
    crate::deps::ensure_toolchain()?;
    let root = workspace_root();
    let programs = root.join("target").join(TARGET).join("release");
    let work = root.join("target").join("cleave");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut plans = Vec::new();
    if scope == Scope::Tests {
        for (path, loader) in EXTRA_SYSTEMS {
            plans.push(plan(&root.join(path), loader)?);
        }
    }
    // The chosen system last: its loader is the one left as `loader`.
    plans.push(plan(system, "loader")?);
    // First what embeds nothing: the kernel and the guest images.
    let mut first = vec!["build", "--release", "--target", TARGET, "-p", "cleave-kernel"];
    let mut guests: Vec<&str> =
        plans.iter().flat_map(|p| p.programs.guests.iter().map(String::as_str)).collect();
    if scope == Scope::Tests {
        guests.push(GUEST_IMAGE);
    }
    guests.sort_unstable();
    guests.dedup();
    for guest in guests.iter().filter(|g| **g != LINUX_IMAGE) {
        first.extend(["-p", guest]);
    }
    if !cargo_with_env(&root, &first, &[])? {
        bail!("building the kernel and guest images failed");
    }
    // Then what embeds the guest image: the VMM, and the test programs (`vmm-guests`).
    let mut embedding = vec!["build", "--release", "--target", TARGET];
    if plans.iter().any(|p| p.programs.vmm) {
        embedding.extend(["-p", "vmm"]);
    }
    if scope == Scope::Tests {
        embedding.extend(["-p", "emulator-tests"]);
    }
    if embedding.len() > 4 {
        // The chosen system's image when it has one kind (a VMM embeds one image), else the
        // test guest's.
        let chosen = &plans.last().expect("the chosen system is planned").programs.guests;
        let guest = match chosen.as_slice() {
            [only] if only == LINUX_IMAGE => linux_guest_image(&programs)?,
            [only] => programs.join(only),
            _ => programs.join(GUEST_IMAGE),
        };
        if !cargo_with_env(&root, &embedding, &[("CLEAVE_GUEST_IMAGE", &guest)])? {
            bail!("building the VMM and test programs (with the guest image) failed");
        }
    }
    // Then, system by system, its components (constants generated from it), its boot
    // image and its loader.
    for planned in &plans {
        let system =
            planned.path.canonicalize().with_context(|| format!("finding {}", planned.path.display()))?;
        if !planned.programs.components.is_empty() {
            let mut args = vec!["build", "--release", "--target", TARGET];
            for component in &planned.programs.components {
                args.extend(["-p", component]);
            }
            if !cargo_with_env(&root, &args, &[(SYSTEM_VAR, &system)])? {
                bail!("building the components of {} failed", planned.path.display());
            }
        }
        for (instance, package) in &planned.programs.instances {
            let args = ["build", "--release", "--target", TARGET, "-p", package];
            let env = [(SYSTEM_VAR, system.as_path()), (cleave::codegen::COMPONENT_VAR, Path::new(instance))];
            if !cargo_with_env(&root, &args, &env)? {
                bail!("building `{instance}` (crate `{package}`) for {} failed", planned.path.display());
            }
            std::fs::copy(programs.join(package), programs.join(instance))
                .with_context(|| format!("keeping the program of `{instance}`"))?;
        }
        // `image.bin` for the chosen system, `loader-NAME.bin` for the others.
        let image = match planned.loader {
            "loader" => work.join("image.bin"),
            other => work.join(format!("{other}.bin")),
        };
        let bytes = cleave::image::build(&planned.encoded, &programs, &planned.generated)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::write(&image, bytes).with_context(|| format!("writing {}", image.display()))?;
        // What the loader would find out at boot (a disposable component's program that does
        // not fit its untyped), said now.
        let table = memory_table(&planned.path, &image)?;
        // The toolstack's page of it (`cleave ctl list`): the same image with the table in
        // (the page's size is fixed, so the table does not change with it).
        if planned.generated.contains_key(cleave::layout::TOOLSTACK_MEMORY_FILE) {
            let mut generated = planned.generated.clone();
            generated.insert(cleave::layout::TOOLSTACK_MEMORY_FILE.to_string(), table.toolstack_page());
            let bytes = cleave::image::build(&planned.encoded, &programs, &generated)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(&image, bytes).with_context(|| format!("writing {}", image.display()))?;
        }
        if !cargo_with_env(&root, &loader_args(), &[("CLEAVE_IMAGE", &image)])? {
            bail!("building the capDL loader for {} failed", planned.path.display());
        }
        if planned.loader != "loader" {
            std::fs::copy(programs.join("loader"), programs.join(planned.loader))
                .with_context(|| format!("copying the loader for {}", planned.path.display()))?;
        }
    }
    let kernel = programs.join("cleave-kernel");
    let image = std::fs::read(&kernel).with_context(|| format!("reading {}", kernel.display()))?;
    cleave_elf::kernel_image::check(&image)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} cannot be loaded by a Multiboot loader", kernel.display()))?;
    Ok(Artifacts { kernel, programs: programs.clone(), work })
}

/// The variable naming the system components are built for (`cleave_system::codegen`).
const SYSTEM_VAR: &str = cleave::codegen::SYSTEM_VAR;

/// System descriptions besides the chosen one that tests boot, and the name their loader
/// is kept under among the programs.
pub const EXTRA_SYSTEMS: &[(&str, &str)] =
    &[("systems/guests.toml", "loader-guests"), ("examples/lifetimes/system.toml", "loader-lifetimes")];

fn loader_args() -> [&'static str; 6] {
    ["build", "--release", "--target", TARGET, "-p", "cleave-loader"]
}

/// The memory table of `system` as the boot image at `image` carries it (its programs the
/// ones built for it): the memory the loader makes the system from is
/// `Table::machine`, which it prints at boot.
pub fn memory_table(system: &Path, image: &Path) -> Result<cleave::memory::Table> {
    let text = std::fs::read_to_string(system).with_context(|| format!("reading {}", system.display()))?;
    let file =
        cleave::system::load(&text).map_err(|_| anyhow::anyhow!("{} does not check", system.display()))?;
    let compiled = cleave::compile::compile(&file);
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let boot = cleave_capdl::image::BootImage::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", image.display()))?;
    cleave::memory::table(&file, &compiled, &|name| boot.file(name).map(<[u8]>::to_vec))
        .map_err(|e| anyhow::anyhow!("{}: {e}", system.display()))
}

/// The boot image the loader program `loader` embeds (`build` leaves it in `work`).
pub fn image_of(artifacts: &Artifacts, loader: &str) -> PathBuf {
    match loader {
        "loader" => artifacts.work.join("image.bin"),
        other => artifacts.work.join(format!("{other}.bin")),
    }
}

/// The digest the loader must report for `system`.
pub fn expected_digest(system: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(system).with_context(|| format!("reading {}", system.display()))?;
    let file =
        cleave::system::load(&text).map_err(|_| anyhow::anyhow!("{} does not check", system.display()))?;
    let encoded = cleave_capdl::binary::encode(&cleave::compile::compile(&file).spec)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cleave_capdl::binary::EncodedSpec::new(&encoded).map_err(|e| anyhow::anyhow!("{e}"))?.digest())
}
