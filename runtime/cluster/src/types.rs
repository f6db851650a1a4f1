//! The raft type configuration shared by every group, what a group's log carries, and the
//! byte encodings used on disk and on the wire (postcard).

use cella_core::{ModuleVersion, Write};
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
}

impl ModuleOp {
    /// The entity type the change is about.
    pub fn entity_type(&self) -> &str {
        match self {
            ModuleOp::Put { entity_type, .. }
            | ModuleOp::Activate { entity_type, .. }
            | ModuleOp::Delete { entity_type } => entity_type,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Journal(writes) => write!(f, "journal({} writes)", writes.len()),
            Command::Module(op) => write!(f, "module({})", op.entity_type()),
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
