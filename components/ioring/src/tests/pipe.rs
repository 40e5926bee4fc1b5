//! Frame pipes: both directions, wrap-around, full pipes, netback restarts, a guest's new
//! VMM taken over, and hostile peers on either side.

use super::Rng;
use crate::error::{Error, ProtocolError, RegionError, RequestError, Ring};
use crate::layout::offset;
use crate::pipe::{Consumer, FRAME_SLOT, MAX_FRAME, Producer, region_size};
use crate::testing::Region;
use std::vec;
use std::vec::Vec;

const SLOTS: u32 = 8;

fn region() -> Region {
    Region::new(region_size(SLOTS).unwrap())
}

/// Frame `n`: its length varies from 0 to `MAX_FRAME`, its bytes name it.
fn frame(n: u64) -> Vec<u8> {
    let len = (n as usize * 397) % (MAX_FRAME + 1);
    (0..len).map(|i| (n as u8).wrapping_add(i as u8).wrapping_mul(3)).collect()
}

/// What netback does when it attaches to the VMM's session: says so in the region (for
/// tests of the VMM's side alone).
fn acknowledge(region: &Region) {
    let session = region.shared().load_u32(offset::SESSION).unwrap();
    region.shared().store_u32(offset::PIPE_ATTACHED, session).unwrap();
}

fn receive(consumer: &mut Consumer) -> Option<Vec<u8>> {
    let mut buf = vec![0; MAX_FRAME];
    consumer.receive(&mut buf).unwrap().map(|len| buf[..len].to_vec())
}

#[test]
fn frames_go_through_in_order_past_u32_max() {
    // tx: the VMM formats and produces, netback attaches and consumes.
    let region = self::region();
    let mut vmm = Producer::format_with_base(region.shared(), SLOTS, u32::MAX - 10).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    // Until netback attached to the VMM's session, the VMM's frames are dropped.
    assert_eq!(vmm.send(&frame(100)), Ok(false));
    assert_eq!(receive(&mut netback), None, "attaches");
    let mut next = 0;
    for round in 0..10u64 {
        let batch = round % 5 + 1;
        for n in next..next + batch {
            assert_eq!(vmm.send(&frame(n)), Ok(true));
        }
        assert_eq!(receive(&mut netback), None, "not published yet");
        assert_eq!(vmm.publish(), Ok(true));
        for n in next..next + batch {
            assert_eq!(receive(&mut netback), Some(frame(n)), "frame {n}");
        }
        assert_eq!(receive(&mut netback), None);
        next += batch;
    }
    assert_eq!(region.shared().load_u32(offset::PIPE_PROD), Ok((u32::MAX - 10).wrapping_add(next as u32)));
    assert!(next > 11, "the indexes wrapped");
    // rx: netback produces into a pipe the VMM formats and consumes.
    let region = self::region();
    let mut netback = Producer::attach(region.shared(), SLOTS).unwrap();
    let mut vmm = Consumer::format_with_base(region.shared(), SLOTS, u32::MAX - 2).unwrap();
    assert_eq!(receive(&mut vmm), None);
    for n in 0..20 {
        assert_eq!(netback.send(&frame(n)), Ok(true));
        netback.publish().unwrap();
        assert_eq!(receive(&mut vmm), Some(frame(n)));
    }
    assert!(region.guards_intact());
}

#[test]
fn a_full_pipe_drops_and_counts() {
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None, "attaches");
    for n in 0..SLOTS as u64 + 3 {
        assert_eq!(vmm.send(&frame(n)), Ok(n < SLOTS as u64), "frame {n}");
    }
    assert_eq!(vmm.dropped(), 3);
    vmm.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(0)));
    assert_eq!(vmm.send(&frame(99)), Ok(true), "room again");
    vmm.publish().unwrap();
    let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut netback)).collect();
    let mut expected: Vec<Vec<u8>> = (1..SLOTS as u64).map(frame).collect();
    expected.push(frame(99));
    assert_eq!(got, expected);
}

#[test]
fn long_frames_and_short_buffers_are_refused() {
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None, "attaches");
    let long = vec![0; MAX_FRAME + 1];
    assert_eq!(vmm.send(&long), Err(Error::Request(RequestError::FrameTooLong(MAX_FRAME + 1))));
    assert_eq!(vmm.dropped(), 0);
    assert_eq!(vmm.send(&[7; MAX_FRAME]), Ok(true));
    vmm.publish().unwrap();
    let mut short = vec![0; 100];
    assert_eq!(
        netback.receive(&mut short),
        Err(Error::Request(RequestError::BufferTooSmall { needed: MAX_FRAME }))
    );
    assert_eq!(receive(&mut netback), Some(vec![7; MAX_FRAME]), "the frame stayed");
    assert_eq!(region_size(12), Err(RegionError::Geometry));
    assert_eq!(region_size(SLOTS), Ok(4096 + 4096 + SLOTS as usize * FRAME_SLOT as usize));
    let small = Region::new(4096 * 2);
    assert!(matches!(Producer::format(small.shared(), SLOTS), Err(RegionError::TooSmall { .. })));
}

#[test]
fn a_netback_restart_loses_at_most_the_frames_in_flight() {
    // rx: netback attaches before the VMM formats (its frames are dropped until then),
    // sends three frames and publishes them, writes two more without publishing, restarts.
    let region = self::region();
    let mut netback = Producer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(netback.send(&frame(100)), Ok(false), "not formatted: dropped");
    assert_eq!(netback.dropped(), 1);
    let mut vmm = Consumer::format(region.shared(), SLOTS).unwrap();
    for n in 0..3 {
        assert_eq!(netback.send(&frame(n)), Ok(true));
    }
    netback.publish().unwrap();
    assert_eq!(receive(&mut vmm), Some(frame(0)));
    for n in 3..5 {
        assert_eq!(netback.send(&frame(n)), Ok(true));
    }
    let mut netback = Producer::attach(region.shared(), SLOTS).unwrap();
    for n in 10..12 {
        assert_eq!(netback.send(&frame(n)), Ok(true));
    }
    netback.publish().unwrap();
    let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut vmm)).collect();
    assert_eq!(got, [frame(1), frame(2), frame(10), frame(11)]);
    // tx: netback has taken two of five frames when it restarts; the new instance takes
    // the other three.
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None, "attaches");
    for n in 0..5 {
        vmm.send(&frame(n)).unwrap();
    }
    vmm.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(0)));
    assert_eq!(receive(&mut netback), Some(frame(1)));
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut netback)).collect();
    assert_eq!(got, [frame(2), frame(3), frame(4)]);
    assert!(region.guards_intact());
}

#[test]
fn hostile_indexes_and_lengths() {
    fn error<T>(e: ProtocolError) -> Result<T, Error> {
        Err(Error::Protocol(e))
    }
    // A producer index far ahead, seen by a consumer.
    let region = self::region();
    let mut vmm = Consumer::format(region.shared(), SLOTS).unwrap();
    acknowledge(&region);
    region.shared().store_u32(offset::PIPE_PROD, SLOTS + 1).unwrap();
    assert_eq!(vmm.receive(&mut [0; MAX_FRAME]), error(ProtocolError::ProducerAhead(Ring::Pipe)));
    assert_eq!(vmm.receive(&mut [0; MAX_FRAME]), error(ProtocolError::ProducerAhead(Ring::Pipe)), "for good");
    // A frame length over the maximum.
    let region = self::region();
    let mut vmm = Consumer::format(region.shared(), SLOTS).unwrap();
    acknowledge(&region);
    region.shared().store_u32(offset::ENTRIES, 5000).unwrap();
    region.shared().store_u32(offset::PIPE_PROD, 1).unwrap();
    assert_eq!(vmm.receive(&mut [0; MAX_FRAME]), error(ProtocolError::FrameTooLong(5000)));
    // A consumer index ahead of the producer's.
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    acknowledge(&region);
    region.shared().store_u32(offset::PIPE_CONS, 3).unwrap();
    assert_eq!(vmm.send(&frame(1)), error(ProtocolError::ConsumerAhead(Ring::Pipe)));
    // A netback attaching to a pipe whose header disagrees, or whose indexes do.
    let region = self::region();
    Producer::format(region.shared(), SLOTS / 2).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(
        netback.receive(&mut [0; MAX_FRAME]),
        error(ProtocolError::GeometryMismatch { slots: SLOTS / 2, slot_size: FRAME_SLOT })
    );
    // A netback restarted into a session its predecessor attached to, whose indexes the
    // VMM moved far apart meanwhile.
    let region = self::region();
    Consumer::format(region.shared(), SLOTS).unwrap();
    acknowledge(&region);
    region.shared().store_u32(offset::PIPE_CONS, 1000).unwrap();
    let mut netback = Producer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(netback.send(&frame(1)), error(ProtocolError::ConsumerAhead(Ring::Pipe)));
    assert!(region.guards_intact());
}

/// 10,000 rounds of both sides of a pipe at work while the header and the length entries
/// are overwritten with garbage: errors, never a panic or an access outside the region.
#[test]
fn garbage_in_a_pipe() {
    let mut rng = Rng::new(0x91be);
    let region = self::region();
    let shared = region.shared();
    let mut producer = Producer::format(shared, SLOTS).unwrap();
    let mut consumer = Consumer::attach(shared, SLOTS).unwrap();
    let (mut received, mut errors) = (0, 0);
    let mut buf = vec![0; MAX_FRAME];
    for round in 0..10_000u64 {
        for _ in 0..rng.below(4) {
            if producer.send(&frame(round)).is_err() {
                // The VMM's pipe is stopped for good after an error; the test starts a
                // fresh one now and then, and otherwise lets a netback-like producer attach.
                errors += 1;
                producer = if rng.one_in(4) {
                    Producer::format(shared, SLOTS).unwrap()
                } else {
                    Producer::attach(shared, SLOTS).unwrap()
                };
            }
        }
        let _ = producer.publish();
        // Now and then a new VMM (a pipe whose header the garbage spoilt waits for one).
        if rng.one_in(20) {
            producer = Producer::format(shared, SLOTS).unwrap();
        }
        match if rng.one_in(3) { rng.below(4) } else { u64::MAX } {
            0 => shared.store_u32(offset::PIPE_PROD, rng.next() as u32).unwrap(),
            1 => shared.store_u32(offset::PIPE_CONS, rng.next() as u32).unwrap(),
            2 => {
                let at = offset::ENTRIES + 4 * rng.below(SLOTS as u64) as usize;
                shared.store_u32(at, rng.below(2 * MAX_FRAME as u64) as u32).unwrap();
            }
            3 => {
                let at = rng.below(0x100) as usize & !3;
                shared.store_u32(at, rng.next() as u32).unwrap();
            }
            _ => {}
        }
        for _ in 0..rng.below(4) {
            match consumer.receive(&mut buf) {
                Ok(Some(len)) => {
                    assert!(len <= MAX_FRAME);
                    received += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    assert_ne!(e, Error::Protocol(ProtocolError::OutOfRegion), "round {round}");
                    errors += 1;
                    consumer = Consumer::attach(shared, SLOTS).unwrap();
                    break;
                }
            }
        }
    }
    assert!(region.guards_intact());
    assert!(received > 1000 && errors > 100, "{received} frames, {errors} errors");
}

/// The VMM closes its tx pipe when its guest is gone: netback sees it (before and after it
/// attached), frames already published still come out, and a pipe formatted afresh over
/// the same region is open again.
#[test]
fn a_closed_pipe_says_so_and_a_new_format_opens_it() {
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert!(!netback.closed());
    assert_eq!(receive(&mut netback), None, "attaches");
    assert_eq!(vmm.send(&frame(3)), Ok(true));
    assert_eq!(vmm.publish(), Ok(true));
    vmm.close();
    assert!(netback.closed());
    assert!(Consumer::attach(region.shared(), SLOTS).unwrap().closed(), "a restarted netback sees it too");
    assert_eq!(receive(&mut netback), Some(frame(3)));
    assert_eq!(receive(&mut netback), None);
    let _ = Producer::format(region.shared(), SLOTS).unwrap();
    assert!(!netback.closed());
    assert_eq!(region.shared().load_u32(offset::CLOSED), Ok(0));
}

/// An on-request guest destroyed and made again: its new VMM formats the same pipes, a
/// new session, while netback still holds the old one's indexes. Netback takes it over at
/// its next operation, starting at the new VMM's indexes; the new VMM sends and receives
/// nothing before that; and what netback's old self wrote in between (a frame published
/// after the new format) is overwritten, never delivered.
#[test]
fn a_guests_new_vmm_is_taken_over_by_netback() {
    // tx: the old VMM sent five frames, netback took three; the guest is destroyed.
    let region = self::region();
    let mut old = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None);
    for n in 0..5 {
        assert_eq!(old.send(&frame(n)), Ok(true));
    }
    old.publish().unwrap();
    for n in 0..3 {
        assert_eq!(receive(&mut netback), Some(frame(n)));
    }
    old.close();
    assert!(netback.closed());
    let old_session = netback.session_word();
    // The new VMM: its frames are dropped until netback attached.
    let mut new = Producer::format(region.shared(), SLOTS).unwrap();
    assert!(netback.session_word() != old_session && !netback.closed());
    assert_eq!(new.send(&frame(50)), Ok(false));
    assert_eq!(new.publish(), Ok(false));
    // Netback attaches (the old VMM's last two frames are gone with it) ...
    assert_eq!(receive(&mut netback), None);
    assert_eq!(region.shared().load_u32(offset::PIPE_ATTACHED), Ok(netback.session_word()));
    // ... and the new VMM's frames go through.
    for n in 60..63 {
        assert_eq!(new.send(&frame(n)), Ok(true));
    }
    new.publish().unwrap();
    let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut netback)).collect();
    assert_eq!(got, [frame(60), frame(61), frame(62)]);
    // rx: netback writes and publishes a frame for the old VMM after the new one formatted
    // (it had not looked yet): the new VMM never sees it.
    let region = self::region();
    let mut netback = Producer::attach(region.shared(), SLOTS).unwrap();
    let mut old = Consumer::format(region.shared(), SLOTS).unwrap();
    for n in 0..4 {
        assert_eq!(netback.send(&frame(n)), Ok(true));
    }
    netback.publish().unwrap();
    assert_eq!(receive(&mut old), Some(frame(0)));
    assert_eq!(netback.send(&frame(9)), Ok(true));
    let mut new = Consumer::format(region.shared(), SLOTS).unwrap();
    assert_eq!(netback.publish(), Ok(true), "the old session's frame, published late");
    assert_eq!(receive(&mut new), None, "not before netback attached");
    assert_eq!(netback.send(&frame(20)), Ok(true), "attaches, then sends");
    netback.publish().unwrap();
    let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut new)).collect();
    assert_eq!(got, [frame(20)]);
    assert!(region.guards_intact());
}

/// Netback's restart within a session goes on where its predecessor was; a restart that
/// finds a session its predecessor never attached to starts at the VMM's indexes.
#[test]
fn a_restarted_netback_continues_a_session_and_starts_a_new_one_over() {
    let region = self::region();
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None);
    for n in 0..4 {
        vmm.send(&frame(n)).unwrap();
    }
    vmm.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(0)));
    // Restarted: the same session, so the next frame is the predecessor's next.
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), Some(frame(1)));
    // A new VMM before the next restart: the restarted netback starts at its index.
    let mut vmm = Producer::format(region.shared(), SLOTS).unwrap();
    let mut netback = Consumer::attach(region.shared(), SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None);
    vmm.send(&frame(7)).unwrap();
    vmm.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(7)));
}

/// A hostile VMM breaks the protocol: netback's side fails and stays failed; the guest's
/// next VMM (a new session) gets a fresh start. Then the VMM, step after step, bumps the
/// session, writes netback's attached word itself, unformats the pipe and moves the
/// indexes: netback re-attaches, waits or fails, and never reads or writes outside the
/// region.
#[test]
fn a_failed_pipe_is_open_to_the_next_session_and_session_games_stay_in_the_region() {
    let region = self::region();
    let shared = region.shared();
    let mut hostile = Producer::format(shared, SLOTS).unwrap();
    let mut netback = Consumer::attach(shared, SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None);
    hostile.send(&frame(1)).unwrap();
    hostile.publish().unwrap();
    shared.store_u32(offset::PIPE_PROD, 5000).unwrap();
    assert_eq!(
        netback.receive(&mut [0; MAX_FRAME]),
        Err(Error::Protocol(ProtocolError::ProducerAhead(Ring::Pipe)))
    );
    assert!(netback.failed().is_some());
    let broken = netback.session_word();
    assert!(netback.receive(&mut [0; MAX_FRAME]).is_err(), "failed for good within the session");
    let mut next = Producer::format(shared, SLOTS).unwrap();
    assert_ne!(netback.session_word(), broken);
    assert_eq!(receive(&mut netback), None);
    assert!(netback.failed().is_none());
    next.send(&frame(2)).unwrap();
    next.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(2)));
    // Session games.
    let mut rng = Rng::new(0x5e55);
    let mut buf = vec![0; MAX_FRAME];
    for _ in 0..5000 {
        match rng.below(6) {
            0 => shared.store_u32(offset::SESSION, rng.below(4) as u32).unwrap(),
            1 => shared.store_u32(offset::PIPE_ATTACHED, rng.below(4) as u32).unwrap(),
            2 => shared.store_u32(offset::MAGIC, if rng.one_in(2) { 0 } else { rng.next() as u32 }).unwrap(),
            3 => shared.store_u32(offset::PIPE_PROD, rng.next() as u32).unwrap(),
            4 => {
                let _ = next.send(&frame(rng.below(100)));
                let _ = next.publish();
            }
            _ => next = Producer::format(shared, SLOTS).unwrap(),
        }
        match netback.receive(&mut buf) {
            Ok(Some(len)) => assert!(len <= MAX_FRAME),
            Ok(None) => {}
            Err(e) => assert_ne!(e, Error::Protocol(ProtocolError::OutOfRegion)),
        }
    }
    assert!(region.guards_intact());
}

/// A VMM's format seen half done: the magic cleared with the session bumped (the old
/// indexes still there), or the indexes reset before the magic: netback attaches to
/// neither and writes nothing, then attaches once the magic is back.
#[test]
fn netback_does_not_attach_to_a_format_half_done() {
    let region = self::region();
    let shared = region.shared();
    let mut old = Producer::format(shared, SLOTS).unwrap();
    let mut netback = Consumer::attach(shared, SLOTS).unwrap();
    assert_eq!(receive(&mut netback), None);
    for n in 0..3 {
        old.send(&frame(n)).unwrap();
    }
    old.publish().unwrap();
    let session = shared.load_u32(offset::SESSION).unwrap();
    // The new VMM's first steps: magic 0, attached word cleared, session bumped.
    shared.store_u32(offset::MAGIC, 0).unwrap();
    shared.store_u32(offset::PIPE_ATTACHED, 0).unwrap();
    shared.store_u32(offset::SESSION, session + 1).unwrap();
    assert_eq!(receive(&mut netback), None);
    assert_eq!(shared.load_u32(offset::PIPE_ATTACHED), Ok(0), "not attached to a half-made pipe");
    assert_eq!(shared.load_u32(offset::PIPE_CONS), Ok(0), "netback's own word untouched");
    // The rest of the format (the session bumped once more by `format` itself).
    let mut new = Producer::format(shared, SLOTS).unwrap();
    assert_eq!(new.send(&frame(9)), Ok(false), "netback has not attached");
    assert_eq!(receive(&mut netback), None, "attaches");
    new.send(&frame(10)).unwrap();
    new.publish().unwrap();
    assert_eq!(receive(&mut netback), Some(frame(10)), "none of the old VMM's frames");
}

/// A hostile VMM prepares its guest's next VMM's pipes: it sets the session word back, so
/// that the next format lands on the session netback is in, or acknowledges the next
/// session in advance in netback's word. The next VMM's format clears netback's word, so
/// netback attaches again at the new VMM's indexes and the new VMM waits for it: frames the
/// hostile one planted never reach the new guest.
#[test]
fn a_hostile_vmm_cannot_prepare_its_successors_session() {
    for advance in [false, true] {
        let region = self::region();
        let shared = region.shared();
        let mut netback = Producer::attach(shared, SLOTS).unwrap();
        let mut hostile = Consumer::format(shared, SLOTS).unwrap();
        assert_eq!(netback.send(&frame(1)), Ok(true));
        netback.publish().unwrap();
        assert_eq!(receive(&mut hostile), Some(frame(1)));
        let session = shared.load_u32(offset::SESSION).unwrap();
        // Planted: frames in every slot and netback's producer index ahead of them.
        for n in 0..SLOTS {
            shared.store_u32(offset::ENTRIES + 4 * n as usize, 60).unwrap();
        }
        shared.store_u32(offset::PIPE_PROD, 5).unwrap();
        if advance {
            shared.store_u32(offset::PIPE_ATTACHED, session + 1).unwrap();
        } else {
            shared.store_u32(offset::SESSION, session - 1).unwrap();
        }
        let mut new = Consumer::format(shared, SLOTS).unwrap();
        assert_eq!(receive(&mut new), None, "advance {advance}: waits for netback");
        assert_eq!(netback.send(&frame(7)), Ok(true), "advance {advance}: attaches again, then sends");
        netback.publish().unwrap();
        let got: Vec<Vec<u8>> = core::iter::from_fn(|| receive(&mut new)).collect();
        assert_eq!(got, [frame(7)], "advance {advance}");
    }
}
