//! Effects in the command path: how a command was delivered ([`Invocation`]: a request id to
//! deduplicate it, the correlation of a reply route, the timer that fired it), the rows its
//! outcome writes in the same append as its change (outbox items, timers, the processed
//! request id with its outcome), and the [`Notice`]s that tell the dispatcher about them once
//! they are durable.

use cella_core::{
    EntityId, OutboxItem, Processed, Recorded, ReplyTo, RowTable, TimerRow, Write, decode, encode,
    outbox_row, timer_row,
};
use cella_host::{Effect, TopicMessage};

use super::{Entities, activation::Loaded};
use crate::{
    error::{Error, Result},
    registry::Active,
};

/// How a command reaches its entity, beyond its name and payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// Deduplicates the command: a command whose request id the entity already processed is
    /// answered with the recorded outcome instead of running again (`e/…` deliveries of calls,
    /// `r/…` replies, `k/…` clients' idempotency keys).
    pub request_id: Option<String>,
    /// The correlation of the reply route this command answers.
    pub correlation: Option<String>,
    /// The timer firing this command.
    pub timer: Option<TimerFire>,
    /// The topic message this command delivers to a subscriber.
    pub message: Option<TopicMessage>,
    /// Crdt entities: how many nodes the command's read and write involve at least (the
    /// client's `?consistency=`).
    pub consistency: cella_host::Consistency,
}

/// Which firing of which timer a command is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerFire {
    pub name: String,
    pub schedule_id: String,
    pub fired: u64,
}

/// What a committed command hands to the effect dispatcher.
#[derive(Clone, Debug)]
pub enum Notice {
    /// A call to carry out, once `durable` (when set) says its append is durable (`Some(true)`;
    /// `Some(false)`: it failed, and the call does not exist). `trace` is the trace context of
    /// the command that made it, which its delivery's span continues (in memory only: a call
    /// read back from its row, after a restart or failover, starts a trace of its own).
    Outbox {
        source: EntityId,
        item: OutboxItem,
        durable: Option<tokio::sync::watch::Receiver<Option<bool>>>,
        trace: cella_cluster::mux::TraceContext,
    },
    /// A timer set (new, replaced, or its next firing).
    Timer { id: EntityId, timer: TimerRow },
    /// A timer removed (cancelled, or fired for the last time).
    TimerGone { id: EntityId, name: String },
    /// A message appended to a topic.
    Published { topic: String, offset: u64 },
}

/// The rows a command writes and the notices they become once durable.
#[derive(Default)]
pub(super) struct EffectPlan {
    pub(super) writes: Vec<Write>,
    pub(super) notices: Vec<Notice>,
}

impl EffectPlan {
    /// An outbox item of `id`.
    pub(super) fn outbox(&mut self, id: &EntityId, item: OutboxItem) -> Result<()> {
        self.writes.push(Write::Row {
            id: id.clone(),
            table: RowTable::Effects,
            name: outbox_row(&item.effect_id),
            value: Some(encode(&item).map_err(Error::Journal)?),
        });
        self.notices.push(Notice::Outbox {
            source: id.clone(),
            item,
            durable: None,
            trace: crate::trace::current(),
        });
        Ok(())
    }

    fn timer(&mut self, id: &EntityId, timer: TimerRow) -> Result<()> {
        self.writes.push(Write::Row {
            id: id.clone(),
            table: RowTable::Effects,
            name: timer_row(&timer.name),
            value: Some(encode(&timer).map_err(Error::Journal)?),
        });
        self.notices.push(Notice::Timer {
            id: id.clone(),
            timer,
        });
        Ok(())
    }

    fn timer_gone(&mut self, id: &EntityId, name: &str) {
        self.writes.push(Write::Row {
            id: id.clone(),
            table: RowTable::Effects,
            name: timer_row(name),
            value: None,
        });
        self.notices.push(Notice::TimerGone {
            id: id.clone(),
            name: name.to_string(),
        });
    }

    /// Records `outcome` for `request_id`.
    pub(super) fn processed(
        &mut self,
        id: &EntityId,
        request_id: &str,
        outcome: Recorded,
        at_ms: u64,
    ) -> Result<()> {
        let record = Processed { at_ms, outcome };
        self.writes.push(Write::Row {
            id: id.clone(),
            table: RowTable::Processed,
            name: request_id.to_string(),
            value: Some(encode(&record).map_err(Error::Journal)?),
        });
        Ok(())
    }
}

/// Checks that an effect's payload is JSON (a guest bug fails its own command, loudly).
fn json_payload(what: &str, payload: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(payload)
        .map(drop)
        .map_err(|e| Error::EntityFailed(format!("the {what}'s payload is not JSON: {e}")))
}

/// The recorded form of a command's failure, when it is the entity's own answer (deterministic,
/// so recorded for its request id and delivered to a reply route as data).
pub fn recorded_failure(error: &Error) -> Option<Recorded> {
    let (code, message) = match error {
        Error::Rejected(m) => ("rejected", m.clone()),
        Error::BadRequest(m) => ("bad_request", m.clone()),
        Error::UnknownCommand { .. } => ("unknown_command", error.to_string()),
        Error::UnknownType(_) => ("unknown_type", error.to_string()),
        Error::EntityFailed(_) | Error::DeadlineExceeded(_) => ("failed", error.to_string()),
        _ => return None,
    };
    Some(Recorded::Err {
        code: code.to_string(),
        message,
    })
}

/// A recorded outcome as the answer to a duplicate.
pub(super) fn replay_recorded(recorded: Recorded) -> Result<String> {
    match recorded {
        Recorded::Ok(reply) => Ok(reply),
        Recorded::Err { code, message } => Err(match code.as_str() {
            "rejected" => Error::Rejected(message),
            "bad_request" => Error::BadRequest(message),
            _ => Error::EntityFailed(message),
        }),
        Recorded::Forwarded { .. } => Err(Error::Internal(
            "a forwarded record is answered by forwarding again".into(),
        )),
    }
}

impl Entities {
    /// The outcome recorded for `request_id` of `id`: by a command of this activation, or in
    /// the store.
    pub(super) fn recorded(
        &self,
        id: &EntityId,
        loaded: &Loaded,
        request_id: &str,
    ) -> Result<Option<Recorded>> {
        if let Some(recorded) = loaded.recent(request_id) {
            return Ok(Some(recorded.clone()));
        }
        let Some(bytes) = self.journal.row(id, RowTable::Processed, request_id)? else {
            return Ok(None);
        };
        let record: Processed = decode(&bytes).map_err(Error::Journal)?;
        Ok(Some(record.outcome))
    }

    /// Checks the effects of an outcome before anything of it is applied: a command asking for
    /// an effect the node cannot carry out fails, loudly, instead of dropping it.
    pub(super) fn check_effects(&self, active: &Active, effects: &[Effect]) -> Result<()> {
        for effect in effects {
            match effect {
                Effect::Call(call) => {
                    cella_core::validate_name("call target type", &call.entity_type)?;
                    cella_core::validate_name("call target key", &call.key)?;
                    cella_core::validate_name("call command", &call.command)?;
                    if let Some(route) = &call.reply_to
                        && !active.has_command(&route.command)
                    {
                        return Err(Error::EntityFailed(format!(
                            "a call's reply route names the command `{}`, which this entity does not have (it has: {})",
                            route.command,
                            active.command_list()
                        )));
                    }
                }
                Effect::Schedule {
                    name,
                    command,
                    every_ms,
                    ..
                } => {
                    cella_core::validate_name("timer name", name)?;
                    if !active.has_command(command) {
                        return Err(Error::EntityFailed(format!(
                            "timer `{name}` names the command `{command}`, which this entity does not have"
                        )));
                    }
                    if *every_ms == Some(0) {
                        return Err(Error::EntityFailed(format!(
                            "timer `{name}` repeats every 0 ms (at least 1)"
                        )));
                    }
                }
                Effect::Cancel { name } => cella_core::validate_name("timer name", name)?,
                Effect::Broadcast {
                    entity_type,
                    command,
                    payload,
                } => {
                    cella_core::validate_name("broadcast type", entity_type)?;
                    cella_core::validate_name("broadcast command", command)?;
                    if super::is_system_type(entity_type) {
                        return Err(Error::EntityFailed(format!(
                            "the command broadcasts to type `{entity_type}`, which is reserved"
                        )));
                    }
                    if let Ok(target) = self.registry.get(entity_type)
                        && (target.module.descriptor().durability
                            != cella_host::Durability::Durable
                            || target.module.descriptor().crdt.is_some())
                    {
                        // A broadcast reaches the entities with a journal: these have none.
                        return Err(Error::EntityFailed(format!(
                            "the command broadcasts to type `{entity_type}`, whose entities are {} and cannot be reached by a broadcast (call them one by one)",
                            if target.module.descriptor().crdt.is_some() {
                                "crdt entities"
                            } else {
                                "ephemeral"
                            }
                        )));
                    }
                    json_payload("broadcast", payload)?;
                }
                Effect::Publish { topic, payload } => {
                    cella_core::validate_name("topic", topic)?;
                    json_payload("publication", payload)?;
                }
            }
        }
        Ok(())
    }

    /// The rows of a committed command's effects (`effects` checked by [`Self::check_effects`]),
    /// applied to the entity's cached timers.
    pub(super) fn plan_effects(
        &self,
        id: &EntityId,
        command_id: &str,
        now_ms: u64,
        effects: &[Effect],
        loaded: &mut Loaded,
        plan: &mut EffectPlan,
    ) -> Result<()> {
        for (index, effect) in effects.iter().enumerate() {
            // Fixed width, so that a command's outbox rows sort in effect order.
            let effect_id = format!("{command_id}.{index:04}");
            match effect {
                Effect::Call(call) => {
                    let item = OutboxItem {
                        effect_id: effect_id.clone(),
                        target: EntityId::new(&call.entity_type, &call.key),
                        command: call.command.clone(),
                        payload: call.payload.clone(),
                        reply_to: call.reply_to.as_ref().map(|r| ReplyTo {
                            command: r.command.clone(),
                            correlation: r.correlation.clone(),
                        }),
                        created_ms: now_ms,
                    };
                    plan.outbox(id, item)?;
                }
                Effect::Publish { topic, payload } => {
                    plan.outbox(
                        id,
                        OutboxItem {
                            effect_id,
                            target: EntityId::new(super::TOPIC_TYPE, topic),
                            command: "publish".into(),
                            payload: payload.clone(),
                            reply_to: None,
                            created_ms: now_ms,
                        },
                    )?;
                }
                Effect::Broadcast {
                    entity_type,
                    command,
                    payload,
                } => {
                    let order = serde_json::to_string(&super::BroadcastOrder {
                        entity_type: entity_type.clone(),
                        command: command.clone(),
                        payload: payload.clone(),
                        after: None,
                    })
                    .map_err(|e| Error::Internal(e.to_string()))?;
                    // One call per partition's broadcast entity, which calls each entity there.
                    for (p, key) in self.partition_keys.iter().enumerate() {
                        plan.outbox(
                            id,
                            OutboxItem {
                                effect_id: format!("{effect_id}.{p:04}"),
                                target: EntityId::new(super::PARTITION_TYPE, key),
                                command: "broadcast".into(),
                                payload: order.clone(),
                                reply_to: None,
                                created_ms: now_ms,
                            },
                        )?;
                    }
                }
                Effect::Schedule {
                    name,
                    delay_ms,
                    command,
                    payload,
                    every_ms,
                } => {
                    let timer = TimerRow {
                        name: name.clone(),
                        schedule_id: effect_id,
                        due_ms: now_ms.saturating_add(*delay_ms),
                        every_ms: *every_ms,
                        command: command.clone(),
                        payload: payload.clone(),
                        fired: 0,
                    };
                    loaded.set_timer(timer.clone());
                    plan.timer(id, timer)?;
                }
                Effect::Cancel { name } => {
                    if loaded.remove_timer(name).is_some() {
                        plan.timer_gone(id, name);
                    }
                }
            }
        }
        Ok(())
    }

    /// Consumes the firing `fire` of a timer: a one-shot timer is removed, a repeating one
    /// moves to its next time (skipping times that passed while nobody fired it).
    pub(super) fn consume_timer(
        &self,
        id: &EntityId,
        fire: &TimerFire,
        now_ms: u64,
        loaded: &mut Loaded,
        plan: &mut EffectPlan,
    ) -> Result<()> {
        let Some(timer) = loaded.timer(&fire.name).cloned() else {
            return Ok(());
        };
        match timer.every_ms {
            None => {
                loaded.remove_timer(&fire.name);
                plan.timer_gone(id, &fire.name);
            }
            Some(every) => {
                let mut next = timer.due_ms.saturating_add(every);
                if next <= now_ms {
                    next = now_ms.saturating_add(every);
                }
                let timer = TimerRow {
                    due_ms: next,
                    fired: timer.fired + 1,
                    ..timer
                };
                loaded.set_timer(timer.clone());
                plan.timer(id, timer)?;
            }
        }
        Ok(())
    }

    /// Whether `fire` is the current firing of a timer the entity has.
    pub(super) fn timer_is_current(loaded: &Loaded, fire: &TimerFire) -> bool {
        loaded
            .timer(&fire.name)
            .is_some_and(|t| t.schedule_id == fire.schedule_id && t.fired == fire.fired)
    }
}
