//! Helpers shared by the test programs: slot bookkeeping, thread creation in the root
//! task's address space, result lines, and building page tables for an address.
#![no_std]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType};
use cleave_rt::cap::kind::{CNode, Frame, PageTable, Untyped, VSpace};
use cleave_rt::{Cap, println};

/// The root task's CNode.
pub const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Depth that resolves a plain slot index in the root CNode.
pub const DEPTH: u64 = 64;

/// Prints `TEST PASS name` or `TEST FAIL name: why`, counting failures.
pub fn expect(name: &str, failures: &mut u32, result: Result<(), &'static str>) {
    match result {
        Ok(()) => println!("TEST PASS {name}"),
        Err(why) => {
            println!("TEST FAIL {name}: {why}");
            *failures += 1;
        }
    }
}

/// `Ok` if `ok`, else the failure `what`.
pub fn check(ok: bool, what: &'static str) -> Result<(), &'static str> {
    if ok { Ok(()) } else { Err(what) }
}

/// Ends a suite: the closing line and status.
pub fn finish(suite: &str, failures: u32) -> i32 {
    if failures == 0 {
        println!("{suite}: all cases passed");
        println!("TEST PASS");
        0
    } else {
        println!("TEST FAIL: {failures} {suite} cases failed");
        1
    }
}

/// Makes the PDPT, page directory and page table that cover `vaddr` in `vspace`, from
/// `untyped`, using root slots `first..first + 3`. Levels already present are kept (their
/// fresh table is simply not needed).
pub fn map_tables(untyped: Cap<Untyped>, vspace: Cap<VSpace>, vaddr: u64, first: u64) -> Result<(), Error> {
    for (i, ty) in
        [ObjectType::Pdpt, ObjectType::PageDirectory, ObjectType::PageTable].into_iter().enumerate()
    {
        let at = first + i as u64;
        untyped.retype(ty, 0, ROOT, 0, 0, at, 1)?;
        match Cap::<PageTable>::from_cptr(at).map(vspace, vaddr) {
            Ok(()) | Err(Error::DeleteFirst) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A 4 KiB frame retyped from `untyped` into root slot `at`.
pub fn frame(untyped: Cap<Untyped>, at: u64) -> Result<Cap<Frame>, Error> {
    untyped.retype(ObjectType::Frame4K, 0, ROOT, 0, 0, at, 1)?;
    Ok(Cap::from_cptr(at))
}

/// Machine code of a server that never touches memory: it receives on endpoint `ep`,
/// then forever replies with message word 0 plus one and waits again (`ReplyRecv`).
pub fn echo_server_code(ep: u32) -> [u8; 34] {
    let e = ep.to_le_bytes();
    [
        0xbf, e[0], e[1], e[2], e[3], // mov edi, ep
        0xb8, 0x05, 0x00, 0x00, 0x00, // mov eax, Recv
        0x0f, 0x05, // syscall
        0x48, 0xff, 0xc2, // loop: inc rdx
        0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1 (one message word)
        0xbf, e[0], e[1], e[2], e[3], // mov edi, ep
        0xb8, 0x02, 0x00, 0x00, 0x00, // mov eax, ReplyRecv
        0x0f, 0x05, // syscall
        0xeb, 0xea, // jmp loop
    ]
}

/// The largest RAM (not device) untyped capability the kernel gave the root task, and its
/// index in `BootInfo.untyped`.
pub fn largest_ram_untyped(info: &cleave_abi::boot_info::BootInfo) -> (Cap<Untyped>, usize) {
    let index = (0..info.untyped_count as usize)
        .filter(|&i| info.untyped[i].is_device == 0)
        .max_by_key(|&i| info.untyped[i].size_bits)
        .unwrap_or(0);
    (Cap::from_cptr(info.untyped_first + index as u64), index)
}
