//! Where each replication group's log entries are: the `raft_entries` table and its index.
//!
//! The log entries of every group on the node share one table, keyed by a node-wide sequence
//! number in the order they were written. A commit's appends of all groups then land in the
//! table's one tail (a few pages) rather than in one tail per group: with redb's copy-on-write
//! pages, every page a commit touches is allocated, checksummed, written, synced and freed
//! again, and the per-group tails were most of what a commit wrote. A row's value is the
//! group and index (16 bytes, big-endian) followed by the entry.
//!
//! [`LogIndex`] maps `(group, index)` to the row's sequence number. It is rebuilt from the
//! table when the store opens, and only the writer thread changes it, in a way that keeps every
//! reader exact: a reader copies what it needs from the index and begins its read transaction
//! under the index's lock ([`LogIndex::read`]); the writer removes entries from the index
//! *before* the commit that deletes their rows, and adds entries *after* the commit that writes
//! their rows ([`Staged`]). So a sequence number a reader copies names a row its transaction
//! sees: the row was committed before the number was published, and a commit deleting it
//! would have removed the number first.
//!
//! Stores of format version 1 kept the log in `raft_log`, keyed by `(group, index)`; opening
//! one moves its rows here in the transaction that upgrades it to version 2 ([`migrate`]).
//!
//! Replacing an entry that is already published (a put at an index that holds one, without a
//! truncation before it) is not atomic for readers: between its removal and the commit, a
//! reader finds no entry at that index. openraft never does this: it truncates, and waits for
//! the truncation, before appending over a conflict.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use crate::error::{Error, Result};

/// The log entries of every group, by node-wide sequence number.
pub(crate) const RAFT_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
/// The log table of earlier stores (one tail per group), moved into [`RAFT_ENTRIES`] at open.
const OLD_RAFT_LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_log");

/// Bytes before the entry in a row's value.
const HEADER: usize = 16;

/// The row value of entry `index` of `group`.
pub(crate) fn row(group: u64, index: u64, entry: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + entry.len());
    value.extend_from_slice(&group.to_be_bytes());
    value.extend_from_slice(&index.to_be_bytes());
    value.extend_from_slice(entry);
    value
}

/// The group, index and entry of a row's value.
pub(crate) fn parse(seq: u64, value: &[u8]) -> Result<(u64, u64, &[u8])> {
    let word = |at: usize| {
        value
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (word(0), word(8)) {
        (Some(group), Some(index)) => Ok((group, index, &value[HEADER..])),
        _ => Err(Error::corrupt(format!(
            "raft log row {seq} is {} bytes, shorter than its header",
            value.len()
        ))),
    }
}

/// What the index holds, under its lock.
#[derive(Default)]
struct State {
    rows: BTreeMap<(u64, u64), u64>,
    /// The sequence number of the next row.
    next: u64,
}

/// The `(group, index)` → row index of [`RAFT_ENTRIES`].
#[derive(Default)]
pub(crate) struct LogIndex {
    state: Mutex<State>,
}

impl LogIndex {
    /// Reads the index from `db` (every row's header: the open reads the whole log).
    pub(crate) fn load(db: &Database) -> Result<LogIndex> {
        let txn = db.begin_read().map_err(Error::storage("begin read"))?;
        let table = txn
            .open_table(RAFT_ENTRIES)
            .map_err(Error::storage("open raft entries table"))?;
        let mut state = State::default();
        for row in table.iter().map_err(Error::storage("read raft entries"))? {
            let (seq, value) = row.map_err(Error::storage("read raft entries"))?;
            let seq = seq.value();
            let (group, index, _) = parse(seq, value.value())?;
            // The writer deletes a replaced row in the commit that writes its successor.
            if let Some(other) = state.rows.insert((group, index), seq) {
                return Err(Error::corrupt(format!(
                    "raft log entry {index} of group {group} is in rows {other} and {seq}"
                )));
            }
            state.next = seq + 1;
        }
        Ok(LogIndex {
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `(index, row)` pairs of `group`'s entries with index in `from..=to`, in order, and
    /// `begin` (a read transaction) called under the same lock: every row named is in it.
    pub(crate) fn read<T>(
        &self,
        group: u64,
        from: u64,
        to: u64,
        begin: impl FnOnce() -> Result<T>,
    ) -> Result<(Vec<(u64, u64)>, T)> {
        let state = self.lock();
        let rows = if from > to {
            Vec::new()
        } else {
            state
                .rows
                .range((group, from)..=(group, to))
                .map(|(&(_, index), &seq)| (index, seq))
                .collect()
        };
        Ok((rows, begin()?))
    }

    /// The `(index, row)` of `group`'s last entry, if any, and `begin` called under the same
    /// lock (as [`LogIndex::read`]).
    pub(crate) fn read_last<T>(
        &self,
        group: u64,
        begin: impl FnOnce() -> Result<T>,
    ) -> Result<(Option<(u64, u64)>, T)> {
        let state = self.lock();
        let last = state
            .rows
            .range((group, 0)..=(group, u64::MAX))
            .next_back()
            .map(|(&(_, index), &seq)| (index, seq));
        Ok((last, begin()?))
    }
}

/// The log changes of one write transaction, made by the writer thread: rows are deleted from
/// the index at once and added to it only by [`Staged::publish`], after the commit.
pub(crate) struct Staged<'i> {
    index: &'i LogIndex,
    added: BTreeMap<(u64, u64), u64>,
}

impl<'i> Staged<'i> {
    pub(crate) fn new(index: &'i LogIndex) -> Staged<'i> {
        Staged {
            index,
            added: BTreeMap::new(),
        }
    }

    /// Writes entry `index` of `group`, replacing the one there.
    pub(crate) fn put(
        &mut self,
        table: &mut Table<'_, u64, &[u8]>,
        group: u64,
        index: u64,
        entry: &[u8],
    ) -> Result<()> {
        self.remove(table, group, index, index)?;
        let seq = {
            let mut state = self.index.lock();
            let seq = state.next;
            state.next += 1;
            seq
        };
        table
            .insert(seq, row(group, index, entry).as_slice())
            .map_err(Error::storage("append log entry"))?;
        self.added.insert((group, index), seq);
        Ok(())
    }

    /// Deletes `group`'s entries with index in `from..=to`.
    pub(crate) fn remove(
        &mut self,
        table: &mut Table<'_, u64, &[u8]>,
        group: u64,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let range = (group, from)..=(group, to);
        let mut seqs: Vec<u64> = take(&mut self.index.lock().rows, range.clone());
        seqs.extend(take(&mut self.added, range));
        for seq in seqs {
            table
                .remove(seq)
                .map_err(Error::storage("delete log entry"))?;
        }
        Ok(())
    }

    /// Adds the rows written to the index; call after their commit.
    pub(crate) fn publish(self) {
        if !self.added.is_empty() {
            self.index.lock().rows.extend(self.added);
        }
    }
}

/// Removes the entries of `map` in `range` and returns their row numbers.
fn take(
    map: &mut BTreeMap<(u64, u64), u64>,
    range: std::ops::RangeInclusive<(u64, u64)>,
) -> Vec<u64> {
    map.extract_if(range, |_, _| true)
        .map(|(_, seq)| seq)
        .collect()
}

/// Moves the rows of a version-1 store's `raft_log` table (if it has one) into
/// [`RAFT_ENTRIES`] and deletes it, within the caller's upgrade transaction.
pub(crate) fn migrate(txn: &WriteTransaction) -> Result<()> {
    let present = txn
        .list_tables()
        .map_err(Error::storage("list tables"))?
        .any(|t| t.name() == OLD_RAFT_LOG.name());
    if !present {
        return Ok(());
    }
    {
        let old = txn
            .open_table(OLD_RAFT_LOG)
            .map_err(Error::storage("open raft log table"))?;
        let mut new = txn
            .open_table(RAFT_ENTRIES)
            .map_err(Error::storage("open raft entries table"))?;
        let first = new
            .last()
            .map_err(Error::storage("read raft entries"))?
            .map_or(0, |(k, _)| k.value() + 1);
        for (seq, entry) in (first..).zip(old.iter().map_err(Error::storage("read raft log"))?) {
            let (key, value) = entry.map_err(Error::storage("read raft log"))?;
            let (group, index) = key.value();
            new.insert(seq, row(group, index, value.value()).as_slice())
                .map_err(Error::storage("move raft log entry"))?;
        }
    }
    txn.delete_table(OLD_RAFT_LOG)
        .map_err(Error::storage("delete raft log table"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GroupWrite, Store, StoreOptions};

    #[tokio::test]
    async fn a_version_1_store_is_upgraded_and_its_log_moved_to_the_shared_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.close().unwrap();
        }
        // Put the log back in the earlier layout: one (group, index) key per entry.
        let path = dir.path().join(crate::DB_FILE);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(crate::tables::META).unwrap();
                meta.insert("format_version", 1).unwrap();
                let mut old = txn.open_table(OLD_RAFT_LOG).unwrap();
                for (group, index) in [(1u64, 1u64), (1, 2), (2, 1), (1, 3)] {
                    old.insert((group, index), [group as u8, index as u8].as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let one = store.group_log(1, 0, u64::MAX).unwrap();
        assert_eq!(one, [(1, vec![1, 1]), (2, vec![1, 2]), (3, vec![1, 3])]);
        assert_eq!(store.group_log_last(2).unwrap(), Some((1, vec![2, 1])));
        // New appends go after the moved rows, and the old table is gone.
        store
            .write_group(vec![GroupWrite::LogPut {
                group: 2,
                index: 2,
                entry: vec![2, 2],
            }])
            .await
            .unwrap();
        store.close().unwrap();
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(!names.iter().any(|n| n == OLD_RAFT_LOG.name()), "{names:?}");
        let meta = txn.open_table(crate::tables::META).unwrap();
        let version = meta.get("format_version").unwrap().map(|v| v.value());
        assert_eq!(version, Some(crate::STORE_FORMAT_VERSION));
        let rows = txn
            .open_table(RAFT_ENTRIES)
            .unwrap()
            .iter()
            .unwrap()
            .count();
        assert_eq!(rows, 5);
    }

    #[test]
    fn a_row_holds_group_index_and_entry() {
        let value = row(7, 9, b"entry");
        assert_eq!(parse(3, &value).unwrap(), (7, 9, &b"entry"[..]));
        let short = parse(3, &value[..10]).unwrap_err().to_string();
        assert!(short.contains("row 3"), "{short}");
    }
}
