//! The upload-time capability check. An entity component may import:
//!
//! - what the runtime provides to entities: the `cella:entity` types and the locked-down
//!   `wasi:io` and `wasi:cli` interfaces (environment empty, exit, standard streams captured);
//! - interfaces that language runtimes (CPython, SpiderMonkey, the Rust standard library) link
//!   whether or not the entity uses them, which the host provides *inert*: `wasi:clocks` (clocks
//!   read zero), `wasi:random` (a fixed seed), `wasi:filesystem` (no directories) and
//!   `wasi:sockets` (every operation denied). These are accepted with a warning per family,
//!   because an entity that relies on them is wrong: its inputs come from the command context.
//!
//! Anything else (`wasi:http`, unknown packages) is refused, naming every offending import.
//! [`scan_imports`] reads the import names straight from the binary so that a refusal does not
//! wait for compilation, which takes seconds for interpreter-based components.

use wasmparser::{Chunk, Parser, Payload};

use crate::Error;

/// Interfaces an entity may import without comment, by name without the `@version` suffix.
const ALLOWED: &[&str] = &[
    "cella:entity/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// Interfaces that are linked inert, with what they do and what to use instead.
const INERT: &[(&str, &str)] = &[
    (
        "wasi:clocks",
        "clocks read zero: use the command context's timestamp",
    ),
    (
        "wasi:random",
        "randomness is a fixed sequence: use the command context's random seed",
    ),
    (
        "wasi:filesystem",
        "there are no files: keep data in the entity's state",
    ),
    (
        "wasi:sockets",
        "every network operation is denied: call other entities through effects",
    ),
];

/// The interfaces of each inert family the host links (checked by name, so that an unknown
/// interface of a known package is still refused).
const INERT_INTERFACES: &[&str] = &[
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Why an import is refused, and what to use instead.
fn reason(name: &str) -> &'static str {
    match family(name) {
        "wasi:http" => "no HTTP: entities are called, they do not call out",
        _ => "not provided by Cella",
    }
}

/// `wasi:clocks/wall-clock@0.2.6` → `wasi:clocks`.
fn family(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Checks the names of a component's imports. Returns one warning per inert family imported
/// (in a fixed order), or [`Error::InvalidComponent`] naming every refused import.
pub(crate) fn check<'a>(imports: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, Error> {
    let mut refused = Vec::new();
    let mut inert = Vec::new();
    for name in imports {
        let bare = name.split('@').next().unwrap_or(name);
        if ALLOWED.contains(&bare) {
            continue;
        }
        if INERT_INTERFACES.contains(&bare) {
            let family = family(bare);
            if !inert.contains(&family) {
                inert.push(family);
            }
            continue;
        }
        refused.push(format!("`{name}` ({})", reason(name)));
    }
    if !refused.is_empty() {
        return Err(Error::InvalidComponent(format!(
            "the component imports what entities are not given: {}; entities get their inputs \
             through the command context",
            refused.join(", ")
        )));
    }
    Ok(INERT
        .iter()
        .filter(|(family, _)| inert.contains(family))
        .map(|(family, what)| format!("the component imports `{family}`, which is inert: {what}"))
        .collect())
}

/// The names of a component's top-level imports, read from the binary without compiling it.
/// Nested modules and components are skipped: only the outer component's imports reach the host.
pub(crate) fn scan_imports(wasm: &[u8]) -> Result<Vec<String>, Error> {
    let malformed =
        |e: wasmparser::BinaryReaderError| Error::InvalidComponent(format!("malformed: {e}"));
    let mut parser = Parser::new(0);
    let mut rest = wasm;
    let mut names = Vec::new();
    loop {
        let (payload, consumed) = match parser.parse(rest, true).map_err(malformed)? {
            Chunk::NeedMoreData(_) => {
                return Err(Error::InvalidComponent(
                    "malformed: the component is truncated".into(),
                ));
            }
            Chunk::Parsed { payload, consumed } => (payload, consumed),
        };
        let mut skip = 0;
        match payload {
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    names.push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                // The parser has stepped over the nested section; the bytes are ours to skip.
                skip = unchecked_range.len();
            }
            Payload::End(_) => return Ok(names),
            _ => {}
        }
        rest = rest
            .get(consumed + skip..)
            .ok_or_else(|| Error::InvalidComponent("malformed: section out of bounds".into()))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_default_guest_imports_silently() {
        let warnings = check([
            "wasi:io/streams@0.2.6",
            "wasi:cli/stderr@0.2.6",
            "cella:entity/types@0.1.0",
        ])
        .map_err(|e| e.to_string());
        assert_eq!(warnings, Ok(vec![]));
    }

    #[test]
    fn warns_once_per_inert_family() {
        let Ok(warnings) = check([
            "wasi:sockets/tcp@0.2.0",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:clocks/monotonic-clock@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:io/streams@0.2.6",
        ]) else {
            panic!("expected acceptance")
        };
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("`wasi:clocks`, which is inert: clocks read zero"));
        assert!(warnings[1].contains("`wasi:filesystem`"));
        assert!(warnings[2].contains("`wasi:sockets`"));
    }

    #[test]
    fn names_every_refused_import() {
        let Err(Error::InvalidComponent(m)) = check([
            "wasi:io/streams@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:clocks/timezone@0.2.6",
            "acme:thing/x",
        ]) else {
            panic!("expected a refusal")
        };
        assert!(
            m.contains("`wasi:http/outgoing-handler@0.2.6` (no HTTP"),
            "{m}"
        );
        assert!(m.contains("`wasi:clocks/timezone@0.2.6`"), "{m}");
        assert!(m.contains("`acme:thing/x` (not provided by Cella)"), "{m}");
        assert!(!m.contains("wasi:io"), "{m}");
        assert!(!m.contains("wall-clock"), "{m}");
    }

    #[test]
    fn scans_the_outer_imports_only() {
        use wasm_encoder::{
            Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection,
            InstanceType, Module, NestedComponentSection,
        };
        let mut inner = Component::new();
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        inner.section(&types);
        let mut imports = ComponentImportSection::new();
        imports.import("acme:inner/x", ComponentTypeRef::Instance(0));
        inner.section(&imports);

        let mut outer = Component::new();
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        outer.section(&types);
        let mut imports = ComponentImportSection::new();
        imports.import(
            "wasi:http/outgoing-handler@0.2.6",
            ComponentTypeRef::Instance(0),
        );
        imports.import("wasi:io/streams@0.2.6", ComponentTypeRef::Instance(0));
        outer.section(&imports);
        outer.section(&wasm_encoder::ModuleSection(&Module::new()));
        outer.section(&NestedComponentSection(&inner));
        let bytes = outer.finish();
        assert_eq!(
            scan_imports(&bytes).map_err(|e| e.to_string()),
            Ok(vec![
                "wasi:http/outgoing-handler@0.2.6".to_string(),
                "wasi:io/streams@0.2.6".to_string()
            ])
        );
        assert!(scan_imports(&bytes[..bytes.len() - 3]).is_err());
    }
}
