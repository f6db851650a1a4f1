//! Entity execution: the per-entity sequencing, the in-memory cache of hot entity states, and
//! the command path `state + command → guest → journal append → durable reply`.
//!
//! *Architecture invariants.* Commands to one entity run one at a time, in arrival order (a
//! FIFO async mutex per entity); different entities run concurrently. The host owns state: a
//! fresh guest instance is taken for every command and dropped after it, so no guest memory ever
//! carries one entity's state into another's. A command's change is applied to the cached state
//! as soon as it is handed to the journal, so that the next command of the same entity can run
//! while the first one's commit is in flight (pipelining); no reply — including replies of
//! read-only commands and rejections — leaves before every change it observed is durable.
//! If an append fails, the entity is dropped from the cache and re-activated from disk.
//!
//! *In a cluster* an entity runs only on the leader of its partition: the journal hands out a
//! lease (the partition's leadership) that is recorded when the entity is activated; a command
//! finding another lease (leadership lost, or lost and regained) re-activates the entity once
//! the node has applied everything committed before its leadership, and appends commit only
//! under the lease they were computed under. An answer that changed nothing (a read, a
//! rejection) is given only after the node confirms it still holds the lease (its raft leader
//! lease, else a heartbeat round), so reads are linearizable. A command for an entity this node does not own
//! fails with [`Error::NotLeader`] naming the owner, which the HTTP layer forwards to; a
//! `forward` effect to such an entity goes through the [`Forwarder`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cella_core::{
    EntityId, EntityKind, Journal, JournalEntry, JournalPayload, Lease, Snapshot, Write,
};
use cella_host::{CommandContext, Failure, Instance};

use crate::{
    error::{Error, Result},
    metrics::Metrics,
    registry::{Active, Registry},
    replay::{self, FoldError},
};

/// Tunables of the entity layer.
#[derive(Clone, Debug)]
pub struct EntityOptions {
    /// Entities kept in memory before the least recently used idle ones are evicted.
    pub cache_capacity: usize,
    /// Event-sourced entities: snapshot every this many events (unless the module says otherwise).
    pub snapshot_every: u64,
    /// Value entities: journal entries kept per entity; older writes are compacted away.
    pub value_journal_keep: u64,
    /// The guest deadline, reported in `deadline_exceeded` errors.
    pub deadline: Duration,
    /// How many times a command may be forwarded before it fails.
    pub max_forward_depth: u32,
}

impl Default for EntityOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            snapshot_every: 100,
            value_journal_keep: 16,
            deadline: Duration::from_secs(1),
            max_forward_depth: 8,
        }
    }
}

/// The state of one activated entity.
struct Loaded {
    state: Option<Vec<u8>>,
    /// Sequence number of the last journal entry applied to `state`.
    seq: u64,
    /// Events since the last snapshot (event-sourced).
    events_since_snapshot: u64,
    /// The module version that folded `state`.
    module_version: u32,
    /// The lease the entity was activated under (`None` on a single node).
    lease: Option<Lease>,
}

/// Sends a command to the node that owns its entity (a `forward` effect in a cluster).
pub trait Forwarder: Send + Sync {
    fn forward(
        &self,
        owner: String,
        id: EntityId,
        command: String,
        payload: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send>>;
}

/// One cached entity.
struct Slot {
    loaded: tokio::sync::Mutex<Option<Loaded>>,
    /// Highest sequence number known durable.
    durable_seq: AtomicU64,
    last_used: AtomicU64,
}

/// The inspected state of an entity.
pub struct Inspection {
    pub sequence: u64,
    pub module_version: u32,
    pub state: serde_json::Value,
}

/// Executes commands against entities.
pub struct Entities {
    journal: Arc<dyn Journal>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    options: EntityOptions,
    cache: Mutex<HashMap<EntityId, Arc<Slot>>>,
    clock: AtomicU64,
    commands: AtomicU64,
    boot_ms: u64,
    forwarder: Option<Arc<dyn Forwarder>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// splitmix64: spreads a counter into a well-mixed seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Entities {
    pub fn new(
        journal: Arc<dyn Journal>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        options: EntityOptions,
    ) -> Self {
        Self {
            journal,
            registry,
            metrics,
            options,
            cache: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            boot_ms: now_ms(),
            forwarder: None,
        }
    }

    /// Sends `forward` effects for entities owned by other nodes through `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Arc<dyn Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    /// Ok when this node may run `id` now, else [`Error::NotLeader`] naming the owner.
    pub fn owner(&self, id: &EntityId) -> Result<()> {
        self.lease(id).map(drop)
    }

    /// The lease under which this node may run `id` now, or [`Error::NotLeader`].
    fn lease(&self, id: &EntityId) -> Result<Option<Lease>> {
        self.journal.lease(id).map_err(|owner| Error::NotLeader {
            leader: owner.leader,
        })
    }

    /// Number of entities held in memory.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Finds or creates the cache slot of `id`, evicting idle entities past capacity.
    fn slot(&self, id: &EntityId) -> Result<Arc<Slot>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Internal("entity cache poisoned".into()))?;
        if let Some(slot) = cache.get(id) {
            slot.last_used.store(tick, Ordering::Relaxed);
            return Ok(slot.clone());
        }
        if cache.len() >= self.options.cache_capacity {
            self.evict(&mut cache);
        }
        let slot = Arc::new(Slot {
            loaded: tokio::sync::Mutex::new(None),
            durable_seq: AtomicU64::new(0),
            last_used: AtomicU64::new(tick),
        });
        cache.insert(id.clone(), slot.clone());
        Ok(slot)
    }

    /// Evicts the least recently used of a sample of idle entities. An entity is idle when no
    /// command holds it: its last change is then durable, so dropping it loses nothing.
    fn evict(&self, cache: &mut HashMap<EntityId, Arc<Slot>>) {
        let victim = cache
            .iter()
            .filter(|(_, s)| Arc::strong_count(s) == 1)
            .take(32)
            .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            cache.remove(&id);
            self.metrics.cache_evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn drop_from_cache(&self, id: &EntityId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(id);
        }
    }

    fn map_host_error(&self, e: cella_host::Error) -> Error {
        match e {
            cella_host::Error::DeadlineExceeded => {
                Error::DeadlineExceeded(self.options.deadline.as_millis() as u64)
            }
            cella_host::Error::Trap(m) | cella_host::Error::Guest(m) => Error::EntityFailed(m),
            other => Error::Internal(other.to_string()),
        }
    }

    /// Activates an entity from its snapshot and journal. A snapshot written by another module
    /// version is ignored for event-sourced entities: their whole journal is replayed through
    /// the active version's `apply`.
    async fn activate(
        &self,
        id: &EntityId,
        active: &Active,
        lease: Option<Lease>,
    ) -> Result<Loaded> {
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
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
        self.metrics
            .events_replayed
            .fetch_add(applied, Ordering::Relaxed);
        Ok(Loaded {
            state,
            seq,
            events_since_snapshot: if event_sourced { applied } else { 0 },
            module_version: active.version,
            lease,
        })
    }

    /// Makes sure the slot holds the entity as the active module sees it: activates it when it
    /// is not cached, and re-activates an event-sourced entity folded by another version.
    async fn ensure_loaded(
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
            *loaded = Some(self.activate(id, active, lease).await?);
        } else {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes an answer computed from the cached state (up to `seq`) without changing it safe to
    /// give: every change up to `seq` is durable, and this node still holds the `lease` the
    /// state was cached under (so no other node can have changed the entity since: the read
    /// is linearizable).
    async fn settle_read(
        &self,
        id: &EntityId,
        slot: &Slot,
        seq: u64,
        lease: Option<Lease>,
    ) -> Result<()> {
        if slot.durable_seq.load(Ordering::Acquire) < seq {
            // Appends are durable in submission order: a barrier resolves once everything
            // submitted before it is durable.
            self.journal.barrier(id).await?;
            slot.durable_seq.fetch_max(seq, Ordering::AcqRel);
        }
        if let Some(lease) = lease
            && let Err(e) = self.journal.confirm(id, lease).await
        {
            // Nothing changed: when another node leads now, the answer is to ask it there.
            self.lease(id)?;
            return Err(e.into());
        }
        Ok(())
    }

    /// Runs one command and returns its JSON reply once its change is durable.
    pub async fn command(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
    ) -> Result<String> {
        self.command_at_depth(entity_type, key, command, payload, 0)
            .await
    }

    async fn command_at_depth(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        depth: u32,
    ) -> Result<String> {
        cella_core::validate_name("key", key)?;
        let active = self.registry.get_loaded(entity_type).await?;
        if !active.has_command(command) {
            return Err(Error::UnknownCommand {
                entity_type: entity_type.to_string(),
                command: command.to_string(),
                known: active.command_list(),
            });
        }
        let id = EntityId::new(entity_type, key);
        // Entities led elsewhere get no cache slot (re-checked under the entity's lock).
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_loaded(&id, &active, &mut guard).await?;
        let Some(loaded) = guard.as_mut() else {
            return Err(Error::Internal("entity vanished while locked".into()));
        };
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let ctx = CommandContext {
            entity_type: entity_type.to_string(),
            key: key.to_string(),
            command_id: format!("{:x}-{n:x}", self.boot_ms),
            command: command.to_string(),
            timestamp_ms: now_ms(),
            random_seed: mix(self.boot_ms ^ n.rotate_left(32)),
            sequence: loaded.seq,
        };
        let mut instance = active
            .module
            .instantiate()
            .await
            .map_err(|e| self.map_host_error(e))?;
        let handled = instance
            .handle(&ctx, loaded.state.as_deref(), &payload)
            .await;
        let (observed_seq, lease) = (loaded.seq, loaded.lease);
        let outcome = match handled {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(failure)) => {
                drop(guard);
                self.settle_read(&id, &slot, observed_seq, lease).await?;
                return Err(match failure {
                    Failure::Rejected(m) => Error::Rejected(m),
                    Failure::BadRequest(m) => Error::BadRequest(m),
                    Failure::UnknownCommand(c) => Error::UnknownCommand {
                        entity_type: entity_type.to_string(),
                        command: c,
                        known: active.command_list(),
                    },
                });
            }
            Err(e) => {
                drop(guard);
                return Err(self.map_host_error(e));
            }
        };

        let writes = self
            .plan_writes(&id, &active, &ctx, loaded, &mut instance, &outcome)
            .await?;
        drop(instance);
        let new_seq = loaded.seq;
        let append = (!writes.is_empty()).then(|| self.journal.append_leased(writes, lease));
        drop(guard);
        match append {
            Some(fut) => {
                if let Err(e) = fut.await {
                    self.drop_from_cache(&id);
                    return Err(e.into());
                }
                slot.durable_seq.fetch_max(new_seq, Ordering::AcqRel);
            }
            None => self.settle_read(&id, &slot, new_seq, lease).await?,
        }
        drop(slot);

        if let Some(call) = outcome.forward {
            if depth >= self.options.max_forward_depth {
                return Err(Error::EntityFailed(format!(
                    "forwarded more than {} times",
                    self.options.max_forward_depth
                )));
            }
            // The command above is committed: whatever happens to the forward must not look
            // like "not run here" (`NotLeader`), which the HTTP layer would retry elsewhere.
            let target = EntityId::new(&call.entity_type, &call.key);
            let unowned = |leader: Option<String>| {
                Error::Unavailable(format!(
                    "forwarding to {target}: its partition {}",
                    match leader {
                        Some(addr) => format!("is led by {addr}, which is not reachable from here"),
                        None => "has no leader right now".to_string(),
                    }
                ))
            };
            match (self.lease(&target), &self.forwarder) {
                (
                    Err(Error::NotLeader {
                        leader: Some(owner),
                    }),
                    Some(forwarder),
                ) => {
                    return forwarder
                        .forward(owner, target, call.command, call.payload)
                        .await;
                }
                (Err(Error::NotLeader { leader }), _) => return Err(unowned(leader)),
                _ => {}
            }
            return Box::pin(self.command_at_depth(
                &call.entity_type,
                &call.key,
                &call.command,
                call.payload,
                depth + 1,
            ))
            .await
            .map_err(|e| match e {
                Error::NotLeader { leader } => unowned(leader),
                other => other,
            });
        }
        Ok(outcome.reply)
    }

    /// Turns an outcome into journal writes and applies it to the cached state.
    async fn plan_writes(
        &self,
        id: &EntityId,
        active: &Active,
        ctx: &CommandContext,
        loaded: &mut Loaded,
        instance: &mut Instance,
        outcome: &cella_host::Outcome,
    ) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        let entry = |seq, payload| JournalEntry {
            seq,
            command_id: ctx.command_id.clone(),
            command: ctx.command.clone(),
            timestamp_ms: ctx.timestamp_ms,
            module_version: active.version,
            payload,
        };
        match active.kind() {
            EntityKind::Value => {
                let Some(new_state) = &outcome.state else {
                    return Ok(writes);
                };
                let seq = loaded.seq + 1;
                writes.push(Write::Append(
                    id.clone(),
                    entry(seq, JournalPayload::State(new_state.clone())),
                ));
                let keep = self.options.value_journal_keep.max(1);
                if seq > keep && seq.is_multiple_of(keep) {
                    writes.push(Write::Trim(id.clone(), seq - keep));
                }
                loaded.state = Some(new_state.clone());
                loaded.seq = seq;
            }
            EntityKind::EventSourced => {
                if outcome.events.is_empty() {
                    return Ok(writes);
                }
                let new_state = match &outcome.state {
                    Some(s) => s.clone(),
                    None => {
                        let mut state = loaded.state.clone();
                        for event in &outcome.events {
                            state = Some(
                                instance
                                    .apply(state.as_deref(), event)
                                    .await
                                    .map_err(|e| self.map_host_error(e))?,
                            );
                        }
                        state.unwrap_or_default()
                    }
                };
                let seq = loaded.seq + 1;
                writes.push(Write::Append(
                    id.clone(),
                    entry(seq, JournalPayload::Events(outcome.events.clone())),
                ));
                loaded.events_since_snapshot += outcome.events.len() as u64;
                let every = match active.module.descriptor().snapshot_every {
                    0 => self.options.snapshot_every,
                    n => u64::from(n),
                };
                if loaded.events_since_snapshot >= every.max(1) {
                    writes.push(Write::Snapshot(
                        id.clone(),
                        Snapshot {
                            seq,
                            module_version: active.version,
                            state: new_state.clone(),
                        },
                    ));
                    loaded.events_since_snapshot = 0;
                }
                loaded.state = Some(new_state);
                loaded.seq = seq;
            }
        }
        Ok(writes)
    }

    /// The entity's current durable state rendered as JSON by its module.
    pub async fn inspect(&self, entity_type: &str, key: &str) -> Result<Inspection> {
        cella_core::validate_name("key", key)?;
        let active = self.registry.get_loaded(entity_type).await?;
        let id = EntityId::new(entity_type, key);
        // Entities led elsewhere get no cache slot (re-checked under the entity's lock).
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_loaded(&id, &active, &mut guard).await?;
        let Some(loaded) = guard.as_ref() else {
            return Err(Error::Internal("entity vanished while locked".into()));
        };
        let (seq, state, lease) = (loaded.seq, loaded.state.clone(), loaded.lease);
        drop(guard);
        self.settle_read(&id, &slot, seq, lease).await?;
        let state = match state {
            Some(bytes) => {
                let mut instance = active
                    .module
                    .instantiate()
                    .await
                    .map_err(|e| self.map_host_error(e))?;
                let text = instance
                    .render_state(&bytes)
                    .await
                    .map_err(|e| self.map_host_error(e))?;
                parse_rendered(&text)?
            }
            None => serde_json::Value::Null,
        };
        Ok(Inspection {
            sequence: seq,
            module_version: active.version,
            state,
        })
    }

    /// Journal entries of an entity from `from`, rendered as JSON.
    pub async fn journal(
        &self,
        entity_type: &str,
        key: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        cella_core::validate_name("key", key)?;
        let active = self.registry.get_loaded(entity_type).await?;
        let id = EntityId::new(entity_type, key);
        // Appends resolve once committed; `ready` then waits until they are applied to the
        // store read below.
        let lease = self.lease(&id)?;
        self.journal.barrier(&id).await?;
        if let Some(lease) = lease {
            self.journal.ready(&id, lease).await?;
        }
        let entries = self.journal.read_journal(&id, from, limit)?;
        let mut instance = active
            .module
            .instantiate()
            .await
            .map_err(|e| self.map_host_error(e))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let mut v = serde_json::json!({
                "seq": e.seq,
                "commandId": e.command_id,
                "command": e.command,
                "timestampMs": e.timestamp_ms,
                "moduleVersion": e.module_version,
            });
            match &e.payload {
                JournalPayload::Events(events) => {
                    let mut rendered = Vec::with_capacity(events.len());
                    for ev in events {
                        let text = instance
                            .render_event(ev)
                            .await
                            .map_err(|e| self.map_host_error(e))?;
                        rendered.push(parse_rendered(&text)?);
                    }
                    v["events"] = serde_json::Value::Array(rendered);
                }
                JournalPayload::State(s) => {
                    let text = instance
                        .render_state(s)
                        .await
                        .map_err(|e| self.map_host_error(e))?;
                    v["state"] = parse_rendered(&text)?;
                }
            }
            out.push(v);
        }
        Ok(out)
    }
}

fn parse_rendered(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::EntityFailed(format!("the module rendered invalid JSON: {e}")))
}
