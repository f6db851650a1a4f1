//! [`Op`]: one write to the store, encoded on the caller's thread for the writer thread (which
//! applies it in a write transaction) or for the deferred writes (which hold it until then).

use cella_core::{RowTable, Write, encode};

use crate::error::Result;

/// One write, encoded on the caller's thread, ready for the writer.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Append {
        entity_type: String,
        key: String,
        seq: u64,
        value: Vec<u8>,
    },
    Snapshot {
        entity_type: String,
        key: String,
        value: Vec<u8>,
    },
    Trim {
        entity_type: String,
        key: String,
        upto: u64,
    },
    /// Removes an entity's journal, snapshot and rows.
    Clear { entity_type: String, key: String },
    /// Sets or deletes one of an entity's rows.
    Row {
        table: RowTable,
        entity_type: String,
        key: String,
        name: String,
        value: Option<Vec<u8>>,
    },
    RaftPut {
        group: u64,
        index: u64,
        value: Vec<u8>,
    },
    /// Sets (`Some`) or deletes a crdt entity's replica state on this node.
    CrdtPut {
        entity_type: String,
        key: String,
        value: Option<Vec<u8>>,
    },
    /// Deletes the group's log entries with `index >= from`.
    RaftTruncateFrom { group: u64, from: u64 },
    /// Deletes the group's log entries with `index <= upto`.
    RaftPurgeUpto { group: u64, upto: u64 },
    RaftState {
        group: u64,
        name: String,
        value: Option<Vec<u8>>,
    },
}

impl Op {
    /// What kind of write this is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Op::Append { .. } => "a journal append",
            Op::Snapshot { .. } => "a snapshot write",
            Op::Trim { .. } => "a journal trim",
            Op::Clear { .. } => "an entity clear",
            Op::Row { .. } => "an entity row write",
            Op::RaftPut { .. } => "a log append",
            Op::CrdtPut { .. } => "a crdt state write",
            Op::RaftTruncateFrom { .. } => "a log truncation",
            Op::RaftPurgeUpto { .. } => "a log purge",
            Op::RaftState { .. } => "a group value write",
        }
    }

    /// Encodes a [`Write`] into its table row.
    pub(crate) fn encode(write: Write) -> Result<Op> {
        Ok(match write {
            Write::Append(id, entry) => Op::Append {
                value: encode(&entry)?,
                seq: entry.seq,
                entity_type: id.entity_type,
                key: id.key,
            },
            Write::Snapshot(id, snapshot) => Op::Snapshot {
                value: encode(&snapshot)?,
                entity_type: id.entity_type,
                key: id.key,
            },
            Write::Trim(id, upto) => Op::Trim {
                entity_type: id.entity_type,
                key: id.key,
                upto,
            },
            Write::Row {
                id,
                table,
                name,
                value,
            } => Op::Row {
                table,
                entity_type: id.entity_type,
                key: id.key,
                name,
                value,
            },
        })
    }
}
