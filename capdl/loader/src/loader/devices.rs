//! Device frames: each made from the device untyped that covers its physical address,
//! lowest address first, or refused (never made, mapped or given) when this machine has
//! no device memory there.

use super::{Loader, ROOT};
use crate::error::{LoadError, Name};
use cleave_abi::ObjectType;
use cleave_abi::layout::PAGE_SIZE;
use cleave_capdl::untyped::fillers;
use cleave_rt::cap::kind::{CNode, Untyped};
use cleave_rt::{Cap, println};

impl Loader {
    /// Makes every device frame (a frame with a physical address) from the device untyped
    /// that covers it, lowest address first: untyped memory hands out addresses in order,
    /// so the gap below each frame is first retyped into filler untyped objects (the
    /// largest aligned ones that fit), deleted once the frame exists.
    pub(super) fn device_frames(&mut self) -> Result<(), LoadError> {
        let spec = self.spec;
        let mut floor = 0u64;
        loop {
            // The lowest device frame above the last one made.
            let mut next: Option<(u32, u64)> = None;
            for i in 0..spec.object_count() {
                let o = spec.object(i).ok_or(LoadError::ObjectTable)?;
                let Some(paddr) = o.device_address() else { continue };
                if self.slots[i as usize] != 0 || self.refused[i as usize] {
                    continue;
                }
                if paddr < floor {
                    return Err(LoadError::DeviceAddressTwice(spec.name(o.name)));
                }
                if next.is_none_or(|(_, p)| paddr < p) {
                    next = Some((i, paddr));
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
                floor = paddr + PAGE_SIZE;
                continue;
            }
            self.slots[index as usize] = self.device_frame(paddr, name)?;
            floor = paddr + PAGE_SIZE;
        }
    }

    /// Makes the device frame `name` at `paddr` in a fresh root slot, from the device
    /// untyped that covers it.
    fn device_frame(&mut self, paddr: u64, name: Name) -> Result<u64, LoadError> {
        let err = |e| LoadError::DeviceFrame(name, e);
        let block = (0..self.info.untyped_count as usize).find(|&u| {
            let d = &self.info.untyped[u];
            d.is_device != 0
                && paddr >= d.physical_address
                && paddr + PAGE_SIZE <= d.physical_address + (1u64 << d.size_bits)
        });
        let Some(block) = block else {
            return Err(LoadError::NoDeviceUntyped(name));
        };
        let cap: Cap<Untyped> = Cap::from_cptr(self.info.untyped_first + block as u64);
        let mark = &mut self.device_marks[block];
        if *mark == 0 {
            *mark = self.info.untyped[block].physical_address;
        }
        if !paddr.is_multiple_of(PAGE_SIZE) || paddr < *mark {
            return Err(LoadError::DeviceUnaligned(name));
        }
        let first_filler = self.next_slot;
        for (_, bits) in fillers(*mark, paddr) {
            let filler = self.free_slot();
            cap.retype(ObjectType::Untyped, u64::from(bits), ROOT, 0, 0, filler, 1).map_err(err)?;
        }
        let dest = self.free_slot();
        cap.retype(ObjectType::Frame4K, 0, ROOT, 0, 0, dest, 1).map_err(err)?;
        self.device_marks[block] = paddr + PAGE_SIZE;
        // The fillers only moved the block's watermark; with the frame made (which keeps
        // the block from counting as unused), they go: the loader keeps no authority over
        // device memory nobody was given.
        for filler in first_filler..dest {
            Cap::<CNode>::delete(ROOT.slot(filler, 64)).map_err(err)?;
        }
        Ok(dest)
    }
}
