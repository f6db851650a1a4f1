//! The command path: under the entity's lock, the cached state and the command go to a guest
//! instance (fresh, or the entity's warm one: `warm.rs`); its outcome becomes journal writes (with the rows of its effects and its
//! request id, in the same append) and advances the cached state; the lock is released while
//! the append commits, and the reply leaves once it is durable. A command whose request id was
//! processed before is answered from its record without running.

use std::{sync::atomic::Ordering, time::Duration};

use cella_core::{EntityId, EntityKind, JournalEntry, JournalPayload, Recorded, Snapshot, Write};
use cella_host::{Call, CommandContext, Failure, Instance};

use super::{
    Entities,
    activation::Loaded,
    effects::{EffectPlan, Invocation, recorded_failure, replay_recorded},
    now_ms, system,
};
use crate::{
    error::{Error, Result},
    registry::Active,
};

/// The request id under which a command with `request_id` forwards itself, so that the
/// forward is deduplicated at its target too.
fn forward_request_id(request_id: &str) -> String {
    format!("{request_id}/f")
}

/// splitmix64: spreads a counter into a well-mixed seed.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Entities {
    /// Runs one command and returns its JSON reply once its change is durable.
    pub async fn command(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
    ) -> Result<String> {
        self.invoke(entity_type, key, command, payload, &Invocation::default())
            .await
    }

    /// Runs one command delivered as `invocation` says (deduplicated by its request id, as a
    /// reply route, or fired by a timer).
    pub async fn invoke(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        invocation: &Invocation,
    ) -> Result<String> {
        self.command_at_depth(entity_type, key, command, payload, invocation, 0)
            .await
    }

    pub(super) async fn command_at_depth(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        invocation: &Invocation,
        depth: u32,
    ) -> Result<String> {
        cella_core::validate_name("key", key)?;
        if system::is_system_type(entity_type) {
            return self
                .system_command(entity_type, key, command, payload, invocation)
                .await;
        }
        let active = self.registry.get_loaded(entity_type).await?;
        if !active.has_command(command) {
            return Err(Error::UnknownCommand {
                entity_type: entity_type.to_string(),
                command: command.to_string(),
                known: active.command_list(),
            });
        }
        match (active.kind(), active.module.descriptor().durability) {
            (EntityKind::Crdt, _) => {
                return self
                    .crdt_command(&active, entity_type, key, command, payload, invocation)
                    .await;
            }
            (_, cella_host::Durability::Ephemeral) => {
                return self
                    .ephemeral_command(&active, entity_type, key, command, payload, invocation)
                    .await;
            }
            _ => {}
        }
        let id = EntityId::new(entity_type, key);
        // Entities led elsewhere get no cache slot (re-checked under the entity's lock).
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_loaded(&id, &active, &mut guard).await?;
        self.account(&slot, &id, guard.as_ref());
        let Some(loaded) = guard.as_mut() else {
            return Err(Error::Internal("entity vanished while locked".into()));
        };
        if let Some(request_id) = &invocation.request_id
            && let Some(recorded) = self.recorded(&id, loaded, request_id)?
        {
            // A duplicate: answered from the record, once the record is durable.
            drop(guard);
            self.journal.barrier(&id).await?;
            self.metrics.duplicate();
            if let Recorded::Forwarded {
                target,
                command,
                payload,
            } = recorded
            {
                let call = Call {
                    entity_type: target.entity_type,
                    key: target.key,
                    command,
                    payload,
                    reply_to: None,
                };
                return self
                    .forward_effect(call, Some(forward_request_id(request_id)), depth)
                    .await;
            }
            return replay_recorded(recorded);
        }
        if let Some(fire) = &invocation.timer
            && !Self::timer_is_current(loaded, fire)
        {
            return Err(Error::StaleTimer(fire.name.clone()));
        }
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let ctx = CommandContext {
            entity_type: entity_type.to_string(),
            key: key.to_string(),
            command_id: self.command_id(n),
            command: command.to_string(),
            timestamp_ms: now_ms(),
            random_seed: mix(self.boot_ms ^ n.rotate_left(32)),
            sequence: loaded.seq,
            correlation: invocation.correlation.clone(),
            timer: invocation.timer.as_ref().map(|t| t.name.clone()),
            message: invocation.message.clone(),
        };
        // The guest call runs under a slot of the scheduler (fair between types; a type over
        // its limits is refused before anything runs).
        let deadline = active
            .limits
            .deadline_ms
            .map_or(self.options.deadline, |ms| {
                Duration::from_millis(ms).min(self.options.deadline)
            });
        let permit = self
            .scheduler
            .acquire(entity_type, &active.limits, deadline)
            .await?;
        let handled = self
            .handle_in_instance(
                &id,
                &active.module,
                deadline,
                &ctx,
                loaded.state.as_deref(),
                &payload,
            )
            .await;
        drop(permit);
        let (observed_seq, lease) = (loaded.seq, loaded.lease);
        let mut plan = EffectPlan::default();
        if let Some(fire) = &invocation.timer {
            // A firing is consumed whatever the command's outcome: a timer whose command
            // fails does not fire again (a repeating one moves on).
            self.consume_timer(&id, fire, ctx.timestamp_ms, loaded, &mut plan)?;
        }
        let checked = match handled {
            Ok((Ok(Ok(outcome)), instance)) => self
                .check_effects(&active, &outcome.effects)
                .map(|()| (outcome, instance)),
            Ok((Ok(Err(failure)), _)) => Err(match failure {
                Failure::Rejected(m) => Error::Rejected(m),
                Failure::BadRequest(m) => Error::BadRequest(m),
                Failure::UnknownCommand(c) => Error::UnknownCommand {
                    entity_type: entity_type.to_string(),
                    command: c,
                    known: active.command_list(),
                },
            }),
            Ok((Err(e), _)) | Err(e) => Err(self.map_host_error_within(e, deadline)),
        };
        let (outcome, mut instance) = match checked {
            Ok(done) => done,
            Err(error) => {
                // Nothing of the command persists; its request id records the failure when it
                // is the entity's own answer, and a timer's firing is consumed.
                if let Some(request_id) = &invocation.request_id
                    && let Some(recorded) = recorded_failure(&error)
                {
                    plan.processed(&id, request_id, recorded.clone(), ctx.timestamp_ms)?;
                    loaded.remember(request_id.clone(), recorded);
                }
                if plan.writes.is_empty() {
                    drop(guard);
                    self.settle_read(&id, &slot, observed_seq, lease).await?;
                } else {
                    let append = self.journal.append_leased(plan.writes, lease);
                    drop(guard);
                    if let Err(e) = append.await {
                        self.drop_from_cache(&id);
                        return Err(e.into());
                    }
                    self.notify(plan.notices);
                }
                return Err(error);
            }
        };

        let mut writes = self
            .plan_writes(&id, &active, &ctx, loaded, &mut instance, &outcome)
            .await?;
        if let Some(topic) = &active.module.descriptor().events_topic
            && !outcome.events.is_empty()
        {
            self.publish_events(
                &id,
                &ctx,
                topic,
                loaded.seq,
                &outcome.events,
                &mut instance,
                &mut plan,
            )
            .await?;
        }
        // Kept for the entity's next command (its append is still to commit: if it fails, the
        // entity leaves the cache and `drop_from_cache` drops the instance too).
        self.warm.put(&id, &active.module, instance);
        self.plan_effects(
            &id,
            &ctx.command_id,
            ctx.timestamp_ms,
            &outcome.effects,
            loaded,
            &mut plan,
        )?;
        if let Some(request_id) = &invocation.request_id {
            let recorded = match &outcome.forward {
                Some(call) => Recorded::Forwarded {
                    target: EntityId::new(&call.entity_type, &call.key),
                    command: call.command.clone(),
                    payload: call.payload.clone(),
                },
                None => Recorded::Ok(outcome.reply.clone()),
            };
            plan.processed(&id, request_id, recorded.clone(), ctx.timestamp_ms)?;
            loaded.remember(request_id.clone(), recorded);
        }
        writes.append(&mut plan.writes);
        let new_seq = loaded.seq;
        let append = (!writes.is_empty()).then(|| self.journal.append_leased(writes, lease));
        let handover = self.hand_over(&id, plan.notices);
        self.account(&slot, &id, Some(loaded));
        drop(guard);
        match append {
            Some(fut) => {
                let done = fut.await;
                self.settle(handover, done.is_ok());
                if let Err(e) = done {
                    self.drop_from_cache(&id);
                    return Err(e.into());
                }
                slot.durable_seq.fetch_max(new_seq, Ordering::AcqRel);
            }
            None => self.settle_read(&id, &slot, new_seq, lease).await?,
        }
        drop(slot);

        if let Some(call) = outcome.forward {
            let request_id = invocation.request_id.as_deref().map(forward_request_id);
            return self.forward_effect(call, request_id, depth).await;
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
        if !outcome.crdt_ops.is_empty() {
            return Err(Error::EntityFailed(format!(
                "`{}` is {} entity: it cannot answer with crdt operations",
                id.entity_type,
                match active.kind() {
                    EntityKind::EventSourced => "an event-sourced",
                    _ => "a value",
                }
            )));
        }
        match active.kind() {
            EntityKind::Crdt => {
                return Err(Error::Internal(
                    "a crdt command on the journaled path".into(),
                ));
            }
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
                    None => instance
                        .fold(loaded.state.clone(), &outcome.events)
                        .await
                        .map_err(|e| self.map_host_error(e))?
                        .unwrap_or_default(),
                };
                let seq = loaded.seq + 1;
                writes.push(Write::Append(
                    id.clone(),
                    entry(seq, JournalPayload::Events(outcome.events.clone())),
                ));
                loaded.events_since_snapshot = loaded
                    .events_since_snapshot
                    .saturating_add(u32::try_from(outcome.events.len()).unwrap_or(u32::MAX));
                let every = match active.module.descriptor().snapshot_every {
                    0 => self.options.snapshot_every,
                    n => u64::from(n),
                };
                if u64::from(loaded.events_since_snapshot) >= every.max(1) {
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

    /// Publishes the events of journal entry `seq` to the type's events topic: one outbox call
    /// per event to the topic, `{"type", "key", "seq", "index", "event"}` (an event that is not
    /// JSON is rendered by the module).
    #[allow(clippy::too_many_arguments)]
    async fn publish_events(
        &self,
        id: &EntityId,
        ctx: &CommandContext,
        topic: &str,
        seq: u64,
        events: &[Vec<u8>],
        instance: &mut Instance,
        plan: &mut EffectPlan,
    ) -> Result<()> {
        for (index, event) in events.iter().enumerate() {
            let event: serde_json::Value = match serde_json::from_slice(event) {
                Ok(value) => value,
                Err(_) => {
                    let text = instance
                        .render_event(event)
                        .await
                        .map_err(|e| self.map_host_error(e))?;
                    serde_json::from_str(&text).map_err(|e| {
                        Error::EntityFailed(format!(
                            "render-event returned text that is not JSON: {e}"
                        ))
                    })?
                }
            };
            let message = serde_json::json!({
                "type": id.entity_type,
                "key": id.key,
                "seq": seq,
                "index": index,
                "event": event,
            });
            plan.outbox(
                id,
                cella_core::OutboxItem {
                    // After the command's own effects (`.<index>`) in row order.
                    effect_id: format!("{}.e{index:04}", ctx.command_id),
                    target: EntityId::new(system::TOPIC_TYPE, topic),
                    command: "publish".into(),
                    payload: message.to_string(),
                    reply_to: None,
                    created_ms: ctx.timestamp_ms,
                },
            )?;
        }
        Ok(())
    }
}
