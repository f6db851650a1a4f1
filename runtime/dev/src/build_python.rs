//! Python entities: `cella build` for a directory holding `app.py`, and the `cella new` template
//! for them.
//!
//! The Python SDK (`sdk-guest/python/cella`) and the WIT contract are embedded at compile time
//! and written out on demand to `$CELLA_HOME/sdk/<cella version>/{python,wit}` (next to the Rust
//! SDK of [`crate::scaffold`]). [`build`] runs componentize-py (pinned to
//! [`COMPONENTIZE_PY_VERSION`]) on `app.py` with that SDK on the module path, streaming its
//! output to stderr, and returns the component it wrote to `target/<directory name>.wasm`.
//! [`new_project`] scaffolds a directory with `app.py` and its unit tests.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::scaffold::{self, Kind};

/// The componentize-py release the Python SDK is built and tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// How to install it.
const INSTALL_HINT: &str = "python3 -m pip install componentize-py==0.25.1";

/// The world an entity component implements.
const WORLD: &str = "entity-world";

/// The module componentize-py builds: `app.py` in the project directory.
const APP_MODULE: &str = "app";

/// How many lines of the tool's output a failure repeats.
const TAIL_LINES: usize = 15;

/// Every file of the SDK copy, relative to `$CELLA_HOME/sdk/<version>`.
fn sdk_files() -> Vec<(String, &'static str)> {
    cella_sdk::bundle::PYTHON
        .iter()
        .map(|(path, text)| (format!("python/{path}"), *text))
        .chain(scaffold::wit_files())
        .collect()
}

/// `app.py` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("templates/python_value.py");
/// `test_app.py` of a new value entity.
const VALUE_TEST_TEMPLATE: &str = include_str!("templates/python_value_test.py");
/// `app.py` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("templates/python_event_sourced.py");
/// `test_app.py` of a new event-sourced entity.
const EVENT_SOURCED_TEST_TEMPLATE: &str = include_str!("templates/python_event_sourced_test.py");

const GITIGNORE: &str = "/target\n/.cella\n__pycache__/\n";

/// Where the SDK copy goes: `<sdk root>/python` is the module path of the `cella` package and
/// `<sdk root>/wit` the WIT directory.
pub struct PythonSdk {
    /// The directory holding the `cella` package.
    pub python: PathBuf,
    /// The directory holding `entity.wit`.
    pub wit: PathBuf,
}

/// Whether `dir` looks like a Python entity: an `app.py` and no `Cargo.toml`.
pub fn is_python_project(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").exists()
}

/// Writes the embedded Python SDK and WIT to `$CELLA_HOME/sdk/<version>` where they are missing
/// or differ (unchanged files are not touched).
pub fn ensure_python_sdk() -> anyhow::Result<PythonSdk> {
    let root = scaffold::cella_home()?
        .join("sdk")
        .join(scaffold::SDK_VERSION);
    write_sdk(&root)
}

fn write_sdk(root: &Path) -> anyhow::Result<PythonSdk> {
    scaffold::write_sdk_files(root, sdk_files(), "the Cella Python SDK")?;
    Ok(PythonSdk {
        python: root.join("python"),
        wit: root.join("wit"),
    })
}

/// The program to run as componentize-py: `$COMPONENTIZE_PY`, else `componentize-py`.
fn componentize_py() -> OsString {
    std::env::var_os("COMPONENTIZE_PY")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "componentize-py".into())
}

/// Builds `dir/app.py` into a component with componentize-py and returns its path,
/// `dir/target/<directory name>.wasm`. componentize-py's output streams to stderr.
///
/// Needs componentize-py [`COMPONENTIZE_PY_VERSION`] (`$COMPONENTIZE_PY` names the program if it
/// is not on `PATH`). Third-party packages the app imports are found in the active virtualenv's
/// `site-packages`, as componentize-py does. The component is not validated here: pass its bytes
/// to [`crate::guest_build::validate`].
pub async fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = ensure_python_sdk()?;
    build_with(dir, &componentize_py(), &sdk).await
}

async fn build_with(dir: &Path, program: &OsString, sdk: &PythonSdk) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| anyhow::anyhow!("cannot open the directory {}: {e}", dir.display()))?;
    if !dir.join("app.py").is_file() {
        bail!(
            "{} has no app.py\nhint: a Python entity is a directory with an app.py that ends in \
             `Entity = cella.export(YourEntity)`",
            dir.display()
        );
    }
    check_version(program).await?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| APP_MODULE.to_string());
    let out_dir = dir.join("target");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the directory {}", out_dir.display()))?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    let partial = out_dir.join(format!(".{name}.partial.wasm"));

    let mut command = Command::new(program);
    command
        .current_dir(&dir)
        .arg("-d")
        .arg(&sdk.wit)
        .args(["-w", WORLD, "componentize", APP_MODULE])
        .arg("-p")
        .arg(&dir)
        .arg("-p")
        .arg(&sdk.python)
        .arg("-o")
        .arg(&partial)
        // The tool's errors are Python tracebacks; its own Rust backtraces only bury them.
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| not_runnable(program, &e))?;
    let stdout = child
        .stdout
        .take()
        .context("componentize-py's stdout is missing")?;
    let stderr = child
        .stderr
        .take()
        .context("componentize-py's stderr is missing")?;
    let out = tokio::spawn(crate::guest_build::echo_lines(stdout));
    let err = tokio::spawn(crate::guest_build::echo_lines(stderr));
    let status = child
        .wait()
        .await
        .context("waiting for componentize-py failed")?;
    let mut tail = out.await.unwrap_or_default();
    tail.extend(err.await.unwrap_or_default());
    if !status.success() || !partial.is_file() {
        let _ = std::fs::remove_file(&partial);
        let status = match status.code() {
            Some(code) => format!("componentize-py exited with {code}"),
            None => "componentize-py was stopped".to_string(),
        };
        let start = tail.len().saturating_sub(TAIL_LINES);
        bail!(
            "the build failed ({status})\n{}\nhint: fix the errors above (an exception while \
             importing app.py fails the build) and build again",
            tail[start..].join("\n")
        );
    }
    std::fs::rename(&partial, &wasm)
        .with_context(|| format!("cannot move the component to {}", wasm.display()))?;
    Ok(wasm)
}

/// Checks that `program` is componentize-py [`COMPONENTIZE_PY_VERSION`].
async fn check_version(program: &OsString) -> anyhow::Result<()> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| not_runnable(program, &e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let found = text.split_whitespace().last().unwrap_or("(nothing)");
    if !output.status.success() || found != COMPONENTIZE_PY_VERSION {
        bail!(
            "{} is version {found}; Cella's Python SDK needs componentize-py \
             {COMPONENTIZE_PY_VERSION}\nhint: {INSTALL_HINT}",
            program.to_string_lossy()
        );
    }
    Ok(())
}

fn not_runnable(program: &OsString, e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "componentize-py is not installed (cannot run {})\nhint: {INSTALL_HINT}, or set \
             COMPONENTIZE_PY to the program",
            program.to_string_lossy()
        )
    } else {
        anyhow::anyhow!(
            "cannot run {}: {e}\nhint: {INSTALL_HINT}",
            program.to_string_lossy()
        )
    }
}

/// Checks `name` as the name of a new Python entity.
fn validate_name(name: &str) -> anyhow::Result<()> {
    scaffold::validate_project_name(name, &[])
}

/// Scaffolds the Python entity `name` of `kind` in `dir` (which must not exist or be empty):
/// `app.py`, `test_app.py` and `.gitignore`. Returns the SDK's module directory.
pub fn new_project(name: &str, kind: Kind, dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = ensure_python_sdk()?;
    write_project(name, kind, dir, &sdk)?;
    Ok(sdk.python)
}

fn write_project(name: &str, kind: Kind, dir: &Path, sdk: &PythonSdk) -> anyhow::Result<()> {
    validate_name(name)?;
    scaffold::ensure_empty_dir(dir)?;
    let (app, test) = match kind {
        Kind::Value => (VALUE_TEMPLATE, VALUE_TEST_TEMPLATE),
        Kind::EventSourced => (EVENT_SOURCED_TEMPLATE, EVENT_SOURCED_TEST_TEMPLATE),
    };
    // A JSON string is a valid Python string literal.
    let sdk_literal = serde_json::to_string(&sdk.python.to_string_lossy())
        .context("cannot quote the SDK path")?;
    let files = [
        ("app.py", app.replace("{{name}}", name)),
        (
            "test_app.py",
            test.replace("{{name}}", name)
                .replace("{{sdk}}", &sdk_literal),
        ),
        (".gitignore", GITIGNORE.to_string()),
    ];
    scaffold::write_project_files(dir, &files)
}

/// `cella new --lang python`: scaffolds the entity and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> anyhow::Result<()> {
    validate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let sdk = new_project(name, kind, &dir)?;
    let label = kind.label();
    println!(
        "created the {label} entity `{name}` (Python) in {}",
        dir.display()
    );
    println!("  app.py, test_app.py, .gitignore");
    println!("  SDK: {}", sdk.display());
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  python3 -m unittest   # the entity's unit tests");
    println!(
        "  cella build           # the component (needs componentize-py {COMPONENTIZE_PY_VERSION})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_sources() -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk-guest/python/cella");
        let mut sources: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".py"))
            .map(|name| format!("python/cella/{name}"))
            .collect();
        sources.sort();
        sources
    }

    #[test]
    fn every_sdk_module_is_embedded() {
        let mut embedded: Vec<String> = sdk_files()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with("python/"))
            .collect();
        embedded.sort();
        assert_eq!(sdk_sources(), embedded);
    }

    #[test]
    fn writes_the_sdk_and_scaffolds_projects() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        assert!(sdk.python.join("cella/__init__.py").is_file());
        assert!(sdk.python.join("cella/testing.py").is_file());
        assert!(sdk.wit.join("entity.wit").is_file());

        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ledger");
        write_project("ledger", Kind::EventSourced, &dir, &sdk).unwrap();
        let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
        assert!(app.contains("entities/ledger/alice"), "{app}");
        assert!(app.contains("Entity = cella.export(Ledger)"), "{app}");
        let test = std::fs::read_to_string(dir.join("test_app.py")).unwrap();
        let literal = serde_json::to_string(&sdk.python.to_string_lossy()).unwrap();
        assert!(
            test.contains(&format!("sys.path.append({literal})")),
            "{test}"
        );
        assert!(!app.contains("{{") && !test.contains("{{"));
        assert!(is_python_project(&dir));

        let again = write_project("ledger", Kind::Value, &dir, &sdk).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        for bad in ["", "Ledger", "2x", "a b", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_missing_componentize_py_says_how_to_install_it() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        let project = tempfile::tempdir().unwrap();
        write_project("counter", Kind::Value, &project.path().join("c"), &sdk).unwrap();
        let missing = OsString::from("/nonexistent/componentize-py");
        let error = build_with(&project.path().join("c"), &missing, &sdk)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("componentize-py is not installed"),
            "{error}"
        );
        assert!(error.contains(INSTALL_HINT), "{error}");

        let error = build_with(project.path(), &missing, &sdk)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("has no app.py"), "{error}");
    }

    /// Builds both templates with the real componentize-py (~10 s each): `cargo test -p
    /// cella-server build_python -- --ignored`.
    #[tokio::test]
    #[ignore = "needs componentize-py 0.25.1 and takes a while"]
    async fn builds_the_templates() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        let work = tempfile::tempdir().unwrap();
        for (name, kind) in [("counter", Kind::Value), ("ledger", Kind::EventSourced)] {
            let dir = work.path().join(name);
            write_project(name, kind, &dir, &sdk).unwrap();
            let wasm = build_with(&dir, &componentize_py(), &sdk).await.unwrap();
            assert_eq!(
                wasm,
                dir.canonicalize()
                    .unwrap()
                    .join(format!("target/{name}.wasm"))
            );
            let checked = crate::guest_build::validate(&std::fs::read(&wasm).unwrap())
                .await
                .unwrap();
            assert_eq!(
                checked.commands.len(),
                if name == "counter" { 2 } else { 3 }
            );
        }
    }
}
