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

/// The state of one activated entity.
pub(super) struct Loaded {
    pub(super) state: Option<Vec<u8>>,
    /// Sequence number of the last journal entry applied to `state`.
    pub(super) seq: u64,
    /// Events since the last snapshot (event-sourced).
    pub(super) events_since_snapshot: u64,
    /// The module version that folded `state`.
    module_version: u32,
    /// The lease the entity was activated under (`None` on a single node).
    pub(super) lease: Option<Lease>,
    /// The entity's timers, by name, as of every change handed to the journal.
    pub(super) timers: HashMap<String, TimerRow>,
    /// Outcomes recorded for request ids by commands of this activation, which the store may
    /// not show yet (their appends may be in flight); the newest [`RECENT`] of them.
    pub(super) recent: HashMap<String, Recorded>,
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
            timers: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// Remembers the outcome recorded for `request_id`.
    pub(super) fn remember(&mut self, request_id: String, outcome: Recorded) {
        if self.recent.len() >= RECENT
            && let Some(oldest) = self.recent_order.pop_front()
        {
            self.recent.remove(&oldest);
        }
        self.recent_order.push_back(request_id.clone());
        self.recent.insert(request_id, outcome);
    }
}

impl Entities {
    /// Activates an entity from its snapshot and journal. A snapshot written by another module
    /// version is ignored for event-sourced entities: their whole journal is replayed through
    /// the active version's `apply`.
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
        let (state, applied) = replay::fold(&active.module, snapshot_state, &load.entries)
            .await
            .map_err(|e| match e {
                FoldError::Mismatch(m) => Error::Storage(format!("{id}: {m}")),
                FoldError::Guest(g) => self.map_host_error(g),
            })?;
        self.metrics.events_replayed(applied);
        let mut timers = HashMap::new();
        for (_, bytes) in self.journal.rows(id, RowTable::Effects, TIMER_PREFIX)? {
            let timer: TimerRow = decode(&bytes).map_err(Error::Journal)?;
            timers.insert(timer.name.clone(), timer);
        }
        Ok(Loaded {
            timers,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            state,
            seq,
            events_since_snapshot: if event_sourced { applied } else { 0 },
            module_version: active.version,
            lease,
        })
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
