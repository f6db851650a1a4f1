//! Guest builds behind one trait: a [`Toolchain`] per language — [`rust`] (cargo for
//! `wasm32-wasip2`), [`python`] (componentize-py) and [`js`] (esbuild and componentize-js) —
//! says whether a directory holds one of its projects, the entity type the project deploys as,
//! what `cella dev` watches, and how to build it into a component. [`detect`] picks the
//! implementation once by the project's files; [`build`] and `cella dev` use it.
//!
//! Also here: [`validate`], the same check of a component a node makes at upload, `cella build`
//! ([`run_build`]: build, validate, report), and running a tool with its output streamed to
//! stderr.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    process::Stdio,
};

use cella_core::EntityKind;
use cella_host::{Host, HostConfig};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt},
    process::Command,
};

use crate::error::{Error, Hint, Result};

pub mod js;
pub mod python;
pub mod rust;

/// A guest language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate built with cargo for `wasm32-wasip2`.
    Rust,
    /// `app.py`, built with componentize-py.
    Python,
    /// A package whose main module exports the entity, built with componentize-js.
    Js,
}

impl Lang {
    /// The language's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// The language's toolchain.
    pub fn toolchain(self) -> &'static dyn Toolchain {
        match self {
            Lang::Rust => &rust::Rust,
            Lang::Python => &python::Python,
            Lang::Js => &js::Js,
        }
    }
}

/// What [`Toolchain::build`] returns: the path of the component it wrote, or why it could not.
pub type BuildFuture<'a> = Pin<Box<dyn Future<Output = Result<PathBuf>> + Send + 'a>>;

/// One guest language's projects: how one is recognized, the entity type it deploys as, what
/// `cella dev` watches, and the build. Implementations are stateless; [`detect`] and
/// [`Lang::toolchain`] hand out `'static` ones.
pub trait Toolchain: Send + Sync {
    /// The language.
    fn lang(&self) -> Lang;

    /// Whether `dir` holds a project of this language (by its marker files; nothing is read).
    fn detect(&self, dir: &Path) -> bool;

    /// The entity type the project in `dir` deploys as unless told otherwise, also the name
    /// `cella build` reports: Rust, the package name of `Cargo.toml`; JavaScript, the `name` of
    /// `package.json` without its scope; Python, the directory's name (what `cella new
    /// --lang python NAME` makes).
    fn default_type(&self, dir: &Path) -> Result<String>;

    /// The sources `cella dev` watches, in words (`src/, Cargo.toml and build.rs`).
    fn sources(&self) -> &'static str;

    /// The directories `cella dev` watches recursively, besides the project directory itself
    /// (watched for its own files). Never build output or installed packages (`target`,
    /// `node_modules`, `__pycache__`, hidden directories such as the node's `.cella`).
    fn watch_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>>;

    /// Whether a change to `path` (relative to the project directory) is a change of the
    /// sources, so `cella dev` rebuilds.
    fn is_source(&self, path: &Path) -> bool;

    /// Builds the project in `dir` (an absolute path) into a component and returns its path.
    /// The tools' output streams to stderr. The component is not validated: see [`validate`].
    fn build<'a>(&'a self, dir: &'a Path) -> BuildFuture<'a>;
}

/// Every toolchain, in the order [`detect`] asks them (a Python or JavaScript project has no
/// `Cargo.toml`, so the order matters only for a directory with both `app.py` and
/// `package.json`, which is Python).
const TOOLCHAINS: [&dyn Toolchain; 3] = [&python::Python, &js::Js, &rust::Rust];

/// The toolchain of the project in `dir`: `Cargo.toml` is Rust, `app.py` Python,
/// `package.json` JavaScript.
pub fn detect(dir: &Path) -> Result<&'static dyn Toolchain> {
    TOOLCHAINS
        .into_iter()
        .find(|toolchain| toolchain.detect(dir))
        .ok_or_else(|| {
            Error::project(
                format!(
                    "{} holds no entity project: no Cargo.toml (Rust), app.py (Python) or \
                     package.json (JavaScript)",
                    dir.display()
                ),
                "run this in an entity project, or make one with `cella new NAME [--lang \
                 python|js]`",
            )
        })
}

/// A component built and checked by [`build`].
pub struct Built {
    /// The project's language.
    pub lang: Lang,
    /// The project's name ([`Toolchain::default_type`]).
    pub name: String,
    /// The component file.
    pub wasm: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// What it declares.
    pub checked: Checked,
}

/// What a component declares, once validated.
pub struct Checked {
    pub kind: EntityKind,
    pub commands: Vec<String>,
    /// Inert interfaces the component imports (see the host's capability check).
    pub warnings: Vec<String>,
}

/// Builds the project in `dir` with the toolchain [`detect`] finds, then validates the
/// component.
pub async fn build(dir: &Path) -> Result<Built> {
    let dir = std::path::absolute(dir).map_err(|e| {
        Error::io(
            format_args!("cannot resolve the directory {}", dir.display()),
            e,
            Hint::NONE,
        )
    })?;
    let toolchain = detect(&dir)?;
    let name = toolchain.default_type(&dir)?;
    let wasm = toolchain.build(&dir).await?;
    let bytes = std::fs::read(&wasm).map_err(|e| Error::read(&wasm, e, Hint::NONE))?;
    let checked = validate(&bytes).await?;
    Ok(Built {
        lang: toolchain.lang(),
        name,
        wasm,
        bytes,
        checked,
    })
}

/// `cella build`: [`build`], then a report of the component on stdout.
pub async fn run_build(dir: &Path) -> Result<()> {
    report(&build(dir).await?);
    Ok(())
}

/// The report `cella build` prints of a built component, on stdout.
pub fn report(built: &Built) {
    println!("built {}", built.wasm.display());
    println!("  package   {}", built.name);
    println!(
        "  size      {} ({} bytes)",
        human_size(built.bytes.len() as u64),
        built.bytes.len()
    );
    println!("  kind      {}", built.checked.kind.as_str());
    println!("  commands  {}", built.checked.commands.join(", "));
    for warning in &built.checked.warnings {
        println!("  warning   {warning}");
    }
}

/// Loads a component the way a node does at upload and returns what it declares.
pub async fn validate(wasm: &[u8]) -> Result<Checked> {
    let host = Host::new(HostConfig {
        max_instances: 4,
        ..HostConfig::default()
    })
    .map_err(|e| Error::Component {
        message: "cannot start a wasm host".to_string(),
        hint: Hint::NONE,
        source: e,
    })?;
    let module = host.load(wasm).await.map_err(|e| match e {
        cella_host::Error::InvalidComponent(_) => Error::Component {
            message: "the component is not a valid Cella entity".to_string(),
            hint: "export it with `cella_sdk::export_entity!` (or your language SDK's export) \
                   and import nothing beyond WASI's clocks, random, files, sockets, io and cli"
                .into(),
            source: e,
        },
        other => Error::Component {
            message: "validating the component failed".to_string(),
            hint: Hint::NONE,
            source: other,
        },
    })?;
    let descriptor = module.descriptor();
    Ok(Checked {
        kind: descriptor.kind,
        commands: descriptor.commands.clone(),
        warnings: module.warnings().to_vec(),
    })
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The name of the directory `dir` (resolving `.` and links), or `fallback`.
pub(crate) fn dir_name(dir: &Path, fallback: &str) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// Whether a directory named `name` is never a project's sources: build output, installed
/// packages (a virtualenv among them), caches, hidden directories (`.git`, the node's `.cella`,
/// a `.venv`).
pub(crate) fn is_ignored_dir(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "target" | "node_modules" | "__pycache__" | "venv")
}

/// The subdirectories of `dir` that may hold sources: not [`is_ignored_dir`], not in `skip`.
pub(crate) fn source_dirs(dir: &Path, skip: &[&str]) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::open_dir(dir, e, Hint::NONE))?
        .flatten();
    let mut dirs: Vec<PathBuf> = entries
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            !is_ignored_dir(&name) && !skip.contains(&name.as_ref())
        })
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Whether no directory on `path` (relative to the project) is [`is_ignored_dir`] or in
/// `skip`.
pub(crate) fn in_source_dirs(path: &Path, skip: &[&str]) -> bool {
    let mut dirs = path.components().rev().skip(1);
    !dirs.any(|c| {
        let name = c.as_os_str().to_string_lossy();
        is_ignored_dir(&name) || skip.contains(&name.as_ref())
    })
}

/// How many lines of a tool's output a failure repeats.
pub(crate) const TAIL_LINES: usize = 15;

/// The last [`TAIL_LINES`] of `lines`, joined.
pub(crate) fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Runs `command`, copying its stdout and stderr to stderr line by line; returns its status and
/// the last lines it printed (a few hundred). `not_runnable` says why it could not be started.
pub(crate) async fn run_streamed(
    mut command: Command,
    program: &str,
    not_runnable: impl FnOnce(std::io::Error) -> Error,
) -> Result<(std::process::ExitStatus, Vec<String>)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(not_runnable)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::tool(
            format!("{program}'s output is not connected"),
            Hint::NONE,
        ));
    };
    let out = tokio::spawn(echo_lines(stdout));
    let err = tokio::spawn(echo_lines(stderr));
    let status = child.wait().await.map_err(|e| Error::Tool {
        message: format!("waiting for {program} failed"),
        hint: Hint::NONE,
        source: Some(e),
    })?;
    let mut tail = out.await.unwrap_or_default();
    tail.extend(err.await.unwrap_or_default());
    Ok((status, tail))
}

/// Copies a tool's output stream to stderr line by line and returns the lines (the last few
/// hundred).
pub(crate) async fn echo_lines(stream: impl tokio::io::AsyncRead + Unpin) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_marker_files() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let error = detect(dir).err().unwrap();
        assert!(
            error.to_string().contains("holds no entity project"),
            "{error}"
        );
        assert!(error.hint().is_some_and(|h| h.contains("cella new")));

        std::fs::write(dir.join("package.json"), "{}").unwrap();
        assert_eq!(detect(dir).unwrap().lang(), Lang::Js);
        std::fs::write(dir.join("app.py"), "").unwrap();
        assert_eq!(detect(dir).unwrap().lang(), Lang::Python);
        std::fs::write(dir.join("Cargo.toml"), "").unwrap();
        assert_eq!(detect(dir).unwrap().lang(), Lang::Rust);
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            assert_eq!(lang.toolchain().lang(), lang);
        }
    }

    #[test]
    fn source_directories_skip_output_and_packages() {
        let work = tempfile::tempdir().unwrap();
        for sub in [
            "src",
            "lib",
            "target",
            "node_modules",
            ".cella",
            "__pycache__",
            "test",
        ] {
            std::fs::create_dir(work.path().join(sub)).unwrap();
        }
        std::fs::write(work.path().join("file"), "").unwrap();
        let names: Vec<String> = source_dirs(work.path(), &["test"])
            .unwrap()
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lib", "src"]);
        assert!(in_source_dirs(Path::new("src/a/b.js"), &[]));
        assert!(in_source_dirs(Path::new("target.js"), &[]));
        assert!(!in_source_dirs(Path::new("node_modules/x/y.js"), &[]));
        assert!(!in_source_dirs(Path::new("a/.cella/b"), &[]));
        assert!(!in_source_dirs(Path::new("test/a.js"), &["test"]));
    }

    #[test]
    fn tails() {
        let lines: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(tail(&lines).lines().count(), TAIL_LINES);
        assert!(tail(&lines).starts_with("5\n"));
        assert_eq!(tail(&lines[..2]), "0\n1");
    }
}
