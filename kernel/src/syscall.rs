//! System call dispatch. Register convention: `cleave_abi::syscall`.

use crate::arch::exit::{Outcome, exit};
use crate::arch::serial;
use crate::arch::trap::TrapFrame;
use crate::arch::x86_64::cpu::Ports;
use crate::{kprintln, objects, thread};
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::{Error, MessageInfo, Syscall};
use cleave_kernel_core::PhysAddr;
use cleave_kernel_core::object::cap::Cap;
use cleave_kernel_core::object::cspace::lookup_cap;
use cleave_kernel_core::object::invoke::{Invocation, Reply, invoke};
use cleave_kernel_core::object::kmem::KernelMemory;
use cleave_kernel_core::object::slot::SlotOps;

/// Most argument words an object invocation reads.
const MAX_INVOCATION_WORDS: usize = 8;

/// Entry from the `syscall` stub: performs the call and leaves results in `frame`.
pub fn dispatch(frame: &mut TrapFrame) {
    match Syscall::from_raw(frame.rax) {
        Some(Syscall::DebugPutChar) => {
            serial::write_byte(frame.rdi as u8);
            frame.rax = 0;
        }
        Some(Syscall::DebugExit) => {
            let status = frame.rdi as i64;
            kprintln!("kernel: thread '{}' exited with status {status}", thread::current_name());
            exit(if status == 0 { Outcome::Success } else { Outcome::Failure })
        }
        Some(Syscall::Call) => {
            let reply = call(frame);
            let (status, reply) = match reply {
                Ok(reply) => (0, reply),
                Err(e) => (e as u64, Reply::default()),
            };
            frame.rax = status;
            frame.rsi = MessageInfo::new(0, 0, 0, reply.length as u64).0;
            [frame.rdx, frame.r8, frame.r9, frame.r10] = reply.words;
        }
        // The IPC calls arrive with endpoints; until then they fault like numbers the
        // kernel does not know.
        Some(_) | None => thread::fault_current(thread::Fault::UnknownSyscall(frame.rax), frame),
    }
}

/// `Call` on an object capability: an invocation.
fn call(frame: &TrapFrame) -> Result<Reply, Error> {
    let info = MessageInfo(frame.rsi);
    let tcb = thread::current_tcb();
    objects::with(|space| {
        let tcb_slot = |i: u64| PhysAddr(tcb.0 + (i << SLOT_SIZE_BITS));
        let cspace = space.mem.cap_at(tcb_slot(0));
        // Message words: the first four in registers, the rest in the IPC buffer.
        let mut words = [0u64; MAX_INVOCATION_WORDS];
        let length = info.length().min(MAX_INVOCATION_WORDS);
        let registers = [frame.rdx, frame.r8, frame.r9, frame.r10];
        for (i, word) in words.iter_mut().enumerate().take(length) {
            *word = match registers.get(i) {
                Some(&r) => r,
                None => match space.mem.cap_at(tcb_slot(2)) {
                    Cap::Frame { base, .. } => space.mem.read::<u64>(PhysAddr(base.0 + 8 + 8 * i as u64)),
                    _ => return Err(Error::TruncatedMessage),
                },
            };
        }
        let (slot, target) = lookup_cap(&space.mem, cspace, frame.rdi)?;
        invoke(
            space,
            &mut Ports,
            cspace,
            slot,
            target,
            Invocation { label: info.label(), words: &words[..length] },
        )
    })
}
