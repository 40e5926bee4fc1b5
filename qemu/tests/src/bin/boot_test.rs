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
    // SAFETY: single-threaded program; no other reference to ZEROED exists.
    let zeroed = unsafe { &mut *(&raw mut ZEROED) };
    check("bss zeroed", zeroed.iter().all(|&w| w == 0));
    zeroed[511] = 7;
    check("bss writable", core::hint::black_box(&zeroed)[511] == 7);
    check("stack holds 400 nested frames", recurse(400) == 400);
    if failures == 0 {
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: {failures} checks failed");
        1
    }
}
