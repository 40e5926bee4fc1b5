//! Boot test: checks that the kernel built the address space it promised (ring 3, data
//! initialised from the image, bss zeroed, a working stack) and reports TEST PASS.
#![no_std]
#![no_main]

use cleave_rt::{println, syscall};

cleave_rt::entry!(main);

static INITIALISED: [u32; 4] = [0xc1ea_0e00, 1, 2, 3];
static mut ZEROED: [u64; 512] = [0; 512];

fn recurse(depth: u32) -> u32 {
    let local = core::hint::black_box([depth as u8; 64]);
    if depth == 0 { 0 } else { recurse(depth - 1) + 1 + u32::from(local[63] != depth as u8) }
}

fn main() -> i32 {
    println!("boot-test: Hello from ring 3!");
    let mut failures = 0;
    let mut check = |what: &str, ok: bool| {
        println!("boot-test: {what}: {}", if ok { "ok" } else { "WRONG" });
        if !ok {
            failures += 1;
        }
    };
    check("running in ring 3", syscall::privilege_level() == 3);
    check("data initialised from the image", core::hint::black_box(&INITIALISED)[0] == 0xc1ea_0e00);
    let zeroed = (&raw mut ZEROED).cast::<u64>();
    // SAFETY: in bounds of the 512-word static; single-threaded, no reference to it exists.
    let all_zero = (0..512).all(|i| unsafe { zeroed.add(i).read_volatile() } == 0);
    check("bss zeroed", all_zero);
    // SAFETY: as above.
    let written = unsafe {
        zeroed.add(511).write_volatile(7);
        zeroed.add(511).read_volatile()
    };
    check("bss writable", written == 7);
    check("stack holds 400 nested frames", recurse(400) == 400);
    if failures == 0 {
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: {failures} checks failed");
        1
    }
}
