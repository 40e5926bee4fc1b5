//! The protocol's limits, tried as a hostile client and a confused one would.

use super::*;
use std::string::{String, ToString};
use std::vec::Vec;

fn lines(reader: &mut LineReader, bytes: &[u8]) -> Vec<Result<String, ()>> {
    let mut out = Vec::new();
    for &b in bytes {
        match reader.push(b) {
            Pushed::More => {}
            Pushed::Line(l) => out.push(Ok(l.to_string())),
            Pushed::Refused => out.push(Err(())),
        }
    }
    out
}

#[test]
fn requests_parse_and_every_refusal_says_why() {
    assert_eq!(Request::parse("list"), Ok(Request::List));
    assert_eq!(Request::parse("  restart   xenstore-logic "), Ok(Request::Restart("xenstore-logic")));
    assert_eq!(Request::parse("exposure alice"), Ok(Request::Exposure("alice")));
    assert_eq!(Request::parse("create carol"), Ok(Request::Create("carol")));
    assert_eq!(Request::parse("destroy carol"), Ok(Request::Destroy("carol")));
    assert_eq!(Request::parse("console debian"), Ok(Request::Console("debian")));
    assert_eq!(Request::parse("audit"), Ok(Request::Audit));
    // The questions are the client's: the line carries only the request for the log.
    assert_eq!(Request::parse("audit --guest alice"), Err(ParseError::Extra("--guest")));
    assert_eq!(Request::parse("console"), Err(ParseError::Missing("console", "a guest's name")));
    assert_eq!(Request::parse("create"), Err(ParseError::Missing("create", "a guest's name")));
    assert_eq!(Request::parse("destroy carol now"), Err(ParseError::Extra("now")));
    assert_eq!(Request::parse(""), Err(ParseError::Empty));
    assert_eq!(Request::parse("frobnicate now"), Err(ParseError::Unknown("frobnicate")));
    assert_eq!(Request::parse("restart"), Err(ParseError::Missing("restart", "a component's name")));
    assert_eq!(Request::parse("list everything"), Err(ParseError::Extra("everything")));
    assert_eq!(Request::parse("restart ../etc"), Err(ParseError::BadName("../etc")));
    assert_eq!(Request::parse("restart Vga"), Err(ParseError::BadName("Vga")));
    let long = "a".repeat(MAX_NAME + 1);
    assert_eq!(Request::parse(&std::format!("exposure {long}")), Err(ParseError::BadName(long.as_str())));
    assert!(ParseError::Unknown("x").to_string().contains(COMMANDS));
}

#[test]
fn the_reader_drops_overlong_lines_and_control_bytes_and_goes_on() {
    let mut r = LineReader::new();
    let mut bytes = std::vec![b'x'; MAX_LINE + 50];
    bytes.extend_from_slice(b"\nlist\r\n\x00\x1bli\x07s\x1dt\n");
    // The overlong line is refused once, at its newline; the next ones are whole.
    assert_eq!(lines(&mut r, &bytes), [Err(()), Ok("list".into()), Ok("list".into())]);
    // Exactly MAX_LINE bytes is a line; invalid UTF-8 is refused; an empty line is one.
    let mut exact = std::vec![b'y'; MAX_LINE];
    exact.extend_from_slice(b"\n\xff\xfe\n\n");
    assert_eq!(lines(&mut r, &exact), [Ok("y".repeat(MAX_LINE)), Err(()), Ok(String::new())]);
}

#[test]
fn reply_lines_are_body_status_or_skipped() {
    assert_eq!(ReplyLine::parse("| vga  driver"), ReplyLine::Body("vga  driver"));
    assert_eq!(ReplyLine::parse("ok\r"), ReplyLine::Status(Status::Ok));
    assert_eq!(ReplyLine::parse("error: no such guest"), ReplyLine::Status(Status::Error("no such guest")));
    assert_eq!(ReplyLine::parse("> restart vga"), ReplyLine::Echo("restart vga"));
    assert_eq!(ReplyLine::parse("okay"), ReplyLine::Other);
    assert_eq!(ReplyLine::parse("|no space"), ReplyLine::Other);
}

#[test]
fn names_pack_into_four_words_and_only_valid_ones_unpack() {
    let mut out = [0u8; MAX_NAME];
    let words = pack_name("xenstore-logic").unwrap();
    assert_eq!(unpack_name(words, &mut out), Some("xenstore-logic"));
    let full = "a".repeat(MAX_NAME);
    assert_eq!(unpack_name(pack_name(&full).unwrap(), &mut out), Some(full.as_str()));
    assert_eq!(pack_name(&"a".repeat(MAX_NAME + 1)), None);
    assert_eq!(pack_name(""), None);
    assert_eq!(pack_name("a\0b"), None);
    // Hostile words: bytes after the first zero, invalid characters, no name at all.
    assert_eq!(unpack_name([u64::from_le_bytes(*b"ab\0c\0\0\0\0"), 0, 0, 0], &mut out), None);
    assert_eq!(unpack_name([u64::from_le_bytes(*b"AB\0\0\0\0\0\0"), 0, 0, 0], &mut out), None);
    assert_eq!(unpack_name([0; 4], &mut out), None);
    assert_eq!(unpack_name([u64::MAX; 4], &mut out), None);
}

#[test]
fn a_half_sent_request_is_cancelled_by_the_next_client_not_completed() {
    let mut r = LineReader::new();
    // A client sends half a restart and goes away; the next one starts with CANCEL.
    let mut bytes = b"restart xenstore-lo".to_vec();
    bytes.push(CANCEL);
    bytes.extend_from_slice(b"list\n");
    assert_eq!(lines(&mut r, &bytes), [Ok("list".into())]);
    // CANCEL also ends an overlong line's refusal: the next line is whole.
    let mut bytes = std::vec![b'z'; MAX_LINE + 1];
    bytes.push(CANCEL);
    bytes.extend_from_slice(b"help\n");
    assert_eq!(lines(&mut r, &bytes), [Ok("help".into())]);
}
