//! `system.toml`: reading a description (`load`) and the checks that make it valid. Its
//! types and value readers (`schema`) are re-exported here, so that a user of this crate
//! finds the description and what may be asked of it in one place. The reference for
//! users is `doc/system-toml.md`.

mod check;
pub mod instances;
mod limits;
pub mod pci;

use crate::error::SystemError;
pub use crate::schema::{
    Channel, Component, Device, Guest, Mmio, Policy, Region, Restart, SharedRegion, SystemFile,
    SystemSection, parse_duration_ms, parse_ports, parse_size, ring_name, shared_regions,
};
pub use check::check;
pub use check::components::{MAX_COMPONENT_MEMORY, MAX_PRIORITY, MIN_PRIORITY};
pub use check::devices::{KERNEL_IRQS, KERNEL_PORTS};
pub use check::policy::glob;
use std::ops::Range;
use toml::Spanned;

/// The programs the build makes (found by build.rs in the workspace).
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// Where in the text a value was written: what an error about it points at.
fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

/// Reads and checks `text`. Returns the description, with each per-guest component
/// replaced by its instances ([`instances::expand`]), or every error found.
pub fn load(text: &str) -> Result<SystemFile, Vec<SystemError>> {
    let file: SystemFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = text.get(span.clone()).unwrap_or("").trim().to_string();
        vec![SystemError::new(
            if key.is_empty() { "(file)".into() } else { key },
            span,
            e.message().to_string(),
        )]
    })?;
    let errors = check(&file);
    if !errors.is_empty() {
        return Err(errors);
    }
    // Per-guest components become their instances; what they are must check too (the
    // policy, the limits that count components, the layouts of each instance).
    let file = pci::expand(instances::expand(file));
    let errors = check(&file);
    if !errors.is_empty() {
        return Err(errors);
    }
    let errors = limits::loader_limits(&file);
    if errors.is_empty() { Ok(file) } else { Err(errors) }
}
