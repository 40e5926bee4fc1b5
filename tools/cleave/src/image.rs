//! The boot image the capDL loader embeds: the encoded specification and every ELF image
//! it names.
//!
//! Layout (little-endian, each part 8-byte aligned): `b"CLVIMG01"`, the specification's
//! length and bytes, the number of programs, then per program its name's length and bytes
//! and its ELF's length and bytes.

use cleave_capdl::binary::EncodedSpec;
use std::path::Path;

/// The image magic.
pub const MAGIC: &[u8; 8] = b"CLVIMG01";

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

fn part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
    pad(out);
}

/// Builds the image from an encoded spec, taking each ELF the spec names from `programs`.
pub fn build(spec: &[u8], programs: &Path) -> Result<Vec<u8>, String> {
    let encoded = EncodedSpec::new(spec).map_err(|e| format!("cleave: {e}"))?;
    let mut names: Vec<&str> = Vec::new();
    for i in 0..encoded.object_count() {
        if let Some(o) = encoded.object(i)
            && o.kind == cleave_capdl::binary::Kind::Tcb
            && let Some(name) = encoded.name(o.param0 as u32)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    let mut out = MAGIC.to_vec();
    part(&mut out, spec);
    out.extend_from_slice(&(names.len() as u64).to_le_bytes());
    for name in names {
        let path = programs.join(name);
        let elf = std::fs::read(&path)
            .map_err(|e| format!("cleave: program `{name}` ({}): {e}", path.display()))?;
        part(&mut out, name.as_bytes());
        part(&mut out, &elf);
    }
    Ok(out)
}
