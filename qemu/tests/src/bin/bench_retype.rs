//! Benchmark (root task): instructions per `Untyped::retype` of one 4 KiB frame, timed by
//! the caller around the system call. Run under QEMU `-icount shift=0`, where the TSC
//! counts instructions; `cargo xtask bench` reads the `bench` line.
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_abi::boot_info::slot;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Untyped};
use cleave_rt::syscall::rdtsc;
use cleave_rt::{Cap, println};

cleave_rt::entry!(main);

const RUNS: usize = 64;

fn main() -> i32 {
    let info = boot_info();
    let (_, biggest) = cleave_tests::largest_ram_untyped(info);
    let untyped: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let root: Cap<CNode> = Cap::from_cptr(slot::CNODE);
    // The cost of the two timer reads themselves.
    let overhead = (0..8).map(|_| {
        let t0 = rdtsc();
        let t1 = rdtsc();
        t1 - t0
    });
    let overhead = overhead.min().unwrap_or(0);
    let mut samples = [0u64; RUNS];
    for (i, sample) in samples.iter_mut().enumerate() {
        let dest = info.empty_first + i as u64;
        let t0 = rdtsc();
        let result = untyped.retype(ObjectType::Frame4K, 0, root, 0, 0, dest, 1);
        let t1 = rdtsc();
        if let Err(e) = result {
            println!("TEST FAIL: retype {i} failed: {e:?}");
            return 1;
        }
        *sample = t1 - t0 - overhead;
    }
    samples.sort_unstable();
    println!(
        "bench untyped_retype_frame4k = {} instructions (median of {RUNS}; min {}, max {})",
        samples[RUNS / 2],
        samples[0],
        samples[RUNS - 1]
    );
    println!("TEST PASS");
    0
}
