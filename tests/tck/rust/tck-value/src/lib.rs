//! The TCK's value model (`tck-value`, see tests/tck/SPEC.md): `process` runs a list of actions
//! (`update`, `append`, `fail`, `forward`, `call`, `publish`, `broadcast`, `schedule`, `cancel`)
//! against a working copy of the state `{"value": "<string>"}`; `get` replies the state;
//! `context` replies the command context; `on-reply`, the reply route of calls, appends their
//! outcomes to the state; `on-message`, the subscriber of topic `tck-news` (the entities named
//! at `/to` in a message), appends `T@O:S;`. The SDK persists the state only when a command
//! changed it and no `fail` ran.

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

cella_sdk::export_entity!(value TckValue);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{Call, Effect, Failure, TestKit, Timer};
    use cella_sdk::{CallError, CallReply, Subscription, TopicMessage, Value, json};

    use super::TckValue;

    const VALUE: &str = "tck-value";

    fn process(kit: &mut TestKit<TckValue>, actions: Value) -> Result<Value, Failure> {
        kit.handle("process", json!({ "actions": actions }))
    }

    #[test]
    fn declares_its_commands_in_order() {
        assert_eq!(
            TestKit::<TckValue>::new().commands(),
            ["process", "get", "context", "on-reply", "on-message"]
        );
    }

    #[test]
    fn subscribes_to_tck_news_by_the_to_pointer() {
        let kit = TestKit::<TckValue>::new();
        assert_eq!(
            kit.subscriptions(),
            [Subscription::to("tck-news", "on-message").key_pointer("/to")]
        );
        assert_eq!(kit.events_topic(), None);
    }

    #[test]
    fn on_message_appends_the_topic_offset_and_text() {
        let mut kit = TestKit::<TckValue>::with_address(VALUE, "k1");
        assert_eq!(
            kit.deliver("tck-news", json!({"to": ["k0", "k1"], "text": "hi"})),
            Ok(json!({"value": "tck-news@1:hi;"}))
        );
        assert_eq!(
            kit.deliver("tck-news", json!({"to": "k1", "text": ""})),
            Ok(json!({"value": "tck-news@1:hi;tck-news@2:;"}))
        );
        let elsewhere = TopicMessage::new("other", 40);
        assert_eq!(
            kit.deliver_as("on-message", elsewhere, json!({"to": "x", "text": "t"})),
            Ok(json!({"value": "tck-news@1:hi;tck-news@2:;other@40:t;"}))
        );
        assert_eq!(kit.sequence(), 3);
        // Not a delivery, or not a message: a bad request, nothing persisted.
        assert!(matches!(
            kit.handle("on-message", json!({"to": "k1", "text": "x"})),
            Err(Failure::BadRequest(_))
        ));
        for payload in [json!(null), json!({"to": "k1"}), json!({"text": 1})] {
            assert!(
                matches!(
                    kit.deliver_as(
                        "on-message",
                        TopicMessage::new("tck-news", 9),
                        payload.clone()
                    ),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
        assert_eq!(kit.sequence(), 3);
    }

    #[test]
    fn publishes_and_broadcasts_after_the_changes() {
        let mut kit = TestKit::<TckValue>::new();
        let news = json!({"to": ["a", "b"], "text": "t"});
        let actions = json!([
            {"append": "x"},
            {"publish": {"topic": "tck-news", "payload": news}},
            {"broadcast": {"type": "tck-value", "command": "process",
                "payload": {"actions": [{"append": "b;"}]}}},
            {"broadcast": {"type": "tck-events", "command": "get"}},
        ]);
        assert_eq!(process(&mut kit, actions), Ok(json!({"value": "x"})));
        let last = kit.last().expect("a handled command");
        assert!(last.persisted);
        assert_eq!(
            last.effects,
            [
                Effect::Publish {
                    topic: "tck-news".into(),
                    payload: news,
                },
                Effect::Broadcast {
                    entity_type: VALUE.into(),
                    command: "process".into(),
                    payload: json!({"actions": [{"append": "b;"}]}),
                },
                Effect::Broadcast {
                    entity_type: "tck-events".into(),
                    command: "get".into(),
                    payload: json!(null),
                },
            ]
        );
        // A failed command broadcasts nothing.
        let failed = json!([{"broadcast": {"type": "t", "command": "c"}}, {"fail": "no"}]);
        assert_eq!(
            process(&mut kit, failed),
            Err(Failure::Rejected("no".into()))
        );
        assert!(kit.last().is_none());
    }

    #[test]
    fn updates_persist_only_changes() {
        let mut kit = TestKit::<TckValue>::new();
        assert_eq!(kit.handle("get", json!(null)), Ok(json!({"value": ""})));
        assert_eq!(process(&mut kit, json!([])), Ok(json!({"value": ""})));
        assert_eq!(
            process(&mut kit, json!([{"update": ""}])),
            Ok(json!({"value": ""}))
        );
        assert_eq!(kit.sequence(), 0);
        assert_eq!(
            process(&mut kit, json!([{"update": "a"}, {"update": "b"}])),
            Ok(json!({"value": "b"}))
        );
        assert_eq!(kit.state_json(), Some(json!({"value": "b"})));
        assert_eq!(
            process(&mut kit, json!([{"update": "c"}, {"update": "b"}])),
            Ok(json!({"value": "b"}))
        );
        assert_eq!(kit.sequence(), 1);
        assert_eq!(kit.handle("get", json!(null)), Ok(json!({"value": "b"})));
    }

    #[test]
    fn fail_discards_everything() {
        let mut kit = TestKit::<TckValue>::new();
        process(&mut kit, json!([{"update": "kept"}])).ok();
        let actions = json!([
            {"update": "lost"},
            {"publish": {"topic": "t", "payload": 1}},
            {"fail": "no, thanks"},
            {"update": "never"},
        ]);
        assert_eq!(
            process(&mut kit, actions),
            Err(Failure::Rejected("no, thanks".into()))
        );
        assert_eq!(kit.state_json(), Some(json!({"value": "kept"})));
        assert_eq!(kit.sequence(), 1);
    }

    #[test]
    fn forwards_once_and_keeps_updates() {
        let mut kit = TestKit::<TckValue>::new();
        let forward =
            json!({"forward": {"type": "counter", "key": "k", "command": "add", "payload": 5}});
        assert_eq!(
            process(&mut kit, json!([{"update": "x"}, forward])),
            Ok(json!({"value": "x"}))
        );
        let last = kit.last().expect("a handled command");
        assert!(last.persisted);
        assert_eq!(
            last.forward,
            Some(Call::new("counter", "k", "add", json!(5)))
        );
        assert_eq!(
            process(&mut kit, json!([{"update": "y"}, forward, forward])),
            Err(Failure::Rejected(
                "entity error: forward called more than once".into()
            ))
        );
        assert_eq!(kit.state_json(), Some(json!({"value": "x"})));
    }

    #[test]
    fn requests_effects_in_order() {
        let mut kit = TestKit::<TckValue>::new();
        let route = json!({"command": "on-reply", "correlation": "x1"});
        let actions = json!([
            {"call": {"type": "cart", "key": "c", "command": "get-cart", "payload": null}},
            {"publish": {"topic": "news", "payload": {"a": [1]}}},
            {"schedule": {"name": "later", "delayMs": 1000, "command": "get", "payload": null}},
            {"call": {"type": "counter", "key": "n", "command": "add", "payload": 2,
                "replyTo": route}},
            {"schedule": {"name": "tick", "delayMs": 5, "command": "process",
                "payload": {"actions": [{"append": "t;"}]}, "everyMs": 50}},
            {"cancel": "later"},
            {"call": {"type": "counter", "key": "n", "command": "get", "replyTo": null}},
        ]);
        assert_eq!(process(&mut kit, actions), Ok(json!({"value": ""})));
        let last = kit.last().expect("a handled command");
        assert_eq!(
            last.effects,
            [
                Effect::Call(Call::new("cart", "c", "get-cart", json!(null))),
                Effect::Publish {
                    topic: "news".into(),
                    payload: json!({"a": [1]}),
                },
                Effect::Schedule(Timer {
                    name: "later".into(),
                    delay_ms: 1000,
                    every_ms: None,
                    command: "get".into(),
                    payload: json!(null),
                }),
                Effect::Call(
                    Call::new("counter", "n", "add", json!(2)).with_reply("on-reply", "x1")
                ),
                Effect::Schedule(Timer {
                    name: "tick".into(),
                    delay_ms: 5,
                    every_ms: Some(50),
                    command: "process".into(),
                    payload: json!({"actions": [{"append": "t;"}]}),
                }),
                Effect::Cancel("later".into()),
                Effect::Call(Call::new("counter", "n", "get", json!(null))),
            ]
        );
        assert!(!last.persisted);
        // A repeating timer's command appends each time it fires.
        assert_eq!(kit.fire("tick"), Ok(json!({"value": "t;"})));
        assert_eq!(kit.fire("tick"), Ok(json!({"value": "t;t;"})));
        assert_eq!(kit.timers().keys().collect::<Vec<_>>(), ["tick"]);
    }

    #[test]
    fn append_adds_to_the_working_value() {
        let mut kit = TestKit::<TckValue>::new();
        assert_eq!(
            process(&mut kit, json!([{"append": "a"}, {"append": "b"}])),
            Ok(json!({"value": "ab"}))
        );
        assert_eq!(
            process(&mut kit, json!([{"update": "x"}, {"append": "y"}])),
            Ok(json!({"value": "xy"}))
        );
        assert_eq!(
            process(&mut kit, json!([{"append": ""}])),
            Ok(json!({"value": "xy"}))
        );
        assert_eq!(kit.sequence(), 2);
    }

    #[test]
    fn on_reply_appends_the_outcome() {
        let mut kit = TestKit::<TckValue>::new();
        let ok = |reply: Value| CallReply::Ok(reply);
        assert_eq!(
            kit.reply("on-reply", "a", &ok(json!({"value": "v"}))),
            Ok(json!({"value": "a:ok:v;"}))
        );
        kit.reply("on-reply", "b", &ok(json!(7))).ok();
        kit.reply("on-reply", "c", &ok(json!({"value": 1}))).ok();
        let rejected = CallReply::<Value>::Error(CallError::new("rejected", "no way"));
        kit.reply("on-reply", "d", &rejected).ok();
        let unknown = CallReply::<Value>::Error(CallError::new("unknown_command", "nope"));
        assert_eq!(
            kit.reply("on-reply", "e", &unknown),
            Ok(json!({"value": "a:ok:v;b:ok:;c:ok:;d:rejected:no way;e:unknown_command:nope;"}))
        );
        assert_eq!(kit.sequence(), 5);

        // Not a reply route, or not an outcome: a bad request, nothing persisted.
        assert!(matches!(
            kit.handle("on-reply", json!({"ok": {"value": "v"}})),
            Err(Failure::BadRequest(_))
        ));
        for payload in [json!(null), json!({"value": "v"}), json!({"error": "x"})] {
            assert!(
                matches!(
                    kit.fire_as("t", "on-reply", payload.clone()),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
        assert_eq!(kit.sequence(), 5);
    }

    #[test]
    fn context_replies_the_host_context() {
        let mut kit = TestKit::<TckValue>::with_address("tck-value", "k1");
        process(&mut kit, json!([{"update": "x"}])).ok();
        let reply = kit.handle("context", json!(null)).expect("context");
        assert_eq!(reply["entityType"], "tck-value");
        assert_eq!(reply["key"], "k1");
        assert_eq!(reply["command"], "context");
        assert_eq!(reply["commandId"], "test-command-2");
        assert_eq!(reply["sequence"], 1);
        assert_eq!(reply["timestampMs"], TestKit::<TckValue>::DEFAULT_TIME_MS);
        assert!(reply["randomSeed"].is_u64());
        assert_eq!(kit.sequence(), 1);
    }

    #[test]
    fn malformed_payloads_are_bad_requests() {
        let mut kit = TestKit::<TckValue>::new();
        for payload in [
            json!(null),
            json!([]),
            json!({}),
            json!({"actions": {}}),
            json!({"actions": ["update"]}),
            json!({"actions": [{"emit": "x"}]}),
            json!({"actions": [{"update": 1}]}),
            json!({"actions": [{"update": "a", "fail": "b"}]}),
            json!({"actions": [{"forward": {"type": "t", "key": "k"}}]}),
            json!({"actions": [{"schedule": {"name": "n", "delayMs": -1, "command": "c"}}]}),
            json!({"actions": [{"schedule": {"name": "n", "delayMs": 1, "command": "c",
                "everyMs": "often"}}]}),
            json!({"actions": [{"emit": "x"}]}),
            json!({"actions": [{"append": 1}]}),
            json!({"actions": [{"cancel": {"name": "n"}}]}),
            json!({"actions": [{"call": {"type": "t", "key": "k", "command": "c",
                "replyTo": {"command": "on-reply"}}}]}),
            json!({"actions": [{"broadcast": {"type": "t"}}]}),
            json!({"actions": [{"broadcast": {"command": "c"}}]}),
            json!({"actions": [{"broadcast": "t"}]}),
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
            kit.handle("get", json!(1)),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(
            kit.handle("nope", json!(null)),
            Err(Failure::UnknownCommand("nope".into()))
        );
        assert_eq!(kit.sequence(), 0);
    }
}
