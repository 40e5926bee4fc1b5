//! Bad-syscall test: a system call number the kernel does not implement must fault the
//! thread (reported by the kernel), not return.
#![no_std]
#![no_main]

use cleave_rt::{println, syscall};

cleave_rt::entry!(main);

fn main() -> i32 {
    println!("bad-syscall: calling system call 0xdead");
    let result = syscall::raw_syscall(0xdead);
    println!("TEST FAIL: unknown system call returned {result:#x}");
    1
}
