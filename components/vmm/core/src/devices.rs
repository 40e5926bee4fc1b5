//! Device models a guest drives through I/O ports or MMIO exits: the PC devices an
//! operating system expects (interrupt controllers, timer, clock, serial port, keyboard
//! controller, PCI configuration) with the ports of each defined in its module.

pub mod i8042;
pub mod mc146818;
pub mod pci;
pub mod pic8259;
pub mod pit8254;
pub mod uart16550;

/// What a guest's write to a device does beyond the device itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// The device pulsed the processor's reset line: the machine resets.
    Reset,
}

#[cfg(test)]
mod tests {
    use super::pic8259::PicPair;
    use super::pit8254::{Pit, port};

    /// The guest timer path end to end: the guest programs the PIC and a 100 Hz PIT; the
    /// VMM advances time in 1 ms steps, pulses IRQ 0 for each tick, injects what the PIC
    /// hands out and the guest EOIs: one second gives 100 timer vectors (the last period
    /// completes just after the second, as on hardware).
    #[test]
    fn a_guest_takes_100_timer_interrupts_a_second() {
        let (mut pic, mut pit) = (PicPair::new(), Pit::new());
        for (p, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0xfe)] {
            pic.write(p, v);
        }
        pit.write(port::COMMAND, 0x34);
        pit.write(port::CHANNEL0, (11932u16 & 0xff) as u8);
        pit.write(port::CHANNEL0, (11932u16 >> 8) as u8);
        let mut delivered = 0;
        for _ in 0..1001 {
            for _ in 0..pit.advance(1_000_000) {
                pic.pulse(0);
            }
            while let Some(vector) = pic.acknowledge() {
                assert_eq!(vector, 0x20);
                delivered += 1;
                pic.write(0x20, 0x20);
            }
        }
        assert_eq!(delivered, 100);
    }
}
