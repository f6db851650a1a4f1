//! The Python [`Toolchain`]: a directory holding `app.py` (and no `Cargo.toml`), built with
//! componentize-py (pinned to [`COMPONENTIZE_PY_VERSION`]) with the directory and the Python
//! SDK copy on the module path. componentize-py's output streams to stderr; the component goes
//! to `target/<directory name>.wasm`, written under another name first so a failed build never
//! leaves half a file there.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::Command;

use super::{BuildFuture, Lang, Toolchain, in_source_dirs, run_streamed, source_dirs, tail};
use crate::{
    error::{Error, Hint, Result, exit_status},
    sdk::PythonSdk,
};

/// The componentize-py release the Python SDK is built and tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// How to install it.
const INSTALL_HINT: &str = "python3 -m pip install componentize-py==0.25.1";

/// The world an entity component implements.
const WORLD: &str = "folding-entity-world";

/// The module componentize-py builds: `app.py` in the project directory.
const APP_MODULE: &str = "app";

/// Directories that hold tests, not the entity: `cella dev` does not rebuild when they change.
const TEST_DIRS: &[&str] = &["test", "tests"];

/// Python entities: `app.py` ending in `Entity = cella.export(...)`.
pub struct Python;

impl Toolchain for Python {
    fn lang(&self) -> Lang {
        Lang::Python
    }

    fn detect(&self, dir: &Path) -> bool {
        is_project(dir)
    }

    fn default_type(&self, dir: &Path) -> Result<String> {
        Ok(super::dir_name(dir, APP_MODULE))
    }

    fn sources(&self) -> &'static str {
        "the .py files (not test_*.py)"
    }

    fn watch_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        source_dirs(dir, TEST_DIRS)
    }

    fn is_source(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
            return false;
        };
        name.ends_with(".py")
            && !name.starts_with("test_")
            && !name.ends_with("_test.py")
            && in_source_dirs(path, TEST_DIRS)
    }

    fn build<'a>(&'a self, dir: &'a Path) -> BuildFuture<'a> {
        Box::pin(async move {
            let sdk = crate::sdk::ensure_python_sdk()?;
            build_with(dir, &componentize_py(), &sdk).await
        })
    }
}

/// Whether `dir` looks like a Python entity: an `app.py` and no `Cargo.toml`.
pub fn is_project(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").exists()
}

/// The program to run as componentize-py: `$COMPONENTIZE_PY`, else `componentize-py`.
fn componentize_py() -> OsString {
    std::env::var_os("COMPONENTIZE_PY")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "componentize-py".into())
}

/// Builds `dir/app.py` into a component with componentize-py and returns its path,
/// `dir/target/<directory name>.wasm`.
///
/// Needs componentize-py [`COMPONENTIZE_PY_VERSION`] (`$COMPONENTIZE_PY` names the program if it
/// is not on `PATH`). Third-party packages the app imports are found in the active virtualenv's
/// `site-packages`, as componentize-py does.
async fn build_with(dir: &Path, program: &OsString, sdk: &PythonSdk) -> Result<PathBuf> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::open_dir(dir, e, Hint::NONE))?;
    if !dir.join("app.py").is_file() {
        return Err(Error::project(
            format!("{} has no app.py", dir.display()),
            "a Python entity is a directory with an app.py that ends in `Entity = \
             cella.export(YourEntity)`",
        ));
    }
    check_version(program).await?;
    let name = super::dir_name(&dir, APP_MODULE);
    let out_dir = dir.join("target");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::create_dir(&out_dir, e))?;
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
        .env("RUST_LIB_BACKTRACE", "0");
    let shown = program.to_string_lossy();
    let (status, lines) = run_streamed(command, &shown, |e| not_runnable(program, e)).await?;
    if !status.success() || !partial.is_file() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Build {
            status: exit_status("componentize-py", status),
            summary: tail(&lines),
            hint: "fix the errors above (an exception while importing app.py fails the build) \
                   and build again"
                .into(),
        });
    }
    std::fs::rename(&partial, &wasm).map_err(|e| {
        Error::io(
            format_args!("cannot move the component to {}", wasm.display()),
            e,
            Hint::NONE,
        )
    })?;
    Ok(wasm)
}

/// Checks that `program` is componentize-py [`COMPONENTIZE_PY_VERSION`].
async fn check_version(program: &OsString) -> Result<()> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| not_runnable(program, e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let found = text.split_whitespace().last().unwrap_or("(nothing)");
    if !output.status.success() || found != COMPONENTIZE_PY_VERSION {
        return Err(Error::tool(
            format!(
                "{} is version {found}; Cella's Python SDK needs componentize-py \
                 {COMPONENTIZE_PY_VERSION}",
                program.to_string_lossy()
            ),
            INSTALL_HINT,
        ));
    }
    Ok(())
}

fn not_runnable(program: &OsString, e: std::io::Error) -> Error {
    let program = program.to_string_lossy();
    let (message, hint) = if e.kind() == std::io::ErrorKind::NotFound {
        (
            format!("componentize-py is not installed (cannot run {program})"),
            format!("{INSTALL_HINT}, or set COMPONENTIZE_PY to the program"),
        )
    } else {
        (format!("cannot run {program}"), INSTALL_HINT.into())
    };
    Error::Tool {
        message,
        hint: hint.into(),
        source: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaffold::{Kind, python::write_project};

    #[test]
    fn sources_are_the_modules_but_not_the_tests() {
        for (path, source) in [
            ("app.py", true),
            ("helpers/money.py", true),
            ("test_app.py", false),
            ("app_test.py", false),
            ("tests/test_x.py", false),
            ("tests/x.py", false),
            ("__pycache__/app.cpython-312.pyc", false),
            (".venv/lib/x.py", false),
            ("target/x.py", false),
            ("README.md", false),
        ] {
            assert_eq!(Python.is_source(Path::new(path)), source, "{path}");
        }
        let work = tempfile::tempdir().unwrap();
        for sub in ["helpers", "tests", "__pycache__", ".cella"] {
            std::fs::create_dir(work.path().join(sub)).unwrap();
        }
        assert_eq!(
            Python.watch_dirs(work.path()).unwrap(),
            [work.path().join("helpers")]
        );
        assert_eq!(
            Python.default_type(&work.path().join("helpers")).unwrap(),
            "helpers"
        );
    }

    #[tokio::test]
    async fn a_missing_componentize_py_says_how_to_install_it() {
        let home = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::write_python_sdk(home.path()).unwrap();
        let project = tempfile::tempdir().unwrap();
        let dir = project.path().join("c");
        write_project("counter", Kind::Value, &dir, &sdk).unwrap();
        let missing = OsString::from("/nonexistent/componentize-py");
        let error = build_with(&dir, &missing, &sdk).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("componentize-py is not installed"),
            "{error}"
        );
        assert!(error.hint().is_some_and(|h| h.contains(INSTALL_HINT)));

        let error = build_with(project.path(), &missing, &sdk)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("has no app.py"), "{error}");
    }

    /// Builds both templates with the real componentize-py (~10 s each): `cargo test -p
    /// cella-dev toolchain::python -- --ignored`.
    #[tokio::test]
    #[ignore = "needs componentize-py 0.25.1 and takes a while"]
    async fn builds_the_templates() {
        let home = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::write_python_sdk(home.path()).unwrap();
        let work = tempfile::tempdir().unwrap();
        for (name, kind, commands) in [
            ("counter", Kind::Value, 2),
            ("ledger", Kind::EventSourced, 3),
        ] {
            let dir = work.path().join(name);
            write_project(name, kind, &dir, &sdk).unwrap();
            let wasm = build_with(&dir, &componentize_py(), &sdk).await.unwrap();
            assert_eq!(
                wasm,
                dir.canonicalize()
                    .unwrap()
                    .join(format!("target/{name}.wasm"))
            );
            let checked = super::super::validate(&std::fs::read(&wasm).unwrap())
                .await
                .unwrap();
            assert_eq!(checked.commands.len(), commands);
        }
    }
}
