//! Panic test: a panicking program reports where and why, and its thread is stopped (the
//! runtime's panic handler turns the panic into a fault; with no fault handler the kernel
//! reports it and carries on).
#![no_std]
#![no_main]

cleave_rt::entry!(main);

fn main() -> i32 {
    let reason = core::hint::black_box("deliberate panic");
    panic!("{reason}")
}
