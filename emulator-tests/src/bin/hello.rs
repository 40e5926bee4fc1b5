//! The smallest test program: booted as the root task (`qemu-run-hello`, and the boot
//! figures of `cargo xtask bench`), it greets from ring 3 and exits.
#![no_std]
#![no_main]

use cleave_rt::{println, syscall};

cleave_rt::entry!(main);

fn main() -> i32 {
    println!("hello: Hello from ring 3! (privilege level {})", syscall::privilege_level());
    0
}
