//! The sharing graph: components, guests, shared regions and devices as nodes; channels,
//! mappings, device ownership and guest service as edges labelled with their rights. As
//! DOT text, and as SVG rendered in-process.

use crate::system::SystemFile;
use std::fmt::Write;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// The graph in DOT.
pub fn dot(file: &SystemFile) -> String {
    let mut out = String::from("digraph system {\n");
    for name in file.components.keys() {
        let _ = writeln!(out, "  {} [shape=box];", quote(name.get_ref()));
    }
    for name in file.guests.keys() {
        let _ = writeln!(out, "  {} [shape=box];", quote(&crate::layout::vmm_name(name.get_ref())));
        let _ = writeln!(out, "  {} [shape=ellipse];", quote(&format!("guest {}", name.get_ref())));
    }
    for name in file.regions.keys() {
        let _ = writeln!(out, "  {} [shape=note];", quote(&format!("region {}", name.get_ref())));
    }
    for name in file.devices.keys() {
        let _ = writeln!(out, "  {} [shape=hexagon];", quote(&format!("device {}", name.get_ref())));
    }
    for (name, ch) in &file.channels {
        for (i, client) in ch.clients.get_ref().iter().enumerate() {
            let badge = ch.badge_of(i, client.get_ref());
            let grant = if ch.grants() { "G" } else { "" };
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                quote(client.get_ref()),
                quote(ch.server.get_ref()),
                quote(&format!("{} {} (W{grant}, badge {badge})", ch.kind.get_ref(), name.get_ref()))
            );
        }
    }
    for (name, r) in &file.regions {
        for (component, rights) in r.map.get_ref() {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                quote(component.get_ref()),
                quote(&format!("region {}", name.get_ref())),
                quote(&rights.get_ref().to_uppercase())
            );
        }
    }
    for (name, d) in &file.devices {
        let mut what = Vec::new();
        if let Some(irq) = &d.irq {
            what.push(format!("IRQ {}", irq.get_ref()));
        }
        if let Some(p) = &d.io_ports {
            what.push(format!("ports {}", p.get_ref()));
        }
        if !d.mmio.is_empty() {
            what.push("MMIO".into());
        }
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(d.owner.get_ref()),
            quote(&format!("device {}", name.get_ref())),
            quote(&what.join(", "))
        );
    }
    for (name, g) in &file.guests {
        let vmm = crate::layout::vmm_name(name.get_ref());
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"runs (Vcpu, guest-physical space, {} RAM)\"];",
            quote(&vmm),
            quote(&format!("guest {}", name.get_ref())),
            g.memory.get_ref()
        );
        for b in g.all_backends() {
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"serves\"];",
                quote(b.get_ref()),
                quote(&format!("guest {}", name.get_ref()))
            );
        }
    }
    // The supervisor cleave adds, and what it may do to whom.
    let supervised: Vec<(String, String)> = file
        .components
        .iter()
        .filter_map(|(name, c)| {
            if c.is_disposable() {
                return Some((name.get_ref().clone(), "disposes of (its untyped)".to_string()));
            }
            match c.restart.as_ref().map(|r| r.get_ref()) {
                Some(crate::system::Restart::Every { every }) => Some((
                    name.get_ref().clone(),
                    format!("restarts every {every} and after a crash (TCB, memory, faults)"),
                )),
                Some(crate::system::Restart::Keyword(_)) => Some((
                    name.get_ref().clone(),
                    "rolls back after every request and restarts after a crash (TCB, memory, faults)"
                        .to_string(),
                )),
                None => None,
            }
        })
        .collect();
    if !supervised.is_empty() {
        let _ = writeln!(out, "  {} [shape=box];", quote(crate::layout::SUPERVISOR));
        for (component, what) in supervised {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                quote(crate::layout::SUPERVISOR),
                quote(&component),
                quote(&what)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Most nodes `svg` lays out. The in-process layout (layout-rs) grows with about the cube
/// of the graph: measured here, 40 components in a chain with cross links take 0.6 s,
/// 80 take 7.6 s and 120 take 26 s; 64 nodes stay near a second.
pub const SVG_MAX_NODES: usize = 64;

/// Most edges `svg` lays out (see `SVG_MAX_NODES`).
pub const SVG_MAX_EDGES: usize = 160;

/// The graph as SVG, laid out and rendered in-process; a graph too big for that is
/// refused with what to do instead.
pub fn svg(file: &SystemFile) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let text = dot(file);
    let mut parser = DotParser::new(&text);
    let tree = parser.process().map_err(|e| format!("cannot lay out the graph: {e}"))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&tree);
    let mut graph = builder.get();
    let (nodes, edges) = (graph.num_nodes(), text.lines().filter(|l| l.contains(" -> ")).count());
    if nodes > SVG_MAX_NODES || edges > SVG_MAX_EDGES {
        return Err(format!(
            "the graph has {nodes} nodes and {edges} edges; `--svg` lays out at most {SVG_MAX_NODES} nodes \
             and {SVG_MAX_EDGES} edges in-process (its layout grows with the cube of the graph). \
             Write DOT and lay it out with Graphviz instead: `cleave graph FILE | dot -Tsvg`"
        ));
    }
    let mut writer = SVGWriter::new();
    graph.do_it(false, false, false, &mut writer);
    Ok(writer.finalize())
}
