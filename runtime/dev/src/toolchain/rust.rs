//! The Rust [`Toolchain`]: an entity crate (a `Cargo.toml`) built with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! The build makes sure the Rust SDK copy and the `wasm32-wasip2` target exist, runs cargo in
//! the crate (cargo's progress and the compiler's messages stream to stderr, and the first
//! error is kept for the failure), and finds the component among the artifacts cargo reports.
//! The package name is read from `Cargo.toml` with `toml_edit`.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use super::{BuildFuture, Lang, Toolchain};
use crate::error::{Error, Hint, Result, exit_status};

/// The guest target.
pub const TARGET: &str = "wasm32-wasip2";

/// What a crate's missing manifest or package name says to do.
const CRATE_HINT: &str = "run this in an entity crate, or make one with `cella new NAME`";

/// Entity crates: `Cargo.toml` and `src/`.
pub struct Rust;

impl Toolchain for Rust {
    fn lang(&self) -> Lang {
        Lang::Rust
    }

    fn detect(&self, dir: &Path) -> bool {
        dir.join("Cargo.toml").is_file()
    }

    fn default_type(&self, dir: &Path) -> Result<String> {
        package_name(&dir.join("Cargo.toml"))
    }

    fn sources(&self) -> &'static str {
        "src/, Cargo.toml and build.rs"
    }

    fn watch_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let src = dir.join("src");
        if !src.is_dir() {
            return Err(Error::project(
                format!("{} has no src/ directory", dir.display()),
                "run `cella dev` in an entity crate, or make one with `cella new NAME`",
            ));
        }
        Ok(vec![src])
    }

    fn is_source(&self, path: &Path) -> bool {
        path == Path::new("Cargo.toml") || path == Path::new("build.rs") || path.starts_with("src")
    }

    fn build<'a>(&'a self, dir: &'a Path) -> BuildFuture<'a> {
        Box::pin(build(dir))
    }
}

/// Reads the package name from the `[package]` table of a `Cargo.toml`.
pub fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| Error::read(manifest, e, CRATE_HINT.into()))?;
    parse_package_name(&text).map_err(|e| match e {
        Some(e) => Error::Project {
            message: format!("{} is not valid TOML", manifest.display()),
            hint: Hint::NONE,
            source: Some(Box::new(e)),
        },
        None => Error::project(
            format!("{} has no `[package]` with a `name`", manifest.display()),
            "point to the entity crate itself, not to a workspace",
        ),
    })
}

/// The `package.name` of a manifest; `Err(None)` if it has none (a workspace, or a name
/// inherited from one).
pub(crate) fn parse_package_name(
    manifest: &str,
) -> std::result::Result<String, Option<toml_edit::TomlError>> {
    let doc: toml_edit::DocumentMut = manifest.parse().map_err(Some)?;
    doc.get("package")
        .and_then(|package| package.get("name"))
        .and_then(|name| name.as_str())
        .map(str::to_string)
        .ok_or(None)
}

/// The program to run as cargo: `$CARGO` (set when running under cargo), else `cargo`.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Installs the guest target with rustup if it is missing (without rustup, cargo will say so).
pub async fn ensure_target() -> Result<()> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    let installed = match listed {
        Ok(output) if output.status.success() => output.stdout,
        _ => return Ok(()),
    };
    if String::from_utf8_lossy(&installed)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target (rustup target add {TARGET})");
    let hint = format!("install the target by hand: rustup target add {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(|e| Error::Tool {
            message: "cannot run rustup".to_string(),
            hint: hint.clone().into(),
            source: Some(e),
        })?;
    if !status.success() {
        return Err(Error::tool(
            format!("`rustup target add {TARGET}` failed ({status})"),
            hint,
        ));
    }
    Ok(())
}

/// Builds the crate in `dir` for `wasm32-wasip2` (release) and returns the component.
pub async fn build(dir: &Path) -> Result<PathBuf> {
    let dir = &std::path::absolute(dir).map_err(|e| {
        Error::io(
            format_args!("cannot resolve the directory {}", dir.display()),
            e,
            Hint::NONE,
        )
    })?;
    let manifest = dir.join("Cargo.toml");
    let package = package_name(&manifest)?;
    crate::sdk::ensure_rust_sdk()?;
    ensure_target().await?;

    let mut command = Command::new(cargo());
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::io::stderr().is_terminal() {
        command.arg("--color=always");
    }
    let mut child = command.spawn().map_err(|e| Error::Tool {
        message: "cannot run cargo".to_string(),
        hint: "install Rust (rustup.rs)".into(),
        source: Some(e),
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::tool("cargo's output is not connected", Hint::NONE));
    };

    // Cargo's own progress and the rendered diagnostics: echoed to stderr and kept.
    let echo = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut kept = Vec::new();
        let mut out = tokio::io::stderr();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = out.write_all(line.as_bytes()).await;
            let _ = out.write_all(b"\n").await;
            if kept.len() < 10_000 {
                kept.push(strip_ansi(&line));
            }
        }
        let _ = out.flush().await;
        kept
    });
    // The JSON messages: the artifacts cargo produced.
    let canonical_manifest = std::fs::canonicalize(&manifest).unwrap_or(manifest.clone());
    let artifacts = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut wasm = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(path) = artifact_wasm(&line, &canonical_manifest) {
                wasm = Some(path);
            }
        }
        wasm
    });
    let status = child.wait().await.map_err(|e| Error::Tool {
        message: "waiting for cargo failed".to_string(),
        hint: Hint::NONE,
        source: Some(e),
    })?;
    let kept = echo.await.unwrap_or_default();
    let produced = artifacts.await.unwrap_or_default();
    if !status.success() {
        return Err(Error::Build {
            status: exit_status("cargo", status),
            summary: error_summary(&kept),
            hint: "fix the errors above and run `cella build` again".into(),
        });
    }
    let wasm = match produced {
        Some(path) => path,
        None => expected_wasm(dir, &package),
    };
    if !wasm.is_file() {
        return Err(Error::project(
            format!(
                "cargo built no component for `{package}` (looked for {})",
                wasm.display()
            ),
            "the crate needs `[lib] crate-type = [\"cdylib\", \"rlib\"]` in Cargo.toml",
        ));
    }
    Ok(wasm)
}

/// The `.wasm` a `compiler-artifact` message names for the package of `manifest`.
fn artifact_wasm(line: &str, manifest: &Path) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let from = message["manifest_path"].as_str()?;
    if std::fs::canonicalize(from).ok()?.as_path() != manifest {
        return None;
    }
    message["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

/// Where cargo puts the component by default: `<target dir>/wasm32-wasip2/release/<lib>.wasm`,
/// the target dir being `$CARGO_TARGET_DIR` (relative to `dir`) or `dir/target`.
pub fn expected_wasm(dir: &Path, package: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(t) => dir.join(t),
        None => dir.join("target"),
    };
    target
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Removes ANSI escape sequences (colors) from a line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The compiler's first error (up to 12 lines) and the closing "could not compile" line.
fn error_summary(lines: &[String]) -> String {
    let Some(start) = lines.iter().position(|l| l.starts_with("error")) else {
        let tail: Vec<&str> = lines
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        return tail.join("\n");
    };
    let mut summary: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .take(12)
        .map(String::as_str)
        .collect();
    if let Some(last) = lines[start + 1..]
        .iter()
        .find(|l| l.starts_with("error: could not compile"))
        && summary.last() != Some(&last.as_str())
    {
        summary.push(last);
    }
    summary.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        let m = "[workspace]\nname = \"no\"\n\n[package]\nversion = \"1\"\nname = \"my-counter\" # x\n[dependencies]\nname = \"dep\"\n";
        assert_eq!(parse_package_name(m).unwrap(), "my-counter");
        assert_eq!(
            parse_package_name("[ package ] # the crate\nname='x'").unwrap(),
            "x"
        );
        assert_eq!(
            parse_package_name("package = { name = \"inline\" }").unwrap(),
            "inline"
        );
        assert!(matches!(
            parse_package_name("[workspace]\nmembers = []\n"),
            Err(None)
        ));
        assert!(matches!(
            parse_package_name("[package]\nname.workspace = true\n"),
            Err(None)
        ));
        assert!(matches!(
            parse_package_name("[package\nname = \"x\""),
            Err(Some(_))
        ));
    }

    #[test]
    fn manifest_errors_say_what_to_do() {
        let work = tempfile::tempdir().unwrap();
        let manifest = work.path().join("Cargo.toml");
        let error = package_name(&manifest).unwrap_err();
        assert!(error.to_string().starts_with("cannot read "), "{error}");
        assert_eq!(error.hint(), Some(CRATE_HINT));
        std::fs::write(&manifest, "[workspace]\n").unwrap();
        let error = package_name(&manifest).unwrap_err().to_string();
        assert!(error.contains("no `[package]` with a `name`"), "{error}");
        std::fs::write(&manifest, "[package\n").unwrap();
        let error = package_name(&manifest).unwrap_err();
        assert!(error.to_string().contains("is not valid TOML"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn sources_are_src_and_the_manifest() {
        for (path, source) in [
            ("src/lib.rs", true),
            ("src/a/b.rs", true),
            ("Cargo.toml", true),
            ("build.rs", true),
            ("Cargo.lock", false),
            ("target/x", false),
            ("srcx/lib.rs", false),
        ] {
            assert_eq!(Rust.is_source(Path::new(path)), source, "{path}");
        }
        let work = tempfile::tempdir().unwrap();
        let error = Rust.watch_dirs(work.path()).unwrap_err().to_string();
        assert!(error.contains("has no src/ directory"), "{error}");
        std::fs::create_dir(work.path().join("src")).unwrap();
        assert_eq!(
            Rust.watch_dirs(work.path()).unwrap(),
            [work.path().join("src")]
        );
    }

    #[test]
    fn error_summaries() {
        assert_eq!(
            strip_ansi("\u{1b}[1m\u{1b}[91merror\u{1b}[0m: x"),
            "error: x"
        );
        let lines: Vec<String> = [
            "   Compiling x v0.1.0",
            "error: expected `;`, found `}`",
            "  --> src/lib.rs:3:5",
            "",
            "error: could not compile `x` (lib) due to 1 previous error",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            error_summary(&lines),
            "error: expected `;`, found `}`\n  --> src/lib.rs:3:5\nerror: could not compile \
             `x` (lib) due to 1 previous error"
        );
    }

    #[test]
    fn default_component_path() {
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(
                expected_wasm(Path::new("/w/c"), "my-counter"),
                Path::new("/w/c/target/wasm32-wasip2/release/my_counter.wasm")
            );
        }
    }
}
