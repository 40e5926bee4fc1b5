//! Devices named by what they are (`pci = "1af4:1001"`) and PCIBack, the component cleave
//! adds to place them: the rules for such devices, and [`expand`], which adds PCIBack
//! (Xoar's PCI Config) with the only capabilities it needs: PCI configuration space
//! (ports 0xCF8-0xCFF), the interrupt controllers' trigger-mode registers (ELCR,
//! 0x4D0-0x4D1), and a disposable's lifetime. At boot it places each such device's I/O BAR
//! at the ports its owner holds and routes its interrupt to its owner's line, says it is
//! done and is destroyed, so that after boot no component holds configuration space.

use crate::error::SystemError;
use crate::schema::{Component, Device, SystemFile, parse_ports};
use crate::system::span;
use toml::Spanned;

/// The component cleave adds when a device is named by what it is, and its program.
pub const PCIBACK: &str = "pciback";
/// PCI configuration space, the device cleave gives PCIBack.
pub const PCI_CONFIG: &str = "pci-config";
/// The ELCR, the other device cleave gives PCIBack.
pub const PIC_ELCR: &str = "pic-elcr";
/// PCI configuration space: configuration mechanism #1's address and data ports.
pub const CONFIG_PORTS: (u64, u64) = (0xcf8, 0xcff);
/// The interrupt controllers' trigger-mode registers.
pub const ELCR_PORTS: (u64, u64) = (0x4d0, 0x4d1);
/// PCIBack's priority: above every device owner's (they may start only once it has run),
/// below the supervisor's, which destroys it.
pub const PCIBACK_PRIORITY: u64 = 249;
/// How long PCIBack has to say it is done before the supervisor destroys it anyway.
pub const PCIBACK_DEADLINE: &str = "1s";
/// The interrupt lines the PIIX can route a PCI interrupt to.
pub const ROUTABLE_IRQS: [u64; 11] = [3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15];

/// A PCI function as `system.toml` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciName {
    /// Vendor and device ID, and which of the functions with them (from 0).
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
        /// Which one.
        index: u8,
    },
    /// Bus, device and function.
    Address {
        /// Bus.
        bus: u8,
        /// Device (slot).
        dev: u8,
        /// Function.
        func: u8,
    },
}

/// Reads `"1af4:1001"`, `"1af4:1001#1"` or `"00:05.0"` (hex, as `lspci` writes them).
pub fn parse_pci(text: &str) -> Option<PciName> {
    let hex16 = |s: &str| (s.len() == 4).then(|| u16::from_str_radix(s, 16).ok()).flatten();
    let hex8 = |s: &str| (s.len() == 2).then(|| u8::from_str_radix(s, 16).ok()).flatten();
    if let Some((bus, rest)) = text.split_once(':')
        && let Some((dev, func)) = rest.split_once('.')
    {
        let (bus, dev) = (hex8(bus)?, hex8(dev)?);
        let func = (func.len() == 1).then(|| func.parse::<u8>().ok()).flatten()?;
        return (dev < 32 && func < 8).then_some(PciName::Address { bus, dev, func });
    }
    let (ids, index) = match text.split_once('#') {
        Some((ids, n)) => (ids, n.parse::<u8>().ok().filter(|_| n.chars().all(|c| c.is_ascii_digit()))?),
        None => (text, 0),
    };
    let (vendor, device) = ids.split_once(':')?;
    let (vendor, device) = (hex16(vendor)?, hex16(device)?);
    (vendor != 0xffff).then_some(PciName::Id { vendor, device, index })
}

/// The rules for devices named by what they are, on the description as written: the name
/// reads; no two devices name one function; each gives its owner `io-ports` (a power of
/// two, aligned to its size, as an I/O BAR is; PCIBack moves the BAR there) or `mmio`
/// (which its memory BARs must hold where the firmware put them: the loader maps it) or
/// both, and an `irq`, if any, the PIIX can route; its owner's priority is below
/// PCIBack's; and nothing takes the names cleave adds.
pub(super) fn check(file: &SystemFile, errors: &mut Vec<SystemError>) {
    // Configuration space is PCIBack's alone, and only while the system boots.
    let added = |owner: &str| file.components.iter().any(|(k, c)| k.get_ref() == owner && c.added);
    for (name, d) in file.devices.iter().filter(|(_, d)| !added(d.owner.get_ref())) {
        let Some(ports) = &d.io_ports else { continue };
        if let Some((first, last)) = parse_ports(ports.get_ref())
            && [CONFIG_PORTS, ELCR_PORTS].iter().any(|&(a, b)| first <= b && a <= last)
        {
            errors.push(
                SystemError::new(
                    format!("devices.{}.io-ports", name.get_ref()),
                    span(ports),
                    format!(
                        "ports {first:#x}-{last:#x} include PCI configuration space (0xcf8-0xcff) or the ELCR (0x4d0-0x4d1), which only PCIBack holds, and only at boot"
                    ),
                )
                .help("name the device with `pci = \"vendor:device\"`: PCIBack places it for its owner"),
            );
        }
    }
    let mut named: Vec<(PciName, &str)> = Vec::new();
    for (name, d) in &file.devices {
        let Some(pci) = &d.pci else { continue };
        let dn = name.get_ref().as_str();
        let key = |field: &str| format!("devices.{dn}.{field}");
        match parse_pci(pci.get_ref()) {
            None => errors.push(
                SystemError::new(key("pci"), span(pci), format!("`{}` names no PCI function", pci.get_ref()))
                    .help("write vendor:device (\"1af4:1001\"), vendor:device#N for the Nth such function (from 0), or bus:device.function (\"00:05.0\")"),
            ),
            Some(PciName::Address { bus, .. }) if bus != 0 => errors.push(SystemError::new(
                key("pci"),
                span(pci),
                format!("`{}` is on bus {bus:#04x}: PCIBack scans bus 0 only", pci.get_ref()),
            )),
            Some(id) => {
                if let Some((_, other)) = named.iter().find(|(n, _)| *n == id) {
                    errors.push(SystemError::new(
                        key("pci"),
                        span(pci),
                        format!("device `{other}` is already that function: one device, one owner"),
                    ));
                }
                named.push((id, dn));
            }
        }
        match d.io_ports.as_ref().map(|p| (p, parse_ports(p.get_ref()))) {
            None if d.mmio.is_empty() => errors.push(SystemError::new(
                key("pci"),
                span(pci),
                format!("device `{dn}` names a PCI function but gives its owner neither `io-ports` (where PCIBack puts its I/O BAR) nor `mmio` (what its memory BARs must hold)"),
            )),
            None => {}
            Some((p, Some((first, last)))) => {
                let size = last - first + 1;
                if !size.is_power_of_two() || !first.is_multiple_of(size) {
                    errors.push(
                        SystemError::new(
                            key("io-ports"),
                            span(p),
                            format!("ports {first:#x}-{last:#x} cannot hold an I/O BAR: not a power of two aligned to its size"),
                        )
                        .help("for a legacy virtio device, 128 ports from a multiple of 128: \"0xc000-0xc07f\""),
                    );
                }
            }
            Some((_, None)) => {} // the devices check says why
        }
        match &d.irq {
            None => {}
            Some(irq) if !ROUTABLE_IRQS.contains(irq.get_ref()) => errors.push(SystemError::new(
                key("irq"),
                span(irq),
                format!(
                    "IRQ {} is not one a PCI interrupt can be routed to (3-7, 9-12, 14, 15)",
                    irq.get_ref()
                ),
            )),
            Some(_) => {}
        }
        let owner = file.components.iter().find(|(k, _)| k.get_ref() == d.owner.get_ref()).map(|(_, c)| c);
        if let Some(p) = owner.and_then(|c| c.priority.as_ref()).filter(|p| *p.get_ref() >= PCIBACK_PRIORITY)
        {
            errors.push(SystemError::new(
                format!("components.{}.priority", d.owner.get_ref()),
                span(p),
                format!(
                    "`{}` owns PCI device `{dn}`, so its priority must be below PCIBack's ({PCIBACK_PRIORITY}), which places the device before it starts",
                    d.owner.get_ref()
                ),
            ));
        }
    }
    // An ID and an address may be one function: a description names them one way.
    let by_address = named.iter().find(|(n, _)| matches!(n, PciName::Address { .. }));
    let by_id = named.iter().find(|(n, _)| matches!(n, PciName::Id { .. }));
    if let (Some((_, a)), Some((_, b))) = (by_address, by_id) {
        let (_, d) = file.devices.iter().find(|(k, _)| k.get_ref() == a).expect("named from the devices");
        if let Some(pci) = &d.pci {
            errors.push(SystemError::new(
                format!("devices.{a}.pci"),
                span(pci),
                format!("device `{a}` names its function by address and `{b}` by ID, which could be the same function: name them one way"),
            ));
        }
    }
    if named.is_empty() {
        return;
    }
    // Once cleave has added them (the description `load` checks again), they are its own.
    let added = |owner: &str| file.components.iter().any(|(k, c)| k.get_ref() == owner && c.added);
    for (section, taken) in [
        (
            "components",
            file.components.iter().find(|(k, c)| k.get_ref() == PCIBACK && !c.added).map(|(k, _)| k),
        ),
        (
            "devices",
            file.devices
                .iter()
                .find(|(k, d)| {
                    (*k.get_ref() == PCI_CONFIG || *k.get_ref() == PIC_ELCR) && !added(d.owner.get_ref())
                })
                .map(|(k, _)| k),
        ),
    ] {
        if let Some(k) = taken {
            errors.push(SystemError::new(
                format!("{section}.{}", k.get_ref()),
                span(k),
                format!(
                    "`{}` is a name cleave takes for PCIBack, which places this system's PCI devices",
                    k.get_ref()
                ),
            ));
        }
    }
}

/// The description with PCIBack added, if any device is named by what it is: the
/// component (disposable, [`PCIBACK_PRIORITY`], [`PCIBACK_DEADLINE`]) and its two devices,
/// configuration space and the ELCR. Spans point at the first such device's `pci`.
pub fn expand(mut file: SystemFile) -> SystemFile {
    let Some(at) = file.devices.values().find_map(|d| d.pci.as_ref()).map(Spanned::span) else {
        return file;
    };
    let text = |s: &str| Spanned::new(at.clone(), s.to_string());
    let component = Component {
        binary: Some(text(PCIBACK)),
        priority: Some(Spanned::new(at.clone(), PCIBACK_PRIORITY)),
        stack: None,
        memory: None,
        lifetime: Some(text("disposable")),
        deadline: Some(text(PCIBACK_DEADLINE)),
        restart: None,
        instances: None,
        ends_run: None,
        console: None,
        instance: None,
        added: true,
    };
    file.components.insert(text(PCIBACK), component);
    let config = format!("{:#x}-{:#x}", CONFIG_PORTS.0, CONFIG_PORTS.1);
    let elcr = format!("{:#x}-{:#x}", ELCR_PORTS.0, ELCR_PORTS.1);
    for (name, ports) in [(PCI_CONFIG, config.as_str()), (PIC_ELCR, elcr.as_str())] {
        let device = Device {
            owner: text(PCIBACK),
            pci: None,
            irq: None,
            io_ports: Some(text(ports)),
            mmio: Vec::new(),
            dma: None,
        };
        file.devices.insert(text(name), device);
    }
    file
}

/// A device PCIBack places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The device's name.
    pub device: String,
    /// Its owner.
    pub owner: String,
    /// The function it is.
    pub function: PciName,
    /// The owner's ports (first, last): where its I/O BAR goes.
    pub ports: Option<(u64, u64)>,
    /// The owner's memory ranges (base, bytes), which its memory BARs must hold.
    pub memory: Vec<(u64, u64)>,
    /// The owner's interrupt line.
    pub irq: Option<u64>,
    /// Whether the owner gives it DMA memory (so it may master the bus).
    pub dma: bool,
}

/// The devices PCIBack places, in name order.
pub fn placements(file: &SystemFile) -> Vec<Placement> {
    file.devices
        .iter()
        .filter_map(|(k, d)| {
            Some(Placement {
                device: k.get_ref().clone(),
                owner: d.owner.get_ref().clone(),
                function: parse_pci(d.pci.as_ref()?.get_ref())?,
                ports: d.io_ports.as_ref().and_then(|p| parse_ports(p.get_ref())),
                memory: d
                    .mmio
                    .iter()
                    .map(|m| (*m.base.get_ref(), crate::schema::parse_size(m.size.get_ref()).unwrap_or(0)))
                    .collect(),
                irq: d.irq.as_ref().map(|i| *i.get_ref()),
                dma: d.dma.is_some(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In every description in the repository, configuration space is held by PCIBack
    /// alone, a disposable component: no component holds it after boot.
    #[test]
    fn no_component_of_the_repositorys_systems_keeps_configuration_space() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut paths = vec![root.join("system.toml")];
        for dir in [
            "systems",
            "examples/lifetimes",
            "components/blkback",
            "components/pciback",
            "components/netback",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "toml") && entry.file_name() != "Cargo.toml"
                {
                    paths.push(entry.path());
                }
            }
        }
        let mut with_pciback = 0;
        for path in &paths {
            let file = load(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            for (name, d) in &file.devices {
                let Some((first, last)) = d.io_ports.as_ref().and_then(|p| parse_ports(p.get_ref())) else {
                    continue;
                };
                if first <= CONFIG_PORTS.1 && CONFIG_PORTS.0 <= last {
                    let owner =
                        file.components.iter().find(|(k, _)| k.get_ref() == d.owner.get_ref()).unwrap().1;
                    assert!(
                        d.owner.get_ref() == PCIBACK && owner.added && owner.is_disposable(),
                        "{}: device `{}` gives configuration space to `{}`",
                        path.display(),
                        name.get_ref(),
                        d.owner.get_ref()
                    );
                    with_pciback += 1;
                }
            }
        }
        assert!(with_pciback >= 6, "only {with_pciback} of {} systems have PCIBack", paths.len());
    }

    #[test]
    fn pci_functions_are_named_by_ids_or_address() {
        assert_eq!(parse_pci("1af4:1001"), Some(PciName::Id { vendor: 0x1af4, device: 0x1001, index: 0 }));
        assert_eq!(parse_pci("1AF4:1001#2"), Some(PciName::Id { vendor: 0x1af4, device: 0x1001, index: 2 }));
        assert_eq!(parse_pci("00:05.0"), Some(PciName::Address { bus: 0, dev: 5, func: 0 }));
        for bad in [
            "",
            "1af4",
            "1af4:",
            "1af4:1001#",
            "1af4:1001#-1",
            "1af4:1001#+1",
            "1af4:10011",
            "ffff:1001",
            "00:20.0",
            "00:05.8",
            "0:5.0",
            "g0:05.0",
        ] {
            assert_eq!(parse_pci(bad), None, "{bad}");
        }
    }

    fn load(text: &str) -> Result<SystemFile, Vec<String>> {
        crate::system::load(text).map_err(|e| e.into_iter().map(|e| e.message).collect())
    }

    const DISK: &str = "[components.blk]\npriority = 120\n\
        [devices.disk]\nowner = \"blk\"\npci = \"1af4:1001\"\nio-ports = \"0xd000-0xd07f\"\nirq = 11\ndma = \"2M\"\n\
        [guests.g]\nmemory = \"2M\"\nimage = \"guest-hello\"\ndisk = { backend = \"blk\", size = \"4M\" }\n";

    #[test]
    fn a_pci_device_brings_pciback_with_configuration_space_alone() {
        let file = load(DISK).unwrap();
        let pciback = file.components.iter().find(|(k, _)| k.get_ref() == PCIBACK).map(|(_, c)| c).unwrap();
        assert!(pciback.is_disposable());
        let owned: Vec<(&str, &str)> =
            file.devices.iter().map(|(k, d)| (k.get_ref().as_str(), d.owner.get_ref().as_str())).collect();
        assert_eq!(owned, [("disk", "blk"), (PCI_CONFIG, PCIBACK), (PIC_ELCR, PCIBACK)]);
        assert_eq!(
            placements(&file),
            [Placement {
                device: "disk".into(),
                owner: "blk".into(),
                function: PciName::Id { vendor: 0x1af4, device: 0x1001, index: 0 },
                ports: Some((0xd000, 0xd07f)),
                memory: Vec::new(),
                irq: Some(11),
                dma: true,
            }]
        );
        // Without a PCI device, no PCIBack.
        let plain = load(&DISK.replace("pci = \"1af4:1001\"\n", "")).unwrap();
        assert!(plain.components.keys().all(|k| k.get_ref() != PCIBACK));
    }

    #[test]
    fn pci_devices_that_cannot_be_placed_are_refused() {
        let cases: &[(&str, &str, &str)] = &[
            ("pci = \"1af4:1001\"", "pci = \"virtio-blk\"", "`virtio-blk` names no PCI function"),
            (
                "pci = \"1af4:1001\"",
                "pci = \"01:00.0\"",
                "`01:00.0` is on bus 0x01: PCIBack scans bus 0 only",
            ),
            (
                "io-ports = \"0xd000-0xd07f\"",
                "io-ports = \"0xd040-0xd0bf\"",
                "ports 0xd040-0xd0bf cannot hold an I/O BAR: not a power of two aligned to its size",
            ),
            (
                "io-ports = \"0xd000-0xd07f\"",
                "io-ports = \"0xd000-0xd05f\"",
                "ports 0xd000-0xd05f cannot hold an I/O BAR: not a power of two aligned to its size",
            ),
            (
                "irq = 11",
                "irq = 13",
                "IRQ 13 is not one a PCI interrupt can be routed to (3-7, 9-12, 14, 15)",
            ),
            (
                "priority = 120",
                "priority = 249",
                "`blk` owns PCI device `disk`, so its priority must be below PCIBack's (249), which places the device before it starts",
            ),
            (
                "[components.blk]",
                "[components.pciback]\n[components.blk]",
                "`pciback` is a name cleave takes for PCIBack, which places this system's PCI devices",
            ),
        ];
        for (from, to, message) in cases {
            let text = DISK.replace(from, to);
            let errors = load(&text).unwrap_err();
            assert!(errors.iter().any(|e| e == message), "{to}: {errors:?}");
        }
        // Configuration space for a component of the description's own.
        let errors = load(&format!("{DISK}[devices.config]\nowner = \"blk\"\nio-ports = \"0xcfc-0xcff\"\n"))
            .unwrap_err();
        assert!(
            errors.iter().any(|e| e == "ports 0xcfc-0xcff include PCI configuration space (0xcf8-0xcff) or the ELCR (0x4d0-0x4d1), which only PCIBack holds, and only at boot"),
            "{errors:?}"
        );
        // One named by ID, one by address: maybe one function.
        let mixed = format!(
            "{DISK}[devices.again]\nowner = \"blk\"\npci = \"00:05.0\"\nio-ports = \"0xd080-0xd0ff\"\nirq = 10\n"
        );
        let errors = load(&mixed).unwrap_err();
        assert!(
            errors.iter().any(|e| e == "device `again` names its function by address and `disk` by ID, which could be the same function: name them one way"),
            "{errors:?}"
        );
        // Two devices for one function: two owners.
        let two = format!(
            "{DISK}[devices.again]\nowner = \"blk\"\npci = \"1af4:1001#0\"\nio-ports = \"0xd080-0xd0ff\"\nirq = 10\n"
        );
        let errors = load(&two).unwrap_err();
        assert!(
            errors.iter().any(|e| e == "device `again` is already that function: one device, one owner")
                || errors
                    .iter()
                    .any(|e| e == "device `disk` is already that function: one device, one owner"),
            "{errors:?}"
        );
    }
}
