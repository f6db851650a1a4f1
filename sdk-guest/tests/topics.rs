//! Topics through `TestKit` and the raw `entity` interface: subscriptions and the events topic
//! in the descriptor, the topic message a delivered command sees, publications and broadcasts
//! as the host receives them, and the kit's deliveries (offsets, key checks, `deliver_as`) and
//! events-topic messages.

use cella_sdk::bindings::cella::entity::types::{
    Context as WitContext, Effect as WitEffect, SubscriberKey as WitKey, TopicMessage as WitMessage,
};
use cella_sdk::bindings::exports::cella::entity::entity::Guest;
use cella_sdk::testing::{Effect, Failure, TestKit};
use cella_sdk::{
    Context, Deserialize, EventContext, EventSourcedEntity, ExportedEntity, Rejection, Reply,
    Result, Serialize, SubscriberKey, Subscription, TopicMessage, Value, ValueEntity, json,
};

/// A value entity: reads `news` addressed to it (`/to`) and every `alerts` message (key `all`).
#[derive(Default, Serialize, Deserialize)]
struct Reader {
    log: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReaderCommand {
    OnNews(News),
    OnAlert(Value),
    Shout(String),
    Origin,
}

#[derive(Deserialize)]
struct News {
    text: String,
}

impl ValueEntity for Reader {
    type Command = ReaderCommand;

    fn subscriptions() -> Vec<Subscription> {
        vec![
            Subscription::to("news", "on-news").key_pointer("/to"),
            Subscription::to("alerts", "on-alert").fixed_key("all"),
        ]
    }

    fn handle(&mut self, cmd: ReaderCommand, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            ReaderCommand::OnNews(News { text }) => {
                let Some(m) = ctx.message() else {
                    return Err(Rejection::bad_request("not a topic message"));
                };
                self.log.push(format!("{}@{}:{text}", m.topic, m.offset));
            }
            ReaderCommand::OnAlert(alert) => self.log.push(format!("alert:{alert}")),
            ReaderCommand::Shout(text) => {
                ctx.publish("news", &json!({"to": "everyone", "text": text}));
                ctx.broadcast("reader", "on-alert", &json!({"from": ctx.key()}));
            }
            ReaderCommand::Origin => {
                let m = ctx.message().cloned();
                return Ok(json!(m.map(|m| (m.topic, m.offset))));
            }
        }
        Ok(json!(self.log))
    }
}

cella_sdk::export_entity!(value Reader);

/// An event-sourced entity with an events topic and no subscriptions.
#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum LedgerCommand {
    Post(Vec<i64>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum LedgerEvent {
    Posted(i64),
}

impl EventSourcedEntity for Ledger {
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    const EVENTS_TOPIC: Option<&'static str> = Some("ledger-events");

    fn handle(&self, cmd: LedgerCommand, ctx: &mut EventContext<LedgerEvent>) -> Result<Reply> {
        let LedgerCommand::Post(amounts) = cmd;
        for amount in amounts {
            ctx.emit(LedgerEvent::Posted(amount));
        }
        Ok(json!({}))
    }

    fn apply(&mut self, LedgerEvent::Posted(amount): LedgerEvent) {
        self.total += amount;
    }
}

cella_sdk::export_entity!(event_sourced Ledger);

type ReaderGlue = <Reader as ExportedEntity>::Glue;
type LedgerGlue = <Ledger as ExportedEntity>::Glue;

#[test]
fn the_descriptor_carries_subscriptions_and_the_events_topic() {
    let descriptor = ReaderGlue::describe();
    let subscriptions: Vec<(&str, &str, &WitKey)> = descriptor
        .subscriptions
        .iter()
        .map(|s| (s.topic.as_str(), s.command.as_str(), &s.key))
        .collect();
    assert!(matches!(
        subscriptions.as_slice(),
        [("news", "on-news", WitKey::Pointer(p)), ("alerts", "on-alert", WitKey::Fixed(k))]
            if p == "/to" && k == "all"
    ));
    assert_eq!(descriptor.events_topic, None);

    let descriptor = LedgerGlue::describe();
    assert!(descriptor.subscriptions.is_empty());
    assert_eq!(descriptor.events_topic.as_deref(), Some("ledger-events"));

    // The kit shows them in the SDK's types.
    let kit = TestKit::<Reader>::new();
    assert_eq!(
        kit.subscriptions(),
        [
            Subscription {
                topic: "news".into(),
                command: "on-news".into(),
                key: SubscriberKey::Pointer("/to".into()),
            },
            Subscription::to("alerts", "on-alert").fixed_key("all"),
        ]
    );
    assert_eq!(kit.events_topic(), None);
    assert_eq!(
        TestKit::<Ledger>::new().events_topic().as_deref(),
        Some("ledger-events")
    );
}

fn wit_context(command: &str, message: Option<(&str, u64)>) -> WitContext {
    WitContext {
        entity_type: "reader".into(),
        key: "ann".into(),
        command_id: "id".into(),
        command: command.into(),
        timestamp_ms: 0,
        random_seed: 0,
        sequence: 0,
        correlation: None,
        timer: None,
        message: message.map(|(topic, offset)| WitMessage {
            topic: topic.into(),
            offset,
        }),
    }
}

#[test]
fn the_raw_interface_sees_the_wire_forms() {
    let news = r#"{"to":["ann"],"text":"hi"}"#;
    let Ok(outcome) =
        ReaderGlue::handle(wit_context("on-news", Some(("news", 9))), None, news.into())
    else {
        panic!("on-news failed")
    };
    assert_eq!(outcome.reply, r#"["news@9:hi"]"#);

    let Ok(outcome) = ReaderGlue::handle(wit_context("origin", None), None, "null".into()) else {
        panic!("origin failed")
    };
    assert_eq!(outcome.reply, "null");

    let Ok(outcome) = ReaderGlue::handle(wit_context("shout", None), None, r#""boo""#.into())
    else {
        panic!("shout failed")
    };
    let [WitEffect::Publish(p), WitEffect::Broadcast(b)] = outcome.effects.as_slice() else {
        panic!("a publication and a broadcast expected")
    };
    assert_eq!(
        (p.topic.as_str(), p.payload.as_str()),
        ("news", r#"{"text":"boo","to":"everyone"}"#)
    );
    assert_eq!(
        (
            b.entity_type.as_str(),
            b.command.as_str(),
            b.payload.as_str()
        ),
        ("reader", "on-alert", r#"{"from":"ann"}"#)
    );
}

#[test]
fn deliver_runs_the_subscription_with_the_next_offset() {
    let mut kit = TestKit::<Reader>::with_address("reader", "ann");
    assert_eq!(
        kit.deliver("news", json!({"to": "ann", "text": "a"})),
        Ok(json!(["news@1:a"]))
    );
    assert_eq!(
        kit.deliver("news", json!({"to": ["bob", "ann"], "text": "b"})),
        Ok(json!(["news@1:a", "news@2:b"]))
    );
    // deliver_as: any command, any offset; deliver carries on after the highest.
    assert_eq!(
        kit.deliver_as("origin", TopicMessage::new("news", 10), json!(null)),
        Ok(json!(["news", 10]))
    );
    kit.deliver("news", json!({"to": "ann", "text": "c"})).ok();
    assert_eq!(
        kit.state().log.last().map(String::as_str),
        Some("news@11:c")
    );
    // A failed delivery changes nothing, but uses its offset.
    assert!(matches!(
        kit.deliver("news", json!({"to": "ann", "text": 5})),
        Err(Failure::BadRequest(_))
    ));
    kit.deliver("news", json!({"to": "ann", "text": "d"})).ok();
    assert_eq!(
        kit.state().log.last().map(String::as_str),
        Some("news@13:d")
    );
    assert_eq!(kit.sequence(), 4);
    // A command sent by a client sees no topic message.
    assert_eq!(
        kit.handle("on-news", json!({"text": "x"})),
        Err(Failure::BadRequest("not a topic message".into()))
    );
    assert_eq!(kit.handle("origin", json!(null)), Ok(json!(null)));
}

#[test]
fn a_fixed_key_takes_every_message_and_offsets_are_per_topic() {
    let mut kit = TestKit::<Reader>::with_address("reader", "all");
    kit.deliver("news", json!({"to": "all", "text": "a"})).ok();
    kit.deliver("alerts", json!(1)).ok();
    assert_eq!(
        kit.deliver("alerts", json!({"level": 2})),
        Ok(json!(["news@1:a", "alert:1", r#"alert:{"level":2}"#]))
    );
    assert_eq!(
        kit.deliver_as("origin", TopicMessage::new("alerts", 7), json!(null)),
        Ok(json!(["alerts", 7]))
    );
}

#[test]
#[should_panic(expected = "not to this entity `ann`")]
fn deliver_refuses_a_message_for_another_entity() {
    let mut kit = TestKit::<Reader>::with_address("reader", "ann");
    let _ = kit.deliver("news", json!({"to": ["bob"], "text": "a"}));
}

#[test]
#[should_panic(expected = "delivers {\"text\":\"a\"} nowhere")]
fn deliver_refuses_a_message_without_a_key() {
    let mut kit = TestKit::<Reader>::with_address("reader", "ann");
    let _ = kit.deliver("news", json!({"text": "a"}));
}

#[test]
#[should_panic(expected = "0 subscriptions to topic `sports`")]
fn deliver_needs_a_subscription() {
    let mut kit = TestKit::<Reader>::new();
    let _ = kit.deliver("sports", json!({"to": "test-key"}));
}

#[test]
fn publications_and_broadcasts_are_recorded() {
    let mut kit = TestKit::<Reader>::with_address("reader", "ann");
    assert_eq!(kit.handle("shout", json!("boo")), Ok(json!([])));
    let handled = kit.last().expect("a handled command");
    let message = json!({"to": "everyone", "text": "boo"});
    let alert = json!({"from": "ann"});
    assert_eq!(
        handled.effects,
        [
            Effect::Publish {
                topic: "news".into(),
                payload: message.clone(),
            },
            Effect::Broadcast {
                entity_type: "reader".into(),
                command: "on-alert".into(),
                payload: alert.clone(),
            },
        ]
    );
    assert_eq!(handled.publications(), [("news", &message)]);
    assert_eq!(handled.broadcasts(), [("reader", "on-alert", &alert)]);
    assert!(!handled.persisted);
}

#[test]
fn the_kit_shows_the_events_topic_messages() {
    let mut kit = TestKit::<Ledger>::with_address("ledger", "l1");
    kit.handle("post", json!([5, -2])).ok();
    kit.handle("post", json!([])).ok();
    kit.handle("post", json!([7])).ok();
    assert_eq!(
        kit.events_topic_messages(),
        [
            json!({"type": "ledger", "key": "l1", "seq": 1, "index": 0, "event": {"posted": 5}}),
            json!({"type": "ledger", "key": "l1", "seq": 1, "index": 1, "event": {"posted": -2}}),
            json!({"type": "ledger", "key": "l1", "seq": 2, "index": 0, "event": {"posted": 7}}),
        ]
    );
    assert_eq!(kit.state().total, 10);
    // Without an events topic, nothing is published.
    let mut reader = TestKit::<Reader>::new();
    reader.handle("shout", json!("x")).ok();
    assert!(reader.events_topic_messages().is_empty());
}
