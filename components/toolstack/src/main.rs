//! The toolstack, first form: writes a few keys into XenStore-State over its channel, reads
//! them back, passes a message through a shared page, asks the VGA driver about the display
//! adapter, checks that it holds nothing else, and
//! ends the run (it is the last thing `cargo xtask run` does).
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println, syscall};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// What the toolstack passes to xenstore-state through the shared `xs-ring` page.
const MESSAGE: &[u8] = b"vm alice: memory 0x1000, vcpus 2";
const _: () = assert!(MESSAGE.len() <= caps::REGION_XS_RING_SIZE, "the message must fit the shared page");

fn main() -> i32 {
    for (name, slot, what) in caps::CAPS {
        println!("toolstack: cap {slot}: {name} ({what})");
    }
    for (name, address, bytes, rights) in caps::REGIONS {
        println!("toolstack: region {name} at {address:#x}, {} KiB, {rights}", bytes / 1024);
    }
    let store: Cap<Endpoint> = Cap::from_cptr(caps::XS_REQUEST);
    let domains = [(1u64, 0x1000u64), (2, 0x2000), (7, 0x7000)];
    for (domain, memory) in domains {
        match store.call(MessageInfo::new(1, 0, 0, 2), [domain, memory, 0, 0]) {
            Ok(m) if m.info.label() == 0 => {}
            other => {
                println!("toolstack: TEST FAIL: write {domain} -> {other:?}");
                syscall::debug_exit(1);
            }
        }
    }
    let mut good = 0;
    for (domain, memory) in domains.into_iter().chain([(9, 0)]) {
        match store.call(MessageInfo::new(2, 0, 0, 1), [domain, 0, 0, 0]) {
            Ok(m) if m.words[0] == 1 && m.words[1] == memory => good += 1,
            Ok(m) if m.words[0] == 0 && memory == 0 => good += 1,
            other => println!("toolstack: read {domain}: unexpected {other:?}"),
        }
    }
    println!("toolstack: {good} of 4 answers from xenstore-state were right");
    // Shared memory: write a message into `xs-ring`, ask xenstore-state for its digest.
    let message = MESSAGE;
    for (i, byte) in message.iter().enumerate() {
        // SAFETY: the loader mapped `xs-ring` read-write at REGION_XS_RING for
        // REGION_XS_RING_SIZE bytes; the message is shorter than that. Volatile: the other
        // side reads it.
        unsafe { ((caps::REGION_XS_RING + i) as *mut u8).write_volatile(*byte) }
    }
    let expected = message
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let shared = match store.call(MessageInfo::new(3, 0, 0, 1), [message.len() as u64, 0, 0, 0]) {
        Ok(m) if m.info.label() == 0 && m.words[0] == expected => true,
        other => {
            println!("toolstack: ring digest: unexpected {other:?} (expected {expected:#x})");
            false
        }
    };
    println!(
        "toolstack: xenstore-state read {} bytes from the shared page at {:#x}: {}",
        message.len(),
        caps::REGION_XS_RING,
        if shared { "same bytes" } else { "different bytes" }
    );
    // The display adapter, through its driver: the toolstack cannot touch the device itself.
    let vga: Cap<Endpoint> = Cap::from_cptr(caps::VGA_QUERY);
    let display = match vga.call(MessageInfo::new(1, 0, 0, 0), [0; 4]) {
        Ok(m) if m.info.label() == 0 => {
            println!(
                "toolstack: display adapter: VBE id {:#x}, EDID header {}",
                m.words[0],
                if m.words[1] == 1 { "valid" } else { "invalid" }
            );
            (0xb0c0..=0xb0cf).contains(&m.words[0]) && m.words[1] == 1
        }
        other => {
            println!("toolstack: vga: unexpected {other:?}");
            false
        }
    };
    // Every other slot of its CNode is empty: probing them must fail.
    let (refused, probed) = cleave_rt::cap::probe_ungiven_slots(caps::CAPS, 256);
    println!("toolstack: {refused} of {probed} ungiven slots refused");
    if good == 4 && shared && display && refused == probed {
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: toolstack");
        1
    }
}
