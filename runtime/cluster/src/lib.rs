//! Replication for Cella: every partition of the entity space is an openraft group whose log
//! holds the partition's journal appends, replicated to three nodes (or all, when fewer).
//!
//! - [`types`]: the raft type configuration, the replicated [`types::Command`] and encodings.
//! - [`placement`]: `(type, key)` → shard → partition, fixed when the cluster is created.
//! - [`cluster`]: this node's groups, their layout, leadership and status; `lifecycle`
//!   starts, initializes and stops them, `serving` answers the peers' requests to them.
//! - [`membership`]: nodes joining and leaving, the reconciler that moves partition replicas
//!   to follow the node set, and the leader balancer.
//! - [`load`]: what a node measures for placement (writes per partition, CPU used and
//!   waited for); [`rebalance`]: the plan that moves partition leadership toward spare CPU,
//!   with its hysteresis; `placing`: the placement loop on the metadata leader and
//!   operator-asked rebalances (`impl Cluster`).
//! - [`shards`], [`moving`]: moving a shard between partitions (routes in the metadata group,
//!   each node's shard owners, the move itself on the metadata leader).
//! - [`journal`]: the entity layer's `Journal` in a cluster (appends through raft, leases).
//! - [`submit`]: ordered submission of journal appends to a group, and barriers.
//! - [`log_store`]: the openraft log storage of one group on the node's redb store. Every group
//!   appends through the store's one group-commit writer, so one durable transaction covers the
//!   appends of all groups on the node (openraft has no cross-group batching of its own).
//! - [`state_machine`]: applies committed journal writes into the node's store and builds and
//!   installs partition snapshots.
//!
//! - [`auth`]: peer authentication ([`auth::PeerAuth`]): every peer request is signed with
//!   the cluster secret and checked before anything in it is decoded.
//!
//! The peer transport, in layers; each module uses only the ones listed before it:
//!
//! 1. `frame`: length-prefixed postcard frames and the body types they travel in
//!    ([`stream::StreamingBody`]).
//! 2. `peer`: what every exchange with a peer shares: its answer and error
//!    ([`network::PeerReply`], [`network::PeerError`]), the streaming client, the raft path.
//! 3. [`mux`]: the forwarding exchange of entity commands, one upgraded connection per peer.
//! 4. `client`: [`network::PeerClient`], the pooled client to the other nodes (single requests,
//!    streams, and a forwarding exchange per peer).
//! 5. [`stream`]: pipelined replication, one streaming HTTP exchange per group and follower.
//! 6. [`network`]: the raft network (RPCs over hyper with postcard bodies, appends on
//!    [`stream`]), and the receiving side of the RPCs.
//!
//! So `network` → `stream` → `client` → `mux` → `peer` → `frame`, and none of `mux`,
//! `stream` and `network` is used by a module below it. The public items of the lower layers
//! are re-exported where they have always been: [`network::PeerClient`],
//! [`network::PeerReply`], [`network::PeerError`], [`network::RAFT_PATH`],
//! [`stream::StreamingBody`], [`stream::full_body`].

pub mod auth;
mod client;
pub mod cluster;
pub mod connect;
mod frame;
pub mod hot_shards;
pub mod journal;
mod lifecycle;
pub mod load;
pub mod log_store;
pub mod membership;
pub mod moving;
pub mod mux;
pub mod network;
mod peer;
pub mod placement;
mod placing;
pub mod rebalance;
mod serving;
pub mod shards;
pub mod state_machine;
pub mod stream;
pub mod submit;
pub mod types;

pub use cluster::{Cluster, ClusterOptions, GroupStatus, META_GROUP};
pub use journal::ClusterJournal;
pub use log_store::LogStore;
pub use placement::Placement;
pub use placing::{RebalanceOutcome, RebalanceRequest};
pub use state_machine::StateMachine;
pub use types::{Applied, AuditRecord, Command, GroupId, ModuleOp, TypeConfig};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's store failed.
    #[error("storage: {0}")]
    Store(#[from] cella_store::Error),
    /// A write queued on the store's group-commit writer failed: it was not made durable.
    #[error("storage write: {0}")]
    Write(#[from] cella_core::Error),
    /// Stored or received bytes do not decode.
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    /// Received data is not well formed: a peer request's path or RPC kind, a frame.
    #[error("cannot decode {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// The cluster configuration is not usable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// A membership change cannot be made as asked.
    #[error("{0}")]
    Membership(String),
    /// A raft group failed at `context` (what it was doing).
    #[error("raft: {context}: {source}")]
    Raft {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This node stopped leading the group an operation needs; its new leader can continue it.
    #[error("{0}")]
    NotLeader(String),
    /// A value cannot be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    /// A file of the node's data directory cannot be read or written.
    #[error("{what}: {source}")]
    File {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A peer request without valid credentials (see [`auth`]).
    #[error("{0}")]
    Unauthorized(String),
    /// A connection to a peer failed at `context`.
    #[error("{context}: {source}")]
    Transport {
        context: &'static str,
        #[source]
        source: hyper::Error,
    },
}

impl Error {
    /// A raft group's failure `source` at `context`.
    pub(crate) fn raft(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Raft {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Decode { .. } | Error::Malformed { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, e)
            }
            other => std::io::Error::other(other),
        }
    }
}
