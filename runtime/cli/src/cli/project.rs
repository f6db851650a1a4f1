//! The developer loop: `cella new` (scaffold a project in one of the [`Lang`]s), `cella build`
//! and `cella dev`, each handed to `cella_dev` (`build` with a spinner on a terminal).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

pub use cella_dev::Lang;
use cella_dev::{DevOptions, Kind};

/// `cella new NAME [--kind] [--path] [--lang]`.
pub(super) fn new(name: &str, kind: Kind, path: Option<PathBuf>, lang: Lang) -> anyhow::Result<()> {
    Ok(cella_dev::run_new(lang, name, kind, path)?)
}

/// `cella build [PATH]`, with a spinner on stderr while it builds (on a terminal).
pub(super) async fn build(path: &Path) -> anyhow::Result<()> {
    let spinner = super::output::spinner(format!("building {}", path.display()));
    let built = cella_dev::toolchain::build(path).await;
    super::output::done(spinner);
    cella_dev::toolchain::report(&built?);
    Ok(())
}

/// `cella dev [PATH] [--listen] [--name]`: runs until Ctrl-C or SIGTERM.
pub(super) async fn dev(
    path: PathBuf,
    listen: SocketAddr,
    name: Option<String>,
) -> anyhow::Result<()> {
    Ok(cella_dev::run_dev(DevOptions {
        dir: path,
        listen,
        name,
    })
    .await?)
}
