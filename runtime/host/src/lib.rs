//! Cella's WebAssembly host: compiles entity components (contract `cella:entity@0.2.0`, world
//! `entity-world`, or the frozen `cella:entity@0.1.0`, each served by the bindings of its own
//! version: [`Module::contract`]) and runs their commands in sandboxed instances.
//!
//! A [`Host`] owns the wasmtime engine: component model, a pooling instance allocator sized by
//! [`HostConfig`], and epoch interruption driven by a ticker thread. [`Host::load`] compiles and
//! validates a component into a [`Module`], [`Host::load_precompiled`] and
//! [`Host::load_precompiled_file`] load one compiled before ([`Module::serialize`],
//! [`write_artifact_file`]); [`Module::instantiate`] gives a fresh [`Instance`]
//! for one command or one replay. Guests see a locked-down WASI: no files, environment,
//! arguments or network, clocks that read zero and randomness from a fixed seed, so that the
//! only non-determinism they get is the journaled [`CommandContext`].
//!
//! Every guest call runs under [`HostConfig::deadline`] and every instance under
//! [`HostConfig::memory_limit`]. A trap (running out of memory included) is [`Error::Trap`], an
//! overrun [`Error::DeadlineExceeded`]; either poisons the instance. No wasmtime type appears
//! in this API. The host needs a Tokio runtime with timers enabled.

mod artifact;
mod bindings;
mod capabilities;
mod convert;
mod crdt_types;
mod host;
mod instance;
mod pacing;
mod sandbox;
mod types;

pub use crdt_types::{Consistency, CrdtAction, CrdtOp, CrdtType, Durability};
pub use host::{Host, HostConfig, HostStats, remove_artifact_file, write_artifact_file};
pub use instance::{Instance, Module};
pub use types::{
    Call, CommandContext, Descriptor, Effect, Failure, Outcome, ReplyRoute, SubscriberKey,
    Subscription, TopicMessage,
};

/// Errors of the host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes are not a component implementing `cella:entity/entity@0.2.0` (or `@0.1.0`), or a precompiled
    /// artifact cannot be used; the message says what is wrong.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The guest trapped (running out of memory included); the instance is poisoned.
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest call ran past the deadline and was stopped; the instance is poisoned.
    #[error("guest call exceeded its deadline")]
    DeadlineExceeded,
    /// The guest returned an error (`apply`, `render-state`, `render-event`).
    #[error("guest error: {0}")]
    Guest(String),
    /// The host failed (engine setup, instance pool, serialization).
    #[error("host error: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Host>();
        send_sync::<Module>();
        send::<Instance>();
        send_sync::<Error>();
    }
}
