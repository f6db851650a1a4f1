//! Listing the entities of a type: their keys in key order (bytewise), each with the head of
//! its journal (sequence, module version, time of the last change), by range scans.
//!
//! An entity exists while it has a journal entry: a value entity's journal is trimmed but
//! always keeps its newest entries, and an event-sourced entity's is never trimmed, so the
//! newest entry of each key is its head. The scan seeks from one key to the next (one seek
//! and one read of the newest entry per key, whatever the journal's length), stops after the
//! page, and merges the deferred writes of the entities in the range over what it read.

use std::{collections::BTreeMap, ops::Bound};

use cella_core::{EntityLoad, JournalEntry, decode};
use redb::{ReadOnlyTable, ReadTransaction};

use crate::{
    Store,
    deferred::merge,
    error::{Error, Result},
    op::Op,
    tables::JOURNAL,
};

/// One entity of a listing: its key and the head of its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityHead {
    pub key: String,
    /// The sequence number of its newest journal entry.
    pub seq: u64,
    /// The module version that wrote that entry.
    pub module_version: u32,
    /// When that entry's command ran (milliseconds since the Unix epoch).
    pub changed_ms: u64,
}

/// Which entities of a type a listing asks for.
#[derive(Clone, Copy, Debug)]
pub struct ListQuery<'a> {
    pub entity_type: &'a str,
    /// Only keys after this one (exclusive).
    pub after: Option<&'a str>,
    /// Only keys starting with this (empty: every key).
    pub prefix: &'a str,
    /// At most this many entities.
    pub limit: usize,
}

/// A page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityPage {
    /// The entities, in key order.
    pub entities: Vec<EntityHead>,
    /// Whether entities past the last one may follow (the scan stopped at the limit).
    pub more: bool,
}

impl Store {
    /// The first `query.limit` entities of `query.entity_type` past `query.after` whose key
    /// starts with `query.prefix` and that `select` picks (by key), in key order.
    pub fn list_entities(
        &self,
        query: ListQuery<'_>,
        mut select: impl FnMut(&str) -> bool,
    ) -> Result<EntityPage> {
        let ListQuery {
            entity_type,
            after,
            prefix,
            limit,
        } = query;
        let in_range = |k: &str| k.starts_with(prefix) && after.is_none_or(|a| k > a);
        let (pending, txn) = self
            .begin_read_with(|p| p.entities(|t, k| t == entity_type && in_range(k) && select(k)))?;
        let pending: BTreeMap<String, Vec<Op>> =
            pending.into_iter().map(|((_, k), ops)| (k, ops)).collect();
        let (disk, more) = scan(&txn, query, &mut select)?;
        let mut heads: BTreeMap<String, Option<JournalEntry>> = disk
            .into_iter()
            .map(|(k, entry)| (k, Some(entry)))
            .collect();
        // Past the last key scanned from disk when the scan stopped at the limit, keys on disk
        // the scan did not reach may come before a key only pending writes hold.
        let cut = more.then(|| heads.keys().next_back().cloned()).flatten();
        for key in pending.keys() {
            if cut.as_ref().is_none_or(|cut| key < cut) {
                heads.entry(key.clone()).or_insert(None);
            }
        }
        let mut entities = Vec::new();
        let mut more = more;
        for (key, on_disk) in heads {
            if entities.len() == limit {
                more = true;
                break;
            }
            let newest = match pending.get(&key) {
                None => on_disk,
                Some(ops) => {
                    let mut load = EntityLoad {
                        snapshot: None,
                        entries: on_disk.into_iter().collect(),
                    };
                    merge(&mut load, ops)?;
                    load.entries.pop()
                }
            };
            if let Some(entry) = newest {
                entities.push(EntityHead {
                    key,
                    seq: entry.seq,
                    module_version: entry.module_version,
                    changed_ms: entry.timestamp_ms,
                });
            }
        }
        Ok(EntityPage { entities, more })
    }
}

/// Up to `limit` selected keys from the disk with their newest journal entry, and whether the
/// scan stopped at the limit (more may follow).
fn scan(
    txn: &ReadTransaction,
    query: ListQuery<'_>,
    select: &mut impl FnMut(&str) -> bool,
) -> Result<(Vec<(String, JournalEntry)>, bool)> {
    let ListQuery {
        entity_type: t,
        after,
        prefix,
        limit,
    } = query;
    let journal = txn
        .open_table(JOURNAL)
        .map_err(Error::storage("open journal table"))?;
    let mut found = Vec::new();
    // Start at the prefix, or past `after` when that is further.
    let mut lower: Bound<(&str, &str, u64)> = match after {
        Some(a) if a >= prefix => Bound::Excluded((t, a, u64::MAX)),
        _ => Bound::Included((t, prefix, 0)),
    };
    let mut last: String;
    loop {
        let key = {
            let mut range = journal
                .range::<(&str, &str, u64)>((lower, Bound::Unbounded))
                .map_err(Error::storage("read journal"))?;
            let Some(row) = range.next() else { break };
            let (key, _) = row.map_err(Error::storage("read journal"))?;
            let (row_type, k, _) = key.value();
            if row_type != t || !k.starts_with(prefix) {
                break;
            }
            k.to_string()
        };
        if select(&key) {
            if found.len() == limit {
                return Ok((found, true));
            }
            if let Some(entry) = newest(&journal, t, &key)? {
                found.push((key.clone(), entry));
            }
        }
        last = key;
        lower = Bound::Excluded((t, last.as_str(), u64::MAX));
    }
    Ok((found, false))
}

/// The newest journal entry of `(t, k)`.
fn newest(
    journal: &ReadOnlyTable<(&str, &str, u64), &[u8]>,
    t: &str,
    k: &str,
) -> Result<Option<JournalEntry>> {
    let mut range = journal
        .range::<(&str, &str, u64)>((t, k, 0)..=(t, k, u64::MAX))
        .map_err(Error::storage("read journal"))?;
    match range.next_back() {
        Some(row) => {
            let (_, value) = row.map_err(Error::storage("read journal"))?;
            Ok(Some(decode::<JournalEntry>(value.value())?))
        }
        None => Ok(None),
    }
}
