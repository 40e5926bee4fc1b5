//! What `cargo xtask run` takes from `system.toml` until the capDL pipeline compiles it:
//! the program that boots as the root task.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SystemFile {
    system: System,
}

/// The `[system]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct System {
    /// The user program the kernel loads from the first boot module and runs in ring 3.
    pub root: String,
}

/// Reads the `[system]` table of `path`.
pub fn read(path: &Path) -> Result<System> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

fn parse(text: &str) -> Result<System> {
    Ok(toml::from_str::<SystemFile>(text)?.system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_root() {
        assert_eq!(parse("[system]\nroot = \"hello\"\n").unwrap().root, "hello");
    }

    #[test]
    fn rejects_unknown_keys_and_missing_root() {
        let err = format!("{:#}", parse("[system]\nroot = \"hello\"\nroots = 1\n").unwrap_err());
        assert!(err.contains("unknown field `roots`"), "{err}");
        let err = format!("{:#}", parse("[system]\n").unwrap_err());
        assert!(err.contains("missing field `root`"), "{err}");
    }
}
