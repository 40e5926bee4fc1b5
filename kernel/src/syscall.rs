//! System call entry: the IPC fast path when it applies, or a VMM's `VmEnter` straight
//! into its guest; otherwise let the object code perform the call, do what needs the
//! machine, then run whichever thread comes next. The caller's registers are already in
//! its TCB (the entry stub saves them there).

use crate::arch::exit::{Outcome as RunOutcome, exit};
use crate::arch::serial;
use crate::arch::trap::{TrapFrame, resume_frame, syscall_number};
use crate::arch::x86_64::cpu::{self, Machine};
use crate::arch::x86_64::physmem::DirectMemory;
use crate::arch::x86_64::{interrupt, svm, vmx};
use crate::arch::x86_64::{paging, physmem};
use crate::{kprintln, objects, thread};
use cleave_abi::Syscall;
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::space::ObjectSpace;
use cleave_kernel_core::object::syscall::Outcome;
use cleave_kernel_core::object::tcb::TcbRef;
use cleave_kernel_core::object::vcpu::Layout;

/// Entry from the `syscall` stub; returns the saved registers of the thread to resume.
#[inline(always)]
pub fn dispatch() -> *const TrapFrame {
    if let Some((next, root)) = objects::with(|space| space.fastpath()) {
        paging::activate_root(root);
        return resume_frame(next);
    }
    if syscall_number() == Syscall::VmEnter as u64 {
        return vm_enter();
    }
    slow_path()
}

/// `VmEnter`: a VMM whose Vcpu can enter goes straight into its guest, without the
/// general path's decoding (the VMM's exit loop); the general path reports why not.
#[inline(never)]
fn vm_enter() -> *const TrapFrame {
    match objects::with(vm_enter_fast) {
        Some(entry) => enter_guest_inline(entry),
        None => slow_path(),
    }
}

/// A `VmEnter` the kernel is about to perform.
struct GuestEntry {
    /// The VMM's thread.
    thread: TcbRef,
    /// Its Vcpu.
    vcpu: PhysAddr,
    /// The root of the Vcpu's guest-physical address space.
    root: PhysAddr,
    /// How Vcpus are laid out, which says whether VT-x or SVM runs them.
    layout: Layout,
}

/// What the current thread's `VmEnter` (its call) enters, if it can.
#[inline(always)]
fn vm_enter_fast(space: &mut ObjectSpace<DirectMemory>) -> Option<GuestEntry> {
    let thread = space.current()?;
    let (vcpu, root) = space.vm_enter_target(thread).ok()?;
    // A pending signal returns at once (`exit::reason::NOTIFIED`): the general path's.
    if space.bound_signal_pending(thread) {
        return None;
    }
    Some(prepare_entry(space, thread, vcpu, root))
}

/// Makes ready to enter the guest of `vcpu`: its floating-point registers go into the
/// processor, unless it holds them already (no other guest ran since; nothing else uses
/// them).
#[inline(always)]
fn prepare_entry(
    space: &mut ObjectSpace<DirectMemory>,
    thread: TcbRef,
    vcpu: PhysAddr,
    root: PhysAddr,
) -> GuestEntry {
    if let Some((save, load)) = space.fpu_switch(vcpu) {
        cpu::switch_fpu(save.map(physmem::virt), physmem::virt(load));
    }
    GuestEntry { thread, vcpu, root, layout: space.vcpu_layout() }
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
        Outcome::Ended(t, status, line, len) => {
            // Its unfinished line first, ended, so that the kernel's starts a line.
            if len > 0 {
                serial::queue_line(&line[..len]);
                kprintln!();
            }
            kprintln!("kernel: thread '{}' ended with status {status}", thread::name_of(t));
        }
        Outcome::UnknownSyscall(number) => {
            if let Some(t) = objects::with(|s| s.current()) {
                let frame = objects::with(|s| t.regs(&s.mem));
                thread::fault_current(thread::Fault::UnknownSyscall(number), &frame);
            }
        }
        // (`vm_enter` takes every VmEnter that gets this far.)
        Outcome::VmEnter { vcpu, ept_root: root } => {
            if let Some(entry) = objects::with(|s| s.current().map(|t| prepare_entry(s, t, vcpu, root))) {
                return enter_guest(entry);
            }
        }
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

/// Runs the current thread's guest until an exit its VMM must see, and returns to the
/// VMM (with the exit, or the error entering) or to whichever thread must run first.
#[inline(never)]
fn enter_guest(entry: GuestEntry) -> *const TrapFrame {
    enter_guest_inline(entry)
}

/// [`enter_guest`], inlined.
#[inline(always)]
fn enter_guest_inline(entry: GuestEntry) -> *const TrapFrame {
    let GuestEntry { thread: t, vcpu, root, layout } = entry;
    let (flush, stays) = run_guest(t, vcpu, root, layout);
    if flush {
        paging::flush_tlb();
    }
    if stays {
        // Back to the VMM, in the address space it called from (CR3 is still its root:
        // the exit restored it, and nothing on this path switched it).
        return resume_frame(t);
    }
    resume_frame(thread::choose_next())
}

/// Runs `t`'s guest until an exit its VMM must see, and gives the VMM the exit (or the
/// error entering). External interrupts exit to the kernel, which takes them (interrupts
/// on for one instruction) and resumes the guest; if another thread should run now, the
/// VMM's `syscall` is rewound so that it enters the guest again when it next runs,
/// without seeing the interruption. Returns [`after_guest`]'s answers.
#[inline(always)]
fn run_guest(t: TcbRef, vcpu: PhysAddr, root: PhysAddr, layout: Layout) -> (bool, bool) {
    loop {
        let result = match layout {
            // Every entry flushes every guest translation (`svm::run`).
            Layout::Svm => svm::run(vcpu, root),
            Layout::Vmx => {
                let flush = objects::with(|s| s.take_ept_flush());
                vmx::run(vcpu, root, flush)
            }
        };
        match result {
            Ok(words) if words[0] == INTERRUPTED => {
                interrupt::take_pending();
                // What the interrupt did may have signalled the VMM itself: it hears so now.
                if let Some(done) = objects::with(|s| {
                    let word = s.take_bound_word(t)?;
                    s.vm_exited(t, [NOTIFIED, word, 0, 0]);
                    Some(after_guest(s, t, layout))
                }) {
                    serial::pump();
                    return done;
                }
                let stays = objects::with(|s| s.current() == Some(t) && s.choose() == Some(t));
                if !stays {
                    // (The interrupt's handler has just sent what console output it could.)
                    return objects::with(|s| {
                        let mut regs = t.regs(&s.mem);
                        regs.rip = regs.rip.wrapping_sub(SYSCALL_LENGTH);
                        t.set_regs(&mut s.mem, &regs);
                        after_guest(s, t, layout)
                    });
                }
            }
            Ok(words) => {
                serial::pump();
                return objects::with(move |s| {
                    s.vm_exited(t, words);
                    after_guest(s, t, layout)
                });
            }
            Err(e) => {
                serial::pump();
                return objects::with(move |s| {
                    s.set_status(t, Err(e));
                    after_guest(s, t, layout)
                });
            }
        }
    }
}

/// After `t`'s guest ran (`t`'s registers hold what it gets back): whether the TLB must
/// be flushed, and whether `t` runs on.
#[inline(always)]
fn after_guest(s: &mut ObjectSpace<DirectMemory>, t: TcbRef, layout: Layout) -> (bool, bool) {
    // VT-x: a destroyed Vcpu's VMCS must not stay active; the object code needs to know
    // which one is (the entry made this Vcpu's current). SVM has none.
    if layout == Layout::Vmx {
        if core::mem::take(&mut s.clear_active_vmcs) {
            vmx::clear_active();
        }
        s.active_vmcs = vmx::active();
    }
    (s.take_tlb_flush(), s.choose() == Some(t))
}

/// Exit reason: an external interrupt arrived while the guest ran.
const INTERRUPTED: u64 = cleave_abi::vcpu::exit::reason::INTERRUPTED;
/// Exit reason: the VMM's bound notification was signalled.
const NOTIFIED: u64 = cleave_abi::vcpu::exit::reason::NOTIFIED;
/// Bytes of the `syscall` instruction (0f 05).
const SYSCALL_LENGTH: u64 = cleave_kernel_core::object::syscall::SYSCALL_INSTRUCTION_LENGTH;
