//! The in-system XenStore connection, as both ends see it, without a heap: which domain a
//! connection's badge stands for, and a client's reading of an answer (the reply message,
//! then the watch events that were waiting for it).
//!
//! Transport (XenStore-Logic's `xs-request` endpoint, `ring = "8K"` in system.toml): each
//! client has its own two-page ring. It writes one `xsd_sockmsg` at the start of page 0 and
//! calls with label [`LABEL_REQUEST`] and the length in word 0, or with [`LABEL_EVENTS`]
//! and nothing to only collect waiting watch events. Logic writes the reply message, then
//! the waiting `WATCH_EVENT` messages, at the start of page 1, and answers label 0 with
//! the reply's length in word 0 and the events' in word 1. Anything else gets label 1.

use crate::wire::{self, Framed, Header, MsgType};

/// A request message is in the ring.
pub const LABEL_REQUEST: u64 = 1;
/// Only collect waiting watch events.
pub const LABEL_EVENTS: u64 = 2;

/// The domain a connection's badge stands for: its low 16 bits minus one (badge bits
/// above them tell apart several connections of one domain, such as the toolstack's and
/// the host bridge's, both domain 0). `None` for a badge whose low bits are 0.
pub fn domain_of_badge(badge: u64) -> Option<u32> {
    let low = (badge & 0xffff) as u32;
    low.checked_sub(1)
}

/// An answer as the client reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// The reply's header (`MsgType::Error` for an error; its payload then names it).
    pub header: Header,
    /// The reply's payload.
    pub body: &'a [u8],
    /// Whole `WATCH_EVENT` messages that were waiting.
    pub events: &'a [u8],
}

impl<'a> Answer<'a> {
    /// Reads `bytes`: a reply of `reply_len` bytes (0 when only events were asked for),
    /// then the events. `None` if the reply is not one well-formed message.
    pub fn read(bytes: &'a [u8], reply_len: usize) -> Option<Self> {
        let (reply, events) = (bytes.get(..reply_len)?, bytes.get(reply_len..)?);
        if reply_len == 0 {
            let header = Header { msg_type: MsgType::WatchEvent as u32, req_id: 0, tx_id: 0, len: 0 };
            return Some(Self { header, body: &[], events });
        }
        match wire::frame(reply) {
            Framed::Message(header, body, used) if used == reply.len() => Some(Self { header, body, events }),
            _ => None,
        }
    }

    /// Whether the reply is of type `ty` (not an error).
    pub fn is(&self, ty: MsgType) -> bool {
        self.header.msg_type == ty as u32
    }

    /// The watch events: (path, token) each.
    pub fn watch_events(&self) -> WatchEvents<'a> {
        WatchEvents { rest: self.events }
    }
}

/// The `(path, token)` of each `WATCH_EVENT` message in a stream; stops at anything else.
#[derive(Clone, Debug)]
pub struct WatchEvents<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for WatchEvents<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let Framed::Message(header, payload, used) = wire::frame(self.rest) else { return None };
        if header.msg_type != MsgType::WatchEvent as u32 {
            return None;
        }
        self.rest = &self.rest[used..];
        let mut parts = payload.split(|&b| b == 0);
        Some((parts.next()?, parts.next()?))
    }
}

/// A client of one connection: encodes requests, numbers them, and reads the answers.
/// `exchange(label, message, out)` carries one message to Logic and copies the answer into
/// `out`, returning the reply's and the events' lengths (the component supplies it, over
/// its ring: `cleave_rt::shm::Shared::call`).
#[cfg(feature = "alloc")]
pub struct Client<F> {
    exchange: F,
    next_req: u32,
    message: alloc::vec::Vec<u8>,
    out: alloc::vec::Vec<u8>,
}

#[cfg(feature = "alloc")]
impl<F: FnMut(u64, &[u8], &mut [u8]) -> Option<(usize, usize)>> Client<F> {
    /// A client over `exchange`.
    pub fn new(exchange: F) -> Self {
        Self {
            exchange,
            next_req: 1,
            message: alloc::vec![0u8; wire::HEADER_LEN + wire::PAYLOAD_MAX],
            out: alloc::vec![0u8; 2 * wire::PAYLOAD_MAX],
        }
    }

    /// Sends a `ty` request in transaction `tx` (0: none) whose payload is `parts`
    /// concatenated; `None` if it cannot be encoded or the exchange fails.
    pub fn request(&mut self, ty: MsgType, tx: u32, parts: &[&[u8]]) -> Option<Answer<'_>> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let n = wire::encode(&mut self.message, ty, req_id, tx, parts)?;
        let (reply, events) = (self.exchange)(LABEL_REQUEST, &self.message[..n], &mut self.out)?;
        let answer = Answer::read(self.out.get(..reply + events)?, reply)?;
        (answer.header.req_id == req_id).then_some(answer)
    }

    /// Collects the watch events waiting for this connection.
    pub fn events(&mut self) -> Option<Answer<'_>> {
        let (reply, events) = (self.exchange)(LABEL_EVENTS, &[], &mut self.out)?;
        if reply != 0 {
            return None;
        }
        Answer::read(self.out.get(..events)?, 0)
    }

    /// Sends one whole message as it is (a bridge forwarding another client's bytes) and
    /// returns the answer's bytes: the reply, then the waiting events.
    pub fn forward(&mut self, message: &[u8]) -> Option<&[u8]> {
        let (reply, events) = (self.exchange)(LABEL_REQUEST, message, &mut self.out)?;
        self.out.get(..reply.checked_add(events)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_numbers_requests_and_reads_answers() {
        let mut seen = std::vec::Vec::new();
        let mut client = Client::new(|label, message: &[u8], out: &mut [u8]| {
            let header = Header::from_bytes(message);
            seen.push((label, header.map(|h| h.req_id)));
            if label == LABEL_EVENTS {
                let n = wire::encode(out, MsgType::WatchEvent, 0, 0, &[b"/x\0t\0"])?;
                return Some((0, n));
            }
            let h = header?;
            // Answer the second request with the wrong id: refused.
            let id = if h.req_id == 2 { 99 } else { h.req_id };
            Some((wire::encode(out, MsgType::Read, id, 0, &[b"v"])?, 0))
        });
        assert_eq!(client.request(MsgType::Read, 0, &[b"/a\0"]).map(|a| a.body), Some(&b"v"[..]));
        assert!(client.request(MsgType::Read, 0, &[b"/a\0"]).is_none(), "an answer to another request");
        assert_eq!(client.events().map(|a| a.watch_events().count()), Some(1));
        drop(client);
        assert_eq!(seen, [(LABEL_REQUEST, Some(1)), (LABEL_REQUEST, Some(2)), (LABEL_EVENTS, None)]);
    }

    #[test]
    fn badges_name_domains() {
        assert_eq!(domain_of_badge(1), Some(0));
        assert_eq!(domain_of_badge(0x1_0001), Some(0), "a second domain-0 connection");
        assert_eq!(domain_of_badge(2), Some(1));
        assert_eq!(domain_of_badge(0), None);
        assert_eq!(domain_of_badge(0x1_0000), None);
    }

    #[test]
    fn answers_split_into_reply_and_events() {
        let mut bytes = [0u8; 128];
        let r = wire::encode(&mut bytes, MsgType::Read, 9, 0, &[b"alice"]).unwrap();
        let e1 = wire::encode(&mut bytes[r..], MsgType::WatchEvent, 0, 0, &[b"/a\0t1\0"]).unwrap();
        let e2 = wire::encode(&mut bytes[r + e1..], MsgType::WatchEvent, 0, 0, &[b"/b\0t2\0"]).unwrap();
        let a = Answer::read(&bytes[..r + e1 + e2], r).unwrap();
        assert!(a.is(MsgType::Read));
        assert_eq!((a.header.req_id, a.body), (9, &b"alice"[..]));
        let events: std::vec::Vec<_> = a.watch_events().collect();
        assert_eq!(events, [(&b"/a"[..], &b"t1"[..]), (&b"/b"[..], &b"t2"[..])]);
        // Only events.
        let a = Answer::read(&bytes[r..r + e1], 0).unwrap();
        assert_eq!(a.watch_events().count(), 1);
        // A reply length that cuts the message, or one past the bytes, is refused.
        assert_eq!(Answer::read(&bytes[..r + e1], r - 1), None);
        assert_eq!(Answer::read(&bytes[..r], r + 1), None);
    }
}
