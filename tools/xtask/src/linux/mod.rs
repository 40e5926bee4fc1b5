//! Cleave's Linux guest: Debian 12's stock kernel and a busybox initramfs, both made from
//! Debian's packages by `cargo xtask` (doc/linux-guest.md), and the baseline: that kernel
//! booted directly in QEMU, without Cleave.
//!
//! Everything lands in `target/linux/`: the packages (`debs/`), their files (`root/`),
//! `vmlinuz` (the package's bzImage) and `initramfs.cpio.gz`.

pub mod baseline;
mod cpio;
mod debian;
mod gdb;
pub mod initramfs;
pub mod io_bench;
pub mod under_cleave;

pub use baseline::{Misbehave, run_baseline};
pub use initramfs::{INIT_DONE, PROMPT, TEST_FILE};

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The kernel command line the guest boots with, under Cleave and in the baseline: the
/// console on the first 16550, PIC mode (no local APIC, no ACPI, no MSI), and a TSC taken
/// as reliable (its rate comes separately, as `tsc_early_khz=`).
pub const CMDLINE: &str = "console=ttyS0 nolapic acpi=off pci=nomsi tsc=reliable";

/// Kernel options the guest depends on, each of which must be `y` in the package's
/// `/boot/config-RELEASE`: an initramfs, gzip-compressed; devtmpfs for `/dev`; `/dev/mem`
/// for the hostile variant's unmapped access; the console on a 16550.
const REQUIRED_CONFIG: &[&str] = &[
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_GZIP",
    "CONFIG_DEVTMPFS",
    "CONFIG_DEVMEM",
    "CONFIG_SERIAL_8250_CONSOLE",
];

/// The guest, ready to boot.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The kernel package's bzImage (`target/linux/vmlinuz`).
    pub kernel: PathBuf,
    /// The gzip-compressed `newc` initramfs (`target/linux/initramfs.cpio.gz`).
    pub initramfs: PathBuf,
    /// The size of the cpio archive inside the initramfs.
    pub initramfs_cpio_bytes: u64,
    /// What `uname -r` prints in the guest (`6.1.0-57-amd64`).
    pub release: String,
    /// The kernel package and its version (`linux-image-6.1.0-57-amd64 6.1.192-3`).
    pub kernel_package: String,
    /// busybox's package and version.
    pub busybox_package: String,
    /// The SHA-256 (hex) of the initramfs's [`TEST_FILE`], as the host computes it.
    pub test_file_sha256: String,
}

/// Fetches and unpacks the packages (once), copies the kernel to `target/linux/vmlinuz` and
/// builds `target/linux/initramfs.cpio.gz` (again only when its contents change).
pub fn prepare() -> Result<Guest> {
    let dir = crate::workspace_root().join("target").join("linux");
    let fetched = debian::fetch(&dir)?;
    let config_path = fetched.root.join(format!("boot/config-{}", fetched.release));
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    check_config(&config).with_context(|| format!("{} does not fit the guest", config_path.display()))?;
    let kernel = dir.join("vmlinuz");
    let image = fetched.root.join(format!("boot/vmlinuz-{}", fetched.release));
    let bytes = std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
    if std::fs::read(&kernel).ok().as_ref() != Some(&bytes) {
        std::fs::write(&kernel, &bytes).with_context(|| format!("writing {}", kernel.display()))?;
    }
    let initramfs = initramfs::build(&fetched, &dir.join("initramfs.cpio.gz"))?;
    Ok(Guest {
        kernel,
        initramfs: initramfs.path,
        initramfs_cpio_bytes: initramfs.cpio_bytes,
        release: fetched.release,
        kernel_package: format!("{} {}", fetched.kernel.name, fetched.kernel.version),
        busybox_package: format!("{} {}", fetched.busybox.name, fetched.busybox.version),
        test_file_sha256: initramfs::sha256_hex(&initramfs::test_file()),
    })
}

/// Fails unless every option in [`REQUIRED_CONFIG`] is `y` in the kernel configuration `text`.
fn check_config(text: &str) -> Result<()> {
    let missing: Vec<&str> = REQUIRED_CONFIG
        .iter()
        .copied()
        .filter(|option| !text.lines().any(|l| l == format!("{option}=y")))
        .collect();
    anyhow::ensure!(missing.is_empty(), "the kernel lacks {}", missing.join(", "));
    Ok(())
}

/// `cargo xtask linux-guest`: makes the guest and says what it is.
pub fn run_prepare() -> Result<()> {
    let guest = prepare()?;
    describe(&guest)
}

/// Prints the packages and the files made from them.
fn describe(guest: &Guest) -> Result<()> {
    println!(
        "linux: kernel {} (uname -r {}), {}",
        guest.kernel_package, guest.release, guest.busybox_package
    );
    let size =
        |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).with_context(|| format!("{}", p.display()));
    println!("linux: {} ({} bytes)", guest.kernel.display(), size(&guest.kernel)?);
    println!(
        "linux: {} ({} bytes; {} bytes of cpio)",
        guest.initramfs.display(),
        size(&guest.initramfs)?,
        guest.initramfs_cpio_bytes
    );
    println!("linux: {TEST_FILE} has SHA-256 {}", guest.test_file_sha256);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_configuration_must_have_every_option_the_guest_needs() {
        let all: String = REQUIRED_CONFIG.iter().map(|o| format!("{o}=y\n")).collect();
        check_config(&all).unwrap();
        let text = all
            .replace("CONFIG_RD_GZIP=y", "# CONFIG_RD_GZIP is not set")
            .replace("CONFIG_DEVMEM=y", "CONFIG_DEVMEM=m");
        let error = check_config(&text).unwrap_err().to_string();
        assert_eq!(error, "the kernel lacks CONFIG_RD_GZIP, CONFIG_DEVMEM");
    }
}
