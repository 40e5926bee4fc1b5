//! VM exit benchmark (root task; VT-x in Bochs, SVM in QEMU `-icount shift=0`: the same
//! program, the same neutral Vcpu interface). Both emulators make the time stamp counter
//! advance once per executed instruction, so TSC differences are instruction counts.
//!
//! Three figures, each printed as a `bench ARCH.NAME = ...` line (ARCH `vmx` or `svm`):
//!
//! - `cpuid_exit_round_trip`: a real-mode guest loops on CPUID; the VMM (this program)
//!   moves RIP past each CPUID with the neutral interface (`read_field(RIP)`,
//!   `write_field(RIP, rip + length)`) and enters again. One iteration of that loop, from
//!   a TSC read to the next, is the round trip: guest CPUID, `VmEnter` returns, the VMM
//!   handles the exit, `VmEnter` again, the guest's jump back to its CPUID.
//! - `kernel_exit_round_trip`: the kernel's part alone. The guest reads the TSC (RDTSC)
//!   and then executes CPUID; the VMM reads the TSC just before its `syscall` and just
//!   after it returns, in one `asm!` block. The instructions of that block without the
//!   `syscall` (measured by running the block with the `syscall` left out) and the guest's
//!   RDTSC are subtracted; the intercepted CPUID never completes and the TSC does not count
//!   it (in QEMU the total agrees with an instruction trace). What remains is the `syscall` and every kernel instruction until the VMM's
//!   next instruction; the guest's TSC splits it into entry (up to and including VMRUN or
//!   VMRESUME) and exit (from the VM exit to `sysretq`).
//! - `bench-vcpu: start` and `bench-vcpu: done N exits` around N round trips of the
//!   first kind: `cargo xtask bench` times them by when the two lines reach the host, in a
//!   run without `-icount` (the wall-clock rate of handled exits).
#![no_std]
#![no_main]

use cleave_abi::vcpu::{exit, reg, state};
use cleave_abi::{ObjectType, Syscall};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{Untyped, Vcpu};
use cleave_rt::println;
use cleave_rt::syscall::{rdtsc, vm_enter};
use emulator_tests::{GUEST_PAGE, ROOT, largest_ram_untyped, real_mode_guest};

cleave_rt::entry!(main);

/// The guest's code, at [`GUEST_PAGE`]: at offset 0 `rdtsc; cpuid` (the kernel-part
/// measurement enters it at offset 0 each time), at [`LOOP`] `cpuid; jmp $-4` (the
/// handled loop).
const GUEST_CODE: [u8; 0x14] = [
    0x0f, 0x31, // 0x00: rdtsc
    0x0f, 0xa2, // 0x02: cpuid
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
    0x0f, 0xa2, // 0x10: cpuid
    0xeb, 0xfc, // 0x12: jmp 0x10
];
/// Where the handled loop starts, relative to [`GUEST_PAGE`].
const LOOP: u64 = 0x10;
/// Timed exits of each kind (the median is reported).
const SAMPLES: usize = 257;
/// Handled exits in the wall-clock rate run.
const RATE_EXITS: u64 = 100_000;

fn main() -> i32 {
    let info = boot_info();
    let first = info.empty_first;
    let (big, _) = largest_ram_untyped(info);
    if big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, first, 1).is_err() {
        println!("TEST FAIL: no memory for the benchmark");
        return 1;
    }
    let untyped: Cap<Untyped> = Cap::from_cptr(first);
    let vcpu = match real_mode_guest(untyped, first + 1, &GUEST_CODE) {
        Ok(vcpu) => vcpu,
        Err(e) => {
            println!("TEST FAIL: guest set-up: {e:?}");
            return 1;
        }
    };
    // The VT-x field interface answers only on VT-x.
    let arch = if vcpu.read_vmcs(x86::vmx::vmcs::guest::RIP).is_ok() { "vmx" } else { "svm" };
    match run(vcpu, arch) {
        Ok(()) => {
            println!("TEST PASS");
            0
        }
        Err(why) => {
            println!("TEST FAIL: {why}");
            1
        }
    }
}

fn run(vcpu: Cap<Vcpu>, arch: &str) -> Result<(), &'static str> {
    kernel_part(vcpu, arch)?;
    round_trip(vcpu, arch)?;
    // The guest is in its CPUID loop (`round_trip` left it there).
    println!("bench-vcpu: start");
    for _ in 0..RATE_EXITS {
        handled_exit(vcpu)?;
    }
    println!("bench-vcpu: done {RATE_EXITS} exits");
    Ok(())
}

/// Enters the guest, expects a CPUID exit and moves the guest past the CPUID, as a VMM
/// handling it would (without emulating it: the guest's registers stay as they are).
#[inline(always)]
fn handled_exit(vcpu: Cap<Vcpu>) -> Result<(), &'static str> {
    let words = vm_enter().map_err(|_| "VmEnter refused")?;
    if words[exit::REASON] != exit::reason::CPUID || words[exit::INSTRUCTION_LENGTH] == 0 {
        return Err("expected a CPUID exit with its length");
    }
    let rip = vcpu.read_field(state::RIP).map_err(|_| "read rip")?;
    vcpu.write_field(state::RIP, rip + words[exit::INSTRUCTION_LENGTH]).map_err(|_| "write rip")
}

/// Instructions between two TSC reads with nothing between them.
fn read_overhead() -> u64 {
    (0..16).map(|_| rdtsc().wrapping_neg().wrapping_add(rdtsc())).min().unwrap_or(0)
}

/// The median, least and greatest of `samples` (sorted in place).
fn spread(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[0], samples[samples.len() - 1])
}

/// `cpuid_exit_round_trip`: one iteration of the handled loop, TSC read to TSC read.
fn round_trip(vcpu: Cap<Vcpu>, arch: &str) -> Result<(), &'static str> {
    vcpu.write_field(state::RIP, GUEST_PAGE + LOOP).map_err(|_| "write rip")?;
    // The first exit (after the RIP write above) starts the loop.
    handled_exit(vcpu)?;
    let overhead = read_overhead();
    let mut samples = [0u64; SAMPLES];
    let mut last = rdtsc();
    for sample in &mut samples {
        handled_exit(vcpu)?;
        let now = rdtsc();
        *sample = now.wrapping_sub(last).wrapping_sub(overhead);
        last = now;
    }
    let (median, min, max) = spread(&mut samples);
    println!(
        "bench {arch}.cpuid_exit_round_trip = {median} instructions (median of {SAMPLES}; min {min}, max {max}; guest CPUID, VmEnter returns, the VMM reads RIP and writes RIP + 2, VmEnter, the guest's jump back)"
    );
    Ok(())
}

/// TSC reads just before `syscall` and just after it returns, with `$middle` between them
/// (`"syscall"` or nothing): returns (before, after, rax and rdx after `$middle`).
macro_rules! timed {
    ($middle:literal) => {{
        let (before, after, status, reason): (u64, u64, u64, u64);
        // SAFETY: `syscall` with the kernel's convention (rax the number, rdi the
        // capability, rsi the message info; status, badge, info and words come back in
        // rax, rdi, rsi, rdx, r8-r10; rcx and r11 are destroyed), all of which are declared
        // here. VmEnter touches no memory of this program. RDTSC only reads the counter.
        unsafe {
            core::arch::asm!(
                "rdtsc",
                "shl rdx, 32",
                "or rax, rdx",
                "mov r12, rax",
                "mov eax, {number}",
                $middle,
                "mov r13, rax",
                "mov r14, rdx",
                "rdtsc",
                "shl rdx, 32",
                "or rax, rdx",
                number = const Syscall::VmEnter as u32,
                out("rax") after,
                out("r12") before,
                out("r13") status,
                out("r14") reason,
                inout("rdi") 0u64 => _,
                inout("rsi") 0u64 => _,
                out("rdx") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("rcx") _,
                out("r11") _,
                options(nostack)
            );
        }
        (before, after, status, reason)
    }};
}

/// Instructions of the timing block from its first RDTSC up to the `syscall`, excluded:
/// the RDTSC, `shl`, `or`, `mov r12` and `mov eax`. The guest's TSC less the VMM's first
/// less these is the `syscall` and the kernel's entry path, whether a TSC read counts the
/// RDTSC that makes it or not (both reads are RDTSCs).
const ENTRY_BLOCK: u64 = 5;

/// `kernel_exit_round_trip`: the kernel's instructions for one exit, split by the guest's
/// TSC read into entry and exit.
fn kernel_part(vcpu: Cap<Vcpu>, arch: &str) -> Result<(), &'static str> {
    // The timing block's own instructions (the `syscall` left out).
    let block = (0..16)
        .map(|_| {
            let (before, after, _, _) = timed!("");
            after - before
        })
        .min()
        .unwrap_or(0);
    // Instructions the guest completes per entry: its RDTSC (CPUID exits instead).
    const GUEST_INSTRUCTIONS: u64 = 1;
    let mut totals = [0u64; SAMPLES];
    let mut entries = [0u64; SAMPLES];
    let mut exits = [0u64; SAMPLES];
    for i in 0..=SAMPLES {
        vcpu.write_field(state::RIP, GUEST_PAGE).map_err(|_| "write rip")?;
        let (before, after, status, reason) = timed!("syscall");
        if status != 0 || reason != exit::reason::CPUID {
            return Err("expected a CPUID exit");
        }
        let regs = vcpu.read_registers().map_err(|_| "read registers")?;
        let guest = (regs[reg::RDX] & 0xffff_ffff) << 32 | (regs[reg::RAX] & 0xffff_ffff);
        if i == 0 {
            // The first entry also loads the guest's floating-point state.
            continue;
        }
        // (Wrapping: without `-icount` the TSC is not an instruction count, and these
        // figures are meaningless but must not stop the rate run.)
        totals[i - 1] = (after - before).wrapping_sub(block + GUEST_INSTRUCTIONS);
        entries[i - 1] = guest.wrapping_sub(before).wrapping_sub(ENTRY_BLOCK);
        exits[i - 1] = totals[i - 1].wrapping_sub(entries[i - 1]);
    }
    let (median, min, max) = spread(&mut totals);
    let (entry, _, _) = spread(&mut entries);
    let (exit, _, _) = spread(&mut exits);
    println!(
        "bench {arch}.kernel_exit_round_trip = {median} instructions (goal <= 300; median of {SAMPLES}; min {min}, max {max}; entry {entry} from the syscall to VM entry, exit {exit} from VM exit to sysretq; the VMM's TSC reads around its syscall less the block's own {block} instructions and the guest's one (RDTSC; its intercepted CPUID is not counted))"
    );
    Ok(())
}
