//! Threads: each one's program loaded into its address space (its writable pages into the
//! spec's `NAME_rw` frames for a restartable component, with a pristine copy in
//! `NAME_pristine`), its stack and IPC buffer, its CSpace, fault endpoint, bound
//! notification, privileges, name, priorities and registers; and at the end, the threads
//! the spec resumes started.

use super::{Loader, MAX_SHARED_PROGRAMS, ROOT};
use crate::error::{LoadError, ThreadStep};
use crate::image::Image;
use cleave_abi::layout::PAGE_SIZE;
use cleave_abi::{Error, Rights};
use cleave_capdl::binary::{Kind, ObjectRecord, lifetime, tcb_flag, tcb_slot};
use cleave_elf::user_image as elf_image;
use cleave_rt::Cap;
use cleave_rt::cap::kind::Tcb;

/// Component stack: the pages its spec gives (`stack_pages`), by default
/// `COMPONENT_STACK_PAGES`, ending here.
const STACK_TOP: u64 = cleave_abi::layout::USER_STACK_TOP;
const STACK_PAGES: u64 = cleave_abi::layout::COMPONENT_STACK_PAGES;
/// Component IPC buffer.
const IPC_BUFFER: u64 = cleave_abi::boot_info::ROOT_IPC_BUFFER_ADDRESS;
/// rflags a thread starts with: interrupts on.
const RFLAGS: u64 = 0x202;

impl Loader {
    /// Sets up thread `index` (`o`), not yet started. What a thread made from a named
    /// untyped needs (its image, stack, IPC buffer, page tables) comes from that untyped
    /// too, so that revoking it frees all of it.
    pub(super) fn set_up_thread(
        &mut self,
        image: &Image<'static>,
        index: u32,
        o: &ObjectRecord,
    ) -> Result<(), LoadError> {
        self.from = o.parent().map(|p| self.slots[p as usize]);
        let result = self.set_up_thread_from(image, index, o);
        self.from = None;
        result
    }

    /// The read-only pages of program `name` (`elf`, planned as `plan`): the first root
    /// slot of them and whether they were made just now. Made, filled and remembered on
    /// the first call for a program, in consecutive root slots; `None` once
    /// [`MAX_SHARED_PROGRAMS`] programs are remembered (each component then gets its own).
    fn shared_program(
        &mut self,
        name: &'static str,
        elf: &[u8],
        plan: &elf_image::LoadPlan,
    ) -> Result<Option<(u64, bool)>, LoadError> {
        if let Some(&(_, first, _)) = self.programs[..self.program_count].iter().find(|p| p.0 == name) {
            return Ok(Some((first, false)));
        }
        if self.program_count == MAX_SHARED_PROGRAMS {
            return Ok(None);
        }
        let fail = |e: Error| LoadError::Thread(Some(name), ThreadStep::LoadImage, e);
        // Its tables first, so that the frames take consecutive slots.
        self.ensure_scratch().map_err(fail)?;
        let first = self.next_slot;
        let mut count = 0u64;
        for segment in plan.segments.iter().filter(|s| !s.writable) {
            for page in segment.pages().step_by(PAGE_SIZE as usize) {
                let file_start = segment.vaddr.0;
                let file_end = file_start + segment.file.len() as u64;
                let (from, to) = (page.max(file_start), (page + PAGE_SIZE).min(file_end));
                let frame = self.retype(cleave_abi::ObjectType::Frame4K, 0).map_err(fail)?;
                if frame != first + count {
                    return Err(fail(Error::IllegalOperation));
                }
                if from < to {
                    let src = segment.file.start + (from - file_start) as usize;
                    self.fill(frame, &elf[src..src + (to - from) as usize], (from - page) as usize)
                        .map_err(fail)?;
                }
                count += 1;
            }
        }
        self.programs[self.program_count] = (name, first, count);
        self.program_count += 1;
        Ok(Some((first, true)))
    }

    fn set_up_thread_from(
        &mut self,
        image: &Image<'static>,
        index: u32,
        o: &ObjectRecord,
    ) -> Result<(), LoadError> {
        let spec = self.spec;
        // The page tables remembered for earlier threads' address spaces are of no use any
        // more (and would fill the table): keep only the loader's own scratch tables.
        let mut kept = 0;
        for i in 0..self.table_count {
            if self.tables[i].0 == cleave_abi::boot_info::slot::VSPACE {
                self.tables[kept] = self.tables[i];
                kept += 1;
            }
        }
        self.table_count = kept;
        // A restartable component keeps its writable pages and stack in the spec's
        // `NAME_rw` frames (which the supervisor maps), and their first contents in
        // `NAME_pristine`.
        let component = spec.name(o.name).and_then(|n| n.strip_suffix("_tcb"));
        let rw_frames = component.and_then(|c| spec.array(&[c, "_rw"]));
        let mut next_rw = 0u32;
        // How many of the writable frames hold some of the program's initialized data.
        let mut data_frames = 0u32;
        let name = spec.name(o.name);
        let err = |step| move |e: Error| LoadError::Thread(name, step, e);
        let elf_name = spec.name(o.elf_name()).ok_or(LoadError::NoElf(name))?;
        let elf = image.file(elf_name).ok_or(LoadError::ElfMissing(name))?;
        let plan = elf_image::plan(elf).map_err(|_| LoadError::BadElf(name))?;
        let cspace = spec.cap_in(index, tcb_slot::CSPACE).ok_or(LoadError::NoCSpace(name))?;
        let vspace = spec.cap_in(index, tcb_slot::VSPACE).ok_or(LoadError::NoVSpace(name))?;
        let vspace_slot = self.slots[vspace.target as usize];
        // Read-only pages are made once per program and mapped into every component that
        // runs it (nothing can write them, and a restart never restores them), except for
        // a component made inside an untyped: revoking that must free all it is made of.
        let shared = match self.from {
            Some(_) => None,
            None => self.shared_program(elf_name, elf, &plan)?,
        };
        let mut read_only = 0u64;
        for segment in &plan.segments {
            for page in segment.pages().step_by(PAGE_SIZE as usize) {
                if let (Some((first, made)), false) = (shared, segment.writable) {
                    let frame = first + read_only;
                    read_only += 1;
                    // The component that made them maps them with the capabilities
                    // made; the others each with a copy.
                    let cap = if made {
                        frame
                    } else {
                        let copy = self.free_slot();
                        ROOT.mint(ROOT.slot(copy, 64), ROOT.slot(frame, 64), Rights::ALL, 0)
                            .map_err(err(ThreadStep::LoadImage))?;
                        copy
                    };
                    self.page_into(cap, vspace_slot, page, &[], 0, false, segment.executable)
                        .map_err(err(ThreadStep::LoadImage))?;
                    continue;
                }
                let file_start = segment.vaddr.0;
                let file_end = file_start + segment.file.len() as u64;
                let from = page.max(file_start);
                let to = (page + PAGE_SIZE).min(file_end);
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
                            return Err(LoadError::WritableExceedsMemory(name));
                        }
                        let frame = self.slots[(first + next_rw) as usize];
                        next_rw += 1;
                        if !data.is_empty() {
                            data_frames = next_rw;
                        }
                        self.page_into(frame, vspace_slot, page, data, offset, true, segment.executable)
                    }
                    _ => self.page(vspace_slot, page, data, offset, segment.writable, segment.executable),
                }
                .map_err(err(ThreadStep::LoadImage))?;
            }
        }
        for p in 0..o.stack_pages().unwrap_or(STACK_PAGES) {
            let at = STACK_TOP - (p + 1) * PAGE_SIZE;
            match rw_frames {
                Some((first, count)) => {
                    if next_rw >= count {
                        return Err(LoadError::StackExceedsMemory(name));
                    }
                    let frame = self.slots[(first + next_rw) as usize];
                    next_rw += 1;
                    self.page_into(frame, vspace_slot, at, &[], 0, true, false)
                }
                None => self.page(vspace_slot, at, &[], 0, true, false),
            }
            .map_err(err(ThreadStep::Stack))?;
        }
        // The pristine copy: what the first writable frames hold now, before the thread
        // runs (the program's initialized data; every later frame is zero, and a restart
        // zeroes it again).
        if let (Some((first, count)), Some(c)) = (rw_frames, component) {
            let copy = spec.array(&[c, "_pristine"]);
            let Some((copy_first, copies)) = copy.filter(|&(_, n)| n >= 1 && n <= count) else {
                return Err(LoadError::NoPristineCopy(name));
            };
            if data_frames > copies {
                return Err(LoadError::DataExceedsPristineCopy(name));
            }
            for k in 0..copies {
                let (from, to) = (self.slots[(first + k) as usize], self.slots[(copy_first + k) as usize]);
                self.copy_frame(from, to).map_err(err(ThreadStep::PristineCopy))?;
            }
        }
        let buffer =
            self.page(vspace_slot, IPC_BUFFER, &[], 0, true, false).map_err(err(ThreadStep::IpcBuffer))?;
        // The CSpace root with its guard, so that a slot number is a capability address.
        let guarded = self.free_slot();
        let cnode_slot = self.slots[cspace.target as usize];
        ROOT.mint(ROOT.slot(guarded, 64), ROOT.slot(cnode_slot, 64), Rights::ALL, cspace.guard_word())
            .map_err(err(ThreadStep::GuardCSpace))?;
        // The fault endpoint, with the badge the spec gives it.
        let fault_endpoint = match spec.cap_in(index, tcb_slot::FAULT_ENDPOINT) {
            Some(c) if spec.object(c.target).is_some_and(|t| t.kind == Kind::Endpoint) => {
                let minted = self.free_slot();
                ROOT.mint(
                    ROOT.slot(minted, 64),
                    ROOT.slot(self.slots[c.target as usize], 64),
                    c.rights(),
                    c.badge,
                )
                .map_err(err(ThreadStep::FaultEndpoint))?;
                Some(Cap::from_cptr(minted))
            }
            Some(_) => return Err(LoadError::FaultEndpointKind(name)),
            None => None,
        };
        let tcb: Cap<Tcb> = Cap::from_cptr(self.slots[index as usize]);
        tcb.configure(
            Cap::from_cptr(guarded),
            Cap::from_cptr(vspace_slot),
            Some((IPC_BUFFER, Cap::from_cptr(buffer))),
            fault_endpoint,
        )
        .map_err(err(ThreadStep::Configure))?;
        // Its bound notification: signals wake its receives.
        match spec.cap_in(index, tcb_slot::BOUND_NOTIFICATION) {
            Some(c) if spec.object(c.target).is_some_and(|t| t.kind == Kind::Notification) => {
                tcb.bind_notification(Cap::from_cptr(self.slots[c.target as usize]))
                    .map_err(err(ThreadStep::BindNotification))?;
            }
            Some(_) => return Err(LoadError::BoundNotificationKind(name)),
            None => {}
        }
        // Only a thread the spec says may end the run can (`DebugExit`).
        if o.has_flag(tcb_flag::ENDS_RUN) {
            tcb.allow_end_run().map_err(err(ThreadStep::EndRun))?;
        }
        // Only a thread the spec says reads the audit log can (`AuditRead`).
        if o.has_flag(tcb_flag::READS_AUDIT) {
            tcb.allow_read_audit().map_err(err(ThreadStep::ReadAudit))?;
        }
        // Every thread may write to the debug console unless the spec keeps it quiet.
        if !o.has_flag(tcb_flag::QUIET) {
            tcb.allow_console().map_err(err(ThreadStep::Console))?;
        }
        // A component rolled back after every request serves one per start.
        if o.lifetime() == lifetime::PER_REQUEST {
            tcb.set_one_request().map_err(err(ThreadStep::OneRequest))?;
        }
        let thread = name.map_or("", |n| n.strip_suffix("_tcb").unwrap_or(n));
        tcb.set_name(thread).map_err(err(ThreadStep::Name))?;
        tcb.set_priority(o.priority).map_err(err(ThreadStep::Priority))?;
        tcb.invoke(cleave_abi::object::label::TCB_SET_MCP, &[u64::from(o.max_priority)])
            .map_err(err(ThreadStep::MaxPriority))?;
        // rip, rsp, rflags, then rdx (word 6): 1 if device memory its address space maps
        // was refused (`cleave_rt::devices_refused`), and rdi (word 8): the spec's initial
        // argument.
        let refused = u64::from(spec.root_maps(vspace.target, |t| self.is_refused(t)));
        tcb.write_registers(false, &[plan.entry.0, STACK_TOP, RFLAGS, 0, 0, 0, refused, 0, o.argument()])
            .map_err(err(ThreadStep::Registers))?;
        Ok(())
    }

    /// Starts every thread the spec resumes, and writes the first instance of each
    /// component to the audit log: one the spec does not resume (an on-request guest's
    /// VMM, which the supervisor starts as instance 2 when asked) is there too.
    pub(super) fn start_threads(&self) -> Result<(), LoadError> {
        let spec = self.spec;
        for i in 0..spec.object_count() {
            let Some(o) = spec.object(i) else { continue };
            if o.kind != Kind::Tcb {
                continue;
            }
            if o.resumes() {
                let tcb: Cap<Tcb> = Cap::from_cptr(self.slots[i as usize]);
                tcb.resume().map_err(|e| LoadError::Start(spec.name(o.name), e))?;
            }
            if let Some(component) = spec.name(o.name).and_then(|n| n.strip_suffix("_tcb")) {
                cleave_rt::audit!("start {component}#1");
            }
        }
        Ok(())
    }
}
