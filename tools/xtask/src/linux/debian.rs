//! Debian's kernel and busybox packages: which ones (`apt-cache`), fetched once
//! (`apt-get download` into `target/linux/debs/`) and unpacked once (`dpkg-deb -x` into
//! `target/linux/root/`). Nothing is installed on the machine and nothing but Debian's
//! own package mirrors is asked for anything.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage whose dependency names the current kernel package
/// (`linux-image-amd64` depends on `linux-image-6.1.0-NN-amd64`).
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// Busybox, linked statically: the guest's whole userland.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// One binary package, as the candidate version's stanza of `apt-cache show` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// `Package:`.
    pub name: String,
    /// `Version:`, epoch included (`1:1.35.0-4+deb12u1+b1`).
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// `Size:` of the `.deb` in bytes.
    pub size: u64,
    /// `Depends:`, as written (empty when the package has none).
    pub depends: String,
}

impl Package {
    /// Reads the first stanza of `apt-cache show` output.
    pub fn from_stanza(text: &str) -> Result<Package> {
        let stanza = text.split("\n\n").next().unwrap_or("");
        let get =
            |name: &str| field(stanza, name).with_context(|| format!("no `{name}:` field in:\n{stanza}"));
        Ok(Package {
            name: get("Package")?.to_string(),
            version: get("Version")?.to_string(),
            architecture: get("Architecture")?.to_string(),
            size: get("Size")?.parse().context("`Size:` is not a number")?,
            depends: field(stanza, "Depends").unwrap_or("").to_string(),
        })
    }

    /// The file name `apt-get download` gives the package: `NAME_VERSION_ARCH.deb`, with the
    /// colon of an epoch written `%3a`.
    pub fn deb_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.architecture)
    }

    /// The kernel package a kernel metapackage depends on: the first dependency named
    /// `linux-image-*` (`linux-image-6.1.0-57-amd64 (= 6.1.192-3)` gives
    /// `linux-image-6.1.0-57-amd64`).
    pub fn kernel_dependency(&self) -> Result<String> {
        self.depends
            .split([',', '|'])
            .filter_map(|item| item.split_whitespace().next())
            .find(|name| name.starts_with("linux-image-") && *name != self.name)
            .map(String::from)
            .with_context(|| {
                format!(
                    "{} {} depends on no linux-image-* package (Depends: {})",
                    self.name, self.version, self.depends
                )
            })
    }
}

/// The value of the single-line field `name` in a deb822 stanza.
fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// The kernel release a kernel package carries (`linux-image-6.1.0-57-amd64` gives
/// `6.1.0-57-amd64`, what `uname -r` prints and the name of its modules directory).
pub fn release_of(kernel_package: &str) -> Result<&str> {
    kernel_package
        .strip_prefix("linux-image-")
        .filter(|r| !r.is_empty())
        .with_context(|| format!("{kernel_package} is not named linux-image-RELEASE"))
}

/// The unpacked packages.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The kernel package (`linux-image-6.1.0-NN-amd64`).
    pub kernel: Package,
    /// `busybox-static`.
    pub busybox: Package,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// Where both packages are unpacked: `boot/vmlinuz-RELEASE`, `lib/modules/RELEASE/`,
    /// `bin/busybox`.
    pub root: PathBuf,
}

/// Finds the current kernel package and busybox, downloads them into `dir/debs` and
/// unpacks them into `dir/root`, each step skipped when its result is already there.
pub fn fetch(dir: &Path) -> Result<Fetched> {
    let mut apt = Apt { updated: false };
    let [meta, busybox] = apt.show([KERNEL_METAPACKAGE, BUSYBOX_PACKAGE])?;
    let [kernel] = apt.show([meta.kernel_dependency()?.as_str()])?;
    let release = release_of(&kernel.name)?.to_string();
    let debs = dir.join("debs");
    let root = dir.join("root");
    for package in [&kernel, &busybox] {
        let deb = download(package, &debs)?;
        unpack(&deb, &root)?;
    }
    for needed in [format!("boot/vmlinuz-{release}"), format!("lib/modules/{release}"), "bin/busybox".into()]
    {
        anyhow::ensure!(
            root.join(&needed).exists(),
            "{} has no {needed} after unpacking {} and {}",
            root.display(),
            kernel.deb_name(),
            busybox.deb_name()
        );
    }
    Ok(Fetched { kernel, busybox, release, root })
}

/// Asks apt about packages, updating its lists once if they know nothing (a fresh machine
/// has none).
struct Apt {
    updated: bool,
}

impl Apt {
    /// The candidate versions of the packages `names` (one question to apt: each takes it
    /// most of a second).
    fn show<const N: usize>(&mut self, names: [&str; N]) -> Result<[Package; N]> {
        let output = Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names)
            .output()
            .map_err(|e| missing_tool("apt-cache", e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let stanzas: Vec<&str> = text.split("\n\n").filter(|s| !s.trim().is_empty()).collect();
        if output.status.success() && stanzas.len() == N {
            let packages = stanzas
                .iter()
                .map(|s| Package::from_stanza(s))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("reading `apt-cache show {}`", names.join(" ")))?;
            // apt answers in the order asked.
            for (package, name) in packages.iter().zip(names) {
                anyhow::ensure!(package.name == name, "apt-cache show {name} described {}", package.name);
            }
            return Ok(packages.try_into().expect("N packages"));
        }
        let listed = names.join(", ");
        if self.updated || !crate::deps::is_root() {
            bail!(
                "apt does not know all of {listed} ({}); if this machine's package lists are missing or old, run `sudo apt-get update`",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        eprintln!("xtask: apt does not know all of {listed}; updating its package lists");
        let status = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| missing_tool("apt-get", e))?;
        anyhow::ensure!(status.success(), "apt-get update failed ({status})");
        self.updated = true;
        self.show(names)
    }
}

/// The error for a tool that cannot be started.
fn missing_tool(tool: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "{tool} is not installed: the Linux guest is built from Debian's packages with apt-cache, apt-get and dpkg-deb, which need a Debian (or Debian-based) machine"
        )
    } else {
        anyhow::anyhow!("cannot run {tool}: {error}")
    }
}

/// Downloads `package` into `debs` unless a file of its name and size is there already.
/// The download goes to a directory of its own first, so an interrupted one is never
/// taken for a whole package.
fn download(package: &Package, debs: &Path) -> Result<PathBuf> {
    let file = debs.join(package.deb_name());
    if std::fs::metadata(&file).is_ok_and(|m| m.len() == package.size) {
        return Ok(file);
    }
    let partial = debs.join(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let wanted = format!("{}={}", package.name, package.version);
    eprintln!("xtask: downloading {wanted} ({} KiB)", package.size / 1024);
    let mut command = Command::new("apt-get");
    command.args(["download", "-q"]).current_dir(&partial);
    if crate::deps::is_root() {
        // As root, apt downloads as its `_apt` user, who cannot write here; say that root
        // downloads (otherwise apt does so anyway, with a warning).
        command.args(["-o", "APT::Sandbox::User=root"]);
    }
    let output = command.arg(&wanted).output().map_err(|e| missing_tool("apt-get", e))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "`apt-get download {wanted}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let fetched = partial.join(package.deb_name());
    let size = std::fs::metadata(&fetched)
        .with_context(|| format!("apt-get download {wanted} left no {}", fetched.display()))?
        .len();
    anyhow::ensure!(
        size == package.size,
        "{} has {size} bytes, apt says {}",
        fetched.display(),
        package.size
    );
    std::fs::rename(&fetched, &file).with_context(|| format!("moving {} into place", fetched.display()))?;
    std::fs::remove_dir_all(&partial).ok();
    Ok(file)
}

/// Unpacks `deb` into `root` with `dpkg-deb -x` unless a mark says it was done.
fn unpack(deb: &Path, root: &Path) -> Result<()> {
    let name = deb.file_name().context("a .deb file name")?;
    let marks = root.join(".unpacked");
    let mark = marks.join(name);
    if mark.is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(&marks).with_context(|| format!("creating {}", marks.display()))?;
    eprintln!("xtask: unpacking {}", deb.display());
    let output = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .output()
        .map_err(|e| missing_tool("dpkg-deb", e))?;
    if !output.status.success() {
        bail!("`dpkg-deb -x {}` failed: {}", deb.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    std::fs::write(&mark, "").with_context(|| format!("writing {}", mark.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-cache show --no-all-versions linux-image-amd64 busybox-static` on Debian 12
    /// (fields cut).
    const SHOW: &str = "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+3)\nVersion: 6.1.192-3\nInstalled-Size: 13\nArchitecture: amd64\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nDescription: Linux for 64-bit PCs (meta-package)\n This package depends on the latest Linux kernel.\nSize: 1480\nSHA256: 5c3f\n\nPackage: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nArchitecture: amd64\nSize: 928188\n";

    #[test]
    fn the_kernel_package_is_the_metapackages_linux_image_dependency() {
        let meta = Package::from_stanza(SHOW).unwrap();
        assert_eq!(meta.name, "linux-image-amd64");
        assert_eq!(meta.version, "6.1.192-3");
        assert_eq!(meta.size, 1480);
        assert_eq!(meta.kernel_dependency().unwrap(), "linux-image-6.1.0-57-amd64");
        assert_eq!(release_of("linux-image-6.1.0-57-amd64").unwrap(), "6.1.0-57-amd64");
        assert!(release_of("busybox-static").is_err());
        let other = Package {
            depends: "kmod, linux-base (>= 4.3~), initramfs-tools | linux-initramfs-tool".into(),
            ..meta
        };
        let error = other.kernel_dependency().unwrap_err().to_string();
        assert!(error.contains("depends on no linux-image-* package"), "{error}");
    }

    #[test]
    fn the_deb_name_is_the_one_apt_get_download_writes() {
        let busybox = Package::from_stanza(SHOW.split("\n\n").nth(1).unwrap()).unwrap();
        assert_eq!(busybox.deb_name(), "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb");
        assert_eq!(busybox.depends, "");
        let kernel = Package {
            name: "linux-image-6.1.0-57-amd64".into(),
            version: "6.1.192-3".into(),
            architecture: "amd64".into(),
            size: 1,
            depends: String::new(),
        };
        assert_eq!(kernel.deb_name(), "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb");
    }

    #[test]
    fn a_stanza_without_a_version_is_refused() {
        let error = Package::from_stanza("Package: x\nArchitecture: amd64\nSize: 1\n").unwrap_err();
        assert!(error.to_string().contains("no `Version:` field"), "{error}");
    }
}
