//! The bootstrap component, disposable: it answers one request on `boot-query` with the
//! boot-time resources it hands out (here, the boot's audit time, a stand-in for the
//! one-time set-up data a real bootstrapper would pass on), signals the supervisor that it
//! is done, and is destroyed: its memory goes back to the untyped the spec names, and the
//! endpoint it served is gone with it.
#![no_std]
#![no_main]

use cleave_abi::MessageInfo;
use cleave_rt::cap::kind::{Endpoint, Notification};
use cleave_rt::{Cap, println};

mod caps {
    include!(concat!(env!("OUT_DIR"), "/caps.rs"));
}

cleave_rt::entry!(main);

fn main() -> i32 {
    cleave_rt::cap::report_authority("bootstrap", caps::CAPS, caps::REGIONS);
    if !cleave_rt::cap::report_ungiven("bootstrap", caps::CAPS) {
        return 1;
    }
    let endpoint: Cap<Endpoint> = caps::BOOT_QUERY;
    if endpoint.recv().is_err() {
        println!("bootstrap: receive failed");
        return 1;
    }
    let handed = cleave_rt::console::audit_time();
    let _ = cleave_rt::syscall::reply(MessageInfo::new(0, 0, 0, 1), [handed, 0, 0, 0]);
    println!("bootstrap: handed out the boot-time resources; done");
    let done: Cap<Notification> = caps::SUPERVISOR_DONE;
    let _ = done.signal();
    // The supervisor destroys this thread; nothing after this runs.
    loop {
        let _ = endpoint.recv();
    }
}
