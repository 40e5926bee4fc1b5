//! VT-x test (root task, Bochs): builds a Vcpu and a guest-physical address space (EPT
//! tables and one page of guest RAM), puts a small real-mode guest in it and acts as its
//! VMM: the guest writes "Hi" to a UART port (I/O exits), asks CPUID, writes to a
//! guest-physical address nothing is mapped at (an EPT violation the VMM skips) and halts.
//! Also checks that a VMM cannot write host state or the EPT pointer.
#![no_std]
#![no_main]

use cleave_abi::boot_info::slot;
use cleave_abi::vcpu::{exit, reg};
use cleave_abi::{Error, ObjectType, Rights};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{EptRoot, EptTable, Frame, Tcb, Untyped, VSpace, Vcpu};
use cleave_rt::println;
use cleave_tests::{ROOT, check, expect, finish, frame, largest_ram_untyped, map_tables};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

cleave_rt::entry!(main);

static FIRST_FREE: AtomicU64 = AtomicU64::new(0);

fn at(i: u64) -> u64 {
    FIRST_FREE.load(SeqCst) + i
}

const UT: u64 = 0;
const VCPU: u64 = 1;
const EPT4: u64 = 2;
const EPT3: u64 = 3;
const EPT2: u64 = 4;
const EPT1: u64 = 5;
const RAM: u64 = 6;
const RAM_ALIAS: u64 = 7;
const TABLES: u64 = 8; // 8..12 for map_tables

/// Where the VMM sees the guest's RAM page.
const VA: u64 = 0x5000_0000_0000;
/// Where the guest sees it, and where it starts (CS 0, IP 0x1000).
const GUEST_RAM: u64 = 0x1000;
/// A guest-physical address with nothing behind it.
const HOLE: u64 = 0x3000;

/// VMCS fields (Intel's encodings).
const GUEST_RIP: u32 = 0x681e;
const GUEST_RSP: u32 = 0x681c;
const HOST_RIP: u32 = 0x6c16;
const EPT_POINTER: u32 = 0x201a;

/// The guest: real mode, 16-bit code.
const GUEST_CODE: [u8; 22] = [
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'H', // mov al, 'H'
    0xee, // out dx, al
    0xb0, b'i', // mov al, 'i'
    0xee, // out dx, al
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
    untyped.retype(ObjectType::Vcpu, 0, ROOT, 0, 0, at(VCPU), 1)?;
    for (ty, i) in [
        (ObjectType::EptPml4, EPT4),
        (ObjectType::EptPdpt, EPT3),
        (ObjectType::EptPd, EPT2),
        (ObjectType::EptPt, EPT1),
    ] {
        untyped.retype(ty, 0, ROOT, 0, 0, at(i), 1)?;
    }
    let ram = frame(untyped, at(RAM))?;
    // The VMM's own view of the page, through a copy of the capability.
    ROOT.copy(ROOT.slot(at(RAM_ALIAS), 64), ROOT.slot(at(RAM), 64), Rights::ALL)?;
    let me: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
    map_tables(untyped, me, VA, at(TABLES))?;
    Cap::<Frame>::from_cptr(at(RAM_ALIAS)).map(me, VA, Rights::ALL, true)?;
    for (i, b) in GUEST_CODE.iter().enumerate() {
        // SAFETY: VA maps the RAM page read-write (just above); i < 4096.
        unsafe { core::ptr::write_volatile((VA + i as u64) as *mut u8, *b) }
    }
    let root: Cap<EptRoot> = Cap::from_cptr(at(EPT4));
    for table in [EPT3, EPT2, EPT1] {
        Cap::<EptTable>::from_cptr(at(table)).map(root, 0)?;
    }
    ram.map_ept(root, GUEST_RAM, Rights::ALL, false)?;
    let vcpu: Cap<Vcpu> = Cap::from_cptr(at(VCPU));
    vcpu.set_tcb(Cap::<Tcb>::from_cptr(slot::TCB))?;
    vcpu.set_ept(root)?;
    vcpu.write_vmcs(GUEST_RIP, GUEST_RAM)?;
    vcpu.write_vmcs(GUEST_RSP, 0x1ff0)?;
    Ok(vcpu)
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
            println!("vmx-test: guest halted after {} exits", seen.exits);
            expect("vmx: guest output through I/O exits", &mut failures, check(said == "Hi", "wrong output"));
            expect("vmx: CPUID exit", &mut failures, check(seen.cpuid, "no CPUID exit"));
            expect("vmx: EPT violation", &mut failures, check(seen.hole == Some(HOLE), "no EPT violation"));
            expect("vmx: HLT exit", &mut failures, check(seen.halted, "never halted"));
        }
        Err(e) => {
            println!("vmx-test: guest run failed: {e}");
            failures += 1;
        }
    }
    finish("vmx-test", failures)
}
