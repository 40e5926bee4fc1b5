//! Virtual CPUs: binding a Vcpu to the thread that runs it, its guest-physical address
//! space, the guest registers it keeps, and which VMCS fields a VMM may touch. The
//! machine side (VMXON, VMREAD/VMWRITE, entering the guest) is the kernel's; this is the
//! policy, tested on the host.
//!
//! A Vcpu object is 32 KiB: the VMCS region (a VMCB on SVM), [`VcpuState`], the I/O and
//! MSR bitmaps (in each architecture's own layout: [`Layout`]) and the guest's
//! floating-point state. It is bound to at most one TCB and a TCB to at most one Vcpu;
//! deleting either unbinds them.

use super::cap::Cap;
use super::kmem::KernelMemory;
use super::slot::{Slot, SlotOps};
use super::space::ObjectSpace;
use super::tcb::{TcbRef, reg};
use crate::addr::PhysAddr;
use bytemuck::{Pod, Zeroable};
use cleave_abi::{Error, MessageInfo};

/// The page of a Vcpu after its VMCS region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct VcpuState {
    /// The guest's general registers (`cleave_abi::vcpu::REGISTERS` order).
    pub gprs: [u64; 15],
    /// The bound TCB's link, or 0.
    pub tcb: u64,
    /// The ASID of the guest-physical address space (an EPT root), or 0.
    pub ept_asid: u64,
    /// [`launch`] state of the VMCS.
    pub launch: u64,
    /// The guest's IA32_KERNEL_GS_BASE on VT-x, which the VMCS does not switch: the kernel
    /// loads it before each entry and saves it after each exit, so one guest's `swapgs`
    /// never sees another's per-CPU pointer. (On SVM, VMLOAD and VMSAVE switch it with the
    /// VMCB; this stays unused.)
    pub kernel_gs_base: u64,
    /// The guest's CR2 (its last page-fault address) on VT-x, likewise not in the VMCS:
    /// switched the same way. (On SVM the VMCB holds it.)
    pub cr2: u64,
    /// The EPT root [`VcpuState::ept_asid`] named when it was set: entering needs the ASID
    /// to still name this root.
    pub ept_root: u64,
    /// VT-x: the guest's STAR, LSTAR, CSTAR and SFMASK ([`SYSCALL_MSRS`]), which the VMCS
    /// does not switch: once its VMM lets one through ([`VcpuState::switch_syscall`]), the
    /// kernel loads these before each entry and saves them after each exit, restoring its
    /// own. (SVM's VMLOAD and VMSAVE switch them in the VMCB.)
    pub syscall_msrs: [u64; 4],
    /// VT-x: non-zero once a SYSCALL MSR goes through to the guest (never cleared).
    pub switch_syscall: u64,
}

/// The SYSCALL MSRs: STAR, LSTAR, CSTAR, SFMASK.
pub const SYSCALL_MSRS: [u32; 4] = [0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084];

/// Where a Vcpu's VMCS stands, as the kernel keeps it in [`VcpuState::launch`].
pub mod launch {
    /// Never used: the kernel writes the revision and initial fields before first use.
    pub const FRESH: u64 = 0;
    /// Initialised and clear: the next entry is VMLAUNCH.
    pub const CLEAR: u64 = 1;
    /// Launched: the next entry is VMRESUME.
    pub const LAUNCHED: u64 = 2;
}

/// Offset of [`VcpuState`] in a Vcpu object.
pub const STATE_OFFSET: u64 = 4096;
/// Offset of I/O bitmap A (ports 0-0x7fff) in a Vcpu object; bitmap B follows.
pub const IO_BITMAP_OFFSET: u64 = 2 * 4096;
/// Offset of the MSR bitmap in a Vcpu object on VT-x (one page).
pub const MSR_BITMAP_OFFSET: u64 = 4 * 4096;
/// Offset of the MSR permission map in a Vcpu object on SVM (two pages, after the
/// floating-point page; the I/O permission map is the three pages at [`IO_BITMAP_OFFSET`]).
pub const SVM_MSR_MAP_OFFSET: u64 = 6 * 4096;
/// Size of a Vcpu object.
pub const VCPU_SIZE: u64 = 8 * 4096;
const _: () = assert!(SVM_MSR_MAP_OFFSET + 2 * 4096 <= VCPU_SIZE);
/// Offset of the guest's floating-point state (x87, MMX, SSE: the 512-byte FXSAVE image)
/// in a Vcpu object. The processor holds one guest's state at a time
/// ([`ObjectSpace::fpu_owner`]); the kernel saves it here when another guest's is loaded.
pub const FPU_OFFSET: u64 = 5 * 4096;
/// Size of the FXSAVE image at [`FPU_OFFSET`].
pub const FPU_SIZE: u64 = 512;
/// Offset of the Vcpu's I/O grant slots: capability slots recording which port ranges its
/// guest reaches directly and by which IoPort capability (`Cap::VcpuIoGrant`, children of
/// that capability, so revoking or deleting it closes the ports again).
pub const IO_GRANT_OFFSET: u64 = FPU_OFFSET + 1024;
/// How many port ranges a Vcpu can let through at once.
pub const IO_GRANTS: u64 = 8;
const _: () =
    assert!(FPU_OFFSET + FPU_SIZE <= IO_GRANT_OFFSET && IO_GRANT_OFFSET + IO_GRANTS * 64 <= 6 * 4096);
/// The x87 control word of a fresh Vcpu's floating-point state: as FNINIT leaves it
/// (every x87 exception masked, 64-bit precision).
pub const FRESH_FCW: u16 = 0x037f;
/// The MXCSR of a fresh Vcpu's floating-point state: as reset leaves it (every SSE
/// exception masked).
pub const FRESH_MXCSR: u32 = 0x1f80;

/// How a Vcpu's bitmaps are laid out: VT-x's I/O bitmaps A and B and one-page MSR bitmap,
/// or SVM's I/O permission map (the same bit per port, and a third page for accesses that
/// run past port 0xffff) and two-page MSR permission map (a read and a write bit per MSR,
/// side by side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Intel VT-x.
    Vmx,
    /// AMD SVM.
    Svm,
}

impl Layout {
    /// Where the bit that makes guest `msr` accesses exit is, for a read or a `write`: the
    /// byte's offset in the Vcpu object and the bit in it; `None` for MSRs outside the
    /// bitmap's ranges, which always exit.
    pub fn msr_bit(self, msr: u32, write: bool) -> Option<(u64, u8)> {
        match self {
            Self::Vmx => {
                let (base, index) = match msr {
                    0..=0x1fff => (0, msr),
                    0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
                    _ => return None,
                };
                let half = if write { 2048 } else { 0 };
                Some((MSR_BITMAP_OFFSET + base + half + u64::from(index / 8), 1 << (index % 8)))
            }
            Self::Svm => {
                let (base, index) = match msr {
                    0..=0x1fff => (0, msr),
                    0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
                    0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
                    _ => return None,
                };
                let bit = 2 * index + u32::from(write);
                Some((SVM_MSR_MAP_OFFSET + base + u64::from(bit / 8), 1 << (bit % 8)))
            }
        }
    }

    /// The MSR and access (write or read) whose exit bit is bit `bit` (0-7) of the byte at
    /// `offset` in the Vcpu object: the inverse of [`Layout::msr_bit`]; `None` for bytes
    /// that are no MSR's (outside the MSR map, or SVM's reserved last quarter).
    pub fn msr_of(self, offset: u64, bit: u32) -> Option<(u32, bool)> {
        match self {
            Self::Vmx => {
                let rel = offset.checked_sub(MSR_BITMAP_OFFSET).filter(|&r| r < 4096)?;
                let write = rel >= 2048;
                let within = rel % 2048;
                let base = if within >= 1024 { 0xc000_0000 } else { 0 };
                Some((base + ((within % 1024) * 8) as u32 + bit, write))
            }
            Self::Svm => {
                let rel = offset.checked_sub(SVM_MSR_MAP_OFFSET).filter(|&r| r < 0x1800)?;
                let base = [0, 0xc000_0000, 0xc001_0000][(rel / 0x800) as usize];
                let position = (rel % 0x800) as u32 * 8 + bit;
                Some((base + position / 2, position % 2 == 1))
            }
        }
    }

    /// The pages of a fresh Vcpu whose bits are all set (everything exits), as offsets.
    pub fn bitmap_pages(self) -> &'static [u64] {
        match self {
            Self::Vmx => &[IO_BITMAP_OFFSET, IO_BITMAP_OFFSET + 4096, MSR_BITMAP_OFFSET],
            Self::Svm => &[
                IO_BITMAP_OFFSET,
                IO_BITMAP_OFFSET + 4096,
                IO_BITMAP_OFFSET + 2 * 4096,
                SVM_MSR_MAP_OFFSET,
                SVM_MSR_MAP_OFFSET + 4096,
            ],
        }
    }

    /// The MSRs a VMM may let through on this architecture: (MSR, whether writes may).
    /// On SVM, EFER always exits (its SVME bit must stay set under the guest and hidden
    /// from it), and the SYSCALL MSRs may go through: VMSAVE and VMLOAD switch them with
    /// the guest, as they do the FS, GS and kernel GS bases. On VT-x the VMCS does not
    /// switch the SYSCALL MSRs, so they always exit.
    pub fn pass_through(self) -> &'static [(u32, bool)] {
        match self {
            Self::Vmx => &MSR_PASS_THROUGH,
            Self::Svm => &SVM_MSR_PASS_THROUGH,
        }
    }
}

/// MSRs a VMM may let its guest read and write directly on VT-x: those the VMCS loads and
/// saves with the guest (FS and GS bases, the SYSENTER MSRs, EFER), the kernel GS base
/// (which the kernel switches per Vcpu), the SYSCALL MSRs (which the kernel switches for a
/// Vcpu once one goes through: [`VcpuState::switch_syscall`]), and the TSC for reading.
/// Everything else (PAT, the APIC base, …) always exits.
pub const MSR_PASS_THROUGH: [(u32, bool); 12] = [
    (0xc000_0102, true), // IA32_KERNEL_GS_BASE
    (0xc000_0100, true), // IA32_FS_BASE
    (0xc000_0101, true), // IA32_GS_BASE
    (0x174, true),       // IA32_SYSENTER_CS
    (0x175, true),       // IA32_SYSENTER_ESP
    (0x176, true),       // IA32_SYSENTER_EIP
    (0x10, false),       // IA32_TIME_STAMP_COUNTER (reads only)
    (0xc000_0080, true), // IA32_EFER (VT-x only)
    (0xc000_0081, true), // STAR (switched by the kernel)
    (0xc000_0082, true), // LSTAR
    (0xc000_0083, true), // CSTAR
    (0xc000_0084, true), // SFMASK
];

/// MSRs a VMM may let its guest read and write directly on SVM: what VMSAVE and VMLOAD
/// switch (the FS, GS and kernel GS bases, the SYSENTER MSRs, STAR, LSTAR, CSTAR and
/// SFMASK).
pub const SVM_MSR_PASS_THROUGH: [(u32, bool); 10] = [
    (0xc000_0102, true), // IA32_KERNEL_GS_BASE
    (0xc000_0100, true), // IA32_FS_BASE
    (0xc000_0101, true), // IA32_GS_BASE
    (0x174, true),       // IA32_SYSENTER_CS
    (0x175, true),       // IA32_SYSENTER_ESP
    (0x176, true),       // IA32_SYSENTER_EIP
    (0xc000_0081, true), // STAR
    (0xc000_0082, true), // LSTAR
    (0xc000_0083, true), // CSTAR
    (0xc000_0084, true), // SFMASK
];

/// What a VMM may do with a VMCS field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Neither read nor write (host state: it is the kernel's).
    None,
    /// Read only (exit information, most controls).
    Read,
    /// Read and write (guest state, event injection, CR masks and shadows, some controls).
    ReadWrite,
}

/// Primary processor-based controls a VMM may not turn off: CR8-load and CR8-store exiting
/// (19, 20: without them, or a TPR shadow, a 64-bit guest's `mov cr8` writes the host's
/// local APIC task priority and can silence the host's timer), MOV-DR exiting (23: the
/// kernel does not switch DR0-DR3 and DR6 between guests, so guests never touch them; a
/// VMM emulates them), the I/O bitmaps (25), the MSR bitmaps (28) and the secondary
/// controls (31). (The bitmaps start with every bit set: every port and MSR exits until the
/// VMM lets some through.)
pub const PRIMARY_REQUIRED: u64 = (1 << 19) | (1 << 20) | (1 << 23) | (1 << 25) | (1 << 28) | (1 << 31);
/// Primary processor-based controls a VMM may choose: interrupt-window exiting (2), HLT
/// exiting (7), MWAIT (10), RDPMC (11), RDTSC (12), MONITOR (29), PAUSE (30) exiting, and
/// NMI-window exiting (22).
pub const PRIMARY_CHOSEN: u64 =
    (1 << 2) | (1 << 7) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 22) | (1 << 29) | (1 << 30);
/// VM-entry controls a VMM may choose: IA-32e mode guest (9), for a guest that starts in
/// long mode. (The kernel keeps the ones it set, such as loading EFER.)
pub const ENTRY_CHOSEN: u64 = 1 << 9;
/// Secondary controls a VMM may not turn off: EPT (1) and unrestricted guest (7).
pub const SECONDARY_REQUIRED: u64 = (1 << 1) | (1 << 7);
/// Secondary controls a VMM may choose: RDTSCP (3), INVPCID (12), XSAVES (20).
pub const SECONDARY_CHOSEN: u64 = (1 << 3) | (1 << 12) | (1 << 20);

/// VMCS field encodings the policy names.
pub mod field {
    /// Primary processor-based VM-execution controls.
    pub const PRIMARY_CONTROLS: u32 = 0x4002;
    /// Secondary processor-based VM-execution controls.
    pub const SECONDARY_CONTROLS: u32 = 0x401e;
    /// VM-entry controls.
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    /// Exception bitmap.
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    /// VM-entry interruption information (event injection).
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    /// VM-entry exception error code.
    pub const ENTRY_EXCEPTION_ERROR: u32 = 0x4018;
    /// VM-entry instruction length.
    pub const ENTRY_INSTRUCTION_LENGTH: u32 = 0x401a;
    /// TSC offset (full).
    pub const TSC_OFFSET: u32 = 0x2010;
    /// CR0 guest/host mask.
    pub const CR0_MASK: u32 = 0x6000;
    /// CR4 guest/host mask.
    pub const CR4_MASK: u32 = 0x6002;
    /// CR0 read shadow.
    pub const CR0_SHADOW: u32 = 0x6004;
    /// CR4 read shadow.
    pub const CR4_SHADOW: u32 = 0x6006;
    /// Guest CR4.
    pub const GUEST_CR4: u32 = 0x6804;
    /// Guest activity state.
    pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    /// VMCS link pointer (guest-state area, but the kernel's).
    pub const VMCS_LINK_POINTER: u32 = 0x2800;
}

/// Whether `encoding` is a well-formed VMCS field encoding (SDM vol. 3, 25.11.2: bits
/// 31:15 and 12 are zero; the high-half access bit only on 64-bit fields).
pub fn well_formed(encoding: u64) -> bool {
    let width = (encoding >> 13) & 3;
    encoding >> 15 == 0 && encoding & (1 << 12) == 0 && (encoding & 1 == 0 || width == 1)
}

/// What a VMM may do with the field `encoding` (assumed well formed).
pub fn access(encoding: u32) -> Access {
    let kind = (encoding >> 10) & 3;
    match kind {
        // Host state: the kernel's alone.
        3 => Access::None,
        // Exit information.
        1 => Access::Read,
        // Guest state, except the link pointer, which must stay "none".
        2 if encoding & !1 == field::VMCS_LINK_POINTER => Access::Read,
        2 => Access::ReadWrite,
        // Controls.
        _ => match encoding {
            field::PRIMARY_CONTROLS
            | field::SECONDARY_CONTROLS
            | field::ENTRY_CONTROLS
            | field::EXCEPTION_BITMAP
            | field::ENTRY_INTERRUPTION_INFO
            | field::ENTRY_EXCEPTION_ERROR
            | field::ENTRY_INSTRUCTION_LENGTH
            | field::TSC_OFFSET
            | field::CR0_MASK
            | field::CR4_MASK
            | field::CR0_SHADOW
            | field::CR4_SHADOW => Access::ReadWrite,
            // The EPT pointer, bitmaps' addresses, pin-based, exit and entry controls and
            // the rest: the kernel sets them; a VMM may look.
            _ => Access::Read,
        },
    }
}

/// CR4 bits the kernel keeps for itself in every guest (the CR4 guest/host mask always
/// holds them): VMXE, which VMX operation needs set, and PKE, because the protection-key
/// register PKRU is not switched between guests (`doc/virtualization.md`).
pub const CR4_KERNEL_BITS: u64 = (1 << 13) | CR4_PKE;
/// CR4.PKE: protection keys for user pages.
pub const CR4_PKE: u64 = 1 << 22;

/// The value the kernel writes when a VMM writes `value` to `encoding`: the controls a
/// VMM may not clear are forced on; asking for a control it may not choose is refused;
/// the CR4 mask always keeps [`CR4_KERNEL_BITS`], and a guest CR4 with PKE is refused.
pub fn written_value(encoding: u32, value: u64) -> Result<u64, Error> {
    let (required, chosen) = match encoding {
        field::PRIMARY_CONTROLS => (PRIMARY_REQUIRED, PRIMARY_CHOSEN),
        field::SECONDARY_CONTROLS => (SECONDARY_REQUIRED, SECONDARY_CHOSEN),
        field::ENTRY_CONTROLS => (0, ENTRY_CHOSEN),
        field::CR4_MASK => return Ok(value | CR4_KERNEL_BITS),
        field::GUEST_CR4 if value & CR4_PKE != 0 => return Err(Error::IllegalOperation),
        // Active (0) or HLT (1) only: in shutdown or wait-for-SIPI the processor takes no
        // external interrupt and no exit would ever bring it back to the kernel.
        field::GUEST_ACTIVITY_STATE if value > 1 => return Err(Error::IllegalOperation),
        _ => return Ok(value),
    };
    if value & !(required | chosen) != 0 {
        return Err(Error::IllegalOperation);
    }
    Ok(value | required)
}

/// Where a Vcpu's state page is.
fn state_at(vcpu: PhysAddr) -> PhysAddr {
    PhysAddr(vcpu.0 + STATE_OFFSET)
}

impl<M: KernelMemory> ObjectSpace<M> {
    /// How Vcpus are laid out on this machine: SVM's when guests' spaces are NPT.
    pub fn vcpu_layout(&self) -> Layout {
        if self.guest_format() == super::paging::Format::Npt { Layout::Svm } else { Layout::Vmx }
    }

    /// The state page of the Vcpu at `vcpu`.
    pub fn vcpu_state(&self, vcpu: PhysAddr) -> VcpuState {
        self.mem.read(state_at(vcpu))
    }

    /// Replaces the state page of the Vcpu at `vcpu`.
    pub fn set_vcpu_state(&mut self, vcpu: PhysAddr, state: &VcpuState) {
        self.mem.write(state_at(vcpu), state)
    }

    /// Binds the Vcpu at `vcpu` to thread `t`, undoing both sides' earlier bindings.
    pub fn vcpu_bind(&mut self, vcpu: PhysAddr, t: TcbRef) {
        self.vcpu_unbind(vcpu);
        if let Some(old) = (t.vcpu(&self.mem) != 0).then(|| PhysAddr(t.vcpu(&self.mem))) {
            self.vcpu_unbind(old);
        }
        let mut state = self.vcpu_state(vcpu);
        state.tcb = t.link();
        self.set_vcpu_state(vcpu, &state);
        t.set_vcpu(&mut self.mem, vcpu.0);
    }

    /// Unbinds the Vcpu at `vcpu` from its thread, if it has one.
    pub fn vcpu_unbind(&mut self, vcpu: PhysAddr) {
        let mut state = self.vcpu_state(vcpu);
        if let Some(t) = TcbRef::from_link(state.tcb) {
            if t.vcpu(&self.mem) == vcpu.0 {
                t.set_vcpu(&mut self.mem, 0);
            }
            state.tcb = 0;
            self.set_vcpu_state(vcpu, &state);
        }
    }

    /// A thread or Vcpu is being destroyed: unbind it. A destroyed Vcpu whose VMCS is the
    /// processor's active one is cleared by the kernel before the memory can be reused.
    pub(crate) fn vcpu_destroyed(&mut self, vcpu: PhysAddr) {
        self.vcpu_unbind(vcpu);
        if self.active_vmcs == vcpu.0 {
            self.clear_active_vmcs = true;
        }
        // Its floating-point state dies with it: nothing saves it into memory that may
        // become another object. (The next guest's load replaces it in the processor.)
        if self.fpu_owner == vcpu.0 {
            self.fpu_owner = 0;
        }
    }

    /// Gives the Vcpu at `vcpu` the guest-physical address space of the EPT root
    /// capability `root`.
    pub fn vcpu_set_ept(&mut self, vcpu: PhysAddr, root: Cap) -> Result<(), Error> {
        let Cap::EptRoot { base, asid } = root else { return Err(Error::InvalidCapability) };
        if self.root_of(asid, super::paging::Space::GuestPhysical) != Some(base) {
            return Err(Error::InvalidCapability);
        }
        let mut state = self.vcpu_state(vcpu);
        state.ept_asid = asid;
        state.ept_root = base.0;
        self.set_vcpu_state(vcpu, &state);
        Ok(())
    }

    /// Sets guest registers `first..first + words.len()` (of 15).
    pub fn vcpu_write_registers(&mut self, vcpu: PhysAddr, first: usize, words: &[u64]) -> Result<(), Error> {
        let mut state = self.vcpu_state(vcpu);
        let end =
            first.checked_add(words.len()).filter(|&e| e <= state.gprs.len()).ok_or(Error::RangeError)?;
        state.gprs[first..end].copy_from_slice(words);
        self.set_vcpu_state(vcpu, &state);
        Ok(())
    }

    /// Sets whether guest I/O to ports `first..=last` exits. Letting ports through
    /// (`exit` false) needs the IoPort capability at `io_ports` covering them: a grant
    /// derived from it goes into one of the Vcpu's [`IO_GRANTS`] grant slots (none free:
    /// `NotEnoughMemory`), and the ports stay open only while that capability exists.
    /// Making ports exit needs nothing; grants wholly inside the range are dropped.
    pub fn vcpu_set_io_exit(
        &mut self,
        vcpu: PhysAddr,
        io_ports: Option<Slot>,
        first: u64,
        last: u64,
        exit: bool,
    ) -> Result<(), Error> {
        if first > last || last > 0xffff {
            return Err(Error::RangeError);
        }
        let (first, last) = (first as u16, last as u16);
        let grant = |i: u64| PhysAddr(vcpu.0 + IO_GRANT_OFFSET + i * 64);
        if exit {
            self.vcpu_close_ports(vcpu, first, last);
            for i in 0..IO_GRANTS {
                if let Cap::VcpuIoGrant { open_first, open_last, .. } = self.mem.cap_at(grant(i))
                    && first <= open_first
                    && open_last <= last
                {
                    self.delete(grant(i))?;
                }
            }
            return Ok(());
        }
        let source = io_ports.ok_or(Error::InvalidCapability)?;
        let Cap::IoPort { first: have_first, last: have_last } = self.mem.cap_at(source) else {
            return Err(Error::InvalidCapability);
        };
        if first < have_first || last > have_last {
            return Err(Error::InsufficientRights);
        }
        let free = (0..IO_GRANTS).map(grant).find(|&g| self.mem.cap_at(g).is_null());
        let slot = free.ok_or(Error::NotEnoughMemory)?;
        let record =
            Cap::VcpuIoGrant { vcpu, first: have_first, last: have_last, open_first: first, open_last: last };
        self.mem.insert(slot, record, source);
        self.vcpu_set_port_bits(vcpu, first, last, false);
        Ok(())
    }

    /// Makes guest I/O to ports `first..=last` exit again.
    pub(crate) fn vcpu_close_ports(&mut self, vcpu: PhysAddr, first: u16, last: u16) {
        self.vcpu_set_port_bits(vcpu, first, last, true);
    }

    fn vcpu_set_port_bits(&mut self, vcpu: PhysAddr, first: u16, last: u16, exit: bool) {
        for port in u64::from(first)..=u64::from(last) {
            let at = PhysAddr(vcpu.0 + IO_BITMAP_OFFSET + port / 8);
            let byte: u8 = self.mem.read(at);
            let bit = 1u8 << (port % 8);
            self.mem.write(at, &if exit { byte | bit } else { byte & !bit });
        }
    }

    /// Sets whether the guest's RDMSR (`read`) and WRMSR (`write`) of `msr` exit; only
    /// [`MSR_PASS_THROUGH`] MSRs may go through.
    pub fn vcpu_set_msr_exit(
        &mut self,
        vcpu: PhysAddr,
        msr: u64,
        read: bool,
        write: bool,
    ) -> Result<(), Error> {
        let msr = u32::try_from(msr).map_err(|_| Error::RangeError)?;
        let layout = self.vcpu_layout();
        let allowed = layout.pass_through().iter().find(|(m, _)| *m == msr);
        match allowed {
            None if !(read && write) => return Err(Error::IllegalOperation),
            Some((_, false)) if !write => return Err(Error::IllegalOperation),
            _ => {}
        }
        if layout == Layout::Vmx && SYSCALL_MSRS.contains(&msr) && !(read && write) {
            let mut state = self.vcpu_state(vcpu);
            state.switch_syscall = 1;
            self.set_vcpu_state(vcpu, &state);
        }
        for (is_write, exits) in [(false, read), (true, write)] {
            // Outside the bitmap's ranges an MSR always exits.
            let Some((offset, bit)) = layout.msr_bit(msr, is_write) else { return Ok(()) };
            let at = PhysAddr(vcpu.0 + offset);
            let byte: u8 = self.mem.read(at);
            self.mem.write(at, &if exits { byte | bit } else { byte & !bit });
        }
        Ok(())
    }

    /// Sets every bit of a fresh Vcpu's I/O and MSR bitmaps: everything exits.
    pub(crate) fn vcpu_init_bitmaps(&mut self, vcpu: PhysAddr) {
        let ones = [u64::MAX; 512];
        for &page in self.vcpu_layout().bitmap_pages() {
            self.mem.write(PhysAddr(vcpu.0 + page), &ones);
        }
        // Floating-point registers as a processor leaves them after reset and FNINIT: all
        // zero (the memory is), exceptions masked. FXSAVE layout: FCW at 0, MXCSR at 24.
        self.mem.write(PhysAddr(vcpu.0 + FPU_OFFSET), &FRESH_FCW);
        self.mem.write(PhysAddr(vcpu.0 + FPU_OFFSET + 24), &FRESH_MXCSR);
    }

    /// The floating-point state `vcpu`'s guest must find in the processor before it
    /// enters. Returns `None` if the processor already holds it; otherwise `(save, load)`:
    /// where the kernel saves the state the processor holds (the previous owner's image;
    /// `None` if no live Vcpu owns it) and where it loads this one's from. It then records
    /// `vcpu` as the owner.
    pub fn fpu_switch(&mut self, vcpu: PhysAddr) -> Option<(Option<PhysAddr>, PhysAddr)> {
        if self.fpu_owner == vcpu.0 {
            return None;
        }
        let save = (self.fpu_owner != 0).then(|| PhysAddr(self.fpu_owner + FPU_OFFSET));
        self.fpu_owner = vcpu.0;
        Some((save, PhysAddr(vcpu.0 + FPU_OFFSET)))
    }

    /// What `VmEnter` by `t` runs: its Vcpu and the EPT root of that Vcpu's
    /// guest-physical address space. A thread without a Vcpu, or a Vcpu without a live
    /// address space, cannot enter (`IllegalOperation`, `FailedLookup`).
    pub fn vm_enter_target(&self, t: TcbRef) -> Result<(PhysAddr, PhysAddr), Error> {
        let vcpu = t.vcpu(&self.mem);
        if vcpu == 0 {
            return Err(Error::IllegalOperation);
        }
        let state = self.vcpu_state(PhysAddr(vcpu));
        let root = self
            .root_of(state.ept_asid, super::paging::Space::GuestPhysical)
            .filter(|r| r.0 == state.ept_root)
            .ok_or(Error::FailedLookup)?;
        Ok((PhysAddr(vcpu), root))
    }

    /// `VmEnter` by `t` came back with an exit its VMM must see: status 0 and the four
    /// exit words (`cleave_abi::vcpu::exit`) in its message registers.
    pub fn vm_exited(&mut self, t: TcbRef, words: [u64; 4]) {
        t.set_reg(&mut self.mem, reg::RAX, 0);
        t.set_reg(&mut self.mem, reg::RSI, MessageInfo::new(0, 0, 0, 4).0);
        for (offset, word) in reg::MESSAGE.into_iter().zip(words) {
            t.set_reg(&mut self.mem, offset, word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_policy() {
        // Host state (HOST_RIP, HOST_CR3) is never readable or writable.
        assert_eq!(access(0x6c16), Access::None);
        assert_eq!(access(0x6c02), Access::None);
        // Guest state is the VMM's.
        assert_eq!(access(0x681e), Access::ReadWrite, "GUEST_RIP");
        assert_eq!(access(0x0802), Access::ReadWrite, "GUEST_CS_SELECTOR");
        assert_eq!(access(0x2800), Access::Read, "VMCS link pointer");
        assert_eq!(access(0x2801), Access::Read, "its high half");
        // Exit information is read only; the EPT pointer and pin controls are the kernel's.
        assert_eq!(access(0x4402), Access::Read, "exit reason");
        assert_eq!(access(0x201a), Access::Read, "EPT pointer");
        assert_eq!(access(0x4000), Access::Read, "pin-based controls");
        assert_eq!(access(field::ENTRY_INTERRUPTION_INFO), Access::ReadWrite);
        assert!(well_formed(0x681e) && well_formed(0x2801));
        assert!(!well_formed(0x681f), "high-half access on a natural-width field");
        assert!(!well_formed(0x1_0000) && !well_formed(0x1000));
    }

    #[test]
    fn pass_through_lists_only_switched_msrs() {
        // Both: the SYSCALL MSRs (VT-x: the kernel switches them once one goes through;
        // SVM: VMLOAD and VMSAVE do); never PAT or the APIC base; on SVM never EFER or the
        // TSC either.
        for msr in SYSCALL_MSRS {
            assert!(Layout::Vmx.pass_through().iter().any(|&(m, w)| m == msr && w), "{msr:#x}");
        }
        for host in [0x277, 0x1b] {
            assert!(MSR_PASS_THROUGH.iter().all(|(m, _)| *m != host), "{host:#x}");
        }
        for msr in [0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084] {
            assert!(Layout::Svm.pass_through().iter().any(|&(m, w)| m == msr && w), "{msr:#x}");
        }
        for host in [0x277, 0xc000_0080, 0x10, 0x1b] {
            assert!(Layout::Svm.pass_through().iter().all(|(m, _)| *m != host), "{host:#x}");
        }
    }

    #[test]
    fn msr_bits_sit_where_each_manual_puts_them() {
        // VT-x: read-low at 0, read-high at 1024, write-low at 2048, write-high at 3072.
        assert_eq!(Layout::Vmx.msr_bit(0x174, false), Some((MSR_BITMAP_OFFSET + 0x2e, 1 << 4)));
        assert_eq!(Layout::Vmx.msr_bit(0xc000_0100, true), Some((MSR_BITMAP_OFFSET + 3072 + 0x20, 1)));
        assert_eq!(Layout::Vmx.msr_bit(0xc001_0000, false), None, "no high-AMD range on VT-x");
        // SVM: two bits per MSR (read, then write), ranges at 0, 0x800, 0x1000.
        assert_eq!(Layout::Svm.msr_bit(0x174, false), Some((SVM_MSR_MAP_OFFSET + 0x5d, 1)));
        assert_eq!(Layout::Svm.msr_bit(0x174, true), Some((SVM_MSR_MAP_OFFSET + 0x5d, 2)));
        assert_eq!(Layout::Svm.msr_bit(0xc000_0082, true), Some((SVM_MSR_MAP_OFFSET + 0x800 + 0x20, 1 << 5)));
        assert_eq!(
            Layout::Svm.msr_bit(0xc001_0117, false),
            Some((SVM_MSR_MAP_OFFSET + 0x1000 + 0x45, 1 << 6))
        );
        assert_eq!(Layout::Svm.msr_bit(0x4000_0000, false), None);
        // Every bit of both maps lies inside the object and off the other pages, and
        // `msr_of` finds the MSR again.
        for layout in [Layout::Vmx, Layout::Svm] {
            for msr in (0..0x2000).chain(0xc000_0000..0xc000_2000).chain(0xc001_0000..0xc001_2000) {
                for write in [false, true] {
                    if let Some((offset, bit)) = layout.msr_bit(msr, write) {
                        let page = offset / 4096 * 4096;
                        assert!(layout.bitmap_pages().contains(&page), "{layout:?} {msr:#x} at {offset:#x}");
                        assert_eq!(layout.msr_of(offset, bit.trailing_zeros()), Some((msr, write)));
                    }
                }
            }
        }
        assert_eq!(Layout::Svm.msr_of(SVM_MSR_MAP_OFFSET + 0x1800, 0), None, "reserved quarter");
        assert_eq!(Layout::Vmx.msr_of(IO_BITMAP_OFFSET, 0), None);
        // EFER never goes through on SVM.
        assert!(Layout::Svm.pass_through().iter().all(|(m, _)| *m != 0xc000_0080));
        assert!(Layout::Vmx.pass_through().iter().any(|(m, _)| *m == 0xc000_0080));
    }

    #[test]
    fn controls_keep_what_the_kernel_needs() {
        // Interrupt-window exiting on: the required bits come along.
        assert_eq!(written_value(field::PRIMARY_CONTROLS, 1 << 2), Ok((1 << 2) | PRIMARY_REQUIRED));
        // The bitmaps cannot be turned off; "unconditional I/O exiting" (24) is refused.
        assert_eq!(written_value(field::PRIMARY_CONTROLS, 0), Ok(PRIMARY_REQUIRED));
        assert_eq!(written_value(field::PRIMARY_CONTROLS, 1 << 24), Err(Error::IllegalOperation));
        // EPT stays on; "virtualize APIC accesses" (0) is refused.
        assert_eq!(written_value(field::SECONDARY_CONTROLS, 0), Ok(SECONDARY_REQUIRED));
        assert_eq!(written_value(field::SECONDARY_CONTROLS, 1), Err(Error::IllegalOperation));
        assert_eq!(written_value(0x681e, 0x1234), Ok(0x1234));
        // CR4: the kernel's bits stay in the mask; protection keys are not offered.
        assert_eq!(written_value(field::CR4_MASK, 0), Ok(CR4_KERNEL_BITS));
        assert_eq!(written_value(field::GUEST_CR4, 0x2020), Ok(0x2020));
        assert_eq!(written_value(field::GUEST_CR4, 0x2020 | CR4_PKE), Err(Error::IllegalOperation));
        // CR8 exiting cannot be turned off (a guest's CR8 would be the host's APIC TPR).
        assert_eq!(written_value(field::PRIMARY_CONTROLS, 0).map(|v| v & (3 << 19)), Ok(3 << 19));
        // The guest may be active or halted, never in a state no interrupt leaves.
        assert_eq!(written_value(field::GUEST_ACTIVITY_STATE, 1), Ok(1));
        assert_eq!(written_value(field::GUEST_ACTIVITY_STATE, 3), Err(Error::IllegalOperation));
        assert_eq!(written_value(field::GUEST_ACTIVITY_STATE, 2), Err(Error::IllegalOperation));
        // Entry controls: long-mode guests only; "load IA32_PAT" (14) is the kernel's.
        assert_eq!(written_value(field::ENTRY_CONTROLS, 1 << 9), Ok(1 << 9));
        assert_eq!(written_value(field::ENTRY_CONTROLS, 1 << 14), Err(Error::IllegalOperation));
    }
}
