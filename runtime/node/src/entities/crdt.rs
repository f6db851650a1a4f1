//! The command paths of entities without a journal: **crdt** entities, run on the node that
//! received the command against its replica (`crate::crdt`), and **ephemeral value**
//! entities, run on their partition's leader against a state kept in memory only. Both call
//! the guest as the journaled path does (fair scheduling, a warm or fresh instance, the same
//! deadline and failures); neither has an outbox, so a guest answering with effects or a
//! `forward` fails its command, as does a crdt entity answering with a state or events, or an
//! ephemeral one answering with crdt operations.

use std::{collections::HashMap, sync::Arc, time::Duration};

use cella_core::{EntityId, Lease};
use cella_host::{CommandContext, Consistency, Failure, Instance, Outcome};

use super::{Entities, Invocation, now_ms};
use crate::{
    error::{Error, Result},
    registry::Active,
};

/// An ephemeral value entity's state, valid under the lease it was made under.
#[derive(Default)]
pub(super) struct Ephemeral {
    lease: Option<Lease>,
    /// Changes made under `lease` (the context's `sequence`).
    seq: u64,
    state: Option<Vec<u8>>,
}

/// The ephemeral value entities of this node.
pub(super) type EphemeralMap =
    std::sync::Mutex<HashMap<EntityId, Arc<tokio::sync::Mutex<Ephemeral>>>>;

impl Entities {
    /// Runs a command of a crdt entity here: a quorum read first when the invocation asks
    /// for one, then the guest on the value this node sees, then its operations on this
    /// node's replica (durable before the reply for a durable type), replicated to as many
    /// nodes as the stronger of the guest's and the invocation's consistency asks.
    pub(super) async fn crdt_command(
        &self,
        active: &Active,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        invocation: &Invocation,
    ) -> Result<String> {
        let crdts = self
            .crdts
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this node serves no crdt entities".into()))?;
        let descriptor = active.module.descriptor();
        let kind = descriptor
            .crdt
            .map(crate::crdt::kind_of)
            .ok_or_else(|| Error::Internal(format!("`{entity_type}` has no crdt type")))?;
        let durable = descriptor.durability == cella_host::Durability::Durable;
        if invocation.consistency > Consistency::Local {
            crate::crdt::read(crdts, entity_type, key, invocation.consistency).await?;
        }
        let id = EntityId::new(entity_type, key);
        let value = crdts.value(entity_type, key, kind).to_string();
        let ctx = self.context(entity_type, key, command, 0, invocation);
        let (outcome, instance) = self
            .run_guest(active, &id, &ctx, Some(value.as_bytes()), &payload)
            .await?;
        no_outbox(entity_type, &outcome, "a crdt")?;
        if outcome.state.is_some() || !outcome.events.is_empty() {
            return Err(Error::EntityFailed(format!(
                "`{entity_type}` is a crdt entity: it answers with crdt operations, not with a state or events"
            )));
        }
        let ops = outcome
            .crdt_ops
            .iter()
            .map(|op| crate::crdt::to_op(op, ctx.timestamp_ms))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(Error::EntityFailed)?;
        self.warm.put(&id, &active.module, instance);
        let delta = match ops.is_empty() {
            true => None,
            false => crdts.apply(entity_type, key, kind, &ops, durable).await?,
        };
        if let Some(delta) = delta {
            let consistency = outcome.consistency.max(invocation.consistency);
            crate::crdt::replicate(crdts, entity_type, key, &delta, consistency).await?;
        }
        Ok(outcome.reply)
    }

    /// Runs a command of an ephemeral value entity: on its partition's leader, against the
    /// state this node keeps in memory (none after a restart, or once the leadership it was
    /// made under has passed), one command at a time per entity, answered at once.
    pub(super) async fn ephemeral_command(
        &self,
        active: &Active,
        entity_type: &str,
        key: &str,
        command: &str,
        payload: String,
        invocation: &Invocation,
    ) -> Result<String> {
        let id = EntityId::new(entity_type, key);
        let lease = self.lease(&id)?;
        let cell = {
            let mut map = self
                .ephemeral
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(id.clone()).or_default().clone()
        };
        let mut entity = cell.lock().await;
        if entity.lease != lease {
            *entity = Ephemeral {
                lease,
                ..Ephemeral::default()
            };
        }
        let ctx = self.context(entity_type, key, command, entity.seq, invocation);
        let (outcome, instance) = self
            .run_guest(active, &id, &ctx, entity.state.as_deref(), &payload)
            .await?;
        no_outbox(entity_type, &outcome, "an ephemeral")?;
        if !outcome.crdt_ops.is_empty() {
            return Err(Error::EntityFailed(format!(
                "`{entity_type}` is a value entity: it answers with a state, not with crdt operations"
            )));
        }
        if let Some(state) = outcome.state {
            entity.state = Some(state);
            entity.seq += 1;
        }
        self.warm.put(&id, &active.module, instance);
        Ok(outcome.reply)
    }

    /// The state of an ephemeral value entity held here (`None`: it has none), with its
    /// sequence.
    pub(super) async fn ephemeral_state(&self, id: &EntityId) -> Result<(u64, Option<Vec<u8>>)> {
        let lease = self.lease(id)?;
        let cell = self
            .ephemeral
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        let Some(cell) = cell else {
            return Ok((0, None));
        };
        let entity = cell.lock().await;
        if entity.lease != lease {
            return Ok((0, None));
        }
        Ok((entity.seq, entity.state.clone()))
    }

    /// Forgets the ephemeral entities of a type (deleted or replaced).
    pub fn drop_ephemeral(&self, entity_type: &str) {
        self.ephemeral
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| id.entity_type != entity_type);
    }

    /// The context of a command that is not journaled.
    fn context(
        &self,
        entity_type: &str,
        key: &str,
        command: &str,
        sequence: u64,
        invocation: &Invocation,
    ) -> CommandContext {
        let n = self
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CommandContext {
            entity_type: entity_type.to_string(),
            key: key.to_string(),
            command_id: self.command_id(n),
            command: command.to_string(),
            timestamp_ms: now_ms(),
            random_seed: super::command::mix(self.boot_ms ^ n.rotate_left(32)),
            sequence,
            correlation: invocation.correlation.clone(),
            timer: invocation.timer.as_ref().map(|t| t.name.clone()),
            message: invocation.message.clone(),
        }
    }

    /// Calls the guest's `handle` under a scheduler slot, in the entity's warm instance or a
    /// fresh one; the guest's own failures and the host's become errors.
    async fn run_guest(
        &self,
        active: &Active,
        id: &EntityId,
        ctx: &CommandContext,
        state: Option<&[u8]>,
        payload: &str,
    ) -> Result<(Outcome, Instance)> {
        let deadline = active
            .limits
            .deadline_ms
            .map_or(self.options.deadline, |ms| {
                Duration::from_millis(ms).min(self.options.deadline)
            });
        let permit = self
            .scheduler
            .acquire(&id.entity_type, &active.limits, deadline)
            .await?;
        let (handled, instance) = self
            .handle_in_instance(id, &active.module, deadline, ctx, state, payload)
            .await
            .map_err(|e| self.map_host_error_within(e, deadline))?;
        drop(permit);
        match handled {
            Ok(Ok(outcome)) => Ok((outcome, instance)),
            Ok(Err(failure)) => Err(match failure {
                Failure::Rejected(m) => Error::Rejected(m),
                Failure::BadRequest(m) => Error::BadRequest(m),
                Failure::UnknownCommand(c) => Error::UnknownCommand {
                    entity_type: id.entity_type.clone(),
                    command: c,
                    known: active.command_list(),
                },
            }),
            Err(e) => Err(self.map_host_error_within(e, deadline)),
        }
    }
}

/// Fails an outcome with effects or a forward: `what` entities have no outbox.
fn no_outbox(entity_type: &str, outcome: &Outcome, what: &str) -> Result<()> {
    if outcome.effects.is_empty() && outcome.forward.is_none() {
        return Ok(());
    }
    Err(Error::EntityFailed(format!(
        "`{entity_type}` is {what} entity: it cannot call, publish, schedule, broadcast or forward \
         (those need a journaled entity's outbox)"
    )))
}
