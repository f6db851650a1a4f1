//! The `forward` action, for both models (SPEC: the value model's `process`): the caller gets
//! the target's reply or failure, the forwarding command's changes persist, at most one forward.

use serde_json::{Value, json};

use super::{COUNTER, EVENTS, VALUE};
use crate::api::{Api, process, target};

/// `forward`: to counter, to the other model, relayed failures, at most once.
pub(super) async fn forward(api: &Api<'_>) {
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
