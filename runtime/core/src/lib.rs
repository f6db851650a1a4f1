//! Cella's core data model, shared by every runtime crate: entity addresses, journal records,
//! snapshots, module metadata, their versioned binary encoding, and the [`Journal`] trait that is
//! the seam between the entity layer and durable storage (a partition's raft group over redb).
//! No IO, no clocks, no async runtime.

mod effects;
mod encoding;
mod journal;
mod model;
mod segment;

pub use effects::{
    OUTBOX_PREFIX, OutboxItem, Processed, Recorded, ReplyTo, RowTable, TIMER_PREFIX, TimerRow,
    outbox_row, timer_row,
};
pub use encoding::{FORMAT_VERSION, decode, encode};
pub use journal::{AppendFuture, EntityLoad, Journal, Lease, NotOwner, Write};
pub use model::{
    EntityId, EntityKind, JournalEntry, JournalPayload, ModuleInfo, ModuleVersion, Snapshot,
    TypeLimits, validate_name,
};
pub use segment::encode_segment;

/// Errors of the core data model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Persisted bytes could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A record could not be encoded or decoded.
    #[error("corrupt record: {0}")]
    Codec(#[from] postcard::Error),
    /// Persisted bytes carry a format version this build does not know.
    #[error("unsupported format version {found} (this build reads {expected})")]
    UnsupportedFormat { found: u8, expected: u8 },
    /// Storage failed; the change was not made durable.
    #[error("{0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A name (entity type, key, command) is not acceptable.
    #[error("invalid {what}: {reason}")]
    InvalidName { what: &'static str, reason: String },
    /// A replicated append could not be confirmed: this node stopped leading the entity's
    /// partition (or lost its quorum) while the append was in flight. The change may or may not
    /// take effect; the entity must be reloaded.
    #[error("outcome unknown: {0}")]
    Unconfirmed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An append was refused before anything was written: this node no longer serves the
    /// entity (its shard is moving to another partition). Safe to run again where the entity
    /// is served; the entity must be reloaded.
    #[error("not written: {0}")]
    NotServed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
