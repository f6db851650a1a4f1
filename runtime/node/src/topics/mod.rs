//! Topics: durable, replicated logs of JSON messages, and the delivery of their messages to the
//! entity types that subscribe to them.
//!
//! A topic is the host's entity `$topic/<name>` (`entities/system.rs`): a message is appended as
//! the next journal entry, so its offset is its sequence number and the log replicates and fails
//! over with its partition. An entity's `publish` effect is an outbox call to that entity,
//! deduplicated by request id, so it lands exactly once.
//!
//! Subscriptions are declared by entity types in their descriptors (topic, command, key). On the
//! leader of a topic's partition a [`Consumer`] per (topic, subscriber type, command) reads the log
//! from its cursor and delivers each message to the entities its key names, as a command with the
//! request id `s/<topic>/<offset>/<command>` (recorded by the target with its change, so a
//! redelivery after a restart or failover is answered without running twice). Deliveries to one
//! entity go one at a time, in topic order; different entities receive in parallel, within a
//! window of messages and a bound on deliveries in flight per consumer, so a slow or failing
//! subscriber holds only its own consumer back. A delivery the subscriber rejects (or fails on) is
//! final: counted, recorded in the cursor, and the topic moves on. The cursor (every offset up to
//! it delivered) is a row of the topic entity (`c/<type>/<command>`), written at most a few times a
//! second; a new leader starts from it.

pub mod metrics;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use cella_core::{EntityId, JournalPayload, Recorded, RowTable, Write, decode, encode};
use cella_host::{SubscriberKey, Subscription, TopicMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc};
use tracing::Instrument;

use crate::{
    effects::{Attempt, attempt},
    entities::{Invocation, TOPIC_TYPE},
    node::Node,
};

/// Messages a consumer reads ahead of its cursor.
const WINDOW: usize = 256;
/// Deliveries one consumer has in flight at most.
const IN_FLIGHT: usize = 64;
/// How often a consumer's cursor is written while it moves.
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// How long a consumer waits for the apply of messages committed here before reading again.
const APPLY_WAIT: Duration = Duration::from_millis(1);
/// How often a consumer without news checks that it still leads its topic.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Row-name prefix of subscription cursors (rows of the topic entity).
pub const CURSOR_PREFIX: &str = "c/";

/// The row name of the cursor of `subscriber`'s subscription with `command`.
pub fn cursor_row(subscriber: &str, command: &str) -> String {
    format!("{CURSOR_PREFIX}{subscriber}/{command}")
}

/// Where a subscription stands: every offset up to `delivered` is delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub delivered: u64,
    /// Deliveries that ended in a failure (rejected, failed, no usable key).
    pub failures: u64,
    /// The last of them: offset, subscriber key (if any) and why.
    pub last_failure: Option<(u64, Option<String>, String)>,
}

/// The topic entity of `topic`.
pub fn topic_entity(topic: &str) -> EntityId {
    EntityId::new(TOPIC_TYPE, topic)
}

/// Every subscription declared by the active module versions: (subscriber type, subscription).
pub async fn subscriptions(node: &Node) -> Vec<(String, Subscription)> {
    let Ok(modules) = node.registry.list() else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for info in modules {
        if let Ok(active) = node.registry.get_loaded(&info.entity_type).await {
            for s in &active.module.descriptor().subscriptions {
                all.push((info.entity_type.clone(), s.clone()));
            }
        }
    }
    all
}

/// Which consumer: topic, subscriber type, command.
type ConsumerId = (String, String, String);

/// The topics' part of a node: the consumers running here.
pub(crate) struct Topics {
    node: Weak<Node>,
    consumers: Mutex<HashMap<ConsumerId, Arc<Notify>>>,
    /// Topics seen in partitions led here (by publications and takeovers).
    known: Mutex<HashSet<String>>,
    /// The newest offset committed here per topic: a consumer that has not read up to it waits
    /// for the apply, briefly, instead of its idle check.
    heads: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Topics {
    pub(crate) fn new(node: Weak<Node>) -> Arc<Topics> {
        Arc::new(Topics {
            node,
            consumers: Mutex::default(),
            known: Mutex::default(),
            heads: Mutex::default(),
        })
    }

    /// A message was appended to `topic` here: wakes its consumers; true when the topic is new
    /// here (its consumers are then to be started with [`Topics::reconcile`]; subscriptions of
    /// types deployed later are picked up by the periodic reconcile).
    pub(crate) fn published(&self, topic: &str, offset: u64) -> bool {
        {
            let mut heads = lock(&self.heads);
            let head = heads.entry(topic.to_string()).or_default();
            *head = (*head).max(offset);
        }
        for ((t, _, _), wake) in lock(&self.consumers).iter() {
            if t == topic {
                wake.notify_one();
            }
        }
        lock(&self.known).insert(topic.to_string())
    }

    /// This node now leads `group`: its topics are found, and their consumers started.
    pub(crate) async fn take_over(self: &Arc<Self>, group: u64) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let mut after: Option<String> = None;
        loop {
            let page = match node.store.entity_keys(TOPIC_TYPE, after.as_deref(), 1000) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!("listing the topics of partition {group}: {e}");
                    return;
                }
            };
            let Some(last) = page.last().cloned() else {
                break;
            };
            let mut known = lock(&self.known);
            for topic in page {
                if node.entities.partition_of(&topic_entity(&topic)) == group {
                    known.insert(topic);
                }
            }
            drop(known);
            after = Some(last);
        }
        drop(node);
        self.reconcile(None).await;
    }

    /// Starts a consumer for every subscription of the topics led here (or of `only`) that
    /// has none.
    pub(crate) async fn reconcile(self: &Arc<Self>, only: Option<&str>) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let subscriptions = subscriptions(&node).await;
        let topics: Vec<String> = match only {
            Some(t) => vec![t.to_string()],
            None => lock(&self.known).iter().cloned().collect(),
        };
        for topic in topics {
            if node.entities.owner(&topic_entity(&topic)).is_err() {
                continue;
            }
            for (subscriber, s) in subscriptions.iter().filter(|(_, s)| s.topic == topic) {
                let cid = (topic.clone(), subscriber.clone(), s.command.clone());
                let wake = {
                    let mut consumers = lock(&self.consumers);
                    if consumers.contains_key(&cid) {
                        continue;
                    }
                    let wake = Arc::new(Notify::new());
                    consumers.insert(cid.clone(), wake.clone());
                    wake
                };
                let consumer = Consumer {
                    topics: self.clone(),
                    topic: topic.clone(),
                    subscriber: subscriber.clone(),
                    command: s.command.clone(),
                    key: s.key.clone(),
                    wake,
                };
                tokio::spawn(async move {
                    let topics = consumer.topics.clone();
                    consumer.run().await;
                    lock(&topics.consumers).remove(&cid);
                });
            }
        }
    }
}

/// Delivers one topic's messages to one subscription, on the topic's leader.
struct Consumer {
    topics: Arc<Topics>,
    topic: String,
    subscriber: String,
    command: String,
    key: SubscriberKey,
    wake: Arc<Notify>,
}

/// A finished delivery: offset, key, outcome (`None`: abandoned, leadership moved).
type Done = (u64, String, Option<Recorded>);

/// What a consumer tracks between reads.
#[derive(Default)]
struct Progress {
    /// Offsets read and not yet fully delivered, with their deliveries left.
    open: BTreeMap<u64, usize>,
    /// Per subscriber key: messages waiting behind the one in flight.
    queued: HashMap<String, VecDeque<(u64, Arc<str>)>>,
    /// Keys with a delivery in flight.
    busy: HashSet<String>,
}

impl Consumer {
    async fn run(self) {
        let id = topic_entity(&self.topic);
        let row = cursor_row(&self.subscriber, &self.command);
        let Some(node) = self.topics.node.upgrade() else {
            return;
        };
        let mut cursor: Cursor = match node.store.entity_row(&id, RowTable::Effects, &row) {
            Ok(Some(bytes)) => decode(&bytes).unwrap_or_default(),
            Ok(None) => Cursor::default(),
            Err(e) => {
                tracing::error!(
                    "reading the cursor of {} on {}: {e}",
                    self.subscriber,
                    self.topic
                );
                return;
            }
        };
        drop(node);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut progress = Progress::default();
        // A subscription without a cursor starts at the oldest message retained.
        let mut fresh = cursor == Cursor::default();
        let mut next = cursor.delivered + 1;
        let mut written = cursor.clone();
        let mut last_write = tokio::time::Instant::now();
        loop {
            let Some(node) = self.topics.node.upgrade() else {
                return;
            };
            if node.entities.owner(&id).is_err() {
                return;
            }
            // Read ahead of the cursor, within the window.
            let room = WINDOW.saturating_sub(progress.open.len());
            if room > 0 {
                let entries = match node.entities.journal_store().read_journal(&id, next, room) {
                    Ok(entries) => entries,
                    Err(e) => {
                        tracing::warn!("reading topic {}: {e}", self.topic);
                        Vec::new()
                    }
                };
                for entry in entries {
                    if fresh {
                        fresh = false;
                        next = next.max(entry.seq);
                    }
                    if entry.seq > next {
                        // Trimmed by retention before it was delivered.
                        let lost = entry.seq - next;
                        tracing::warn!(
                            "{lost} messages of topic {} were trimmed before {} received them",
                            self.topic,
                            self.subscriber
                        );
                        cursor.failures += lost;
                    }
                    next = entry.seq + 1;
                    let message = match entry.payload {
                        JournalPayload::Events(mut events) if events.len() == 1 => {
                            String::from_utf8(events.remove(0)).unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    match self.key.keys_of(&message) {
                        Ok(keys) if !keys.is_empty() => {
                            progress.open.insert(entry.seq, keys.len());
                            let message: Arc<str> = message.into();
                            for key in keys {
                                if progress.busy.contains(&key) {
                                    progress
                                        .queued
                                        .entry(key)
                                        .or_default()
                                        .push_back((entry.seq, message.clone()));
                                } else {
                                    progress.busy.insert(key.clone());
                                    self.spawn_delivery(
                                        &permits,
                                        &done_tx,
                                        entry.seq,
                                        key,
                                        message.clone(),
                                    );
                                }
                            }
                        }
                        Ok(_) => {
                            progress.open.insert(entry.seq, 0);
                        }
                        Err(why) => {
                            node.metrics
                                .topics
                                .delivered(&self.topic, &self.subscriber, false);
                            tracing::info!(
                                "message {} of topic {} names no {} entity: {why}",
                                entry.seq,
                                self.topic,
                                self.subscriber
                            );
                            cursor.failures += 1;
                            cursor.last_failure = Some((entry.seq, None, why));
                            progress.open.insert(entry.seq, 0);
                        }
                    }
                }
            }
            // Advance over fully delivered offsets.
            while let Some((&offset, &0)) = progress.open.first_key_value() {
                progress.open.remove(&offset);
                cursor.delivered = offset;
            }
            if progress.open.is_empty() {
                cursor.delivered = cursor.delivered.max(next.saturating_sub(1));
            }
            node.metrics.topics.set_lag(
                &self.topic,
                &self.subscriber,
                next.saturating_sub(1).saturating_sub(cursor.delivered),
            );
            if cursor != written && last_write.elapsed() >= CURSOR_EVERY {
                match encode(&cursor) {
                    Ok(bytes) => {
                        let write = Write::Row {
                            id: id.clone(),
                            table: RowTable::Effects,
                            name: row.clone(),
                            value: Some(bytes),
                        };
                        match node.entities.journal_store().append(vec![write]).await {
                            Ok(()) => written = cursor.clone(),
                            Err(e) => tracing::debug!("writing a cursor of {}: {e}", self.topic),
                        }
                    }
                    Err(e) => tracing::error!("encoding a cursor: {e}"),
                }
                last_write = tokio::time::Instant::now();
            }
            drop(node);
            let full = progress.open.len() >= WINDOW;
            let pending_write = cursor != written;
            // Committed here but not applied yet: read again in a moment.
            let behind = !full
                && lock(&self.topics.heads)
                    .get(&self.topic)
                    .is_some_and(|head| *head >= next);
            let pause = if behind {
                APPLY_WAIT
            } else if pending_write {
                CURSOR_EVERY
            } else {
                IDLE_CHECK
            };
            tokio::select! {
                done = done_rx.recv() => {
                    let Some((offset, key, outcome)) = done else { return };
                    let Some(outcome) = outcome else { return };
                    self.finished(&mut progress, &mut cursor, &permits, &done_tx, offset, key, outcome);
                    // Take every other finished delivery too before reading again.
                    while let Ok((offset, key, outcome)) = done_rx.try_recv() {
                        let Some(outcome) = outcome else { return };
                        self.finished(&mut progress, &mut cursor, &permits, &done_tx, offset, key, outcome);
                    }
                }
                () = self.wake.notified(), if !full => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Books a finished delivery and starts the next one of the same key.
    #[allow(clippy::too_many_arguments)]
    fn finished(
        &self,
        progress: &mut Progress,
        cursor: &mut Cursor,
        permits: &Arc<Semaphore>,
        done_tx: &mpsc::UnboundedSender<Done>,
        offset: u64,
        key: String,
        outcome: Recorded,
    ) {
        let ok = !matches!(outcome, Recorded::Err { .. });
        if let Some(node) = self.topics.node.upgrade() {
            node.metrics
                .topics
                .delivered(&self.topic, &self.subscriber, ok);
        }
        if let Recorded::Err { code, message } = outcome {
            tracing::info!(
                "{} {key} failed message {offset} of topic {}: {code}: {message}",
                self.subscriber,
                self.topic
            );
            cursor.failures += 1;
            cursor.last_failure = Some((offset, Some(key.clone()), format!("{code}: {message}")));
        }
        if let Some(left) = progress.open.get_mut(&offset) {
            *left = left.saturating_sub(1);
        }
        let next = progress.queued.get_mut(&key).and_then(VecDeque::pop_front);
        match next {
            Some((offset, message)) => self.spawn_delivery(permits, done_tx, offset, key, message),
            None => {
                progress.queued.remove(&key);
                progress.busy.remove(&key);
            }
        }
    }

    /// Delivers message `offset` to entity `key` in a task, retrying what is worth retrying,
    /// and reports the outcome on `done`.
    fn spawn_delivery(
        &self,
        permits: &Arc<Semaphore>,
        done: &mpsc::UnboundedSender<Done>,
        offset: u64,
        key: String,
        message: Arc<str>,
    ) {
        let (node, permits, done) = (self.topics.node.clone(), permits.clone(), done.clone());
        let target = EntityId::new(&self.subscriber, &key);
        let source = topic_entity(&self.topic);
        let command = self.command.clone();
        let invocation = Invocation {
            request_id: Some(format!("s/{}/{offset}/{command}", self.topic)),
            message: Some(TopicMessage {
                topic: self.topic.clone(),
                offset,
            }),
            ..Invocation::default()
        };
        let span = tracing::debug_span!(
            parent: None,
            "topic.deliver",
            topic = %self.topic,
            offset,
            target = %target,
            command = %command,
        );
        let delivery = async move {
            let mut pause = Duration::from_millis(50);
            let outcome = loop {
                let Some(node) = node.upgrade() else {
                    break None;
                };
                if node.entities.owner(&source).is_err() {
                    break None;
                }
                let tried = {
                    let Ok(_permit) = permits.acquire().await else {
                        break None;
                    };
                    attempt(&node, &target, &command, &message, &invocation).await
                };
                match tried {
                    Attempt::Done(outcome) => break Some(outcome),
                    Attempt::Retry(why) => {
                        node.metrics.effects.retried.inc();
                        tracing::debug!("delivering {offset} to {target} again later: {why}");
                    }
                }
                drop(node);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            };
            let _ = done.send((offset, key, outcome));
        };
        tokio::spawn(delivery.instrument(span));
    }
}
