//! What a chef component says about how it was made: its source language and size, for
//! `nd-sniff --chef-list` (issue #5: make a slow-language chef's cost visible).
//!
//! The language comes from the wasm `producers` custom sections (rustc, clang,
//! componentize-py/-js and our `nd-chef` build tool all write one). A component nests core
//! modules, each with its own section, and an interpreter-based component also carries the
//! interpreter's own modules (CPython is C), so the component-level section wins, then the
//! interpreters' tools, then the first language found.

use wasmparser::{KnownCustom, Parser, Payload};

/// How a chef component was made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChefOrigin {
    /// The source language (`Rust`, `Python`, `JavaScript`, `C11`, ...), when recorded.
    pub language: Option<String>,
    /// The component's size in bytes.
    pub size: usize,
}

/// Inspect a component's bytes. Never fails: an unreadable section just leaves the
/// language unknown (the component was already validated when it was loaded).
pub fn inspect(bytes: &[u8]) -> ChefOrigin {
    let mut top_level: Option<String> = None;
    let mut nested: Option<String> = None;
    let mut tool_language: Option<&'static str> = None;
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) => {
                let KnownCustom::Producers(reader) = section.as_known() else {
                    continue;
                };
                for field in reader.into_iter().flatten() {
                    for value in field.values.into_iter().flatten() {
                        match field.name {
                            "language" if depth == 0 && top_level.is_none() => {
                                top_level = Some(value.name.to_owned())
                            }
                            "language" if nested.is_none() => nested = Some(value.name.to_owned()),
                            "processed-by" | "sdk" => {
                                let tool = value.name.to_ascii_lowercase();
                                if tool.contains("componentize-py") {
                                    tool_language = Some("Python");
                                } else if tool.contains("componentize-js")
                                    || tool.contains("starlingmonkey")
                                {
                                    tool_language = Some("JavaScript");
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    ChefOrigin {
        language: top_level.or(tool_language.map(str::to_owned)).or(nested),
        size: bytes.len(),
    }
}

/// A size for people: `96 KiB`, `18.9 MiB`.
pub fn human_size(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB * KIB {
        format!("{:.0} KiB", (b / KIB).ceil())
    } else {
        format!("{:.1} MiB", b / (KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal component (`(component)`) with a component-level producers section
    /// naming Python, and a nested core module whose section says C11 (as CPython's would).
    fn component_with_producers() -> Vec<u8> {
        fn producers(language: &str) -> Vec<u8> {
            // custom section: id 0, size, name "producers", 1 field "language", 1 value.
            let mut body = Vec::new();
            let push_str = |b: &mut Vec<u8>, s: &str| {
                b.push(s.len() as u8);
                b.extend_from_slice(s.as_bytes());
            };
            push_str(&mut body, "producers");
            body.push(1);
            push_str(&mut body, "language");
            body.push(1);
            push_str(&mut body, language);
            push_str(&mut body, "");
            let mut section = vec![0u8, body.len() as u8];
            section.extend(body);
            section
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend(producers("C11"));
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.push(1); // core module section
        component.push(module.len() as u8);
        component.extend(module);
        component.extend(producers("Python"));
        component
    }

    #[test]
    fn the_component_level_language_wins() {
        let bytes = component_with_producers();
        let origin = inspect(&bytes);
        assert_eq!(origin.language.as_deref(), Some("Python"));
        assert_eq!(origin.size, bytes.len());
    }

    #[test]
    fn garbage_has_no_language() {
        assert_eq!(inspect(b"not wasm").language, None);
        assert_eq!(inspect(&[]).size, 0);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(98_000), "96 KiB");
        assert_eq!(human_size(19_818_086), "18.9 MiB");
    }
}
