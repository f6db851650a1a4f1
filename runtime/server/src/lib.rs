//! The Cella node as a library: HTTP ingress and admin API ([`http`]), entity execution
//! ([`entities`]), cluster routing ([`routing`]), the module registry ([`registry`]), node wiring ([`node`]), metrics, and the
//! `cella` command line ([`cli`]) with its developer loop ([`scaffold`], [`guest_build`],
//! [`dev`]). The `cella` binary is a thin `main` over [`cli::main`].

pub mod build_js;
pub mod build_python;
pub mod cli;
pub mod client;
pub mod dev;
pub mod entities;
pub mod error;
pub mod guest_build;
pub mod http;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replay;
pub mod routing;
pub mod scaffold;

pub use error::{Error, Result};
pub use node::{Node, NodeHandle, NodeOptions};
