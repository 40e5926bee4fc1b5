//! Benchmark (root task): instructions per `Untyped::retype` of one 4 KiB frame, timed by
//! the caller around the system call, and per child of an untyped revoked with 10,000 and
//! with 100,000 endpoint children (equal figures: revoke is linear). Run under QEMU `-icount shift=0`, where the TSC
//! counts instructions; `cargo xtask bench` reads the `bench` line.
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_abi::boot_info::slot;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::Untyped;
use cleave_rt::syscall::rdtsc;
use cleave_rt::{Cap, println};

cleave_rt::entry!(main);

const RUNS: usize = 64;

fn main() -> i32 {
    let info = boot_info();
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
    let untyped: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let root: Cap<cleave_rt::cap::kind::CNode> = Cap::from_cptr(slot::CNODE);
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
    // Revoke of an untyped with n endpoint children, for two n: linear if the figures
    // per child agree.
    let cnode = info.empty_first + RUNS as u64;
    if untyped.retype(ObjectType::CNode, 17, root, 0, 0, cnode, 1).is_err() {
        println!("TEST FAIL: CNode of 2^17 slots");
        return 1;
    }
    for (i, n) in [10_000u64, 100_000].into_iter().enumerate() {
        let children = cnode + 1 + i as u64;
        if untyped.retype(ObjectType::Untyped, 22, root, 0, 0, children, 1).is_err() {
            println!("TEST FAIL: 4 MiB untyped");
            return 1;
        }
        let endpoints: Cap<Untyped> = Cap::from_cptr(children);
        let mut made = 0;
        while made < n {
            let count = (n - made).min(256);
            if endpoints.retype(ObjectType::Endpoint, 0, root, cnode, 64, made, count).is_err() {
                println!("TEST FAIL: retype endpoints");
                return 1;
            }
            made += count;
        }
        let t0 = rdtsc();
        let result = CNode::revoke_slot(root, children);
        let t1 = rdtsc();
        if result.is_err() {
            println!("TEST FAIL: revoke");
            return 1;
        }
        println!(
            "bench untyped_revoke_per_child_{n} = {} instructions (revoking an untyped with {n} endpoint children, {} in all)",
            (t1 - t0 - overhead) / n,
            t1 - t0 - overhead
        );
    }
    println!("TEST PASS");
    0
}

/// The CNode operations the benchmark uses.
struct CNode;

impl CNode {
    fn revoke_slot(root: Cap<cleave_rt::cap::kind::CNode>, index: u64) -> Result<(), cleave_abi::Error> {
        Cap::<cleave_rt::cap::kind::CNode>::revoke(root.slot(index, 64))
    }
}
