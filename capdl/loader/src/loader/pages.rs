//! Pages of memory the loader fills: frames mapped for a moment at its scratch address to
//! write their contents, then mapped into a component's address space, with the page
//! tables that needs made on the way.

use super::{Loader, ROOT, ROOT_VSPACE};
use cleave_abi::boot_info::slot;
use cleave_abi::layout::PAGE_SIZE;
use cleave_abi::{Error, ObjectType, Rights};
use cleave_capdl::binary::Kind;
use cleave_rt::Cap;
use cleave_rt::cap::kind::{CNode, Frame, PageTable};

/// Where the loader maps a frame to fill it (and the page after it, to copy one).
const SCRATCH: u64 = 0x6000_0000_0000;

/// The tables between an address space's root and its pages, top first: each with the
/// address bits one of them covers, which is what one slot of the table above covers.
const TABLES: [(ObjectType, u32); 3] = [
    (ObjectType::Pdpt, shift(Kind::Pml4)),
    (ObjectType::PageDirectory, shift(Kind::Pdpt)),
    (ObjectType::PageTable, shift(Kind::PageDirectory)),
];

/// The slot shift of paging level `level` (evaluated at compile time: a kind without one
/// fails the build).
const fn shift(level: Kind) -> u32 {
    match level.slot_shift() {
        Some(shift) => shift,
        None => panic!("not a paging level"),
    }
}

impl Loader {
    /// Makes sure `vspace` has the PDPT, page directory and page table covering `vaddr`.
    fn ensure_tables(&mut self, vspace: u64, vaddr: u64) -> Result<(), Error> {
        for (ty, shift) in TABLES {
            let key = (vspace, shift, vaddr >> shift);
            if self.tables[..self.table_count].contains(&key) {
                continue;
            }
            let table = self.retype(ty, 0)?;
            if vspace == slot::VSPACE && self.from.is_none() {
                self.scratch += 1 << 12;
            }
            match Cap::<PageTable>::from_cptr(table).map(Cap::from_cptr(vspace), vaddr) {
                Ok(()) | Err(Error::DeleteFirst) => {}
                Err(e) => return Err(e),
            }
            if self.table_count < self.tables.len() {
                self.tables[self.table_count] = key;
                self.table_count += 1;
            }
        }
        Ok(())
    }

    /// A fresh frame holding `data` at `offset`, mapped at `vaddr` of `vspace`.
    pub(super) fn page(
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
    pub(super) fn page_into(
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

    /// Fills the fresh 4 KiB frame at `frame` with `data` from `offset` (what passes the
    /// page is cut off; the rest stays zero), through the loader's scratch mapping.
    pub(super) fn fill(&mut self, frame: u64, data: &[u8], offset: usize) -> Result<(), Error> {
        let f: Cap<Frame> = Cap::from_cptr(frame);
        self.ensure_scratch()?;
        f.map(ROOT_VSPACE, SCRATCH, Rights::ALL, true)?;
        let offset = offset.min(PAGE_SIZE as usize);
        let n = data.len().min(PAGE_SIZE as usize - offset);
        // SAFETY: SCRATCH maps this frame read-write (just above); offset + n is at most a
        // page; the image is not mapped there.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (SCRATCH + offset as u64) as *mut u8, n) }
        f.unmap()
    }

    /// Makes the page tables of the loader's scratch mapping, if they are not there yet.
    pub(super) fn ensure_scratch(&mut self) -> Result<(), Error> {
        self.ensure_tables(slot::VSPACE, SCRATCH)
    }

    /// Copies the contents of the 4 KiB frame at `from` into the one at `to`, through
    /// copies of their capabilities (each capability maps once, and `from` is mapped).
    pub(super) fn copy_frame(&mut self, from: u64, to: u64) -> Result<(), Error> {
        self.ensure_tables(slot::VSPACE, SCRATCH)?;
        let (a, b) = (self.free_slot(), self.free_slot());
        ROOT.mint(ROOT.slot(a, 64), ROOT.slot(from, 64), Rights::READ, 0)?;
        ROOT.mint(ROOT.slot(b, 64), ROOT.slot(to, 64), Rights::ALL, 0)?;
        let (a, b): (Cap<Frame>, Cap<Frame>) = (Cap::from_cptr(a), Cap::from_cptr(b));
        a.map(ROOT_VSPACE, SCRATCH, Rights::READ, true)?;
        b.map(ROOT_VSPACE, SCRATCH + PAGE_SIZE, Rights::ALL, true)?;
        // SAFETY: SCRATCH and the page after it map the two frames (just above; same page
        // table); a page each; nothing else is mapped there.
        unsafe {
            core::ptr::copy_nonoverlapping(
                SCRATCH as *const u8,
                (SCRATCH + PAGE_SIZE) as *mut u8,
                PAGE_SIZE as usize,
            )
        }
        a.unmap()?;
        b.unmap()?;
        Cap::<CNode>::delete(ROOT.slot(a.cptr(), 64))?;
        Cap::<CNode>::delete(ROOT.slot(b.cptr(), 64))
    }
}
