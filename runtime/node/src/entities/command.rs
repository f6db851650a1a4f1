//! The command path: under the entity's lock, the cached state and the command go to a fresh
//! guest instance; its outcome becomes journal writes and advances the cached state; the lock
//! is released while the append commits, and the reply leaves once it is durable.

use std::sync::atomic::Ordering;

use cella_core::{EntityId, EntityKind, JournalEntry, JournalPayload, Snapshot, Write};
use cella_host::{CommandContext, Failure, Instance};

use super::{Entities, activation::Loaded, now_ms};
use crate::{
    error::{Error, Result},
    registry::Active,
};

/// splitmix64: spreads a counter into a well-mixed seed.
fn mix(mut z: u64) -> u64 {
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
        self.command_at_depth(entity_type, key, command, payload, 0)
            .await
    }

    pub(super) async fn command_at_depth(
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
            return self.forward_effect(call, depth).await;
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
}
