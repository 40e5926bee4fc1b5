//! The shape of `system.toml`: one type per section, each value kept with where it was
//! written (`Spanned`) so that every error can point at it, and the readers of the values
//! written as text (sizes, durations, port ranges). What makes a description valid is
//! `system::check`; the reference for users is `doc/system-toml.md`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SystemFile {
    /// `[system]`.
    pub system: Option<SystemSection>,
    /// `[components.NAME]`.
    #[serde(default)]
    pub components: BTreeMap<Spanned<String>, Component>,
    /// `[channels.NAME]`.
    #[serde(default)]
    pub channels: BTreeMap<Spanned<String>, Channel>,
    /// `[regions.NAME]`.
    #[serde(default)]
    pub regions: BTreeMap<Spanned<String>, Region>,
    /// `[devices.NAME]`.
    #[serde(default)]
    pub devices: BTreeMap<Spanned<String>, Device>,
    /// `[guests.NAME]`.
    #[serde(default)]
    pub guests: BTreeMap<Spanned<String>, Guest>,
    /// `[policy]`.
    pub policy: Option<Policy>,
}

/// `[system]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SystemSection {
    /// The program the kernel boots as the root task.
    pub root: Spanned<String>,
}

/// A restart policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Restart {
    /// `restart = "per-request"`.
    Keyword(String),
    /// `restart = { every = "10s" }`.
    Every {
        /// The period.
        every: String,
    },
}

/// `[components.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Component {
    /// The program (defaults to the component's name).
    pub binary: Option<Spanned<String>>,
    /// Scheduling priority, 1-254.
    pub priority: Option<Spanned<u64>>,
    /// Stack size ("16K").
    pub stack: Option<Spanned<String>>,
    /// Extra memory (heap) size.
    pub memory: Option<Spanned<String>>,
    /// `"persistent"` (default) or `"disposable"`.
    pub lifetime: Option<Spanned<String>>,
    /// A disposable component's deadline ("500ms"): destroyed then if it has not said it
    /// is done.
    pub deadline: Option<Spanned<String>>,
    /// Restart policy.
    pub restart: Option<Spanned<Restart>>,
    /// `"shared"` (default) or `"per-guest"`: one instance per guest it serves, named
    /// `NAME-GUEST` (`system::instances`).
    pub instances: Option<Spanned<String>>,
    /// Whether it may end the whole run (the kernel's `DebugExit`: what ends a test or
    /// `cargo xtask run`). Without it, a component whose `main` returns only stops itself.
    pub ends_run: Option<Spanned<bool>>,
    /// Whether it may write to the kernel's debug console (default true). `false` keeps it
    /// quiet: its `DebugPutChar` fails, so it cannot fill the console the others share.
    pub console: Option<Spanned<bool>>,
    /// Set by cleave, never written: this component is the instance of a per-guest
    /// component for one guest (`system::instances::expand`).
    #[serde(skip)]
    pub instance: Option<Instance>,
    /// Set by cleave, never written: cleave added this component (PCIBack, `system::pci`).
    #[serde(skip)]
    pub added: bool,
}

/// What a per-guest component's instance is an instance of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The component written in `system.toml` (`blkback`).
    pub of: String,
    /// The guest it serves alone (`alice`).
    pub guest: String,
}

/// `[channels.NAME]`: an endpoint or notification from clients to one server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Channel {
    /// `"endpoint"` or `"notification"`.
    pub kind: Spanned<String>,
    /// The component that receives.
    pub server: Spanned<String>,
    /// The components that send (call) or signal.
    pub clients: Spanned<Vec<Spanned<String>>>,
    /// Badge per client (default: 1, 2, … in client order for an endpoint, bit 0, 1, … for
    /// a notification).
    #[serde(default)]
    pub badges: BTreeMap<Spanned<String>, Spanned<u64>>,
    /// Clients may pass capabilities (grant right); endpoints only.
    #[serde(default)]
    pub grant: Option<Spanned<bool>>,
    /// Endpoints: a shared region of this size per client, mapped read-write into the
    /// server and that client only (named `CHANNEL-CLIENT`): a per-connection ring.
    #[serde(default)]
    pub ring: Option<Spanned<String>>,
}

/// A region as the compiler lays it out: a `[regions.NAME]`, or one client's ring of a
/// channel.
#[derive(Debug)]
pub struct SharedRegion {
    /// Its name.
    pub name: String,
    /// Its size (where it was set, for error locations: a guest's disk ring's is the
    /// disk's `size`, which the ring's own size follows from).
    pub size: Spanned<String>,
    /// The key that set it (`regions.NAME.size`, `channels.NAME.ring`).
    pub key: String,
    /// Who maps it and how (`r`, `rw`, `rx`).
    pub map: Vec<(String, String)>,
}

/// Every shared region in layout order: the declared regions by name, then each channel's
/// per-client rings (by channel, then client order), then each guest's disk ring (shared
/// by its VMM and its disk's backend), by guest, then each `console = "ctl"` guest's
/// console page (shared by its VMM and the toolstack), then each guest's network pipes
/// (shared by its VMM and its network's backend), by guest.
pub fn shared_regions(file: &SystemFile) -> Vec<SharedRegion> {
    let mut out: Vec<SharedRegion> = file
        .regions
        .iter()
        .map(|(name, r)| SharedRegion {
            name: name.get_ref().clone(),
            size: r.size.clone(),
            key: format!("regions.{}.size", name.get_ref()),
            map: r.map.get_ref().iter().map(|(c, m)| (c.get_ref().clone(), m.get_ref().clone())).collect(),
        })
        .collect();
    for (name, ch) in &file.channels {
        let Some(size) = &ch.ring else { continue };
        for client in ch.clients.get_ref() {
            out.push(SharedRegion {
                name: ring_name(name.get_ref(), client.get_ref()),
                size: size.clone(),
                key: format!("channels.{}.ring", name.get_ref()),
                map: vec![
                    (ch.server.get_ref().clone(), "rw".to_string()),
                    (client.get_ref().clone(), "rw".to_string()),
                ],
            });
        }
    }
    for (name, g) in &file.guests {
        let Some(disk) = &g.disk else { continue };
        let bytes = crate::layout::disk_ring_bytes();
        out.push(SharedRegion {
            name: disk_ring_name(name.get_ref()),
            size: Spanned::new(disk.span(), format!("{}K", bytes / 1024)),
            key: format!("guests.{}.disk", name.get_ref()),
            map: vec![
                (crate::layout::vmm_name(name.get_ref()), "rw".to_string()),
                (disk.get_ref().backend.get_ref().clone(), "rw".to_string()),
            ],
        });
    }
    for (name, g) in &file.guests {
        if !g.console_relayed() {
            continue;
        }
        let Some(toolstack) = toolstack_component(file) else { continue };
        out.push(SharedRegion {
            name: console_region_name(name.get_ref()),
            size: Spanned::new(g.console.as_ref().map_or(0..0, |c| c.span()), "4K".to_string()),
            key: format!("guests.{}.console", name.get_ref()),
            map: vec![
                (crate::layout::vmm_name(name.get_ref()), "rw".to_string()),
                (toolstack, "rw".to_string()),
            ],
        });
    }
    for (name, g) in &file.guests {
        let Some(network) = &g.network else { continue };
        let bytes = crate::layout::net_region_bytes();
        out.push(SharedRegion {
            name: net_region_name(name.get_ref()),
            size: Spanned::new(network.span(), format!("{}K", bytes / 1024)),
            key: format!("guests.{}.network", name.get_ref()),
            map: vec![
                (crate::layout::vmm_name(name.get_ref()), "rw".to_string()),
                (network.get_ref().backend.get_ref().clone(), "rw".to_string()),
            ],
        });
    }
    out
}

/// The region that holds guest `guest`'s network pipes (tx, then rx).
pub fn net_region_name(guest: &str) -> String {
    format!("net-{guest}")
}

/// The page guest `guest`'s console (`console = "ctl"`) is, shared by its VMM and the
/// toolstack.
pub fn console_region_name(guest: &str) -> String {
    format!("console-{guest}")
}

/// The component running the `toolstack` program, if one does (`cleave check` allows one
/// when a guest's console is `"ctl"`).
pub fn toolstack_component(file: &SystemFile) -> Option<String> {
    file.components
        .iter()
        .find(|(k, c)| c.package(k.get_ref()) == "toolstack")
        .map(|(k, _)| k.get_ref().clone())
}

/// The region guest `guest`'s disk ring is.
pub fn disk_ring_name(guest: &str) -> String {
    format!("disk-{guest}")
}

/// The region a channel's ring for `client` is.
pub fn ring_name(channel: &str, client: &str) -> String {
    format!("{channel}-{client}")
}

impl Component {
    /// Whether it is `instances = "per-guest"`.
    pub fn is_per_guest(&self) -> bool {
        self.instances.as_ref().is_some_and(|i| i.get_ref() == "per-guest")
    }

    /// The program its thread runs: a per-guest instance's own build of its program
    /// (named as the instance: its constants are generated for it), else `binary`, else
    /// its name.
    pub fn program(&self, name: &str) -> String {
        if self.instance.is_some() {
            return name.to_string();
        }
        self.binary.as_ref().map_or_else(|| name.to_string(), |b| b.get_ref().clone())
    }

    /// The crate its program is built from (a per-guest instance's is its component's).
    pub fn package(&self, name: &str) -> String {
        match &self.instance {
            Some(i) => self.binary.as_ref().map_or_else(|| i.of.clone(), |b| b.get_ref().clone()),
            None => self.program(name),
        }
    }

    /// Whether it is `lifetime = "disposable"`.
    pub fn is_disposable(&self) -> bool {
        self.lifetime.as_ref().is_some_and(|l| l.get_ref() == "disposable")
    }
}

impl Channel {
    /// The badge of the `index`th client's capability: the one `badges` gives it, else its
    /// position in `clients` counting from 1 (an endpoint) or bit `index` (a notification,
    /// whose badges OR together, so each client needs bits of its own; `check` refuses a
    /// notification with more than 64 clients).
    pub fn badge_of(&self, index: usize, client: &str) -> u64 {
        let default = if self.is_notification() {
            1u64.checked_shl(index as u32).unwrap_or(0)
        } else {
            index as u64 + 1
        };
        self.badges.iter().find(|(k, _)| k.get_ref() == client).map_or(default, |(_, b)| *b.get_ref())
    }

    /// Whether the channel is a notification.
    pub fn is_notification(&self) -> bool {
        self.kind.get_ref() == "notification"
    }

    /// Whether clients may pass capabilities.
    pub fn grants(&self) -> bool {
        self.grant.as_ref().is_some_and(|g| *g.get_ref())
    }
}

/// `[regions.NAME]`: shared memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Region {
    /// Size ("4K", "1M").
    pub size: Spanned<String>,
    /// Component → rights ("r", "rw", "rx").
    pub map: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
}

/// An MMIO range of a device.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Mmio {
    /// Physical address.
    pub base: Spanned<u64>,
    /// Size ("4K").
    pub size: Spanned<String>,
}

/// `[devices.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Device {
    /// The component that drives it.
    pub owner: Spanned<String>,
    /// The PCI function it is, by what it is: `"1af4:1001"` (vendor and device ID, the
    /// first such function), `"1af4:1001#1"` (the second), or by address, `"00:05.0"`.
    /// PCIBack places its I/O BAR at `io-ports` and routes its interrupt to `irq` at boot
    /// (`system::pci`).
    pub pci: Option<Spanned<String>>,
    /// Legacy interrupt line.
    pub irq: Option<Spanned<u64>>,
    /// I/O ports, "0x3f8-0x3ff".
    pub io_ports: Option<Spanned<String>>,
    /// MMIO ranges.
    #[serde(default)]
    pub mmio: Vec<Mmio>,
    /// Memory the owner may hand the device for DMA ("2M"), in 2 MiB frames (each
    /// physically contiguous) whose physical addresses it may ask for. Until an IOMMU
    /// confines the device, a driver that can program DMA can reach any memory.
    pub dma: Option<Spanned<String>>,
}

/// A guest's virtio disk: `disk = { backend = "blkback", size = "64M" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Disk {
    /// The component that serves it (it owns the machine's disk device).
    pub backend: Spanned<String>,
    /// Its size: the guest's slice of the machine's disk, a whole number of MiB.
    pub size: Spanned<String>,
}

/// A guest's virtio network card, a port of a switch component:
/// `network = { backend = "netback", mac = "02:00:00:00:00:01" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    /// The component that switches frames between the guests it serves.
    pub backend: Spanned<String>,
    /// The card's MAC address, `xx:xx:xx:xx:xx:xx` (a unicast address); without it cleave
    /// derives a locally administered one from the guest's name.
    #[serde(default)]
    pub mac: Option<Spanned<String>>,
}

/// `[guests.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Guest {
    /// Guest memory size.
    pub memory: Spanned<String>,
    /// The guest image.
    pub image: Spanned<String>,
    /// Components that serve it (backends).
    #[serde(default)]
    pub backends: Vec<Spanned<String>>,
    /// The command line its VMM leaves in guest memory.
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
    /// Where the guest's serial console goes: `"log"` (the default: each line into the
    /// system's log with the guest's name in front), `"com2"` (the machine's second
    /// serial port, both ways, byte for byte: `cargo xtask run` connects it to the
    /// terminal) or `"ctl"` (a page shared with the toolstack, which keeps the output and
    /// relays it, both ways, to `cleave ctl console GUEST`).
    #[serde(default)]
    pub console: Option<Spanned<String>>,
    /// A virtio disk, served by a backend component from a slice of the machine's disk.
    #[serde(default)]
    pub disk: Option<Spanned<Disk>>,
    /// A virtio network card, a port of a backend component's switch.
    #[serde(default)]
    pub network: Option<Spanned<Network>>,
    /// When it starts: `"boot"` (the default: the loader makes its RAM and starts its VMM)
    /// or `"on-request"` (the Builder makes its RAM from its pool when the toolstack asks,
    /// `cleave ctl create`, and takes it back on `destroy`).
    #[serde(default)]
    pub start: Option<Spanned<String>>,
}

impl Guest {
    /// Whether its console is relayed by the toolstack (`console = "ctl"`).
    pub fn console_relayed(&self) -> bool {
        self.console.as_ref().is_some_and(|c| c.get_ref() == "ctl")
    }

    /// Whether the Builder makes it on request (`start = "on-request"`).
    pub fn on_request(&self) -> bool {
        self.start.as_ref().is_some_and(|s| s.get_ref() == "on-request")
    }

    /// Every component that serves it: its `backends`, its disk's backend and its
    /// network's.
    pub fn all_backends(&self) -> Vec<&Spanned<String>> {
        let mut out: Vec<&Spanned<String>> = self.backends.iter().collect();
        let io = [
            self.disk.as_ref().map(|d| &d.get_ref().backend),
            self.network.as_ref().map(|n| &n.get_ref().backend),
        ];
        for backend in io.into_iter().flatten() {
            if !out.iter().any(|b| b.get_ref() == backend.get_ref()) {
                out.push(backend);
            }
        }
        out
    }
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Pairs (or groups) of guests/components that nothing may connect.
    #[serde(default)]
    pub isolate: Vec<Spanned<Vec<Spanned<String>>>>,
    /// Authority → the components (glob patterns) that alone may hold it.
    #[serde(default)]
    pub only: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

/// Parses a size: "4096", "4K", "16K", "2M", "1G".
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Parses a duration in milliseconds: "100ms", "10s", "1m".
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    let i = t.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = t[..i].parse().ok()?;
    match &t[i..] {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        _ => None,
    }
}

/// Parses "0x3f8-0x3ff" (or decimal) into an inclusive range.
pub fn parse_ports(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('-')?;
    let num = |s: &str| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let (a, b) = (num(a)?, num(b)?);
    (a <= b && b <= 0xffff).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_ports() {
        assert_eq!(parse_size("16K"), Some(16384));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4Q"), None);
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_ports("0x3f8-0x3ff"), Some((0x3f8, 0x3ff)));
        assert_eq!(parse_ports("0x40-0x3f"), None);
    }
}
