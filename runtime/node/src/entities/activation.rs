//! Activation: an entity's state loaded from its snapshot and journal and folded by the active
//! module version, and the check, per command, that the cached state is still the one the
//! active version and the current lease would load.

use std::collections::{HashMap, VecDeque};

use cella_core::{EntityId, EntityKind, Lease, Recorded, RowTable, TIMER_PREFIX, TimerRow, decode};

use super::Entities;
use crate::{
    error::{Error, Result},
    registry::Active,
    replay::{self, FoldError},
};

/// The state of one activated entity. Kept small (it is in memory for every resident entity):
/// what few entities have — timers, request ids remembered — lives apart, in [`Memo`].
pub(super) struct Loaded {
    pub(super) state: Option<Vec<u8>>,
    /// Sequence number of the last journal entry applied to `state`.
    pub(super) seq: u64,
    /// Events since the last snapshot (event-sourced; saturates).
    pub(super) events_since_snapshot: u32,
    /// The module version that folded `state`.
    module_version: u32,
    /// The lease the entity was activated under (`None` on a single node).
    pub(super) lease: Option<Lease>,
    /// Timers and remembered request ids; `None` while the entity has neither.
    memo: Option<Box<Memo>>,
}

/// What an activation holds besides its state, allocated only for the entities that have it.
#[derive(Default)]
pub(super) struct Memo {
    /// The entity's timers, by name, as of every change handed to the journal.
    timers: HashMap<String, TimerRow>,
    /// Outcomes recorded for request ids by commands of this activation, which the store may
    /// not show yet (their appends may be in flight); the newest [`RECENT`] of them.
    recent: HashMap<String, Recorded>,
    recent_order: VecDeque<String>,
}

/// How many request ids an activation remembers in memory (older ones are read from the store,
/// where they are long applied).
const RECENT: usize = 1024;

impl Loaded {
    /// A system entity's slot (`system.rs`): a sequence number and a lease, no state.
    pub(super) fn system(seq: u64, lease: Option<Lease>) -> Loaded {
        Loaded {
            state: None,
            seq,
            events_since_snapshot: 0,
            module_version: 0,
            lease,
            memo: None,
        }
    }

    fn memo(&mut self) -> &mut Memo {
        self.memo.get_or_insert_with(Box::default)
    }

    /// Remembers the outcome recorded for `request_id`.
    pub(super) fn remember(&mut self, request_id: String, outcome: Recorded) {
        let memo = self.memo();
        if memo.recent.len() >= RECENT
            && let Some(oldest) = memo.recent_order.pop_front()
        {
            memo.recent.remove(&oldest);
        }
        memo.recent_order.push_back(request_id.clone());
        memo.recent.insert(request_id, outcome);
    }

    /// The outcome remembered for `request_id`, if this activation recorded it.
    pub(super) fn recent(&self, request_id: &str) -> Option<&Recorded> {
        self.memo.as_ref()?.recent.get(request_id)
    }

    /// The remembered request ids and their outcomes.
    pub(super) fn recents(&self) -> impl Iterator<Item = (&String, &Recorded)> {
        self.memo.iter().flat_map(|m| m.recent.iter())
    }

    /// The entity's timer called `name`.
    pub(super) fn timer(&self, name: &str) -> Option<&TimerRow> {
        self.memo.as_ref()?.timers.get(name)
    }

    /// The names of the entity's timers.
    pub(super) fn timer_names(&self) -> impl Iterator<Item = &String> {
        self.memo.iter().flat_map(|m| m.timers.keys())
    }

    /// Sets (or replaces) the timer `timer.name`.
    pub(super) fn set_timer(&mut self, timer: TimerRow) {
        self.memo().timers.insert(timer.name.clone(), timer);
    }

    /// Removes the timer called `name`, if the entity has it.
    pub(super) fn remove_timer(&mut self, name: &str) -> Option<TimerRow> {
        let memo = self.memo.as_mut()?;
        let removed = memo.timers.remove(name);
        if memo.timers.is_empty() && memo.recent.is_empty() {
            self.memo = None;
        }
        removed
    }
}

impl Entities {
    /// Activates an entity from its snapshot and journal. A snapshot written by another module
    /// version is ignored for event-sourced entities: their whole journal is replayed through
    /// the active version's `apply`. The fresh instance that folded the events is kept warm for
    /// the entity's next command.
    async fn activate(
        &self,
        id: &EntityId,
        active: &Active,
        lease: Option<Lease>,
    ) -> Result<Loaded> {
        self.metrics.cache_miss();
        if let Some(lease) = lease {
            self.journal.ready(id, lease).await?;
        }
        let mut load = self.journal.load(id)?;
        let seq = load.last_seq();
        let event_sourced = active.kind() == EntityKind::EventSourced;
        if event_sourced
            && load
                .snapshot
                .as_ref()
                .is_some_and(|s| s.module_version != active.version)
        {
            load.snapshot = None;
            load.entries = self.journal.read_journal(id, 0, usize::MAX)?;
        }
        let snapshot_state = load.snapshot.map(|s| s.state);
        let (state, applied, folded_in) =
            replay::fold_keeping(&active.module, snapshot_state, &load.entries)
                .await
                .map_err(|e| match e {
                    FoldError::Mismatch(m) => Error::Storage(format!("{id}: {m}")),
                    FoldError::Guest(g) => self.map_host_error(g),
                })?;
        self.metrics.events_replayed(applied);
        let mut loaded = Loaded {
            state,
            seq,
            events_since_snapshot: match event_sourced {
                true => u32::try_from(applied).unwrap_or(u32::MAX),
                false => 0,
            },
            module_version: active.version,
            lease,
            memo: None,
        };
        for (_, bytes) in self.journal.rows(id, RowTable::Effects, TIMER_PREFIX)? {
            loaded.set_timer(decode(&bytes).map_err(Error::Journal)?);
        }
        // The fresh instance the journal was folded in serves this entity's next command (for
        // an interpreter, a second fresh instance would cost more than the whole fold).
        if let Some(instance) = folded_in {
            self.warm.put(id, &active.module, instance);
        }
        Ok(loaded)
    }

    /// Makes sure the slot holds the entity as the active module sees it: activates it when it
    /// is not cached, and re-activates an event-sourced entity folded by another version.
    pub(super) async fn ensure_loaded(
        &self,
        id: &EntityId,
        active: &Active,
        loaded: &mut Option<Loaded>,
    ) -> Result<()> {
        let lease = self.lease(id)?;
        let stale = loaded.as_ref().is_some_and(|l| {
            (l.module_version != active.version && active.kind() == EntityKind::EventSourced)
                || l.lease != lease
        });
        if loaded.is_none() || stale {
            *loaded = None;
            // A guest instance does not outlive the activation it served.
            self.warm.forget(id);
            *loaded = Some(self.activate(id, active, lease).await?);
        } else {
            self.metrics.cache_hit();
        }
        Ok(())
    }
}
