//! The per-guest VMM component. The capDL loader starts one per `[guests.NAME]` in the
//! system description (its start argument is that guest's index plus one), having already
//! made the guest's Vcpu (bound to this thread, with the guest's EPT root) and mapped the
//! guest's RAM and this VMM's configuration page (`cleave_system::compile`); it holds
//! nothing else. It loads the guest image built into it (`CLEAVE_GUEST_IMAGE`), starts the
//! guest in long mode with identity paging, and handles every exit with
//! `cleave_vmm_core::vm` until the guest powers off or is stopped.
#![no_std]
#![no_main]

extern crate alloc;

use cleave_rt::cap::kind::{Notification, Tcb, Vcpu};
use cleave_rt::{Cap, println};
use vmm::{Ram, run, start};

cleave_rt::entry!(main);
// Its devices' state, the disk ring's VMM side and the network card's frame buffer (the
// MMIO decoder needs none: `cleave_vmm_core::mmio`): with iced-x86's decoder tables
// (112 KiB) at most 204 KiB were in use at once in the I/O restart test (Linux with a disk
// and a network under 200 ms backend restarts) and in the hostile-guest test; without them,
// 1 KiB with the test guest. Each VMM reports its own at the end (`heap: at most N KiB`).
// Every byte of it is memory the control plane holds (a VMM per guest); running out stops
// this VMM's guest, nothing else.
cleave_rt::heap!(128 * 1024);

/// The guest image built in.
static GUEST_IMAGE: &[u8] = vmm::guest_image!();

/// The layout cleave gives a VMM component (every slot named, used or not).
#[allow(dead_code, reason = "generated: names every slot of the VMM's CNode")]
mod layout {
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}

/// A VMM component's configuration (its page at `layout::CONFIG`, `key=value` lines).
struct Config {
    name: &'static str,
    memory: u64,
    image: &'static str,
    console: &'static str,
    cmdline: &'static str,
    /// `disk=ADDRESS,BYTES,SLOTS,SLOT_SIZE,SECTORS`: the guest's disk ring (where this VMM
    /// maps it, its size and geometry) and the disk's size.
    disk: Option<DiskConfig>,
    /// `net=ADDRESS,BYTES,SLOTS,MAC`: the guest's network region (its tx pipe, then its rx
    /// pipe, each of SLOTS slots) and its card's address.
    net: Option<NetConfig>,
}

/// A guest network's configuration line.
struct NetConfig {
    region: u64,
    bytes: usize,
    slots: u32,
    mac: [u8; 6],
}

impl NetConfig {
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split(',');
        let region = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
        let bytes = fields.next()?.parse::<usize>().ok()?;
        let slots = fields.next()?.parse::<u32>().ok()?;
        let mut mac = [0u8; 6];
        let mut parts = fields.next()?.split(':');
        for byte in &mut mac {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        (parts.next().is_none() && fields.next().is_none()).then_some(Self { region, bytes, slots, mac })
    }
}

/// A guest disk's configuration line.
struct DiskConfig {
    ring: u64,
    bytes: usize,
    slots: u32,
    slot_size: u32,
    sectors: u64,
}

impl DiskConfig {
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split(',');
        let ring = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
        let mut number = || fields.next()?.parse::<u64>().ok();
        let (bytes, slots, slot_size, sectors) = (number()?, number()?, number()?, number()?);
        Some(Self {
            ring,
            bytes: usize::try_from(bytes).ok()?,
            slots: u32::try_from(slots).ok()?,
            slot_size: u32::try_from(slot_size).ok()?,
            sectors,
        })
    }
}

fn config() -> Option<Config> {
    // SAFETY: the loader maps this component's configuration page read-only at CONFIG,
    // filled from the file cleave generated; nothing writes it.
    let page = unsafe { core::slice::from_raw_parts(layout::CONFIG as *const u8, layout::CONFIG_SIZE) };
    let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
    let text = core::str::from_utf8(&page[..end]).ok()?;
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    Some(Config {
        name: value("name")?,
        memory: value("memory")?.parse().ok()?,
        image: value("image")?,
        console: value("console").unwrap_or("log"),
        cmdline: value("cmdline").unwrap_or(""),
        disk: match value("disk") {
            Some(text) => Some(DiskConfig::parse(text)?),
            None => None,
        },
        net: match value("net") {
            Some(text) => Some(NetConfig::parse(text)?),
            None => None,
        },
    })
}

/// Formats the disk ring; on the heap at once (its VMM side is some 12 KiB, and a
/// component's stack is 16 KiB), in a frame of its own that is gone before the guest runs.
#[inline(never)]
fn format_ring(
    shared: cleave_ioring::Shared,
    geometry: cleave_ioring::blk::Geometry,
) -> Result<alloc::boxed::Box<cleave_ioring::blk::Vmm>, &'static str> {
    cleave_ioring::blk::Vmm::format(shared, geometry)
        .map(alloc::boxed::Box::new)
        .map_err(|_| "the ring's geometry does not fit its region")
}

/// The console the toolstack relays: `ctl,ADDRESS,BYTES` names the page cleave shares
/// between this VMM and the toolstack.
fn relayed_console(name: &'static str, text: &str) -> Result<vmm::Named, &'static str> {
    let mut fields = text.split(',');
    let (Some("ctl"), Some(address), Some(bytes), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("the configuration names no console page");
    };
    let address = address.strip_prefix("0x").and_then(|a| usize::from_str_radix(a, 16).ok());
    let (Some(address), Ok(bytes)) = (address, bytes.parse::<usize>()) else {
        return Err("the console page's address or size does not read");
    };
    // SAFETY: cleave maps the guest's console page read-write at `address`, `bytes` long
    // (the configuration page says where), into this VMM and the toolstack only, for as
    // long as this component runs; only `Shared` values (here and in the toolstack) touch
    // it.
    let shared = unsafe { cleave_ioring::Shared::new(address as *mut u8, bytes) }
        .map_err(|_| "the console page is not page-aligned whole pages")?;
    vmm::Named::relayed(name, shared).ok_or("the console page is too small")
}

/// The guest's disk: the ring cleave laid out for it, formatted, and the notifications.
fn disk(name: &str, config: &DiskConfig) -> Result<vmm::Disk, &'static str> {
    use cleave_ioring::blk::Geometry;
    // SAFETY: cleave maps the guest's disk ring read-write at `ring`, `bytes` long (the
    // configuration page says where), into this VMM and the disk's backend only, for as
    // long as this component runs; only `Shared` values (here and in the backend) touch it.
    let shared = unsafe { cleave_ioring::Shared::new(config.ring as *mut u8, config.bytes) }
        .map_err(|_| "the ring's place is not page-aligned whole pages")?;
    let geometry = Geometry { slots: config.slots, slot_size: config.slot_size };
    let ring = format_ring(shared, geometry)?;
    println!(
        "vmm: guest '{name}': a {} MiB virtio disk at 00:{:02x}.0 (IRQ {}), served over a ring of {} slots",
        config.sectors >> 11,
        vmm::DISK_SLOT,
        vmm::DISK_IRQ,
        config.slots
    );
    Ok(vmm::Disk {
        bridge: vmm::DiskBridge::new(ring, config.slot_size),
        backend: layout::DISK,
        sectors: config.sectors,
    })
}

/// The guest's network card: its pipes, formatted (the bridge is on the heap: a frame
/// buffer), and its switch's notification.
fn net(name: &str, config: &NetConfig) -> Result<vmm::Net, &'static str> {
    // SAFETY: cleave maps the guest's network region read-write at `region`, `bytes` long
    // (the configuration page says where), into this VMM and the network's backend only,
    // for as long as this component runs; only `Shared` values (here and in the backend)
    // touch it.
    let shared = unsafe { cleave_ioring::Shared::new(config.region as *mut u8, config.bytes) }
        .map_err(|_| "the region's place is not page-aligned whole pages")?;
    let bridge = vmm::NetBridge::format(shared, config.slots)
        .map_err(|_| "the pipes' geometry does not fit the region")?;
    let m = config.mac;
    println!(
        "vmm: guest '{name}': a virtio network card {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} at 00:{:02x}.0 (IRQ {}), pipes of {} slots",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        vmm::NET_SLOT,
        vmm::NET_IRQ,
        config.slots
    );
    // The pipes are a new session, which netback attaches to when it next looks: the
    // guest's frames go once it has (a guest made again on request gets its old pipes).
    let backend: Cap<Notification> = layout::NET;
    let _ = backend.signal();
    Ok(vmm::Net { bridge, backend, mac: config.mac })
}

/// A VMM component, as the loader starts one per `[guests.NAME]`: its guest's Vcpu (bound
/// to this thread, with its EPT root) and RAM are already there; it loads the guest image,
/// starts the guest and handles its exits until it stops, reports, and stops itself.
fn component() -> i32 {
    let Some(config) = config() else {
        println!("vmm: no readable configuration page");
        return 1;
    };
    let name = config.name;
    let me: Cap<Tcb> = layout::TCB;
    let stop_here = || -> i32 {
        // Nothing more to do: stop this thread (the rest of the system goes on).
        let _ = me.suspend();
        0
    };
    if config.image != layout::IMAGE_NAME {
        println!(
            "vmm: guest '{name}': image '{}' is not built into this VMM (it has '{}')",
            config.image,
            layout::IMAGE_NAME
        );
        return stop_here();
    }
    let vcpu: Cap<Vcpu> = layout::VCPU;
    let ram = Ram { base: layout::GUEST_RAM, size: config.memory };
    println!(
        "vmm: guest '{name}': {} MiB of RAM, image '{}', starting in long mode",
        config.memory >> 20,
        config.image
    );
    let msr_policy = match start(vcpu, ram, GUEST_IMAGE, name, config.cmdline) {
        Ok(policy) => policy,
        Err(e) => {
            println!("vmm: guest '{name}': {e}");
            return stop_here();
        }
    };
    // The audit log: this guest relies on this VMM while it runs.
    // (An on-request guest's VMM is started by the supervisor, as a later instance.)
    let instance = cleave_rt::instance();
    cleave_rt::audit!("serve {name} vmm-{name}#{instance}");
    let console = match config.console {
        "com2" => vmm::Named::com2(name, layout::CONSOLE),
        "log" => vmm::Named::log(name),
        relayed => match relayed_console(name, relayed) {
            Ok(console) => console,
            Err(why) => {
                println!("vmm: guest '{name}': its console goes to the system's log: {why}");
                vmm::Named::log(name)
            }
        },
    };
    let disk = match config.disk.as_ref().map(|d| disk(name, d)) {
        Some(Ok(disk)) => Some(disk),
        Some(Err(why)) => {
            println!("vmm: guest '{name}': no disk: {why}");
            None
        }
        None => None,
    };
    let net = match config.net.as_ref().map(|n| net(name, n)) {
        Some(Ok(net)) => Some(net),
        Some(Err(why)) => {
            println!("vmm: guest '{name}': no network: {why}");
            None
        }
        None => None,
    };
    let io = vmm::Io { disk, net, signal: Some(layout::SIGNAL), gone: Some(layout::GONE) };
    let outcome = run(vcpu, ram, console, msr_policy, io);
    cleave_rt::audit!("unserve {name} vmm-{name}#{instance}");
    match outcome {
        Ok((stop, vm)) => {
            println!(
                "vmm: guest '{name}' {stop}; {} exits, {} timer interrupts, {} MMIO accesses, {} MSRs not offered",
                vm.exits,
                vm.timer_interrupts,
                vm.test_device.reads + vm.test_device.writes,
                vm.msr_faults
            );
            // Exits per second of guest time, by reason (guest time is the TSC's, in ns).
            let mut text = alloc::string::String::new();
            let seconds = vm.time_ns as f64 / 1e9;
            for (reason, &n) in vm.exits_by_reason.iter().enumerate().filter(|(_, n)| **n > 0) {
                let name = cleave_vmm_core::vm::reason_name(reason as u64);
                let rate = if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
                let _ = core::fmt::Write::write_fmt(&mut text, format_args!(" {name}: {n} ({rate:.0}/s);"));
            }
            println!("vmm: guest '{name}' exits by reason over {seconds:.1} s of guest time:{text}");
            let (peak, size) = heap_peak();
            println!(
                "vmm: guest '{name}': heap: at most {} KiB of {} KiB in use",
                peak.div_ceil(1024),
                size >> 10
            );
            if vm.console.serial.is_some() {
                println!(
                    "vmm: guest '{name}': console: {} bytes typed, {} overruns reported by the serial port",
                    vm.console.typed, vm.console.overruns
                );
            }
            if let Some(ring) = &vm.console.relayed {
                println!(
                    "vmm: guest '{name}': console relayed by the toolstack: {} bytes typed; its index words were impossible {} times",
                    vm.console.typed,
                    ring.broken()
                );
            }
        }
        Err(e) => println!("vmm: guest '{name}': the kernel refused a VMM operation: {e:?}"),
    }
    stop_here()
}

fn main() -> i32 {
    // The loader starts a VMM with its guest's index plus one: 0 means nobody gave it a
    // guest (booted as a root task, say), and it has no configuration page to read.
    if cleave_rt::start_argument() == 0 {
        println!("vmm: started without a guest; the capDL loader starts one VMM per [guests.NAME]");
        return 1;
    }
    component()
}
