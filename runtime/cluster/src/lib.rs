//! Replication for Cella: every partition of the entity space is an openraft group whose log
//! holds the partition's journal appends, replicated to three nodes (or all, when fewer).
//!
//! - [`types`]: the raft type configuration, the replicated [`types::Command`] and encodings.
//! - [`placement`]: `(type, key)` → shard → partition, fixed when the cluster is created.
//! - [`cluster`]: this node's groups, their layout, initialization, status and the leader
//!   balancer.
//! - [`membership`]: nodes joining and leaving, and the reconciler that moves partition
//!   replicas to follow the node set.
//! - [`journal`]: the entity layer's `Journal` in a cluster (appends through raft, leases).
//! - [`submit`]: ordered submission of journal appends to a group, and barriers.
//! - [`log_store`]: the openraft log storage of one group on the node's redb store. Every group
//!   appends through the store's one group-commit writer, so one durable transaction covers the
//!   appends of all groups on the node (openraft has no cross-group batching of its own).
//! - [`network`]: raft RPCs between nodes over hyper with postcard bodies, and the pooled peer
//!   client that also carries forwarded entity commands.
//! - [`stream`]: pipelined replication, one streaming HTTP exchange per group and follower.
//! - [`state_machine`]: applies committed journal writes into the node's store and builds and
//!   installs partition snapshots.

pub mod cluster;
pub mod journal;
pub mod log_store;
pub mod membership;
pub mod mux;
pub mod network;
pub mod placement;
pub mod state_machine;
pub mod stream;
pub mod submit;
pub mod types;

pub use cluster::{Cluster, ClusterOptions, GroupStatus, META_GROUP};
pub use journal::ClusterJournal;
pub use log_store::LogStore;
pub use placement::Placement;
pub use state_machine::StateMachine;
pub use types::{Applied, Command, GroupId, ModuleOp, TypeConfig};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's store failed.
    #[error("storage: {0}")]
    Store(#[from] cella_store::Error),
    /// Stored or received bytes do not decode.
    #[error("cannot decode {what}: {message}")]
    Decode { what: &'static str, message: String },
    /// The cluster configuration is not usable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// A membership change cannot be made as asked.
    #[error("{0}")]
    Membership(String),
    /// A raft group failed.
    #[error("raft: {0}")]
    Raft(String),
    /// A value cannot be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Decode { .. } => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            other => std::io::Error::other(other),
        }
    }
}
