//! VT-x test (root task, Bochs): builds a Vcpu and a guest-physical address space (EPT
//! tables and one page of guest RAM), puts a small real-mode guest in it and acts as its
//! VMM: the guest writes "Hi" to a UART port (I/O exits), asks CPUID, writes to a
//! guest-physical address nothing is mapped at (an EPT violation the VMM skips) and halts.
//! Also checks that a VMM cannot write host state or the EPT pointer.
#![no_std]
#![no_main]

use cleave_abi::vcpu::{exit, reg};
use cleave_abi::{Error, ObjectType};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{Untyped, Vcpu};
use cleave_rt::println;
use cleave_tests::{ROOT, check, expect, finish, largest_ram_untyped, real_mode_guest};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

cleave_rt::entry!(main);

static FIRST_FREE: AtomicU64 = AtomicU64::new(0);

fn at(i: u64) -> u64 {
    FIRST_FREE.load(SeqCst) + i
}

const UT: u64 = 0;
/// The guest's objects take slots from here on (to VCPU + 11).
const VCPU: u64 = 1;
/// An IoPort capability for port 0x80.
const PORT: u64 = 20;

/// A guest-physical address with nothing behind it.
const HOLE: u64 = 0x3000;

/// VMCS fields (Intel's encodings).
const GUEST_RIP: u32 = 0x681e;
const HOST_RIP: u32 = 0x6c16;
const EPT_POINTER: u32 = 0x201a;

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
    let rip = vcpu.read_vmcs(GUEST_RIP).map_err(|_| "read rip")?;
    vcpu.write_vmcs(GUEST_RIP, rip + length).map_err(|_| "write rip")
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
        let (reason, qualification, length) =
            (e[exit::REASON], e[exit::QUALIFICATION], e[exit::INSTRUCTION_LENGTH]);
        match reason {
            exit::reason::IO => {
                let port = qualification >> 16;
                let is_in = qualification & (1 << 3) != 0;
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
            exit::reason::EPT_VIOLATION => {
                seen.hole = Some(e[exit::GUEST_PHYSICAL]);
                // Emulated as a write to nothing: the instruction is known here.
                skip(vcpu, HOLE_WRITE_LENGTH)?;
            }
            exit::reason::HLT => seen.halted = true,
            other => {
                println!("vmx-test: unexpected exit {other:#x}, qualification {qualification:#x}");
                return Err("unexpected exit");
            }
        }
    }
    Ok(seen)
}

fn main() -> i32 {
    let info = boot_info();
    FIRST_FREE.store(info.empty_first, SeqCst);
    let mut failures = 0;
    let (big, _) = largest_ram_untyped(info);
    if big.retype(ObjectType::Untyped, 20, ROOT, 0, 0, at(UT), 1).is_err() {
        println!("TEST FAIL: no memory for the test");
        return 1;
    }
    let vcpu = match setup() {
        Ok(v) => v,
        Err(e) => {
            println!("TEST FAIL: guest set-up: {e:?}");
            return 1;
        }
    };
    expect("vmx: ports and MSRs let through only with the authority for them", &mut failures, {
        let control: Cap<cleave_rt::cap::kind::IoPortControl> =
            Cap::from_cptr(cleave_abi::boot_info::slot::IO_PORT_CONTROL);
        let post = at(PORT);
        let ports = control.issue(0x80, 0x80, ROOT.slot(post, 64)).map(|()| Cap::from_cptr(post));
        let through = ports.and_then(|p| vcpu.set_io_exit(Some(p), 0x80, 0x80, false));
        let uncovered = ports.map(|p| vcpu.set_io_exit(Some(p), 0x3f8, 0x3f8, false));
        let no_cap = vcpu.set_io_exit(None, 0x60, 0x60, false);
        let fs_base = vcpu.set_msr_exit(0xc000_0100, false, false);
        let lstar = vcpu.set_msr_exit(0xc000_0082, false, false);
        let tsc_write = vcpu.set_msr_exit(0x10, false, false);
        check(
            through.is_ok()
                && uncovered == Ok(Err(Error::InsufficientRights))
                && no_cap == Err(Error::InvalidCapability)
                && fs_base.is_ok()
                && lstar == Err(Error::IllegalOperation)
                && tsc_write == Err(Error::IllegalOperation),
            "pass-through policy",
        )
    });
    expect("vmx: a VMM cannot write host state or the EPT pointer", &mut failures, {
        let host = vcpu.write_vmcs(HOST_RIP, 0);
        let eptp = vcpu.write_vmcs(EPT_POINTER, 0);
        let read_host = vcpu.read_vmcs(HOST_RIP);
        check(
            host == Err(Error::IllegalOperation)
                && eptp == Err(Error::IllegalOperation)
                && read_host == Err(Error::IllegalOperation)
                && vcpu.read_vmcs(EPT_POINTER).is_ok(),
            "forbidden VMCS field accepted",
        )
    });
    match run_guest(vcpu) {
        Ok(seen) => {
            let said = core::str::from_utf8(&seen.output[..seen.length]).unwrap_or("?");
            println!("vmx-test: guest said {said:?} through port 0x3f8");
            println!("vmx-test: CPUID exit handled: {}", seen.cpuid);
            match seen.hole {
                Some(gpa) => println!("vmx-test: EPT violation at {gpa:#x}"),
                None => println!("vmx-test: no EPT violation"),
            }
            println!(
                "vmx-test: guest halted after {} exits (its OUT to port 0x80 and RDMSR of FS_BASE went through)",
                seen.exits
            );
            expect("vmx: guest output through I/O exits", &mut failures, check(said == "Hi", "wrong output"));
            expect("vmx: CPUID exit", &mut failures, check(seen.cpuid, "no CPUID exit"));
            expect("vmx: EPT violation", &mut failures, check(seen.hole == Some(HOLE), "no EPT violation"));
            expect("vmx: HLT exit", &mut failures, check(seen.halted, "never halted"));
            expect(
                "vmx: let-through port and MSR did not exit",
                &mut failures,
                check(seen.exits == 5, "extra exits"),
            );
        }
        Err(e) => {
            println!("vmx-test: guest run failed: {e}");
            failures += 1;
        }
    }
    finish("vmx-test", failures)
}
