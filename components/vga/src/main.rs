//! The VGA driver, first form: it alone maps the display adapter's MMIO registers (QEMU's
//! standard VGA, PCI BAR 2: EDID at offset 0, the Bochs display interface at 0x500) and
//! answers questions about the adapter over the `vga-query` endpoint.
//!
//! Protocol: label 1 IDENTIFY → reply (VBE interface id, 1 if the EDID block's header is
//! valid); anything else → reply with label 1 (unknown request).
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::Endpoint;
use cleave_rt::{Cap, println};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

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

fn main() -> i32 {
    cleave_rt::cap::report_authority("vga", caps::CAPS, caps::REGIONS);
    // Holding anything the description does not give is a broken build: stop (the
    // run fails).
    if !cleave_rt::cap::report_ungiven("vga", caps::CAPS) {
        return 1;
    }
    let endpoint: Cap<Endpoint> = Cap::from_cptr(caps::VGA_QUERY);
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
            1 => (0, [u64::from(vbe_id()), u64::from(edid_ok()), 0, 0], 2),
            _ => (1, [0; 4], 0),
        };
        request = endpoint.reply_recv(MessageInfo::new(label, 0, 0, length), words);
    }
}
