//! The smallest test program: booted as the root task (`qemu-run-hello`, and the boot
//! figures of `cargo xtask bench`), it greets from ring 3, checks that it is there and
//! exits.
#![no_std]
#![no_main]

use cleave_rt::{println, syscall};
use emulator_tests::Suite;

cleave_rt::entry!(main);

fn main() -> i32 {
    let level = syscall::privilege_level();
    println!("hello: Hello from ring 3! (privilege level {level})");
    let mut t = Suite::plan(1);
    t.case("privilege-level-3", emulator_tests::check(level == 3, "not in ring 3"));
    t.finish()
}
