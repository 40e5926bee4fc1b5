//! The Builder, as Xoar cut it out of Xen's control VM: the only component that can make
//! guest memory. It holds a pool (an untyped object) and, per on-request guest
//! (`start = "on-request"`), the roots of the guest's guest-physical space and of its
//! VMM's address space, whose tables the loader made empty. On the toolstack's `BUILD` it
//! makes the guest's RAM from the pool (an untyped of its own, then 2 MiB frames) and maps
//! each frame into both; on `DESTROY` it revokes that untyped: the kernel deletes every
//! frame and with them every mapping, and the memory is the pool's again.
//!
//! It keeps no state of its own: whether a guest is built is whether its RAM's untyped
//! is in its slot, so the supervisor can roll it back after every request (`restart =
//! "per-request"`) and a request that compromised it cannot reach the next.
#![no_std]
#![no_main]

use cleave_abi::{MessageInfo, ObjectType, Rights};
use cleave_ctl::builder::{BUILD, DESTROY, MALFORMED, NO_MEMORY, OK, REFUSED, UNKNOWN, WRONG_STATE};
use cleave_rt::cap::kind::{CNode, Endpoint, EptRoot, Frame, Untyped, VSpace};
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "the guests' capabilities are found through BUILD_GUESTS, by slot")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Radix of its CNode (the slot depth for CNode invocations on it).
const DEPTH: u64 = 8;
/// A slot nothing is given in: where a capability is copied for a moment to see whether
/// a slot holds one.
const SCRATCH: u64 = 255;
/// A large page.
const FRAME: u64 = 2 << 20;

/// Whether `slot` of its CNode holds a capability: copying from an empty slot is refused
/// as an invalid capability; any other refusal (an untyped with children may not be
/// copied) is about what is there.
fn occupied(cnode: Cap<CNode>, slot: u64) -> bool {
    match cnode.copy(cnode.slot(SCRATCH, DEPTH), cnode.slot(slot, DEPTH), Rights::READ) {
        Ok(()) => {
            let _ = Cap::<CNode>::delete(cnode.slot(SCRATCH, DEPTH));
            true
        }
        Err(cleave_abi::Error::InvalidCapability) => false,
        Err(_) => true,
    }
}

/// Steps of a build, for a refusal's first word.
#[derive(Clone, Copy)]
enum Step {
    Untyped = 1,
    Frames = 2,
    Copy = 3,
    MapGuest = 4,
    MapVmm = 5,
}

/// Makes guest `g`'s RAM and maps it; on a refusal, takes back what it made.
fn build(cnode: Cap<CNode>, g: &(&str, u64, u64, u64, u64, u64)) -> (u64, [u64; 4]) {
    let &(name, bytes, ept, vspace, untyped_slot, frames_slot) = g;
    if occupied(cnode, untyped_slot) {
        return (WRONG_STATE, [0; 4]);
    }
    let pool: Cap<Untyped> = caps::POOL;
    let bits = u64::from(bytes.next_power_of_two().trailing_zeros());
    match pool.retype(ObjectType::Untyped, bits, cnode, 0, 0, untyped_slot, 1) {
        Ok(()) => {}
        Err(cleave_abi::Error::NotEnoughMemory) => return (NO_MEMORY, [bytes, 0, 0, 0]),
        Err(e) => return (REFUSED, [Step::Untyped as u64, e as u64, 0, 0]),
    }
    let frames = bytes / FRAME;
    let ram: Cap<Untyped> = Cap::from_cptr(untyped_slot);
    let (ept, vspace): (Cap<EptRoot>, Cap<VSpace>) = (Cap::from_cptr(ept), Cap::from_cptr(vspace));
    let result = (|| -> Result<(), (Step, cleave_abi::Error)> {
        ram.retype(ObjectType::Frame2M, 0, cnode, 0, 0, frames_slot, frames)
            .map_err(|e| (Step::Frames, e))?;
        for k in 0..frames {
            let (guest_frame, vmm_frame) = (frames_slot + k, frames_slot + frames + k);
            cnode
                .copy(cnode.slot(vmm_frame, DEPTH), cnode.slot(guest_frame, DEPTH), Rights::ALL)
                .map_err(|e| (Step::Copy, e))?;
            let rw = Rights::READ.union(Rights::WRITE);
            Cap::<Frame>::from_cptr(guest_frame)
                .map_ept(ept, k * FRAME, rw, false)
                .map_err(|e| (Step::MapGuest, e))?;
            Cap::<Frame>::from_cptr(vmm_frame)
                .map(vspace, caps::GUEST_RAM_BASE + k * FRAME, rw, true)
                .map_err(|e| (Step::MapVmm, e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            cleave_rt::audit!("build {name} {}#{}", caps::COMPONENT, cleave_rt::instance());
            println!(
                "builder: built guest `{name}`: {} MiB of RAM from the pool, mapped into its guest-physical space and its VMM",
                bytes >> 20
            );
            (OK, [bytes, 0, 0, 0])
        }
        Err((step, e)) => {
            // Nothing half built stays: the RAM's untyped and all made from it go.
            let _ = Cap::<CNode>::revoke(cnode.slot(untyped_slot, DEPTH));
            let _ = Cap::<CNode>::delete(cnode.slot(untyped_slot, DEPTH));
            println!("builder: cannot build guest `{name}`: step {} refused: {e}", step as u64);
            (REFUSED, [step as u64, e as u64, 0, 0])
        }
    }
}

/// Takes guest `g`'s RAM back: every frame made from it, and every mapping, goes.
fn destroy(cnode: Cap<CNode>, g: &(&str, u64, u64, u64, u64, u64)) -> (u64, [u64; 4]) {
    let &(name, bytes, _, _, untyped_slot, _) = g;
    if !occupied(cnode, untyped_slot) {
        return (WRONG_STATE, [0; 4]);
    }
    if let Err(e) = Cap::<CNode>::revoke(cnode.slot(untyped_slot, DEPTH)) {
        return (REFUSED, [Step::Untyped as u64, e as u64, 0, 0]);
    }
    if let Err(e) = Cap::<CNode>::delete(cnode.slot(untyped_slot, DEPTH)) {
        return (REFUSED, [Step::Untyped as u64, e as u64, 0, 0]);
    }
    cleave_rt::audit!("destroy {name} {}#{}", caps::COMPONENT, cleave_rt::instance());
    println!("builder: destroyed guest `{name}`: its {} MiB of RAM are the pool's again", bytes >> 20);
    (OK, [bytes, 0, 0, 0])
}

/// One request: `label` with a guest's name in `words`.
fn serve(label: u64, words: [u64; 4]) -> (u64, [u64; 4]) {
    let cnode: Cap<CNode> = caps::CNODE;
    let mut buf = [0u8; cleave_ctl::MAX_NAME];
    let Some(name) = cleave_ctl::unpack_name(words, &mut buf) else { return (MALFORMED, [0; 4]) };
    let Some(g) = caps::BUILD_GUESTS.iter().find(|g| g.0 == name) else { return (UNKNOWN, [0; 4]) };
    match label {
        BUILD => build(cnode, g),
        DESTROY => destroy(cnode, g),
        _ => (MALFORMED, [0; 4]),
    }
}

fn main() -> i32 {
    let endpoint: Cap<Endpoint> = caps::BUILD;
    let instance = cleave_rt::instance();
    if instance == 1 {
        cleave_rt::cap::report_authority("builder", caps::CAPS, caps::REGIONS);
    }
    // One request per instance: the supervisor rolls it back at its next receive.
    let mut request = endpoint.recv();
    loop {
        let (label, words) = match request {
            Ok(m) => serve(m.info.label(), m.words),
            Err(e) => {
                println!("builder: receive failed: {e}");
                return 1;
            }
        };
        request = endpoint.reply_recv(MessageInfo::new(label, 0, 0, 4), words);
    }
}
