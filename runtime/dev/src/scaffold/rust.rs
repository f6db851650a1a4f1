//! `cella new` for Rust: an entity crate (`Cargo.toml`, `src/lib.rs` with a working entity and
//! its unit test, `.gitignore`) that depends on the Rust SDK copy by absolute path and is a
//! workspace of its own, so it builds standalone wherever it is. The manifest is written with
//! `toml_edit`, which quotes the name and the SDK path.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, value};

use super::{Kind, ensure_empty_dir, write_project_files};
use crate::error::{Error, Result};

/// The `src/lib.rs` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("../templates/value.rs");
/// The `src/lib.rs` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("../templates/event_sourced.rs");

const GITIGNORE: &str = "/target\n/.cella\n";

/// The `Cargo.toml` of a new entity crate, before [`manifest`] sets its `name` and the path of
/// its `cella-sdk` dependency.
const MANIFEST_TEMPLATE: &str = r#"[package]
name = "entity"
version = "0.1.0"
edition = "2024"
publish = false

# A component (cdylib) for Cella, and a Rust library (rlib) for the unit tests.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
cella-sdk = { path = "sdk-guest" }
serde = { version = "1", features = ["derive"] }

# `cella build` builds with this profile: fast components, kept small by LTO and stripping.
[profile.release]
opt-level = 3
lto = true
strip = true
panic = "abort"
codegen-units = 1

# A workspace of its own, so the crate builds standalone wherever it is.
[workspace]
"#;

/// Rust keywords (strict, reserved and edition 2024), which cannot name a crate.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names cargo or the crate's own dependencies reserve.
const RESERVED: &[&str] = &[
    "alloc",
    "build",
    "cella_sdk",
    "core",
    "deps",
    "examples",
    "incremental",
    "proc_macro",
    "serde",
    "std",
    "test",
];

/// Checks `name` against the rules for a crate name (which is also the entity type name).
pub fn validate_crate_name(name: &str) -> Result<()> {
    let hint = super::NAME_HINT;
    if name.is_empty() {
        return Err(Error::name("the name is empty", hint));
    }
    if name.len() > 64 {
        return Err(Error::name(
            format!("`{name}` is {} characters long (at most 64)", name.len()),
            hint,
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(Error::name(
            format!("`{name}` contains the character {c:?}, which a crate name cannot"),
            hint,
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(Error::name(
            format!("`{name}` must start with a letter"),
            hint,
        ));
    }
    let ident = name.replace('-', "_");
    if KEYWORDS.contains(&ident.as_str()) {
        return Err(Error::name(
            format!("`{name}` is a Rust keyword and cannot name a crate"),
            hint,
        ));
    }
    if RESERVED.contains(&ident.to_ascii_lowercase().as_str()) {
        return Err(Error::name(
            format!("`{name}` is reserved (by Rust, cargo or the crate's dependencies)"),
            hint,
        ));
    }
    Ok(())
}

/// The `Cargo.toml` of the new entity crate `name` depending on the SDK crate at `sdk`.
fn manifest(name: &str, sdk: &Path) -> Result<String> {
    let broken = |what: &str| {
        Error::project(
            format!("the manifest template of a new crate has no {what}"),
            crate::error::Hint::NONE,
        )
    };
    let mut doc: DocumentMut = MANIFEST_TEMPLATE.parse().map_err(|e| Error::Project {
        message: "the manifest template of a new crate is not TOML".to_string(),
        hint: crate::error::Hint::NONE,
        source: Some(Box::new(e)),
    })?;
    let package = doc
        .get_mut("package")
        .and_then(|p| p.as_table_like_mut())
        .ok_or_else(|| broken("[package]"))?;
    package.insert("name", value(name));
    let dependencies = doc
        .get_mut("dependencies")
        .and_then(|d| d.as_table_like_mut())
        .ok_or_else(|| broken("[dependencies]"))?;
    let mut sdk_dependency = InlineTable::new();
    sdk_dependency.insert("path", sdk.to_string_lossy().as_ref().into());
    sdk_dependency.fmt();
    dependencies.insert("cella-sdk", value(sdk_dependency));
    Ok(doc.to_string())
}

/// What [`new_crate`] made.
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The SDK crate it depends on.
    pub sdk: PathBuf,
}

/// Scaffolds the entity crate `name` of `kind` in `dir`, which must not exist or be empty.
pub fn new_crate(name: &str, kind: Kind, dir: &Path) -> Result<Created> {
    validate_crate_name(name)?;
    ensure_empty_dir(dir)?;
    let sdk = crate::sdk::ensure_rust_sdk()?;
    let template = match kind {
        Kind::Value => VALUE_TEMPLATE,
        Kind::EventSourced => EVENT_SOURCED_TEMPLATE,
    };
    let files = [
        ("Cargo.toml", manifest(name, &sdk)?),
        ("src/lib.rs", template.replace("{{name}}", name)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    write_project_files(dir, &files)?;
    Ok(Created {
        dir: dir.to_path_buf(),
        sdk,
    })
}

/// `cella new` (Rust): scaffolds the crate and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> Result<()> {
    validate_crate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let created = new_crate(name, kind, &dir)?;
    super::announce(
        &format!("created the {} entity `{name}`", kind.label()),
        &created.dir,
        "Cargo.toml, src/lib.rs, .gitignore",
        &created.sdk,
        &[
            "cella dev      # build, serve on http://127.0.0.1:8080, reload on every save".into(),
            "cargo test     # the entity's unit tests".into(),
            "cella build    # the component, for `cella deploy`".into(),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names() {
        for ok in ["counter", "my-counter", "cart_2", "A1"] {
            assert!(validate_crate_name(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("2fast", "start with a letter"),
            ("-x", "start with a letter"),
            ("a b", "character ' '"),
            ("café", "character 'é'"),
            ("a/b", "character '/'"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("test", "reserved"),
            ("cella-sdk", "reserved"),
        ] {
            let message = validate_crate_name(bad).unwrap_err().to_string();
            assert!(message.contains(says), "{bad}: {message}");
            assert!(message.contains("hint:"), "{bad}: {message}");
        }
        assert!(validate_crate_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn manifests_quote_the_sdk_path() {
        let sdk = Path::new(r#"/home/a "b"\c/sdk-guest"#);
        let text = manifest("my-counter", sdk).unwrap();
        assert!(
            text.contains(r#"cella-sdk = { path = '/home/a "b"\c/sdk-guest' }"#)
                || text.contains(r#"cella-sdk = { path = "/home/a \"b\"\\c/sdk-guest" }"#),
            "{text}"
        );
        assert!(text.contains("\n# A component (cdylib)"), "{text}");
        assert!(text.contains("\n[workspace]\n"), "{text}");
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(doc["package"]["name"].as_str(), Some("my-counter"));
        assert_eq!(
            doc["dependencies"]["cella-sdk"]["path"].as_str(),
            sdk.to_str()
        );
        assert_eq!(
            crate::toolchain::rust::parse_package_name(&text).unwrap(),
            "my-counter"
        );
    }

    #[test]
    fn scaffolds_once_and_refuses_to_overwrite() {
        let home = tempfile::tempdir().unwrap();
        // SAFETY: only this test sets CELLA_HOME, and every test that reads it accepts any
        // SDK copy.
        unsafe { std::env::set_var("CELLA_HOME", home.path()) };
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ledger");
        let created = new_crate("ledger", Kind::EventSourced, &dir).unwrap();
        let sdk = home.path().join("sdk").join(crate::sdk::SDK_VERSION);
        assert_eq!(created.sdk, sdk.join("sdk-guest"));
        assert!(sdk.join("wit/entity.wit").is_file());
        assert!(sdk.join("sdk-guest/src/lib.rs").is_file());
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"ledger\""), "{manifest}");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("entities/ledger/alice"), "{lib}");
        assert!(!lib.contains("{{"), "{lib}");
        assert!(dir.join(".gitignore").is_file());

        let again = new_crate("ledger", Kind::Value, &dir).err().unwrap();
        assert!(again.to_string().contains("not empty"), "{again}");
        assert!(std::fs::read_to_string(dir.join("src/lib.rs")).unwrap() == lib);

        // An empty directory is fine.
        let empty = work.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        new_crate("counter", Kind::Value, &empty).unwrap();
        assert!(
            std::fs::read_to_string(empty.join("src/lib.rs"))
                .unwrap()
                .contains("checked_add(n)")
        );
    }
}
