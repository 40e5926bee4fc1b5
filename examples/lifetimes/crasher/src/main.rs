//! The crasher: deliberately faulty, and hostile. Of every three instances, the first
//! reads address 0 (never mapped) as soon as it starts; the second tries to end the whole
//! run (returning 1 from `main`, which asks the kernel's `DebugExit`) without having been
//! allowed to: the kernel ends only the thread, and tells its fault handler (`EXITED`,
//! status 1: a failure); the third returns 0, claiming its work is done so that its timed
//! restarts stop: only a guest I/O backend whose guests are all gone may end for good, so
//! the supervisor takes that for a crash too. Every time, its fault goes to the supervisor,
//! which restarts it from its pristine memory after a backoff that doubles while it keeps
//! crashing, so that a crash loop cannot starve the components below its priority.
#![no_std]
#![no_main]

// It holds no capabilities it uses; its generated module says so.
#[allow(dead_code, reason = "CAPS and REGIONS are for reports this component does not print")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

fn main() -> i32 {
    let instance = cleave_rt::instance();
    match instance % 3 {
        2 => {
            cleave_rt::println!("crasher: instance {instance} tries to end the whole run");
            return 1;
        }
        0 => {
            cleave_rt::println!("crasher: instance {instance} says it is done, to stop its restarts");
            return 0;
        }
        _ => {}
    }
    let value: u64;
    // SAFETY: reads one word at virtual address 0, which no component has mapped (the
    // user layout keeps the first pages empty): the read faults and this thread stops
    // there, which is this component's purpose. Nothing in Rust's view of memory changes.
    unsafe { core::arch::asm!("mov {}, qword ptr [0]", out(reg) value, options(nostack, readonly)) }
    value as i32
}
