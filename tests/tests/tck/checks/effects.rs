//! The effects the node carries out (SPEC: the effects paragraph of the value model): a call lands
//! exactly once (and not at all when its command failed); a reply comes back through `on-reply`,
//! and so do a rejection and an unknown command, as data; a timer fires once, a cancelled one
//! never, one of the same name replaces it, a repeating one fires until cancelled; a client
//! command retried with the same `Idempotency-Key` runs once and answers the same. Also: every
//! effect action is accepted by both models and changes nothing by itself.
//!
//! Effects run after their command commits, so every check waits by polling the entity's value
//! until a condition holds, within [`DEADLINE`]; never a fixed sleep. "Exactly once" and "never"
//! are checked against a *barrier*: a later effect of the same kind whose mark must appear after
//! (or instead of) the one under test, after which a duplicate or a cancelled firing would show.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{COUNTER, EVENTS, VALUE};
use crate::api::{Api, process, target};

/// How long an effect may take to show.
const DEADLINE: Duration = Duration::from_secs(10);
/// The pause between two polls.
const POLL: Duration = Duration::from_millis(25);

/// Every area of the effects, in turn (each on keys of its own).
pub(super) async fn effects(api: &Api<'_>) {
    accepted(api).await;
    calls(api).await;
    replies(api).await;
    timers(api).await;
    repeating(api).await;
    idempotency(api).await;
}

/// `process` with one `append` of `mark`.
fn append(mark: &str) -> Value {
    process(json!([{ "append": mark }]))
}

/// A `call` action appending `mark` to the value-model entity `key`.
fn call_append(key: &str, mark: &str) -> Value {
    json!({"call": target(VALUE, key, "process", append(mark))})
}

/// A `call` action with the reply route `on-reply` and `correlation`.
fn call_with_reply(ty: &str, key: &str, command: &str, payload: Value, correlation: &str) -> Value {
    let mut call = target(ty, key, command, payload);
    call["replyTo"] = json!({"command": "on-reply", "correlation": correlation});
    json!({ "call": call })
}

/// A one-shot `schedule` action firing `process` with an `append` of `mark` after `delay_ms`.
fn schedule_append(name: &str, delay_ms: u64, mark: &str) -> Value {
    json!({"schedule": {
        "name": name, "delayMs": delay_ms, "command": "process", "payload": append(mark)
    }})
}

/// The value of the value-model entity `key`, as `get` replies it.
async fn value(api: &Api<'_>, key: &str) -> String {
    let reply = api.ok(VALUE, key, "get", json!(null)).await;
    match reply["value"].as_str() {
        Some(value) => value.to_owned(),
        None => panic!(
            "[{}] {VALUE}/{key} get: no string value in {reply}",
            api.lang
        ),
    }
}

/// Polls the value of `key` until `done` holds of it, within [`DEADLINE`]; returns it.
async fn wait_value(api: &Api<'_>, key: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = value(api, key).await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {VALUE}/{key}: {what} within {} s; the value is {value:?}",
            api.lang,
            DEADLINE.as_secs()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the value of `key` contains `mark`; returns it.
async fn wait_mark(api: &Api<'_>, key: &str, mark: &str) -> String {
    wait_value(api, key, &format!("{mark:?} arrives"), |v| v.contains(mark)).await
}

/// Asserts the value of `key`.
fn assert_value(api: &Api<'_>, key: &str, got: &str, expected: &str, what: &str) {
    assert_eq!(got, expected, "[{}] {VALUE}/{key}: {what}", api.lang);
}

/// Every effect action is accepted by both models; effects alone change nothing. (What
/// publications and broadcasts do is checked by the topics area.)
async fn accepted(api: &Api<'_>) {
    let effects = [
        json!({"call": target(COUNTER, "fx-c", "add", json!(1))}),
        json!({"publish": {"topic": "tck", "payload": {"n": [1, "two", null]}}}),
        json!({"broadcast": {"type": COUNTER, "command": "get", "payload": null}}),
        json!({"schedule": {
            "name": "later", "delayMs": 60_000, "command": "get", "payload": null
        }}),
        json!({"cancel": "never-scheduled"}),
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
    // `append` is the value model's alone.
    api.bad_request(EVENTS, "fx-2", "process", append("x"))
        .await;
}

/// A call lands exactly once, from either model; a call of a failed command never.
async fn calls(api: &Api<'_>) {
    let target_key = "fx-call-t";
    api.expect(
        VALUE,
        "fx-call-v",
        "process",
        process(json!([{"update": "a"}, call_append(target_key, "v;")])),
        json!({"value": "a"}),
    )
    .await;
    wait_mark(api, target_key, "v;").await;
    api.expect(
        EVENTS,
        "fx-call-e",
        "process",
        process(json!([{"emit": "e"}, call_append(target_key, "e;")])),
        json!({"value": "e"}),
    )
    .await;
    wait_mark(api, target_key, "e;").await;
    // A failed command asks for nothing.
    api.rejected(
        VALUE,
        "fx-call-v",
        "process",
        process(json!([call_append(target_key, "never;"), {"fail": "no call"}])),
        "no call",
    )
    .await;
    // The barrier: a later call; by the time it landed, a duplicate would have too.
    api.ok(
        VALUE,
        "fx-call-v",
        "process",
        process(json!([call_append(target_key, "b;")])),
    )
    .await;
    let got = wait_mark(api, target_key, "b;").await;
    assert_value(
        api,
        target_key,
        &got,
        "v;e;b;",
        "each call lands once, in order",
    );
    api.assert_state(VALUE, target_key, json!({"value": "v;e;b;"}), 3)
        .await;
    api.assert_state(VALUE, "fx-call-v", json!({"value": "a"}), 1)
        .await;
}

/// Outcomes come back through `on-reply` as data: a reply (an object with a `value`, a number),
/// a rejection, an unknown command.
async fn replies(api: &Api<'_>) {
    let k = "fx-reply";
    let update = process(json!([{"update": "r"}]));
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([call_with_reply(
            VALUE,
            "fx-reply-t",
            "process",
            update,
            "c1"
        )])),
        json!({"value": ""}),
    )
    .await;
    let got = wait_mark(api, k, "c1:").await;
    assert_value(api, k, &got, "c1:ok:r;", "the reply of a call");
    api.assert_state(VALUE, "fx-reply-t", json!({"value": "r"}), 1)
        .await;

    // A reply that is not an object with a string `value`.
    let add = call_with_reply(COUNTER, "fx-reply-c", "add", json!(5), "c2");
    api.ok(VALUE, k, "process", process(json!([add]))).await;
    let got = wait_mark(api, k, "c2:").await;
    assert_value(api, k, &got, "c1:ok:r;c2:ok:;", "a number reply");
    api.expect(COUNTER, "fx-reply-c", "get", json!(null), json!(5))
        .await;

    // A rejection, as data; the rejected command changed nothing.
    let fail = process(json!([{"update": "lost"}, {"fail": "not today"}]));
    let call = call_with_reply(VALUE, "fx-reply-t", "process", fail, "c3");
    api.ok(VALUE, k, "process", process(json!([call]))).await;
    let got = wait_mark(api, k, "c3:").await;
    assert_value(
        api,
        k,
        &got,
        "c1:ok:r;c2:ok:;c3:rejected:not today;",
        "a rejected call",
    );
    api.assert_state(VALUE, "fx-reply-t", json!({"value": "r"}), 1)
        .await;

    // An unknown command, as data (the message is free, and ends the mark with `;`).
    let call = call_with_reply(VALUE, "fx-reply-t", "no-such-command", json!(null), "c4");
    api.ok(VALUE, k, "process", process(json!([call]))).await;
    let got = wait_mark(api, k, "c4:").await;
    let prefix = "c1:ok:r;c2:ok:;c3:rejected:not today;c4:unknown_command:";
    assert!(
        got.starts_with(prefix) && got.ends_with(';') && got.matches("c4:").count() == 1,
        "[{}] {VALUE}/{k}: a call of an unknown command comes back as `{prefix}...;`, got {got:?}",
        api.lang
    );
    // Each outcome came back once: four replies, four changes.
    api.assert_state(VALUE, k, json!({ "value": got }), 4).await;

    // `on-reply` sent by a client (no correlation) is a bad request.
    api.bad_request(VALUE, k, "on-reply", json!({"ok": {"value": "x"}}))
        .await;
}

/// One-shot timers: one fires once; a cancelled one never; one of the same name replaces it.
async fn timers(api: &Api<'_>) {
    // Fires once.
    let k = "fx-timer-once";
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("once", 200, "t;")])),
        json!({"value": ""}),
    )
    .await;
    wait_mark(api, k, "t;").await;
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("barrier", 300, "b;")])),
    )
    .await;
    let got = wait_mark(api, k, "b;").await;
    assert_value(api, k, &got, "t;b;", "a timer fires once");

    // A cancelled timer never fires: the barrier is due after it would have been.
    let k = "fx-timer-cancel";
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("doomed", 1_500, "x;")])),
    )
    .await;
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([{"cancel": "doomed"}])),
        json!({"value": ""}),
    )
    .await;
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("barrier", 2_000, "b;")])),
    )
    .await;
    let got = wait_mark(api, k, "b;").await;
    assert_value(api, k, &got, "b;", "a cancelled timer never fires");

    // A timer of the same name replaces the first (WIT: `timer`).
    let k = "fx-timer-replace";
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("t", 1_500, "old;")])),
    )
    .await;
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("t", 100, "new;")])),
    )
    .await;
    wait_mark(api, k, "new;").await;
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("barrier", 2_000, "b;")])),
    )
    .await;
    let got = wait_mark(api, k, "b;").await;
    assert_value(
        api,
        k,
        &got,
        "new;b;",
        "a timer of the same name replaces it",
    );
}

/// A repeating timer fires until cancelled, and not after.
async fn repeating(api: &Api<'_>) {
    let k = "fx-timer-every";
    let tick = json!({"schedule": {
        "name": "tick", "delayMs": 50, "everyMs": 100, "command": "process", "payload": append("t;")
    }});
    api.expect(
        VALUE,
        k,
        "process",
        process(json!([tick])),
        json!({"value": ""}),
    )
    .await;
    wait_value(api, k, "3 ticks", |v| v.matches("t;").count() >= 3).await;
    // The cancel's reply is the value when the cancel ran; no tick comes after it.
    let at_cancel = api
        .ok(VALUE, k, "process", process(json!([{"cancel": "tick"}])))
        .await;
    let Some(at_cancel) = at_cancel["value"].as_str().map(str::to_owned) else {
        panic!(
            "[{}] {VALUE}/{k}: the cancel's reply: {at_cancel}",
            api.lang
        );
    };
    assert!(
        at_cancel.matches("t;").count() >= 3 && at_cancel.replace("t;", "").is_empty(),
        "[{}] {VALUE}/{k}: only ticks before the cancel: {at_cancel:?}",
        api.lang
    );
    // The barrier is due several periods after the cancel.
    api.ok(
        VALUE,
        k,
        "process",
        process(json!([schedule_append("barrier", 500, "b;")])),
    )
    .await;
    let got = wait_mark(api, k, "b;").await;
    assert_value(
        api,
        k,
        &got,
        &format!("{at_cancel}b;"),
        "no tick after the cancel",
    );
}

/// A client command sent twice with the same `Idempotency-Key` runs once and answers the same;
/// another key runs again.
async fn idempotency(api: &Api<'_>) {
    let k = "fx-idem";
    let payload = append("i;");
    let send = |key: &'static str| {
        let payload = payload.clone();
        async move {
            let r = api
                .send_with_headers(VALUE, k, "process", &payload, &[("Idempotency-Key", key)])
                .await;
            assert_eq!(
                r.status, 200,
                "[{}] {VALUE}/{k} process with Idempotency-Key {key}: {}",
                api.lang, r.body
            );
            r.json
        }
    };
    let first = send("fx-idem-1").await;
    assert_eq!(
        first,
        json!({"value": "i;"}),
        "[{}] the first answer",
        api.lang
    );
    let again = send("fx-idem-1").await;
    assert_eq!(
        again, first,
        "[{}] a retry with the same Idempotency-Key answers the same",
        api.lang
    );
    api.assert_state(VALUE, k, json!({"value": "i;"}), 1).await;
    let other = send("fx-idem-2").await;
    assert_eq!(
        other,
        json!({"value": "i;i;"}),
        "[{}] another Idempotency-Key runs again",
        api.lang
    );
    api.assert_state(VALUE, k, json!({"value": "i;i;"}), 2)
        .await;
}
