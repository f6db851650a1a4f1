//! Storage for replication groups: their logs and named values (`raft_entries`, `raft_state`), and
//! the writes a replicated state machine makes. Everything goes through the one group-commit
//! writer, so the log appends of every group on the node, the entity writes their state
//! machines apply and the node's own journal writes share one durable transaction per batch.
//! The store knows nothing of the consensus protocol: entries and values are the caller's bytes.

use cella_core::{AppendFuture, EntityId, EntityLoad, JournalEntry, Snapshot, Write, decode};
use redb::ReadableTable;

use crate::{
    Store,
    deferred::merge,
    error::{Error, Result},
    log_index::{self, RAFT_ENTRIES},
    op::Op,
    tables::{JOURNAL, RAFT_STATE, SNAPSHOTS},
};

/// One write of a replication group or its state machine, applied with the other writes of
/// its batch in one durable transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupWrite {
    /// Stores log entry `index` of `group` (replacing one already there).
    LogPut {
        group: u64,
        index: u64,
        entry: Vec<u8>,
    },
    /// Deletes the entries of `group` with `index >= from`.
    LogTruncateFrom { group: u64, from: u64 },
    /// Deletes the entries of `group` with `index <= upto`.
    LogPurgeUpto { group: u64, upto: u64 },
    /// Sets (`Some`) or deletes (`None`) a named value of `group`.
    State {
        group: u64,
        name: String,
        value: Option<Vec<u8>>,
    },
    /// An entity write made by a state machine.
    Entity(Write),
    /// Deletes an entity's journal and snapshot (a state machine installing a snapshot).
    ClearEntity(EntityId),
}

impl GroupWrite {
    fn into_op(self) -> Result<Op> {
        Ok(match self {
            GroupWrite::LogPut {
                group,
                index,
                entry,
            } => Op::RaftPut {
                group,
                index,
                value: entry,
            },
            GroupWrite::LogTruncateFrom { group, from } => Op::RaftTruncateFrom { group, from },
            GroupWrite::LogPurgeUpto { group, upto } => Op::RaftPurgeUpto { group, upto },
            GroupWrite::State { group, name, value } => Op::RaftState { group, name, value },
            GroupWrite::Entity(write) => Op::encode(write)?,
            GroupWrite::ClearEntity(id) => Op::Clear {
                entity_type: id.entity_type,
                key: id.key,
            },
        })
    }
}

impl Store {
    /// Queues group writes; the future resolves once they are durable, in submission order with
    /// every other write of the store (see [`cella_core::Journal::append`]).
    pub fn write_group(&self, writes: Vec<GroupWrite>) -> AppendFuture {
        self.queue_group(writes, false)
    }

    /// Defers a state machine's writes (entity writes and group values; not log writes): they
    /// are readable at once, and written to disk with others in bulk, within
    /// [`StoreOptions::defer_for`](crate::StoreOptions), on [`Store::flush_deferred`], and
    /// when the store closes. A crash may lose them (never tear them): only for writes the
    /// caller can recompute, as a raft state machine re-applies its log from the applied log
    /// id it defers with them. What is written deferred must only ever be written deferred:
    /// reads merge the pending writes over the database, and a write of the same data made
    /// otherwise could land under pending writes older than it.
    pub fn write_group_deferred(&self, writes: Vec<GroupWrite>) -> Result<()> {
        let ops = writes
            .into_iter()
            .map(GroupWrite::into_op)
            .collect::<Result<Vec<Op>>>()?;
        if self.inner.deferred.push(ops)? {
            self.inner.writer.wake();
        }
        Ok(())
    }

    /// Resolves once every deferred write so far is durable.
    pub fn flush_deferred(&self) -> AppendFuture {
        self.queue_group(Vec::new(), true)
    }

    fn queue_group(&self, writes: Vec<GroupWrite>, flush: bool) -> AppendFuture {
        let ops: Result<Vec<Op>> = writes.into_iter().map(GroupWrite::into_op).collect();
        let reply = ops.map(|ops| self.inner.writer.enqueue(ops, flush));
        Box::pin(async move {
            match reply?.await {
                Ok(outcome) => outcome.map_err(Into::into),
                Err(_) => Err(Error::Closed.into()),
            }
        })
    }

    /// The entries of `group` with index in `from..=to`, in order, as `(index, bytes)`.
    pub fn group_log(&self, group: u64, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let (rows, txn) = self.inner.log.read(group, from, to, || self.begin_read())?;
        read_rows(group, rows, txn)
    }

    /// The last entry of `group`'s log, if any, as `(index, bytes)`.
    pub fn group_log_last(&self, group: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let (last, txn) = self.inner.log.read_last(group, || self.begin_read())?;
        Ok(read_rows(group, last.into_iter().collect(), txn)?.pop())
    }

    /// A named value of `group`.
    pub fn group_state(&self, group: u64, name: &str) -> Result<Option<Vec<u8>>> {
        let (pending, txn) = self.begin_read_with(|p| p.state(group, name))?;
        if let Some(pending) = pending {
            return Ok(pending);
        }
        let state = txn
            .open_table(RAFT_STATE)
            .map_err(Error::storage("open raft state table"))?;
        Ok(state
            .get((group, name))
            .map_err(Error::storage("read raft state"))?
            .map(|v| v.value().to_vec()))
    }

    /// Every entity for which `select` is true, with its snapshot and journal, read in one
    /// transaction (a consistent view), in `(type, key)` order. Scans every entity.
    pub fn dump_entities(
        &self,
        mut select: impl FnMut(&EntityId) -> bool,
    ) -> Result<Vec<(EntityId, EntityLoad)>> {
        let (pending, txn) =
            self.begin_read_with(|p| p.entities(|t, k| select(&EntityId::new(t, k))))?;
        let journal = txn
            .open_table(JOURNAL)
            .map_err(Error::storage("open journal table"))?;
        let snapshots = txn
            .open_table(SNAPSHOTS)
            .map_err(Error::storage("open snapshots table"))?;
        let mut out: std::collections::BTreeMap<EntityId, EntityLoad> = Default::default();
        for row in snapshots.iter().map_err(Error::storage("read snapshots"))? {
            let (key, value) = row.map_err(Error::storage("read snapshots"))?;
            let (t, k) = key.value();
            let id = EntityId::new(t, k);
            if select(&id) {
                out.entry(id).or_default().snapshot = Some(decode::<Snapshot>(value.value())?);
            }
        }
        let mut current: Option<(EntityId, bool)> = None;
        for row in journal.iter().map_err(Error::storage("read journal"))? {
            let (key, value) = row.map_err(Error::storage("read journal"))?;
            let (t, k, _) = key.value();
            let selected = match &current {
                Some((id, selected)) if id.entity_type == t && id.key == k => *selected,
                _ => {
                    let id = EntityId::new(t, k);
                    let selected = select(&id);
                    current = Some((id, selected));
                    selected
                }
            };
            if selected {
                let id = EntityId::new(t, k);
                let entry = decode::<JournalEntry>(value.value())?;
                out.entry(id).or_default().entries.push(entry);
            }
        }
        for ((t, k), ops) in pending {
            merge(out.entry(EntityId::new(t, k)).or_default(), &ops)?;
        }
        // An entity whose pending writes cleared it has nothing left to dump.
        out.retain(|_, load| load.snapshot.is_some() || !load.entries.is_empty());
        Ok(out.into_iter().collect())
    }
}

/// The entries of `group` in `rows` (`(index, sequence)` pairs from the log index), read in
/// `txn`, which the index guarantees holds them.
fn read_rows(
    group: u64,
    rows: Vec<(u64, u64)>,
    txn: redb::ReadTransaction,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut entries = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(entries);
    }
    let table = txn
        .open_table(RAFT_ENTRIES)
        .map_err(Error::storage("open raft entries table"))?;
    for (index, seq) in rows {
        let value = table
            .get(seq)
            .map_err(Error::storage("read raft log"))?
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "raft log entry {index} of group {group} is indexed as row {seq}, which is missing"
                ))
            })?;
        let (g, i, entry) = log_index::parse(seq, value.value())?;
        if (g, i) != (group, index) {
            return Err(Error::corrupt(format!(
                "raft log row {seq} holds entry {i} of group {g}, indexed as entry {index} of group {group}"
            )));
        }
        entries.push((index, entry.to_vec()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use cella_core::{JournalPayload, Write};

    use super::*;
    use crate::StoreOptions;

    fn entry(seq: u64) -> JournalEntry {
        JournalEntry {
            seq,
            command_id: format!("c{seq}"),
            command: "set".into(),
            timestamp_ms: 1,
            module_version: 1,
            payload: JournalPayload::State(vec![seq as u8]),
        }
    }

    #[tokio::test]
    async fn logs_of_groups_are_separate_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut writes = Vec::new();
        for group in [1u64, 2] {
            for index in 1..=5u64 {
                writes.push(GroupWrite::LogPut {
                    group,
                    index,
                    entry: vec![group as u8, index as u8],
                });
            }
        }
        writes.push(GroupWrite::State {
            group: 2,
            name: "vote".into(),
            value: Some(b"v".to_vec()),
        });
        store.write_group(writes).await.unwrap();
        store
            .write_group(vec![
                GroupWrite::LogTruncateFrom { group: 1, from: 4 },
                GroupWrite::LogPurgeUpto { group: 2, upto: 2 },
            ])
            .await
            .unwrap();
        store.close().unwrap();

        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let one: Vec<u64> = store
            .group_log(1, 0, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(one, [1, 2, 3]);
        let two = store.group_log(2, 0, 4).unwrap();
        assert_eq!(two.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(two[0].1, vec![2, 3]);
        assert_eq!(store.group_log_last(2).unwrap().map(|e| e.0), Some(5));
        assert_eq!(store.group_log_last(3).unwrap(), None);
        assert_eq!(store.group_state(2, "vote").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.group_state(1, "vote").unwrap(), None);
    }

    #[tokio::test]
    async fn rewrites_in_one_batch_leave_one_row_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let put = |group: u64, index: u64, byte: u8| GroupWrite::LogPut {
            group,
            index,
            entry: vec![byte],
        };
        // Groups interleave in the shared table; an entry is replaced, truncated and
        // appended again within one batch, and purged in the next.
        store
            .write_group(vec![
                put(1, 1, 10),
                put(2, 1, 20),
                put(1, 2, 11),
                put(1, 2, 12),
                GroupWrite::LogTruncateFrom { group: 1, from: 2 },
                put(1, 2, 13),
                put(1, 3, 14),
                put(2, 2, 21),
            ])
            .await
            .unwrap();
        let reader = store.clone();
        assert_eq!(
            reader.group_log(1, 0, u64::MAX).unwrap(),
            [(1, vec![10]), (2, vec![13]), (3, vec![14])]
        );
        store
            .write_group(vec![
                GroupWrite::LogPurgeUpto { group: 1, upto: 2 },
                put(1, 4, 15),
            ])
            .await
            .unwrap();
        store.close().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            store.group_log(1, 0, u64::MAX).unwrap(),
            [(3, vec![14]), (4, vec![15])]
        );
        assert_eq!(store.group_log(1, 4, 3).unwrap(), []);
        assert_eq!(
            store.group_log(2, 0, u64::MAX).unwrap(),
            [(1, vec![20]), (2, vec![21])]
        );
        assert_eq!(store.group_log_last(1).unwrap(), Some((4, vec![15])));
    }

    #[tokio::test]
    async fn dump_selects_entities_with_their_snapshot_and_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (a, b) = (EntityId::new("t", "a"), EntityId::new("t", "b"));
        store
            .write_group(vec![
                GroupWrite::Entity(Write::Append(a.clone(), entry(1))),
                GroupWrite::Entity(Write::Append(a.clone(), entry(2))),
                GroupWrite::Entity(Write::Append(b.clone(), entry(1))),
                GroupWrite::Entity(Write::Snapshot(
                    b.clone(),
                    Snapshot {
                        seq: 1,
                        module_version: 1,
                        state: vec![9],
                    },
                )),
                GroupWrite::Entity(Write::Trim(b.clone(), 1)),
            ])
            .await
            .unwrap();
        let all = store.dump_entities(|_| true).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, a);
        assert_eq!(all[0].1.entries.len(), 2);
        assert_eq!(all[1].0, b);
        assert!(all[1].1.entries.is_empty());
        assert_eq!(all[1].1.snapshot.as_ref().map(|s| s.seq), Some(1));
        let only_a = store.dump_entities(|id| id.key == "a").unwrap();
        assert_eq!(only_a.len(), 1);

        store
            .write_group(vec![GroupWrite::ClearEntity(a.clone())])
            .await
            .unwrap();
        let left = store.dump_entities(|_| true).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, b);
    }
}
