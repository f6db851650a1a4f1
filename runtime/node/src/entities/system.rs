//! The host's own entities, which run Rust code instead of a guest and use the same journal,
//! rows, request ids and effect dispatcher as every other entity:
//!
//! - **`$topic/<name>`** is a topic's durable log. Its command `publish` appends the message
//!   (JSON) as the next journal entry, so a message's *offset* is its sequence number, topic
//!   order is journal order, and the log replicates, snapshots and fails over with its partition.
//!   Publishing is deduplicated by request id like any command, so an entity's `publish` effect
//!   (an outbox call to this entity) lands exactly once. Retention trims the oldest entries by
//!   count and age; an empty snapshot every [`TOPIC_SNAPSHOT_EVERY`] messages bounds what an
//!   activation reads.
//! - **`$partition/<key>`**, one per partition (the first key of the form `p<group>.<n>` that
//!   hashes to that partition), carries out broadcasts: its command `broadcast` lists the
//!   entities of the target type in its partition and writes one outbox call per entity, in
//!   chunks of [`BROADCAST_CHUNK`] (a longer list continues by a call to itself), so each entity
//!   gets the command exactly once through the ordinary delivery path.
//!
//! Users cannot address these types directly (the HTTP edge refuses types starting with `$`);
//! topics are published to through `POST /v1/topics/{topic}` and the `publish` effect.

use std::sync::atomic::Ordering;

use cella_core::{EntityId, JournalEntry, JournalPayload, OutboxItem, Recorded, Snapshot, Write};

use super::{
    Entities,
    activation::Loaded,
    effects::{EffectPlan, Invocation, Notice, replay_recorded},
    now_ms,
};
use crate::error::{Error, Result};

/// The entity type of topic logs.
pub const TOPIC_TYPE: &str = "$topic";
/// The entity type of the per-partition broadcast entities.
pub const PARTITION_TYPE: &str = "$partition";
/// A topic writes an (empty) snapshot every this many messages, so activation reads at most
/// this many journal entries.
const TOPIC_SNAPSHOT_EVERY: u64 = 256;
/// Retention is checked every this many messages.
const RETENTION_EVERY: u64 = 64;
/// Entities one `broadcast` command addresses before it continues in another.
const BROADCAST_CHUNK: usize = 1000;

/// Whether `entity_type` is one of the host's own.
pub fn is_system_type(entity_type: &str) -> bool {
    entity_type.starts_with('$')
}

/// The key of the broadcast entity of partition `group`, given how ids map to partitions.
pub fn partition_key(group: u64, partition_of: &dyn Fn(&EntityId) -> u64) -> String {
    (0u64..)
        .map(|n| format!("p{group}.{n}"))
        .find(|key| partition_of(&EntityId::new(PARTITION_TYPE, key)) == group)
        .unwrap_or_default()
}

/// What a `broadcast` command of a partition entity carries.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BroadcastOrder {
    pub(crate) entity_type: String,
    pub(crate) command: String,
    /// JSON text.
    pub(crate) payload: String,
    /// Continue after this key (a continuation of a long broadcast).
    #[serde(default)]
    pub(crate) after: Option<String>,
}

impl Entities {
    /// Runs a command of one of the host's own entity types.
    pub(super) async fn system_command(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        invocation: &Invocation,
    ) -> Result<String> {
        match (entity_type, command) {
            (TOPIC_TYPE, "publish") => self.publish(key, &payload, invocation).await,
            (PARTITION_TYPE, "broadcast") => self.broadcast_here(key, &payload, invocation).await,
            (TOPIC_TYPE | PARTITION_TYPE, _) => Err(Error::UnknownCommand {
                entity_type: entity_type.to_string(),
                command: command.to_string(),
                known: if entity_type == TOPIC_TYPE {
                    "publish".into()
                } else {
                    "broadcast".into()
                },
            }),
            _ => Err(Error::UnknownType(entity_type.to_string())),
        }
    }

    /// Loads a system entity into its slot: its sequence number only (it has no state).
    async fn ensure_system_loaded(&self, id: &EntityId, loaded: &mut Option<Loaded>) -> Result<()> {
        let lease = self.lease(id)?;
        if loaded.as_ref().is_some_and(|l| l.lease == lease) {
            self.metrics.cache_hit();
            return Ok(());
        }
        *loaded = None;
        self.metrics.cache_miss();
        if let Some(lease) = lease {
            self.journal.ready(id, lease).await?;
        }
        let seq = self.journal.load(id)?.last_seq();
        *loaded = Some(Loaded::system(seq, lease));
        Ok(())
    }

    /// Appends `message` to topic `topic`: `{"topic": T, "offset": O}`.
    async fn publish(&self, topic: &str, message: &str, invocation: &Invocation) -> Result<String> {
        cella_core::validate_name("topic", topic)?;
        let value: serde_json::Value = serde_json::from_str(message)
            .map_err(|e| Error::BadRequest(format!("the message is not JSON: {e}")))?;
        // Compact, so that it is one line of a Server-Sent Event.
        let message = value.to_string();
        let id = EntityId::new(TOPIC_TYPE, topic);
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_system_loaded(&id, &mut guard).await?;
        self.account(&slot, &id, guard.as_ref());
        let Some(loaded) = guard.as_mut() else {
            return Err(Error::Internal("topic vanished while locked".into()));
        };
        if let Some(request_id) = &invocation.request_id
            && let Some(recorded) = self.recorded(&id, loaded, request_id)?
        {
            drop(guard);
            self.journal.barrier(&id).await?;
            self.metrics.duplicate();
            return replay_recorded(recorded);
        }
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let at_ms = now_ms();
        let offset = loaded.seq + 1;
        let mut writes = vec![Write::Append(
            id.clone(),
            JournalEntry {
                seq: offset,
                command_id: self.command_id(n),
                command: "publish".into(),
                timestamp_ms: at_ms,
                module_version: 0,
                payload: JournalPayload::Events(vec![message.into_bytes()]),
            },
        )];
        if offset.is_multiple_of(TOPIC_SNAPSHOT_EVERY) {
            writes.push(Write::Snapshot(
                id.clone(),
                Snapshot {
                    seq: offset,
                    module_version: 0,
                    state: Vec::new(),
                },
            ));
        }
        if offset.is_multiple_of(RETENTION_EVERY)
            && let Some(upto) = self.retention_point(&id, offset, at_ms)?
        {
            writes.push(Write::Trim(id.clone(), upto));
        }
        let reply = serde_json::json!({"topic": topic, "offset": offset}).to_string();
        let mut plan = EffectPlan::default();
        if let Some(request_id) = &invocation.request_id {
            let recorded = Recorded::Ok(reply.clone());
            plan.processed(&id, request_id, recorded.clone(), at_ms)?;
            loaded.remember(request_id.clone(), recorded);
        }
        writes.append(&mut plan.writes);
        loaded.seq = offset;
        let lease = loaded.lease;
        let append = self.journal.append_leased(writes, lease);
        drop(guard);
        if let Err(e) = append.await {
            self.drop_from_cache(&id);
            return Err(e.into());
        }
        slot.durable_seq.fetch_max(offset, Ordering::AcqRel);
        self.metrics.topics.published(topic);
        self.notify(vec![Notice::Published {
            topic: topic.to_string(),
            offset,
        }]);
        Ok(reply)
    }

    /// The offset up to which topic `id` (last offset `offset`) may be trimmed now: beyond
    /// the retained count, and entries older than the retained age.
    fn retention_point(&self, id: &EntityId, offset: u64, now: u64) -> Result<Option<u64>> {
        let Some(first) = self.journal.read_journal(id, 0, 1)?.first().map(|e| e.seq) else {
            return Ok(None);
        };
        let keep = self.options.topic_keep.max(1);
        let mut upto = offset.saturating_sub(keep);
        let horizon = now.saturating_sub(self.options.topic_max_age.as_millis() as u64);
        // Entries older than the horizon, looked for in one bounded read.
        let old =
            self.journal
                .read_journal(id, first.max(upto + 1), 4 * RETENTION_EVERY as usize)?;
        if let Some(last_old) = old.iter().take_while(|e| e.timestamp_ms < horizon).last() {
            upto = upto.max(last_old.seq);
        }
        // The newest message is always kept, so the topic's offset survives.
        let upto = upto.min(offset - 1);
        Ok((upto >= first).then_some(upto))
    }

    /// Carries out a broadcast in this partition: one outbox call per entity of the type here.
    async fn broadcast_here(
        &self,
        key: &str,
        order: &str,
        invocation: &Invocation,
    ) -> Result<String> {
        let order: BroadcastOrder = serde_json::from_str(order)
            .map_err(|e| Error::BadRequest(format!("not a broadcast order: {e}")))?;
        let id = EntityId::new(PARTITION_TYPE, key);
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_system_loaded(&id, &mut guard).await?;
        self.account(&slot, &id, guard.as_ref());
        let Some(loaded) = guard.as_mut() else {
            return Err(Error::Internal(
                "partition entity vanished while locked".into(),
            ));
        };
        if let Some(request_id) = &invocation.request_id
            && let Some(recorded) = self.recorded(&id, loaded, request_id)?
        {
            drop(guard);
            self.journal.barrier(&id).await?;
            self.metrics.duplicate();
            return replay_recorded(recorded);
        }
        let group = self.partition_of(&id);
        let mut keys = Vec::new();
        let mut after = order.after.clone();
        let mut more = false;
        'scan: loop {
            let page =
                self.journal
                    .keys(&order.entity_type, after.as_deref(), 4 * BROADCAST_CHUNK)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for k in page {
                if self.partition_of(&EntityId::new(&order.entity_type, &k)) == group {
                    if keys.len() == BROADCAST_CHUNK {
                        more = true;
                        break 'scan;
                    }
                    keys.push(k);
                }
            }
            after = Some(last);
        }
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let command_id = self.command_id(n);
        let at_ms = now_ms();
        let mut plan = EffectPlan::default();
        let mut calls: Vec<(EntityId, String, String)> = keys
            .iter()
            .map(|k| {
                (
                    EntityId::new(&order.entity_type, k),
                    order.command.clone(),
                    order.payload.clone(),
                )
            })
            .collect();
        if more && let Some(last) = keys.last() {
            let rest = BroadcastOrder {
                after: Some(last.clone()),
                ..order
            };
            let rest = serde_json::to_string(&rest).map_err(|e| Error::Internal(e.to_string()))?;
            calls.push((id.clone(), "broadcast".into(), rest));
        }
        for (index, (target, command, payload)) in calls.into_iter().enumerate() {
            let item = OutboxItem {
                effect_id: format!("{command_id}.{index:06}"),
                target,
                command,
                payload,
                reply_to: None,
                created_ms: at_ms,
            };
            plan.outbox(&id, item)?;
        }
        let reply = serde_json::json!({"entities": keys.len(), "continues": more}).to_string();
        if let Some(request_id) = &invocation.request_id {
            let recorded = Recorded::Ok(reply.clone());
            plan.processed(&id, request_id, recorded.clone(), at_ms)?;
            loaded.remember(request_id.clone(), recorded);
        }
        if plan.writes.is_empty() {
            return Ok(reply);
        }
        let lease = loaded.lease;
        let append = self.journal.append_leased(plan.writes, lease);
        let handover = self.hand_over(&id, plan.notices);
        drop(guard);
        let done = append.await;
        self.settle(handover, done.is_ok());
        if let Err(e) = done {
            self.drop_from_cache(&id);
            return Err(e.into());
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_gets_a_key_that_maps_to_it() {
        let placement = cella_cluster::Placement::default();
        let of = move |id: &EntityId| placement.partition(id);
        let keys: Vec<String> = placement.groups().map(|g| partition_key(g, &of)).collect();
        for (g, key) in placement.groups().zip(&keys) {
            assert_eq!(of(&EntityId::new(PARTITION_TYPE, key)), g, "{key}");
        }
        // Stable: the same keys on every node and every start.
        assert_eq!(
            keys,
            placement
                .groups()
                .map(|g| partition_key(g, &of))
                .collect::<Vec<_>>()
        );
        assert_eq!(partition_key(0, &|_| 0), "p0.0");
        assert!(is_system_type(TOPIC_TYPE) && !is_system_type("topic"));
    }
}
