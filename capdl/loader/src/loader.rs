//! Building the specification: the loader's state across its steps, and the steps in
//! order. Objects first (from the pool or the untyped the spec names), then device frames
//! at their addresses, then each thread's address space and registers, then every
//! capability in its slot and every mapping, and last the threads started.

mod cspace;
mod devices;
mod mapping;
mod objects;
mod pages;
mod threads;

use crate::error::LoadError;
use crate::image::Image;
use crate::machine::Machine;
use cleave_abi::boot_info::{BootInfo, MAX_UNTYPED, slot};
use cleave_capdl::binary::{Digest, EncodedSpec, Kind};
use cleave_rt::Cap;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{CNode, VSpace};

/// The loader's own CSpace root, where everything it makes lands first.
const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
/// The loader's own address space (for its scratch mappings).
const ROOT_VSPACE: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
/// Most objects the loader tracks (the encoder refuses more).
const MAX_OBJECTS: usize = cleave_capdl::binary::LOADER_MAX_OBJECTS;
/// Most page tables of its own making it remembers.
const MAX_TABLES: usize = 256;
/// Most programs whose read-only pages it shares between the components that run them
/// (a program past these gets a copy per component; `cleave_system::memory` counts the
/// same way).
pub const MAX_SHARED_PROGRAMS: usize = 64;

/// A program whose read-only pages were made once: (its name, the root slot of its first
/// read-only page, how many there are, in consecutive slots, in segment order).
type SharedProgram = (&'static str, u64, u64);

/// What was built.
pub struct Built {
    /// Objects in the spec.
    pub objects: u32,
    /// Threads set up.
    pub threads: u32,
    /// The digest of the capability distribution built.
    pub digest: u64,
    /// Bytes of memory made into objects for the system: the spec's objects and what the
    /// loader makes for its threads (program pages, stacks, IPC buffers, page tables) and
    /// ASID pools; not its own scratch tables. Objects made inside an untyped the spec
    /// names are in that untyped's bytes already. `cleave_system::memory` computes the
    /// same figure from the spec and the programs, which `cargo xtask bench memory` checks.
    pub memory: u64,
    /// Bytes of page tables the loader made for its own scratch mappings.
    pub scratch: u64,
}

/// The loader's state while it builds.
struct Loader {
    info: &'static BootInfo,
    spec: EncodedSpec<'static>,
    next_slot: u64,
    untyped: usize,
    /// Per spec object: the root slot holding its capability.
    slots: [u64; MAX_OBJECTS],
    /// Page tables made: (VSpace slot, address bits one covers, vaddr >> those bits).
    tables: [(u64, u32, u64); MAX_TABLES],
    table_count: usize,
    /// Per device untyped (by BootInfo index): the lowest address not yet handed out.
    device_marks: [u64; MAX_UNTYPED],
    digest: Digest,
    /// The machine's device memory, found at boot.
    machine: Machine,
    /// Device frames refused because this machine has no device memory at their address:
    /// never made, mapped or given.
    refused: [bool; MAX_OBJECTS],
    /// While set: the untyped object (root slot) new objects come from instead of the
    /// pool (an object the spec makes from a named untyped, and everything the loader
    /// makes for a thread that is).
    from: Option<u64>,
    /// The ASID pool new VSpaces and EPT roots take their ASIDs from: the one the kernel
    /// gave, then pools the loader makes from 4 KiB of its memory as each fills.
    pool: u64,
    /// Bytes retyped from the machine's free memory so far ([`Built::memory`] with
    /// `scratch`).
    memory: u64,
    /// Of those, the page tables of the loader's own scratch mappings.
    scratch: u64,
    /// Programs whose read-only pages the next component running them maps too.
    programs: [SharedProgram; MAX_SHARED_PROGRAMS],
    program_count: usize,
}

impl Loader {
    /// Whether object `index` is a device frame this machine refused.
    fn is_refused(&self, index: u32) -> bool {
        self.refused.get(index as usize).copied().unwrap_or(false)
    }
}

/// Builds everything `image` specifies and starts the threads the spec resumes.
pub fn load(image: &Image<'static>) -> Result<Built, LoadError> {
    let info = boot_info();
    let mut l = Loader {
        info,
        spec: image.spec,
        next_slot: info.empty_first,
        untyped: 0,
        slots: [0; MAX_OBJECTS],
        tables: [(0, 0, 0); MAX_TABLES],
        table_count: 0,
        device_marks: [0; MAX_UNTYPED],
        digest: Digest::new(),
        machine: Machine::EMPTY,
        refused: [false; MAX_OBJECTS],
        from: None,
        pool: slot::ASID_POOL,
        memory: 0,
        scratch: 0,
        programs: [("", 0, 0); MAX_SHARED_PROGRAMS],
        program_count: 0,
    };
    if l.spec.object_count() as usize > MAX_OBJECTS {
        return Err(LoadError::TooManyObjects);
    }
    let scratch = l.free_slot();
    l.machine = Machine::scan(scratch);
    l.create_objects(image)?;
    l.device_frames()?;
    let mut threads = 0;
    for i in 0..l.spec.object_count() {
        let Some(o) = l.spec.object(i) else { continue };
        if o.kind == Kind::Tcb {
            l.set_up_thread(image, i, &o)?;
            threads += 1;
        }
    }
    l.place_caps()?;
    l.map(mapping::Format::Ia32e)?;
    l.map(mapping::Format::Ept)?;
    l.digest_caps()?;
    l.start_threads()?;
    Ok(Built {
        objects: l.spec.object_count(),
        threads,
        digest: l.digest.finish(),
        memory: l.memory - l.scratch,
        scratch: l.scratch,
    })
}
