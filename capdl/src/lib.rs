//! capDL — the Capability Distribution Language — as Cleave uses it: the specification
//! model (kernel objects and who holds which capability to them), seL4's text syntax for
//! it (read and written, so that people and tools that know capDL can use Cleave's specs),
//! and validation with errors that name the object and capability.
//!
//! The text syntax follows seL4's capDL tool: an `arch` line, then `objects { }`,
//! `caps { }` and `irq maps { }` sections in any order; `--` and nested `/* */` comments;
//! rights letters `R W G P` (`X` read as grant); `badge:`, `guard:`, `guard_size:`;
//! numeric and symbolic slots. `text::write` produces one canonical form, and
//! `text::read(text::write(spec)) == spec`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod binary;
#[cfg(feature = "alloc")]
pub mod model;
#[cfg(feature = "alloc")]
pub mod text;
#[cfg(feature = "alloc")]
pub mod validate;
