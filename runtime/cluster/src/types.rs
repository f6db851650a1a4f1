//! The raft type configuration shared by every group, what a group's log carries, and the
//! byte encodings used on disk and on the wire (postcard).

use cella_core::Write;
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
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Journal(writes) => write!(f, "journal({} writes)", writes.len()),
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
    postcard::to_stdvec(value).map_err(|e| Error::Encode {
        what,
        message: e.to_string(),
    })
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode {
        what,
        message: e.to_string(),
    })
}
