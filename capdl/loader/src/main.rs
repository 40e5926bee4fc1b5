//! The capDL loader: Cleave's root task. It reads the boot image built by `cleave image`
//! (the encoded specification and the components' ELF images), creates every object from
//! untyped memory, loads each component's image into its own address space, places
//! exactly the specified capabilities, starts the threads, reports a digest of what it
//! built, and stops itself.
//!
//! [`image`] reads the boot image, [`loader`] builds the spec step by step (objects,
//! device frames, threads, capabilities, mappings, start), [`machine`] finds the device
//! memory this machine has, and [`error`] says why a boot failed. What the loader decides
//! from the spec alone is in `cleave_capdl` (`binary`'s record and spec queries,
//! `untyped`), where host tests check it.
#![no_std]
#![no_main]

mod error;
mod image;
mod loader;
mod machine;

use cleave_abi::boot_info::slot;
use cleave_rt::cap::kind::{CNode, Tcb};
use cleave_rt::{Cap, println};
use image::Image;

cleave_rt::entry!(main);

static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/image.bin"));

fn main() -> i32 {
    let start = cleave_rt::syscall::rdtsc();
    cleave_rt::audit!("boot");
    let outcome = Image::parse(IMAGE).and_then(|image| {
        println!(
            "loader: specification with {} objects, {} capabilities, {} programs",
            image.spec.object_count(),
            image.spec.cap_count(),
            image.count
        );
        loader::load(&image).map(|built| (built, image.spec.digest()))
    });
    let (built, expected) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            println!("loader: boot failed: {e}");
            return 1;
        }
    };
    let ticks = cleave_rt::syscall::rdtsc() - start;
    let loader::Built { objects, threads, digest, memory, scratch } = built;
    println!("loader: built {objects} objects and started {threads} threads; digest {digest:#018x}");
    println!("loader: memory: {memory} bytes for the system, {scratch} for the loader's scratch tables");
    println!("loader: {} TSC ticks per object ({ticks} in all)", ticks / u64::from(objects.max(1)));
    if digest != expected {
        println!(
            "loader: TEST FAIL: built digest {digest:#018x} differs from the specification's {expected:#018x}"
        );
        return 1;
    }
    stop()
}

/// Gives up the authority nothing in the spec needs: creating IRQ handlers and I/O port
/// ranges and ASID pools, and every untyped capability nothing was made from (those with
/// children back the components' objects and stay). Then stops; no other thread holds this
/// thread or its CSpace, so what remains cannot be used.
fn stop() -> i32 {
    let info = cleave_rt::boot::boot_info();
    let mut dropped = 0;
    let untyped = (0..info.untyped_count).map(|i| info.untyped_first + i);
    let root: Cap<CNode> = Cap::from_cptr(slot::CNODE);
    for cptr in [slot::IRQ_CONTROL, slot::IO_PORT_CONTROL, slot::ASID_CONTROL].into_iter().chain(untyped) {
        if Cap::<CNode>::delete(root.slot(cptr, 64)).is_ok() {
            dropped += 1;
        }
    }
    println!("loader: dropped {dropped} capabilities it no longer needs; stopping");
    let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
    let _ = me.suspend();
    0
}
