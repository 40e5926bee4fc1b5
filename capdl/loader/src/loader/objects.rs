//! Making the spec's objects: each retyped from the first RAM untyped with room (or from
//! the untyped the spec names), address-space roots given an ASID, IRQ handlers and I/O
//! port ranges issued from their control capabilities, frames filled from the boot image.

use super::{Loader, ROOT};
use crate::error::LoadError;
use crate::image::Image;
use cleave_abi::boot_info::slot;
use cleave_abi::layout::PAGE_SHIFT;
use cleave_abi::{Error, ObjectType};
use cleave_capdl::binary::Kind;
use cleave_rt::Cap;
use cleave_rt::cap::kind::{AsidControl, AsidPool, IoPortControl, IrqControl, Unknown, Untyped};

impl Loader {
    /// The next free root slot.
    pub(super) fn free_slot(&mut self) -> u64 {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// A new object in the next free root slot, from the first RAM untyped with room.
    pub(super) fn retype(&mut self, ty: ObjectType, size_bits: u64) -> Result<u64, Error> {
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
                        // The retype succeeded, so the size is one the type has.
                        let bits = ty.size_bits(size_bits as u32).unwrap_or(0);
                        self.memory += 1 << bits;
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
                // A pool takes one page of untyped memory.
                let untyped = self.retype(ObjectType::Untyped, u64::from(PAGE_SHIFT));
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

    /// Makes every object but the device frames (`device_frames` makes those), in spec
    /// order, and adds each to the digest.
    pub(super) fn create_objects(&mut self, image: &Image<'static>) -> Result<(), LoadError> {
        let spec = self.spec;
        for i in 0..spec.object_count() {
            let o = spec.object(i).ok_or(LoadError::ObjectTable)?;
            let name = spec.name(o.name);
            self.from = match o.parent() {
                Some(p) if p < i => Some(self.slots[p as usize]),
                Some(_) => return Err(LoadError::LaterUntyped(name)),
                None => None,
            };
            if o.kind == Kind::CNode && o.cnode_radix().is_none() {
                return Err(LoadError::CNodeBelowOneSlot(name));
            }
            let made = match (o.kind, o.retype()) {
                // Device frames: made afterwards, in address order (`device_frames`).
                (Kind::Frame, _) if o.device_address().is_some() => Ok(0),
                (Kind::Pml4 | Kind::EptPml4, Some((ty, size))) => {
                    self.retype(ty, size).and_then(|s| self.give_asid(s))
                }
                (_, Some((ty, size))) => self.retype(ty, size),
                (Kind::Irq, None) => {
                    let Some(line) = spec.irq_line(i) else {
                        return Err(LoadError::IrqWithoutLine(name));
                    };
                    let dest = self.free_slot();
                    let control: Cap<IrqControl> = Cap::from_cptr(slot::IRQ_CONTROL);
                    control.get(line as u8, ROOT.slot(dest, 64)).map(|()| dest)
                }
                // I/O port ranges: the other kind not retyped.
                (_, None) => {
                    let (first, last) = o.io_ports();
                    let dest = self.free_slot();
                    let control: Cap<IoPortControl> = Cap::from_cptr(slot::IO_PORT_CONTROL);
                    control.issue(first, last, ROOT.slot(dest, 64)).map(|()| dest)
                }
            };
            self.from = None;
            self.slots[i as usize] = made.map_err(|e| LoadError::Create(name, e))?;
            // A frame filled from a file of the boot image.
            if let Some((file, offset)) = o.fill() {
                let file =
                    spec.name(file).and_then(|n| image.file(n)).ok_or(LoadError::FillFileMissing(name))?;
                if u32::from(o.size_bits) != PAGE_SHIFT {
                    return Err(LoadError::FillTooLarge(name));
                }
                let data = file.get(offset..).unwrap_or(&[]);
                self.fill(self.slots[i as usize], data, 0).map_err(|e| LoadError::Create(name, e))?;
            }
            self.digest.object(&o);
        }
        Ok(())
    }
}
