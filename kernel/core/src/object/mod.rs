//! Kernel objects and capabilities: encoding, slots and the derivation tree, capability
//! addressing, and the operations that create, copy and destroy them.
//!
//! Everything here works on [`kmem::KernelMemory`], so the kernel runs it over its direct
//! map and `cargo test` runs it over a byte vector, including property tests of the
//! derivation tree's invariants.

pub mod cap;
pub mod cspace;
pub mod fastpath;
pub mod invoke;
pub mod ipc;
pub mod kmem;
pub mod paging;
pub mod sched;
pub mod slot;
pub mod space;
pub mod syscall;
pub mod tcb;
pub mod vcpu;
pub mod vspace;

#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ipc_tests;

#[cfg(test)]
mod hostile_tests;
