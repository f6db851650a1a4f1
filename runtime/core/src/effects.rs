//! The records behind effects, kept by the host beside an entity's journal (the *rows* of an
//! entity): its outbox of calls awaiting delivery by the dispatcher, its durable timers, and
//! the ids of the commands it processed (for exactly-once delivery and client idempotency keys).
//!
//! Rows are written in the same append as the change that made them, so an effect exists iff
//! its command committed. Every row belongs to one entity and lives in one of two tables
//! ([`RowTable`]); its name says what it is: `o/<effect id>` an outbox item, `t/<timer name>` a
//! timer (both in [`RowTable::Effects`]), a request id in [`RowTable::Processed`].

use serde::{Deserialize, Serialize};

use crate::EntityId;

/// Which table of an entity's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowTable {
    /// Pending outbox items and timers: few per entity, all read when a partition's leader
    /// takes over.
    Effects,
    /// Processed request ids with their recorded outcome: many, read one at a time.
    Processed,
}

/// Row-name prefix of outbox items (in [`RowTable::Effects`]).
pub const OUTBOX_PREFIX: &str = "o/";
/// Row-name prefix of timers (in [`RowTable::Effects`]).
pub const TIMER_PREFIX: &str = "t/";

/// The row name of the outbox item `effect_id`.
pub fn outbox_row(effect_id: &str) -> String {
    format!("{OUTBOX_PREFIX}{effect_id}")
}

/// The row name of the timer `name`.
pub fn timer_row(name: &str) -> String {
    format!("{TIMER_PREFIX}{name}")
}

/// Where the outcome of a call goes: `command` on the calling entity, with `correlation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub command: String,
    pub correlation: String,
}

/// A call waiting in its caller's outbox until it is carried out (and its outcome delivered to
/// the reply route, if any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// `<command id>.<effect index>`: unique, and the base of the delivery's request id.
    pub effect_id: String,
    pub target: EntityId,
    pub command: String,
    /// JSON text.
    pub payload: String,
    pub reply_to: Option<ReplyTo>,
    /// When the command that made it ran (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

impl OutboxItem {
    /// The request id the target records, so a redelivery is answered without running again.
    pub fn request_id(&self, source: &EntityId) -> String {
        format!("e/{source}/{}", self.effect_id)
    }

    /// The request id of the delivery of its outcome to the caller's reply route.
    pub fn reply_request_id(&self) -> String {
        format!("r/{}", self.effect_id)
    }
}

/// A durable timer of an entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRow {
    pub name: String,
    /// The effect id of the `schedule` that made it: a timer replaced under the same name
    /// has another id, so a firing of the old one is recognised as stale.
    pub schedule_id: String,
    /// When it fires next (milliseconds since the Unix epoch).
    pub due_ms: u64,
    /// Repeat period; `None` fires once.
    pub every_ms: Option<u64>,
    pub command: String,
    /// JSON text.
    pub payload: String,
    /// How many times it fired.
    pub fired: u64,
}

/// The outcome of a processed command, as recorded for its request id and as delivered to a
/// reply route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recorded {
    /// The reply (JSON text).
    Ok(String),
    /// A failure: its stable code (`rejected`, `bad_request`, `unknown_command`,
    /// `unknown_type`, `failed`) and message.
    Err { code: String, message: String },
    /// The command handed itself on (`forward`): a duplicate sends the same forward again,
    /// under a request id derived from this one, and answers its recorded reply.
    Forwarded {
        target: EntityId,
        command: String,
        payload: String,
    },
}

impl Recorded {
    /// The outcome as a reply route's payload: `{"ok": <reply>}` or
    /// `{"error": {"code": C, "message": M}}`.
    pub fn envelope(&self) -> String {
        match self {
            Recorded::Ok(reply) => format!("{{\"ok\":{reply}}}"),
            Recorded::Forwarded { .. } => {
                "{\"error\":{\"code\":\"failed\",\"message\":\"forwarded\"}}".to_string()
            }
            Recorded::Err { code, message } => {
                let message = serde_json_string(message);
                let code = serde_json_string(code);
                format!("{{\"error\":{{\"code\":{code},\"message\":{message}}}}}")
            }
        }
    }
}

/// A processed request id's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processed {
    /// When it was processed (milliseconds since the Unix epoch); forgotten after the
    /// retention window.
    pub at_ms: u64,
    pub outcome: Recorded,
}

/// A JSON string literal (quotes and escapes) without a JSON library.
fn serde_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(
            Recorded::Ok("{\"a\":1}".into()).envelope(),
            "{\"ok\":{\"a\":1}}"
        );
        let err = Recorded::Err {
            code: "rejected".into(),
            message: "no \"way\"\n".into(),
        };
        assert_eq!(
            err.envelope(),
            "{\"error\":{\"code\":\"rejected\",\"message\":\"no \\\"way\\\"\\n\"}}"
        );
    }

    #[test]
    fn request_ids_are_per_source_and_effect() {
        let item = OutboxItem {
            effect_id: "c1.0".into(),
            target: EntityId::new("b", "k"),
            command: "x".into(),
            payload: "null".into(),
            reply_to: None,
            created_ms: 0,
        };
        assert_eq!(item.request_id(&EntityId::new("a", "1")), "e/a/1/c1.0");
        assert_eq!(item.reply_request_id(), "r/c1.0");
    }
}
