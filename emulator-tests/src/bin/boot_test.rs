//! Boot test: checks that the kernel built the address space it promised (ring 3, data
//! initialised from the image, bss zeroed, a working stack), one case each.
#![no_std]
#![no_main]

use cleave_rt::{println, syscall};
use emulator_tests::{Suite, check};

cleave_rt::entry!(main);

static INITIALISED: [u32; 4] = [0xc1ea_0e00, 1, 2, 3];
static mut ZEROED: [u64; 512] = [0; 512];

fn recurse(depth: u32) -> u32 {
    let local = core::hint::black_box([depth as u8; 64]);
    if depth == 0 { 0 } else { recurse(depth - 1) + 1 + u32::from(local[63] != depth as u8) }
}

fn main() -> i32 {
    println!("boot-test: Hello from ring 3!");
    let mut t = Suite::plan(5);
    t.case("running-in-ring-3", check(syscall::privilege_level() == 3, "not in ring 3"));
    t.case(
        "data-initialised-from-the-image",
        check(core::hint::black_box(&INITIALISED)[0] == 0xc1ea_0e00, "wrong initial value"),
    );
    let zeroed = (&raw mut ZEROED).cast::<u64>();
    // SAFETY: in bounds of the 512-word static; single-threaded, no reference to it exists.
    let all_zero = (0..512).all(|i| unsafe { zeroed.add(i).read_volatile() } == 0);
    t.case("bss-zeroed", check(all_zero, "a word of bss is not zero"));
    // SAFETY: as above.
    let written = unsafe {
        zeroed.add(511).write_volatile(7);
        zeroed.add(511).read_volatile()
    };
    t.case("bss-writable", check(written == 7, "a write to bss did not stick"));
    t.case("stack-holds-400-nested-frames", check(recurse(400) == 400, "wrong depth"));
    t.finish()
}
