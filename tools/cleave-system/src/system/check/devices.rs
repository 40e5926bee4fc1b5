//! `[devices.NAME]`: owners, interrupt lines, I/O ports and MMIO, none of them the
//! kernel's, the supervisor's clock or another device's.

use crate::error::SystemError;
use crate::layout::{DEVICE_WINDOW, DMA_WINDOW, PIT_PORTS};
use crate::schema::{SystemFile, parse_ports, parse_size};
use crate::system::span;
use cleave_abi::layout::{LARGE_PAGE_SIZE, PAGE_SIZE};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// The interrupt lines the kernel keeps (cascade, COM1: `cleave_abi::platform`).
pub const KERNEL_IRQS: [u64; 2] = {
    let [a, b] = cleave_abi::platform::KERNEL_IRQS;
    [a as u64, b as u64]
};
/// The I/O ports the kernel keeps (PICs and COM1: `cleave_abi::platform`).
pub const KERNEL_PORTS: [(u64, u64); 3] = {
    let [(a, b), (c, d), (e, f)] = cleave_abi::platform::KERNEL_PORTS;
    [(a as u64, b as u64), (c as u64, d as u64), (e as u64, f as u64)]
};

/// The device memory all devices take together, then each device against the components
/// there are and the devices before it.
pub(super) fn check(file: &SystemFile, components: &BTreeSet<&str>, errors: &mut Vec<SystemError>) {
    let is_component = |n: &str| components.contains(n);
    let mut device_space = 0u64;
    'devices: for (name, d) in &file.devices {
        for m in &d.mmio {
            let Some(size) = parse_size(m.size.get_ref()).filter(|n| *n > 0 && n.is_multiple_of(PAGE_SIZE))
            else {
                continue;
            };
            device_space = device_space.saturating_add(size);
            if device_space > DEVICE_WINDOW {
                errors.push(SystemError::new(
                    format!("devices.{}.mmio", name.get_ref()),
                    span(&m.size),
                    format!(
                        "MMIO of device `{}` does not fit: device MMIO shares {} MiB of address space",
                        name.get_ref(),
                        DEVICE_WINDOW >> 20
                    ),
                ));
                break 'devices;
            }
            device_space += PAGE_SIZE;
        }
    }
    // DMA memory: whole 2 MiB frames, each owner's together within its DMA window.
    let mut dma_space: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, d) in &file.devices {
        let Some(dma) = &d.dma else { continue };
        let key = format!("devices.{}.dma", name.get_ref());
        match parse_size(dma.get_ref()) {
            Some(n) if n > 0 && n.is_multiple_of(LARGE_PAGE_SIZE) => {
                let total = dma_space.entry(d.owner.get_ref()).or_default();
                *total = total.saturating_add(n);
                if *total > DMA_WINDOW {
                    errors.push(SystemError::new(
                        key,
                        span(dma),
                        format!(
                            "the DMA memory of `{}`'s devices does not fit its {} MiB window",
                            d.owner.get_ref(),
                            DMA_WINDOW >> 20
                        ),
                    ));
                }
            }
            _ => errors.push(SystemError::new(
                key,
                span(dma),
                format!("DMA memory `{}` is not a whole number of 2 MiB frames", dma.get_ref()),
            )),
        }
    }
    let mut mmio_ranges: Vec<(u64, u64, &Spanned<u64>, &str)> = Vec::new();
    let mut port_ranges: Vec<(u64, u64, &Spanned<String>, &str)> = Vec::new();
    let mut irqs: BTreeMap<u64, &str> = BTreeMap::new();
    for (name, d) in &file.devices {
        let dn = name.get_ref().as_str();
        let key = |field: &str| format!("devices.{dn}.{field}");
        // The supervisor takes the PIT (IRQ 0, ports 0x40-0x43) as its clock when any
        // component restarts on a timer or has a deadline (`compile::supervisor`).
        let supervisor_clock = file.components.values().any(|c| c.restart.is_some() || c.deadline.is_some());
        if !is_component(d.owner.get_ref()) {
            errors.push(SystemError::new(
                key("owner"),
                span(&d.owner),
                format!("device `{dn}` is owned by `{}`, which is not a component", d.owner.get_ref()),
            ));
        }
        if let Some(irq) = &d.irq {
            let n = *irq.get_ref();
            if n > 15 {
                errors.push(SystemError::new(
                    key("irq"),
                    span(irq),
                    format!("IRQ {n} is not a legacy line (0-15)"),
                ));
            } else if KERNEL_IRQS.contains(&n) {
                errors.push(SystemError::new(key("irq"), span(irq), format!("IRQ {n} is the kernel's")));
            } else if n == 0 && supervisor_clock {
                errors.push(
                    SystemError::new(key("irq"), span(irq), "IRQ 0 is the supervisor's clock (the PIT)")
                        .help("a system with restarts or deadlines gives the PIT to its supervisor"),
                );
            } else if let Some(other) = irqs.insert(n, dn) {
                errors.push(SystemError::new(
                    key("irq"),
                    span(irq),
                    format!("IRQ {n} is also device `{other}`'s"),
                ));
            }
        }
        if let Some(ports) = &d.io_ports {
            match parse_ports(ports.get_ref()) {
                None => errors.push(
                    SystemError::new(
                        key("io-ports"),
                        span(ports),
                        format!("`{}` is not a port range", ports.get_ref()),
                    )
                    .help("write \"0x3f8-0x3ff\""),
                ),
                Some((a, b)) => {
                    if KERNEL_PORTS.iter().any(|&(x, y)| a <= y && x <= b) {
                        errors.push(SystemError::new(
                            key("io-ports"),
                            span(ports),
                            format!("ports {a:#x}-{b:#x} include the kernel's"),
                        ));
                    }
                    if supervisor_clock && a <= PIT_PORTS.1 && PIT_PORTS.0 <= b {
                        errors.push(
                            SystemError::new(
                                key("io-ports"),
                                span(ports),
                                format!("ports {a:#x}-{b:#x} include the PIT's (0x40-0x43), the supervisor's clock"),
                            )
                            .help("a system with restarts or deadlines gives the PIT to its supervisor"),
                        );
                    }
                    if let Some((_, _, _, other)) = port_ranges.iter().find(|(x, y, _, _)| a <= *y && *x <= b)
                    {
                        errors.push(SystemError::new(
                            key("io-ports"),
                            span(ports),
                            format!("ports {a:#x}-{b:#x} overlap device `{other}`'s"),
                        ));
                    }
                    port_ranges.push((a, b, ports, dn));
                }
            }
        }
        for m in &d.mmio {
            let size = parse_size(m.size.get_ref());
            let base = *m.base.get_ref();
            match size {
                Some(s) if s > 0 && s.is_multiple_of(PAGE_SIZE) && base.is_multiple_of(PAGE_SIZE) => {
                    use cleave_abi::layout::{DEVICE_WINDOW_END, DEVICE_WINDOW_START};
                    if base < DEVICE_WINDOW_START || base.saturating_add(s) > DEVICE_WINDOW_END {
                        errors.push(
                            SystemError::new(
                                key("mmio"),
                                span(&m.base),
                                format!(
                                    "MMIO at {base:#x} lies outside the device memory the kernel hands out"
                                ),
                            )
                            .help(format!(
                                "device memory is {DEVICE_WINDOW_START:#x}-{DEVICE_WINDOW_END:#x}"
                            )),
                        );
                    }
                    if let Some((_, _, _, other)) =
                        mmio_ranges.iter().find(|(x, y, _, _)| base < *y && *x < base + s)
                    {
                        errors.push(SystemError::new(
                            key("mmio"),
                            span(&m.base),
                            format!("MMIO at {base:#x} overlaps device `{other}`'s"),
                        ));
                    }
                    mmio_ranges.push((base, base + s, &m.base, dn));
                }
                _ => errors.push(SystemError::new(
                    key("mmio"),
                    span(&m.base),
                    format!("MMIO range at {base:#x} is not page-aligned whole pages"),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{components, error, found, parse};
    use super::*;

    fn run(text: &str) -> Vec<SystemError> {
        let file = parse(text);
        let mut errors = Vec::new();
        check(&file, &components(&file), &mut errors);
        errors
    }

    #[test]
    fn devices_on_free_lines_ports_and_memory_are_accepted() {
        let text = "[components.driver]\n\
                    [devices.serial]\nowner = \"driver\"\nirq = 3\nio-ports = \"0x2f8-0x2ff\"\n\
                    [devices.vga]\nowner = \"driver\"\nmmio = [{ base = 0xfebf0000, size = \"8K\" }]\n\
                    [devices.timer]\nowner = \"driver\"\nirq = 0\nio-ports = \"0x40-0x43\"\n";
        // Without restarts or deadlines the PIT (IRQ 0, ports 0x40-0x43) is free for a device.
        assert_eq!(run(text), []);
    }

    #[test]
    fn the_kernels_and_the_supervisors_lines_and_ports_are_refused() {
        let text = "[components.driver]\nrestart = { every = \"1s\" }\n\
                    [devices.com1]\nowner = \"driver\"\nirq = 4\nio-ports = \"0x3f8-0x3ff\"\n\
                    [devices.pit]\nowner = \"driver\"\nirq = 0\nio-ports = \"0x40-0x47\"\n";
        assert_eq!(
            found(&run(text), text),
            [
                error("devices.com1.irq", "4", "IRQ 4 is the kernel's"),
                error("devices.com1.io-ports", "\"0x3f8-0x3ff\"", "ports 0x3f8-0x3ff include the kernel's"),
                error("devices.pit.irq", "0", "IRQ 0 is the supervisor's clock (the PIT)"),
                error(
                    "devices.pit.io-ports",
                    "\"0x40-0x47\"",
                    "ports 0x40-0x47 include the PIT's (0x40-0x43), the supervisor's clock"
                ),
            ]
        );
    }

    #[test]
    fn devices_sharing_lines_ports_or_memory_and_stray_mmio_are_refused() {
        let text = "[components.driver]\n\
                    [devices.a]\nowner = \"driver\"\nirq = 5\nio-ports = \"0x100-0x10f\"\nmmio = [{ base = 0xfebf0000, size = \"8K\" }]\n\
                    [devices.b]\nowner = \"nobody\"\nirq = 5\nio-ports = \"0x108-0x110\"\nmmio = [{ base = 0xfebf1000, size = \"4K\" }, { base = 0x1000, size = \"4K\" }, { base = 0xfebf4000, size = \"5K\" }]\n";
        assert_eq!(
            found(&run(text), text),
            [
                error(
                    "devices.b.owner",
                    "\"nobody\"",
                    "device `b` is owned by `nobody`, which is not a component"
                ),
                error("devices.b.irq", "5", "IRQ 5 is also device `a`'s"),
                error("devices.b.io-ports", "\"0x108-0x110\"", "ports 0x108-0x110 overlap device `a`'s"),
                error("devices.b.mmio", "0xfebf1000", "MMIO at 0xfebf1000 overlaps device `a`'s"),
                error(
                    "devices.b.mmio",
                    "0x1000",
                    "MMIO at 0x1000 lies outside the device memory the kernel hands out"
                ),
                error(
                    "devices.b.mmio",
                    "0xfebf4000",
                    "MMIO range at 0xfebf4000 is not page-aligned whole pages"
                ),
            ]
        );
    }
}
