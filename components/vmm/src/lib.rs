//! The per-guest VMM's side of the kernel interface, shared by the `vmm` component and the
//! multi-guest test program (`emulator-tests`, `vmm-guests`): guest RAM as the VMM maps it,
//! loading an image and writing the long-mode start state through the Vcpu's guest-state
//! fields, and the exit loop that hands every exit to `cleave_vmm_core::vm` until the
//! guest stops.
#![no_std]

extern crate alloc;

use cleave_abi::Error;
use cleave_abi::vcpu::exit;
use cleave_abi::vcpu::state::{self, event, part, segment as seg};
use cleave_rt::cap::kind::{IoPort, Notification, Vcpu};
use cleave_rt::{Cap, println};
use cleave_vmm_core::devices::uart16550::Console;
use cleave_vmm_core::paging;
pub use cleave_vmm_core::virtio::disk::DiskBridge;
use cleave_vmm_core::virtio::net::VirtioNet;
pub use cleave_vmm_core::virtio::network::NetBridge;
use cleave_vmm_core::vm::{Cpu, Exit, GuestMemory, Injection, MsrPolicy, Outcome, Stop, Vm};
use core::sync::atomic::{AtomicBool, Ordering};

/// Where the VMM leaves a guest's command line.
const CMDLINE_GPA: u64 = 0x9000;

/// Whole lines only: VMM threads of one program print one line at a time.
static PRINT_LOCK: AtomicBool = AtomicBool::new(false);

/// Prints one line without another thread's line cutting into it.
pub fn print_line(args: core::fmt::Arguments) {
    while PRINT_LOCK.swap(true, Ordering::Acquire) {
        cleave_rt::syscall::yield_now();
    }
    println!("{args}");
    PRINT_LOCK.store(false, Ordering::Release);
}

/// [`print_line`] with `format!` arguments.
#[macro_export]
macro_rules! line {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

/// The guest image the calling crate's build script embedded (`OUT_DIR/guest.elf`, see
/// `cleave_system::codegen::embed_guest_image`), 16-byte aligned because the ELF reader
/// reads its headers in place: `static GUEST_IMAGE: &[u8] = vmm::guest_image!();`.
#[macro_export]
macro_rules! guest_image {
    () => {{
        #[repr(C, align(16))]
        struct Aligned<B: ?Sized>(B);
        static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/guest.elf")));
        &ALIGNED.0
    }};
}

/// A guest's RAM as the VMM maps it: `size` bytes at `base`.
#[derive(Clone, Copy)]
pub struct Ram {
    /// Where the VMM maps it.
    pub base: u64,
    /// Its size in bytes (guest-physical 0 up to this).
    pub size: u64,
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        if gpa.checked_add(out.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: `base()` maps this guest's RAM read-write (set up before any use, by this
        // program or the loader); the range is inside it (checked); only this guest's VMM
        // thread copies, and the guest does not run while it does.
        unsafe { core::ptr::copy_nonoverlapping((self.base + gpa) as *const u8, out.as_mut_ptr(), out.len()) }
        true
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa.checked_add(data.len() as u64).is_none_or(|end| end > self.size) {
            return false;
        }
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (self.base + gpa) as *mut u8, data.len()) }
        true
    }
}

/// A guest's console: each line printed into the system's log with the guest's name, or,
/// with a serial port of its own (`console = "com2"`), every byte out through that port
/// and what arrives there typed at the guest's UART, or, relayed by the toolstack
/// (`console = "ctl"`), every byte out through the page shared with it and what the
/// toolstack puts there typed.
pub struct Named {
    /// The guest's name.
    pub name: &'static str,
    /// The second serial port's I/O ports, when the console is there.
    pub serial: Option<Cap<IoPort>>,
    /// The page shared with the toolstack, when the console is relayed by it
    /// (`console = "ctl"`).
    pub relayed: Option<cleave_ioring::console::VmmConsole>,
    /// Bytes taken from the serial port that the guest's UART had no room for yet.
    input: Typed,
    /// Bytes taken from the serial port.
    pub typed: u64,
    /// Times the serial port said it had lost input (its line status's overrun bit):
    /// bytes the host sent faster than the VMM took them.
    pub overruns: u64,
}

/// What arrived at the console's serial port, waiting for the guest's UART. The VMM
/// empties the port's receiver whenever it touches the port, so that a machine whose UART
/// drops what its FIFO cannot hold (Bochs's does; QEMU's holds the host back instead)
/// loses nothing while the guest is busy: up to [`Typed::SIZE`] bytes wait here (on the
/// heap: the VMM's stack is small).
struct Typed {
    bytes: alloc::collections::VecDeque<u8>,
}

impl Typed {
    const SIZE: usize = 4096;

    fn new() -> Self {
        Self { bytes: alloc::collections::VecDeque::new() }
    }

    fn full(&self) -> bool {
        self.bytes.len() >= Self::SIZE
    }

    /// Moves the oldest bytes into `out`; returns how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.bytes.len());
        for (slot, byte) in out.iter_mut().zip(self.bytes.drain(..n)) {
            *slot = byte;
        }
        n
    }
}

impl Named {
    /// A console into the system's log.
    pub fn log(name: &'static str) -> Self {
        Self { name, serial: None, relayed: None, input: Typed::new(), typed: 0, overruns: 0 }
    }

    /// A console relayed by the toolstack through `shared`, the page cleave shares between
    /// this VMM and the toolstack (`console = "ctl"`).
    pub fn relayed(name: &'static str, shared: cleave_ioring::Shared) -> Option<Self> {
        let ring = cleave_ioring::console::VmmConsole::start(shared).ok()?;
        Some(Self { relayed: Some(ring), ..Self::log(name) })
    }

    /// A console on the machine's second serial port, `port` (COM2's eight I/O ports),
    /// set up as `cleave_rt::uart::Uart::init` sets one up, its interrupts off (the VMM
    /// polls it).
    pub fn com2(name: &'static str, port: Cap<IoPort>) -> Self {
        // A port the VMM cannot write leaves the UART as it was; bytes still go out.
        let _ = cleave_rt::uart::Uart::new(port, COM2_DATA).init(false);
        Self { name, serial: Some(port), relayed: None, input: Typed::new(), typed: 0, overruns: 0 }
    }

    /// Empties the serial port's receiver into [`Named::input`] (what does not fit stays
    /// in the port); returns the line status last read.
    fn drain(&mut self, port: Cap<IoPort>) -> Option<u32> {
        loop {
            let lsr = port.read(COM2_LSR, 1).ok()?;
            if lsr & 0x02 != 0 {
                self.overruns += 1;
            }
            if lsr & 1 == 0 || self.input.full() {
                return Some(lsr);
            }
            let byte = port.read(COM2_DATA, 1).ok()?;
            self.input.bytes.push_back(byte as u8);
            self.typed += 1;
        }
    }

    /// What has been typed at the console, oldest first, up to `out.len()` bytes (what the
    /// guest's UART can take).
    fn typed(&mut self, out: &mut [u8]) -> usize {
        if let Some(ring) = &mut self.relayed {
            let n = ring.read(out);
            self.typed += n as u64;
            return n;
        }
        if let Some(port) = self.serial {
            self.drain(port);
        }
        self.input.take(out)
    }
}

/// COM2's registers (16550) the VMM reads and writes after setting it up.
const COM2_DATA: u16 = 0x2f8;
const COM2_LSR: u16 = COM2_DATA + cleave_rt::uart::reg::LSR;

impl Console for Named {
    fn line(&mut self, text: &[u8]) {
        let name = self.name;
        crate::line!("{name}: {}", core::str::from_utf8(text).unwrap_or("(not UTF-8)"));
    }

    fn raw(&self) -> bool {
        self.serial.is_some() || self.relayed.is_some()
    }

    fn byte(&mut self, byte: u8) {
        if let Some(ring) = &mut self.relayed {
            // The toolstack takes the output as it polls its line: give it a moment when
            // the page is full; a toolstack that never takes it loses the output, not the
            // guest its progress.
            for _ in 0..1000 {
                if ring.write(&[byte]) == 1 {
                    return;
                }
                cleave_rt::syscall::yield_now();
            }
            return;
        }
        let Some(port) = self.serial else { return };
        // Wait (a bounded while) for the transmitter to take it, keeping what arrives
        // meanwhile; a port that never takes it drops the output rather than the guest.
        for _ in 0..10_000 {
            match self.drain(port) {
                Some(lsr) if lsr & 0x20 != 0 => break,
                Some(_) => cleave_rt::syscall::yield_now(),
                None => return,
            }
        }
        let _ = port.write(COM2_DATA, 1, u32::from(byte));
    }
}

/// MSRs a guest's operating system sets up for itself and the kernel switches between
/// guests (on SVM, VMSAVE/VMLOAD's; on VT-x the SYSCALL MSRs are refused and keep exiting).
const SWITCHED_MSRS: [u32; 7] =
    [0xc000_0100, 0xc000_0101, 0xc000_0102, 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084];

/// Loads `image` into `ram` (an ELF test guest, or a Linux kernel and initramfs packed as
/// `cleave_vmm_core::linux::unpack` reads them), leaves the command line, and writes the
/// long-mode start state. Returns what the guest's MSRs not offered should do: an
/// operating system probes them and takes #GP, a test guest is stopped.
pub fn start(
    vcpu: Cap<Vcpu>,
    mut ram: Ram,
    image: &[u8],
    name: &str,
    cmdline: &str,
) -> Result<MsrPolicy, &'static str> {
    let lm = paging::long_mode(&mut ram).ok_or("no room for the guest's page tables")?;
    let entry = if let Some((kernel, initrd)) = cleave_vmm_core::linux::unpack(image) {
        let size = ram.size;
        let boot = match cleave_vmm_core::linux::load(&mut ram, size, kernel, initrd, cmdline) {
            Ok(boot) => boot,
            Err(e) => {
                crate::line!("vmm: guest '{name}': {e}");
                return Err("the Linux kernel does not load");
            }
        };
        crate::line!(
            "vmm: guest '{name}': Linux kernel ({} KiB) at {:#x}, initramfs ({} KiB) at {:#x}, entry {:#x}",
            kernel.len() >> 10,
            boot.kernel,
            boot.initrd.1 >> 10,
            boot.initrd.0,
            boot.entry
        );
        // The boot protocol: RSI holds the zero page.
        let mut regs = [0u64; 15];
        regs[cleave_abi::vcpu::reg::RSI] = boot.zero_page;
        vcpu.write_registers(&regs).map_err(|_| "the kernel refused the guest's registers")?;
        for msr in SWITCHED_MSRS {
            // Refused where the kernel does not switch it (VT-x's SYSCALL MSRs): then the
            // accesses exit and the VMM answers them.
            let _ = vcpu.set_msr_exit(msr, false, false);
        }
        (boot.entry, MsrPolicy::Fault)
    } else {
        let entry = match cleave_vmm_core::elf::load(image, &mut ram) {
            Ok(entry) => entry,
            Err(e) => {
                crate::line!("vmm: guest '{name}': {e}");
                return Err("the guest image does not load");
            }
        };
        let cmdline = cmdline.as_bytes();
        if !ram.write(CMDLINE_GPA, cmdline) || !ram.write(CMDLINE_GPA + cmdline.len() as u64, &[0]) {
            return Err("no room for the command line");
        }
        (entry, MsrPolicy::Stop)
    };
    let (entry, msr_policy) = entry;
    let flat = 0xffff_ffff;
    let segment = |s: u64, selector: u64, rights: u64| {
        [
            (state::segment(s, part::SELECTOR), selector),
            (state::segment(s, part::ATTRIBUTES), rights),
            (state::segment(s, part::LIMIT), flat),
            (state::segment(s, part::BASE), 0),
        ]
    };
    let data = |s: u64| segment(s, paging::layout::DATA_SELECTOR, lm.data_rights);
    let fixed = [
        (state::CR0, lm.cr0),
        (state::CR3, lm.cr3),
        (state::CR4, lm.cr4),
        (state::EFER, lm.efer),
        (state::segment(seg::TR, part::ATTRIBUTES), 0x8b),
        (state::segment(seg::TR, part::LIMIT), 0x67),
        (state::segment(seg::LDTR, part::ATTRIBUTES), 1 << 16),
        (state::segment(seg::GDTR, part::BASE), lm.gdt.0),
        (state::segment(seg::GDTR, part::LIMIT), lm.gdt.1),
        (state::RIP, entry),
        (state::RSP, ram.size - 16),
        (state::RFLAGS, 0x2),
    ];
    let segments = [
        segment(seg::CS, paging::layout::CODE_SELECTOR, lm.code_rights),
        data(seg::DS),
        data(seg::ES),
        data(seg::SS),
        data(seg::FS),
        data(seg::GS),
    ];
    for (f, value) in fixed.into_iter().chain(segments.into_iter().flatten()) {
        if vcpu.write_field(f, value).is_err() {
            println!("vmm: guest-state field {f} = {value:#x} refused");
            return Err("the kernel refused the guest's start state");
        }
    }
    Ok(msr_policy)
}

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Reads what exit handling needs.
fn read_cpu(vcpu: Cap<Vcpu>) -> Result<Cpu, Error> {
    let [rip, rflags, cr0, cr3, cr4, efer, shadow, event] = vcpu.read_state([
        state::RIP,
        state::RFLAGS,
        state::CR0,
        state::CR3,
        state::CR4,
        state::EFER,
        state::INTERRUPT_SHADOW,
        state::EVENT,
    ])?;
    Ok(Cpu { regs: vcpu.read_registers()?, rip, rflags, cr0, cr3, cr4, efer, shadow, event })
}

/// The guest's virtio disk: the bridge to its backend, the backend's notification and the
/// disk's size.
pub struct Disk {
    /// The ring's VMM side and the pieces in flight.
    pub bridge: DiskBridge,
    /// The backend's notification (send: this guest's bit).
    pub backend: Cap<Notification>,
    /// The disk's size in 512-byte sectors.
    pub sectors: u64,
}

/// Where the disk sits on the guest's PCI bus (00:01.0) and the 8259 line its INTA
/// raises: one no other device of the guest's machine uses.
pub const DISK_SLOT: u8 = 1;
/// The disk's interrupt line.
pub const DISK_IRQ: u8 = 10;

impl Disk {
    /// Takes what the guest posted; signals the backend if anything went into the ring.
    fn pump(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        let Some(device) = vm.virtio_blk(DISK_SLOT) else { return };
        if device.take_notified() && self.bridge.pump(device, ram) {
            let _ = self.backend.signal();
        }
    }

    /// Takes what the backend did; signals it back if the ring asks for that.
    fn answered(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        let Some(device) = vm.virtio_blk(DISK_SLOT) else { return };
        if self.bridge.on_signal(device, ram) {
            let _ = self.backend.signal();
        }
    }
}

/// The guest's virtio network card: the bridge to its switch, the switch's notification
/// and the card's address.
pub struct Net {
    /// The pipes' VMM side.
    pub bridge: NetBridge,
    /// The switch's notification (send: this guest's bit).
    pub backend: Cap<Notification>,
    /// The card's MAC address.
    pub mac: [u8; 6],
}

/// Where the network card sits on the guest's PCI bus (00:02.0).
pub const NET_SLOT: u8 = 2;
/// The card's interrupt line.
pub const NET_IRQ: u8 = 11;

impl Net {
    /// Sends what the guest sent and, if it posted receive buffers, gives it what waits.
    fn pump(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        let Some(device) = vm.virtio_net(NET_SLOT) else { return };
        let notified = device.take_notified();
        if notified & (1 << VirtioNet::TX) != 0 && self.bridge.transmit(device, ram) {
            let _ = self.backend.signal();
        }
        if notified & (1 << VirtioNet::RX) != 0 {
            self.bridge.receive(device, ram);
        }
    }

    /// Gives the guest what the switch sent (after a signal).
    fn answered(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        let Some(device) = vm.virtio_net(NET_SLOT) else { return };
        self.bridge.receive(device, ram);
    }
}

/// The guest's I/O devices and the notification their backends signal (this VMM's own,
/// bound to its thread).
#[derive(Default)]
pub struct Io {
    /// The virtio disk, if the guest has one.
    pub disk: Option<Disk>,
    /// The virtio network card, if the guest has one.
    pub net: Option<Net>,
    /// This VMM's notification, which the backends signal.
    pub signal: Option<Cap<Notification>>,
    /// The supervisor's notification (with this guest's bit), when the guest uses a
    /// restartable backend: signalled once the guest has stopped, before the rings close,
    /// so that the supervisor knows the backend's end from the VMMs.
    pub gone: Option<Cap<Notification>>,
}

impl Io {
    /// After a signal: takes what every backend did.
    fn answered(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        if let Some(disk) = self.disk.as_mut() {
            disk.answered(vm, ram);
        }
        if let Some(net) = self.net.as_mut() {
            net.answered(vm, ram);
        }
    }

    /// After an exit: takes what the guest posted.
    fn pump(&mut self, vm: &mut Vm<Named>, ram: &mut Ram) {
        if let Some(disk) = self.disk.as_mut() {
            disk.pump(vm, ram);
        }
        if let Some(net) = self.net.as_mut() {
            net.pump(vm, ram);
        }
    }

    /// Whether a halted guest may be woken by a backend: a disk request is in flight, or
    /// it has a network (a frame may come at any time).
    fn may_be_woken(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.bridge.in_flight() > 0) || self.net.is_some()
    }
}

/// Guest time (ns) a disk request may wait with none completing before the VMM says so.
const STALL_NS: u64 = 10_000_000_000;

/// Watches the guest's disk: when requests are in flight and none has completed for
/// [`STALL_NS`] of guest time, the VMM prints where each one is (once per stall). A guest
/// whose requests never complete hangs silently (Linux's virtio-blk retries no timeout), so
/// this is the line that says which side holds them.
#[derive(Default)]
struct StallWatch {
    /// Guest requests taken plus those completed, when last seen: any change is progress.
    progress: u64,
    since_ns: u64,
    reported: bool,
}

impl StallWatch {
    /// Called at every exit: two counters compared, and the in-flight table looked at
    /// only once 10 s have passed without progress.
    fn check(&mut self, vm: &mut Vm<Named>, io: &Io) {
        let Some(disk) = io.disk.as_ref() else { return };
        let c = disk.bridge.counters;
        let progress = c.requests.wrapping_add(c.completed);
        if progress != self.progress {
            if self.reported {
                line!("vmm: guest '{}': its disk requests complete again", vm.console.name);
            }
            *self = Self { progress, since_ns: vm.time_ns, reported: false };
            return;
        }
        if self.reported || vm.time_ns.wrapping_sub(self.since_ns) < STALL_NS || disk.bridge.in_flight() == 0
        {
            return;
        }
        self.reported = true;
        let name = vm.console.name;
        if let Some(device) = vm.virtio_blk(DISK_SLOT) {
            line!(
                "vmm: guest '{name}': no disk request completed for {} s: {}",
                STALL_NS / 1_000_000_000,
                disk.bridge.describe(device)
            );
        }
    }
}

/// Runs the guest until it stops; returns why, and the machine.
pub fn run(
    vcpu: Cap<Vcpu>,
    mut ram: Ram,
    console: Named,
    msr_policy: MsrPolicy,
    mut io: Io,
) -> Result<(Stop, Vm<Named>), Error> {
    let mut vm = Vm::new(console);
    vm.msr_policy = msr_policy;
    vm.console_input = vm.console.serial.is_some() || vm.console.relayed.is_some();
    if let Some(d) = &io.disk
        && let Err(e) = vm.attach_virtio_blk(DISK_SLOT, DISK_IRQ, d.sectors, b"cleave-disk")
    {
        line!("vmm: the guest's disk could not be attached: {e:?}");
        io.disk = None;
    }
    if let Some(n) = &io.net
        && let Err(e) = vm.attach_virtio_net(NET_SLOT, NET_IRQ, n.mac)
    {
        line!("vmm: the guest's network card could not be attached: {e:?}");
        io.net = None;
    }
    if io.signal.is_none() {
        // Nobody can signal this VMM: no backend can serve it.
        io.disk = None;
        io.net = None;
    }
    // Typed input is looked for at least this often (TSC ticks) while the guest exits,
    // after every HLT (an idle guest, as a shell waiting at its prompt is, halts between
    // timer ticks), with every console byte out, and whenever the guest waits for it: at
    // 115200 baud a 16-byte FIFO fills in about 1.4 ms, and Bochs's serial port drops what
    // does not fit (its TSC counts instructions: 50 000 is 1 ms of its time).
    const INPUT_EVERY: u64 = 50_000;
    // After a byte arrives more may follow (a pasted line): for this long the port is
    // looked at on every exit.
    const INPUT_ACTIVE: u64 = 5_000_000;
    let mut input_at = 0;
    let mut active_until = 0;
    let mut halted = false;
    let mut window = false;
    let mut last = cleave_rt::syscall::rdtsc();
    let mut cpu = read_cpu(vcpu)?;
    let mut stall = StallWatch::default();
    loop {
        match vm.injection(&cpu) {
            Injection::Vector(v) => {
                vcpu.write_field(state::EVENT, event::external(v))?;
                if window {
                    vcpu.write_field(state::INTERRUPT_WINDOW, 0)?;
                    window = false;
                }
            }
            Injection::WhenOpen if !window => {
                vcpu.write_field(state::INTERRUPT_WINDOW, 1)?;
                window = true;
            }
            Injection::Exception(event) => vcpu.write_field(state::EVENT, event)?,
            Injection::WhenOpen | Injection::None => {}
        }
        if vm.console_input && (halted || last < active_until || last.wrapping_sub(input_at) > INPUT_EVERY) {
            input_at = last;
            // No more than the UART can take: the rest waits in the serial port.
            let mut typed = [0u8; 16];
            let room = vm.console_room().min(typed.len());
            let before = vm.console.typed;
            let n = vm.console.typed(&mut typed[..room]);
            vm.console_typed(&typed[..n]);
            if vm.console.typed != before {
                active_until = last.saturating_add(INPUT_ACTIVE);
            }
        }
        let words = cleave_rt::syscall::vm_enter()?;
        // Guest time follows the TSC (one tick taken as a nanosecond).
        let now = cleave_rt::syscall::rdtsc();
        vm.advance_time(now.wrapping_sub(last));
        last = now;
        stall.check(&mut vm, &io);
        let exit = Exit {
            reason: words[exit::REASON],
            detail: words[exit::DETAIL],
            guest_physical: words[exit::ADDRESS],
            instruction_length: words[exit::INSTRUCTION_LENGTH],
        };
        halted = exit.reason == exit::reason::HLT;
        cpu = read_cpu(vcpu)?;
        if exit.reason == exit::reason::NOTIFIED {
            // A backend signalled (the guest may not have run at all).
            io.answered(&mut vm, &mut ram);
            continue;
        }
        let before = cpu;
        vm.io_pending = io.may_be_woken();
        let outcome = vm.handle(&exit, &mut cpu, &mut ram, host_cpuid);
        io.pump(&mut vm, &mut ram);
        match outcome {
            Outcome::Resume => {
                if cpu.regs != before.regs {
                    vcpu.write_registers(&cpu.regs)?;
                }
                let changed = [
                    (state::RIP, cpu.rip, before.rip),
                    (state::CR4, cpu.cr4, before.cr4),
                    (state::EFER, cpu.efer, before.efer),
                ];
                for (field, now, was) in changed {
                    if now != was {
                        vcpu.write_field(field, now)?;
                    }
                }
            }
            Outcome::WaitForInput => {
                if cpu.rip != before.rip {
                    vcpu.write_field(state::RIP, cpu.rip)?;
                }
                let mut typed = [0u8; 16];
                let room = vm.console_room().min(typed.len());
                // With the UART full the guest has input to read already: enter it.
                if room > 0 {
                    let n = loop {
                        match vm.console.typed(&mut typed[..room]) {
                            0 => cleave_rt::syscall::yield_now(),
                            n => break n,
                        }
                    };
                    vm.console_typed(&typed[..n]);
                }
                last = cleave_rt::syscall::rdtsc();
                active_until = last.saturating_add(INPUT_ACTIVE);
            }
            Outcome::WaitForIo => {
                if cpu.rip != before.rip {
                    vcpu.write_field(state::RIP, cpu.rip)?;
                }
                // Until a backend signals or the guest's next timer is due, in real time
                // (guest time is the TSC's).
                let due = vm.next_timer_ns().map(|ns| last.wrapping_add(ns));
                if let Some(signal) = io.signal.filter(|_| io.may_be_woken()) {
                    if due.is_none() {
                        // No timer: only a backend can wake the guest; block until one does.
                        let _ = signal.wait();
                        io.answered(&mut vm, &mut ram);
                    } else {
                        loop {
                            if signal.poll().unwrap_or(0) != 0 || !io.may_be_woken() {
                                io.answered(&mut vm, &mut ram);
                                break;
                            }
                            if due.is_some_and(|at| cleave_rt::syscall::rdtsc().wrapping_sub(at) < 1 << 63) {
                                break;
                            }
                            cleave_rt::syscall::yield_now();
                        }
                    }
                }
            }
            Outcome::Stop(stop) => {
                // What the guest did to its devices: each time it broke one (a malformed
                // ring), only that device stopped until the guest reset it.
                let disk_breaks = vm.virtio_blk(DISK_SLOT).map(|d| d.transport().breaks());
                let net_breaks = vm.virtio_net(NET_SLOT).map(|d| d.transport().breaks());
                if disk_breaks.unwrap_or(0) + net_breaks.unwrap_or(0) > 0 {
                    line!(
                        "vmm: guest '{}' broke the protocol of its devices: disk {} times, network card {} times; each stopped until the guest reset it",
                        vm.console.name,
                        disk_breaks.unwrap_or(0),
                        net_breaks.unwrap_or(0)
                    );
                }
                if let Some(net) = &io.net {
                    let c = net.bridge.counters;
                    let d = vm.virtio_net(NET_SLOT).map(|d| d.counters).unwrap_or_default();
                    let failed = net.bridge.failed().map_or(alloc::string::String::new(), |e| {
                        alloc::format!("; the switch broke a pipe: {e}")
                    });
                    line!(
                        "vmm: guest '{}': network: {} frames sent, {} dropped (tx pipe full); {} received, {} dropped; the card dropped {} malformed, {} for want of a receive buffer{failed}",
                        vm.console.name,
                        c.sent,
                        c.tx_full,
                        c.received,
                        c.rx_dropped,
                        d.tx_dropped,
                        d.rx_no_buffer
                    );
                }
                // The guest is gone: its backends may stop once all their guests are. The
                // supervisor hears it first (an empty slot, for a guest whose backends are
                // not restarted, refuses the signal).
                if let Some(gone) = io.gone {
                    let _ = gone.signal();
                }
                if let Some(disk) = &io.disk {
                    disk.bridge.close();
                    let _ = disk.backend.signal();
                }
                if let Some(net) = &io.net {
                    net.bridge.close();
                    let _ = net.backend.signal();
                }
                return Ok((stop, vm));
            }
        }
    }
}
