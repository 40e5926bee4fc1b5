//! Virtual CPUs (VT-x): the guest registers a Vcpu keeps besides its VMCS, what `VmEnter`
//! returns, and the exit reasons a VMM sees. VMCS field encodings are Intel's (SDM vol. 3,
//! appendix B); `doc/vmx.md` lists which fields a VMM may read and write.

/// The guest's general registers, in the order `VCPU_READ_REGISTERS` returns them and
/// `VCPU_WRITE_REGISTERS` takes them. (RSP, RIP and RFLAGS are VMCS fields.)
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
}

/// What `VmEnter` returns in message words 0-3.
pub mod exit {
    /// Word 0: the basic exit reason (bits 15:0 of the VMCS exit-reason field).
    pub const REASON: usize = 0;
    /// Word 1: the exit qualification.
    pub const QUALIFICATION: usize = 1;
    /// Word 2: the guest-physical address (EPT violations and misconfigurations).
    pub const GUEST_PHYSICAL: usize = 2;
    /// Word 3: the exiting instruction's length (where the processor reports it).
    pub const INSTRUCTION_LENGTH: usize = 3;

    /// Exit reasons a VMM sees (external interrupts never reach it: the kernel takes them
    /// and resumes the guest, or reschedules and later re-enters it transparently).
    pub mod reason {
        /// Exception or NMI (per the exception bitmap).
        pub const EXCEPTION: u64 = 0;
        /// A physical interrupt arrived while the guest ran (the kernel takes it; a VMM
        /// never sees this reason).
        pub const EXTERNAL_INTERRUPT: u64 = 1;
        /// Triple fault: the guest is dead.
        pub const TRIPLE_FAULT: u64 = 2;
        /// Interrupt window (the guest can take an injected interrupt now).
        pub const INTERRUPT_WINDOW: u64 = 7;
        /// CPUID.
        pub const CPUID: u64 = 10;
        /// HLT.
        pub const HLT: u64 = 12;
        /// Control-register access.
        pub const CR_ACCESS: u64 = 28;
        /// IN/OUT (qualification: size-1 in bits 2:0, 1 = IN in bit 3, string in bit 4,
        /// port in bits 31:16).
        pub const IO: u64 = 30;
        /// RDMSR.
        pub const RDMSR: u64 = 31;
        /// WRMSR.
        pub const WRMSR: u64 = 32;
        /// The guest state was refused at VM entry (word 1: nothing; a VMM bug).
        pub const INVALID_GUEST_STATE: u64 = 33;
        /// EPT violation: an access to guest-physical memory not mapped (or not with these
        /// rights); word 2 is the address.
        pub const EPT_VIOLATION: u64 = 48;
        /// EPT misconfiguration.
        pub const EPT_MISCONFIGURATION: u64 = 49;
    }
}

/// The VM-instruction error a failed entry reports is returned as the exit reason
/// `ENTRY_FAILED | error`.
pub const ENTRY_FAILED: u64 = 1 << 32;
