//! Why loading stopped: one variant per thing that can go wrong, each naming the object
//! it concerns and, where the kernel refused an invocation, the kernel's error. The
//! loader prints it as `loader: boot failed: WHAT (object `NAME`): ERROR`.

use cleave_abi::Error;
use core::fmt;

/// The spec's name of the object a failure concerns, if it has one.
pub type Name = Option<&'static str>;

/// Why loading stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// no boot image embedded (build with `cargo xtask build`)
    NoImage,
    /// boot image truncated
    ImageTruncated,
    /// the embedded specification is corrupt
    CorruptSpec,
    /// more objects than the loader can track
    TooManyObjects,
    /// object table (a record the spec's check let through cannot be read)
    ObjectTable,
    /// capability table (a record the spec's check let through cannot be read)
    CapabilityTable,
    /// table kind (a paging level without a slot size)
    TableKind,
    /// cannot create object
    Create(Name, Error),
    /// a CNode record smaller than one slot (a corrupt specification)
    CNodeBelowOneSlot(Name),
    /// an object made from a later untyped
    LaterUntyped(Name),
    /// irq object without a line
    IrqWithoutLine(Name),
    /// a frame's fill file is missing from the boot image
    FillFileMissing(Name),
    /// only 4 KiB frames are filled
    FillTooLarge(Name),
    /// two device frames at one physical address
    DeviceAddressTwice(Name),
    /// cannot create the device frame
    DeviceFrame(Name, Error),
    /// no device untyped covers this frame's physical address
    NoDeviceUntyped(Name),
    /// device frame not page-aligned
    DeviceUnaligned(Name),
    /// thread without an ELF image
    NoElf(Name),
    /// ELF image missing from the boot image
    ElfMissing(Name),
    /// bad ELF image
    BadElf(Name),
    /// thread without a CSpace
    NoCSpace(Name),
    /// thread without a VSpace
    NoVSpace(Name),
    /// its writable pages exceed its `memory`
    WritableExceedsMemory(Name),
    /// its writable pages and stack exceed its `memory`
    StackExceedsMemory(Name),
    /// a restartable component without its pristine copy
    NoPristineCopy(Name),
    /// its program's initialized data passes the pages its pristine copy holds
    DataExceedsPristineCopy(Name),
    /// a TCB's fault endpoint must be an endpoint
    FaultEndpointKind(Name),
    /// a TCB's bound notification must be a notification
    BoundNotificationKind(Name),
    /// A step of setting up a thread failed in the kernel.
    Thread(Name, ThreadStep, Error),
    /// cannot place a capability
    Place(Name, Error),
    /// capability type not supported
    UnsupportedCap(Name),
    /// a TCB's slots hold its CSpace, VSpace, fault endpoint and bound notification only
    TcbSlot(Name),
    /// a Vcpu's slot 0 holds its TCB and slot 1 its EPT root
    VcpuSlot(Name),
    /// capabilities in this object are not supported
    UnsupportedContainer(Name),
    /// mapping of nothing
    MapOfNothing(Name),
    /// a table slot holds what that level cannot map
    TableSlot(Name),
    /// an EPT slot holds what that level cannot map
    EptSlot(Name),
    /// a table that no PML4 reaches
    NoRoot(Name),
    /// an EPT table that no EPT root reaches
    NoEptRoot(Name),
    /// cannot map
    Map(Name, Error),
    /// cannot map guest memory
    MapGuest(Name, Error),
    /// cannot start a thread
    Start(Name, Error),
}

/// The steps of setting up a thread the kernel may refuse; each says what could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadStep {
    /// cannot load the image
    LoadImage,
    /// cannot make the stack
    Stack,
    /// cannot make the pristine copy
    PristineCopy,
    /// cannot make the IPC buffer
    IpcBuffer,
    /// cannot guard the CSpace
    GuardCSpace,
    /// cannot make the fault endpoint
    FaultEndpoint,
    /// cannot configure the thread
    Configure,
    /// cannot bind the notification
    BindNotification,
    /// cannot let it end the run
    EndRun,
    /// cannot let it read the audit log
    ReadAudit,
    /// cannot let it write to the console
    Console,
    /// cannot make it serve one request per start
    OneRequest,
    /// cannot name the thread
    Name,
    /// cannot set the priority
    Priority,
    /// cannot set the maximum priority
    MaxPriority,
    /// cannot set the registers
    Registers,
}

impl ThreadStep {
    fn message(self) -> &'static str {
        match self {
            Self::LoadImage => "cannot load the image",
            Self::Stack => "cannot make the stack",
            Self::PristineCopy => "cannot make the pristine copy",
            Self::IpcBuffer => "cannot make the IPC buffer",
            Self::GuardCSpace => "cannot guard the CSpace",
            Self::FaultEndpoint => "cannot make the fault endpoint",
            Self::Configure => "cannot configure the thread",
            Self::BindNotification => "cannot bind the notification",
            Self::EndRun => "cannot let it end the run",
            Self::ReadAudit => "cannot let it read the audit log",
            Self::Console => "cannot let it write to the console",
            Self::OneRequest => "cannot make it serve one request per start",
            Self::Name => "cannot name the thread",
            Self::Priority => "cannot set the priority",
            Self::MaxPriority => "cannot set the maximum priority",
            Self::Registers => "cannot set the registers",
        }
    }
}

impl LoadError {
    /// What went wrong, the object it concerns and the kernel's error, if any.
    fn parts(self) -> (&'static str, Name, Option<Error>) {
        use LoadError::*;
        match self {
            NoImage => ("no boot image embedded (build with `cargo xtask build`)", None, None),
            ImageTruncated => ("boot image truncated", None, None),
            CorruptSpec => ("the embedded specification is corrupt", None, None),
            TooManyObjects => ("more objects than the loader can track", None, None),
            ObjectTable => ("object table", None, None),
            CapabilityTable => ("capability table", None, None),
            TableKind => ("table kind", None, None),
            Create(o, e) => ("cannot create object", o, Some(e)),
            CNodeBelowOneSlot(o) => {
                ("a CNode record smaller than one slot (a corrupt specification)", o, None)
            }
            LaterUntyped(o) => ("an object made from a later untyped", o, None),
            IrqWithoutLine(o) => ("irq object without a line", o, None),
            FillFileMissing(o) => ("a frame's fill file is missing from the boot image", o, None),
            FillTooLarge(o) => ("only 4 KiB frames are filled", o, None),
            DeviceAddressTwice(o) => ("two device frames at one physical address", o, None),
            DeviceFrame(o, e) => ("cannot create the device frame", o, Some(e)),
            NoDeviceUntyped(o) => ("no device untyped covers this frame's physical address", o, None),
            DeviceUnaligned(o) => ("device frame not page-aligned", o, None),
            NoElf(o) => ("thread without an ELF image", o, None),
            ElfMissing(o) => ("ELF image missing from the boot image", o, None),
            BadElf(o) => ("bad ELF image", o, None),
            NoCSpace(o) => ("thread without a CSpace", o, None),
            NoVSpace(o) => ("thread without a VSpace", o, None),
            WritableExceedsMemory(o) => ("its writable pages exceed its `memory`", o, None),
            StackExceedsMemory(o) => ("its writable pages and stack exceed its `memory`", o, None),
            NoPristineCopy(o) => ("a restartable component without its pristine copy", o, None),
            DataExceedsPristineCopy(o) => (
                "its program's initialized data passes the first page, all its pristine copy holds (make the statics zero-initialized)",
                o,
                None,
            ),
            FaultEndpointKind(o) => ("a TCB's fault endpoint must be an endpoint", o, None),
            BoundNotificationKind(o) => ("a TCB's bound notification must be a notification", o, None),
            Thread(o, step, e) => (step.message(), o, Some(e)),
            Place(o, e) => ("cannot place a capability", o, Some(e)),
            UnsupportedCap(o) => ("capability type not supported", o, None),
            TcbSlot(o) => {
                ("a TCB's slots hold its CSpace, VSpace, fault endpoint and bound notification only", o, None)
            }
            VcpuSlot(o) => ("a Vcpu's slot 0 holds its TCB and slot 1 its EPT root", o, None),
            UnsupportedContainer(o) => ("capabilities in this object are not supported", o, None),
            MapOfNothing(o) => ("mapping of nothing", o, None),
            TableSlot(o) => ("a table slot holds what that level cannot map", o, None),
            EptSlot(o) => ("an EPT slot holds what that level cannot map", o, None),
            NoRoot(o) => ("a table that no PML4 reaches", o, None),
            NoEptRoot(o) => ("an EPT table that no EPT root reaches", o, None),
            Map(o, e) => ("cannot map", o, Some(e)),
            MapGuest(o, e) => ("cannot map guest memory", o, Some(e)),
            Start(o, e) => ("cannot start a thread", o, Some(e)),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, object, error) = self.parts();
        f.write_str(what)?;
        if let Some(o) = object {
            write!(f, " (object `{o}`)")?;
        }
        if let Some(e) = error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}
