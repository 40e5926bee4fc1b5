//! The capDL loader: Cleave's root task. It reads the boot image built by `cleave image`
//! (the encoded specification and the components' ELF images), creates every object from
//! untyped memory, loads each component's image into its own address space, places
//! exactly the specified capabilities, starts the threads, reports a digest of what it
//! built, and stops itself.
#![no_std]
#![no_main]

use cleave_abi::boot_info::{BootInfo, slot};
use cleave_abi::{Error, ObjectType, Rights};
use cleave_capdl::binary::{
    CapRecord, Digest, EncodedSpec, Kind, ObjectRecord, lifetime, special, tcb_flag, tcb_slot,
};
use cleave_capdl::image::{BootImage, ImageError};
use cleave_elf::user_image as elf_image;
use cleave_rt::boot::boot_info;
use cleave_rt::cap::kind::{
    AsidControl, AsidPool, CNode, EptRoot, EptTable, Frame, IoPortControl, IrqControl, IrqHandler, PageTable,
    Tcb, Unknown, Untyped, VSpace, Vcpu,
};
use cleave_rt::{Cap, println};

mod machine;

cleave_rt::entry!(main);

static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/image.bin"));

const ROOT: Cap<CNode> = Cap::from_cptr(slot::CNODE);
const ROOT_VSPACE: Cap<VSpace> = Cap::from_cptr(slot::VSPACE);
/// Where the loader maps a frame to fill it.
const SCRATCH: u64 = 0x6000_0000_0000;
/// Component stack: 16 KiB ending here.
const STACK_TOP: u64 = cleave_abi::layout::USER_STACK_TOP;
const STACK_PAGES: u64 = 4;
/// Component IPC buffer.
const IPC_BUFFER: u64 = cleave_abi::boot_info::ROOT_IPC_BUFFER_ADDRESS;
const MAX_OBJECTS: usize = cleave_capdl::binary::LOADER_MAX_OBJECTS;
const MAX_TABLES: usize = 256;
/// TCB slots the spec may fill besides the CSpace (0) and VSpace (1), as seL4 numbers
/// them (`cleave_capdl::model::TCB_SLOT_NAMES`).
const FAULT_ENDPOINT_SLOT: u32 = tcb_slot::FAULT_ENDPOINT;
const BOUND_NOTIFICATION_SLOT: u32 = tcb_slot::BOUND_NOTIFICATION;

/// Why loading stopped.
struct Failure(&'static str, Option<&'static str>, Option<Error>);

type Step<T> = Result<T, Failure>;

fn fail(what: &'static str) -> Failure {
    Failure(what, None, None)
}

/// The boot image (`cleave_capdl::image`): the spec, then the named files.
struct Image<'a> {
    spec: EncodedSpec<'a>,
    files: BootImage<'a>,
    count: u64,
}

impl<'a> Image<'a> {
    fn parse(bytes: &'a [u8]) -> Step<Self> {
        let files = BootImage::parse(bytes).map_err(|e| match e {
            ImageError::NoMagic => fail("no boot image embedded (build with `cargo xtask build`)"),
            ImageError::Truncated => fail("boot image truncated"),
        })?;
        let spec = EncodedSpec::new(files.spec).map_err(|_| fail("the embedded specification is corrupt"))?;
        Ok(Self { spec, files, count: files.count })
    }

    fn program(&self, name: &str) -> Option<&'a [u8]> {
        self.files.file(name)
    }
}

/// Formats into a fixed buffer (object names, no heap).
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= self.buf.len()).ok_or(core::fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

struct Loader {
    info: &'static BootInfo,
    spec: EncodedSpec<'static>,
    next_slot: u64,
    untyped: usize,
    slots: [u64; MAX_OBJECTS],
    /// Page tables made: (VSpace slot, level, vaddr >> level shift).
    tables: [(u64, u8, u64); MAX_TABLES],
    table_count: usize,
    /// Per device untyped (by BootInfo index): the lowest address not yet handed out.
    device_marks: [u64; cleave_abi::boot_info::MAX_UNTYPED],
    digest: Digest,
    /// The machine's device memory, found at boot.
    machine: machine::Machine,
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
}

impl Loader {
    /// A new object in the next free root slot, from the first RAM untyped with room.
    fn retype(&mut self, ty: ObjectType, size_bits: u64) -> Result<u64, Error> {
        let dest = self.next_slot;
        if dest >= self.info.empty_end {
            return Err(Error::NotEnoughMemory);
        }
        if let Some(untyped) = self.from {
            Cap::<Untyped>::from_cptr(untyped).retype(ty, size_bits, ROOT, 0, 0, dest, 1)?;
            self.next_slot += 1;
            return Ok(dest);
        }
        while self.untyped < self.info.untyped_count as usize {
            let d = &self.info.untyped[self.untyped];
            if d.is_device == 0 {
                let cap: Cap<Untyped> = Cap::from_cptr(self.info.untyped_first + self.untyped as u64);
                match cap.retype(ty, size_bits, ROOT, 0, 0, dest, 1) {
                    Ok(()) => {
                        self.next_slot += 1;
                        return Ok(dest);
                    }
                    Err(Error::NotEnoughMemory) => {}
                    Err(e) => return Err(e),
                }
            }
            self.untyped += 1;
        }
        Err(Error::NotEnoughMemory)
    }

    /// Gives the fresh root (VSpace or EPT root) at `root` an ASID, making a new pool when
    /// the current one is full.
    fn give_asid(&mut self, root: u64) -> Result<u64, Error> {
        let target: Cap<Unknown> = Cap::from_cptr(root);
        match Cap::<AsidPool>::from_cptr(self.pool).assign(target) {
            Err(Error::NotEnoughMemory) => {
                let spec_untyped = self.from.take();
                let untyped = self.retype(ObjectType::Untyped, 12);
                self.from = spec_untyped;
                let untyped: Cap<Untyped> = Cap::from_cptr(untyped?);
                let dest = self.free_slot();
                Cap::<AsidControl>::from_cptr(slot::ASID_CONTROL).make_pool(untyped, ROOT.slot(dest, 64))?;
                self.pool = dest;
                Cap::<AsidPool>::from_cptr(dest).assign(target).map(|()| root)
            }
            other => other.map(|()| root),
        }
    }

    fn free_slot(&mut self) -> u64 {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// Makes sure `vspace` has the PDPT, page directory and page table covering `vaddr`.
    fn ensure_tables(&mut self, vspace: u64, vaddr: u64) -> Result<(), Error> {
        for (level, ty, shift) in
            [(3u8, ObjectType::Pdpt, 39), (2, ObjectType::PageDirectory, 30), (1, ObjectType::PageTable, 21)]
        {
            let key = (vspace, level, vaddr >> shift);
            if self.tables[..self.table_count].contains(&key) {
                continue;
            }
            let table = self.retype(ty, 0)?;
            match Cap::<PageTable>::from_cptr(table).map(Cap::from_cptr(vspace), vaddr) {
                Ok(()) | Err(Error::DeleteFirst) => {}
                Err(e) => return Err(e),
            }
            if self.table_count < MAX_TABLES {
                self.tables[self.table_count] = key;
                self.table_count += 1;
            }
        }
        Ok(())
    }

    /// A frame holding `data` at `offset`, mapped at `vaddr` of `vspace`.
    fn page(
        &mut self,
        vspace: u64,
        vaddr: u64,
        data: &[u8],
        offset: usize,
        write: bool,
        execute: bool,
    ) -> Result<u64, Error> {
        let frame = self.retype(ObjectType::Frame4K, 0)?;
        self.page_into(frame, vspace, vaddr, data, offset, write, execute)
    }

    /// [`Loader::page`] with the frame at root slot `frame` (fresh and zeroed).
    #[allow(clippy::too_many_arguments, reason = "page's arguments and the frame")]
    fn page_into(
        &mut self,
        frame: u64,
        vspace: u64,
        vaddr: u64,
        data: &[u8],
        offset: usize,
        write: bool,
        execute: bool,
    ) -> Result<u64, Error> {
        let f: Cap<Frame> = Cap::from_cptr(frame);
        if !data.is_empty() {
            self.ensure_tables(slot::VSPACE, SCRATCH)?;
            f.map(ROOT_VSPACE, SCRATCH, Rights::ALL, true)?;
            // SAFETY: SCRATCH maps this fresh frame read-write (just above); offset + len
            // lies within its 4 KiB (callers split data at page boundaries); the image is
            // not mapped there.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (SCRATCH + offset as u64) as *mut u8,
                    data.len(),
                )
            }
            f.unmap()?;
        }
        self.ensure_tables(vspace, vaddr)?;
        let rights = if write { Rights(Rights::READ.0 | Rights::WRITE.0) } else { Rights::READ };
        f.map(Cap::from_cptr(vspace), vaddr, rights, !execute)?;
        Ok(frame)
    }

    /// Fills the fresh 4 KiB frame at `frame` with `data` (at most a page; the rest stays
    /// zero), through the loader's scratch mapping.
    fn fill(&mut self, frame: u64, data: &[u8]) -> Result<(), Error> {
        let f: Cap<Frame> = Cap::from_cptr(frame);
        self.ensure_tables(slot::VSPACE, SCRATCH)?;
        f.map(ROOT_VSPACE, SCRATCH, Rights::ALL, true)?;
        let n = data.len().min(4096);
        // SAFETY: SCRATCH maps this frame read-write (just above); at most 4096 bytes; the
        // image is not mapped there.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), SCRATCH as *mut u8, n) }
        f.unmap()
    }

    fn create_objects(&mut self, image: &Image<'static>) -> Step<()> {
        let spec = self.spec;
        for i in 0..spec.object_count() {
            let o = spec.object(i).ok_or(fail("object table"))?;
            let what = |e| Failure("cannot create object", spec.name(o.name), Some(e));
            self.from = match o.parent() {
                Some(p) if p < i => Some(self.slots[p as usize]),
                Some(_) => {
                    return Err(Failure("an object made from a later untyped", spec.name(o.name), None));
                }
                None => None,
            };
            let made = match o.kind {
                Kind::Endpoint => self.retype(ObjectType::Endpoint, 0),
                Kind::Notification => self.retype(ObjectType::Notification, 0),
                Kind::Tcb => self.retype(ObjectType::Tcb, 0),
                Kind::CNode => self.retype(ObjectType::CNode, u64::from(o.size_bits) - 6),
                Kind::Untyped => self.retype(ObjectType::Untyped, u64::from(o.size_bits)),
                Kind::PageTable => self.retype(ObjectType::PageTable, 0),
                Kind::PageDirectory => self.retype(ObjectType::PageDirectory, 0),
                Kind::Pdpt => self.retype(ObjectType::Pdpt, 0),
                Kind::Pml4 => self.retype(ObjectType::Pml4, 0).and_then(|s| self.give_asid(s)),
                Kind::Vcpu => self.retype(ObjectType::Vcpu, 0),
                Kind::EptPml4 => self.retype(ObjectType::EptPml4, 0).and_then(|s| self.give_asid(s)),
                Kind::EptPdpt => self.retype(ObjectType::EptPdpt, 0),
                Kind::EptPd => self.retype(ObjectType::EptPd, 0),
                Kind::EptPt => self.retype(ObjectType::EptPt, 0),
                // Device frames: made afterwards, in address order (`device_frames`).
                Kind::Frame if o.param0 != 0 => Ok(0),
                Kind::Frame if o.size_bits == 21 => self.retype(ObjectType::Frame2M, 0),
                Kind::Frame => self.retype(ObjectType::Frame4K, 0),
                Kind::Irq => {
                    let line = (0..spec.irq_count()).filter_map(|k| spec.irq(k)).find(|&(_, obj)| obj == i);
                    let Some((line, _)) = line else {
                        return Err(Failure("irq object without a line", spec.name(o.name), None));
                    };
                    let dest = self.free_slot();
                    let control: Cap<IrqControl> = Cap::from_cptr(slot::IRQ_CONTROL);
                    control.get(line as u8, ROOT.slot(dest, 64)).map(|()| dest)
                }
                Kind::IoPorts => {
                    let dest = self.free_slot();
                    let control: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
                    control
                        .issue(o.param0 as u16, (o.param0 >> 16) as u16, ROOT.slot(dest, 64))
                        .map(|()| dest)
                }
            };
            self.from = None;
            self.slots[i as usize] = made.map_err(what)?;
            // A frame filled from a file of the boot image.
            if o.kind == Kind::Frame && o.param0 == 0 && o.param1 != 0 {
                let name = spec.name((o.param1 & 0xffff_ffff) as u32 - 1);
                let offset = (o.param1 >> 32) as usize;
                let file = name.and_then(|n| image.program(n)).ok_or(Failure(
                    "a frame's fill file is missing from the boot image",
                    spec.name(o.name),
                    None,
                ))?;
                if o.size_bits != 12 {
                    return Err(Failure("only 4 KiB frames are filled", spec.name(o.name), None));
                }
                let data = file.get(offset..).unwrap_or(&[]);
                self.fill(self.slots[i as usize], data).map_err(what)?;
            }
            self.digest.object(&o);
        }
        Ok(())
    }

    /// Makes every device frame (a frame with a physical address) from the device untyped
    /// that covers it, lowest address first: untyped memory hands out addresses in order,
    /// so the gap below each frame is first retyped into filler untyped objects (the
    /// largest aligned ones that fit), deleted once the frame exists.
    fn device_frames(&mut self) -> Step<()> {
        let spec = self.spec;
        let mut floor = 0u64;
        loop {
            // The lowest device frame above the last one made.
            let mut next: Option<(u32, u64)> = None;
            for i in 0..spec.object_count() {
                let o = spec.object(i).ok_or(fail("object table"))?;
                let wanted = o.kind == Kind::Frame
                    && o.param0 != 0
                    && self.slots[i as usize] == 0
                    && !self.refused[i as usize];
                if wanted && o.param0 < floor {
                    return Err(Failure(
                        "two device frames at one physical address",
                        spec.name(o.name),
                        None,
                    ));
                }
                if wanted && next.is_none_or(|(_, p)| o.param0 < p) {
                    next = Some((i, o.param0));
                }
            }
            let Some((index, paddr)) = next else { return Ok(()) };
            let name = spec.object(index).and_then(|o| spec.name(o.name));
            if !self.machine.has_page(paddr) {
                println!(
                    "loader: device frame `{}` at {paddr:#x} is no device memory of this machine: refused (not made, mapped or given)",
                    name.unwrap_or("?")
                );
                self.refused[index as usize] = true;
                floor = paddr + 4096;
                continue;
            }
            let err = |e| Failure("cannot create the device frame", name, Some(e));
            let block = (0..self.info.untyped_count as usize).find(|&u| {
                let d = &self.info.untyped[u];
                d.is_device != 0
                    && paddr >= d.physical_address
                    && paddr + 4096 <= d.physical_address + (1u64 << d.size_bits)
            });
            let Some(block) = block else {
                return Err(Failure("no device untyped covers this frame's physical address", name, None));
            };
            let cap: Cap<Untyped> = Cap::from_cptr(self.info.untyped_first + block as u64);
            let mark = &mut self.device_marks[block];
            if *mark == 0 {
                *mark = self.info.untyped[block].physical_address;
            }
            if paddr % 4096 != 0 || paddr < *mark {
                return Err(Failure("device frame not page-aligned", name, None));
            }
            let first_filler = self.next_slot;
            while self.device_marks[block] < paddr {
                let at = self.device_marks[block];
                let mut bits = at.trailing_zeros().min(47);
                while at + (1u64 << bits) > paddr {
                    bits -= 1;
                }
                let filler = self.free_slot();
                cap.retype(ObjectType::Untyped, u64::from(bits), ROOT, 0, 0, filler, 1).map_err(err)?;
                self.device_marks[block] = at + (1u64 << bits);
            }
            let dest = self.free_slot();
            cap.retype(ObjectType::Frame4K, 0, ROOT, 0, 0, dest, 1).map_err(err)?;
            self.device_marks[block] = paddr + 4096;
            // The fillers only moved the block's watermark; with the frame made (which keeps
            // the block from counting as unused), they go: the loader keeps no authority
            // over device memory nobody was given.
            for filler in first_filler..dest {
                Cap::<CNode>::delete(ROOT.slot(filler, 64)).map_err(err)?;
            }
            self.slots[index as usize] = dest;
            floor = paddr + 4096;
        }
    }

    /// The object a TCB's slot `tcb_slot` names in the spec.
    fn tcb_cap(&self, tcb: u32, tcb_slot: u32) -> Option<CapRecord> {
        (0..self.spec.cap_count())
            .filter_map(|k| self.spec.cap(k))
            .find(|c| c.container == tcb && c.slot == tcb_slot)
    }

    fn start_thread(&mut self, image: &Image<'static>, index: u32, o: &ObjectRecord) -> Step<()> {
        // What a thread made from a named untyped needs (its image, stack, IPC buffer,
        // page tables) comes from that untyped too, so that revoking it frees all of it.
        self.from = o.parent().map(|p| self.slots[p as usize]);
        let result = self.start_thread_inner(image, index, o);
        self.from = None;
        result
    }

    /// The spec's array `name` (`name[0]`, `name[1]`, … in a row): its first object and
    /// length.
    fn array(&self, name: &str) -> Option<(u32, u32)> {
        let spec = self.spec;
        let element = |i: u32| {
            spec.object(i)
                .and_then(|o| spec.name(o.name))
                .and_then(|n| n.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')?.parse::<u32>().ok())
        };
        let first = (0..spec.object_count()).find(|&i| element(i) == Some(0))?;
        let count = (first..spec.object_count()).take_while(|&i| element(i) == Some(i - first)).count();
        Some((first, count as u32))
    }

    /// Copies the contents of the 4 KiB frame at `from` into the one at `to`, through
    /// copies of their capabilities (each capability maps once, and `from` is mapped).
    fn copy_frame(&mut self, from: u64, to: u64) -> Result<(), Error> {
        self.ensure_tables(slot::VSPACE, SCRATCH)?;
        let (a, b) = (self.free_slot(), self.free_slot());
        ROOT.mint(ROOT.slot(a, 64), ROOT.slot(from, 64), Rights::READ, 0)?;
        ROOT.mint(ROOT.slot(b, 64), ROOT.slot(to, 64), Rights::ALL, 0)?;
        let (a, b): (Cap<Frame>, Cap<Frame>) = (Cap::from_cptr(a), Cap::from_cptr(b));
        a.map(ROOT_VSPACE, SCRATCH, Rights::READ, true)?;
        b.map(ROOT_VSPACE, SCRATCH + 4096, Rights::ALL, true)?;
        // SAFETY: SCRATCH and the page after it map the two frames (just above; same page
        // table); 4096 bytes each; nothing else is mapped there.
        unsafe { core::ptr::copy_nonoverlapping(SCRATCH as *const u8, (SCRATCH + 4096) as *mut u8, 4096) }
        a.unmap()?;
        b.unmap()?;
        Cap::<CNode>::delete(ROOT.slot(a.cptr(), 64))?;
        Cap::<CNode>::delete(ROOT.slot(b.cptr(), 64))
    }

    fn start_thread_inner(&mut self, image: &Image<'static>, index: u32, o: &ObjectRecord) -> Step<()> {
        let spec = self.spec;
        // A restartable component keeps its writable pages and stack in the spec's
        // `NAME_rw` frames (which the supervisor maps), and their first contents in
        // `NAME_pristine`.
        let component = spec.name(o.name).and_then(|n| n.strip_suffix("_tcb"));
        let mut rw = [0u8; 64];
        let rw_frames = component.and_then(|c| {
            let mut w = Writer { buf: &mut rw, len: 0 };
            core::fmt::write(&mut w, format_args!("{c}_rw")).ok()?;
            let len = w.len;
            self.array(core::str::from_utf8(&rw[..len]).ok()?)
        });
        let mut next_rw = 0u32;
        let name = spec.object(index).and_then(|o| spec.name(o.name));
        let err = |what: &'static str| move |e: Error| Failure(what, name, Some(e));
        let elf_name =
            spec.name(o.param0 as u32).ok_or(Failure("thread without an ELF image", name, None))?;
        let elf =
            image.program(elf_name).ok_or(Failure("ELF image missing from the boot image", name, None))?;
        let plan = elf_image::plan(elf).map_err(|_| Failure("bad ELF image", name, None))?;
        let cspace = self.tcb_cap(index, 0).ok_or(Failure("thread without a CSpace", name, None))?;
        let vspace = self.tcb_cap(index, 1).ok_or(Failure("thread without a VSpace", name, None))?;
        let vspace_slot = self.slots[vspace.target as usize];
        for segment in &plan.segments {
            for page in segment.pages().step_by(4096) {
                let file_start = segment.vaddr.0;
                let file_end = file_start + segment.file.len() as u64;
                let from = page.max(file_start);
                let to = (page + 4096).min(file_end);
                let data = if from < to {
                    let src = segment.file.start + (from - file_start) as usize;
                    &elf[src..src + (to - from) as usize]
                } else {
                    &[][..]
                };
                let offset = (from.max(page) - page) as usize;
                match rw_frames {
                    Some((first, count)) if segment.writable => {
                        if next_rw >= count {
                            return Err(Failure("its writable pages exceed its `memory`", name, None));
                        }
                        let frame = self.slots[(first + next_rw) as usize];
                        next_rw += 1;
                        self.page_into(frame, vspace_slot, page, data, offset, true, segment.executable)
                    }
                    _ => self.page(vspace_slot, page, data, offset, segment.writable, segment.executable),
                }
                .map_err(err("cannot load the image"))?;
            }
        }
        for p in 0..STACK_PAGES {
            let at = STACK_TOP - (p + 1) * 4096;
            match rw_frames {
                Some((first, count)) => {
                    if next_rw >= count {
                        return Err(Failure("its writable pages and stack exceed its `memory`", name, None));
                    }
                    let frame = self.slots[(first + next_rw) as usize];
                    next_rw += 1;
                    self.page_into(frame, vspace_slot, at, &[], 0, true, false)
                }
                None => self.page(vspace_slot, at, &[], 0, true, false),
            }
            .map_err(err("cannot make the stack"))?;
        }
        // The pristine copy: what the writable memory holds now, before the thread runs.
        if let (Some((first, count)), Some(c)) = (rw_frames, component) {
            let mut pristine = [0u8; 64];
            let mut w = Writer { buf: &mut pristine, len: 0 };
            let _ = core::fmt::write(&mut w, format_args!("{c}_pristine"));
            let len = w.len;
            let copy = core::str::from_utf8(&pristine[..len]).ok().and_then(|n| self.array(n));
            let Some((copy_first, _)) = copy.filter(|&(_, n)| n == count) else {
                return Err(Failure("a restartable component without its pristine copy", name, None));
            };
            for k in 0..count {
                let (from, to) = (self.slots[(first + k) as usize], self.slots[(copy_first + k) as usize]);
                self.copy_frame(from, to).map_err(err("cannot make the pristine copy"))?;
            }
        }
        let buffer = self
            .page(vspace_slot, IPC_BUFFER, &[], 0, true, false)
            .map_err(err("cannot make the IPC buffer"))?;
        // The CSpace root with its guard, so that a slot number is a capability address.
        let guarded = self.free_slot();
        let cnode_slot = self.slots[cspace.target as usize];
        ROOT.mint(
            ROOT.slot(guarded, 64),
            ROOT.slot(cnode_slot, 64),
            Rights::ALL,
            cspace.guard << 6 | u64::from(cspace.guard_size),
        )
        .map_err(err("cannot guard the CSpace"))?;
        // The fault endpoint (TCB slot 5), with the badge the spec gives it.
        let fault_endpoint = match self.tcb_cap(index, FAULT_ENDPOINT_SLOT) {
            Some(c) if spec.object(c.target).is_some_and(|t| t.kind == Kind::Endpoint) => {
                let minted = self.free_slot();
                let rights = if c.rights == 0 { Rights::ALL } else { Rights(c.rights) };
                ROOT.mint(
                    ROOT.slot(minted, 64),
                    ROOT.slot(self.slots[c.target as usize], 64),
                    rights,
                    c.badge,
                )
                .map_err(err("cannot make the fault endpoint"))?;
                Some(Cap::from_cptr(minted))
            }
            Some(_) => return Err(Failure("a TCB's fault endpoint must be an endpoint", name, None)),
            None => None,
        };
        let tcb: Cap<Tcb> = Cap::from_cptr(self.slots[index as usize]);
        tcb.configure(
            Cap::from_cptr(guarded),
            Cap::from_cptr(vspace_slot),
            Some((IPC_BUFFER, Cap::from_cptr(buffer))),
            fault_endpoint,
        )
        .map_err(err("cannot configure the thread"))?;
        // Its bound notification (TCB slot 8): signals wake its receives.
        match self.tcb_cap(index, BOUND_NOTIFICATION_SLOT) {
            Some(c) if spec.object(c.target).is_some_and(|t| t.kind == Kind::Notification) => {
                tcb.bind_notification(Cap::from_cptr(self.slots[c.target as usize]))
                    .map_err(err("cannot bind the notification"))?;
            }
            Some(_) => return Err(Failure("a TCB's bound notification must be a notification", name, None)),
            None => {}
        }
        // Only a thread the spec says may end the run can (`DebugExit`).
        if o.param0 & tcb_flag::ENDS_RUN != 0 {
            tcb.allow_end_run().map_err(err("cannot let it end the run"))?;
        }
        // Every thread may write to the debug console unless the spec keeps it quiet.
        if o.param0 & tcb_flag::QUIET == 0 {
            tcb.allow_console().map_err(err("cannot let it write to the console"))?;
        }
        // A component rolled back after every request serves one per start.
        if o.param2 & 0xff == lifetime::PER_REQUEST {
            tcb.set_one_request().map_err(err("cannot make it serve one request per start"))?;
        }
        let thread = name.map_or("", |n| n.strip_suffix("_tcb").unwrap_or(n));
        tcb.set_name(thread).map_err(err("cannot name the thread"))?;
        tcb.set_priority(o.priority).map_err(err("cannot set the priority"))?;
        tcb.invoke(cleave_abi::object::label::TCB_SET_MCP, &[u64::from(o.max_priority)])
            .map_err(err("cannot set the maximum priority"))?;
        // rip, rsp, rflags, then rdx (word 6): 1 if device memory its address space maps
        // was refused (`cleave_rt::devices_refused`), and rdi (word 8): the spec's initial
        // argument.
        let refused = u64::from(self.maps_refused(index));
        tcb.write_registers(false, &[plan.entry.0, STACK_TOP, 0x202, 0, 0, 0, refused, 0, o.param1 >> 1])
            .map_err(err("cannot set the registers"))?;
        Ok(())
    }

    /// Whether the address space of thread `tcb` maps a refused device frame.
    fn maps_refused(&self, tcb: u32) -> bool {
        let spec = self.spec;
        let Some(vspace) = self.tcb_cap(tcb, 1).map(|c| c.target) else { return false };
        (0..spec.cap_count()).filter_map(|k| spec.cap(k)).any(|c| {
            self.refused.get(c.target as usize).copied().unwrap_or(false)
                && spec.object(c.container).is_some_and(|o| o.kind.slot_shift().is_some())
                && self.table_place(c.container).is_some_and(|(root, _)| root == vspace)
        })
    }

    fn place_caps(&mut self) -> Step<()> {
        let spec = self.spec;
        for k in 0..spec.cap_count() {
            let c = spec.cap(k).ok_or(fail("capability table"))?;
            let container = spec.object(c.container).ok_or(fail("capability table"))?;
            let name = spec.name(container.name);
            let err = |e: Error| Failure("cannot place a capability", name, Some(e));
            let source = match c.target {
                special::IRQ_CONTROL => slot::IRQ_CONTROL,
                special::UNSUPPORTED => return Err(Failure("capability type not supported", name, None)),
                t if self.refused.get(t as usize).copied().unwrap_or(false) => continue,
                t => self.slots[t as usize],
            };
            let badge = if c.guard_size != 0 || c.guard != 0 {
                c.guard << 6 | u64::from(c.guard_size)
            } else {
                c.badge
            };
            let rights = if c.rights == 0 { Rights::ALL } else { Rights(c.rights) };
            match container.kind {
                // CSpace, VSpace, fault endpoint, bound notification: placed when the
                // thread was set up.
                Kind::Tcb
                    if c.slot <= 1 || c.slot == FAULT_ENDPOINT_SLOT || c.slot == BOUND_NOTIFICATION_SLOT => {}
                Kind::Tcb => {
                    return Err(Failure(
                        "a TCB's slots hold its CSpace, VSpace, fault endpoint and bound notification only",
                        name,
                        None,
                    ));
                }
                // An untyped capability is moved there, not copied: its holder gets the one
                // the objects made from it descend from, so that revoking it destroys them.
                Kind::CNode if spec.object(c.target).is_some_and(|o| o.kind == Kind::Untyped) => {
                    let cnode: Cap<CNode> = Cap::from_cptr(self.slots[c.container as usize]);
                    let depth = u64::from(container.size_bits) - 6;
                    cnode
                        .move_cap(cnode.slot(u64::from(c.slot), depth), ROOT.slot(source, 64))
                        .map_err(err)?;
                }
                Kind::CNode => {
                    let target = spec.object(c.target).map(|o| o.kind);
                    let rights = if matches!(target, Some(Kind::Endpoint | Kind::Notification | Kind::Frame))
                    {
                        rights
                    } else {
                        Rights::ALL
                    };
                    let cnode: Cap<CNode> = Cap::from_cptr(self.slots[c.container as usize]);
                    let depth = u64::from(container.size_bits) - 6;
                    cnode
                        .mint(cnode.slot(u64::from(c.slot), depth), ROOT.slot(source, 64), rights, badge)
                        .map_err(err)?;
                }
                Kind::Irq => {
                    let temporary = self.free_slot();
                    ROOT.mint(ROOT.slot(temporary, 64), ROOT.slot(source, 64), rights, badge).map_err(err)?;
                    let handler: Cap<IrqHandler> = Cap::from_cptr(self.slots[c.container as usize]);
                    handler.set_notification(Cap::from_cptr(temporary)).map_err(err)?;
                }
                // Mappings: placed by `map_tables`, top level first.
                Kind::Pml4 | Kind::Pdpt | Kind::PageDirectory | Kind::PageTable => {}
                Kind::EptPml4 | Kind::EptPdpt | Kind::EptPd | Kind::EptPt => {}
                // A Vcpu: slot 0 names the thread that runs it, slot 1 its EPT root.
                Kind::Vcpu => {
                    let vcpu: Cap<Vcpu> = Cap::from_cptr(self.slots[c.container as usize]);
                    match (c.slot, spec.object(c.target).map(|o| o.kind)) {
                        (0, Some(Kind::Tcb)) => vcpu.set_tcb(Cap::from_cptr(source)).map_err(err)?,
                        (1, Some(Kind::EptPml4)) => vcpu.set_ept(Cap::from_cptr(source)).map_err(err)?,
                        _ => {
                            return Err(Failure(
                                "a Vcpu's slot 0 holds its TCB and slot 1 its EPT root",
                                name,
                                None,
                            ));
                        }
                    }
                }
                _ => return Err(Failure("capabilities in this object are not supported", name, None)),
            }
        }
        self.map_tables()?;
        self.map_ept()?;
        for k in 0..spec.cap_count() {
            let c = spec.cap(k).ok_or(fail("capability table"))?;
            self.digest.cap(&c);
        }
        for k in 0..self.spec.irq_count() {
            if let Some((irq, object)) = self.spec.irq(k) {
                self.digest.word(u64::from(irq));
                self.digest.word(u64::from(object));
            }
        }
        Ok(())
    }
}

impl Loader {
    /// Where table `object` sits: its PML4 and the first address it covers, found by
    /// following the capabilities that name it up to a PML4.
    fn table_place(&self, object: u32) -> Option<(u32, u64)> {
        let spec = self.spec;
        let mut vaddr = 0u64;
        let mut at = object;
        for _ in 0..4 {
            if matches!(spec.object(at)?.kind, Kind::Pml4 | Kind::EptPml4) {
                // Canonical form: bit 47 extends upwards.
                let canonical = if vaddr & (1 << 47) != 0 { vaddr | 0xffff_0000_0000_0000 } else { vaddr };
                return Some((at, canonical));
            }
            let parent = (0..spec.cap_count()).filter_map(|k| spec.cap(k)).find(|c| {
                c.target == at && spec.object(c.container).is_some_and(|o| o.kind.slot_shift().is_some())
            })?;
            let shift = spec.object(parent.container)?.kind.slot_shift()?;
            vaddr += u64::from(parent.slot) << shift;
            at = parent.container;
        }
        None
    }

    /// Builds every mapping the spec names: tables into their VSpace, top level first (the
    /// level above must exist), then frames into page tables, each through its own copy of
    /// the frame capability. A frame capability with the grant right is mapped executable.
    fn map_tables(&mut self) -> Step<()> {
        let spec = self.spec;
        for level in [Kind::Pml4, Kind::Pdpt, Kind::PageDirectory, Kind::PageTable] {
            for k in 0..spec.cap_count() {
                let c = spec.cap(k).ok_or(fail("capability table"))?;
                let container = spec.object(c.container).ok_or(fail("capability table"))?;
                if container.kind != level {
                    continue;
                }
                let name = spec.name(container.name);
                let err = |e: Error| Failure("cannot map", name, Some(e));
                let target = spec.object(c.target).ok_or(Failure("mapping of nothing", name, None))?;
                let shift = level.slot_shift().ok_or(fail("table kind"))?;
                let large_frame =
                    level == Kind::PageDirectory && target.kind == Kind::Frame && target.size_bits == 21;
                if (Some(target.kind) != level.child_kind() && !large_frame) || c.slot >= 512 {
                    return Err(Failure("a table slot holds what that level cannot map", name, None));
                }
                let (pml4, base) = self.table_place(c.container).ok_or(Failure(
                    "a table that no PML4 reaches",
                    name,
                    None,
                ))?;
                let vspace: Cap<VSpace> = Cap::from_cptr(self.slots[pml4 as usize]);
                let vaddr = base + (u64::from(c.slot) << shift);
                if self.refused[c.target as usize] {
                    continue;
                }
                if level == Kind::PageTable || large_frame {
                    let copy = self.free_slot();
                    let readable = Rights(c.rights & (Rights::READ.0 | Rights::WRITE.0));
                    ROOT.mint(ROOT.slot(copy, 64), ROOT.slot(self.slots[c.target as usize], 64), readable, 0)
                        .map_err(err)?;
                    let executable = c.rights & Rights::GRANT.0 != 0;
                    Cap::<Frame>::from_cptr(copy).map(vspace, vaddr, readable, !executable).map_err(err)?;
                } else {
                    Cap::<PageTable>::from_cptr(self.slots[c.target as usize])
                        .map(vspace, vaddr)
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

impl Loader {
    /// Builds every guest-physical mapping the spec names: EPT tables under the level
    /// above, then frames (4 KiB in page tables, 2 MiB in page directories), each through
    /// its own copy of the frame capability; the grant right makes a frame executable.
    fn map_ept(&mut self) -> Step<()> {
        let spec = self.spec;
        for level in [Kind::EptPml4, Kind::EptPdpt, Kind::EptPd, Kind::EptPt] {
            for k in 0..spec.cap_count() {
                let c = spec.cap(k).ok_or(fail("capability table"))?;
                let container = spec.object(c.container).ok_or(fail("capability table"))?;
                if container.kind != level {
                    continue;
                }
                let name = spec.name(container.name);
                let err = |e: Error| Failure("cannot map guest memory", name, Some(e));
                let target = spec.object(c.target).ok_or(Failure("mapping of nothing", name, None))?;
                let shift = level.slot_shift().ok_or(fail("table kind"))?;
                let frame = target.kind == Kind::Frame
                    && ((level == Kind::EptPt && target.size_bits == 12)
                        || (level == Kind::EptPd && target.size_bits == 21));
                // Frames only as `frame` allows (the right size for the level); tables below.
                let table = level.child_kind().filter(|k| *k != Kind::Frame);
                if (Some(target.kind) != table && !frame) || c.slot >= 512 {
                    return Err(Failure("an EPT slot holds what that level cannot map", name, None));
                }
                let (root, base) = self.table_place(c.container).ok_or(Failure(
                    "an EPT table that no EPT root reaches",
                    name,
                    None,
                ))?;
                let root: Cap<EptRoot> = Cap::from_cptr(self.slots[root as usize]);
                let gpa = (base & 0x0000_ffff_ffff_ffff) + (u64::from(c.slot) << shift);
                if self.refused[c.target as usize] {
                    continue;
                }
                if frame {
                    let copy = self.free_slot();
                    let rights = Rights(c.rights & (Rights::READ.0 | Rights::WRITE.0));
                    ROOT.mint(ROOT.slot(copy, 64), ROOT.slot(self.slots[c.target as usize], 64), rights, 0)
                        .map_err(err)?;
                    let executable = c.rights & Rights::GRANT.0 != 0;
                    Cap::<Frame>::from_cptr(copy).map_ept(root, gpa, rights, !executable).map_err(err)?;
                } else {
                    Cap::<EptTable>::from_cptr(self.slots[c.target as usize]).map(root, gpa).map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

fn load(image: &Image<'static>) -> Step<(u32, u32, u64)> {
    let info = boot_info();
    let mut l = Loader {
        info,
        spec: image.spec,
        next_slot: info.empty_first,
        untyped: 0,
        slots: [0; MAX_OBJECTS],
        tables: [(0, 0, 0); MAX_TABLES],
        table_count: 0,
        device_marks: [0; cleave_abi::boot_info::MAX_UNTYPED],
        digest: Digest::new(),
        machine: machine::Machine::EMPTY,
        refused: [false; MAX_OBJECTS],
        from: None,
        pool: slot::ASID_POOL,
    };
    if l.spec.object_count() as usize > MAX_OBJECTS {
        return Err(fail("more objects than the loader can track"));
    }
    let scratch = l.free_slot();
    l.machine = machine::Machine::scan(scratch);
    l.create_objects(image)?;
    l.device_frames()?;
    let mut threads = 0;
    for i in 0..l.spec.object_count() {
        let Some(o) = l.spec.object(i) else { continue };
        if o.kind == Kind::Tcb {
            l.start_thread(image, i, &o)?;
            threads += 1;
        }
    }
    l.place_caps()?;
    for i in 0..l.spec.object_count() {
        if let Some(o) = l.spec.object(i)
            && o.kind == Kind::Tcb
            && o.param1 & 1 != 0
        {
            let tcb: Cap<Tcb> = Cap::from_cptr(l.slots[i as usize]);
            let spec = l.spec;
            tcb.resume().map_err(|e| Failure("cannot start a thread", spec.name(o.name), Some(e)))?;
            // The audit log's first instance of the component this thread is.
            if let Some(component) = spec.name(o.name).and_then(|n| n.strip_suffix("_tcb")) {
                cleave_rt::audit!("start {component}#1");
            }
        }
    }
    Ok((l.spec.object_count(), threads, l.digest.finish()))
}

fn main() -> i32 {
    let start = cleave_rt::syscall::rdtsc();
    cleave_rt::audit!("boot");
    let outcome = Image::parse(IMAGE).and_then(|image| {
        println!(
            "loader: specification with {} objects, {} capabilities, {} programs",
            image.spec.object_count(),
            image.spec.cap_count(),
            image.count
        );
        load(&image).map(|built| (built, image.spec.digest()))
    });
    match outcome {
        Ok(((objects, threads, built), expected)) => {
            let ticks = cleave_rt::syscall::rdtsc() - start;
            println!("loader: built {objects} objects and started {threads} threads; digest {built:#018x}");
            println!("loader: {} TSC ticks per object ({ticks} in all)", ticks / u64::from(objects.max(1)));
            if built != expected {
                println!(
                    "loader: TEST FAIL: built digest {built:#018x} differs from the specification's {expected:#018x}"
                );
                return 1;
            }
            // Done. Give up the authority nothing in the spec needs: creating IRQ handlers
            // and I/O port ranges, and every untyped capability nothing was made from (those
            // with children back the components' objects and stay). Then stop; no other
            // thread holds this thread or its CSpace, so what remains cannot be used.
            let info = boot_info();
            let mut dropped = 0;
            let untyped = (0..info.untyped_count).map(|i| info.untyped_first + i);
            for cptr in
                [slot::IRQ_CONTROL, slot::IO_PORT_CONTROL, slot::ASID_CONTROL].into_iter().chain(untyped)
            {
                if Cap::<CNode>::delete(ROOT.slot(cptr, 64)).is_ok() {
                    dropped += 1;
                }
            }
            println!("loader: dropped {dropped} capabilities it no longer needs; stopping");
            let me: Cap<Tcb> = Cap::from_cptr(slot::TCB);
            let _ = me.suspend();
            0
        }
        Err(Failure(what, object, error)) => {
            cleave_rt::print!("loader: boot failed: {what}");
            if let Some(o) = object {
                cleave_rt::print!(" (object `{o}`)");
            }
            if let Some(e) = error {
                cleave_rt::print!(": {e}");
            }
            println!();
            1
        }
    }
}
