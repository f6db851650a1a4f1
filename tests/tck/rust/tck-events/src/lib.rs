//! The TCK's event-sourced model (`tck-events`, see tests/tck/SPEC.md): as `tck-value`, except
//! that `process` changes the state by emitting `{"appended": "<string>"}` events (`emit`),
//! which `apply` appends to the state's `value` (`update` and `append` are bad requests here),
//! and it has no `on-reply`. Events are persisted only if no `fail` ran. Every message of topic
//! `tck-news` goes to the entity `all` (`on-message` emits `T@O:S;`), and every event is
//! published to topic `tck-events-log`. The isolation actions (`remember`, which emits
//! `[G]` for a module-level global G; `spin`; `crash`) show whether the global survives from
//! one command to another (it must not); `apply` never reads G.

use std::cell::RefCell;

use cella_sdk::{
    Context, EventContext, EventSourcedEntity, Rejection, Reply, Result, Subscription, Value, json,
};
use serde::{Deserialize, Serialize};

/// The state: the concatenation of every appended string.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TckEvents {
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Process(Process),
    Get,
    Context,
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
    Emit(String),
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

/// The one event.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    Appended(String),
}

impl EventSourcedEntity for TckEvents {
    type Command = Command;
    type Event = Event;
    const EVENTS_TOPIC: Option<&'static str> = Some("tck-events-log");

    fn subscriptions() -> Vec<Subscription> {
        vec![Subscription::to("tck-news", "on-message").fixed_key("all")]
    }

    fn handle(&self, cmd: Command, ctx: &mut EventContext<Event>) -> Result<Reply> {
        match cmd {
            Command::Process(Process { actions }) => {
                let mut working = self.value.clone();
                for action in actions {
                    match action {
                        Action::Emit(text) => {
                            working.push_str(&text);
                            ctx.emit(Event::Appended(text));
                        }
                        Action::Fail(message) => return Err(message.into()),
                        Action::Forward(t) => {
                            ctx.forward(t.entity_type, t.key, t.command, &t.payload)
                        }
                        Action::Call(t) => call(ctx, t),
                        Action::Publish(p) => ctx.publish(p.topic, &p.payload),
                        Action::Broadcast(b) => ctx.broadcast(b.entity_type, b.command, &b.payload),
                        Action::Schedule(t) => schedule(ctx, t),
                        Action::Cancel(name) => ctx.cancel(name),
                        Action::Remember(text) => {
                            let seen = remember(text);
                            working.push_str(&seen);
                            ctx.emit(Event::Appended(seen));
                        }
                        Action::Spin(forever) => spin(forever),
                        Action::Crash(message) => panic!("{message}"),
                    }
                }
                Ok(json!({ "value": working }))
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
            Command::OnMessage(News { text }) => {
                let Some(m) = ctx.message() else {
                    return Err(Rejection::bad_request(
                        "command `on-message`: not the delivery of a topic message",
                    ));
                };
                let mark = format!("{}@{}:{text};", m.topic, m.offset);
                let value = format!("{}{mark}", self.value);
                ctx.emit(Event::Appended(mark));
                Ok(json!({ "value": value }))
            }
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Appended(text) => self.value.push_str(&text),
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

/// The `remember` action's event text: `[G]` for the global's content G before; then sets G
/// to `text`. (This SDK applies the command's events after `handle` returns, which is why
/// `apply` must not read G: it would see the `text` of this very command.)
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

cella_sdk::export_entity!(event_sourced TckEvents);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{Call, Effect, Failure, TestKit, Timer};
    use cella_sdk::{Subscription, TopicMessage, Value, json};

    use super::TckEvents;

    fn process(kit: &mut TestKit<TckEvents>, actions: Value) -> Result<Value, Failure> {
        kit.handle("process", json!({ "actions": actions }))
    }

    #[test]
    fn declares_its_commands_in_order() {
        let mut kit = TestKit::<TckEvents>::new();
        assert_eq!(kit.commands(), ["process", "get", "context", "on-message"]);
        assert_eq!(
            kit.handle("on-reply", json!({"ok": null})),
            Err(Failure::UnknownCommand("on-reply".into()))
        );
        assert_eq!(kit.snapshot_every(), 0);
    }

    #[test]
    fn subscribes_as_all_and_publishes_its_events() {
        let kit = TestKit::<TckEvents>::new();
        assert_eq!(
            kit.subscriptions(),
            [Subscription::to("tck-news", "on-message").fixed_key("all")]
        );
        assert_eq!(kit.events_topic().as_deref(), Some("tck-events-log"));
    }

    #[test]
    fn on_message_emits_the_topic_offset_and_text() {
        let mut kit = TestKit::<TckEvents>::with_address("tck-events", "all");
        process(&mut kit, json!([{"emit": "e;"}])).ok();
        assert_eq!(
            kit.deliver("tck-news", json!({"to": ["k1", "k2"], "text": "hi"})),
            Ok(json!({"value": "e;tck-news@1:hi;"}))
        );
        assert_eq!(
            kit.last().map(|h| h.events.clone()),
            Some(vec![json!({"appended": "tck-news@1:hi;"})])
        );
        assert_eq!(
            kit.deliver("tck-news", json!({"to": "k3", "text": "yo"})),
            Ok(json!({"value": "e;tck-news@1:hi;tck-news@2:yo;"}))
        );
        assert_eq!(kit.sequence(), 3);
        // The events as the host publishes them to `tck-events-log`.
        let message = |seq: u64, text: &str| {
            json!({"type": "tck-events", "key": "all", "seq": seq, "index": 0,
                "event": {"appended": text}})
        };
        assert_eq!(
            kit.events_topic_messages(),
            [
                message(1, "e;"),
                message(2, "tck-news@1:hi;"),
                message(3, "tck-news@2:yo;"),
            ]
        );
        // Not a delivery, or not a message: a bad request, nothing persisted.
        assert!(matches!(
            kit.handle("on-message", json!({"to": "all", "text": "x"})),
            Err(Failure::BadRequest(_))
        ));
        let at = TopicMessage::new("tck-news", 3);
        assert!(matches!(
            kit.deliver_as("on-message", at, json!({"to": "all"})),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(kit.sequence(), 3);
    }

    #[test]
    fn emits_append_to_the_working_state() {
        let mut kit = TestKit::<TckEvents>::new();
        assert_eq!(kit.handle("get", json!(null)), Ok(json!({"value": ""})));
        assert_eq!(process(&mut kit, json!([])), Ok(json!({"value": ""})));
        assert_eq!(kit.sequence(), 0);
        assert_eq!(
            process(&mut kit, json!([{"emit": "ab"}, {"emit": "c"}])),
            Ok(json!({"value": "abc"}))
        );
        assert_eq!(
            kit.last().map(|h| h.events.clone()),
            Some(vec![json!({"appended": "ab"}), json!({"appended": "c"})])
        );
        assert_eq!(
            process(&mut kit, json!([{"emit": "d"}])),
            Ok(json!({"value": "abcd"}))
        );
        assert_eq!(kit.sequence(), 2);
        assert_eq!(kit.events().len(), 3);
        assert_eq!(kit.state_json(), Some(json!({"value": "abcd"})));
        assert_eq!(kit.handle("get", json!(null)), Ok(json!({"value": "abcd"})));
    }

    #[test]
    fn fail_discards_the_events() {
        let mut kit = TestKit::<TckEvents>::new();
        process(&mut kit, json!([{"emit": "kept"}])).ok();
        let actions = json!([{"emit": "lost"}, {"fail": "stop here"}, {"emit": "never"}]);
        assert_eq!(
            process(&mut kit, actions),
            Err(Failure::Rejected("stop here".into()))
        );
        assert_eq!(kit.events(), [json!({"appended": "kept"})]);
        assert_eq!(kit.state_json(), Some(json!({"value": "kept"})));
    }

    #[test]
    fn forwards_once_and_keeps_events() {
        let mut kit = TestKit::<TckEvents>::new();
        let get = json!({"type": "tck-value", "key": "v", "command": "get", "payload": null});
        let forward = json!({ "forward": get });
        assert_eq!(
            process(&mut kit, json!([{"emit": "x"}, forward])),
            Ok(json!({"value": "x"}))
        );
        let last = kit.last().expect("a handled command");
        assert_eq!(last.events, [json!({"appended": "x"})]);
        assert_eq!(
            last.forward,
            Some(Call::new("tck-value", "v", "get", json!(null)))
        );
        assert_eq!(
            process(&mut kit, json!([forward, {"emit": "y"}, forward])),
            Err(Failure::Rejected(
                "entity error: forward called more than once".into()
            ))
        );
        assert_eq!(kit.events().len(), 1);
    }

    #[test]
    fn requests_effects() {
        let mut kit = TestKit::<TckEvents>::new();
        let actions = json!([
            {"emit": "e"},
            {"publish": {"topic": "news", "payload": "hello"}},
            {"schedule": {"name": "later", "delayMs": 5, "command": "get", "payload": null}},
            {"call": {"type": "tck-value", "key": "v", "command": "get",
                "replyTo": {"command": "on-reply", "correlation": "c"}}},
            {"schedule": {"name": "tick", "delayMs": 5, "command": "get", "everyMs": 7}},
            {"cancel": "later"},
            {"broadcast": {"type": "tck-value", "command": "get", "payload": null}},
        ]);
        assert_eq!(process(&mut kit, actions), Ok(json!({"value": "e"})));
        let last = kit.last().expect("a handled command");
        assert_eq!(last.effects.len(), 6);
        assert!(matches!(&last.effects[0], Effect::Publish { topic, .. } if topic == "news"));
        assert_eq!(
            last.effects[1..],
            [
                Effect::Schedule(Timer {
                    name: "later".into(),
                    delay_ms: 5,
                    every_ms: None,
                    command: "get".into(),
                    payload: json!(null),
                }),
                Effect::Call(
                    Call::new("tck-value", "v", "get", json!(null)).with_reply("on-reply", "c")
                ),
                Effect::Schedule(Timer {
                    name: "tick".into(),
                    delay_ms: 5,
                    every_ms: Some(7),
                    command: "get".into(),
                    payload: json!(null),
                }),
                Effect::Cancel("later".into()),
                Effect::Broadcast {
                    entity_type: "tck-value".into(),
                    command: "get".into(),
                    payload: json!(null),
                },
            ]
        );
    }

    #[test]
    fn remember_emits_the_global_then_sets_it() {
        let mut kit = TestKit::<TckEvents>::new();
        assert_eq!(
            process(
                &mut kit,
                json!([{"remember": "a"}, {"spin": false}, {"emit": "."}])
            ),
            Ok(json!({"value": "[]."}))
        );
        // In one process the global lives on (a node must not let it: see the `isolation`
        // area); `apply` never reads it.
        assert_eq!(
            process(&mut kit, json!([{"remember": "b"}, {"remember": "c"}])),
            Ok(json!({"value": "[].[a][b]"}))
        );
        assert_eq!(
            kit.last().map(|h| h.events.clone()),
            Some(vec![json!({"appended": "[a]"}), json!({"appended": "[b]"})])
        );
        assert_eq!(kit.state_json(), Some(json!({"value": "[].[a][b]"})));
        for action in [
            json!({"remember": 1}),
            json!({"spin": "yes"}),
            json!({"crash": 2}),
        ] {
            assert!(
                matches!(
                    kit.handle("process", json!({ "actions": [action] })),
                    Err(Failure::BadRequest(_))
                ),
                "{action}"
            );
        }
        assert_eq!(kit.sequence(), 2);
    }

    #[test]
    fn context_replies_the_host_context() {
        let mut kit = TestKit::<TckEvents>::with_address("tck-events", "k2");
        process(&mut kit, json!([{"emit": "x"}])).ok();
        process(&mut kit, json!([{"emit": "y"}])).ok();
        let reply = kit.handle("context", json!(null)).expect("context");
        assert_eq!(reply["entityType"], "tck-events");
        assert_eq!(reply["key"], "k2");
        assert_eq!(reply["command"], "context");
        assert_eq!(reply["commandId"], "test-command-3");
        assert_eq!(reply["sequence"], 2);
        assert!(reply["timestampMs"].is_u64() && reply["randomSeed"].is_u64());
        assert_eq!(kit.sequence(), 2);
    }

    #[test]
    fn malformed_payloads_are_bad_requests() {
        let mut kit = TestKit::<TckEvents>::new();
        for payload in [
            json!(null),
            json!("actions"),
            json!({"actions": null}),
            json!({"actions": [{"update": "x"}]}),
            json!({"actions": [{"append": "x"}]}),
            json!({"actions": [{"cancel": 1}]}),
            json!({"actions": [{"emit": ["x"]}]}),
            json!({"actions": [{"publish": {"payload": 1}}]}),
            json!({"actions": [{"broadcast": {"type": "t", "key": 1}}]}),
        ] {
            assert!(
                matches!(
                    kit.handle("process", payload.clone()),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
        assert!(matches!(
            kit.handle("context", json!({})),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(
            kit.handle("append", json!(null)),
            Err(Failure::UnknownCommand("append".into()))
        );
        assert!(kit.events().is_empty());
    }
}
