//! The guest SDKs that travel inside the `cella` binary, and their copies on disk.
//!
//! The Rust SDK (`sdk-guest/`), the Python package `cella`, the JavaScript package `cella-sdk`
//! (with its pinned build toolchain's manifests) and the WIT contract (`wit/`) are embedded at
//! compile time (`cella_sdk::bundle`, `cella_wit`) and written out on demand to
//! `$CELLA_HOME/sdk/<cella version>/` (default `CELLA_HOME`: `~/.cella`):
//!
//! - `sdk-guest/` — the Rust SDK crate, in the layout its `generate!` expects (`../wit`); entity
//!   crates depend on it by absolute path, so they build anywhere, standalone;
//! - `python/cella/` — the Python package, put on componentize-py's module path;
//! - `js/cella-sdk/` — the JavaScript package (its modules and `tools/componentize.mjs`, the
//!   build script); projects depend on it with `"cella-sdk": "file:<that directory>"`;
//! - `js/toolchain/` — the JavaScript SDK's `package.json` and `package-lock.json`, from which
//!   the pinned build tools are installed with `npm ci` the first time a project needs them;
//! - `wit/` — the contract.
//!
//! Files are written only where they are missing or differ, so crates depending on the copy do
//! not rebuild it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The version of the embedded SDKs: the version of this program.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hint for a `CELLA_HOME` that cannot be found or written.
const HOME_HINT: &str = "set CELLA_HOME to a directory cella may write to";

/// The Rust SDK's manifest, standalone: the same dependencies as `sdk-guest/Cargo.toml`, with
/// the versions of the workspace spelled out (a unit test keeps the two in step), and its
/// `bundle` feature declared so the SDK's `#[cfg(feature = "bundle")]` is a known condition
/// (the copy leaves out `bundle.rs`, which only the cella tools compile).
const RUST_MANIFEST: &str = r#"[package]
name = "cella-sdk"
description = "Rust SDK for Cella entities: write a value or event-sourced entity as plain Rust, export it as a cella:entity component."
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[features]
# The SDK's own files, for the cella tools; this copy does not carry them.
bundle = []
"#;

/// The `package.json` of the JavaScript SDK copy: the package without the SDK's own
/// development tools (the same name, version, module type and exports as
/// `sdk-guest/js/package.json`; a unit test checks).
const JS_MANIFEST: &str = r#"{
  "name": "cella-sdk",
  "version": "0.1.0",
  "description": "JavaScript SDK for Cella entities: write a value or event-sourced entity as a plain definition, export it as a cella:entity component.",
  "private": true,
  "license": "Apache-2.0",
  "type": "module",
  "exports": {
    ".": "./src/cella.js",
    "./testing": "./src/testing.js",
    "./tools/componentize": "./tools/componentize.mjs"
  },
  "engines": {
    "node": ">=20"
  }
}
"#;

/// `$CELLA_HOME`, or `~/.cella`, as an absolute path.
pub fn cella_home() -> Result<PathBuf> {
    let home = match std::env::var_os("CELLA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let user_home = std::env::var_os("HOME")
                .or_else(|| std::env::var_os("USERPROFILE"))
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    Error::io(
                        "cannot find the home directory",
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "neither CELLA_HOME nor HOME is set",
                        ),
                        HOME_HINT.into(),
                    )
                })?;
            PathBuf::from(user_home).join(".cella")
        }
    };
    std::path::absolute(&home).map_err(|e| {
        Error::io(
            format_args!("cannot resolve the directory {}", home.display()),
            e,
            HOME_HINT.into(),
        )
    })
}

/// `$CELLA_HOME/sdk/<version>`, where every SDK copy of this version lives.
pub fn sdk_root() -> Result<PathBuf> {
    Ok(cella_home()?.join("sdk").join(SDK_VERSION))
}

/// The WIT files, at `wit/` of an SDK copy.
fn wit_files() -> impl Iterator<Item = (String, &'static str)> {
    cella_wit::FILES
        .iter()
        .map(|(path, text)| (format!("wit/{path}"), *text))
}

/// Every file of the Rust SDK copy, relative to the SDK root.
fn rust_files() -> Vec<(String, &'static str)> {
    let manifest = std::iter::once(("sdk-guest/Cargo.toml".to_string(), RUST_MANIFEST));
    let sources = cella_sdk::bundle::RUST
        .iter()
        .map(|(path, text)| (format!("sdk-guest/{path}"), *text));
    manifest.chain(sources).chain(wit_files()).collect()
}

/// Every file of the Python SDK copy, relative to the SDK root.
fn python_files() -> Vec<(String, &'static str)> {
    cella_sdk::bundle::PYTHON
        .iter()
        .map(|(path, text)| (format!("python/{path}"), *text))
        .chain(wit_files())
        .collect()
}

/// Every file of the JavaScript SDK copy, relative to the SDK root: the package (with its own
/// manifest) under `js/cella-sdk/`, the pinned toolchain's manifests under `js/toolchain/`.
fn js_files() -> Vec<(String, &'static str)> {
    let package = cella_sdk::bundle::JS.iter().map(|(path, text)| {
        let to = match *path {
            "package.json" | "package-lock.json" => format!("js/toolchain/{path}"),
            _ => format!("js/cella-sdk/{path}"),
        };
        (to, *text)
    });
    std::iter::once(("js/cella-sdk/package.json".to_string(), JS_MANIFEST))
        .chain(package)
        .chain(wit_files())
        .collect()
}

/// Writes the Rust SDK to `$CELLA_HOME/sdk/<version>` where it is missing or differs, and
/// returns the SDK crate's directory (`.../sdk-guest`).
pub fn ensure_rust_sdk() -> Result<PathBuf> {
    let root = sdk_root()?;
    write_sdk_files(&root, rust_files(), "the Cella SDK")?;
    Ok(root.join("sdk-guest"))
}

/// Where the Python SDK copy is.
pub struct PythonSdk {
    /// The directory holding the `cella` package (a module path).
    pub python: PathBuf,
    /// The directory holding `entity.wit`.
    pub wit: PathBuf,
}

/// Writes the Python SDK and WIT to `$CELLA_HOME/sdk/<version>` where they are missing or
/// differ.
pub fn ensure_python_sdk() -> Result<PythonSdk> {
    write_python_sdk(&sdk_root()?)
}

/// Writes the Python SDK copy under `root`.
pub(crate) fn write_python_sdk(root: &Path) -> Result<PythonSdk> {
    write_sdk_files(root, python_files(), "the Cella Python SDK")?;
    Ok(PythonSdk {
        python: root.join("python"),
        wit: root.join("wit"),
    })
}

/// Where the JavaScript SDK copy is.
pub struct JsSdk {
    /// The `cella-sdk` package directory.
    pub package: PathBuf,
    /// The directory the pinned build tools are installed in (`node_modules` inside).
    pub toolchain: PathBuf,
    /// `entity.wit`.
    pub wit: PathBuf,
}

impl JsSdk {
    /// The build script, `tools/componentize.mjs` of the package.
    pub fn build_script(&self) -> PathBuf {
        self.package.join("tools").join("componentize.mjs")
    }
}

/// Writes the JavaScript SDK and WIT to `$CELLA_HOME/sdk/<version>` where they are missing or
/// differ.
pub fn ensure_js_sdk() -> Result<JsSdk> {
    write_js_sdk(&sdk_root()?)
}

/// Writes the JavaScript SDK copy under `root`.
pub(crate) fn write_js_sdk(root: &Path) -> Result<JsSdk> {
    write_sdk_files(root, js_files(), "the Cella JavaScript SDK")?;
    Ok(JsSdk {
        package: root.join("js").join("cella-sdk"),
        toolchain: root.join("js").join("toolchain"),
        wit: root.join("wit").join("entity.wit"),
    })
}

/// Writes embedded SDK `files` (paths relative to `root`) where they are missing or differ;
/// `what` names the SDK in errors.
fn write_sdk_files(root: &Path, files: Vec<(String, &str)>, what: &str) -> Result<()> {
    for (relative, contents) in files {
        let path = root.join(&relative);
        write_if_changed(&path, contents).map_err(|e| {
            Error::io(
                format_args!("cannot write {what} to {}", path.display()),
                e,
                HOME_HINT.into(),
            )
        })?;
    }
    Ok(())
}

/// Writes `contents` to `path` (through a temporary file and a rename, so a concurrent reader
/// never sees half a file) unless it already holds exactly that.
fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::js::{COMPONENTIZE_JS_VERSION, ESBUILD_VERSION};

    fn repo_path(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative)
    }

    fn repo_file(relative: &str) -> String {
        let path = repo_path(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The files of `dir` (relative to the repository) whose names end in one of `endings`,
    /// as `prefix/name`, sorted.
    fn listed(dir: &str, endings: &[&str], prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(repo_path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| endings.iter().any(|end| name.ends_with(end)))
            .map(|name| format!("{prefix}/{name}"))
            .collect();
        names.sort();
        names
    }

    /// The embedded paths that start with `prefix` (and are not `package.json`), sorted.
    fn embedded(files: Vec<(String, &str)>, prefix: &str) -> Vec<String> {
        let mut paths: Vec<String> = files
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(prefix) && !p.ends_with("package.json"))
            .collect();
        paths.sort();
        paths
    }

    /// The `[dependencies]` of a manifest, as `name → the dependency's TOML` (a workspace
    /// dependency as the workspace's entry).
    fn dependencies(manifest: &str) -> Vec<(String, String)> {
        let doc: toml_edit::DocumentMut = manifest.parse().unwrap();
        let mut deps: Vec<(String, String)> = doc["dependencies"]
            .as_table_like()
            .unwrap()
            .iter()
            .map(|(name, item)| (name.to_string(), item.to_string().trim().to_string()))
            .collect();
        deps.sort();
        deps
    }

    #[test]
    fn the_rust_sdk_matches_the_workspace() {
        // The same dependencies as sdk-guest/Cargo.toml, at the workspace's versions.
        let workspace: toml_edit::DocumentMut = repo_file("Cargo.toml").parse().unwrap();
        let members = dependencies(&repo_file("sdk-guest/Cargo.toml"));
        let embedded_deps = dependencies(RUST_MANIFEST);
        assert_eq!(
            members.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            embedded_deps.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        for (name, spec) in embedded_deps {
            let pinned = workspace["workspace"]["dependencies"][name.as_str()]
                .to_string()
                .trim()
                .to_string();
            assert_eq!(spec, pinned, "the embedded SDK manifest's `{name}`");
        }
        let doc: toml_edit::DocumentMut = RUST_MANIFEST.parse().unwrap();
        assert_eq!(doc["package"]["version"].as_str(), Some(SDK_VERSION));
        // The copy declares the SDK's features, so its `cfg(feature = ...)` are known conditions.
        let features = |doc: &toml_edit::DocumentMut| -> Vec<String> {
            doc.get("features")
                .and_then(|f| f.as_table())
                .map(|t| t.iter().map(|(name, _)| name.to_string()).collect())
                .unwrap_or_default()
        };
        let member: toml_edit::DocumentMut = repo_file("sdk-guest/Cargo.toml").parse().unwrap();
        assert_eq!(features(&doc), features(&member));
        // Every source file of the SDK is embedded, but `bundle.rs`: it is compiled only with
        // the `bundle` feature, which only the cella tools enable.
        let mut sources = listed("sdk-guest/src", &[".rs"], "sdk-guest/src");
        sources.retain(|s| s != "sdk-guest/src/bundle.rs");
        assert_eq!(sources, embedded(rust_files(), "sdk-guest/src/"));
    }

    #[test]
    fn every_python_module_is_embedded() {
        assert_eq!(
            listed("sdk-guest/python/cella", &[".py"], "python/cella"),
            embedded(python_files(), "python/")
        );
    }

    #[test]
    fn every_js_module_is_embedded() {
        let mut sources = listed("sdk-guest/js/src", &[".js", ".mjs"], "js/cella-sdk/src");
        sources.extend(listed(
            "sdk-guest/js/tools",
            &[".js", ".mjs"],
            "js/cella-sdk/tools",
        ));
        sources.sort();
        assert_eq!(sources, embedded(js_files(), "js/cella-sdk/"));
    }

    #[test]
    fn the_js_manifest_and_pins_match_the_repository() {
        let repo: serde_json::Value =
            serde_json::from_str(&repo_file("sdk-guest/js/package.json")).unwrap();
        let copy: serde_json::Value = serde_json::from_str(JS_MANIFEST).unwrap();
        for field in ["name", "version", "type", "exports", "engines"] {
            assert_eq!(repo[field], copy[field], "{field}");
        }
        assert!(copy.get("devDependencies").is_none());
        let tools = &repo["devDependencies"];
        assert_eq!(
            tools["@bytecodealliance/componentize-js"],
            COMPONENTIZE_JS_VERSION
        );
        assert_eq!(tools["esbuild"], ESBUILD_VERSION);
        let lock: serde_json::Value =
            serde_json::from_str(&repo_file("sdk-guest/js/package-lock.json")).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/@bytecodealliance/componentize-js"]["version"],
            COMPONENTIZE_JS_VERSION
        );
    }

    #[test]
    fn writes_every_copy_once() {
        let root = tempfile::tempdir().unwrap();
        let python = write_python_sdk(root.path()).unwrap();
        assert!(python.python.join("cella/__init__.py").is_file());
        assert!(python.wit.join("entity.wit").is_file());
        let js = write_js_sdk(root.path()).unwrap();
        assert!(js.package.join("src/cella.js").is_file());
        assert!(js.build_script().is_file());
        assert!(js.toolchain.join("package-lock.json").is_file());
        assert!(js.wit.is_file());
        // Unchanged files are not rewritten.
        let script = js.build_script();
        let before = std::fs::metadata(&script).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_js_sdk(root.path()).unwrap();
        assert_eq!(
            std::fs::metadata(&script).unwrap().modified().unwrap(),
            before
        );
    }
}
