//! Xoar's memory table: what each component of a compiled system costs in machine memory
//! (its program's pages, its writable memory, its kernel objects, its page tables, its DMA
//! memory), what its components share, what its guests are given, and the control plane's
//! total. It counts what the capDL loader makes, object by object, as the loader makes it
//! (`capdl/loader`: the spec's objects, then each thread's program pages, stack and IPC
//! buffer, with the page tables they need; a program's read-only pages once, mapped into
//! every component that runs it), so the total is the loader's own count, which it prints
//! at boot and the emulator tests and `cargo xtask bench memory` compare.

use crate::compile::Compiled;
use crate::system::SystemFile;
use cleave_abi::ObjectType;
use cleave_abi::layout::{COMPONENT_STACK_PAGES, PAGE_SIZE, USER_STACK_TOP};
use cleave_capdl::model::{ObjRef, ObjectKind};
use std::collections::{BTreeMap, BTreeSet};

/// Most programs whose read-only pages the loader makes once and shares (its
/// `MAX_SHARED_PROGRAMS`); a program past these is copied for each component.
pub const MAX_SHARED_PROGRAMS: usize = 64;

/// One component's memory, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// The component.
    pub component: String,
    /// Its program's read-only pages (code and constants), made once per program: a
    /// component running a program another one ran first maps that one's pages
    /// (`shares_code_with`) and counts none.
    pub code: u64,
    /// The component whose program pages it maps, if it is not the first to run its
    /// program.
    pub shares_code_with: Option<String>,
    /// Whether it is disposable: gone after boot, its memory free again.
    pub disposable: bool,
    /// Its program's writable pages, its stack and IPC buffer, and its other frames (a
    /// restartable component's writable memory and pristine copy, a VMM's configuration).
    pub data: u64,
    /// Memory it gives its devices for DMA.
    pub dma: u64,
    /// Its kernel objects: thread, CSpace, address-space root, endpoints, notifications,
    /// virtual CPUs; a disposable component's untyped memory, which everything it is made
    /// of comes from.
    pub kernel: u64,
    /// The page tables of its address space (and of its guest's, for a VMM).
    pub tables: u64,
    /// For a component made from an untyped of its own (a disposable one): the bytes of
    /// that untyped nothing is made from. Everything else in it is in the other columns.
    pub spare: u64,
}

impl Row {
    /// Everything it costs.
    pub fn total(&self) -> u64 {
        self.code + self.data + self.dma + self.kernel + self.tables + self.spare
    }
}

/// A whole system's memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Each component's (VMMs and the supervisor cleave adds included), by name.
    pub rows: Vec<Row>,
    /// Memory shared between components (regions, rings), counted once.
    pub shared: u64,
    /// ASID pools the loader makes when the one the kernel gives is full.
    pub asid_pools: u64,
    /// Each guest's RAM, by guest.
    pub guests: Vec<(String, u64)>,
    /// The Builder's pool (an untyped per on-request guest): those guests' RAM, not the
    /// control plane's.
    pub pool: u64,
}

impl Table {
    /// The page the toolstack shows per component (`cleave ctl list`): a line
    /// `COMPONENT BYTES` per component, then `control-plane BYTES`; at most a page.
    pub fn toolstack_page(&self) -> Vec<u8> {
        let mut out = String::new();
        for r in &self.rows {
            out.push_str(&format!("{} {}\n", r.component, r.total()));
        }
        out.push_str(&format!("control-plane {}\n", self.control_plane()));
        let mut bytes = out.into_bytes();
        bytes.truncate(cleave_abi::layout::PAGE_SIZE as usize - 1);
        bytes
    }

    /// The control plane's memory: every component, what they share and the ASID pools;
    /// not the guests' RAM.
    pub fn control_plane(&self) -> u64 {
        self.rows.iter().map(Row::total).sum::<u64>() + self.shared + self.asid_pools
    }

    /// The control plane once its disposable components are gone (their memory is free
    /// again after boot).
    pub fn after_boot(&self) -> u64 {
        self.control_plane() - self.rows.iter().filter(|r| r.disposable).map(Row::total).sum::<u64>()
    }

    /// All the memory the loader makes the system from: the control plane and the guests.
    pub fn machine(&self) -> u64 {
        self.control_plane() + self.guests.iter().map(|(_, b)| b).sum::<u64>() + self.pool
    }

    /// The table as text: a row per component, then the shared memory, the guests and the
    /// totals, in KiB.
    pub fn render(&self) -> String {
        let kib = |b: u64| format!("{:.1}", b as f64 / 1024.0);
        let width = self.rows.iter().map(|r| r.component.len()).max().unwrap_or(9).max(13);
        let mut out = format!(
            "{:width$} | {:>13} | {:>9} | {:>9} | {:>10} | {:>10} | {:>9}\n",
            "component", "code KiB", "data KiB", "DMA KiB", "kernel KiB", "tables KiB", "total KiB"
        );
        for r in &self.rows {
            let code = match &r.shares_code_with {
                Some(c) => format!("= {c}"),
                None => kib(r.code),
            };
            out.push_str(&format!(
                "{:width$} | {:>13} | {:>9} | {:>9} | {:>10} | {:>10} | {:>9}\n",
                r.component,
                code,
                kib(r.data),
                kib(r.dma),
                kib(r.kernel),
                kib(r.tables),
                kib(r.total())
            ));
        }
        out.push_str("(code `= C`: the program's pages C made, mapped read-only)\n");
        for r in self.rows.iter().filter(|r| r.disposable) {
            out.push_str(&format!(
                "({}: made from an untyped of {} KiB, of which {} KiB is unused)\n",
                r.component,
                kib(r.total() - r.dma),
                kib(r.spare)
            ));
        }
        out.push_str(&format!("shared between components (regions and rings): {} KiB\n", kib(self.shared)));
        if self.asid_pools > 0 {
            out.push_str(&format!("ASID pools: {} KiB\n", kib(self.asid_pools)));
        }
        out.push_str(&format!(
            "control plane: {} bytes ({:.2} MiB); after boot, without its disposable components, {} bytes ({:.2} MiB)\n",
            self.control_plane(),
            self.control_plane() as f64 / (1 << 20) as f64,
            self.after_boot(),
            self.after_boot() as f64 / (1 << 20) as f64
        ));
        for (guest, bytes) in &self.guests {
            out.push_str(&format!("guest {guest}: {} MiB of RAM\n", bytes >> 20));
        }
        if self.pool > 0 {
            out.push_str(&format!("the Builder's pool (on-request guests' RAM): {} MiB\n", self.pool >> 20));
        }
        out.push_str(&format!("machine memory the loader makes the system from: {} bytes\n", self.machine()));
        out
    }
}

/// Bytes of one object of `kind` made from RAM; `None` for what is not made from RAM
/// (device memory, interrupt lines and I/O ports, issued from control capabilities).
fn bytes(kind: &ObjectKind) -> Option<u64> {
    let (ty, size_bits) = match kind {
        ObjectKind::Untyped { paddr: Some(_), .. } | ObjectKind::Frame { paddr: Some(_), .. } => return None,
        ObjectKind::Untyped { size_bits, .. } => (ObjectType::Untyped, size_bits.unwrap_or(12)),
        ObjectKind::Frame { size, .. } => return Some(*size),
        ObjectKind::Endpoint => (ObjectType::Endpoint, 0),
        ObjectKind::Notification => (ObjectType::Notification, 0),
        ObjectKind::Tcb(_) => (ObjectType::Tcb, 0),
        ObjectKind::CNode { size_bits } => (ObjectType::CNode, *size_bits),
        ObjectKind::PageTable => (ObjectType::PageTable, 0),
        ObjectKind::PageDirectory => (ObjectType::PageDirectory, 0),
        ObjectKind::Pdpt => (ObjectType::Pdpt, 0),
        ObjectKind::Pml4 => (ObjectType::Pml4, 0),
        ObjectKind::Vcpu => (ObjectType::Vcpu, 0),
        ObjectKind::EptTable { .. } => (ObjectType::EptPt, 0),
        _ => return None,
    };
    ty.size_bits(size_bits).map(|bits| 1 << bits)
}

/// What kind of memory an object of `kind` is, for its owner's row.
enum Column {
    Data,
    Kernel,
    Tables,
}

fn column(kind: &ObjectKind) -> Column {
    match kind {
        ObjectKind::Frame { .. } => Column::Data,
        ObjectKind::PageTable
        | ObjectKind::PageDirectory
        | ObjectKind::Pdpt
        | ObjectKind::EptTable { .. }
        | ObjectKind::Pml4 => Column::Tables,
        _ => Column::Kernel,
    }
}

/// The memory table of `compiled` (compiled from `file`), with each program's bytes from
/// `program` (`None` for a program not built: its pages are not counted, and the program
/// is named in the error).
pub fn table(
    file: &SystemFile,
    compiled: &Compiled,
    program: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Table, String> {
    let spec = &compiled.spec;
    let components: BTreeSet<String> =
        spec.objects.iter().filter_map(|o| o.name.strip_suffix("_tcb").map(str::to_string)).collect();
    let disposable: BTreeSet<&str> = spec
        .objects
        .iter()
        .filter(|o| {
            matches!(&o.kind, ObjectKind::Tcb(t) if t.lifetime == Some(cleave_capdl::model::Lifetime::Disposable))
        })
        .filter_map(|o| o.name.strip_suffix("_tcb"))
        .collect();
    let mut rows: BTreeMap<String, Row> = components
        .iter()
        .map(|c| {
            let row =
                Row { component: c.clone(), disposable: disposable.contains(c.as_str()), ..Row::default() };
            (c.clone(), row)
        })
        .collect();
    let mut table = Table::default();
    // Objects made inside an untyped the spec names are in its bytes.
    let inside: BTreeSet<&str> = spec.covers.values().flatten().map(|r: &ObjRef| r.name.as_str()).collect();
    let guests: BTreeSet<&str> = file.guests.keys().map(|k| k.get_ref().as_str()).collect();
    // Whose an object is: a component's (named after it, or after a device it owns, or
    // after its guest, for a VMM), a guest's RAM, or shared.
    let owner = |name: &str| -> Option<String> {
        let mut best: Option<&String> = None;
        for c in &components {
            if name.strip_prefix(c.as_str()).is_some_and(|rest| rest.starts_with('_'))
                && best.is_none_or(|b| c.len() > b.len())
            {
                best = Some(c);
            }
        }
        if let Some(c) = best {
            return Some(c.clone());
        }
        let (head, _) = name.split_once('_')?;
        if guests.contains(head) {
            return Some(crate::layout::vmm_name(head));
        }
        file.devices.iter().find(|(k, _)| k.get_ref() == head).map(|(_, d)| d.owner.get_ref().clone())
    };
    // A component's own untyped (a disposable one's, `C_untyped`) is counted as what is
    // made from it, in the component's row whatever its names, and what is left of it
    // (`spare`, below).
    let mut made_from: BTreeMap<String, u64> = BTreeMap::new();
    let mut inside_of: BTreeMap<&str, String> = BTreeMap::new();
    for (untyped, children) in &spec.covers {
        let Some(c) = untyped.name.strip_suffix("_untyped").filter(|c| rows.contains_key(*c)) else {
            continue;
        };
        let Some(size) = spec.objects.iter().find(|o| o.name == untyped.name).and_then(|o| bytes(&o.kind))
        else {
            continue;
        };
        made_from.insert(c.to_string(), size);
        for child in children {
            inside_of.insert(child.name.as_str(), c.to_string());
        }
    }
    for o in &spec.objects {
        if made_from.keys().any(|c| o.name == format!("{c}_untyped")) {
            continue;
        }
        let Some(one) = bytes(&o.kind) else { continue };
        let total = one * u64::from(o.count.unwrap_or(1));
        // A guest's RAM is the guest's, not its VMM's; the Builder's pool is the on-request
        // guests' RAM, not the Builder's.
        if let Some(guest) = o.name.strip_suffix("_ram").filter(|g| guests.contains(g)) {
            table.guests.push((guest.to_string(), total));
            continue;
        }
        let on_request = |g: &str| file.guests.iter().any(|(k, x)| k.get_ref() == g && x.on_request());
        if o.name.strip_suffix("_ram_pool").is_some_and(on_request) {
            table.pool += total;
            continue;
        }
        let Some(row) =
            inside_of.get(o.name.as_str()).cloned().or_else(|| owner(&o.name)).and_then(|c| rows.get_mut(&c))
        else {
            table.shared += total;
            continue;
        };
        let dma = file.devices.keys().any(|d| o.name == format!("{}_dma", d.get_ref()));
        match (dma, column(&o.kind)) {
            (true, _) => row.dma += total,
            (false, Column::Data) => row.data += total,
            (false, Column::Kernel) => row.kernel += total,
            (false, Column::Tables) => row.tables += total,
        }
    }
    // What the loader makes for each thread: its program's pages (a restartable one's
    // writable pages and stack are its `_rw` frames), stack, IPC buffer and the page
    // tables those need, one of each level per range it covers. A thread made inside an
    // untyped gets all of it from there.
    let mut missing = Vec::new();
    // The programs whose read-only pages are made once (the loader remembers at most
    // `MAX_SHARED_PROGRAMS`), with the component that made them.
    let mut programs: Vec<(String, String)> = Vec::new();
    for o in &spec.objects {
        let ObjectKind::Tcb(tcb) = &o.kind else { continue };
        let Some(component) = o.name.strip_suffix("_tcb") else { continue };
        if inside.contains(o.name.as_str()) && !inside_of.contains_key(o.name.as_str()) {
            continue;
        }
        let Some(elf) = tcb.elf.as_deref() else { continue };
        let Some(image) = program(elf) else {
            missing.push(elf.to_string());
            continue;
        };
        let plan = cleave_elf::user_image::plan(&image).map_err(|e| format!("program `{elf}`: {e:?}"))?;
        let restartable = spec.objects.iter().any(|x| x.name == format!("{component}_rw"));
        let row = rows.get_mut(component).expect("every TCB has its row");
        // A thread made inside an untyped gets its own read-only pages from it: the loader
        // shares no program pages with it, either way.
        let own_untyped = inside_of.contains_key(o.name.as_str());
        let made_by =
            programs.iter().find(|(p, _)| p == elf).map(|(_, c)| c.clone()).filter(|_| !own_untyped);
        if made_by.is_none() && !own_untyped && programs.len() < MAX_SHARED_PROGRAMS {
            programs.push((elf.to_string(), component.to_string()));
        }
        row.shares_code_with = made_by;
        // A restartable component's pristine copy holds the first writable pages only:
        // its program's initialized data must lie in them (the loader refuses it too).
        if restartable {
            let mut writable = 0u64;
            for segment in plan.segments.iter().filter(|s| s.writable) {
                let file_end = segment.vaddr.0 + segment.file.len() as u64;
                for page in segment.pages().step_by(PAGE_SIZE as usize) {
                    writable += 1;
                    if page < file_end && writable > crate::layout::PRISTINE_PAGES {
                        return Err(format!(
                            "program `{elf}` of restartable `{component}` has initialized data past its first {} KiB of writable memory, all its pristine copy holds (make the statics zero-initialized)",
                            (crate::layout::PRISTINE_PAGES * PAGE_SIZE) >> 10
                        ));
                    }
                }
            }
        }
        let mut pages = Vec::new();
        for segment in &plan.segments {
            for page in segment.pages().step_by(PAGE_SIZE as usize) {
                pages.push(page);
                if segment.writable {
                    if !restartable {
                        row.data += PAGE_SIZE;
                    }
                } else if row.shares_code_with.is_none() {
                    row.code += PAGE_SIZE;
                }
            }
        }
        for p in 0..tcb.stack_pages.unwrap_or(COMPONENT_STACK_PAGES) {
            pages.push(USER_STACK_TOP - (p + 1) * PAGE_SIZE);
            if !restartable {
                row.data += PAGE_SIZE;
            }
        }
        pages.push(cleave_abi::boot_info::ROOT_IPC_BUFFER_ADDRESS);
        row.data += PAGE_SIZE;
        // A PDPT per 512 GiB, a page directory per 1 GiB and a page table per 2 MiB.
        let mut tables = BTreeSet::new();
        for page in pages {
            for shift in [39u32, 30, 21] {
                tables.insert((shift, page >> shift));
            }
        }
        row.tables += tables.len() as u64 * PAGE_SIZE;
    }
    // What a component made from its own untyped needs must fit in it, with slack: up to
    // 16 KiB for the alignment the kernel gives each object (its CNode's is 16 KiB), and
    // the loader's own scratch page tables (three), which it makes from the untyped when
    // the first thread it builds is this one.
    for (c, size) in &made_from {
        let row = rows.get_mut(c).expect("only rows' untyped are counted");
        let needed = row.code + row.data + row.kernel + row.tables;
        let slack = 8 * PAGE_SIZE;
        if needed + slack > *size && missing.is_empty() {
            return Err(format!(
                "`{c}` needs {} KiB (program, stack, tables and objects, and {} KiB of slack for alignment), more than the {} KiB untyped a disposable component is made from",
                needed >> 10,
                slack >> 10,
                size >> 10
            ));
        }
        row.spare = size.saturating_sub(needed);
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(format!("no program built for {}", missing.join(", ")));
    }
    // The kernel's pool holds 512 ASIDs, one of them the loader's; each further 512
    // address-space roots take a pool of a page.
    let roots = spec
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Pml4 | ObjectKind::EptTable { level: 4 }))
        .map(|o| u64::from(o.count.unwrap_or(1)))
        .sum::<u64>();
    table.asid_pools = ((roots + 1).div_ceil(512) - 1) * PAGE_SIZE;
    table.rows = rows.into_values().collect();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_elf::test_elf::elf;

    /// A program of two read-only pages (code) and a writable page with another of zeros.
    fn program() -> Vec<u8> {
        const LOAD: u32 = 1;
        let (rx, rw) = (5, 6); // PF_R | PF_X, PF_R | PF_W
        elf(
            2,
            62,
            0x40_1000,
            &[(LOAD, rx, 0x1000, 0x40_1000, 0x2000, 0x2000), (LOAD, rw, 0x3000, 0x40_3000, 0x1000, 0x2000)],
            &[0x90; 0x3000],
        )
    }

    const SYSTEM: &str = "[components.plain]\nbinary = \"worker\"\n\
        [components.again]\nbinary = \"worker\"\nrestart = { every = \"1s\" }\nmemory = \"64K\"\n\
        [regions.shared]\nsize = \"8K\"\nmap = { plain = \"rw\", again = \"r\" }\n\
        [guests.g]\nmemory = \"4M\"\nimage = \"guest-hello\"\n";

    fn table_of(text: &str, programs: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Table, String> {
        let file = crate::system::load(text).unwrap_or_else(|e| panic!("{e:?}"));
        table(&file, &crate::compile::compile(&file), programs)
    }

    /// A restartable component whose program has initialized data past its first page:
    /// the pristine copy (one page) could not restore it, so the table refuses it.
    #[test]
    fn initialized_data_past_the_pristine_copy_is_refused() {
        const LOAD: u32 = 1;
        let big_data = elf(
            2,
            62,
            0x40_1000,
            &[(LOAD, 5, 0x1000, 0x40_1000, 0x1000, 0x1000), (LOAD, 6, 0x2000, 0x40_2000, 0x1800, 0x3000)],
            &[0x90; 0x3800],
        );
        let error = table_of(SYSTEM, &|_| Some(big_data.clone())).unwrap_err();
        assert!(
            error.contains("of restartable `again` has initialized data past its first 4 KiB"),
            "{error}"
        );
    }

    #[test]
    fn each_component_costs_its_pages_objects_and_tables() {
        let t = table_of(SYSTEM, &|_| Some(program())).unwrap();
        let row = |c: &str| t.rows.iter().find(|r| r.component == c).unwrap_or_else(|| panic!("{c}: {t:?}"));
        let plain = row("plain");
        // Two writable pages, four of stack and the IPC buffer; its two read-only pages are
        // the ones `again` (first in the spec) made for the program they both run.
        assert_eq!((plain.code, plain.data, plain.dma), (0, 7 * PAGE_SIZE, 0));
        assert_eq!(plain.shares_code_with.as_deref(), Some("again"));
        // Its thread (2 KiB), CNode and notification-free rest are kernel objects.
        assert!(plain.kernel >= 2048, "{plain:?}");
        // A restartable component's writable pages and stack are its `_rw` frames, and
        // the pristine copy of the first of them: its data, with the IPC buffer.
        let again = row("again");
        let rw = compile_frames(SYSTEM, "again_rw");
        assert!(rw >= 6, "{rw}");
        assert_eq!(
            (again.code, again.data),
            (2 * PAGE_SIZE, (rw + crate::layout::PRISTINE_PAGES + 1) * PAGE_SIZE)
        );
        assert_eq!(again.shares_code_with, None);
        // The region, once; the guest's RAM apart; the totals add up.
        assert_eq!(t.shared, 2 * PAGE_SIZE);
        assert_eq!(t.guests, [("g".to_string(), 4 << 20)]);
        assert_eq!(t.machine(), t.control_plane() + (4 << 20));
        assert_eq!(t.after_boot(), t.control_plane(), "nothing disposable");
        assert_eq!(t.control_plane(), t.rows.iter().map(Row::total).sum::<u64>() + t.shared);
        let text = t.render();
        assert!(text.contains("control plane: ") && text.contains("guest g: 4 MiB of RAM"), "{text}");
        assert!(text.contains("= again"), "{text}");
    }

    #[test]
    fn the_loaders_page_tables_are_one_per_level_and_range() {
        let t = table_of(SYSTEM, &|_| Some(program())).unwrap();
        let file = crate::system::load(SYSTEM).unwrap();
        let compiled = crate::compile::compile(&file);
        // The spec's own tables for `plain` (its root and those mapping the region).
        let spec_tables = compiled
            .spec
            .objects
            .iter()
            .filter(|o| o.name.starts_with("plain_") && matches!(column(&o.kind), Column::Tables))
            .count() as u64;
        // The program in the first 2 MiB range above 4 MiB, the stack and IPC buffer in the
        // last one below the top: a PDPT, a directory and a table for each.
        let plain = t.rows.iter().find(|r| r.component == "plain").unwrap();
        assert_eq!(plain.tables, (spec_tables + 6) * PAGE_SIZE);
    }

    /// [`program`] with `bss` more bytes of zeros.
    fn program_with_bss(bss: u64) -> Vec<u8> {
        const LOAD: u32 = 1;
        let (rx, rw) = (5, 6);
        elf(
            2,
            62,
            0x40_1000,
            &[
                (LOAD, rx, 0x1000, 0x40_1000, 0x2000, 0x2000),
                (LOAD, rw, 0x3000, 0x40_3000, 0x1000, 0x2000 + bss),
            ],
            &[0x90; 0x3000],
        )
    }

    const DISPOSABLE: &str = "[components.once]\nbinary = \"worker\"\nlifetime = \"disposable\"\n\
        [components.plain]\nbinary = \"observer\"\n";

    #[test]
    fn a_disposable_component_is_its_untyped_and_must_fit_in_it() {
        let t = table_of(DISPOSABLE, &|_| Some(program())).unwrap();
        let once = t.rows.iter().find(|r| r.component == "once").unwrap();
        // Made from 128 KiB: its pages, tables and objects in their columns, the rest spare.
        assert!(once.disposable && once.code == 2 * PAGE_SIZE && once.data > 0 && once.spare > 0, "{once:?}");
        assert_eq!(once.total(), 128 << 10);
        assert_eq!(t.after_boot(), t.control_plane() - (128 << 10));
        assert!(t.render().contains("(once: made from an untyped of 128.0 KiB, of which"), "{}", t.render());
        // A program that does not fit is refused, by name and by how much.
        let big = |name: &str| Some(if name == "worker" { program_with_bss(100 << 10) } else { program() });
        let error = table_of(DISPOSABLE, &big).unwrap_err();
        assert!(
            error.starts_with("`once` needs 1")
                && error.ends_with("than the 128 KiB untyped a disposable component is made from"),
            "{error}"
        );
    }

    #[test]
    fn the_builders_pool_is_the_on_request_guests_ram_not_the_control_planes() {
        let text = "[components.builder]\nrestart = \"per-request\"\nmemory = \"24K\"\n[components.toolstack]\n\
            [channels.build]\nkind = \"endpoint\"\nserver = \"builder\"\nclients = [\"toolstack\"]\n\
            [guests.c]\nmemory = \"4M\"\nimage = \"guest-hello\"\nstart = \"on-request\"\n";
        let t = table_of(text, &|_| Some(program())).unwrap();
        assert_eq!(t.pool, 4 << 20);
        // No RAM of its own at boot; the Builder's row is its own memory only.
        assert!(t.guests.is_empty(), "{t:?}");
        let builder = t.rows.iter().find(|r| r.component == "builder").unwrap();
        assert!(builder.total() < 1 << 20, "{builder:?}");
        assert_eq!(t.machine(), t.control_plane() + (4 << 20));
        assert!(t.render().contains("the Builder's pool (on-request guests' RAM): 4 MiB"), "{}", t.render());
    }

    #[test]
    fn a_program_not_built_is_named() {
        let error = table_of(SYSTEM, &|_| None).unwrap_err();
        assert_eq!(error, "no program built for supervisor, vmm, worker");
    }

    fn compile_frames(text: &str, name: &str) -> u64 {
        let file = crate::system::load(text).unwrap();
        let compiled = crate::compile::compile(&file);
        compiled.spec.objects.iter().find(|o| o.name == name).and_then(|o| o.count).map_or(0, u64::from)
    }
}
