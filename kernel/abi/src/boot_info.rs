//! What the kernel tells the root task at start: the BootInfo page and the well-known
//! slots of its CSpace.

/// Where the kernel maps the BootInfo page in the root task (read-only).
pub const BOOT_INFO_ADDRESS: u64 = 0x0000_7fff_ffff_e000;
/// Where the kernel maps the root task's IPC buffer.
pub const ROOT_IPC_BUFFER_ADDRESS: u64 = 0x0000_7fff_ffff_c000;
/// Radix of the root task's CNode (16384 slots: the loader keeps a capability to every
/// object and page it makes, and a VMM embedding a Linux image has thousands of pages); its
/// guard makes a plain slot index a
/// complete 64-bit capability address.
pub const ROOT_CNODE_RADIX: u32 = 14;

/// Well-known slots of the root CNode.
pub mod slot {
    /// Always empty.
    pub const NULL: u64 = 0;
    /// The root task's TCB.
    pub const TCB: u64 = 1;
    /// The root CNode itself.
    pub const CNODE: u64 = 2;
    /// The root task's VSpace (PML4).
    pub const VSPACE: u64 = 3;
    /// IrqControl: issues IrqHandler capabilities.
    pub const IRQ_CONTROL: u64 = 4;
    /// IoPortControl: issues IoPort capabilities.
    pub const IO_PORT_CONTROL: u64 = 5;
    /// The BootInfo frame.
    pub const BOOT_INFO_FRAME: u64 = 6;
    /// The root task's IPC buffer frame.
    pub const IPC_BUFFER: u64 = 7;
    /// AsidControl: makes ASID pools from 4 KiB of untyped memory.
    pub const ASID_CONTROL: u64 = 8;
    /// The root task's ASID pool (its own VSpace has one of its ASIDs).
    pub const ASID_POOL: u64 = 9;
    /// First slot the kernel fills with untyped capabilities.
    pub const FIRST_UNTYPED: u64 = 10;
}

/// Most untyped regions the BootInfo describes.
pub const MAX_UNTYPED: usize = 200;

/// One untyped region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UntypedDescriptor {
    /// Physical address of the region.
    pub physical_address: u64,
    /// Log2 of its size.
    pub size_bits: u8,
    /// 1 for device memory (MMIO: can only become frames), 0 for RAM.
    pub is_device: u8,
    /// Padding.
    pub padding: [u8; 6],
}

/// The BootInfo page.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BootInfo {
    /// Layout version: [`BootInfo::VERSION`].
    pub version: u64,
    /// Radix of the root CNode.
    pub root_cnode_radix: u64,
    /// First empty slot of the root CNode.
    pub empty_first: u64,
    /// One past the last empty slot.
    pub empty_end: u64,
    /// First slot holding an untyped capability (the i-th describes `untyped[i]`).
    pub untyped_first: u64,
    /// Number of untyped capabilities.
    pub untyped_count: u64,
    /// Where the root task's IPC buffer is mapped.
    pub ipc_buffer: u64,
    /// First and last I/O port the IoPortControl capability covers.
    pub io_ports: [u16; 2],
    /// Legacy IRQ lines the IrqControl capability can issue handlers for.
    pub irq_lines: u32,
    /// The untyped regions.
    pub untyped: [UntypedDescriptor; MAX_UNTYPED],
}

impl BootInfo {
    /// The layout version this crate describes.
    pub const VERSION: u64 = 1;
}

const _: () = assert!(core::mem::size_of::<UntypedDescriptor>() == 16);
const _: () = assert!(core::mem::size_of::<BootInfo>() == 64 + 16 * MAX_UNTYPED);
const _: () = assert!(core::mem::size_of::<BootInfo>() <= 4096);
