//! Deferred writes: entity and group-state writes that a replicated state machine can
//! recompute from its log, held in memory and written to the database in bulk.
//!
//! A partition's state machine applies every committed entry on every replica. Written one
//! apply at a time, each entry dirties (copies, checksums, writes and syncs) a B-tree page of
//! the entity it touches on every node, though the raft log already holds the entry durably.
//! Deferred, the writes of 100 ms are written in one transaction, so an entity
//! written many times in that second dirties its page once.
//!
//! Readers see deferred writes at once: the reads of entity data and group state merge them
//! over what the database holds. The writer thread *freezes* the pending writes when it
//! writes them (they stay readable) and *releases* them once the transaction has committed.
//! A reader copies the pending writes and begins its read transaction under one lock
//! ([`Deferred::read`]), so every write newer than what the transaction sees is in its copy.
//! Writes are blind sets and deletes, so one seen both on disk and in memory merges to the
//! same result. Nothing else may write what deferred writes write: a transaction that did
//! would put writes the copy lacks under writes it replays (a state machine replacing its
//! entities defers those writes too, then flushes).
//!
//! A crash loses the writes not yet written; the state machine's applied log id is deferred
//! with them, so a restart applies those entries again from the log.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use cella_core::{EntityLoad, JournalEntry, Snapshot, decode};

use crate::{error::Result, op::Op};

/// When the writer writes the deferred writes: after `after` since the oldest was deferred,
/// or once `max_writes` wait, whichever comes first (and whenever a caller asks); and how:
/// about `slice_writes` of them per commit (see [`Pending::slices`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeferPolicy {
    pub(crate) after: Duration,
    pub(crate) max_writes: usize,
    pub(crate) slice_writes: usize,
}

/// Writes in the order they were deferred, indexed for reads.
#[derive(Default)]
pub(crate) struct Pending {
    ops: Vec<Op>,
    /// Positions in `ops` of each entity's writes, by `(type, key)`.
    entities: HashMap<(String, String), Vec<usize>>,
    /// Position in `ops` of the last write of each group value, by `(group, name)`.
    states: HashMap<(u64, String), usize>,
}

impl Pending {
    fn push(&mut self, op: Op) {
        let at = self.ops.len();
        match &op {
            Op::Append {
                entity_type, key, ..
            }
            | Op::Snapshot {
                entity_type, key, ..
            }
            | Op::Trim {
                entity_type, key, ..
            }
            | Op::Row {
                entity_type, key, ..
            }
            | Op::Clear { entity_type, key } => self
                .entities
                .entry((entity_type.clone(), key.clone()))
                .or_default()
                .push(at),
            Op::RaftState { group, name, .. } => {
                // A blind set: a later write of the same value replaces the pending one (a
                // group's commit index is deferred many times a second).
                let key = (*group, name.clone());
                if let Some(&earlier) = self.states.get(&key) {
                    self.ops[earlier] = op;
                    return;
                }
                self.states.insert(key, at);
            }
            // Not deferrable; `Deferred::push` refuses them before they get here.
            Op::RaftPut { .. }
            | Op::RaftTruncateFrom { .. }
            | Op::RaftPurgeUpto { .. }
            | Op::CrdtPut { .. } => {}
        }
        self.ops.push(op);
    }

    /// The writes, in order, for the writer.
    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The writes as slices (positions in [`Pending::ops`]) of about `size` writes each, for a
    /// flush spread over as many commits, so that no one commit holds up the requests queued
    /// behind it for long. Each entity's writes stay in order and in one slice, and the
    /// entities come in key order, so each slice touches its own part of the tables and every
    /// page is still written about once per flush. The group values come last, in the final
    /// slice: a state machine's applied log id is never durable before the entity writes it
    /// covers (a crash between two slices leaves entity writes ahead of it on disk, which
    /// applying the log again rewrites with the same values).
    pub(crate) fn slices(&self, size: usize) -> Vec<Vec<usize>> {
        let mut entities: Vec<_> = self.entities.iter().collect();
        entities.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut slices = Vec::new();
        let mut slice: Vec<usize> = Vec::new();
        for (_, at) in entities {
            if !slice.is_empty() && slice.len() + at.len() > size {
                slices.push(std::mem::take(&mut slice));
            }
            slice.extend_from_slice(at);
        }
        let mut states: Vec<usize> = self.states.values().copied().collect();
        states.sort_unstable();
        slice.extend(states);
        if !slice.is_empty() {
            slices.push(slice);
        }
        // Every write in exactly one slice, or (were one ever left unindexed) all in order.
        if slices.iter().map(Vec::len).sum::<usize>() != self.ops.len() {
            return vec![(0..self.ops.len()).collect()];
        }
        slices
    }

    fn entity_ops<'a>(&'a self, entity_type: &str, key: &str) -> impl Iterator<Item = &'a Op> {
        self.entities
            .get(&(entity_type.to_string(), key.to_string()))
            .into_iter()
            .flatten()
            .map(|&at| &self.ops[at])
    }
}

struct State {
    active: Pending,
    /// Since when `active` holds writes.
    since: Option<Instant>,
    /// Writes being written by the writer: still readable until their commit is done.
    frozen: Option<Arc<Pending>>,
}

/// The deferred writes of a store, shared by its handles and its writer thread.
pub(crate) struct Deferred {
    policy: DeferPolicy,
    state: Mutex<State>,
}

impl Deferred {
    pub(crate) fn new(policy: DeferPolicy) -> Deferred {
        Deferred {
            policy,
            state: Mutex::new(State {
                active: Pending::default(),
                since: None,
                frozen: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Defers `ops` (entity writes and group values only). True if the writer should look
    /// again: these are the first pending writes (a deadline starts), or they made the
    /// pending writes due.
    pub(crate) fn push(&self, ops: Vec<Op>) -> Result<bool> {
        if let Some(op) = ops.iter().find(|op| {
            matches!(
                op,
                Op::RaftPut { .. }
                    | Op::RaftTruncateFrom { .. }
                    | Op::RaftPurgeUpto { .. }
                    | Op::CrdtPut { .. }
            )
        }) {
            return Err(crate::Error::NotDeferrable(op.kind()));
        }
        if ops.is_empty() {
            return Ok(false);
        }
        let mut state = self.lock();
        let first = state.since.is_none();
        state.since.get_or_insert_with(Instant::now);
        let before = state.active.ops.len();
        for op in ops {
            state.active.push(op);
        }
        let max = self.policy.max_writes;
        Ok(first || (before < max && state.active.ops.len() >= max))
    }

    /// About how many deferred writes one commit writes when a flush is spread over several.
    pub(crate) fn slice_writes(&self) -> usize {
        self.policy.slice_writes
    }

    /// How long until the pending writes are due (zero if they are), or `None` if there are
    /// none.
    pub(crate) fn due_in(&self) -> Option<Duration> {
        let state = self.lock();
        let since = state.since?;
        if state.active.ops.len() >= self.policy.max_writes {
            return Some(Duration::ZERO);
        }
        Some(self.policy.after.saturating_sub(since.elapsed()))
    }

    /// Takes the pending writes for the writer to write; they stay readable until
    /// [`Deferred::release`].
    pub(crate) fn freeze(&self) -> Option<Arc<Pending>> {
        let mut state = self.lock();
        if state.active.ops.is_empty() {
            return state.frozen.clone();
        }
        let mut taken = std::mem::take(&mut state.active);
        state.since = None;
        // Writes frozen by a commit that failed stay first (the writer is stopped then).
        if let Some(earlier) = state.frozen.take() {
            let mut all = Pending::default();
            for op in earlier.ops.iter().chain(&taken.ops) {
                all.push(op.clone());
            }
            taken = all;
        }
        let frozen = Arc::new(taken);
        state.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// The frozen writes are committed: readers find them in the database now.
    pub(crate) fn release(&self) {
        self.lock().frozen = None;
    }

    /// Runs `copy` over the pending writes and `begin` (the start of the read transaction the
    /// copy is merged over) under one lock, so that no commit of writes missing from the copy
    /// lands in between: writes frozen later wait for the lock, and writes frozen earlier are
    /// in the copy until their commit is done. The copy may hold writes the transaction also
    /// sees; they merge to the same result.
    pub(crate) fn read<R, T>(
        &self,
        copy: impl FnOnce(Pendings<'_>) -> R,
        begin: impl FnOnce() -> Result<T>,
    ) -> Result<(R, T)> {
        let state = self.lock();
        let copied = copy(Pendings {
            frozen: state.frozen.as_deref(),
            active: &state.active,
        });
        Ok((copied, begin()?))
    }
}

/// The pending writes, oldest first, as a reader sees them under the lock.
pub(crate) struct Pendings<'a> {
    frozen: Option<&'a Pending>,
    active: &'a Pending,
}

impl Pendings<'_> {
    fn all(&self) -> impl Iterator<Item = &Pending> {
        self.frozen.into_iter().chain([self.active])
    }

    /// The pending writes of one entity, in order.
    pub(crate) fn entity_ops(&self, entity_type: &str, key: &str) -> Vec<Op> {
        self.all()
            .flat_map(|p| p.entity_ops(entity_type, key))
            .cloned()
            .collect()
    }

    /// Every entity `select` picks that has pending writes, with those writes in order.
    pub(crate) fn entities(
        &self,
        mut select: impl FnMut(&str, &str) -> bool,
    ) -> HashMap<(String, String), Vec<Op>> {
        let mut out: HashMap<(String, String), Vec<Op>> = HashMap::new();
        for pending in self.all() {
            for (id, at) in &pending.entities {
                if select(&id.0, &id.1) {
                    out.entry(id.clone())
                        .or_default()
                        .extend(at.iter().map(|&i| pending.ops[i].clone()));
                }
            }
        }
        out
    }

    /// The keys of `entity_type` that pending writes give a journal entry.
    pub(crate) fn keys_with_entries(&self, entity_type: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for pending in self.all() {
            for ((t, k), at) in &pending.entities {
                let appends = at
                    .iter()
                    .any(|&i| matches!(pending.ops[i], Op::Append { .. }));
                if t == entity_type && appends {
                    keys.insert(k.clone());
                }
            }
        }
        keys
    }

    /// The pending value of a group's named value: `Some(None)` if it is pending deletion,
    /// `None` if nothing is pending for it.
    pub(crate) fn state(&self, group: u64, name: &str) -> Option<Option<Vec<u8>>> {
        let key = (group, name.to_string());
        // Newest first.
        [Some(self.active), self.frozen]
            .into_iter()
            .flatten()
            .find_map(|pending| {
                let at = *pending.states.get(&key)?;
                match &pending.ops[at] {
                    Op::RaftState { value, .. } => Some(value.clone()),
                    _ => None,
                }
            })
    }
}

/// Applies an entity's pending writes (in order) over what the database holds for it: its
/// snapshot and journal entries in `seq` order. Idempotent over writes already on disk.
pub(crate) fn merge(load: &mut EntityLoad, ops: &[Op]) -> Result<()> {
    for op in ops {
        match op {
            Op::Append { seq, value, .. } => {
                let entry = decode::<JournalEntry>(value)?;
                match load.entries.binary_search_by_key(seq, |e| e.seq) {
                    Ok(at) => load.entries[at] = entry,
                    Err(at) => load.entries.insert(at, entry),
                }
            }
            Op::Snapshot { value, .. } => load.snapshot = Some(decode::<Snapshot>(value)?),
            Op::Trim { upto, .. } => load.entries.retain(|e| e.seq > *upto),
            Op::Clear { .. } => *load = EntityLoad::default(),
            Op::Row { .. }
            | Op::RaftState { .. }
            | Op::CrdtPut { .. }
            | Op::RaftPut { .. }
            | Op::RaftTruncateFrom { .. }
            | Op::RaftPurgeUpto { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(key: &str, seq: u64) -> Op {
        Op::Append {
            entity_type: "t".into(),
            key: key.into(),
            seq,
            value: Vec::new(),
        }
    }

    fn state(group: u64, value: u8) -> Op {
        Op::RaftState {
            group,
            name: "applied".into(),
            value: Some(vec![value]),
        }
    }

    #[test]
    fn slices_keep_each_entity_whole_in_key_order_and_the_group_values_last() {
        let mut pending = Pending::default();
        for op in [
            append("b", 1),
            state(1, 1),
            append("a", 1),
            append("b", 2),
            append("c", 1),
            state(2, 1),
            append("a", 2),
            append("b", 3),
            state(1, 2),
        ] {
            pending.push(op);
        }
        // Positions: b1 0, s1 1 (rewritten in place), a1 2, b2 3, c1 4, s2 5, a2 6, b3 7.
        assert_eq!(
            pending.slices(2),
            vec![vec![2, 6], vec![0, 3, 7], vec![4, 1, 5]],
            "b's three writes stay together past the size; the group values close the last"
        );
        assert_eq!(pending.slices(100), vec![vec![2, 6, 0, 3, 7, 4, 1, 5]]);
        assert_eq!(Pending::default().slices(2), Vec::<Vec<usize>>::new());
    }
}
