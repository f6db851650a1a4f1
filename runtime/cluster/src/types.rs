//! The raft type configuration shared by every group, what a group's log carries, and the
//! byte encodings used on disk and on the wire (postcard).

use cella_core::{ModuleVersion, TypeLimits, Write};
use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// A replication group: `0` is reserved for cluster metadata, partitions are `1..=P`.
pub type GroupId = u64;

/// What a group's log carries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// The writes of one journal append of an entity layer (journal entries, snapshots, trims),
    /// applied all together.
    Journal(Vec<Write>),
    /// A change to the deployed modules (metadata group only), applied on every node.
    Module(ModuleOp),
    /// An admin action (metadata group only): its audit record and the module change it makes,
    /// if any, applied together on every node (the record keyed by this entry's log index).
    Admin {
        record: AuditRecord,
        module: Option<ModuleOp>,
    },
    /// Where partitions prefer their leaders (metadata group only), replacing the previous
    /// preferences, with the record of the move that changed them.
    Leaders {
        record: AuditRecord,
        leaders: Leaders,
    },
    /// A change to a partition's shards (partitions only): see [`crate::shards`].
    Shard(crate::shards::ShardOp),
    /// A step of a shard's move in the routes (metadata group only), with its audit record.
    Route {
        record: AuditRecord,
        op: crate::shards::RouteOp,
    },
}

/// The partitions whose leader placement moved off their layout's preferred node, and the
/// moves made (newest last, at most [`Leaders::KEPT_MOVES`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leaders {
    /// Partition → the node it prefers as leader (when that node is one of its voters).
    pub preferred: std::collections::BTreeMap<GroupId, u64>,
    pub moves: Vec<LeaderMove>,
}

impl Leaders {
    /// How many moves the placement keeps for `cella cluster status`.
    pub const KEPT_MOVES: usize = 32;
}

/// One move of a partition's leadership.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderMove {
    /// When it was decided (ms since the Unix epoch, the deciding node's clock).
    pub at_ms: u64,
    pub group: GroupId,
    pub from: u64,
    pub to: u64,
    /// Why: the loads that decided it, or who asked for it.
    pub reason: String,
}

/// Who did what to the cluster, and when: one entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When the action was taken (ms since the Unix epoch, the acting node's clock).
    pub at_ms: u64,
    /// The id of the token that authorized it (`admin` for `--admin-token`, `anonymous` on a
    /// node without tokens, `node <id>` for what a node does itself).
    pub actor: String,
    /// `deploy`, `limits`, `rollback`, `delete`, `add-node`, `remove-node`, `reload-tokens`.
    pub action: String,
    pub entity_type: Option<String>,
    pub version: Option<u32>,
    pub digest: Option<String>,
    /// The node added or removed, or the node that reloaded its tokens.
    pub node: Option<u64>,
    /// Anything else worth keeping (a new node's address, the token ids after a reload).
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record of `action` by `actor`, now; the caller fills in what it was about.
    pub fn new(actor: &str, action: &str) -> AuditRecord {
        AuditRecord {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            entity_type: None,
            version: None,
            digest: None,
            node: None,
            detail: None,
        }
    }
}

/// Milliseconds since the Unix epoch, by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A replicated change to the deployed modules.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ModuleOp {
    /// Store a new version (with its component bytes) and make it active.
    Put {
        entity_type: String,
        version: ModuleVersion,
        component: Vec<u8>,
    },
    /// Make a stored version active.
    Activate { entity_type: String, version: u32 },
    /// Remove a type and its versions.
    Delete { entity_type: String },
    /// Replace a type's scheduling limits (set at deploy).
    Limits {
        entity_type: String,
        limits: TypeLimits,
    },
}

impl ModuleOp {
    /// The entity type the change is about.
    pub fn entity_type(&self) -> &str {
        match self {
            ModuleOp::Put { entity_type, .. }
            | ModuleOp::Activate { entity_type, .. }
            | ModuleOp::Delete { entity_type }
            | ModuleOp::Limits { entity_type, .. } => entity_type,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Journal(writes) => write!(f, "journal({} writes)", writes.len()),
            Command::Module(op) => write!(f, "module({})", op.entity_type()),
            Command::Admin { record, .. } => write!(f, "admin({})", record.action),
            Command::Leaders { leaders, .. } => {
                write!(f, "leaders({} preferred)", leaders.preferred.len())
            }
            Command::Shard(op) => write!(f, "shard({op})"),
            Command::Route { op, .. } => write!(f, "route({op})"),
        }
    }
}

/// The state machine's answer to an applied command: its log index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The raft types of every Cella group.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// Encodes a value with postcard.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(value).map_err(|source| Error::Encode { what, source })
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|source| Error::Decode { what, source })
}
