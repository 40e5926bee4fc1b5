//! `cleave`: compiles `system.toml` — which components exist, what they may talk to, what
//! memory and devices they share, which guests they serve, under which policy — into a
//! capDL specification, and answers questions about it (privileges, exposure).
//!
//! Every error in `system.toml` points at the file, line, column and key, as a snippet.
#![forbid(unsafe_code)]

pub mod audit;
pub mod ctl;
pub mod diagnostic;
pub mod graph;

pub use cleave_system::{codegen, compile, exposure, image, layout, memory, privileges, system};
