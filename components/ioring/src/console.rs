//! A guest's console between its VMM and the toolstack (`console = "ctl"`): one page, two
//! byte rings. What the guest writes to its serial port goes out (VMM to toolstack); what
//! an operator types (`cleave ctl console GUEST`) comes in (toolstack to VMM).
//!
//! | offset | size | what | written by |
//! |---|---|---|---|
//! | 0x000 | u32 | out producer index | VMM |
//! | 0x040 | u32 | out consumer index | toolstack |
//! | 0x080 | u32 | in producer index | toolstack |
//! | 0x0c0 | u32 | in consumer index | VMM |
//! | 0x400 | 1024 | in bytes | toolstack |
//! | 0x800 | 2048 | out bytes | VMM |
//!
//! Indexes run free (wrapping at 2^32). Each side keeps its own copy of the indexes it
//! writes and reads each of the peer's once per call; a peer index that claims more bytes
//! than the ring holds is a broken peer: that side drops what is pending (its consumer
//! index jumps to the peer's producer index) and counts it, and goes on. Nothing a peer
//! writes makes a side read or write outside the page.
//!
//! No format step: a VMM that starts (a guest made again, on request) takes the
//! toolstack's words as they are, so the toolstack's copies stay right: nothing new to
//! read out, and what was typed before it started is dropped.

use crate::shared::{OutOfRegion, PAGE, Shared};

/// Bytes the region needs: one page.
pub const REGION_BYTES: usize = PAGE;
/// Bytes the in ring holds (typed at the guest).
pub const IN_BYTES: u32 = 1024;
/// Bytes the out ring holds (the guest's output).
pub const OUT_BYTES: u32 = 2048;

mod offset {
    pub const OUT_PROD: usize = 0x000;
    pub const OUT_CONS: usize = 0x040;
    pub const IN_PROD: usize = 0x080;
    pub const IN_CONS: usize = 0x0c0;
    pub const IN: usize = 0x400;
    pub const OUT: usize = 0x800;
}

/// One direction: where its bytes are and how many it holds.
#[derive(Clone, Copy)]
struct Ring {
    at: usize,
    size: u32,
}

const IN: Ring = Ring { at: offset::IN, size: IN_BYTES };
const OUT: Ring = Ring { at: offset::OUT, size: OUT_BYTES };

/// Copies `bytes` into `ring` from free-running index `prod`, as many as fit behind `cons`;
/// returns how many.
fn put(shared: &Shared, ring: Ring, prod: u32, cons: u32, bytes: &[u8]) -> Result<u32, OutOfRegion> {
    let room = ring.size - prod.wrapping_sub(cons);
    let n = (bytes.len() as u32).min(room);
    for (k, &b) in bytes[..n as usize].iter().enumerate() {
        let at = ring.at + (prod.wrapping_add(k as u32) % ring.size) as usize;
        shared.write(at, &[b])?;
    }
    Ok(n)
}

/// Copies bytes out of `ring` from `cons` up to `prod` into `out`; returns how many.
fn take(shared: &Shared, ring: Ring, prod: u32, cons: u32, out: &mut [u8]) -> Result<u32, OutOfRegion> {
    let n = (out.len() as u32).min(prod.wrapping_sub(cons));
    for (k, slot) in out[..n as usize].iter_mut().enumerate() {
        let at = ring.at + (cons.wrapping_add(k as u32) % ring.size) as usize;
        let mut b = [0u8];
        shared.read(at, &mut b)?;
        *slot = b[0];
    }
    Ok(n)
}

/// The indexes one side writes, and what it counts.
struct Side {
    shared: Shared,
    /// Its producer index (of the ring it writes).
    prod: u32,
    /// Its consumer index (of the ring it reads).
    cons: u32,
    /// Times the peer's index was impossible (what was pending was dropped).
    broken: u64,
}

impl Side {
    /// Writes what fits of `bytes` into `ring`, whose consumer index the peer writes at
    /// `cons_at`; publishes the producer index at `prod_at`. Returns how many were taken.
    fn write(&mut self, ring: Ring, prod_at: usize, cons_at: usize, bytes: &[u8]) -> usize {
        let Ok(cons) = self.shared.load_u32(cons_at) else { return 0 };
        let cons = if self.prod.wrapping_sub(cons) > ring.size {
            // The peer says it read what was never written: take it as having read all.
            self.broken += 1;
            self.prod
        } else {
            cons
        };
        let Ok(n) = put(&self.shared, ring, self.prod, cons, bytes) else { return 0 };
        self.prod = self.prod.wrapping_add(n);
        let _ = self.shared.store_u32(prod_at, self.prod);
        n as usize
    }

    /// Reads what has arrived in `ring`, whose producer index the peer writes at
    /// `prod_at`, into `out`; publishes the consumer index at `cons_at`.
    fn read(&mut self, ring: Ring, prod_at: usize, cons_at: usize, out: &mut [u8]) -> usize {
        let Ok(prod) = self.shared.load_u32(prod_at) else { return 0 };
        if prod.wrapping_sub(self.cons) > ring.size {
            // More than the ring holds: drop what is there and go on from the peer's index.
            self.broken += 1;
            self.cons = prod;
            let _ = self.shared.store_u32(cons_at, self.cons);
            return 0;
        }
        let Ok(n) = take(&self.shared, ring, prod, self.cons, out) else { return 0 };
        self.cons = self.cons.wrapping_add(n);
        let _ = self.shared.store_u32(cons_at, self.cons);
        n as usize
    }
}

/// Why a console region cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooSmall;

/// The VMM's side: writes the guest's output, reads what is typed.
pub struct VmmConsole(Side);

impl VmmConsole {
    /// Starts on `shared` (at least [`REGION_BYTES`]): nothing to read out, nothing typed.
    pub fn start(shared: Shared) -> Result<Self, TooSmall> {
        if shared.len() < REGION_BYTES {
            return Err(TooSmall);
        }
        let out_cons = shared.load_u32(offset::OUT_CONS).map_err(|_| TooSmall)?;
        let in_prod = shared.load_u32(offset::IN_PROD).map_err(|_| TooSmall)?;
        shared.store_u32(offset::OUT_PROD, out_cons).map_err(|_| TooSmall)?;
        shared.store_u32(offset::IN_CONS, in_prod).map_err(|_| TooSmall)?;
        Ok(Self(Side { shared, prod: out_cons, cons: in_prod, broken: 0 }))
    }

    /// Writes what fits of the guest's output; returns how many bytes (the rest is lost:
    /// nobody is reading).
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        self.0.write(OUT, offset::OUT_PROD, offset::OUT_CONS, bytes)
    }

    /// What was typed, up to `out.len()` bytes.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        self.0.read(IN, offset::IN_PROD, offset::IN_CONS, out)
    }

    /// Times the toolstack's index words were impossible.
    pub fn broken(&self) -> u64 {
        self.0.broken
    }
}

/// The toolstack's side: reads the guest's output, writes what is typed.
pub struct HostConsole(Side);

impl HostConsole {
    /// Starts on `shared` (at least [`REGION_BYTES`]), before or after the VMM.
    pub fn start(shared: Shared) -> Result<Self, TooSmall> {
        if shared.len() < REGION_BYTES {
            return Err(TooSmall);
        }
        let in_prod = shared.load_u32(offset::IN_PROD).map_err(|_| TooSmall)?;
        let out_cons = shared.load_u32(offset::OUT_CONS).map_err(|_| TooSmall)?;
        Ok(Self(Side { shared, prod: in_prod, cons: out_cons, broken: 0 }))
    }

    /// The guest's output that arrived, up to `out.len()` bytes.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        self.0.read(OUT, offset::OUT_PROD, offset::OUT_CONS, out)
    }

    /// Types what fits of `bytes`; returns how many.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        self.0.write(IN, offset::IN_PROD, offset::IN_CONS, bytes)
    }

    /// Times the VMM's index words were impossible.
    pub fn broken(&self) -> u64 {
        self.0.broken
    }

    /// Starts over once the VMM is gone (its guest destroyed): drops what it left unread
    /// and writes this side's two words again, so that whatever a misbehaving VMM wrote
    /// into them is not what the next VMM adopts.
    pub fn resync(&mut self) {
        if let Ok(prod) = self.0.shared.load_u32(offset::OUT_PROD) {
            self.0.cons = prod;
        }
        let _ = self.0.shared.store_u32(offset::OUT_CONS, self.0.cons);
        let _ = self.0.shared.store_u32(offset::IN_PROD, self.0.prod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Region, Rng};
    use std::vec::Vec;

    #[test]
    fn bytes_cross_both_ways_and_wrap() {
        let region = Region::new(REGION_BYTES);
        let mut host = HostConsole::start(region.shared()).unwrap();
        let mut vmm = VmmConsole::start(region.shared()).unwrap();
        let mut out = [0u8; 700];
        let mut seen = Vec::new();
        let mut sent = Vec::new();
        for round in 0..20u8 {
            let text: Vec<u8> = (0..600).map(|i| round.wrapping_add(i as u8)).collect();
            assert_eq!(vmm.write(&text), 600, "round {round}");
            sent.extend_from_slice(&text);
            let n = host.read(&mut out);
            seen.extend_from_slice(&out[..n]);
            assert_eq!(host.write(b"ls\n"), 3);
            let mut typed = [0u8; 8];
            assert_eq!(vmm.read(&mut typed), 3);
            assert_eq!(&typed[..3], b"ls\n");
        }
        assert_eq!(seen, sent);
        assert_eq!(host.broken() + vmm.broken(), 0);
        assert!(region.guards_intact());
    }

    #[test]
    fn a_full_ring_takes_what_fits_and_nothing_is_overwritten() {
        let region = Region::new(REGION_BYTES);
        let mut host = HostConsole::start(region.shared()).unwrap();
        let mut vmm = VmmConsole::start(region.shared()).unwrap();
        assert_eq!(vmm.write(&[b'a'; 3000]), OUT_BYTES as usize);
        assert_eq!(vmm.write(b"b"), 0, "full");
        let mut out = [0u8; 4096];
        assert_eq!(host.read(&mut out), OUT_BYTES as usize);
        assert!(out[..OUT_BYTES as usize].iter().all(|&b| b == b'a'));
        assert_eq!(host.write(&[b'x'; 2000]), IN_BYTES as usize);
    }

    /// A VMM made again over the region its guest's old VMM used: the toolstack's copies
    /// stay right; nothing old is read out, and what was typed for the old VMM is dropped.
    #[test]
    fn a_new_vmm_takes_the_toolstacks_words_as_they_are() {
        let region = Region::new(REGION_BYTES);
        let mut host = HostConsole::start(region.shared()).unwrap();
        let mut old = VmmConsole::start(region.shared()).unwrap();
        old.write(b"old output never read");
        let mut out = [0u8; 8];
        host.read(&mut out);
        host.write(b"typed for the old one");
        let mut new = VmmConsole::start(region.shared()).unwrap();
        let mut typed = [0u8; 64];
        assert_eq!(new.read(&mut typed), 0);
        assert_eq!(host.read(&mut out), 0, "the old VMM's rest is gone");
        new.write(b"hello");
        let mut all = [0u8; 64];
        assert_eq!(host.read(&mut all), 5);
        assert_eq!(&all[..5], b"hello");
        assert_eq!(host.broken() + new.broken(), 0);
    }

    /// A VMM that, before its guest is destroyed, moves the toolstack's consumer word ahead
    /// and fills the ring with text of its own: once the toolstack resyncs (at `destroy`),
    /// the next VMM starts from the toolstack's real position and none of that text is read.
    #[test]
    fn a_resync_at_destroy_drops_what_a_misbehaving_vmm_left() {
        let region = Region::new(REGION_BYTES);
        let shared = region.shared();
        let mut host = HostConsole::start(region.shared()).unwrap();
        let mut old = VmmConsole::start(region.shared()).unwrap();
        old.write(b"boot");
        let mut out = [0u8; 4096];
        assert_eq!(host.read(&mut out), 4);
        // The old VMM writes the toolstack's words and a fake login prompt.
        shared.store_u32(offset::OUT_CONS, 4 + OUT_BYTES).unwrap();
        shared.write(offset::OUT, &[b'!'; 2048]).unwrap();
        shared.store_u32(offset::IN_PROD, 999).unwrap();
        host.resync();
        let mut new = VmmConsole::start(region.shared()).unwrap();
        assert_eq!(host.read(&mut out), 0, "nothing the old VMM left is read");
        let mut typed = [0u8; 16];
        assert_eq!(new.read(&mut typed), 0, "nothing typed");
        new.write(b"ok");
        assert_eq!(host.read(&mut out), 2);
        assert_eq!(&out[..2], b"ok");
    }

    /// Either side may write anything into the page: the other reads and writes only
    /// inside it, never more than the rings hold, and goes on.
    #[test]
    fn a_hostile_peer_cannot_make_a_side_read_or_write_outside_the_page() {
        let mut rng = Rng::new(17);
        for _ in 0..200 {
            let region = Region::new(REGION_BYTES);
            let shared = region.shared();
            let mut host = HostConsole::start(region.shared()).unwrap();
            let mut vmm = VmmConsole::start(region.shared()).unwrap();
            for _ in 0..8 {
                let word = [offset::OUT_PROD, offset::OUT_CONS, offset::IN_PROD, offset::IN_CONS]
                    [rng.below(4) as usize];
                shared.store_u32(word, rng.next() as u32).unwrap();
                let mut out = [0u8; 4096];
                assert!(host.read(&mut out) <= OUT_BYTES as usize);
                assert!(vmm.read(&mut out) <= IN_BYTES as usize);
                assert!(host.write(&[1; 3000]) <= IN_BYTES as usize);
                assert!(vmm.write(&[2; 3000]) <= OUT_BYTES as usize);
            }
            assert!(region.guards_intact());
        }
    }
}
