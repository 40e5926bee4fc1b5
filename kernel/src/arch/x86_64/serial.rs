//! COM1 (16550 UART at I/O port 0x3f8): the kernel's console. Threads' lines go through a
//! queue that is sent as the UART takes it, never waiting with interrupts off (a thread
//! printing cannot hold the kernel up); the kernel's own output sends the queue first, so
//! the order stays.

use super::global::KernelCell;
use cleave_kernel_core::console_queue::ConsoleQueue;
use core::sync::atomic::{AtomicBool, Ordering};
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

/// Bytes of threads' lines the kernel holds for the UART.
const QUEUE_SIZE: usize = 8192;

/// Threads' console output waiting for the UART.
static QUEUE: KernelCell<ConsoleQueue<QUEUE_SIZE>> = KernelCell::new(ConsoleQueue::new());
/// Whether [`QUEUE`] holds anything: [`pump`], on every slow system call and interrupt,
/// looks only at this while the queue is empty (nearly always).
static PENDING: AtomicBool = AtomicBool::new(false);

/// Sends what it can (or everything, with `wait`) and notes whether anything is left.
fn send_queued(q: &mut ConsoleQueue<QUEUE_SIZE>, wait: bool) {
    q.send(wait, transmitter_empty, send);
    PENDING.store(!q.is_empty(), Ordering::Relaxed);
}

fn transmitter_empty() -> bool {
    inb(LINE_STATUS) & TRANSMIT_HOLDING_EMPTY != 0
}

fn send(byte: u8) {
    outb(COM1, byte)
}

/// Queues one thread's line (all of it, or none if the queue is full) and sends what the
/// UART takes now.
pub fn queue_line(line: &[u8]) {
    QUEUE.with(|q| {
        q.push_line(line);
        send_queued(q, false);
    });
}

/// Sends what the UART takes now of the queue, without waiting (after interrupts and slow
/// system calls; nothing to do, and no port touched, when the queue is empty).
pub fn pump() {
    if PENDING.load(Ordering::Relaxed) {
        let _ = QUEUE.try_with(|q| send_queued(q, false));
    }
}

/// Sends one byte of the kernel's own output, after the queue, waiting for the transmitter.
pub fn write_byte(byte: u8) {
    // In a panic inside `queue_line` the queue is in use: the kernel's bytes go first.
    if PENDING.load(Ordering::Relaxed) {
        let _ = QUEUE.try_with(|q| send_queued(q, true));
    }
    while inb(LINE_STATUS) & TRANSMIT_HOLDING_EMPTY == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, byte);
}

/// Waits until every byte has left the UART (before the emulator is stopped, or the last
/// bytes are lost).
pub fn flush() {
    let _ = QUEUE.try_with(|q| send_queued(q, true));
    // Bounded: a UART that never drains must not hang the exit path.
    for _ in 0..1_000_000 {
        if inb(LINE_STATUS) & TRANSMITTER_EMPTY != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}
