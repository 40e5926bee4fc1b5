//! The XenStore bridge: XenStore as Xen's clients on the host expect it. QEMU connects the
//! machine's second serial port (COM2, I/O ports 0x2f8-0x2ff, IRQ 3) to a Unix socket on the
//! host; Xen's tools pointed at that socket (`XENSTORED_PATH=... xenstore-ls`) write
//! `xsd_sockmsg` messages, which this component frames and forwards, unchanged, over its
//! own XenStore connection to XenStore-Logic, and it writes the answers back. Its
//! connection is domain 0 (its badge's low bits say so in system.toml), as Xen's tools
//! in dom0 are; it holds that connection, the serial port and its interrupt, nothing else.
//!
//! A message announcing more than 4096 bytes (Xen's payload limit, `wire::PAYLOAD_MAX`)
//! cannot be followed by anything trustworthy:
//! the bytes received so far are dropped and framing starts again with the next byte.
//! Watch events for the host arrive with the next answer (the bridge has no timer to
//! poll Logic with).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use cleave_rt::cap::kind::{Endpoint, IrqHandler, Notification};
use cleave_rt::shm::Shared;
use cleave_rt::uart::{LSR_DATA, LSR_THR_EMPTY, Uart, reg};
use cleave_rt::{Cap, println};
use cleave_xenstore::connection::Client;
use cleave_xenstore::wire::{self, Framed, MsgType};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);
cleave_rt::heap!(64 * 1024);

/// COM2's first port.
const COM2: u16 = 0x2f8;

struct Port(Uart);

impl Port {
    fn read(&self, reg: u16) -> Option<u8> {
        self.0.read(reg)
    }

    /// Whether a UART answers at COM2 (its scratch register keeps what is written; absent
    /// ports read 0xff).
    fn present(&self) -> bool {
        [0x5a, 0xa5].iter().all(|&v| self.0.write(reg::SCRATCH, v) && self.read(reg::SCRATCH) == Some(v))
    }

    /// 115200 8N1, FIFOs on and cleared, an interrupt for each byte received.
    fn init(&self) -> bool {
        self.0.init(true)
    }

    fn send(&self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| {
            while self.read(reg::LSR).is_some_and(|s| s & LSR_THR_EMPTY == 0) {}
            self.0.write(reg::DATA, b)
        })
    }
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("xenstore-bridge", caps::CAPS, caps::REGIONS);
    if !cleave_rt::cap::report_ungiven("xenstore-bridge", caps::CAPS) {
        return 1;
    }
    let port = Port(Uart::new(caps::HOST_SERIAL_PORTS, COM2));
    let irq: Cap<IrqHandler> = caps::HOST_SERIAL_IRQ;
    let signal: Cap<Notification> = caps::HOST_SERIAL_IRQ_SIGNAL;
    let logic: Cap<Endpoint> = caps::XS_REQUEST;
    // SAFETY: the loader mapped this component's ring on `xs-request` read-write at
    // RING_XS_REQUEST, RING_XS_REQUEST_SIZE bytes; only `Shared` copies touch it.
    let ring = unsafe { Shared::new(caps::RING_XS_REQUEST, caps::RING_XS_REQUEST_SIZE) };
    let mut xs =
        Client::new(|label, message: &[u8], out: &mut [u8]| match ring.call(logic, label, message, out) {
            Ok((m, reply, events)) if m.info.label() == 0 => Some((reply, events)),
            _ => None,
        });
    // Where the bridge is, for the toolstack (and the host): "COM2", or "none".
    let mut announce =
        |value: &[u8]| xs.request(MsgType::Write, 0, &[b"/tool/xenstore/bridge\0", value]).is_some();
    if !port.present() {
        println!("xenstore-bridge: no UART at COM2: XenStore is not open to the host");
        announce(b"none");
        // Nothing to do, but returning would end the run: wait on a line that never fires.
        loop {
            let _ = signal.wait();
        }
    }
    if !port.init() || irq.ack().is_err() || !announce(b"COM2") {
        println!("xenstore-bridge: cannot set up COM2");
        return 1;
    }
    println!("xenstore-bridge: XenStore open to the host on COM2");
    let mut pending: Vec<u8> = Vec::new();
    let (mut messages, mut dropped) = (0u64, 0u64);
    loop {
        if signal.wait().is_err() {
            println!("xenstore-bridge: waiting for COM2 failed");
            return 1;
        }
        while let Some(status) = port.read(reg::LSR) {
            if status & LSR_DATA == 0 {
                break;
            }
            pending.extend(port.read(reg::DATA));
        }
        let _ = irq.ack();
        loop {
            match wire::frame(&pending) {
                Framed::Incomplete => break,
                Framed::TooLong(_) => {
                    dropped += 1;
                    println!(
                        "xenstore-bridge: a host message over {} bytes: dropped ({dropped} so far)",
                        wire::PAYLOAD_MAX
                    );
                    pending.clear();
                }
                Framed::Message(_, _, used) => {
                    let message: Vec<u8> = pending.drain(..used).collect();
                    messages += 1;
                    match xs.forward(&message) {
                        Some(answer) => {
                            if !port.send(answer) {
                                println!("xenstore-bridge: COM2 refused a write");
                            }
                        }
                        None => println!("xenstore-bridge: XenStore-Logic did not answer message {messages}"),
                    }
                }
            }
        }
    }
}
