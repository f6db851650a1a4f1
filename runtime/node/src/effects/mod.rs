//! The effect dispatcher: carries out what committed commands asked for, on the leader of the
//! partition that holds them.
//!
//! A command's calls and timers are rows of its entity, written in the same append as its
//! change (`entities/effects.rs`), so they exist iff the change committed. Once an append is
//! durable, the entity layer hands its effects here ([`Notice`]); when this node becomes the
//! leader of a partition (at start, after a failover), it reads the partition's rows after
//! applying everything committed before its leadership, so nothing committed is left behind.
//!
//! - A call is delivered at least once on the wire and processed once: it carries a request
//!   id (`e/<source>/<effect id>`) that the target records with its outcome in the same append
//!   as its change, and a redelivery is answered from that record. A call with a reply route
//!   then delivers its outcome (reply, or rejection/failure as data) to the caller's reply
//!   command, under its own request id. Then the outbox row is deleted (acknowledged). Answers
//!   that are not the entity's (no leader, unreachable, storage) are retried with back-off,
//!   forever; failures that are (rejected, unknown type or command, trap) end the call.
//! - Timers fire here as commands to their entity (`timers.rs`); the firing is consumed in the
//!   command's own append (a one-shot timer is deleted, a repeating one moves on), so it fires
//!   once, and a firing of a timer replaced or cancelled since is refused by the entity.
//! - Deliveries and firings in flight are bounded per partition, so a storm of effects waits
//!   its turn instead of crowding out client commands.
//! - Request ids are remembered for the retention window (`EffectOptions::retention`): a
//!   sweep deletes older records of the partitions led here.

mod deliver;
mod timers;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use cella_cluster::mux::TraceContext;
use cella_core::{
    EntityId, OUTBOX_PREFIX, OutboxItem, Processed, RowTable, TIMER_PREFIX, TimerRow, Write, decode,
};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub(crate) use self::deliver::{Attempt, attempt, delivery_path, invocation_of_query};
use self::timers::TimerQueue;
use crate::{
    entities::{Invocation, Notice},
    node::Node,
    topics::Topics,
};

/// Tunables of the effect dispatcher.
#[derive(Clone, Debug)]
pub struct EffectOptions {
    /// How long a processed request id (a delivered call, a client's idempotency key) is
    /// remembered.
    pub retention: Duration,
    /// Deliveries (and timer firings) in flight per partition.
    pub in_flight: usize,
}

impl Default for EffectOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            in_flight: 64,
        }
    }
}

/// How often leadership is checked for partitions newly led here.
const LEADERSHIP_POLL: Duration = Duration::from_millis(200);
/// Every how many leadership polls the topic consumers are reconciled with the subscriptions.
const RECONCILE_EVERY: u64 = 10;
/// How often expired request ids are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The dispatcher's shared state.
pub(crate) struct Dispatcher {
    node: Weak<Node>,
    options: EffectOptions,
    /// Outbox items being carried out, by (source, effect id).
    active: Mutex<HashSet<(EntityId, String)>>,
    /// Per (source, target): the completion of the last item handed over, which the next one
    /// from the same source to the same target waits for.
    chains: Mutex<HashMap<(EntityId, EntityId), watch::Receiver<bool>>>,
    /// Per partition: bounds deliveries in flight.
    lanes: Mutex<HashMap<u64, Arc<Semaphore>>>,
    timers: Mutex<TimerQueue>,
    timers_changed: Notify,
    /// The topic consumers led here.
    topics: Arc<Topics>,
}

/// Starts the dispatcher of `node`, fed by `notices`; it ends when the node is dropped.
pub(crate) fn start(
    node: &Arc<Node>,
    notices: mpsc::UnboundedReceiver<Notice>,
    options: EffectOptions,
) {
    let dispatcher = Arc::new(Dispatcher {
        node: Arc::downgrade(node),
        options,
        active: Mutex::default(),
        chains: Mutex::default(),
        lanes: Mutex::default(),
        timers: Mutex::default(),
        timers_changed: Notify::new(),
        topics: Topics::new(Arc::downgrade(node)),
    });
    tokio::spawn(dispatcher.clone().receive(notices));
    tokio::spawn(dispatcher.clone().watch_leadership());
    if let Some(mut moved_in) = node.cluster.as_ref().and_then(|c| c.take_moved_in()) {
        // A shard moved into a partition here, or unfrozen (its move abandoned): its cached
        // entities are dropped (their next command loads what the move brought), and if this
        // node leads the partition, their calls and timers are carried out here (those that
        // found the shard frozen were given up).
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            while let Some((group, shard)) = moved_in.recv().await {
                let Some(node) = dispatcher.node.upgrade() else {
                    break;
                };
                if let Some(cluster) = &node.cluster {
                    let placement = cluster.placement();
                    node.entities
                        .forget_where(|id| placement.shard(id) == shard);
                }
                drop(node);
                tokio::spawn(dispatcher.clone().take_over_shard(group, shard));
            }
        });
    }
    tokio::spawn(dispatcher.run_timers());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The partition (raft group) of `id` on `node` (0 without a cluster).
fn group_of(node: &Node, id: &EntityId) -> u64 {
    node.cluster.as_ref().map_or(0, |c| c.partition_of(id))
}

impl Dispatcher {
    async fn receive(self: Arc<Self>, mut notices: mpsc::UnboundedReceiver<Notice>) {
        while let Some(notice) = notices.recv().await {
            match notice {
                Notice::Outbox {
                    source,
                    item,
                    durable,
                    trace,
                } => self.clone().carry_out(source, item, durable, &trace),
                Notice::Timer { id, timer } => self.set_timer(id, timer),
                Notice::TimerGone { id, name } => {
                    lock(&self.timers).remove(&id, &name);
                }
                Notice::Published { topic, offset } => {
                    if self.topics.published(&topic, offset) {
                        let topics = self.topics.clone();
                        tokio::spawn(async move { topics.reconcile(Some(&topic)).await });
                    }
                }
            }
        }
    }

    fn set_timer(&self, id: EntityId, timer: TimerRow) {
        lock(&self.timers).set(id, timer);
        self.timers_changed.notify_one();
    }

    fn lane(&self, group: u64) -> Arc<Semaphore> {
        lock(&self.lanes)
            .entry(group)
            .or_insert_with(|| Arc::new(Semaphore::new(self.options.in_flight.max(1))))
            .clone()
    }

    /// Carries out one outbox item of `source` in a task of its own (once, however often it
    /// is handed over), after its append is `durable` and after the item handed over before it
    /// from the same source to the same target: calls from one entity to another are carried out
    /// in the order they were made. Its span continues `trace`, the trace of the command that
    /// made the call (when traced).
    fn carry_out(
        self: Arc<Self>,
        source: EntityId,
        item: OutboxItem,
        durable: Option<watch::Receiver<Option<bool>>>,
        trace: &TraceContext,
    ) {
        let key = (source.clone(), item.effect_id.clone());
        if !lock(&self.active).insert(key.clone()) {
            return;
        }
        if let Some(node) = self.node.upgrade() {
            node.metrics.effects.pending.inc();
        }
        let pair = (source.clone(), item.target.clone());
        let (done_tx, done_rx) = watch::channel(false);
        let before = lock(&self.chains).insert(pair.clone(), done_rx.clone());
        let span = tracing::debug_span!(
            parent: None,
            "effect.deliver",
            target = %item.target,
            command = %item.command,
        );
        crate::trace::set_parent(&span, trace);
        let carried = async move {
            let exists = match durable {
                None => true,
                Some(mut rx) => match rx.wait_for(Option::is_some).await.map(|d| *d) {
                    Ok(Some(durable)) => durable,
                    // Its command was cancelled with the append in flight: the row tells.
                    _ => self.row_exists(&source, &item).await,
                },
            };
            if exists {
                if let Some(mut before) = before {
                    // A dropped sender (its task ended) counts as done.
                    let _ = before.wait_for(|done| *done).await;
                }
                self.deliver(&source, &item).await;
            }
            done_tx.send_replace(true);
            {
                let mut chains = lock(&self.chains);
                if chains
                    .get(&pair)
                    .is_some_and(|tail| tail.same_channel(&done_rx))
                {
                    chains.remove(&pair);
                }
            }
            lock(&self.active).remove(&key);
            if let Some(node) = self.node.upgrade() {
                node.metrics.effects.pending.dec();
            }
        };
        tokio::spawn(tracing::Instrument::instrument(carried, span));
    }

    /// Whether `item`'s outbox row exists, once every append of `source` before is through.
    async fn row_exists(&self, source: &EntityId, item: &OutboxItem) -> bool {
        let Some(node) = self.node.upgrade() else {
            return false;
        };
        let journal = node.entities.journal_store();
        if journal.barrier(source).await.is_err() {
            // Not settled here: a leader taking the partition over reads the rows.
            return false;
        }
        journal
            .row(
                source,
                RowTable::Effects,
                &cella_core::outbox_row(&item.effect_id),
            )
            .is_ok_and(|row| row.is_some())
    }

    /// Delivers `item` and its outcome, then acknowledges it; gives up only when this node no
    /// longer leads the source's partition (its new leader carries it out).
    async fn deliver(&self, source: &EntityId, item: &OutboxItem) {
        let call = Invocation {
            request_id: Some(item.request_id(source)),
            ..Invocation::default()
        };
        let outcome = loop {
            let Some(outcome) = self
                .try_once(source, &item.target, &item.command, &item.payload, &call)
                .await
            else {
                return;
            };
            if let Some(outcome) = outcome {
                break outcome;
            }
        };
        let Some(node) = self.node.upgrade() else {
            return;
        };
        if matches!(outcome, cella_core::Recorded::Err { .. }) {
            node.metrics.effects.failed.inc();
            tracing::info!(
                "call {} from {source} to {} failed: {}",
                item.effect_id,
                item.target,
                outcome.envelope()
            );
        }
        drop(node);
        if let Some(route) = &item.reply_to {
            let reply = Invocation {
                request_id: Some(item.reply_request_id()),
                correlation: Some(route.correlation.clone()),
                ..Invocation::default()
            };
            let payload = outcome.envelope();
            loop {
                match self
                    .try_once(source, source, &route.command, &payload, &reply)
                    .await
                {
                    None => return,
                    Some(Some(_)) => break,
                    Some(None) => {}
                }
            }
        }
        loop {
            let Some(node) = self.node.upgrade() else {
                return;
            };
            // Once leadership is lost the row stays for the next leader, whose redelivery is
            // answered from the records.
            if node.entities.owner(source).is_err() {
                return;
            }
            let ack = Write::Row {
                id: source.clone(),
                table: RowTable::Effects,
                name: cella_core::outbox_row(&item.effect_id),
                value: None,
            };
            match node.entities.journal_store().append(vec![ack]).await {
                Ok(()) => {
                    node.metrics.effects.delivered.inc();
                    return;
                }
                Err(e) => {
                    tracing::debug!("acknowledging call {} of {source}: {e}", item.effect_id);
                    drop(node);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One attempt, paced: `Some(Some(outcome))` when final, `Some(None)` to try again (after a
    /// pause taken here), `None` when this node should stop (no longer leads `source`, or
    /// the node is gone).
    async fn try_once(
        &self,
        source: &EntityId,
        target: &EntityId,
        command: &str,
        payload: &str,
        invocation: &Invocation,
    ) -> Option<Option<cella_core::Recorded>> {
        let node = self.node.upgrade()?;
        if node.entities.owner(source).is_err() {
            return None;
        }
        let lane = self.lane(group_of(&node, source));
        let attempt = {
            let _permit = lane.acquire().await.ok()?;
            deliver::attempt(&node, target, command, payload, invocation).await
        };
        match attempt {
            Attempt::Done(outcome) => Some(Some(outcome)),
            Attempt::Retry(why) => {
                node.metrics.effects.retried.inc();
                tracing::debug!("delivering {command} to {target} again later: {why}");
                drop(node);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some(None)
            }
        }
    }

    /// Notices partitions newly led here and takes over their outboxes and timers; sweeps
    /// expired request ids now and then.
    async fn watch_leadership(self: Arc<Self>) {
        let mut led: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut last_sweep = tokio::time::Instant::now();
        let mut polls: u64 = 0;
        loop {
            let Some(node) = self.node.upgrade() else {
                return;
            };
            let groups: Vec<(u64, Option<(u64, u64)>)> = match &node.cluster {
                Some(cluster) => cluster
                    .placement()
                    .groups()
                    .map(|g| {
                        let term = cluster
                            .group(g)
                            .and_then(|group| cluster.leadership(group))
                            .map(|l| (l.term, l.node_id));
                        (g, term)
                    })
                    .collect(),
                None => vec![(0, Some((0, 0)))],
            };
            for (group, term) in groups {
                match term {
                    Some(term) if led.get(&group) != Some(&term) => {
                        led.insert(group, term);
                        tokio::spawn(self.clone().take_over(group));
                    }
                    Some(_) => {}
                    None => {
                        led.remove(&group);
                    }
                }
            }
            polls += 1;
            if polls.is_multiple_of(RECONCILE_EVERY) {
                // Subscriptions of types deployed since: their consumers start.
                let topics = self.topics.clone();
                tokio::spawn(async move { topics.reconcile(None).await });
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = tokio::time::Instant::now();
                let groups: Vec<u64> = led.keys().copied().collect();
                tokio::spawn(self.clone().sweep(groups));
            }
            drop(node);
            tokio::time::sleep(LEADERSHIP_POLL).await;
        }
    }

    /// Carries out the outbox and timers of a shard moved into `group`, if this node leads it
    /// (those already under way here are not started twice).
    pub(crate) async fn take_over_shard(self: Arc<Self>, group: u64, shard: u32) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let Some(cluster) = node.cluster.clone() else {
            return;
        };
        let Some(g) = cluster.group(group) else {
            return;
        };
        if cluster.leadership(g).is_none() {
            return;
        }
        let placement = cluster.placement();
        drop(node);
        self.take_over_rows(group, move |id| placement.shard(id) == shard)
            .await;
    }

    /// Reads the outbox and timers of a partition this node now leads, once everything
    /// committed before is applied here.
    async fn take_over(self: Arc<Self>, group: u64) {
        self.clone().take_over_rows(group, |_| true).await;
        self.topics.take_over(group).await;
    }

    /// Carries out the outbox items and sets the timers of `group`'s entities that `pick`
    /// chooses, once everything committed before is applied here.
    async fn take_over_rows(self: Arc<Self>, group: u64, pick: impl Fn(&EntityId) -> bool) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        if let Some(cluster) = &node.cluster {
            let Some(g) = cluster.group(group) else {
                return;
            };
            if let Err(e) = cluster.ready(g).await {
                tracing::warn!("taking over the effects of partition {group}: {e}");
                return;
            }
        }
        let rows = node.store.scan_rows(RowTable::Effects, "", |id| {
            group_of(&node, id) == group && pick(id)
        });
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("reading the effects of partition {group}: {e}");
                return;
            }
        };
        drop(node);
        for (id, name, bytes) in rows {
            if name.starts_with(OUTBOX_PREFIX) {
                match decode::<OutboxItem>(&bytes) {
                    Ok(item) => self
                        .clone()
                        .carry_out(id, item, None, &TraceContext::default()),
                    Err(e) => tracing::error!("outbox row {name} of {id} is unreadable: {e}"),
                }
            } else if name.starts_with(TIMER_PREFIX) {
                match decode::<TimerRow>(&bytes) {
                    Ok(timer) => self.set_timer(id, timer),
                    Err(e) => tracing::error!("timer row {name} of {id} is unreadable: {e}"),
                }
            }
        }
    }

    /// Deletes request-id records older than the retention window in the partitions led here.
    async fn sweep(self: Arc<Self>, groups: Vec<u64>) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let horizon =
            crate::entities::now_ms().saturating_sub(self.options.retention.as_millis() as u64);
        let rows = node.store.scan_rows(RowTable::Processed, "", |id| {
            groups.contains(&group_of(&node, id))
        });
        let Ok(rows) = rows else { return };
        let expired: Vec<Write> = rows
            .into_iter()
            .filter(|(_, _, bytes)| decode::<Processed>(bytes).is_ok_and(|p| p.at_ms < horizon))
            .map(|(id, name, _)| Write::Row {
                id,
                table: RowTable::Processed,
                name,
                value: None,
            })
            .collect();
        // One append per entity: an append's writes belong to one partition.
        let mut by_entity: HashMap<EntityId, Vec<Write>> = HashMap::new();
        for write in expired {
            by_entity
                .entry(write.entity().clone())
                .or_default()
                .push(write);
        }
        for (_, writes) in by_entity {
            if let Err(e) = node.entities.journal_store().append(writes).await {
                tracing::debug!("forgetting expired request ids: {e}");
            }
        }
    }
}
