//! The Cella developer loop: `cella new` ([`scaffold`]: a new entity project in Rust, Python
//! or JavaScript), `cella build` ([`toolchain`]: one [`Toolchain`] per guest language, picked
//! by the project's files, then the host's validation) and `cella dev` ([`dev`]: an embedded
//! node, a file watcher, rebuild and in-place deploy, keeping every entity's state). The SDKs
//! and the WIT a project builds against are written out by [`sdk`] from `cella_sdk::bundle`
//! and `cella_wit`, so this crate includes no file from outside itself. Every failure is an
//! [`Error`]: the message, its cause as the source, and a `hint:` where there is advice.

use std::path::PathBuf;

pub mod dev;
mod error;
pub mod scaffold;
pub mod sdk;
pub mod toolchain;

pub use dev::{DevOptions, run_dev};
pub use error::{BoxError, Error, Hint, Result, render};
pub use scaffold::Kind;
pub use toolchain::{Lang, Toolchain, run_build};

/// `cella new`: scaffolds the entity `name` of `kind` in `lang` in `path` (default: `./name`)
/// and says what to do next.
pub fn run_new(lang: Lang, name: &str, kind: Kind, path: Option<PathBuf>) -> Result<()> {
    match lang {
        Lang::Rust => scaffold::rust::run_new(name, kind, path),
        Lang::Python => scaffold::python::run_new(name, kind, path),
        Lang::Js => scaffold::js::run_new(name, kind, path),
    }
}
