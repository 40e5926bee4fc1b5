//! Starting the root task: check the first boot module's ELF image, build its address
//! space (segments, stack, BootInfo page, IPC buffer), give it its initial capabilities
//! and all free memory as untyped capabilities, and enter it in ring 3.

use crate::arch::exit::{Outcome, exit};
use crate::arch::trap::{TrapFrame, return_to_user};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::paging::{AddressSpace, MapError, Rights as PageRights};
use crate::arch::x86_64::physmem::{self, OwnedFrame};
use crate::{kprintln, objects};
use cleave_abi::boot_info::{self, BootInfo, MAX_UNTYPED, UntypedDescriptor, slot};
use cleave_abi::layout::{PAGE_SIZE, USER_STACK_SIZE, USER_STACK_TOP};
use cleave_abi::object::SLOT_SIZE_BITS;
use cleave_abi::{Error, Rights};
use cleave_elf::user_image::{self as elf_image, LoadPlan};
use cleave_kernel_core::memory::{self, BootFrameAllocator, PhysMemoryMap};
use cleave_kernel_core::multiboot::Module;
use cleave_kernel_core::object::cap::Cap;
use cleave_kernel_core::object::kmem::KernelMemory as _;
use cleave_kernel_core::object::paging::Space;
use cleave_kernel_core::object::tcb::TcbRef;
use cleave_kernel_core::{PhysAddr, VirtAddr};
use x86_64::registers::control::Cr3;

/// Why the root task could not be built.
enum LoadError {
    Image(elf_image::ImageError),
    OutOfMemory,
    Map(MapError),
    Capability(Error),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Image(e) => write!(f, "bad ELF image: {e}"),
            Self::OutOfMemory => write!(f, "out of memory"),
            Self::Map(e) => write!(f, "cannot map: {e:?}"),
            Self::Capability(e) => write!(f, "cannot place its capabilities: {e}"),
        }
    }
}

impl From<Error> for LoadError {
    fn from(e: Error) -> Self {
        Self::Capability(e)
    }
}

impl From<MapError> for LoadError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// The module's name: the last path component of its first command-line word, without
/// an `.elf` suffix.
fn module_name(module: &Module) -> &str {
    let first = module.cmdline.split_ascii_whitespace().next().unwrap_or("root");
    let base = first.rsplit('/').next().unwrap_or(first);
    base.strip_suffix(".elf").unwrap_or(base)
}

/// Loads `module` as the root task and enters it. Never returns.
pub fn start_root_task(
    module: &Module,
    mut frames: BootFrameAllocator,
    device: PhysMemoryMap,
    boot_tsc: u64,
) -> ! {
    let name = module_name(module);
    let Some(image) = physmem::module_bytes(module.start, module.len()) else {
        kprintln!("kernel: cannot start root task '{name}': module lies outside the direct map");
        exit(Outcome::Failure)
    };
    let result = elf_image::plan(image).map_err(LoadError::Image).and_then(|plan| {
        let (space, tcb, untyped) = build(&plan, image, &mut frames, &device)?;
        Ok((plan, space, tcb, untyped))
    });
    let (plan, space, tcb, untyped) = match result {
        Ok(built) => built,
        Err(e) => {
            kprintln!("kernel: cannot start root task '{name}': {e}");
            exit(Outcome::Failure)
        }
    };
    kprintln!(
        "kernel: starting root task '{name}' (entry {}, {} segments, {} untyped capabilities)",
        plan.entry,
        plan.segments.len(),
        untyped
    );
    let frame = TrapFrame::user(plan.entry.0, USER_STACK_TOP);
    crate::arch::trap::resume_frame(TcbRef(tcb));
    objects::with(|s| {
        let t = TcbRef(tcb);
        t.set_regs(&mut s.mem, &frame);
        t.set_name(&mut s.mem, name);
        t.set_priority(&mut s.mem, 255);
        t.set_mcp(&mut s.mem, 255);
        // The root task may end the run, write to the debug console and read the audit
        // log, and pass each on (`TCB_ALLOW_END_RUN`, `TCB_ALLOW_CONSOLE`,
        // `TCB_ALLOW_READ_AUDIT`); and it alone names threads (`TCB_SET_NAME`).
        use cleave_kernel_core::object::tcb::privilege;
        t.set_privileges(
            &mut s.mem,
            privilege::END_RUN | privilege::CONSOLE | privilege::READ_AUDIT | privilege::NAME_THREADS,
        );
        t.set_ipc_buffer_vaddr(&mut s.mem, boot_info::ROOT_IPC_BUFFER_ADDRESS);
        s.set_current(Some(t));
        s.make_runnable(t);
    });
    space.activate();
    let ticks = cpu::rdtsc().wrapping_sub(boot_tsc);
    kprintln!("boot: {ticks} TSC ticks from the first kernel instruction to ring 3");
    return_to_user(&frame)
}

/// Builds the root task: its address space, its objects and capabilities. Returns the
/// address space, the TCB's address and the number of untyped capabilities.
fn build(
    plan: &LoadPlan,
    image: &[u8],
    frames: &mut BootFrameAllocator,
    device: &PhysMemoryMap,
) -> Result<(AddressSpace, PhysAddr, usize), LoadError> {
    // Kernel objects first, while large aligned blocks are easy to find.
    let cnode_bytes = 1u64 << (boot_info::ROOT_CNODE_RADIX + SLOT_SIZE_BITS);
    let cnode = frames.allocate_contiguous(cnode_bytes, cnode_bytes).ok_or(LoadError::OutOfMemory)?;
    let mut next_frame = || frames.allocate().and_then(OwnedFrame::new);
    let mut sentinel = next_frame().ok_or(LoadError::OutOfMemory)?;
    let mut tcb = next_frame().ok_or(LoadError::OutOfMemory)?;
    let mut boot_info_frame = next_frame().ok_or(LoadError::OutOfMemory)?;
    let mut ipc_buffer = next_frame().ok_or(LoadError::OutOfMemory)?;
    let mut asid_pool = next_frame().ok_or(LoadError::OutOfMemory)?;
    for f in [&mut sentinel, &mut tcb, &mut boot_info_frame, &mut ipc_buffer, &mut asid_pool] {
        f.bytes().fill(0);
    }

    let mut space = AddressSpace::new(next_frame().ok_or(LoadError::OutOfMemory)?);
    for segment in &plan.segments {
        let rights = PageRights { write: segment.writable, execute: segment.executable };
        for page in segment.pages().step_by(PAGE_SIZE as usize) {
            let mut frame = next_frame().ok_or(LoadError::OutOfMemory)?;
            let bytes = frame.bytes();
            bytes.fill(0);
            // The part of the segment's file bytes that falls in this page.
            let file_start = segment.vaddr.0;
            let file_end = file_start + segment.file.len() as u64;
            let from = page.max(file_start);
            let to = (page + PAGE_SIZE).min(file_end);
            if from < to {
                let src = segment.file.start + (from - file_start) as usize;
                let dst = (from - page) as usize;
                let len = (to - from) as usize;
                bytes[dst..dst + len].copy_from_slice(&image[src..src + len]);
            }
            space.map(VirtAddr(page), frame.addr(), rights, &mut next_frame)?;
        }
    }
    let stack = PageRights { write: true, execute: false };
    for page in (USER_STACK_TOP - USER_STACK_SIZE..USER_STACK_TOP).step_by(PAGE_SIZE as usize) {
        let mut frame = next_frame().ok_or(LoadError::OutOfMemory)?;
        frame.bytes().fill(0);
        space.map(VirtAddr(page), frame.addr(), stack, &mut next_frame)?;
    }
    let read_only = PageRights { write: false, execute: false };
    space.map(VirtAddr(boot_info::BOOT_INFO_ADDRESS), boot_info_frame.addr(), read_only, &mut next_frame)?;
    space.map(VirtAddr(boot_info::ROOT_IPC_BUFFER_ADDRESS), ipc_buffer.addr(), stack, &mut next_frame)?;

    // The object space and the root task's capabilities.
    let kernel_pml4 = PhysAddr(Cr3::read().0.start_address().as_u64());
    objects::init(kernel_pml4, sentinel.addr());
    let untyped = objects::with(|objects| -> Result<usize, LoadError> {
        // The kernel's own devices: COM1 and the two 8259 PICs.
        for (first, last) in cleave_abi::platform::KERNEL_PORTS {
            objects.reserve_io_ports(first, last);
        }
        for irq in crate::arch::x86_64::interrupt::KERNEL_IRQS {
            objects.reserve_irq(irq);
        }
        objects.mem.zero(cnode, cnode_bytes);
        let at = |index: u64| PhysAddr(cnode.0 + (index << SLOT_SIZE_BITS));
        let frame_cap = |base: PhysAddr| Cap::Frame {
            base,
            large: false,
            device: false,
            rights: Rights::ALL,
            mapping: None,
        };
        let root_cnode = Cap::CNode {
            base: cnode,
            radix: boot_info::ROOT_CNODE_RADIX as u8,
            guard: 0,
            guard_bits: (64 - boot_info::ROOT_CNODE_RADIX) as u8,
        };
        objects.insert_original(at(slot::CNODE), root_cnode)?;
        objects.insert_original(at(slot::TCB), Cap::Tcb { base: tcb.addr() })?;
        // The root task's ASID pool; its own VSpace takes the first ASID.
        let high = objects.make_asid_pool(asid_pool.addr()).ok_or(LoadError::OutOfMemory)?;
        let asid = objects.assign_asid(high, space.root(), Space::Virtual).ok_or(LoadError::OutOfMemory)?;
        objects.insert_original(at(slot::VSPACE), Cap::VSpace { base: space.root(), asid })?;
        objects.insert_original(at(slot::ASID_CONTROL), Cap::AsidControl)?;
        objects.insert_original(
            at(slot::ASID_POOL),
            Cap::AsidPool { base: asid_pool.addr(), high: high as u8 },
        )?;
        objects.insert_original(at(slot::IRQ_CONTROL), Cap::IrqControl)?;
        objects.insert_original(at(slot::IO_PORT_CONTROL), Cap::IoPortControl)?;
        objects.insert_original(at(slot::BOOT_INFO_FRAME), frame_cap(boot_info_frame.addr()))?;
        objects.insert_original(at(slot::IPC_BUFFER), frame_cap(ipc_buffer.addr()))?;
        // The TCB's own slots: CSpace root, VSpace root, IPC buffer.
        let tcb_slot = |i: u64| PhysAddr(tcb.addr().0 + (i << SLOT_SIZE_BITS));
        objects.copy(at(slot::CNODE), tcb_slot(0))?;
        objects.copy(at(slot::VSPACE), tcb_slot(1))?;
        objects.copy(at(slot::IPC_BUFFER), tcb_slot(2))?;

        // Everything still free becomes untyped memory; device memory follows it.
        let (ram, left_out) = memory::untyped_blocks::<MAX_UNTYPED>(&frames.remaining(), 47);
        let (device_blocks, _) = memory::untyped_blocks::<MAX_UNTYPED>(device, 47);
        let mut blocks: heapless::Vec<(PhysAddr, u32, bool), MAX_UNTYPED> = heapless::Vec::new();
        for (&(base, bits), is_device) in ram
            .iter()
            .zip(core::iter::repeat(false))
            .chain(device_blocks.iter().zip(core::iter::repeat(true)))
        {
            if blocks.push((base, bits, is_device)).is_err() {
                kprintln!(
                    "kernel: more than {MAX_UNTYPED} untyped blocks; the rest of device memory is left out"
                );
                break;
            }
        }
        if left_out > 0 {
            kprintln!(
                "kernel: {} KiB of free memory left out (more than {MAX_UNTYPED} untyped blocks)",
                left_out / 1024
            );
        }
        let mut info = BootInfo {
            version: BootInfo::VERSION,
            root_cnode_radix: u64::from(boot_info::ROOT_CNODE_RADIX),
            empty_first: slot::FIRST_UNTYPED + blocks.len() as u64,
            empty_end: 1 << boot_info::ROOT_CNODE_RADIX,
            untyped_first: slot::FIRST_UNTYPED,
            untyped_count: blocks.len() as u64,
            ipc_buffer: boot_info::ROOT_IPC_BUFFER_ADDRESS,
            io_ports: [0, u16::MAX],
            irq_lines: 16,
            untyped: [UntypedDescriptor::default(); MAX_UNTYPED],
        };
        for (i, &(base, bits, device)) in blocks.iter().enumerate() {
            let cap = Cap::Untyped { base, size_bits: bits as u8, watermark: 0, device, frames_only: false };
            objects.insert_original(at(slot::FIRST_UNTYPED + i as u64), cap)?;
            info.untyped[i] = UntypedDescriptor {
                physical_address: base.0,
                size_bits: bits as u8,
                is_device: u8::from(device),
                ..Default::default()
            };
        }
        physmem::write_to_frame(&mut boot_info_frame, 0, &info);
        let untyped = blocks.len();
        Ok(untyped)
    })?;
    Ok((space, tcb.addr(), untyped))
}
