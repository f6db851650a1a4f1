//! The host's public data types for talking to an entity component — descriptor, command
//! context, outcome, effects, failures — the same whichever contract the component implements
//! (`convert.rs` maps them to and from each contract's generated bindings).

use cella_core::EntityKind;

use crate::{Consistency, CrdtOp, CrdtType, Durability};

/// What an entity declares about itself (`describe`), read once when its module is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub kind: EntityKind,
    /// Names of the commands the entity accepts; non-empty and unique.
    pub commands: Vec<String>,
    /// Event-sourced: take a snapshot every this many events (0 = host default).
    pub snapshot_every: u32,
    /// Topics the type subscribes to (none from a `cella:entity@0.1.0` component).
    pub subscriptions: Vec<Subscription>,
    /// Event-sourced: the topic every persisted event is published to.
    pub events_topic: Option<String>,
    /// Whether the state outlives the process (always durable from a `cella:entity@0.1.0`
    /// component).
    pub durability: Durability,
    /// crdt entities: the type of their data.
    pub crdt: Option<CrdtType>,
}

/// Entities of a type receive the messages of `topic` as `command`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub topic: String,
    pub command: String,
    pub key: SubscriberKey,
}

/// How a subscription picks the entity (or entities) receiving a message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriberKey {
    /// A JSON pointer into the message: a string or number names one entity, an array of them
    /// one entity per element.
    Pointer(String),
    /// Always this entity.
    Fixed(String),
}

impl SubscriberKey {
    /// The keys of the entities that receive `message` (JSON text); an error says why there
    /// are none.
    pub fn keys_of(&self, message: &str) -> Result<Vec<String>, String> {
        let pointer = match self {
            SubscriberKey::Fixed(key) => return Ok(vec![key.clone()]),
            SubscriberKey::Pointer(p) => p,
        };
        let value: serde_json::Value =
            serde_json::from_str(message).map_err(|e| format!("the message is not JSON: {e}"))?;
        let at = value
            .pointer(pointer)
            .ok_or_else(|| format!("the message has nothing at `{pointer}`"))?;
        let one = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(format!(
                "the message has {other} at `{pointer}` (a key is a string or a number)"
            )),
        };
        let keys = match at {
            serde_json::Value::Array(items) => items.iter().map(one).collect::<Result<_, _>>()?,
            v => vec![one(v)?],
        };
        for key in &keys {
            cella_core::validate_name("subscriber key", key).map_err(|e| e.to_string())?;
        }
        Ok(keys)
    }
}

/// Where a message delivered to a subscriber comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    pub topic: String,
    /// The message's offset in the topic (1 for the first message).
    pub offset: u64,
}

impl Descriptor {
    /// Whether the entity declares a command of this name.
    pub fn has_command(&self, name: &str) -> bool {
        self.commands.iter().any(|c| c == name)
    }

    /// Checks what a guest declared: at least one command, valid and unique names.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.commands.is_empty() {
            return Err("the descriptor declares no commands".into());
        }
        for (i, name) in self.commands.iter().enumerate() {
            cella_core::validate_name("command name", name).map_err(|e| e.to_string())?;
            if self.commands[..i].contains(name) {
                return Err(format!("the descriptor declares command `{name}` twice"));
            }
        }
        for s in &self.subscriptions {
            cella_core::validate_name("subscription topic", &s.topic).map_err(|e| e.to_string())?;
            if !self.has_command(&s.command) {
                return Err(format!(
                    "the subscription to topic `{}` names the command `{}`, which is not declared",
                    s.topic, s.command
                ));
            }
            match &s.key {
                SubscriberKey::Pointer(p) if !p.is_empty() && !p.starts_with('/') => {
                    return Err(format!(
                        "the subscription to topic `{}` has the key pointer `{p}` (a JSON pointer is empty or starts with `/`)",
                        s.topic
                    ));
                }
                SubscriberKey::Fixed(k) => {
                    cella_core::validate_name("subscriber key", k).map_err(|e| e.to_string())?
                }
                SubscriberKey::Pointer(_) => {}
            }
        }
        match (self.kind, self.crdt) {
            (EntityKind::Crdt, None) => {
                return Err("the descriptor declares a crdt entity without its crdt type".into());
            }
            (EntityKind::Value | EntityKind::EventSourced, Some(crdt)) => {
                return Err(format!(
                    "the descriptor names the crdt type `{}`, but the entity is {}",
                    crdt.as_str(),
                    self.kind.as_str()
                ));
            }
            _ => {}
        }
        if self.kind == EntityKind::EventSourced && self.durability == Durability::Ephemeral {
            return Err(
                "an event-sourced entity cannot be ephemeral (its state is its journal)".into(),
            );
        }
        if self.kind == EntityKind::Crdt && !self.subscriptions.is_empty() {
            return Err(
                "a crdt entity cannot subscribe to topics (deliveries need its partition's journal)"
                    .into(),
            );
        }
        if self.durability == Durability::Ephemeral && !self.subscriptions.is_empty() {
            return Err(
                "an ephemeral entity cannot subscribe to topics (deliveries are journaled)".into(),
            );
        }
        if let Some(topic) = &self.events_topic {
            cella_core::validate_name("events topic", topic).map_err(|e| e.to_string())?;
            if self.kind != EntityKind::EventSourced {
                return Err(format!(
                    "the descriptor publishes its events to topic `{topic}`, but the entity is not event-sourced"
                ));
            }
        }
        Ok(())
    }
}

/// Everything non-deterministic a handler may use, chosen (and journaled) by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    pub entity_type: String,
    pub key: String,
    /// Unique id of the command; stable across replays and retries.
    pub command_id: String,
    /// The command's name.
    pub command: String,
    /// Wall-clock time of the command, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Seed for any randomness the handler needs.
    pub random_seed: u64,
    /// Journal sequence number of the entity before this command (0 for a new entity).
    pub sequence: u64,
    /// Set when this command is the answer to a [`Call`] that named it in its
    /// [`reply_to`](Call::reply_to): the correlation the caller gave. Not passed to a
    /// `cella:entity@0.1.0` component (its context has no such field).
    pub correlation: Option<String>,
    /// Set when a timer fired this command: the timer's name. Not passed to a
    /// `cella:entity@0.1.0` component.
    pub timer: Option<String>,
    /// Set when this command delivers a topic message. Not passed to a `cella:entity@0.1.0`
    /// component.
    pub message: Option<TopicMessage>,
}

/// What a successful handler produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Event-sourced: the events to persist, in order (empty = no change).
    pub events: Vec<Vec<u8>>,
    /// Value entities: the state to persist (`None` = unchanged). Event-sourced entities: the
    /// fold of `events` over the old state (`None` = fold them with `apply`).
    pub state: Option<Vec<u8>>,
    /// The reply, as JSON text. Ignored when `forward` is set.
    pub reply: String,
    /// Hand the command on to another entity; its reply becomes this command's reply.
    pub forward: Option<Call>,
    /// Effects to run after the change is durable.
    pub effects: Vec<Effect>,
    /// crdt entities: the operations to apply, in order.
    pub crdt_ops: Vec<CrdtOp>,
    /// crdt entities: how many nodes must hold the change before the reply.
    pub consistency: Consistency,
}

/// A command sent to an entity. `payload` is JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub entity_type: String,
    pub key: String,
    pub command: String,
    pub payload: String,
    /// Where the outcome of the call goes, as a command on the calling entity (always `None`
    /// from a `cella:entity@0.1.0` component).
    pub reply_to: Option<ReplyRoute>,
}

/// Where the outcome of a [`Call`] goes: `command` on the calling entity, with `correlation` in
/// its [`CommandContext::correlation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyRoute {
    pub command: String,
    pub correlation: String,
}

/// A side effect to carry out after the change is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send a command to another entity.
    Call(Call),
    /// Publish a message (JSON text) to a topic.
    Publish { topic: String, payload: String },
    /// Send `command` with `payload` to this same entity after `delay_ms`, then every
    /// `every_ms` until cancelled when that is set (always `None` from a `cella:entity@0.1.0`
    /// component). A timer of the same name replaces it.
    Schedule {
        name: String,
        delay_ms: u64,
        command: String,
        payload: String,
        every_ms: Option<u64>,
    },
    /// Cancel this entity's timer of that name (nothing if there is none).
    Cancel { name: String },
    /// Send `command` with `payload` to every entity of `entity_type` that exists when it is
    /// carried out (never from a `cella:entity@0.1.0` component).
    Broadcast {
        entity_type: String,
        command: String,
        payload: String,
    },
}

/// Why a command did not succeed (the guest's answer, not a host error). Nothing is persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A business rule said no; the message is meant for the caller.
    Rejected(String),
    /// The entity has no command of this name.
    UnknownCommand(String),
    /// The payload is not what the command expects.
    BadRequest(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Rejected(m) => write!(f, "rejected: {m}"),
            Failure::UnknownCommand(m) => write!(f, "unknown command: {m}"),
            Failure::BadRequest(m) => write!(f, "bad request: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(commands: &[&str]) -> Descriptor {
        Descriptor {
            kind: EntityKind::Value,
            commands: commands.iter().map(|c| c.to_string()).collect(),
            snapshot_every: 0,
            subscriptions: Vec::new(),
            events_topic: None,
            durability: Durability::Durable,
            crdt: None,
        }
    }

    #[test]
    fn crdt_and_ephemeral_descriptors() {
        let mut d = descriptor(&["like"]);
        d.kind = EntityKind::Crdt;
        assert!(d.validate().unwrap_err().contains("without its crdt type"));
        d.crdt = Some(CrdtType::PnCounter);
        assert!(d.validate().is_ok());
        d.durability = Durability::Ephemeral;
        assert!(d.validate().is_ok());
        d.kind = EntityKind::Value;
        assert!(d.validate().unwrap_err().contains("`pn-counter`"));
        d.crdt = None;
        assert!(d.validate().is_ok());
        d.kind = EntityKind::EventSourced;
        assert!(d.validate().unwrap_err().contains("cannot be ephemeral"));
    }

    #[test]
    fn descriptor_validation() {
        assert!(descriptor(&["add", "get"]).validate().is_ok());
        assert!(
            descriptor(&[])
                .validate()
                .unwrap_err()
                .contains("no commands")
        );
        assert!(
            descriptor(&["add", "add"])
                .validate()
                .unwrap_err()
                .contains("twice")
        );
        assert!(descriptor(&["a/b"]).validate().is_err());
        assert!(descriptor(&[""]).validate().is_err());
        let mut d = descriptor(&["on"]);
        d.subscriptions.push(Subscription {
            topic: "news".into(),
            command: "off".into(),
            key: SubscriberKey::Fixed("k".into()),
        });
        assert!(d.validate().unwrap_err().contains("`off`"));
        d.subscriptions[0].command = "on".into();
        assert!(d.validate().is_ok());
        d.subscriptions[0].key = SubscriberKey::Pointer("id".into());
        assert!(d.validate().unwrap_err().contains("JSON pointer"));
        d.subscriptions.clear();
        d.events_topic = Some("events".into());
        assert!(d.validate().unwrap_err().contains("not event-sourced"));
    }

    #[test]
    fn subscriber_keys_from_messages() {
        let p = SubscriberKey::Pointer("/to".into());
        assert_eq!(p.keys_of(r#"{"to":"a"}"#).unwrap(), vec!["a"]);
        assert_eq!(p.keys_of(r#"{"to":7}"#).unwrap(), vec!["7"]);
        assert_eq!(p.keys_of(r#"{"to":["a","b"]}"#).unwrap(), vec!["a", "b"]);
        assert!(
            p.keys_of(r#"{"from":"a"}"#)
                .unwrap_err()
                .contains("nothing at")
        );
        assert!(p.keys_of(r#"{"to":{"x":1}}"#).is_err());
        assert!(p.keys_of(r#"{"to":"a/b"}"#).is_err());
        assert!(p.keys_of("not json").is_err());
        let f = SubscriberKey::Fixed("all".into());
        assert_eq!(f.keys_of("not json").unwrap(), vec!["all"]);
    }
}
