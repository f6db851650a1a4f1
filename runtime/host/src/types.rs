//! The host's public data types for talking to an entity component — descriptor, command
//! context, outcome, effects, failures — and their conversions from the generated bindings.

use cella_core::EntityKind;

use crate::bindings::cella::entity::types as wit;

/// What an entity declares about itself (`describe`), read once when its module is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub kind: EntityKind,
    /// Names of the commands the entity accepts; non-empty and unique.
    pub commands: Vec<String>,
    /// Event-sourced: take a snapshot every this many events (0 = host default).
    pub snapshot_every: u32,
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
        Ok(())
    }
}

impl From<wit::Descriptor> for Descriptor {
    fn from(d: wit::Descriptor) -> Self {
        Descriptor {
            kind: match d.kind {
                wit::EntityKind::Value => EntityKind::Value,
                wit::EntityKind::EventSourced => EntityKind::EventSourced,
            },
            commands: d.commands,
            snapshot_every: d.snapshot_every,
        }
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
}

impl CommandContext {
    pub(crate) fn to_wit(&self) -> wit::Context {
        wit::Context {
            entity_type: self.entity_type.clone(),
            key: self.key.clone(),
            command_id: self.command_id.clone(),
            command: self.command.clone(),
            timestamp_ms: self.timestamp_ms,
            random_seed: self.random_seed,
            sequence: self.sequence,
        }
    }
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
}

impl From<wit::Outcome> for Outcome {
    fn from(o: wit::Outcome) -> Self {
        Outcome {
            events: o.events,
            state: o.state,
            reply: o.reply,
            forward: o.forward.map(Call::from),
            effects: o.effects.into_iter().map(Effect::from).collect(),
        }
    }
}

/// A command sent to an entity. `payload` is JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub entity_type: String,
    pub key: String,
    pub command: String,
    pub payload: String,
}

impl From<wit::Call> for Call {
    fn from(c: wit::Call) -> Self {
        Call {
            entity_type: c.target.entity_type,
            key: c.target.key,
            command: c.command,
            payload: c.payload,
        }
    }
}

/// A side effect to carry out after the change is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send a command to another entity.
    Call(Call),
    /// Publish a message (JSON text) to a topic.
    Publish { topic: String, payload: String },
    /// Send `command` with `payload` to this same entity after `delay_ms`.
    Schedule {
        name: String,
        delay_ms: u64,
        command: String,
        payload: String,
    },
}

impl From<wit::Effect> for Effect {
    fn from(e: wit::Effect) -> Self {
        match e {
            wit::Effect::Call(c) => Effect::Call(c.into()),
            wit::Effect::Publish(p) => Effect::Publish {
                topic: p.topic,
                payload: p.payload,
            },
            wit::Effect::Schedule(t) => Effect::Schedule {
                name: t.name,
                delay_ms: t.delay_ms,
                command: t.command,
                payload: t.payload,
            },
        }
    }
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

impl From<wit::Failure> for Failure {
    fn from(f: wit::Failure) -> Self {
        match f {
            wit::Failure::Rejected(m) => Failure::Rejected(m),
            wit::Failure::UnknownCommand(m) => Failure::UnknownCommand(m),
            wit::Failure::BadRequest(m) => Failure::BadRequest(m),
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
        }
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
    }

    #[test]
    fn converts_outcome() {
        let o = wit::Outcome {
            events: vec![b"e".to_vec()],
            state: Some(b"s".to_vec()),
            reply: "{}".into(),
            forward: Some(wit::Call {
                target: wit::Address {
                    entity_type: "cart".into(),
                    key: "k".into(),
                },
                command: "add".into(),
                payload: "1".into(),
            }),
            effects: vec![
                wit::Effect::Publish(wit::Publication {
                    topic: "t".into(),
                    payload: "p".into(),
                }),
                wit::Effect::Schedule(wit::Timer {
                    name: "n".into(),
                    delay_ms: 5,
                    command: "c".into(),
                    payload: "null".into(),
                }),
            ],
        };
        let o = Outcome::from(o);
        assert_eq!(o.forward.as_ref().unwrap().entity_type, "cart");
        assert_eq!(
            o.effects[0],
            Effect::Publish {
                topic: "t".into(),
                payload: "p".into()
            }
        );
        assert!(matches!(o.effects[1], Effect::Schedule { delay_ms: 5, .. }));
    }
}
