//! Isolation (SPEC: isolation): what a guest keeps in memory is never seen by another entity,
//! by a replay, or after a failed command. Each model keeps a module-level global G; `remember`
//! shows G (`[G]`) and then sets it. A command may find in G only what an earlier successful
//! command of its own key left there (a node may keep an entity's instance warm), never another
//! key's string; after a deadline, a crash or a rejection the next command of the key starts
//! from `[]`. And the event-sourced state is always the fold of the events the journal lists.

use serde_json::{Value, json};

use super::{EVENTS, VALUE};
use crate::api::{Api, process};

/// The keys of the area, each remembering only strings that start with its own name.
const KEYS: &[&str] = &["iso-a", "iso-b", "iso-c", "iso-d", "iso-e", "iso-f"];

/// Both models: no global leaks between keys or out of a failed command; bad arguments of the
/// isolation actions are bad requests.
pub(super) async fn isolation(api: &Api<'_>) {
    for ty in [VALUE, EVENTS] {
        bad_arguments(api, ty).await;
        leaks_between_keys(api, ty).await;
        leaks_out_of_failures(api, ty).await;
        no_foreign_strings(api, ty).await;
    }
    replay_is_the_fold(api).await;
}

/// `remember` takes a string, `spin` a boolean, `crash` a string.
async fn bad_arguments(api: &Api<'_>, ty: &str) {
    let k = "iso-bad";
    for action in [
        json!({"remember": 1}),
        json!({"remember": null}),
        json!({"spin": 1}),
        json!({"spin": "true"}),
        json!({"crash": 1}),
    ] {
        api.bad_request(ty, k, "process", process(json!([action])))
            .await;
    }
    api.assert_state(ty, k, Value::Null, 0).await;
}

/// `remember` on one key, then another, then the first again: a key's first command sees `[]`,
/// a later one `[]` or its own key's previous string. Within one command G lives on (the second
/// `remember` shows the first's string), so the model does keep a global.
async fn leaks_between_keys(api: &Api<'_>, ty: &str) {
    let remember = |text: &str| process(json!([{ "remember": text }]));
    api.expect(ty, "iso-a", "process", remember("iso-a-1"), value("[]"))
        .await;
    api.expect(ty, "iso-b", "process", remember("iso-b-1"), value("[]"))
        .await;
    let a = reply(api, ty, "iso-a", remember("iso-a-2")).await;
    one_of(api, ty, "iso-a", &a, &["[][]", "[][iso-a-1]"]);
    let twice = process(json!([{"remember": "iso-b-p"}, {"remember": "iso-b-q"}]));
    let b = reply(api, ty, "iso-b", twice).await;
    one_of(
        api,
        ty,
        "iso-b",
        &b,
        &["[][][iso-b-p]", "[][iso-b-1][iso-b-p]"],
    );
    api.expect(ty, "iso-b", "get", json!(null), value(&b)).await;
    api.assert_state(ty, "iso-a", value(&a), 2).await;
    api.assert_state(ty, "iso-b", value(&b), 2).await;
}

/// A command that runs past its deadline, one that crashes and one that is rejected, each after
/// a `remember`: each fails, persists nothing, and leaves nothing in G for the next command of
/// its key, nor for a new key.
async fn leaks_out_of_failures(api: &Api<'_>, ty: &str) {
    let remember = |text: &str| process(json!([{ "remember": text }]));
    // Past the deadline: the node's per-call deadline stops the endless loop.
    let spin = process(json!([{"remember": "iso-c-spun"}, {"spin": true}]));
    let message = api
        .fails(ty, "iso-c", "process", spin, (504, "deadline_exceeded"))
        .await;
    assert!(
        message.contains("deadline"),
        "[{}] {ty}/iso-c: the deadline's message: {message}",
        api.lang
    );
    api.assert_state(ty, "iso-c", Value::Null, 0).await;
    api.expect(ty, "iso-c", "process", remember("iso-c-1"), value("[]"))
        .await;
    api.expect(ty, "iso-f", "process", remember("iso-f-1"), value("[]"))
        .await;

    // A crash: a panic or an uncaught exception, which every SDK lets trap.
    let crash = process(json!([{"remember": "iso-d-crashed"}, {"crash": "boom"}]));
    api.fails(ty, "iso-d", "process", crash, (500, "entity_failed"))
        .await;
    api.assert_state(ty, "iso-d", Value::Null, 0).await;
    api.expect(ty, "iso-d", "process", remember("iso-d-1"), value("[]"))
        .await;

    // A rejection: the guest finished normally, with G set.
    api.rejected(
        ty,
        "iso-e",
        "process",
        process(json!([{"remember": "iso-e-refused"}, {"fail": "no"}])),
        "no",
    )
    .await;
    api.assert_state(ty, "iso-e", Value::Null, 0).await;
    api.expect(ty, "iso-e", "process", remember("iso-e-1"), value("[]"))
        .await;

    // A failure after a success: the warm instance (if any) goes, so G starts over.
    api.rejected(
        ty,
        "iso-a",
        "process",
        process(json!([{"remember": "iso-a-refused"}, {"fail": "no"}])),
        "no",
    )
    .await;
    let before = api.state(ty, "iso-a").await.0["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.expect(
        ty,
        "iso-a",
        "process",
        remember("iso-a-3"),
        value(&format!("{before}[]")),
    )
    .await;
}

/// No key's state shows a string another key remembered, nor one its own failed commands did.
async fn no_foreign_strings(api: &Api<'_>, ty: &str) {
    for key in KEYS {
        let (state, _) = api.state(ty, key).await;
        let text = state.to_string();
        let foreign = KEYS
            .iter()
            .filter(|other| *other != key)
            .any(|other| text.contains(&format!("{other}-")));
        let failed = ["spun", "crashed", "refused"]
            .iter()
            .any(|f| text.contains(f));
        assert!(
            !foreign && !failed,
            "[{}] {ty}/{key}: a global left by another key or a failed command shows in {text}",
            api.lang
        );
    }
}

/// The reply's `value` of a successful `process` of `ty/key`.
async fn reply(api: &Api<'_>, ty: &str, key: &str, payload: Value) -> String {
    let got = api.ok(ty, key, "process", payload).await;
    got["value"].as_str().unwrap_or_default().to_owned()
}

/// Asserts that `got` is one of `allowed`.
fn one_of(api: &Api<'_>, ty: &str, key: &str, got: &str, allowed: &[&str]) {
    assert!(
        allowed.contains(&got),
        "[{}] {ty}/{key}: got {got:?}, expected one of {allowed:?}",
        api.lang
    );
}

/// `tck-events`: the keys whose first success came after their failure list exactly one
/// `[]` event per command; for every key the inspected state and `get` are the fold of the
/// journal's events.
async fn replay_is_the_fold(api: &Api<'_>) {
    for key in KEYS {
        let journal = api.journal_payloads(EVENTS, key, "events").await;
        if ["iso-c", "iso-d", "iso-e", "iso-f"].contains(key) {
            let got: Vec<Value> = journal.iter().map(|(_, e)| e.clone()).collect();
            assert_eq!(
                got,
                vec![json!([{ "appended": "[]" }])],
                "[{}] {EVENTS}/{key}: the journal's events",
                api.lang
            );
        }
        let folded: String = journal
            .iter()
            .flat_map(|(_, events)| events.as_array().cloned().unwrap_or_default())
            .map(|e| e["appended"].as_str().unwrap_or_default().to_owned())
            .collect();
        let sequence = journal.last().map_or(0, |(seq, _)| *seq);
        api.assert_state(EVENTS, key, value(&folded), sequence)
            .await;
        api.expect(EVENTS, key, "get", json!(null), value(&folded))
            .await;
    }
}

/// The models' state and reply `{"value": text}`.
fn value(text: &str) -> Value {
    json!({ "value": text })
}
