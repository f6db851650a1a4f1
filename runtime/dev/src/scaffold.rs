//! `cella new` and the guest SDK that travels inside the `cella` binary.
//!
//! The Rust guest SDK (`sdk-guest/`) and the WIT contract (`wit/`) are embedded at compile time
//! and written out on demand to `$CELLA_HOME/sdk/<cella version>/{sdk-guest,wit}` (default
//! `CELLA_HOME`: `~/.cella`), the layout the SDK's `generate!` expects (`../wit`). Crates made by
//! [`new_crate`] depend on that copy by absolute path, so they build anywhere, standalone.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The version of the embedded SDK: the version of this program.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SDK's manifest, standalone: the same dependencies as `sdk-guest/Cargo.toml`, with the
/// versions of the workspace spelled out (a unit test keeps the two in step).
const SDK_MANIFEST: &str = r#"[package]
name = "cella-sdk"
description = "Rust SDK for Cella entities: write a value or event-sourced entity as plain Rust, export it as a cella:entity component."
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
"#;

/// Every file of the SDK copy, relative to `$CELLA_HOME/sdk/<version>`.
fn sdk_files() -> Vec<(String, &'static str)> {
    let manifest = std::iter::once(("sdk-guest/Cargo.toml".to_string(), SDK_MANIFEST));
    let sources = cella_sdk::bundle::RUST
        .iter()
        .map(|(path, text)| (format!("sdk-guest/{path}"), *text));
    manifest.chain(sources).chain(wit_files()).collect()
}

/// The WIT files, at `wit/` of an SDK copy.
pub(crate) fn wit_files() -> impl Iterator<Item = (String, &'static str)> {
    cella_wit::FILES
        .iter()
        .map(|(path, text)| (format!("wit/{path}"), *text))
}

/// The `src/lib.rs` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("templates/value.rs");
/// The `src/lib.rs` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("templates/event_sourced.rs");

const GITIGNORE: &str = "/target\n/.cella\n";

/// The kind of entity `cella new` scaffolds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// State persisted whole; the handler mutates it (a counter).
    Value,
    /// Commands emit events; the state is their fold (a ledger).
    EventSourced,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::EventSourced => "event-sourced",
        }
    }
}

/// `$CELLA_HOME`, or `~/.cella`, as an absolute path.
pub fn cella_home() -> anyhow::Result<PathBuf> {
    let home = match std::env::var_os("CELLA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let user_home = std::env::var_os("HOME")
                .or_else(|| std::env::var_os("USERPROFILE"))
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "cannot find the home directory\nhint: set CELLA_HOME to a directory \
                         cella may write to"
                    )
                })?;
            PathBuf::from(user_home).join(".cella")
        }
    };
    std::path::absolute(&home)
        .with_context(|| format!("cannot resolve the directory {}", home.display()))
}

/// Writes the embedded SDK to `$CELLA_HOME/sdk/<version>` where it is missing or differs, and
/// returns the SDK crate's directory (`.../sdk-guest`). Unchanged files are not touched, so
/// crates depending on the copy do not rebuild it.
pub fn ensure_sdk() -> anyhow::Result<PathBuf> {
    let root = cella_home()?.join("sdk").join(SDK_VERSION);
    write_sdk_files(&root, sdk_files(), "the Cella SDK")?;
    Ok(root.join("sdk-guest"))
}

/// Writes embedded SDK `files` (paths relative to `root`) where they are missing or differ;
/// `what` names the SDK in errors.
pub(crate) fn write_sdk_files(
    root: &Path,
    files: Vec<(String, &str)>,
    what: &str,
) -> anyhow::Result<()> {
    for (relative, contents) in files {
        let path = root.join(&relative);
        write_if_changed(&path, contents).with_context(|| {
            format!(
                "cannot write {what} to {}\nhint: set CELLA_HOME to a directory cella may write \
                 to",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// Fails unless `dir` is missing or an empty directory, so a scaffold never overwrites.
pub(crate) fn ensure_empty_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!(
            "{} exists and is not a directory\nhint: choose another name or --path",
            dir.display()
        );
    }
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} already exists and is not empty; nothing was written\nhint: choose another \
             name, or a new directory with --path DIR",
            dir.display()
        );
    }
    Ok(())
}

/// Writes a new project's `files` (paths relative to `dir`), creating directories.
pub(crate) fn write_project_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Checks the name of a new Python or JavaScript entity (its directory and entity type):
/// lowercase ASCII letters, digits, `-` and `_`, starting with a letter, at most 64
/// characters, and none of `reserved`.
pub(crate) fn validate_project_name(name: &str, reserved: &[&str]) -> anyhow::Result<()> {
    let hint = "hint: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter \
                (e.g. `my-counter`)";
    if name.is_empty() || name.len() > 64 {
        bail!("the name must be 1 to 64 characters long\n{hint}");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        bail!("`{name}` contains the character {c:?}\n{hint}");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("`{name}` must start with a letter\n{hint}");
    }
    if reserved.contains(&name) {
        bail!("`{name}` is reserved\n{hint}");
    }
    Ok(())
}

/// Writes `contents` to `path` (through a temporary file and a rename, so a concurrent reader
/// never sees half a file) unless it already holds exactly that.
pub(crate) fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == contents.as_bytes()) {
        return Ok(());
    }
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the path has no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

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
pub fn validate_crate_name(name: &str) -> anyhow::Result<()> {
    let hint = "hint: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter \
                (e.g. `my-counter`)";
    if name.is_empty() {
        bail!("the name is empty\n{hint}");
    }
    if name.len() > 64 {
        bail!(
            "`{name}` is {} characters long (at most 64)\n{hint}",
            name.len()
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        bail!("`{name}` contains the character {c:?}, which a crate name cannot\n{hint}");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("`{name}` must start with a letter\n{hint}");
    }
    let ident = name.replace('-', "_");
    if KEYWORDS.contains(&ident.as_str()) {
        bail!("`{name}` is a Rust keyword and cannot name a crate\n{hint}");
    }
    if RESERVED.contains(&ident.to_ascii_lowercase().as_str()) {
        bail!("`{name}` is reserved (by Rust, cargo or the crate's dependencies)\n{hint}");
    }
    Ok(())
}

/// Quotes a string as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `Cargo.toml` of a new entity crate.
fn manifest(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A component (cdylib) for Cella, and a Rust library (rlib) for the unit tests.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
cella-sdk = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}

# `cella build` builds with this profile: small, fast components.
[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"
codegen-units = 1

# A workspace of its own, so the crate builds standalone wherever it is.
[workspace]
"#,
        sdk = toml_string(&sdk.to_string_lossy()),
    )
}

/// What [`new_crate`] made.
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The SDK crate it depends on.
    pub sdk: PathBuf,
}

/// Scaffolds the entity crate `name` of `kind` in `dir`, which must not exist or be empty.
pub fn new_crate(name: &str, kind: Kind, dir: &Path) -> anyhow::Result<Created> {
    validate_crate_name(name)?;
    ensure_empty_dir(dir)?;
    let sdk = ensure_sdk()?;
    let template = match kind {
        Kind::Value => VALUE_TEMPLATE,
        Kind::EventSourced => EVENT_SOURCED_TEMPLATE,
    };
    let files = [
        ("Cargo.toml", manifest(name, &sdk)),
        ("src/lib.rs", template.replace("{{name}}", name)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    write_project_files(dir, &files)?;
    Ok(Created {
        dir: dir.to_path_buf(),
        sdk,
    })
}

/// `cella new`: scaffolds the crate and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> anyhow::Result<()> {
    validate_crate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let created = new_crate(name, kind, &dir)?;
    println!(
        "created the {} entity `{name}` in {}",
        kind.label(),
        created.dir.display()
    );
    println!("  Cargo.toml, src/lib.rs, .gitignore");
    println!("  SDK: {}", created.sdk.display());
    println!("next:");
    println!("  cd {}", created.dir.display());
    println!("  cella dev      # build, serve on http://127.0.0.1:8080, reload on every save");
    println!("  cargo test     # the entity's unit tests");
    println!("  cella build    # the component, for `cella deploy`");
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
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        let m = manifest("x", Path::new("/home/a b/sdk-guest"));
        assert!(
            m.contains(r#"cella-sdk = { path = "/home/a b/sdk-guest" }"#),
            "{m}"
        );
        assert!(m.contains("\n[workspace]\n"), "{m}");
    }

    fn workspace_file(relative: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The dependency names of a `[dependencies]` table, from a simple manifest.
    fn dependency_names(manifest: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut in_deps = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
            } else if in_deps && let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().trim_end_matches(".workspace").to_string());
            }
        }
        names.sort();
        names
    }

    #[test]
    fn the_embedded_sdk_matches_the_workspace() {
        // The same dependencies as sdk-guest/Cargo.toml, at the workspace's versions.
        let sdk_manifest = workspace_file("sdk-guest/Cargo.toml");
        assert_eq!(
            dependency_names(SDK_MANIFEST),
            dependency_names(&sdk_manifest)
        );
        let workspace = workspace_file("Cargo.toml");
        for name in dependency_names(SDK_MANIFEST) {
            let line = workspace
                .lines()
                .find(|l| l.starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} is not a workspace dependency"));
            assert!(
                SDK_MANIFEST.lines().any(|l| l == line),
                "the embedded SDK manifest should say `{line}`"
            );
        }
        assert!(SDK_MANIFEST.contains(&format!("version = \"{SDK_VERSION}\"")));
        // Every source file of the SDK is embedded.
        let mut sources: Vec<String> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk-guest/src"))
                .unwrap()
                .map(|e| format!("sdk-guest/src/{}", e.unwrap().file_name().to_string_lossy()))
                .collect();
        sources.sort();
        let mut embedded: Vec<String> = sdk_files()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with("sdk-guest/src/"))
            .collect();
        embedded.sort();
        assert_eq!(sources, embedded);
    }

    #[test]
    fn scaffolds_once_and_refuses_to_overwrite() {
        let home = tempfile::tempdir().unwrap();
        // SAFETY: only this test reads CELLA_HOME in this process.
        unsafe { std::env::set_var("CELLA_HOME", home.path()) };
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ledger");
        let created = new_crate("ledger", Kind::EventSourced, &dir).unwrap();
        let sdk = home.path().join("sdk").join(SDK_VERSION);
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
