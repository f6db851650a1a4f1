//! The openraft log storage of one group, on the node's redb store.
//!
//! The newest entries are kept in memory too (at least [`CACHED`], and every entry not yet
//! durable), so replication of the tail never touches disk and entries are readable as soon as
//! `append` returns, as openraft requires; redb holds the durable copy, and older entries (a
//! lagging replica's catch-up, the metadata group's history) are read back from it on demand. Every
//! write goes through the store's group-commit writer, whose FIFO order serializes a group's
//! votes, appends, truncations and purges as openraft requires, and whose batches put the
//! appends of every group on the node into one durable transaction.
//!
//! *Purges* (openraft's, after each snapshot: tens of thousands of entries) would hold up
//! both this group's raft core, which awaits them, and every group's appends behind one long
//! commit. So a purge records the purged log id durably and returns; the rows follow in the
//! background, [`PURGE_CHUNK`] per commit, oldest first. Until they are gone, rows at or
//! below the purged index may remain on disk (also after a restart): they are never read (reads
//! start past it, opening skips them) and the next purge's first chunk removes them.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    io,
    ops::{Bound, RangeBounds},
    sync::{Arc, Mutex, PoisonError},
};

use cella_store::{GroupWrite, Store};
use openraft::{
    LogState, OptionalSend, RaftLogReader,
    alias::{EntryOf, LogIdOf, VoteOf},
    entry::RaftEntry,
    storage::{IOFlushed, RaftLogStorage},
};

use crate::{
    Error, GroupId, TypeConfig,
    types::{decode, encode},
};

type C = TypeConfig;

const VOTE: &str = "vote";
const PURGED: &str = "purged";
const COMMITTED: &str = "committed";

/// How many purged log entries one commit deletes at most.
pub const PURGE_CHUNK: u64 = 256;

/// How many of the newest durable entries stay in memory.
pub const CACHED: usize = 1024;
/// How many bytes (encoded) of the newest durable entries stay in memory at most: an entry
/// carrying a module's component (tens of MiB) leaves memory once it is durable.
pub const CACHED_BYTES: usize = 4 << 20;

/// What the group's log holds, in memory.
#[derive(Default)]
struct Cached {
    /// The newest entries; older ones are only on disk.
    entries: BTreeMap<u64, EntryOf<C>>,
    /// The encoded size of each entry in `entries`, and their sum.
    sizes: BTreeMap<u64, usize>,
    bytes: usize,
    /// Entries up to this index are durable (and may leave memory).
    durable: u64,
    vote: Option<VoteOf<C>>,
    purged: Option<LogIdOf<C>>,
}

impl Cached {
    /// Drops the oldest durable entries beyond [`CACHED`] entries or [`CACHED_BYTES`].
    fn trim(&mut self) {
        while self.entries.len() > CACHED || self.bytes > CACHED_BYTES {
            match self.entries.first_key_value() {
                Some((index, _)) if *index <= self.durable => {
                    let index = *index;
                    self.entries.remove(&index);
                    self.bytes -= self.sizes.remove(&index).unwrap_or(0);
                }
                _ => break,
            }
        }
    }

    /// Caches `entry` at `index`, `size` bytes encoded.
    fn insert(&mut self, index: u64, entry: EntryOf<C>, size: usize) {
        self.entries.insert(index, entry);
        self.bytes += size;
        self.bytes -= self.sizes.insert(index, size).unwrap_or(0);
    }

    /// Keeps only the entries whose index satisfies `keep`.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|index, _| keep(*index));
        self.sizes.retain(|index, _| keep(*index));
        self.bytes = self.sizes.values().sum();
    }
}

/// The log storage of one group. Clones share the cache (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    store: Store,
    cache: Arc<Mutex<Cached>>,
}

impl LogStore {
    /// Opens group `group`'s log on `store`, reading what is on disk.
    pub fn open(store: Store, group: GroupId) -> Result<LogStore, Error> {
        let mut cached = Cached::default();
        let last = store.group_log_last(group)?.map_or(0, |(index, _)| index);
        cached.durable = last;
        let from = last.saturating_sub(CACHED as u64 - 1);
        for (index, bytes) in store.group_log(group, from, last)? {
            cached
                .entries
                .insert(index, decode::<EntryOf<C>>("a log entry", &bytes)?);
        }
        if let Some(bytes) = store.group_state(group, VOTE)? {
            cached.vote = Some(decode("a vote", &bytes)?);
        }
        if let Some(bytes) = store.group_state(group, PURGED)? {
            let purged: LogIdOf<C> = decode("a purged log id", &bytes)?;
            // Rows a purge had not deleted yet when the node stopped.
            cached.retain(|index| index > purged.index());
            cached.purged = Some(purged);
        }
        Ok(LogStore {
            group,
            store,
            cache: Arc::new(Mutex::new(cached)),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_write(&self, name: &str, value: Option<Vec<u8>>) -> GroupWrite {
        GroupWrite::State {
            group: self.group,
            name: name.to_string(),
            value,
        }
    }

    async fn write(&self, writes: Vec<GroupWrite>) -> Result<(), io::Error> {
        self.store
            .write_group(writes)
            .await
            .map_err(io::Error::other)
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        // An empty or inverted range is an empty answer, not a panic of `BTreeMap::range`.
        if start >= end {
            return Ok(Vec::new());
        }
        let (first_cached, cached, start): (u64, Vec<EntryOf<C>>, u64) = {
            let cache = self.cache();
            // Purged rows may still be on disk (see the module docs): never read them.
            let start = cache.purged.map_or(start, |p| start.max(p.index() + 1));
            if start >= end {
                return Ok(Vec::new());
            }
            let first = cache.entries.keys().next().copied().unwrap_or(u64::MAX);
            (
                first,
                cache
                    .entries
                    .range(start..end)
                    .map(|(_, e)| e.clone())
                    .collect(),
                start,
            )
        };
        if start >= first_cached {
            return Ok(cached);
        }
        // The part older than the cache is durable (only durable entries leave memory).
        let mut entries = Vec::new();
        let to = end.min(first_cached) - 1;
        for (_, bytes) in self
            .store
            .group_log(self.group, start, to)
            .map_err(io::Error::other)?
        {
            entries.push(decode::<EntryOf<C>>("a log entry", &bytes)?);
        }
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.cache().vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let cache = self.cache();
        let last = cache.entries.values().next_back().map(|e| e.log_id());
        Ok(LogState {
            last_purged_log_id: cache.purged,
            last_log_id: last.or(cache.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = encode("a vote", vote)?;
        self.cache().vote = Some(*vote);
        self.write(vec![self.state_write(VOTE, Some(bytes))]).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Deferred (written to disk with the state machine's applies, about once a second):
        // losing the latest value only makes a restart re-apply less, and a value written
        // with each append would put the group values' pages in every commit. It is only
        // ever written deferred, as the store requires. The entries it covers were queued
        // before it, so they are durable no later than it is.
        let value = committed
            .map(|c| encode("a committed log id", &c))
            .transpose()?;
        self.store
            .write_group_deferred(vec![self.state_write(COMMITTED, value)])
            .map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        match self.store.group_state(self.group, COMMITTED) {
            Ok(Some(bytes)) => Ok(Some(decode("a committed log id", &bytes)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut writes = Vec::new();
        let mut last = None;
        {
            let mut cache = self.cache();
            for entry in entries {
                let index = entry.index();
                last = Some(entry.log_id());
                let encoded = encode("a log entry", &entry)?;
                cache.insert(index, entry, encoded.len());
                writes.push(GroupWrite::LogPut {
                    group: self.group,
                    index,
                    entry: encoded,
                });
            }
        }
        // Queued now, in order with every other write of this group; durable when it resolves.
        let durable = self.store.write_group(writes);
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let outcome = durable.await.map_err(io::Error::other);
            if outcome.is_ok()
                && let Some(last) = last
            {
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                // Unless a truncation replaced these entries meanwhile (their successors at
                // the same indexes are not durable yet).
                let index = last.index();
                if cache.entries.get(&index).map(|e| e.log_id()) == Some(last) {
                    cache.durable = cache.durable.max(index);
                    cache.trim();
                }
            }
            callback.io_completed(outcome);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        {
            let mut cache = self.cache();
            cache.retain(|index| index < from);
            cache.durable = cache.durable.min(from.saturating_sub(1));
        }
        self.write(vec![GroupWrite::LogTruncateFrom {
            group: self.group,
            from,
        }])
        .await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let bytes = encode("a purged log id", &log_id)?;
        let first = {
            let mut cache = self.cache();
            cache.retain(|index| index > upto);
            let first = cache.purged.map_or(0, |p| p.index() + 1);
            cache.purged = Some(log_id);
            first
        };
        // The purged id is durable before any row goes, so the log never has a hole at its
        // start; the first chunk (and any rows an interrupted purge left) go with it.
        let mut chunk_end = first.saturating_add(PURGE_CHUNK - 1).min(upto);
        self.write(vec![
            self.state_write(PURGED, Some(bytes)),
            GroupWrite::LogPurgeUpto {
                group: self.group,
                upto: chunk_end,
            },
        ])
        .await?;
        if chunk_end < upto {
            let (store, group) = (self.store.clone(), self.group);
            tokio::spawn(async move {
                while chunk_end < upto {
                    chunk_end = chunk_end.saturating_add(PURGE_CHUNK).min(upto);
                    let chunk = GroupWrite::LogPurgeUpto {
                        group,
                        upto: chunk_end,
                    };
                    // A store that closed meanwhile keeps the rest, never read, until the next
                    // purge after it opens again.
                    if let Err(e) = store.write_group(vec![chunk]).await {
                        tracing::debug!(group, error = %e, "a purge stopped before its end");
                        return;
                    }
                }
            });
        }
        Ok(())
    }
}
