//! The global descriptor table and task-state segment.
//!
//! Selector order is fixed by `syscall`/`sysret`: kernel code 0x08, kernel data 0x10, user
//! data 0x18, user code 0x20 (user selectors carry RPL 3: 0x1b and 0x23), TSS 0x28. The TSS
//! gives the stack for entries from ring 3 (RSP0) and a separate stack for double faults.

use super::global::BootCell;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// Interrupt-stack-table slot (1-based in the IDT, 0-based in the TSS) for double faults.
pub const DOUBLE_FAULT_IST: u8 = 1;
/// Interrupt-stack-table slot for NMIs and machine checks, which can arrive anywhere,
/// including in the last instructions of the `sysret` path where rsp is the user's.
pub const NMI_IST: u8 = 2;

/// Selectors the rest of the kernel needs.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    /// Ring-0 code.
    pub kernel_code: SegmentSelector,
    /// Ring-0 data and stack.
    pub kernel_data: SegmentSelector,
    /// Ring-3 data and stack (RPL 3).
    pub user_data: SegmentSelector,
    /// Ring-3 64-bit code (RPL 3).
    pub user_code: SegmentSelector,
    /// The task-state segment.
    pub tss: SegmentSelector,
}

static TSS: BootCell<TaskStateSegment> = BootCell::new(TaskStateSegment::new());
static GDT: BootCell<GlobalDescriptorTable> = BootCell::new(GlobalDescriptorTable::new());
static SELECTORS: BootCell<Option<Selectors>> = BootCell::new(None);

unsafe extern "C" {
    static __kernel_stack_bottom: u8;
    static __kernel_stack_top: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __double_fault_stack_top: u8;
    static __nmi_stack_top: u8;
}

/// The kernel stack's lowest address (a kernel bug's report reads the stack above it).
pub fn kernel_stack_bottom() -> u64 {
    (&raw const __kernel_stack_bottom) as u64
}

/// Where the kernel's code lies, `[start, end)`: a stack word in it is likely a return
/// address.
pub fn kernel_text() -> (u64, u64) {
    ((&raw const __text_start) as u64, (&raw const __text_end) as u64)
}

/// Top of the kernel stack: where every entry from ring 3 starts.
pub fn kernel_stack_top() -> u64 {
    (&raw const __kernel_stack_top) as u64
}

/// Builds and loads the GDT and TSS. Called once at boot, before any other CPU setup.
pub fn init() {
    // SAFETY: runs once on the single boot processor with interrupts off, before anything
    // else reads TSS, GDT or SELECTORS, so these exclusive references are the only ones.
    let (tss, gdt, selectors) = unsafe { (TSS.init_mut(), GDT.init_mut(), SELECTORS.init_mut()) };
    tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top());
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] =
        VirtAddr::new((&raw const __double_fault_stack_top) as u64);
    tss.interrupt_stack_table[usize::from(NMI_IST - 1)] = VirtAddr::new((&raw const __nmi_stack_top) as u64);
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    // SAFETY: the GDT is a static that outlives every use; the selectors loaded next are
    // the ones just appended to it.
    unsafe {
        gdt.load_unsafe();
        CS::set_reg(kernel_code);
        SS::set_reg(kernel_data);
        DS::set_reg(kernel_data);
        ES::set_reg(kernel_data);
        load_tss(tss_selector);
    }
    // The object code builds user register sets with these values.
    assert_eq!(u64::from(user_code.0), cleave_kernel_core::object::tcb::USER_CODE_SELECTOR);
    assert_eq!(u64::from(user_data.0), cleave_kernel_core::object::tcb::USER_DATA_SELECTOR);
    *selectors = Some(Selectors { kernel_code, kernel_data, user_data, user_code, tss: tss_selector });
}

/// Loads GDTR again with the GDT's real limit. A VM exit leaves GDTR's base right but
/// its limit 0xFFFF (Intel SDM, "Loading Host Segment and Descriptor-Table Registers"):
/// selectors past the table would then name whatever kernel memory follows it, which a
/// thread could shape into a call gate to ring 0. Called after every VM exit.
pub fn reload() {
    let gdt = GDT.get();
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: gdt.limit(),
        base: VirtAddr::new(core::ptr::from_ref(gdt) as u64),
    };
    // SAFETY: the same static table `init` loaded, unchanged since; only the limit differs
    // from what the processor holds after a VM exit.
    unsafe { x86_64::instructions::tables::lgdt(&pointer) }
}

/// Where the TSS is (a VM exit reloads TR from this base).
pub fn tss_base() -> u64 {
    TSS.get() as *const TaskStateSegment as u64
}

/// The selectors, once [`init`] has run.
pub fn selectors() -> Selectors {
    SELECTORS.get().expect("gdt::init runs first")
}
