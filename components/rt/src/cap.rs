//! Typed capabilities: a capability address with the kind of object it names, and the
//! invocations that kind accepts (in the style of the rust-sel4 `sel4` crate).

use crate::boot::set_message_word;
use crate::syscall;
use cleave_abi::object::label;
use cleave_abi::{Error, MessageInfo, ObjectType, Rights};
use core::marker::PhantomData;

/// Kinds of capability.
pub mod kind {
    /// Untyped memory.
    #[derive(Clone, Copy, Debug)]
    pub struct Untyped;
    /// A CNode.
    #[derive(Clone, Copy, Debug)]
    pub struct CNode;
    /// A thread control block.
    #[derive(Clone, Copy, Debug)]
    pub struct Tcb;
    /// A synchronous endpoint.
    #[derive(Clone, Copy, Debug)]
    pub struct Endpoint;
    /// A notification.
    #[derive(Clone, Copy, Debug)]
    pub struct Notification;
    /// A frame.
    #[derive(Clone, Copy, Debug)]
    pub struct Frame;
    /// A page table of any level below the PML4 (PDPT, page directory, page table).
    #[derive(Clone, Copy, Debug)]
    pub struct PageTable;
    /// An address space (PML4).
    #[derive(Clone, Copy, Debug)]
    pub struct VSpace;
    /// Authority to issue IRQ handler capabilities.
    #[derive(Clone, Copy, Debug)]
    pub struct IrqControl;
    /// A virtual CPU (VT-x).
    #[derive(Clone, Copy, Debug)]
    pub struct Vcpu;
    /// The root of a guest-physical address space (EPT PML4).
    #[derive(Clone, Copy, Debug)]
    pub struct EptRoot;
    /// An EPT table below the root (PDPT, page directory, page table).
    #[derive(Clone, Copy, Debug)]
    pub struct EptTable;
    /// Authority over one interrupt line.
    #[derive(Clone, Copy, Debug)]
    pub struct IrqHandler;
    /// Authority to issue I/O port capabilities.
    #[derive(Clone, Copy, Debug)]
    pub struct IoPortControl;
    /// A range of I/O ports.
    #[derive(Clone, Copy, Debug)]
    pub struct IoPort;
    /// Authority to make ASID pools.
    #[derive(Clone, Copy, Debug)]
    pub struct AsidControl;
    /// An ASID pool: gives new VSpaces and EPT roots their ASIDs.
    #[derive(Clone, Copy, Debug)]
    pub struct AsidPool;
    /// Any capability (kind not known to the program).
    #[derive(Clone, Copy, Debug)]
    pub struct Unknown;
}

/// A capability address (in the caller's CSpace) naming an object of kind `K`.
#[derive(Debug)]
pub struct Cap<K> {
    cptr: u64,
    kind: PhantomData<K>,
}

impl<K> Clone for Cap<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Cap<K> {}

impl<K> Cap<K> {
    /// The capability at address `cptr`.
    pub const fn from_cptr(cptr: u64) -> Self {
        Self { cptr, kind: PhantomData }
    }
    /// Its address.
    pub const fn cptr(self) -> u64 {
        self.cptr
    }
    /// The same address seen as another kind (the kernel checks the real type).
    pub const fn cast<L>(self) -> Cap<L> {
        Cap::from_cptr(self.cptr)
    }

    /// Invokes the capability: `label` with `words` as the message.
    pub fn invoke(self, label: u64, words: &[u64]) -> Result<[u64; 4], Error> {
        let mut registers = [0u64; 4];
        for (i, &w) in words.iter().enumerate() {
            match registers.get_mut(i) {
                Some(r) => *r = w,
                None => set_message_word(i, w),
            }
        }
        let info = MessageInfo::new(label, 0, 0, words.len() as u64);
        let (status, _, reply) = syscall::call(self.cptr, info, registers);
        Error::check(status).map(|()| reply)
    }
}

impl Cap<kind::AsidControl> {
    /// `AsidControl::make_pool`: makes the 4 KiB untyped `untyped` (nothing made from it
    /// yet) an ASID pool, its capability into `dest`.
    pub fn make_pool(self, untyped: Cap<kind::Untyped>, dest: SlotRef) -> Result<(), Error> {
        self.invoke(label::ASID_CONTROL_MAKE_POOL, &[untyped.cptr, dest.root.cptr, dest.index, dest.depth])
            .map(drop)
    }
}

impl Cap<kind::AsidPool> {
    /// `AsidPool::assign`: gives the fresh VSpace or EPT root at `root` (any kind: both
    /// take ASIDs) an ASID from this pool; until then nothing maps into it.
    pub fn assign<K>(self, root: Cap<K>) -> Result<(), Error> {
        self.invoke(label::ASID_POOL_ASSIGN, &[root.cptr]).map(drop)
    }
}

impl Cap<kind::Untyped> {
    /// `Untyped::retype`: makes `count` objects of type `ty` (`size_bits`: untyped size or
    /// CNode radix) and places their capabilities in slots `offset..offset + count` of the
    /// CNode reached from `root` by `node_index`/`node_depth` (depth 0: `root` itself).
    #[allow(clippy::too_many_arguments, reason = "mirrors the kernel operation's arguments")]
    pub fn retype(
        self,
        ty: ObjectType,
        size_bits: u64,
        root: Cap<kind::CNode>,
        node_index: u64,
        node_depth: u64,
        offset: u64,
        count: u64,
    ) -> Result<(), Error> {
        let words = [ty as u64, size_bits, root.cptr, node_index, node_depth, offset, count];
        self.invoke(label::UNTYPED_RETYPE, &words).map(drop)
    }
}

/// A slot named relative to a CNode capability: index and depth.
#[derive(Clone, Copy, Debug)]
pub struct SlotRef {
    /// The CNode the address is resolved from.
    pub root: Cap<kind::CNode>,
    /// The address.
    pub index: u64,
    /// How many bits of the address to use.
    pub depth: u64,
}

impl Cap<kind::CNode> {
    /// The slot at `index` resolved with `depth` bits from this CNode.
    pub const fn slot(self, index: u64, depth: u64) -> SlotRef {
        SlotRef { root: self, index, depth }
    }

    fn transfer(
        self,
        operation: u64,
        dest: SlotRef,
        src: SlotRef,
        rights: Rights,
        badge: u64,
    ) -> Result<(), Error> {
        let words = [dest.index, dest.depth, src.root.cptr, src.index, src.depth, u64::from(rights.0), badge];
        dest.root.invoke(operation, &words).map(drop)
    }

    /// `CNode::copy`: copies `src` into `dest` (a slot of this CNode) keeping `rights`.
    pub fn copy(self, dest: SlotRef, src: SlotRef, rights: Rights) -> Result<(), Error> {
        self.transfer(label::CNODE_COPY, dest, src, rights, 0)
    }
    /// `CNode::mint`: copies with `rights` and a badge (or, for CNodes, a guard word).
    pub fn mint(self, dest: SlotRef, src: SlotRef, rights: Rights, badge: u64) -> Result<(), Error> {
        self.transfer(label::CNODE_MINT, dest, src, rights, badge)
    }
    /// `CNode::move`: moves `src` into `dest`.
    pub fn move_cap(self, dest: SlotRef, src: SlotRef) -> Result<(), Error> {
        self.transfer(label::CNODE_MOVE, dest, src, Rights::ALL, 0)
    }
    /// `CNode::mutate`: moves with `rights` and a badge.
    pub fn mutate(self, dest: SlotRef, src: SlotRef, rights: Rights, badge: u64) -> Result<(), Error> {
        self.transfer(label::CNODE_MUTATE, dest, src, rights, badge)
    }
    /// `CNode::delete`: deletes the capability in `slot`.
    pub fn delete(slot: SlotRef) -> Result<(), Error> {
        slot.root.invoke(label::CNODE_DELETE, &[slot.index, slot.depth]).map(drop)
    }
    /// `CNode::revoke`: deletes every capability derived from the one in `slot`.
    pub fn revoke(slot: SlotRef) -> Result<(), Error> {
        slot.root.invoke(label::CNODE_REVOKE, &[slot.index, slot.depth]).map(drop)
    }
}

impl Cap<kind::Frame> {
    /// `Frame::get_address`: the frame's physical address (for DMA).
    pub fn physical_address(self) -> Result<u64, Error> {
        self.invoke(label::FRAME_GET_ADDRESS, &[]).map(|reply| reply[0])
    }
}

impl Cap<kind::IoPortControl> {
    /// `IoPortControl::issue`: an IoPort capability for ports `first..=last`, placed in
    /// `dest`. Ports already issued, or used by the kernel, are refused (`RevokeFirst`).
    pub fn issue(self, first: u16, last: u16, dest: SlotRef) -> Result<(), Error> {
        let words = [u64::from(first), u64::from(last), dest.root.cptr, dest.index, dest.depth];
        self.invoke(label::IO_PORT_CONTROL_ISSUE, &words).map(drop)
    }
}

impl Cap<kind::IoPort> {
    /// `IoPort::in`: reads `width` (1, 2 or 4) bytes from `port`.
    pub fn read(self, port: u16, width: u8) -> Result<u32, Error> {
        self.invoke(label::IO_PORT_IN, &[u64::from(port), u64::from(width)]).map(|reply| reply[0] as u32)
    }
    /// `IoPort::out`: writes the low `width` bytes of `value` to `port`.
    pub fn write(self, port: u16, width: u8, value: u32) -> Result<(), Error> {
        self.invoke(label::IO_PORT_OUT, &[u64::from(port), u64::from(width), u64::from(value)]).map(drop)
    }
}

/// A received message: the sender's badge, its descriptor and first four words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// Badge of the capability the sender used (notifications: the signalled bits).
    pub badge: u64,
    /// Label, length.
    pub info: MessageInfo,
    /// Words 0-3.
    pub words: [u64; 4],
}

#[inline]
fn received(r: syscall::Returned) -> Result<Message, Error> {
    Error::check(r.status).map(|()| Message { badge: r.badge, info: r.info, words: r.words })
}

impl Cap<kind::Endpoint> {
    /// `Send`: blocks until a receiver takes the message.
    #[inline]
    pub fn send(self, info: MessageInfo, words: [u64; 4]) -> Result<(), Error> {
        Error::check(syscall::raw(cleave_abi::Syscall::Send, self.cptr, info, words).status)
    }
    /// `NBSend`: delivers only if a receiver is waiting.
    #[inline]
    pub fn nb_send(self, info: MessageInfo, words: [u64; 4]) -> Result<(), Error> {
        Error::check(syscall::raw(cleave_abi::Syscall::NbSend, self.cptr, info, words).status)
    }
    /// `Call`: sends and waits for the reply.
    #[inline]
    pub fn call(self, info: MessageInfo, words: [u64; 4]) -> Result<Message, Error> {
        received(syscall::raw(cleave_abi::Syscall::Call, self.cptr, info, words))
    }
    /// `Call`, again if the server was stopped before it replied. A restart stops the
    /// server; the kernel wakes its waiting caller with `ReplyLost` (in the spirit of
    /// Hubris's generation numbers: the caller learns that the server it called is not the
    /// one running now), and the endpoint is still there for the restarted server, so the
    /// call is made again, at most `attempts` times in all. Any other result, an endpoint
    /// that is gone (`InvalidCapability`) included, ends it at once.
    pub fn call_retrying(self, info: MessageInfo, words: [u64; 4], attempts: u32) -> Result<Message, Error> {
        let mut last = Err(Error::ReplyLost);
        for _ in 0..attempts.max(1) {
            last = self.call(info, words);
            if last != Err(Error::ReplyLost) {
                break;
            }
        }
        last
    }
    /// `Recv`: waits for a message.
    #[inline]
    pub fn recv(self) -> Result<Message, Error> {
        received(syscall::raw(cleave_abi::Syscall::Recv, self.cptr, MessageInfo::default(), [0; 4]))
    }
    /// `NBRecv`: takes a waiting message, if any (an empty message otherwise).
    #[inline]
    pub fn nb_recv(self) -> Result<Message, Error> {
        received(syscall::raw(cleave_abi::Syscall::NbRecv, self.cptr, MessageInfo::default(), [0; 4]))
    }
    /// `ReplyRecv`: replies to the last caller, then waits on this endpoint.
    #[inline]
    pub fn reply_recv(self, info: MessageInfo, words: [u64; 4]) -> Result<Message, Error> {
        received(syscall::raw(cleave_abi::Syscall::ReplyRecv, self.cptr, info, words))
    }
}

impl Cap<kind::Notification> {
    /// Signal: ORs this capability's badge into the notification word.
    #[inline]
    pub fn signal(self) -> Result<(), Error> {
        Error::check(
            syscall::raw(cleave_abi::Syscall::Send, self.cptr, MessageInfo::default(), [0; 4]).status,
        )
    }
    /// Wait: blocks until the word is non-zero, returns and clears it.
    #[inline]
    pub fn wait(self) -> Result<u64, Error> {
        received(syscall::raw(cleave_abi::Syscall::Recv, self.cptr, MessageInfo::default(), [0; 4]))
            .map(|m| m.badge)
    }
    /// Poll: returns and clears the word (0 if nothing was signalled).
    #[inline]
    pub fn poll(self) -> Result<u64, Error> {
        received(syscall::raw(cleave_abi::Syscall::NbRecv, self.cptr, MessageInfo::default(), [0; 4]))
            .map(|m| m.badge)
    }
}

impl Cap<kind::Tcb> {
    /// `TCB::read_registers`: rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8-r15
    /// (words past the fourth come through the IPC buffer, mapped where the root task's
    /// is, as the loader does for components).
    pub fn read_registers(self) -> Result<[u64; 18], Error> {
        let first = self.invoke(label::TCB_READ_REGISTERS, &[])?;
        let mut out = [0u64; 18];
        out[..4].copy_from_slice(&first);
        for (i, w) in out.iter_mut().enumerate().skip(4) {
            *w = crate::boot::message_word(i);
        }
        Ok(out)
    }
    /// `TCB::configure`: CSpace root, VSpace root, IPC buffer (address and frame) and
    /// fault endpoint; `None` leaves that part empty.
    pub fn configure(
        self,
        cspace: Cap<kind::CNode>,
        vspace: Cap<kind::VSpace>,
        ipc_buffer: Option<(u64, Cap<kind::Frame>)>,
        fault_endpoint: Option<Cap<kind::Endpoint>>,
    ) -> Result<(), Error> {
        let (vaddr, frame) = ipc_buffer.map_or((0, 0), |(v, f)| (v, f.cptr));
        let words = [cspace.cptr, vspace.cptr, vaddr, frame, fault_endpoint.map_or(0, |e| e.cptr)];
        self.invoke(label::TCB_CONFIGURE, &words).map(drop)
    }
    /// `TCB::set_name`: the thread's name in the kernel's reports (at most 32 bytes; longer
    /// names are cut at a character boundary).
    pub fn set_name(self, name: &str) -> Result<(), Error> {
        let mut end = name.len().min(32);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut words = [0u64; 4];
        for (i, byte) in name.as_bytes()[..end].iter().enumerate() {
            words[i / 8] |= u64::from(*byte) << (8 * (i % 8));
        }
        self.invoke(label::TCB_SET_NAME, &words).map(drop)
    }
    /// `TCB::set_priority` (at most the caller's maximum controlled priority).
    pub fn set_priority(self, priority: u8) -> Result<(), Error> {
        self.invoke(label::TCB_SET_PRIORITY, &[u64::from(priority)]).map(drop)
    }
    /// `TCB::write_registers`: rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi, … (as many
    /// as given); `resume` also makes the thread runnable.
    pub fn write_registers(self, resume: bool, registers: &[u64]) -> Result<(), Error> {
        let mut words = [0u64; 19];
        words[0] = u64::from(resume);
        let n = registers.len().min(18);
        words[1..=n].copy_from_slice(&registers[..n]);
        self.invoke(label::TCB_WRITE_REGISTERS, &words[..=n]).map(drop)
    }
    /// `TCB::resume`.
    pub fn resume(self) -> Result<(), Error> {
        self.invoke(label::TCB_RESUME, &[]).map(drop)
    }
    /// `TCB::allow_end_run`: the thread may end the run (`DebugExit`); only a thread that
    /// may itself can give this.
    pub fn allow_end_run(self) -> Result<(), Error> {
        self.invoke(label::TCB_ALLOW_END_RUN, &[]).map(drop)
    }

    /// `TCB::allow_read_audit`: the thread may read the kernel's audit log (`AuditRead`);
    /// only a thread that may read it itself can give this.
    pub fn allow_read_audit(self) -> Result<(), Error> {
        self.invoke(label::TCB_ALLOW_READ_AUDIT, &[]).map(drop)
    }
    /// `TCB::allow_console`: the thread may write to the debug console (`DebugPutChar`);
    /// only a thread that may itself can give this.
    pub fn allow_console(self) -> Result<(), Error> {
        self.invoke(label::TCB_ALLOW_CONSOLE, &[]).map(drop)
    }
    /// `TCB::suspend`.
    pub fn suspend(self) -> Result<(), Error> {
        self.invoke(label::TCB_SUSPEND, &[]).map(drop)
    }
    /// `TCB::bind_notification`.
    pub fn bind_notification(self, notification: Cap<kind::Notification>) -> Result<(), Error> {
        self.invoke(label::TCB_BIND_NOTIFICATION, &[notification.cptr]).map(drop)
    }
    /// `TCB::read_state`: what the thread is doing (`cleave_abi::object::thread_state`).
    pub fn state(self) -> Result<u64, Error> {
        self.invoke(label::TCB_READ_STATE, &[]).map(|w| w[0])
    }
    /// `TCB::set_one_request`: the thread serves one request per start; its next receive
    /// goes to its fault handler as `REQUEST_DONE` (for rollback). Cannot be undone.
    pub fn set_one_request(self) -> Result<(), Error> {
        self.invoke(label::TCB_SET_ONE_REQUEST, &[]).map(drop)
    }
}

impl Cap<kind::Vcpu> {
    /// `Vcpu::set_tcb`: the thread that will enter this Vcpu's guest with `VmEnter`.
    pub fn set_tcb(self, tcb: Cap<kind::Tcb>) -> Result<(), Error> {
        self.invoke(label::VCPU_SET_TCB, &[tcb.cptr]).map(drop)
    }
    /// `Vcpu::set_ept`: the guest-physical address space the guest runs in.
    pub fn set_ept(self, root: Cap<kind::EptRoot>) -> Result<(), Error> {
        self.invoke(label::VCPU_SET_EPT, &[root.cptr]).map(drop)
    }
    /// `Vcpu::read_state`: guest-state fields (`cleave_abi::vcpu::state`), the same on
    /// VT-x and SVM, four per invocation.
    pub fn read_state<const N: usize>(self, fields: [u64; N]) -> Result<[u64; N], Error> {
        let mut out = [0u64; N];
        for (values, chunk) in out.chunks_mut(4).zip(fields.chunks(4)) {
            let words = self.invoke(label::VCPU_READ_STATE, chunk)?;
            values.copy_from_slice(&words[..chunk.len()]);
        }
        Ok(out)
    }
    /// `Vcpu::read_state` of one field.
    pub fn read_field(self, field: u64) -> Result<u64, Error> {
        self.read_state([field]).map(|[v]| v)
    }
    /// `Vcpu::write_state`: sets guest-state fields (`cleave_abi::vcpu::state`) in order,
    /// two per invocation; the first refused stops the rest.
    pub fn write_state(self, writes: &[(u64, u64)]) -> Result<(), Error> {
        for pair in writes.chunks(2) {
            let mut words = [0u64; 4];
            for (i, &(field, value)) in pair.iter().enumerate() {
                words[2 * i] = field;
                words[2 * i + 1] = value;
            }
            self.invoke(label::VCPU_WRITE_STATE, &words[..2 * pair.len()])?;
        }
        Ok(())
    }
    /// `Vcpu::write_state` of one field.
    pub fn write_field(self, field: u64, value: u64) -> Result<(), Error> {
        self.write_state(&[(field, value)])
    }
    /// `Vcpu::read_vmcs` (VT-x only): a VMCS field (Intel's encoding).
    pub fn read_vmcs(self, field: u32) -> Result<u64, Error> {
        self.invoke(label::VCPU_READ_VMCS, &[u64::from(field)]).map(|r| r[0])
    }
    /// `Vcpu::write_vmcs` (VT-x only): a VMCS field a VMM may write.
    pub fn write_vmcs(self, field: u32, value: u64) -> Result<(), Error> {
        self.invoke(label::VCPU_WRITE_VMCS, &[u64::from(field), value]).map(drop)
    }
    /// `Vcpu::read_registers`: the guest's general registers (`cleave_abi::vcpu::REGISTERS`
    /// order), four at a time (no IPC buffer needed).
    pub fn read_registers(self) -> Result<[u64; 15], Error> {
        let mut out = [0u64; 15];
        for first in (0..15).step_by(4) {
            let words = self.invoke(label::VCPU_READ_REGISTERS, &[first as u64])?;
            let n = (15 - first).min(4);
            out[first..first + n].copy_from_slice(&words[..n]);
        }
        Ok(out)
    }
    /// `Vcpu::set_io_exit`: whether guest I/O to ports `first..=last` exits; letting them
    /// through (`exit` false) needs an IoPort capability covering them.
    pub fn set_io_exit(
        self,
        ports: Option<Cap<kind::IoPort>>,
        first: u16,
        last: u16,
        exit: bool,
    ) -> Result<(), Error> {
        let cptr = ports.map_or(0, |c| c.cptr);
        self.invoke(label::VCPU_SET_IO_EXIT, &[cptr, u64::from(first), u64::from(last), u64::from(exit)])
            .map(drop)
    }
    /// `Vcpu::set_msr_exit`: whether the guest's RDMSR and WRMSR of `msr` exit.
    pub fn set_msr_exit(self, msr: u32, read_exits: bool, write_exits: bool) -> Result<(), Error> {
        let how = u64::from(read_exits) | u64::from(write_exits) << 1;
        self.invoke(label::VCPU_SET_MSR_EXIT, &[u64::from(msr), how]).map(drop)
    }
    /// `Vcpu::write_registers`: sets the first `registers.len()` guest registers (at most
    /// 15), three at a time.
    pub fn write_registers(self, registers: &[u64]) -> Result<(), Error> {
        for (chunk, values) in registers[..registers.len().min(15)].chunks(3).enumerate() {
            let mut words = [0u64; 4];
            words[0] = (chunk * 3) as u64;
            words[1..=values.len()].copy_from_slice(values);
            self.invoke(label::VCPU_WRITE_REGISTERS, &words[..=values.len()])?;
        }
        Ok(())
    }
}

impl Cap<kind::EptTable> {
    /// `EptTable::map`: into the guest-physical space of `root` at `gpa`.
    pub fn map(self, root: Cap<kind::EptRoot>, gpa: u64) -> Result<(), Error> {
        self.invoke(label::EPT_TABLE_MAP, &[root.cptr, gpa]).map(drop)
    }
    /// `EptTable::unmap`.
    pub fn unmap(self) -> Result<(), Error> {
        self.invoke(label::EPT_TABLE_UNMAP, &[]).map(drop)
    }
}

impl Cap<kind::Frame> {
    /// `Frame::map_ept`: into the guest-physical space of `root` at `gpa`, with `rights`
    /// (read, write), executable unless `execute_never`.
    pub fn map_ept(
        self,
        root: Cap<kind::EptRoot>,
        gpa: u64,
        rights: cleave_abi::Rights,
        execute_never: bool,
    ) -> Result<(), Error> {
        self.invoke(label::FRAME_MAP_EPT, &[root.cptr, gpa, u64::from(rights.0), u64::from(execute_never)])
            .map(drop)
    }
}

impl Cap<kind::IrqControl> {
    /// `IrqControl::get`: an IrqHandler capability for legacy line `irq` (0-15), placed in
    /// `dest`. One handler per line; the kernel's own lines are refused (`RevokeFirst`).
    pub fn get(self, irq: u8, dest: SlotRef) -> Result<(), Error> {
        let words = [u64::from(irq), dest.root.cptr, dest.index, dest.depth];
        self.invoke(label::IRQ_CONTROL_GET, &words).map(drop)
    }
}

impl Cap<kind::IrqHandler> {
    /// `IrqHandler::set_notification`: deliver the line as a signal (with the
    /// notification capability's badge).
    pub fn set_notification(self, notification: Cap<kind::Notification>) -> Result<(), Error> {
        self.invoke(label::IRQ_HANDLER_SET_NOTIFICATION, &[notification.cptr]).map(drop)
    }
    /// `IrqHandler::ack`: unmask the line (the kernel masks it on each delivery).
    pub fn ack(self) -> Result<(), Error> {
        self.invoke(label::IRQ_HANDLER_ACK, &[]).map(drop)
    }
    /// `IrqHandler::clear`: stop delivering the line.
    pub fn clear(self) -> Result<(), Error> {
        self.invoke(label::IRQ_HANDLER_CLEAR, &[]).map(drop)
    }
}

impl Cap<kind::Frame> {
    /// `Frame::map`: maps the frame at `vaddr` in `vspace` with `rights` (at most the
    /// capability's; read is required) — `execute_never` forbids instruction fetches.
    pub fn map(
        self,
        vspace: Cap<kind::VSpace>,
        vaddr: u64,
        rights: Rights,
        execute_never: bool,
    ) -> Result<(), Error> {
        let words = [vspace.cptr, vaddr, u64::from(rights.0), u64::from(execute_never)];
        self.invoke(label::FRAME_MAP, &words).map(drop)
    }
    /// `Frame::remap`: changes the rights of the mapping this capability made.
    pub fn remap(self, rights: Rights, execute_never: bool) -> Result<(), Error> {
        self.invoke(label::FRAME_REMAP, &[u64::from(rights.0), u64::from(execute_never)]).map(drop)
    }
    /// `Frame::unmap`.
    pub fn unmap(self) -> Result<(), Error> {
        self.invoke(label::FRAME_UNMAP, &[]).map(drop)
    }
}

impl Cap<kind::PageTable> {
    /// `PageTable::map` (any of PDPT, page directory, page table): installs the table in
    /// `vspace` to cover `vaddr`. The level above must be there (`FailedLookup`).
    pub fn map(self, vspace: Cap<kind::VSpace>, vaddr: u64) -> Result<(), Error> {
        self.invoke(label::PAGE_TABLE_MAP, &[vspace.cptr, vaddr]).map(drop)
    }
    /// `PageTable::unmap`.
    pub fn unmap(self) -> Result<(), Error> {
        self.invoke(label::PAGE_TABLE_UNMAP, &[]).map(drop)
    }
}

/// Probes every slot of a component's CNode (radix `slots`, slot 0 unused) that its
/// capability table `given` does not list, with a non-blocking send, and returns (how many
/// were refused as holding no capability, how many were probed). A component whose
/// description gives it nothing else can reach nothing else: both numbers are equal.
pub fn probe_ungiven_slots(given: &[(&str, u64, &str)], slots: u64) -> (usize, usize) {
    let mut refused = 0;
    let mut probed = 0;
    for slot in 1..slots {
        if given.iter().any(|&(_, s, _)| s == slot) {
            continue;
        }
        probed += 1;
        let probe: Cap<kind::Endpoint> = Cap::from_cptr(slot);
        if probe.nb_send(MessageInfo::default(), [0; 4]) == Err(Error::InvalidCapability) {
            refused += 1;
        }
    }
    (refused, probed)
}

/// Prints what a component was given: each capability (name, slot, what) and each shared
/// region or device range (name, address, bytes, rights), from its generated `caps` module.
pub fn report_authority(component: &str, caps: &[(&str, u64, &str)], regions: &[(&str, usize, usize, &str)]) {
    for (name, slot, what) in caps {
        crate::println!("{component}: cap {slot}: {name} ({what})");
    }
    for (name, address, bytes, rights) in regions {
        crate::println!("{component}: region {name} at {address:#x}, {} KiB, {rights}", bytes / 1024);
    }
}

/// Probes every slot of a 256-slot CNode not in `caps` ([`probe_ungiven_slots`]), prints
/// how many were refused, and returns whether all were.
pub fn report_ungiven(component: &str, caps: &[(&str, u64, &str)]) -> bool {
    let (refused, probed) = probe_ungiven_slots(caps, 256);
    crate::println!("{component}: {refused} of {probed} ungiven slots refused");
    refused == probed
}
