//! `cargo xtask test`: the host unit tests, then every emulator test, then one summary line.

use crate::artifacts::{self, Artifacts};
use crate::emulator::{self, Run};
use crate::judge::{self, Emulator, Expectation, Outcome};
use crate::{deps, workspace_root};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An emulator test: boot the kernel with a module and command line, judge the run.
struct EmulatorTest {
    name: &'static str,
    emulator: Emulator,
    /// The user program passed as first boot module, or a file from the workspace
    /// (`file:PATH`) to feed the kernel something that is not a program.
    module: Option<&'static str>,
    cmdline: &'static str,
    expect: Expectation<'static>,
    /// The run must also report the capability digest `cleave` computes for this system
    /// description (a path from the workspace root).
    digest_of: Option<&'static str>,
    /// Run Xen's XenStore tools against the system through its serial bridge (QEMU).
    host_xenstore: bool,
    /// (component, guest) pairs the run's audit log must show: asked "which guests relied
    /// on the component" over the whole run, and "what did the guest rely on" in the
    /// middle of its reliance, `cleave audit`'s two questions.
    audit: &'static [(&'static str, &'static str)],
}

/// What the kernel says when guests run on VT-x, and on SVM.
const VMX_ON: &str = "vt-x: VMX on; guests can run";
const SVM_ON: &str = "svm: SVM on; guests' physical address spaces are nested page tables";

/// What the loader and the kernel say around the guests of systems/guests.toml.
/// The guests of systems/guests.toml, on either architecture: one VMM component per guest;
/// each guest sees only its own memory (its own command line at the same guest-physical
/// address). The guests run at once, so their lines interleave in any order.
const GUESTS_ANYWHERE: &[&str] = &[
    "vmm: guest 'alice': 2 MiB of RAM, image 'guest-hello', starting in long mode",
    "alice: command line: name=alice",
    "alice: 100 timer interrupts",
    "alice: floating-point registers: clear at start, still its own at the end",
    "vmm: guest 'alice' powered off with code 0; ",
    "vmm: guest 'hello': 4 MiB of RAM, image 'guest-hello', starting in long mode",
    "hello: command line: name=hello",
    "hello: 100 timer interrupts",
    "hello: MMIO test device: id CLEV, scratch 0x1234",
    "hello: floating-point registers: clear at start, still its own at the end",
    "vmm: guest 'hello' powered off with code 0; ",
    "vmm: guest 'triple' triple fault",
    "vmm: guest 'unmapped' read guest-physical 0x40000000, where nothing is mapped",
];
/// Which VMM each guest of systems/guests.toml relies on.
const GUESTS_AUDIT: &[(&str, &str)] =
    &[("vmm-alice", "alice"), ("vmm-hello", "hello"), ("vmm-triple", "triple"), ("vmm-unmapped", "unmapped")];
/// The multi-guest VMM's own report: each guest's console, through its VMM: only the serial
/// output shows that each read its own command line.
const VMM_GUESTS_LINES: &[&str] = &["hello: command line: name=hello", "alice: command line: name=alice"];

const QEMU_TIMEOUT: Duration = Duration::from_secs(30);
const BOCHS_TIMEOUT: Duration = Duration::from_secs(120);

const TESTS: &[EmulatorTest] = &[
    EmulatorTest {
        name: "qemu-capdl-system",
        emulator: Emulator::Qemu,
        module: Some("loader"),
        cmdline: "",
        digest_of: Some("system.toml"),
        host_xenstore: true,
        audit: &[
            ("vmm-alice", "alice"),
            ("vmm-bob", "bob"),
            ("vmm-mallory", "mallory"),
            ("vmm-carol", "carol"),
        ],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[
                // The product's guests, each under its own VMM: two that behave, one hostile
                // stopped alone.
                "alice: command line: name=alice",
                "alice: floating-point registers: clear at start, still its own at the end",
                "vmm: guest 'alice' powered off with code 0; ",
                "bob: command line: name=bob",
                "vmm: guest 'bob' powered off with code 0; ",
                "vmm: guest 'mallory' asked for SVM (EFER.SVME), which this VMM does not offer",
                "audit: ", // every restart is in the audit log
                // XenStore-Logic, restarted every 100 ms, resumes from State each time.
                "restart xenstore-logic#3 xenstore-logic#4",
                "xenstore-logic: instance 2 resumed from XenStore-State: ",
                "xenstore-logic: instance 3 resumed from XenStore-State: ",
                // The operator's line (`cleave ctl` on the host, the toolstack in the
                // machine): what runs, a restart the supervisor carries out, the tables, and
                // refusals that leave the line answering.
                "[host] $ cleave ctl list",
                "[host] xenstore-logic   restarted every 100 ms; running, instance ",
                // Each component's memory and the control plane's, from the table the
                // system was built with (the same as `cleave memory`'s).
                "[host] control plane: ",
                "[host] bootstrap        disposable; gone (disposed of)",
                "[host] guest alice: 2048 KiB of RAM, image guest-hello, devices emulated by vmm-alice",
                "[host] restarted `xenstore-logic` from its pristine image: now instance ",
                "as the toolstack asked: ",
                "[host] error: `vga` is not restartable (persistent): only a component with `restart` in system.toml has a pristine image to restart from",
                "[host] error: `bootstrap` is disposable: it runs once, is destroyed when done, and is never restarted",
                "[host] vmm-alice: runs guest `alice` (its Vcpu, guest-physical space and memory)",
                "[host] pciback         |        -         |    yes     |",
                "[host] error: unknown command `frobnicate` (commands: ",
                "[host] error: a request longer than 200 bytes, or not UTF-8, was dropped",
                "[host] vmm-bob: runs guest `bob` (its Vcpu, guest-physical space and memory)",
                "toolstack: ctl: exposure bob",
                // The Builder: its CNode, and per on-request guest the roots of the guest's
                // guest-physical space and of its VMM's address space and the untyped its RAM
                // is made from; nothing else.
                "builder: cap 2: cnode (its own CNode (to make the guests' RAM in and revoke it))",
                "builder: cap 3: carol-ept (EPT root of guest `carol` (2 MiB of RAM on request))",
                "builder: cap 4: carol-vspace (VSpace of `vmm-carol` (where it sees its guest's RAM))",
                "builder: cap 64: carol-ram (untyped 2048 KiB, frames only: guest `carol`'s RAM, made on request)",
                "builder: guest `carol`'s RAM untyped makes frames only: a thread from it was refused",
                "[host] vmm-carol        device emulation for guest carol; stopped (instance 1)",
                "[host] error: `vmm-carol` runs on-request guest `carol`: `create carol` and `destroy carol` start and stop it",
                // The Builder: an on-request guest made from its pool and run, refused while
                // built, destroyed (its RAM back in the pool), refused while not built, and
                // made and run again by a fresh VMM instance; guests it cannot make refused.
                "[host] error: guest `alice` is built at boot: only a guest with start = \"on-request\" is created and destroyed",
                "[host] error: no guest named `nobody`",
                "[host] error: guest `alice`'s console is not relayed by the toolstack (its system.toml has no console = \"ctl\")",
                "toolstack: builder: 4 of 4 hostile requests refused; 4 of 4 served by a fresh instance",
                "[host] the Builder made 2048 KiB of RAM for `carol` from its pool",
                "[host] started `vmm-carol` (instance 2), which loads and runs the guest",
                "carol: command line: name=carol",
                "vmm: guest 'carol' powered off with code 0; ",
                "[host] error: guest `carol` is built already (destroy it first)",
                "supervisor: stopped `vmm-carol` (instance 2), as the toolstack asked",
                "[host] the Builder took back `carol`'s 2048 KiB of RAM into its pool",
                "[host] error: guest `carol` is not built",
                "[host] started `vmm-carol` (instance 3), which loads and runs the guest",
                "serve carol vmm-carol#3",
                "destroy carol builder#",
                "supervisor: rolled back `builder` after request 1: ",
                "[host] guest carol: 2048 KiB of RAM, image guest-hello, devices emulated by vmm-carol, built by the Builder on request",
                // The kernel's audit log, read over the line: every event stamped with its
                // writer (checked), and cleave audit's question answered from it.
                "[host] $ cleave ctl audit ",
                "[host] kernel audit log: bytes 0..",
                ", 0 lines dropped",
                " events, each writer checked)",
                " supervisor restart xenstore-logic#1 xenstore-logic#2",
                " builder build carol builder#",
                " builder destroy carol builder#",
                "[host] carol vmm-carol#2 ",
                "[host] carol vmm-carol#3 ",
            ],
            patterns: &[
                "loader: specification with",
                "loader: built",
                "loader: dropped",
                "supervisor: cap 3: bootstrap-untyped (untyped 128 KiB: all of `bootstrap`)",
                "supervisor: cap 4: pciback-untyped (untyped 128 KiB: all of `pciback`)",
                "supervisor: cap 5: faults (endpoint (receive): the restartable components' faults and finished requests)",
                "supervisor: cap 6: builder-tcb (TCB of `builder` (rolled back after every request; its faults come with badge 1))",
                "supervisor: cap 7: xenstore-logic-tcb (TCB of `xenstore-logic` (restarted every 100 ms; its faults come with badge 2))",
                "supervisor: cap 8: vmm-carol-tcb (TCB of `vmm-carol` (started and restarted when the toolstack asks; its faults come with badge 3))",
                "supervisor: cap 9: clock (IRQ 0 handler (the PIT))",
                "supervisor: 245 of 245 ungiven slots refused",
                // PCIBack holds configuration space and the ELCR, and nothing else.
                "pciback: cap 1: pci-config_ports (I/O ports 0xcf8-0xcff)",
                "pciback: cap 2: pic-elcr_ports (I/O ports 0x4d0-0x4d1)",
                "pciback: cap 3: supervisor-done (notification (signal, badge 2))",
                "pciback: 252 of 252 ungiven slots refused",
                "xenstore-state: region xs-state-xenstore-logic at 0x8000009000, 64 KiB, rw",
                "xenstore-state: 254 of 254 ungiven slots refused",
                "xenstore-logic: region xs-request-toolstack at 0x8000000000, 8 KiB, rw",
                "xenstore-logic: region xs-request-vga at 0x8000003000, 8 KiB, rw",
                "xenstore-logic: region xs-request-xenstore-bridge at 0x8000006000, 8 KiB, rw",
                "xenstore-logic: 253 of 253 ungiven slots refused",
                "xenstore-logic: instance 1 resumed from XenStore-State: 1 nodes, 0 watches",
                "xenstore-bridge: cap 4: host-serial_ports (I/O ports 0x2f8-0x2ff)",
                "xenstore-bridge: 251 of 251 ungiven slots refused",
                "xenstore-bridge: XenStore open to the host on COM2",
                "vga: region display.mmio0 at 0x8040000000, 4 KiB, rw device memory at 0xfebf0000",
                "vga: 253 of 253 ungiven slots refused",
                "bootstrap: 253 of 253 ungiven slots refused",
                // The disposable bootstrap answers once, signals, and is destroyed by revoke;
                // its memory is made into something new; the toolstack's capability to it
                // now fails.
                "bootstrap: handed out the boot-time resources; done",
                "audit: ",
                "supervisor: `bootstrap` is done: revoked the untyped it was made from; it is gone",
                "supervisor: `bootstrap`'s memory is free again: a new frame was made from it",
                // The toolstack judges itself, but passes a machine without the display
                // adapter (or without the host bridge) with those checks skipped: on QEMU
                // both must be there.
                "toolstack: display adapter: VBE id 0xb0c5, EDID header valid",
                // Xen's own tools on the host, through the serial bridge.
                "[host] /local/domain/1/display/vbe-id = \"0xb0c5\"",
                "[host] /tool/xenstore/bridge = \"COM2\"",
                "[host] /vm/alice/name = \"alice\"",
                "[host] /vm/alice/state = \"running\"",
                "xenstore-read /local/domain/1/display/vbe-id",
                "[host] 0xb0c5",
                "toolstack: the host is done: /tool/host-done = Some(\"yes\")",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-lifetimes",
        emulator: Emulator::Qemu,
        module: Some("loader-lifetimes"),
        cmdline: "",
        digest_of: Some("examples/lifetimes/system.toml"),
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            // The crasher crashes as soon as it starts; the supervisor restarts it after a
            // backoff that doubles while it keeps crashing (when, relative to the other
            // components' reports, depends on the clock).
            anywhere: &[
                "supervisor: `crasher` (instance 1) crashed at",
                ": page fault at 0x0, rip 0x",
                "(crash 1); restarting it in 10 ms",
                "supervisor: restarted `crasher` (instance 2) after its crash",
                // Even instances try to end the whole run: only they end, with status 1,
                // which the supervisor takes for a crash.
                "crasher: instance 2 tries to end the whole run",
                "supervisor: `crasher` (instance 2) crashed at",
                ": its program ended with status 1 (crash 2)",
                "(crash 2); restarting it in 20 ms",
                // Every third says it is done, to stop its timed restarts: only a guest
                // I/O backend whose guests are gone may end, so that is a crash too.
                "crasher: instance 3 says it is done, to stop its restarts",
                "supervisor: `crasher` (instance 3) ended at",
                "ms with status 0, which only a guest I/O backend whose guests are all gone may (crash 3); restarting it in 40 ms",
                "supervisor: restarted `crasher` (instance 4) after its crash",
                "(crash 4); restarting it in 80 ms",
                "audit: ", // every restart is in the audit log
                "restart crasher#1 crasher#2",
                "restart scribbler#1 scribbler#2",
                "supervisor: rolled back `scribbler` after request 1: 64 KiB restored in",
                "supervisor: rolled back `scribbler` after request 2: 64 KiB restored in",
                "worker: round 4 of 4 done",
                // A component busy past its period and grace is restarted regardless.
                "(forced: busy through the grace period)",
                "supervisor: `lingerer` did not say it was done by its 400 ms deadline: revoked the untyped it was made from; it is gone",
                "dispose lingerer#1",
            ],
            patterns: &[
                "loader: specification with",
                "loader: built",
                "loader: dropped",
                "supervisor: cap 3: lingerer-untyped (untyped 128 KiB: all of `lingerer`)",
                "supervisor: cap 4: faults (endpoint (receive): the restartable components' faults and finished requests)",
                "supervisor: cap 5: crasher-tcb (TCB of `crasher` (restarted every 10000 ms; its faults come with badge 1))",
                "supervisor: cap 6: heartbeat-tcb (TCB of `heartbeat` (restarted every 50 ms; its faults come with badge 2))",
                "supervisor: cap 7: scribbler-tcb (TCB of `scribbler` (rolled back after every request; its faults come with badge 3))",
                "supervisor: cap 8: clock (IRQ 0 handler (the PIT))",
                "supervisor: 246 of 246 ungiven slots refused",
                // What the demos did is the observer's to judge (its cases).
            ],
        },
    },
    EmulatorTest {
        name: "qemu-boot",
        emulator: Emulator::Qemu,
        module: Some("boot-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &[
                "Cleave",
                "memory map:",
                "boot-test' [0x",
                "free memory:",
                // QEMU's `-cpu max` emulates AMD SVM with nested paging: the kernel turns it on.
                "svm: SVM revision 1, ",
                "svm: SVM on; guests' physical address spaces are nested page tables",
                "kernel: starting root task 'boot-test'",
                "thread 'boot-test' exited with status 0",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-run-hello",
        emulator: Emulator::Qemu,
        module: Some("hello"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &["thread 'hello' exited with status 0"],
        },
    },
    EmulatorTest {
        name: "qemu-capabilities",
        emulator: Emulator::Qemu,
        module: Some("cap-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] },
    },
    EmulatorTest {
        name: "qemu-threads-and-ipc",
        emulator: Emulator::Qemu,
        module: Some("thread-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] },
    },
    EmulatorTest {
        name: "qemu-random-user-code",
        emulator: Emulator::Qemu,
        module: Some("chaos-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] },
    },
    EmulatorTest {
        name: "qemu-hostile-component",
        emulator: Emulator::Qemu,
        module: Some("hostile-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &[
                // After the flood the console must still take a line whole: only the
                // serial output can show that.
                "hostile-test: the console still takes this line after the flood",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-interrupts-and-preemption",
        emulator: Emulator::Qemu,
        module: Some("irq-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] },
    },
    EmulatorTest {
        name: "qemu-address-spaces",
        emulator: Emulator::Qemu,
        module: Some("vspace-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation { outcome: Outcome::Success, judges_itself: true, anywhere: &[], patterns: &[] },
    },
    EmulatorTest {
        name: "qemu-user-fault",
        emulator: Emulator::Qemu,
        module: Some("user-fault"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Idle,
            judges_itself: false,
            anywhere: &[],
            patterns: &[
                "user-fault: executing hlt in ring 3",
                "user fault: thread 'user-fault': vector 13 #GP (general protection)",
                "rip=",
                "kernel: thread 'user-fault' stopped",
                "kernel: no runnable threads (1 stopped by faults)",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-unknown-syscall",
        emulator: Emulator::Qemu,
        module: Some("bad-syscall"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Idle,
            judges_itself: false,
            anywhere: &[],
            patterns: &[
                "bad-syscall: calling system call 0xdead",
                "user fault: thread 'bad-syscall': unknown system call 0xdead",
                "kernel: thread 'bad-syscall' stopped",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-user-panic",
        emulator: Emulator::Qemu,
        module: Some("panic-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Idle,
            judges_itself: false,
            anywhere: &[],
            patterns: &[
                "panic at emulator-tests/src/bin/panic_test.rs",
                "deliberate panic",
                "user fault: thread 'panic-test': vector 6 #UD (invalid opcode)",
                "kernel: thread 'panic-test' stopped",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-no-module",
        emulator: Emulator::Qemu,
        module: None,
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &["kernel: cannot boot: no boot module: the kernel needs a root task"],
        },
    },
    EmulatorTest {
        name: "qemu-bad-module",
        emulator: Emulator::Qemu,
        module: Some("file:system.toml"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &["kernel: cannot start root task 'system.toml': bad ELF image: not an ELF file"],
        },
    },
    EmulatorTest {
        name: "qemu-kernel-exception",
        emulator: Emulator::Qemu,
        module: Some("boot-test"),
        cmdline: "cleave.selftest=kernel-page-fault",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &[
                "self-test: reading an unmapped kernel address",
                "KERNEL EXCEPTION: vector 14 #PF (page fault), error code 0x0, rip 0xffffffff8",
                "cr2 0xffff9000dead0000",
                "rax=",
                "cs =0x0000000000000008",
                "TEST FAIL: exception in the kernel",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-kernel-panic",
        emulator: Emulator::Qemu,
        module: Some("boot-test"),
        cmdline: "cleave.selftest=panic",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &[
                "KERNEL PANIC at kernel/src/boot.rs:",
                "self-test panic requested on the command line",
                "TEST FAIL: kernel panic",
            ],
        },
    },
    EmulatorTest {
        name: "qemu-bad-option",
        emulator: Emulator::Qemu,
        module: Some("boot-test"),
        cmdline: "cleave.selftest=bogus",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Failure,
            judges_itself: false,
            anywhere: &[],
            patterns: &["kernel: cannot boot: unknown cleave.selftest=bogus"],
        },
    },
    EmulatorTest {
        name: "bochs-vmx-capabilities",
        emulator: Emulator::Bochs,
        module: Some("boot-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &["boot loader: GRUB", "vt-x: VMX yes, EPT yes, unrestricted guest yes"],
        },
    },
    EmulatorTest {
        name: "qemu-svm-guest",
        emulator: Emulator::Qemu,
        module: Some("svm-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &[SVM_ON],
        },
    },
    // The Vcpu tests, the guests from a description and the multi-guest VMM run on both
    // architectures with the same expectations: VT-x in Bochs, SVM in QEMU.
    EmulatorTest {
        name: "bochs-vmx-guest",
        emulator: Emulator::Bochs,
        module: Some("vcpu-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &[VMX_ON, "vcpu-test: VT-x: VMCS fields and neutral fields"],
        },
    },
    EmulatorTest {
        name: "qemu-svm-vcpu-guest",
        emulator: Emulator::Qemu,
        module: Some("vcpu-test"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[],
            patterns: &[SVM_ON, "vcpu-test: SVM: neutral fields only"],
        },
    },
    EmulatorTest {
        name: "bochs-capdl-guests",
        emulator: Emulator::Bochs,
        module: Some("loader-guests"),
        cmdline: "",
        digest_of: Some("systems/guests.toml"),
        host_xenstore: false,
        audit: GUESTS_AUDIT,
        expect: Expectation {
            // Every VMM stops itself once its guest is gone; then nothing is left to run.
            outcome: Outcome::Idle,
            judges_itself: false,
            anywhere: GUESTS_ANYWHERE,
            patterns: &[VMX_ON, "loader: built", "kernel: no runnable threads (0 stopped by faults)"],
        },
    },
    EmulatorTest {
        name: "qemu-svm-capdl-guests",
        emulator: Emulator::Qemu,
        module: Some("loader-guests"),
        cmdline: "",
        digest_of: Some("systems/guests.toml"),
        host_xenstore: false,
        audit: GUESTS_AUDIT,
        expect: Expectation {
            outcome: Outcome::Idle,
            judges_itself: false,
            anywhere: GUESTS_ANYWHERE,
            patterns: &[SVM_ON, "loader: built", "kernel: no runnable threads (0 stopped by faults)"],
        },
    },
    EmulatorTest {
        name: "bochs-vmm-guest",
        emulator: Emulator::Bochs,
        module: Some("vmm-guests"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[VMX_ON],
            patterns: VMM_GUESTS_LINES,
        },
    },
    EmulatorTest {
        name: "qemu-svm-vmm-guest",
        emulator: Emulator::Qemu,
        module: Some("vmm-guests"),
        cmdline: "",
        digest_of: None,
        host_xenstore: false,
        audit: &[],
        expect: Expectation {
            outcome: Outcome::Success,
            judges_itself: true,
            anywhere: &[SVM_ON],
            patterns: VMM_GUESTS_LINES,
        },
    },
];

/// Tally of passed and failed tests.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
    /// The last serial lines of each failed emulator run, repeated at the end so that a
    /// log cut to its tail (as CI keeps it) still says why.
    tails: Vec<(String, Vec<String>)>,
}

/// Serial lines repeated at the end per failed run, and runs repeated.
const SUMMARY_LINES: usize = 30;
const SUMMARY_RUNS: usize = 2;

/// Runs the selected tests; returns whether all passed.
pub fn run(filter: Option<&str>, host: bool, emulator: bool) -> Result<bool> {
    let mut tally = Tally::default();
    // The host tests need some of the packages too (Xen's XenStore clients).
    deps::ensure()?;
    if host {
        host_tests(&mut tally)?;
        short_fuzz(&mut tally)?;
    }
    if emulator {
        let artifacts = artifacts::build(&crate::default_system(), artifacts::Scope::Tests)?;
        for test in TESTS.iter().filter(|t| filter.is_none_or(|f| t.name.contains(f))) {
            run_emulator_test(test, &artifacts, &mut tally)?;
        }
        for command in COMMANDS.iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))) {
            run_documented_command(command, &mut tally)?;
        }
        for (name, args, processor_facts) in LINUX_TESTS {
            if filter.is_none_or(|f| name.contains(f)) {
                run_linux_session(name, args, processor_facts, &mut tally)?;
            }
        }
        for (name, system, restarted) in DISK_TESTS {
            if filter.is_none_or(|f| name.contains(f)) {
                run_disk_test(&mut tally, name, system, restarted)?;
            }
        }
        if filter.is_none_or(|f| "linux-net-wget".contains(f)) {
            run_net_test(&mut tally)?;
        }
        if filter.is_none_or(|f| "linux-io-restarts".contains(f)) {
            run_restart_test(&mut tally)?;
        }
        if filter.is_none_or(|f| "linux-io-hostile".contains(f)) {
            run_hostile_test(&mut tally)?;
        }
        if filter.is_none_or(|f| "ctl-linux".contains(f)) {
            run_ctl_linux_test(&mut tally)?;
        }
    }
    println!();
    for (name, tail) in tally.tails.iter().take(SUMMARY_RUNS) {
        println!("--- the end of {name}'s serial output:");
        for line in tail {
            println!("    | {line}");
        }
    }
    for failure in &tally.failures {
        println!("failed: {failure}");
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}

/// A `run` command the README documents, run exactly as a user would (this xtask binary
/// with those arguments): it must exit 0 and print these lines, in this order.
struct DocumentedCommand {
    name: &'static str,
    args: &'static [&'static str],
    /// Texts its output must show, in this order.
    expect: &'static [&'static str],
    /// Texts its output must show, in any order (threads that run at once).
    anywhere: &'static [&'static str],
}

/// Every documented `run` form that ends by itself. (`run --gdb` waits for a debugger
/// without a timeout, so no test can run it to its end.)
const COMMANDS: &[DocumentedCommand] = &[
    DocumentedCommand {
        name: "command-run",
        args: &["run"],
        expect: &[
            "loader: pci 00:02.0 1234:1111 memory 0xfd000000+16384 KiB memory 0xfebf0000+4 KiB",
            // PCIBack finds the display adapter by what it is, checks its registers are
            // where vga maps them, and is gone before vga starts.
            "pciback: display (1234:1111 at 00:02.0) for vga: its memory BARs hold the owner's 1 ranges, no interrupt",
            "supervisor: `pciback` is done: revoked the untyped it was made from; it is gone",
            "toolstack: display adapter: VBE id 0xb0c5, EDID header valid",
            "TEST PASS",
        ],
        // The guests run on SVM in QEMU, each under its own VMM, the hostile one stopped
        // alone.
        anywhere: &[
            "alice: command line: name=alice",
            "vmm: guest 'alice' powered off with code 0; ",
            "bob: command line: name=bob",
            "vmm: guest 'bob' powered off with code 0; ",
            "vmm: guest 'mallory' asked for SVM (EFER.SVME), which this VMM does not offer",
        ],
    },
    DocumentedCommand {
        name: "command-run-bochs",
        args: &["run", "--bochs"],
        expect: &[
            // Bochs' firmware puts no display adapter registers where system.toml's
            // (QEMU's firmware's) address is: refused, said so, skipped; the same for the
            // host bridge, which only the QEMU runner connects.
            "loader: device frame `display_mmio0_0` at 0xfebf0000 is no device memory of this machine: refused",
            // Nor is there a 1234:1111 function for PCIBack to find.
            "pciback: display for vga: not placed: no such function on bus 0; vga will find no device",
            "vga: the loader refused the display adapter's registers",
            "toolstack: display adapter: none on this machine (the loader refused its address): display checks skipped",
            "toolstack: XenStore is not open to the host (\"none\"): host checks skipped",
            "TEST PASS",
        ],
        anywhere: &[],
    },
    // Linux guests, two of them hostile (doc/linux-guest.md): each hostile one is stopped
    // alone by its own VMM; the third boots on and ends itself.
    DocumentedCommand {
        name: "command-run-linux-hostile",
        args: &["run", "--system", "systems/linux-hostile.toml"],
        expect: &["loader: built"],
        anywhere: &[
            "poker: cleave-guest: misbehaving:",
            "vmm: guest 'poker' read guest-physical ",
            "tripler: cleave-guest: misbehaving:",
            "vmm: guest 'tripler' triple fault",
            "debian: cleave-guest: init done",
            "vmm: guest 'debian' reset itself",
        ],
    },
    // The Linux guest on VT-x (Bochs): it boots to its init and reboots itself.
    DocumentedCommand {
        name: "command-run-linux-bochs",
        args: &["run", "--system", "systems/linux-reboot.toml", "--bochs"],
        expect: &["vt-x: VMX on; guests can run", "loader: built"],
        anywhere: &[
            "debian: cleave-guest: /init started",
            "debian: cleave-guest: init done",
            "vmm: guest 'debian' reset itself",
        ],
    },
    // Another system than the default one, chosen as the README says.
    DocumentedCommand {
        name: "command-run-lifetimes",
        args: &["run", "--system", "examples/lifetimes/system.toml"],
        expect: &[
            "loader: built",
            "observer: the worker finished its rounds while the crasher crash-looped above it",
            "TEST PASS",
        ],
        anywhere: &[],
    },
];

/// Most time one documented command may take (building is already done).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cargo xtask ARGS` as a user would (this program, from the workspace root); its
/// verdict (it ended, successfully, within [`COMMAND_TIMEOUT`]) and its standard output.
fn run_xtask(args: &[&str]) -> Result<(Result<(), String>, String)> {
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap_or_default();
    let verdict = match status {
        None => Err(format!("did not end within {} s", COMMAND_TIMEOUT.as_secs())),
        Some(s) if !s.success() => Err(format!("ended with {s}")),
        Some(_) => Ok(()),
    };
    Ok((verdict, output))
}

fn run_documented_command(command: &DocumentedCommand, tally: &mut Tally) -> Result<()> {
    println!("== documented command: cargo xtask {}", command.args.join(" "));
    let start = Instant::now();
    let (mut verdict, output) = run_xtask(command.args)?;
    if verdict.is_ok() {
        let mut rest = output.as_str();
        for line in command.expect {
            match rest.find(line) {
                Some(at) => rest = &rest[at + line.len()..],
                None => {
                    verdict = Err(format!("its output lacks (in order) `{line}`"));
                    break;
                }
            }
        }
        if let Some(line) = command.anywhere.iter().find(|l| !output.contains(*l)) {
            verdict = Err(format!("its output lacks `{line}`"));
        }
    }
    match verdict {
        Ok(()) => {
            println!("== {} ok ({:.1} s)", command.name, start.elapsed().as_secs_f64());
            tally.passed += 1;
        }
        Err(reason) => {
            println!("== {} FAILED: {reason}", command.name);
            let lines: Vec<&str> = output.lines().collect();
            let tail =
                lines[lines.len().saturating_sub(SUMMARY_LINES)..].iter().map(|l| l.to_string()).collect();
            tally.tails.push((command.name.to_string(), tail));
            tally.failed += 1;
            tally.failures.push(format!("{}: {reason}", command.name));
        }
    }
    Ok(())
}

/// `cargo test` over the host crates; counts come from its `test result:` lines.
fn host_tests(tally: &mut Tally) -> Result<()> {
    println!("== host unit tests");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.arg("test").current_dir(workspace_root());
    for package in crate::workspace::packages(&workspace_root())?.host {
        command.args(["-p", &package]);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().context("cannot run cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    tally.passed += passed;
    tally.failed += failed;
    if !status.success() && failed == 0 {
        // A build failure runs no test: count it so the summary cannot read as green.
        tally.failed += 1;
        tally.failures.push("host unit tests: cargo test failed before running tests".into());
    } else if failed > 0 {
        tally.failures.push(format!("host unit tests: {failed} failed"));
    }
    Ok(())
}

/// A short run of the object-layer fuzzer: one test, failed by any violation.
fn short_fuzz(tally: &mut Tally) -> Result<()> {
    println!("== object-layer fuzz ({} operations)", crate::fuzz::SHORT_FUZZ_OPS);
    let options = crate::fuzz::Options { ops: Some(crate::fuzz::SHORT_FUZZ_OPS), ..Default::default() };
    let (ok, _) = crate::fuzz::run(&options, true)?;
    if ok {
        tally.passed += 1;
    } else {
        tally.failed += 1;
        tally
            .failures
            .push("object-layer fuzz: a kernel invariant broke (the report above has the sequence)".into());
    }
    Ok(())
}

/// Parses cargo's `test result: ok. 12 passed; 0 failed; ...` line.
fn parse_test_result(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<usize> {
        rest.split(';').find_map(|part| {
            part.trim()
                .rsplit_once(". ")
                .map_or(part.trim(), |(_, p)| p)
                .strip_suffix(word)?
                .trim()
                .parse()
                .ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

fn run_emulator_test(test: &EmulatorTest, artifacts: &Artifacts, tally: &mut Tally) -> Result<()> {
    println!("== emulator test {} ({:?})", test.name, test.emulator);
    let module = match test.module {
        None => None,
        Some(spec) => Some(match spec.strip_prefix("file:") {
            Some(path) => workspace_root().join(path),
            None => artifacts.program(spec)?,
        }),
    };
    let run = Run {
        emulator: test.emulator,
        name: test.name.into(),
        module,
        cmdline: test.cmdline.into(),
        timeout: Some(match test.emulator {
            Emulator::Qemu => QEMU_TIMEOUT,
            Emulator::Bochs => BOCHS_TIMEOUT,
        }),
        gdb: false,
        icount: false,
        echo: true,
        host_xenstore: test.host_xenstore,
        operator: false,
        // A system run ends (the host ends it) only after its guests did.
        ctl_guest: None,
        ctl_peers: Vec::new(),
        host_waits_for: match test.digest_of {
            Some(system) if test.host_xenstore => emulator::guests_done(&workspace_root().join(system))?,
            _ => Vec::new(),
        },
        memory_mib: emulator::MEMORY_MIB,
        guest_console: false,
        disks: Vec::new(),
    };
    let start = Instant::now();
    let finished = run.execute(artifacts)?;
    let mut verdict = judge::judge(test.emulator, &test.expect, finished.ending, &finished.serial);
    if let (Ok(()), Some(system)) = (&verdict, test.digest_of) {
        let digest = artifacts::expected_digest(&workspace_root().join(system))?;
        let line = format!("digest {digest:#018x}");
        if !finished.serial.contains(&line) {
            verdict =
                Err(format!("the loader did not report `{line}`, the digest cleave computed for {system}"));
        }
    }
    // The memory the loader made the system from is what `cleave memory` counts.
    if let (Ok(()), Some(system), Some(loader)) = (&verdict, test.digest_of, test.module) {
        let image = artifacts::image_of(artifacts, loader);
        let table = artifacts::memory_table(&workspace_root().join(system), &image)?;
        let line = format!("loader: memory: {} bytes for the system", table.machine());
        if !finished.serial.contains(&line) {
            verdict = Err(format!(
                "the loader did not report `{line}`, the memory cleave counts for {system} (control plane {} bytes)",
                table.control_plane()
            ));
        }
    }
    if verdict.is_ok() && !test.audit.is_empty() {
        verdict = check_audit(&emulator::audit_log(&finished.serial), test.audit);
    }
    match verdict {
        Ok(()) => {
            println!("== {} ok ({:.1} s)", test.name, start.elapsed().as_secs_f64());
            tally.passed += 1;
        }
        Err(reason) => {
            emulator::report_failure(&run, &finished, &reason);
            let tail = finished.tail(SUMMARY_LINES).into_iter().map(String::from).collect();
            tally.tails.push((test.name.to_string(), tail));
            tally.failed += 1;
            tally.failures.push(format!("{}: {reason}", test.name));
        }
    }
    Ok(())
}

/// Reads a run's audit log (the kernel's stamped lines the serial log carries), every
/// writer checked: a line refused (in another's name, malformed, impossible) fails the test.
fn read_audit(text: &str) -> Result<cleave::audit::Log, String> {
    let checked =
        cleave::audit::read_stamped(text).map_err(|e| format!("the run's audit log does not read: {e}"))?;
    match checked.refused.first() {
        Some(first) => Err(format!(
            "the run's audit log has {} refused lines, the first: {first}",
            checked.refused.len()
        )),
        None => Ok(checked.log),
    }
}

/// Asks the audit log `cleave audit`'s two questions for each (component, guest) pair.
fn check_audit(log: &str, pairs: &[(&str, &str)]) -> Result<(), String> {
    let log = read_audit(log)?;
    for &(component, guest) in pairs {
        let relied = log.relied_on(component, 0, u64::MAX);
        println!(
            "   audit: which guests relied on {component}? {}",
            cleave::audit::describe(&relied).trim_end()
        );
        let Some(r) = relied.iter().find(|r| r.guest == guest) else {
            return Err(format!("the audit log does not show {guest} relying on {component}"));
        };
        let middle = r.from + (r.to.unwrap_or(r.from + 2) - r.from) / 2;
        let at: Vec<String> = log.relied_at(guest, middle).iter().map(|i| i.to_string()).collect();
        println!("   audit: what did {guest} rely on at {middle} µs? {}", at.join(", "));
        // The instance it relied on first (an on-request guest's VMM is a later one).
        if !at.contains(&r.instance.to_string()) {
            return Err(format!("the audit log does not show {guest} relying on {} at {middle}", r.instance));
        }
    }
    Ok(())
}

/// The text after `what` on the first line of `output` that has it, trimmed.
fn text_after(output: &str, what: &str) -> Option<String> {
    let line = output.lines().find(|l| l.contains(what))?;
    Some(line[line.find(what)? + what.len()..].trim().to_string())
}

/// The disk tests (doc/io-path.md): name, system, and whether blkback is restarted (every
/// 200 ms) while the guests use their disks.
const DISK_TESTS: [(&str, &str, &[&str]); 3] = [
    ("linux-disks-persist", "systems/linux-disks.toml", &[]),
    ("linux-disks-persist-restarts", "systems/linux-disks-restarts.toml", &["blkback"]),
    (
        "linux-disks-persist-per-guest",
        "systems/linux-disks-per-guest.toml",
        &["blkback-alice", "blkback-bob"],
    ),
];

/// Two runs of `system` on its machine disks, created afresh: in the first alice writes
/// 1 MiB of random data to her disk (through her VMM, the ring and her disk backend to a
/// machine virtio-blk) and bob finds his disk all zeros; in the second, a reboot of the
/// whole system later, alice finds her data with the same SHA-256 and bob still sees none
/// of it. Each backend in `restarted` must be seen restarted (the audit log's `restart`
/// lines) in each run, and the audit log must show each guest relying only on backends
/// that serve it: with per-guest instances, alice never on bob's. With several machine
/// disks (one per instance), after the first run alice's holds her data and bob's none.
fn run_disk_test(tally: &mut Tally, name: &str, system: &str, restarted: &[&str]) -> Result<()> {
    println!("== {name}: cargo xtask run --system {system}, twice on its disk images");
    let start = Instant::now();
    let images: Vec<std::path::PathBuf> =
        emulator::disk_images_for(Path::new(system))?.into_iter().map(|(path, _)| path).collect();
    for image in &images {
        let _ = std::fs::remove_file(image);
    }
    let bob_clean = format!("{} 16384 sectors, 0 bytes not zero", crate::linux::initramfs::DISK_SCANNED);
    let mut verdict = Ok(());
    let mut outputs = Vec::new();
    let mut written = None;
    for round in 1..=2 {
        let (ran, output) = run_xtask(&["run", "--system", system])?;
        let checked = ran.and_then(|()| {
            for backend in restarted {
                let seen = output
                    .lines()
                    .filter(|l| l.contains("audit:") && l.contains(&format!(" restart {backend}#")))
                    .count();
                if seen < 3 {
                    return Err(format!(
                        "run {round}: {backend} was restarted {seen} times, not every 200 ms"
                    ));
                }
            }
            if !restarted.is_empty() {
                check_disk_reliance(&output, system)?;
            }
            check_pci_placed(&output, system)?;
            if round == 1 && images.len() > 1 {
                check_machine_disks(&images)?;
            }
            for done in ["vmm: guest 'alice' reset itself", "vmm: guest 'bob' reset itself"] {
                if !output.contains(done) {
                    return Err(format!("run {round}: its output lacks `{done}`"));
                }
            }
            if !output.contains(&bob_clean) {
                return Err(format!("run {round}: bob's disk is not all zeros (`{bob_clean}` missing)"));
            }
            match round {
                1 => {
                    let sha = text_after(&output, crate::linux::initramfs::DISK_WROTE)
                        .ok_or_else(|| "run 1: alice did not write her data".to_string())?;
                    println!("   run 1: alice wrote 1 MiB, sha256 {sha}; bob's disk is all zeros");
                    written = Some(sha);
                    Ok(())
                }
                _ => {
                    let sha = text_after(&output, crate::linux::initramfs::DISK_FOUND)
                        .ok_or_else(|| "run 2: alice did not find her data intact".to_string())?;
                    println!("   run 2: alice found her data, sha256 {sha}; bob's disk is still all zeros");
                    if Some(&sha) == written.as_ref() {
                        Ok(())
                    } else {
                        Err(format!("run 2: alice's data has sha256 {sha}, not {written:?}"))
                    }
                }
            }
        });
        outputs.push(output);
        if let Err(e) = checked {
            verdict = Err(e);
            break;
        }
    }
    tally_run(tally, name, start, verdict, outputs.last().map(String::as_str).unwrap_or(""));
    Ok(())
}

/// Checks a disk run's audit log: each guest relied on some instance of its disk backend
/// (as `system`'s description names it after instancing) and on no instance of any other
/// disk backend.
fn check_disk_reliance(output: &str, system: &str) -> Result<(), String> {
    let text = emulator::audit_log(output);
    let log = read_audit(&text)?;
    let file = std::fs::read_to_string(system)
        .ok()
        .and_then(|t| cleave::system::load(&t).ok())
        .ok_or_else(|| format!("{system} does not load"))?;
    let backends: Vec<(String, String)> =
        cleave::layout::disk_slices(&file).into_iter().map(|s| (s.guest, s.backend)).collect();
    let mut said = Vec::new();
    for (guest, own) in &backends {
        for (_, backend) in &backends {
            let instances: std::collections::BTreeSet<u64> = log
                .relied_on(backend, 0, u64::MAX)
                .iter()
                .filter(|r| r.guest == *guest)
                .map(|r| r.instance.number)
                .collect();
            match (backend == own, instances.len()) {
                (true, 0) => {
                    return Err(format!("the audit log shows {guest} relying on no instance of {backend}"));
                }
                (false, n) if n > 0 => {
                    return Err(format!(
                        "the audit log shows {guest} relying on {n} instances of {backend}, not its own"
                    ));
                }
                (true, n) => said.push(format!("{guest} on {n} instances of {backend}")),
                _ => {}
            }
        }
    }
    println!("   audit: {}", said.join(", "));
    Ok(())
}

/// Checks a run's PCIBack: each device `system` names by what it is was placed at its
/// owner's ports and line, and PCIBack was destroyed once done (after which nothing holds
/// PCI configuration space).
fn check_pci_placed(output: &str, system: &str) -> Result<(), String> {
    let file = std::fs::read_to_string(system)
        .ok()
        .and_then(|t| cleave::system::load(&t).ok())
        .ok_or_else(|| format!("{system} does not load"))?;
    let placements = cleave::system::pci::placements(&file);
    for p in &placements {
        let placed = match p.ports {
            Some((first, last)) => format!("for {}: I/O BAR 0 (128 bytes) at {first:#x}-{last:#x},", p.owner),
            None => format!("for {}:", p.owner),
        };
        let interrupt = p.irq.map_or(" no interrupt".to_string(), |irq| format!(", IRQ {irq}"));
        let line = output.lines().find(|l| l.starts_with(&format!("pciback: {} (", p.device)));
        match line {
            Some(l) if l.contains(&placed) && l.ends_with(&interrupt) => {
                println!("   {}", l.trim());
            }
            _ => {
                return Err(format!(
                    "PCIBack did not place `{}` at its owner's ports and line: {line:?}",
                    p.device
                ));
            }
        }
    }
    if !placements.is_empty()
        && !output.contains("supervisor: `pciback` is done: revoked the untyped it was made from")
    {
        return Err("PCIBack was not destroyed once done".to_string());
    }
    Ok(())
}

/// Checks, on the host, that alice's data landed on her machine disk alone: after the first
/// run of a per-guest system, the first image (alice's) holds bytes that are not zero and
/// every other image (bob's) none.
fn check_machine_disks(images: &[std::path::PathBuf]) -> Result<(), String> {
    let nonzero = |path: &Path| -> Result<usize, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(bytes.iter().filter(|b| **b != 0).count())
    };
    let alice = nonzero(&images[0])?;
    if alice == 0 {
        return Err(format!(
            "alice's machine disk {} is all zeros after she wrote to it",
            images[0].display()
        ));
    }
    for other in &images[1..] {
        let n = nonzero(other)?;
        if n != 0 {
            return Err(format!(
                "{} holds {n} bytes that are not zero: not alice's disk, it should hold none",
                other.display()
            ));
        }
    }
    println!("   host: alice's machine disk holds {alice} bytes that are not zero, bob's none");
    Ok(())
}

/// Counts a run-based test's verdict; on failure keeps the end of its last output.
fn tally_run(tally: &mut Tally, name: &str, start: Instant, verdict: Result<(), String>, last: &str) {
    match verdict {
        Ok(()) => {
            println!("== {name} ok ({:.1} s)", start.elapsed().as_secs_f64());
            tally.passed += 1;
        }
        Err(reason) => {
            println!("== {name} FAILED: {reason}");
            let lines: Vec<&str> = last.lines().collect();
            let tail =
                lines[lines.len().saturating_sub(SUMMARY_LINES)..].iter().map(|l| l.to_string()).collect();
            tally.tails.push((name.to_string(), tail));
            tally.failed += 1;
            tally.failures.push(format!("{name}: {reason}"));
        }
    }
}

/// The system of the network test (doc/io-path.md).
const NET_SYSTEM: &str = "systems/linux-net.toml";

/// One run of `systems/linux-net.toml`: alice serves 16 MiB of random data with busybox
/// httpd, bob fetches it with busybox wget through his VMM, netback and alice's VMM, and
/// the SHA-256 he computes is the one alice computed; then both guests end the run.
fn run_net_test(tally: &mut Tally) -> Result<()> {
    let name = "linux-net-wget";
    println!("== {name}: cargo xtask run --system {NET_SYSTEM}");
    let start = Instant::now();
    let (ran, output) = run_xtask(&["run", "--system", NET_SYSTEM])?;
    let verdict = ran.and_then(|()| check_transfer(&output));
    tally_run(tally, name, start, verdict, &output);
    Ok(())
}

/// The system of the restart test (doc/io-path.md).
const RESTARTS_SYSTEM: &str = "systems/linux-io-restarts.toml";

/// Restarts of each backend the restart test needs to see (a run takes some 20 s of
/// machine time at 200 ms each; these are far fewer, so a slow machine passes too).
const MIN_RESTARTS: usize = 20;

/// One run of `systems/linux-io-restarts.toml` on a fresh disk image, blkback and netback
/// restarted every 200 ms throughout: alice's 4 MiB written past her page cache reads back
/// with the same SHA-256, bob's disk holds none of it, bob's wget of alice's 16 MiB matches,
/// and the audit log shows the restarts and both guests relying on many instances of each
/// backend.
fn run_restart_test(tally: &mut Tally) -> Result<()> {
    let name = "linux-io-restarts";
    println!("== {name}: cargo xtask run --system {RESTARTS_SYSTEM}, both backends restarted every 200 ms");
    let start = Instant::now();
    let _ = std::fs::remove_file(workspace_root().join("target/cleave/disks/linux-io-restarts.img"));
    let (ran, output) = run_xtask(&["run", "--system", RESTARTS_SYSTEM])?;
    let verdict = ran.and_then(|()| {
        check_roundtrip(&output)?;
        let bob_clean = format!("{} 16384 sectors, 0 bytes not zero", crate::linux::initramfs::DISK_SCANNED);
        if !output.contains(&bob_clean) {
            return Err(format!("bob's disk is not all zeros (`{bob_clean}` missing)"));
        }
        check_transfer(&output)?;
        check_restarts(&output)
    });
    tally_run(tally, name, start, verdict, &output);
    Ok(())
}

/// The system of the operator test (doc/ctl.md).
const CTL_LINUX_SYSTEM: &str = "systems/ctl-linux.toml";

/// One run of `systems/ctl-linux.toml` on a fresh disk image, the host driving the guest's
/// whole life through `cleave ctl` ([`emulator::host_guest_session`]): the shell answered
/// through the relayed console, the disk loop saw every read-back right across two
/// operator restarts of blkback, and the guest made again read the disk the first left;
/// `list` showed its RAM back in the Builder's pool; the audit log shows each build and
/// destroy by its own Builder instance, blkback restarted as the toolstack asked, and the
/// guest relying on several blkback instances.
fn run_ctl_linux_test(tally: &mut Tally) -> Result<()> {
    let name = "ctl-linux";
    println!(
        "== {name}: cargo xtask run --system {CTL_LINUX_SYSTEM}, a Linux guest's life through cleave ctl"
    );
    let start = Instant::now();
    let _ = std::fs::remove_file(workspace_root().join("target/cleave/disks/ctl-linux.img"));
    let (ran, output) = run_xtask(&["run", "--system", CTL_LINUX_SYSTEM])?;
    let verdict = ran.and_then(|()| check_ctl_linux(&output));
    tally_run(tally, name, start, verdict, &output);
    Ok(())
}

/// The operator test's checks (see [`run_ctl_linux_test`]).
fn check_ctl_linux(output: &str) -> Result<(), String> {
    use emulator::guest_session::{IO, KEPT, NET, SHELL};
    // Both of the guest's VMMs reached the peer: netback took the second over the pipes
    // the first had used.
    let pings = output.matches(NET).count();
    if pings != 2 {
        return Err(format!("the guest reached its peer with {pings} of its 2 VMMs"));
    }
    for (line, what) in [
        (SHELL, "the shell did not answer through the relayed console"),
        (IO, "the disk loop under blkback restarts did not see every read-back right"),
        (KEPT, "the guest made again did not read what the first one wrote"),
        (
            "its RAM is in the Builder's pool",
            "`list` never showed the guest's RAM back in the Builder's pool",
        ),
        ("TEST PASS (9 cases)", "the toolstack's own checks did not all pass"),
    ] {
        if !output.contains(line) {
            return Err(what.to_string());
        }
    }
    let text = emulator::audit_log(output);
    let instances = |verb: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(&format!(" {verb} debian builder#")).map(|(_, n)| n.to_string()))
            .collect()
    };
    let (built, destroyed) = (instances("build"), instances("destroy"));
    let mut all: Vec<&String> = built.iter().chain(&destroyed).collect();
    all.sort();
    all.dedup();
    if built.len() != 2 || destroyed.len() != 2 || all.len() != 4 {
        return Err(format!(
            "the audit log shows builds by Builder instances {built:?} and destroys by {destroyed:?}, not two of each by four instances"
        ));
    }
    let asked = output
        .lines()
        .filter(|l| l.contains("restarted `blkback`") && l.contains("as the toolstack asked"))
        .count();
    if asked != 2 {
        return Err(format!("the supervisor restarted blkback {asked} times as the toolstack asked, not 2"));
    }
    let log = read_audit(&text)?;
    let relied: std::collections::BTreeSet<u64> = log
        .relied_on("blkback", 0, u64::MAX)
        .iter()
        .filter(|r| r.guest == "debian")
        .map(|r| r.instance.number)
        .collect();
    if relied.len() < 3 {
        return Err(format!(
            "the audit log shows debian relying on blkback instances {relied:?}, not at least 3"
        ));
    }
    // The running system's own log (`cleave ctl audit`) gave the same answer, to the
    // microsecond: the kernel stamped both copies.
    let expected = cleave::audit::describe(&log.relied_on("blkback", 0, u64::MAX));
    let asked = output
        .split("[host] $ cleave ctl audit --component blkback")
        .nth(1)
        .ok_or("the host never asked the running system's audit log about blkback")?;
    for line in expected.lines() {
        if !asked.contains(&format!("[host] {line}\n")) {
            return Err(format!(
                "`cleave ctl audit` did not answer `{line}`, which the host's copy of the log gives"
            ));
        }
    }
    println!(
        "   debian: built by builder#{} and #{}, destroyed by #{} and #{}; relied on blkback instances {relied:?} (the machine's log agrees)",
        built[0], built[1], destroyed[0], destroyed[1]
    );
    Ok(())
}

/// The system of the hostile-guest test (doc/io-path.md).
const HOSTILE_SYSTEM: &str = "systems/linux-io-hostile.toml";

/// One run of `systems/linux-io-hostile.toml`: mallory attacks her own virtio devices with
/// malformed rings round after round, and each attack stops only the device she attacked
/// (its status shows NEEDS_RESET); meanwhile alice's disk round trip, bob's all-zero disk
/// and bob's 16 MiB wget from alice all come out right.
fn run_hostile_test(tally: &mut Tally) -> Result<()> {
    let name = "linux-io-hostile";
    println!("== {name}: cargo xtask run --system {HOSTILE_SYSTEM}, mallory attacking her devices");
    let start = Instant::now();
    let _ = std::fs::remove_file(workspace_root().join("target/cleave/disks/linux-io-hostile.img"));
    let (ran, output) = run_xtask(&["run", "--system", HOSTILE_SYSTEM])?;
    let verdict = ran.and_then(|()| {
        check_hostile(&output)?;
        check_roundtrip(&output)?;
        let bob_clean = format!("{} 16384 sectors, 0 bytes not zero", crate::linux::initramfs::DISK_SCANNED);
        if !output.contains(&bob_clean) {
            return Err(format!("bob's disk is not all zeros (`{bob_clean}` missing)"));
        }
        check_transfer(&output)
    });
    tally_run(tally, name, start, verdict, &output);
    Ok(())
}

/// Checks mallory's reports: every attack on every device, every round, found the device
/// stopped (NEEDS_RESET, 0x40, in its status), and her VMM counted the breaks.
fn check_hostile(output: &str) -> Result<(), String> {
    use crate::linux::initramfs::{HOSTILE_CASES, HOSTILE_DONE, HOSTILE_ROUNDS, HOSTILE_VIRTIO};
    const NEEDS_RESET: u32 = 0x40;
    if !output.contains(HOSTILE_DONE) {
        return Err("mallory did not finish her attacks".into());
    }
    let mut attacks = 0;
    for device in ["disk", "net"] {
        for case in HOSTILE_CASES.iter().filter(|c| device == "disk" || **c != "no-status") {
            let prefix = format!("{HOSTILE_VIRTIO} {device} {case}: status ");
            let statuses: Vec<&str> =
                output.lines().filter_map(|l| Some(l[l.find(&prefix)? + prefix.len()..].trim())).collect();
            if statuses.len() != HOSTILE_ROUNDS as usize {
                return Err(format!(
                    "mallory reported {} of {HOSTILE_ROUNDS} rounds of `{device} {case}`",
                    statuses.len()
                ));
            }
            if let Some(bad) =
                statuses.iter().find(|s| s.parse::<u32>().map_or(true, |v| v & NEEDS_RESET == 0))
            {
                return Err(format!(
                    "after `{device} {case}` mallory's {device} device has status {bad}, not NEEDS_RESET"
                ));
            }
            attacks += statuses.len();
        }
    }
    let vmm = "vmm: guest 'mallory' broke the protocol of its devices:";
    let line = output.lines().find(|l| l.contains(vmm)).ok_or("mallory's VMM did not count her attacks")?;
    println!(
        "   mallory's {attacks} attacks each stopped only the device attacked: {}",
        line[line.find(vmm).unwrap_or(0) + vmm.len()..].trim()
    );
    Ok(())
}

/// Checks that alice's disk gave back what she wrote past her page cache.
fn check_roundtrip(output: &str) -> Result<(), String> {
    let wrote =
        text_after(output, crate::linux::initramfs::DISK_ROUNDTRIP).ok_or("alice did not write her disk")?;
    let read = text_after(output, crate::linux::initramfs::DISK_READ_BACK)
        .ok_or("alice did not read her disk back")?;
    if wrote.len() != 64 || wrote != read {
        return Err(format!("alice wrote sha256 {wrote} to her disk and read back {read}"));
    }
    println!("   alice wrote 4 MiB past her page cache and read back the same, sha256 {wrote}");
    Ok(())
}

/// Checks the audit log for the backends' restarts: at least [`MIN_RESTARTS`] of each, and
/// alice and bob each relying on many instances of both.
fn check_restarts(output: &str) -> Result<(), String> {
    let text = emulator::audit_log(output);
    let log = read_audit(&text)?;
    for component in ["blkback", "netback"] {
        let restarts = text.lines().filter(|l| l.contains(&format!(" restart {component}#"))).count();
        if restarts < MIN_RESTARTS {
            return Err(format!("{component} was restarted {restarts} times, fewer than {MIN_RESTARTS}"));
        }
        let relied = log.relied_on(component, 0, u64::MAX);
        let mut said = Vec::new();
        for guest in ["alice", "bob"] {
            let instances: std::collections::BTreeSet<u64> =
                relied.iter().filter(|r| r.guest == guest).map(|r| r.instance.number).collect();
            if instances.len() < MIN_RESTARTS {
                return Err(format!(
                    "the audit log shows {guest} relying on {} instances of {component}, fewer than {MIN_RESTARTS}",
                    instances.len()
                ));
            }
            said.push(format!("{guest} on {} instances", instances.len()));
        }
        // `cleave audit`'s second question, at the middle of the run.
        let middle = relied.get(relied.len() / 2).map_or(0, |r| r.from);
        let at: Vec<String> = log.relied_at("bob", middle).iter().map(|i| i.to_string()).collect();
        println!(
            "   audit: {component} restarted {restarts} times; {}; at {middle} µs bob relied on {}",
            said.join(", "),
            at.join(", ")
        );
    }
    Ok(())
}

/// Checks a run's output for a whole network transfer: alice served 16 MiB, bob fetched
/// it with the same SHA-256 and said so, and both guests ended.
fn check_transfer(output: &str) -> Result<(), String> {
    use crate::linux::initramfs::{NET_DONE, NET_FETCHED, NET_SERVING};
    let served = text_after(output, NET_SERVING).ok_or("alice did not serve her data")?;
    let fetched = text_after(output, NET_FETCHED).ok_or("bob did not fetch alice's data")?;
    let want = format!("16777216 bytes from 169.254.0.1, sha256 {served}");
    if fetched != want {
        return Err(format!("bob fetched `{fetched}`, not `{want}`"));
    }
    for done in [NET_DONE, "vmm: guest 'alice' reset itself", "vmm: guest 'bob' reset itself"] {
        if !output.contains(done) {
            return Err(format!("the output lacks `{done}`"));
        }
    }
    println!("   bob fetched alice's 16 MiB through netback, sha256 {served}");
    Ok(())
}

/// The Linux guest's tests: their names, the `cargo xtask` command each runs (the
/// README's, and doc/linux-guest.md's VT-x form, whose console is Bochs's second serial
/// port on a pseudo-terminal), and the kernel-log lines with `WARNING` or `BUG` that are
/// facts about the emulated processor rather than faults of the guest or its VMM.
const LINUX_TESTS: [(&str, &[&str], &[&str]); 2] = [
    ("command-run-linux", &["run", "--system", "systems/linux.toml"], &[]),
    (
        "command-run-linux-bochs-shell",
        &["run", "--system", "systems/linux.toml", "--bochs"],
        // Bochs's Skylake model has no IBRS, so Linux rightly says retpolines leave it open
        // to RETBleed (Skylake is on its list); a VMM cannot mitigate that for it.
        &["RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks"],
    ),
];

/// Boots `systems/linux.toml` as `args` say (QEMU on SVM, or Bochs on VT-x), with the
/// guest's console on this program's pipes, and drives the busybox shell: the kernel's
/// release, one processor, the PCI host bridge and no warning in the kernel's log (but the
/// `processor_facts` lines), the test file's SHA-256 as the host computes it; then
/// `reboot -f`, which must end the guest (its VMM says so) and the run.
fn run_linux_session(name: &str, args: &[&str], processor_facts: &[&str], tally: &mut Tally) -> Result<()> {
    println!("== documented command: cargo xtask {} (driving the guest's shell)", args.join(" "));
    let guest = crate::linux::prepare()?;
    let bad = processor_facts.iter().fold("dmesg | grep -E 'WARNING|BUG'".to_string(), |cmd, fact| {
        format!("{cmd} | grep -v -F '{fact}'")
    });
    let session = crate::console::Session {
        args: args.iter().map(|a| a.to_string()).collect(),
        steps: vec![
            crate::console::Step::wait("cleave-guest: init done", 600),
            crate::console::Step::wait("cleave# ", 60),
            crate::console::Step::line("echo KREL=$(uname -r)", &format!("KREL={}\n", guest.release), 60),
            crate::console::Step::line("echo CPUS=$(grep -c ^processor /proc/cpuinfo)", "CPUS=1\n", 60),
            crate::console::Step::line(
                "echo BRIDGE=$(dmesg | grep -c '0000:00:00.0: \\[8086:1237\\] type 00 class 0x060000')",
                "BRIDGE=1\n",
                60,
            ),
            // The offending lines first, so that a failure shows them.
            crate::console::Step::line(&format!("{bad}; echo BAD=$({bad} | grep -c .)"), "BAD=0\n", 60),
            crate::console::Step::line(
                &format!("sha256sum {}", crate::linux::initramfs::TEST_FILE),
                &format!("{}  {}", guest.test_file_sha256, crate::linux::initramfs::TEST_FILE),
                120,
            ),
            crate::console::Step::line("reboot -f", "reboot", 60),
        ],
        at_end: vec!["vmm: guest 'debian' reset itself".into()],
        end_timeout: Duration::from_secs(120),
    };
    let started = Instant::now();
    let (result, output) = crate::console::run(&session);
    match result {
        Ok(prompt) => {
            println!(
                "== {name} ok ({:.1} s; the first step, init done, after {:.1} s)",
                started.elapsed().as_secs_f64(),
                prompt.as_secs_f64()
            );
            tally.passed += 1;
        }
        Err(reason) => {
            println!("== {name} FAILED: {reason}");
            let lines: Vec<&str> = output.lines().collect();
            for line in &lines[lines.len().saturating_sub(SUMMARY_LINES)..] {
                println!("    | {line}");
            }
            tally.failed += 1;
            tally.failures.push(format!("{name}: {reason}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_summaries() {
        let ok =
            "test result: ok. 27 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(parse_test_result(ok), Some((27, 0)));
        let bad = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_test_result(bad), Some((3, 2)));
        assert_eq!(parse_test_result("running 3 tests"), None);
    }

    /// A case is named by its program alone: no expectation repeats a case or a verdict.
    #[test]
    fn no_test_names_a_program_case() {
        for test in TESTS {
            for pattern in test.expect.patterns.iter().chain(test.expect.anywhere) {
                assert!(
                    !pattern.contains("TEST PASS") && !pattern.contains("TEST PLAN"),
                    "{}: `{pattern}` repeats what the program judges",
                    test.name
                );
            }
        }
    }

    #[test]
    fn test_names_are_unique() {
        let mut names: Vec<&str> = TESTS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TESTS.len());
    }
}
