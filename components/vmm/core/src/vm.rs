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
use cleave_abi::vcpu::state::event::VALID as EVENT_VALID;
use core::fmt;

/// Exit reasons the kernel reports, the same on VT-x and SVM.
pub use cleave_abi::vcpu::exit::reason;
use cleave_abi::vcpu::exit::{cr, io, memory};

/// One exit as the kernel reports it (`cleave_abi::vcpu::exit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// The reason.
    pub reason: u64,
    /// What the reason says more (port I/O, memory access, control register, code).
    pub detail: u64,
    /// Guest-physical address (memory exits).
    pub guest_physical: u64,
    /// Length of the exiting instruction; 0 where the processor did not say.
    pub instruction_length: u64,
}

/// A reason's name, for messages.
pub fn reason_name(reason: u64) -> &'static str {
    match reason {
        reason::PORT_IO => "port I/O",
        reason::MEMORY => "memory access",
        reason::CPUID => "CPUID",
        reason::HLT => "HLT",
        reason::MSR_READ => "RDMSR",
        reason::MSR_WRITE => "WRMSR",
        reason::CR_ACCESS => "control-register access",
        reason::INTERRUPT_WINDOW => "interrupt window",
        reason::SHUTDOWN => "shutdown",
        reason::ENTRY_FAILED => "failed entry",
        reason::EXCEPTION => "exception",
        reason::HYPERCALL => "hypercall (VMCALL/VMMCALL)",
        reason::VIRTUALIZATION_INSTRUCTION => "virtualization instruction",
        reason::DEBUG_REGISTER => "debug-register access",
        reason::OTHER => "architecture-specific exit",
        _ => "unknown exit",
    }
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
        /// Its detail.
        detail: u64,
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
            Self::Unhandled { reason, detail } => {
                write!(f, "{} exit (reason {reason}, detail {detail:#x}) is not handled", reason_name(reason))
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
    /// The guest halted with interrupts on and nothing that will wake it but its
    /// console's input: wait for some ([`Vm::console_input`]), then enter it again.
    WaitForInput,
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
    /// Deliver this exception now (`cleave_abi::vcpu::state::event` format).
    Exception(u64),
}

/// What the VMM does about an MSR it does not offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MsrPolicy {
    /// Stop the guest (a test guest that reaches for one misbehaves).
    #[default]
    Stop,
    /// Raise #GP(0) in the guest, as a processor does for an MSR it does not have: an
    /// operating system probes MSRs that way (Linux's `rdmsr_safe`).
    Fault,
}

/// #GP(0): a hardware exception with error code 0.
pub const GENERAL_PROTECTION: u64 = 13
    | cleave_abi::vcpu::state::event::EXCEPTION << cleave_abi::vcpu::state::event::TYPE_SHIFT
    | cleave_abi::vcpu::state::event::ERROR_CODE
    | EVENT_VALID;

/// The power-off port: a byte written there ends the guest with that code.
pub const POWER_OFF_PORT: u16 = 0x501;
/// The UART's base port.
pub const COM1: u16 = 0x3f8;

/// MSRs this VMM offers: the TSC (reads), EFER (as the kernel shows it; writes of the bits
/// a guest may have), MISC_ENABLE (reads 0), the microcode revision (reads 0, writes
/// ignored, as a processor without an update reads), PAT (kept, reset value at start: the
/// guest's memory types are the host's under nested paging).
const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
const IA32_BIOS_SIGN_ID: u32 = 0x8b;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_PAT: u32 = 0x277;
const IA32_EFER: u32 = 0xc000_0080;
/// PAT's value at reset.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;

/// RFLAGS.IF.
const INTERRUPT_FLAG: u64 = 1 << 9;
/// CR4.VMXE: nested VMX, not offered.
const CR4_VMXE: u64 = 1 << 13;
/// CR4.PKE: protection keys, not offered (CPUID hides them; the kernel makes every CR4
/// write exit here or keeps the bit in its mask).
const CR4_PKE: u64 = 1 << 22;
/// EFER bits a guest may set: SCE, LME, LMA, NXE.
const EFER_OFFERED: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
/// EFER.SVME: nested SVM, not offered.
const EFER_SVME: u64 = 1 << 12;

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
    /// What an MSR this VMM does not offer does.
    pub msr_policy: MsrPolicy,
    /// An exception to raise in the guest before anything else (#GP for an MSR not
    /// offered under [`MsrPolicy::Fault`]).
    pub exception: Option<u64>,
    /// The guest's PAT.
    pub pat: u64,
    /// MSRs not offered that the guest reached for (with [`MsrPolicy::Fault`]).
    pub msr_faults: u64,
    /// Whether the guest's console has an input (a serial port the VMM reads): then a
    /// guest that halts with interrupts on and no timer waits for it.
    pub console_input: bool,
    /// The guest's debug registers DR0-DR7 as it sees them (the kernel switches none, so
    /// every access exits and lands here; breakpoints never fire).
    pub debug: [u64; 8],
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
            msr_policy: MsrPolicy::Stop,
            exception: None,
            pat: RESET_PAT,
            msr_faults: 0,
            debug: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            console_input: false,
        }
    }

    /// Bytes typed at the guest's console: into the UART's receive FIFO (what does not
    /// fit is an overrun, as on the device).
    pub fn console_typed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.uart.receive(b);
        }
    }

    /// An MSR not offered: stop, or #GP(0) without moving past the instruction.
    fn msr_not_offered(&mut self, msr: u32, write: bool) -> Outcome {
        match self.msr_policy {
            MsrPolicy::Stop => Outcome::Stop(Stop::BadMsr { msr, write }),
            MsrPolicy::Fault => {
                self.msr_faults += 1;
                self.exception = Some(GENERAL_PROTECTION);
                Outcome::Resume
            }
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
        if cpu.event & EVENT_VALID == 0
            && let Some(exception) = self.exception.take()
        {
            return Injection::Exception(exception);
        }
        if !self.pic.pending() {
            return Injection::None;
        }
        if cpu.event & EVENT_VALID != 0 {
            // An event interrupted in delivery goes first; look again at the next exit.
            return Injection::None;
        }
        if cpu.rflags & INTERRUPT_FLAG == 0 || cpu.shadow != 0 {
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
            reason::PORT_IO => self.io(exit, cpu),
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
                    None if cpu.rflags & INTERRUPT_FLAG != 0 && self.console_input => Outcome::WaitForInput,
                    _ => Outcome::Stop(Stop::HaltedForever),
                }
            }
            reason::INTERRUPT_WINDOW => Outcome::Resume,
            reason::MSR_READ => {
                let msr = cpu.regs[gpr::RCX] as u32;
                let value = match msr {
                    IA32_TIME_STAMP_COUNTER => self.time_ns,
                    IA32_MISC_ENABLE | IA32_BIOS_SIGN_ID => 0,
                    IA32_PAT => self.pat,
                    IA32_EFER => cpu.efer,
                    _ => return self.msr_not_offered(msr, false),
                };
                cpu.regs[gpr::RAX] = value & 0xffff_ffff;
                cpu.regs[gpr::RDX] = value >> 32;
                cpu.rip += exit.instruction_length;
                Outcome::Resume
            }
            reason::MSR_WRITE => {
                let msr = cpu.regs[gpr::RCX] as u32;
                let value = (cpu.regs[gpr::RDX] << 32) | (cpu.regs[gpr::RAX] & 0xffff_ffff);
                match msr {
                    IA32_EFER if value & EFER_SVME != 0 => Outcome::Stop(Stop::NotOffered("SVM (EFER.SVME)")),
                    IA32_EFER if value & !EFER_OFFERED == 0 => {
                        cpu.efer = value;
                        cpu.rip += exit.instruction_length;
                        Outcome::Resume
                    }
                    IA32_BIOS_SIGN_ID => {
                        cpu.rip += exit.instruction_length;
                        Outcome::Resume
                    }
                    // Each byte a memory type: 0, 1, 4, 5, 6 or 7.
                    IA32_PAT if value.to_le_bytes().iter().all(|&t| matches!(t, 0 | 1 | 4..=7)) => {
                        self.pat = value;
                        cpu.rip += exit.instruction_length;
                        Outcome::Resume
                    }
                    _ => self.msr_not_offered(msr, true),
                }
            }
            reason::SHUTDOWN => Outcome::Stop(Stop::TripleFault),
            reason::DEBUG_REGISTER => self.debug_register(cpu, mem),
            reason::CR_ACCESS => self.cr_access(exit, cpu, mem),
            reason::MEMORY => self.memory(exit, cpu, mem),
            reason::ENTRY_FAILED => Outcome::Stop(Stop::EntryFailed(exit.detail)),
            other => Outcome::Stop(Stop::Unhandled { reason: other, detail: exit.detail }),
        }
    }

    /// A control-register access that exits: a MOV to CR4 (VT-x exits on the bits the
    /// kernel keeps, SVM on every write). Setting VMXE asks for nested VMX, PKE for
    /// protection keys, neither offered; any other write lands. Where the processor did
    /// not say which register held the value (SVM without decode assists), the MOV is
    /// decoded.
    fn cr_access(&mut self, exit: &Exit, cpu: &mut Cpu, mem: &impl GuestMemory) -> Outcome {
        let d = exit.detail;
        let unhandled = Outcome::Stop(Stop::Unhandled { reason: reason::CR_ACCESS, detail: d });
        if d & cr::WRITE == 0 || d & cr::NUMBER != 4 {
            return unhandled;
        }
        let (source, length) = if d & cr::REGISTER_KNOWN != 0 {
            let register = cleave_abi::vcpu::reg::from_encoding(d >> cr::REGISTER_SHIFT & 0xf);
            (register, exit.instruction_length)
        } else {
            let Some((bytes, fetched)) = fetch(cpu, mem) else {
                return Outcome::Stop(Stop::Undecodable { rip: cpu.rip });
            };
            match mmio::mov_to_cr(&bytes[..fetched], bitness(cpu)) {
                Some((4, register, length)) => (register, length),
                _ => return Outcome::Stop(Stop::Undecodable { rip: cpu.rip }),
            }
        };
        // CR4 from RSP is not something a guest does; treat it as undecodable.
        let Some(r) = source else { return Outcome::Stop(Stop::Undecodable { rip: cpu.rip }) };
        let value = cpu.regs[r];
        if value & CR4_VMXE != 0 {
            return Outcome::Stop(Stop::NotOffered("VMX (CR4.VMXE)"));
        }
        if value & CR4_PKE != 0 {
            return Outcome::Stop(Stop::NotOffered("protection keys (CR4.PKE)"));
        }
        cpu.cr4 = value;
        cpu.rip += length;
        Outcome::Resume
    }

    /// A MOV to or from a debug register: decoded (neither architecture says which
    /// register here) and done on the guest's copy; DR4 and DR5 are DR6 and DR7's aliases
    /// only with CR4.DE clear, which the decoder does not know, so they stop the guest.
    fn debug_register(&mut self, cpu: &mut Cpu, mem: &impl GuestMemory) -> Outcome {
        let Some((bytes, fetched)) = fetch(cpu, mem) else {
            return Outcome::Stop(Stop::Undecodable { rip: cpu.rip });
        };
        let Some((dr, Some(r), write, length)) = mmio::mov_dr(&bytes[..fetched], bitness(cpu)) else {
            return Outcome::Stop(Stop::Undecodable { rip: cpu.rip });
        };
        if write {
            // DR6 and DR7 keep their fixed bits.
            self.debug[dr] = match dr {
                6 => cpu.regs[r] & 0xffff_ffff | 0xffff_0ff0,
                7 => cpu.regs[r] & 0xffff_ffff | 0x400,
                _ => cpu.regs[r],
            };
        } else {
            cpu.regs[r] = self.debug[dr];
        }
        cpu.rip += length;
        Outcome::Resume
    }

    fn io(&mut self, exit: &Exit, cpu: &mut Cpu) -> Outcome {
        let d = exit.detail;
        let size = (d >> io::SIZE_SHIFT & 7) as usize;
        let is_in = d & io::IN != 0;
        let port = (d & io::PORT) as u16;
        if d & io::STRING != 0 || exit.instruction_length == 0 {
            return Outcome::Stop(Stop::Unhandled { reason: reason::PORT_IO, detail: d });
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

    fn memory(&mut self, exit: &Exit, cpu: &mut Cpu, mem: &mut impl GuestMemory) -> Outcome {
        let gpa = exit.guest_physical;
        let write = exit.detail & memory::WRITE != 0;
        if !test_device::contains(gpa) {
            return Outcome::Stop(if exit.detail & memory::MAPPED != 0 && write {
                Stop::ReadOnlyWrite { gpa, rip: cpu.rip }
            } else {
                Stop::UnmappedAccess { gpa, write, rip: cpu.rip }
            });
        }
        let Some((bytes, fetched)) = fetch(cpu, mem) else {
            return Outcome::Stop(Stop::Undecodable { rip: cpu.rip });
        };
        let bitness = bitness(cpu);
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

/// The bytes at the guest's RIP (up to 15; an instruction at the end of RAM may be
/// shorter) and how many were fetched; `None` if RIP does not translate.
fn fetch(cpu: &Cpu, mem: &impl GuestMemory) -> Option<([u8; 15], usize)> {
    let mut bytes = [0u8; 15];
    let at = paging::translate(cpu, mem, cpu.rip)?;
    let fetched = (1..=bytes.len()).rev().find(|&n| mem.read(at, &mut bytes[..n])).unwrap_or(0);
    Some((bytes, fetched))
}

/// The guest's code size: 64 in long mode, 32 in protected mode, else 16.
fn bitness(cpu: &Cpu) -> u32 {
    if cpu.efer & (1 << 10) != 0 {
        64
    } else if cpu.cr0 & 1 != 0 {
        32
    } else {
        16
    }
}

#[cfg(test)]
mod tests;
