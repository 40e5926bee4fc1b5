//! Vcpu test (root task; VT-x in Bochs, SVM in QEMU: the same program, the same
//! expectations): builds a Vcpu and a guest-physical address space (EPT or NPT tables and
//! one page of guest RAM), puts a small real-mode guest in it and acts as its VMM through
//! the architecture-neutral interface: the guest writes "Hi" to a UART port (I/O exits),
//! asks CPUID, writes to a guest-physical address nothing is mapped at (a memory exit the
//! VMM skips) and halts. Also checks that a VMM reaches no host state, nested-paging root
//! or intercept through either interface (on SVM the VT-x field interface is refused
//! outright) and cannot give the guest CR4.PKE, CR4.VMXE or EFER.SVME; that guest state
//! a VMM scrambles (random bit flips and values in every guest-state field, random event
//! injections, and on VT-x the raw VMCS fields too) gets an entry failure or an exit,
//! never a broken kernel; that after guests ran a thread finds the kernel's own GDT and
//! IDT limits (a VM exit leaves them 0xFFFF on VT-x); and that a guest finds neither the
//! KERNEL_GS_BASE nor the CR2 the guest before it left.
#![no_std]
#![no_main]

use cleave_abi::vcpu::state::{self, part, segment as seg};
use cleave_abi::vcpu::{exit, reg};
use cleave_abi::{Error, ObjectType};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{Untyped, Vcpu};
use cleave_rt::println;
use emulator_tests::{ROOT, Rng, Suite, at, check, largest_ram_untyped, real_mode_guest};
use x86::vmx::vmcs::{control, guest};

cleave_rt::entry!(main);

const UT: u64 = 0;
/// The guest's objects take slots from here on (to VCPU + 11).
const VCPU: u64 = 1;
/// An IoPort capability for port 0x80.
const PORT: u64 = 20;
/// The scrambled guests: each made from the untyped here (revoked after each), objects
/// from SCRAMBLED + 1 on.
const SCRAMBLED: u64 = 30;

/// A guest-physical address with nothing behind it.
const HOLE: u64 = 0x3000;

/// VMCS fields (Intel's encodings).
const GUEST_RIP: u32 = guest::RIP;
const HOST_RIP: u32 = x86::vmx::vmcs::host::RIP;
const EPT_POINTER: u32 = control::EPTP_FULL;
const GUEST_CR4: u32 = guest::CR4;
const GUEST_ACTIVITY_STATE: u32 = guest::ACTIVITY_STATE;
const CR4_MASK: u32 = control::CR4_GUEST_HOST_MASK;
/// CR4.PKE (protection keys).
const CR4_PKE: u64 = 1 << 22;

/// The guest: real mode, 16-bit code.
const GUEST_CODE: [u8; 32] = [
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'H', // mov al, 'H'
    0xee, // out dx, al
    0xb0, b'i', // mov al, 'i'
    0xee, // out dx, al
    0xe6, 0x80, // out 0x80, al (let through: no exit)
    0x66, 0xb9, 0x00, 0x01, 0x00, 0xc0, // mov ecx, 0xc0000100 (IA32_FS_BASE)
    0x0f, 0x32, // rdmsr (let through: no exit)
    0x66, 0x31, 0xc0, // xor eax, eax
    0x0f, 0xa2, // cpuid
    0xc6, 0x06, 0x00, 0x30, 0x2a, // mov byte [0x3000], 0x2a
    0xf4, // hlt
    0xeb, 0xfe, // jmp $ (never reached)
];
/// Length of the `mov byte [0x3000], 0x2a` the VMM skips.
const HOLE_WRITE_LENGTH: u64 = 5;

fn setup() -> Result<Cap<Vcpu>, Error> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    real_mode_guest(untyped, at(VCPU), &GUEST_CODE)
}

/// Moves the guest past the instruction that exited.
fn skip(vcpu: Cap<Vcpu>, length: u64) -> Result<(), &'static str> {
    let rip = vcpu.read_field(state::RIP).map_err(|_| "read rip")?;
    vcpu.write_field(state::RIP, rip + length).map_err(|_| "write rip")
}

/// Which processor this is: the VT-x field interface answers only on VT-x.
fn on_vmx(vcpu: Cap<Vcpu>) -> bool {
    vcpu.read_vmcs(GUEST_RIP).is_ok()
}

/// What the guest did, as its VMM saw it.
#[derive(Default)]
struct Seen {
    output: [u8; 8],
    length: usize,
    cpuid: bool,
    hole: Option<u64>,
    halted: bool,
    exits: u32,
}

fn run_guest(vcpu: Cap<Vcpu>) -> Result<Seen, &'static str> {
    let mut seen = Seen::default();
    while !seen.halted && seen.exits < 64 {
        let e = cleave_rt::syscall::vm_enter().map_err(|_| "VmEnter refused")?;
        seen.exits += 1;
        let (reason, detail, length) = (e[exit::REASON], e[exit::DETAIL], e[exit::INSTRUCTION_LENGTH]);
        match reason {
            exit::reason::PORT_IO => {
                let port = detail & exit::io::PORT;
                let is_in = detail & exit::io::IN != 0;
                let regs = vcpu.read_registers().map_err(|_| "read registers")?;
                if port == 0x3f8 && !is_in && seen.length < seen.output.len() {
                    seen.output[seen.length] = regs[reg::RAX] as u8;
                    seen.length += 1;
                }
                skip(vcpu, length)?;
            }
            exit::reason::CPUID => {
                // A stated policy for the test: leaf 0 answers "CleaveCleave" and no leaves.
                let text = u32::from_le_bytes(*b"Clea") as u64;
                let more = u32::from_le_bytes(*b"veCl") as u64;
                let end = u32::from_le_bytes(*b"eave") as u64;
                vcpu.write_registers(&[0, text, end, more]).map_err(|_| "write registers")?;
                seen.cpuid = true;
                skip(vcpu, length)?;
            }
            exit::reason::MEMORY => {
                seen.hole = Some(e[exit::ADDRESS]);
                // Emulated as a write to nothing: the instruction is known here.
                skip(vcpu, HOLE_WRITE_LENGTH)?;
            }
            exit::reason::HLT => seen.halted = true,
            other => {
                println!("vcpu-test: unexpected exit {other:#x}, detail {detail:#x}");
                return Err("unexpected exit");
            }
        }
    }
    Ok(seen)
}

/// The neutral guest-state fields, with their widths in bits (every one, so the kernel's
/// checks see values they must refuse as well as ones they must take).
const NEUTRAL_FIELDS: [(u64, u32); 52] = {
    let mut fields = [(0, 64); 52];
    let plain = [
        (state::RIP, 64),
        (state::RSP, 64),
        (state::RFLAGS, 64),
        (state::CR0, 64),
        (state::CR2, 64),
        (state::CR3, 64),
        (state::CR4, 64),
        (state::EFER, 64),
        (state::INTERRUPT_SHADOW, 2),
        (state::EVENT, 64),
        (state::INTERRUPT_WINDOW, 2),
        (state::DR7, 64),
    ];
    let mut i = 0;
    while i < plain.len() {
        fields[i] = plain[i];
        i += 1;
    }
    let mut s = 0;
    while s < 10 {
        // GDTR and IDTR have no selector and attributes: the kernel must refuse those.
        let widths = [16, 64, 32, 17];
        let mut p = 0;
        while p < 4 {
            fields[(12 + 4 * s + p) as usize] = (state::segment(s, p), widths[p as usize]);
            p += 1;
        }
        s += 1;
    }
    fields
};

/// VT-x only, besides: the VMCS fields a VMM may write, with their widths in bits
/// (Intel's encodings), the event-injection fields, and the controls it may choose (not
/// the primary controls: a guest without HLT exiting would halt in this code for good).
const VMCS_FIELDS: [(u32, u32); 54] = [
    (guest::ES_SELECTOR, 16),
    (guest::CS_SELECTOR, 16),
    (guest::SS_SELECTOR, 16),
    (guest::DS_SELECTOR, 16),
    (guest::FS_SELECTOR, 16),
    (guest::GS_SELECTOR, 16),
    (guest::LDTR_SELECTOR, 16),
    (guest::TR_SELECTOR, 16),
    (guest::IA32_DEBUGCTL_FULL, 64),
    (guest::IA32_PAT_FULL, 64),
    (guest::IA32_EFER_FULL, 64),
    (guest::ES_LIMIT, 32),
    (guest::CS_LIMIT, 32),
    (guest::SS_LIMIT, 32),
    (guest::DS_LIMIT, 32),
    (guest::FS_LIMIT, 32),
    (guest::GS_LIMIT, 32),
    (guest::LDTR_LIMIT, 32),
    (guest::TR_LIMIT, 32),
    (guest::GDTR_LIMIT, 32),
    (guest::IDTR_LIMIT, 32),
    (guest::ES_ACCESS_RIGHTS, 32),
    (guest::CS_ACCESS_RIGHTS, 32),
    (guest::SS_ACCESS_RIGHTS, 32),
    (guest::DS_ACCESS_RIGHTS, 32),
    (guest::FS_ACCESS_RIGHTS, 32),
    (guest::GS_ACCESS_RIGHTS, 32),
    (guest::LDTR_ACCESS_RIGHTS, 32),
    (guest::TR_ACCESS_RIGHTS, 32),
    (guest::INTERRUPTIBILITY_STATE, 32),
    (guest::IA32_SYSENTER_CS, 32),
    (guest::CR0, 64),
    (guest::CR3, 64),
    (guest::CR4, 64),
    (guest::ES_BASE, 64),
    (guest::CS_BASE, 64),
    (guest::SS_BASE, 64),
    (guest::GDTR_BASE, 64),
    (guest::IDTR_BASE, 64),
    (guest::DR7, 64),
    (guest::RSP, 64),
    (guest::RIP, 64),
    (guest::RFLAGS, 64),
    (guest::PENDING_DBG_EXCEPTIONS, 64),
    (control::VMENTRY_INTERRUPTION_INFO_FIELD, 32),
    (control::VMENTRY_EXCEPTION_ERR_CODE, 32),
    (control::VMENTRY_INSTRUCTION_LEN, 32),
    (control::EXCEPTION_BITMAP, 32),
    (control::SECONDARY_PROCBASED_EXEC_CONTROLS, 32),
    (control::VMENTRY_CONTROLS, 32),
    (control::CR0_GUEST_HOST_MASK, 64),
    (control::CR4_GUEST_HOST_MASK, 64),
    (control::CR0_READ_SHADOW, 64),
    (control::CR4_READ_SHADOW, 64),
];
/// Scrambled guests to run, and exits each may take.
const SCRAMBLED_GUESTS: u32 = 1000;
const SCRAMBLED_EXITS: u32 = 8;

/// What the scrambled guests did.
#[derive(Default)]
struct Scrambled {
    writes_taken: u32,
    writes_refused: u32,
    entries_refused: u32,
    exits: u32,
}

/// Runs [`SCRAMBLED_GUESTS`] fresh guests (code: CPUID, then HLT everywhere, so that
/// wherever a scrambled rip lands it soon exits), each with a few guest-state fields
/// scrambled, for a few exits; then destroys it by revoking its untyped (its VMCS is the
/// active one: the kernel must clear it before the memory is reused).
fn scramble(rng: &mut Rng) -> Result<Scrambled, &'static str> {
    let mut code = [0xf4u8; 4096];
    code[..2].copy_from_slice(&[0x0f, 0xa2]);
    let mut tally = Scrambled::default();
    for _ in 0..SCRAMBLED_GUESTS {
        let vcpu = real_mode_guest(Cap::from_cptr(at(SCRAMBLED)), at(SCRAMBLED + 1), &code)
            .map_err(|_| "guest set-up")?;
        let vmx = on_vmx(vcpu);
        for _ in 0..1 + rng.below(4) {
            let scrambled = |old: u64, width: u32, rng: &mut Rng| {
                let value = match rng.below(4) {
                    0 => rng.word(),
                    _ => old ^ 1 << rng.below(u64::from(width)),
                };
                if width == 64 { value } else { value & ((1 << width) - 1) }
            };
            let written = if vmx && rng.below(2) == 0 {
                let (field, width) = VMCS_FIELDS[rng.below(VMCS_FIELDS.len() as u64) as usize];
                let value = scrambled(vcpu.read_vmcs(field).unwrap_or(0), width, rng);
                vcpu.write_vmcs(field, value)
            } else {
                let (field, width) = NEUTRAL_FIELDS[rng.below(NEUTRAL_FIELDS.len() as u64) as usize];
                let value = scrambled(vcpu.read_field(field).unwrap_or(0), width, rng);
                vcpu.write_field(field, value)
            };
            match written {
                Ok(()) => tally.writes_taken += 1,
                Err(_) => tally.writes_refused += 1,
            }
        }
        for _ in 0..SCRAMBLED_EXITS {
            let e = cleave_rt::syscall::vm_enter().map_err(|_| "VmEnter refused")?;
            let reason = e[exit::REASON];
            if reason == exit::reason::ENTRY_FAILED {
                tally.entries_refused += 1;
                break;
            }
            tally.exits += 1;
            let length = e[exit::INSTRUCTION_LENGTH];
            if matches!(reason, exit::reason::HLT | exit::reason::SHUTDOWN) || !(1..=15).contains(&length) {
                break;
            }
            if skip(vcpu, length).is_err() {
                break;
            }
        }
        // Everything the guest was made of goes; the untyped is whole again.
        Cap::<cleave_rt::cap::kind::CNode>::revoke(ROOT.slot(at(SCRAMBLED), 64)).map_err(|_| "revoke")?;
    }
    Ok(tally)
}

fn main() -> i32 {
    let info = boot_info();
    emulator_tests::set_first_free(info.empty_first);
    let mut t = Suite::plan(11);
    let (big, _) = largest_ram_untyped(info);
    if big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1).is_err()
        || big.retype(ObjectType::Untyped, 18, ROOT, 0, 0, at(SCRAMBLED), 1).is_err()
    {
        return t.abandon("no memory for the test");
    }
    let vcpu = match setup() {
        Ok(v) => v,
        Err(e) => {
            println!("vcpu-test: guest set-up failed: {e:?}");
            return t.abandon("guest set-up");
        }
    };
    t.case("vcpu: ports and MSRs let through only with the authority for them", {
        let control: Cap<cleave_rt::cap::kind::IoPortControl> =
            Cap::from_cptr(cleave_abi::boot_info::slot::IO_PORT_CONTROL);
        let post = at(PORT);
        let ports = control.issue(0x80, 0x80, ROOT.slot(post, 64)).map(|()| Cap::from_cptr(post));
        let through = ports.and_then(|p| vcpu.set_io_exit(Some(p), 0x80, 0x80, false));
        let uncovered = ports.map(|p| vcpu.set_io_exit(Some(p), 0x3f8, 0x3f8, false));
        let no_cap = vcpu.set_io_exit(None, 0x60, 0x60, false);
        let fs_base = vcpu.set_msr_exit(0xc000_0100, false, false);
        let lstar = vcpu.set_msr_exit(0xc000_0082, false, false);
        let pat = vcpu.set_msr_exit(0x277, false, false);
        // LSTAR goes through (the kernel switches it: SVM's VMLOAD/VMSAVE, or itself on
        // VT-x); PAT never.
        let lstar_ok = lstar.is_ok();
        let tsc_write = vcpu.set_msr_exit(0x10, false, false);
        check(
            through.is_ok()
                && uncovered == Ok(Err(Error::InsufficientRights))
                && no_cap == Err(Error::InvalidCapability)
                && fs_base.is_ok()
                && lstar_ok
                && pat == Err(Error::IllegalOperation)
                && tsc_write == Err(Error::IllegalOperation),
            "pass-through policy",
        )
    });
    let vmx = on_vmx(vcpu);
    println!(
        "vcpu-test: {}",
        if vmx { "VT-x: VMCS fields and neutral fields" } else { "SVM: neutral fields only" }
    );
    t.case("vcpu: no host state, nested-paging root or intercept through either interface", {
        // The neutral interface has no such field; numbers past the last are refused.
        let past = vcpu.write_field(state::COUNT, 0) == Err(Error::InvalidArgument)
            && vcpu.read_field(u64::MAX) == Err(Error::InvalidArgument)
            && vcpu.write_field(state::segment(seg::GDTR, part::SELECTOR), 8) == Err(Error::InvalidArgument);
        let raw = if vmx {
            // VT-x: host state and the EPT pointer are the kernel's; so is wait-for-SIPI
            // (the guest would never exit again).
            vcpu.write_vmcs(HOST_RIP, 0) == Err(Error::IllegalOperation)
                && vcpu.write_vmcs(EPT_POINTER, 0) == Err(Error::IllegalOperation)
                && vcpu.write_vmcs(GUEST_ACTIVITY_STATE, 3) == Err(Error::IllegalOperation)
                && vcpu.read_vmcs(HOST_RIP) == Err(Error::IllegalOperation)
                && vcpu.read_vmcs(EPT_POINTER).is_ok()
        } else {
            // SVM: the VT-x interface does not exist.
            vcpu.read_vmcs(GUEST_RIP) == Err(Error::IllegalOperation)
                && vcpu.write_vmcs(GUEST_RIP, 0) == Err(Error::IllegalOperation)
        };
        check(past && raw, "a field that is the kernel's was reached")
    });
    t.case("vcpu: the guest gets neither CR4.PKE, CR4.VMXE nor EFER.SVME", {
        let cr4 = vcpu.read_field(state::CR4).unwrap_or(u64::MAX);
        let efer = vcpu.read_field(state::EFER).unwrap_or(u64::MAX);
        let pke = vcpu.write_field(state::CR4, cr4 | CR4_PKE);
        let vmxe = vcpu.write_field(state::CR4, cr4 | 1 << 13);
        let svme = vcpu.write_field(state::EFER, efer | 1 << 12);
        let unchanged = vcpu.read_field(state::CR4) == Ok(cr4) && vcpu.read_field(state::EFER) == Ok(efer);
        // On VT-x the kernel's CR4 bits also stay in the guest/host mask.
        let mask = !vmx
            || (vcpu.write_vmcs(GUEST_CR4, cr4 | CR4_PKE) == Err(Error::IllegalOperation)
                && vcpu
                    .write_vmcs(CR4_MASK, 0)
                    .and_then(|()| vcpu.read_vmcs(CR4_MASK))
                    .is_ok_and(|m| m & (CR4_PKE | 1 << 13) == CR4_PKE | 1 << 13));
        println!("vcpu-test: the guest's CR4 reads {cr4:#x}, its EFER {efer:#x}");
        check(
            pke == Err(Error::IllegalOperation)
                && vmxe == Err(Error::IllegalOperation)
                && svme == Err(Error::IllegalOperation)
                && unchanged
                && cr4 & (1 << 13) == 0
                && efer & (1 << 12) == 0
                && mask,
            "a bit the kernel keeps was given, or shown",
        )
    });
    let seen = run_guest(vcpu);
    match &seen {
        Ok(seen) => {
            let said = core::str::from_utf8(&seen.output[..seen.length]).unwrap_or("?");
            println!("vcpu-test: guest said {said:?} through port 0x3f8");
            println!("vcpu-test: CPUID exit handled: {}", seen.cpuid);
            match seen.hole {
                Some(gpa) => println!("vcpu-test: memory exit at {gpa:#x}"),
                None => println!("vcpu-test: no memory exit"),
            }
            println!(
                "vcpu-test: guest halted after {} exits (its OUT to port 0x80 and RDMSR of FS_BASE went through)",
                seen.exits
            );
        }
        Err(e) => println!("vcpu-test: guest run failed: {e}"),
    }
    // Each of these cases fails with the run's error if the guest did not run.
    let ran = |ok: fn(&Seen) -> bool, why| seen.as_ref().map_err(|e| *e).and_then(|s| check(ok(s), why));
    t.case("vcpu: guest output through I/O exits", ran(|s| &s.output[..s.length] == b"Hi", "wrong output"));
    t.case("vcpu: CPUID exit", ran(|s| s.cpuid, "no CPUID exit"));
    t.case("vcpu: memory exit", ran(|s| s.hole == Some(HOLE), "no memory exit"));
    t.case("vcpu: HLT exit", ran(|s| s.halted, "never halted"));
    t.case("vcpu: let-through port and MSR did not exit", ran(|s| s.exits == 5, "extra exits"));
    // The first guest goes (its Vcpu is bound to this thread; its page is mapped where
    // every scrambled guest's will be).
    let gone = Cap::<cleave_rt::cap::kind::CNode>::delete(ROOT.slot(at(VCPU), 64))
        .and_then(|()| Cap::<cleave_rt::cap::kind::CNode>::delete(ROOT.slot(at(VCPU + 6), 64)));
    let scrambled =
        gone.map_err(|_| "removing the first guest").and_then(|()| scramble(&mut Rng(0x005c_4a3b_1ed0_0001)));
    t.case("vcpu: scrambled guest state never breaks the kernel", scrambled.and_then(|t| {
            println!(
                "vcpu-test: {SCRAMBLED_GUESTS} scrambled guests: {} field writes taken, {} refused; {} entries refused, {} exits",
                t.writes_taken, t.writes_refused, t.entries_refused, t.exits
            );
            let varied = t.writes_taken > 0 && t.writes_refused > 0 && t.entries_refused > 0 && t.exits > 0;
            check(varied, "the scrambling was too tame")
        }),
    );
    // A guest has run: the descriptor-table limits must be the kernel's again (a VM exit
    // leaves them 0xFFFF, and selectors past the real GDT would name kernel memory).
    t.case("vcpu: GDT and IDT limits are the kernel's again after VM exits", {
        let (gdt, idt) = descriptor_table_limits();
        println!("vcpu-test: after the guests, this thread reads GDT limit {gdt:#x}, IDT limit {idt:#x}");
        check(gdt < 0x100 && idt == 0xfff, "a limit is still what the VM exit left")
    });
    t.case(
        "vcpu: a guest finds neither KERNEL_GS_BASE, CR2 nor LSTAR of the guest before it",
        guests_do_not_share_unswitched_state(),
    );
    t.finish()
}

/// `sgdt` and `sidt` from ring 3 (the kernel does not turn on UMIP): the two limits.
fn descriptor_table_limits() -> (u16, u16) {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: `sgdt`/`sidt` store 10 bytes each into the two local buffers; nothing else
    // is touched.
    unsafe {
        core::arch::asm!(
            "sgdt [{g}]",
            "sidt [{i}]",
            g = in(reg) gdtr.as_mut_ptr(),
            i = in(reg) idtr.as_mut_ptr(),
            options(nostack, preserves_flags)
        );
    }
    (u16::from_le_bytes([gdtr[0], gdtr[1]]), u16::from_le_bytes([idtr[0], idtr[1]]))
}

/// The first guest writes IA32_KERNEL_GS_BASE (let through to the processor) and CR2,
/// which the VMCS does not switch; the second, a fresh Vcpu, reads both: it must find its
/// own zeros, not the first one's values.
const WRITER_CODE: [u8; 44] = [
    0x66, 0xb9, 0x02, 0x01, 0x00, 0xc0, // mov ecx, 0xc0000102 (IA32_KERNEL_GS_BASE)
    0x66, 0xb8, 0x44, 0x33, 0x22, 0x11, // mov eax, 0x11223344
    0x66, 0x31, 0xd2, // xor edx, edx
    0x0f, 0x30, // wrmsr
    0x66, 0xb9, 0x82, 0x00, 0x00, 0xc0, // mov ecx, 0xc0000082 (LSTAR)
    0x66, 0xb8, 0x88, 0x77, 0x66, 0x55, // mov eax, 0x55667788
    0x66, 0x31, 0xd2, // xor edx, edx
    0x0f, 0x30, // wrmsr
    0x66, 0xb8, 0x00, 0xb0, 0xad, 0xde, // mov eax, 0xdeadb000
    0x0f, 0x22, 0xd0, // mov cr2, eax
    0xf4, // hlt
];
const READER_CODE: [u8; 29] = [
    0x66, 0xb9, 0x82, 0x00, 0x00, 0xc0, // mov ecx, 0xc0000082 (LSTAR)
    0x0f, 0x32, // rdmsr
    0x66, 0x89, 0xc6, // mov esi, eax
    0x66, 0xb9, 0x02, 0x01, 0x00, 0xc0, // mov ecx, 0xc0000102
    0x0f, 0x32, // rdmsr
    0x66, 0x89, 0xc3, // mov ebx, eax
    0x0f, 0x20, 0xd0, // mov eax, cr2
    0xf4, // hlt
    0xeb, 0xfe, 0x90, // jmp $ (never reached)
];
const WRITER: u64 = 60;
const READER: u64 = 75;

fn guests_do_not_share_unswitched_state() -> Result<(), &'static str> {
    let untyped: Cap<Untyped> = Cap::from_cptr(at(UT));
    let run_to_halt = |vcpu: Cap<Vcpu>| -> Result<(), &'static str> {
        vcpu.set_msr_exit(0xc000_0102, false, false).map_err(|_| "KERNEL_GS_BASE not let through")?;
        vcpu.set_msr_exit(0xc000_0082, false, false).map_err(|_| "LSTAR not let through")?;
        let e = cleave_rt::syscall::vm_enter().map_err(|_| "VmEnter refused")?;
        if e[exit::REASON] != exit::reason::HLT {
            println!("vcpu-test: unexpected exit {:#x}, detail {:#x}", e[exit::REASON], e[exit::DETAIL]);
            return Err("the guest did not halt");
        }
        Ok(())
    };
    let writer = real_mode_guest(untyped, at(WRITER), &WRITER_CODE).map_err(|_| "first guest")?;
    run_to_halt(writer)?;
    // Its page leaves this address space (the second guest's goes there).
    Cap::<cleave_rt::cap::kind::CNode>::delete(ROOT.slot(at(WRITER + 6), 64)).map_err(|_| "unmap")?;
    let reader = real_mode_guest(untyped, at(READER), &READER_CODE).map_err(|_| "second guest")?;
    run_to_halt(reader)?;
    let regs = reader.read_registers().map_err(|_| "read registers")?;
    let (gs, cr2, lstar) = (regs[reg::RBX], regs[reg::RAX], regs[reg::RSI]);
    println!(
        "vcpu-test: the second guest reads KERNEL_GS_BASE {gs:#x}, CR2 {cr2:#x}, LSTAR {lstar:#x} (the first wrote 0x11223344, 0xdeadb000, 0x55667788)"
    );
    let _ = Cap::<cleave_rt::cap::kind::CNode>::delete(ROOT.slot(at(READER + 6), 64));
    // (This thread's own system calls after both guests ran show the kernel's LSTAR and
    // SFMASK came back.)
    check(gs == 0 && cr2 == 0 && lstar == 0, "the second guest saw the first one's state")
}
