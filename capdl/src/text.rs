//! seL4's capDL text syntax: a reader (with line and column in every error) and a writer
//! that produces one canonical form.
//!
//! The reader takes the whole grammar of seL4's capDL tool for x86 (`arch x86_64`, and
//! `arch ia32`, whose object names are the same), in the forms seL4's Haskell tool and its
//! Python library (which CAmkES uses) write and in the forms people write by hand:
//!
//! - objects of every x86 type (`ep`, `notification`, `tcb`, `cnode`, `ut`, `frame`, `pt`,
//!   `pd`, `pdpt`, `pml4`, `asid_pool`, `irq`, `ioapic_irq`, `msi_irq`, `io_ports`,
//!   `io_device`, `io_pt`, `vcpu`, `sc`, `rtreply`) with all their parameters (a TCB's
//!   `addr`, `ip`, `sp`, `prio`, `max_prio`, `affinity`, `resume`, `fpu_disabled`, `dom`,
//!   `fault_ep`, `init`; a PCI address `bus:dev.fun`), and Cleave's additions (`ept_pml4`,
//!   `ept_pdpt`, `ept_pd`, `ept_pt`; a TCB's `elf`, `lifetime`, `restart_ms`, `ends_run`,
//!   `quiet`);
//! - untyped covers: `u = ut (N bits) { a, f[0..3], g[] }`, objects declared inside the
//!   braces (nested to [`MAX_NESTING`]), paths (`u/v/x = tcb`: `u` covers `v`, which covers
//!   `x`), and an element of an array of untypeds named again with what it covers
//!   (`u[2] = ut (12 bits) { … }`); the names may be declared anywhere in the file;
//! - capabilities with every parameter (rights `R W G P`, `X` read as grant; `badge`,
//!   `guard`, `guard_size`, `cached`/`uncached`, `asid: (high, low)`, `mapping: (table,
//!   slot)`, `reply`, `master_reply`, `core`), numeric and symbolic slots, ranges
//!   (`f[0..3, 5, 7..]`, `f[..2]`, `f[]`) for targets and containers, the special targets
//!   (`irq_control`, `asid_control`, `io_space_master`, `domain`, `sched_control`);
//! - capability names (`slot: name = target`, `name[] = f[]`, `name = (object, slot)`) and
//!   copies (`<name> (masked: R)`), which the reader resolves: the model holds the copied
//!   capability, its rights cut by the mask;
//! - the derivation tree (`cdt { (a, 1) { (b, 2) } }` and `- child_of` after a capability),
//!   `irq maps` with ranges, and `domains { schedule: … }`.
//!
//! Arm's object types (`arm_irq`, `pud`, `pgd`, …) are refused with a message that says so.
//!
//! The reader takes hostile text: every number is checked before it is narrowed or
//! multiplied (indices and array sizes fit 32 bits, sizes in bits are at most 64, frame
//! sizes fit 64 bits, slot and IRQ numbering stops at 2^64), a range must lie in an array
//! (declared before it; for covers, anywhere in the file), nesting is bounded, and a file
//! builds at most [`MAX_CAPS`] capabilities and [`MAX_ENTRIES`] other entries, so what it
//! builds is bounded by the length of the text. `write` produces one canonical form, and
//! `read(write(spec)) == spec` for every spec `read` returns.

mod lex;
mod read;
mod write;

pub use write::write;

use alloc::string::String;
use core::fmt;

/// A syntax error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// The most capabilities one file may hold. Ranges (`f[0..N]`) multiply text into
/// capabilities, so the reader bounds what it builds; a million is well beyond any
/// system seL4's or Cleave's tools describe.
pub const MAX_CAPS: usize = 1 << 20;

/// The most other entries one file may build, together: objects covered by untypeds, IRQ
/// mappings, capability names, derivations, domain schedule entries and containers named by
/// ranges.
pub const MAX_ENTRIES: usize = 1 << 20;

/// How deep untyped covers (`ut { ut { … } }`) and the derivation tree may nest.
pub const MAX_NESTING: usize = 64;

/// Reads a capDL text specification.
pub fn read(text: &str) -> Result<crate::model::Spec, ParseError> {
    let tokens = lex::lex(text)?;
    let lines = text.lines().count().max(1);
    let last_len = text.lines().last().map_or(0, |l| l.chars().count());
    read::Parser::new(tokens, (lines, last_len + 1)).spec()
}

#[cfg(test)]
mod tests;
