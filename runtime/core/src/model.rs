//! The persisted data model: entity addresses, journal entries, snapshots and module metadata.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Address of one entity: its type (the module name) and its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityId {
    pub entity_type: String,
    pub key: String,
}

impl EntityId {
    pub fn new(entity_type: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            key: key.into(),
        }
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.entity_type, self.key)
    }
}

/// How an entity's state is persisted (declared by the module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityKind {
    /// Each change persists the whole new state.
    Value,
    /// Each change persists events; state is their fold.
    EventSourced,
    /// The state is a CRDT the node replicates without consensus; commands answer with
    /// operations on it.
    Crdt,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Value => "value",
            EntityKind::EventSourced => "event-sourced",
            EntityKind::Crdt => "crdt",
        }
    }
}

/// What one journal entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalPayload {
    /// Events emitted by an event-sourced entity, in order.
    Events(Vec<Vec<u8>>),
    /// The whole new state of a value entity.
    State(Vec<u8>),
}

/// One durable change of one entity, made by one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Per-entity sequence number, starting at 1 and increasing by one per entry.
    pub seq: u64,
    pub command_id: String,
    pub command: String,
    /// Host-chosen time of the command (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// Version of the module that wrote the entry.
    pub module_version: u32,
    pub payload: JournalPayload,
}

/// The state of one entity as of journal sequence `seq` (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub module_version: u32,
    pub state: Vec<u8>,
}

/// One uploaded version of a module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub version: u32,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub size: u64,
    pub created_ms: u64,
    pub kind: EntityKind,
    pub commands: Vec<String>,
}

/// A deployed entity type: all its versions and which one is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub entity_type: String,
    pub active: u32,
    pub versions: Vec<ModuleVersion>,
}

impl ModuleInfo {
    /// The active version's metadata.
    pub fn active_version(&self) -> Option<&ModuleVersion> {
        self.versions.iter().find(|v| v.version == self.active)
    }
}

/// The scheduling limits of an entity type, set at deploy and kept beside its module metadata
/// (a row of their own, so that [`ModuleInfo`] records written before limits existed still
/// decode). `None` leaves a limit to the node's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeLimits {
    /// Longest one guest call of the type may run, in milliseconds (at most the node's
    /// deadline).
    pub deadline_ms: Option<u64>,
    /// Most guest calls of the type running at once on a node.
    pub max_concurrent: Option<u32>,
    /// The type's weight in the fair sharing of the node's guest execution.
    pub cpu_share: Option<u32>,
}

impl TypeLimits {
    /// `self` with every limit `other` sets replaced by `other`'s.
    pub fn merged(self, other: TypeLimits) -> TypeLimits {
        TypeLimits {
            deadline_ms: other.deadline_ms.or(self.deadline_ms),
            max_concurrent: other.max_concurrent.or(self.max_concurrent),
            cpu_share: other.cpu_share.or(self.cpu_share),
        }
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == TypeLimits::default()
    }
}

/// Checks an entity type, key or command name: non-empty, at most 256 bytes, and free of
/// `/` and control characters (they appear in URL paths).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if name.len() > 256 {
        format!("is {} bytes long (at most 256)", name.len())
    } else if let Some(c) = name.chars().find(|c| *c == '/' || c.is_control()) {
        format!("contains the character {c:?}")
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { what, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("key", "k1").is_ok());
        assert!(validate_name("key", "").is_err());
        assert!(validate_name("key", "a/b").is_err());
        assert!(validate_name("key", &"x".repeat(257)).is_err());
    }
}
