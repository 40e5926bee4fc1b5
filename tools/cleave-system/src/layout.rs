//! Where things are in a compiled system, and the fixed facts about what cleave adds to
//! it: the address-space windows every component's regions, device memory and guest RAM
//! occupy, the guests' VMMs (name, program, slots, configuration page), the supervisor,
//! and the platform's reserved lines and ports as the description meets them. The checker
//! (`system`) holds a description to these facts and the compiler (`compile`) builds from
//! them, so each is written here once.

use crate::schema::{Guest, SystemFile, parse_ports, parse_size, shared_regions};
use cleave_abi::layout::PAGE_SIZE;

/// Radix of every component's CNode (256 slots).
pub const COMPONENT_CNODE_BITS: u32 = 8;

/// Where shared regions start in every component's address space: the second 512 GiB
/// (PML4 entry 1), away from the program (entry 0) and the stack and IPC buffer (entry 255).
pub const REGION_BASE: u64 = 0x80_0000_0000;
/// How much address space regions may take together, one page directory's worth.
pub const REGION_WINDOW: u64 = 1 << 30;
/// Where device MMIO ranges appear in their owner's address space: right after the regions.
pub const DEVICE_BASE: u64 = REGION_BASE + REGION_WINDOW;
/// How much address space device MMIO may take together.
pub const DEVICE_WINDOW: u64 = 1 << 30;
/// Where a guest's RAM appears in its VMM's address space: right after the devices.
pub const GUEST_RAM_BASE: u64 = DEVICE_BASE + DEVICE_WINDOW;
/// Most guest RAM (the window in the VMM, one EPT page directory).
pub const GUEST_RAM_MAX: u64 = 1 << 30;
/// Where a device's DMA memory appears in its owner's address space: right after the
/// guest RAM window (a driver maps no guest RAM).
pub const DMA_BASE: u64 = GUEST_RAM_BASE + GUEST_RAM_MAX;
/// How much DMA memory an owner may have, all its devices together.
pub const DMA_WINDOW: u64 = 1 << 30;

/// Most guests whose console the toolstack relays (`console = "ctl"`): it keeps each
/// one's last 4 KiB on its 64 KiB heap.
pub const MAX_RELAYED_CONSOLES: usize = 8;

/// Where the toolstack finds the memory table of the system it runs in (one page, read
/// only, after the DMA window: it has no DMA memory), which `list` shows per component.
pub const TOOLSTACK_MEMORY_PAGE: u64 = DMA_BASE + DMA_WINDOW;
/// The generated file that page is filled from: `cargo xtask` writes the memory table
/// into it once the programs are built; until then (a spec `cleave` compiled alone) it
/// says it was not computed.
pub const TOOLSTACK_MEMORY_FILE: &str = "toolstack.memory";

/// A disk ring's data slots (requests in flight between a VMM and its disk's backend).
pub const DISK_RING_SLOTS: u32 = 16;
/// Bytes per disk ring slot: the most one forwarded request carries (the VMM splits
/// bigger guest requests).
pub const DISK_RING_SLOT_SIZE: u32 = 64 << 10;
/// The badge bit a backend's notification carries for its device's interrupt; its
/// clients' VMMs signal with bit `i` for the `i`th guest it serves.
pub const BACKEND_IRQ_BADGE: u64 = 1 << 63;
/// The badge bit a VMM's own notification carries when its disk's backend signals it.
pub const VMM_DISK_BADGE: u64 = 1;

/// The badge bit a VMM's own notification carries when its network's backend signals it.
pub const VMM_NET_BADGE: u64 = 2;
/// Slots of each of a guest's network pipes (frames in flight each way between its VMM
/// and its network's backend).
pub const NET_PIPE_SLOTS: u32 = 64;

/// The geometry of every disk ring.
pub fn disk_ring_geometry() -> cleave_ioring::blk::Geometry {
    cleave_ioring::blk::Geometry { slots: DISK_RING_SLOTS, slot_size: DISK_RING_SLOT_SIZE }
}

/// Bytes of every disk ring (whole pages).
pub fn disk_ring_bytes() -> u64 {
    disk_ring_geometry().region_size().map_or(0, |n| n as u64)
}

/// Bytes of one network pipe (whole pages).
pub fn net_pipe_bytes() -> u64 {
    cleave_ioring::pipe::region_size(NET_PIPE_SLOTS).map_or(0, |n| n as u64)
}

/// Bytes of a guest's network region: its tx pipe, then its rx pipe.
pub fn net_region_bytes() -> u64 {
    2 * net_pipe_bytes()
}

/// A guest's port on its network's backend (a switch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPort {
    /// The guest.
    pub guest: String,
    /// The component switching its frames.
    pub backend: String,
    /// Which of that backend's clients it is (its badge bit in the backend's notification).
    pub client: usize,
    /// The card's address: the one the description gives, else [`derived_mac`]. `None`
    /// if the given one does not parse (`system::check` reports it).
    pub mac: Option<[u8; 6]>,
}

/// Every guest's network port: per backend, its guests in name order.
pub fn net_ports(file: &SystemFile) -> Vec<NetPort> {
    let mut next: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (name, g) in &file.guests {
        let Some(network) = &g.network else { continue };
        let backend = network.get_ref().backend.get_ref();
        let client = next.entry(backend).or_default();
        let mac = match &network.get_ref().mac {
            Some(text) => parse_mac(text.get_ref()),
            None => Some(derived_mac(name.get_ref())),
        };
        out.push(NetPort { guest: name.get_ref().clone(), backend: backend.clone(), client: *client, mac });
        *client += 1;
    }
    out
}

/// A MAC address written `xx:xx:xx:xx:xx:xx` (hex digits, either case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        // Two hex digits: `from_str_radix` alone would take a sign (`+a`).
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `mac` written `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The address of a guest whose network names none: `02` (locally administered, unicast)
/// and five bytes of the FNV-1a hash of its name, so that it does not change when other
/// guests come or go. Two guests whose names hash alike are caught by `system::check`.
pub fn derived_mac(guest: &str) -> [u8; 6] {
    let hash = guest
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let b = hash.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// A guest's slice of the machine's disk, as its backend serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSlice {
    /// The guest.
    pub guest: String,
    /// The component serving it.
    pub backend: String,
    /// Which of that backend's clients it is (its badge bit in the backend's notification).
    pub client: usize,
    /// Its first sector on the machine's disk.
    pub first_sector: u64,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
}

/// Every guest's disk slice: per backend, its guests' slices one after another from
/// sector 0, in guest name order.
pub fn disk_slices(file: &SystemFile) -> Vec<DiskSlice> {
    let mut next: std::collections::BTreeMap<&str, (usize, u64)> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (name, g) in &file.guests {
        let Some(disk) = &g.disk else { continue };
        let backend = disk.get_ref().backend.get_ref();
        let sectors = parse_size(disk.get_ref().size.get_ref()).unwrap_or(0) / 512;
        let (client, first) = next.entry(backend).or_default();
        out.push(DiskSlice {
            guest: name.get_ref().clone(),
            backend: backend.clone(),
            client: *client,
            first_sector: *first,
            sectors,
        });
        *client += 1;
        *first = first.saturating_add(sectors);
    }
    out
}

/// Where a device's DMA memory appears in its owner's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaPlace {
    /// The device.
    pub device: String,
    /// Its owner.
    pub owner: String,
    /// First virtual address (2 MiB aligned).
    pub vaddr: u64,
    /// Its size in 2 MiB frames.
    pub frames: u64,
}

/// Every device's DMA memory, per owner from [`DMA_BASE`] in device name order. What does
/// not fit the window is left out; `system::check` reports it.
pub fn dma_layout(file: &SystemFile) -> Vec<DmaPlace> {
    let large = cleave_abi::layout::LARGE_PAGE_SIZE;
    let mut used: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (name, d) in &file.devices {
        let Some(frames) = d.dma.as_ref().and_then(|s| parse_size(s.get_ref())).map(|n| n / large) else {
            continue;
        };
        let offset = used.entry(d.owner.get_ref()).or_default();
        if frames == 0 || *offset + frames * large > DMA_WINDOW {
            continue;
        }
        out.push(DmaPlace {
            device: name.get_ref().clone(),
            owner: d.owner.get_ref().clone(),
            vaddr: DMA_BASE + *offset,
            frames,
        });
        *offset += frames * large;
    }
    out
}

/// A machine disk: a device with DMA memory whose owner serves guests' disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineDisk {
    /// The device.
    pub device: String,
    /// The backend that drives it.
    pub owner: String,
    /// The bytes its guests' slices need together.
    pub bytes: u64,
    /// The PCI slot it must be at, when `system.toml` names it by address (`pci =
    /// "00:05.0"`).
    pub slot: Option<u8>,
}

/// The machine disks `file` needs, one per disk backend (so one per instance of a
/// per-guest one), in the order `cargo xtask run` attaches them slot after slot: those
/// named by PCI ID in the order of their index (`1af4:1001#N`: the Nth such function is the
/// Nth attached), then the others in the order of their I/O ports (the order the firmware
/// of QEMU's `pc` machine places their BARs). One named by address goes at that slot.
pub fn machine_disks(file: &SystemFile) -> Vec<MachineDisk> {
    use crate::system::pci::{PciName, parse_pci};
    let slices = disk_slices(file);
    let mut out: Vec<((u64, u64), MachineDisk)> = file
        .devices
        .iter()
        .filter(|(_, d)| d.dma.is_some() && serves_disks(file, d.owner.get_ref()))
        .map(|(name, d)| {
            let first = d.io_ports.as_ref().and_then(|p| parse_ports(p.get_ref())).map_or(u64::MAX, |p| p.0);
            let pci = d.pci.as_ref().and_then(|p| parse_pci(p.get_ref()));
            let (order, slot) = match pci {
                Some(PciName::Id { index, .. }) => ((0, u64::from(index)), None),
                Some(PciName::Address { dev, .. }) => ((0, u64::from(dev)), Some(dev)),
                None => ((1, first), None),
            };
            let owner = d.owner.get_ref().clone();
            let bytes = slices.iter().filter(|s| s.backend == owner).map(|s| s.sectors * 512).sum();
            (order, MachineDisk { device: name.get_ref().clone(), owner, bytes, slot })
        })
        .collect();
    out.sort_by_key(|(order, d)| (*order, d.device.clone()));
    out.into_iter().map(|(_, d)| d).collect()
}

/// Whether `component` serves some guest's disk.
pub fn serves_disks(file: &SystemFile, component: &str) -> bool {
    file.guests.values().any(|g| g.disk.as_ref().is_some_and(|d| d.get_ref().backend.get_ref() == component))
}

/// Whether `component` switches some guest's network.
pub fn serves_networks(file: &SystemFile, component: &str) -> bool {
    file.guests
        .values()
        .any(|g| g.network.as_ref().is_some_and(|n| n.get_ref().backend.get_ref() == component))
}

/// Whether `component` is a guest I/O backend (disks or networks): it waits on one
/// notification its guests' VMMs (and its device's interrupt) signal.
pub fn serves_guest_io(file: &SystemFile, component: &str) -> bool {
    serves_disks(file, component) || serves_networks(file, component)
}

/// The program every guest's VMM runs.
pub const VMM_PROGRAM: &str = "vmm";
/// The slots of a VMM's CNode: its guest's Vcpu, EPT root, and its own TCB (to stop
/// itself when the guest is gone).
pub const VMM_SLOTS: [(&str, &str); 3] = [
    ("vcpu", "the guest's Vcpu"),
    ("ept", "the guest's guest-physical space (EPT or NPT root)"),
    ("tcb", "its own TCB"),
];
/// The slot after [`VMM_SLOTS`] where a VMM whose guest's console is the machine's second
/// serial port (`console = "com2"`) finds that port's I/O ports; empty otherwise.
pub const VMM_CONSOLE_SLOT: u64 = VMM_SLOTS.len() as u64 + 1;
/// The machine's second serial port's I/O ports (inclusive), which a `console = "com2"`
/// guest's VMM holds.
pub const COM2_PORTS: (u64, u64) = (0x2f8, 0x2ff);
/// The slot where every VMM finds its own notification (bound to its thread: a signal
/// ends its `VmEnter` with `NOTIFIED`), which its disk's backend signals.
pub const VMM_SIGNAL_SLOT: u64 = VMM_CONSOLE_SLOT + 1;
/// The slot where a VMM whose guest has a disk finds its backend's notification (send,
/// with the guest's badge bit); empty otherwise.
pub const VMM_DISK_SLOT: u64 = VMM_SIGNAL_SLOT + 1;
/// The slot where a VMM whose guest has a network finds its backend's notification (send,
/// with the guest's badge bit); empty otherwise.
pub const VMM_NET_SLOT: u64 = VMM_DISK_SLOT + 1;
/// The slot where a VMM whose guest uses a restartable I/O backend finds the supervisor's
/// notification (signal, with the guest's [`gone_badge`]), which it signals once its guest
/// has stopped: a backend that ends itself is finished only when every guest it serves is
/// gone, which the supervisor then knows from the VMMs, not from the backend; empty
/// otherwise.
pub const VMM_GONE_SLOT: u64 = VMM_NET_SLOT + 1;
/// Guests whose VMMs can tell the supervisor they are gone: one bit each, above the
/// disposable components' bits and below bit 62 (the toolstack's badge,
/// `cleave_ctl::supervisor::SUPERVISOR_BADGE`, which no signal may carry) and the clock's.
pub const MAX_GONE_GUESTS: usize = 30;

/// The bit the VMM of the `k`th guest (counted over the guests that use a restartable I/O
/// backend, in the order of the system description) sets on the supervisor's notification
/// when its guest has stopped; `None` past [`MAX_GONE_GUESTS`].
pub fn gone_badge(k: usize) -> Option<u64> {
    (k < MAX_GONE_GUESTS).then(|| 1u64 << (32 + k))
}

/// The capability kind (`cleave_rt::cap::kind`) of each of [`VMM_SLOTS`], in order.
pub const VMM_SLOT_KINDS: [&str; 3] = ["Vcpu", "EptRoot", "Tcb"];
/// Where a VMM finds its configuration page (read only): the start of the device window,
/// which a VMM, owning no devices, does not otherwise use.
pub const VMM_CONFIG: u64 = DEVICE_BASE;
/// The size of a VMM's configuration page ([`vmm_config`] must fit in it).
pub const MAX_VMM_CONFIG: usize = PAGE_SIZE as usize;

/// The name of guest `guest`'s VMM component.
pub fn vmm_name(guest: &str) -> String {
    format!("vmm-{guest}")
}

/// A VMM's configuration page: `key=value` lines (`name`, `memory` in bytes, `image`,
/// `console` (`log`, `com2`, or `ctl,ADDRESS,BYTES`: the console page shared with the
/// toolstack), and for a guest with a disk `disk` = the ring's address, its bytes, slots,
/// slot size and the disk's sectors, comma-separated; for a guest with a network `net` =
/// the region's address, its bytes, each pipe's slots and the card's MAC; `cmdline` last).
pub fn vmm_config(file: &SystemFile, guest: &str, g: &Guest) -> Vec<u8> {
    let memory = parse_size(g.memory.get_ref()).unwrap_or(0);
    let cmdline = g.cmdline.as_ref().map_or("", |c| c.get_ref().as_str());
    let console = g.console.as_ref().map_or("log", |c| c.get_ref().as_str());
    let ring = crate::schema::disk_ring_name(guest);
    let disk = match (
        region_layout(file).into_iter().find(|p| p.name == ring),
        disk_slices(file).into_iter().find(|s| s.guest == guest),
    ) {
        (Some(place), Some(slice)) => format!(
            "disk={:#x},{},{},{},{}\n",
            place.vaddr,
            place.bytes(),
            DISK_RING_SLOTS,
            DISK_RING_SLOT_SIZE,
            slice.sectors
        ),
        _ => String::new(),
    };
    let region = crate::schema::net_region_name(guest);
    let net = match (
        region_layout(file).into_iter().find(|p| p.name == region),
        net_ports(file).into_iter().find(|p| p.guest == guest).and_then(|p| p.mac),
    ) {
        (Some(place), Some(mac)) => {
            format!("net={:#x},{},{},{}\n", place.vaddr, place.bytes(), NET_PIPE_SLOTS, format_mac(mac))
        }
        _ => String::new(),
    };
    let console_region = crate::schema::console_region_name(guest);
    let console = match region_layout(file).into_iter().find(|p| p.name == console_region) {
        Some(place) if console == "ctl" => format!("ctl,{:#x},{}", place.vaddr, place.bytes()),
        _ => console.to_string(),
    };
    format!(
        "name={guest}\nmemory={memory}\nimage={}\nconsole={console}\n{disk}{net}cmdline={cmdline}\n",
        g.image.get_ref()
    )
    .into_bytes()
}

/// The program of the Builder: the component that makes on-request guests' RAM from its
/// pool (`start = "on-request"`).
pub const BUILDER_PROGRAM: &str = "builder";
/// Most 2 MiB frames of RAM the Builder makes for one guest (its CNode has a slot range
/// per guest: the RAM's untyped, each frame, and each frame's second capability).
pub const BUILD_MAX_FRAMES: u64 = 64;
/// Most components the supervisor restarts (its table's size; an on-request guest's VMM
/// counts).
pub const MAX_RESTARTABLE: usize = 16;
/// Most on-request guests.
pub const BUILD_MAX_GUESTS: usize = 8;
/// Where the Builder's per-guest slots start in its CNode ([`builder_slots`]).
pub const BUILD_SLOTS: u64 = 64;
/// The Builder's CNode's slots for guest RAM: per on-request guest, in order, its RAM's
/// untyped, then two capabilities per 2 MiB frame (the guest's and the VMM's); then the
/// CNode's radix, the smallest that holds them and a scratch slot (its last), at least
/// [`COMPONENT_CNODE_BITS`]. Returns ((guest, RAM bytes, untyped slot, first frame slot),
/// radix).
pub fn builder_slots(file: &SystemFile) -> (Vec<(String, u64, u64, u64)>, u32) {
    let mut next = BUILD_SLOTS;
    let mut out = Vec::new();
    for (guest, bytes) in crate::compile::builder::on_request_guests(file) {
        let frames = bytes / cleave_abi::layout::LARGE_PAGE_SIZE;
        out.push((guest, bytes, next, next + 1));
        next += 1 + 2 * frames;
    }
    // `next` slots in use, and the scratch slot after them.
    let bits = (next + 1).next_power_of_two().trailing_zeros().max(COMPONENT_CNODE_BITS);
    (out, bits)
}
/// Pages of a restartable component's writable memory its pristine copy holds: the first,
/// where its program's initialized data is (Rust programs here have a few bytes of it; the
/// rest of their writable memory is `.bss`, heap and stack, all zero at start). A restart
/// copies them back and zeroes the rest; the loader refuses a program whose initialized
/// data does not fit them.
pub const PRISTINE_PAGES: u64 = 1;

/// A VMM restarted on request (an on-request guest's): its writable memory, which the
/// supervisor restores from a pristine copy before each start.
pub const ON_REQUEST_VMM_MEMORY: u64 = 192 << 10;

/// The program and component that disposes of disposable components and restarts
/// restartable ones.
pub const SUPERVISOR: &str = "supervisor";
/// Its priority: above every component it watches, so that it acts at once.
pub const SUPERVISOR_PRIORITY: u64 = 250;
/// What a disposable component's untyped allows, besides its stack, for its program, page
/// tables, IPC buffer and kernel objects (`cleave memory` checks that a built program fits,
/// and says by how much it does not).
pub const DISPOSABLE_ALLOWANCE: u64 = 112 << 10;

/// Log2 of the untyped memory a disposable component with a stack of `stack` bytes
/// (`None`: the default) is made from: the smallest power of two that holds it and
/// [`DISPOSABLE_ALLOWANCE`], 128 KiB at least. (A disposable component has no `memory`:
/// that key is a restarted component's.)
pub fn disposable_untyped_bits(stack: Option<u64>) -> u32 {
    let stack = stack.unwrap_or(cleave_abi::layout::COMPONENT_STACK_PAGES * cleave_abi::layout::PAGE_SIZE);
    let needed = stack.saturating_add(DISPOSABLE_ALLOWANCE);
    needed.checked_next_power_of_two().map_or(63, u64::trailing_zeros).max(17)
}
/// A restartable component's writable memory when `memory` is not given.
pub const DEFAULT_RESTART_MEMORY: u64 = 64 << 10;
/// The badge bit of the supervisor's timer (the PIT on IRQ 0) in its notification.
pub const CLOCK_BADGE: u64 = 1 << 63;
/// The interrupt line of the supervisor's clock, the PIT.
pub const PIT_IRQ: u64 = 0;
/// The PIT's ports (inclusive), the supervisor's clock (`cleave_abi::platform`).
pub const PIT_PORTS: (u64, u64) =
    (cleave_abi::platform::PIT_PORTS.0 as u64, cleave_abi::platform::PIT_PORTS.1 as u64);

/// Where a shared region lives: the same address in every component that maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPlace {
    /// The region's name.
    pub name: String,
    /// Its first virtual address.
    pub vaddr: u64,
    /// Its size in 4 KiB pages.
    pub pages: u64,
}

impl RegionPlace {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}

/// The address of every region (declared ones by name, then channel rings), each followed by one
/// unmapped guard page. Regions that do not fit the window are left out; `system::check`
/// reports them.
pub fn region_layout(file: &SystemFile) -> Vec<RegionPlace> {
    let mut places: Vec<RegionPlace> = Vec::new();
    let mut offset = 0;
    for r in shared_regions(file) {
        if places.iter().any(|p| p.name == r.name) {
            continue; // a name clash `system::check` reports
        }
        let pages = parse_size(r.size.get_ref()).unwrap_or(PAGE_SIZE) / PAGE_SIZE;
        if offset + pages * PAGE_SIZE > REGION_WINDOW {
            break;
        }
        places.push(RegionPlace { name: r.name, vaddr: REGION_BASE + offset, pages });
        offset += (pages + 1) * PAGE_SIZE;
    }
    places
}

/// Where a device's MMIO range appears in its owner's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioPlace {
    /// The device.
    pub device: String,
    /// Which of its `mmio` ranges.
    pub index: usize,
    /// First virtual address.
    pub vaddr: u64,
    /// Size in 4 KiB pages.
    pub pages: u64,
    /// First physical address.
    pub paddr: u64,
}

impl MmioPlace {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}

/// Every device MMIO range, in name order from [`DEVICE_BASE`], one guard page after each.
/// Ranges that do not fit the window are left out; `system::check` reports them.
pub fn device_layout(file: &SystemFile) -> Vec<MmioPlace> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (name, d) in &file.devices {
        for (index, m) in d.mmio.iter().enumerate() {
            let pages = parse_size(m.size.get_ref()).unwrap_or(PAGE_SIZE) / PAGE_SIZE;
            if offset + pages * PAGE_SIZE > DEVICE_WINDOW {
                return out;
            }
            let (vaddr, paddr) = (DEVICE_BASE + offset, *m.base.get_ref());
            out.push(MmioPlace { device: name.get_ref().clone(), index, vaddr, pages, paddr });
            offset += (pages + 1) * PAGE_SIZE;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SystemFile {
        toml::from_str(text).expect("a test's description reads")
    }

    #[test]
    fn a_disposable_untyped_holds_its_stack_and_the_allowance() {
        // The default 16 KiB stack and the allowance: 128 KiB; a 1 MiB stack: 2 MiB.
        assert_eq!(disposable_untyped_bits(None), 17);
        assert_eq!(disposable_untyped_bits(Some(16 << 10)), 17);
        assert_eq!(disposable_untyped_bits(Some(17 << 10)), 18);
        assert_eq!(disposable_untyped_bits(Some(1 << 20)), 21);
        assert_eq!(disposable_untyped_bits(Some(u64::MAX)), 63);
    }

    #[test]
    fn what_does_not_fit_its_window_is_left_out() {
        // 1 GiB fills the region window; the next region, and the rings after it, are out.
        let file = parse(
            "[regions.a]\nsize = \"1G\"\nmap = {}\n[regions.b]\nsize = \"4K\"\nmap = {}\n\
             [devices.d]\nowner = \"x\"\nmmio = [{ base = 0xc0000000, size = \"1G\" }, { base = 0x1000, size = \"4K\" }]\n",
        );
        assert_eq!(
            region_layout(&file),
            [RegionPlace { name: "a".into(), vaddr: REGION_BASE, pages: 1 << 18 }]
        );
        assert_eq!(
            device_layout(&file),
            [MmioPlace {
                device: "d".into(),
                index: 0,
                vaddr: DEVICE_BASE,
                pages: 1 << 18,
                paddr: 0xc000_0000
            }]
        );
    }

    #[test]
    fn a_vmm_configuration_is_key_value_lines() {
        let file = parse("[guests.g]\nmemory = \"2M\"\nimage = \"img\"\n");
        let (name, guest) = file.guests.iter().next().unwrap();
        assert_eq!(vmm_name(name.get_ref()), "vmm-g");
        assert_eq!(
            vmm_config(&file, name.get_ref(), guest),
            b"name=g\nmemory=2097152\nimage=img\nconsole=log\ncmdline=\n"
        );
    }
}
