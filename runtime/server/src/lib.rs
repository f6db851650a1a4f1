//! The Cella node as a library: HTTP ingress and admin API ([`http`]), entity execution
//! ([`entities`]), the module registry ([`registry`]), node wiring ([`node`]), metrics, and the
//! `cella` command line ([`cli`]). The `cella` binary is a thin `main` over [`cli::main`].

pub mod cli;
pub mod client;
pub mod entities;
pub mod error;
pub mod http;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replay;

pub use error::{Error, Result};
pub use node::{Node, NodeHandle, NodeOptions};
