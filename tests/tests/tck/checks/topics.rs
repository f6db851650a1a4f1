//! Topics (SPEC: the topics paragraph of the event-sourced model): a message published to
//! `tck-news`, from outside (`POST /v1/topics/tck-news`, also with an `Idempotency-Key`) or by an
//! entity's `publish`, reaches every `tck-value` entity its `to` names and the `tck-events`
//! entity `all` exactly once, in topic order (`T@O:S;` marks); a failed command publishes
//! nothing; a topic's Server-Sent Events stream resumes after `Last-Event-ID` without gaps or
//! duplicates and stays open for new messages; `tck-events`' events appear on `tck-events-log`
//! (and the cart's on `cart-events`) as `{"type", "key", "seq", "index", "event"}`;
//! `GET /v1/topics` lists the topics with their subscribers; a `broadcast` reaches every existing
//! `tck-value` entity exactly once, and a failed command broadcasts nothing.
//!
//! Deliveries run after their publication commits, so every check polls with a bounded deadline
//! (never a fixed sleep), and "exactly once" is checked against a barrier: a later message (or
//! broadcast) whose mark must come after the ones under test, by which time a duplicate would
//! show in the exact value. The broadcast reaches every `tck-value` entity of the node, so it
//! runs last, and this area runs after every area that inspects `tck-value` entities.

use std::time::{Duration, Instant};

use cella_tests::encode_segment;
use serde_json::{Value, json};

use super::sse::{Event, EventStream};
use super::{CART, EVENTS, VALUE, line};
use crate::api::{Api, process};

/// How long a delivery (or a stream's next message) may take to show.
const DEADLINE: Duration = Duration::from_secs(15);
/// The pause between two polls.
const POLL: Duration = Duration::from_millis(25);
/// The topic both models subscribe to.
const NEWS: &str = "tck-news";
/// `tck-events`' events topic.
const LOG: &str = "tck-events-log";
/// The shopping cart's events topic.
const CART_EVENTS: &str = "cart-events";
/// A topic nobody subscribes to, for the stream checks.
const STREAM: &str = "tck-stream";
/// The `tck-events` entity that receives every message of `tck-news`.
const ALL: &str = "all";

/// Every check, in turn (each on keys of its own; the broadcast last).
pub(super) async fn topics(api: &Api<'_>) {
    let mut news = News::default();
    outside(api, &mut news).await;
    from_entities(api, &mut news).await;
    in_order(api, &mut news).await;
    stream_resumes(api).await;
    events_topics(api).await;
    listing(api, &news).await;
    broadcast(api).await;
}

/// What `tck-news` holds so far: its last offset, and the value `tck-events/all` must have.
#[derive(Default)]
struct News {
    last: u64,
    all: String,
}

impl News {
    /// Records the message `text` at `offset`, which must follow the last one (only this area
    /// publishes to `tck-news`); returns its mark.
    fn sent(&mut self, api: &Api<'_>, offset: u64, text: &str) -> String {
        if self.last > 0 {
            assert_eq!(
                offset,
                self.last + 1,
                "[{}] {NEWS}: the offset of {text:?} (offsets grow by one per message)",
                api.lang
            );
        }
        self.last = offset;
        let mark = mark(offset, text);
        self.all.push_str(&mark);
        mark
    }

    /// Waits until `tck-events/all` has the last message, then asserts it has every message
    /// exactly once, in order.
    async fn check_all(&self, api: &Api<'_>) {
        let expected = self.all.clone();
        let got = wait_value(api, EVENTS, ALL, "the last message arrives", |v| {
            v.len() >= expected.len()
        })
        .await;
        assert_eq!(
            got, expected,
            "[{}] {EVENTS}/{ALL}: every message of {NEWS} once, in order",
            api.lang
        );
    }
}

/// The mark `on-message` appends for the message `text` at `offset` of `tck-news`.
fn mark(offset: u64, text: &str) -> String {
    format!("{NEWS}@{offset}:{text};")
}

/// `POST /v1/topics/{topic}` with `message` and `headers`; returns the message's offset.
async fn publish(api: &Api<'_>, topic: &str, message: &Value, headers: &[(&str, &str)]) -> u64 {
    let path = format!("/v1/topics/{}", encode_segment(topic));
    let what = format!("[{}] POST {path} {message}", api.lang);
    let r = api
        .raw("POST", &path, &message.to_string(), headers, &what)
        .await;
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(r.json["topic"], topic, "{what}: {}", r.body);
    match r.json["offset"].as_u64() {
        Some(offset) if offset > 0 => offset,
        _ => panic!("{what}: no offset in {}", r.body),
    }
}

/// The value of entity `ty`/`key`, as `get` replies it.
async fn value(api: &Api<'_>, ty: &str, key: &str) -> String {
    let reply = api.ok(ty, key, "get", json!(null)).await;
    match reply["value"].as_str() {
        Some(value) => value.to_owned(),
        None => panic!("[{}] {ty}/{key} get: no string value in {reply}", api.lang),
    }
}

/// Polls the value of `ty`/`key` until `done` holds of it, within [`DEADLINE`]; returns it.
async fn wait_value(
    api: &Api<'_>,
    ty: &str,
    key: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = value(api, ty, key).await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {ty}/{key}: {what} within {} s; the value is {value:?}",
            api.lang,
            DEADLINE.as_secs()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the value of `tck-value/key` ends with `last`, then asserts it is `expected`.
async fn expect_marks(api: &Api<'_>, key: &str, last: &str, expected: &str) {
    let got = wait_value(api, VALUE, key, &format!("{last:?} arrives"), |v| {
        v.ends_with(last) || v.len() >= expected.len()
    })
    .await;
    assert_eq!(
        got, expected,
        "[{}] {VALUE}/{key}: each message once, in topic order",
        api.lang
    );
}

/// Messages published from outside reach the entities `to` names and `all`, once each; an
/// `Idempotency-Key` publishes once.
async fn outside(api: &Api<'_>, news: &mut News) {
    let keys = ["tp-a", "tp-b", "tp-c"];
    let o1 = publish(api, NEWS, &json!({"to": keys, "text": "one"}), &[]).await;
    let m1 = news.sent(api, o1, "one");
    for key in keys {
        expect_marks(api, key, &m1, &m1).await;
    }
    news.check_all(api).await;

    let two = json!({"to": "tp-a", "text": "two"});
    let idempotent = [("Idempotency-Key", "tp-news-two")];
    let o2 = publish(api, NEWS, &two, &idempotent).await;
    let again = publish(api, NEWS, &two, &idempotent).await;
    assert_eq!(
        again, o2,
        "[{}] {NEWS}: a publication retried with its Idempotency-Key has the same offset",
        api.lang
    );
    let m2 = news.sent(api, o2, "two");

    // The barrier.
    let o3 = publish(api, NEWS, &json!({"to": keys, "text": "three"}), &[]).await;
    let m3 = news.sent(api, o3, "three");
    expect_marks(api, "tp-a", &m3, &format!("{m1}{m2}{m3}")).await;
    for key in ["tp-b", "tp-c"] {
        expect_marks(api, key, &m3, &format!("{m1}{m3}")).await;
    }
    api.assert_state(VALUE, "tp-a", json!({"value": format!("{m1}{m2}{m3}")}), 3)
        .await;
    // Not named by any message: never receives one.
    api.assert_state(VALUE, "tp-d", Value::Null, 0).await;
    news.check_all(api).await;
}

/// A `publish` action of `tck-news` with `{"to": to, "text": text}`.
fn publish_news(to: Value, text: &str) -> Value {
    json!({"publish": {"topic": NEWS, "payload": {"to": to, "text": text}}})
}

/// Messages published by the models' `process` reach their subscribers the same way; a failed
/// command publishes nothing.
async fn from_entities(api: &Api<'_>, news: &mut News) {
    let before_a = value(api, VALUE, "tp-a").await;
    api.expect(
        VALUE,
        "tp-pub",
        "process",
        process(json!([{"update": "p"}, publish_news(json!(["tp-a", "tp-e"]), "from-v")])),
        json!({"value": "p"}),
    )
    .await;
    let m4 = news.sent(api, news.last + 1, "from-v");
    expect_marks(api, "tp-e", &m4, &m4).await;
    expect_marks(api, "tp-a", &m4, &format!("{before_a}{m4}")).await;

    api.rejected(
        VALUE,
        "tp-pub",
        "process",
        process(json!([publish_news(json!("tp-e"), "never"), {"fail": "no publication"}])),
        "no publication",
    )
    .await;
    // From the event-sourced model; also the barrier (its offset follows `from-v`'s).
    api.expect(
        EVENTS,
        "tp-pub",
        "process",
        process(json!([{"emit": "e"}, publish_news(json!("tp-e"), "from-e")])),
        json!({"value": "e"}),
    )
    .await;
    let m5 = news.sent(api, news.last + 1, "from-e");
    expect_marks(api, "tp-e", &m5, &format!("{m4}{m5}")).await;
    api.assert_state(VALUE, "tp-e", json!({"value": format!("{m4}{m5}")}), 2)
        .await;
    api.assert_state(VALUE, "tp-pub", json!({"value": "p"}), 1)
        .await;
    news.check_all(api).await;
}

/// Several messages in a row arrive in topic order, each once.
async fn in_order(api: &Api<'_>, news: &mut News) {
    let keys = ["tp-o1", "tp-o2"];
    let mut expected = String::new();
    let mut last = String::new();
    for i in 1..=5 {
        let text = format!("o{i}");
        let offset = publish(api, NEWS, &json!({"to": keys, "text": text}), &[]).await;
        last = news.sent(api, offset, &text);
        expected.push_str(&last);
    }
    for key in keys {
        expect_marks(api, key, &last, &expected).await;
        api.assert_state(VALUE, key, json!({ "value": expected }), 5)
            .await;
    }
    news.check_all(api).await;
}

/// A message event of a stream: (offset, message). Asserts that it is one (not a `gap`: the
/// checks' topics are never trimmed, so a stream must not skip an offset), with an id and one
/// line of JSON data.
fn message(api: &Api<'_>, topic: &str, event: Event) -> (u64, Value) {
    let what = format!("[{}] {topic}: the event {event:?}", api.lang);
    assert!(
        event.event.as_deref().is_none_or(|e| e == "message"),
        "{what} is not a message"
    );
    let Some(id) = event.id else {
        panic!("{what} has no id")
    };
    assert!(!event.data.contains('\n'), "{what}: not one line of data");
    let data = serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("{what}: the data is not JSON: {e}"));
    (id, data)
}

/// The stream of `topic`'s messages after `after` (`?after=`), or after `last_event_id`
/// (`Last-Event-ID`), or from now.
async fn open(
    api: &Api<'_>,
    topic: &str,
    after: Option<u64>,
    last_event_id: Option<u64>,
) -> EventStream {
    let mut path = format!("/v1/topics/{}/events", encode_segment(topic));
    if let Some(after) = after {
        path.push_str(&format!("?after={after}"));
    }
    EventStream::open(&api.node.addr(), &path, last_event_id, DEADLINE).await
}

/// A topic's stream replays from `after` and resumes after `Last-Event-ID` without gaps or
/// duplicates, stays open for new messages, and without either sends only new ones.
async fn stream_resumes(api: &Api<'_>) {
    let lang = api.lang;
    let sent: Vec<Value> = (1..=8)
        .map(|n| json!({"n": n, "text": format!("m{n}"), "list": [n, null]}))
        .collect();
    for (i, m) in sent[..3].iter().enumerate() {
        let offset = publish(api, STREAM, m, &[]).await;
        assert_eq!(
            offset,
            i as u64 + 1,
            "[{lang}] {STREAM}: offsets start at 1"
        );
    }
    let mut seen = Vec::new();
    {
        let mut stream = open(api, STREAM, Some(0), None).await;
        for _ in 0..2 {
            seen.push(message(api, STREAM, stream.next(DEADLINE).await));
        }
    } // Disconnected.
    for m in &sent[3..5] {
        publish(api, STREAM, m, &[]).await;
    }
    let last_id = seen.last().map_or(0, |(id, _)| *id);
    {
        let mut stream = open(api, STREAM, None, Some(last_id)).await;
        while seen.last().is_none_or(|(id, _)| *id < 5) {
            seen.push(message(api, STREAM, stream.next(DEADLINE).await));
        }
        // Still open: a new message comes as it is published.
        publish(api, STREAM, &sent[5], &[]).await;
        seen.push(message(api, STREAM, stream.next(DEADLINE).await));
    }
    let expected: Vec<(u64, Value)> = (1u64..).zip(sent[..6].iter().cloned()).collect();
    assert_eq!(
        seen, expected,
        "[{lang}] {STREAM}: the events read before and after resuming with Last-Event-ID \
         {last_id}: every offset once, in order"
    );

    // `?after=4` starts at 5.
    let mut stream = open(api, STREAM, Some(4), None).await;
    let first = message(api, STREAM, stream.next(DEADLINE).await);
    assert_eq!(first, (5, sent[4].clone()), "[{lang}] {STREAM}?after=4");
    drop(stream);

    // Without `after` or `Last-Event-ID`: only messages published after connecting. The
    // stream may begin listening just after its head is sent, so publish until one arrives.
    let mut stream = open(api, STREAM, None, None).await;
    let deadline = Instant::now() + DEADLINE;
    let mut next = 6;
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "[{lang}] {STREAM}: a stream from now sent nothing within {} s",
            DEADLINE.as_secs()
        );
        let m = &sent[next.min(sent.len() - 1)];
        publish(api, STREAM, m, &[]).await;
        next += 1;
        let wait = Instant::now() + Duration::from_secs(1);
        if let Some(event) = stream.next_before(wait).await {
            break message(api, STREAM, event);
        }
    };
    assert!(
        first.0 >= 7,
        "[{lang}] {STREAM}: a stream from now sent the old message {first:?}"
    );
}

/// Reads `topic`'s stream from the start until a message for which `last` holds, within
/// [`DEADLINE`]; checks that the offsets are contiguous and returns the messages `mine` picks,
/// in order.
async fn follow(
    api: &Api<'_>,
    topic: &str,
    mine: impl Fn(&Value) -> bool,
    last: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut stream = open(api, topic, Some(0), None).await;
    let deadline = Instant::now() + DEADLINE;
    let mut previous: Option<u64> = None;
    let mut picked = Vec::new();
    loop {
        let Some(event) = stream.next_before(deadline).await else {
            panic!(
                "[{}] {topic}: the last message did not come within {} s; mine so far: \
                 {picked:?}",
                api.lang,
                DEADLINE.as_secs()
            );
        };
        let (id, m) = message(api, topic, event);
        if let Some(previous) = previous {
            assert_eq!(id, previous + 1, "[{}] {topic}: offsets in a row", api.lang);
        }
        previous = Some(id);
        if mine(&m) {
            let done = last(&m);
            picked.push(m);
            if done {
                return picked;
            }
        }
    }
}

/// `tck-events`' events on `tck-events-log` and the cart's on `cart-events`, once each, in
/// order, as `{"type", "key", "seq", "index", "event"}`.
async fn events_topics(api: &Api<'_>) {
    let key = "tp-log";
    for (emits, value) in [
        (vec!["x", "y"], "xy"),
        (vec!["z"], "xyz"),
        (vec!["w"], "xyzw"),
    ] {
        let actions: Vec<Value> = emits.iter().map(|e| json!({ "emit": e })).collect();
        api.expect(
            EVENTS,
            key,
            "process",
            process(Value::Array(actions)),
            json!({ "value": value }),
        )
        .await;
    }
    let entry = |ty: &str, key: &str, seq: u64, index: u64, event: Value| json!({"type": ty, "key": key, "seq": seq, "index": index, "event": event});
    let appended = |seq, index, s: &str| entry(EVENTS, key, seq, index, json!({ "appended": s }));
    // The last entry ("w") is the barrier: by then a duplicate of the others would show.
    let got = follow(api, LOG, |m| m["key"] == key, |m| m["seq"] == 3).await;
    assert_eq!(
        got,
        [
            appended(1, 0, "x"),
            appended(1, 1, "y"),
            appended(2, 0, "z"),
            appended(3, 0, "w"),
        ],
        "[{}] {LOG}: the events of {EVENTS}/{key}",
        api.lang
    );

    let cart = "tp-cart";
    let pen = line("p1", "Pen", json!(2));
    api.expect(CART, cart, "add-item", pen.clone(), json!({}))
        .await;
    api.expect(
        CART,
        cart,
        "remove-item",
        json!({"productId": "p1"}),
        json!({}),
    )
    .await;
    let got = follow(api, CART_EVENTS, |m| m["key"] == cart, |m| m["seq"] == 2).await;
    assert_eq!(
        got,
        [
            entry(CART, cart, 1, 0, json!({"itemAdded": {"item": pen}})),
            entry(
                CART,
                cart,
                2,
                0,
                json!({"itemRemoved": {"productId": "p1"}})
            ),
        ],
        "[{}] {CART_EVENTS}: the events of {CART}/{cart}",
        api.lang
    );
}

/// `GET /v1/topics`: every topic with its offsets and subscribers.
async fn listing(api: &Api<'_>, news: &News) {
    let listed = api.get("/v1/topics").await;
    let topic = |name: &str| -> Value {
        listed["topics"]
            .as_array()
            .and_then(|topics| topics.iter().find(|t| t["topic"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("[{}] GET /v1/topics: no {name} in {listed}", api.lang))
    };
    // (type, command, key) of each subscriber, by type and command.
    let subscribers = |t: &Value| -> Vec<(String, String, Value)> {
        let mut all: Vec<(String, String, Value)> = t["subscribers"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| {
                        let field = |f: &str| s[f].as_str().unwrap_or_default().to_owned();
                        (field("type"), field("command"), s["key"].clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    };
    let n = topic(NEWS);
    let what = format!("[{}] GET /v1/topics: {n}", api.lang);
    assert_eq!(n["last"], news.last, "{what}");
    let on_message = |ty: &str, key: Value| (ty.to_owned(), "on-message".to_owned(), key);
    assert_eq!(
        subscribers(&n),
        [
            on_message(EVENTS, json!({"fixed": ALL})),
            on_message(VALUE, json!({"pointer": "/to"})),
        ],
        "{what}"
    );
    let s = topic(STREAM);
    let what = format!("[{}] GET /v1/topics: {s}", api.lang);
    let (first, last) = (s["first"].as_u64(), s["last"].as_u64());
    assert_eq!(first, Some(1), "{what}");
    assert!(last.is_some_and(|last| last >= 7), "{what}");
    assert_eq!(s["length"].as_u64(), last, "{what}: the length");
    assert!(subscribers(&s).is_empty(), "{what}");
    assert!(subscribers(&topic(LOG)).is_empty(), "[{}] {LOG}", api.lang);
}

/// A `broadcast` action of `process` with an `append` of `mark` to every `tck-value` entity.
fn broadcast_append(mark: &str) -> Value {
    let payload = process(json!([{ "append": mark }]));
    json!({"broadcast": {"type": VALUE, "command": "process", "payload": payload}})
}

/// A broadcast reaches every existing `tck-value` entity exactly once; a failed command
/// broadcasts nothing; an entity that does not exist receives nothing.
async fn broadcast(api: &Api<'_>) {
    let created = ["tp-bc1", "tp-bc2", "tp-bc3"];
    for key in created {
        api.expect(
            VALUE,
            key,
            "process",
            process(json!([{"update": "x;"}])),
            json!({"value": "x;"}),
        )
        .await;
    }
    // These and entities of the checks above, with their values now.
    let mut existing = Vec::new();
    for key in created.iter().chain(&["tp-a", "tp-e", "tp-o1", "tp-pub"]) {
        existing.push((*key, value(api, VALUE, key).await));
    }
    let sender = "tp-bc";
    api.expect(
        EVENTS,
        sender,
        "process",
        process(json!([{"emit": "s"}, broadcast_append("b;")])),
        json!({"value": "s"}),
    )
    .await;
    for (key, before) in &existing {
        wait_value(api, VALUE, key, "the broadcast arrives", |v| v != before).await;
    }
    api.rejected(
        EVENTS,
        sender,
        "process",
        process(json!([broadcast_append("never;"), {"fail": "no broadcast"}])),
        "no broadcast",
    )
    .await;
    // The barrier: a second broadcast, sent once the first reached them all.
    api.expect(
        EVENTS,
        sender,
        "process",
        process(json!([broadcast_append("c;")])),
        json!({"value": "s"}),
    )
    .await;
    for (key, before) in &existing {
        let expected = format!("{before}b;c;");
        let got = wait_value(api, VALUE, key, "the second broadcast arrives", |v| {
            v.ends_with("c;") || v.len() >= expected.len()
        })
        .await;
        assert_eq!(
            got, expected,
            "[{}] {VALUE}/{key}: each broadcast once, nothing from a failed command",
            api.lang
        );
    }
    for key in created {
        api.assert_state(VALUE, key, json!({"value": "x;b;c;"}), 3)
            .await;
    }
    api.assert_state(VALUE, "tp-d", Value::Null, 0).await;
}
