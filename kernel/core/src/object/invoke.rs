//! Decoding object invocations: a `Call` on an Untyped or CNode capability, with the
//! operation in the message label and its arguments in message words.
//!
//! Argument words (`doc/objects.md` has the user-facing table):
//! - Untyped retype: type, size bits, destination root (a CNode capability address in the
//!   caller's CSpace), node index, node depth (0: the root itself), offset, count.
//! - CNode copy / mint / move / mutate (on the destination CNode): destination index,
//!   destination depth, source root (CNode capability address), source index, source
//!   depth, rights, badge (or guard for CNode capabilities).
//! - CNode delete / revoke: index, depth.
//! - Frame get-address: nothing; replies with the physical address.
//! - Frame map: VSpace capability, address, rights, attributes (bit 0: execute-never).
//!   Remap: rights, attributes. Unmap: nothing.
//! - Page table (PDPT, PD, PT) map: VSpace capability, address. Unmap: nothing.
//! - IoPortControl issue: first port, last port, destination root, index, depth.
//! - IoPort in: port, width (1, 2 or 4 bytes); replies with the value. Out: port, width,
//!   value.

use super::cap::Cap;
use super::cspace::{lookup_cap, lookup_slot};
use super::kmem::KernelMemory;
use super::paging::At;
use super::slot::{Slot, SlotOps};
use super::space::{ObjectSpace, Progress};
use super::tcb::{
    INITIAL_RFLAGS, Registers, TcbRef, ThreadState, USER_CODE_SELECTOR, USER_DATA_SELECTOR, one_request,
    privilege, slot as tcb_slot,
};
use crate::addr::{GuestPhysAddr, PhysAddr, VirtAddr};
use cleave_abi::object::{SLOT_SIZE_BITS, label};
use cleave_abi::{Error, ObjectType, Rights};

/// An invocation's label and argument words.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    /// The operation.
    pub label: u64,
    /// The argument words the caller sent.
    pub words: &'a [u64],
}

impl Invocation<'_> {
    fn word(&self, i: usize) -> Result<u64, Error> {
        self.words.get(i).copied().ok_or(Error::TruncatedMessage)
    }

    fn depth(&self, i: usize) -> Result<u32, Error> {
        u32::try_from(self.word(i)?).map_err(|_| Error::RangeError)
    }
}

/// What invocations do to the machine: port I/O for IoPort holders, masking interrupt
/// lines for IrqHandler holders.
pub trait Hardware {
    /// Reads `width` (1, 2 or 4) bytes from `port`.
    fn read(&mut self, port: u16, width: u8) -> u32;
    /// Microseconds since boot, for the audit log's stamps (the time-stamp counter taken
    /// as 1 GHz, as components count it). Machines without a clock say 0.
    fn time_us(&mut self) -> u64 {
        0
    }
    /// Writes the low `width` bytes of `value` to `port`.
    fn write(&mut self, port: u16, width: u8, value: u32);
    /// Masks or unmasks legacy interrupt line `irq` (0-15).
    fn set_irq_masked(&mut self, irq: u8, masked: bool);
    /// Whether an interrupt waits to be taken: long operations stop at their next
    /// preemption point and are restarted after it ([`super::space::Progress`]).
    fn interrupt_pending(&mut self) -> bool {
        false
    }
    /// Reads field `encoding` of the VMCS of the Vcpu at `vcpu` (the policy was checked).
    /// Machines without VT-x refuse.
    fn vmcs_read(&mut self, vcpu: PhysAddr, encoding: u32) -> Result<u64, Error> {
        let _ = (vcpu, encoding);
        Err(Error::IllegalOperation)
    }
    /// Writes field `encoding` of the VMCS of the Vcpu at `vcpu` (the policy was checked;
    /// the machine may still refuse a control value the processor does not allow).
    fn vmcs_write(&mut self, vcpu: PhysAddr, encoding: u32, value: u64) -> Result<(), Error> {
        let _ = (vcpu, encoding, value);
        Err(Error::IllegalOperation)
    }
    /// Reads neutral guest-state field `field` (`cleave_abi::vcpu::state`) of the Vcpu at
    /// `vcpu`: through `crate::vmcs` on VT-x, `crate::vmcb` on SVM. Machines without
    /// either refuse.
    fn guest_state_read(&mut self, vcpu: PhysAddr, field: u64) -> Result<u64, Error> {
        let _ = (vcpu, field);
        Err(Error::IllegalOperation)
    }
    /// Writes neutral guest-state field `field` of the Vcpu at `vcpu` (the architecture's
    /// module applies `crate::guest_state::checked`).
    fn guest_state_write(&mut self, vcpu: PhysAddr, field: u64, value: u64) -> Result<(), Error> {
        let _ = (vcpu, field, value);
        Err(Error::IllegalOperation)
    }
}

/// Vcpu invocations.
fn vcpu<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    io: &mut impl Hardware,
    cspace: Cap,
    base: PhysAddr,
    inv: Invocation<'_>,
) -> Result<Reply, Error> {
    use super::vcpu::{Access, access, well_formed, written_value};
    let field = |w: u64| -> Result<u32, Error> {
        if !well_formed(w) {
            return Err(Error::InvalidArgument);
        }
        Ok(w as u32)
    };
    match inv.label {
        label::VCPU_SET_TCB => {
            let (_, cap) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let Cap::Tcb { base: tcb } = cap else { return Err(Error::InvalidCapability) };
            space.vcpu_bind(base, TcbRef(tcb));
            Ok(Reply::default())
        }
        label::VCPU_SET_EPT => {
            let (_, root) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            space.vcpu_set_ept(base, root).map(|()| Reply::default())
        }
        label::VCPU_READ_VMCS => {
            let f = field(inv.word(0)?)?;
            if access(f) == Access::None {
                return Err(Error::IllegalOperation);
            }
            io.vmcs_read(base, f).map(Reply::one)
        }
        label::VCPU_WRITE_VMCS => {
            let f = field(inv.word(0)?)?;
            if access(f) != Access::ReadWrite {
                return Err(Error::IllegalOperation);
            }
            let value = written_value(f, inv.word(1)?)?;
            io.vmcs_write(base, f, value).map(|()| Reply::default())
        }
        label::VCPU_SET_IO_EXIT => {
            let exit = inv.word(3)? != 0;
            let ports = if exit { None } else { Some(lookup_cap(&space.mem, cspace, inv.word(0)?)?.0) };
            space.vcpu_set_io_exit(base, ports, inv.word(1)?, inv.word(2)?, exit).map(|()| Reply::default())
        }
        label::VCPU_SET_MSR_EXIT => {
            let how = inv.word(1)?;
            space.vcpu_set_msr_exit(base, inv.word(0)?, how & 1 != 0, how & 2 != 0).map(|()| Reply::default())
        }
        label::VCPU_READ_STATE => {
            if inv.words.is_empty() {
                return Err(Error::TruncatedMessage);
            }
            let mut values = [0u64; 4];
            let n = inv.words.len().min(values.len());
            for (value, &f) in values.iter_mut().zip(&inv.words[..n]) {
                *value = io.guest_state_read(base, f)?;
            }
            Ok(Reply::of(&values[..n]))
        }
        label::VCPU_WRITE_STATE => {
            if inv.words.len() < 2 {
                return Err(Error::TruncatedMessage);
            }
            for pair in inv.words[..inv.words.len().min(4)].chunks_exact(2) {
                io.guest_state_write(base, pair[0], pair[1])?;
            }
            Ok(Reply::default())
        }
        label::VCPU_READ_REGISTERS => {
            let first = usize::try_from(inv.word(0)?).map_err(|_| Error::RangeError)?;
            let gprs = space.vcpu_state(base).gprs;
            if first >= gprs.len() {
                return Err(Error::RangeError);
            }
            let chunk = &gprs[first..(first + 4).min(gprs.len())];
            Ok(Reply::of(chunk))
        }
        label::VCPU_WRITE_REGISTERS => {
            let first = usize::try_from(inv.word(0)?).map_err(|_| Error::RangeError)?;
            space.vcpu_write_registers(base, first, &inv.words[1..]).map(|()| Reply::default())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Most words an invocation replies with.
pub const MAX_REPLY_WORDS: usize = 20;

/// What an invocation returns besides success: up to [`MAX_REPLY_WORDS`] words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The words.
    pub words: [u64; MAX_REPLY_WORDS],
    /// How many of them mean something.
    pub length: usize,
}

impl Reply {
    fn one(word: u64) -> Self {
        Self::of(&[word])
    }
    fn of(words: &[u64]) -> Self {
        let mut reply = Self::default();
        reply.words[..words.len()].copy_from_slice(words);
        reply.length = words.len();
        reply
    }
}

/// Looks up a CNode capability by address in the caller's CSpace.
fn cnode_at(mem: &impl SlotOps, cspace: Cap, cptr: u64) -> Result<Cap, Error> {
    match lookup_cap(mem, cspace, cptr)? {
        (_, cap @ Cap::CNode { .. }) => Ok(cap),
        _ => Err(Error::InvalidCapability),
    }
}

/// Performs `invocation` on the capability `target` (in `slot`) for a caller whose CSpace
/// root is `cspace`; `io` performs port I/O. An interrupt line whose handler the
/// invocation deleted (a delete, a revoke, a retype's reset) is masked before it returns.
pub fn invoke<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    io: &mut impl Hardware,
    caller: TcbRef,
    cspace: Cap,
    slot: Slot,
    target: Cap,
    invocation: Invocation<'_>,
) -> Result<Reply, Error> {
    let result = perform(space, io, caller, cspace, slot, target, invocation);
    let lines = space.take_lines_to_mask();
    for irq in (0..16u8).filter(|irq| lines & (1 << irq) != 0) {
        io.set_irq_masked(irq, true);
    }
    result
}

/// [`invoke`]'s work.
fn perform<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    io: &mut impl Hardware,
    caller: TcbRef,
    cspace: Cap,
    slot: Slot,
    target: Cap,
    invocation: Invocation<'_>,
) -> Result<Reply, Error> {
    let inv = invocation;
    match (target, inv.label) {
        (Cap::Null, _) => Err(Error::InvalidCapability),
        (Cap::Untyped { .. }, label::UNTYPED_RETYPE) => {
            retype(space, cspace, slot, inv).map(|()| Reply::default())
        }
        (Cap::CNode { .. }, _) => cnode(space, io, cspace, target, inv).map(|()| Reply::default()),
        (Cap::Frame { base, .. }, label::FRAME_GET_ADDRESS) => Ok(Reply::one(base.0)),
        (Cap::Frame { .. }, label::FRAME_MAP) => {
            let (_, vspace) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let rights = Rights::from_word(inv.word(2)?);
            space
                .map_frame(slot, vspace, At::Virt(VirtAddr(inv.word(1)?)), rights, inv.word(3)?)
                .map(|()| Reply::default())
        }
        (Cap::Frame { .. }, label::FRAME_REMAP) => {
            space.remap_frame(slot, Rights::from_word(inv.word(0)?), inv.word(1)?).map(|()| Reply::default())
        }
        (Cap::Frame { .. } | Cap::PageTable { .. }, label::FRAME_UNMAP | label::PAGE_TABLE_UNMAP) => {
            space.unmap(slot).map(|()| Reply::default())
        }
        (Cap::Frame { .. }, label::FRAME_MAP_EPT) => {
            let (_, root) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let rights = Rights::from_word(inv.word(2)?);
            space
                .map_frame(slot, root, At::GuestPhys(GuestPhysAddr(inv.word(1)?)), rights, inv.word(3)?)
                .map(|()| Reply::default())
        }
        (Cap::EptTable { .. }, label::EPT_TABLE_MAP) => {
            let (_, root) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            space.map_table(slot, root, At::GuestPhys(GuestPhysAddr(inv.word(1)?))).map(|()| Reply::default())
        }
        (Cap::EptTable { .. }, label::EPT_TABLE_UNMAP) => space.unmap(slot).map(|()| Reply::default()),
        (Cap::Vcpu { base }, _) => vcpu(space, io, cspace, base, inv),
        (Cap::PageTable { .. }, label::PAGE_TABLE_MAP) => {
            let (_, vspace) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            space.map_table(slot, vspace, At::Virt(VirtAddr(inv.word(1)?))).map(|()| Reply::default())
        }
        (Cap::Tcb { base }, _) => tcb(space, caller, cspace, TcbRef(base), inv),
        (Cap::IrqControl, label::IRQ_CONTROL_GET) => {
            let irq = u8::try_from(inv.word(0)?).map_err(|_| Error::RangeError)?;
            let root = cnode_at(&space.mem, cspace, inv.word(1)?)?;
            let dst = lookup_slot(&space.mem, root, inv.word(2)?, inv.depth(3)?)?;
            space.issue_irq_handler(slot, dst, irq).map(|()| Reply::default())
        }
        (Cap::AsidControl, label::ASID_CONTROL_MAKE_POOL) => {
            let (untyped, _) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let root = cnode_at(&space.mem, cspace, inv.word(1)?)?;
            let dst = lookup_slot(&space.mem, root, inv.word(2)?, inv.depth(3)?)?;
            space.make_pool(slot, untyped, dst).map(|()| Reply::default())
        }
        (Cap::AsidPool { .. }, label::ASID_POOL_ASSIGN) => {
            let (root, _) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            space.assign_from_pool(target, root).map(|()| Reply::default())
        }
        (Cap::IrqHandler { irq }, label::IRQ_HANDLER_ACK) => {
            io.set_irq_masked(irq, false);
            space.irq_acked(irq);
            Ok(Reply::default())
        }
        (Cap::IrqHandler { irq }, label::IRQ_HANDLER_SET_NOTIFICATION) => {
            let (_, cap) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let Cap::Notification { base, badge, rights } = cap else { return Err(Error::InvalidCapability) };
            if !rights.contains(Rights::WRITE) {
                return Err(Error::InsufficientRights);
            }
            space.set_irq_notification(irq, Some((base, badge)));
            Ok(Reply::default())
        }
        (Cap::IrqHandler { irq }, label::IRQ_HANDLER_CLEAR) => {
            space.set_irq_notification(irq, None);
            Ok(Reply::default())
        }
        (Cap::IoPortControl, label::IO_PORT_CONTROL_ISSUE) => {
            let port = |i| u16::try_from(inv.word(i)?).map_err(|_| Error::RangeError);
            let (first, last) = (port(0)?, port(1)?);
            let root = cnode_at(&space.mem, cspace, inv.word(2)?)?;
            let dst = lookup_slot(&space.mem, root, inv.word(3)?, inv.depth(4)?)?;
            space.issue_io_ports(slot, dst, first, last).map(|()| Reply::default())
        }
        (Cap::IoPort { first, last }, label::IO_PORT_IN | label::IO_PORT_OUT) => {
            let port = u16::try_from(inv.word(0)?).map_err(|_| Error::RangeError)?;
            let width = match inv.word(1)? {
                w @ (1 | 2 | 4) => w as u8,
                _ => return Err(Error::InvalidArgument),
            };
            let end = u32::from(port) + u32::from(width) - 1;
            if port < first || end > u32::from(last) {
                return Err(Error::RangeError);
            }
            if inv.label == label::IO_PORT_IN {
                Ok(Reply::one(u64::from(io.read(port, width))))
            } else {
                io.write(port, width, inv.word(2)? as u32);
                Ok(Reply::default())
            }
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// A test of a capability's kind.
type CapCheck = fn(Cap) -> bool;

/// Looks up a capability of the expected kind (by `check`) and returns its slot.
fn slot_of(mem: &impl SlotOps, cspace: Cap, cptr: u64, check: CapCheck) -> Result<Slot, Error> {
    let (slot, cap) = lookup_cap(mem, cspace, cptr)?;
    if check(cap) { Ok(slot) } else { Err(Error::InvalidCapability) }
}

fn tcb<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    caller: TcbRef,
    cspace: Cap,
    t: TcbRef,
    inv: Invocation<'_>,
) -> Result<Reply, Error> {
    let done = Ok(Reply::default());
    match inv.label {
        label::TCB_CONFIGURE => {
            // CSpace root, VSpace root, IPC buffer address, IPC buffer frame, fault
            // endpoint; address 0 (the null slot) leaves that part empty.
            let vaddr = inv.word(2)?;
            if vaddr % cleave_abi::ipc_buffer::IPC_BUFFER_SIZE as u64 != 0
                || vaddr >= cleave_abi::layout::USER_TOP
            {
                return Err(Error::AlignmentError);
            }
            let wanted: [(u64, u64, CapCheck); 4] = [
                (tcb_slot::CSPACE, inv.word(0)?, |c| matches!(c, Cap::CNode { .. })),
                // (A root without an ASID cannot be copied: refused here, before any slot is
                // emptied.)
                (tcb_slot::VSPACE, inv.word(1)?, |c| matches!(c, Cap::VSpace { asid, .. } if asid != 0)),
                // The kernel writes replies into the IPC buffer: it must be RAM the
                // thread may read and write.
                (tcb_slot::IPC_BUFFER, inv.word(3)?, |c| {
                    matches!(c, Cap::Frame { large: false, device: false, rights, .. }
                        if rights.contains(Rights::READ.union(Rights::WRITE)))
                }),
                (tcb_slot::FAULT_ENDPOINT, inv.word(4)?, |c| matches!(c, Cap::Endpoint { .. })),
            ];
            let mut sources = [None; 4];
            for (i, &(_, cptr, check)) in wanted.iter().enumerate() {
                if cptr != 0 {
                    sources[i] = Some(slot_of(&space.mem, cspace, cptr, check)?);
                }
            }
            // Deleting what the slots hold must not destroy a CNode or TCB: that could
            // destroy this thread (or a source) before the copies below write into it.
            if wanted.iter().any(|&(index, _, _)| space.deletes_container(t.slot(index))) {
                return Err(Error::IllegalOperation);
            }
            for (&(index, _, _), source) in wanted.iter().zip(sources) {
                space.delete(t.slot(index))?;
                if let Some(src) = source {
                    space.copy(src, t.slot(index))?;
                }
            }
            t.set_ipc_buffer_vaddr(&mut space.mem, vaddr);
            done
        }
        label::TCB_SET_PRIORITY | label::TCB_SET_MCP => {
            let value = inv.word(0)?;
            if value > 255 || value > caller.mcp(&space.mem) {
                return Err(Error::RangeError);
            }
            if inv.label == label::TCB_SET_PRIORITY {
                space.set_priority(t, value as u8);
            } else {
                t.set_mcp(&mut space.mem, value);
            }
            done
        }
        label::TCB_READ_REGISTERS => Ok(Reply::of(&t.regs(&space.mem).user_words())),
        label::TCB_READ_STATE => Ok(Reply::of(&[t.state(&space.mem) as u64])),
        label::TCB_WRITE_REGISTERS => {
            let resume = inv.word(0)? != 0;
            let mut regs = t.regs(&space.mem);
            regs.set_user_words(&inv.words[1..])?;
            t.set_regs(&mut space.mem, &regs);
            // Written registers start it afresh: it may take a request again, and its
            // console line starts empty (a restarted component's first line is whole).
            let flags = t.one_request(&space.mem);
            t.set_one_request(&mut space.mem, flags & !one_request::RECEIVED);
            let _ = t.console_take(&mut space.mem);
            if resume {
                resume_thread(space, t)?;
            }
            done
        }
        label::TCB_RESUME => resume_thread(space, t).map(|()| Reply::default()),
        label::TCB_SET_ONE_REQUEST => {
            let flags = t.one_request(&space.mem);
            t.set_one_request(&mut space.mem, flags | one_request::ENABLED);
            done
        }
        label::TCB_SUSPEND => {
            space.suspend(t);
            done
        }
        label::TCB_ALLOW_END_RUN | label::TCB_ALLOW_CONSOLE | label::TCB_ALLOW_READ_AUDIT => {
            let bit = match inv.label {
                label::TCB_ALLOW_END_RUN => privilege::END_RUN,
                label::TCB_ALLOW_CONSOLE => privilege::CONSOLE,
                _ => privilege::READ_AUDIT,
            };
            if caller.privileges(&space.mem) & bit == 0 {
                return Err(Error::IllegalOperation);
            }
            let bits = t.privileges(&space.mem);
            t.set_privileges(&mut space.mem, bits | bit);
            done
        }
        label::TCB_BIND_NOTIFICATION => {
            let (_, cap) = lookup_cap(&space.mem, cspace, inv.word(0)?)?;
            let Cap::Notification { base, rights, .. } = cap else { return Err(Error::InvalidCapability) };
            // A bound thread receives the notification's signals: that needs the right to
            // wait on it.
            if !rights.contains(Rights::READ) {
                return Err(Error::InsufficientRights);
            }
            space.bind_notification(t, base).map(|()| Reply::default())
        }
        label::TCB_UNBIND_NOTIFICATION => {
            space.unbind_notification(t);
            done
        }
        label::TCB_SET_NAME => {
            if inv.words.len() > 4 {
                return Err(Error::RangeError);
            }
            let mut bytes = [0u8; 32];
            for (chunk, word) in bytes.chunks_exact_mut(8).zip(inv.words) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let length = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let name = core::str::from_utf8(&bytes[..length]).map_err(|_| Error::InvalidArgument)?;
            // Named by the loader, once: the audit log stamps each event with its
            // writer's name.
            if caller.privileges(&space.mem) & privilege::NAME_THREADS == 0 || t.name(&space.mem)[0] != 0 {
                return Err(Error::IllegalOperation);
            }
            t.set_name(&mut space.mem, name);
            done
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Makes an inactive thread runnable; it needs a CSpace and a VSpace to run in.
fn resume_thread<M: KernelMemory>(space: &mut ObjectSpace<M>, t: TcbRef) -> Result<(), Error> {
    if t.state(&space.mem) != ThreadState::Inactive {
        return Ok(());
    }
    let configured = matches!(space.mem.cap_at(t.slot(tcb_slot::CSPACE)), Cap::CNode { .. })
        && matches!(space.mem.cap_at(t.slot(tcb_slot::VSPACE)), Cap::VSpace { .. });
    if !configured {
        return Err(Error::IllegalOperation);
    }
    let mut regs = t.regs(&space.mem);
    if !regs.from_user() {
        // Never ran: give it user selectors and flags around whatever rip/rsp it has.
        regs = Registers { cs: USER_CODE_SELECTOR, ss: USER_DATA_SELECTOR, rflags: INITIAL_RFLAGS, ..regs };
        t.set_regs(&mut space.mem, &regs);
    }
    space.make_runnable(t);
    Ok(())
}

fn retype<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    cspace: Cap,
    untyped: Slot,
    inv: Invocation<'_>,
) -> Result<(), Error> {
    let ty = ObjectType::from_raw(inv.word(0)?).ok_or(Error::InvalidArgument)?;
    let size_bits = u32::try_from(inv.word(1)?).map_err(|_| Error::RangeError)?;
    let root = cnode_at(&space.mem, cspace, inv.word(2)?)?;
    let node = match inv.depth(4)? {
        0 => root,
        depth => match space.mem.cap_at(lookup_slot(&space.mem, root, inv.word(3)?, depth)?) {
            cap @ Cap::CNode { .. } => cap,
            _ => return Err(Error::InvalidCapability),
        },
    };
    let Cap::CNode { base, radix, .. } = node else { return Err(Error::InvalidCapability) };
    let (offset, count) = (inv.word(5)?, inv.word(6)?);
    let slots = 1u64 << radix;
    if offset >= slots || count > slots - offset {
        return Err(Error::RangeError);
    }
    space.retype(untyped, ty, size_bits, count, PhysAddr(base.0 + (offset << SLOT_SIZE_BITS)))
}

fn cnode<M: KernelMemory>(
    space: &mut ObjectSpace<M>,
    io: &mut impl Hardware,
    cspace: Cap,
    node: Cap,
    inv: Invocation<'_>,
) -> Result<(), Error> {
    let dest = lookup_slot(&space.mem, node, inv.word(0)?, inv.depth(1)?)?;
    match inv.label {
        label::CNODE_DELETE => {
            if space.delete_preemptible(dest, &mut || io.interrupt_pending())? == Progress::Preempted {
                space.preempted = true;
            }
            Ok(())
        }
        label::CNODE_REVOKE => {
            if space.revoke_preemptible(dest, &mut || io.interrupt_pending())? == Progress::Preempted {
                space.preempted = true;
            }
            Ok(())
        }
        label::CNODE_COPY | label::CNODE_MINT | label::CNODE_MOVE | label::CNODE_MUTATE => {
            let src_root = cnode_at(&space.mem, cspace, inv.word(2)?)?;
            let src = lookup_slot(&space.mem, src_root, inv.word(3)?, inv.depth(4)?)?;
            match inv.label {
                label::CNODE_MOVE => space.move_cap(src, dest),
                label::CNODE_COPY => space.mint(src, dest, Rights::from_word(inv.word(5)?), 0),
                label::CNODE_MINT => space.mint(src, dest, Rights::from_word(inv.word(5)?), inv.word(6)?),
                _ => space.mutate(src, dest, Rights::from_word(inv.word(5)?), inv.word(6)?),
            }
        }
        _ => Err(Error::IllegalOperation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::kmem::TestMemory;

    const ROOT: u64 = 0x10_1000;

    fn setup() -> (ObjectSpace<TestMemory>, Cap) {
        let mut s = ObjectSpace::new(TestMemory::new(0x10_0000, 0x10_0000), PhysAddr(0x10_0000));
        // A caller TCB (for priority checks) at the top of test memory, MCP 255.
        TcbRef(PhysAddr(0x1f_0000)).set_mcp(&mut s.mem, 255);
        let root = Cap::CNode { base: PhysAddr(ROOT), radix: 6, guard: 0, guard_bits: 58 };
        s.insert_original(PhysAddr(ROOT), root).unwrap();
        let ut = Cap::Untyped {
            base: PhysAddr(0x14_0000),
            size_bits: 18,
            watermark: 0,
            device: false,
            frames_only: false,
        };
        s.insert_original(PhysAddr(ROOT + 64), ut).unwrap();
        (s, root)
    }

    /// Records port I/O; reads return the port number plus the width.
    #[derive(Default)]
    struct FakePorts(std::vec::Vec<(u16, u8, Option<u32>)>);

    impl Hardware for FakePorts {
        fn read(&mut self, port: u16, width: u8) -> u32 {
            self.0.push((port, width, None));
            u32::from(port) + u32::from(width)
        }
        fn write(&mut self, port: u16, width: u8, value: u32) {
            self.0.push((port, width, Some(value)));
        }
        fn set_irq_masked(&mut self, irq: u8, masked: bool) {
            self.0.push((u16::from(irq), 0xff, Some(u32::from(masked))));
        }
    }

    extern crate std;

    fn call_io(
        s: &mut ObjectSpace<TestMemory>,
        io: &mut FakePorts,
        root: Cap,
        cptr: u64,
        label: u64,
        words: &[u64],
    ) -> Result<Reply, Error> {
        let (slot, cap) = lookup_cap(&s.mem, root, cptr).map_err(Error::from)?;
        invoke(s, io, TcbRef(PhysAddr(0x1f_0000)), root, slot, cap, Invocation { label, words })
    }

    fn call(
        s: &mut ObjectSpace<TestMemory>,
        root: Cap,
        cptr: u64,
        label: u64,
        words: &[u64],
    ) -> Result<(), Error> {
        call_io(s, &mut FakePorts::default(), root, cptr, label, words).map(drop)
    }

    #[test]
    fn io_ports_are_issued_once_and_bounded() {
        let (mut s, root) = setup();
        s.insert_original(PhysAddr(ROOT + 2 * 64), Cap::IoPortControl).unwrap();
        s.reserve_io_ports(0x3f8, 0x3ff);
        let io = &mut FakePorts::default();
        let issue = label::IO_PORT_CONTROL_ISSUE;
        call_io(&mut s, io, root, 2, issue, &[0x70, 0x71, 0, 10, 64]).unwrap();
        assert_eq!(call_io(&mut s, io, root, 2, issue, &[0x71, 0x72, 0, 11, 64]), Err(Error::RevokeFirst));
        assert_eq!(call_io(&mut s, io, root, 2, issue, &[0x3f8, 0x3f8, 0, 11, 64]), Err(Error::RevokeFirst));
        assert_eq!(
            call_io(&mut s, io, root, 2, issue, &[0x80, 0x7f, 0, 11, 64]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            call_io(&mut s, io, root, 2, issue, &[0x1_0000, 0x1_0000, 0, 11, 64]),
            Err(Error::RangeError)
        );
        call_io(&mut s, io, root, 10, label::IO_PORT_OUT, &[0x70, 1, 0x40]).unwrap();
        assert_eq!(call_io(&mut s, io, root, 10, label::IO_PORT_IN, &[0x71, 1]).unwrap(), Reply::one(0x72));
        assert_eq!(call_io(&mut s, io, root, 10, label::IO_PORT_IN, &[0x71, 2]), Err(Error::RangeError));
        assert_eq!(call_io(&mut s, io, root, 10, label::IO_PORT_IN, &[0x6f, 1]), Err(Error::RangeError));
        assert_eq!(call_io(&mut s, io, root, 10, label::IO_PORT_IN, &[0x70, 3]), Err(Error::InvalidArgument));
        assert_eq!(io.0, [(0x70, 1, Some(0x40)), (0x71, 1, None)]);
        // A copy keeps the range issued; deleting the last capability frees it.
        call(&mut s, root, 0, label::CNODE_COPY, &[11, 64, 0, 10, 64, 15]).unwrap();
        call(&mut s, root, 0, label::CNODE_DELETE, &[10, 64]).unwrap();
        assert_eq!(call_io(&mut s, io, root, 2, issue, &[0x70, 0x70, 0, 12, 64]), Err(Error::RevokeFirst));
        call(&mut s, root, 0, label::CNODE_DELETE, &[11, 64]).unwrap();
        call_io(&mut s, io, root, 2, issue, &[0x70, 0x71, 0, 12, 64]).unwrap();
    }

    #[test]
    fn frame_address() {
        let (mut s, root) = setup();
        call(&mut s, root, 1, label::UNTYPED_RETYPE, &[ObjectType::Frame4K as u64, 0, 0, 0, 0, 10, 1])
            .unwrap();
        let reply =
            call_io(&mut s, &mut FakePorts::default(), root, 10, label::FRAME_GET_ADDRESS, &[]).unwrap();
        assert_eq!(reply, Reply::one(0x14_0000));
        assert_eq!(call(&mut s, root, 1, label::FRAME_GET_ADDRESS, &[]), Err(Error::IllegalOperation));
    }

    #[test]
    fn retype_then_copy_then_revoke() {
        let (mut s, root) = setup();
        let ep = ObjectType::Endpoint as u64;
        call(&mut s, root, 1, label::UNTYPED_RETYPE, &[ep, 0, 0, 0, 0, 10, 3]).unwrap();
        assert!(matches!(s.mem.cap_at(PhysAddr(ROOT + 12 * 64)), Cap::Endpoint { .. }));
        // Mint slot 10 into slot 20 with a badge and write-only rights.
        call(&mut s, root, 0, label::CNODE_MINT, &[20, 64, 0, 10, 64, 1, 99]).unwrap();
        let Cap::Endpoint { badge: 99, rights: Rights::WRITE, .. } = s.mem.cap_at(PhysAddr(ROOT + 20 * 64))
        else {
            panic!()
        };
        call(&mut s, root, 0, label::CNODE_REVOKE, &[10, 64]).unwrap();
        assert!(s.mem.cap_at(PhysAddr(ROOT + 20 * 64)).is_null());
        call(&mut s, root, 0, label::CNODE_DELETE, &[10, 64]).unwrap();
        assert!(s.mem.cap_at(PhysAddr(ROOT + 10 * 64)).is_null());
    }

    #[test]
    fn bad_invocations() {
        let (mut s, root) = setup();
        let ep = ObjectType::Endpoint as u64;
        // Empty slot, unknown label, short message, unknown type, range past the CNode.
        assert_eq!(call(&mut s, root, 5, label::UNTYPED_RETYPE, &[ep]), Err(Error::InvalidCapability));
        assert_eq!(call(&mut s, root, 1, 999, &[]), Err(Error::IllegalOperation));
        assert_eq!(call(&mut s, root, 1, label::UNTYPED_RETYPE, &[ep, 0, 0]), Err(Error::TruncatedMessage));
        assert_eq!(
            call(&mut s, root, 1, label::UNTYPED_RETYPE, &[77, 0, 0, 0, 0, 10, 1]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            call(&mut s, root, 1, label::UNTYPED_RETYPE, &[ep, 0, 0, 0, 0, 60, 5]),
            Err(Error::RangeError)
        );
        // Destination root that is not a CNode; invoking a CNode operation on an untyped.
        assert_eq!(
            call(&mut s, root, 1, label::UNTYPED_RETYPE, &[ep, 0, 1, 0, 0, 10, 1]),
            Err(Error::InvalidCapability)
        );
        assert_eq!(
            call(&mut s, root, 1, label::CNODE_COPY, &[3, 64, 0, 1, 64, 15]),
            Err(Error::IllegalOperation)
        );
        // A CNode address with a bad guard; a depth over 64.
        assert_eq!(call(&mut s, root, 0, label::CNODE_DELETE, &[1 << 60, 64]), Err(Error::FailedLookup));
        assert_eq!(call(&mut s, root, 0, label::CNODE_DELETE, &[1, 65]), Err(Error::FailedLookup));
        assert_eq!(call(&mut s, root, 0, label::CNODE_DELETE, &[1, 1 << 40]), Err(Error::RangeError));
    }
}
