//! The seam between the entity layer and durable storage. The entity layer only ever calls
//! [`Journal`]; on one node it is the redb store with group commit, in a cluster it is the
//! replicated log. An append resolves only once its writes are durable.

use std::{future::Future, pin::Pin};

use crate::{EntityId, JournalEntry, Result, RowTable, Snapshot};

/// One write in an append batch. Serializable: a cluster replicates appends as log entries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Append a journal entry (its `seq` must be the entity's next sequence number).
    Append(EntityId, JournalEntry),
    /// Replace the entity's snapshot.
    Snapshot(EntityId, Snapshot),
    /// Delete journal entries with `seq <= upto` (after a snapshot covers them).
    Trim(EntityId, u64),
    /// Set (`Some`) or delete (`None`) one of the entity's rows (its outbox, timers and
    /// processed request ids, see [`RowTable`]).
    Row {
        id: EntityId,
        table: RowTable,
        name: String,
        value: Option<Vec<u8>>,
    },
}

impl Write {
    /// The entity the write is about.
    pub fn entity(&self) -> &EntityId {
        match self {
            Write::Append(id, _) | Write::Snapshot(id, _) | Write::Trim(id, _) => id,
            Write::Row { id, .. } => id,
        }
    }
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

/// The leadership under which a node may write an entity: the raft term and leader node id of
/// the entity's partition. An append made under a lease commits only while that leadership
/// lasts, so state cached under an earlier leadership is never written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub term: u64,
    pub node: u64,
}

/// Why this node may not write an entity now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotOwner {
    /// The address of the node that leads the entity's partition, when known.
    pub leader: Option<String>,
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

    /// The lease under which this node may write `id` now (`None`: no leases, one node owns
    /// everything), or who owns it instead.
    fn lease(&self, _id: &EntityId) -> std::result::Result<Option<Lease>, NotOwner> {
        Ok(None)
    }

    /// Resolves once this node, holding `lease`, has applied every change committed before the
    /// lease began, so that [`Journal::load`] sees the entity's latest state.
    fn ready(&self, _id: &EntityId, _lease: Lease) -> AppendFuture {
        Box::pin(async { Ok(()) })
    }

    /// Like [`Journal::append`], to commit only while `lease` lasts (when given).
    fn append_leased(&self, writes: Vec<Write>, _lease: Option<Lease>) -> AppendFuture {
        self.append(writes)
    }

    /// Resolves once this node still holds `lease` at the time of the call, so that state it
    /// cached under the lease may be read (a read is then linearizable); fails when it is no
    /// longer sure.
    fn confirm(&self, _id: &EntityId, _lease: Lease) -> AppendFuture {
        Box::pin(async { Ok(()) })
    }

    /// Resolves once every append of `id` submitted before this call is durable.
    fn barrier(&self, _id: &EntityId) -> AppendFuture {
        self.append(Vec::new())
    }

    /// The entity's rows of `table` whose names start with `prefix`, in name order, as of
    /// everything applied on this node.
    fn rows(&self, id: &EntityId, table: RowTable, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;

    /// One row of the entity, as of everything applied on this node.
    fn row(&self, id: &EntityId, table: RowTable, name: &str) -> Result<Option<Vec<u8>>>;

    /// Keys of the entities of `entity_type` that have a journal on this node, in key order,
    /// after `after` (exclusive), at most `limit` of them.
    fn keys(&self, entity_type: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
}
