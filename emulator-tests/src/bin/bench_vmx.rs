//! VT-x benchmark (root task, Bochs): a real-mode guest that executes CPUID forever; the
//! VMM (this program) enters it again at once after each exit, without moving it on. The
//! time stamp counter around `VmEnter` gives the instructions one CPUID exit costs on its
//! way to the VMM and back (kernel entry, VM entry, the guest's CPUID, VM exit, kernel
//! exit: Bochs counts one tick per instruction); the wall-clock rate of exits comes from
//! when the `start` and `done` lines reach the host (`cargo xtask bench` times them).
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::Untyped;
use cleave_rt::println;
use cleave_rt::syscall::{rdtsc, vm_enter};
use emulator_tests::{ROOT, largest_ram_untyped, real_mode_guest};

cleave_rt::entry!(main);

/// `cpuid` (the VMM never moves RIP on: the guest runs it again).
const GUEST_CODE: [u8; 2] = [0x0f, 0xa2];
/// Timed exits (the median is reported).
const SAMPLES: usize = 257;
/// Exits in the wall-clock rate run.
const RATE_EXITS: u64 = 20_000;

fn main() -> i32 {
    let info = boot_info();
    let first = info.empty_first;
    let (big, _) = largest_ram_untyped(info);
    if big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, first, 1).is_err() {
        println!("TEST FAIL: no memory for the benchmark");
        return 1;
    }
    let untyped: Cap<Untyped> = Cap::from_cptr(first);
    if let Err(e) = real_mode_guest(untyped, first + 1, &GUEST_CODE) {
        println!("TEST FAIL: guest set-up: {e:?}");
        return 1;
    }
    let overhead = (0..16).map(|_| rdtsc().wrapping_neg().wrapping_add(rdtsc())).min().unwrap_or(0);
    let mut samples = [0u64; SAMPLES];
    for sample in &mut samples {
        let t0 = rdtsc();
        let exit = vm_enter();
        let t1 = rdtsc();
        if exit.map(|w| w[0]) != Ok(cleave_abi::vcpu::exit::reason::CPUID) {
            println!("TEST FAIL: expected a CPUID exit, got {exit:?}");
            return 1;
        }
        *sample = t1 - t0 - overhead;
    }
    samples.sort_unstable();
    println!(
        "bench vmx.cpuid_exit_round_trip = {} instructions (Bochs TSC, median of {SAMPLES}; min {}, max {}; VmEnter to the VMM and back, the guest's CPUID included)",
        samples[SAMPLES / 2],
        samples[0],
        samples[SAMPLES - 1]
    );
    println!("bench-vmx: start");
    for _ in 0..RATE_EXITS {
        if vm_enter().is_err() {
            println!("TEST FAIL: VmEnter refused");
            return 1;
        }
    }
    println!("bench-vmx: done {RATE_EXITS} exits");
    println!("TEST PASS");
    0
}
