//! The developer loop: `cella new` (scaffold a project in one of the [`Lang`]s), `cella build`
//! and `cella dev`, each handed to `cella_dev`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use cella_dev::{
    build_js, build_python,
    dev::{self, DevOptions},
    guest_build,
    scaffold::{self, Kind},
};

/// Languages `cella new` scaffolds.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// `cella new NAME [--kind] [--path] [--lang]`.
pub(super) fn new(name: &str, kind: Kind, path: Option<PathBuf>, lang: Lang) -> anyhow::Result<()> {
    match lang {
        Lang::Rust => scaffold::run_new(name, kind, path),
        Lang::Python => build_python::run_new(name, kind, path),
        Lang::Js => build_js::run_new(name, kind, path),
    }
}

/// `cella build [PATH]`.
pub(super) async fn build(path: &Path) -> anyhow::Result<()> {
    guest_build::run_build(path).await
}

/// `cella dev [PATH] [--listen] [--name]`: runs until Ctrl-C or SIGTERM.
pub(super) async fn dev(
    path: PathBuf,
    listen: SocketAddr,
    name: Option<String>,
) -> anyhow::Result<()> {
    dev::run(DevOptions {
        dir: path,
        listen,
        name,
    })
    .await
}
