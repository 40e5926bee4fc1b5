//! capDL — the Capability Distribution Language — as Cleave uses it: the specification
//! model (kernel objects and who holds which capability to them), seL4's text syntax for
//! it (read and written, so that people and tools that know capDL can use Cleave's specs),
//! and validation with errors that name the object and capability.
//!
//! The text syntax is seL4's capDL tool's, the whole x86 grammar (see [`text`] and
//! `doc/capdl.md`): an `arch` line, then `objects { }`, `caps { }`, `cdt { }`, `irq maps { }`
//! and `domains { }` sections in any order. `text::write` produces one canonical form, and
//! `text::read(text::write(spec)) == spec`. The encoder ([`binary`]) refuses, by name, what
//! Cleave's loader cannot build.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod binary;
pub mod image;
#[cfg(feature = "alloc")]
pub mod model;
#[cfg(feature = "alloc")]
pub mod text;
pub mod untyped;
#[cfg(feature = "alloc")]
pub mod validate;
