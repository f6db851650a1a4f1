//! The upload-time capability check: an entity component may import only what the runtime
//! provides to entities — the `cella:entity` types and the locked-down parts of WASI that guest
//! toolchains link by default (`wasi:io`, and `wasi:cli` environment, exit and standard
//! streams). Anything else (files, sockets, clocks, randomness, HTTP, unknown interfaces) is
//! refused when the component is uploaded, naming every offending import, instead of failing
//! or silently misbehaving later.

use crate::Error;

/// Interfaces an entity may import, by name without the `@version` suffix.
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

/// Why an import family is not provided, and what to use instead.
fn reason(name: &str) -> &'static str {
    let family = name.split('/').next().unwrap_or(name);
    match family {
        "wasi:filesystem" => "no files: keep data in the entity's state",
        "wasi:sockets" => "no network: call other entities through effects",
        "wasi:clocks" => "no clocks: use the command context's timestamp",
        "wasi:random" => "no randomness: use the command context's random seed",
        "wasi:http" => "no HTTP: entities are called, they do not call out",
        _ => "not provided by Cella",
    }
}

/// Checks the names of a component's imports against [`ALLOWED`].
pub(crate) fn check<'a>(imports: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
    let refused: Vec<String> = imports
        .into_iter()
        .filter(|name| {
            let bare = name.split('@').next().unwrap_or(name);
            !ALLOWED.contains(&bare)
        })
        .map(|name| format!("`{name}` ({})", reason(name)))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidComponent(format!(
        "the component imports what entities are not given: {}; entities get their inputs \
         through the command context",
        refused.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_default_guest_imports() {
        assert!(
            check([
                "wasi:io/streams@0.2.6",
                "wasi:cli/stderr@0.2.6",
                "cella:entity/types@0.1.0"
            ])
            .is_ok()
        );
    }

    #[test]
    fn names_every_refused_import() {
        let Err(Error::InvalidComponent(m)) = check([
            "wasi:io/streams@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "acme:thing/x",
        ]) else {
            panic!("expected a refusal")
        };
        assert!(
            m.contains("`wasi:clocks/wall-clock@0.2.6` (no clocks"),
            "{m}"
        );
        assert!(
            m.contains("`wasi:filesystem/preopens@0.2.6` (no files"),
            "{m}"
        );
        assert!(m.contains("`acme:thing/x` (not provided by Cella)"), "{m}");
        assert!(!m.contains("wasi:io"), "{m}");
    }
}
