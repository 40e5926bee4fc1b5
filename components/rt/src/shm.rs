//! Shared memory the loader mapped (regions and channel rings): bounds-checked, volatile
//! copies in and out, so that a peer writing concurrently can give wrong bytes but never
//! make this side read or write outside the mapping; and the ring call convention the
//! XenStore channels use (request at the start, reply in the second half).

use crate::Cap;
use crate::cap::{Message, kind::Endpoint};
use cleave_abi::{Error, MessageInfo};

/// A mapped shared range.
#[derive(Clone, Copy, Debug)]
pub struct Shared {
    base: usize,
    len: usize,
}

/// Most calls [`Shared::call`] makes for one request when the server is restarted under it.
pub const RING_CALL_ATTEMPTS: u32 = 8;

impl Shared {
    /// Names the range `[base, base + len)`.
    ///
    /// # Safety
    /// The range must be mapped read-write in this address space for as long as the value
    /// (or a copy) is used, and hold no Rust object: only these copies touch it.
    pub const unsafe fn new(base: usize, len: usize) -> Self {
        Self { base, len }
    }

    /// Its size in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part `[offset, offset + len)`, if it lies inside.
    pub fn part(&self, offset: usize, len: usize) -> Option<Shared> {
        (offset.checked_add(len)? <= self.len).then_some(Shared { base: self.base + offset, len })
    }

    /// Copies `out.len()` bytes from `offset`; false (nothing copied) if that is outside.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `new`'s contract: the range is mapped; offset + i < len (checked).
            // Volatile: the peer may change it at any time.
            *b = unsafe { ((self.base + offset + i) as *const u8).read_volatile() };
        }
        true
    }

    /// Copies `bytes` to `offset`; false (nothing written) if that is outside.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: as in `read`; the range is mapped writable.
            unsafe { ((self.base + offset + i) as *mut u8).write_volatile(*b) }
        }
        true
    }

    /// The ring call: writes `request` at the start of the range and calls `endpoint` with
    /// `label` and the request's length in word 0. The server writes its answer at the start
    /// of the second half and returns the lengths of its parts in words 0 and 1; they are
    /// copied, one after the other, into `out`. Returns the reply message and the two
    /// lengths. A request longer than the first half or an answer that does not fit the
    /// second half (or `out`) is an error (`InvalidArgument` / `RangeError`).
    ///
    /// A server restarted while the call waited (its supervisor's timer, a crash) is
    /// called again, up to [`RING_CALL_ATTEMPTS`] times in all: the request is still in
    /// the ring, and the restarted server reads it afresh. The server may already have
    /// acted on it, so a ring protocol's requests should be safe to repeat (XenStore's
    /// writes are; see doc/lifetimes.md).
    pub fn call(
        &self,
        endpoint: Cap<Endpoint>,
        label: u64,
        request: &[u8],
        out: &mut [u8],
    ) -> Result<(Message, usize, usize), Error> {
        let half = self.len / 2;
        if request.len() > half || !self.write(0, request) {
            return Err(Error::InvalidArgument);
        }
        let m = endpoint.call_retrying(
            MessageInfo::new(label, 0, 0, 1),
            [request.len() as u64, 0, 0, 0],
            RING_CALL_ATTEMPTS,
        )?;
        let (first, second) = (m.words[0] as usize, m.words[1] as usize);
        let total = first.checked_add(second).ok_or(Error::RangeError)?;
        if total > half || total > out.len() || !self.read(half, &mut out[..total]) {
            return Err(Error::RangeError);
        }
        Ok((m, first, second))
    }
}
