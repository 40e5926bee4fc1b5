//! The VGA driver, first form: it alone maps the display adapter's MMIO registers (QEMU's
//! standard VGA, PCI BAR 2: EDID at offset 0, the Bochs display interface at 0x500) and
//! answers questions about the adapter over the `vga-query` endpoint. It is also a
//! XenStore client with its own connection (domain 1, by its badge on `xs-request`), where
//! it publishes what it found, as a Xen backend publishes its device.
//!
//! Protocol: label 1 IDENTIFY → reply (VBE interface id, 1 if the EDID block's header is
//! valid); label 2 PUBLISH → writes `display/vbe-id` and `display/edid` under its XenStore
//! home (`/local/domain/1`) and tries to read the toolstack's `/vm/alice/name`, which it
//! must not see; replies (nodes written, 1 if that read was refused with `EACCES`);
//! anything else → reply with label 1 (unknown request).
#![no_std]
#![no_main]

extern crate alloc;

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::shm::Shared;
use cleave_rt::{Cap, println};
use cleave_xenstore::connection::Client;
use cleave_xenstore::wire::MsgType;

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(32 * 1024);

/// The Bochs display interface registers (16 bits each), from the start of the MMIO range.
const DISPI: usize = 0x500;
/// The fixed header every EDID block starts with.
const EDID_HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];

const _: () = assert!(DISPI + 2 <= caps::DEVICE_DISPLAY_MMIO0_SIZE, "the registers lie in the mapped range");

/// The VBE interface id (display interface register 0).
fn vbe_id() -> u16 {
    // SAFETY: the loader mapped the adapter's register page at DEVICE_DISPLAY_MMIO0 (uncached,
    // read-write, DEVICE_DISPLAY_MMIO0_SIZE bytes, checked above to cover DISPI + 2); reading
    // the id register has no side effect.
    unsafe { ((caps::DEVICE_DISPLAY_MMIO0 + DISPI) as *const u16).read_volatile() }
}

/// Whether the EDID block at the start of the range has the fixed header.
fn edid_ok() -> bool {
    (0..EDID_HEADER.len()).all(|i| {
        // SAFETY: as in `vbe_id`; i < 8 lies in the mapped range.
        let byte = unsafe { ((caps::DEVICE_DISPLAY_MMIO0 + i) as *const u8).read_volatile() };
        byte == EDID_HEADER[i]
    })
}

/// Publishes the adapter in XenStore through this component's own connection; returns how
/// many nodes it wrote and whether reading another domain's node was refused.
fn publish() -> (u64, bool) {
    let logic: Cap<Endpoint> = caps::XS_REQUEST;
    // SAFETY: the loader mapped this component's ring on `xs-request` read-write at
    // RING_XS_REQUEST, RING_XS_REQUEST_SIZE bytes; only `Shared` copies touch it.
    let ring = unsafe { Shared::new(caps::RING_XS_REQUEST, caps::RING_XS_REQUEST_SIZE) };
    let mut xs =
        Client::new(|label, message: &[u8], out: &mut [u8]| match ring.call(logic, label, message, out) {
            Ok((m, reply, events)) if m.info.label() == 0 => Some((reply, events)),
            _ => None,
        });
    let (id, edid): (alloc::string::String, &[u8]) = if cleave_rt::devices_refused() {
        ("none".into(), b"none")
    } else {
        (alloc::format!("{:#x}", vbe_id()), if edid_ok() { b"valid" } else { b"invalid" })
    };
    let mut written = 0;
    // Relative paths: under this domain's home.
    for (path, value) in [(&b"display/vbe-id\0"[..], id.as_bytes()), (b"display/edid\0", edid)] {
        match xs.request(MsgType::Write, 0, &[path, value]) {
            Some(a) if a.is(MsgType::Write) => written += 1,
            Some(a) => {
                println!("vga: xenstore write refused: {}", core::str::from_utf8(a.body).unwrap_or("?"))
            }
            None => println!("vga: xenstore did not answer"),
        }
    }
    let refused = xs.request(MsgType::Read, 0, &[b"/vm/alice/name\0"]).is_some_and(|a| a.body == b"EACCES\0");
    (written, refused)
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("vga", caps::CAPS, caps::REGIONS);
    // Holding anything the description does not give is a broken build: stop (the
    // run fails).
    if !cleave_rt::cap::report_ungiven("vga", caps::CAPS) {
        return 1;
    }
    // The loader found no display adapter's registers at the address the description
    // gives on this machine (another firmware places it elsewhere): nothing is mapped
    // there, so this driver never touches it and answers that there is none.
    let absent = cleave_rt::devices_refused();
    if absent {
        println!(
            "vga: the loader refused the display adapter's registers: this machine has none at the address system.toml gives; answering \"absent\""
        );
    }
    let endpoint: Cap<Endpoint> = caps::VGA_QUERY;
    let mut request = endpoint.recv();
    loop {
        let label = match request {
            Ok(m) => m.info.label(),
            Err(e) => {
                println!("vga: receive failed: {e}");
                return 1;
            }
        };
        let (label, words, length) = match label {
            1 if absent => (0, [0, 0, 1, 0], 3),
            1 => (0, [u64::from(vbe_id()), u64::from(edid_ok()), 0, 0], 3),
            2 => {
                let (written, refused) = publish();
                (0, [written, u64::from(refused), 0, 0], 2)
            }
            _ => (1, [0; 4], 0),
        };
        request = endpoint.reply_recv(MessageInfo::new(label, 0, 0, length), words);
    }
}
