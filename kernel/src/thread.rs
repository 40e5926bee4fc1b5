//! Threads as the kernel entry sees them: saving and restoring the current thread's
//! registers, choosing who runs next, and delivering a thread's faults to its fault
//! endpoint (or, without one, reporting the fault and stopping the thread; the kernel
//! carries on either way).

use crate::arch::exit::{Outcome, exit};
use crate::arch::global::KernelCell;
use crate::arch::trap::{self, TrapFrame};
use crate::arch::x86_64::{interrupt, paging};
use crate::{kprintln, objects};
use cleave_abi::syscall::fault;
use cleave_kernel_core::object::cap::Cap;
use cleave_kernel_core::object::slot::SlotOps;
use cleave_kernel_core::object::tcb::{CONSOLE_LINE, TcbRef, slot};
use heapless::String;

/// A reason a user thread cannot go on by itself.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// A processor exception raised by the thread's own instructions.
    Exception { vector: u64, mnemonic: &'static str, name: &'static str, error: u64 },
    /// A `syscall` with a number the kernel does not implement.
    UnknownSyscall(u64),
}

/// Threads stopped by faults they had no handler for.
static FAULTED: KernelCell<u32> = KernelCell::new(0);

/// A thread's name for reports: the one the kernel gave it, else its TCB address.
pub fn name_of(t: TcbRef) -> String<40> {
    let bytes = objects::with(|s| t.name(&s.mem));
    let mut name = String::new();
    let text = core::str::from_utf8(&bytes).unwrap_or("").trim_end_matches('\0');
    if text.is_empty() {
        let _ = core::fmt::write(&mut name, format_args!("tcb@{:#x}", t.0.0));
    } else {
        let _ = name.push_str(text);
    }
    name
}

/// The current thread's name.
pub fn current_name() -> String<40> {
    match objects::with(|s| s.current()) {
        Some(t) => name_of(t),
        None => String::new(),
    }
}

/// Saves the registers of the thread that entered the kernel into its TCB.
pub fn save(frame: &TrapFrame) {
    objects::with(|s| {
        if let Some(t) = s.current() {
            t.set_regs(&mut s.mem, frame);
        }
    });
}

/// Delivers `fault` of the current thread (registers in `frame`) to its fault endpoint;
/// without one, reports it and stops the thread.
pub fn fault_current(fault: Fault, frame: &TrapFrame) {
    let (label, words) = match fault {
        Fault::UnknownSyscall(number) => {
            (fault::UNKNOWN_SYSCALL, [number, frame.rip, frame.rsp, frame.rflags])
        }
        Fault::Exception { vector: 14, error, .. } => {
            (fault::VM_FAULT, [trap::cr2(), error, frame.rip, frame.rsp])
        }
        Fault::Exception { vector, error, .. } => {
            (fault::USER_EXCEPTION, [vector, error, frame.rip, frame.rsp])
        }
    };
    // What the thread had printed of its current line goes out first: it is often why.
    let (line, len) =
        objects::with(|s| s.current().map_or(([0; CONSOLE_LINE], 0), |t| t.console_take(&mut s.mem)));
    if len > 0 {
        crate::arch::serial::queue_line(&line[..len]);
        kprintln!();
    }
    let handled = objects::with(|s| s.current().is_some_and(|t| s.raise_fault(t, label, words)));
    if handled {
        return;
    }
    let name = current_name();
    match fault {
        Fault::Exception { vector, mnemonic, name: what, error } => {
            kprintln!(
                "user fault: thread '{name}': vector {vector} {mnemonic} ({what}), error code {error:#x}, \
                 rip {:#018x}, cr2 {:#018x}",
                frame.rip,
                trap::cr2()
            );
        }
        Fault::UnknownSyscall(number) => {
            kprintln!(
                "user fault: thread '{name}': unknown system call {number:#x} at rip {:#018x}",
                frame.rip
            );
        }
    }
    crate::kprint!("{frame}");
    kprintln!("kernel: thread '{name}' stopped (it has no fault handler)");
    FAULTED.with(|n| *n += 1);
    objects::with(|s| {
        if let Some(t) = s.current() {
            s.suspend(t);
        }
    });
}

/// Chooses the thread to run next and loads it: its registers into `frame`, its address
/// space into CR3. (The entry paths that build their frame on the kernel stack:
/// exceptions and interrupts.)
pub fn schedule(frame: &mut TrapFrame) {
    let t = choose_next();
    *frame = objects::with(|s| t.regs(&s.mem));
    trap::resume_frame(t);
}

/// Chooses the thread to run next and loads its address space into CR3; its registers
/// stay in its TCB. A thread that cannot run (no address space) is reported and stopped.
/// With nothing runnable the kernel waits for an interrupt if one could wake a thread;
/// otherwise the run ends.
pub fn choose_next() -> TcbRef {
    loop {
        let (flush, chosen) = objects::with(|s| {
            let chosen =
                s.choose().map(|t| (t, s.mem.cap_at(t.slot(slot::VSPACE)), t.regs(&s.mem).from_user()));
            (s.take_tlb_flush(), chosen)
        });
        if flush {
            paging::flush_tlb();
        }
        let Some((t, vspace, user)) = chosen else {
            if objects::with(|s| s.interrupts_can_wake()) {
                interrupt::wait_for_interrupt();
                continue;
            }
            nothing_to_run()
        };
        match vspace {
            Cap::VSpace { base, .. } if user => {
                paging::activate_root(base);
                return t;
            }
            _ => {
                kprintln!("kernel: thread '{}' has no address space to run in; stopped", name_of(t));
                objects::with(|s| s.suspend(t));
            }
        }
    }
}

/// Ends the run when no thread can run: the kernel itself is healthy.
fn nothing_to_run() -> ! {
    let faults = FAULTED.with(|n| *n);
    kprintln!("kernel: no runnable threads ({faults} stopped by faults); shutting down");
    exit(Outcome::Idle)
}
