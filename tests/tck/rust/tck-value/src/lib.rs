//! The TCK's value model (`tck-value`, see tests/tck/SPEC.md): `process` runs a list of actions
//! (`update`, `fail`, `forward`, `call`, `publish`, `schedule`) against a working copy of the
//! state `{"value": "<string>"}`; `get` replies the state; `context` replies the command context.
//! The SDK persists the state only when a command changed it and no `fail` ran.

use cella_sdk::{Context, Reply, Result, Value, ValueEntity, json};
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
    Fail(String),
    Forward(Target),
    Call(Target),
    Publish(Publication),
    Schedule(Timer),
}

/// A command for another entity (`forward`, `call`).
#[derive(Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub key: String,
    pub command: String,
    #[serde(default)]
    pub payload: Value,
}

/// The argument of `publish`.
#[derive(Deserialize)]
pub struct Publication {
    pub topic: String,
    #[serde(default)]
    pub payload: Value,
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
}

impl ValueEntity for TckValue {
    type Command = Command;

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Process(Process { actions }) => {
                for action in actions {
                    match action {
                        Action::Update(value) => self.value = value,
                        Action::Fail(message) => return Err(message.into()),
                        Action::Forward(t) => {
                            ctx.forward(t.entity_type, t.key, t.command, &t.payload)
                        }
                        Action::Call(t) => ctx.call(t.entity_type, t.key, t.command, &t.payload),
                        Action::Publish(p) => ctx.publish(p.topic, &p.payload),
                        Action::Schedule(t) => {
                            ctx.schedule(t.name, t.delay_ms, t.command, &t.payload)
                        }
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
        }
    }
}

cella_sdk::export_entity!(value TckValue);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{Call, Effect, Failure, TestKit};
    use cella_sdk::{Value, json};

    use super::TckValue;

    fn process(kit: &mut TestKit<TckValue>, actions: Value) -> Result<Value, Failure> {
        kit.handle("process", json!({ "actions": actions }))
    }

    #[test]
    fn declares_its_commands_in_order() {
        assert_eq!(
            TestKit::<TckValue>::new().commands(),
            ["process", "get", "context"]
        );
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
            Some(Call {
                entity_type: "counter".into(),
                key: "k".into(),
                command: "add".into(),
                payload: json!(5),
            })
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
        let actions = json!([
            {"call": {"type": "cart", "key": "c", "command": "get-cart", "payload": null}},
            {"publish": {"topic": "news", "payload": {"a": [1]}}},
            {"schedule": {"name": "later", "delayMs": 1000, "command": "get", "payload": null}},
        ]);
        assert_eq!(process(&mut kit, actions), Ok(json!({"value": ""})));
        let last = kit.last().expect("a handled command");
        assert_eq!(
            last.effects,
            [
                Effect::Call(Call {
                    entity_type: "cart".into(),
                    key: "c".into(),
                    command: "get-cart".into(),
                    payload: json!(null),
                }),
                Effect::Publish {
                    topic: "news".into(),
                    payload: json!({"a": [1]}),
                },
                Effect::Schedule {
                    name: "later".into(),
                    delay_ms: 1000,
                    command: "get".into(),
                    payload: json!(null),
                },
            ]
        );
        assert!(!last.persisted);
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
