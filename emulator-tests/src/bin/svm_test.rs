//! AMD SVM in QEMU: guests on the same Vcpu objects and `VmEnter` as on VT-x, their exits
//! reported in the same words. Each case builds a fresh real-mode guest (one page of RAM at
//! guest-physical 0, where a fresh Vcpu starts) whose code ends in one exit, enters it and
//! checks the exit: a halt, CPUID, port I/O both ways, a read of guest-physical memory it does
//! not have, an MSR it may not touch (EFER, whose SVME bit is hidden), and SVM's own
//! instructions, which a guest may never run. Only the guest stops each time; this program goes on.
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_abi::vcpu::exit::reason;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Untyped};
use cleave_rt::{Cap, println};
use emulator_tests::{ROOT, Suite, at, guest_with_page, largest_ram_untyped};

cleave_rt::entry!(main);

/// A reason a VMM sees for an exit VT-x has no counterpart for: this bit plus SVM's code.
const SVM_ONLY: u64 = 1 << 16;

/// (case, guest code, the exit words expected: reason, qualification, guest-physical
/// address, instruction length; `None` where any value will do).
type Case = (&'static str, &'static [u8], [Option<u64>; 4]);

const CASES: [Case; 9] = [
    ("hlt", &[0xf4], [Some(reason::HLT), None, None, Some(1)]),
    ("cpuid", &[0x0f, 0xa2], [Some(reason::CPUID), None, None, Some(2)]),
    // out 0x80, al: a one-byte write to port 0x80, two bytes long.
    ("port-out", &[0xe6, 0x80], [Some(reason::IO), Some(0x0080_0000), None, Some(2)]),
    // in al, 0x71: a one-byte read (direction bit 3).
    ("port-in", &[0xe4, 0x71], [Some(reason::IO), Some(0x0071_0008), None, Some(2)]),
    // mov al, [0x8000]: guest-physical 0x8000 is not the guest's.
    ("unmapped-read", &[0xa0, 0x00, 0x80], [Some(reason::EPT_VIOLATION), Some(1), Some(0x8000), None]),
    // mov ecx, 0xc0000080; rdmsr: EFER always exits on SVM.
    ("efer-read", &[0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32], [Some(reason::RDMSR), None, None, None]),
    ("vmmcall", &[0x0f, 0x01, 0xd9], [Some(SVM_ONLY | 0x81), None, None, None]),
    // mov dr0, eax: debug registers are not switched between guests, so every access exits
    // (SVM's exit code for a DR0 write, 0x30).
    ("dr0-write", &[0x0f, 0x23, 0xc0], [Some(SVM_ONLY | 0x30), None, None, None]),
    // VMRUN (like VMLOAD, VMSAVE, STGI, CLGI, SKINIT) is undefined in real mode: the guest
    // takes its own #UD, whose delivery pushes on a stack at 0:fffe it has no memory for.
    ("vmrun-in-real-mode", &[0x0f, 0x01, 0xd8], [Some(reason::EPT_VIOLATION), Some(2), Some(0xfffe), None]),
];

fn run(untyped: Cap<Untyped>, first: u64, code: &[u8], want: [Option<u64>; 4]) -> Result<(), &'static str> {
    guest_with_page(untyped, first, code, 0).map_err(|_| "guest set-up failed")?;
    let words = cleave_rt::syscall::vm_enter().map_err(|_| "VmEnter refused")?;
    println!("svm-test: exit {words:#x?}");
    for (got, want) in words.iter().zip(want) {
        if want.is_some_and(|w| w != *got) {
            return Err("not the exit expected");
        }
    }
    Ok(())
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let mut t = Suite::plan(CASES.len() as u32);
    let (big, _) = largest_ram_untyped(info);
    let untyped: Cap<Untyped> = Cap::from_cptr(at(0));
    if big.retype(ObjectType::Untyped, 18, ROOT, 0, 0, at(0), 1).is_err() {
        return t.abandon("no memory for the guests");
    }
    for (name, code, want) in CASES {
        t.case(name, run(untyped, at(1), code, want));
        // Everything of that guest goes (its Vcpu, tables, RAM and this program's view of
        // it), so the next one starts afresh in the same slots and memory.
        if Cap::<CNode>::revoke(ROOT.slot(at(0), emulator_tests::DEPTH)).is_err() {
            return t.abandon("cannot take the guest down");
        }
    }
    t.finish()
}
