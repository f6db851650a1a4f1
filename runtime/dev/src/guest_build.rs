//! Building an entity crate into a component: `cella build`, and the build step of `cella dev`.
//!
//! [`build`] makes sure the embedded SDK copy and the `wasm32-wasip2` target exist, runs
//! `cargo build --release --target wasm32-wasip2` in the crate (cargo's progress and the
//! compiler's messages stream to stderr), and finds the component cargo produced. [`validate`]
//! loads it in a wasm host, the same check a node makes at upload.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use cella_core::EntityKind;
use cella_host::{Host, HostConfig};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

/// The guest target.
pub const TARGET: &str = "wasm32-wasip2";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The compiler refused the code; `summary` holds its first error (plain text).
    #[error("the build failed ({status})\n{summary}")]
    Compile { status: String, summary: String },
    /// Anything else: no cargo, no manifest, no component produced.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// A component cargo built.
pub struct Built {
    /// The package name from `Cargo.toml`.
    pub package: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
}

/// What a component declares, once validated.
pub struct Checked {
    pub kind: EntityKind,
    pub commands: Vec<String>,
    /// Inert interfaces the component imports (see the host's capability check).
    pub warnings: Vec<String>,
}

/// Reads the package name from the `[package]` table of a `Cargo.toml`.
pub fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}\nhint: run this in an entity crate, or make one with `cella new \
             NAME`",
            manifest.display()
        )
    })?;
    parse_package_name(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no `[package]` with a `name`\nhint: point to the entity crate itself, not to \
             a workspace",
            manifest.display()
        )
    })
}

fn parse_package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.split('#').next().unwrap_or_default().trim();
            in_package = header
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .eq("package");
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let rest = &value[1..];
        return rest.find(quote).map(|end| rest[..end].to_string());
    }
    None
}

/// The program to run as cargo: `$CARGO` (set when running under cargo), else `cargo`.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Installs the guest target with rustup if it is missing (without rustup, cargo will say so).
pub async fn ensure_target() -> anyhow::Result<()> {
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
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .context("cannot run rustup")?;
    if !status.success() {
        bail!(
            "`rustup target add {TARGET}` failed ({status})\nhint: install the target by hand: \
             rustup target add {TARGET}"
        );
    }
    Ok(())
}

/// Builds the crate in `dir` for `wasm32-wasip2` (release) and returns the component.
pub async fn build(dir: &Path) -> Result<Built, BuildError> {
    let dir = &std::path::absolute(dir)
        .map_err(|e| anyhow::anyhow!("cannot resolve the directory {}: {e}", dir.display()))?;
    let manifest = dir.join("Cargo.toml");
    let package = package_name(&manifest)?;
    crate::scaffold::ensure_sdk()?;
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
    let mut child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run cargo: {e}\nhint: install Rust (rustup.rs)"))?;
    let stdout = child.stdout.take().context("cargo's stdout is missing")?;
    let stderr = child.stderr.take().context("cargo's stderr is missing")?;

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
    let status = child.wait().await.context("waiting for cargo failed")?;
    let kept = echo.await.unwrap_or_default();
    let produced = artifacts.await.unwrap_or_default();
    if !status.success() {
        return Err(BuildError::Compile {
            status: match status.code() {
                Some(code) => format!("cargo exited with {code}"),
                None => "cargo was stopped".to_string(),
            },
            summary: error_summary(&kept),
        });
    }
    let wasm = match produced {
        Some(path) => path,
        None => expected_wasm(dir, &package),
    };
    if !wasm.is_file() {
        return Err(anyhow::anyhow!(
            "cargo built no component for `{package}` (looked for {})\nhint: the crate needs \
             `[lib] crate-type = [\"cdylib\", \"rlib\"]` in Cargo.toml",
            wasm.display()
        )
        .into());
    }
    Ok(Built { package, wasm })
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

/// Copies a tool's output stream to stderr line by line and returns the lines (the last few
/// hundred), for `cella build` of Python and JavaScript projects.
pub(crate) async fn echo_lines(stream: impl tokio::io::AsyncRead + Unpin) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut kept = Vec::new();
    let mut out = tokio::io::stderr();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.write_all(b"\n").await;
        kept.push(line);
        if kept.len() > 400 {
            kept.drain(..200);
        }
    }
    let _ = out.flush().await;
    kept
}

/// Loads a component the way a node does at upload and returns what it declares.
pub async fn validate(wasm: &[u8]) -> anyhow::Result<Checked> {
    let host = Host::new(HostConfig {
        max_instances: 4,
        ..HostConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot start a wasm host: {e}"))?;
    let module = host.load(wasm).await.map_err(|e| match e {
        cella_host::Error::InvalidComponent(m) => anyhow::anyhow!(
            "the component is not a valid Cella entity: {m}\nhint: export it with \
             `cella_sdk::export_entity!` (or your language SDK's export) and import nothing \
             beyond WASI's clocks, random, files, sockets, io and cli"
        ),
        other => anyhow::anyhow!("validating the component failed: {other}"),
    })?;
    let descriptor = module.descriptor();
    Ok(Checked {
        kind: descriptor.kind,
        commands: descriptor.commands.clone(),
        warnings: module.warnings().to_vec(),
    })
}

/// `cella build`: build, validate, report.
/// The language is told by the project's files: `Cargo.toml` (Rust), `app.py` (Python with
/// componentize-py) or `package.json` (JavaScript with componentize-js).
pub async fn run_build(dir: &Path) -> anyhow::Result<()> {
    let (wasm, package) = if crate::build_python::is_python_project(dir) {
        let wasm = crate::build_python::build(dir).await?;
        (wasm, project_name(dir))
    } else if crate::build_js::is_js_project(dir) {
        let wasm = crate::build_js::build(dir).await?;
        (wasm, project_name(dir))
    } else {
        let built = build(dir).await.map_err(|e| match e {
            BuildError::Compile { status, summary } => anyhow::anyhow!(
                "the build failed ({status}):\n{summary}\nhint: fix the errors above and run \
                 `cella build` again"
            ),
            BuildError::Other(e) => e,
        })?;
        (built.wasm, built.package)
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let checked = validate(&bytes).await?;
    println!("built {}", wasm.display());
    println!("  package   {package}");
    println!(
        "  size      {} ({} bytes)",
        human_size(bytes.len() as u64),
        bytes.len()
    );
    println!("  kind      {}", checked.kind.as_str());
    println!("  commands  {}", checked.commands.join(", "));
    for warning in &checked.warnings {
        println!("  warning   {warning}");
    }
    Ok(())
}

/// A Python or JavaScript project's name: its directory's name.
fn project_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "entity".into())
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        let m = "[workspace]\nname = \"no\"\n\n[package]\nversion = \"1\"\nname = \"my-counter\" # x\n[dependencies]\nname = \"dep\"\n";
        assert_eq!(parse_package_name(m).as_deref(), Some("my-counter"));
        assert_eq!(
            parse_package_name("[ package ] # the crate\nname='x'").as_deref(),
            Some("x")
        );
        assert_eq!(parse_package_name("[workspace]\nmembers = []\n"), None);
        assert_eq!(
            parse_package_name("[package]\nname.workspace = true\n"),
            None
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
