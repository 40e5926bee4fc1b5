//! Helpers shared by the test programs: the report each judges itself with ([`Suite`]),
//! slot bookkeeping, thread creation in the root task's address space, building page
//! tables for an address, and a small real-mode guest for the VT-x tests.
#![no_std]

use cleave_abi::boot_info::slot;
use cleave_abi::{Error, ObjectType, Rights};
use cleave_rt::cap::kind::{self, CNode, Frame, PageTable, Untyped, VSpace};
use cleave_rt::{Cap, println};

/// xorshift64*: deterministic pseudo-random numbers for the tests that throw random code
/// and state at the kernel (a fixed seed, so a failure can be replayed).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (not 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.word() % n
    }
}

/// The first empty slot of the root CNode (`BootInfo::empty_first`): [`at`] counts from it.
static FIRST_FREE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Records where the root CNode's empty slots start (once, first thing in `main`).
pub fn set_first_free(slot: u64) {
    FIRST_FREE.store(slot, core::sync::atomic::Ordering::SeqCst);
}

/// The root CNode slot `i` places past the first empty one.
pub fn at(i: u64) -> u64 {
    FIRST_FREE.load(core::sync::atomic::Ordering::SeqCst) + i
}

/// The root task's CNode.
pub const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// Depth that resolves a plain slot index in the root CNode.
pub const DEPTH: u64 = 64;

/// A self-judging test program's report, in the form `cargo xtask test` checks
/// (`doc/testing.md`): `TEST PLAN n` first, then per case `TEST PASS name` or
/// `TEST FAIL name: why`, then the verdict `TEST PASS (n cases)` or `TEST FAIL (...)`.
/// Each case is named here, by the program, and nowhere else.
pub struct Suite {
    planned: u32,
    passed: u32,
    failed: u32,
}

impl Suite {
    /// Announces that `cases` cases follow.
    pub fn plan(cases: u32) -> Suite {
        println!("TEST PLAN {cases}");
        Suite { planned: cases, passed: 0, failed: 0 }
    }

    /// Reports case `name`: passed if `result` is `Ok`, else failed with the reason.
    pub fn case(&mut self, name: &str, result: Result<(), &str>) {
        match result {
            Ok(()) => {
                println!("TEST PASS {name}");
                self.passed += 1;
            }
            Err(why) => {
                println!("TEST FAIL {name}: {why}");
                self.failed += 1;
            }
        }
    }

    /// The verdict line and the program's exit status: success only if every planned case
    /// ran and passed.
    pub fn finish(self) -> i32 {
        let Suite { planned, passed, failed } = self;
        if failed == 0 && passed == planned {
            println!("TEST PASS ({planned} case{})", if planned == 1 { "" } else { "s" });
            0
        } else {
            let unrun = planned.saturating_sub(passed + failed);
            println!("TEST FAIL ({failed} of {planned} cases failed, {unrun} not run)");
            1
        }
    }

    /// Ends the program before its remaining cases, because `why`.
    pub fn abandon(self, why: &str) -> i32 {
        println!("TEST FAIL: {why}");
        self.finish()
    }
}
/// `Ok` if `ok`, else the failure `what`.
pub fn check(ok: bool, what: &'static str) -> Result<(), &'static str> {
    if ok { Ok(()) } else { Err(what) }
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

/// Starts a thread in the root task's CSpace and VSpace: a TCB from `untyped` in root slot
/// `at`, at `priority`, running `entry(arg)` on the stack that ends at `stack_top` (minus
/// 8, as if a call had just pushed its return address).
pub fn start_thread(
    untyped: Cap<Untyped>,
    at: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    priority: u8,
    stack_top: u64,
) -> Result<Cap<kind::Tcb>, Error> {
    untyped.retype(ObjectType::Tcb, 0, ROOT, 0, 0, at, 1)?;
    let tcb: Cap<kind::Tcb> = Cap::from_cptr(at);
    tcb.configure(ROOT, Cap::<VSpace>::from_cptr(slot::VSPACE), None, None)?;
    tcb.set_priority(priority)?;
    // rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi (the argument)
    tcb.write_registers(true, &[entry as usize as u64, stack_top - 8, 0x202, 0, 0, 0, 0, 0, arg])?;
    Ok(tcb)
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

/// Where [`real_mode_guest`]'s VMM sees the guest's RAM page.
pub const GUEST_PAGE_VA: u64 = 0x5000_0000_0000;
/// Where the guest sees it, and where it starts (real mode, CS 0, IP 0x1000).
pub const GUEST_PAGE: u64 = 0x1000;

/// A real-mode guest with one page of RAM at guest-physical [`GUEST_PAGE`] holding `code`,
/// bound to the calling thread: a Vcpu, the four EPT levels, the RAM page (also mapped
/// at [`GUEST_PAGE_VA`] here), from `untyped` into root slots `first..first + 11`.
pub fn real_mode_guest(untyped: Cap<Untyped>, first: u64, code: &[u8]) -> Result<Cap<kind::Vcpu>, Error> {
    let vcpu = guest_with_page(untyped, first, code, GUEST_PAGE)?;
    vcpu.write_state(&[(cleave_abi::vcpu::state::RIP, GUEST_PAGE), (cleave_abi::vcpu::state::RSP, 0x1ff0)])?;
    Ok(vcpu)
}

/// A guest with one page of RAM at guest-physical `gpa` holding `code`, bound to the
/// calling thread, as the kernel makes it fresh (real mode at 0000:0000): [`real_mode_guest`]
/// without touching architecture-specific state, so it serves VT-x and SVM alike.
pub fn guest_with_page(
    untyped: Cap<Untyped>,
    first: u64,
    code: &[u8],
    gpa: u64,
) -> Result<Cap<kind::Vcpu>, Error> {
    use kind::{EptRoot, EptTable, Tcb, Vcpu};
    let (vcpu, root, ram, alias, tables) = (first, first + 1, first + 5, first + 6, first + 7);
    untyped.retype(ObjectType::Vcpu, 0, ROOT, 0, 0, vcpu, 1)?;
    for (ty, i) in [
        (ObjectType::EptPml4, root),
        (ObjectType::EptPdpt, first + 2),
        (ObjectType::EptPd, first + 3),
        (ObjectType::EptPt, first + 4),
    ] {
        untyped.retype(ty, 0, ROOT, 0, 0, i, 1)?;
    }
    // The guest-physical space's ASID, from the root task's pool.
    Cap::<kind::AsidPool>::from_cptr(slot::ASID_POOL).assign(Cap::<EptRoot>::from_cptr(root))?;
    let ram = frame(untyped, ram)?;
    // The VMM's own view of the page, through a copy of the capability.
    ROOT.copy(ROOT.slot(alias, 64), ROOT.slot(ram.cptr(), 64), Rights::ALL)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    map_tables(untyped, me, GUEST_PAGE_VA, tables)?;
    Cap::<Frame>::from_cptr(alias).map(me, GUEST_PAGE_VA, Rights::ALL, true)?;
    for (i, b) in code.iter().enumerate().take(cleave_abi::layout::PAGE_SIZE as usize) {
        // SAFETY: GUEST_PAGE_VA maps the RAM page read-write (just above); i < one page.
        unsafe { core::ptr::write_volatile((GUEST_PAGE_VA + i as u64) as *mut u8, *b) }
    }
    let root: Cap<EptRoot> = Cap::from_cptr(root);
    for table in [first + 2, first + 3, first + 4] {
        Cap::<EptTable>::from_cptr(table).map(root, 0)?;
    }
    ram.map_ept(root, gpa, Rights::ALL, false)?;
    let vcpu: Cap<Vcpu> = Cap::from_cptr(vcpu);
    vcpu.set_tcb(Cap::<Tcb>::from_cptr(slot::TCB))?;
    vcpu.set_ept(root)?;
    Ok(vcpu)
}
