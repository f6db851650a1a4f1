//! The openraft log storage of one group, on the node's redb store.
//!
//! The group's unpurged entries are kept in memory too (the log tail between snapshots), so
//! replication reads never touch disk and entries are readable as soon as `append` returns, as
//! openraft requires; redb holds the durable copy, read back once when the group opens. Every
//! write goes through the store's group-commit writer, whose FIFO order serializes a group's
//! votes, appends, truncations and purges as openraft requires, and whose batches put the
//! appends of every group on the node into one durable transaction.

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

/// What the group's log holds, in memory.
#[derive(Default)]
struct Cached {
    entries: BTreeMap<u64, EntryOf<C>>,
    vote: Option<VoteOf<C>>,
    purged: Option<LogIdOf<C>>,
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
        for (index, bytes) in store.group_log(group, 0, u64::MAX)? {
            cached
                .entries
                .insert(index, decode::<EntryOf<C>>("a log entry", &bytes)?);
        }
        if let Some(bytes) = store.group_state(group, VOTE)? {
            cached.vote = Some(decode("a vote", &bytes)?);
        }
        if let Some(bytes) = store.group_state(group, PURGED)? {
            cached.purged = Some(decode("a purged log id", &bytes)?);
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
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        // An empty or inverted range is an empty answer, not a panic of `BTreeMap::range`.
        let empty = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e)) | (Bound::Excluded(s), Bound::Included(e)) => {
                s >= e
            }
            (Bound::Excluded(s), Bound::Excluded(e)) => s >= e || s + 1 == e,
            _ => false,
        };
        if empty {
            return Ok(Vec::new());
        }
        Ok(self
            .cache()
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
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
        let value = committed
            .map(|c| encode("a committed log id", &c))
            .transpose()?;
        // Volatile and not awaited: losing the latest value only makes a restart re-apply less.
        drop(
            self.store
                .write_group_volatile(vec![self.state_write(COMMITTED, value)]),
        );
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        match self.store.group_state(self.group, COMMITTED) {
            Ok(Some(bytes)) => Ok(Some(decode("a committed log id", &bytes)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut writes = Vec::new();
        {
            let mut cache = self.cache();
            for entry in entries {
                let index = entry.index();
                writes.push(GroupWrite::LogPut {
                    group: self.group,
                    index,
                    entry: encode("a log entry", &entry)?,
                });
                cache.entries.insert(index, entry);
            }
        }
        // Queued now, in order with every other write of this group; durable when it resolves.
        let durable = self.store.write_group(writes);
        tokio::spawn(async move {
            let outcome = durable.await.map_err(|e| io::Error::other(e.to_string()));
            callback.io_completed(outcome);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.cache().entries.retain(|index, _| *index < from);
        self.write(vec![GroupWrite::LogTruncateFrom {
            group: self.group,
            from,
        }])
        .await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let bytes = encode("a purged log id", &log_id)?;
        {
            let mut cache = self.cache();
            cache.entries.retain(|index, _| *index > upto);
            cache.purged = Some(log_id);
        }
        self.write(vec![
            self.state_write(PURGED, Some(bytes)),
            GroupWrite::LogPurgeUpto {
                group: self.group,
                upto,
            },
        ])
        .await
    }
}
