//! The Cella developer loop: `cella new` ([`scaffold`], and the Python and JavaScript
//! scaffolds of [`build_python`] and [`build_js`]), `cella build` ([`guest_build`]: Rust with
//! cargo, Python with componentize-py, JavaScript with componentize-js, then host validation)
//! and `cella dev` ([`dev`]: an embedded node, a file watcher, rebuild and in-place deploy).
//! The SDK files and the WIT that a scaffold writes out come from `cella_sdk::bundle` and
//! `cella_wit`, so this crate includes no file from outside itself.

pub mod build_js;
pub mod build_python;
pub mod dev;
pub mod guest_build;
pub mod scaffold;
