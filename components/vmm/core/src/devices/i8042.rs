//! The i8042 PS/2 keyboard controller (data port 0x60, status and command port 0x64) with
//! nothing plugged into its keyboard and mouse (AUX) ports, which is what a guest without a
//! keyboard needs: operating systems find the controller, configure it, find no devices and
//! go on, and its reset line is how a PC guest reboots itself (`reboot=k` in Linux).
//!
//! The controller answers its own commands at once: the configuration byte (0x20/0x60),
//! self-tests (0xAA: 0x55; 0xA9, 0xAB: 0x00), enabling and disabling the ports (0xA7, 0xA8,
//! 0xAD, 0xAE), the output port (0xD0/0xD1), writing its output buffer as if from the
//! keyboard or the mouse (0xD2, 0xD3: the loopback operating systems use to find the AUX
//! port), and pulsing the reset line (0xF0-0xFE with bit 0 clear, and an output-port write
//! with bit 0 clear). A byte sent to a device (written to 0x60 with no command waiting for
//! it, or after 0xD4) gets the answer an empty port gives: 0xFE with the time-out bit set.
//! The output buffer holds one byte; its arrival raises IRQ 1 (keyboard data) or IRQ 12
//! (AUX data) as the configuration byte enables them.

use super::Effect;

/// Ports.
pub mod port {
    /// Data (read: the output buffer; write: a command's parameter, or a byte for the
    /// keyboard).
    pub const DATA: u16 = 0x60;
    /// Status (read) and command (write).
    pub const COMMAND: u16 = 0x64;
}

/// Status register bits.
pub mod status {
    /// The output buffer holds a byte.
    pub const OUTPUT_FULL: u8 = 1 << 0;
    /// The input buffer holds a byte (never: the model takes bytes at once).
    pub const INPUT_FULL: u8 = 1 << 1;
    /// The system flag (set by the self-test, or the configuration byte's bit 2).
    pub const SYSTEM: u8 = 1 << 2;
    /// The last write went to the command port.
    pub const COMMAND: u8 = 1 << 3;
    /// The keyboard is not inhibited (no key lock).
    pub const NOT_INHIBITED: u8 = 1 << 4;
    /// The output buffer's byte came from the AUX port.
    pub const AUX_DATA: u8 = 1 << 5;
    /// The device did not answer.
    pub const TIMEOUT: u8 = 1 << 6;
}

/// Configuration byte bits.
pub mod config {
    /// Interrupt (IRQ 1) when keyboard data arrives.
    pub const KEYBOARD_INTERRUPT: u8 = 1 << 0;
    /// Interrupt (IRQ 12) when AUX data arrives.
    pub const AUX_INTERRUPT: u8 = 1 << 1;
    /// The system flag.
    pub const SYSTEM: u8 = 1 << 2;
    /// The keyboard port's clock is off.
    pub const KEYBOARD_DISABLED: u8 = 1 << 4;
    /// The AUX port's clock is off.
    pub const AUX_DISABLED: u8 = 1 << 5;
    /// Scan codes are translated to set 1.
    pub const TRANSLATE: u8 = 1 << 6;
}

/// Controller commands (port 0x64).
pub mod command {
    /// Read controller RAM byte 0 (the configuration byte); 0x21-0x3F read bytes 1-31.
    pub const READ_CONFIG: u8 = 0x20;
    /// Write controller RAM byte 0 (the next data byte); 0x61-0x7F write bytes 1-31.
    pub const WRITE_CONFIG: u8 = 0x60;
    /// Disable the AUX port.
    pub const DISABLE_AUX: u8 = 0xa7;
    /// Enable the AUX port.
    pub const ENABLE_AUX: u8 = 0xa8;
    /// Test the AUX port's lines (0x00: fine).
    pub const TEST_AUX: u8 = 0xa9;
    /// Self-test (0x55: passed).
    pub const SELF_TEST: u8 = 0xaa;
    /// Test the keyboard port's lines (0x00: fine).
    pub const TEST_KEYBOARD: u8 = 0xab;
    /// Disable the keyboard port.
    pub const DISABLE_KEYBOARD: u8 = 0xad;
    /// Enable the keyboard port.
    pub const ENABLE_KEYBOARD: u8 = 0xae;
    /// Read the output port.
    pub const READ_OUTPUT_PORT: u8 = 0xd0;
    /// Write the output port (bit 0 low resets the processor).
    pub const WRITE_OUTPUT_PORT: u8 = 0xd1;
    /// The next data byte appears in the output buffer as keyboard data.
    pub const WRITE_KEYBOARD_BUFFER: u8 = 0xd2;
    /// The next data byte appears in the output buffer as AUX data.
    pub const WRITE_AUX_BUFFER: u8 = 0xd3;
    /// The next data byte goes to the AUX device.
    pub const WRITE_AUX: u8 = 0xd4;
    /// Pulse the output port lines whose bits are clear (0xFE: the reset line).
    pub const PULSE_RESET: u8 = 0xfe;
}

/// What the self-test answers when it passes.
const SELF_TEST_PASSED: u8 = 0x55;
/// What an empty PS/2 port answers a byte with.
const NO_DEVICE: u8 = 0xfe;
/// The output port's reset line (active low).
const OUTPUT_PORT_RESET: u8 = 1 << 0;

/// The controller.
#[derive(Clone, Debug)]
pub struct KeyboardController {
    /// Controller RAM; byte 0 is the configuration byte.
    ram: [u8; 32],
    output_port: u8,
    /// The output buffer's byte and the status bits it came with (AUX data, time-out).
    output: Option<(u8, u8)>,
    /// A command waiting for its data byte.
    waiting: Option<u8>,
    /// The last write went to the command port.
    last_was_command: bool,
    /// The self-test ran (or firmware ran it).
    system: bool,
}

impl Default for KeyboardController {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyboardController {
    /// The controller as firmware leaves it: self-tested, keyboard interrupt on,
    /// translation on, nothing in the output buffer.
    pub fn new() -> Self {
        let mut ram = [0; 32];
        ram[0] = config::KEYBOARD_INTERRUPT | config::SYSTEM | config::TRANSLATE;
        Self { ram, output_port: 0x03, output: None, waiting: None, last_was_command: false, system: true }
    }

    /// The configuration byte.
    pub fn config(&self) -> u8 {
        self.ram[0]
    }

    /// The status register.
    pub fn status(&self) -> u8 {
        let mut status = status::NOT_INHIBITED;
        if let Some((_, flags)) = self.output {
            status |= status::OUTPUT_FULL | flags;
        }
        if self.system || self.ram[0] & config::SYSTEM != 0 {
            status |= status::SYSTEM;
        }
        if self.last_was_command {
            status |= status::COMMAND;
        }
        status
    }

    /// The IRQ 1 line: keyboard data waits and the configuration enables its interrupt.
    pub fn keyboard_irq(&self) -> bool {
        matches!(self.output, Some((_, flags)) if flags & status::AUX_DATA == 0)
            && self.ram[0] & config::KEYBOARD_INTERRUPT != 0
    }

    /// The IRQ 12 line: AUX data waits and the configuration enables its interrupt.
    pub fn aux_irq(&self) -> bool {
        matches!(self.output, Some((_, flags)) if flags & status::AUX_DATA != 0)
            && self.ram[0] & config::AUX_INTERRUPT != 0
    }

    /// A guest `in` from 0x60 or 0x64 (others read 0xff).
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            port::DATA => match self.output.take() {
                Some((byte, _)) => byte,
                // An empty buffer reads its last value on hardware; 0 here.
                None => 0,
            },
            port::COMMAND => self.status(),
            _ => 0xff,
        }
    }

    /// A guest `out` to 0x60 or 0x64 (others ignored).
    pub fn write(&mut self, port: u16, value: u8) -> Effect {
        match port {
            port::DATA => {
                self.last_was_command = false;
                self.data(value)
            }
            port::COMMAND => {
                self.last_was_command = true;
                self.command(value)
            }
            _ => Effect::None,
        }
    }

    fn answer(&mut self, byte: u8, flags: u8) {
        self.output = Some((byte, flags));
    }

    fn data(&mut self, value: u8) -> Effect {
        match self.waiting.take() {
            Some(c @ 0x60..=0x7f) => self.ram[usize::from(c & 0x1f)] = value,
            Some(command::WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                if value & OUTPUT_PORT_RESET == 0 {
                    return Effect::Reset;
                }
            }
            Some(command::WRITE_KEYBOARD_BUFFER) => self.answer(value, 0),
            Some(command::WRITE_AUX_BUFFER) => self.answer(value, status::AUX_DATA),
            Some(command::WRITE_AUX) => self.answer(NO_DEVICE, status::AUX_DATA | status::TIMEOUT),
            // A byte for the keyboard, which is not there.
            _ => self.answer(NO_DEVICE, status::TIMEOUT),
        }
        Effect::None
    }

    fn command(&mut self, value: u8) -> Effect {
        self.waiting = None;
        match value {
            0x20..=0x3f => {
                let byte = self.ram[usize::from(value & 0x1f)];
                self.answer(byte, 0);
            }
            0x60..=0x7f
            | command::WRITE_OUTPUT_PORT
            | command::WRITE_KEYBOARD_BUFFER
            | command::WRITE_AUX_BUFFER
            | command::WRITE_AUX => self.waiting = Some(value),
            command::DISABLE_AUX => self.ram[0] |= config::AUX_DISABLED,
            command::ENABLE_AUX => self.ram[0] &= !config::AUX_DISABLED,
            command::DISABLE_KEYBOARD => self.ram[0] |= config::KEYBOARD_DISABLED,
            command::ENABLE_KEYBOARD => self.ram[0] &= !config::KEYBOARD_DISABLED,
            command::TEST_AUX | command::TEST_KEYBOARD => self.answer(0x00, 0),
            command::SELF_TEST => {
                self.system = true;
                self.answer(SELF_TEST_PASSED, 0);
            }
            command::READ_OUTPUT_PORT => self.answer(self.output_port, 0),
            // Pulse the lines whose bits are clear; bit 0 is the reset line.
            0xf0..=0xff if value & 1 == 0 => return Effect::Reset,
            _ => {}
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// `i8042_command` as Linux runs it: wait for the input buffer, the command, its
    /// parameters, then one answer per expected byte (waiting for the output buffer).
    fn linux_command(
        kbc: &mut KeyboardController,
        command: u8,
        params: &[u8],
        answers: usize,
    ) -> Vec<(u8, u8)> {
        assert_eq!(kbc.read(port::COMMAND) & status::INPUT_FULL, 0);
        assert_eq!(kbc.write(port::COMMAND, command), Effect::None);
        for p in params {
            assert_eq!(kbc.write(port::DATA, *p), Effect::None);
        }
        (0..answers)
            .map(|_| {
                let status = kbc.read(port::COMMAND);
                assert_ne!(status & status::OUTPUT_FULL, 0, "command {command:#x} answered");
                (kbc.read(port::DATA), status)
            })
            .collect()
    }

    /// Linux's probe: flush, self-test, read and write the configuration byte, then the AUX
    /// port checks (loopback, disable and enable with the configuration byte read back,
    /// the loopback interrupt), then the ports enabled.
    #[test]
    fn linux_finds_the_controller_and_its_aux_port() {
        let mut kbc = KeyboardController::new();
        assert_eq!(kbc.read(port::COMMAND) & status::OUTPUT_FULL, 0, "nothing to flush");
        assert_ne!(kbc.read(port::COMMAND) & status::NOT_INHIBITED, 0, "no key lock");
        assert_eq!(linux_command(&mut kbc, command::SELF_TEST, &[], 1)[0].0, 0x55);
        let ctr = linux_command(&mut kbc, command::READ_CONFIG, &[], 1)[0].0;
        assert_eq!(ctr, 0x45);
        let ctr = (ctr | config::KEYBOARD_DISABLED) & !config::KEYBOARD_INTERRUPT;
        linux_command(&mut kbc, command::WRITE_CONFIG, &[ctr], 0);
        assert_eq!(kbc.config(), ctr);
        // AUX loopback: the byte comes back as AUX data.
        let (byte, status) = linux_command(&mut kbc, command::WRITE_AUX_BUFFER, &[0x5a], 1)[0];
        assert_eq!((byte, status & status::AUX_DATA), (0x5a, status::AUX_DATA));
        linux_command(&mut kbc, command::DISABLE_AUX, &[], 0);
        let ctr = linux_command(&mut kbc, command::READ_CONFIG, &[], 1)[0].0;
        assert_ne!(ctr & config::AUX_DISABLED, 0);
        linux_command(&mut kbc, command::ENABLE_AUX, &[], 0);
        let ctr = linux_command(&mut kbc, command::READ_CONFIG, &[], 1)[0].0;
        assert_eq!(ctr & config::AUX_DISABLED, 0);
        // The AUX interrupt test: with AUXINT on, the looped byte raises IRQ 12.
        linux_command(&mut kbc, command::WRITE_CONFIG, &[ctr | config::AUX_INTERRUPT], 0);
        linux_command(&mut kbc, command::WRITE_AUX_BUFFER, &[0xa5], 0);
        assert!(kbc.aux_irq() && !kbc.keyboard_irq());
        assert_eq!(kbc.read(port::DATA), 0xa5);
        assert!(!kbc.aux_irq(), "reading the data lowers the line");
    }

    /// Bytes for the devices get the empty port's answer, raising the port's interrupt.
    #[test]
    fn empty_ports_answer_fe_with_a_timeout() {
        let mut kbc = KeyboardController::new();
        kbc.write(port::COMMAND, command::WRITE_CONFIG);
        kbc.write(port::DATA, config::KEYBOARD_INTERRUPT | config::AUX_INTERRUPT);
        // atkbd's GETID to the keyboard.
        kbc.write(port::DATA, 0xf2);
        assert!(kbc.keyboard_irq());
        assert_eq!(kbc.status() & (status::TIMEOUT | status::AUX_DATA), status::TIMEOUT);
        assert_eq!(kbc.read(port::DATA), 0xfe);
        // psmouse's reset to the mouse.
        kbc.write(port::COMMAND, command::WRITE_AUX);
        kbc.write(port::DATA, 0xff);
        assert!(kbc.aux_irq());
        assert_eq!(kbc.status() & (status::TIMEOUT | status::AUX_DATA), status::TIMEOUT | status::AUX_DATA);
        assert_eq!(kbc.read(port::DATA), 0xfe);
        assert_eq!(kbc.status() & status::OUTPUT_FULL, 0);
        assert_eq!(kbc.read(port::DATA), 0, "an empty buffer");
        // Without the configuration's enables, no interrupt.
        kbc.write(port::COMMAND, command::WRITE_CONFIG);
        kbc.write(port::DATA, 0);
        kbc.write(port::DATA, 0xf2);
        assert!(!kbc.keyboard_irq());
    }

    /// Linux's `reboot=k`: wait for the input buffer to empty, then 0xFE.
    #[test]
    fn the_reset_pulse_resets() {
        let mut kbc = KeyboardController::new();
        assert_eq!(kbc.read(port::COMMAND) & status::INPUT_FULL, 0);
        assert_eq!(kbc.write(port::COMMAND, command::PULSE_RESET), Effect::Reset);
        assert_eq!(kbc.write(port::COMMAND, 0xff), Effect::None, "0xFF pulses nothing");
        assert_eq!(kbc.write(port::COMMAND, 0xf0), Effect::Reset, "any command pulsing bit 0");
        let output_port = linux_command(&mut kbc, command::READ_OUTPUT_PORT, &[], 1)[0].0;
        kbc.write(port::COMMAND, command::WRITE_OUTPUT_PORT);
        assert_eq!(kbc.write(port::DATA, output_port | 2), Effect::None, "A20 only");
        kbc.write(port::COMMAND, command::WRITE_OUTPUT_PORT);
        assert_eq!(kbc.write(port::DATA, output_port & !1), Effect::Reset);
    }

    #[test]
    fn random_traffic_never_panics() {
        let mut state = 0x0bad_cafe_1234_5678u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut resets = 0;
        for _ in 0..20 {
            let mut kbc = KeyboardController::new();
            for _ in 0..5000 {
                let r = next();
                let port = [port::DATA, port::COMMAND, 0x61][(r % 3) as usize];
                if r & 1 << 20 != 0 {
                    if kbc.write(port, (r >> 8) as u8) == Effect::Reset {
                        resets += 1;
                    }
                } else {
                    kbc.read(port);
                }
                let _ = (kbc.keyboard_irq(), kbc.aux_irq());
            }
        }
        assert!(resets > 0, "random commands include reset pulses");
    }
}
