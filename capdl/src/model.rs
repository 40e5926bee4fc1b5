//! The specification model: objects, capabilities in slots, IRQ maps.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A reference to an object: a name, and an index if the name declares an array.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjRef {
    /// The declared name.
    pub name: String,
    /// The element of an array, if any.
    pub index: Option<u32>,
}

impl ObjRef {
    /// A plain name.
    pub fn named(name: &str) -> Self {
        Self { name: name.into(), index: None }
    }
    /// Element `index` of array `name`.
    pub fn element(name: &str, index: u32) -> Self {
        Self { name: name.into(), index: Some(index) }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Thread parameters (all optional in the text syntax).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcbParams {
    /// IPC buffer address.
    pub addr: Option<u64>,
    /// Initial instruction pointer.
    pub ip: Option<u64>,
    /// Initial stack pointer.
    pub sp: Option<u64>,
    /// Priority.
    pub prio: Option<u64>,
    /// Maximum controlled priority.
    pub max_prio: Option<u64>,
    /// Processor affinity.
    pub affinity: Option<u64>,
    /// Whether the loader starts it.
    pub resume: Option<bool>,
    /// Scheduling domain.
    pub dom: Option<u64>,
    /// Fault endpoint capability address (the old form; newer specs use a slot).
    pub fault_ep: Option<u64>,
    /// Initial argument registers.
    pub init: Vec<u64>,
    /// The ELF image the loader loads into its address space (`elf: name`).
    pub elf: Option<String>,
    /// Cleave: what happens to the component over time (`lifetime: …`, `restart_ms: N`);
    /// `None` is persistent.
    pub lifetime: Option<Lifetime>,
    /// Cleave: the thread may end the run (`ends_run: True`; the kernel's `DebugExit`,
    /// which the loader allows with `TCB_ALLOW_END_RUN`).
    pub ends_run: bool,
    /// Cleave: the thread may not write to the debug console (`quiet: True`); otherwise
    /// the loader allows it with `TCB_ALLOW_CONSOLE`.
    pub quiet: bool,
    /// Cleave: the thread may read the kernel's audit log (`reads_audit: True`; the
    /// kernel's `AuditRead`, which the loader allows with `TCB_ALLOW_READ_AUDIT`).
    pub reads_audit: bool,
    /// Cleave: the pages of stack the loader gives the thread (`stack_pages: N`, 1 to
    /// `binary::MAX_STACK_PAGES`); `None` is `cleave_abi::layout::COMPONENT_STACK_PAGES`.
    pub stack_pages: Option<u64>,
    /// `fpu_disabled: True`: the thread runs without the floating-point unit (seL4).
    pub fpu_disabled: Option<bool>,
}

/// Cleave's component lifetimes (`system.toml`'s `lifetime` and `restart`), recorded in the
/// spec for the supervisor that enforces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// `lifetime: persistent`: runs until the system stops.
    Persistent,
    /// `lifetime: disposable`: destroyed once it says it is done.
    Disposable,
    /// `lifetime: restart, restart_ms: N`: restarted from its pristine image every N ms.
    RestartEvery { ms: u64 },
    /// `lifetime: per_request`: rolled back after every request.
    PerRequest,
}

impl Lifetime {
    /// The keyword in the text syntax.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Persistent => "persistent",
            Self::Disposable => "disposable",
            Self::RestartEvery { .. } => "restart",
            Self::PerRequest => "per_request",
        }
    }

    /// The binary encoding: the kind in bits 0-7, the restart period in ms above.
    pub fn encode(self) -> u64 {
        use crate::binary::lifetime;
        match self {
            Self::Persistent => lifetime::PERSISTENT,
            Self::Disposable => lifetime::DISPOSABLE,
            Self::RestartEvery { ms } => lifetime::RESTART | ms << 8,
            Self::PerRequest => lifetime::PER_REQUEST,
        }
    }
}

/// The kind of an object and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// `ep`.
    Endpoint,
    /// `notification`.
    Notification,
    /// `tcb (…)`.
    Tcb(TcbParams),
    /// `cnode (N bits)`.
    CNode { size_bits: u32 },
    /// `ut (N bits, paddr: …)`: untyped memory; what it is split into is in
    /// [`Spec::covers`].
    Untyped { size_bits: Option<u32>, paddr: Option<u64> },
    /// `frame (4k, paddr: …, fill: […])`: size in bytes.
    Frame { size: u64, paddr: Option<u64>, fill: Vec<String> },
    /// `pt`.
    PageTable,
    /// `pd`.
    PageDirectory,
    /// `pdpt`.
    Pdpt,
    /// `pml4`.
    Pml4,
    /// `irq`: an interrupt line's handler object (slot 0 names its notification).
    Irq,
    /// `ioapic_irq (ioapic_num: …, ioapic_pin: …, ioapic_level: …, ioapic_polarity: …)`:
    /// the handler of an interrupt routed through an I/O APIC pin (level: 1 level-triggered,
    /// polarity: 1 active low; slot 0 names its notification).
    IoApicIrq { ioapic: u64, pin: u64, level: u64, polarity: u64 },
    /// `msi_irq (msi_handle: …, msi_pci_bus: …, msi_pci_dev: …, msi_pci_fun: …)`: the
    /// handler of a PCI device's message-signalled interrupt (slot 0 names its notification).
    MsiIrq { handle: u64, bus: u64, dev: u64, fun: u64 },
    /// `io_device (domainID: …, bus:dev.fun)`: a PCI device's I/O address space under the
    /// IOMMU (VT-d); slot 0 names its top I/O page table.
    IoDevice { domain_id: u64, bus: u64, dev: u64, fun: u64 },
    /// `io_pt (level: …)`: an IOMMU (VT-d) page table, level 1 mapping frames.
    IoPageTable { level: u64 },
    /// `io_ports (ports: [a..b])`.
    IoPorts { first: u64, last: u64 },
    /// `asid_pool (asid_high: …)`.
    AsidPool { asid_high: Option<u64> },
    /// `vcpu`.
    Vcpu,
    /// `ept_pml4`, `ept_pdpt`, `ept_pd`, `ept_pt`: a guest's second-level (EPT) tables, top
    /// level 4 down to page tables at level 1 (Cleave's names; built from issue 5 on).
    EptTable { level: u8 },
    /// `sc (period: …, budget: …, data: …, N bits)`.
    SchedContext { period: Option<u64>, budget: Option<u64>, data: Option<u64>, size_bits: Option<u32> },
    /// `rtreply`.
    Reply,
}

impl ObjectKind {
    /// The type keyword in the text syntax.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Endpoint => "ep",
            Self::Notification => "notification",
            Self::Tcb(_) => "tcb",
            Self::CNode { .. } => "cnode",
            Self::Untyped { .. } => "ut",
            Self::Frame { .. } => "frame",
            Self::PageTable => "pt",
            Self::PageDirectory => "pd",
            Self::Pdpt => "pdpt",
            Self::Pml4 => "pml4",
            Self::Irq => "irq",
            Self::IoApicIrq { .. } => "ioapic_irq",
            Self::MsiIrq { .. } => "msi_irq",
            Self::IoDevice { .. } => "io_device",
            Self::IoPageTable { .. } => "io_pt",
            Self::IoPorts { .. } => "io_ports",
            Self::AsidPool { .. } => "asid_pool",
            Self::Vcpu => "vcpu",
            Self::EptTable { level: 4 } => "ept_pml4",
            Self::EptTable { level: 3 } => "ept_pdpt",
            Self::EptTable { level: 2 } => "ept_pd",
            Self::EptTable { .. } => "ept_pt",
            Self::SchedContext { .. } => "sc",
            Self::Reply => "rtreply",
        }
    }

    /// Whether it is an interrupt's handler object (what `irq maps` names).
    pub fn is_irq(&self) -> bool {
        matches!(self, Self::Irq | Self::IoApicIrq { .. } | Self::MsiIrq { .. })
    }

    /// Log2 of its size in bytes when it is made from untyped memory: the sizes of Cleave's
    /// kernel (`cleave_abi::object`), and seL4's x86_64 sizes for the objects Cleave does not
    /// build (ASID pool, I/O page table, scheduling context, reply). `None` for what is not
    /// made from memory (interrupts, I/O ports, I/O devices) and for sizes not given or out
    /// of range.
    pub fn memory_bits(&self) -> Option<u32> {
        use cleave_abi::object::ObjectType as T;
        match self {
            Self::Endpoint => T::Endpoint.size_bits(0),
            Self::Notification => T::Notification.size_bits(0),
            Self::Tcb(_) => T::Tcb.size_bits(0),
            Self::CNode { size_bits } => T::CNode.size_bits(*size_bits),
            Self::Untyped { size_bits, .. } => size_bits.and_then(|b| T::Untyped.size_bits(b)),
            Self::Frame { size, .. } => size.is_power_of_two().then(|| size.trailing_zeros()),
            Self::PageTable => T::PageTable.size_bits(0),
            Self::PageDirectory => T::PageDirectory.size_bits(0),
            Self::Pdpt => T::Pdpt.size_bits(0),
            Self::Pml4 => T::Pml4.size_bits(0),
            Self::Vcpu => T::Vcpu.size_bits(0),
            Self::EptTable { level: 4 } => T::EptPml4.size_bits(0),
            Self::EptTable { level: 3 } => T::EptPdpt.size_bits(0),
            Self::EptTable { level: 2 } => T::EptPd.size_bits(0),
            Self::EptTable { .. } => T::EptPt.size_bits(0),
            // seL4 on x86_64: seL4_ASIDPoolBits, seL4_IOPageTableBits, seL4_MinSchedContextBits
            // (or the size given), seL4_ReplyBits.
            Self::AsidPool { .. } | Self::IoPageTable { .. } => Some(12),
            Self::SchedContext { size_bits, .. } => Some(size_bits.unwrap_or(7)).filter(|b| *b < 64),
            Self::Reply => Some(5),
            Self::Irq
            | Self::IoApicIrq { .. }
            | Self::MsiIrq { .. }
            | Self::IoDevice { .. }
            | Self::IoPorts { .. } => None,
        }
    }
}

/// A declared object (or array of objects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its name.
    pub name: String,
    /// For `name[N] = …`: N elements.
    pub count: Option<u32>,
    /// What it is.
    pub kind: ObjectKind,
}

/// Capability rights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// `R`.
    pub read: bool,
    /// `W`.
    pub write: bool,
    /// `G` (also written `X` by some tools).
    pub grant: bool,
    /// `P`: grant-reply.
    pub grant_reply: bool,
}

impl Rights {
    /// No right.
    pub const NONE: Self = Self { read: false, write: false, grant: false, grant_reply: false };
    /// Whether no right is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, letter) in [(self.read, 'R'), (self.write, 'W'), (self.grant, 'G'), (self.grant_reply, 'P')]
        {
            if set {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// What a capability points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A declared object.
    Object(ObjRef),
    /// `irq_control`.
    IrqControl,
    /// `asid_control`.
    AsidControl,
    /// `io_space_master`.
    IoSpaceMaster,
    /// `domain`.
    Domain,
    /// `sched_control (core: N)`.
    SchedControl,
}

/// Capability parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapParams {
    /// Rights (endpoints, notifications, frames).
    pub rights: Rights,
    /// Badge (endpoints, notifications); 0 = none.
    pub badge: u64,
    /// CNode guard.
    pub guard: u64,
    /// CNode guard size in bits.
    pub guard_size: u64,
    /// Frame mapped uncached.
    pub uncached: bool,
    /// Frame and page-table caps: `asid: (high, low)`.
    pub asid: Option<(u64, u64)>,
    /// TCB caps: a reply capability.
    pub reply: bool,
    /// TCB caps: the master reply capability.
    pub master_reply: bool,
    /// `sched_control`: the core.
    pub core: Option<u64>,
    /// Frame caps: `mapping: (table, slot)`, the page-table slot whose mapping this
    /// capability is.
    pub mapping: Option<CapRef>,
}

/// A slot of a container, as `(object, slot)`: where a capability is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapRef {
    /// The container.
    pub object: ObjRef,
    /// The slot.
    pub slot: u64,
}

impl fmt::Display for CapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.object, self.slot)
    }
}

/// seL4's domain schedule (`domains { … }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domains {
    /// `schedule: [(domain, duration), …]`; `(0, 0)` ends it.
    pub schedule: Vec<(u64, u64)>,
    /// `domain_set_start: N` (0 if not given), or `None` for `no_start`.
    pub start: Option<u64>,
    /// `index_shift: N` (0 if not given).
    pub index_shift: u64,
}

impl Default for Domains {
    fn default() -> Self {
        Self { schedule: Vec::new(), start: Some(0), index_shift: 0 }
    }
}

/// A capability in a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What it names.
    pub target: Target,
    /// Its parameters.
    pub params: CapParams,
}

/// A whole specification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// The architecture (`x86_64` for Cleave; others are read and kept).
    pub arch: String,
    /// Every declared object, in declaration order.
    pub objects: Vec<Object>,
    /// Slot contents of containers (CNodes, TCBs, page tables, IRQ objects).
    pub caps: BTreeMap<ObjRef, BTreeMap<u64, Cap>>,
    /// IRQ number to IRQ object.
    pub irqs: BTreeMap<u64, ObjRef>,
    /// Untyped memory (an untyped, or an element of an array of them) to the objects made
    /// from it, in the order given; the name of an array stands for all its elements.
    pub covers: BTreeMap<ObjRef, Vec<ObjRef>>,
    /// The capability derivation tree (`cdt { }`, `- child_of`): child to parent.
    pub cdt: BTreeMap<CapRef, CapRef>,
    /// The domain schedule, if the spec has a `domains` section.
    pub domains: Option<Domains>,
}

/// Symbolic slot names of TCBs (seL4's numbering).
pub const TCB_SLOT_NAMES: [(&str, u64); 10] = [
    ("cspace", 0),
    ("vspace", 1),
    ("reply_slot", 2),
    ("caller_slot", 3),
    ("ipc_buffer_slot", 4),
    ("fault_ep_slot", 5),
    ("sc_slot", 6),
    ("temp_fault_ep_slot", 7),
    ("bound_notification", 8),
    ("bound_vcpu", 9),
];
