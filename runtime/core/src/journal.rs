//! The seam between the entity layer and durable storage. The entity layer only ever calls
//! [`Journal`]; on one node it is the redb store with group commit, in a cluster it is the
//! replicated log. An append resolves only once its writes are durable.

use std::{future::Future, pin::Pin};

use crate::{EntityId, JournalEntry, Result, Snapshot};

/// One write in an append batch. Serializable: a cluster replicates appends as log entries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Append a journal entry (its `seq` must be the entity's next sequence number).
    Append(EntityId, JournalEntry),
    /// Replace the entity's snapshot.
    Snapshot(EntityId, Snapshot),
    /// Delete journal entries with `seq <= upto` (after a snapshot covers them).
    Trim(EntityId, u64),
}

/// What storage knows about one entity: its latest snapshot and the journal after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityLoad {
    pub snapshot: Option<Snapshot>,
    /// Entries with `seq` greater than the snapshot's, in order.
    pub entries: Vec<JournalEntry>,
}

impl EntityLoad {
    /// The entity's last journal sequence number (0 for a new entity).
    pub fn last_seq(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.seq)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0)
    }
}

/// A future that resolves when an append is durable.
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// Durable, ordered storage of entity journals.
pub trait Journal: Send + Sync + 'static {
    /// Submits writes; they become durable together (all or nothing). Appends submitted
    /// earlier become durable no later than appends submitted after them. Concurrent callers
    /// share commits (group commit).
    fn append(&self, writes: Vec<Write>) -> AppendFuture;

    /// Loads an entity's snapshot and the journal after it.
    fn load(&self, id: &EntityId) -> Result<EntityLoad>;

    /// Reads up to `limit` journal entries with `seq >= from`, in order.
    fn read_journal(&self, id: &EntityId, from: u64, limit: usize) -> Result<Vec<JournalEntry>>;
}
