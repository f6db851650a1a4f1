//! The host's public data types for talking to an entity component — descriptor, command
//! context, outcome, effects, failures — the same whichever contract the component implements
//! (`convert.rs` maps them to and from each contract's generated bindings).

use cella_core::EntityKind;

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
}
