//! The bridge from a guest's virtio-net device to its network's backend (netback, a
//! switch): the frames the guest sends go into the tx pipe, the frames the switch puts in
//! the rx pipe go into the guest's receive buffers, each behind the 10-byte virtio-net
//! header the pipes carry. The switch never sees guest memory: only this side, in the VMM,
//! copies between the pipes and the buffers the device model checked are guest RAM.
//!
//! The VMM formats both pipes (a guest's region is its tx pipe, then its rx pipe); the
//! switch attaches to them, and a restarted switch continues from their indexes. A frame is
//! taken out of the rx pipe only when the guest has a receive buffer posted for it, so a
//! guest slow to post buffers leaves frames in the pipe (the switch drops what does not
//! fit, as a full port would) rather than the VMM dropping them. A full tx pipe drops the
//! frame the guest sent, which the guest's protocols recover from as from any lost frame.
//!
//! What a hostile switch can do through the rx pipe (`cleave_ioring` checks every word it
//! writes) is stop the guest's receiving: the pipe refuses it for good and the guest's
//! transmitting goes on. A frame of a length no Ethernet frame has is dropped by the device.

use super::net::{HEADER_LEN, VirtioNet};
use crate::guest::GuestMemory;
use alloc::boxed::Box;
use cleave_ioring::pipe::{Consumer, MAX_FRAME, Producer};
use cleave_ioring::{Error, RegionError, Shared};

/// What the bridge has done, for the VMM's last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetBridgeCounters {
    /// Frames the guest sent that went into the tx pipe.
    pub sent: u64,
    /// Frames the guest sent that were dropped: the tx pipe was full, or refuses the
    /// switch.
    pub tx_full: u64,
    /// Frames from the rx pipe delivered to the guest.
    pub received: u64,
    /// Frames from the rx pipe the device dropped (a length no frame has, or a receive
    /// buffer too small).
    pub rx_dropped: u64,
}

/// A guest's virtio-net device's link to its switch (the VMM's side of the pipes).
pub struct NetBridge {
    tx: Producer,
    rx: Consumer,
    /// One frame with its header; on the heap (the component's stack is small).
    frame: Box<[u8; MAX_FRAME]>,
    /// Each pipe's slots: the most frames one [`NetBridge::receive`] takes, so that a
    /// switch refilling the rx pipe (with runts, which take no guest buffer) while the VMM
    /// runs cannot keep it there.
    slots: u32,
    /// What it has done.
    pub counters: NetBridgeCounters,
}

impl NetBridge {
    /// Formats `region` as a guest's two pipes of `slots` slots each: the tx pipe in its
    /// first half, the rx pipe in its second.
    pub fn format(region: Shared, slots: u32) -> Result<Self, RegionError> {
        let half = region.len() / 2;
        let tx = Producer::format(region.part(0, half)?, slots)?;
        let rx = Consumer::format(region.part(half, half)?, slots)?;
        Ok(Self { tx, rx, frame: Box::new([0; MAX_FRAME]), slots, counters: NetBridgeCounters::default() })
    }

    /// Closes the tx pipe for good (the guest is gone); signal the switch afterwards.
    pub fn close(&self) {
        self.tx.close();
    }

    /// Why a pipe refuses the switch, if one does: the rx pipe's error, else the tx pipe's.
    pub fn failed(&self) -> Option<Error> {
        self.rx.failed().or(self.tx.failed()).map(Error::Protocol)
    }

    /// Puts every frame the guest sent into the tx pipe and publishes them: true if the
    /// switch should be signalled.
    pub fn transmit(&mut self, device: &mut VirtioNet, mem: &mut impl GuestMemory) -> bool {
        while let Some(frame) = device.take_tx(mem) {
            let bytes = frame.as_bytes();
            let total = HEADER_LEN + bytes.len();
            let Some(out) = self.frame.get_mut(..total) else { continue };
            // The guest's header asks for nothing (no offloads are offered): a zero one
            // goes to the switch, which writes its own anyway.
            out[..HEADER_LEN].fill(0);
            out[HEADER_LEN..].copy_from_slice(bytes);
            match self.tx.send(out) {
                Ok(true) => self.counters.sent += 1,
                // Full, or the switch broke the pipe's protocol: the frame is lost.
                Ok(false) | Err(_) => self.counters.tx_full += 1,
            }
        }
        self.tx.publish().unwrap_or(false)
    }

    /// Delivers frames from the rx pipe while the guest has receive buffers posted: how
    /// many it delivered. The device interrupts the guest as it delivers.
    pub fn receive(&mut self, device: &mut VirtioNet, mem: &mut impl GuestMemory) -> usize {
        let mut delivered = 0;
        for _ in 0..self.slots {
            if !device.can_receive(mem) {
                break;
            }
            let len = match self.rx.receive(&mut self.frame[..]) {
                Ok(Some(len)) => len,
                Ok(None) | Err(_) => break,
            };
            match self.frame.get(HEADER_LEN..len) {
                Some(frame) if device.deliver(mem, frame) => {
                    self.counters.received += 1;
                    delivered += 1;
                }
                _ => self.counters.rx_dropped += 1,
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests;
