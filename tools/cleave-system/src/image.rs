//! The boot image the capDL loader embeds: the encoded specification, every ELF image it
//! names, and every file a frame is filled from (generated ones, such as a VMM's
//! configuration, or program files).
//!
//! The format is `cleave_capdl::image` (the loader reads it with the same code).

use cleave_capdl::binary::EncodedSpec;
use std::path::Path;

/// Builds the image from an encoded spec, taking each ELF the spec names from `programs`,
/// and each file a frame is filled from from `generated` or, failing that, `programs`.
pub fn build(
    spec: &[u8],
    programs: &Path,
    generated: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let encoded = EncodedSpec::new(spec).map_err(|e| format!("cleave: {e}"))?;
    let limit = cleave_capdl::binary::LOADER_MAX_OBJECTS;
    if encoded.object_count() as usize > limit {
        return Err(format!(
            "cleave: the specification has {} objects; the loader builds at most {limit} (smaller `memory` for restartable components, fewer components)",
            encoded.object_count()
        ));
    }
    let names = file_names(&encoded);
    let mut files: Vec<(&str, Vec<u8>)> = Vec::with_capacity(names.len());
    for name in names {
        let contents = match generated.get(name) {
            Some(bytes) => bytes.clone(),
            None => {
                let path = programs.join(name);
                std::fs::read(&path)
                    .map_err(|e| format!("cleave: program `{name}` ({}): {e}", path.display()))?
            }
        };
        files.push((name, contents));
    }
    let out = cleave_capdl::image::write(spec, files.iter().map(|(n, c)| (*n, c.as_slice())));
    Ok(out)
}

/// The files the image must carry for `encoded`, each once, in first-use order: every
/// thread's program and every file a frame is filled from.
pub fn file_names<'a>(encoded: &EncodedSpec<'a>) -> Vec<&'a str> {
    use cleave_capdl::binary::Kind;
    let mut names: Vec<&str> = Vec::new();
    for i in 0..encoded.object_count() {
        let Some(o) = encoded.object(i) else { continue };
        let name = match o.kind {
            Kind::Tcb => encoded.name(o.param0 as u32),
            Kind::Frame if o.param1 != 0 => encoded.name((o.param1 & 0xffff_ffff) as u32 - 1),
            _ => None,
        };
        if let Some(name) = name
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_spec_larger_than_the_loader_takes_is_refused() {
        // 8 MiB of restartable memory is 2048 writable frames (and one pristine).
        let text = "[components.big]\nrestart = { every = \"1s\" }\nmemory = \"8M\"\n";
        // `check` refuses it, at the component that is too big ...
        let errors = crate::system::load(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("2066 objects, 2052 of them for `big`"), "{errors:?}");
        assert_eq!(errors[0].key, "components.big");
        // ... and so does the image builder, for a description that skipped the checks.
        let file: crate::system::SystemFile = toml::from_str(text).unwrap();
        let spec = crate::compile::compile(&file).spec;
        let encoded = cleave_capdl::binary::encode(&spec).unwrap();
        let err =
            super::build(&encoded, std::path::Path::new("/nonexistent"), &Default::default()).unwrap_err();
        assert!(err.contains("the loader builds at most 2048"), "{err}");
    }
}
