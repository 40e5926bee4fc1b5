//! Generated code for components: each receives its capabilities as named, typed constants
//! (`cleave_rt::Cap<kind::Endpoint>` and so on, for the slots of its CNode), produced from
//! `system.toml` by the component's build script; the supervisor also gets its restart and
//! disposal tables as typed structs.

use crate::{compile, error, layout, system};
use cleave_capdl::model::{ObjRef, ObjectKind, Spec, Target};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Rust source declaring `component`'s capability slots as constants, plus a `CAPS` table
/// (name, slot, what) the component can print.
pub fn caps_source(system_toml: &Path, component: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(system_toml)
        .map_err(|e| format!("cannot read {}: {e}", system_toml.display()))?;
    let file = system::load(&text)
        .map_err(|e| error::render_plain(&e, &system_toml.display().to_string(), &text))?;
    let compiled = compile::compile(&file);
    // A declared component, or one cleave adds (the supervisor).
    if !file.components.keys().any(|k| k.get_ref() == component) && !compiled.tables.contains_key(component) {
        return Err(format!("{} declares no component `{component}`", system_toml.display()));
    }
    let mut out =
        format!("// Generated from {} for component `{component}`. Do not edit.\n", system_toml.display());
    let _ = writeln!(
        out,
        "/// This component's name (a per-guest instance's own, `NAME-GUEST`): what it calls itself in its log and audit lines.\n#[allow(dead_code, reason = \"not every component names itself\")]\npub const COMPONENT: &str = {component:?};"
    );
    let entries = compiled.tables.get(component).map(|t| t.entries.clone()).unwrap_or_default();
    let kinds = slot_kinds(&compiled.spec, component);
    for (slot, name, what) in &entries {
        let constant = constant_name(name);
        let kind = kinds.get(slot).copied().unwrap_or("Unknown");
        let _ = writeln!(
            out,
            "/// `{name}`: {what}.\npub const {constant}: {} = {};",
            cap_type(kind),
            cap_value(*slot)
        );
    }
    let is_builder = file
        .components
        .iter()
        .any(|(k, c)| k.get_ref() == component && c.package(k.get_ref()) == layout::BUILDER_PROGRAM);
    if is_builder {
        let slot_of = |name: &str| entries.iter().find(|e| e.1 == name).map_or(0, |e| e.0);
        out.push_str(
            "/// The on-request guests the Builder makes: (name, RAM bytes, its EPT root's slot, its VMM's VSpace's slot, the slot its RAM's untyped goes in, the first of the slots its frames go in: two capabilities each, the guest's and the VMM's).\npub const BUILD_GUESTS: &[(&str, u64, u64, u64, u64, u64)] = &[\n",
        );
        let (places, bits) = layout::builder_slots(&file);
        for (guest, bytes, base, _) in &places {
            let _ = writeln!(
                out,
                "    ({guest:?}, {bytes:#x}, {}, {}, {base}, {}),",
                slot_of(&format!("{guest}-ept")),
                slot_of(&format!("{guest}-vspace")),
                base + 1
            );
        }
        let _ = writeln!(
            out,
            "];\n/// Where a VMM sees its guest's RAM.\npub const GUEST_RAM_BASE: u64 = {:#x};\n/// Its CNode's radix (the depth of a slot in it); its last slot is the scratch slot.\npub const CNODE_BITS: u64 = {bits};",
            layout::GUEST_RAM_BASE
        );
    }
    if component == layout::SUPERVISOR {
        supervisor_tables(&mut out, &compiled);
        let faults = entries.iter().find(|e| e.1 == "faults").map(|e| e.0);
        let _ = writeln!(
            out,
            "/// The endpoint restartable components' faults arrive on, if any component is restartable.\npub const FAULT_ENDPOINT: Option<{}> = {};",
            cap_type("Endpoint"),
            faults.map_or("None".to_string(), |slot| format!("Some({})", cap_value(slot)))
        );
    }
    let mut regions = Vec::new();
    let shared = system::shared_regions(&file);
    for place in layout::region_layout(&file) {
        let Some(region) = shared.iter().find(|r| r.name == place.name) else { continue };
        let Some((_, mode)) = region.map.iter().find(|(c, _)| c == component) else { continue };
        regions.push((place.name.clone(), place.vaddr, place.bytes(), mode.clone()));
        if region.key.starts_with("channels.") {
            continue; // a ring: named RING_/RINGS_ below
        }
        let constant = constant_name(&place.name);
        let _ = writeln!(
            out,
            "/// Shared region `{}`, mapped `{}`: its first address.\npub const REGION_{constant}: usize = {:#x};",
            place.name, mode, place.vaddr
        );
        let _ = writeln!(
            out,
            "/// Size of shared region `{}` in bytes.\npub const REGION_{constant}_SIZE: usize = {:#x};",
            place.name,
            place.bytes()
        );
    }
    for place in layout::device_layout(&file) {
        let owner =
            file.devices.iter().find(|(k, _)| k.get_ref() == &place.device).map(|(_, d)| d.owner.get_ref());
        if owner.map(String::as_str) != Some(component) {
            continue;
        }
        let constant = format!("DEVICE_{}_MMIO{}", constant_name(&place.device), place.index);
        let _ = writeln!(
            out,
            "/// MMIO range {} of device `{}` (physical {:#x}), mapped uncached: its first address.\npub const {constant}: usize = {:#x};",
            place.index, place.device, place.paddr, place.vaddr
        );
        let _ = writeln!(
            out,
            "/// Size of that MMIO range in bytes.\npub const {constant}_SIZE: usize = {:#x};",
            place.bytes()
        );
        regions.push((
            format!("{}.mmio{}", place.device, place.index),
            place.vaddr,
            place.bytes(),
            format!("rw device memory at {:#x}", place.paddr),
        ));
    }
    // Rings: a client names its own as RING_<CHANNEL>; a server gets (badge, address, bytes)
    // per client as RINGS_<CHANNEL>.
    let layout = layout::region_layout(&file);
    for (name, ch) in file.channels.iter().filter(|(_, ch)| ch.ring.is_some()) {
        let place_of =
            |client: &str| layout.iter().find(|p| p.name == system::ring_name(name.get_ref(), client));
        let constant = constant_name(name.get_ref());
        for client in ch.clients.get_ref() {
            if client.get_ref() == component
                && let Some(p) = place_of(client.get_ref())
            {
                let _ = writeln!(
                    out,
                    "/// This component's ring on channel `{}`.\npub const RING_{constant}: usize = {:#x};\n/// Its size in bytes.\npub const RING_{constant}_SIZE: usize = {:#x};",
                    name.get_ref(),
                    p.vaddr,
                    p.bytes()
                );
            }
        }
        if ch.server.get_ref() == component {
            let _ = writeln!(
                out,
                "/// The rings of channel `{}`, one per client: (badge, address, bytes).\npub const RINGS_{constant}: &[(u64, usize, usize)] = &[",
                name.get_ref()
            );
            for (i, client) in ch.clients.get_ref().iter().enumerate() {
                if let Some(p) = place_of(client.get_ref()) {
                    let _ = writeln!(
                        out,
                        "    ({}, {:#x}, {:#x}),",
                        ch.badge_of(i, client.get_ref()),
                        p.vaddr,
                        p.bytes()
                    );
                }
            }
            let _ = writeln!(out, "];");
        }
    }
    for (name, d) in file.devices.iter().filter(|(_, d)| d.owner.get_ref() == component) {
        if let Some((first, last)) = d.io_ports.as_ref().and_then(|p| crate::schema::parse_ports(p.get_ref()))
        {
            let _ = writeln!(
                out,
                "/// Device `{}`'s I/O ports (first, last), which its `_PORTS` capability covers.\n#[allow(dead_code, reason = \"a driver may address its ports by their numbers\")]\npub const DEVICE_{}_PORTS: (u16, u16) = ({first:#x}, {last:#x});",
                name.get_ref(),
                constant_name(name.get_ref())
            );
        }
    }
    for place in layout::dma_layout(&file).iter().filter(|p| p.owner == component) {
        let constant = format!("DEVICE_{}_DMA", constant_name(&place.device));
        let bytes = place.frames * cleave_abi::layout::LARGE_PAGE_SIZE;
        let _ = writeln!(
            out,
            "/// DMA memory of device `{}`, {} frames of 2 MiB mapped read-write: its first address.\npub const {constant}: usize = {:#x};\n/// Its size in bytes.\npub const {constant}_SIZE: usize = {bytes:#x};",
            place.device, place.frames, place.vaddr
        );
        regions.push((format!("{}.dma", place.device), place.vaddr, bytes, "rw DMA memory".to_string()));
    }
    // A disk backend: its clients, by badge bit.
    let slices: Vec<layout::DiskSlice> =
        layout::disk_slices(&file).into_iter().filter(|s| s.backend == component).collect();
    if !slices.is_empty() {
        let geometry = layout::disk_ring_geometry();
        let _ = writeln!(
            out,
            "/// The badge bit of the device's interrupt in `SIGNAL`.\npub const IRQ_BADGE: u64 = {:#x};\n/// Every disk ring's data slots.\npub const DISK_RING_SLOTS: u32 = {};\n/// Every disk ring's slot size in bytes.\npub const DISK_RING_SLOT_SIZE: u32 = {};",
            layout::BACKEND_IRQ_BADGE,
            geometry.slots,
            geometry.slot_size
        );
        // The machine disk, by what it is rather than by its name (`system::check` makes
        // it the one device with DMA memory the backend owns, with ports and a line): one
        // program drives whatever the description calls it, in every instance.
        if let Some(disk) = layout::machine_disks(&file).into_iter().find(|d| d.owner == component) {
            let slot =
                |what: &str| entries.iter().find(|e| e.1 == format!("{}_{what}", disk.device)).map(|e| e.0);
            let device = file.devices.iter().find(|(k, _)| *k.get_ref() == disk.device).map(|(_, d)| d);
            let ports =
                device.and_then(|d| d.io_ports.as_ref()).and_then(|p| system::parse_ports(p.get_ref()));
            let dma = layout::dma_layout(&file).into_iter().find(|p| p.device == disk.device);
            if let (Some(irq), Some(port_cap), Some(dma0), Some((first, last)), Some(dma)) =
                (slot("irq"), slot("ports"), slot("dma0"), ports, dma)
            {
                let _ = writeln!(
                    out,
                    "/// The machine disk this component drives: device `{}`. Its interrupt line's handler.\npub const MACHINE_DISK_IRQ: {} = {};\n/// Its I/O ports.\npub const MACHINE_DISK_PORTS: {} = {};\n/// Their numbers (first, last).\npub const MACHINE_DISK_PORT_RANGE: (u16, u16) = ({first:#x}, {last:#x});\n/// Its first DMA frame (whose physical address the driver asks for).\npub const MACHINE_DISK_DMA0: {} = {};\n/// Its DMA memory's first address.\npub const MACHINE_DISK_DMA: usize = {:#x};\n/// Its DMA memory's size in bytes.\npub const MACHINE_DISK_DMA_SIZE: usize = {:#x};",
                    disk.device,
                    cap_type("IrqHandler"),
                    cap_value(irq),
                    cap_type("IoPort"),
                    cap_value(port_cap),
                    cap_type("Frame"),
                    cap_value(dma0),
                    dma.vaddr,
                    dma.frames * cleave_abi::layout::LARGE_PAGE_SIZE
                );
            }
        }
        let _ = writeln!(
            out,
            "/// A guest whose disk this component serves: (guest, ring address, ring bytes, first sector, sectors, its VMM's notification).\npub type Disk = (&'static str, usize, usize, u64, u64, {});\n/// The guests whose disks this component serves, client `i` signalling bit `i` of `SIGNAL`.\npub const DISKS: &[Disk] = &[",
            cap_type("Notification")
        );
        for slice in &slices {
            let ring = layout::region_layout(&file)
                .into_iter()
                .find(|p| p.name == crate::schema::disk_ring_name(&slice.guest));
            let signal = format!("{}_signal", layout::vmm_name(&slice.guest));
            let slot = entries.iter().find(|e| e.1 == signal).map(|e| e.0);
            if let (Some(ring), Some(slot)) = (ring, slot) {
                let _ = writeln!(
                    out,
                    "    ({:?}, {:#x}, {:#x}, {}, {}, {}),",
                    slice.guest,
                    ring.vaddr,
                    ring.bytes(),
                    slice.first_sector,
                    slice.sectors,
                    cap_value(slot)
                );
            }
        }
        let _ = writeln!(out, "];");
        let on_request = slices
            .iter()
            .any(|slice| file.guests.iter().any(|(k, g)| *k.get_ref() == slice.guest && g.on_request()));
        let _ = writeln!(
            out,
            "/// Whether a guest it serves starts on request: its VMM comes and goes, so the component keeps serving when every VMM closed its ring.\npub const SERVES_ON_REQUEST_GUESTS: bool = {on_request};"
        );
    }
    // PCIBack: the devices it places.
    if component == system::pci::PCIBACK {
        let _ = writeln!(
            out,
            "/// A device PCIBack places: its name, its owner, the function (an address, or vendor and device ID and which of those), and what its owner holds of it.\npub struct PciDevice {{\n    /// Its name in system.toml.\n    pub name: &'static str,\n    /// The component that drives it.\n    pub owner: &'static str,\n    /// Its address (bus, device, function), when named so.\n    pub address: Option<(u8, u8, u8)>,\n    /// Its vendor ID, when named so.\n    pub vendor: u16,\n    /// Its device ID, when named so.\n    pub device: u16,\n    /// Which of the functions with those IDs (from 0).\n    pub index: u8,\n    /// The owner's ports (first, last): where its I/O BAR goes.\n    pub ports: Option<(u16, u16)>,\n    /// The owner's memory ranges (base, bytes): what its memory BARs must hold.\n    pub memory: &'static [(u64, u64)],\n    /// The owner's interrupt line: where its pin is routed.\n    pub irq: Option<u8>,\n    /// Whether it may master the bus (its owner gives it DMA memory).\n    pub bus_master: bool,\n}}\n/// The devices to place, in name order.\npub const PCI_DEVICES: &[PciDevice] = &["
        );
        for p in system::pci::placements(&file) {
            let (address, vendor, device, index) = match p.function {
                system::pci::PciName::Address { bus, dev, func } => {
                    (format!("Some(({bus}, {dev}, {func}))"), 0, 0, 0)
                }
                system::pci::PciName::Id { vendor, device, index } => {
                    ("None".to_string(), vendor, device, index)
                }
            };
            let ports = p.ports.map_or("None".to_string(), |(a, b)| format!("Some(({a:#x}, {b:#x}))"));
            let memory: Vec<String> =
                p.memory.iter().map(|(base, bytes)| format!("({base:#x}, {bytes:#x})")).collect();
            let irq = p.irq.map_or("None".to_string(), |i| format!("Some({i})"));
            let _ = writeln!(
                out,
                "    PciDevice {{ name: {:?}, owner: {:?}, address: {address}, vendor: {vendor:#06x}, device: {device:#06x}, index: {index}, ports: {ports}, memory: &[{}], irq: {irq}, bus_master: {} }},",
                p.device,
                p.owner,
                memory.join(", "),
                p.dma
            );
        }
        let _ = writeln!(out, "];");
    }
    // A network backend: its guests' ports, by badge bit.
    let ports: Vec<layout::NetPort> =
        layout::net_ports(&file).into_iter().filter(|p| p.backend == component).collect();
    if !ports.is_empty() {
        let _ = writeln!(
            out,
            "/// Slots of each network pipe.\npub const NET_PIPE_SLOTS: u32 = {};\n/// Bytes of each network pipe: a guest's region is its tx pipe, then its rx pipe.\npub const NET_PIPE_BYTES: usize = {:#x};",
            layout::NET_PIPE_SLOTS,
            layout::net_pipe_bytes()
        );
        let _ = writeln!(
            out,
            "/// A guest whose network this component switches: (guest, region address, region bytes, its card's MAC, its VMM's notification).\npub type Net = (&'static str, usize, usize, [u8; 6], {});\n/// The guests whose networks this component switches, client `i` signalling bit `i` of `SIGNAL`.\npub const NETS: &[Net] = &[",
            cap_type("Notification")
        );
        for port in &ports {
            let region = layout::region_layout(&file)
                .into_iter()
                .find(|p| p.name == crate::schema::net_region_name(&port.guest));
            let signal = format!("{}_signal", layout::vmm_name(&port.guest));
            let slot = entries.iter().find(|e| e.1 == signal).map(|e| e.0);
            if let (Some(region), Some(slot), Some(mac)) = (region, slot, port.mac) {
                let _ = writeln!(
                    out,
                    "    ({:?}, {:#x}, {:#x}, [{}], {}),",
                    port.guest,
                    region.vaddr,
                    region.bytes(),
                    mac.iter().map(|b| format!("{b:#04x}")).collect::<Vec<_>>().join(", "),
                    cap_value(slot)
                );
            }
        }
        let _ = writeln!(out, "];");
        let on_request =
            ports.iter().any(|p| file.guests.iter().any(|(k, g)| *k.get_ref() == p.guest && g.on_request()));
        let _ = writeln!(
            out,
            "/// Whether a guest it serves starts on request: its VMM comes and goes, so the component keeps serving when every VMM closed its pipes.\npub const SERVES_ON_REQUEST_GUESTS: bool = {on_request};"
        );
    }
    let _ = writeln!(
        out,
        "/// Every shared region and device MMIO range this component maps: (name, address, bytes, rights)."
    );
    let _ = writeln!(out, "pub const REGIONS: &[(&str, usize, usize, &str)] = &[");
    for (name, vaddr, bytes, mode) in &regions {
        let _ = writeln!(out, "    ({name:?}, {vaddr:#x}, {bytes:#x}, {mode:?}),");
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(out, "/// Every capability this component was given: (name, slot, what).");
    let _ = writeln!(out, "pub const CAPS: &[(&str, u64, &str)] = &[");
    for (slot, name, what) in &entries {
        let _ = writeln!(out, "    ({name:?}, {slot}, {what:?}),");
    }
    let _ = writeln!(out, "];");
    Ok(out)
}

/// What the toolstack tells an operator (`cleave ctl`) about the system it was built for:
/// every component (name, and what it is: its lifetime, or the guest a VMM emulates
/// devices for), every guest (name, RAM bytes, image), the privilege table and each
/// guest's exposure, as `cleave privileges` and `cleave exposure` print them. Generated
/// as Rust constants into the toolstack's `OUT_DIR/facts.rs`.
pub fn toolstack_facts_source(system_toml: &Path) -> Result<String, String> {
    use cleave_capdl::model::Lifetime;
    let text = std::fs::read_to_string(system_toml)
        .map_err(|e| format!("cannot read {}: {e}", system_toml.display()))?;
    let file = system::load(&text)
        .map_err(|e| error::render_plain(&e, &system_toml.display().to_string(), &text))?;
    let compiled = compile::compile(&file);
    let mut out = format!("// Generated from {} for the toolstack. Do not edit.\n", system_toml.display());
    out.push_str("/// Every component: (name, what it is).\npub const COMPONENTS: &[(&str, &str)] = &[\n");
    for o in &compiled.spec.objects {
        let (Some(name), ObjectKind::Tcb(tcb)) = (o.name.strip_suffix("_tcb"), &o.kind) else { continue };
        let guest = file.guests.keys().map(|g| g.get_ref()).find(|g| layout::vmm_name(g) == name);
        let what = match (guest, tcb.lifetime) {
            (Some(g), _) => format!("device emulation for guest {g}"),
            (None, Some(Lifetime::Disposable)) => "disposable".to_string(),
            (None, Some(Lifetime::RestartEvery { ms })) => format!("restarted every {ms} ms"),
            (None, Some(Lifetime::PerRequest)) => "rolled back after every request".to_string(),
            (None, Some(Lifetime::Persistent) | None) => "persistent".to_string(),
        };
        let _ = writeln!(out, "    ({name:?}, {what:?}),");
    }
    out.push_str(
        "];\n/// Every guest: (name, RAM bytes, image, whether it starts on request).\npub const GUESTS: &[(&str, u64, &str, bool)] = &[\n",
    );
    for (name, g) in &file.guests {
        let bytes = crate::schema::parse_size(g.memory.get_ref()).unwrap_or(0);
        let _ = writeln!(
            out,
            "    ({:?}, {bytes}, {:?}, {}),",
            name.get_ref(),
            g.image.get_ref(),
            g.on_request()
        );
    }
    out.push_str(
        "];\n/// Every guest whose console the toolstack relays (`console = \"ctl\"`): (name, its console page's address, bytes).\npub const CONSOLES: &[(&str, usize, usize)] = &[\n",
    );
    let places = layout::region_layout(&file);
    for (name, g) in &file.guests {
        if !g.console_relayed() {
            continue;
        }
        let region = crate::schema::console_region_name(name.get_ref());
        if let Some(place) = places.iter().find(|p| p.name == region) {
            let _ = writeln!(out, "    ({:?}, {:#x}, {:#x}),", name.get_ref(), place.vaddr, place.bytes());
        }
    }
    let _ = writeln!(
        out,
        "];\n/// Where the memory table's page is mapped (`COMPONENT BYTES` lines, then `control-plane BYTES`; NUL after).\npub const MEMORY_PAGE: usize = {:#x};",
        layout::TOOLSTACK_MEMORY_PAGE
    );
    let privileges = crate::privileges::table(&compiled.spec);
    let _ = writeln!(out, "/// `cleave privileges`.\npub const PRIVILEGES: &str = {privileges:?};");
    out.push_str("/// Per guest, `cleave exposure GUEST`.\npub const EXPOSURE: &[(&str, &str)] = &[\n");
    for name in file.guests.keys() {
        let list = crate::exposure::exposure(&file, name.get_ref()).unwrap_or_default();
        let text: String = list.iter().map(|(c, why)| format!("{c}: {why}\n")).collect();
        let _ = writeln!(out, "    ({:?}, {text:?}),", name.get_ref());
    }
    out.push_str("];\n");
    Ok(out)
}

/// Rust source of a guest VMM's fixed layout: its capabilities, typed, in the slots every
/// VMM's CNode has ([`layout::VMM_SLOTS`]), where its guest's RAM and its configuration page
/// are mapped, and the name of the guest image built into it.
pub fn vmm_layout_source(image_name: &str) -> String {
    let mut out = String::from("// Generated by cleave-system for the VMM component. Do not edit.\n");
    for (i, ((name, what), kind)) in layout::VMM_SLOTS.iter().zip(layout::VMM_SLOT_KINDS).enumerate() {
        let _ = writeln!(
            out,
            "/// `{name}`: {what}.\npub const {}: {} = {};",
            constant_name(name),
            cap_type(kind),
            cap_value(i as u64 + 1)
        );
    }
    let _ = writeln!(
        out,
        "/// `console`: the machine's second serial port, when the guest's console is there.\npub const CONSOLE: {} = {};",
        cap_type("IoPort"),
        cap_value(layout::VMM_CONSOLE_SLOT)
    );
    let _ = writeln!(
        out,
        "/// `signal`: its own notification, bound to its thread (its disk's backend signals it with bit {}, its network's with NET_BADGE).\npub const SIGNAL: {} = {};\n/// The badge bit of the disk's backend in `SIGNAL`.\npub const DISK_BADGE: u64 = {};\n/// `disk`: its disk's backend's notification, when the guest has a disk.\npub const DISK: {} = {};",
        layout::VMM_DISK_BADGE,
        cap_type("Notification"),
        cap_value(layout::VMM_SIGNAL_SLOT),
        layout::VMM_DISK_BADGE,
        cap_type("Notification"),
        cap_value(layout::VMM_DISK_SLOT)
    );
    let _ = writeln!(
        out,
        "/// The badge bit of the network's backend in `SIGNAL`.\npub const NET_BADGE: u64 = {};\n/// `net`: its network's backend's notification, when the guest has a network.\npub const NET: {} = {};",
        layout::VMM_NET_BADGE,
        cap_type("Notification"),
        cap_value(layout::VMM_NET_SLOT)
    );
    let _ = writeln!(
        out,
        "/// `gone`: the supervisor's notification, when the guest uses a restartable I/O backend: signalled once the guest has stopped.\npub const GONE: {} = {};",
        cap_type("Notification"),
        cap_value(layout::VMM_GONE_SLOT)
    );
    let _ = writeln!(
        out,
        "/// Where the guest's RAM is mapped.\npub const GUEST_RAM: u64 = {:#x};\n/// Where the configuration page is mapped.\npub const CONFIG: u64 = {:#x};\n/// Its size in bytes.\npub const CONFIG_SIZE: usize = {:#x};\n/// The guest image built into this VMM.\npub const IMAGE_NAME: &str = {image_name:?};",
        layout::GUEST_RAM_BASE,
        layout::VMM_CONFIG,
        layout::MAX_VMM_CONFIG,
    );
    out
}

/// For a build script: copies the guest image `CLEAVE_GUEST_IMAGE` names (cargo xtask builds
/// the guest first) to `OUT_DIR/guest.elf`, or writes an empty one without it (the program
/// then says it has no guest), and returns the image's file name (empty without one).
/// Panics, a build script's way to fail, if the named file cannot be read.
pub fn embed_guest_image() -> String {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let target = Path::new(&out).join("guest.elf");
    println!("cargo:rerun-if-env-changed=CLEAVE_GUEST_IMAGE");
    match std::env::var("CLEAVE_GUEST_IMAGE") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("cannot read CLEAVE_GUEST_IMAGE {path}: {e}"));
            Path::new(&path).file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string()
        }
        Err(_) => {
            std::fs::write(&target, []).expect("writing an empty guest image");
            String::new()
        }
    }
}

/// The type of a capability constant of `kind` (a type in `cleave_rt::cap::kind`).
fn cap_type(kind: &str) -> String {
    format!("::cleave_rt::Cap<::cleave_rt::cap::kind::{kind}>")
}

/// The value of a capability constant for `slot`.
fn cap_value(slot: u64) -> String {
    format!("::cleave_rt::Cap::from_cptr({slot})")
}

/// The capability kind (`cleave_rt::cap::kind`) of what each slot of `component`'s CNode
/// holds, read from the compiled spec: the one place that says what each capability is.
fn slot_kinds(spec: &Spec, component: &str) -> BTreeMap<u64, &'static str> {
    let Some(cnode) = spec.caps.get(&ObjRef::named(&format!("{component}_cnode"))) else {
        return BTreeMap::new();
    };
    cnode.iter().map(|(&slot, cap)| (slot, kind_of(spec, &cap.target))).collect()
}

/// The `cleave_rt` kind of a capability to `target`.
fn kind_of(spec: &Spec, target: &Target) -> &'static str {
    let object = match target {
        Target::Object(r) => spec.objects.iter().find(|o| o.name == r.name),
        Target::IrqControl => return "IrqControl",
        Target::AsidControl => return "AsidControl",
        _ => return "Unknown",
    };
    match object.map(|o| &o.kind) {
        Some(ObjectKind::Endpoint) => "Endpoint",
        Some(ObjectKind::Notification) => "Notification",
        Some(ObjectKind::Tcb(_)) => "Tcb",
        Some(ObjectKind::CNode { .. }) => "CNode",
        Some(ObjectKind::Untyped { .. }) => "Untyped",
        Some(ObjectKind::Frame { .. }) => "Frame",
        Some(ObjectKind::PageTable | ObjectKind::PageDirectory | ObjectKind::Pdpt) => "PageTable",
        Some(ObjectKind::Pml4) => "VSpace",
        Some(ObjectKind::Irq | ObjectKind::IoApicIrq { .. } | ObjectKind::MsiIrq { .. }) => "IrqHandler",
        Some(ObjectKind::IoPorts { .. }) => "IoPort",
        Some(ObjectKind::AsidPool { .. }) => "AsidPool",
        Some(ObjectKind::Vcpu) => "Vcpu",
        Some(ObjectKind::EptTable { level: 4 }) => "EptRoot",
        Some(ObjectKind::EptTable { .. }) => "EptTable",
        _ => "Unknown",
    }
}

/// The supervisor's tables, typed: what it restarts and what it disposes of.
fn supervisor_tables(out: &mut String, compiled: &compile::Compiled) {
    let _ = writeln!(
        out,
        "/// A component restarted on a timer, or rolled back after every request (`period_ms` 0).
#[derive(Clone, Copy)]
pub struct Restart {{
    /// Its name.
    pub component: &'static str,
    /// Its thread.
    pub tcb: {tcb},
    /// Where its writable memory is mapped here.
    pub memory: usize,
    /// Where the pristine copy of that memory's first pages is mapped here (read only).
    pub pristine: usize,
    /// Bytes of the pristine copy (the rest of the memory is zero at start).
    pub pristine_bytes: usize,
    /// Bytes of writable memory.
    pub bytes: usize,
    /// The period in ms; 0 for a rollback after every request.
    pub period_ms: u64,
    /// The badge its faults (and finished requests) arrive with.
    pub fault_badge: u64,
    /// For a guest I/O backend, the bits its guests' VMMs set on `done` once their guests
    /// have stopped (it may end only when all have); 0 for any other component.
    pub guests: u64,
}}
/// A disposable component: destroyed (its untyped memory revoked) once it signals `done`,
/// or at its deadline.
#[derive(Clone, Copy)]
pub struct Disposable {{
    /// Its name.
    pub component: &'static str,
    /// The untyped memory all of it was made from.
    pub untyped: {untyped},
    /// The bit its signal on `done` sets.
    pub badge: u64,
    /// Its deadline in ms from boot; 0 for none.
    pub deadline_ms: u64,
}}
/// The bits of `done` that guests' VMMs set once their guests have stopped.
pub const GONE_BITS: u64 = {gone:#x};
/// The components restarted or rolled back.
pub const RESTARTS: &[Restart] = &[",
        tcb = cap_type("Tcb"),
        untyped = cap_type("Untyped"),
        gone = (0..layout::MAX_GONE_GUESTS).filter_map(layout::gone_badge).fold(0u64, |m, b| m | b),
    );
    for r in &compiled.restarts {
        let _ = writeln!(
            out,
            "    Restart {{ component: {:?}, tcb: {}, memory: {:#x}, pristine: {:#x}, pristine_bytes: {:#x}, bytes: {:#x}, period_ms: {}, fault_badge: {}, guests: {:#x} }},",
            r.component,
            cap_value(r.tcb_slot),
            r.memory,
            r.pristine,
            r.pristine_bytes,
            r.bytes,
            r.period_ms,
            r.badge,
            r.guests
        );
    }
    let _ = writeln!(
        out,
        "];\n/// The disposable components, in the order of their bits.\npub const DISPOSABLE: &[Disposable] = &["
    );
    for d in &compiled.disposables {
        let _ = writeln!(
            out,
            "    Disposable {{ component: {:?}, untyped: {}, badge: {:#x}, deadline_ms: {} }},",
            d.component,
            cap_value(d.untyped_slot),
            d.badge,
            d.deadline_ms
        );
    }
    let _ = writeln!(out, "];");
}

/// `xs-ring` -> `XS_RING`.
fn constant_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect::<String>()
        .trim_end_matches('_')
        .to_string()
}

/// The environment variable naming the system description a build is for (an absolute
/// path; `cargo xtask` sets it from `--system`, as it sets `CLEAVE_IMAGE` for the loader).
pub const SYSTEM_VAR: &str = "CLEAVE_SYSTEM";

/// The environment variable naming the component a build is for when it is not the
/// crate's own name: an instance of a per-guest component (`blkback-alice`), whose
/// program is the crate's, built with the instance's constants.
pub const COMPONENT_VAR: &str = "CLEAVE_COMPONENT";

/// The system description a component crate at `manifest_dir` is built for: `system`
/// (from [`SYSTEM_VAR`]) when set, otherwise the nearest `system.toml` in or above the
/// crate's directory (the repository's for a product component, an example's own for its
/// demos, the crate's own for a component the repository's system does not have yet, such
/// as blkback), so that a plain `cargo build` or `cargo clippy` of one crate still works.
pub fn system_for(manifest_dir: &Path, system: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    if let Some(path) = system {
        return Ok(PathBuf::from(path));
    }
    manifest_dir.ancestors().map(|dir| dir.join("system.toml")).find(|path| path.is_file()).ok_or_else(|| {
        format!("{SYSTEM_VAR} is not set and no system.toml lies above {}", manifest_dir.display())
    })
}

/// The whole build script of a component crate: generates `caps.rs` in `OUT_DIR` for the
/// crate's package name from the system being built ([`system_for`]), and links the binary
/// with the user-program layout `cleave-rt` publishes. Panics with the reason (a build
/// script's way to fail the build), among them a system that has no such component.
pub fn component_build_script() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
    println!("cargo:rerun-if-env-changed={SYSTEM_VAR}");
    let chosen = std::env::var_os(SYSTEM_VAR);
    let system = system_for(Path::new(&var("CARGO_MANIFEST_DIR")), chosen.as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rerun-if-changed={}", system.display());
    // One crate's program, built for each instance of a per-guest component
    // (`COMPONENT_VAR` names the instance), or for the component the crate is.
    println!("cargo:rerun-if-env-changed={COMPONENT_VAR}");
    let package = var("CARGO_PKG_NAME");
    let name = std::env::var(COMPONENT_VAR).unwrap_or_else(|_| package.clone());
    if name != package {
        let text = std::fs::read_to_string(&system).unwrap_or_default();
        let file = system::load(&text).ok();
        let built_from = file.as_ref().and_then(|f| {
            f.components.iter().find(|(k, _)| *k.get_ref() == name).map(|(k, c)| c.package(k.get_ref()))
        });
        if built_from.as_deref() != Some(package.as_str()) {
            panic!(
                "{COMPONENT_VAR}={name}: {} has no instance of that name built from crate `{package}`",
                system.display()
            );
        }
    }
    let source = caps_source(&system, &name)
        .unwrap_or_else(|e| panic!("component `{name}` cannot be built for {}: {e}", system.display()));
    std::fs::write(Path::new(&var("OUT_DIR")).join("caps.rs"), source).expect("writing caps.rs");
    println!("cargo:rustc-link-arg-bins=-T{}", var("DEP_CLEAVE_RT_LINKER_SCRIPT"));
    println!("cargo:rustc-link-arg-bins=--no-pie");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_every_ring_by_badge_and_clients_their_own() {
        let dir = std::env::temp_dir().join(format!("cleave-codegen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("system.toml");
        std::fs::write(
            &path,
            "[components.s]\n[components.a]\n[components.b]\n[channels.q]\nkind = \"endpoint\"\nserver = \"s\"\nclients = [\"a\", \"b\"]\nbadges = { b = 7 }\nring = \"8K\"\n",
        )
        .unwrap();
        let server = caps_source(&path, "s").unwrap();
        assert!(server.contains("pub const RINGS_Q: &[(u64, usize, usize)] = &[\n    (1, 0x8000000000, 0x2000),\n    (7, 0x8000003000, 0x2000),\n];"), "{server}");
        let b = caps_source(&path, "b").unwrap();
        assert!(b.contains("pub const RING_Q: usize = 0x8000003000;"), "{b}");
        assert!(!b.contains("0x8000000000"), "b knows nothing of a's ring: {b}");
        assert!(caps_source(&path, "nobody").unwrap_err().contains("declares no component `nobody`"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn each_per_guest_instance_is_generated_its_own_disk_and_guest_only() {
        let path =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../systems/linux-disks-per-guest.toml"));
        let alice = caps_source(path, "blkback-alice").unwrap();
        let bob = caps_source(path, "blkback-bob").unwrap();
        assert!(alice.contains("pub const COMPONENT: &str = \"blkback-alice\";"), "{alice}");
        assert!(
            alice.contains("pub const MACHINE_DISK_PORT_RANGE: (u16, u16) = (0xc000, 0xc07f);"),
            "{alice}"
        );
        assert!(bob.contains("pub const MACHINE_DISK_PORT_RANGE: (u16, u16) = (0xc080, 0xc0ff);"), "{bob}");
        // Its one guest, from sector 0 of its own disk; nothing of the other's.
        assert!(alice.contains("    (\"alice\", 0x"), "{alice}");
        assert!(alice.contains(", 0, 32768, ::cleave_rt::Cap::from_cptr("), "{alice}");
        assert!(bob.contains(", 0, 16384, ::cleave_rt::Cap::from_cptr("), "{bob}");
        assert!(!alice.contains("bob"), "{alice}");
        assert!(!bob.contains("alice"), "{bob}");
        // The per-guest component itself is no component: only its instances are built.
        assert!(caps_source(path, "blkback").unwrap_err().contains("declares no component `blkback`"));
    }

    #[test]
    fn capabilities_are_typed_by_what_the_spec_makes() {
        let dir = std::env::temp_dir().join(format!("cleave-codegen-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("system.toml");
        std::fs::write(
            &path,
            "[components.s]\n[components.c]\n[components.d]\nlifetime = \"disposable\"\ndeadline = \"40ms\"\n[components.r]\nrestart = { every = \"50ms\" }\n[channels.q]\nkind = \"endpoint\"\nserver = \"s\"\nclients = [\"c\"]\n[channels.n]\nkind = \"notification\"\nserver = \"s\"\nclients = [\"c\"]\n[guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\n",
        )
        .unwrap();
        let c = caps_source(&path, "c").unwrap();
        assert!(c.contains("pub const Q: ::cleave_rt::Cap<::cleave_rt::cap::kind::Endpoint> = ::cleave_rt::Cap::from_cptr("), "{c}");
        assert!(c.contains("pub const N: ::cleave_rt::Cap<::cleave_rt::cap::kind::Notification>"), "{c}");
        assert!(!c.contains("kind::Unknown"), "{c}");
        let sup = caps_source(&path, layout::SUPERVISOR).unwrap();
        assert!(
            sup.contains("Disposable { component: \"d\", untyped: ::cleave_rt::Cap::from_cptr("),
            "{sup}"
        );
        assert!(sup.contains("deadline_ms: 40 }"), "{sup}");
        assert!(sup.contains("Restart { component: \"r\", tcb: ::cleave_rt::Cap::from_cptr("), "{sup}");
        assert!(sup.contains("period_ms: 50,"), "{sup}");
        assert!(
            sup.contains(
                "pub const FAULT_ENDPOINT: Option<::cleave_rt::Cap<::cleave_rt::cap::kind::Endpoint>> = Some("
            ),
            "{sup}"
        );
        assert!(!sup.contains("kind::Unknown"), "{sup}");
        // Each disposable's untyped constant names the slot the table calls `D-untyped`.
        let file = system::load(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let compiled = compile::compile(&file);
        let table = &compiled.tables[layout::SUPERVISOR].entries;
        for d in &compiled.disposables {
            assert!(table.iter().any(|e| e.0 == d.untyped_slot && e.1 == format!("{}-untyped", d.component)));
            assert_eq!(slot_kinds(&compiled.spec, layout::SUPERVISOR)[&d.untyped_slot], "Untyped");
        }
        // A VMM's fixed slots hold what the spec puts there.
        let kinds = slot_kinds(&compiled.spec, &layout::vmm_name("g"));
        let fixed: Vec<&str> = (1..=layout::VMM_SLOTS.len() as u64).map(|slot| kinds[&slot]).collect();
        assert_eq!(fixed, layout::VMM_SLOT_KINDS.to_vec());
        assert_eq!(kinds[&layout::VMM_SIGNAL_SLOT], "Notification");
        let vmm = vmm_layout_source("guest-hello");
        assert!(vmm.contains("pub const VCPU: ::cleave_rt::Cap<::cleave_rt::cap::kind::Vcpu> = ::cleave_rt::Cap::from_cptr(1);"), "{vmm}");
        assert!(vmm.contains("pub const TCB: ::cleave_rt::Cap<::cleave_rt::cap::kind::Tcb> = ::cleave_rt::Cap::from_cptr(3);"), "{vmm}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_chosen_system_wins_and_otherwise_the_nearest_one_above_the_crate() {
        let dir = std::env::temp_dir().join(format!("cleave-codegen-system-{}", std::process::id()));
        let crate_dir = dir.join("examples/demo/part");
        std::fs::create_dir_all(&crate_dir).unwrap();
        std::fs::write(dir.join("system.toml"), "").unwrap();
        assert_eq!(system_for(&crate_dir, None).unwrap(), dir.join("system.toml"));
        std::fs::write(dir.join("examples/demo/system.toml"), "").unwrap();
        assert_eq!(system_for(&crate_dir, None).unwrap(), dir.join("examples/demo/system.toml"));
        let chosen = std::ffi::OsStr::new("/somewhere/systems/x.toml");
        assert_eq!(system_for(&crate_dir, Some(chosen)).unwrap(), PathBuf::from("/somewhere/systems/x.toml"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
