//! Mappings: every table into the level above it, top level first (the level above must
//! exist), then frames into the lowest tables, each through its own copy of the frame
//! capability; a frame capability with the grant right is mapped executable. One walk
//! serves both paging formats: IA-32e address spaces and EPT guest-physical ones.

use super::{Loader, ROOT};
use crate::error::{LoadError, Name};
use cleave_abi::{Error, Rights};
use cleave_capdl::binary::{Entry, Kind};
use cleave_rt::Cap;
use cleave_rt::cap::kind::{EptRoot, EptTable, Frame, PageTable, VSpace};

/// A paging format the spec's tables may be in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// A component's address space (PML4 and below).
    Ia32e,
    /// A guest's physical memory (EPT root and below).
    Ept,
}

impl Format {
    /// Its table kinds, root first.
    fn levels(self) -> [Kind; 4] {
        match self {
            Self::Ia32e => [Kind::Pml4, Kind::Pdpt, Kind::PageDirectory, Kind::PageTable],
            Self::Ept => [Kind::EptPml4, Kind::EptPdpt, Kind::EptPd, Kind::EptPt],
        }
    }

    fn bad_slot(self, name: Name) -> LoadError {
        match self {
            Self::Ia32e => LoadError::TableSlot(name),
            Self::Ept => LoadError::EptSlot(name),
        }
    }

    fn no_root(self, name: Name) -> LoadError {
        match self {
            Self::Ia32e => LoadError::NoRoot(name),
            Self::Ept => LoadError::NoEptRoot(name),
        }
    }

    fn refused(self, name: Name, error: Error) -> LoadError {
        match self {
            Self::Ia32e => LoadError::Map(name, error),
            Self::Ept => LoadError::MapGuest(name, error),
        }
    }
}

impl Loader {
    /// Builds every mapping the spec names in tables of `format`.
    pub(super) fn map(&mut self, format: Format) -> Result<(), LoadError> {
        let spec = self.spec;
        for level in format.levels() {
            for k in 0..spec.cap_count() {
                let c = spec.cap(k).ok_or(LoadError::CapabilityTable)?;
                let container = spec.object(c.container).ok_or(LoadError::CapabilityTable)?;
                if container.kind != level {
                    continue;
                }
                let name = spec.name(container.name);
                let err = |e: Error| format.refused(name, e);
                let target = spec.object(c.target).ok_or(LoadError::MapOfNothing(name))?;
                let shift = level.slot_shift().ok_or(LoadError::TableKind)?;
                let entry =
                    level.entry(c.slot, target.kind, target.size_bits).ok_or(format.bad_slot(name))?;
                let (root, base) = spec.table_place(c.container).ok_or(format.no_root(name))?;
                let root = self.slots[root as usize];
                let address = base + (u64::from(c.slot) << shift);
                if self.is_refused(c.target) {
                    continue;
                }
                let target = self.slots[c.target as usize];
                match entry {
                    Entry::Frame => {
                        let copy = self.free_slot();
                        let rights = Rights(c.rights & (Rights::READ.0 | Rights::WRITE.0));
                        ROOT.mint(ROOT.slot(copy, 64), ROOT.slot(target, 64), rights, 0).map_err(err)?;
                        let executable = c.rights & Rights::GRANT.0 != 0;
                        let frame: Cap<Frame> = Cap::from_cptr(copy);
                        match format {
                            Format::Ia32e => {
                                frame.map(Cap::<VSpace>::from_cptr(root), address, rights, !executable)
                            }
                            Format::Ept => {
                                frame.map_ept(Cap::<EptRoot>::from_cptr(root), address, rights, !executable)
                            }
                        }
                        .map_err(err)?;
                    }
                    Entry::Table => {
                        match format {
                            Format::Ia32e => Cap::<PageTable>::from_cptr(target)
                                .map(Cap::<VSpace>::from_cptr(root), address),
                            Format::Ept => Cap::<EptTable>::from_cptr(target)
                                .map(Cap::<EptRoot>::from_cptr(root), address),
                        }
                        .map_err(err)?
                    }
                }
            }
        }
        Ok(())
    }
}
