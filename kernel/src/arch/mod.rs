//! Architecture support. One architecture so far.

pub mod x86_64;

pub use self::x86_64::{exit, global, serial, trap};
