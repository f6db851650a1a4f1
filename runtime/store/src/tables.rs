//! The on-disk layout: every redb table of the store, and the format check on open.
//!
//! One redb file, `<dir>/cella.redb`, with these tables (values marked `encode(..)` are
//! `[cella_core::FORMAT_VERSION] ++ postcard(value)`):
//!
//! | table          | key                                       | value                       |
//! |----------------|-------------------------------------------|-----------------------------|
//! | `meta`         | `&str`: `"format_version"`                | `u32` `STORE_FORMAT_VERSION` |
//! | `journal`      | `(&str entity_type, &str key, u64 seq)`   | `encode(JournalEntry)`      |
//! | `snapshots`    | `(&str entity_type, &str key)`            | `encode(Snapshot)`          |
//! | `modules`      | `&str entity_type`                        | `encode(ModuleInfo)`        |
//! | `module_seq`   | `&str entity_type`                        | `u32` last version assigned |
//! | `module_blobs` | `(&str entity_type, u32 version)`         | component bytes             |
//! | `module_limits` | `&str entity_type`                       | `encode(TypeLimits)` set at deploy |
//! | `artifacts`    | `(&str entity_type, u32 version)`         | opaque precompiled code     |
//! | `effects`      | `(&str entity_type, &str key, &str name)` | an entity's outbox item (`o/…`) or timer (`t/…`): `encode(..)` |
//! | `processed`    | `(&str entity_type, &str key, &str request id)` | `encode(Processed)` |
//! | `raft_entries` | `u64` node-wide sequence number           | `u64 group` BE ++ `u64 index` BE ++ a replicated log entry (the caller's bytes) |
//! | `raft_state`   | `(u64 group, &str name)`                  | a replication group's named value (the caller's bytes: vote, committed, purged, applied) |
//! | `audit`        | `u64` index (the metadata group's log index) | an audit record (the caller's bytes) |
//! | `crdt_states`  | `(&str entity_type, &str key)`            | this node's replica of a durable crdt entity (`cella-crdt`'s encoding) |
//!
//! Keys use redb's tuple encoding: a length prefix for each variable-width element but the
//! last (1 byte below 254, else `0xFE`+u16 LE or `0xFF`+u32 LE), then the elements back to back;
//! strings as UTF-8, integers little-endian. Tuples order element by element (strings bytewise,
//! integers numerically), so one entity's journal is one key range ordered by `seq`.
//! Example: the journal key `("counter", "c1", 7)` is the 19 bytes
//! `07 02 "counter" "c1" 07 00 00 00 00 00 00 00`; the blob key `("counter", 3)` is
//! `07 "counter" 03 00 00 00`.
//!
//! `meta` holds one row, `"format_version" -> STORE_FORMAT_VERSION`, written when the store is
//! created and checked on every open.
//!
//! `raft_entries` holds the log entries of every replication group on the node in the order
//! they were written, so a commit's appends share one tail; `log_index.rs` keeps the
//! `(group, index)` → sequence index in memory. Format version 1 kept the log in one table
//! keyed `(u64 group, u64 index)`, `raft_log`; opening a version-1 store moves its rows into
//! `raft_entries` in the transaction that records version 2.
//!
//! `module_seq` outlives `delete_module`: version numbers of an entity type are never reused,
//! so `(entity_type, version)` always names the same component, including in the
//! `module_version` of old journal entries and in the artifact cache.

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};

use crate::error::{Error, Result};

/// Version of the store's table layout. Bump it when a table's key or value type changes.
/// 2: the raft log moved from `raft_log` (one key range per group) to `raft_entries` (one
/// node-wide sequence); a version-1 store is upgraded when opened, and a version-2 store is
/// refused by builds that know only version 1 (they would find no log).
pub const STORE_FORMAT_VERSION: u32 = 2;

/// The earlier version this build upgrades in place.
const UPGRADABLE_FORMAT_VERSION: u32 = 1;

const FORMAT_KEY: &str = "format_version";

pub(crate) const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
pub(crate) const JOURNAL: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("journal");
pub(crate) const SNAPSHOTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("snapshots");
pub(crate) const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
pub(crate) const MODULE_SEQ: TableDefinition<&str, u32> = TableDefinition::new("module_seq");
pub(crate) const MODULE_BLOBS: TableDefinition<(&str, u32), &[u8]> =
    TableDefinition::new("module_blobs");
pub(crate) const MODULE_LIMITS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("module_limits");
pub(crate) const ARTIFACTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("artifacts");
pub(crate) const EFFECTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("effects");
pub(crate) const PROCESSED: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("processed");
pub(crate) const RAFT_STATE: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("raft_state");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(crate) const CRDT_STATES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("crdt_states");

/// Checks the format version of a freshly opened database, or records it (and creates every
/// table) when the database is new, so that read transactions always find the tables.
pub(crate) fn init(db: &Database) -> Result<()> {
    let found = read_format(db)?;
    match found {
        // Tables added after a store was created are added when it is opened.
        Some(STORE_FORMAT_VERSION) => return add_missing_tables(db),
        Some(UPGRADABLE_FORMAT_VERSION) => return upgrade(db),
        Some(_) => return Err(mismatch(found)),
        None => {}
    }
    let txn = db
        .begin_write()
        .map_err(Error::storage("begin initial transaction"))?;
    {
        let existing = txn
            .list_tables()
            .map_err(Error::storage("list tables"))?
            .any(|t| t.name() != META.name());
        if existing {
            return Err(mismatch(None));
        }
        create_tables(&txn).map_err(Error::storage("create tables"))?;
        let mut meta = txn
            .open_table(META)
            .map_err(Error::storage("open meta table"))?;
        meta.insert(FORMAT_KEY, STORE_FORMAT_VERSION)
            .map_err(Error::storage("write format"))?;
    }
    txn.commit()
        .map_err(Error::storage("commit initial transaction"))
}

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(META)?;
    txn.open_table(JOURNAL)?;
    txn.open_table(SNAPSHOTS)?;
    txn.open_table(MODULES)?;
    txn.open_table(MODULE_SEQ)?;
    txn.open_table(MODULE_BLOBS)?;
    txn.open_table(ARTIFACTS)?;
    txn.open_table(crate::log_index::RAFT_ENTRIES)?;
    txn.open_table(RAFT_STATE)?;
    txn.open_table(EFFECTS)?;
    txn.open_table(PROCESSED)?;
    txn.open_table(AUDIT)?;
    txn.open_table(MODULE_LIMITS)?;
    txn.open_table(CRDT_STATES)?;
    Ok(())
}

/// Creates the tables a store of the current format may lack (added since it was created).
fn add_missing_tables(db: &Database) -> Result<()> {
    let txn = db.begin_read().map_err(Error::storage("begin read"))?;
    let missing = [
        crate::log_index::RAFT_ENTRIES.name(),
        RAFT_STATE.name(),
        EFFECTS.name(),
        PROCESSED.name(),
        AUDIT.name(),
        MODULE_LIMITS.name(),
        CRDT_STATES.name(),
    ];
    let present: Vec<String> = txn
        .list_tables()
        .map_err(Error::storage("list tables"))?
        .map(|t| t.name().to_string())
        .collect();
    drop(txn);
    if missing.iter().all(|m| present.iter().any(|p| p == m)) {
        return Ok(());
    }
    let txn = db
        .begin_write()
        .map_err(Error::storage("begin table upgrade"))?;
    create_tables(&txn).map_err(Error::storage("create tables"))?;
    txn.commit().map_err(Error::storage("commit table upgrade"))
}

/// Upgrades a version-1 store in one transaction: the tables it lacks, its raft log moved to
/// `raft_entries`, and the new version.
fn upgrade(db: &Database) -> Result<()> {
    let txn = db
        .begin_write()
        .map_err(Error::storage("begin store upgrade"))?;
    create_tables(&txn).map_err(Error::storage("create tables"))?;
    crate::log_index::migrate(&txn)?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(Error::storage("open meta table"))?;
        meta.insert(FORMAT_KEY, STORE_FORMAT_VERSION)
            .map_err(Error::storage("write format"))?;
    }
    txn.commit().map_err(Error::storage("commit store upgrade"))
}

fn mismatch(found: Option<u32>) -> Error {
    Error::FormatMismatch {
        found,
        expected: STORE_FORMAT_VERSION,
    }
}

fn read_format(db: &Database) -> Result<Option<u32>> {
    let txn = db.begin_read().map_err(Error::storage("begin read"))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(Error::storage("open meta table")(e)),
    };
    let value = meta
        .get(FORMAT_KEY)
        .map_err(Error::storage("read format"))?;
    Ok(value.map(|v| v.value()))
}

#[cfg(test)]
mod tests {
    use redb::Value;

    /// The key bytes shown in the module docs.
    #[test]
    fn documented_key_encoding() {
        let key = <(&str, &str, u64)>::as_bytes(&("counter", "c1", 7));
        let mut expected = vec![7, 2];
        expected.extend_from_slice(b"counterc1");
        expected.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(key, expected);
        assert_eq!(key.len(), 19);

        let key = <(&str, u32)>::as_bytes(&("counter", 3));
        let mut expected = vec![7];
        expected.extend_from_slice(b"counter");
        expected.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(key, expected);
    }
}
