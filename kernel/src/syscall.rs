//! System call entry: the IPC fast path when it applies; otherwise let the object code
//! perform the call, do what needs the machine, then run whichever thread comes next. The
//! caller's registers are already in its TCB (the entry stub saves them there).

use crate::arch::exit::{Outcome as RunOutcome, exit};
use crate::arch::serial;
use crate::arch::trap::{TrapFrame, resume_frame};
use crate::arch::x86_64::cpu::{self, Machine};
use crate::arch::x86_64::{interrupt, svm, vmx};
use crate::arch::x86_64::{paging, physmem};
use crate::{kprintln, objects, thread};
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::syscall::Outcome;

/// Entry from the `syscall` stub; returns the saved registers of the thread to resume.
pub fn dispatch() -> *const TrapFrame {
    if let Some((next, root)) = objects::with(|space| space.fastpath()) {
        paging::activate_root(root);
        return resume_frame(next);
    }
    slow_path()
}

/// Entry from the compatibility-mode `syscall` stub: the thread faults with a general
/// protection exception at the instruction (it is not offered there), and the next thread
/// runs.
pub fn compat_dispatch() -> *const TrapFrame {
    if let Some(t) = objects::with(|s| s.current()) {
        let frame = objects::with(|s| t.regs(&s.mem));
        let (mnemonic, name) = crate::arch::trap::exception_name(GENERAL_PROTECTION);
        let fault = thread::Fault::Exception { vector: GENERAL_PROTECTION, mnemonic, name, error: 0 };
        thread::fault_current(fault, &frame);
    }
    resume_frame(thread::choose_next())
}

/// The general-protection exception vector.
const GENERAL_PROTECTION: u64 = 13;

/// Everything the fast path leaves: the general system call code.
#[cold]
#[inline(never)]
fn slow_path() -> *const TrapFrame {
    match objects::with(|space| space.syscall(&mut Machine)) {
        // The pending interrupt is taken as the thread returns to user mode (before it
        // makes its call again).
        Outcome::Done | Outcome::Preempted => {}
        Outcome::DebugLine(line, len) => serial::queue_line(&line[..len]),
        Outcome::DebugExit(status, line, len) => {
            if len > 0 {
                serial::queue_line(&line[..len]);
                kprintln!();
            }
            kprintln!("kernel: thread '{}' exited with status {status}", thread::current_name());
            exit(if status == 0 { RunOutcome::Success } else { RunOutcome::Failure })
        }
        Outcome::UnknownSyscall(number) => {
            if let Some(t) = objects::with(|s| s.current()) {
                let frame = objects::with(|s| t.regs(&s.mem));
                thread::fault_current(thread::Fault::UnknownSyscall(number), &frame);
            }
        }
        Outcome::VmEnter { vcpu, ept_root } => vm_enter(vcpu, ept_root),
    }
    // Threads' console output the UART has room for now (a print's own line went out, as
    // far as it could, when it was queued).
    serial::pump();
    // A destroyed Vcpu's VMCS must not stay active; the object code needs to know which
    // one is.
    objects::with(|s| {
        if core::mem::take(&mut s.clear_active_vmcs) {
            vmx::clear_active();
        }
        s.active_vmcs = vmx::active();
    });
    resume_frame(thread::choose_next())
}

/// Runs the current thread's guest until an exit its VMM must see. External interrupts
/// exit to the kernel, which takes them (interrupts on for one instruction) and resumes
/// the guest; if another thread should run now, the VMM's `syscall` is rewound so that it
/// enters the guest again when it next runs, without seeing the interruption.
fn vm_enter(vcpu: PhysAddr, ept_root: PhysAddr) {
    let Some(t) = objects::with(|s| s.current()) else { return };
    // The guest's floating-point registers, unless the processor holds them already (no
    // other guest ran since; nothing else uses them).
    if let Some((save, load)) = objects::with(|s| s.fpu_switch(vcpu)) {
        cpu::switch_fpu(save.map(physmem::virt), physmem::virt(load));
    }
    loop {
        let flush = objects::with(|s| s.take_ept_flush());
        let result = if svm::enabled().is_some() {
            // Every entry flushes every guest translation (`svm::run`).
            svm::run(vcpu, ept_root)
        } else {
            vmx::run(vcpu, ept_root, flush)
        };
        match result {
            Err(e) => {
                objects::with(|s| s.set_status(t, Err(e)));
                return;
            }
            Ok(words) if words[0] == INTERRUPTED => {
                interrupt::take_pending();
                let stays = objects::with(|s| s.current() == Some(t) && s.choose() == Some(t));
                if !stays {
                    objects::with(|s| {
                        let rip = t.regs(&s.mem).rip;
                        let mut regs = t.regs(&s.mem);
                        regs.rip = rip.wrapping_sub(SYSCALL_LENGTH);
                        t.set_regs(&mut s.mem, &regs);
                    });
                    return;
                }
            }
            Ok(words) => {
                objects::with(|s| s.vm_exited(t, words));
                return;
            }
        }
    }
}

/// Exit reason: an external interrupt arrived while the guest ran.
const INTERRUPTED: u64 = cleave_abi::vcpu::exit::reason::INTERRUPTED;
/// Bytes of the `syscall` instruction (0f 05).
const SYSCALL_LENGTH: u64 = cleave_kernel_core::object::syscall::SYSCALL_INSTRUCTION_LENGTH;
