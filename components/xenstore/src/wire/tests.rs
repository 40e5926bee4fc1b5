//! Codec tests: Xen's numbers and names, framing, every request type, malformed input.

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn message(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Header { msg_type: ty, req_id: 7, tx_id: 0, len: payload.len() as u32 }.to_bytes().to_vec();
    m.extend_from_slice(payload);
    m
}

fn request(ty: MsgType, payload: &[u8]) -> Result<Request<'_>, Error> {
    let header = Header { msg_type: ty as u32, req_id: 1, tx_id: 0, len: payload.len() as u32 };
    decode(&header, payload)
}

#[test]
fn numbers_and_names_are_xens() {
    assert_eq!(MsgType::from_u32(2), Some(MsgType::Read));
    assert_eq!(MsgType::from_u32(11), Some(MsgType::Write));
    assert_eq!(MsgType::from_u32(22), Some(MsgType::DirectoryPart));
    assert_eq!(MsgType::from_u32(20), None);
    assert_eq!(MsgType::from_u32(0xffff), None);
    for e in ALL_ERRORS {
        assert_eq!(Error::from_name(e.name()), Some(e));
    }
    assert_eq!(Error::Again.name(), "EAGAIN");
    assert_eq!(Error::TooBig.name(), "E2BIG");
}

#[test]
fn framing_waits_for_whole_messages_and_refuses_long_ones() {
    let m = message(2, b"/a\0");
    assert_eq!(frame(&m[..10]), Framed::Incomplete);
    assert_eq!(frame(&m[..m.len() - 1]), Framed::Incomplete);
    let Framed::Message(h, payload, used) = frame(&m) else { panic!() };
    assert_eq!((h.msg_type, h.req_id, payload, used), (2, 7, &b"/a\0"[..], 19));
    let mut two = m.clone();
    two.extend_from_slice(&message(13, b"/b\0"));
    let Framed::Message(_, _, used) = frame(&two) else { panic!() };
    assert!(matches!(frame(&two[used..]), Framed::Message(Header { msg_type: 13, .. }, b"/b\0", 19)));
    let long = Header { msg_type: 11, req_id: 1, tx_id: 0, len: 4097 }.to_bytes();
    assert!(matches!(frame(&long), Framed::TooLong(_)));
}

#[test]
fn every_request_type_decodes() {
    assert_eq!(request(MsgType::Read, b"/vm\0"), Ok(Request::Read("/vm")));
    assert_eq!(request(MsgType::Write, b"name\0alice"), Ok(Request::Write("name", b"alice")));
    assert_eq!(request(MsgType::Write, b"/e\0"), Ok(Request::Write("/e", b"")));
    assert_eq!(request(MsgType::Mkdir, b"/d\0"), Ok(Request::Mkdir("/d")));
    assert_eq!(request(MsgType::Rm, b"/d\0"), Ok(Request::Rm("/d")));
    assert_eq!(request(MsgType::Directory, b"/\0"), Ok(Request::Directory("/")));
    assert_eq!(request(MsgType::DirectoryPart, b"/\x0012\0"), Ok(Request::DirectoryPart("/", 12)));
    assert_eq!(request(MsgType::GetPerms, b"/d\0"), Ok(Request::GetPerms("/d")));
    assert_eq!(request(MsgType::SetPerms, b"/d\0n1\0r2\0"), Ok(Request::SetPerms("/d", b"n1\0r2\0")));
    assert_eq!(request(MsgType::Watch, b"/d\0tok\0"), Ok(Request::Watch("/d", "tok")));
    assert_eq!(
        request(MsgType::Watch, b"@introduceDomain\0t\0"),
        Ok(Request::Watch("@introduceDomain", "t"))
    );
    assert_eq!(request(MsgType::Unwatch, b"/d\0tok\0"), Ok(Request::Unwatch("/d", "tok")));
    assert_eq!(request(MsgType::TransactionStart, b"\0"), Ok(Request::TransactionStart));
    assert_eq!(request(MsgType::TransactionEnd, b"T\0"), Ok(Request::TransactionEnd(true)));
    assert_eq!(request(MsgType::TransactionEnd, b"F\0"), Ok(Request::TransactionEnd(false)));
    assert_eq!(request(MsgType::GetDomainPath, b"3\0"), Ok(Request::GetDomainPath(3)));
    assert_eq!(request(MsgType::ResetWatches, b""), Ok(Request::ResetWatches));
}

#[test]
fn malformed_requests_get_xens_errors() {
    assert_eq!(request(MsgType::Read, b"/vm"), Err(Error::Inval), "missing NUL");
    assert_eq!(request(MsgType::Read, b"/vm\0x"), Err(Error::Inval), "trailing bytes");
    assert_eq!(request(MsgType::Read, b"/a//b\0"), Err(Error::Inval), "empty component");
    assert_eq!(request(MsgType::Read, b"/\xff\0"), Err(Error::Inval), "not UTF-8");
    assert_eq!(request(MsgType::Read, b"@releaseDomain\0"), Err(Error::Inval), "special path read");
    assert_eq!(request(MsgType::SetPerms, b"/d\0"), Err(Error::Inval), "no permissions");
    assert_eq!(request(MsgType::DirectoryPart, b"/\0x\0"), Err(Error::Inval), "offset not a number");
    assert_eq!(request(MsgType::TransactionEnd, b"X\0"), Err(Error::Inval));
    assert_eq!(request(MsgType::GetDomainPath, b"-1\0"), Err(Error::Inval));
    assert_eq!(request(MsgType::WatchEvent, b"/d\0t\0"), Err(Error::NoSys), "daemon-only type");
    assert_eq!(request(MsgType::Introduce, b"1\0"), Err(Error::NoSys));
    let unknown = Header { msg_type: 99, req_id: 1, tx_id: 0, len: 0 };
    assert_eq!(decode(&unknown, b""), Err(Error::NoSys));
    let lying = Header { msg_type: 2, req_id: 1, tx_id: 0, len: 10 };
    assert_eq!(decode(&lying, b"/a\0"), Err(Error::Inval), "length differs from the header");
}

#[test]
fn replies_encode_with_the_request_ids() {
    let mut out = [0u8; 64];
    let n = encode(&mut out, MsgType::Read, 9, 4, &[b"alice"]).unwrap();
    assert_eq!(Header::from_bytes(&out), Some(Header { msg_type: 2, req_id: 9, tx_id: 4, len: 5 }));
    assert_eq!(&out[16..n], b"alice");
    let h = Header { msg_type: 2, req_id: 3, tx_id: 0, len: 0 };
    let n = encode_error(&mut out, &h, Error::NoEnt).unwrap();
    assert_eq!(&out[..4], &16u32.to_le_bytes());
    assert_eq!(&out[16..n], b"ENOENT\0");
    assert_eq!(encode(&mut [0u8; 10], MsgType::Read, 0, 0, &[b"x"]), None, "buffer too small");
    let big = [0u8; PAYLOAD_MAX + 1];
    assert_eq!(encode(&mut [0u8; 8192], MsgType::Read, 0, 0, &[&big]), None, "payload too long");
}

proptest! {
    /// Whatever arrives, framing and decoding return a value: no panic, no read past the
    /// message, and a decoded path always passes the path rules.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), ty in 0u32..30) {
        let mut m = message(ty, &bytes);
        m.extend_from_slice(&bytes);
        if let Framed::Message(h, payload, used) = frame(&m) {
            prop_assert!(used <= m.len());
            if let Ok(Request::Read(p) | Request::Rm(p) | Request::Mkdir(p)) = decode(&h, payload) {
                prop_assert_eq!(crate::path::check(p, crate::path::PathKind::Node), Ok(()));
            }
        }
    }

    /// A write of any value to any valid path reads back as that path and value.
    #[test]
    fn writes_round_trip(path in "/[a-z0-9_-]{1,8}(/[a-z0-9_@-]{1,8}){0,3}", value in proptest::collection::vec(any::<u8>(), 0..100)) {
        let mut payload = path.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(&value);
        let m = message(MsgType::Write as u32, &payload);
        let Framed::Message(h, p, _) = frame(&m) else { panic!("whole message not framed") };
        prop_assert_eq!(decode(&h, p), Ok(Request::Write(&path, &value)));
    }
}
