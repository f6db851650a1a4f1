//! The [`cella_core::Journal`] implementation: appends go to the group-commit writer, reads use
//! their own read transaction (one per call, so a load sees one consistent state).

use std::ops::Bound;

use cella_core::{
    AppendFuture, EntityId, EntityLoad, Journal, JournalEntry, RowTable, Snapshot, Write, decode,
};
use redb::{ReadTransaction, ReadableDatabase};

use crate::{
    Store,
    deferred::{Pendings, merge},
    error::{Error, Result},
    op::Op,
    tables::{JOURNAL, SNAPSHOTS},
};

impl Journal for Store {
    /// Encodes the writes on the calling thread, queues them for the writer and returns a
    /// future resolving once the batch holding them has committed durably.
    /// An `Append` whose `seq` already exists replaces that entry: keeping sequence numbers
    /// consecutive is the caller's job.
    fn append(&self, writes: Vec<Write>) -> AppendFuture {
        let ops: Result<Vec<Op>> = writes.into_iter().map(Op::encode).collect();
        let reply = ops.map(|ops| self.inner.writer.submit(ops));
        Box::pin(async move {
            match reply?.await {
                Ok(outcome) => outcome.map_err(Into::into),
                // The writer dropped the request without answering: it is gone.
                Err(_) => Err(Error::Closed.into()),
            }
        })
    }

    fn load(&self, id: &EntityId) -> cella_core::Result<EntityLoad> {
        Ok(self.load_entity(id)?)
    }

    fn read_journal(
        &self,
        id: &EntityId,
        from: u64,
        limit: usize,
    ) -> cella_core::Result<Vec<JournalEntry>> {
        let (pending, txn) = self.begin_read_with(|p| p.entity_ops(&id.entity_type, &id.key))?;
        if pending.is_empty() {
            return Ok(read_entries(&txn, id, Bound::Included(from), limit)?);
        }
        // Pending trims remove entries up to their bound, a pending clear all of them: read the
        // entries on disk that survive them (every entry from past the trims, or all of them
        // after a clear, which is rare), at most `limit` — any entry beyond those has `limit`
        // survivors before it — then merge the pending writes in order, and cut.
        let cleared = pending.iter().any(|op| matches!(op, Op::Clear { .. }));
        let trimmed = pending
            .iter()
            .filter_map(|op| match op {
                Op::Trim { upto, .. } => Some(*upto),
                _ => None,
            })
            .max();
        let disk = if cleared {
            read_entries(&txn, id, Bound::Included(from), usize::MAX)?
        } else {
            let from = trimmed.map_or(from, |t| from.max(t.saturating_add(1)));
            read_entries(&txn, id, Bound::Included(from), limit)?
        };
        let mut load = EntityLoad {
            snapshot: None,
            entries: disk,
        };
        merge(&mut load, &pending)?;
        Ok(load
            .entries
            .into_iter()
            .filter(|e| e.seq >= from)
            .take(limit)
            .collect())
    }

    fn keys(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> cella_core::Result<Vec<String>> {
        Ok(self.entity_keys(entity_type, after, limit)?)
    }

    fn rows(
        &self,
        id: &EntityId,
        table: RowTable,
        prefix: &str,
    ) -> cella_core::Result<Vec<(String, Vec<u8>)>> {
        Ok(self.entity_rows(id, table, prefix)?)
    }

    fn row(
        &self,
        id: &EntityId,
        table: RowTable,
        name: &str,
    ) -> cella_core::Result<Option<Vec<u8>>> {
        Ok(self.entity_row(id, table, name)?)
    }
}

impl Store {
    /// Keys of entities of `entity_type` that have a journal, in key order, starting after
    /// `after` (exclusive), at most `limit` of them. Each step seeks past the previous key's
    /// entries, so the cost is one seek per key, not one per entry.
    pub fn entity_keys(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let (pending, txn) = self.begin_read_with(|p| p.keys_with_entries(entity_type))?;
        let journal = txn
            .open_table(JOURNAL)
            .map_err(Error::storage("open journal table"))?;
        let mut keys: Vec<String> = Vec::new();
        while keys.len() < limit {
            let lower = match keys.last().map(String::as_str).or(after) {
                Some(key) => Bound::Excluded((entity_type, key, u64::MAX)),
                None => Bound::Included((entity_type, "", 0)),
            };
            let mut range = journal
                .range::<(&str, &str, u64)>((lower, Bound::Unbounded))
                .map_err(Error::storage("read journal"))?;
            let Some(row) = range.next() else { break };
            let (key, _) = row.map_err(Error::storage("read journal"))?;
            let (t, k, _) = key.value();
            if t != entity_type {
                break;
            }
            keys.push(k.to_string());
        }
        // Keys only pending writes have so far. (A pending clear of a key on disk does not
        // hide it here; a state machine replacing its entities flushes its clears at once.)
        if !pending.is_empty() {
            let mut all: std::collections::BTreeSet<String> = keys.into_iter().collect();
            all.extend(
                pending
                    .into_iter()
                    .filter(|k| after.is_none_or(|after| k.as_str() > after)),
            );
            keys = all.into_iter().take(limit).collect();
        }
        Ok(keys)
    }

    /// A read transaction on the database.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        self.db()?
            .begin_read()
            .map_err(Error::storage("begin read"))
    }

    /// A read transaction and `copy` of the deferred writes to merge over it, taken together
    /// (see [`crate::deferred::Deferred::read`]).
    pub(crate) fn begin_read_with<R>(
        &self,
        copy: impl FnOnce(Pendings<'_>) -> R,
    ) -> Result<(R, ReadTransaction)> {
        self.inner.deferred.read(copy, || self.begin_read())
    }

    fn load_entity(&self, id: &EntityId) -> Result<EntityLoad> {
        let (pending, txn) = self.begin_read_with(|p| p.entity_ops(&id.entity_type, &id.key))?;
        let snapshots = txn
            .open_table(SNAPSHOTS)
            .map_err(Error::storage("open snapshots table"))?;
        let snapshot = snapshots
            .get((id.entity_type.as_str(), id.key.as_str()))
            .map_err(Error::storage("read snapshot"))?
            .map(|v| decode::<Snapshot>(v.value()))
            .transpose()?;
        let after = match &snapshot {
            Some(s) => Bound::Excluded(s.seq),
            None => Bound::Unbounded,
        };
        let entries = read_entries(&txn, id, after, usize::MAX)?;
        let mut load = EntityLoad { snapshot, entries };
        if !pending.is_empty() {
            merge(&mut load, &pending)?;
            // Entries the newest snapshot covers are not part of a load.
            if let Some(seq) = load.snapshot.as_ref().map(|s| s.seq) {
                load.entries.retain(|e| e.seq > seq);
            }
        }
        Ok(load)
    }
}

/// Up to `limit` journal entries of `id` with `seq` within `(from, u64::MAX]`, in order.
fn read_entries(
    txn: &ReadTransaction,
    id: &EntityId,
    from: Bound<u64>,
    limit: usize,
) -> Result<Vec<JournalEntry>> {
    let (t, k) = (id.entity_type.as_str(), id.key.as_str());
    let journal = txn
        .open_table(JOURNAL)
        .map_err(Error::storage("open journal table"))?;
    let lower = match from {
        Bound::Included(seq) => Bound::Included((t, k, seq)),
        Bound::Excluded(seq) => Bound::Excluded((t, k, seq)),
        Bound::Unbounded => Bound::Included((t, k, 0)),
    };
    let range = journal
        .range::<(&str, &str, u64)>((lower, Bound::Included((t, k, u64::MAX))))
        .map_err(Error::storage("read journal"))?;
    let mut entries = Vec::new();
    for row in range.take(limit) {
        let (_, value) = row.map_err(Error::storage("read journal"))?;
        entries.push(decode::<JournalEntry>(value.value())?);
    }
    Ok(entries)
}
