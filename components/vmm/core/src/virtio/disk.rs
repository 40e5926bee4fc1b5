//! The bridge from a guest's virtio-blk device to its disk's backend: guest requests
//! become ring requests of at most one slot each (the bytes of a write copied out of guest
//! RAM into the slot, a read's copied back in), and a guest request completes once every
//! piece of it has. The backend never sees guest memory: only this side, in the VMM,
//! reads and writes it, at the addresses the device model checked are guest RAM.
//!
//! What a hostile backend can do through the ring (`cleave_ioring` checks every word it
//! writes) is fail requests, never reach guest memory outside the request's own buffers
//! or complete a request twice: a piece's completion is matched by the guest request's
//! sequence number, and a request is given back to the device once.

use super::blk::{BlockRequest, RequestId, RequestKind, SECTOR_SIZE, VirtioBlk, status};
use crate::guest::GuestMemory;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use cleave_ioring::blk::{Completion, Event, Op, Request, Status, Vmm};

/// Ring events taken per call of [`DiskBridge::on_signal`] at most: a backend that keeps
/// publishing cannot hold the VMM in the loop.
const POLL_BUDGET: u32 = 1024;

/// What the bridge has done, for the VMM's last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Guest requests taken from the device.
    pub requests: u64,
    /// Ring requests submitted (a guest request is one or more).
    pub pieces: u64,
    /// Guest requests given back (with any status).
    pub completed: u64,
    /// Guest requests given back with an error status.
    pub errors: u64,
    /// Backend restarts the ring resynchronised after.
    pub resyncs: u64,
    /// Ring requests the backend sent back that matched no piece in flight.
    pub stale: u64,
    /// Times the ring reported a protocol error of the backend's.
    pub ring_errors: u64,
}

/// One guest request while its pieces are in flight.
struct Parent {
    id: RequestId,
    kind: RequestKind,
    sector: u64,
    segments: Vec<(u64, u32)>,
    len: u64,
    pieces: u32,
    done: u32,
    status: u8,
    seq: u32,
}

/// A guest's virtio-blk device's link to its backend (the VMM's side of the ring).
pub struct DiskBridge {
    /// On the heap: its in-flight table is some 12 KiB, most of a component's stack.
    ring: Box<Vmm>,
    slot_size: u32,
    /// Guest requests in flight, by their chain's head.
    parents: Vec<Option<Parent>>,
    /// Pieces not yet submitted (the ring was full): (head, sequence, piece).
    waiting: VecDeque<(u16, u32, u32)>,
    /// One slot's bytes.
    buffer: Vec<u8>,
    next_seq: u32,
    /// What it has done.
    pub counters: DiskCounters,
}

impl DiskBridge {
    /// A bridge over `ring` (formatted by the VMM) whose slots carry `slot_size` bytes.
    pub fn new(ring: Box<Vmm>, slot_size: u32) -> Self {
        Self {
            ring,
            slot_size: slot_size.max(SECTOR_SIZE as u32),
            parents: (0..super::queue::QUEUE_SIZE).map(|_| None).collect(),
            waiting: VecDeque::new(),
            buffer: vec![0; slot_size.max(SECTOR_SIZE as u32) as usize],
            next_seq: 1,
            counters: DiskCounters::default(),
        }
    }

    /// Closes the ring for good (the guest is gone); signal the backend afterwards.
    pub fn close(&self) {
        self.ring.close();
    }

    /// Guest requests in flight.
    pub fn in_flight(&self) -> usize {
        self.parents.iter().filter(|p| p.is_some()).count()
    }

    /// What is in flight where, for a report when requests stop completing: the guest
    /// requests and pieces this side holds, the device's view, and the ring's.
    pub fn describe(&self, device: &VirtioBlk) -> alloc::string::String {
        let c = self.counters;
        alloc::format!(
            "{} guest requests in flight ({} at the device, ISR {:#x}), {} pieces waiting for room; {} requests, {} completed, {} resyncs, {} stale, {} ring errors; ring: {}",
            self.in_flight(),
            device.in_flight(),
            device.transport().isr(),
            self.waiting.len(),
            c.requests,
            c.completed,
            c.resyncs,
            c.stale,
            c.ring_errors,
            self.ring.state()
        )
    }

    /// Takes what the guest posted and submits it; true if the backend should be
    /// signalled.
    pub fn pump(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory) -> bool {
        while let Some(request) = device.next_request(mem) {
            self.take(device, mem, request);
        }
        self.submit_waiting(device, mem)
    }

    /// Takes what the backend did (after a signal); true if the backend should be
    /// signalled (requests submitted, or a restart acknowledged).
    pub fn on_signal(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory) -> bool {
        let mut signal = false;
        for _ in 0..POLL_BUDGET {
            match self.ring.poll(&mut self.buffer) {
                Ok(Some(Event::Completed(c))) => self.completed(device, mem, c),
                Ok(Some(Event::Resynced { .. })) => {
                    self.counters.resyncs += 1;
                    signal = true;
                }
                Ok(None) => break,
                Err(_) => {
                    // Requests stay in flight: a restarted backend gets them again.
                    self.counters.ring_errors += 1;
                    break;
                }
            }
        }
        self.submit_waiting(device, mem) || signal
    }

    /// Records guest request `request` and queues its pieces; a request past the disk
    /// (the device checks its capacity) or a flush is one piece.
    fn take(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory, request: BlockRequest) {
        self.counters.requests += 1;
        let head = request.id.head;
        let Some(entry) = self.parents.get_mut(usize::from(head)) else {
            self.counters.errors += 1;
            self.counters.completed += 1;
            device.complete(mem, request.id, status::IOERR, 0);
            return;
        };
        // A head in use again means the guest reset the device: the old request is void
        // (its pieces' completions no longer match).
        let len = request.len();
        let pieces = len.div_ceil(u64::from(self.slot_size)).max(1) as u32;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        *entry = Some(Parent {
            id: request.id,
            kind: request.kind,
            sector: request.sector,
            segments: request.segments,
            len,
            pieces,
            done: 0,
            status: status::OK,
            seq,
        });
        self.waiting.retain(|&(h, _, _)| h != head);
        self.waiting.extend((0..pieces).map(|p| (head, seq, p)));
    }

    /// Submits waiting pieces while the ring has room; publishes; true if anything was.
    fn submit_waiting(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory) -> bool {
        while let Some(&(head, seq, piece)) = self.waiting.front() {
            let Some(parent) =
                self.parents.get(usize::from(head)).and_then(Option::as_ref).filter(|p| p.seq == seq)
            else {
                self.waiting.pop_front();
                continue;
            };
            if !device.is_pending(parent.id) {
                self.drop_parent(head);
                continue;
            }
            let offset = u64::from(piece) * u64::from(self.slot_size);
            let len = parent.len.saturating_sub(offset).min(u64::from(self.slot_size)) as u32;
            let (op, data_len) = match parent.kind {
                RequestKind::Read => (Op::Read, 0),
                RequestKind::Write => (Op::Write, len as usize),
                RequestKind::Flush => (Op::Flush, 0),
            };
            let request = Request {
                id: u64::from(seq) << 32 | u64::from(head) << 16 | u64::from(piece),
                op,
                sector: parent.sector + offset / SECTOR_SIZE,
                len: if op == Op::Flush { 0 } else { len },
            };
            let copied = data_len == 0
                || copy_guest(mem, &parent.segments, offset, &mut self.buffer[..data_len], false);
            let result = if copied { self.ring.submit(request, &self.buffer[..data_len]) } else { Ok(false) };
            match result {
                Ok(true) => {
                    self.counters.pieces += 1;
                    self.waiting.pop_front();
                }
                Ok(false) if copied => break,
                // Its bytes are not in guest RAM any more, or the ring refused it: the
                // piece fails, and with it the guest request.
                Ok(false) | Err(_) => {
                    self.waiting.pop_front();
                    self.piece_done(device, mem, head, status::IOERR);
                }
            }
        }
        matches!(self.ring.publish(), Ok(true))
    }

    /// A piece the backend finished: a read's bytes go into the guest request's buffers.
    fn completed(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory, c: Completion) {
        let (seq, head, piece) = ((c.id >> 32) as u32, (c.id >> 16) as u16, c.id as u16);
        let Some(parent) =
            self.parents.get(usize::from(head)).and_then(Option::as_ref).filter(|p| p.seq == seq)
        else {
            self.counters.stale += 1;
            return;
        };
        // The guest reset the device since: the request is void, its buffers the guest's
        // again; nothing is written there.
        if !device.is_pending(parent.id) {
            self.drop_parent(head);
            return;
        }
        let mut result = match c.status {
            Status::Ok => status::OK,
            Status::IoError => status::IOERR,
            Status::Unsupported => status::UNSUPP,
        };
        if result == status::OK && parent.kind == RequestKind::Read {
            let offset = u64::from(piece) * u64::from(self.slot_size);
            let want = parent.len.saturating_sub(offset).min(u64::from(self.slot_size)) as usize;
            let got = (c.len as usize).min(self.buffer.len());
            if got != want || !copy_guest(mem, &parent.segments, offset, &mut self.buffer[..got], true) {
                result = status::IOERR;
            }
        }
        self.piece_done(device, mem, head, result);
    }

    /// Forgets the request at `head` (void after a device reset) and its waiting pieces;
    /// completions of pieces already in the ring then match nothing.
    fn drop_parent(&mut self, head: u16) {
        if let Some(parent) = self.parents.get_mut(usize::from(head)).and_then(Option::take) {
            self.waiting.retain(|&(h, s, _)| !(h == head && s == parent.seq));
            self.counters.stale += 1;
        }
    }

    /// Counts one piece of the request at `head` done with `result`; completes the guest
    /// request when it was the last.
    fn piece_done(&mut self, device: &mut VirtioBlk, mem: &mut impl GuestMemory, head: u16, result: u8) {
        let Some(slot) = self.parents.get_mut(usize::from(head)) else { return };
        let Some(parent) = slot.as_mut() else { return };
        parent.done += 1;
        if result != status::OK && parent.status == status::OK {
            parent.status = result;
        }
        if parent.done < parent.pieces {
            return;
        }
        let Some(parent) = slot.take() else { return };
        self.waiting.retain(|&(h, s, _)| !(h == head && s == parent.seq));
        let written = if parent.kind == RequestKind::Read && parent.status == status::OK {
            parent.len as u32
        } else {
            0
        };
        if parent.status != status::OK {
            self.counters.errors += 1;
        }
        self.counters.completed += 1;
        device.complete(mem, parent.id, parent.status, written);
    }
}

/// Copies between `buffer` and the bytes `offset..offset + buffer.len()` of a request's
/// data, which `segments` (guest-physical address, length) hold in order: into guest RAM
/// if `to_guest`, out of it otherwise. False if a part is not guest RAM or the range is
/// past the segments.
fn copy_guest(
    mem: &mut impl GuestMemory,
    segments: &[(u64, u32)],
    offset: u64,
    buffer: &mut [u8],
    to_guest: bool,
) -> bool {
    let end = offset + buffer.len() as u64;
    let mut at = 0u64; // the request's byte where the current segment starts
    let mut copied = 0usize;
    for &(gpa, len) in segments {
        let (start, stop) = (at, at + u64::from(len));
        at = stop;
        let (from, to) = (start.max(offset), stop.min(end));
        if from >= to {
            continue;
        }
        let part = &mut buffer[(from - offset) as usize..(to - offset) as usize];
        let address = gpa + (from - start);
        let ok = if to_guest { mem.write(address, part) } else { mem.read(address, part) };
        if !ok {
            return false;
        }
        copied += part.len();
    }
    copied == buffer.len()
}

#[cfg(test)]
mod tests;
