//! The supervisor: what cleave adds to a system with `lifetime = "disposable"` components
//! (`cleave::compile`). It holds exactly its own CNode, a notification those components
//! signal when they are done, and per disposable component the untyped memory everything
//! of it was made from (its TCB, CNode, address space, program pages, stack, and the
//! endpoints it serves). On a component's signal it revokes that untyped: the kernel
//! destroys all of it, and every capability others held to it is gone; then it makes a
//! frame from the same memory to show it is free again, writes `dispose` to the audit log,
//! and waits for the next.
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_rt::cap::kind::{CNode, Notification, Untyped};
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "the per-component untyped slots are found through CAPS, by name")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Radix of its CNode (the slot depth for CNode invocations on it).
const DEPTH: u64 = 8;
/// A slot nothing is given in, where the proof-of-reuse frame goes for a moment.
const SCRATCH_SLOT: u64 = 255;

fn main() -> i32 {
    cleave_rt::cap::report_authority("supervisor", caps::CAPS, caps::REGIONS);
    if !cleave_rt::cap::report_ungiven("supervisor", caps::CAPS) {
        return 1;
    }
    let cnode: Cap<CNode> = Cap::from_cptr(caps::CNODE);
    let done: Cap<Notification> = Cap::from_cptr(caps::DONE);
    // The disposable components, in the order of their badge bits.
    let mut disposable = [("", 0u64); 32];
    let mut count = 0;
    for &(name, slot, _) in caps::CAPS {
        if let Some(component) = name.strip_suffix("-untyped")
            && count < disposable.len()
        {
            disposable[count] = (component, slot);
            count += 1;
        }
    }
    let mut left = count;
    while left > 0 {
        let bits = match done.wait() {
            Ok(bits) => bits,
            Err(e) => {
                println!("supervisor: waiting failed: {e}");
                return 1;
            }
        };
        for (i, entry) in disposable[..count].iter_mut().enumerate() {
            let (name, slot) = *entry;
            if bits & (1 << i) == 0 || slot == 0 {
                continue;
            }
            if let Err(e) = Cap::<CNode>::revoke(cnode.slot(slot, DEPTH)) {
                println!("supervisor: cannot dispose of `{name}`: {e}");
                continue;
            }
            cleave_rt::audit!("dispose {name}#1");
            println!("supervisor: `{name}` is done: revoked the untyped it was made from; it is gone");
            let untyped: Cap<Untyped> = Cap::from_cptr(slot);
            match untyped.retype(ObjectType::Frame4K, 0, cnode, 0, 0, SCRATCH_SLOT, 1) {
                Ok(()) => {
                    println!("supervisor: `{name}`'s memory is free again: a new frame was made from it");
                    let _ = Cap::<CNode>::delete(cnode.slot(SCRATCH_SLOT, DEPTH));
                }
                Err(e) => println!("supervisor: `{name}`'s memory cannot be reused: {e}"),
            }
            entry.1 = 0;
            left -= 1;
        }
    }
    println!("supervisor: every disposable component is gone");
    // Nothing more to supervise: wait forever (returning would end the run).
    loop {
        let _ = done.wait();
    }
}
