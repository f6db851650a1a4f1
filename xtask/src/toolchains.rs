//! The toolchains the tasks need, installed when missing (and said so): the `wasm32-wasip2`
//! target and the rustfmt and clippy components through rustup; componentize-py
//! [`COMPONENTIZE_PY_VERSION`] in a virtualenv under `target/toolchains/python`, unless
//! `$COMPONENTIZE_PY` or the `componentize-py` on `PATH` is that version; and the JavaScript
//! SDK's build tools (`npm ci` in `sdk-guest/js`, pinned by its `package-lock.json`). Python 3
//! and Node.js themselves are not installed: a missing one fails with what to install.
//!
//! The componentize-py found or installed reaches every program the tasks start through
//! [`configure`] (`COMPONENTIZE_PY`, which `cella build` and `build_examples.py` honour).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use anyhow::{Context, bail};

use crate::{build, tck::Lang};

/// The componentize-py release the Python SDK is built and tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The oldest Node.js the JavaScript SDK runs on.
const NODE_MAJOR: u32 = 20;

const PYTHON_HINT: &str =
    "install Python 3 with its venv module (e.g. `apt-get install python3 python3-venv`)";
const NODE_HINT: &str = "install Node.js 20 or later with npm (e.g. `apt-get install nodejs npm`, \
                         or from https://nodejs.org)";

/// The componentize-py every started program is pointed at, once [`ensure_componentize_py`]
/// found or installed it.
static COMPONENTIZE_PY: OnceLock<PathBuf> = OnceLock::new();

/// Whether cargo runs without incremental compilation: set by `cargo xtask ci`, whose one
/// build from a clean clone gains nothing from the incremental cache but would write about as
/// many gigabytes again into `target/`.
pub static NOT_INCREMENTAL: AtomicBool = AtomicBool::new(false);

/// Points `command` at the toolchains found or installed so far (`COMPONENTIZE_PY`), and
/// without incremental compilation once [`NOT_INCREMENTAL`] is set.
pub fn configure(command: &mut Command) -> &mut Command {
    if let Some(program) = COMPONENTIZE_PY.get() {
        command.env("COMPONENTIZE_PY", program);
    }
    if NOT_INCREMENTAL.load(Ordering::Relaxed) {
        command.env("CARGO_INCREMENTAL", "0");
    }
    command
}

/// The Rust side of what `cargo xtask ci` needs: the guest target and the rustfmt and clippy
/// components.
pub fn ensure_rust() -> anyhow::Result<()> {
    ensure_rust_target()?;
    ensure_rust_components(&["rustfmt", "clippy"])
}

/// The toolchains that build guests in `langs` (Rust's is the target, installed by the guest
/// build itself).
pub fn ensure_guests(langs: &[Lang]) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    if langs.contains(&Lang::Python) {
        ensure_componentize_py(&root)?;
    }
    if langs.contains(&Lang::Js) {
        ensure_js_packages(&root)?;
    }
    Ok(())
}

/// The lines `rustup <args>` prints, or `None` without rustup (a toolchain not managed by
/// rustup: cargo then reports what is missing).
fn rustup_list(args: &[&str]) -> Option<Vec<String>> {
    let output = Command::new("rustup")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim().to_owned())
            .collect(),
    )
}

fn rustup(args: &[&str]) -> anyhow::Result<()> {
    println!("$ rustup {}", args.join(" "));
    let status = Command::new("rustup")
        .args(args)
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs the guest target, [`build::TARGET`], with rustup if it is missing.
pub fn ensure_rust_target() -> anyhow::Result<()> {
    let Some(installed) = rustup_list(&["target", "list", "--installed"]) else {
        return Ok(());
    };
    if !installed.iter().any(|line| line == build::TARGET) {
        println!("installing the {} target", build::TARGET);
        rustup(&["target", "add", build::TARGET])?;
    }
    Ok(())
}

/// Installs the rustup `components` (e.g. `rustfmt`) that are missing.
fn ensure_rust_components(components: &[&str]) -> anyhow::Result<()> {
    let Some(installed) = rustup_list(&["component", "list", "--installed"]) else {
        return Ok(());
    };
    // Installed components are listed with their host triple: `rustfmt-x86_64-unknown-linux-gnu`.
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| {
            !installed
                .iter()
                .any(|line| line.starts_with(&format!("{c}-")))
        })
        .collect();
    if !missing.is_empty() {
        println!("installing the {} component(s)", missing.join(", "));
        rustup(&[&["component", "add"][..], &missing].concat())?;
    }
    Ok(())
}

/// Whether `program --version` runs and succeeds; its standard output if so.
fn version_of(program: impl AsRef<OsStr>) -> Option<String> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether `program` is componentize-py [`COMPONENTIZE_PY_VERSION`] (it prints
/// `componentize-py 0.25.1`).
fn is_pinned_componentize_py(program: impl AsRef<OsStr>) -> bool {
    version_of(program)
        .is_some_and(|v| v.split_whitespace().last() == Some(COMPONENTIZE_PY_VERSION))
}

/// Finds componentize-py [`COMPONENTIZE_PY_VERSION`] (`$COMPONENTIZE_PY`, then `PATH`) or
/// installs it into `target/toolchains/python`, and points [`configure`]d commands at it.
fn ensure_componentize_py(root: &Path) -> anyhow::Result<()> {
    if version_of("python3").is_none() {
        bail!(
            "python3 is not installed (or not on PATH): the Python SDK and its TCK components \
             need it\nhint: {PYTHON_HINT}"
        );
    }
    let from_env = std::env::var_os("COMPONENTIZE_PY").filter(|v| !v.is_empty());
    let found = match &from_env {
        Some(program) if is_pinned_componentize_py(program) => Some(PathBuf::from(program)),
        Some(program) => {
            println!(
                "$COMPONENTIZE_PY ({}) is not componentize-py {COMPONENTIZE_PY_VERSION}",
                program.to_string_lossy()
            );
            None
        }
        None => is_pinned_componentize_py("componentize-py").then(|| "componentize-py".into()),
    };
    let program = match found {
        Some(program) => program,
        None => install_componentize_py(&build::target_dir(root).join("toolchains/python"))?,
    };
    println!("componentize-py: {}", program.display());
    let _ = COMPONENTIZE_PY.set(program);
    Ok(())
}

/// A program of the virtualenv `venv`.
fn venv_program(venv: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    }
}

/// Makes `venv` a virtualenv holding componentize-py [`COMPONENTIZE_PY_VERSION`] (nothing to do
/// if it already does) and returns the program.
pub fn install_componentize_py(venv: &Path) -> anyhow::Result<PathBuf> {
    let program = venv_program(venv, "componentize-py");
    if is_pinned_componentize_py(&program) {
        return Ok(program);
    }
    println!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} into a virtualenv at {}",
        venv.display()
    );
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // `--clear`: a virtualenv left half made (say, without pip) is made again.
    let mut make = Command::new("python3");
    make.args(["-m", "venv", "--clear"]).arg(venv);
    run(&mut make).with_context(|| {
        format!(
            "cannot create a virtualenv at {}\nhint: {PYTHON_HINT}",
            venv.display()
        )
    })?;
    let mut pip = Command::new(venv_program(venv, "python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
    ]);
    run(&mut pip).context("cannot install componentize-py with pip")?;
    if !is_pinned_componentize_py(&program) {
        bail!(
            "{} is not componentize-py {COMPONENTIZE_PY_VERSION} after pip installed it",
            program.display()
        );
    }
    Ok(program)
}

/// Runs `command`, echoing it, and fails unless it succeeds.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("$ {}", shown.join(" "));
    let status = command
        .status()
        .with_context(|| format!("cannot run `{}`", shown[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", shown.join(" "));
    }
    Ok(())
}

/// Checks Node.js and npm, then installs the JavaScript SDK's build tools with `npm ci` when
/// `sdk-guest/js/node_modules` is missing or older than its `package-lock.json`.
fn ensure_js_packages(root: &Path) -> anyhow::Result<()> {
    let Some(node) = version_of("node") else {
        bail!(
            "node is not installed (or not on PATH): the JavaScript SDK and its TCK components \
             need Node.js {NODE_MAJOR}+\nhint: {NODE_HINT}"
        );
    };
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < NODE_MAJOR) {
        bail!("node is {node}; the JavaScript SDK needs Node.js {NODE_MAJOR}+\nhint: {NODE_HINT}");
    }
    if version_of("npm").is_none() {
        bail!(
            "npm is not installed (or not on PATH): it installs the JavaScript SDK's build \
             tools\nhint: {NODE_HINT}"
        );
    }
    let sdk = root.join("sdk-guest/js");
    if js_packages_stale(&sdk) {
        println!("installing the JavaScript SDK's build tools (pinned by package-lock.json)");
        let mut ci = Command::new("npm");
        ci.current_dir(root).args([
            "ci",
            "--prefix",
            "sdk-guest/js",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]);
        run(&mut ci)?;
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `dir/node_modules` is missing or older than `dir/package-lock.json`. npm writes
/// `node_modules/.package-lock.json` on every install; the directory's own time stands in for
/// it if it is absent.
fn js_packages_stale(dir: &Path) -> bool {
    let modules = dir.join("node_modules");
    let installed = modified(&modules.join(".package-lock.json")).or_else(|| modified(&modules));
    match (installed, modified(&dir.join("package-lock.json"))) {
        (None, _) => true,
        (Some(installed), Some(lock)) => installed < lock,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made = std::fs::create_dir_all(&dir);
        assert!(made.is_ok(), "cannot create {}: {made:?}", dir.display());
        dir
    }

    #[test]
    fn node_modules_missing_or_older_than_the_lock_is_stale() {
        let dir = scratch("npm-stale");
        let write = |path: PathBuf| assert!(std::fs::write(&path, "{}").is_ok(), "{path:?}");
        write(dir.join("package-lock.json"));
        assert!(js_packages_stale(&dir));
        assert!(std::fs::create_dir(dir.join("node_modules")).is_ok());
        write(dir.join("node_modules/.package-lock.json"));
        assert!(!js_packages_stale(&dir));
        // The lock changes after the install.
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        let lock = std::fs::File::options()
            .write(true)
            .open(dir.join("package-lock.json"));
        assert!(lock.and_then(|f| f.set_modified(later)).is_ok());
        assert!(js_packages_stale(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Creates a virtualenv in a fresh temporary directory and installs componentize-py into
    /// it (network, about a minute): `cargo test -p xtask -- --ignored`.
    #[test]
    #[ignore = "downloads componentize-py"]
    fn installs_componentize_py_into_a_fresh_virtualenv() {
        let dir = scratch("venv");
        let venv = dir.join("python");
        let installed = install_componentize_py(&venv);
        assert!(
            matches!(&installed, Ok(program) if program.starts_with(&venv)),
            "{installed:?}"
        );
        assert!(matches!(&installed, Ok(program) if is_pinned_componentize_py(program)));
        // Installed already: nothing to do the second time.
        assert_eq!(install_componentize_py(&venv).ok(), installed.ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Installs the JavaScript SDK's build tools into a copy of its manifests in a fresh
    /// temporary directory (network, about a minute): `cargo test -p xtask -- --ignored`.
    #[test]
    #[ignore = "downloads the npm packages"]
    fn installs_the_js_build_tools_into_a_fresh_copy() {
        let root = scratch("npm");
        let sdk = root.join("sdk-guest/js");
        assert!(std::fs::create_dir_all(&sdk).is_ok());
        for file in ["package.json", "package-lock.json"] {
            let from = crate::workspace_root().join("sdk-guest/js").join(file);
            assert!(std::fs::copy(&from, sdk.join(file)).is_ok(), "{from:?}");
        }
        assert!(js_packages_stale(&sdk));
        let installed = ensure_js_packages(&root);
        assert!(installed.is_ok(), "{installed:?}");
        assert!(!js_packages_stale(&sdk));
        assert!(
            sdk.join("node_modules/@bytecodealliance/componentize-js")
                .is_dir()
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
