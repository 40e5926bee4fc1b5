//! Interrupts: the timer tick drives round-robin scheduling; a PIC line is masked,
//! acknowledged at the controller and delivered to the notification its IrqHandler names
//! (the handler unmasks it with `Ack`). Interrupts reach the kernel only while a user
//! thread runs or the kernel idles.

use crate::arch::trap::TrapFrame;
use crate::arch::x86_64::interrupt::{
    PIC_VECTOR_BASE, SPURIOUS_VECTOR, TIMER_VECTOR, lapic_end_of_interrupt, pic_end_of_interrupt,
    set_line_masked,
};
use crate::{objects, thread};

/// Entry from the interrupt stubs.
pub fn interrupt(frame: &mut TrapFrame) {
    let from_user = frame.from_user();
    if from_user {
        thread::save(frame);
    }
    match frame.vector {
        TIMER_VECTOR => {
            lapic_end_of_interrupt();
            objects::with(|s| s.timer_tick());
        }
        v if (PIC_VECTOR_BASE..PIC_VECTOR_BASE + 16).contains(&v) => {
            let irq = (v - PIC_VECTOR_BASE) as u8;
            set_line_masked(irq, true);
            pic_end_of_interrupt(irq);
            objects::with(|s| s.irq_fired(irq));
        }
        SPURIOUS_VECTOR => {}
        _ => {}
    }
    // Threads' console output the UART had no room for.
    crate::arch::serial::pump();
    if from_user {
        thread::schedule(frame);
    }
}
