//! Kernel object types, their sizes, capability rights, and invocation labels.

/// A kernel object type, as passed to `Untyped::retype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum ObjectType {
    /// Untyped memory (size chosen at retype: `size_bits`).
    Untyped = 0,
    /// A thread control block.
    Tcb = 1,
    /// A synchronous IPC endpoint.
    Endpoint = 2,
    /// An asynchronous notification word.
    Notification = 3,
    /// A table of capability slots (`size_bits` = radix: 2^radix slots).
    CNode = 4,
    /// A 4 KiB frame.
    Frame4K = 5,
    /// A 2 MiB frame.
    Frame2M = 6,
    /// A page table (maps 4 KiB frames; level 1).
    PageTable = 7,
    /// A page directory (maps page tables and 2 MiB frames; level 2).
    PageDirectory = 8,
    /// A page-directory-pointer table (maps page directories; level 3).
    Pdpt = 9,
    /// The top-level table of an address space (level 4): a VSpace root.
    Pml4 = 10,
    /// A virtual CPU (VT-x): its VMCS and the guest registers the VMCS does not hold.
    Vcpu = 11,
    /// The root (level 4) of a guest-physical address space (extended page tables).
    EptPml4 = 12,
    /// An EPT page-directory-pointer table (level 3).
    EptPdpt = 13,
    /// An EPT page directory (level 2).
    EptPd = 14,
    /// An EPT page table (level 1).
    EptPt = 15,
}

/// Log2 of a capability slot's size in bytes.
pub const SLOT_SIZE_BITS: u32 = 6;
/// Log2 of a TCB's size in bytes.
pub const TCB_SIZE_BITS: u32 = 11;
/// Log2 of an endpoint's size in bytes.
pub const ENDPOINT_SIZE_BITS: u32 = 5;
/// Log2 of a Vcpu's size in bytes: the VMCS page, a page of guest state, the two I/O
/// bitmaps and the MSR bitmap (and three pages spare).
pub const VCPU_SIZE_BITS: u32 = 15;
/// Log2 of a notification's size in bytes.
pub const NOTIFICATION_SIZE_BITS: u32 = 6;
/// Smallest untyped region, log2 bytes.
pub const MIN_UNTYPED_BITS: u32 = 4;
/// Largest untyped region, log2 bytes.
pub const MAX_UNTYPED_BITS: u32 = 47;
/// Smallest CNode radix (2 slots).
pub const MIN_CNODE_RADIX: u32 = 1;
/// Largest CNode radix (2^20 slots, 64 MiB).
pub const MAX_CNODE_RADIX: u32 = 20;

impl ObjectType {
    /// Every type, for tables and tests.
    pub const ALL: [Self; 16] = [
        Self::Untyped,
        Self::Tcb,
        Self::Endpoint,
        Self::Notification,
        Self::CNode,
        Self::Frame4K,
        Self::Frame2M,
        Self::PageTable,
        Self::PageDirectory,
        Self::Pdpt,
        Self::Pml4,
        Self::Vcpu,
        Self::EptPml4,
        Self::EptPdpt,
        Self::EptPd,
        Self::EptPt,
    ];

    /// Decodes a raw type number.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u64 == raw)
    }

    /// Log2 of one object's size in bytes; `size_bits` is the untyped size or CNode radix
    /// (ignored by fixed-size types). `None` if `size_bits` is out of range for the type.
    pub fn size_bits(self, size_bits: u32) -> Option<u32> {
        match self {
            Self::Untyped => (MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS).contains(&size_bits).then_some(size_bits),
            Self::CNode => {
                (MIN_CNODE_RADIX..=MAX_CNODE_RADIX).contains(&size_bits).then_some(size_bits + SLOT_SIZE_BITS)
            }
            Self::Tcb => Some(TCB_SIZE_BITS),
            Self::Endpoint => Some(ENDPOINT_SIZE_BITS),
            Self::Notification => Some(NOTIFICATION_SIZE_BITS),
            Self::Frame4K
            | Self::PageTable
            | Self::PageDirectory
            | Self::Pdpt
            | Self::Pml4
            | Self::EptPml4
            | Self::EptPdpt
            | Self::EptPd
            | Self::EptPt => Some(12),
            Self::Vcpu => Some(VCPU_SIZE_BITS),
            Self::Frame2M => Some(21),
        }
    }

    /// Whether device untyped memory may become this type (only frames and untyped: device
    /// memory is never used for kernel objects).
    pub fn allowed_from_device(self) -> bool {
        matches!(self, Self::Untyped | Self::Frame4K | Self::Frame2M)
    }
}

/// Access rights carried by a capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rights(pub u8);

impl Rights {
    /// Write (send on endpoints, signal on notifications, write on frames).
    pub const WRITE: Self = Self(1 << 0);
    /// Read (receive on endpoints and notifications, read on frames).
    pub const READ: Self = Self(1 << 1);
    /// Grant: transfer capabilities through an endpoint.
    pub const GRANT: Self = Self(1 << 2);
    /// Grant-reply: the receiver of a Call gets a reply capability that may transfer caps.
    pub const GRANT_REPLY: Self = Self(1 << 3);
    /// All rights.
    pub const ALL: Self = Self(0xf);
    /// No right.
    pub const NONE: Self = Self(0);

    /// Whether every right in `other` is present.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// The rights in both (minting never adds rights).
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
    /// The rights in either.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    /// Decodes the low four bits of a word.
    pub const fn from_word(word: u64) -> Self {
        Self((word & 0xf) as u8)
    }
}

/// What a thread is doing (`TCB_READ_STATE`).
pub mod thread_state {
    /// Not runnable: new, suspended, or stopped by a fault it has no handler for.
    pub const INACTIVE: u64 = 0;
    /// Runnable.
    pub const RUNNING: u64 = 1;
    /// Waiting to send on an endpoint.
    pub const BLOCKED_ON_SEND: u64 = 2;
    /// Waiting to receive on an endpoint: a server between requests.
    pub const BLOCKED_ON_RECEIVE: u64 = 3;
    /// Waiting for the reply to a call (or to its fault message).
    pub const BLOCKED_ON_REPLY: u64 = 4;
    /// Waiting for a signal.
    pub const BLOCKED_ON_NOTIFICATION: u64 = 5;
}

/// Invocation labels: the `label` of a `Call` on an object capability.
pub mod label {
    /// Untyped: retype into new objects.
    pub const UNTYPED_RETYPE: u64 = 1;
    /// CNode: copy a capability (same rights).
    pub const CNODE_COPY: u64 = 10;
    /// CNode: copy with reduced rights and a badge or guard.
    pub const CNODE_MINT: u64 = 11;
    /// CNode: move a capability.
    pub const CNODE_MOVE: u64 = 12;
    /// CNode: move with reduced rights and a badge or guard (for an untyped capability,
    /// the badge word's [`crate::UNTYPED_FRAMES_ONLY`] restricts it to frames).
    pub const CNODE_MUTATE: u64 = 13;
    /// CNode: delete a capability.
    pub const CNODE_DELETE: u64 = 14;
    /// CNode: delete every capability derived from one.
    pub const CNODE_REVOKE: u64 = 15;
    /// TCB: set CSpace root, VSpace root, IPC buffer, fault endpoint.
    pub const TCB_CONFIGURE: u64 = 20;
    /// TCB: set the priority (bounded by the caller's maximum controlled priority).
    pub const TCB_SET_PRIORITY: u64 = 21;
    /// TCB: set the maximum controlled priority.
    pub const TCB_SET_MCP: u64 = 22;
    /// TCB: read the saved registers.
    pub const TCB_READ_REGISTERS: u64 = 23;
    /// TCB: write the saved registers.
    pub const TCB_WRITE_REGISTERS: u64 = 24;
    /// TCB: make the thread runnable.
    pub const TCB_RESUME: u64 = 25;
    /// TCB: stop the thread.
    pub const TCB_SUSPEND: u64 = 26;
    /// TCB: bind a notification (signals wake the thread's receives).
    pub const TCB_BIND_NOTIFICATION: u64 = 27;
    /// TCB: unbind its notification.
    pub const TCB_UNBIND_NOTIFICATION: u64 = 28;
    /// TCB: name the thread in the kernel's reports and its audit-log events (up to 32
    /// bytes of UTF-8 in four words, little-endian, ended by the first zero byte). Only the
    /// root task's first thread (the loader) names threads, each once: anyone else, or
    /// naming a named thread, fails with `IllegalOperation`, so no component can take
    /// another's name in the audit log.
    pub const TCB_SET_NAME: u64 = 29;
    /// TCB: from now on the thread serves one request per start. Its first receive on an
    /// endpoint after it is started (`TCB_RESUME`, `TCB_WRITE_REGISTERS`) is ordinary;
    /// the next one does not receive: the kernel sends its fault endpoint a
    /// `fault::REQUEST_DONE` message instead, so that its supervisor can roll it back
    /// before it takes another request. There is no way to turn it off.
    pub const TCB_SET_ONE_REQUEST: u64 = 30;
    /// TCB: what the thread is doing: word 0 is one of [`super::thread_state`].
    pub const TCB_READ_STATE: u64 = 31;
    /// TCB: the thread may end the run (`DebugExit`) and pass that on. Only a thread that
    /// may end the run itself can give it (the root task's first thread can); without it
    /// `DebugExit` fails with `IllegalOperation`, so no component stops the whole machine
    /// unless the system's description says it may.
    pub const TCB_ALLOW_END_RUN: u64 = 32;
    /// TCB: the thread may write to the kernel's debug console (`DebugPutChar`), and give
    /// others this privilege. Only a thread that may itself can give it (the root task's
    /// first thread can; the loader gives it to every component `system.toml` does not
    /// keep quiet); without it `DebugPutChar` fails with `IllegalOperation`, so a
    /// component kept off the console cannot fill the kernel's console queue.
    pub const TCB_ALLOW_CONSOLE: u64 = 33;
    /// TCB: the thread may read the kernel's audit log (`AuditRead`), and give others this
    /// privilege. Only a thread that may itself can give it (the root task's first thread
    /// can; the loader gives it to the threads the spec says read it: the toolstack that
    /// answers `cleave ctl audit`).
    pub const TCB_ALLOW_READ_AUDIT: u64 = 34;
    /// Frame: map into an address space.
    pub const FRAME_MAP: u64 = 40;
    /// Frame: unmap.
    pub const FRAME_UNMAP: u64 = 41;
    /// Frame: change the rights of its mapping.
    pub const FRAME_REMAP: u64 = 42;
    /// Frame: physical address (for DMA).
    pub const FRAME_GET_ADDRESS: u64 = 43;
    /// Frame: map into a guest-physical address space (MR0 EPT root, MR1 guest-physical
    /// address, MR2 rights: read, write, and execute unless MR3 bit 0 says execute-never).
    pub const FRAME_MAP_EPT: u64 = 44;
    /// Page table (any level below the PML4): map into an address space.
    pub const PAGE_TABLE_MAP: u64 = 50;
    /// Page table: unmap.
    pub const PAGE_TABLE_UNMAP: u64 = 51;
    /// IrqControl: issue an IrqHandler for a line.
    pub const IRQ_CONTROL_GET: u64 = 60;
    /// IrqHandler: acknowledge (unmask) the line.
    pub const IRQ_HANDLER_ACK: u64 = 61;
    /// IrqHandler: deliver the line to a notification.
    pub const IRQ_HANDLER_SET_NOTIFICATION: u64 = 62;
    /// IrqHandler: stop delivering.
    pub const IRQ_HANDLER_CLEAR: u64 = 63;
    /// IoPortControl: issue an IoPort capability for a range.
    pub const IO_PORT_CONTROL_ISSUE: u64 = 70;
    /// IoPort: read a byte, word or doubleword (MR1 = width in bytes).
    pub const IO_PORT_IN: u64 = 71;
    /// IoPort: write a byte, word or doubleword.
    pub const IO_PORT_OUT: u64 = 72;
    /// AsidControl: make an ASID pool of the 4 KiB untyped capability MR0 (which must have
    /// no children), its capability into the slot MR1 (root), MR2 (index), MR3 (depth).
    /// At most 64 pools exist at once (`NotEnoughMemory`).
    pub const ASID_CONTROL_MAKE_POOL: u64 = 100;
    /// AsidPool: give the VSpace or EPT root capability MR0 (fresh from retype, without an
    /// ASID) an ASID from this pool: it cannot be mapped into, or copied, before. A full
    /// pool is `NotEnoughMemory`; so one holder of a pool can exhaust only that pool.
    pub const ASID_POOL_ASSIGN: u64 = 101;
    /// Vcpu: bind to a thread (MR0 its TCB), which then enters the guest with `VmEnter`.
    pub const VCPU_SET_TCB: u64 = 80;
    /// Vcpu: use a guest-physical address space (MR0 an EPT root capability).
    pub const VCPU_SET_EPT: u64 = 81;
    /// Vcpu (VT-x only): read a VMCS field (MR0 the field's encoding) → MR0 its value.
    /// VMMs use [`VCPU_READ_STATE`], the same on both architectures.
    pub const VCPU_READ_VMCS: u64 = 82;
    /// Vcpu (VT-x only): write a VMCS field a VMM may write (MR0 encoding, MR1 value).
    pub const VCPU_WRITE_VMCS: u64 = 83;
    /// Vcpu: read up to four of the guest's general registers, from index MR0 in
    /// `vcpu::REGISTERS` order (all in registers: no IPC buffer needed).
    pub const VCPU_READ_REGISTERS: u64 = 84;
    /// Vcpu: write up to three of the guest's general registers (MR1-MR3) from index MR0.
    pub const VCPU_WRITE_REGISTERS: u64 = 85;
    /// Vcpu: whether guest I/O to ports MR1..=MR2 exits (MR3: 1 exits, 0 goes to the
    /// hardware). Letting ports through needs an IoPort capability covering them (MR0),
    /// and lasts only as long as that capability (at most 8 ranges per Vcpu).
    pub const VCPU_SET_IO_EXIT: u64 = 86;
    /// Vcpu: whether the guest's RDMSR (MR1 bit 0) and WRMSR (bit 1) of MSR MR0 exit (set)
    /// or go to the processor (clear); only MSRs the VMCS switches may go through.
    pub const VCPU_SET_MSR_EXIT: u64 = 87;
    /// Vcpu: read up to four guest-state fields (MR0-MR3: `vcpu::state` numbers) → their
    /// values in the same order. The same on VT-x and SVM.
    pub const VCPU_READ_STATE: u64 = 88;
    /// Vcpu: write up to two guest-state fields (MR0 field, MR1 value, then MR2 field,
    /// MR3 value), in order; the first refused stops the rest (`vcpu::state` says what is
    /// refused).
    pub const VCPU_WRITE_STATE: u64 = 89;
    /// EPT table (levels 1-3): map into a guest-physical address space (MR0 EPT root,
    /// MR1 guest-physical address).
    pub const EPT_TABLE_MAP: u64 = 90;
    /// EPT table: unmap.
    pub const EPT_TABLE_UNMAP: u64 = 91;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_sizes() {
        for t in ObjectType::ALL {
            assert_eq!(ObjectType::from_raw(t as u64), Some(t));
        }
        assert_eq!(ObjectType::from_raw(99), None);
        assert_eq!(ObjectType::CNode.size_bits(8), Some(14));
        assert_eq!(ObjectType::CNode.size_bits(0), None);
        assert_eq!(ObjectType::Untyped.size_bits(3), None);
        assert_eq!(ObjectType::Untyped.size_bits(48), None);
        assert_eq!(ObjectType::Frame2M.size_bits(0), Some(21));
        assert!(!ObjectType::Tcb.allowed_from_device());
    }

    #[test]
    fn rights_never_grow_by_intersection() {
        for a in 0..16u8 {
            for b in 0..16u8 {
                let r = Rights(a).intersect(Rights(b));
                assert!(Rights(a).contains(r) && Rights(b).contains(r));
            }
        }
    }
}
