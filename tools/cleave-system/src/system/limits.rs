//! The last check: a description that passes every rule of its own is compiled, and the
//! result held to what the rest of the pipeline can build (validation, the loader's
//! encoding, the loader's object count), with each refusal placed at the component or
//! guest it comes from.

use super::span;
use crate::compile::compile;
use crate::error::SystemError;
use crate::schema::SystemFile;
use std::collections::BTreeMap;
use std::ops::Range;

/// Compiles a checked description and holds it to what the rest of the pipeline can do:
/// the spec validates, encodes, and has no more objects than the loader builds. Each
/// error is placed at the component (or guest) the offending object belongs to, so that
/// `check` finds what `image` or the loader would otherwise find first.
pub(super) fn loader_limits(file: &SystemFile) -> Vec<SystemError> {
    // The component or guest whose name an object's starts with (the longest such): the
    // object's name, or a prefix of it ending before a `_`. A map, so that this stays
    // linear in the size of the system.
    let names: BTreeMap<&str, (String, Range<usize>)> = file
        .components
        .keys()
        .map(|k| (k.get_ref().as_str(), (format!("components.{}", k.get_ref()), span(k))))
        .chain(
            file.guests.keys().map(|k| (k.get_ref().as_str(), (format!("guests.{}", k.get_ref()), span(k)))),
        )
        .collect();
    let owner = |object: &str| -> (String, Range<usize>) {
        let cuts = object.match_indices('_').map(|(i, _)| i).rev();
        core::iter::once(object.len())
            .chain(cuts)
            .find_map(|end| names.get(&object[..end]))
            .cloned()
            .unwrap_or_else(|| ("(file)".to_string(), 0..0))
    };
    let compiled = compile(file);
    let mut errors = Vec::new();
    let count: usize = compiled.spec.objects.iter().map(|o| o.count.map_or(1, |n| n as usize)).sum();
    let limit = cleave_capdl::binary::LOADER_MAX_OBJECTS;
    if count > limit {
        // Point at the biggest contributor: that is what to shrink.
        let mut by_owner: BTreeMap<(String, usize, usize), usize> = BTreeMap::new();
        for o in &compiled.spec.objects {
            let (key, at) = owner(&o.name);
            *by_owner.entry((key, at.start, at.end)).or_default() += o.count.map_or(1, |n| n as usize);
        }
        let ((key, start, end), most) = by_owner
            .into_iter()
            .filter(|((k, _, _), _)| k != "(file)")
            .max_by_key(|(_, n)| *n)
            .unwrap_or((("(file)".to_string(), 0, 0), 0));
        let at = start..end;
        errors.push(
            SystemError::new(
                key.clone(),
                at,
                format!(
                    "the specification has {count} objects, {most} of them for `{}`; the loader builds at most {limit}",
                    key.split_once('.').map_or(key.as_str(), |(_, n)| n)
                ),
            )
            .help("fewer components, or less `memory` for restartable ones (one object per page)"),
        );
    }
    if !errors.is_empty() {
        return errors;
    }
    // Validation is quadratic in places; the count first bounds what it is given.
    for problem in cleave_capdl::validate::validate(&compiled.spec) {
        let text = problem.to_string();
        let object = text.split('`').nth(1).unwrap_or("");
        let (key, at) = owner(object);
        errors.push(SystemError::new(
            key,
            at,
            format!("the specification this compiles to is inconsistent: {text}"),
        ));
    }
    if !errors.is_empty() {
        return errors;
    }
    match cleave_capdl::binary::encode(&compiled.spec) {
        Ok(_) => {}
        Err(e) => {
            let text = e.to_string();
            let (key, at) = owner(text.split('`').nth(1).unwrap_or(""));
            return vec![SystemError::new(
                key,
                at,
                format!("the loader's encoding cannot hold this: {text}"),
            )];
        }
    };
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SystemFile {
        toml::from_str(text).expect("a test's description reads")
    }

    #[test]
    fn a_system_the_loader_can_build_is_accepted() {
        let file = parse(
            "[components.a]\nrestart = { every = \"1s\" }\nmemory = \"64K\"\n[components.b]\n[channels.q]\nkind = \"endpoint\"\nserver = \"a\"\nclients = [\"b\"]\n",
        );
        assert_eq!(loader_limits(&file), []);
    }

    #[test]
    fn too_many_objects_are_refused_at_the_component_with_the_most() {
        // A restartable component's memory is a frame object per page (and one pristine):
        // 8 MiB is 2,049 objects, more than the loader builds in all.
        let text = "[components.small]\n[components.big]\nrestart = { every = \"1s\" }\nmemory = \"8M\"\n";
        let errors = loader_limits(&parse(text));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!((e.key.as_str(), &text[e.span.clone()]), ("components.big", "big"));
        assert!(e.message.starts_with("the specification has "), "{}", e.message);
        assert!(e.message.ends_with("of them for `big`; the loader builds at most 2048"), "{}", e.message);
    }
}
