//! The Builder, as Xoar cut it out of Xen's control VM: the only component that can make
//! guest memory. Per on-request guest (`start = "on-request"`) it holds an untyped the
//! size of the guest's RAM and the roots of the guest's guest-physical space and of its
//! VMM's address space, whose tables the loader made empty. On the toolstack's `BUILD` it
//! makes 2 MiB frames from that untyped and maps each into both; on `DESTROY` it revokes
//! the untyped: the kernel deletes every frame and with them every mapping, and the
//! untyped is whole again.
//!
//! Whether a guest is built is whether its first frame's slot is occupied: no state of
//! its own in memory, so the supervisor rolls it back after every request (`restart =
//! "per-request"`). Each guest's untyped makes frames only (`UNTYPED_FRAMES_ONLY`), so a
//! compromised instance can make no thread or CNode that would outlive its rollback; what
//! it leaves in its CNode the next one sweeps (doc/ctl.md says what is left).
#![no_std]
#![no_main]

use cleave_abi::{MessageInfo, ObjectType, Rights};
use cleave_ctl::builder::{BUILD, DESTROY, MALFORMED, NO_MEMORY, OK, REFUSED, STATUS, UNKNOWN, WRONG_STATE};
use cleave_rt::cap::kind::{CNode, Endpoint, EptRoot, Frame, Untyped, VSpace};
use cleave_rt::{Cap, println};

#[allow(dead_code, reason = "the guests' capabilities are found through BUILD_GUESTS, by slot")]
mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Radix of its CNode (the slot depth for CNode invocations on it): as large as the
/// guests' frames need.
const DEPTH: u64 = caps::CNODE_BITS;
/// A slot nothing is given in (its CNode's last): where a capability is copied for a
/// moment to see whether a slot holds one.
const SCRATCH: u64 = (1 << DEPTH) - 1;
/// A large page.
const FRAME: u64 = 2 << 20;

/// Whether `slot` of its CNode holds a capability: copying from an empty slot is refused
/// as an invalid capability; any other refusal (an untyped may not be copied at all) is
/// about what is there, and reads as occupied, which refuses the request.
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
    Frames = 2,
    Copy = 3,
    MapGuest = 4,
    MapVmm = 5,
}

/// Makes guest `g`'s RAM from its untyped and maps it; on a refusal, takes back what it
/// made.
fn build(cnode: Cap<CNode>, g: &(&str, u64, u64, u64, u64, u64)) -> (u64, [u64; 4]) {
    let &(name, bytes, ept, vspace, untyped_slot, frames_slot) = g;
    if occupied(cnode, frames_slot) {
        return (WRONG_STATE, [0; 4]);
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
                "builder: built guest `{name}`: {} MiB of RAM, mapped into its guest-physical space and its VMM",
                bytes >> 20
            );
            (OK, [bytes, 0, 0, 0])
        }
        Err((step, e)) => {
            // Nothing half built stays: every frame made from the guest's untyped goes.
            let _ = Cap::<CNode>::revoke(cnode.slot(untyped_slot, DEPTH));
            println!("builder: cannot build guest `{name}`: step {} refused: {e}", step as u64);
            let code = if matches!(e, cleave_abi::Error::NotEnoughMemory) { NO_MEMORY } else { REFUSED };
            (code, [step as u64, e as u64, 0, 0])
        }
    }
}

/// Takes guest `g`'s RAM back: every frame made from its untyped, and every mapping of
/// them, goes; the untyped is whole again for the next build.
fn destroy(cnode: Cap<CNode>, g: &(&str, u64, u64, u64, u64, u64)) -> (u64, [u64; 4]) {
    let &(name, bytes, _, _, untyped_slot, frames_slot) = g;
    if !occupied(cnode, frames_slot) {
        return (WRONG_STATE, [0; 4]);
    }
    if let Err(e) = Cap::<CNode>::revoke(cnode.slot(untyped_slot, DEPTH)) {
        return (REFUSED, [Step::Frames as u64, e as u64, 0, 0]);
    }
    cleave_rt::audit!("destroy {name} {}#{}", caps::COMPONENT, cleave_rt::instance());
    println!("builder: destroyed guest `{name}`: its {} MiB of RAM are free for it again", bytes >> 20);
    (OK, [bytes, 0, 0, 0])
}

/// Whether `slot` is one a capability may be in: one it was given, or, in a guest's
/// range, the guest's untyped or one of its frames' two capabilities.
fn expected(slot: u64) -> bool {
    if caps::CAPS.iter().any(|(_, s, _)| *s == slot) {
        return true;
    }
    caps::BUILD_GUESTS.iter().any(|&(_, bytes, _, _, untyped, frames)| {
        slot == untyped || (frames..frames + 2 * (bytes / FRAME)).contains(&slot)
    })
}

/// Deletes every capability in a slot where none belongs (the scratch slot first): what
/// an earlier instance, compromised by its request, left in its CNode beyond the slots it
/// uses. Objects only those capabilities named (a thread, a CNode made from a guest's
/// untyped) are destroyed with them. Returns how many it deleted.
fn sweep(cnode: Cap<CNode>) -> u32 {
    let _ = Cap::<CNode>::delete(cnode.slot(SCRATCH, DEPTH));
    let mut deleted = 0;
    for slot in (1..SCRATCH).filter(|s| !expected(*s)) {
        if occupied(cnode, slot) && Cap::<CNode>::delete(cnode.slot(slot, DEPTH)).is_ok() {
            deleted += 1;
        }
    }
    deleted
}

/// Says whether every guest's untyped makes frames only, by trying what a compromised
/// instance would: a thread from each (which, made, would outlive the rollback).
fn frames_only(cnode: Cap<CNode>) {
    for &(name, _, _, _, untyped, _) in caps::BUILD_GUESTS {
        let ram: Cap<Untyped> = Cap::from_cptr(untyped);
        match ram.retype(ObjectType::Tcb, 0, cnode, 0, 0, SCRATCH, 1) {
            Err(cleave_abi::Error::IllegalOperation) => {
                println!(
                    "builder: guest `{name}`'s RAM untyped makes frames only: a thread from it was refused"
                )
            }
            other => {
                let _ = Cap::<CNode>::delete(cnode.slot(SCRATCH, DEPTH));
                println!(
                    "builder: guest `{name}`'s RAM untyped is not restricted to frames: a thread from it: {other:?}"
                );
            }
        }
    }
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
        STATUS => (OK, [u64::from(occupied(cnode, g.5)), g.1, 0, 0]),
        _ => (MALFORMED, [0; 4]),
    }
}

fn main() -> i32 {
    let endpoint: Cap<Endpoint> = caps::BUILD;
    let instance = cleave_rt::instance();
    if instance == 1 {
        cleave_rt::cap::report_authority("builder", caps::CAPS, caps::REGIONS);
        frames_only(caps::CNODE);
    }
    // The memory a rollback restores; the CNode it does not: clear what does not belong.
    let stray = sweep(caps::CNODE);
    if stray > 0 {
        println!(
            "builder: instance {instance}: deleted {stray} capabilities an earlier instance left where none belong"
        );
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
