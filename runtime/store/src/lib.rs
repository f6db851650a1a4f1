//! Cella's durable storage on one node: a redb database holding entity journals and
//! snapshots (behind [`cella_core::Journal`], with group commit), deployed modules, their
//! component bytes, and a cache of precompiled artifacts. redb stays an implementation detail:
//! the public API speaks only in `cella_core` types, bytes and this crate's [`Error`].
//!
//! - [`Store`] (this file): opening, closing, sharing, stats.
//! - `tables`: the on-disk layout, table by table, key and value bytes (see its module docs).
//! - `writer`: the group-commit writer thread.
//! - `journal`: the [`cella_core::Journal`] implementation (appends and reads).
//! - `listing`: the entities of a type in key order, with their journal heads (range scans).
//! - `modules`: module metadata, component blobs and artifacts.
//! - `replication`: logs and named values of replication groups, and state-machine writes,
//!   through the same group commit.
//! - `log_index`: the log entries of every group in one table under a node-wide sequence, and
//!   the in-memory `(group, index)` index that finds them.
//! - `deferred`: state-machine writes held in memory (readable at once) and written in bulk.
//! - `audit`: the audit trail of admin actions (records by the metadata group's log index).
//! - `stats`: counters for metrics.

mod audit;
mod crdt;
mod deferred;
mod error;
mod journal;
mod listing;
mod log_index;
mod modules;
mod op;
mod replication;
mod rows;
mod stats;
mod tables;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use redb::Database;

pub use error::{Error, Result};
pub use listing::{EntityHead, EntityPage, ListQuery};
pub use replication::GroupWrite;
pub use stats::{BATCH_SIZE_BUCKET_COUNT, BATCH_SIZE_BUCKETS, StoreStats};
pub use tables::STORE_FORMAT_VERSION;

use crate::{
    deferred::{DeferPolicy, Deferred},
    stats::Stats,
    writer::{BatchPolicy, Writer},
};

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "cella.redb";

/// The default size of redb's page cache: 32 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Tuning of the store's group commit.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most append requests committed in one transaction (at least 1), except that a commit
    /// writing the deferred writes takes every request queued before them.
    pub max_batch: usize,
    /// How long the writer waits for more requests when a batch is not full, after taking
    /// everything already queued. Zero (the default) commits at once: requests that arrive
    /// during a commit form the next batch anyway.
    pub linger: Duration,
    /// How long deferred writes ([`Store::write_group_deferred`]) stay in memory at most
    /// before they are written (default 100 ms). Longer writes an often-written entity's page
    /// fewer times, and makes a restart apply more of the log again; but the commit that writes
    /// them holds up every append queued behind it: a second's worth (about 20,000 writes on a
    /// busy node) took some 30 ms, which every request in flight then waited for.
    pub defer_for: Duration,
    /// How many deferred writes are written at once, whatever their age.
    pub defer_max_writes: usize,
    /// About how many deferred writes one commit carries: a flush is spread over as many
    /// commits as it takes, one with each batch of requests (or back to back when none come),
    /// each entity's writes in one of them, so that a large flush does not hold up every
    /// append queued behind it (2,500 writes in one commit held them up for about 10 ms).
    /// A caller that asks for the deferred writes ([`Store::flush_deferred`]) gets all of them
    /// in one commit.
    pub defer_slice_writes: usize,
    /// Bytes of redb's page cache (redb's own default is 1 GiB, which a busy node fills).
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            linger: Duration::ZERO,
            defer_for: Duration::from_millis(100),
            defer_max_writes: 50_000,
            defer_slice_writes: 256,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Handle to an open store. Cheap to clone; every clone shares one database and one writer
/// thread. The writer stops, and the database closes, when the last clone is dropped or on
/// [`Store::close`].
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    writer: Writer,
    deferred: Arc<Deferred>,
    /// Where each group's log entries are (changed only by the writer thread).
    log: Arc<log_index::LogIndex>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir` (creating the directory and `dir/cella.redb` if needed) and
    /// starts its writer thread. Fails with [`Error::FormatMismatch`] if the database was
    /// written in another store format, and with [`Error::Storage`] if it is not a redb file
    /// or is open elsewhere.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage {
            context: format!("create directory {}", dir.display()),
            source: Some(Box::new(e)),
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(options.cache_bytes.max(1 << 20))
            .create(&path)
            .map_err(|e| Error::Storage {
                context: format!("open database {}", path.display()),
                source: Some(Box::new(e)),
            })?;
        tables::init(&db)?;
        let db = Arc::new(db);
        let stats = Arc::new(Stats::default());
        let policy = BatchPolicy {
            max_batch: options.max_batch,
            linger: options.linger,
        };
        let deferred = Arc::new(Deferred::new(DeferPolicy {
            after: options.defer_for,
            max_writes: options.defer_max_writes.max(1),
            slice_writes: options.defer_slice_writes.max(1),
        }));
        let log = Arc::new(log_index::LogIndex::load(&db)?);
        let writer = Writer::spawn(
            db.clone(),
            stats.clone(),
            policy,
            deferred.clone(),
            log.clone(),
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                db: RwLock::new(Some(db)),
                writer,
                deferred,
                log,
                stats,
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the writer after it has committed every request already submitted (and the
    /// deferred writes), and closes the database. Later operations on any clone fail with
    /// [`Error::Closed`]. Idempotent.
    pub fn close(&self) -> Result<()> {
        self.inner.writer.shutdown();
        let db = self
            .inner
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match db.map(Arc::try_unwrap) {
            Some(Ok(db)) => db.close().map_err(Error::storage("close database")),
            // A read still in progress holds the database; it closes when that read ends.
            Some(Err(_)) | None => Ok(()),
        }
    }

    /// A copy of the group-commit counters.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    /// The open database, or [`Error::Closed`].
    pub(crate) fn db(&self) -> Result<Arc<Database>> {
        let db = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        db.clone().ok_or(Error::Closed)
    }
}
