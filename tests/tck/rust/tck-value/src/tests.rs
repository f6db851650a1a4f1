//! Unit tests of the value model with the SDK's test kit (in-process: the module-level global
//! of `remember` lives on from one command to the next here, as it would in a reused instance).

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
            Effect::Call(Call::new("counter", "n", "add", json!(2)).with_reply("on-reply", "x1")),
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

#[test]
fn remember_appends_the_global_then_sets_it() {
    let mut kit = TestKit::<TckValue>::new();
    assert_eq!(
        process(&mut kit, json!([{"remember": "a"}, {"spin": false}])),
        Ok(json!({"value": "[]"}))
    );
    // In one process the global lives on (a node must not let it: see the `isolation` area).
    assert_eq!(
        process(
            &mut kit,
            json!([{"remember": "b"}, {"remember": ""}, {"remember": "c"}])
        ),
        Ok(json!({"value": "[][a][b][]"}))
    );
    assert_eq!(kit.state_json(), Some(json!({"value": "[][a][b][]"})));
    for payload in [
        json!({"remember": 1}),
        json!({"spin": 1}),
        json!({"crash": null}),
    ] {
        assert!(
            matches!(
                kit.handle("process", json!({ "actions": [payload] })),
                Err(Failure::BadRequest(_))
            ),
            "{payload}"
        );
    }
    assert_eq!(kit.sequence(), 2);
}
