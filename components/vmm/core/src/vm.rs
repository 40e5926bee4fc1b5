//! Exit handling: what the VMM does about one VM exit, as a function of the machine's
//! state (devices, time) and the guest's registers. The thin shell in the VMM component
//! reads the exit and the registers from the kernel, calls [`Vm::handle`], writes back
//! what changed, injects what [`Vm::injection`] says and enters the guest again, or stops
//! it with the [`Stop`] reason printed.
//!
//! Devices: a 16550 UART at 0x3f8 (the guest's console), two 8259 PICs and an 8254 PIT
//! (the guest's timer, IRQ 0), a power-off port (0x501: the guest ends with the byte it
//! writes), and the test device at [`test_device::BASE`] reached through EPT violations
//! (the faulting instruction is decoded). Other ports read as all ones and ignore writes,
//! as unpopulated ports do on a PC.

use crate::cpuid;
use crate::devices::pic8259::PicPair;
use crate::devices::pit8254::Pit;
use crate::devices::uart16550::{Console, Uart};
use crate::mmio;
use crate::paging;
use crate::test_device::{self, TestDevice};
use core::fmt;

/// Exit reasons (SDM vol. 3, appendix C) the kernel reports and this VMM handles.
pub use cleave_abi::vcpu::exit::reason;

/// One exit as the kernel reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// Basic reason (bit 31 set if the entry failed).
    pub reason: u64,
    /// Exit qualification.
    pub qualification: u64,
    /// Guest-physical address (EPT exits).
    pub guest_physical: u64,
    /// Length of the exiting instruction (where reported).
    pub instruction_length: u64,
}

pub use crate::guest::{Cpu, GuestMemory, gpr};

/// Why the VMM stops a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote its exit code to the power-off port.
    PoweredOff(u8),
    /// Triple fault.
    TripleFault,
    /// An access to guest-physical memory with nothing behind it.
    UnmappedAccess {
        /// The address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
        /// Where the guest was.
        rip: u64,
    },
    /// A write to guest memory that is mapped read-only.
    ReadOnlyWrite {
        /// The address.
        gpa: u64,
        /// Where the guest was.
        rip: u64,
    },
    /// RDMSR or WRMSR of an MSR this VMM does not offer.
    BadMsr {
        /// The MSR.
        msr: u32,
        /// WRMSR rather than RDMSR.
        write: bool,
    },
    /// HLT with interrupts off and no timer running: it would never wake.
    HaltedForever,
    /// An MMIO instruction the VMM cannot emulate (or could not fetch).
    Undecodable {
        /// Where the guest was.
        rip: u64,
    },
    /// An exit this VMM does not handle.
    Unhandled {
        /// The exit reason.
        reason: u64,
        /// Its qualification.
        qualification: u64,
    },
    /// The kernel refused to enter the guest (a VMM bug or a guest state the processor
    /// rejects).
    EntryFailed(u64),
    /// The guest asked for something this VMM does not offer.
    NotOffered(&'static str),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PoweredOff(code) => write!(f, "powered off with code {code}"),
            Self::TripleFault => write!(f, "triple fault"),
            Self::UnmappedAccess { gpa, write, rip } => write!(
                f,
                "{} guest-physical {gpa:#x}, where nothing is mapped (rip {rip:#x})",
                if write { "wrote" } else { "read" }
            ),
            Self::ReadOnlyWrite { gpa, rip } => {
                write!(f, "wrote read-only guest-physical {gpa:#x} (rip {rip:#x})")
            }
            Self::BadMsr { msr, write } => {
                write!(
                    f,
                    "{} MSR {msr:#x}, which this VMM does not offer",
                    if write { "wrote" } else { "read" }
                )
            }
            Self::HaltedForever => write!(f, "halted with interrupts off and no timer: it would never wake"),
            Self::Undecodable { rip } => write!(f, "MMIO instruction at rip {rip:#x} cannot be emulated"),
            Self::Unhandled { reason, qualification } => {
                write!(f, "exit reason {reason} (qualification {qualification:#x}) is not handled")
            }
            Self::EntryFailed(code) => write!(f, "the kernel could not enter the guest (error {code:#x})"),
            Self::NotOffered(what) => write!(f, "asked for {what}, which this VMM does not offer"),
        }
    }
}

/// What to do after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Enter the guest again (with the registers in [`Cpu`] as changed).
    Resume,
    /// Stop the guest for good.
    Stop(Stop),
}

/// What to inject before the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Nothing is pending.
    None,
    /// Deliver this external-interrupt vector now.
    Vector(u8),
    /// An interrupt is pending but the guest cannot take it yet: exit when it can
    /// (interrupt-window exiting).
    WhenOpen,
}

/// The power-off port: a byte written there ends the guest with that code.
pub const POWER_OFF_PORT: u16 = 0x501;
/// The UART's base port.
pub const COM1: u16 = 0x3f8;

/// MSRs this VMM offers (reads): the TSC, EFER (as the VMCS holds it), MISC_ENABLE (0).
const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_EFER: u32 = 0xc000_0080;

/// RFLAGS.IF.
const INTERRUPT_FLAG: u64 = 1 << 9;
/// CR4.VMXE: the processor needs it set in VMX operation; the guest sees it clear.
const CR4_VMXE: u64 = 1 << 13;
/// CR4.PKE: protection keys, not offered (CPUID hides them; the kernel keeps the bit in
/// the CR4 mask, so setting it exits here).
const CR4_PKE: u64 = 1 << 22;

/// One guest's machine.
pub struct Vm<C> {
    /// The console UART at 0x3f8.
    pub uart: Uart,
    /// The interrupt controllers.
    pub pic: PicPair,
    /// The timer.
    pub pit: Pit,
    /// The MMIO test device.
    pub test_device: TestDevice,
    /// Where the UART's lines go.
    pub console: C,
    /// Guest time, nanoseconds.
    pub time_ns: u64,
    /// Timer interrupts delivered (IRQ 0 vectors injected).
    pub timer_interrupts: u64,
    /// Exits handled.
    pub exits: u64,
}

impl<C: Console> Vm<C> {
    /// A machine with reset devices, its console going to `console`.
    pub fn new(console: C) -> Self {
        Self {
            uart: Uart::new(),
            pic: PicPair::new(),
            pit: Pit::new(),
            test_device: TestDevice::default(),
            console,
            time_ns: 0,
            timer_interrupts: 0,
            exits: 0,
        }
    }

    /// Lets `ns` of guest time pass: timer ticks raise IRQ 0.
    pub fn advance_time(&mut self, ns: u64) {
        self.time_ns = self.time_ns.wrapping_add(ns);
        for _ in 0..self.pit.advance(ns) {
            self.pic.pulse(0);
        }
    }

    /// What to inject before entering the guest whose state is `cpu`.
    pub fn injection(&mut self, cpu: &Cpu) -> Injection {
        if !self.pic.pending() {
            return Injection::None;
        }
        if cpu.rflags & INTERRUPT_FLAG == 0 || cpu.interruptibility & 3 != 0 {
            return Injection::WhenOpen;
        }
        match self.pic.acknowledge() {
            Some(vector) => {
                if vector == self.pic.master.vector_base() {
                    self.timer_interrupts += 1;
                }
                Injection::Vector(vector)
            }
            None => Injection::None,
        }
    }

    /// Handles one exit. `host_cpuid` answers CPUID on the real processor (the policy
    /// in [`cpuid`] filters it).
    pub fn handle(
        &mut self,
        exit: &Exit,
        cpu: &mut Cpu,
        mem: &mut impl GuestMemory,
        host_cpuid: impl Fn(u32, u32) -> [u32; 4],
    ) -> Outcome {
        self.exits += 1;
        if exit.reason & (1 << 31) != 0 {
            return Outcome::Stop(Stop::EntryFailed(exit.reason));
        }
        match exit.reason {
            reason::CPUID => {
                let (leaf, subleaf) = (cpu.regs[gpr::RAX] as u32, cpu.regs[gpr::RCX] as u32);
                let [a, b, c, d] = cpuid::guest(host_cpuid, leaf, subleaf);
                cpu.regs[gpr::RAX] = u64::from(a);
                cpu.regs[gpr::RBX] = u64::from(b);
                cpu.regs[gpr::RCX] = u64::from(c);
                cpu.regs[gpr::RDX] = u64::from(d);
                cpu.rip += exit.instruction_length;
                Outcome::Resume
            }
            reason::IO => self.io(exit, cpu),
            reason::HLT => {
                cpu.rip += exit.instruction_length;
                if self.pic.pending() {
                    return Outcome::Resume;
                }
                match self.pit.next_interrupt_ns() {
                    // Idle until the timer fires: guest time jumps there.
                    Some(ns) if cpu.rflags & INTERRUPT_FLAG != 0 => {
                        self.advance_time(ns);
                        Outcome::Resume
                    }
                    _ => Outcome::Stop(Stop::HaltedForever),
                }
            }
            reason::INTERRUPT_WINDOW => Outcome::Resume,
            reason::RDMSR => {
                let msr = cpu.regs[gpr::RCX] as u32;
                let value = match msr {
                    IA32_TIME_STAMP_COUNTER => self.time_ns,
                    IA32_MISC_ENABLE => 0,
                    IA32_EFER => cpu.efer,
                    _ => return Outcome::Stop(Stop::BadMsr { msr, write: false }),
                };
                cpu.regs[gpr::RAX] = value & 0xffff_ffff;
                cpu.regs[gpr::RDX] = value >> 32;
                cpu.rip += exit.instruction_length;
                Outcome::Resume
            }
            reason::WRMSR => Outcome::Stop(Stop::BadMsr { msr: cpu.regs[gpr::RCX] as u32, write: true }),
            reason::TRIPLE_FAULT => Outcome::Stop(Stop::TripleFault),
            reason::CR_ACCESS => self.cr_access(exit, cpu),
            reason::EPT_VIOLATION => self.ept_violation(exit, cpu, mem),
            other => Outcome::Stop(Stop::Unhandled { reason: other, qualification: exit.qualification }),
        }
    }

    /// A control-register access that exits: with the kernel's masks, a MOV to CR4 whose
    /// VMXE or PKE bit differs from what the guest sees (clear). Setting VMXE asks for
    /// nested VMX, PKE for protection keys, neither offered; any other write lands, with
    /// VMXE kept for the processor.
    fn cr_access(&mut self, exit: &Exit, cpu: &mut Cpu) -> Outcome {
        let q = exit.qualification;
        let (cr, access, register) = (q & 0xf, (q >> 4) & 3, ((q >> 8) & 0xf) as usize);
        // The qualification numbers registers rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..
        const ORDER: [Option<usize>; 16] = [
            Some(0),
            Some(2),
            Some(3),
            Some(1),
            None,
            Some(6),
            Some(4),
            Some(5),
            Some(7),
            Some(8),
            Some(9),
            Some(10),
            Some(11),
            Some(12),
            Some(13),
            Some(14),
        ];
        match (access, cr, ORDER[register]) {
            (0, 4, Some(r)) => {
                let value = cpu.regs[r];
                if value & CR4_VMXE != 0 {
                    return Outcome::Stop(Stop::NotOffered("VMX (CR4.VMXE)"));
                }
                if value & CR4_PKE != 0 {
                    return Outcome::Stop(Stop::NotOffered("protection keys (CR4.PKE)"));
                }
                cpu.cr4 = value | CR4_VMXE;
                cpu.rip += exit.instruction_length;
                Outcome::Resume
            }
            _ => Outcome::Stop(Stop::Unhandled { reason: reason::CR_ACCESS, qualification: q }),
        }
    }

    fn io(&mut self, exit: &Exit, cpu: &mut Cpu) -> Outcome {
        let q = exit.qualification;
        let size = (q & 7) as usize + 1;
        let is_in = q & (1 << 3) != 0;
        let string = q & (1 << 4) != 0;
        let port = (q >> 16) as u16;
        if string {
            return Outcome::Stop(Stop::Unhandled { reason: reason::IO, qualification: q });
        }
        if is_in {
            let value = match port {
                COM1..=0x3ff => u64::from(self.uart.read(port - COM1)),
                0x20 | 0x21 | 0xa0 | 0xa1 => u64::from(self.pic.read(port)),
                0x40..=0x43 => u64::from(self.pit.read(port - 0x40)),
                _ => u64::MAX,
            };
            let mask = if size == 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
            let rax = &mut cpu.regs[gpr::RAX];
            *rax = (*rax & !mask) | (value & mask);
        } else {
            let value = cpu.regs[gpr::RAX] as u8;
            match port {
                COM1..=0x3ff => self.uart.write(port - COM1, value, &mut self.console),
                0x20 | 0x21 | 0xa0 | 0xa1 => self.pic.write(port, value),
                0x40..=0x43 => self.pit.write(port - 0x40, value),
                POWER_OFF_PORT => {
                    self.uart.flush(&mut self.console);
                    return Outcome::Stop(Stop::PoweredOff(value));
                }
                _ => {}
            }
        }
        cpu.rip += exit.instruction_length;
        Outcome::Resume
    }

    fn ept_violation(&mut self, exit: &Exit, cpu: &mut Cpu, mem: &mut impl GuestMemory) -> Outcome {
        let gpa = exit.guest_physical;
        let write = exit.qualification & (1 << 1) != 0;
        // Bits 3-5: what the translation allowed (read, write, execute).
        let readable = exit.qualification & (1 << 3) != 0;
        if !test_device::contains(gpa) {
            return Outcome::Stop(if readable && write {
                Stop::ReadOnlyWrite { gpa, rip: cpu.rip }
            } else {
                Stop::UnmappedAccess { gpa, write, rip: cpu.rip }
            });
        }
        let mut bytes = [0u8; 15];
        let Some(at) = paging::translate(cpu, mem, cpu.rip) else {
            return Outcome::Stop(Stop::Undecodable { rip: cpu.rip });
        };
        // Fetch what is there (an instruction at the end of RAM may be shorter).
        let fetched = (1..=bytes.len()).rev().find(|&n| mem.read(at, &mut bytes[..n])).unwrap_or(0);
        let bitness = if cpu.efer & (1 << 10) != 0 {
            64
        } else if cpu.cr0 & 1 != 0 {
            32
        } else {
            16
        };
        match mmio::emulate(&bytes[..fetched], bitness, cpu, |access| {
            let offset = gpa - test_device::BASE;
            match access {
                mmio::Access::Read(size) => self.test_device.read(offset, size),
                mmio::Access::Write(size, value) => {
                    self.test_device.write(offset, size, value);
                    0
                }
            }
        }) {
            Some(length) => {
                cpu.rip += length;
                Outcome::Resume
            }
            None => Outcome::Stop(Stop::Undecodable { rip: cpu.rip }),
        }
    }
}

#[cfg(test)]
mod tests;
