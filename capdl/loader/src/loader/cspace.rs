//! Capabilities into their slots: minted into CNodes with the spec's rights and badge (or
//! guard), untyped capabilities moved so that their holder can revoke what was made from
//! them, IRQ handlers bound to their notification, Vcpus given their thread and EPT root.
//! Then the capability distribution's part of the digest.

use super::{Loader, ROOT};
use crate::error::LoadError;
use cleave_abi::boot_info::slot;
use cleave_abi::{Error, Rights};
use cleave_capdl::binary::{Kind, special, tcb_slot};
use cleave_rt::Cap;
use cleave_rt::cap::kind::{CNode, IrqHandler, Vcpu};

impl Loader {
    /// Places every capability of the spec whose container is a CNode, an IRQ handler or
    /// a Vcpu (a TCB's were placed when it was set up; paging tables' are mappings).
    pub(super) fn place_caps(&mut self) -> Result<(), LoadError> {
        let spec = self.spec;
        for k in 0..spec.cap_count() {
            let c = spec.cap(k).ok_or(LoadError::CapabilityTable)?;
            let container = spec.object(c.container).ok_or(LoadError::CapabilityTable)?;
            let name = spec.name(container.name);
            let err = |e: Error| LoadError::Place(name, e);
            let source = match c.target {
                special::IRQ_CONTROL => slot::IRQ_CONTROL,
                special::UNSUPPORTED => return Err(LoadError::UnsupportedCap(name)),
                t if self.is_refused(t) => continue,
                t => self.slots[t as usize],
            };
            let badge = c.badge_or_guard();
            let rights = c.rights();
            let target = spec.object(c.target).map(|o| o.kind);
            match container.kind {
                // CSpace, VSpace, fault endpoint, bound notification: placed when the
                // thread was set up.
                Kind::Tcb
                    if matches!(
                        c.slot,
                        tcb_slot::CSPACE
                            | tcb_slot::VSPACE
                            | tcb_slot::FAULT_ENDPOINT
                            | tcb_slot::BOUND_NOTIFICATION
                    ) => {}
                Kind::Tcb => return Err(LoadError::TcbSlot(name)),
                // An untyped capability is moved there, not copied: its holder gets the one
                // the objects made from it descend from, so that revoking it destroys them.
                // Its badge word restricts it (`UNTYPED_FRAMES_ONLY`): then it is moved
                // with a mutate that says so.
                Kind::CNode if target == Some(Kind::Untyped) => {
                    let cnode: Cap<CNode> = Cap::from_cptr(self.slots[c.container as usize]);
                    let depth = container.cnode_radix().ok_or(LoadError::CNodeBelowOneSlot(name))?;
                    let (dest, src) = (cnode.slot(u64::from(c.slot), depth), ROOT.slot(source, 64));
                    match badge {
                        0 => cnode.move_cap(dest, src),
                        restriction => cnode.mutate(dest, src, Rights::ALL, restriction),
                    }
                    .map_err(err)?;
                }
                Kind::CNode => {
                    // Rights are cut on capabilities to what has them; the rest keep all.
                    let rights = if matches!(target, Some(Kind::Endpoint | Kind::Notification | Kind::Frame))
                    {
                        rights
                    } else {
                        Rights::ALL
                    };
                    let cnode: Cap<CNode> = Cap::from_cptr(self.slots[c.container as usize]);
                    let depth = container.cnode_radix().ok_or(LoadError::CNodeBelowOneSlot(name))?;
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
                // Mappings: placed by `map`, top level first.
                Kind::Pml4 | Kind::Pdpt | Kind::PageDirectory | Kind::PageTable => {}
                Kind::EptPml4 | Kind::EptPdpt | Kind::EptPd | Kind::EptPt => {}
                // A Vcpu: slot 0 names the thread that runs it, slot 1 its EPT root.
                Kind::Vcpu => {
                    let vcpu: Cap<Vcpu> = Cap::from_cptr(self.slots[c.container as usize]);
                    match (c.slot, target) {
                        (0, Some(Kind::Tcb)) => vcpu.set_tcb(Cap::from_cptr(source)).map_err(err)?,
                        (1, Some(Kind::EptPml4)) => vcpu.set_ept(Cap::from_cptr(source)).map_err(err)?,
                        _ => return Err(LoadError::VcpuSlot(name)),
                    }
                }
                _ => return Err(LoadError::UnsupportedContainer(name)),
            }
        }
        Ok(())
    }

    /// Adds every capability and IRQ mapping of the spec to the digest (objects went in as
    /// they were made).
    pub(super) fn digest_caps(&mut self) -> Result<(), LoadError> {
        let spec = self.spec;
        for k in 0..spec.cap_count() {
            let c = spec.cap(k).ok_or(LoadError::CapabilityTable)?;
            self.digest.cap(&c);
        }
        for k in 0..spec.irq_count() {
            if let Some((irq, object)) = spec.irq(k) {
                self.digest.word(u64::from(irq));
                self.digest.word(u64::from(object));
            }
        }
        Ok(())
    }
}
