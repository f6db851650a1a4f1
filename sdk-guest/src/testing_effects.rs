//! What a command asked of the host, as the test kit records it: [`Effect`]s (calls with their
//! reply routes, publications, timers, cancels, broadcasts) in the JSON form a test compares,
//! [`Handled`], everything the last successful command produced, and [`Failure`], why a
//! command failed.

use serde_json::Value;

use super::parse_json;
use crate::bindings::cella::entity::types as wit;

/// Why a command failed, as the host would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A business rule said no (or the entity's own code failed: `entity error: ...`).
    Rejected(String),
    /// The entity has no command of this name.
    UnknownCommand(String),
    /// The payload is not what the command expects.
    BadRequest(String),
    /// The host failed the command (HTTP 500 `entity_failed`): a crdt entity's operation that
    /// its data does not take ([`CrdtTestKit`](super::CrdtTestKit)).
    Failed(String),
}

impl Failure {
    /// The failure's message (the command name for `UnknownCommand`).
    pub fn message(&self) -> &str {
        match self {
            Failure::Rejected(m)
            | Failure::UnknownCommand(m)
            | Failure::BadRequest(m)
            | Failure::Failed(m) => m,
        }
    }
}

impl From<wit::Failure> for Failure {
    fn from(failure: wit::Failure) -> Self {
        match failure {
            wit::Failure::Rejected(m) => Failure::Rejected(m),
            wit::Failure::UnknownCommand(m) => Failure::UnknownCommand(m),
            wit::Failure::BadRequest(m) => Failure::BadRequest(m),
        }
    }
}

/// A command addressed to an entity, as requested by a handler.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub entity_type: String,
    pub key: String,
    pub command: String,
    pub payload: Value,
    /// Where the call's outcome goes ([`Context::call_with_reply`](crate::Context)); `None` for
    /// a fire-and-forget call or a forward.
    pub reply_to: Option<ReplyRoute>,
}

impl Call {
    /// A call without a reply route.
    pub fn new(
        entity_type: impl Into<String>,
        key: impl Into<String>,
        command: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            entity_type: entity_type.into(),
            key: key.into(),
            command: command.into(),
            payload,
            reply_to: None,
        }
    }

    /// The same call, with the reply route (`command`, `correlation`).
    pub fn with_reply(
        mut self,
        command: impl Into<String>,
        correlation: impl Into<String>,
    ) -> Self {
        self.reply_to = Some(ReplyRoute {
            command: command.into(),
            correlation: correlation.into(),
        });
        self
    }
}

/// The reply route of a call: the command its outcome comes back as, and the correlation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyRoute {
    pub command: String,
    pub correlation: String,
}

/// A timer requested by a handler ([`Context::schedule`](crate::Context::schedule),
/// [`Context::schedule_every`](crate::Context::schedule_every)).
#[derive(Clone, Debug, PartialEq)]
pub struct Timer {
    pub name: String,
    pub delay_ms: u64,
    /// The period of a repeating timer.
    pub every_ms: Option<u64>,
    pub command: String,
    pub payload: Value,
}

/// An effect requested by a handler, to run after the command commits.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// [`Context::call`](crate::Context::call) and
    /// [`Context::call_with_reply`](crate::Context::call_with_reply).
    Call(Call),
    /// [`Context::publish`](crate::Context::publish).
    Publish { topic: String, payload: Value },
    /// [`Context::schedule`](crate::Context::schedule) and
    /// [`Context::schedule_every`](crate::Context::schedule_every).
    Schedule(Timer),
    /// [`Context::cancel`](crate::Context::cancel): the timer's name.
    Cancel(String),
    /// [`Context::broadcast`](crate::Context::broadcast): `command` with `payload` to every
    /// existing entity of `entity_type`.
    Broadcast {
        entity_type: String,
        command: String,
        payload: Value,
    },
}

/// What the last successful command produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// The reply.
    pub reply: Value,
    /// Event-sourced: the events persisted, as JSON.
    pub events: Vec<Value>,
    /// Whether the command persisted anything (a new state or events).
    pub persisted: bool,
    /// The effects requested, in order.
    pub effects: Vec<Effect>,
    /// The forward requested, if any.
    pub forward: Option<Call>,
}

impl Handled {
    /// The calls requested, in order.
    pub fn calls(&self) -> Vec<&Call> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Call(call) => Some(call),
                _ => None,
            })
            .collect()
    }

    /// The timers scheduled, in order.
    pub fn timers(&self) -> Vec<&Timer> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Schedule(timer) => Some(timer),
                _ => None,
            })
            .collect()
    }

    /// The publications requested, in order: (topic, message).
    pub fn publications(&self) -> Vec<(&str, &Value)> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Publish { topic, payload } => Some((topic.as_str(), payload)),
                _ => None,
            })
            .collect()
    }

    /// The broadcasts requested, in order: (entity type, command, payload).
    pub fn broadcasts(&self) -> Vec<(&str, &str, &Value)> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Broadcast {
                    entity_type,
                    command,
                    payload,
                } => Some((entity_type.as_str(), command.as_str(), payload)),
                _ => None,
            })
            .collect()
    }

    /// The names of the timers cancelled, in order.
    pub fn cancels(&self) -> Vec<&str> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Cancel(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn call(call: wit::Call) -> Call {
    Call {
        entity_type: call.target.entity_type,
        key: call.target.key,
        command: call.command,
        payload: parse_json("call payload", &call.payload),
        reply_to: call.reply_to.map(|r| ReplyRoute {
            command: r.command,
            correlation: r.correlation,
        }),
    }
}

pub(super) fn effect(effect: wit::Effect) -> Effect {
    match effect {
        wit::Effect::Call(c) => Effect::Call(call(c)),
        wit::Effect::Publish(p) => Effect::Publish {
            topic: p.topic,
            payload: parse_json("publication payload", &p.payload),
        },
        wit::Effect::Schedule(t) => Effect::Schedule(Timer {
            name: t.name,
            delay_ms: t.delay_ms,
            every_ms: t.every_ms,
            command: t.command,
            payload: parse_json("timer payload", &t.payload),
        }),
        wit::Effect::Cancel(name) => Effect::Cancel(name),
        wit::Effect::Broadcast(b) => Effect::Broadcast {
            entity_type: b.entity_type,
            command: b.command,
            payload: parse_json("broadcast payload", &b.payload),
        },
    }
}
