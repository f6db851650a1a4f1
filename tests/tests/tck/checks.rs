//! The TCK's checks, one async function per area of tests/tck/SPEC.md, each against a node that
//! has one language's components deployed. Areas use keys of their own, so they run one after
//! the other on the same node; `recovery` restarts it and runs last.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::Suite;
use super::api::{Api, now_ms, process, target};

/// The entity types the components are deployed as.
pub const VALUE: &str = "tck-value";
pub const EVENTS: &str = "tck-events";
pub const COUNTER: &str = "counter";
pub const CART: &str = "cart";

/// How far the context's `timestampMs` may be from the test's own clock.
const CLOCK_SLACK_MS: u64 = 5_000;

/// An area of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Deploy,
    ValueModel,
    EventsModel,
    Forward,
    Effects,
    Context,
    Failures,
    Counter,
    Cart,
    Inspection,
    Recovery,
}

impl Area {
    /// Every area, in the order they run (`Deploy` is the setup, `Recovery` must be last).
    pub const ALL: &[Area] = &[
        Area::Deploy,
        Area::ValueModel,
        Area::EventsModel,
        Area::Forward,
        Area::Effects,
        Area::Context,
        Area::Failures,
        Area::Counter,
        Area::Cart,
        Area::Inspection,
        Area::Recovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Area::Deploy => "deploy",
            Area::ValueModel => "value_model",
            Area::EventsModel => "events_model",
            Area::Forward => "forward",
            Area::Effects => "effects",
            Area::Context => "context",
            Area::Failures => "failures",
            Area::Counter => "counter",
            Area::Cart => "cart",
            Area::Inspection => "inspection",
            Area::Recovery => "recovery",
        }
    }

    /// Runs the area's checks; they panic on the first difference.
    pub async fn run(self, suite: &mut Suite) {
        if self == Area::Recovery {
            return recovery(suite).await;
        }
        let api = Api::new(suite);
        match self {
            Area::Deploy => descriptors(suite).await,
            Area::ValueModel => value_model(&api).await,
            Area::EventsModel => events_model(&api).await,
            Area::Forward => forward(&api).await,
            Area::Effects => effects(&api).await,
            Area::Context => context(&api).await,
            Area::Failures => failures(&api).await,
            Area::Counter => counter(&api).await,
            Area::Cart => cart(&api).await,
            Area::Inspection => inspection(&api).await,
            Area::Recovery => {}
        }
    }
}

/// Kinds and command lists of the deployed modules.
pub async fn descriptors(suite: &Suite) {
    let api = Api::new(suite);
    let expected = [
        (VALUE, "value", vec!["process", "get", "context"], true),
        (
            EVENTS,
            "event-sourced",
            vec!["process", "get", "context"],
            true,
        ),
        (COUNTER, "value", vec!["add", "get"], false),
        (
            CART,
            "event-sourced",
            vec!["add-item", "remove-item", "get-cart"],
            false,
        ),
    ];
    for (ty, kind, commands, ordered) in expected {
        let module = api.get(&format!("/v1/modules/{ty}")).await;
        assert_eq!(module["kind"], kind, "[{}] {ty}: kind", api.lang);
        let mut got: Vec<&str> = module["commands"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut commands = commands;
        if !ordered {
            got.sort_unstable();
            commands.sort_unstable();
        }
        assert_eq!(got, commands, "[{}] {ty}: commands", api.lang);
    }
}

/// `tck-value`: updates, persistence only of changes, `fail`, `get`.
async fn value_model(api: &Api<'_>) {
    let k = "vm-1";
    api.expect(VALUE, k, "get", json!(null), json!({"value": ""}))
        .await;
    api.assert_state(VALUE, k, Value::Null, 0).await;
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([])),
        json!({"value": ""}),
    )
    .await;
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([{"update": ""}])),
        json!({"value": ""}),
    )
    .await;
    api.assert_state(VALUE, k, Value::Null, 0).await;

    // Actions run in order; one command is one journal entry.
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([{"update": "a"}, {"update": "b"}])),
        json!({"value": "b"}),
    )
    .await;
    api.assert_state(VALUE, k, json!({"value": "b"}), 1).await;
    // Back to the state it started from: nothing to persist.
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([{"update": "x"}, {"update": "b"}])),
        json!({"value": "b"}),
    )
    .await;
    api.assert_state(VALUE, k, json!({"value": "b"}), 1).await;
    let text = "ünï \"quoted\" ✓ \\ 1";
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([{ "update": text }])),
        json!({ "value": text }),
    )
    .await;
    api.assert_state(VALUE, k, json!({ "value": text }), 2)
        .await;

    // `fail` discards every update of the command, before and after it.
    let message = "no: \"lost\" ✗";
    let actions = json!([{"update": "lost"}, {"fail": message}, {"update": "never"}]);
    api.rejected(VALUE, k, "process", process(actions), message)
        .await;
    api.rejected(
        VALUE,
        k,
        "process",
        process(json!([{"fail": "first"}])),
        "first",
    )
    .await;
    api.assert_state(VALUE, k, json!({ "value": text }), 2)
        .await;
    api.expect(VALUE, k, "get", json!(null), json!({ "value": text }))
        .await;
    api.rejected(
        VALUE,
        "vm-2",
        "process",
        process(json!([{"update": "z"}, {"fail": "f"}])),
        "f",
    )
    .await;
    api.assert_state(VALUE, "vm-2", Value::Null, 0).await;

    assert_eq!(
        api.journal_payloads(VALUE, k, "state").await,
        [(1, json!({"value": "b"})), (2, json!({ "value": text }))],
        "[{}] {VALUE}/{k}: the journal's states",
        api.lang
    );
}

/// `tck-events`: emitted events, the working state, `fail`, `get`.
async fn events_model(api: &Api<'_>) {
    let k = "em-1";
    api.expect(EVENTS, k, "get", json!(null), json!({"value": ""}))
        .await;
    api.expect(
        EVENTS,
        k,
        "process",
        process(json!([])),
        json!({"value": ""}),
    )
    .await;
    api.assert_state(EVENTS, k, Value::Null, 0).await;

    api.expect(
        EVENTS,
        k,
        "process",
        process(json!([{"emit": "ab"}, {"emit": "c"}])),
        json!({"value": "abc"}),
    )
    .await;
    api.assert_state(EVENTS, k, json!({"value": "abc"}), 1)
        .await;
    api.expect(
        EVENTS,
        k,
        "process",
        process(json!([{"emit": "d"}])),
        json!({"value": "abcd"}),
    )
    .await;
    // An event that changes nothing is still an event.
    api.expect(
        EVENTS,
        k,
        "process",
        process(json!([{"emit": ""}])),
        json!({"value": "abcd"}),
    )
    .await;
    api.assert_state(EVENTS, k, json!({"value": "abcd"}), 3)
        .await;

    api.rejected(
        EVENTS,
        k,
        "process",
        process(json!([{"emit": "lost"}, {"fail": "stop ✋"}, {"emit": "never"}])),
        "stop ✋",
    )
    .await;
    api.rejected(
        EVENTS,
        "em-2",
        "process",
        process(json!([{"emit": "z"}, {"fail": "f"}])),
        "f",
    )
    .await;
    api.assert_state(EVENTS, "em-2", Value::Null, 0).await;
    api.expect(EVENTS, k, "get", json!(null), json!({"value": "abcd"}))
        .await;
    api.assert_state(EVENTS, k, json!({"value": "abcd"}), 3)
        .await;

    assert_eq!(
        api.journal_payloads(EVENTS, k, "events").await,
        [
            (1, json!([{"appended": "ab"}, {"appended": "c"}])),
            (2, json!([{"appended": "d"}])),
            (3, json!([{"appended": ""}])),
        ],
        "[{}] {EVENTS}/{k}: the journal's events",
        api.lang
    );
}

/// `forward`: to counter, to the other model, relayed failures, at most once.
async fn forward(api: &Api<'_>) {
    let add = |n: Value| json!({"forward": target(COUNTER, "fw-c", "add", n)});
    // Value model to counter: the caller gets the counter's reply; the update is persisted.
    api.expect(
        VALUE,
        "fw-v1",
        "process",
        process(json!([{"update": "a"}, add(json!(5))])),
        json!(5),
    )
    .await;
    api.assert_state(VALUE, "fw-v1", json!({"value": "a"}), 1)
        .await;
    api.expect(COUNTER, "fw-c", "get", json!(null), json!(5))
        .await;
    // Event-sourced model to counter.
    api.expect(
        EVENTS,
        "fw-e1",
        "process",
        process(json!([{"emit": "e"}, add(json!(2))])),
        json!(7),
    )
    .await;
    api.assert_state(EVENTS, "fw-e1", json!({"value": "e"}), 1)
        .await;

    // Each model to the other.
    let emit = process(json!([{"emit": "x"}]));
    api.expect(
        VALUE,
        "fw-v2",
        "process",
        process(json!([{"forward": target(EVENTS, "fw-e2", "process", emit)}])),
        json!({"value": "x"}),
    )
    .await;
    api.assert_state(VALUE, "fw-v2", Value::Null, 0).await;
    api.assert_state(EVENTS, "fw-e2", json!({"value": "x"}), 1)
        .await;
    let update = process(json!([{"update": "v"}]));
    api.expect(
        EVENTS,
        "fw-e3",
        "process",
        process(json!([{"emit": "e"}, {"forward": target(VALUE, "fw-v3", "process", update)}])),
        json!({"value": "v"}),
    )
    .await;
    api.assert_state(EVENTS, "fw-e3", json!({"value": "e"}), 1)
        .await;
    api.assert_state(VALUE, "fw-v3", json!({"value": "v"}), 1)
        .await;
    // The forwarded command runs as the target's.
    let ctx = api
        .ok(
            VALUE,
            "fw-v4",
            "process",
            process(json!([{"forward": target(EVENTS, "fw-ctx", "context", json!(null))}])),
        )
        .await;
    assert_eq!(
        (&ctx["entityType"], &ctx["key"], &ctx["command"]),
        (&json!(EVENTS), &json!("fw-ctx"), &json!("context")),
        "[{}] the context of a forwarded command: {ctx}",
        api.lang
    );

    // The target's failures are the caller's; the forwarding command's update stays.
    api.bad_request(
        VALUE,
        "fw-v5",
        "process",
        process(json!([{"update": "kept"}, add(json!("five"))])),
    )
    .await;
    api.assert_state(VALUE, "fw-v5", json!({"value": "kept"}), 1)
        .await;
    let fail = process(json!([{"fail": "the target says no"}]));
    api.rejected(
        VALUE,
        "fw-v5",
        "process",
        process(json!([{"forward": target(EVENTS, "fw-e2", "process", fail)}])),
        "the target says no",
    )
    .await;
    api.expect(COUNTER, "fw-c", "get", json!(null), json!(7))
        .await;

    // A second forward, or a `fail` after the forward: nothing persisted, nothing forwarded.
    let twice = "entity error: forward called more than once";
    api.rejected(
        VALUE,
        "fw-v6",
        "process",
        process(json!([{"update": "u"}, add(json!(1)), add(json!(1))])),
        twice,
    )
    .await;
    api.assert_state(VALUE, "fw-v6", Value::Null, 0).await;
    api.rejected(
        EVENTS,
        "fw-e6",
        "process",
        process(json!([add(json!(1)), {"emit": "u"}, add(json!(1))])),
        twice,
    )
    .await;
    api.assert_state(EVENTS, "fw-e6", Value::Null, 0).await;
    api.rejected(
        VALUE,
        "fw-v7",
        "process",
        process(json!([{"update": "u"}, add(json!(1)), {"fail": "after the forward"}])),
        "after the forward",
    )
    .await;
    api.assert_state(VALUE, "fw-v7", Value::Null, 0).await;
    api.expect(COUNTER, "fw-c", "get", json!(null), json!(7))
        .await;
}

/// `call`, `publish` and `schedule` are accepted (the node does not run them yet).
async fn effects(api: &Api<'_>) {
    let effects = [
        json!({"call": target(COUNTER, "fx-c", "add", json!(1))}),
        json!({"publish": {"topic": "tck", "payload": {"n": [1, "two", null]}}}),
        json!({"schedule": {
            "name": "later", "delayMs": 60_000, "command": "get", "payload": null
        }}),
    ];
    for (ty, change) in [(VALUE, "update"), (EVENTS, "emit")] {
        let mut actions = vec![json!({ change: "a" })];
        actions.extend(effects.iter().cloned());
        api.expect(
            ty,
            "fx-1",
            "process",
            process(Value::Array(actions)),
            json!({"value": "a"}),
        )
        .await;
        api.assert_state(ty, "fx-1", json!({"value": "a"}), 1).await;
        // Effects alone change nothing.
        api.expect(
            ty,
            "fx-2",
            "process",
            process(Value::Array(effects.to_vec())),
            json!({"value": ""}),
        )
        .await;
        api.assert_state(ty, "fx-2", Value::Null, 0).await;
    }
}

/// `context`: every field of the command context.
async fn context(api: &Api<'_>) {
    let mut ids = BTreeSet::new();
    for (ty, change) in [(VALUE, "update"), (EVENTS, "emit")] {
        let key = "ctx key ✓";
        let check = |ctx: &Value, sequence: u64, (t0, t1): (u64, u64)| {
            let what = format!("[{}] {ty}/{key} context: {ctx}", api.lang);
            let fields: BTreeSet<&str> = ctx
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let expected = [
                "entityType",
                "key",
                "command",
                "commandId",
                "sequence",
                "timestampMs",
                "randomSeed",
            ];
            assert_eq!(fields, expected.into(), "{what}: the fields");
            assert_eq!(ctx["entityType"], ty, "{what}: entityType");
            assert_eq!(ctx["key"], key, "{what}: key");
            assert_eq!(ctx["command"], "context", "{what}: command");
            assert_eq!(ctx["sequence"], sequence, "{what}: sequence");
            let id = ctx["commandId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{what}: commandId");
            let ts = ctx["timestampMs"].as_u64().unwrap_or(0);
            assert!(
                t0.saturating_sub(CLOCK_SLACK_MS) <= ts && ts <= t1 + CLOCK_SLACK_MS,
                "{what}: timestampMs is not within {CLOCK_SLACK_MS} ms of the request ({t0}..{t1})"
            );
            assert!(ctx["randomSeed"].is_number(), "{what}: randomSeed");
            id
        };
        let mut context_at = async |sequence: u64| {
            let t0 = now_ms();
            let ctx = api.ok(ty, key, "context", json!(null)).await;
            let id = check(&ctx, sequence, (t0, now_ms()));
            assert!(
                ids.insert(id.clone()),
                "[{}] {ty}/{key}: commandId {id} seen before",
                api.lang
            );
        };
        context_at(0).await;
        context_at(0).await;
        api.assert_state(ty, key, Value::Null, 0).await;
        api.ok(ty, key, "process", process(json!([{ change: "x" }])))
            .await;
        context_at(1).await;
        api.ok(ty, key, "process", process(json!([{ change: "y" }])))
            .await;
        context_at(2).await;
        context_at(2).await;
        let (_, sequence) = api.state(ty, key).await;
        assert_eq!(sequence, 2, "[{}] {ty}/{key}: the sequence", api.lang);
        // An empty body is the payload `null`.
        let r = api.node.call(ty, key, "context", "").await;
        assert_eq!(
            r.status, 200,
            "[{}] {ty}/{key} context with no body: {}",
            api.lang, r.body
        );
        assert_eq!(
            r.json["sequence"], 2,
            "[{}] {ty}/{key}: {}",
            api.lang, r.body
        );
    }
}

/// Bad requests and unknown commands, for both models.
async fn failures(api: &Api<'_>) {
    let sched = |delay: Value| {
        let timer = json!({"name": "n", "delayMs": delay, "command": "get", "payload": null});
        process(json!([{ "schedule": timer }]))
    };
    let malformed = [
        json!(null),
        json!("actions"),
        json!(1),
        json!([]),
        json!({}),
        json!({"actions": null}),
        json!({"actions": {}}),
        json!({"actions": "update"}),
        json!({"actions": ["update"]}),
        json!({"actions": [{}]}),
        json!({"actions": [{"nope": "x"}]}),
        json!({"actions": [{"fail": 1}]}),
        json!({"actions": [{"fail": "a", "update": "b"}]}),
        json!({"actions": [{"forward": "counter"}]}),
        json!({"actions": [{"forward": {"type": "counter", "key": "k"}}]}),
        json!({"actions": [{"call": {"type": 1, "key": "k", "command": "get", "payload": null}}]}),
        json!({"actions": [{"publish": {"payload": 1}}]}),
        sched(json!(-1)),
        sched(json!("soon")),
    ];
    for (ty, change, other) in [(VALUE, "update", "emit"), (EVENTS, "emit", "update")] {
        let k = "bad-1";
        for payload in malformed.iter().cloned() {
            api.bad_request(ty, k, "process", payload).await;
        }
        // The other model's action, a mistyped one, and a valid one before a bad one.
        api.bad_request(ty, k, "process", process(json!([{ other: "x" }])))
            .await;
        api.bad_request(ty, k, "process", process(json!([{ change: 1 }])))
            .await;
        api.bad_request(
            ty,
            k,
            "process",
            process(json!([{ change: "a" }, {"nope": 1}])),
        )
        .await;
        api.bad_request(ty, k, "get", json!(1)).await;
        api.bad_request(ty, k, "context", json!({})).await;
        let r = api.node.call(ty, k, "process", "{nope").await;
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "[{}] {ty}/{k} process with a body that is not JSON: {}",
            api.lang,
            r.body
        );
        api.unknown_command(ty, k, "nope").await;
        api.unknown_command(ty, k, other).await;
        api.assert_state(ty, k, Value::Null, 0).await;
    }
}

/// The counter's script.
async fn counter(api: &Api<'_>) {
    let k = "cnt-1";
    api.expect(COUNTER, k, "get", json!(null), json!(0)).await;
    api.assert_state(COUNTER, k, Value::Null, 0).await;
    api.expect(COUNTER, k, "add", json!(5), json!(5)).await;
    api.expect(COUNTER, k, "add", json!(-7), json!(-2)).await;
    api.expect(COUNTER, k, "get", json!(null), json!(-2)).await;
    for payload in [
        json!("five"),
        json!(1.5),
        json!(null),
        json!({"n": 1}),
        json!([1]),
    ] {
        api.bad_request(COUNTER, k, "add", payload).await;
    }
    api.bad_request(COUNTER, k, "get", json!(1)).await;
    api.unknown_command(COUNTER, k, "reset").await;
    api.assert_state(COUNTER, k, json!({"total": -2}), 2).await;
    assert_eq!(
        api.journal_payloads(COUNTER, k, "state").await,
        [(1, json!({"total": 5})), (2, json!({"total": -2}))],
        "[{}] {COUNTER}/{k}: the journal's states",
        api.lang
    );

    // The 64-bit limits, exactly.
    let k = "cnt-max";
    api.expect(COUNTER, k, "add", json!(i64::MAX), json!(i64::MAX))
        .await;
    api.rejected(COUNTER, k, "add", json!(1), "adding 1 overflows")
        .await;
    api.expect(COUNTER, k, "add", json!(i64::MIN), json!(-1))
        .await;
    api.rejected(
        COUNTER,
        k,
        "add",
        json!(i64::MIN),
        "adding -9223372036854775808 overflows",
    )
    .await;
    api.expect(COUNTER, k, "add", json!(i64::MIN + 1), json!(i64::MIN))
        .await;
    api.expect(COUNTER, k, "get", json!(null), json!(i64::MIN))
        .await;
    api.assert_state(COUNTER, k, json!({"total": i64::MIN}), 3)
        .await;
}

/// A line of the cart.
fn line(id: &str, name: &str, quantity: Value) -> Value {
    json!({"productId": id, "name": name, "quantity": quantity})
}

/// The shopping cart's script.
async fn cart(api: &Api<'_>) {
    let add = |id: &str, name: &str, q: i64| line(id, name, json!(q));
    let k = "cart-1";
    api.expect(CART, k, "get-cart", json!(null), json!({"items": []}))
        .await;
    api.assert_state(CART, k, Value::Null, 0).await;
    for item in [
        add("p1", "Apple", 2),
        add("p2", "Bread", 1),
        add("p1", "Apple", 3),
    ] {
        api.expect(CART, k, "add-item", item, json!({})).await;
    }
    api.expect(
        CART,
        k,
        "get-cart",
        json!(null),
        json!({"items": [add("p1", "Apple", 5), add("p2", "Bread", 1)]}),
    )
    .await;

    for (id, q) in [("p9", 0), ("p8", -1)] {
        let message = format!("Quantity for item {id} must be greater than zero.");
        api.rejected(CART, k, "add-item", add(id, "None", q), &message)
            .await;
    }
    api.rejected(
        CART,
        k,
        "remove-item",
        json!({"productId": "p7"}),
        "Cannot remove item p7 because it is not in the cart.",
    )
    .await;
    for payload in [
        json!(null),
        json!({"productId": "p1", "quantity": 1}),
        json!({"productId": "p1", "name": "Apple"}),
        line("p1", "Apple", json!("2")),
        line("p1", "Apple", json!(1.5)),
        json!({"productId": 5, "name": "Apple", "quantity": 1}),
    ] {
        api.bad_request(CART, k, "add-item", payload).await;
    }
    api.bad_request(CART, k, "remove-item", json!({})).await;
    api.bad_request(CART, k, "remove-item", json!({"productId": 5}))
        .await;
    api.bad_request(CART, k, "get-cart", json!({})).await;
    api.unknown_command(CART, k, "checkout").await;
    api.assert_state(
        CART,
        k,
        json!({"items": [add("p1", "Apple", 5), add("p2", "Bread", 1)]}),
        3,
    )
    .await;

    // A removed product added again goes last.
    api.expect(
        CART,
        k,
        "remove-item",
        json!({"productId": "p1"}),
        json!({}),
    )
    .await;
    api.expect(CART, k, "add-item", add("p1", "Apple", 1), json!({}))
        .await;
    let items = json!({"items": [add("p2", "Bread", 1), add("p1", "Apple", 1)]});
    api.expect(CART, k, "get-cart", json!(null), items.clone())
        .await;
    api.assert_state(CART, k, items, 5).await;
    let added = |item: Value| json!([{"itemAdded": {"item": item}}]);
    assert_eq!(
        api.journal_payloads(CART, k, "events").await,
        [
            (1, added(add("p1", "Apple", 2))),
            (2, added(add("p2", "Bread", 1))),
            (3, added(add("p1", "Apple", 3))),
            (4, json!([{"itemRemoved": {"productId": "p1"}}])),
            (5, added(add("p1", "Apple", 1))),
        ],
        "[{}] {CART}/{k}: the journal's events",
        api.lang
    );

    // A line's quantity is a 64-bit integer.
    let k = "cart-2";
    api.expect(CART, k, "add-item", add("big", "Big", i64::MAX), json!({}))
        .await;
    api.rejected(
        CART,
        k,
        "add-item",
        add("big", "Big", 1),
        "Quantity for item big is too large.",
    )
    .await;
    api.expect(
        CART,
        k,
        "get-cart",
        json!(null),
        json!({"items": [add("big", "Big", i64::MAX)]}),
    )
    .await;
}

/// The inspection endpoints: state, sequence and the journal rendered as JSON.
async fn inspection(api: &Api<'_>) {
    for (ty, change, field) in [(VALUE, "update", "state"), (EVENTS, "emit", "events")] {
        let k = "insp 1";
        let fresh = api.inspection(ty, k).await;
        assert_eq!(
            (
                &fresh["type"],
                &fresh["key"],
                &fresh["state"],
                &fresh["sequence"]
            ),
            (&json!(ty), &json!(k), &Value::Null, &json!(0)),
            "[{}] {ty}/{k}: a new entity's inspection: {fresh}",
            api.lang
        );
        assert!(api.journal(ty, k).await.is_empty());

        let t0 = now_ms();
        api.ok(ty, k, "process", process(json!([{ change: "a" }])))
            .await;
        api.ok(ty, k, "process", process(json!([{ change: "b" }])))
            .await;
        let t1 = now_ms();
        let expected = if ty == VALUE { "b" } else { "ab" };
        let seen = api.inspection(ty, k).await;
        assert_eq!(
            (&seen["state"], &seen["sequence"], &seen["moduleVersion"]),
            (&json!({ "value": expected }), &json!(2), &json!(1)),
            "[{}] {ty}/{k}: the inspection: {seen}",
            api.lang
        );

        let entries = api.journal(ty, k).await;
        let what = format!("[{}] {ty}/{k}: the journal {entries:?}", api.lang);
        assert_eq!(entries.len(), 2, "{what}");
        let rendered: Vec<Value> = if ty == VALUE {
            vec![json!({"value": "a"}), json!({"value": "b"})]
        } else {
            vec![json!([{"appended": "a"}]), json!([{"appended": "b"}])]
        };
        let mut ids = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry["seq"], i + 1, "{what}");
            assert_eq!(entry["command"], "process", "{what}");
            assert_eq!(entry["moduleVersion"], 1, "{what}");
            assert_eq!(entry[field], rendered[i], "{what}");
            let other = if field == "state" { "events" } else { "state" };
            assert!(
                entry.get(other).is_none(),
                "{what}: `{other}` in a {ty} entry"
            );
            let ts = entry["timestampMs"].as_u64().unwrap_or(0);
            assert!(
                t0.saturating_sub(CLOCK_SLACK_MS) <= ts && ts <= t1 + CLOCK_SLACK_MS,
                "{what}"
            );
            let id = entry["commandId"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && ids.insert(id.to_owned()),
                "{what}: commandIds"
            );
        }
        // Reads and failures leave the journal alone.
        api.ok(ty, k, "get", json!(null)).await;
        api.ok(ty, k, "context", json!(null)).await;
        api.rejected(
            ty,
            k,
            "process",
            process(json!([{ change: "c" }, {"fail": "no"}])),
            "no",
        )
        .await;
        assert_eq!(
            api.journal(ty, k).await,
            entries,
            "{what}: after reads and a rejection"
        );
    }
}

/// Entities whose state, journal and replies must survive restarts: (type, key, read command).
const SURVIVORS: &[(&str, &str, &str)] = &[
    (VALUE, "rec-v", "get"),
    (EVENTS, "rec-e", "get"),
    (COUNTER, "rec-c", "get"),
    (CART, "rec-cart", "get-cart"),
];

/// Everything observable about the survivors.
async fn observe(api: &Api<'_>) -> Vec<(Value, Vec<Value>, Value)> {
    let mut seen = Vec::new();
    for (ty, key, read) in SURVIVORS {
        seen.push((
            api.inspection(ty, key).await,
            api.journal(ty, key).await,
            api.ok(ty, key, read, json!(null)).await,
        ));
    }
    seen
}

/// Writes one round of changes to the survivors.
async fn change_survivors(api: &Api<'_>, round: &str) {
    api.ok(
        VALUE,
        "rec-v",
        "process",
        process(json!([{ "update": round }])),
    )
    .await;
    for part in ["a", "b"] {
        let text = format!("{round}{part}");
        api.ok(
            EVENTS,
            "rec-e",
            "process",
            process(json!([{ "emit": text }])),
        )
        .await;
    }
    api.ok(COUNTER, "rec-c", "add", json!(3)).await;
    let item = json!({"productId": round, "name": round, "quantity": 2});
    api.ok(CART, "rec-cart", "add-item", item).await;
}

/// A graceful restart and a `kill -9` lose nothing: same state, journal and replies, with the
/// event-sourced states folded again from their journals.
async fn recovery(suite: &mut Suite) {
    let lang = suite.lang;
    change_survivors(&Api::new(suite), "one-").await;
    let before = observe(&Api::new(suite)).await;

    let clean = suite.node.terminate().expect("stop the node with SIGTERM");
    assert!(clean, "[{lang}] the node did not exit cleanly on SIGTERM");
    suite.node.restart().expect("restart the node");
    let before = {
        let api = Api::new(suite);
        assert_eq!(
            observe(&api).await,
            before,
            "[{lang}] the survivors after a graceful restart"
        );
        change_survivors(&api, "two-").await;
        observe(&api).await
    };

    suite.node.kill9();
    suite
        .node
        .restart()
        .expect("restart the node after kill -9");
    let api = Api::new(suite);
    assert_eq!(
        observe(&api).await,
        before,
        "[{lang}] the survivors after kill -9"
    );

    // The exact states, re-folded from the journals of the event-sourced ones.
    api.assert_state(VALUE, "rec-v", json!({"value": "two-"}), 2)
        .await;
    api.assert_state(EVENTS, "rec-e", json!({"value": "one-aone-btwo-atwo-b"}), 4)
        .await;
    api.assert_state(COUNTER, "rec-c", json!({"total": 6}), 2)
        .await;
    let two = |id: &str| line(id, id, json!(2));
    api.assert_state(
        CART,
        "rec-cart",
        json!({"items": [two("one-"), two("two-")]}),
        2,
    )
    .await;
    // And the entities carry on from there.
    let ctx = api.ok(EVENTS, "rec-e", "context", json!(null)).await;
    assert_eq!(
        ctx["sequence"], 4,
        "[{lang}] the sequence after recovery: {ctx}"
    );
    api.expect(
        EVENTS,
        "rec-e",
        "process",
        process(json!([{"emit": "!"}])),
        json!({"value": "one-aone-btwo-atwo-b!"}),
    )
    .await;
}
