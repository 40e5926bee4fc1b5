//! Starting the root task: check the first boot module's ELF image, build its address
//! space (segments and stack), and enter it in ring 3.

use crate::arch::exit::{Outcome, exit};
use crate::arch::trap::{TrapFrame, return_to_user};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::paging::{AddressSpace, Rights};
use crate::arch::x86_64::physmem::{self, OwnedFrame};
use crate::{kprintln, thread};
use cleave_abi::layout::{PAGE_SIZE, USER_STACK_SIZE, USER_STACK_TOP};
use cleave_kernel_core::VirtAddr;
use cleave_kernel_core::elf_image::{self, LoadPlan};
use cleave_kernel_core::memory::BootFrameAllocator;
use cleave_kernel_core::multiboot::Module;

/// Why the root task could not be built.
enum LoadError {
    Image(elf_image::ImageError),
    OutOfMemory,
    Map(crate::arch::x86_64::paging::MapError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Image(e) => write!(f, "bad ELF image: {e}"),
            Self::OutOfMemory => write!(f, "out of memory"),
            Self::Map(e) => write!(f, "cannot map: {e:?}"),
        }
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
pub fn start_root_task(module: &Module, mut frames: BootFrameAllocator, boot_tsc: u64) -> ! {
    let name = module_name(module);
    thread::set_current_name(name);
    let Some(image) = physmem::module_bytes(module.start, module.len()) else {
        kprintln!("kernel: cannot start root task '{name}': module lies outside the direct map");
        exit(Outcome::Failure)
    };
    let result = elf_image::plan(image)
        .map_err(LoadError::Image)
        .and_then(|plan| build(&plan, image, &mut frames).map(|space| (plan, space)));
    let (plan, space) = match result {
        Ok(built) => built,
        Err(e) => {
            kprintln!("kernel: cannot start root task '{name}': {e}");
            exit(Outcome::Failure)
        }
    };
    kprintln!(
        "kernel: starting root task '{name}' (entry {}, {} segments, {} frames used)",
        plan.entry,
        plan.segments.len(),
        frames.allocated_frames()
    );
    space.activate();
    let frame = TrapFrame::user(plan.entry.0, USER_STACK_TOP);
    let ticks = cpu::rdtsc().wrapping_sub(boot_tsc);
    kprintln!("boot: {ticks} TSC ticks from the first kernel instruction to ring 3");
    return_to_user(&frame)
}

/// Builds the address space: every segment page copied from the image (the rest zero),
/// and a zeroed stack below `USER_STACK_TOP`.
fn build(plan: &LoadPlan, image: &[u8], frames: &mut BootFrameAllocator) -> Result<AddressSpace, LoadError> {
    let mut next_frame = || frames.allocate().and_then(OwnedFrame::new);
    let mut space = AddressSpace::new(next_frame().ok_or(LoadError::OutOfMemory)?);
    for segment in &plan.segments {
        let rights = Rights { write: segment.writable, execute: segment.executable };
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
            space.map(VirtAddr(page), frame.addr(), rights, &mut next_frame).map_err(LoadError::Map)?;
        }
    }
    let stack = Rights { write: true, execute: false };
    for page in (USER_STACK_TOP - USER_STACK_SIZE..USER_STACK_TOP).step_by(PAGE_SIZE as usize) {
        let mut frame = next_frame().ok_or(LoadError::OutOfMemory)?;
        frame.bytes().fill(0);
        space.map(VirtAddr(page), frame.addr(), stack, &mut next_frame).map_err(LoadError::Map)?;
    }
    Ok(space)
}
