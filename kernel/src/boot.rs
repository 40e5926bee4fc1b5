//! The boot sequence after the processor is set up: read the boot loader's information,
//! describe physical memory, report what the machine offers, start the root task.

use crate::arch::exit::{Outcome, exit};
use crate::arch::x86_64::{KERNEL_BASE, cpu, physmem};
use crate::{kprintln, user};
use cleave_abi::layout::{DEVICE_WINDOW_END, DEVICE_WINDOW_START};
use cleave_kernel_core::memory::{BootFrameAllocator, PhysMemoryMap, PhysRange};
use cleave_kernel_core::multiboot::{self, BootInformation, RegionKind};
use cleave_kernel_core::object::paging::Format;
use cleave_kernel_core::svm_caps::SvmCapabilities;
use cleave_kernel_core::vmx_caps::VmxCapabilities;
use cleave_kernel_core::{PhysAddr, memory};

unsafe extern "C" {
    static __kernel_end: u8;
}

/// Ends boot with a one-line reason.
fn cannot_boot(reason: core::fmt::Arguments<'_>) -> ! {
    kprintln!("kernel: cannot boot: {reason}");
    exit(Outcome::Failure)
}

/// Runs the boot sequence; never returns (it enters ring 3 or ends the run).
pub fn start(magic: u32, info_addr: u32, boot_tsc: u64) -> ! {
    kprintln!();
    kprintln!("Cleave {} -- capability microkernel for x86-64", env!("CARGO_PKG_VERSION"));
    let info = multiboot::parse(&physmem::DirectMap, magic, PhysAddr(info_addr.into()))
        .unwrap_or_else(|e| cannot_boot(format_args!("{e}")));
    if !info.loader_name.is_empty() {
        kprintln!("boot loader: {}", info.loader_name);
    }
    kprintln!("command line: {}", info.cmdline);
    let selftest = option(&info.cmdline, "cleave.selftest");

    let map = describe_memory(&info);
    if !report_vmx() {
        report_svm();
    }

    match selftest {
        None | Some("none") => {}
        Some("kernel-page-fault") => {
            kprintln!("self-test: reading an unmapped kernel address");
            cpu::self_test_page_fault()
        }
        Some("panic") => panic!("self-test panic requested on the command line"),
        Some(other) => cannot_boot(format_args!(
            "unknown cleave.selftest={other} (known: none, kernel-page-fault, panic)"
        )),
    }

    let Some(module) = info.modules.first() else {
        cannot_boot(format_args!(
            "no boot module: the kernel needs a root task (QEMU: -initrd FILE; GRUB: a `module` line)"
        ))
    };
    // Device memory: the MMIO window below the I/O APIC that no firmware range claims.
    let window = PhysRange::new(DEVICE_WINDOW_START, DEVICE_WINDOW_END);
    let device =
        memory::device_memory(&info.memory, window).unwrap_or_else(|e| cannot_boot(format_args!("{e}")));
    user::start_root_task(module, BootFrameAllocator::new(map), device, boot_tsc)
}

/// The value of `key=value` in the command line, if present.
fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_ascii_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Prints the memory map and returns the free memory, everything the kernel image and the
/// boot modules occupy taken out.
fn describe_memory(info: &BootInformation) -> PhysMemoryMap {
    let total: u64 = info.memory.iter().filter(|r| r.kind == RegionKind::Available).map(|r| r.len).sum();
    kprintln!("memory map: {} entries, {} KiB available", info.memory.len(), total / 1024);
    for r in &info.memory {
        let kind = match r.kind {
            RegionKind::Available => "available",
            RegionKind::AcpiReclaimable => "ACPI reclaimable",
            RegionKind::AcpiNvs => "ACPI NVS",
            RegionKind::Defective => "defective",
            RegionKind::Reserved(_) => "reserved",
        };
        kprintln!("  [{:#012x}, {:#012x}) {kind}", r.start.0, r.end().0);
    }
    let kernel_end = (&raw const __kernel_end) as u64 - KERNEL_BASE;
    let mut reserved: heapless::Vec<PhysRange, { multiboot::MAX_MODULES + 2 }> = heapless::Vec::new();
    // Cannot fail: capacity is MAX_MODULES + 2 and at most MAX_MODULES modules are parsed.
    let _ = reserved.push(PhysRange::new(0, 0x10_0000)); // real-mode area, BIOS, boot tables
    let _ = reserved.push(PhysRange::new(0x10_0000, kernel_end));
    for (index, m) in info.modules.iter().enumerate() {
        kprintln!(
            "module {index}: '{}' [{:#x}, {:#x}) {} KiB",
            m.cmdline,
            m.start.0,
            m.end.0,
            m.len().div_ceil(1024)
        );
        let _ = reserved.push(PhysRange { start: m.start, end: m.end });
    }
    let map = PhysMemoryMap::new(&info.memory, &reserved, PhysAddr(physmem::PHYSMAP_SIZE))
        .unwrap_or_else(|e: memory::MemoryError| cannot_boot(format_args!("{e}")));
    kprintln!(
        "free memory: {} KiB in {} ranges (kernel image {} KiB at {:#x})",
        map.free_bytes() / 1024,
        map.free_ranges().len(),
        (kernel_end - 0x10_0000) / 1024,
        0x10_0000
    );
    map
}

/// Prints what AMD SVM support the processor has and turns it on if guests can use it;
/// guests' physical address spaces are then nested page tables.
fn report_svm() {
    let caps = SvmCapabilities::probe(cpu::cpuid, cpu::read_msr);
    if !caps.svm {
        return;
    }
    kprintln!("svm: {caps}");
    if !caps.can_host_guests() {
        kprintln!("svm: guests need nested paging and a free ASID; not available here");
    } else if crate::arch::x86_64::svm::enable(&caps) {
        crate::objects::with(|s| s.set_guest_format(Format::Npt)).expect("NPT is a guest format");
        kprintln!("svm: SVM on; guests' physical address spaces are nested page tables");
    }
}

/// Prints what VT-x support the processor has; returns whether VMX is on.
fn report_vmx() -> bool {
    let caps = VmxCapabilities::probe(cpu::has_vmx(), cpu::read_msr);
    kprintln!("vt-x: {caps}");
    if caps.can_host_guests() {
        if crate::arch::x86_64::vmx::enable(&caps) {
            kprintln!("vt-x: VMX on; guests can run (Vcpu, EPT objects and VmEnter)");
            return true;
        } else {
            kprintln!("vt-x: VMXON refused (the firmware locked VMX off?); no guests");
        }
    }
    if caps.vmx && !caps.can_host_guests() {
        kprintln!("vt-x: guests need EPT (4-level, write-back) and unrestricted guest; not available here");
    }
    false
}
