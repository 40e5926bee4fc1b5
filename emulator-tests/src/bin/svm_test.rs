//! AMD SVM in QEMU: guests on the same Vcpu objects and `VmEnter` as on VT-x, their exits
//! reported in the same neutral words. Each case builds a fresh real-mode guest (one page of RAM at
//! guest-physical 0, where a fresh Vcpu starts) whose code ends in one exit, enters it and
//! checks the exit: a halt, CPUID, port I/O both ways, a read of guest-physical memory it does
//! not have, an MSR it may not touch (EFER, whose SVME bit is hidden, read and set), a
//! debug register, CR4 (every write exits), and SVM's own instructions, which a guest may
//! never run: undefined in real mode, intercepted in protected mode. Only the guest stops
//! each time; this program goes on.
#![no_std]
#![no_main]

use cleave_abi::ObjectType;
use cleave_abi::vcpu::exit::{cr, io, memory, other, reason};
use cleave_abi::vcpu::state::{self, part, segment as seg};
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, Untyped};
use cleave_rt::{Cap, println};
use emulator_tests::{ROOT, Suite, at, guest_with_page, largest_ram_untyped};

cleave_rt::entry!(main);

/// (case, guest code, the exit words expected: reason, qualification, guest-physical
/// address, instruction length; `None` where any value will do).
type Case = (&'static str, &'static [u8], [Option<u64>; 4]);

const CASES: [Case; 11] = [
    ("hlt", &[0xf4], [Some(reason::HLT), None, None, Some(1)]),
    ("cpuid", &[0x0f, 0xa2], [Some(reason::CPUID), None, None, Some(2)]),
    // out 0x80, al: a one-byte write to port 0x80, two bytes long.
    ("port-out", &[0xe6, 0x80], [Some(reason::PORT_IO), Some(0x80 | 1 << io::SIZE_SHIFT), None, Some(2)]),
    // in al, 0x71: a one-byte read.
    (
        "port-in",
        &[0xe4, 0x71],
        [Some(reason::PORT_IO), Some(0x71 | 1 << io::SIZE_SHIFT | io::IN), None, Some(2)],
    ),
    // mov al, [0x8000]: guest-physical 0x8000 is not the guest's.
    ("unmapped-read", &[0xa0, 0x00, 0x80], [Some(reason::MEMORY), Some(memory::READ), Some(0x8000), None]),
    // mov ecx, 0xc0000080; rdmsr: EFER always exits on SVM.
    (
        "efer-read",
        &[0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32],
        [Some(reason::MSR_READ), None, None, Some(2)],
    ),
    // mov ecx, 0xc0000080; mov eax, 0x1000 (SVME); xor edx, edx; wrmsr: so does setting it.
    (
        "efer-svme-write",
        &[
            0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x66, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x66, 0x31, 0xd2, 0x0f,
            0x30,
        ],
        [Some(reason::MSR_WRITE), None, None, Some(2)],
    ),
    ("vmmcall", &[0x0f, 0x01, 0xd9], [Some(reason::HYPERCALL), None, None, Some(3)]),
    // mov dr0, eax: debug registers are not switched between guests, so every access exits.
    ("dr0-write", &[0x0f, 0x23, 0xc0], [Some(reason::DEBUG_REGISTER), None, None, None]),
    // mov eax, cr4; or eax, 1 << 22 (PKE); mov cr4, eax: every CR4 write exits on SVM, and
    // without decode assists the VMM is not told the register.
    (
        "cr4-write",
        &[0x0f, 0x20, 0xe0, 0x66, 0x0d, 0x00, 0x00, 0x40, 0x00, 0x0f, 0x22, 0xe0],
        [Some(reason::CR_ACCESS), Some(4 | cr::WRITE), None, None],
    ),
    // VMRUN (like VMLOAD, VMSAVE, STGI, CLGI, SKINIT) is undefined in real mode: the guest
    // takes its own #UD, whose delivery pushes on a stack at 0:fffe it has no memory for.
    (
        "vmrun-in-real-mode",
        &[0x0f, 0x01, 0xd8],
        [Some(reason::MEMORY), Some(memory::WRITE), Some(0xfffe), None],
    ),
];

/// SVM's own instructions in protected mode, where (EFER.SVME being set underneath) they
/// are defined: each exits as a virtualization instruction, never runs. (Name, code, SVM
/// exit code.)
const SVM_INSTRUCTIONS: [(&str, [u8; 3], u64); 7] = [
    ("protected-vmrun", [0x0f, 0x01, 0xd8], 0x80),
    ("protected-vmload", [0x0f, 0x01, 0xda], 0x82),
    ("protected-vmsave", [0x0f, 0x01, 0xdb], 0x83),
    ("protected-stgi", [0x0f, 0x01, 0xdc], 0x84),
    ("protected-clgi", [0x0f, 0x01, 0xdd], 0x85),
    ("protected-skinit", [0x0f, 0x01, 0xde], 0x86),
    ("protected-invlpga", [0x0f, 0x01, 0xdf], 0x7a),
];

fn run(
    untyped: Cap<Untyped>,
    first: u64,
    code: &[u8],
    want: [Option<u64>; 4],
    protected: bool,
) -> Result<(), &'static str> {
    let vcpu = guest_with_page(untyped, first, code, 0).map_err(|_| "guest set-up failed")?;
    if protected {
        // 32-bit protected mode, flat segments (hidden state only: no GDT needed).
        let code_segment = [
            (state::CR0, 0x11),
            (state::segment(seg::CS, part::ATTRIBUTES), 0xc09b),
            (state::segment(seg::CS, part::LIMIT), 0xffff_ffff),
            (state::segment(seg::SS, part::ATTRIBUTES), 0xc093),
            (state::segment(seg::SS, part::LIMIT), 0xffff_ffff),
        ];
        vcpu.write_state(&code_segment).map_err(|_| "protected-mode state refused")?;
    }
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
    let mut t = Suite::plan((CASES.len() + SVM_INSTRUCTIONS.len()) as u32);
    let (big, _) = largest_ram_untyped(info);
    let untyped: Cap<Untyped> = Cap::from_cptr(at(0));
    if big.retype(ObjectType::Untyped, 18, ROOT, 0, 0, at(0), 1).is_err() {
        return t.abandon("no memory for the guests");
    }
    let protected = SVM_INSTRUCTIONS.iter().map(|(name, code, svm)| {
        let want = [Some(reason::VIRTUALIZATION_INSTRUCTION), Some(other::SVM | svm), None, None];
        (*name, &code[..], want, true)
    });
    for (name, code, want, protected) in CASES.iter().map(|&(n, c, w)| (n, c, w, false)).chain(protected) {
        t.case(name, run(untyped, at(1), code, want, protected));
        // Everything of that guest goes (its Vcpu, tables, RAM and this program's view of
        // it), so the next one starts afresh in the same slots and memory.
        if Cap::<CNode>::revoke(ROOT.slot(at(0), emulator_tests::DEPTH)).is_err() {
            return t.abandon("cannot take the guest down");
        }
    }
    t.finish()
}
