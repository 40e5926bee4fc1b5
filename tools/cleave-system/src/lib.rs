//! `cleave-system`: reads and checks a system description (`system.toml`), compiles it
//! into a capDL specification, lays out components, packs the boot image and generates
//! components' constants. It has no command-line dependencies, so component build
//! scripts can use it; the `cleave` CLI adds rendering, graphs, the daemon and the rest.
#![forbid(unsafe_code)]

pub mod codegen;
pub mod compile;
pub mod error;
pub mod exposure;
pub mod image;
pub mod layout;
pub mod memory;
pub mod privileges;
mod schema;
pub mod system;
