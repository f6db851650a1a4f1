//! The two model entities' own behaviour (SPEC: the value model, the event-sourced model):
//! `tck-value`'s updates and `tck-events`' events, what `fail` discards, `get`, and what the
//! journal keeps.

use serde_json::{Value, json};

use super::{EVENTS, VALUE};
use crate::api::{Api, process};

/// `tck-value`: updates, persistence only of changes, `fail`, `get`.
pub(super) async fn value_model(api: &Api<'_>) {
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
pub(super) async fn events_model(api: &Api<'_>) {
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
