//! Virtual CPUs, the same on Intel VT-x and AMD SVM: the guest registers a Vcpu keeps,
//! what `VmEnter` returns (architecture-neutral exit reasons, which the kernel translates
//! from either processor's exits), and the guest-state fields a VMM reads and writes
//! (`VCPU_READ_STATE`, `VCPU_WRITE_STATE`), which the kernel maps onto a VMCS or a VMCB.
//! `doc/virtualization.md` says what each architecture does underneath.

/// The guest's general registers, in the order `VCPU_READ_REGISTERS` returns them and
/// `VCPU_WRITE_REGISTERS` takes them. (RSP, RIP and RFLAGS are [`state`] fields.)
pub const REGISTERS: [&str; 15] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// Index of each register in [`REGISTERS`].
pub mod reg {
    /// `rax`.
    pub const RAX: usize = 0;
    /// `rbx`.
    pub const RBX: usize = 1;
    /// `rcx`.
    pub const RCX: usize = 2;
    /// `rdx`.
    pub const RDX: usize = 3;
    /// `rsi`.
    pub const RSI: usize = 4;
    /// `rdi`.
    pub const RDI: usize = 5;
    /// `rbp`.
    pub const RBP: usize = 6;

    /// The index in [`super::REGISTERS`] of the register the x86 instruction encoding
    /// numbers `number` (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8-r15); `None` for rsp,
    /// which is the [`super::state::RSP`] field, and numbers above 15.
    pub const fn from_encoding(number: u64) -> Option<usize> {
        const ORDER: [Option<usize>; 16] = [
            Some(0),
            Some(2),
            Some(3),
            Some(1),
            None,
            Some(6),
            Some(4),
            Some(5),
            Some(7),
            Some(8),
            Some(9),
            Some(10),
            Some(11),
            Some(12),
            Some(13),
            Some(14),
        ];
        if number < 16 { ORDER[number as usize] } else { None }
    }
}

/// What `VmEnter` returns in message words 0-3: the same on both architectures.
pub mod exit {
    /// Word 0: the reason ([`reason`]).
    pub const REASON: usize = 0;
    /// Word 1: what the reason says more ([`io`], [`memory`], [`cr`], [`other`]).
    pub const DETAIL: usize = 1;
    /// Word 2: the guest-physical address ([`reason::MEMORY`]).
    pub const ADDRESS: usize = 2;
    /// Word 3: the exiting instruction's length, 0 where the processor did not say (SVM
    /// without next-RIP saving, as in QEMU, says it only for port I/O; the kernel gives it
    /// for the fixed-length instructions CPUID, HLT, RDMSR, WRMSR and VMCALL/VMMCALL, and
    /// the VMM decodes the rest).
    pub const INSTRUCTION_LENGTH: usize = 3;

    /// Exit reasons. External interrupts never reach a VMM: the kernel takes them and
    /// resumes the guest, or reschedules and later re-enters it transparently.
    pub mod reason {
        /// IN, OUT, INS, OUTS (detail: [`super::io`]).
        pub const PORT_IO: u64 = 1;
        /// An access to guest-physical memory not mapped, or not with these rights: EPT
        /// violation or nested page fault (detail: [`super::memory`]; word 2 the address).
        pub const MEMORY: u64 = 2;
        /// CPUID.
        pub const CPUID: u64 = 3;
        /// HLT.
        pub const HLT: u64 = 4;
        /// RDMSR (the MSR in rcx).
        pub const MSR_READ: u64 = 5;
        /// WRMSR (the MSR in rcx, the value in edx:eax).
        pub const MSR_WRITE: u64 = 6;
        /// A control-register access (detail: [`super::cr`]).
        pub const CR_ACCESS: u64 = 7;
        /// The guest can take an injected interrupt now (asked for with
        /// [`super::super::state::INTERRUPT_WINDOW`]).
        pub const INTERRUPT_WINDOW: u64 = 8;
        /// Shutdown (a triple fault): the guest is dead.
        pub const SHUTDOWN: u64 = 9;
        /// The processor refused to enter the guest with this state (detail: the
        /// architecture's code, [`super::other`]). A VMM bug, or a guest state the VMM let
        /// the guest scramble.
        pub const ENTRY_FAILED: u64 = 10;
        /// An exception the VMM asked to intercept (detail: vector).
        pub const EXCEPTION: u64 = 11;
        /// VMCALL or VMMCALL (3 bytes).
        pub const HYPERCALL: u64 = 12;
        /// Another virtualization instruction (VMX's VMXON, VMLAUNCH, …; SVM's VMRUN,
        /// VMLOAD, VMSAVE, STGI, CLGI, SKINIT, INVLPGA): never offered to guests (detail:
        /// [`super::other`]).
        pub const VIRTUALIZATION_INSTRUCTION: u64 = 13;
        /// A debug-register access (not switched between guests: it always exits).
        pub const DEBUG_REGISTER: u64 = 14;
        /// An exit with no neutral reason (detail: [`super::other`]).
        pub const OTHER: u64 = 15;
        /// Not a guest exit: the VMM thread's bound notification was signalled, before
        /// `VmEnter` entered the guest or while the guest ran. The guest's state is as
        /// the last exit (or the VMM) left it; the detail is the notification's word (the
        /// badges of everyone who signalled), which `VmEnter` took, as a receive would.
        /// This is how a VMM that runs its guest hears from the components serving it.
        pub const NOTIFIED: u64 = 16;
        /// A physical interrupt arrived while the guest ran (the kernel's: a VMM never
        /// sees this reason).
        pub const INTERRUPTED: u64 = 0xffff;
    }

    /// [`reason::PORT_IO`]'s detail.
    pub mod io {
        /// The port (bits 15:0).
        pub const PORT: u64 = 0xffff;
        /// The access size in bytes (1, 2 or 4) is at this shift.
        pub const SIZE_SHIFT: u32 = 16;
        /// IN (clear: OUT).
        pub const IN: u64 = 1 << 24;
        /// INS or OUTS.
        pub const STRING: u64 = 1 << 25;
        /// With a REP prefix.
        pub const REP: u64 = 1 << 26;
    }

    /// [`reason::MEMORY`]'s detail: what the access was, and whether the address is
    /// mapped at all.
    pub mod memory {
        /// A read (data).
        pub const READ: u64 = 1 << 0;
        /// A write.
        pub const WRITE: u64 = 1 << 1;
        /// An instruction fetch.
        pub const FETCH: u64 = 1 << 2;
        /// The address is mapped, without the rights this access needs (clear: nothing is
        /// mapped there).
        pub const MAPPED: u64 = 1 << 3;
    }

    /// [`reason::CR_ACCESS`]'s detail.
    pub mod cr {
        /// The control register's number (bits 3:0).
        pub const NUMBER: u64 = 0xf;
        /// A `mov` to the register (clear: any other access).
        pub const WRITE: u64 = 1 << 4;
        /// The source register's number in the x86 encoding (bits 11:8, see
        /// [`super::super::reg::from_encoding`]), valid when [`REGISTER_KNOWN`] is set;
        /// otherwise the VMM decodes the instruction at RIP.
        pub const REGISTER_SHIFT: u32 = 8;
        /// The processor said which register.
        pub const REGISTER_KNOWN: u64 = 1 << 12;
    }

    /// The architecture's own code, in [`reason::OTHER`], [`reason::ENTRY_FAILED`] and
    /// [`reason::VIRTUALIZATION_INSTRUCTION`] details: the low 32 bits, and which
    /// architecture in bits 33:32.
    pub mod other {
        /// The code is VT-x's basic exit reason (or, for a failed VMLAUNCH/VMRESUME,
        /// [`VMX_INSTRUCTION_ERROR`] plus the VM-instruction error).
        pub const VMX: u64 = 1 << 32;
        /// The code is SVM's exit code.
        pub const SVM: u64 = 2 << 32;
        /// Marks a VT-x VM-instruction error (VMLAUNCH or VMRESUME failed outright).
        pub const VMX_INSTRUCTION_ERROR: u64 = 1 << 16;
    }
}

/// Guest-state fields (`VCPU_READ_STATE`, `VCPU_WRITE_STATE`). Host state, the nested
/// paging root, the permission maps and the intercepts are the kernel's and have no field.
pub mod state {
    /// RIP.
    pub const RIP: u64 = 0;
    /// RSP.
    pub const RSP: u64 = 1;
    /// RFLAGS.
    pub const RFLAGS: u64 = 2;
    /// CR0.
    pub const CR0: u64 = 3;
    /// CR2.
    pub const CR2: u64 = 4;
    /// CR3.
    pub const CR3: u64 = 5;
    /// CR4 as the guest sees it. The kernel keeps the bits it needs (VT-x's VMXE) out of
    /// sight and refuses bits whose state it does not switch (PKE) and VMXE.
    pub const CR4: u64 = 6;
    /// IA32_EFER as the guest sees it: SCE, LME, LMA and NXE only (SVM's SVME is the
    /// kernel's, always set underneath and never shown; other bits are refused). On VT-x
    /// writing it also sets the "IA-32e mode guest" entry control to LMA.
    pub const EFER: u64 = 7;
    /// Bit 0: interrupts are blocked for one instruction (after STI or a MOV to SS).
    pub const INTERRUPT_SHADOW: u64 = 8;
    /// The event to inject at the next entry ([`event`] format); valid bit clear: none.
    /// After an exit that interrupted the delivery of an event, the kernel puts that event
    /// here again, so it is delivered at the next entry unless the VMM replaces it.
    pub const EVENT: u64 = 9;
    /// 1: exit ([`super::exit::reason::INTERRUPT_WINDOW`]) as soon as the guest can take
    /// an interrupt; 0: do not.
    pub const INTERRUPT_WINDOW: u64 = 10;
    /// DR7 (the guest's breakpoint enables; DR0-DR3 are not switched, so they stay off).
    pub const DR7: u64 = 11;
    /// The first segment field: segment `s` part `p` is `SEGMENT + 4 * s + p`.
    pub const SEGMENT: u64 = 0x10;
    /// How many fields there are (0..COUNT; some numbers below are unused).
    pub const COUNT: u64 = SEGMENT + 4 * 10;

    /// The field of segment `segment` ([`segment`]) part `part` ([`part`]).
    pub const fn segment(segment: u64, part: u64) -> u64 {
        SEGMENT + 4 * segment + part
    }

    /// Segments (and descriptor tables: GDTR and IDTR have only a base and a limit).
    pub mod segment {
        /// ES.
        pub const ES: u64 = 0;
        /// CS.
        pub const CS: u64 = 1;
        /// SS.
        pub const SS: u64 = 2;
        /// DS.
        pub const DS: u64 = 3;
        /// FS.
        pub const FS: u64 = 4;
        /// GS.
        pub const GS: u64 = 5;
        /// LDTR.
        pub const LDTR: u64 = 6;
        /// TR.
        pub const TR: u64 = 7;
        /// GDTR.
        pub const GDTR: u64 = 8;
        /// IDTR.
        pub const IDTR: u64 = 9;
    }

    /// Parts of a segment field.
    pub mod part {
        /// The selector.
        pub const SELECTOR: u64 = 0;
        /// The base.
        pub const BASE: u64 = 1;
        /// The limit (in bytes, as the processor applies it).
        pub const LIMIT: u64 = 2;
        /// The attributes, in VT-x's access-rights layout: type (3:0), S (4), DPL (6:5),
        /// P (7), AVL (12), L (13), D/B (14), G (15), and bit 16 "unusable" (a null
        /// segment). SVM's compressed attributes are converted both ways.
        pub const ATTRIBUTES: u64 = 3;
    }

    /// The [`super::state::EVENT`] format (VT-x's entry interruption information and SVM's
    /// EVENTINJ agree on it): vector (7:0), type (10:8), an error code (bit 11, the code in
    /// bits 63:32), valid (31).
    pub mod event {
        /// The event is to be delivered.
        pub const VALID: u64 = 1 << 31;
        /// An error code is pushed (bits 63:32).
        pub const ERROR_CODE: u64 = 1 << 11;
        /// The type is at this shift.
        pub const TYPE_SHIFT: u32 = 8;
        /// Type: an external interrupt.
        pub const EXTERNAL: u64 = 0;
        /// Type: a non-maskable interrupt (vector 2).
        pub const NMI: u64 = 2;
        /// Type: a hardware exception (vectors 0-31).
        pub const EXCEPTION: u64 = 3;

        /// An external interrupt with `vector`, to inject.
        pub const fn external(vector: u8) -> u64 {
            vector as u64 | EXTERNAL << TYPE_SHIFT | VALID
        }
    }
}
