//! Exit handling: what the VMM does about one VM exit, as a function of the machine's
//! state (devices, time) and the guest's registers. The thin shell in the VMM component
//! reads the exit and the registers from the kernel, calls [`Vm::handle`], writes back
//! what changed, injects what [`Vm::injection`] says and enters the guest again, or stops
//! it with the [`Stop`] reason printed.
//!
//! The machine is a PC without firmware: two 8259 PICs with the ELCR (0x20/0x21, 0xa0/0xa1,
//! 0x4d0/0x4d1), the 8254 PIT on IRQ 0 (0x40-0x43) and port 0x61, the MC146818 RTC and
//! CMOS on IRQ 8 (0x70/0x71), the i8042 keyboard controller with no keyboard or mouse on
//! IRQs 1 and 12 (0x60/0x64; its reset pulse resets the guest), PCI configuration mechanism
//! #1 with an i440FX host bridge (0xcf8-0xcff, with the reset control register at 0xcf9),
//! a 16550 UART on IRQ 4 (0x3f8-0x3ff: the guest's console), a power-off port (0x501: the
//! guest ends with the byte it writes), the POST delay port 0x80 (ignored), and the test
//! device at [`test_device::BASE`] reached through EPT violations (the faulting instruction
//! is decoded). The byte-wide devices take 16- and 32-bit accesses as the ISA bus does, one
//! byte per port; the PCI ports take 1, 2 and 4 bytes. Other ports read as all ones and
//! ignore writes, as unpopulated ports do on a PC, unless a PCI device's I/O BAR claims them:
//! the legacy virtio devices ([`virtio`]) the VMM plugs in with [`Vm::attach_virtio_blk`]
//! and [`Vm::attach_virtio_net`] are such devices.

use crate::cpuid;
use crate::devices::Effect;
use crate::devices::i8042::{self, KeyboardController};
use crate::devices::mc146818::{self, DateTime, Rtc};
use crate::devices::pci::{self, AttachError, PciBus, PciDevice};
use crate::devices::pic8259::{self, PicPair};
use crate::devices::pit8254::{self, Pit};
use crate::devices::uart16550::{Console, Uart};
use crate::mmio;
use crate::paging;
use crate::test_device::{self, TestDevice};
use crate::virtio::{self, blk::VirtioBlk, net::VirtioNet};
use alloc::boxed::Box;
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
    /// The guest reset the machine (what a PC does on a reboot), through this device.
    Reset(&'static str),
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
    /// HLT with nothing that could wake it: interrupts off, or no interrupt coming from
    /// the timers and none possible from the console.
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
            Self::Reset(by) => write!(f, "reset itself (through the {by})"),
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
            Self::HaltedForever => {
                write!(f, "halted with nothing to wake it (interrupts off, or no timer or input interrupt)")
            }
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
    /// The guest halted with interrupts on while its I/O is in flight
    /// ([`Vm::io_pending`]): wait for the backend (or until its next timer is due, in real
    /// time: guest time must not run ahead of a slow disk, whose requests the guest times
    /// out), then enter it again.
    WaitForIo,
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
/// The POST code port, which Linux writes to wait a moment between slow port accesses.
pub const POST_DELAY_PORT: u16 = 0x80;

/// Interrupt lines.
pub mod irq {
    /// The PIT's channel 0.
    pub const TIMER: u8 = 0;
    /// The keyboard controller's keyboard port.
    pub const KEYBOARD: u8 = 1;
    /// The UART at 0x3f8.
    pub const COM1: u8 = 4;
    /// The RTC.
    pub const RTC: u8 = 8;
    /// The keyboard controller's AUX (mouse) port.
    pub const AUX: u8 = 12;
}

/// The date the guest's clock reads when it starts (no host clock reaches the VMM; a
/// VMM that learns the time sets it with [`Rtc::set`]).
pub const CLOCK_START: DateTime = DateTime { year: 2025, month: 1, day: 1, hour: 0, minute: 0, second: 0 };

/// Which device answers a port (the byte-wide ones; PCI configuration is apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortOwner {
    Pic,
    Pit,
    PortB,
    Keyboard,
    Rtc,
    Uart,
    PowerOff,
    PostDelay,
}

fn port_owner(port: u16) -> Option<PortOwner> {
    use pic8259::port as pic;
    Some(match port {
        pic::MASTER_COMMAND | pic::MASTER_DATA | pic::SLAVE_COMMAND | pic::SLAVE_DATA => PortOwner::Pic,
        pic::ELCR_MASTER | pic::ELCR_SLAVE => PortOwner::Pic,
        pit8254::port::BASE..=pit8254::port::LAST => PortOwner::Pit,
        pit8254::port_b::PORT => PortOwner::PortB,
        i8042::port::DATA | i8042::port::COMMAND => PortOwner::Keyboard,
        mc146818::port::INDEX | mc146818::port::DATA => PortOwner::Rtc,
        COM1..=0x3ff => PortOwner::Uart,
        POWER_OFF_PORT => PortOwner::PowerOff,
        POST_DELAY_PORT => PortOwner::PostDelay,
        _ => return None,
    })
}

/// Whether `port` is one of PCI configuration mechanism #1's.
fn pci_config_port(port: u16) -> bool {
    (pci::port::ADDRESS..=pci::port::LAST).contains(&port)
}

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
    /// The real-time clock and CMOS memory.
    pub rtc: Rtc,
    /// The keyboard controller.
    pub keyboard: KeyboardController,
    /// PCI bus 0.
    pub pci: PciBus,
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
    /// Exits handled, by reason (`cleave_abi::vcpu::exit::reason`, 1-15; 0 counts the
    /// rest).
    pub exits_by_reason: [u64; 16],
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
    /// guest that halts with interrupts on, no timer, and the UART's receive interrupt
    /// open waits for it.
    pub console_input: bool,
    /// Whether the guest has I/O in flight at a backend (the VMM sets it before each
    /// [`Vm::handle`]): a guest halting then waits for it rather than skipping ahead to
    /// its next timer.
    pub io_pending: bool,
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
            rtc: Rtc::new(CLOCK_START),
            keyboard: KeyboardController::new(),
            pci: PciBus::new(),
            test_device: TestDevice::default(),
            console,
            time_ns: 0,
            timer_interrupts: 0,
            exits: 0,
            exits_by_reason: [0; 16],
            msr_policy: MsrPolicy::Stop,
            exception: None,
            pat: RESET_PAT,
            msr_faults: 0,
            debug: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            console_input: false,
            io_pending: false,
        }
    }

    /// Bytes typed at the guest's console, as many as the UART's receiver has room for
    /// (one byte with its FIFO off, 16 with it on); returns how many it took. The rest
    /// wait with the caller ([`Vm::console_room`] says how many fit): nothing is lost to
    /// an overrun.
    pub fn console_typed(&mut self, bytes: &[u8]) -> usize {
        let taken = self.uart.receive_from_host(bytes);
        self.update_interrupt_lines();
        taken
    }

    /// How many typed bytes the UART can take now.
    pub fn console_room(&self) -> usize {
        self.uart.receive_room()
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

    /// Plugs a PCI device in as device `number` of bus 0 with its INTx line on `irq`, which
    /// becomes level-triggered (as firmware sets the ELCR for PCI interrupt lines).
    pub fn attach_pci(&mut self, number: u8, irq: u8, device: Box<dyn PciDevice>) -> Result<(), AttachError> {
        self.pci.attach(number, irq, device)?;
        self.pic.set_level_triggered(irq, true);
        Ok(())
    }

    /// Plugs in a virtio-blk disk of `capacity` 512-byte sectors whose GET_ID answers
    /// `serial`, as device `slot` of bus 0 with INTA on `irq`. The VMM acts as firmware:
    /// the I/O BAR is placed at [`virtio::pci::io_bar`]`(slot)` and the interrupt line
    /// register says `irq`; the guest finds the device configured. The VMM reaches it
    /// again with [`Vm::virtio_blk`].
    pub fn attach_virtio_blk(
        &mut self,
        slot: u8,
        irq: u8,
        capacity: u64,
        serial: &[u8],
    ) -> Result<(), AttachError> {
        let mut device = VirtioBlk::new(capacity, serial);
        device.transport_mut().place(virtio::pci::io_bar(slot));
        self.attach_pci(slot, irq, Box::new(device))
    }

    /// Plugs in a virtio-net card with address `mac` as device `slot` of bus 0 with INTA
    /// on `irq`, configured as [`Vm::attach_virtio_blk`] says. The VMM reaches it again with
    /// [`Vm::virtio_net`].
    pub fn attach_virtio_net(&mut self, slot: u8, irq: u8, mac: [u8; 6]) -> Result<(), AttachError> {
        let mut device = VirtioNet::new(mac);
        device.transport_mut().place(virtio::pci::io_bar(slot));
        self.attach_pci(slot, irq, Box::new(device))
    }

    /// The virtio-blk device in `slot`, if that is what is there: after an exit, the VMM's
    /// loop asks it whether the guest notified it ([`VirtioBlk::take_notified`]), takes
    /// its requests and completes them. Its INTx line follows at the next
    /// [`Vm::injection`].
    pub fn virtio_blk(&mut self, slot: u8) -> Option<&mut VirtioBlk> {
        self.pci.device_mut::<VirtioBlk>(slot)
    }

    /// The virtio-net device in `slot`, if that is what is there (see [`Vm::virtio_blk`]).
    pub fn virtio_net(&mut self, slot: u8) -> Option<&mut VirtioNet> {
        self.pci.device_mut::<VirtioNet>(slot)
    }

    /// Lets `ns` of guest time pass: timer ticks raise IRQ 0, the clock counts (and may
    /// raise IRQ 8).
    pub fn advance_time(&mut self, ns: u64) {
        self.time_ns = self.time_ns.wrapping_add(ns);
        for _ in 0..self.pit.advance(ns) {
            self.pic.pulse(irq::TIMER);
        }
        self.rtc.advance(ns);
        self.update_interrupt_lines();
    }

    /// Sets each device-driven interrupt line to its device's level (the timer pulses IRQ 0
    /// itself): keyboard controller, UART, RTC, PCI INTx lines. Several sources on a line
    /// are OR-ed, as PCI's shared lines are.
    fn update_interrupt_lines(&mut self) {
        let mut driven = 1 << irq::KEYBOARD | 1 << irq::COM1 | 1 << irq::RTC | 1 << irq::AUX;
        let mut high = u16::from(self.keyboard.keyboard_irq()) << irq::KEYBOARD
            | u16::from(self.uart.irq()) << irq::COM1
            | u16::from(self.rtc.irq()) << irq::RTC
            | u16::from(self.keyboard.aux_irq()) << irq::AUX;
        driven |= self.pci.wired_irqs();
        high |= self.pci.interrupt_lines();
        for line in 0..16u8 {
            if driven & (1 << line) != 0 {
                self.pic.set_irq(line, high & (1 << line) != 0);
            }
        }
    }

    /// Nanoseconds until a timer (the PIT, the RTC) next raises an interrupt, if one is
    /// coming.
    pub fn next_timer_ns(&self) -> Option<u64> {
        match (self.pit.next_interrupt_ns(), self.rtc.next_interrupt_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What to inject before entering the guest whose state is `cpu`.
    pub fn injection(&mut self, cpu: &Cpu) -> Injection {
        if cpu.event & EVENT_VALID == 0
            && let Some(exception) = self.exception.take()
        {
            return Injection::Exception(exception);
        }
        // PCI devices may have changed their INTx lines since the last exit.
        self.update_interrupt_lines();
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
        let counted = if exit.reason < 16 { exit.reason as usize } else { 0 };
        self.exits_by_reason[counted] += 1;
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
                // An interrupt waits in the PIC, or is already pending at the processor (on
                // SVM a virtual interrupt, which an STI shadow over the HLT held back): the
                // guest takes it as soon as it runs again.
                if self.pic.pending() || cpu.event & EVENT_VALID != 0 {
                    return Outcome::Resume;
                }
                if cpu.rflags & INTERRUPT_FLAG == 0 {
                    return Outcome::Stop(Stop::HaltedForever);
                }
                if self.io_pending {
                    return Outcome::WaitForIo;
                }
                match self.next_timer_ns() {
                    // Idle until a timer fires: guest time jumps there.
                    Some(ns) => {
                        self.advance_time(ns);
                        Outcome::Resume
                    }
                    // Only typed input can wake it, if the guest lets it interrupt.
                    None if self.console_input
                        && self.uart.receive_interrupt_enabled()
                        && !self.pic.masked(irq::COM1) =>
                    {
                        Outcome::WaitForInput
                    }
                    None => Outcome::Stop(Stop::HaltedForever),
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
        if d & io::STRING != 0 || exit.instruction_length == 0 || !matches!(size, 1 | 2 | 4) {
            return Outcome::Stop(Stop::Unhandled { reason: reason::PORT_IO, detail: d });
        }
        if is_in {
            let value = u64::from(self.port_in(port, size));
            let rax = &mut cpu.regs[gpr::RAX];
            // An 8- or 16-bit IN keeps the rest of rax; a 32-bit one zero-extends.
            *rax = match size {
                4 => value,
                _ => {
                    let mask = (1u64 << (size * 8)) - 1;
                    (*rax & !mask) | value
                }
            };
        } else {
            let value = cpu.regs[gpr::RAX] as u32;
            if let Some(stop) = self.port_out(port, size, value) {
                self.uart.flush(&mut self.console);
                return Outcome::Stop(stop);
            }
        }
        self.update_interrupt_lines();
        cpu.rip += exit.instruction_length;
        Outcome::Resume
    }

    /// A guest `in` of `size` bytes from `port`.
    fn port_in(&mut self, port: u16, size: usize) -> u32 {
        if pci_config_port(port) {
            return self.pci.read(port, size);
        }
        if port_owner(port).is_none()
            && let Some(value) = self.pci.io_read(port, size)
        {
            return value;
        }
        (0..size)
            .fold(0, |value, i| value | u32::from(self.port_in_byte(port.wrapping_add(i as u16))) << (8 * i))
    }

    fn port_in_byte(&mut self, port: u16) -> u8 {
        match port_owner(port) {
            Some(PortOwner::Pic) => self.pic.read(port),
            Some(PortOwner::Pit) => self.pit.read(port - pit8254::port::BASE),
            Some(PortOwner::PortB) => self.pit.read_port_b(),
            Some(PortOwner::Keyboard) => self.keyboard.read(port),
            Some(PortOwner::Rtc) => self.rtc.read(port - mc146818::port::INDEX),
            Some(PortOwner::Uart) => self.uart.read(port - COM1),
            Some(PortOwner::PowerOff | PortOwner::PostDelay) | None => 0xff,
        }
    }

    /// A guest `out` of the low `size` bytes of `value` to `port`; what stops the guest,
    /// if anything.
    fn port_out(&mut self, port: u16, size: usize, value: u32) -> Option<Stop> {
        if pci_config_port(port) {
            return match self.pci.write(port, size, value) {
                Effect::Reset => Some(Stop::Reset("PCI reset control register")),
                Effect::None => None,
            };
        }
        if port_owner(port).is_none() && self.pci.io_write(port, size, value) {
            return None;
        }
        (0..size).find_map(|i| self.port_out_byte(port.wrapping_add(i as u16), (value >> (8 * i)) as u8))
    }

    fn port_out_byte(&mut self, port: u16, value: u8) -> Option<Stop> {
        match port_owner(port)? {
            PortOwner::Pic => self.pic.write(port, value),
            PortOwner::Pit => self.pit.write(port - pit8254::port::BASE, value),
            PortOwner::PortB => self.pit.write_port_b(value),
            PortOwner::Keyboard => {
                if self.keyboard.write(port, value) == Effect::Reset {
                    return Some(Stop::Reset("keyboard controller's reset line"));
                }
            }
            PortOwner::Rtc => self.rtc.write(port - mc146818::port::INDEX, value),
            PortOwner::Uart => self.uart.write(port - COM1, value, &mut self.console),
            PortOwner::PowerOff => return Some(Stop::PoweredOff(value)),
            PortOwner::PostDelay => {}
        }
        None
    }

    fn memory(&mut self, exit: &Exit, cpu: &mut Cpu, mem: &mut impl GuestMemory) -> Outcome {
        let gpa = exit.guest_physical;
        let write = exit.detail & memory::WRITE != 0;
        let test_device = test_device::contains(gpa);
        if !test_device && !self.pci.decodes_memory(gpa) {
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
        let emulated = mmio::emulate(&bytes[..fetched], bitness, cpu, |access| match (test_device, access) {
            (true, mmio::Access::Read(size)) => self.test_device.read(gpa - test_device::BASE, size),
            (true, mmio::Access::Write(size, value)) => {
                self.test_device.write(gpa - test_device::BASE, size, value);
                0
            }
            (false, mmio::Access::Read(size)) => self.pci.memory_read(gpa, size).unwrap_or(u64::MAX),
            (false, mmio::Access::Write(size, value)) => {
                self.pci.memory_write(gpa, size, value);
                0
            }
        });
        match emulated {
            Some(length) => {
                self.update_interrupt_lines();
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
