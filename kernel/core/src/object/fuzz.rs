//! The object-layer fuzzer: random sequences of system calls, object invocations, faults,
//! timer ticks and interrupts, made by the threads of several components (each with its
//! own CSpace, VSpace and untyped memory) over the kernel's object code running on a byte
//! vector, with every kernel invariant checked after every step.
//!
//! A step is fully described by its random values, so a run replays exactly and a failing
//! sequence shrinks (delta debugging: drop chunks while it still fails). `cargo xtask fuzz`
//! runs it at length; `cargo xtask test` briefly. The invariants are listed at
//! [`check`]; `doc/testing.md` says which review finding each one catches.

extern crate std;

use super::cap::{Cap, ObjectRef};
use super::invoke::{Hardware, Invocation, invoke};
use super::ipc::{IDLE, NTFN_BOUND, NTFN_HEAD, RECEIVERS, SENDERS};
use super::kmem::{KernelMemory, TestMemory};
use super::paging::{ADDRESS, At};
use super::slot::{Slot, SlotOps};
use super::space::{ObjectSpace, TCB_SLOT_COUNT};
use super::syscall::Outcome;
use super::tcb::{Registers, TcbRef, ThreadState, privilege, slot as tcb_slot};
use super::vcpu::{IO_BITMAP_OFFSET, IO_GRANT_OFFSET, IO_GRANTS, Layout};
use super::vspace::{ASIDS_PER_POOL, Format, asid};
use crate::addr::{PhysAddr, VirtAddr};
use cleave_abi::ipc_buffer::{RECEIVE_OFFSET, cap_offset};
use cleave_abi::object::{ENDPOINT_SIZE_BITS, NOTIFICATION_SIZE_BITS, SLOT_SIZE_BITS, TCB_SIZE_BITS, label};
use cleave_abi::{MessageInfo, ObjectType, Rights, Syscall};
use core::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

/// xorshift64*: small, fast and good enough to drive a fuzzer; the same seed gives the
/// same run on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One step of a run, with every random value it uses.
#[derive(Clone, Debug)]
pub enum Step {
    /// A runnable thread (by index among the runnable ones) makes a system call.
    Syscall {
        /// Which runnable thread.
        thread: u16,
        /// `rax`.
        number: u64,
        /// `rdi`.
        cptr: u64,
        /// `rsi`.
        info: u64,
        /// Message words 0-7 (registers, then the IPC buffer).
        words: [u64; 8],
        /// The capability a message transfers (IPC buffer).
        cap: u64,
        /// Where a received capability goes (IPC buffer: CNode, index, depth).
        receive: [u64; 3],
        /// Try the IPC fast path first, as the kernel does.
        fast: bool,
        /// Whether an interrupt is pending at preemption points.
        pending: bool,
        /// The VM exit reported if the call enters a guest.
        exit: [u64; 4],
        /// Which of the capability pointer (bit 0) and words (bits 1-8) are aimed: replaced,
        /// when the step runs, by a slot of the caller's CNode holding the kind of
        /// capability that argument wants (the value itself then picks among them), so
        /// that long chains of dependent operations happen.
        aim: u16,
    },
    /// A runnable thread takes a processor exception (sent to its fault handler).
    Fault {
        /// Which runnable thread.
        thread: u16,
        /// The fault label.
        label: u64,
        /// The fault words.
        words: [u64; 4],
    },
    /// A timer tick.
    Tick,
    /// An interrupt line fires.
    Irq(u8),
    /// A supervisor stops a thread (by index among all live threads) and starts it afresh.
    Restart {
        /// Which thread.
        thread: u16,
    },
}

const MEMORY_BASE: u64 = 0x10_0000;
const MEMORY_END: u64 = 0x100_0000;
const SENTINEL: Slot = PhysAddr(MEMORY_BASE);
const ROOT_CNODE: u64 = MEMORY_BASE + 0x4000;
const ROOT_RADIX: u8 = 8;
const ROOT_UNTYPED: u64 = 0x80_0000;
const ROOT_UNTYPED_BITS: u8 = 23;
/// Components, each with two threads.
const COMPONENTS: u64 = 3;
/// Slots in a component's CNode (radix 6, one level: guard 58).
const COMPONENT_RADIX: u8 = 6;
/// Where the components' IPC buffers are mapped.
const IPC_BUFFERS: u64 = 0x1000_0000;
const ENTRY: u64 = 0x40_1000;
const STACK: u64 = 0x7000_0000;

fn root_slot(i: u64) -> Slot {
    PhysAddr(ROOT_CNODE + (i << SLOT_SIZE_BITS))
}

/// The machine as the fuzzer plays it: ports read 0, VMCS accesses succeed and make the
/// Vcpu's VMCS the active one, interrupts are pending when the step says so. Guest-state
/// accesses go through the kernel's own neutral-field code (`crate::vmcs` on VT-x
/// episodes, `crate::vmcb` on SVM ones) into a synthetic VMCS or VMCB per live Vcpu,
/// fresh as the kernel makes it on first use; [`check`] holds what a VMM may never reach
/// in them.
struct FuzzHardware {
    active: u64,
    pending: bool,
    /// SVM (the episode's guests' spaces are NPT) rather than VT-x.
    svm: bool,
    /// Each Vcpu's synthetic processor state, by address (forgotten when the Vcpu dies).
    guests: RefCell<BTreeMap<u64, Synthetic>>,
    /// The interrupt controller's mask (bit n: line n masked), as the kernel sets it; all
    /// lines start masked, as the PIC's do.
    masked: u16,
    /// The clock the audit log reads: it runs backwards now and then (the log must not).
    clock: u64,
}

/// A Vcpu's processor-side state as the fuzzer keeps it.
enum Synthetic {
    /// VT-x: VMCS fields by encoding, and the guest CR2 the state page would hold.
    Vmcs(BTreeMap<u32, u64>, u64),
    /// SVM: the VMCB page.
    Vmcb(std::boxed::Box<[u8; 4096]>),
}

/// The VT-x fields the kernel's fresh VMCS sets that the neutral fields touch: guest CR4
/// with VMXE, the primary controls (HLT, CR8, MOV-DR, bitmaps, secondary) and the entry
/// controls (load EFER).
const FRESH_VMCS: [(u32, u64); 3] = [(0x6804, 1 << 13), (0x4002, 0x9298_0080), (0x4012, 1 << 15)];

impl Synthetic {
    fn fresh(vcpu: u64, svm: bool) -> Self {
        if svm {
            let mut page = std::boxed::Box::new([0u8; 4096]);
            for (offset, value, bytes) in crate::vmcb::fresh(vcpu, 1) {
                let n = usize::from(bytes);
                page[offset..offset + n].copy_from_slice(&value.to_le_bytes()[..n]);
            }
            Self::Vmcb(page)
        } else {
            Self::Vmcs(FRESH_VMCS.into_iter().collect(), 0)
        }
    }
}

impl crate::vmcs::Vmcs for (&mut BTreeMap<u32, u64>, &mut u64) {
    fn read(&mut self, encoding: u32) -> Result<u64, cleave_abi::Error> {
        Ok(self.0.get(&encoding).copied().unwrap_or(0))
    }
    fn write(&mut self, encoding: u32, value: u64) -> Result<(), cleave_abi::Error> {
        self.0.insert(encoding, value);
        Ok(())
    }
    fn cr2(&mut self) -> u64 {
        *self.1
    }
    fn set_cr2(&mut self, value: u64) {
        *self.1 = value;
    }
}

impl crate::vmcb::Vmcb for [u8; 4096] {
    fn get(&self, offset: usize) -> u64 {
        let at = offset & 0xff8;
        u64::from_le_bytes(self[at..at + 8].try_into().expect("8 bytes"))
    }
    fn set(&mut self, offset: usize, value: u64) {
        let at = offset & 0xff8;
        self[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
}

impl FuzzHardware {
    fn new(svm: bool) -> Self {
        Self {
            active: 0,
            pending: false,
            svm,
            guests: RefCell::new(BTreeMap::new()),
            masked: 0xffff,
            clock: 0,
        }
    }

    /// Runs `f` on the synthetic state of the Vcpu at `vcpu` (made fresh on first use).
    fn with_guest<T>(&mut self, vcpu: PhysAddr, f: impl FnOnce(&mut Synthetic) -> T) -> T {
        let svm = self.svm;
        if !svm {
            self.active = vcpu.0;
        }
        f(self.guests.get_mut().entry(vcpu.0).or_insert_with(|| Synthetic::fresh(vcpu.0, svm)))
    }
}

impl Hardware for FuzzHardware {
    fn read(&mut self, _: u16, _: u8) -> u32 {
        0
    }
    fn write(&mut self, _: u16, _: u8, _: u32) {}
    fn set_irq_masked(&mut self, irq: u8, masked: bool) {
        let bit = 1u16.checked_shl(u32::from(irq)).unwrap_or(0);
        if masked { self.masked |= bit } else { self.masked &= !bit }
    }
    fn interrupt_pending(&mut self) -> bool {
        self.pending
    }
    fn time_us(&mut self) -> u64 {
        self.clock = (self.clock + 7) % 100;
        self.clock
    }
    fn vmcs_read(&mut self, vcpu: PhysAddr, _: u32) -> Result<u64, cleave_abi::Error> {
        self.active = vcpu.0;
        Ok(0)
    }
    fn vmcs_write(&mut self, vcpu: PhysAddr, _: u32, _: u64) -> Result<(), cleave_abi::Error> {
        self.active = vcpu.0;
        Ok(())
    }
    fn guest_state_read(&mut self, vcpu: PhysAddr, field: u64) -> Result<u64, cleave_abi::Error> {
        self.with_guest(vcpu, |g| match g {
            Synthetic::Vmcs(fields, cr2) => crate::vmcs::read(&mut (fields, cr2), field),
            Synthetic::Vmcb(page) => crate::vmcb::read(&**page, field),
        })
    }
    fn guest_state_write(&mut self, vcpu: PhysAddr, field: u64, value: u64) -> Result<(), cleave_abi::Error> {
        self.with_guest(vcpu, |g| match g {
            Synthetic::Vmcs(fields, cr2) => crate::vmcs::write(&mut (fields, cr2), field, value),
            Synthetic::Vmcb(page) => crate::vmcb::write(&mut **page, field, value),
        })
    }
}

/// A world: the object space and what the harness keeps beside it.
pub struct World {
    /// The kernel's objects.
    pub s: ObjectSpace<TestMemory>,
    hw: FuzzHardware,
    /// The TCB that plays the supervisor (never runs).
    boss: TcbRef,
    /// Live threads, refreshed by every check.
    threads: Vec<TcbRef>,
    /// How many system calls returned success, by (number, label): how deep a run went.
    pub successes: BTreeMap<(u64, u64), u64>,
    /// A `VmEnter` that broke the notification rule (a thread whose bound notification
    /// was signalled entered its guest, or returned without taking the signal): checked
    /// by [`check`].
    vm_enter_broken: Option<String>,
}

/// The label under which [`World::successes`] counts `VmEnter`s that returned
/// `NOTIFIED` (a signal pending) rather than entering the guest.
pub const VM_ENTER_NOTIFIED: u64 = u64::MAX;

/// Builds the starting world: a root CNode and 8 MiB untyped (the loader's), and
/// [`COMPONENTS`] components, each with a CNode, a VSpace with its IPC buffers mapped, two
/// running threads, 256 KiB of its own untyped memory and copies of a shared endpoint and
/// notification, IrqControl and IoPortControl, and a Vcpu and a guest-physical space.
pub fn world() -> World {
    world_in(Format::Ept)
}

/// [`world`], with guests' physical address spaces in `format` (EPT or NPT).
pub fn world_in(format: Format) -> World {
    let mut s = ObjectSpace::new(TestMemory::new(MEMORY_BASE, (MEMORY_END - MEMORY_BASE) as usize), SENTINEL);
    s.set_guest_format(format).expect("a nested paging format");
    let root =
        Cap::CNode { base: PhysAddr(ROOT_CNODE), radix: ROOT_RADIX, guard: 0, guard_bits: 64 - ROOT_RADIX };
    s.insert_original(root_slot(0), root).expect("empty slot");
    let untyped = Cap::Untyped {
        base: PhysAddr(ROOT_UNTYPED),
        size_bits: ROOT_UNTYPED_BITS,
        watermark: 0,
        device: false,
        frames_only: false,
    };
    s.insert_original(root_slot(1), untyped).expect("empty slot");
    let make = |s: &mut ObjectSpace<TestMemory>, ty: ObjectType, bits: u32, dest: u64| {
        s.retype(root_slot(1), ty, bits, 1, root_slot(dest)).expect("the world fits its memory");
    };
    make(&mut s, ObjectType::Tcb, 0, 2);
    let boss = match s.mem.cap_at(root_slot(2)) {
        Cap::Tcb { base } => TcbRef(base),
        _ => unreachable!(),
    };
    boss.set_mcp(&mut s.mem, 255);
    make(&mut s, ObjectType::Endpoint, 0, 3);
    make(&mut s, ObjectType::Notification, 0, 4);
    s.insert_original(root_slot(5), Cap::IoPortControl).expect("empty slot");
    s.insert_original(root_slot(6), Cap::IrqControl).expect("empty slot");
    // The loader's ASID pool (slot 9), made with AsidControl (slot 7) from 4 KiB (slot 8).
    s.insert_original(root_slot(7), Cap::AsidControl).expect("empty slot");
    make(&mut s, ObjectType::Untyped, 12, 8);
    s.make_pool(root_slot(7), root_slot(8), root_slot(9)).expect("a pool");
    for c in 0..COMPONENTS {
        let at = 10 + 16 * c;
        make(&mut s, ObjectType::CNode, u32::from(COMPONENT_RADIX), at);
        make(&mut s, ObjectType::Untyped, 18, at + 1);
        make(&mut s, ObjectType::Pml4, 0, at + 2);
        s.assign_from_pool(s.mem.cap_at(root_slot(9)), root_slot(at + 2)).expect("an ASID");
        make(&mut s, ObjectType::Pdpt, 0, at + 3);
        make(&mut s, ObjectType::PageDirectory, 0, at + 4);
        make(&mut s, ObjectType::PageTable, 0, at + 5);
        for t in 0..2 {
            make(&mut s, ObjectType::Tcb, 0, at + 6 + t);
            make(&mut s, ObjectType::Frame4K, 0, at + 8 + t);
        }
        let vspace = s.mem.cap_at(root_slot(at + 2));
        for table in 3..6 {
            s.map_table(root_slot(at + table), vspace, At::Virt(VirtAddr(IPC_BUFFERS))).expect("tables map");
        }
        // The component's own CNode: itself (one level), its untyped, its VSpace, its
        // threads, the shared objects, its page table and IPC buffers.
        let cnode = match s.mem.cap_at(root_slot(at)) {
            Cap::CNode { base, .. } => base,
            _ => unreachable!(),
        };
        let own = |i: u64| PhysAddr(cnode.0 + (i << SLOT_SIZE_BITS));
        s.mint(root_slot(at), own(0), Rights::ALL, u64::from(64 - COMPONENT_RADIX)).expect("guard");
        // The second component's untyped makes frames only (as the Builder's guest RAM
        // does): every retype of anything else from it must be refused.
        if c == 1 {
            s.mutate(root_slot(at + 1), own(1), Rights::ALL, cleave_abi::UNTYPED_FRAMES_ONLY)
                .expect("mutate");
        } else {
            s.move_cap(root_slot(at + 1), own(1)).expect("move");
        }
        s.copy(root_slot(at + 2), own(2)).expect("copy");
        s.copy(root_slot(3), own(5)).expect("copy");
        s.copy(root_slot(4), own(6)).expect("copy");
        s.mint(root_slot(3), own(7), Rights::WRITE, c + 1).expect("mint");
        s.move_cap(root_slot(at + 5), own(8)).expect("move");
        s.copy(root_slot(5), own(11)).expect("copy");
        s.copy(root_slot(6), own(12)).expect("copy");
        make(&mut s, ObjectType::Vcpu, 0, at + 10);
        make(&mut s, ObjectType::EptPml4, 0, at + 11);
        s.assign_from_pool(s.mem.cap_at(root_slot(9)), root_slot(at + 11)).expect("an ASID");
        // The component's own ASID pool (slot 15); the first also holds AsidControl (16).
        make(&mut s, ObjectType::Untyped, 12, at + 12);
        s.make_pool(root_slot(7), root_slot(at + 12), own(15)).expect("a pool");
        if c == 0 {
            s.copy(root_slot(7), own(16)).expect("copy");
        }
        s.copy(root_slot(at + 10), own(13)).expect("copy");
        s.copy(root_slot(at + 11), own(14)).expect("copy");
        for t in 0..2 {
            let frame = root_slot(at + 8 + t);
            let vaddr = IPC_BUFFERS + (c * 2 + t) * 0x1000;
            s.map_frame(frame, vspace, At::Virt(VirtAddr(vaddr)), Rights::ALL, 0).expect("frame maps");
            s.copy(frame, own(9 + t)).expect("copy");
            let tcb_slot_at = root_slot(at + 6 + t);
            s.copy(tcb_slot_at, own(3 + t)).expect("copy");
            let tcb = match s.mem.cap_at(tcb_slot_at) {
                Cap::Tcb { base } => TcbRef(base),
                _ => unreachable!(),
            };
            s.copy(own(0), tcb.slot(tcb_slot::CSPACE)).expect("copy");
            s.copy(own(2), tcb.slot(tcb_slot::VSPACE)).expect("copy");
            s.copy(own(9 + t), tcb.slot(tcb_slot::IPC_BUFFER)).expect("copy");
            s.copy(own(5), tcb.slot(tcb_slot::FAULT_ENDPOINT)).expect("copy");
            tcb.set_ipc_buffer_vaddr(&mut s.mem, vaddr);
            // Half the threads may write to the console (so record audit events), the
            // first may also read the audit log and name threads; the first five are
            // named.
            let index = c * 2 + t;
            let bits = match index {
                0 => privilege::CONSOLE | privilege::READ_AUDIT | privilege::NAME_THREADS,
                i if i % 2 == 0 => privilege::CONSOLE,
                _ => 0,
            };
            tcb.set_privileges(&mut s.mem, bits);
            if index < 5 {
                tcb.set_name(&mut s.mem, ["w0", "w1", "w2", "w3", "w4"][index as usize]);
            }
            tcb.set_mcp(&mut s.mem, 100);
            s.set_priority(tcb, 50 + (c * 2 + t) as u8);
            tcb.set_regs(&mut s.mem, &Registers::user(ENTRY, STACK));
            s.make_runnable(tcb);
        }
        // Thread 1 is a VMM from the start: its Vcpu bound with the guest-physical space,
        // and a notification of its own bound to it (slot 17: its component can signal it),
        // so that `VmEnter` meets pending signals often.
        let (Cap::Vcpu { base: vcpu }, Cap::Tcb { base: vmm }) =
            (s.mem.cap_at(root_slot(at + 10)), s.mem.cap_at(root_slot(at + 7)))
        else {
            unreachable!()
        };
        s.vcpu_bind(vcpu, TcbRef(vmm));
        s.vcpu_set_ept(vcpu, s.mem.cap_at(root_slot(at + 11))).expect("a guest-physical space");
        make(&mut s, ObjectType::Notification, 0, at + 13);
        let Cap::Notification { base: ntfn, .. } = s.mem.cap_at(root_slot(at + 13)) else { unreachable!() };
        s.bind_notification(TcbRef(vmm), ntfn).expect("nothing bound yet");
        s.copy(root_slot(at + 13), own(17)).expect("copy");
    }
    let mut w = World {
        s,
        hw: FuzzHardware::new(format == Format::Npt),
        boss,
        threads: Vec::new(),
        successes: BTreeMap::new(),
        vm_enter_broken: None,
    };
    w.threads = live_threads(&w.s);
    w
}

/// Every live thread (a TCB some capability names), by address.
fn live_threads(s: &ObjectSpace<TestMemory>) -> Vec<TcbRef> {
    let mut set = BTreeSet::new();
    walk_tree(s, |_, cap| {
        if let Cap::Tcb { base } = cap {
            set.insert(base.0);
        }
    });
    set.into_iter().map(|b| TcbRef(PhysAddr(b))).collect()
}

/// Calls `f` for every capability in the derivation tree (bounded, whatever the links).
fn walk_tree(s: &ObjectSpace<TestMemory>, mut f: impl FnMut(Slot, Cap)) {
    let m = &s.mem;
    let mut stack = std::vec![SENTINEL];
    let mut budget = 1_000_000u32;
    while let Some(p) = stack.pop() {
        let mut child = m.first_child(p);
        while let Some(c) = child {
            budget -= 1;
            if budget == 0 {
                return;
            }
            f(c, m.cap_at(c));
            stack.push(c);
            child = m.next_sibling(c);
        }
    }
}

// ------------------------------------------------------------------------- generation

/// Invocation labels, each with its argument shape.
const LABELS: [u64; 55] = [
    label::UNTYPED_RETYPE,
    label::UNTYPED_RETYPE,
    label::UNTYPED_RETYPE,
    label::CNODE_COPY,
    label::CNODE_MINT,
    label::CNODE_MOVE,
    label::CNODE_MUTATE,
    label::CNODE_DELETE,
    label::CNODE_DELETE,
    label::CNODE_REVOKE,
    label::CNODE_REVOKE,
    label::TCB_CONFIGURE,
    label::TCB_SET_PRIORITY,
    label::TCB_SET_MCP,
    label::TCB_READ_REGISTERS,
    label::TCB_WRITE_REGISTERS,
    label::TCB_RESUME,
    label::TCB_SUSPEND,
    label::TCB_BIND_NOTIFICATION,
    label::TCB_UNBIND_NOTIFICATION,
    label::TCB_SET_NAME,
    label::TCB_SET_ONE_REQUEST,
    label::TCB_READ_STATE,
    label::TCB_ALLOW_END_RUN,
    label::TCB_ALLOW_CONSOLE,
    label::TCB_ALLOW_READ_AUDIT,
    label::FRAME_MAP,
    label::FRAME_MAP,
    label::FRAME_UNMAP,
    label::FRAME_REMAP,
    label::FRAME_GET_ADDRESS,
    label::FRAME_MAP_EPT,
    label::PAGE_TABLE_MAP,
    label::PAGE_TABLE_MAP,
    label::PAGE_TABLE_UNMAP,
    label::IRQ_CONTROL_GET,
    label::IRQ_HANDLER_ACK,
    label::IRQ_HANDLER_SET_NOTIFICATION,
    label::IRQ_HANDLER_CLEAR,
    label::IO_PORT_CONTROL_ISSUE,
    label::IO_PORT_IN,
    label::VCPU_SET_TCB,
    label::VCPU_SET_EPT,
    label::VCPU_WRITE_VMCS,
    label::VCPU_SET_IO_EXIT,
    label::EPT_TABLE_MAP,
    label::EPT_TABLE_UNMAP,
    label::VCPU_SET_MSR_EXIT,
    label::VCPU_READ_STATE,
    label::VCPU_WRITE_STATE,
    label::VCPU_WRITE_STATE,
    label::IO_PORT_OUT,
    label::ASID_CONTROL_MAKE_POOL,
    label::ASID_POOL_ASSIGN,
    label::ASID_POOL_ASSIGN,
];

/// Slots the set-up filled are 0-16; most choices fall in 0-27, so that what one step
/// puts in a slot is often what a later step uses.
fn slot_index(r: &mut Rng) -> u64 {
    match r.below(20) {
        0..=16 => r.below(28),
        17..=18 => r.below(1 << COMPONENT_RADIX),
        _ => r.next_u64(),
    }
}

fn free_index(r: &mut Rng) -> u64 {
    17 + if r.chance(90) { r.below(11) } else { r.below((1 << COMPONENT_RADIX) - 17) }
}

fn address(r: &mut Rng) -> u64 {
    match r.below(10) {
        0 => 0x7fff_ffff_e000 + 0x1000 * r.below(2),
        1 => (r.below(8) << 21) + IPC_BUFFERS,
        2 => r.next_u64() & !0xfff,
        3 => r.next_u64(),
        _ => IPC_BUFFERS + (r.below(64) << 12) + if r.chance(10) { r.below(1 << 30) << 12 } else { 0 },
    }
}

fn word(r: &mut Rng) -> u64 {
    match r.below(10) {
        0..=3 => r.below(64),
        4 => r.below(24),
        5 => address(r),
        6 => 64,
        7 => r.below(16),
        8 => r.below(0x100),
        _ => r.next_u64(),
    }
}

/// Argument words shaped for the invocation `l` (most of the time), else random.
fn arguments(r: &mut Rng, l: u64) -> [u64; 8] {
    let mut w = [0u64; 8];
    for x in &mut w {
        *x = word(r);
    }
    if r.chance(25) {
        return w;
    }
    let shaped: &[u64] = &match l {
        label::UNTYPED_RETYPE => {
            let ty = r.below(16);
            let bits = match ty {
                0 => 4 + r.below(15),
                4 => 1 + r.below(6),
                _ => 0,
            };
            [ty, bits, 0, 0, 0, free_index(r), 1 + r.below(3), 0]
        }
        label::CNODE_COPY | label::CNODE_MINT | label::CNODE_MOVE | label::CNODE_MUTATE => [
            free_index(r),
            64,
            0,
            slot_index(r),
            64,
            r.below(16),
            if r.chance(50) { 0 } else { r.below(100) },
            0,
        ],
        label::CNODE_DELETE | label::CNODE_REVOKE => [slot_index(r), 64, 0, 0, 0, 0, 0, 0],
        label::TCB_CONFIGURE => {
            let buffer = IPC_BUFFERS + (r.below(8) << 12) + if r.chance(20) { 0x400 } else { 0 };
            [
                if r.chance(70) { 0 } else { slot_index(r) },
                if r.chance(70) { 2 } else { slot_index(r) },
                buffer,
                slot_index(r),
                if r.chance(50) { 5 } else { slot_index(r) },
                0,
                0,
                0,
            ]
        }
        label::TCB_WRITE_REGISTERS => [r.below(2), ENTRY + r.below(16), STACK, r.next_u64(), 0, 0, 0, 0],
        label::TCB_SET_PRIORITY | label::TCB_SET_MCP => [r.below(130), 0, 0, 0, 0, 0, 0, 0],
        label::FRAME_MAP | label::FRAME_MAP_EPT => [2, address(r), r.below(16), r.below(2), 0, 0, 0, 0],
        label::PAGE_TABLE_MAP | label::EPT_TABLE_MAP => [2, address(r), 0, 0, 0, 0, 0, 0],
        label::IRQ_CONTROL_GET => [r.below(17), 0, free_index(r), 64, 0, 0, 0, 0],
        // Ports from a small range, so that issued ranges and opened ranges meet.
        label::IO_PORT_CONTROL_ISSUE => {
            let first = 0x60 + r.below(8);
            [first, first + r.below(8), 0, free_index(r), 64, 0, 0, 0]
        }
        label::VCPU_SET_IO_EXIT => {
            let first = 0x60 + r.below(12);
            [slot_index(r), first, first + r.below(3), u64::from(r.chance(30)), 0, 0, 0, 0]
        }
        label::VCPU_WRITE_VMCS => {
            [[0x4002, 0x401e, 0x681e, 0x6c16][r.below(4) as usize], r.next_u64(), 0, 0, 0, 0, 0, 0]
        }
        label::VCPU_READ_STATE => {
            [guest_field(r), guest_field(r), guest_field(r), guest_field(r), 0, 0, 0, 0]
        }
        label::VCPU_WRITE_STATE => {
            let (f, g) = (guest_field(r), guest_field(r));
            [f, guest_value(r, f), g, guest_value(r, g), 0, 0, 0, 0]
        }
        _ => return w,
    };
    w.copy_from_slice(shaped);
    w
}

/// A neutral guest-state field, now and then one past the last or a wild number.
fn guest_field(r: &mut Rng) -> u64 {
    match r.below(20) {
        0 => r.next_u64(),
        1 => cleave_abi::vcpu::state::COUNT + r.below(4),
        _ => r.below(cleave_abi::vcpu::state::COUNT),
    }
}

/// A value for `field`: often one the kernel must refuse (EFER.SVME, CR4.PKE or VMXE,
/// DR7's enables, events of every type), else random bits or a small flip.
fn guest_value(r: &mut Rng, field: u64) -> u64 {
    use cleave_abi::vcpu::state;
    match (r.below(4), field) {
        (0, state::EFER) => 0x500 | [1 << 12, 1 << 13, 0][r.below(3) as usize],
        (0, state::CR4) => 0x20 | [1 << 22, 1 << 13, 0][r.below(3) as usize],
        (0, state::DR7) => 0x400 | r.below(0x100),
        (0, state::EVENT) => r.below(256) | r.below(8) << 8 | r.below(2) << 11 | 1 << 31 | r.below(4) << 32,
        (1, _) => r.below(2),
        (2, _) => 1 << r.below(64),
        _ => r.next_u64(),
    }
}

/// A random step.
pub fn step(r: &mut Rng) -> Step {
    match r.below(100) {
        0..=2 => Step::Tick,
        3 => Step::Irq(r.below(16) as u8),
        4 => Step::Restart { thread: r.below(64) as u16 },
        5..=6 => Step::Fault {
            thread: r.below(64) as u16,
            label: r.below(6),
            words: [r.next_u64(), r.below(8), ENTRY, STACK],
        },
        _ => {
            let number = match r.below(23) {
                0..=7 => Syscall::Call as u64,
                8 => Syscall::ReplyRecv as u64,
                9 => Syscall::Send as u64,
                10 => Syscall::NbSend as u64,
                11 => Syscall::Recv as u64,
                12 => Syscall::NbRecv as u64,
                13 => Syscall::Reply as u64,
                14 => Syscall::Yield as u64,
                15 => Syscall::VmEnter as u64,
                16 | 21 => Syscall::DebugPutChar as u64,
                17 => Syscall::DebugExit as u64,
                18 => r.below(16),
                19 => Syscall::AuditEvent as u64,
                20 => Syscall::AuditRead as u64,
                _ => Syscall::Call as u64,
            };
            let call_label =
                if r.chance(85) { LABELS[r.below(LABELS.len() as u64) as usize] } else { r.below(100) };
            let words = arguments(r, call_label);
            let length = if r.chance(80) { 8 } else { r.below(12) };
            let extra = u64::from(r.chance(20));
            Step::Syscall {
                thread: r.below(64) as u16,
                number,
                cptr: if number == Syscall::DebugPutChar as u64 && r.chance(80) {
                    // Mostly printable, so that lines become audit events.
                    0x20 + r.below(95)
                } else if r.chance(60) {
                    slot_index(r)
                } else {
                    [3, 4, 5, 6, 7, 11][r.below(6) as usize]
                },
                info: MessageInfo::new(call_label, 0, extra, length).0,
                words,
                cap: slot_index(r),
                receive: [0, free_index(r), 64],
                fast: r.chance(50),
                pending: r.chance(30),
                exit: [r.below(64), r.next_u64(), r.next_u64() & 0xffff_f000, r.below(16)],
                aim: if r.chance(80) { r.next_u64() as u16 } else { 0 },
            }
        }
    }
}

// ---------------------------------------------------------------------- running steps

impl World {
    /// The runnable thread a step's index picks, if any is runnable.
    fn runnable(&self, index: u16) -> Option<TcbRef> {
        let running: Vec<TcbRef> =
            self.threads.iter().copied().filter(|t| t.state(&self.s.mem) == ThreadState::Running).collect();
        (!running.is_empty()).then(|| running[usize::from(index) % running.len()])
    }

    /// Where byte `offset` of `t`'s IPC buffer is, if it has one and it fits.
    fn buffer(&self, t: TcbRef, offset: usize) -> Option<PhysAddr> {
        match self.s.mem.cap_at(t.slot(tcb_slot::IPC_BUFFER)) {
            Cap::Frame { base, .. } => {
                let at = (t.ipc_buffer_vaddr(&self.s.mem) & 0xfff) + offset as u64;
                (at + 8 <= 4096).then_some(PhysAddr(base.0 + at))
            }
            _ => None,
        }
    }

    /// The kernel's work after an entry: flush flags, the active VMCS, then choosing the
    /// next thread (one without an address space is stopped, as the kernel does).
    fn after_entry(&mut self) {
        self.s.take_tlb_flush();
        if core::mem::take(&mut self.s.clear_active_vmcs) {
            self.hw.active = 0;
        }
        self.s.active_vmcs = self.hw.active;
        for _ in 0..1000 {
            match self.s.choose() {
                Some(t)
                    if matches!(self.s.mem.cap_at(t.slot(tcb_slot::VSPACE)), Cap::VSpace { .. })
                        && t.regs(&self.s.mem).from_user() =>
                {
                    break;
                }
                Some(t) => self.s.suspend(t),
                None => break,
            }
        }
    }

    /// A fault of the current thread `t`, as the kernel's exception path delivers it.
    fn fault(&mut self, t: TcbRef, label: u64, words: [u64; 4]) {
        if !self.s.raise_fault(t, label, words) {
            self.s.suspend(t);
        }
    }

    /// The arguments of a system call with the aimed ones replaced by slots of the
    /// caller's (one-level) CNode that hold what they want.
    fn aimed(
        &self,
        t: TcbRef,
        number: u64,
        cptr: u64,
        l: u64,
        mut words: [u64; 8],
        aim: u16,
    ) -> (u64, [u64; 8]) {
        let Cap::CNode { base, radix, guard_bits, .. } = self.s.mem.cap_at(t.slot(tcb_slot::CSPACE)) else {
            return (cptr, words);
        };
        if u32::from(radix) + u32::from(guard_bits) != 64 || radix > 12 {
            return (cptr, words);
        }
        let caps: Vec<(u64, Cap)> = (0..1u64 << radix)
            .map(|i| (i, self.s.mem.cap_at(PhysAddr(base.0 + (i << SLOT_SIZE_BITS)))))
            .collect();
        let pick = |want: Want, value: u64| -> Option<u64> {
            let fits: Vec<u64> = caps.iter().filter(|(_, c)| want.fits(*c)).map(|(i, _)| *i).collect();
            (!fits.is_empty()).then(|| fits[(value % fits.len() as u64) as usize])
        };
        // System calls other than Call, and a third of the calls, aim at an endpoint or a
        // notification; the other calls at what the label invokes.
        let (target, arguments) = wants(l);
        let target =
            if number == Syscall::Call as u64 && !cptr.is_multiple_of(3) { target } else { Want::Ipc };
        let mut cptr = cptr;
        if aim & 1 != 0
            && let Some(i) = pick(target, cptr >> 2)
        {
            cptr = i;
        }
        for (k, want) in arguments.iter().enumerate() {
            if aim & (2 << k) != 0
                && let Some(i) = pick(*want, words[k])
            {
                words[k] = i;
            }
        }
        (cptr, words)
    }

    /// A supervisor restarts a thread (by index; threads that cannot run first): suspend,
    /// then fresh registers and resume, through a capability to it and the boss's
    /// authority, as `TCB_SUSPEND` and `TCB_WRITE_REGISTERS` invocations.
    fn restart(&mut self, thread: u16) {
        let stopped: Vec<TcbRef> =
            self.threads.iter().copied().filter(|t| t.state(&self.s.mem) != ThreadState::Running).collect();
        let pool = if stopped.is_empty() { &self.threads } else { &stopped };
        if pool.is_empty() {
            return;
        }
        let t = pool[usize::from(thread) % pool.len()];
        let mut found = None;
        walk_tree(&self.s, |slot, cap| {
            if cap == (Cap::Tcb { base: t.0 }) && found.is_none() {
                found = Some(slot);
            }
        });
        let Some(at) = found else { return };
        let root = self.s.mem.cap_at(root_slot(0));
        let target = self.s.mem.cap_at(at);
        let boss = self.boss;
        let hw = &mut self.hw;
        let suspend = Invocation { label: label::TCB_SUSPEND, words: &[] };
        let _ = invoke(&mut self.s, hw, boss, root, at, target, suspend);
        let words = [1, ENTRY, STACK];
        let _ = invoke(
            &mut self.s,
            hw,
            boss,
            root,
            at,
            target,
            Invocation { label: label::TCB_WRITE_REGISTERS, words: &words },
        );
    }

    /// Performs one step.
    pub fn apply(&mut self, step: &Step) {
        match *step {
            Step::Tick => self.s.timer_tick(),
            Step::Irq(line) => {
                // As the kernel's interrupt entry does: mask the line, then deliver.
                self.hw.set_irq_masked(line, true);
                self.s.irq_fired(line);
            }
            Step::Restart { thread } => self.restart(thread),
            Step::Fault { thread, label, words } => {
                let Some(t) = self.runnable(thread) else { return self.restart(thread) };
                self.s.run_now(t);
                let label = [
                    cleave_abi::syscall::fault::VM_FAULT,
                    cleave_abi::syscall::fault::USER_EXCEPTION,
                    cleave_abi::syscall::fault::UNKNOWN_SYSCALL,
                ][label as usize % 3];
                self.fault(t, label, words);
            }

            Step::Syscall { thread, number, cptr, info, words, cap, receive, fast, pending, exit, aim } => {
                let Some(t) = self.runnable(thread) else { return self.restart(thread) };
                let (cptr, words) = self.aimed(t, number, cptr, MessageInfo(info).label(), words, aim);
                let mut regs = t.regs(&self.s.mem);
                regs.rax = number;
                regs.rdi = cptr;
                regs.rsi = info;
                [regs.rdx, regs.r8, regs.r9, regs.r10] = [words[0], words[1], words[2], words[3]];
                regs.vector = 0x100;
                t.set_regs(&mut self.s.mem, &regs);
                for (i, &w) in words.iter().enumerate().skip(4) {
                    self.s.write_message_word(t, i, w);
                }
                if let Some(at) = self.buffer(t, cap_offset(0)) {
                    self.s.mem.write(at, &cap);
                }
                for (i, &w) in receive.iter().enumerate() {
                    if let Some(at) = self.buffer(t, RECEIVE_OFFSET + 8 * i) {
                        self.s.mem.write(at, &w);
                    }
                }
                self.s.run_now(t);
                self.hw.pending = pending;
                if fast && self.s.fastpath().is_some() {
                    self.after_entry();
                    return;
                }
                let signalled = number == Syscall::VmEnter as u64 && self.s.bound_signal_pending(t);
                let outcome = self.s.syscall(&mut self.hw);
                if t.regs(&self.s.mem).rax == 0 && Syscall::from_raw(number).is_some() {
                    *self.successes.entry((number, MessageInfo(info).label())).or_default() += 1;
                }
                match outcome {
                    Outcome::UnknownSyscall(n) => {
                        let r = t.regs(&self.s.mem);
                        self.fault(
                            t,
                            cleave_abi::syscall::fault::UNKNOWN_SYSCALL,
                            [n, r.rip, r.rsp, r.rflags],
                        );
                    }
                    Outcome::VmEnter { .. } if signalled => {
                        self.vm_enter_broken.get_or_insert(format!(
                            "thread {:#x} entered its guest with a signal pending",
                            t.0.0
                        ));
                    }
                    Outcome::Done if signalled && t.regs(&self.s.mem).rax == 0 => {
                        let regs = t.regs(&self.s.mem);
                        if regs.rdx != cleave_abi::vcpu::exit::reason::NOTIFIED
                            || self.s.bound_signal_pending(t)
                        {
                            self.vm_enter_broken.get_or_insert(format!(
                                "thread {:#x}: VmEnter with a signal pending returned reason {:#x}, signal {}",
                                t.0.0,
                                regs.rdx,
                                if self.s.bound_signal_pending(t) { "still pending" } else { "taken" }
                            ));
                        }
                        *self.successes.entry((number, VM_ENTER_NOTIFIED)).or_default() += 1;
                    }
                    Outcome::VmEnter { vcpu, .. } => {
                        let _ = self.s.fpu_switch(vcpu);
                        self.s.take_ept_flush();
                        self.hw.active = vcpu.0;
                        self.s.vm_exited(t, exit);
                    }
                    Outcome::Done
                    | Outcome::Preempted
                    | Outcome::DebugLine(..)
                    | Outcome::DebugExit(..)
                    | Outcome::Ended(..) => {}
                }
            }
        }
        self.after_entry();
    }
}

/// What an aimed argument wants its slot to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Keep,
    Any,
    Empty,
    Ipc,
    Untyped,
    CNode,
    Tcb,
    Frame,
    PageTable,
    VSpace,
    Endpoint,
    Notification,
    IrqControl,
    IrqHandler,
    IoPortControl,
    IoPort,
    Vcpu,
    EptRoot,
    EptTable,
    Root,
    AsidControl,
    AsidPool,
}

impl Want {
    fn fits(self, cap: Cap) -> bool {
        match self {
            Self::Keep => false,
            Self::Any => !cap.is_null(),
            Self::Empty => cap.is_null(),
            Self::Ipc => matches!(cap, Cap::Endpoint { .. } | Cap::Notification { .. }),
            Self::Untyped => matches!(cap, Cap::Untyped { .. }),
            Self::CNode => matches!(cap, Cap::CNode { .. }),
            Self::Tcb => matches!(cap, Cap::Tcb { .. }),
            Self::Frame => matches!(cap, Cap::Frame { .. }),
            Self::PageTable => matches!(cap, Cap::PageTable { .. }),
            Self::VSpace => matches!(cap, Cap::VSpace { .. }),
            Self::Endpoint => matches!(cap, Cap::Endpoint { .. }),
            Self::Notification => matches!(cap, Cap::Notification { .. }),
            Self::IrqControl => matches!(cap, Cap::IrqControl),
            Self::IrqHandler => matches!(cap, Cap::IrqHandler { .. }),
            Self::IoPortControl => matches!(cap, Cap::IoPortControl),
            Self::IoPort => matches!(cap, Cap::IoPort { .. }),
            Self::Vcpu => matches!(cap, Cap::Vcpu { .. }),
            Self::EptRoot => matches!(cap, Cap::EptRoot { .. }),
            Self::EptTable => matches!(cap, Cap::EptTable { .. }),
            Self::Root => matches!(cap, Cap::VSpace { .. } | Cap::EptRoot { .. }),
            Self::AsidControl => matches!(cap, Cap::AsidControl),
            Self::AsidPool => matches!(cap, Cap::AsidPool { .. }),
        }
    }
}

/// What an invocation's target and argument words want (for aiming).
fn wants(l: u64) -> (Want, &'static [Want]) {
    use Want::*;
    match l {
        label::UNTYPED_RETYPE => (Untyped, &[Keep, Keep, Keep, Keep, Keep, Empty]),
        label::CNODE_COPY | label::CNODE_MINT | label::CNODE_MOVE | label::CNODE_MUTATE => {
            (CNode, &[Empty, Keep, Keep, Any])
        }
        label::CNODE_DELETE | label::CNODE_REVOKE => (CNode, &[Any]),
        label::TCB_CONFIGURE => (Tcb, &[CNode, VSpace, Keep, Frame, Endpoint]),
        label::TCB_BIND_NOTIFICATION => (Tcb, &[Notification]),
        label::TCB_SET_PRIORITY
        | label::TCB_SET_MCP
        | label::TCB_READ_REGISTERS
        | label::TCB_WRITE_REGISTERS
        | label::TCB_RESUME
        | label::TCB_SUSPEND
        | label::TCB_UNBIND_NOTIFICATION
        | label::TCB_SET_NAME
        | label::TCB_SET_ONE_REQUEST
        | label::TCB_READ_STATE
        | label::TCB_ALLOW_END_RUN
        | label::TCB_ALLOW_CONSOLE
        | label::TCB_ALLOW_READ_AUDIT => (Tcb, &[]),
        label::FRAME_MAP => (Frame, &[VSpace]),
        label::FRAME_MAP_EPT => (Frame, &[EptRoot]),
        label::FRAME_UNMAP | label::FRAME_REMAP | label::FRAME_GET_ADDRESS => (Frame, &[]),
        label::PAGE_TABLE_MAP => (PageTable, &[VSpace]),
        label::PAGE_TABLE_UNMAP => (PageTable, &[]),
        label::IRQ_CONTROL_GET => (IrqControl, &[Keep, Keep, Empty]),
        label::IRQ_HANDLER_SET_NOTIFICATION => (IrqHandler, &[Notification]),
        label::IRQ_HANDLER_ACK | label::IRQ_HANDLER_CLEAR => (IrqHandler, &[]),
        label::IO_PORT_CONTROL_ISSUE => (IoPortControl, &[Keep, Keep, Keep, Empty]),
        label::IO_PORT_IN | label::IO_PORT_OUT => (IoPort, &[]),
        label::VCPU_SET_TCB => (Vcpu, &[Tcb]),
        label::VCPU_SET_EPT => (Vcpu, &[EptRoot]),
        label::VCPU_SET_IO_EXIT => (Vcpu, &[IoPort]),
        label::VCPU_WRITE_VMCS
        | label::VCPU_READ_VMCS
        | label::VCPU_SET_MSR_EXIT
        | label::VCPU_READ_STATE
        | label::VCPU_WRITE_STATE => (Vcpu, &[]),
        label::EPT_TABLE_MAP => (EptTable, &[EptRoot]),
        label::EPT_TABLE_UNMAP => (EptTable, &[]),
        label::ASID_CONTROL_MAKE_POOL => (AsidControl, &[Untyped, Keep, Empty]),
        label::ASID_POOL_ASSIGN => (AsidPool, &[Root]),
        _ => (Any, &[]),
    }
}

// --------------------------------------------------------------------------- checking

/// What a distinct object occupies: its base and size in bytes.
fn object_range(cap: Cap) -> Option<(u64, u64)> {
    let size = |bits: u32| 1u64 << bits;
    Some(match cap {
        Cap::Untyped { base, size_bits, .. } => (base.0, size(u32::from(size_bits))),
        Cap::CNode { base, radix, .. } => (base.0, size(u32::from(radix) + SLOT_SIZE_BITS)),
        Cap::Tcb { base } => (base.0, size(TCB_SIZE_BITS)),
        Cap::Endpoint { base, .. } => (base.0, size(ENDPOINT_SIZE_BITS)),
        Cap::Notification { base, .. } => (base.0, size(NOTIFICATION_SIZE_BITS)),
        Cap::Frame { base, large, .. } => (base.0, if large { 1 << 21 } else { 4096 }),
        Cap::PageTable { base, .. }
        | Cap::VSpace { base, .. }
        | Cap::EptRoot { base, .. }
        | Cap::EptTable { base, .. } => (base.0, 4096),
        Cap::Vcpu { base } => (base.0, size(cleave_abi::object::VCPU_SIZE_BITS)),
        Cap::AsidPool { base, .. } => (base.0, 4096),
        _ => return None,
    })
}

/// The capability slots an object holds, if it is a container.
fn container_slots(cap: Cap) -> Option<(u64, u64)> {
    match cap {
        Cap::CNode { base, radix, .. } => Some((base.0, 1 << radix)),
        Cap::Tcb { base } => Some((base.0, TCB_SLOT_COUNT)),
        Cap::Vcpu { base } => Some((base.0 + IO_GRANT_OFFSET, IO_GRANTS)),
        _ => None,
    }
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// Checks every invariant of the object layer; the first broken one is the error.
///
/// - Derivation tree: links symmetric, no cycles or shared nodes, no empty slot in it;
///   every capability in a live CNode, TCB or Vcpu grant area is in it.
/// - Capabilities to one object are contiguous (another one is always a parent, a
///   neighbouring sibling or the first child), which the constant-time last-reference
///   test relies on; rights never grow along a derivation and a badge never changes.
/// - Memory: objects lie inside their untyped ancestor, below its watermark (the free
///   part holds no live child); no two live objects overlap; every TCB, endpoint and
///   notification a thread or line refers to is live; an untyped restricted to frames
///   (`cleave_abi::UNTYPED_FRAMES_ONLY`) has made nothing but frames.
/// - Paging: every present entry of every table reachable from a live root points to a
///   table or frame a live capability maps exactly there, with no more rights than the
///   capability has; a table not reachable from a live root holds no entries; every ASID
///   in use names a live root with that ASID.
/// - Threads: each in at most one queue, the right one for its state; ready queues
///   linked both ways with the right priorities; endpoint states match their queues; reply
///   links symmetric; bound notifications symmetric; IPC buffers are read-write RAM.
/// - Vcpus: bindings symmetric; every port a Vcpu lets through is covered by one of its
///   grants, each a child of an IoPort capability over the same range; the active VMCS
///   and the floating-point owner are live Vcpus; what the neutral guest-state fields left
///   in each live Vcpu's VMCS or VMCB is what a VMM may leave ([`check_guest_state`]).
/// - Interrupt lines: issued exactly when an IrqHandler capability exists; their
///   notifications are live.
pub fn check(w: &World) -> Result<(), String> {
    let s = &w.s;
    let m = &s.mem;
    // 0. What single steps broke (recorded as they ran).
    if let Some(broken) = &w.vm_enter_broken {
        return Err(broken.clone());
    }
    // The audit log holds whole lines of three fields, within its ring, times never
    // decreasing (whatever the clock and the writers did).
    s.audit.check().map_err(|e| std::format!("audit log: {e}"))?;
    // Every event is stamped with a name the world's threads were given (w0-w4, and the
    // names thread 0 gives: `TCB_SET_NAME`'s arguments are slot numbers, so their bytes
    // show as `?` or short) or `?` for an unnamed thread: never text a thread wrote.
    let mut kept = std::vec![0u8; (s.audit.end() - s.audit.start()) as usize];
    let (_, n) = s.audit.read(0, &mut kept);
    for line in kept[..n].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let writer = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let named = [&b"w0"[..], b"w1", b"w2", b"w3", b"w4"].contains(&writer);
        if !named && !writer.iter().all(|&b| b == b'?' || b.is_ascii_alphanumeric()) {
            return Err(std::format!("audit log: an event stamped `{}`", String::from_utf8_lossy(writer)));
        }
    }
    // 1. The tree.
    let mut nodes: BTreeMap<u64, Cap> = BTreeMap::new();
    let mut stack = std::vec![SENTINEL];
    while let Some(p) = stack.pop() {
        let mut prev = 0;
        let mut child = m.first_child(p);
        while let Some(c) = child {
            let cte = m.cte(c);
            ensure!(
                cte.parent == p.0,
                "slot {:#x}: parent link {:#x}, but it is a child of {:#x}",
                c.0,
                cte.parent,
                p.0
            );
            ensure!(cte.prev == prev, "slot {:#x}: prev link {:#x}, expected {prev:#x}", c.0, cte.prev);
            let cap = Cap::decode(cte.cap);
            ensure!(!cap.is_null(), "an empty slot {:#x} is in the derivation tree", c.0);
            ensure!(nodes.insert(c.0, cap).is_none(), "slot {:#x} is in the tree twice (a cycle)", c.0);
            stack.push(c);
            prev = c.0;
            child = m.next_sibling(c);
        }
    }
    // 2. Objects, contiguity, rights.
    let mut objects: BTreeMap<ObjectRef, Vec<u64>> = BTreeMap::new();
    for (&slot, &cap) in &nodes {
        objects.entry(cap.object()).or_default().push(slot);
    }
    for (&slot, &cap) in &nodes {
        let object = cap.object();
        let cte = m.cte(PhysAddr(slot));
        if object != ObjectRef::None && objects[&object].len() > 1 {
            let near = [cte.parent, cte.prev, cte.next, cte.first_child]
                .into_iter()
                .filter(|&l| l != 0)
                .any(|l| m.cap_at(PhysAddr(l)).object() == object);
            ensure!(
                near,
                "slot {slot:#x} ({cap:?}): another capability names its object but is not next to it"
            );
        }
        let parent = m.cap_at(PhysAddr(cte.parent));
        if cte.parent != SENTINEL.0 && parent.object() == object {
            ensure!(
                parent.rights().contains(cap.rights()),
                "rights grew from {parent:?} to {cap:?} at {slot:#x}"
            );
            if let (
                Cap::Endpoint { badge: pb, .. } | Cap::Notification { badge: pb, .. },
                Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. },
            ) = (parent, cap)
            {
                ensure!(pb == 0 || pb == badge, "badge changed from {pb} to {badge} at {slot:#x}");
            }
        }
        if let Cap::VcpuIoGrant { first, last, open_first, open_last, .. } = cap {
            ensure!(
                matches!(parent, Cap::IoPort { first: f, last: l } if f == first && l == last)
                    && first <= open_first
                    && open_last <= last,
                "Vcpu I/O grant {cap:?} at {slot:#x} is not under an IoPort capability covering it"
            );
        }
    }
    // 3. Memory.
    let mut ranges: Vec<(u64, u64, Cap)> = Vec::new();
    for (object, slots) in &objects {
        let cap = nodes[&slots[0]];
        let Some((base, size)) = object_range(cap) else { continue };
        let (ObjectRef::Memory(..) | ObjectRef::Untyped(..)) = object else { continue };
        ensure!(base >= MEMORY_BASE && base + size <= MEMORY_END, "{cap:?} lies outside memory");
        if !matches!(cap, Cap::Untyped { .. }) {
            ranges.push((base, size, cap));
        }
        for &slot in slots {
            let mut up = m.parent_of(PhysAddr(slot));
            while let Some(a) = up {
                let acap = m.cap_at(a);
                if acap.object() != *object || a == SENTINEL {
                    break;
                }
                up = m.parent_of(a);
            }
            let Some(a) = up else { continue };
            if a == SENTINEL {
                continue; // an original (the loader's)
            }
            match m.cap_at(a) {
                Cap::Untyped { base: ub, watermark, frames_only, .. } => {
                    ensure!(
                        ub.0 <= base && base + size <= ub.0 + watermark,
                        "{cap:?} at {slot:#x} lies outside the used part of its untyped (base {:#x}, watermark {watermark:#x})",
                        ub.0
                    );
                    // An untyped restricted to frames has made nothing else (not even a
                    // smaller untyped, which could escape the restriction).
                    ensure!(
                        !frames_only || matches!(cap, Cap::Frame { .. }),
                        "{cap:?} at {slot:#x} was made from a frames-only untyped"
                    );
                }
                other => {
                    return Err(format!(
                        "{cap:?} at {slot:#x} derives from {other:?}, not from untyped memory"
                    ));
                }
            }
        }
    }
    ranges.sort_by_key(|r| r.0);
    for pair in ranges.windows(2) {
        ensure!(
            pair[0].0 + pair[0].1 <= pair[1].0,
            "live objects overlap: {:?} and {:?}",
            pair[0].2,
            pair[1].2
        );
    }
    // Every capability in a live container is in the tree.
    for slots in objects.values() {
        if let Some((base, n)) = container_slots(nodes[&slots[0]]) {
            for i in 0..n {
                let slot = base + (i << SLOT_SIZE_BITS);
                // The tag word alone: zero is an empty slot.
                if m.read::<u64>(PhysAddr(slot)) != 0 {
                    ensure!(
                        nodes.contains_key(&slot),
                        "slot {slot:#x} of a live container holds a capability outside the tree"
                    );
                }
            }
        }
    }
    let mut by_base: BTreeMap<u64, Vec<Cap>> = BTreeMap::new();
    for (o, slots) in &objects {
        if let ObjectRef::Memory(_, b) = o {
            by_base.entry(b.0).or_default().push(nodes[&slots[0]]);
        }
    }
    let live = |kind: fn(Cap) -> bool, base: u64| {
        by_base.get(&base).is_some_and(|caps| caps.iter().any(|&c| kind(c)))
    };
    let is_tcb = |c: Cap| matches!(c, Cap::Tcb { .. });
    let is_ep = |c: Cap| matches!(c, Cap::Endpoint { .. });
    let is_ntfn = |c: Cap| matches!(c, Cap::Notification { .. });
    let is_vcpu = |c: Cap| matches!(c, Cap::Vcpu { .. });
    // 4. Paging.
    check_paging(s, &nodes)?;
    // 5. Threads.
    let threads: Vec<TcbRef> = objects
        .values()
        .filter_map(|slots| match nodes[&slots[0]] {
            Cap::Tcb { base } => Some(TcbRef(base)),
            _ => None,
        })
        .collect();
    let mut queued_in: BTreeMap<u64, u32> = BTreeMap::new();
    for (p, &[head, tail]) in s.ready.iter().enumerate() {
        let bit = s.ready_bitmap[p / 64] & (1 << (p % 64)) != 0;
        ensure!(bit == (head != 0), "ready bitmap bit {p} is {bit} with head {head:#x}");
        let mut prev = 0;
        let mut t = head;
        let mut n = 0;
        while t != 0 {
            n += 1;
            ensure!(n < 10_000, "ready queue {p} loops");
            ensure!(live(is_tcb, t), "ready queue {p} holds a dead thread {t:#x}");
            let tcb = TcbRef(PhysAddr(t));
            ensure!(tcb.sched_prev(m) == prev, "ready queue {p}: broken prev link at {t:#x}");
            ensure!(
                tcb.priority(m) == p as u64,
                "thread {t:#x} in ready queue {p} has priority {}",
                tcb.priority(m)
            );
            ensure!(tcb.state(m) == ThreadState::Running, "thread {t:#x} is ready but {:?}", tcb.state(m));
            ensure!(tcb.queued(m) == 1, "thread {t:#x} is in a ready queue but not marked queued");
            ensure!(s.current != t, "the current thread {t:#x} is in a ready queue");
            *queued_in.entry(t).or_default() += 1;
            prev = t;
            t = tcb.sched_next(m);
        }
        ensure!(tail == prev, "ready queue {p}: tail {tail:#x}, last {prev:#x}");
    }
    for (w_, word) in s.ready_bitmap.iter().enumerate() {
        ensure!((s.ready_summary >> w_) & 1 == u64::from(*word != 0), "ready summary bit {w_} wrong");
    }
    if s.current != 0 {
        ensure!(live(is_tcb, s.current), "the current thread {:#x} is dead", s.current);
    }
    // Endpoint and notification queues.
    for (object, slots) in &objects {
        let cap = nodes[&slots[0]];
        let (base, head_at, is_endpoint) = match (object, cap) {
            (_, Cap::Endpoint { base, .. }) => (base, base.0 + 8, true),
            (_, Cap::Notification { base, .. }) => (base, base.0 + NTFN_HEAD, false),
            _ => continue,
        };
        let state: u64 = m.read(base);
        let head: u64 = m.read(PhysAddr(head_at));
        let tail: u64 = m.read(PhysAddr(head_at + 8));
        if is_endpoint {
            ensure!(
                (state == IDLE) == (head == 0),
                "endpoint {:#x}: state {state} with head {head:#x}",
                base.0
            );
        }
        let mut prev = 0;
        let mut t = head;
        let mut n = 0;
        while t != 0 {
            n += 1;
            ensure!(n < 10_000, "queue of {:#x} loops", base.0);
            ensure!(live(is_tcb, t), "queue of {:#x} holds a dead thread {t:#x}", base.0);
            let tcb = TcbRef(PhysAddr(t));
            ensure!(tcb.queue_prev(m) == prev, "queue of {:#x}: broken prev link at {t:#x}", base.0);
            ensure!(
                tcb.blocked_on(m) == base.0,
                "thread {t:#x} is queued on {:#x} but blocked on {:#x}",
                base.0,
                tcb.blocked_on(m)
            );
            let expected = match (is_endpoint, state) {
                (true, SENDERS) => ThreadState::BlockedOnSend,
                (true, RECEIVERS) => ThreadState::BlockedOnReceive,
                (true, _) => return Err(format!("endpoint {:#x} has waiters in state {state}", base.0)),
                (false, _) => ThreadState::BlockedOnNotification,
            };
            ensure!(
                tcb.state(m) == expected,
                "thread {t:#x} in the queue of {:#x} is {:?}",
                base.0,
                tcb.state(m)
            );
            *queued_in.entry(t).or_default() += 1;
            prev = t;
            t = tcb.queue_next(m);
        }
        ensure!(tail == prev, "queue of {:#x}: tail {tail:#x}, last {prev:#x}", base.0);
        if !is_endpoint {
            let bound: u64 = m.read(PhysAddr(base.0 + NTFN_BOUND));
            if bound != 0 {
                ensure!(live(is_tcb, bound), "notification {:#x} is bound to a dead thread", base.0);
                ensure!(
                    TcbRef(PhysAddr(bound)).bound_notification(m) == base.0,
                    "binding of {:#x} not symmetric",
                    base.0
                );
            }
        }
    }
    for &t in &threads {
        let l = t.link();
        let state = t.state(m);
        let queues = queued_in.get(&l).copied().unwrap_or(0);
        let expected = match state {
            ThreadState::Running => u32::from(s.current != l),
            ThreadState::BlockedOnSend
            | ThreadState::BlockedOnReceive
            | ThreadState::BlockedOnNotification => 1,
            ThreadState::Inactive | ThreadState::BlockedOnReply => 0,
        };
        ensure!(queues == expected, "thread {l:#x} ({state:?}) is in {queues} queues");
        ensure!(
            t.queued(m) == u64::from(state == ThreadState::Running && s.current != l),
            "thread {l:#x}: queued flag wrong"
        );
        if matches!(state, ThreadState::Running | ThreadState::Inactive | ThreadState::BlockedOnReply) {
            ensure!(t.blocked_on(m) == 0, "thread {l:#x} ({state:?}) names an object it is blocked on");
        }
        if state == ThreadState::BlockedOnReply {
            let r = t.replier(m);
            ensure!(r != 0 && live(is_tcb, r), "thread {l:#x} waits for a reply from a dead thread {r:#x}");
            ensure!(TcbRef(PhysAddr(r)).caller(m) == l, "reply link of {l:#x} not symmetric");
        } else {
            ensure!(t.replier(m) == 0, "thread {l:#x} ({state:?}) names a replier");
        }
        let c = t.caller(m);
        if c != 0 {
            ensure!(live(is_tcb, c), "thread {l:#x} owes a reply to a dead thread {c:#x}");
            let caller = TcbRef(PhysAddr(c));
            ensure!(
                caller.replier(m) == l && caller.state(m) == ThreadState::BlockedOnReply,
                "caller link of {l:#x} not symmetric"
            );
        }
        let n = t.bound_notification(m);
        if n != 0 {
            ensure!(live(is_ntfn, n), "thread {l:#x} is bound to a dead notification");
            let bound: u64 = m.read(PhysAddr(n + NTFN_BOUND));
            ensure!(bound == l, "binding of thread {l:#x} not symmetric");
        }
        match m.cap_at(t.slot(tcb_slot::IPC_BUFFER)) {
            Cap::Null => {}
            Cap::Frame { large: false, device: false, rights, .. }
                if rights.contains(Rights::READ.union(Rights::WRITE)) => {}
            other => return Err(format!("thread {l:#x} has IPC buffer {other:?}")),
        }
        let v = t.vcpu(m);
        if v != 0 {
            ensure!(live(is_vcpu, v), "thread {l:#x} is bound to a dead Vcpu");
            ensure!(s.vcpu_state(PhysAddr(v)).tcb == l, "Vcpu binding of {l:#x} not symmetric");
        }
    }
    // 6. Vcpus.
    for slots in objects.values() {
        let Cap::Vcpu { base } = nodes[&slots[0]] else { continue };
        let state = s.vcpu_state(base);
        if state.tcb != 0 {
            ensure!(live(is_tcb, state.tcb), "Vcpu {:#x} is bound to a dead thread", base.0);
            ensure!(
                TcbRef(PhysAddr(state.tcb)).vcpu(m) == base.0,
                "Vcpu binding of {:#x} not symmetric",
                base.0
            );
        }
        let layout = s.vcpu_layout();
        let mut grants: Vec<(u16, u16)> = Vec::new();
        for i in 0..IO_GRANTS {
            if let Cap::VcpuIoGrant { vcpu, open_first, open_last, .. } =
                m.cap_at(PhysAddr(base.0 + IO_GRANT_OFFSET + 64 * i))
            {
                ensure!(vcpu == base, "a grant of Vcpu {:#x} names {:#x}", base.0, vcpu.0);
                grants.push((open_first, open_last));
            }
        }
        let bitmap: [[u64; 512]; 2] = [0, 4096].map(|o| m.read(PhysAddr(base.0 + IO_BITMAP_OFFSET + o)));
        for (word, &bits) in bitmap.iter().flatten().enumerate() {
            let word = word as u64;
            if bits != u64::MAX {
                for b in 0..64 {
                    let port = (word * 64 + b) as u16;
                    let granted = grants.iter().any(|&(f, l)| f <= port && port <= l);
                    ensure!(
                        bits & (1 << b) != 0 || granted,
                        "Vcpu {:#x} lets port {port:#x} through without a grant",
                        base.0
                    );
                }
            }
        }
        // VT-x: a SYSCALL MSR the guest reaches is switched by the kernel.
        if layout == Layout::Vmx && state.switch_syscall == 0 {
            for msr in super::vcpu::SYSCALL_MSRS {
                for write in [false, true] {
                    let (offset, bit) = layout.msr_bit(msr, write).expect("in the bitmap's range");
                    let byte: u8 = m.read(PhysAddr(base.0 + offset));
                    ensure!(
                        byte & bit != 0,
                        "Vcpu {:#x} lets SYSCALL MSR {msr:#x} through without switching it",
                        base.0
                    );
                }
            }
        }
        // SVM's third I/O page (accesses running past port 0xffff) always exits.
        if layout == Layout::Svm {
            let third: [u64; 512] = m.read(PhysAddr(base.0 + IO_BITMAP_OFFSET + 2 * 4096));
            ensure!(
                third.iter().all(|&w| w == u64::MAX),
                "Vcpu {:#x} opened the I/O map's third page",
                base.0
            );
        }
        // Only MSRs of the architecture's pass-through list go through, writes only where
        // the list allows. (Words with every bit set, nearly all, are skipped whole.)
        let first_map_page = layout.bitmap_pages()[2];
        for &page in layout.bitmap_pages().iter().filter(|&&p| p >= first_map_page) {
            let words: [u64; 512] = m.read(PhysAddr(base.0 + page));
            for (w, &bits) in words.iter().enumerate().filter(|(_, b)| **b != u64::MAX) {
                for b in (0..64u64).filter(|b| bits & (1 << b) == 0) {
                    let offset = page + w as u64 * 8 + b / 8;
                    let msr = layout.msr_of(offset, (b % 8) as u32);
                    let allowed = msr.is_some_and(|(msr, write)| {
                        layout.pass_through().iter().any(|&(p, w)| p == msr && (w || !write))
                    });
                    ensure!(
                        allowed,
                        "Vcpu {:#x} lets {msr:x?} through (bit {b} of word {w} of page {page:#x})",
                        base.0
                    );
                }
            }
        }
    }
    for (what, v) in [("active VMCS", s.active_vmcs), ("floating-point owner", s.fpu_owner)] {
        ensure!(v == 0 || live(is_vcpu, v), "the {what} {v:#x} is not a live Vcpu");
    }
    // A dead Vcpu's processor state dies with it (a new Vcpu there starts fresh, as the
    // kernel re-initialises a Vcpu whose memory was retyped); the live ones' must hold
    // what the neutral fields may never give a guest.
    w.hw.guests.borrow_mut().retain(|&vcpu, _| live(is_vcpu, vcpu));
    for (&vcpu, guest) in w.hw.guests.borrow().iter() {
        check_guest_state(vcpu, guest)?;
    }
    // 7. Interrupt lines.
    ensure!(s.lines_to_mask == 0, "lines {:#x} are still to be masked after an operation", s.lines_to_mask);
    for (irq, line) in s.irq_lines.iter().enumerate() {
        let handler = objects.contains_key(&ObjectRef::Irq(irq as u8));
        ensure!(line.issued == handler, "line {irq}: issued {} but a handler exists: {handler}", line.issued);
        ensure!(line.issued || !line.armed, "line {irq} is armed without a handler");
        // Only an unmasked line can fire: the kernel may count on an armed line alone to
        // wake a waiter (`interrupts_can_wake`).
        let masked = w.hw.masked & 1u16.checked_shl(irq as u32).unwrap_or(0) != 0;
        ensure!(!(line.armed && masked), "line {irq} is armed but masked at the controller");
        // And the other way: a line that is not armed (never acknowledged, fired since, or
        // its handler deleted) is masked, so it cannot interrupt with nobody to tell.
        ensure!(line.reserved || line.armed || masked, "line {irq} is unmasked but not armed");
        if let Some((n, _)) = line.notification {
            ensure!(live(is_ntfn, n.0), "line {irq} signals a dead notification {:#x}", n.0);
        }
    }
    let _ = live(is_ep, 0);
    Ok(())
}

/// What a VMM's writes through the neutral guest-state fields may never leave in a Vcpu's
/// VMCS or VMCB: on SVM, the kernel's words (intercepts, bar the VINTR one the interrupt
/// window sets; the permission maps; nested paging; the ASID) as the kernel set them,
/// EFER.SVME set and no other EFER bit but SCE, LME, LMA and NXE; on VT-x, CR4.VMXE set,
/// the "IA-32e mode guest" entry control equal to EFER.LMA, the kernel's primary controls
/// kept; on both, no CR4.PKE (nor VMXE as the guest sees it), no DR7 breakpoint enable,
/// and an event to inject only of a kind the policy allows.
fn check_guest_state(vcpu: u64, guest: &Synthetic) -> Result<(), String> {
    use crate::guest_state::{CR4_PKE, CR4_VMXE, DR7_ENABLES, EFER_GUEST, checked};
    use cleave_abi::vcpu::state;
    match guest {
        Synthetic::Vmcb(page) => {
            use crate::vmcb::{EFER_SVME, INTERCEPT_VINTR, Vmcb, control, fresh};
            let page: &[u8; 4096] = page;
            for (offset, value, bytes) in fresh(vcpu, 1) {
                if offset >= 0x400 {
                    continue;
                }
                let mask = if bytes == 8 { u64::MAX } else { (1 << (8 * u32::from(bytes))) - 1 };
                let shift = 8 * (offset % 8) as u32;
                let mut now = (page.get(offset) >> shift) & mask;
                if offset == control::INTERCEPTS_1 {
                    now &= !u64::from(INTERCEPT_VINTR);
                }
                if offset == control::VINTR {
                    now &= 1 << 24;
                }
                ensure!(
                    now == value,
                    "Vcpu {vcpu:#x}: VMCB word {offset:#x} is {now:#x}, the kernel's is {value:#x}"
                );
            }
            let efer = page.get(crate::vmcb::state::EFER);
            ensure!(efer & EFER_SVME != 0, "Vcpu {vcpu:#x}: EFER.SVME is clear under the guest");
            ensure!(
                efer & !(EFER_SVME | EFER_GUEST) == 0,
                "Vcpu {vcpu:#x}: EFER {efer:#x} has bits no guest may"
            );
            let cr4 = page.get(crate::vmcb::state::CR4);
            ensure!(cr4 & (CR4_PKE | CR4_VMXE) == 0, "Vcpu {vcpu:#x}: CR4 {cr4:#x} gives PKE or VMXE");
            let dr7 = page.get(crate::vmcb::state::DR7);
            ensure!(dr7 & DR7_ENABLES == 0, "Vcpu {vcpu:#x}: DR7 {dr7:#x} enables a breakpoint");
            let event = page.get(control::EVENT_INJECTION);
            ensure!(
                checked(state::EVENT, event) == Ok(event),
                "Vcpu {vcpu:#x}: event {event:#x} may not be injected"
            );
            // External interrupts are virtual interrupts, never EVENTINJ's (QEMU delivers
            // those twice: `vmcb::pend_external`).
            ensure!(
                event & (1 << 31) == 0 || event >> 8 & 7 != 0,
                "Vcpu {vcpu:#x}: external interrupt {event:#x} in EVENTINJ"
            );
        }
        Synthetic::Vmcs(fields, _) => {
            let get = |f: u32| fields.get(&f).copied().unwrap_or(0);
            let cr4 = get(0x6804);
            ensure!(cr4 & CR4_VMXE != 0 && cr4 & CR4_PKE == 0, "Vcpu {vcpu:#x}: guest CR4 {cr4:#x}");
            let efer = get(0x2806);
            ensure!(efer & !EFER_GUEST == 0, "Vcpu {vcpu:#x}: EFER {efer:#x} has bits no guest may");
            let ia32e = get(0x4012) & (1 << 9) != 0;
            ensure!(
                ia32e == (efer & (1 << 10) != 0),
                "Vcpu {vcpu:#x}: IA-32e entry control differs from EFER.LMA"
            );
            let primary = get(0x4002) & !(1 << 2);
            ensure!(primary == FRESH_VMCS[1].1, "Vcpu {vcpu:#x}: primary controls {primary:#x} changed");
            let dr7 = get(0x681a);
            ensure!(dr7 & DR7_ENABLES == 0, "Vcpu {vcpu:#x}: DR7 {dr7:#x} enables a breakpoint");
            let info = get(0x4016);
            let event = if info & (1 << 11) != 0 { info | get(0x4018) << 32 } else { info };
            ensure!(
                checked(state::EVENT, event) == Ok(event),
                "Vcpu {vcpu:#x}: event {event:#x} may not be injected"
            );
        }
    }
    Ok(())
}

/// The paging invariants (see [`check`]).
fn check_paging(s: &ObjectSpace<TestMemory>, nodes: &BTreeMap<u64, Cap>) -> Result<(), String> {
    let m = &s.mem;
    // Tables (each has one capability) and frames (maybe several) by address.
    let mut tables: BTreeMap<u64, Cap> = BTreeMap::new();
    let mut frames: BTreeMap<u64, Vec<Cap>> = BTreeMap::new();
    let mut roots: Vec<(PhysAddr, u64, Format)> = Vec::new();
    for &cap in nodes.values() {
        match cap {
            Cap::PageTable { base, .. } | Cap::EptTable { base, .. } => {
                ensure!(
                    tables.insert(base.0, cap).is_none(),
                    "two capabilities to the table at {:#x}",
                    base.0
                );
            }
            Cap::Frame { base, .. } => frames.entry(base.0).or_default().push(cap),
            Cap::VSpace { base, asid } => roots.push((base, asid, Format::Ia32e)),
            Cap::EptRoot { base, asid } => roots.push((base, asid, s.guest_format())),
            _ => {}
        }
    }
    roots.sort_by_key(|r| r.0.0);
    roots.dedup_by_key(|r| r.0.0);
    for &(base, id, _) in &roots {
        ensure!(
            s.vspace_of(id).is_none_or(|b| b == base),
            "root {:#x} has ASID {id:#x}, which names another root",
            base.0
        );
    }
    for (high, pool) in s.asid_pools.iter().enumerate() {
        if pool.base == 0 {
            continue;
        }
        ensure!(
            nodes.values().any(|c| matches!(c, Cap::AsidPool { base, high: h } if base.0 == pool.base && usize::from(*h) == high)),
            "ASID pool slot {high} names {:#x}, no live pool capability", pool.base
        );
        let entries: [u64; 512] = m.read(PhysAddr(pool.base));
        for (low, &e) in entries.iter().enumerate().take(ASIDS_PER_POOL as usize) {
            if e & ADDRESS == 0 {
                continue;
            }
            ensure!(low != 0, "entry 0 of ASID pool {high} is in use");
            let id = asid::encode(pool.generation, e & asid::ENTRY_GENERATION, high as u64, low as u64);
            ensure!(
                roots.iter().any(|r| r.0.0 == e & ADDRESS && r.1 == id),
                "ASID {id:#x} names {:#x}, no live root with that ASID",
                e & ADDRESS
            );
        }
    }
    // A root no live ASID names (never assigned, or its pool destroyed) holds nothing.
    for &(base, id, format) in &roots {
        if s.vspace_of(id).is_none() {
            let entries = if format == Format::Ia32e { 256 } else { 512 };
            let all: [u64; 512] = m.read(base);
            ensure!(
                all.iter().take(entries).all(|&e| e == 0),
                "root {:#x} has no live ASID but holds entries",
                base.0
            );
        }
    }
    let roots: Vec<(PhysAddr, u64, Format)> =
        roots.into_iter().filter(|r| s.vspace_of(r.1).is_some()).collect();
    let mut reached: BTreeSet<u64> = BTreeSet::new();
    for &(root, asid, format) in &roots {
        // (table, level, first address it covers)
        let mut stack = std::vec![(root.0, 4u32, 0u64)];
        while let Some((table, level, start)) = stack.pop() {
            let entries = if level == 4 && format == Format::Ia32e { 256 } else { 512 };
            let all: [u64; 512] = m.read(PhysAddr(table));
            for (i, &e) in all.iter().enumerate().take(entries) {
                let i = i as u64;
                if e & format.present() == 0 {
                    continue;
                }
                let vaddr = start + (i << (12 + 9 * (level - 1)));
                let target = e & ADDRESS;
                ensure!(
                    e & format.always() == format.always(),
                    "entry {i} of table {table:#x} (level {level}, {format:?}) lacks bits {:#x}",
                    format.always()
                );
                if level > 1 && e & format.large() == 0 {
                    let cap = tables.get(&target);
                    let ok = match (format, cap) {
                        (Format::Ia32e, Some(&Cap::PageTable { level: l, mapping: Some(mp), .. }))
                        | (
                            Format::Ept | Format::Npt,
                            Some(&Cap::EptTable { level: l, mapping: Some(mp), .. }),
                        ) => {
                            u32::from(l) == level - 1
                                && mp.asid == asid
                                && mp.at == At::of(format.space(), vaddr)
                        }
                        _ => false,
                    };
                    ensure!(
                        ok,
                        "entry {i} of table {table:#x} (level {level}) points to {target:#x}, which no table capability maps there: {cap:?}"
                    );
                    ensure!(reached.insert(target), "table {target:#x} is reachable twice");
                    stack.push((target, level - 1, vaddr));
                } else {
                    let large = level == 2;
                    ensure!(level <= 2, "a leaf at level {level}");
                    let writable = e & format.writable() != 0;
                    let ok = frames.get(&target).is_some_and(|caps| {
                        caps.iter().any(|c| {
                            matches!(*c, Cap::Frame { large: l, rights, mapping: Some(mp), .. }
                                if l == large && mp.asid == asid && mp.at == At::of(format.space(), vaddr)
                                    && (!writable || rights.contains(Rights::WRITE)))
                        })
                    });
                    ensure!(
                        ok,
                        "entry {i} of table {table:#x} (level {level}, address {vaddr:#x}) maps {target:#x} (writable: {writable}) with no live frame capability mapping it there with those rights"
                    );
                }
            }
        }
    }
    for (&base, &cap) in &tables {
        if !reached.contains(&base) {
            let empty = m.read::<[u64; 512]>(PhysAddr(base)).iter().all(|&e| e == 0);
            ensure!(empty, "table {base:#x} ({cap:?}) is reachable from no live root but holds entries");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- runs and shrinking

/// Where a run broke an invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The index of the step after which the check failed (or that panicked).
    pub step: usize,
    /// What broke.
    pub message: String,
}

/// The nested paging format episode `episode` runs with: EPT and NPT take turns, so that
/// every invariant is checked on guests' spaces of both formats.
pub fn guest_format_of(episode: u64) -> Format {
    if episode.is_multiple_of(2) { Format::Ept } else { Format::Npt }
}

/// Runs `steps` on a fresh world whose guests' spaces are in `format`, checking after each;
/// the first violation (a broken invariant or a panic in the kernel code) ends it.
pub fn run(format: Format, steps: &[Step]) -> Result<(), Violation> {
    run_counting(format, steps, &mut BTreeMap::new())
}

/// [`run`], adding the run's successful system calls to `successes`.
pub fn run_counting(
    format: Format,
    steps: &[Step],
    successes: &mut BTreeMap<(u64, u64), u64>,
) -> Result<(), Violation> {
    let mut w = world_in(format);
    let result = run_in(&mut w, steps);
    for (k, v) in core::mem::take(&mut w.successes) {
        *successes.entry(k).or_default() += v;
    }
    result
}

fn run_in(w: &mut World, steps: &[Step]) -> Result<(), Violation> {
    if let Err(message) = check(w) {
        return Err(Violation { step: 0, message: format!("the starting world: {message}") });
    }
    for (i, step) in steps.iter().enumerate() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.apply(step);
            check(w)
        }));
        match outcome {
            Ok(Ok(())) => w.threads = live_threads(&w.s),
            Ok(Err(message)) => return Err(Violation { step: i, message }),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| String::from(*s)))
                    .unwrap_or_default();
                return Err(Violation { step: i, message: format!("the kernel code panicked: {text}") });
            }
        }
    }
    Ok(())
}

/// The steps of episode `episode` of a run with `seed`.
pub fn episode(seed: u64, episode: u64, length: usize) -> Vec<Step> {
    let mut r = Rng::new(seed ^ episode.wrapping_mul(0xd134_2543_de82_ef95));
    (0..length).map(|_| step(&mut r)).collect()
}

/// The shortest sequence delta debugging finds that still breaks an invariant.
pub fn shrink(format: Format, steps: &[Step]) -> Vec<Step> {
    let fails = |s: &[Step]| run(format, s).is_err();
    let mut current: Vec<Step> = match run(format, steps) {
        Err(v) => steps[..=v.step.min(steps.len().saturating_sub(1))].to_vec(),
        Ok(()) => return steps.to_vec(),
    };
    let mut chunks = 2usize;
    while current.len() >= 2 {
        let size = current.len().div_ceil(chunks);
        let mut reduced = false;
        let mut i = 0;
        while i < chunks {
            let (from, to) = (i * size, ((i + 1) * size).min(current.len()));
            if from >= to {
                break;
            }
            let candidate: Vec<Step> = current[..from].iter().chain(&current[to..]).cloned().collect();
            if fails(&candidate) {
                current = candidate;
                chunks = (chunks - 1).max(2);
                reduced = true;
                break;
            }
            i += 1;
        }
        if !reduced {
            if chunks >= current.len() {
                break;
            }
            chunks = (chunks * 2).min(current.len());
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starting_world_is_consistent() {
        check(&world()).unwrap();
    }

    #[test]
    fn a_short_fuzz_finds_no_violation() {
        for e in 0..20 {
            let steps = episode(0x5eed, e, 500);
            let format = guest_format_of(e);
            if let Err(v) = run(format, &steps) {
                let shrunk = shrink(format, &steps);
                panic!(
                    "episode {e}, step {}: {}\nshrunk to {} steps: {shrunk:#?}",
                    v.step,
                    v.message,
                    shrunk.len()
                );
            }
        }
    }

    #[test]
    fn the_checker_sees_guest_state_a_vmm_may_not_leave() {
        use cleave_abi::vcpu::state;
        for svm in [false, true] {
            let mut w = world_in(if svm { Format::Npt } else { Format::Ept });
            let Cap::Vcpu { base } = w.s.mem.cap_at(root_slot(20)) else { panic!("component 0's Vcpu") };
            // Through the interface: taken or refused, never a violation.
            let hw = &mut w.hw;
            assert!(hw.guest_state_write(base, state::EFER, 0x500).is_ok());
            assert!(hw.guest_state_write(base, state::EFER, 1 << 12).is_err());
            assert!(hw.guest_state_write(base, state::INTERRUPT_WINDOW, 1).is_ok());
            check(&w).unwrap();
            // Planted behind its back: seen.
            match w.hw.guests.get_mut().get_mut(&base.0).expect("made on first use") {
                Synthetic::Vmcb(page) => page[crate::vmcb::state::EFER + 1] &= !(1 << 4),
                Synthetic::Vmcs(fields, _) => {
                    fields.insert(0x6804, 1 << 22 | 1 << 13);
                }
            }
            let error = check(&w).unwrap_err();
            assert!(error.contains(if svm { "SVME" } else { "CR4" }), "{error}");
        }
    }

    #[test]
    fn the_checker_sees_a_planted_stale_entry() {
        // A table of a live VSpace pointing at memory no capability maps there.
        let mut w = world();
        let Cap::VSpace { base, .. } = w.s.mem.cap_at(root_slot(12)) else { panic!("component 0's VSpace") };
        w.s.mem.write(PhysAddr(base.0 + 8 * 5), &(0x80_0000u64 | 7));
        assert!(check(&w).unwrap_err().contains("no table capability"));
    }
}
