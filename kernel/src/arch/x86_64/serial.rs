//! COM1 (16550 UART at I/O port 0x3f8): the kernel's console.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_HOLDING_EMPTY: u8 = 1 << 5;
const TRANSMITTER_EMPTY: u8 = 1 << 6;

fn outb(port: u16, value: u8) {
    // SAFETY: only ever called with COM1's register ports, which exist on every PC and
    // whose writes touch nothing but the UART.
    unsafe { Port::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`; reading COM1's line status has no side effect.
    unsafe { Port::new(port).read() }
}

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // divisor latch access
    outb(COM1, 0x01); // divisor 1: 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // enable and clear FIFOs, 14-byte threshold
    outb(COM1 + 4, 0x03); // DTR, RTS
}

/// Sends one byte, waiting for room in the transmitter.
pub fn write_byte(byte: u8) {
    while inb(LINE_STATUS) & TRANSMIT_HOLDING_EMPTY == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, byte);
}

/// Waits until every byte has left the UART (before the emulator is stopped, or the last
/// bytes are lost).
pub fn flush() {
    // Bounded: a UART that never drains must not hang the exit path.
    for _ in 0..1_000_000 {
        if inb(LINE_STATUS) & TRANSMITTER_EMPTY != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}
