//! The entry points with the paths and signatures the `cella` command line calls today
//! (`guest_build::run_build`, `build_python::run_new`, `build_js::run_new`, and
//! `scaffold::run_new` and `dev::run` in their modules), returning `anyhow` errors. Each wraps
//! the typed function ([`crate::run_new`], [`crate::run_build`], [`crate::run_dev`]); the
//! error keeps its chain of causes, which `cella` prints with the hints last.

use crate::Error;

/// `result` with the error as an `anyhow` error (its causes kept).
pub(crate) fn report<T>(result: Result<T, Error>) -> anyhow::Result<T> {
    Ok(result?)
}

/// `cella build`.
pub mod guest_build {
    use std::path::Path;

    /// `cella build` (see [`crate::run_build`]).
    pub async fn run_build(dir: &Path) -> anyhow::Result<()> {
        super::report(crate::run_build(dir).await)
    }
}

/// `cella new --lang python`.
pub mod build_python {
    use std::path::PathBuf;

    use crate::{Kind, Lang};

    /// `cella new --lang python` (see [`crate::run_new`]).
    pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> anyhow::Result<()> {
        super::report(crate::run_new(Lang::Python, name, kind, path))
    }
}

/// `cella new --lang js`.
pub mod build_js {
    use std::path::PathBuf;

    use crate::{Kind, Lang};

    /// `cella new --lang js` (see [`crate::run_new`]).
    pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> anyhow::Result<()> {
        super::report(crate::run_new(Lang::Js, name, kind, path))
    }
}
