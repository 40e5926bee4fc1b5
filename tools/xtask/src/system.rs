//! What `cargo xtask run` takes from `system.toml`: the file is checked by `cleave` (errors
//! as snippets with file, line and column), and `[system] root` names the program the
//! kernel boots as the root task (normally `loader`, the capDL loader).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Reads and checks `path`.
fn load(path: &Path) -> Result<cleave::system::SystemFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    cleave::system::load(&text).map_err(|errors| {
        anyhow::anyhow!("{}", cleave::diagnostic::render(&errors, &path.display().to_string(), &text))
    })
}

/// The guests `path` describes that start at boot (not `start = "on-request"`: those run
/// only when the operator creates them).
pub fn boot_guest_names(path: &Path) -> Result<Vec<String>> {
    Ok(load(path)?.guests.iter().filter(|(_, g)| !g.on_request()).map(|(k, _)| k.get_ref().clone()).collect())
}

/// The sum of the memory of the guests `path` describes, bytes.
pub fn guests_memory(path: &Path) -> Result<u64> {
    Ok(load(path)?.guests.values().filter_map(|g| cleave::system::parse_size(g.memory.get_ref())).sum())
}

/// The machine disks `path` needs (`cleave::layout::machine_disks`), in the order they
/// are attached.
pub fn machine_disks(path: &Path) -> Result<Vec<cleave::layout::MachineDisk>> {
    Ok(cleave::layout::machine_disks(&load(path)?))
}

/// Whether a guest of `path` has the machine's second serial port as its console.
pub fn has_com2_console(path: &Path) -> Result<bool> {
    Ok(load(path)?.guests.values().any(|g| g.console.as_ref().is_some_and(|c| c.get_ref() == "com2")))
}

/// Whether a guest of `path` runs the Linux image.
pub fn has_linux_guest(path: &Path) -> Result<bool> {
    Ok(load(path)?.guests.values().any(|g| g.image.get_ref() == crate::artifacts::LINUX_IMAGE))
}

/// The first guest of `path` that starts on request with its console relayed by the
/// toolstack (`console = "ctl"`), if any: the host's `cleave ctl` session drives it.
pub fn ctl_console_guest(path: &Path) -> Result<Option<String>> {
    Ok(load(path)?
        .guests
        .iter()
        .find(|(_, g)| g.on_request() && g.console_relayed())
        .map(|(k, _)| k.get_ref().clone()))
}

/// The other guests of `path` that start on request (beside [`ctl_console_guest`]'s): the
/// host's guest session makes them first, for its guest to reach.
pub fn ctl_peer_guests(path: &Path) -> Result<Vec<String>> {
    let file = load(path)?;
    Ok(file
        .guests
        .iter()
        .filter(|(_, g)| g.on_request() && !g.console_relayed())
        .map(|(k, _)| k.get_ref().clone())
        .collect())
}

/// Whether a component of `path` may end the run (`ends-run = true`).
pub fn ends_run(path: &Path) -> Result<bool> {
    Ok(load(path)?.components.values().any(|c| c.ends_run.as_ref().is_some_and(|e| *e.get_ref())))
}

/// Reads and checks `path`; returns the root task's program name.
pub fn root_program(path: &Path) -> Result<String> {
    let file = load(path)?;
    match file.system {
        Some(system) => Ok(system.root.into_inner()),
        None => bail!("{}: no [system] root: name the program the kernel boots", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_system_toml_names_a_root() {
        let root = crate::workspace_root().join("system.toml");
        assert_eq!(root_program(&root).unwrap(), "loader");
    }

    #[test]
    fn each_system_names_its_own_programs() {
        let root = crate::workspace_root();
        let product = crate::artifacts::programs_of(&root.join("system.toml")).unwrap();
        assert!(product.guests == ["guest-hello"] && product.vmm, "{product:?}");
        assert_eq!(boot_guest_names(&root.join("system.toml")).unwrap(), ["alice", "bob", "mallory"]);
        for name in ["toolstack", "xenstore-logic", "vga", "supervisor"] {
            assert!(product.components.iter().any(|c| c == name), "{name} missing: {product:?}");
        }
        // The guest system names its VMM and guest image, and no component of the product's.
        let guests = crate::artifacts::programs_of(&root.join("systems/guests.toml")).unwrap();
        assert_eq!(guests.guests, ["guest-hello"]);
        assert!(guests.vmm && guests.components.is_empty(), "{guests:?}");
    }

    #[test]
    fn errors_point_into_the_file() {
        let dir = std::env::temp_dir().join(format!("xtask-system-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("system.toml");
        std::fs::write(&path, "[system]\nroot = \"hello\"\nroots = 1\n").unwrap();
        let err = format!("{:#}", root_program(&path).unwrap_err());
        assert!(err.contains("system.toml:3:1: unknown field `roots`"), "{err}");
        std::fs::write(&path, "[components.a]\n").unwrap();
        let err = format!("{:#}", root_program(&path).unwrap_err());
        assert!(err.contains("no [system] root"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
