//! Capabilities: what they name and with which rights, and their 32-byte encoding.

use super::paging::{At, Space};
use crate::addr::PhysAddr;
use bytemuck::{Pod, Zeroable};
use cleave_abi::Rights;

/// Where a frame or table is mapped: the address space (by ASID) and the address, whose
/// kind (virtual or guest-physical) says which kind of space the ASID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The address space's identifier (index and generation).
    pub asid: u64,
    /// Where in that space.
    pub at: At,
}

/// A capability, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// An empty slot.
    Null,
    /// Untyped memory `[base, base + 2^size_bits)`; objects are carved from `watermark` on.
    /// `frames_only`: only frames may be made from it (`cleave_abi::UNTYPED_FRAMES_ONLY`,
    /// set by a mutate, never cleared), so its holder can make memory but no thread, CNode,
    /// Vcpu or smaller untyped.
    Untyped { base: PhysAddr, size_bits: u8, watermark: u64, device: bool, frames_only: bool },
    /// A CNode of 2^radix slots, addressed with `guard_bits` bits of `guard` first.
    CNode { base: PhysAddr, radix: u8, guard: u64, guard_bits: u8 },
    /// A thread.
    Tcb { base: PhysAddr },
    /// A synchronous endpoint; receivers see `badge`.
    Endpoint { base: PhysAddr, badge: u64, rights: Rights },
    /// A notification; a signal ORs `badge` into its word.
    Notification { base: PhysAddr, badge: u64, rights: Rights },
    /// A 4 KiB or (`large`) 2 MiB frame.
    Frame { base: PhysAddr, large: bool, device: bool, rights: Rights, mapping: Option<Mapping> },
    /// A page table of `level` 1 (PT), 2 (PD) or 3 (PDPT).
    PageTable { base: PhysAddr, level: u8, mapping: Option<Mapping> },
    /// The root (PML4) of an address space and its ASID.
    VSpace { base: PhysAddr, asid: u64 },
    /// Authority to create IRQ handlers.
    IrqControl,
    /// Authority over one interrupt line.
    IrqHandler { irq: u8 },
    /// Authority to create I/O port capabilities.
    IoPortControl,
    /// Authority over I/O ports `first..=last`.
    IoPort { first: u16, last: u16 },
    /// A virtual CPU (VMCS page, then a page of guest state).
    Vcpu { base: PhysAddr },
    /// The root (EPT PML4) of a guest-physical address space and its ASID.
    EptRoot { base: PhysAddr, asid: u64 },
    /// An EPT table of `level` 1 (PT), 2 (PD) or 3 (PDPT); a mapping's `vaddr` is the
    /// guest-physical address.
    EptTable { base: PhysAddr, level: u8, mapping: Option<Mapping> },
    /// The record that the Vcpu at `vcpu` lets its guest reach ports `open_first..=
    /// open_last` directly, by the authority of an IoPort capability over `first..=last`
    /// (its parent in the derivation tree). It lives in one of the Vcpu's grant slots and
    /// is never visible to users; deleting it (with the IoPort capability, or by revoke)
    /// makes those ports exit again.
    VcpuIoGrant { vcpu: PhysAddr, first: u16, last: u16, open_first: u16, open_last: u16 },
    /// Authority to make ASID pools.
    AsidControl,
    /// An ASID pool (a page of entries at `base`) in slot `high` of the kernel's pool table.
    AsidPool { base: PhysAddr, high: u8 },
}

/// Set in a stored mapping's ASID word when the mapping is in a guest-physical address
/// space (an ASID never has bit 62: `vspace::asid`).
const GUEST_PHYSICAL_MAPPING: u64 = 1 << 62;

/// A capability as stored: four words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct RawCap(pub [u64; 4]);

mod tag {
    pub const NULL: u64 = 0;
    pub const UNTYPED: u64 = 1;
    pub const CNODE: u64 = 2;
    pub const TCB: u64 = 3;
    pub const ENDPOINT: u64 = 4;
    pub const NOTIFICATION: u64 = 5;
    pub const FRAME: u64 = 6;
    pub const PAGE_TABLE: u64 = 7;
    pub const VSPACE: u64 = 8;
    pub const IRQ_CONTROL: u64 = 9;
    pub const IRQ_HANDLER: u64 = 10;
    pub const IO_PORT_CONTROL: u64 = 11;
    pub const IO_PORT: u64 = 12;
    pub const VCPU: u64 = 14;
    pub const EPT_ROOT: u64 = 15;
    pub const EPT_TABLE: u64 = 16;
    pub const VCPU_IO_GRANT: u64 = 17;
    pub const ASID_CONTROL: u64 = 18;
    pub const ASID_POOL: u64 = 19;
}

/// Fast field access to the first three stored words of a capability, for the IPC fast
/// path: the same meaning as [`Cap::decode`], without decoding every variant.
pub mod raw {
    use super::{PhysAddr, Rights, tag};

    /// A CNode capability's base, radix, guard and guard size.
    pub fn cnode(w: [u64; 3]) -> Option<(PhysAddr, u32, u64, u32)> {
        (w[0] & 0xff == tag::CNODE)
            .then(|| (PhysAddr(w[1]), ((w[0] >> 12) & 0xff) as u32, w[2], ((w[0] >> 20) & 0xff) as u32))
    }

    /// An endpoint capability's base, badge and rights.
    pub fn endpoint(w: [u64; 3]) -> Option<(PhysAddr, u64, Rights)> {
        (w[0] & 0xff == tag::ENDPOINT).then(|| (PhysAddr(w[1]), w[2], Rights(((w[0] >> 8) & 0xf) as u8)))
    }

    /// A notification capability's base, badge and rights.
    pub fn notification(w: [u64; 3]) -> Option<(PhysAddr, u64, Rights)> {
        (w[0] & 0xff == tag::NOTIFICATION).then(|| (PhysAddr(w[1]), w[2], Rights(((w[0] >> 8) & 0xf) as u8)))
    }

    /// A VSpace capability's PML4.
    pub fn vspace(w: [u64; 3]) -> Option<PhysAddr> {
        (w[0] & 0xff == tag::VSPACE).then_some(PhysAddr(w[1]))
    }
}

/// Tag of the internal marker written into a slot of a container under destruction
/// (see `object::destroy`); it decodes as [`Cap::Null`] and is never visible to users.
pub(crate) const LINK_TAG: u64 = 13;

const DEVICE: u64 = 1 << 28;
const MAPPED: u64 = 1 << 29;
const LARGE: u64 = 1 << 30;
const FRAMES_ONLY: u64 = 1 << 31;

/// What kind of object a capability names, for "same object" comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectRef {
    /// A kernel object at this address (the kind is implied by the capability type).
    Memory(u8, PhysAddr),
    /// Untyped memory at this address, of this size (an untyped and the first untyped
    /// retyped from it share their base).
    Untyped(PhysAddr, u8),
    /// An interrupt line.
    Irq(u8),
    /// A range of I/O ports.
    IoPorts(u16, u16),
    /// Nothing that needs tracking (control capabilities, I/O ports).
    None,
}

impl Cap {
    /// Encodes for storage.
    pub fn encode(self) -> RawCap {
        let mapping_words = |m: Option<Mapping>| match m {
            Some(Mapping { asid, at: at @ At::Virt(_) }) => (MAPPED, at.raw(), asid),
            Some(Mapping { asid, at: at @ At::GuestPhys(_) }) => {
                (MAPPED, at.raw(), asid | GUEST_PHYSICAL_MAPPING)
            }
            None => (0, 0, 0),
        };
        let words = match self {
            Self::Null => [tag::NULL, 0, 0, 0],
            Self::Untyped { base, size_bits, watermark, device, frames_only } => [
                tag::UNTYPED
                    | (u64::from(size_bits) << 12)
                    | if device { DEVICE } else { 0 }
                    | if frames_only { FRAMES_ONLY } else { 0 },
                base.0,
                watermark,
                0,
            ],
            Self::CNode { base, radix, guard, guard_bits } => {
                [tag::CNODE | (u64::from(radix) << 12) | (u64::from(guard_bits) << 20), base.0, guard, 0]
            }
            Self::Tcb { base } => [tag::TCB, base.0, 0, 0],
            Self::Endpoint { base, badge, rights } => {
                [tag::ENDPOINT | (u64::from(rights.0) << 8), base.0, badge, 0]
            }
            Self::Notification { base, badge, rights } => {
                [tag::NOTIFICATION | (u64::from(rights.0) << 8), base.0, badge, 0]
            }
            Self::Frame { base, large, device, rights, mapping } => {
                let (mapped, vaddr, asid) = mapping_words(mapping);
                let flags = mapped | if large { LARGE } else { 0 } | if device { DEVICE } else { 0 };
                [tag::FRAME | (u64::from(rights.0) << 8) | flags, base.0, vaddr, asid]
            }
            Self::PageTable { base, level, mapping } => {
                let (mapped, vaddr, asid) = mapping_words(mapping);
                [tag::PAGE_TABLE | (u64::from(level) << 12) | mapped, base.0, vaddr, asid]
            }
            Self::VSpace { base, asid } => [tag::VSPACE, base.0, asid, 0],
            Self::IrqControl => [tag::IRQ_CONTROL, 0, 0, 0],
            Self::IrqHandler { irq } => [tag::IRQ_HANDLER | (u64::from(irq) << 32), 0, 0, 0],
            Self::IoPortControl => [tag::IO_PORT_CONTROL, 0, 0, 0],
            Self::IoPort { first, last } => {
                [tag::IO_PORT | (u64::from(first) << 32) | (u64::from(last) << 48), 0, 0, 0]
            }
            Self::Vcpu { base } => [tag::VCPU, base.0, 0, 0],
            Self::EptRoot { base, asid } => [tag::EPT_ROOT, base.0, asid, 0],
            Self::EptTable { base, level, mapping } => {
                let (mapped, vaddr, asid) = mapping_words(mapping);
                [tag::EPT_TABLE | (u64::from(level) << 12) | mapped, base.0, vaddr, asid]
            }
            Self::VcpuIoGrant { vcpu, first, last, open_first, open_last } => [
                tag::VCPU_IO_GRANT | (u64::from(first) << 32) | (u64::from(last) << 48),
                vcpu.0,
                u64::from(open_first) | (u64::from(open_last) << 16),
                0,
            ],
            Self::AsidControl => [tag::ASID_CONTROL, 0, 0, 0],
            Self::AsidPool { base, high } => [tag::ASID_POOL | (u64::from(high) << 12), base.0, 0, 0],
        };
        RawCap(words)
    }

    /// Decodes a stored capability. Storage is written only by [`Cap::encode`], so an
    /// unknown tag (or the internal link marker) reads as [`Cap::Null`].
    pub fn decode(raw: RawCap) -> Self {
        let [w0, w1, w2, w3] = raw.0;
        let base = PhysAddr(w1);
        let rights = Rights(((w0 >> 8) & 0xf) as u8);
        let device = w0 & DEVICE != 0;
        let mapping = (w0 & MAPPED != 0).then(|| {
            let space = if w3 & GUEST_PHYSICAL_MAPPING != 0 { Space::GuestPhysical } else { Space::Virtual };
            Mapping { asid: w3 & !GUEST_PHYSICAL_MAPPING, at: At::of(space, w2) }
        });
        match w0 & 0xff {
            tag::UNTYPED => Self::Untyped {
                base,
                size_bits: ((w0 >> 12) & 0xff) as u8,
                watermark: w2,
                device,
                frames_only: w0 & FRAMES_ONLY != 0,
            },
            tag::CNODE => Self::CNode {
                base,
                radix: ((w0 >> 12) & 0xff) as u8,
                guard: w2,
                guard_bits: ((w0 >> 20) & 0xff) as u8,
            },
            tag::TCB => Self::Tcb { base },
            tag::ENDPOINT => Self::Endpoint { base, badge: w2, rights },
            tag::NOTIFICATION => Self::Notification { base, badge: w2, rights },
            tag::FRAME => Self::Frame { base, large: w0 & LARGE != 0, device, rights, mapping },
            tag::PAGE_TABLE => Self::PageTable { base, level: ((w0 >> 12) & 0xff) as u8, mapping },
            tag::VSPACE => Self::VSpace { base, asid: w2 },
            tag::IRQ_CONTROL => Self::IrqControl,
            tag::IRQ_HANDLER => Self::IrqHandler { irq: (w0 >> 32) as u8 },
            tag::IO_PORT_CONTROL => Self::IoPortControl,
            tag::IO_PORT => Self::IoPort { first: (w0 >> 32) as u16, last: (w0 >> 48) as u16 },
            tag::VCPU => Self::Vcpu { base },
            tag::EPT_ROOT => Self::EptRoot { base, asid: w2 },
            tag::EPT_TABLE => Self::EptTable { base, level: ((w0 >> 12) & 0xff) as u8, mapping },
            tag::VCPU_IO_GRANT => Self::VcpuIoGrant {
                vcpu: base,
                first: (w0 >> 32) as u16,
                last: (w0 >> 48) as u16,
                open_first: w2 as u16,
                open_last: (w2 >> 16) as u16,
            },
            tag::ASID_CONTROL => Self::AsidControl,
            tag::ASID_POOL => Self::AsidPool { base, high: ((w0 >> 12) & 0xff) as u8 },
            _ => Self::Null,
        }
    }

    /// Whether the slot is empty.
    pub fn is_null(self) -> bool {
        self == Self::Null
    }

    /// The object this capability names.
    pub fn object(self) -> ObjectRef {
        let memory = |kind: u8, base: PhysAddr| ObjectRef::Memory(kind, base);
        match self {
            Self::Untyped { base, size_bits, .. } => ObjectRef::Untyped(base, size_bits),
            Self::CNode { base, .. } => memory(2, base),
            Self::Tcb { base } => memory(3, base),
            Self::Endpoint { base, .. } => memory(4, base),
            Self::Notification { base, .. } => memory(5, base),
            Self::Frame { base, .. } => memory(6, base),
            Self::PageTable { base, .. } => memory(7, base),
            Self::VSpace { base, .. } => memory(8, base),
            Self::Vcpu { base } => memory(9, base),
            Self::EptRoot { base, .. } => memory(10, base),
            Self::EptTable { base, .. } => memory(11, base),
            Self::AsidPool { base, .. } => memory(12, base),
            Self::IrqHandler { irq } => ObjectRef::Irq(irq),
            Self::IoPort { first, last } | Self::VcpuIoGrant { first, last, .. } => {
                ObjectRef::IoPorts(first, last)
            }
            Self::Null | Self::IrqControl | Self::IoPortControl | Self::AsidControl => ObjectRef::None,
        }
    }

    /// The rights this capability carries (all for capability types without rights).
    pub fn rights(self) -> Rights {
        match self {
            Self::Endpoint { rights, .. }
            | Self::Notification { rights, .. }
            | Self::Frame { rights, .. } => rights,
            _ => Rights::ALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips() {
        use crate::addr::{GuestPhysAddr, VirtAddr};
        let m = Some(Mapping { asid: 0x1_0005, at: At::Virt(VirtAddr(0x7000_0000)) });
        let g = Some(Mapping { asid: 0x1_0005, at: At::GuestPhys(GuestPhysAddr(0x7000_0000)) });
        let caps = [
            Cap::Null,
            Cap::Untyped {
                base: PhysAddr(0x100_0000),
                size_bits: 24,
                watermark: 0x3000,
                device: true,
                frames_only: true,
            },
            Cap::CNode { base: PhysAddr(0x20_0000), radix: 12, guard: 0x5, guard_bits: 52 },
            Cap::Tcb { base: PhysAddr(0x30_0800) },
            Cap::Endpoint { base: PhysAddr(0x40_0020), badge: u64::MAX, rights: Rights(0b1011) },
            Cap::Notification { base: PhysAddr(0x40_0040), badge: 7, rights: Rights::WRITE },
            Cap::Frame {
                base: PhysAddr(0x60_0000),
                large: true,
                device: false,
                rights: Rights::READ,
                mapping: m,
            },
            Cap::Frame {
                base: PhysAddr(0x61_0000),
                large: false,
                device: true,
                rights: Rights::ALL,
                mapping: None,
            },
            Cap::PageTable { base: PhysAddr(0x70_0000), level: 2, mapping: m },
            Cap::VSpace { base: PhysAddr(0x80_0000), asid: 3 },
            Cap::IrqControl,
            Cap::IrqHandler { irq: 15 },
            Cap::IoPortControl,
            Cap::IoPort { first: 0x40, last: 0xffff },
            Cap::Vcpu { base: PhysAddr(0x90_2000) },
            Cap::EptRoot { base: PhysAddr(0x91_0000), asid: 0x2_0007 },
            Cap::EptTable { base: PhysAddr(0x92_0000), level: 3, mapping: g },
            Cap::Frame {
                base: PhysAddr(0x62_0000),
                large: false,
                device: false,
                rights: Rights::ALL,
                mapping: g,
            },
            Cap::VcpuIoGrant {
                vcpu: PhysAddr(0x98_0000),
                first: 0x60,
                last: 0xffff,
                open_first: 0x64,
                open_last: 0x7fff,
            },
            Cap::AsidControl,
            Cap::AsidPool { base: PhysAddr(0x99_0000), high: 63 },
        ];
        for cap in caps {
            assert_eq!(Cap::decode(cap.encode()), cap);
        }
    }

    #[test]
    fn raw_access_agrees_with_decode() {
        let three = |c: Cap| {
            let RawCap([a, b, c, _]) = c.encode();
            [a, b, c]
        };
        let cnode = Cap::CNode { base: PhysAddr(0x20_0000), radix: 12, guard: 5, guard_bits: 52 };
        assert_eq!(raw::cnode(three(cnode)), Some((PhysAddr(0x20_0000), 12, 5, 52)));
        let ep = Cap::Endpoint { base: PhysAddr(0x40_0020), badge: 9, rights: Rights(0b1011) };
        assert_eq!(raw::endpoint(three(ep)), Some((PhysAddr(0x40_0020), 9, Rights(0b1011))));
        assert_eq!(
            raw::vspace(three(Cap::VSpace { base: PhysAddr(0x8000), asid: 3 })),
            Some(PhysAddr(0x8000))
        );
        assert_eq!(raw::endpoint(three(cnode)), None);
        assert_eq!(raw::cnode(three(ep)), None);
        assert_eq!(raw::vspace(three(Cap::Null)), None);
    }

    #[test]
    fn link_markers_are_not_capabilities() {
        assert_eq!(Cap::decode(RawCap([LINK_TAG, 0x1000, 4, 2])), Cap::Null);
    }
}
