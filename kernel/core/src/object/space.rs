//! The object space: capability operations with their authority rules — copy, mint,
//! move, mutate, delete, revoke — and untyped retype, over the derivation tree.
//!
//! Rules (documented for users in doc/objects.md):
//! - a derived capability never has more rights than its source; a badge is set once;
//! - untyped capabilities are never copied (split memory by retyping into smaller
//!   untyped instead), so each byte of untyped memory has exactly one capability;
//! - deleting the last capability to an object destroys it; a CNode or TCB is destroyed
//!   by deleting every capability it holds, iteratively (no kernel recursion, whatever
//!   chain of CNodes a user builds);
//! - an untyped capability with live children cannot be deleted (revoke first); once it
//!   has no children, its whole region is free again.

use super::cap::{Cap, LINK_TAG, RawCap};
use super::kmem::KernelMemory;
use super::slot::{Cte, Slot, SlotOps};
use crate::addr::PhysAddr;
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::{Error, ObjectType, Rights};

/// Capability slots at the start of every TCB: CSpace root, VSpace root, IPC buffer
/// frame, fault endpoint.
pub const TCB_SLOT_COUNT: u64 = 4;

/// Most objects one retype may create.
pub const MAX_RETYPE_COUNT: u64 = 256;

/// A kernel object that holds capability slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Container {
    base: PhysAddr,
    slots: u64,
}

impl Container {
    fn of(cap: Cap) -> Option<Self> {
        match cap {
            Cap::CNode { base, radix, .. } => Some(Self { base, slots: 1 << radix }),
            Cap::Tcb { base } => Some(Self { base, slots: TCB_SLOT_COUNT }),
            Cap::Vcpu { base } => Some(Self {
                base: PhysAddr(base.0 + super::vcpu::IO_GRANT_OFFSET),
                slots: super::vcpu::IO_GRANTS,
            }),
            _ => None,
        }
    }

    fn slot(self, index: u64) -> Slot {
        PhysAddr(self.base.0 + (index << SLOT_SIZE_BITS))
    }
}

/// The kernel's objects and capabilities, in some kernel memory.
pub struct ObjectSpace<M> {
    /// The memory objects live in.
    pub mem: M,
    /// Sentinel slot: parent of every capability without another origin.
    root: Slot,
    /// I/O ports issued to an IoPort capability or used by the kernel (one bit each).
    io_ports: [u64; 1024],
    /// Ready queues (head and tail TCB links), one per priority.
    pub(crate) ready: [[u64; 2]; 256],
    /// Which ready queues are non-empty (bit per priority).
    pub(crate) ready_bitmap: [u64; 4],
    /// Bit `w` set when `ready_bitmap[w]` is not zero (the second level, so the highest
    /// ready priority takes two bit scans).
    pub(crate) ready_summary: u64,
    /// The thread that entered the kernel (or runs next), as a TCB link.
    pub(crate) current: u64,
    /// Legacy interrupt lines: issued to an IrqHandler, and where they are delivered.
    pub(crate) irq_lines: [IrqLine; IRQ_LINES],
    /// Lines whose handler was deleted while they were unmasked (bit n: line n): masked at
    /// the controller before the invocation that deleted it returns
    /// ([`ObjectSpace::take_lines_to_mask`]), so that a line without a handler never
    /// interrupts.
    pub(crate) lines_to_mask: u16,
    /// ASID pools by slot (an ASID's high bits).
    pub(crate) asid_pools: [super::vspace::AsidPoolSlot; super::vspace::MAX_ASID_POOLS],
    /// A page-table entry was cleared or weakened: flush the TLB before user mode.
    pub(crate) tlb_flush: bool,
    /// An EPT entry was cleared or weakened: invalidate EPT-derived translations before
    /// the next VM entry.
    pub(crate) ept_flush: bool,
    /// The format of guests' physical address spaces: the machine's nested paging (EPT on
    /// VT-x, the default; NPT on SVM), chosen by the kernel at boot before any exists.
    pub(crate) guest_format: super::paging::Format,
    /// The VMCS the processor has active (a Vcpu address), kept by the kernel; 0 if none.
    pub active_vmcs: u64,
    /// The active VMCS's Vcpu was destroyed: the kernel must VMCLEAR it before its memory
    /// can be reused (at the end of the system call).
    pub clear_active_vmcs: bool,
    /// The invocation just performed stopped at a preemption point: the system call is to
    /// be made again (the caller's registers are rewound to it) once the pending
    /// interrupt has been taken. Set by invocations, taken by [`ObjectSpace::syscall`].
    pub(crate) preempted: bool,
    /// The Vcpu whose guest's floating-point state the processor holds, or 0
    /// ([`ObjectSpace::fpu_switch`]). Threads have none of their own: x87 and SSE
    /// instructions fault in ring 3.
    pub fpu_owner: u64,
    /// The audit log (`AuditEvent`, `AuditRead`).
    pub audit: crate::audit_log::AuditLog<{ crate::audit_log::AUDIT_LOG_BYTES }>,
}

/// How far a preemptible operation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// It is complete.
    Done,
    /// An interrupt is pending: it stopped at a consistent point; run it again to go on.
    Preempted,
}

/// Deletions between two looks for a pending interrupt in a preemptible operation (each
/// deletion is a few hundred instructions at most, so interrupts wait well under 50,000).
pub const PREEMPTION_INTERVAL: u32 = 64;

/// Legacy (8259) interrupt lines.
pub const IRQ_LINES: usize = 16;

/// One interrupt line's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqLine {
    /// Kept by the kernel (never issued).
    pub reserved: bool,
    /// An IrqHandler capability exists for it.
    pub issued: bool,
    /// The notification it signals (address) and with which badge.
    pub notification: Option<(PhysAddr, u64)>,
    /// Its handler acknowledged it since it last fired: the line is unmasked and may
    /// interrupt. Lines start masked, and the kernel masks a line as it fires.
    pub armed: bool,
}

/// The capability `cap` derived with `rights` kept and `badge` applied (0: unchanged).
pub fn derive(cap: Cap, rights: Rights, badge: u64) -> Result<Cap, Error> {
    let badged = |old: u64| -> Result<u64, Error> {
        match (old, badge) {
            (old, 0) => Ok(old),
            (0, new) => Ok(new),
            _ => Err(Error::IllegalOperation),
        }
    };
    Ok(match cap {
        Cap::Null => return Err(Error::InvalidCapability),
        Cap::Untyped { .. } | Cap::PageTable { .. } | Cap::EptTable { .. } | Cap::VcpuIoGrant { .. } => {
            return Err(Error::IllegalOperation);
        }
        Cap::Endpoint { base, badge: old, rights: r } => {
            Cap::Endpoint { base, badge: badged(old)?, rights: r.intersect(rights) }
        }
        Cap::Notification { base, badge: old, rights: r } => {
            Cap::Notification { base, badge: badged(old)?, rights: r.intersect(rights) }
        }
        Cap::CNode { base, radix, guard, guard_bits } => {
            if badge == 0 {
                Cap::CNode { base, radix, guard, guard_bits }
            } else {
                // For CNodes the "badge" word sets the guard: bits 0-5 its size, the rest
                // its value.
                let new_bits = (badge & 0x3f) as u32;
                let new_guard = badge >> 6;
                if new_bits + u32::from(radix) > 64 || (new_bits < 64 && new_guard >> new_bits != 0) {
                    return Err(Error::RangeError);
                }
                Cap::CNode { base, radix, guard: new_guard, guard_bits: new_bits as u8 }
            }
        }
        Cap::Frame { base, large, device, rights: r, .. } => {
            Cap::Frame { base, large, device, rights: r.intersect(rights), mapping: None }
        }
        // A root without an ASID is assigned one through this capability only (copies
        // would never get it).
        Cap::VSpace { asid: 0, .. } | Cap::EptRoot { asid: 0, .. } => return Err(Error::IllegalOperation),
        other @ (Cap::Tcb { .. }
        | Cap::VSpace { .. }
        | Cap::Vcpu { .. }
        | Cap::EptRoot { .. }
        | Cap::AsidControl
        | Cap::AsidPool { .. }
        | Cap::IrqControl
        | Cap::IrqHandler { .. }
        | Cap::IoPortControl
        | Cap::IoPort { .. }) => other,
    })
}

impl<M: KernelMemory> ObjectSpace<M> {
    /// An object space whose derivation tree hangs from the (zeroed) sentinel slot `root`.
    pub fn new(mem: M, root: Slot) -> Self {
        let mut space = Self::unset(mem);
        space.init(root);
        space
    }

    /// An object space with no tree yet: [`ObjectSpace::init`] gives it its root. `const`
    /// so that the kernel can keep it in a static and never move its 20-odd KiB.
    pub const fn unset(mem: M) -> Self {
        Self {
            mem,
            root: PhysAddr(0),
            io_ports: [0; 1024],
            ready: [[0; 2]; 256],
            ready_bitmap: [0; 4],
            ready_summary: 0,
            current: 0,
            irq_lines: [IrqLine { reserved: false, issued: false, notification: None, armed: false };
                IRQ_LINES],
            lines_to_mask: 0,
            asid_pools: [super::vspace::AsidPoolSlot { base: 0, generation: 0 };
                super::vspace::MAX_ASID_POOLS],
            tlb_flush: false,
            ept_flush: false,
            guest_format: super::paging::Format::Ept,
            active_vmcs: 0,
            clear_active_vmcs: false,
            preempted: false,
            fpu_owner: 0,
            audit: crate::audit_log::AuditLog::new(),
        }
    }

    /// Hangs the derivation tree from the sentinel slot `root` (zeroed here).
    pub fn init(&mut self, root: Slot) {
        self.mem.write(root, &Cte::default());
        self.root = root;
    }

    fn ports_free(&self, first: u16, last: u16) -> bool {
        (first..=last).all(|p| self.io_ports[usize::from(p / 64)] & (1 << (p % 64)) == 0)
    }

    fn mark_ports(&mut self, first: u16, last: u16, used: bool) {
        for p in first..=last {
            let (word, bit) = (usize::from(p / 64), 1u64 << (p % 64));
            if used { self.io_ports[word] |= bit } else { self.io_ports[word] &= !bit }
        }
    }

    /// Keeps interrupt line `irq` for the kernel: no handler is ever issued for it.
    pub fn reserve_irq(&mut self, irq: u8) {
        if let Some(line) = self.irq_lines.get_mut(usize::from(irq)) {
            line.reserved = true;
        }
    }

    /// Issues an IrqHandler capability for line `irq` from the IrqControl capability at
    /// `control` into the empty `dst`. One handler per line; the kernel's lines are refused.
    pub fn issue_irq_handler(&mut self, control: Slot, dst: Slot, irq: u8) -> Result<(), Error> {
        if self.mem.cap_at(control) != Cap::IrqControl {
            return Err(Error::InvalidCapability);
        }
        let line = self.irq_lines.get(usize::from(irq)).copied().ok_or(Error::RangeError)?;
        self.empty(dst)?;
        if line.reserved || line.issued {
            return Err(Error::RevokeFirst);
        }
        self.irq_lines[usize::from(irq)].issued = true;
        self.mem.insert(dst, Cap::IrqHandler { irq }, control);
        Ok(())
    }

    /// Sets (or clears) the notification line `irq` signals.
    pub fn set_irq_notification(&mut self, irq: u8, target: Option<(PhysAddr, u64)>) {
        if let Some(line) = self.irq_lines.get_mut(usize::from(irq)) {
            line.notification = target;
        }
    }

    /// Line `irq` fired (the kernel has masked it): signals its notification. Returns
    /// whether anyone was told; the line stays masked until the handler acknowledges it.
    pub fn irq_fired(&mut self, irq: u8) -> bool {
        if let Some(line) = self.irq_lines.get_mut(usize::from(irq)) {
            line.armed = false;
        }
        match self.irq_lines.get(usize::from(irq)).and_then(|l| l.notification) {
            Some((base, badge)) => {
                self.signal_object(base, badge);
                true
            }
            None => false,
        }
    }

    /// Whether an interrupt could make a thread runnable: some armed line (unmasked: its
    /// handler acknowledged it since it last fired) signals a notification that a thread
    /// waits on, or whose bound thread waits in a receive. If not, a kernel with nothing
    /// runnable has nothing to wait for (no thread can start waiting later, or acknowledge
    /// a masked line, as none runs): a driver that stopped leaves its line bound to its
    /// notification, a supervisor with nothing left to time leaves its clock's line
    /// unacknowledged, and the run still ends.
    pub fn interrupts_can_wake(&self) -> bool {
        self.irq_lines
            .iter()
            .filter(|l| l.armed)
            .filter_map(|l| l.notification)
            .any(|(base, _)| self.signal_could_wake(base))
    }

    /// The lines to mask at the controller now (their handlers were deleted while they
    /// were unmasked), forgetting them.
    pub fn take_lines_to_mask(&mut self) -> u16 {
        core::mem::take(&mut self.lines_to_mask)
    }

    /// Line `irq`'s handler acknowledged it (the kernel unmasks it): it may fire again.
    pub fn irq_acked(&mut self, irq: u8) {
        if let Some(line) = self.irq_lines.get_mut(usize::from(irq)) {
            line.armed = line.issued;
        }
    }

    /// Keeps I/O ports `first..=last` for the kernel: they are never issued.
    pub fn reserve_io_ports(&mut self, first: u16, last: u16) {
        self.mark_ports(first, last, true);
    }

    /// Issues an IoPort capability for `first..=last` from the IoPortControl capability at
    /// `control` into the empty `dst`. Ports already issued (or the kernel's) are refused.
    pub fn issue_io_ports(&mut self, control: Slot, dst: Slot, first: u16, last: u16) -> Result<(), Error> {
        if self.mem.cap_at(control) != Cap::IoPortControl {
            return Err(Error::InvalidCapability);
        }
        if first > last {
            return Err(Error::InvalidArgument);
        }
        self.empty(dst)?;
        if !self.ports_free(first, last) {
            return Err(Error::RevokeFirst);
        }
        self.mark_ports(first, last, true);
        self.mem.insert(dst, Cap::IoPort { first, last }, control);
        Ok(())
    }

    /// Makes the 4 KiB untyped capability at `untyped` (without children) an ASID pool
    /// whose capability goes into the empty `dst`, by the AsidControl capability at
    /// `control`: `ASID_CONTROL_MAKE_POOL`.
    pub fn make_pool(&mut self, control: Slot, untyped: Slot, dst: Slot) -> Result<(), Error> {
        if self.mem.cap_at(control) != Cap::AsidControl {
            return Err(Error::InvalidCapability);
        }
        let Cap::Untyped { base, size_bits: 12, device: false, frames_only: false, .. } =
            self.mem.cap_at(untyped)
        else {
            return Err(Error::InvalidCapability);
        };
        if self.mem.first_child(untyped).is_some() {
            return Err(Error::RevokeFirst);
        }
        self.empty(dst)?;
        self.mem.zero(base, 4096);
        let high = self.make_asid_pool(base).ok_or(Error::NotEnoughMemory)?;
        self.mem.insert(dst, Cap::AsidPool { base, high: high as u8 }, untyped);
        self.mem.set_cap(
            untyped,
            Cap::Untyped { base, size_bits: 12, watermark: 4096, device: false, frames_only: false },
        );
        Ok(())
    }

    /// Places a capability that has no origin (boot-time objects) into the empty `slot`.
    pub fn insert_original(&mut self, slot: Slot, cap: Cap) -> Result<(), Error> {
        if !self.mem.cap_at(slot).is_null() {
            return Err(Error::DeleteFirst);
        }
        self.mem.insert(slot, cap, self.root);
        Ok(())
    }

    /// The sentinel at the root of the derivation tree.
    pub fn tree_root(&self) -> Slot {
        self.root
    }

    fn occupied(&self, slot: Slot) -> Result<Cap, Error> {
        match self.mem.cap_at(slot) {
            Cap::Null => Err(Error::InvalidCapability),
            cap => Ok(cap),
        }
    }

    fn empty(&self, slot: Slot) -> Result<(), Error> {
        if self.mem.cap_at(slot).is_null() { Ok(()) } else { Err(Error::DeleteFirst) }
    }

    /// Copies `src` into the empty `dst` with the same rights; the copy is a child of `src`.
    pub fn copy(&mut self, src: Slot, dst: Slot) -> Result<(), Error> {
        self.mint(src, dst, Rights::ALL, 0)
    }

    /// Copies `src` into `dst` keeping only `rights` and applying `badge` (endpoints and
    /// notifications: set once; CNodes: the guard). The copy is a child of `src`.
    pub fn mint(&mut self, src: Slot, dst: Slot, rights: Rights, badge: u64) -> Result<(), Error> {
        let cap = derive(self.occupied(src)?, rights, badge)?;
        self.empty(dst)?;
        self.mem.insert(dst, cap, src);
        Ok(())
    }

    /// Moves the capability at `src` to the empty `dst`.
    pub fn move_cap(&mut self, src: Slot, dst: Slot) -> Result<(), Error> {
        self.occupied(src)?;
        self.empty(dst)?;
        self.mem.move_slot(src, dst);
        Ok(())
    }

    /// Moves the capability at `src` to `dst`, keeping only `rights` and applying `badge`.
    /// The capability must have no children: they were derived from what it was, and would
    /// otherwise hold more rights, or another badge, than their parent.
    pub fn mutate(&mut self, src: Slot, dst: Slot, rights: Rights, badge: u64) -> Result<(), Error> {
        let cap = self.occupied(src)?;
        if self.mem.first_child(src).is_some() {
            return Err(Error::RevokeFirst);
        }
        let derived = match cap {
            // Moving an untyped is fine (only copying it is not); the badge word may
            // restrict it to frames, and nothing lifts that.
            Cap::Untyped { base, size_bits, watermark, device, frames_only } => {
                if badge & !cleave_abi::UNTYPED_FRAMES_ONLY != 0 {
                    return Err(Error::InvalidArgument);
                }
                let frames_only = frames_only || badge & cleave_abi::UNTYPED_FRAMES_ONLY != 0;
                Cap::Untyped { base, size_bits, watermark, device, frames_only }
            }
            // Moving a page table is fine; only copying it is not.
            Cap::PageTable { .. } => cap,
            Cap::Frame { mapping, .. } => match derive(cap, rights, badge)? {
                Cap::Frame { base, large, device, rights, .. } => {
                    Cap::Frame { base, large, device, rights, mapping }
                }
                other => other,
            },
            _ => derive(cap, rights, badge)?,
        };
        self.empty(dst)?;
        self.mem.move_slot(src, dst);
        self.mem.set_cap(dst, derived);
        Ok(())
    }

    /// Deletes the capability at `slot`; if it was the last one to its object, the object
    /// is destroyed. An untyped capability with children is refused (revoke first).
    pub fn delete(&mut self, slot: Slot) -> Result<(), Error> {
        match self.delete_preemptible(slot, &mut || false)? {
            Progress::Done => Ok(()),
            Progress::Preempted => unreachable!("nothing was pending"),
        }
    }

    /// [`ObjectSpace::delete`] with preemption points: a capability's children move up to
    /// take its place one at a time (each into the place just before it, so the finished
    /// order is what one unlink gives), and every [`PREEMPTION_INTERVAL`] of them it asks
    /// `pending` whether an interrupt waits. Every stop leaves a consistent tree; the
    /// call made again goes on. (Destroying a large CNode, once its last capability goes,
    /// still runs to completion.)
    pub fn delete_preemptible(
        &mut self,
        slot: Slot,
        pending: &mut dyn FnMut() -> bool,
    ) -> Result<Progress, Error> {
        match self.mem.cap_at(slot) {
            Cap::Null => Ok(Progress::Done),
            Cap::Untyped { .. } if self.mem.first_child(slot).is_some() => Err(Error::RevokeFirst),
            _ => {
                // Children move up one at a time; a Vcpu's grants go with the IoPort
                // capability instead (not up to its parent).
                let mut work = 0u32;
                loop {
                    match self.mem.first_child(slot).map(|c| (c, self.mem.cap_at(c))) {
                        None => break,
                        Some((grant, Cap::VcpuIoGrant { vcpu, open_first, open_last, .. })) => {
                            self.mem.unlink(grant);
                            self.vcpu_close_ports(vcpu, open_first, open_last);
                        }
                        Some(_) => {
                            self.mem.lift_first_child(slot);
                        }
                    }
                    work += 1;
                    if work.is_multiple_of(PREEMPTION_INTERVAL) && pending() {
                        return Ok(Progress::Preempted);
                    }
                }
                self.delete_slot(slot);
                Ok(Progress::Done)
            }
        }
    }

    /// Deletes every capability derived from the one at `slot` (not that one). For an
    /// untyped capability this destroys every object made from it and frees its region.
    pub fn revoke(&mut self, slot: Slot) -> Result<(), Error> {
        match self.revoke_preemptible(slot, &mut || false)? {
            Progress::Done => Ok(()),
            Progress::Preempted => unreachable!("nothing was pending"),
        }
    }

    /// [`ObjectSpace::revoke`] with preemption points: every [`PREEMPTION_INTERVAL`]
    /// deletions it asks `pending` whether an interrupt waits, and if one does it stops
    /// with [`Progress::Preempted`]. What it deleted stays deleted, so the caller restarts
    /// the whole operation (the kernel rewinds the thread to its system call) and it goes
    /// on where it stopped. Each deletion costs constant time (leaves have no children to
    /// move; the last-reference test looks at neighbours only), and the walk resumes at the
    /// last deleted capability's parent instead of at the top, so revoking n capabilities
    /// is linear in n.
    pub fn revoke_preemptible(
        &mut self,
        slot: Slot,
        pending: &mut dyn FnMut() -> bool,
    ) -> Result<Progress, Error> {
        self.occupied(slot)?;
        let mut at = slot;
        let mut work = 0u32;
        loop {
            // Resume below the last deleted capability's parent if it is still there (a
            // container destroyed on the way may have taken it; then from the top).
            let node = if at != slot && !self.mem.cap_at(at).is_null() { at } else { slot };
            let mut leaf = match self.mem.first_child(node) {
                Some(child) => child,
                None if node == slot => break,
                None => node,
            };
            while let Some(c) = self.mem.first_child(leaf) {
                leaf = c;
            }
            at = self.mem.parent_of(leaf).unwrap_or(slot);
            self.delete_slot(leaf);
            if self.mem.cap_at(slot).is_null() {
                // The capability revoked was itself inside an object just destroyed.
                return Ok(Progress::Done);
            }
            work += 1;
            if work.is_multiple_of(PREEMPTION_INTERVAL) && pending() {
                return Ok(Progress::Preempted);
            }
        }
        if let Cap::Untyped { base, size_bits, device, frames_only, .. } = self.mem.cap_at(slot) {
            self.mem.set_cap(slot, Cap::Untyped { base, size_bits, watermark: 0, device, frames_only });
        }
        Ok(Progress::Done)
    }

    /// Whether deleting the capability at `slot` would destroy a CNode or TCB: the
    /// destruction of a container can reach any object, including a thread being
    /// configured, so operations that delete on the way refuse it (seL4's
    /// `slotCapLongRunningDelete`): the caller deletes that capability itself first.
    pub fn deletes_container(&self, slot: Slot) -> bool {
        let cap = self.mem.cap_at(slot);
        Container::of(cap).is_some() && self.mem.is_last_reference(slot)
    }

    /// Removes the capability at `slot` from the tree and destroys its object if no other
    /// capability names it.
    fn delete_slot(&mut self, slot: Slot) {
        self.drop_io_grants_below(slot);
        let last = self.mem.is_last_reference(slot);
        let (cap, _) = self.mem.unlink(slot);
        let cap = self.detached(cap);
        if !last {
            return;
        }
        match Container::of(cap) {
            Some(container) => {
                self.before_destroy(cap);
                self.destroy(container)
            }
            None => self.finalize_leaf(cap),
        }
    }

    /// What a capability leaving the tree undoes whoever else names its object: a frame
    /// or table mapping it made is removed, a Vcpu's I/O grant closes its ports.
    fn detached(&mut self, cap: Cap) -> Cap {
        if let Cap::VcpuIoGrant { vcpu, open_first, open_last, .. } = cap {
            self.vcpu_close_ports(vcpu, open_first, open_last);
        }
        self.unmapped(cap)
    }

    /// Deletes the Vcpu I/O grants derived from the IoPort capability at `slot` (about to
    /// go): a guest reaches ports directly only while the capability that let it exists.
    fn drop_io_grants_below(&mut self, slot: Slot) {
        if !matches!(self.mem.cap_at(slot), Cap::IoPort { .. }) {
            return;
        }
        let mut child = self.mem.first_child(slot);
        while let Some(c) = child {
            child = self.mem.next_sibling(c);
            if let Cap::VcpuIoGrant { vcpu, open_first, open_last, .. } = self.mem.cap_at(c) {
                // A grant is a leaf and never the last reference (its parent names the
                // same ports).
                self.mem.unlink(c);
                self.vcpu_close_ports(vcpu, open_first, open_last);
            }
        }
    }

    /// Stops a thread whose TCB is about to be destroyed; unbinds a Vcpu about to be.
    fn before_destroy(&mut self, cap: Cap) {
        match cap {
            Cap::Tcb { base } => {
                let t = super::tcb::TcbRef(base);
                self.suspend(t);
                if t.vcpu(&self.mem) != 0 {
                    self.vcpu_unbind(PhysAddr(t.vcpu(&self.mem)));
                }
            }
            Cap::Vcpu { base } => self.vcpu_destroyed(base),
            _ => {}
        }
    }

    /// Releases what a destroyed object without capability slots holds: an I/O port
    /// range becomes issuable again; threads waiting on an endpoint or notification wake
    /// with an error. Frames and the rest hold no kernel state that points elsewhere.
    fn finalize_leaf(&mut self, cap: Cap) {
        match cap {
            Cap::IoPort { first, last } | Cap::VcpuIoGrant { first, last, .. } => {
                self.mark_ports(first, last, false)
            }
            Cap::Endpoint { base, .. } => self.cancel_endpoint(base),
            Cap::Notification { base, .. } => {
                self.cancel_notification(base);
                for line in &mut self.irq_lines {
                    if line.notification.is_some_and(|(b, _)| b == base) {
                        line.notification = None;
                    }
                }
            }
            // A destroyed root leaves no populated tables behind: what hangs below it is
            // emptied (its tables stay, unreachable, until their capabilities go).
            Cap::VSpace { base, asid } => {
                self.release_asid(asid);
                self.clear_tables(base, 4, super::paging::Format::Ia32e);
            }
            Cap::EptRoot { base, asid } => {
                self.release_asid(asid);
                self.clear_tables(base, 4, self.guest_format);
            }
            Cap::AsidPool { high, .. } => self.destroy_asid_pool(usize::from(high)),
            Cap::IrqHandler { irq } => {
                if let Some(line) = self.irq_lines.get_mut(usize::from(irq)) {
                    if line.armed {
                        self.lines_to_mask |= 1 << irq;
                    }
                    *line = IrqLine { reserved: line.reserved, ..IrqLine::default() };
                }
            }
            _ => {}
        }
    }

    /// Destroys a CNode or TCB by deleting every capability in it, descending into
    /// containers that become unreachable on the way. The descent keeps its state in the
    /// dying containers' own freed slots (a link marker per level), so it needs no stack.
    fn destroy(&mut self, first: Container) {
        let mut current = first;
        let mut cursor = 0;
        // The slot (inside the parent container) holding the marker to return through.
        let mut back: Option<Slot> = None;
        loop {
            let mut found = None;
            while cursor < current.slots {
                let slot = current.slot(cursor);
                cursor += 1;
                if !self.mem.cap_at(slot).is_null() {
                    found = Some(slot);
                    break;
                }
            }
            match found {
                Some(slot) => {
                    self.drop_io_grants_below(slot);
                    let last = self.mem.is_last_reference(slot);
                    let (cap, _) = self.mem.unlink(slot);
                    let cap = self.detached(cap);
                    if !last {
                        continue;
                    }
                    match Container::of(cap) {
                        Some(inner) => {
                            self.before_destroy(cap);
                            // Save where to resume in the freed slot, then descend.
                            let marker = Cte {
                                cap: RawCap([
                                    LINK_TAG,
                                    back.map_or(0, |s| s.0),
                                    current.base.0,
                                    current.slots,
                                ]),
                                parent: cursor,
                                ..Cte::default()
                            };
                            self.mem.write(slot, &marker);
                            back = Some(slot);
                            current = inner;
                            cursor = 0;
                        }
                        None => self.finalize_leaf(cap),
                    }
                }
                None => {
                    let Some(marker_slot) = back else { return };
                    let marker = self.mem.cte(marker_slot);
                    self.mem.write(marker_slot, &Cte::default());
                    let [_, up, base, slots] = marker.cap.0;
                    back = (up != 0).then_some(PhysAddr(up));
                    current = Container { base: PhysAddr(base), slots };
                    cursor = marker.parent;
                }
            }
        }
    }

    /// Creates `count` objects of type `ty` from the untyped capability at `untyped`,
    /// placing their capabilities in the consecutive empty slots from `first_dest` (which
    /// the caller has checked lie in one CNode), each a child of the untyped capability.
    /// `size_bits` is the untyped size or CNode radix.
    pub fn retype(
        &mut self,
        untyped: Slot,
        ty: ObjectType,
        size_bits: u32,
        count: u64,
        first_dest: Slot,
    ) -> Result<(), Error> {
        let dest = |i: u64| PhysAddr(first_dest.0 + (i << SLOT_SIZE_BITS));
        let Cap::Untyped { base, size_bits: region_bits, watermark, device, frames_only } =
            self.mem.cap_at(untyped)
        else {
            return Err(Error::InvalidCapability);
        };
        if frames_only && !matches!(ty, ObjectType::Frame4K | ObjectType::Frame2M) {
            return Err(Error::IllegalOperation);
        }
        let object_bits = ty.size_bits(size_bits).ok_or(Error::RangeError)?;
        if device && !ty.allowed_from_device() {
            return Err(Error::InvalidArgument);
        }
        if count == 0 || count > MAX_RETYPE_COUNT {
            return Err(Error::RangeError);
        }
        for i in 0..count {
            self.empty(dest(i))?;
        }
        // With no children left, the whole region is free again.
        let watermark = if self.mem.first_child(untyped).is_none() { 0 } else { watermark };
        let object_size = 1u64 << object_bits;
        let region_end = base.0 + (1u64 << region_bits);
        let start =
            PhysAddr(base.0 + watermark).checked_align_up(object_size).ok_or(Error::NotEnoughMemory)?;
        let end = count
            .checked_mul(object_size)
            .and_then(|total| start.0.checked_add(total))
            .filter(|&end| end <= region_end)
            .ok_or(Error::NotEnoughMemory)?;
        for i in 0..count {
            let addr = PhysAddr(start.0 + i * object_size);
            if !device {
                self.mem.zero(addr, object_size);
            }
            let cap = match ty {
                ObjectType::Untyped => {
                    Cap::Untyped { base: addr, size_bits: size_bits as u8, watermark: 0, device, frames_only }
                }
                ObjectType::CNode => {
                    Cap::CNode { base: addr, radix: size_bits as u8, guard: 0, guard_bits: 0 }
                }
                ObjectType::Tcb => Cap::Tcb { base: addr },
                ObjectType::Endpoint => Cap::Endpoint { base: addr, badge: 0, rights: Rights::ALL },
                ObjectType::Notification => Cap::Notification { base: addr, badge: 0, rights: Rights::ALL },
                ObjectType::Frame4K | ObjectType::Frame2M => Cap::Frame {
                    base: addr,
                    large: ty == ObjectType::Frame2M,
                    device,
                    rights: Rights::ALL,
                    mapping: None,
                },
                ObjectType::PageTable => Cap::PageTable { base: addr, level: 1, mapping: None },
                ObjectType::PageDirectory => Cap::PageTable { base: addr, level: 2, mapping: None },
                ObjectType::Pdpt => Cap::PageTable { base: addr, level: 3, mapping: None },
                // Roots get their ASID from a pool afterwards (`ASID_POOL_ASSIGN`).
                ObjectType::Pml4 => {
                    self.mem.init_vspace_root(addr);
                    Cap::VSpace { base: addr, asid: 0 }
                }
                ObjectType::EptPml4 => Cap::EptRoot { base: addr, asid: 0 },
                ObjectType::EptPdpt => Cap::EptTable { base: addr, level: 3, mapping: None },
                ObjectType::EptPd => Cap::EptTable { base: addr, level: 2, mapping: None },
                ObjectType::EptPt => Cap::EptTable { base: addr, level: 1, mapping: None },
                ObjectType::Vcpu => {
                    self.vcpu_init_bitmaps(addr);
                    Cap::Vcpu { base: addr }
                }
            };
            self.mem.insert(dest(i), cap, untyped);
        }
        self.mem.set_cap(
            untyped,
            Cap::Untyped { base, size_bits: region_bits, watermark: end - base.0, device, frames_only },
        );
        Ok(())
    }
}
