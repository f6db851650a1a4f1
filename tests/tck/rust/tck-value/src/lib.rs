//! The TCK's value model (`tck-value`, see tests/tck/SPEC.md): `process` runs a list of actions
//! (`update`, `append`, `fail`, `forward`, `call`, `publish`, `broadcast`, `schedule`, `cancel`)
//! against a working copy of the state `{"value": "<string>"}`; `get` replies the state;
//! `context` replies the command context; `on-reply`, the reply route of calls, appends their
//! outcomes to the state; `on-message`, the subscriber of topic `tck-news` (the entities named
//! at `/to` in a message), appends `T@O:S;`. The SDK persists the state only when a command
//! changed it and no `fail` ran. The isolation actions (`remember`, `spin`, `crash`) show
//! whether a module-level global survives from one command to another (it must not).

use std::cell::RefCell;

use cella_sdk::{
    CallReply, Context, Rejection, Reply, Result, Subscription, Value, ValueEntity, json,
};
use serde::{Deserialize, Serialize};

/// The state: one string.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TckValue {
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Process(Process),
    Get,
    Context,
    OnReply(CallReply<Value>),
    OnMessage(News),
}

/// The payload of `process`.
#[derive(Deserialize)]
pub struct Process {
    pub actions: Vec<Action>,
}

/// One action of `process`: an object with exactly one key.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Update(String),
    Append(String),
    Fail(String),
    Forward(Target),
    Call(CallTarget),
    Publish(Publication),
    Broadcast(BroadcastTarget),
    Schedule(Timer),
    Cancel(String),
    Remember(String),
    Spin(bool),
    Crash(String),
}

/// A command for another entity (`forward`).
#[derive(Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub key: String,
    pub command: String,
    #[serde(default)]
    pub payload: Value,
}

/// A command for every existing entity of a type (`broadcast`).
#[derive(Deserialize)]
pub struct BroadcastTarget {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub command: String,
    #[serde(default)]
    pub payload: Value,
}

/// The argument of `call`: a command for another entity, and where its outcome goes.
#[derive(Deserialize)]
pub struct CallTarget {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub key: String,
    pub command: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(rename = "replyTo", default)]
    pub reply_to: Option<ReplyTo>,
}

/// A call's reply route.
#[derive(Deserialize)]
pub struct ReplyTo {
    pub command: String,
    pub correlation: String,
}

/// The argument of `publish`.
#[derive(Deserialize)]
pub struct Publication {
    pub topic: String,
    #[serde(default)]
    pub payload: Value,
}

/// The message of topic `tck-news`, the payload of `on-message` (`to` names the receivers).
#[derive(Deserialize)]
pub struct News {
    pub text: String,
}

/// The argument of `schedule`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    pub name: String,
    pub delay_ms: u64,
    pub command: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub every_ms: Option<u64>,
}

impl ValueEntity for TckValue {
    type Command = Command;

    fn subscriptions() -> Vec<Subscription> {
        vec![Subscription::to("tck-news", "on-message").key_pointer("/to")]
    }

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Process(Process { actions }) => {
                for action in actions {
                    match action {
                        Action::Update(value) => self.value = value,
                        Action::Append(text) => self.value.push_str(&text),
                        Action::Fail(message) => return Err(message.into()),
                        Action::Forward(t) => {
                            ctx.forward(t.entity_type, t.key, t.command, &t.payload)
                        }
                        Action::Call(t) => call(ctx, t),
                        Action::Publish(p) => ctx.publish(p.topic, &p.payload),
                        Action::Broadcast(b) => ctx.broadcast(b.entity_type, b.command, &b.payload),
                        Action::Schedule(t) => schedule(ctx, t),
                        Action::Cancel(name) => ctx.cancel(name),
                        Action::Remember(text) => self.value.push_str(&remember(text)),
                        Action::Spin(forever) => spin(forever),
                        Action::Crash(message) => panic!("{message}"),
                    }
                }
                Ok(json!({ "value": self.value }))
            }
            Command::Get => Ok(json!({ "value": self.value })),
            Command::Context => Ok(json!({
                "entityType": ctx.entity_type(),
                "key": ctx.key(),
                "command": ctx.command(),
                "commandId": ctx.command_id(),
                "sequence": ctx.sequence(),
                "timestampMs": ctx.timestamp_ms(),
                "randomSeed": ctx.random_seed(),
            })),
            Command::OnReply(outcome) => {
                let Some(correlation) = ctx.correlation() else {
                    return Err(Rejection::bad_request(
                        "command `on-reply`: not the reply route of a call (no correlation)",
                    ));
                };
                let mark = match outcome {
                    CallReply::Ok(reply) => {
                        let text = reply.get("value").and_then(Value::as_str).unwrap_or("");
                        format!("{correlation}:ok:{text};")
                    }
                    CallReply::Error(e) => format!("{correlation}:{}:{};", e.code, e.message),
                };
                self.value.push_str(&mark);
                Ok(json!({ "value": self.value }))
            }
            Command::OnMessage(News { text }) => {
                let Some(m) = ctx.message() else {
                    return Err(Rejection::bad_request(
                        "command `on-message`: not the delivery of a topic message",
                    ));
                };
                let mark = format!("{}@{}:{text};", m.topic, m.offset);
                self.value.push_str(&mark);
                Ok(json!({ "value": self.value }))
            }
        }
    }
}

/// The `call` action: fire-and-forget, or with a reply route.
fn call(ctx: &mut Context, t: CallTarget) {
    match t.reply_to {
        None => ctx.call(t.entity_type, t.key, t.command, &t.payload),
        Some(r) => ctx.call_with_reply(
            t.entity_type,
            t.key,
            t.command,
            &t.payload,
            r.command,
            r.correlation,
        ),
    }
}

/// The `schedule` action: once, or repeating with `everyMs`.
fn schedule(ctx: &mut Context, t: Timer) {
    match t.every_ms {
        None => ctx.schedule(t.name, t.delay_ms, t.command, &t.payload),
        Some(every) => ctx.schedule_every(t.name, t.delay_ms, every, t.command, &t.payload),
    }
}

thread_local! {
    /// The module-level global G of the isolation actions: what the last `remember` of this
    /// module instance set (a component instance has one thread, so this is one global).
    static REMEMBERED: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The `remember` action: `[G]` for the global's content G before, then sets G to `text`.
pub fn remember(text: String) -> String {
    REMEMBERED.with(|g| format!("[{}]", g.replace(text)))
}

/// The `spin` action: with `true`, a busy loop that never ends (the node's deadline stops it);
/// with `false`, nothing.
pub fn spin(forever: bool) {
    if forever {
        let mut turns: u64 = 0;
        loop {
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
    }
}

cella_sdk::export_entity!(value TckValue);

#[cfg(test)]
mod tests;
