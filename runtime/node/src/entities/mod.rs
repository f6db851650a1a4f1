//! Entity execution: the per-entity sequencing, the in-memory cache of hot entity states, and
//! the command path `state + command → guest → journal append → durable reply`.
//!
//! *Architecture invariants.* Commands to one entity run one at a time, in arrival order (a
//! FIFO async mutex per entity); different entities run concurrently. The host owns state: the
//! guest gets the entity's state with every command, and an instance serves one entity only (a
//! fresh one, or the one its previous successful command left warm: `warm`), so no guest memory
//! ever carries one entity's state into another's, nor into a replay. A command's change is applied to the cached state
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
//!
//! This file holds the [`Entities`] handle, its options and what its parts share; the parts:
//! - `cache` — the per-entity slots (FIFO lock, durable sequence) and their eviction;
//! - `activation` — loading an entity's state from snapshot and journal;
//! - `command` — running a command and turning its outcome into journal writes;
//! - `effects` — how a command was delivered ([`Invocation`]), the rows of its effects, its
//!   processed request id, and the [`Notice`]s for the effect dispatcher;
//! - `forward` — `forward` effects, here or through the [`Forwarder`];
//! - `read` — answers that change nothing: settling them, `inspect` and `journal`;
//! - `warm` — the guest instances kept between the commands of hot entities;
//! - `crdt` — the paths without a journal: crdt entities (on any node, against its replica)
//!   and ephemeral value entities (on the leader, in memory);
//! - `system` — the host's own entity types: topic logs (`$topic`) and the per-partition
//!   broadcast entities (`$partition`).

mod activation;
mod cache;
mod command;
mod crdt;
mod effects;
mod forward;
mod read;
mod system;
mod warm;

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cella_core::{EntityId, Journal, Lease};
use cella_host::{CommandContext, Failure, Instance, Module, Outcome};

pub(crate) use self::system::BroadcastOrder;
use self::warm::Warm;
pub use self::{
    effects::{Invocation, Notice, TimerFire, recorded_failure},
    forward::Forwarder,
    read::Inspection,
    system::{PARTITION_TYPE, TOPIC_TYPE, is_system_type, partition_key},
};
use crate::{
    error::{Error, Result},
    metrics::Metrics,
    registry::Registry,
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
    /// Topics: messages kept per topic; older ones are trimmed.
    pub topic_keep: u64,
    /// Topics: how long a message is kept.
    pub topic_max_age: Duration,
    /// Most linear memory, in bytes, the guest instances kept warm for hot entities may hold
    /// together (0: a fresh instance for every command). Linear memory bounds what they keep
    /// resident from above: a Rust instance (about 1 MiB, mostly its untouched stack) keeps
    /// about a tenth of it, an interpreter's most of it: instances over 4 MiB hold an eighth of it
    /// at most. The default, 1 GiB, keeps about a thousand Rust entities warm.
    pub warm_memory: usize,
    /// A warm instance unused for this long is dropped.
    pub warm_idle: Duration,
    /// Most guest instances kept warm (each holds a slot of the host's instance pool: the node
    /// caps this an eighth of the pool short of it, leaving that to the commands that need a
    /// fresh one).
    pub warm_max_count: usize,
    /// An instance whose linear memory has grown past this is not kept warm: memory never
    /// shrinks, and an interpreter's heap grows with its garbage until a command runs out of
    /// memory where a fresh instance would not (the node sets it to half the per-instance
    /// memory limit).
    pub warm_recycle_bytes: usize,
    /// The fair sharing of guest execution between types (`crate::scheduler`).
    pub scheduler: crate::scheduler::SchedulerOptions,
    /// Most bytes the entities held in memory and the warm instances may account for together
    /// (0: only `cache_capacity` bounds them). A quarter of it at most goes to warm instances
    /// (`warm_memory` if smaller); past the rest, idle entities are passivated (`cache`).
    pub max_memory: usize,
}

impl Default for EntityOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            snapshot_every: 100,
            value_journal_keep: 16,
            deadline: Duration::from_secs(1),
            max_forward_depth: 8,
            topic_keep: 1_000_000,
            topic_max_age: Duration::from_secs(7 * 24 * 3600),
            warm_memory: 1 << 30,
            warm_idle: Duration::from_secs(30),
            warm_max_count: 4096,
            warm_recycle_bytes: 32 << 20,
            scheduler: crate::scheduler::SchedulerOptions::default(),
            max_memory: 0,
        }
    }
}

/// Executes commands against entities.
pub struct Entities {
    journal: Arc<dyn Journal>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    options: EntityOptions,
    cache: Mutex<cache::CacheMap>,
    /// The bytes the living slots account for (`cache`).
    resident: Arc<std::sync::atomic::AtomicUsize>,
    /// The bound on `resident` (0: none).
    entity_budget: usize,
    warm: Warm,
    /// Admits guest command calls fairly between types.
    scheduler: crate::scheduler::Scheduler,
    clock: AtomicU64,
    commands: AtomicU64,
    boot_ms: u64,
    forwarder: Option<Arc<dyn Forwarder>>,
    /// Where committed effects go (the node's effect dispatcher).
    notices: Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
    /// The partition of an entity (0 for all without a cluster).
    partition_of: PartitionOf,
    /// The key of each partition's broadcast entity.
    partition_keys: Vec<String>,
    /// This node's crdt replicas (`None`: crdt entities are not served).
    crdts: Option<Arc<crate::crdt::Crdts>>,
    /// Ephemeral value entities led here.
    ephemeral: self::crdt::EphemeralMap,
}

/// The notices of an append in flight (see [`Entities::hand_over`]).
pub(super) struct Handover {
    durable: Option<tokio::sync::watch::Sender<Option<bool>>>,
    later: Vec<Notice>,
    /// Until settled: what a handover dropped unsettled (its command was cancelled while its
    /// append was in flight) needs to settle itself once the entity's appends are through.
    unsettled: Option<Unsettled>,
}

/// What a [`Handover`] dropped unsettled needs: its entity, the journal, the dispatcher.
type Unsettled = (
    EntityId,
    Arc<dyn Journal>,
    Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
);

impl Drop for Handover {
    fn drop(&mut self) {
        let Some((id, journal, notices)) = self.unsettled.take() else {
            return;
        };
        let (durable, later) = (self.durable.take(), std::mem::take(&mut self.later));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // Appends are durable in order: once a barrier behind it resolves, the append has
            // either committed or failed, and the store tells which by its rows.
            let through = journal.barrier(&id).await.is_ok();
            if let Some(tx) = durable {
                // `None` again: the dispatcher looks for each item's row.
                tx.send_replace(Some(through).filter(|t| !t));
                drop(tx);
            }
            let Some(tx) = notices.filter(|_| through) else {
                return;
            };
            for notice in later {
                let holds = match &notice {
                    Notice::Timer { id, timer } => journal
                        .row(
                            id,
                            cella_core::RowTable::Effects,
                            &cella_core::timer_row(&timer.name),
                        )
                        .ok()
                        .flatten()
                        .and_then(|b| cella_core::decode::<cella_core::TimerRow>(&b).ok())
                        .is_some_and(|row| row == *timer),
                    Notice::TimerGone { id, name } => journal
                        .row(
                            id,
                            cella_core::RowTable::Effects,
                            &cella_core::timer_row(name),
                        )
                        .is_ok_and(|row| row.is_none()),
                    _ => true,
                };
                if holds {
                    let _ = tx.send(notice);
                }
            }
        });
    }
}

/// The warm instances' budget and the resident entities' bound (0: none) under `options`.
fn memory_split(options: &EntityOptions) -> (usize, usize) {
    if options.max_memory == 0 {
        return (options.warm_memory, 0);
    }
    let warm = options.warm_memory.min(options.max_memory / 4);
    (warm, (options.max_memory - warm).max(1))
}

/// What a guest's `handle` answered: its outcome, its refusal, or the call's failure.
type Handled = std::result::Result<std::result::Result<Outcome, Failure>, cella_host::Error>;

/// How entities map to partitions.
pub type PartitionOf = Arc<dyn Fn(&EntityId) -> u64 + Send + Sync>;

/// The wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Entities {
    pub fn new(
        journal: Arc<dyn Journal>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        options: EntityOptions,
    ) -> Self {
        let (warm_memory, entity_budget) = memory_split(&options);
        Self {
            journal,
            registry,
            metrics,
            warm: Warm::new(
                warm_memory,
                options.warm_max_count,
                options.warm_recycle_bytes,
                options.warm_idle,
            ),
            scheduler: crate::scheduler::Scheduler::new(options.scheduler.clone()),
            options,
            cache: Mutex::new(cache::CacheMap::default()),
            resident: Arc::default(),
            entity_budget,
            clock: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            boot_ms: now_ms(),
            forwarder: None,
            notices: None,
            partition_of: Arc::new(|_| 0),
            partition_keys: vec![partition_key(0, &|_| 0)],
            crdts: None,
            ephemeral: Default::default(),
        }
    }

    /// Serves crdt entities with this node's replicas.
    pub fn with_crdts(mut self, crdts: Arc<crate::crdt::Crdts>) -> Self {
        self.crdts = Some(crdts);
        self
    }

    /// Maps entities to the partitions `groups` with `partition_of` (broadcasts address each).
    pub fn with_partitions(mut self, partition_of: PartitionOf, groups: Vec<u64>) -> Self {
        self.partition_keys = groups
            .into_iter()
            .map(|g| partition_key(g, partition_of.as_ref()))
            .collect();
        self.partition_of = partition_of;
        self
    }

    /// How many guest instances are kept warm, and their linear memory in bytes.
    pub fn warm_instances(&self) -> (usize, usize) {
        self.warm.size()
    }

    /// The scheduler of guest command calls (its lanes feed `/metrics`).
    pub fn scheduler(&self) -> &crate::scheduler::Scheduler {
        &self.scheduler
    }

    /// Drops the warm instances idle for longer than [`EntityOptions::warm_idle`] (the node
    /// calls this periodically, so that an idle node gives their memory back).
    pub fn sweep_warm(&self) {
        self.warm.sweep();
    }

    /// The partition of `id`.
    pub(crate) fn partition_of(&self, id: &EntityId) -> u64 {
        (self.partition_of)(id)
    }

    /// A new command id: the node's start time and a counter, fixed-width hex, so that the ids
    /// (and the effect ids and outbox rows named after them) of one leader sort in the order
    /// they were made.
    pub(super) fn command_id(&self, n: u64) -> String {
        format!("{:012x}-{n:012x}", self.boot_ms)
    }

    /// Hands the effects of committed commands to `notices` (the effect dispatcher).
    pub fn with_notices(mut self, notices: tokio::sync::mpsc::UnboundedSender<Notice>) -> Self {
        self.notices = Some(notices);
        self
    }

    /// Hands the outbox items of an append to the dispatcher now, under the entity's lock, so
    /// that the dispatcher receives one entity's items in the order its commands made them (and
    /// carries out the calls from one entity to another in that order); they wait for
    /// [`Entities::settle`] to say the append is durable. The other notices are kept for then.
    pub(super) fn hand_over(&self, id: &EntityId, notices: Vec<Notice>) -> Handover {
        let (mut outbox, later): (Vec<Notice>, Vec<Notice>) = notices
            .into_iter()
            .partition(|n| matches!(n, Notice::Outbox { .. }));
        let durable = (!outbox.is_empty()).then(|| {
            let (tx, rx) = tokio::sync::watch::channel(None);
            for notice in &mut outbox {
                if let Notice::Outbox { durable, .. } = notice {
                    *durable = Some(rx.clone());
                }
            }
            self.notify(outbox);
            tx
        });
        Handover {
            durable,
            later,
            unsettled: Some((id.clone(), self.journal.clone(), self.notices.clone())),
        }
    }

    /// Tells the dispatcher whether the append behind `handover` is durable (`ok`), and then
    /// about its other effects.
    pub(super) fn settle(&self, mut handover: Handover, ok: bool) {
        handover.unsettled = None;
        if let Some(tx) = handover.durable.take() {
            tx.send_replace(Some(ok));
        }
        if ok {
            self.notify(std::mem::take(&mut handover.later));
        }
    }

    /// Tells the dispatcher about durable effects.
    fn notify(&self, notices: Vec<Notice>) {
        if let Some(tx) = &self.notices {
            for notice in notices {
                // The dispatcher stops only with the node; its rows stay for the next start.
                let _ = tx.send(notice);
            }
        }
    }

    /// The journal (the dispatcher reads rows and writes acknowledgements through it).
    pub fn journal_store(&self) -> &Arc<dyn Journal> {
        &self.journal
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

    fn map_host_error(&self, e: cella_host::Error) -> Error {
        self.map_host_error_within(e, self.options.deadline)
    }

    /// Runs the guest's `handle` in `id`'s warm instance when one is kept for `module`, else in a
    /// fresh one, under `deadline`; the outer error is the fresh instance's. A warm instance's
    /// heap holds what its earlier commands left (an interpreter's garbage): a command that runs
    /// out of memory there runs once more in a fresh instance, where it may fit (a guest call has
    /// no effect until its outcome is journaled).
    async fn handle_in_instance(
        &self,
        id: &EntityId,
        module: &Module,
        deadline: Duration,
        ctx: &CommandContext,
        state: Option<&[u8]>,
        payload: &str,
    ) -> std::result::Result<(Handled, Instance), cella_host::Error> {
        let run = async |warm: Option<Instance>| {
            let mut instance = match warm {
                Some(instance) => instance,
                None => module.instantiate().await?,
            };
            instance.set_deadline(Some(deadline));
            let handled = instance.handle(ctx, state, payload).await;
            Ok((handled, instance))
        };
        let warm = self.warm.take(id, module);
        let was_warm = warm.is_some();
        let (handled, instance) = run(warm).await?;
        if was_warm && handled.is_err() && instance.hit_memory_limit() {
            drop(instance);
            return run(None).await;
        }
        Ok((handled, instance))
    }

    /// [`Self::map_host_error`] for a call that ran under `deadline`.
    fn map_host_error_within(&self, e: cella_host::Error, deadline: Duration) -> Error {
        match e {
            cella_host::Error::DeadlineExceeded => {
                Error::DeadlineExceeded(deadline.as_millis() as u64)
            }
            cella_host::Error::Trap(m) | cella_host::Error::Guest(m) => Error::EntityFailed(m),
            other => Error::Host(other),
        }
    }
}
