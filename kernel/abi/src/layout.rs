//! The user address-space layout the kernel guarantees.

/// Lowest address a user program may be linked at: page 0 and the first 4 MiB stay unmapped
/// so that null and small-offset dereferences fault.
pub const USER_IMAGE_MIN: u64 = 0x0040_0000;

/// One past the highest user virtual address: the lower canonical half less its last
/// page. That page is never mapped (as in Linux), so no user instruction ends at the edge
/// of the canonical half: a `syscall` there would save the non-canonical return address
/// 0x0000_8000_0000_0000, and returning to it would fault in the kernel.
pub const USER_TOP: u64 = 0x0000_7fff_ffff_f000;

/// The initial stack of the first user thread ends here (exclusive); it grows down.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;

/// Size of the initial stack the kernel maps for the first user thread.
pub const USER_STACK_SIZE: u64 = 64 * 1024;

/// Pages of the stack the capDL loader gives each component, ending at [`USER_STACK_TOP`]
/// (16 KiB; the memory table counts them).
pub const COMPONENT_STACK_PAGES: u64 = 4;

/// Log2 of a small page's size: the address bits below a page-table entry's frame.
pub const PAGE_SHIFT: u32 = 12;
/// Size of a small page (4 KiB), the unit every mapping, frame and region is counted in.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Log2 of a large page's size: the address bits a page-directory entry's frame covers.
pub const LARGE_PAGE_SHIFT: u32 = 21;
/// Size of a large page (2 MiB), the frame a page directory maps directly.
pub const LARGE_PAGE_SIZE: u64 = 1 << LARGE_PAGE_SHIFT;

const _: () = assert!(USER_STACK_TOP < USER_TOP);
const _: () = assert!(USER_STACK_TOP.is_multiple_of(PAGE_SIZE) && USER_STACK_SIZE.is_multiple_of(PAGE_SIZE));

/// Start of the physical window device untyped memory comes from (PCI devices' BARs live
/// here on PC machines with less than 3 GiB of RAM below 4 GiB).
pub const DEVICE_WINDOW_START: u64 = 0xc000_0000;
/// End of that window: the I/O APIC, local APIC and firmware lie above, kept by the kernel.
pub const DEVICE_WINDOW_END: u64 = 0xfec0_0000;
