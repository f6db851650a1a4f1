//! Group commit: the writer thread that owns every journal write transaction.
//!
//! Callers hand pre-encoded writes to [`Writer::submit`] and await a oneshot reply. The writer
//! thread blocks for the first request, drains whatever is already queued (up to `max_batch`
//! requests), optionally lingers for more, applies the whole batch in one write transaction with
//! [`Durability::Immediate`], commits (one fsync), then resolves every request of the batch.
//! Batches are processed one after another in arrival order, so a request is durable no later
//! than any request submitted after it.
//!
//! The writer also writes the store's [deferred writes](crate::deferred): in front of a batch
//! once they are due (or a request asks for them), and on their own when they fall due while
//! no request comes, and before it stops. A commit that writes them also takes every request
//! queued before they were frozen, so a deferred write is never durable before a write queued
//! ahead of it.
//!
//! *Fail-stop.* When a commit fails, every request of the batch fails, and so does every request
//! after it until the store is reopened. Later appends may have been computed from the state the
//! failed ones described (the entity layer pipelines commands behind in-flight commits), so
//! committing them would leave gaps in a journal; after an IO error the only safe state is the
//! one on disk, which reopening reads back.

use std::{
    sync::{Arc, Mutex, PoisonError, RwLock, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use cella_core::RowTable;
use redb::{Database, Durability};
use tokio::sync::oneshot;

use crate::{
    deferred::{Deferred, Pending},
    error::{Error, Result},
    log_index::{LogIndex, RAFT_ENTRIES, Staged},
    op::Op,
    stats::Stats,
    tables::{CRDT_STATES, EFFECTS, JOURNAL, PROCESSED, RAFT_STATE, SNAPSHOTS},
};

/// The reply to one request: `Ok` once its writes are durable.
pub(crate) type Reply = oneshot::Receiver<Result<()>>;

struct Request {
    ops: Vec<Op>,
    /// Whether the deferred writes go into this request's transaction, before its writes.
    flush: bool,
    /// `None` for a wake-up (see [`Writer::wake`]).
    reply: Option<oneshot::Sender<Result<()>>>,
}

impl Request {
    fn answer(self, outcome: Result<()>) {
        if let Some(reply) = self.reply {
            // A caller that stopped waiting dropped its receiver.
            let _ = reply.send(outcome);
        }
    }
}

/// How the writer batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchPolicy {
    pub(crate) max_batch: usize,
    pub(crate) linger: Duration,
}

/// Handle to the writer thread: the sending side of its queue and its join handle.
pub(crate) struct Writer {
    queue: RwLock<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn spawn(
        db: Arc<Database>,
        stats: Arc<Stats>,
        policy: BatchPolicy,
        deferred: Arc<Deferred>,
        log: Arc<LogIndex>,
    ) -> Result<Self> {
        let (queue, rx) = mpsc::channel();
        let policy = BatchPolicy {
            max_batch: policy.max_batch.max(1),
            ..policy
        };
        let thread = std::thread::Builder::new()
            .name("cella-store-writer".into())
            .spawn(move || {
                WriterThread {
                    failed: None,
                    db,
                    stats,
                    policy,
                    deferred,
                    log,
                    rx,
                    flushing: None,
                }
                .run()
            })
            .map_err(Error::storage("start the writer thread"))?;
        Ok(Self {
            queue: RwLock::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues writes; the returned receiver resolves once they are durable (or failed).
    /// After [`Writer::shutdown`] it resolves to [`Error::Closed`] at once.
    pub(crate) fn submit(&self, ops: Vec<Op>) -> Reply {
        self.enqueue(ops, false)
    }

    /// Queues writes; with `flush` the store's deferred writes are written durably in the
    /// same transaction, before them (and so before any later request's writes).
    pub(crate) fn enqueue(&self, ops: Vec<Op>, flush: bool) -> Reply {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            ops,
            flush,
            reply: Some(reply),
        };
        let queue = self.queue.read().unwrap_or_else(PoisonError::into_inner);
        let refused = match queue.as_ref() {
            Some(queue) => queue.send(request).err().map(|e| e.0),
            None => Some(request),
        };
        if let Some(request) = refused {
            // Nobody waits on a refused request but the caller, who reads the reply.
            request.answer(Err(Error::Closed));
        }
        rx
    }

    /// Wakes the thread to look at the deferred writes again (they became due, or pending
    /// where none were, so there is a deadline to wait for).
    pub(crate) fn wake(&self) {
        let queue = self.queue.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queue.as_ref() {
            // A writer that is gone has nothing to wake.
            let _ = queue.send(Request {
                ops: Vec::new(),
                flush: false,
                reply: None,
            });
        }
    }

    /// Stops accepting requests, lets the thread finish the queued ones, and joins it.
    /// Idempotent.
    pub(crate) fn shutdown(&self) {
        drop(
            self.queue
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // A panic of the writer thread has already failed its requests (their senders
            // dropped); there is nothing more to report here.
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct WriterThread {
    /// Set after a failed commit: the reason every later request fails with.
    failed: Option<String>,
    db: Arc<Database>,
    stats: Arc<Stats>,
    policy: BatchPolicy,
    deferred: Arc<Deferred>,
    /// Where the log entries are (see [`crate::log_index`]).
    log: Arc<LogIndex>,
    rx: mpsc::Receiver<Request>,
    /// A flush spread over several commits, under way: its frozen writes and the slices
    /// still to write.
    flushing: Option<Flushing>,
}

/// The frozen deferred writes of a flush under way, and the slices of them not yet written.
struct Flushing {
    pending: Arc<Pending>,
    slices: std::vec::IntoIter<Vec<usize>>,
}

/// The deferred writes one commit writes: all of `pending` in order, or one slice of it.
struct DeferredPart {
    pending: Arc<Pending>,
    slice: Option<Vec<usize>>,
    /// Whether this commit ends the flush: the frozen writes are released after it.
    last: bool,
}

impl DeferredPart {
    fn ops(&self) -> Vec<&Op> {
        let ops = self.pending.ops();
        match &self.slice {
            None => ops.iter().collect(),
            Some(at) => at.iter().filter_map(|&i| ops.get(i)).collect(),
        }
    }
}

impl WriterThread {
    fn run(mut self) {
        loop {
            // Wait for a request, or until the deferred writes fall due, or not at all while
            // a flush is under way (a stopped writer writes nothing more).
            let due = match (&self.failed, &self.flushing) {
                (Some(_), _) => None,
                (None, Some(_)) => Some(Duration::ZERO),
                (None, None) => self.deferred.due_in(),
            };
            let first = match due {
                None => self
                    .rx
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(wait) => self.rx.recv_timeout(wait),
            };
            match first {
                Ok(first) => {
                    let mut batch = self.collect(first);
                    // Wake-ups carry nothing: waking was their job.
                    batch.retain(|r| r.reply.is_some());
                    if !batch.is_empty() {
                        self.process(batch, false);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.process(Vec::new(), false),
                // Every sender is gone and the queue is empty.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // What is still deferred goes to disk, in one commit, before the store closes.
        if self.failed.is_none() && (self.flushing.is_some() || self.deferred.due_in().is_some()) {
            self.process(Vec::new(), true);
        }
    }

    /// The batch starting with `first`: everything already queued, then (when lingering)
    /// whatever arrives before the linger deadline, up to `max_batch` requests.
    fn collect(&self, first: Request) -> Vec<Request> {
        let max = self.policy.max_batch;
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if self.policy.linger.is_zero() || batch.len() >= max {
            return batch;
        }
        let deadline = Instant::now() + self.policy.linger;
        while batch.len() < max {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.rx.recv_timeout(left) {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        batch
    }

    /// Commits a batch and resolves its requests; a failure fails it and stops the writer.
    /// The commit also writes deferred writes: the next slice of a flush under way, or the
    /// first slice of one that falls due (an empty batch: due, or under way), or all of them
    /// when a request asks (or `everything`).
    fn process(&mut self, mut batch: Vec<Request>, everything: bool) {
        if let Some(reason) = &self.failed {
            self.stats.requests_failed(batch.len() as u64);
            for request in batch {
                request.answer(Err(Error::Stopped(reason.clone())));
            }
            return;
        }
        let everything = everything || batch.iter().any(|r| r.flush);
        let due = batch.is_empty() || self.deferred.due_in() == Some(Duration::ZERO);
        let (deferred, frozen_now) = self.deferred_part(everything, due);
        if frozen_now {
            // Everything queued before the freeze joins this commit, whatever the batch
            // limit: a caller that queued a write and then deferred one that depends on it
            // (a log append, then the commit index covering it) finds both on disk together.
            // The later slices of the flush commit after this one.
            batch.extend(self.rx.try_iter().filter(|r| r.reply.is_some()));
        }
        if deferred.is_none() && batch.iter().all(|r| r.ops.is_empty()) {
            self.stats.resolved_without_commit(batch.len() as u64);
            for request in batch {
                request.answer(Ok(()));
            }
            return;
        }
        match self.commit(&batch, deferred.as_ref()) {
            Ok(()) => {
                if deferred.as_ref().is_some_and(|d| d.last) {
                    self.flushing = None;
                    self.deferred.release();
                }
                for request in batch {
                    // A caller that stopped waiting dropped its receiver; its writes are
                    // durable regardless.
                    request.answer(Ok(()));
                }
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                self.stats.requests_failed(batch.len() as u64);
                for request in batch {
                    request.answer(Err(Error::Stopped(e.to_string())));
                }
            }
        }
    }

    /// The deferred writes the next commit writes, and whether they were frozen just now.
    /// All of them (what a flush under way has not written yet, and every write deferred
    /// since: [`Deferred::freeze`] joins them, and writing one twice leaves the same rows)
    /// when `everything`; else the next slice of a flush under way; else, when `due`, the
    /// first slice of a new one.
    fn deferred_part(&mut self, everything: bool, due: bool) -> (Option<DeferredPart>, bool) {
        if everything {
            self.flushing = None;
            let part = self.deferred.freeze().map(|pending| DeferredPart {
                pending,
                slice: None,
                last: true,
            });
            let frozen = part.is_some();
            return (part, frozen);
        }
        if let Some(flushing) = &mut self.flushing {
            let slice = flushing.slices.next();
            let last = flushing.slices.len() == 0;
            let part = DeferredPart {
                pending: flushing.pending.clone(),
                slice: Some(slice.unwrap_or_default()),
                last,
            };
            return (Some(part), false);
        }
        if !due {
            return (None, false);
        }
        let Some(pending) = self.deferred.freeze() else {
            return (None, false);
        };
        let mut slices = pending.slices(self.deferred.slice_writes()).into_iter();
        let first = slices.next().unwrap_or_default();
        let last = slices.len() == 0;
        if !last {
            self.flushing = Some(Flushing {
                pending: pending.clone(),
                slices,
            });
        }
        let part = DeferredPart {
            pending,
            slice: Some(first),
            last,
        };
        (Some(part), true)
    }

    /// Applies the deferred writes (if any) and the requests' writes in one durable
    /// transaction, recording stats.
    fn commit(&self, requests: &[Request], deferred: Option<&DeferredPart>) -> Result<()> {
        let started = Instant::now();
        let deferred = deferred.map(DeferredPart::ops);
        let outcome = self.apply(requests, deferred.as_deref().unwrap_or_default());
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Ok(writes) => {
                let flushed = deferred.as_ref().map_or(0, |d| d.len() as u64);
                self.stats
                    .committed(requests.len() as u64, writes - flushed, micros);
                if deferred.is_some() {
                    self.stats.flushed_deferred(flushed);
                }
            }
            Err(_) => self.stats.commit_failed(micros),
        }
        outcome.map(drop)
    }

    /// Applies and commits; returns the number of writes.
    fn apply(&self, requests: &[Request], deferred: &[&Op]) -> Result<u64> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(Error::storage("begin journal write"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(Error::storage("set journal durability"))?;
        let mut writes = 0u64;
        let mut log = Staged::new(&self.log);
        {
            let mut journal = txn
                .open_table(JOURNAL)
                .map_err(Error::storage("open journal table"))?;
            let mut snapshots = txn
                .open_table(SNAPSHOTS)
                .map_err(Error::storage("open snapshots table"))?;
            let mut raft_log = txn
                .open_table(RAFT_ENTRIES)
                .map_err(Error::storage("open raft entries table"))?;
            let mut raft_state = txn
                .open_table(RAFT_STATE)
                .map_err(Error::storage("open raft state table"))?;
            let mut effects = txn
                .open_table(EFFECTS)
                .map_err(Error::storage("open effects table"))?;
            let mut processed = txn
                .open_table(PROCESSED)
                .map_err(Error::storage("open processed table"))?;
            let mut crdt = txn
                .open_table(CRDT_STATES)
                .map_err(Error::storage("open crdt table"))?;
            for op in deferred
                .iter()
                .copied()
                .chain(requests.iter().flat_map(|r| &r.ops))
            {
                writes += 1;
                match op {
                    Op::Append {
                        entity_type,
                        key,
                        seq,
                        value,
                    } => {
                        journal
                            .insert((entity_type.as_str(), key.as_str(), *seq), value.as_slice())
                            .map_err(Error::storage("append journal entry"))?;
                    }
                    Op::Snapshot {
                        entity_type,
                        key,
                        value,
                    } => {
                        snapshots
                            .insert((entity_type.as_str(), key.as_str()), value.as_slice())
                            .map_err(Error::storage("write snapshot"))?;
                    }
                    Op::Trim {
                        entity_type,
                        key,
                        upto,
                    } => {
                        let (t, k) = (entity_type.as_str(), key.as_str());
                        journal
                            .retain_in((t, k, 0u64)..=(t, k, *upto), |_, _| false)
                            .map_err(Error::storage("trim journal"))?;
                    }
                    Op::Clear { entity_type, key } => {
                        let (t, k) = (entity_type.as_str(), key.as_str());
                        journal
                            .retain_in((t, k, 0u64)..=(t, k, u64::MAX), |_, _| false)
                            .map_err(Error::storage("clear journal"))?;
                        snapshots
                            .remove((t, k))
                            .map_err(Error::storage("clear snapshot"))?;
                        for rows in [&mut effects, &mut processed] {
                            rows.retain_in((t, k, "")..=(t, k, "\u{10ffff}"), |_, _| false)
                                .map_err(Error::storage("clear rows"))?;
                        }
                    }
                    Op::Row {
                        table,
                        entity_type,
                        key,
                        name,
                        value,
                    } => {
                        let rows = match table {
                            RowTable::Effects => &mut effects,
                            RowTable::Processed => &mut processed,
                        };
                        let row = (entity_type.as_str(), key.as_str(), name.as_str());
                        match value {
                            Some(v) => rows.insert(row, v.as_slice()).map(drop),
                            None => rows.remove(row).map(drop),
                        }
                        .map_err(Error::storage("write entity row"))?;
                    }
                    Op::RaftPut {
                        group,
                        index,
                        value,
                    } => {
                        log.put(&mut raft_log, *group, *index, value)?;
                    }
                    Op::CrdtPut {
                        entity_type,
                        key,
                        value,
                    } => {
                        let row = (entity_type.as_str(), key.as_str());
                        match value {
                            Some(v) => crdt.insert(row, v.as_slice()).map(drop),
                            None => crdt.remove(row).map(drop),
                        }
                        .map_err(Error::storage("write crdt state"))?;
                    }
                    Op::RaftTruncateFrom { group, from } => {
                        log.remove(&mut raft_log, *group, *from, u64::MAX)?;
                    }
                    Op::RaftPurgeUpto { group, upto } => {
                        log.remove(&mut raft_log, *group, 0, *upto)?;
                    }
                    Op::RaftState { group, name, value } => {
                        let key = (*group, name.as_str());
                        match value {
                            Some(v) => raft_state
                                .insert(key, v.as_slice())
                                .map(drop)
                                .map_err(Error::storage("write raft state"))?,
                            None => raft_state
                                .remove(key)
                                .map(drop)
                                .map_err(Error::storage("write raft state"))?,
                        }
                    }
                }
            }
        }
        txn.commit().map_err(Error::storage("commit journal"))?;
        log.publish();
        Ok(writes)
    }
}
