//! Capability test suite (root task): Untyped retype and CNode operations through real
//! system calls, including the refusals. Judges itself: one case per
//! operation ([`emulator_tests::Suite`]).
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType, Rights};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Endpoint, Frame, IoPort, IoPortControl, Untyped};
use cleave_rt::{Cap, println};
use emulator_tests::Suite;

cleave_rt::entry!(main);

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Depth that resolves a plain slot index in the root CNode (guard + radix = 64).
const D: u64 = 64;

/// Slots this suite uses, from the first empty one.
struct Slots(u64);

impl Slots {
    fn at(&self, i: u64) -> u64 {
        self.0 + i
    }
}

fn is(result: Result<(), Error>, want: Result<(), Error>, what: &'static str) -> Result<(), &'static str> {
    if result == want {
        Ok(())
    } else {
        println!("  {what}: got {result:?}, expected {want:?}");
        Err(what)
    }
}

fn main() -> i32 {
    let info = boot_info();
    let s = Slots(info.empty_first);
    let untyped: Cap<Untyped> = Cap::from_cptr(info.untyped_first);
    let (_, biggest) = emulator_tests::largest_ram_untyped(info);
    let big: Cap<Untyped> = Cap::from_cptr(info.untyped_first + biggest as u64);
    let big_bits = u64::from(info.untyped[biggest].size_bits);
    println!(
        "cap-test: {} untyped capabilities, largest 2^{big_bits} bytes; empty slots {}..{}",
        info.untyped_count, info.empty_first, info.empty_end
    );
    let mut t = Suite::plan(13);

    t.case(
        "boot-info",
        if info.version == 1 && info.untyped_count > 0 && info.empty_first < info.empty_end {
            Ok(())
        } else {
            Err("BootInfo is not sane")
        },
    );

    t.case(
        "retype-endpoint",
        (|| {
            is(big.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, s.at(0), 1), Ok(()), "retype")?;
            is(
                big.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, s.at(0), 1),
                Err(Error::DeleteFirst),
                "into occupied slot",
            )
        })(),
    );

    t.case(
        "retype-larger-than-untyped",
        is(
            big.retype(ObjectType::Untyped, big_bits + 1, ROOT, 0, 0, s.at(1), 1),
            Err(Error::NotEnoughMemory),
            "oversized retype",
        ),
    );

    t.case(
        "retype-bad-arguments",
        (|| {
            is(big.retype(ObjectType::CNode, 0, ROOT, 0, 0, s.at(1), 1), Err(Error::RangeError), "radix 0")?;
            is(
                big.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, info.empty_end - 1, 2),
                Err(Error::RangeError),
                "past CNode end",
            )?;
            is(
                big.retype(ObjectType::Endpoint, 0, big.cast(), 0, 0, s.at(1), 1),
                Err(Error::InvalidCapability),
                "dest root not a CNode",
            )?;
            is(
                big.invoke(cleave_abi::object::label::UNTYPED_RETYPE, &[2, 0, slot::CNODE]).map(drop),
                Err(Error::TruncatedMessage),
                "short message",
            )
        })(),
    );

    t.case(
        "invalid-capability",
        (|| {
            let empty: Cap<Untyped> = Cap::from_cptr(s.at(50));
            is(
                empty.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, s.at(1), 1),
                Err(Error::InvalidCapability),
                "empty slot",
            )?;
            let guarded: Cap<Untyped> = Cap::from_cptr(1 << 40);
            is(
                guarded.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, s.at(1), 1),
                Err(Error::FailedLookup),
                "guard mismatch",
            )
        })(),
    );

    t.case(
        "wrong-object-type",
        (|| {
            is(CNode_op_on(untyped), Err(Error::IllegalOperation), "CNode operation on an untyped")?;
            // (A Call on an endpoint is IPC, not an invocation: use a frame.)
            let frame: Cap<Untyped> = Cap::from_cptr(slot::BOOT_INFO_FRAME);
            is(
                frame.retype(ObjectType::Endpoint, 0, ROOT, 0, 0, s.at(1), 1),
                Err(Error::IllegalOperation),
                "retype on a frame",
            )
        })(),
    );

    t.case(
        "copy-mint-rights",
        (|| {
            is(ROOT.mint(ROOT.slot(s.at(1), D), ROOT.slot(s.at(0), D), Rights::WRITE, 7), Ok(()), "mint")?;
            is(
                ROOT.mint(ROOT.slot(s.at(2), D), ROOT.slot(s.at(1), D), Rights::ALL, 8),
                Err(Error::IllegalOperation),
                "re-badge",
            )?;
            is(
                ROOT.copy(ROOT.slot(s.at(2), D), ROOT.slot(s.at(1), D), Rights::ALL),
                Ok(()),
                "copy of badged cap",
            )?;
            is(
                ROOT.copy(ROOT.slot(s.at(3), D), ROOT.slot(info.untyped_first, D), Rights::ALL),
                Err(Error::IllegalOperation),
                "copy of untyped",
            )?;
            is(
                ROOT.copy(ROOT.slot(s.at(3), D), ROOT.slot(s.at(60), D), Rights::ALL),
                Err(Error::InvalidCapability),
                "copy of empty slot",
            )?;
            is(
                ROOT.copy(ROOT.slot(s.at(2), D), ROOT.slot(s.at(0), D), Rights::ALL),
                Err(Error::DeleteFirst),
                "copy onto occupied slot",
            )
        })(),
    );

    t.case(
        "revoke-with-live-children",
        (|| {
            // The endpoint in s.at(0) has children (s.at(1), s.at(2)): it cannot be mutated.
            is(
                ROOT.mutate(ROOT.slot(s.at(3), D), ROOT.slot(s.at(0), D), Rights::READ, 0),
                Err(Error::RevokeFirst),
                "mutate with children",
            )?;
            is(Cap::<CNode>::revoke(ROOT.slot(s.at(0), D)), Ok(()), "revoke")?;
            is(
                ROOT.copy(ROOT.slot(s.at(4), D), ROOT.slot(s.at(1), D), Rights::ALL),
                Err(Error::InvalidCapability),
                "revoked copy is gone",
            )?;
            is(
                ROOT.mutate(ROOT.slot(s.at(3), D), ROOT.slot(s.at(0), D), Rights::READ, 0),
                Ok(()),
                "mutate after revoke",
            )?;
            is(ROOT.move_cap(ROOT.slot(s.at(0), D), ROOT.slot(s.at(3), D)), Ok(()), "move back")
        })(),
    );

    t.case(
        "cnode-destroyed-with-contents",
        (|| {
            is(big.retype(ObjectType::CNode, 4, ROOT, 0, 0, s.at(10), 1), Ok(()), "retype CNode")?;
            let inner: Cap<CNode> = Cap::from_cptr(s.at(10));
            // Radix 4, no guard: 4-bit addresses inside it.
            is(
                inner.copy(inner.slot(3, 4), ROOT.slot(s.at(0), D), Rights::ALL),
                Ok(()),
                "copy into inner CNode",
            )?;
            is(
                ROOT.mutate(ROOT.slot(s.at(11), D), ROOT.slot(s.at(0), D), Rights::ALL, 0),
                Err(Error::RevokeFirst),
                "child inside",
            )?;
            is(Cap::<CNode>::delete(ROOT.slot(s.at(10), D)), Ok(()), "delete last CNode cap")?;
            is(
                ROOT.mutate(ROOT.slot(s.at(11), D), ROOT.slot(s.at(0), D), Rights::ALL, 0),
                Ok(()),
                "child destroyed with its CNode",
            )?;
            is(ROOT.move_cap(ROOT.slot(s.at(0), D), ROOT.slot(s.at(11), D)), Ok(()), "move back")
        })(),
    );

    t.case(
        "untyped-revoke-and-reuse",
        (|| {
            is(big.retype(ObjectType::Untyped, 16, ROOT, 0, 0, s.at(20), 1), Ok(()), "split untyped")?;
            let small: Cap<Untyped> = Cap::from_cptr(s.at(20));
            is(small.retype(ObjectType::Tcb, 0, ROOT, 0, 0, s.at(21), 4), Ok(()), "four TCBs")?;
            is(
                small.retype(ObjectType::Untyped, 16, ROOT, 0, 0, s.at(25), 1),
                Err(Error::NotEnoughMemory),
                "full",
            )?;
            is(
                Cap::<CNode>::delete(ROOT.slot(s.at(20), D)),
                Err(Error::RevokeFirst),
                "delete untyped with children",
            )?;
            is(Cap::<CNode>::revoke(ROOT.slot(s.at(20), D)), Ok(()), "revoke untyped")?;
            let gone: Cap<Endpoint> = Cap::from_cptr(s.at(21));
            is(CNode_op_on(gone.cast()), Err(Error::InvalidCapability), "object of revoked untyped is gone")?;
            is(
                small.retype(ObjectType::Untyped, 16, ROOT, 0, 0, s.at(25), 1),
                Ok(()),
                "whole region free again",
            )
        })(),
    );

    t.case(
        "frame-physical-address",
        (|| {
            is(big.retype(ObjectType::Frame4K, 0, ROOT, 0, 0, s.at(30), 1), Ok(()), "retype frame")?;
            let frame: Cap<Frame> = Cap::from_cptr(s.at(30));
            let address = frame.physical_address().map_err(|_| "get address failed")?;
            let region = info.untyped[biggest];
            let inside = region.physical_address <= address
                && address + 4096 <= region.physical_address + (1 << region.size_bits)
                && address % 4096 == 0;
            if !inside {
                println!("  frame at {address:#x} is not in its untyped region");
                return Err("address outside the untyped");
            }
            is(
                untyped.invoke(cleave_abi::object::label::FRAME_GET_ADDRESS, &[]).map(drop),
                Err(Error::IllegalOperation),
                "on an untyped",
            )
        })(),
    );

    t.case(
        "io-ports",
        (|| {
            let control: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
            is(control.issue(0x70, 0x71, ROOT.slot(s.at(31), D)), Ok(()), "issue CMOS ports")?;
            let cmos: Cap<IoPort> = Cap::from_cptr(s.at(31));
            // CMOS RAM byte 0x40 is free storage: write it and read it back.
            is(cmos.write(0x70, 1, 0x40), Ok(()), "select CMOS byte")?;
            is(cmos.write(0x71, 1, 0x5a), Ok(()), "write CMOS byte")?;
            is(cmos.write(0x70, 1, 0x40), Ok(()), "select again")?;
            if cmos.read(0x71, 1) != Ok(0x5a) {
                return Err("CMOS byte did not read back");
            }
            is(cmos.read(0x72, 1).map(drop), Err(Error::RangeError), "port outside the range")?;
            is(cmos.read(0x71, 2).map(drop), Err(Error::RangeError), "width past the range")?;
            is(cmos.read(0x70, 3).map(drop), Err(Error::InvalidArgument), "bad width")?;
            is(control.issue(0x71, 0x71, ROOT.slot(s.at(32), D)), Err(Error::RevokeFirst), "issued twice")?;
            is(
                control.issue(0x3f8, 0x3ff, ROOT.slot(s.at(32), D)),
                Err(Error::RevokeFirst),
                "kernel's COM1",
            )?;
            is(Cap::<CNode>::delete(ROOT.slot(s.at(31), D)), Ok(()), "delete")?;
            is(control.issue(0x70, 0x71, ROOT.slot(s.at(32), D)), Ok(()), "issuable again after delete")
        })(),
    );

    t.case(
        "device-untyped-only-becomes-frames",
        (|| {
            let Some(i) = (0..info.untyped_count as usize).find(|&i| info.untyped[i].is_device == 1) else {
                return Err("no device untyped in BootInfo");
            };
            let device: Cap<Untyped> = Cap::from_cptr(info.untyped_first + i as u64);
            is(
                device.retype(ObjectType::Tcb, 0, ROOT, 0, 0, s.at(40), 1),
                Err(Error::InvalidArgument),
                "TCB from device memory",
            )?;
            is(
                device.retype(ObjectType::Frame4K, 0, ROOT, 0, 0, s.at(40), 1),
                Ok(()),
                "frame from device memory",
            )?;
            let address = Cap::<Frame>::from_cptr(s.at(40)).physical_address().map_err(|_| "address")?;
            if address != info.untyped[i].physical_address {
                return Err("device frame not at the start of its region");
            }
            Ok(())
        })(),
    );

    t.finish()
}

/// Any CNode operation, used to probe what kind of capability an address holds.
#[allow(non_snake_case, reason = "reads as the operation it performs")]
fn CNode_op_on(target: Cap<Untyped>) -> Result<(), Error> {
    target.invoke(cleave_abi::object::label::CNODE_DELETE, &[0, 64]).map(drop)
}
