//! The Cella node as a library: HTTP ingress and admin API ([`http`]), routing each request to
//! its partition's leader ([`routing`]), entity execution ([`entities`]), the module registry
//! ([`registry`]; compiling and artifact files in [`compiler`]) with its shadow replays
//! ([`replay`]), crdt entities replicated without consensus ([`crdt`]), metrics, trace context
//! across nodes ([`trace`]), and the wiring of a node over its store, cluster and host ([`node`]).

pub mod audit;
pub mod auth;
pub mod compiler;
pub mod crdt;
pub mod edge;
pub mod effects;
pub mod entities;
pub mod error;
pub mod histograms;
pub mod http;
pub mod memory_metrics;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replay;
pub mod routing;
pub mod sched_metrics;
pub mod scheduler;
pub mod tls;
pub mod topics;
pub mod trace;
pub mod type_metrics;

pub use error::{Error, Result};
pub use node::{Node, NodeHandle, NodeOptions};
