//! The `cella` command line as a library: [`cli`] parses and runs the commands (a node, the
//! admin and entity calls, the developer loop of `cella_dev`), and [`client`] is the node's own
//! HTTP client, which the tests and `cargo xtask` use too. The `cella` binary is a thin `main`
//! over [`cli::entry`].

pub mod cli;
/// The node's own HTTP client (the crate `cella-client`).
pub use cella_client as client;
