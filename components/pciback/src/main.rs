//! PCIBack, Xoar's PCI Config: at boot the only component that holds PCI configuration
//! space (ports 0xCF8-0xCFF) and the interrupt controllers' trigger-mode registers (ELCR,
//! 0x4D0-0x4D1). It finds each device `system.toml` assigns by what it is (vendor and device
//! ID, or address), places its I/O BAR at the ports the description gives the device's
//! owner, routes its interrupt pin to the owner's line (level-triggered, as PCI interrupts
//! are), says it is done and is destroyed: after boot no component holds configuration
//! space. Its priority is above every device owner's, so it has run before they start.
#![no_std]
#![no_main]

use cleave_pciback_core::{Assignment, Bdf, Config, Match, Placer, scan};
use cleave_rt::cap::kind::{IoPort, Notification};
use cleave_rt::{Cap, print, println};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

/// Configuration mechanism #1 through the port capability.
struct Ports {
    cap: Cap<IoPort>,
}

impl Config for Ports {
    fn read(&mut self, at: Bdf, offset: u8) -> u32 {
        if self.cap.write(0xcf8, 4, address(at, offset)).is_err() {
            return u32::MAX;
        }
        self.cap.read(0xcfc, 4).unwrap_or(u32::MAX)
    }

    fn write(&mut self, at: Bdf, offset: u8, value: u32) {
        if self.cap.write(0xcf8, 4, address(at, offset)).is_ok() {
            let _ = self.cap.write(0xcfc, 4, value);
        }
    }
}

fn address(at: Bdf, offset: u8) -> u32 {
    1 << 31
        | u32::from(at.bus) << 16
        | u32::from(at.dev) << 11
        | u32::from(at.func) << 8
        | u32::from(offset & 0xfc)
}

/// Makes interrupt line `irq` level-triggered in the ELCR (PCI interrupts are shared,
/// active-low levels).
fn level_triggered(irq: u8) -> bool {
    let elcr: Cap<IoPort> = caps::PIC_ELCR_PORTS;
    let port = 0x4d0 + u16::from(irq / 8);
    let Ok(bits) = elcr.read(port, 1) else { return false };
    elcr.write(port, 1, bits | 1 << (irq % 8)).is_ok()
}

fn main() -> i32 {
    cleave_rt::cap::report_authority("pciback", caps::CAPS, caps::REGIONS);
    if !cleave_rt::cap::report_ungiven("pciback", caps::CAPS) {
        return 1;
    }
    let mut config = Ports { cap: caps::PCI_CONFIG_PORTS };
    let functions = scan(&mut config);
    println!("pciback: {} functions on bus 0", functions.len());
    let mut placer = Placer::new();
    let mut failed = 0;
    for d in caps::PCI_DEVICES {
        let function = match d.address {
            Some((bus, dev, func)) => Match::Address(Bdf { bus, dev, func }),
            None => Match::Id { vendor: d.vendor, device: d.device, index: d.index },
        };
        let assignment = Assignment {
            name: d.name,
            function,
            ports: d.ports,
            memory: d.memory,
            irq: d.irq,
            bus_master: d.bus_master,
        };
        match placer.place(&mut config, &functions, &assignment) {
            Ok(p) if d.irq.is_none_or(level_triggered) => {
                let f = p.function;
                print!(
                    "pciback: {} ({:04x}:{:04x} at {}) for {}:",
                    d.name, f.vendor, f.device, f.at, d.owner
                );
                if let (Some((bar, size)), Some((first, last))) = (p.io, d.ports) {
                    print!(" I/O BAR {bar} ({size} bytes) at {first:#x}-{last:#x},");
                }
                if p.memory > 0 {
                    print!(" its memory BARs hold the owner's {} ranges,", p.memory);
                }
                match (p.interrupt, d.irq) {
                    (Some((pin, pirq)), Some(irq)) => println!(
                        " INT{} on PIRQ{}, IRQ {irq}",
                        (b'A' + pin - 1) as char,
                        (b'A' + pirq) as char
                    ),
                    _ => println!(" no interrupt"),
                }
            }
            Ok(_) => {
                failed += 1;
                println!("pciback: {}: IRQ {:?} cannot be made level-triggered", d.name, d.irq);
            }
            Err(e) => {
                failed += 1;
                println!(
                    "pciback: {} for {}: not placed: {e}; {} will find no device",
                    d.name, d.owner, d.owner
                );
            }
        }
    }
    println!("pciback: done ({failed} devices not placed); configuration space goes with me");
    let done: Cap<Notification> = caps::SUPERVISOR_DONE;
    let _ = done.signal();
    // The supervisor (above this priority) destroys this thread at the signal; were it
    // not to, the thread ends here rather than hold the processor.
    0
}
