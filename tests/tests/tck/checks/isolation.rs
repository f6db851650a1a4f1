//! Isolation (SPEC: isolation): a guest's module-level state never outlives its command. Each
//! model keeps a module-level global G; `remember` shows G (`[G]`) and then sets it. Whatever an
//! earlier command left in G (of the same key or another one; a command that succeeded, was
//! rejected, crashed or ran past its deadline) must never show: every command starts from
//! `[]`. And the event-sourced state is always the fold of the events the journal lists.

use serde_json::{Value, json};

use super::{EVENTS, VALUE};
use crate::api::{Api, process};

/// What no state may ever show: G as an earlier command left it.
const LEFTOVERS: &[&str] = &[
    "secret-a", "[x]", "[b]", "[q]", "spun", "crashed", "refused",
];

/// Both models: no global leaks between keys, between commands of a key, or out of a failed
/// command; bad arguments of the isolation actions are bad requests.
pub(super) async fn isolation(api: &Api<'_>) {
    for ty in [VALUE, EVENTS] {
        bad_arguments(api, ty).await;
        leaks_between_commands(api, ty).await;
        leaks_out_of_failures(api, ty).await;
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

/// `remember` on one key, then another, then the first again: each command sees `[]`. Within
/// one command G lives on (the second `remember` shows the first's string), so the model does
/// keep a global.
async fn leaks_between_commands(api: &Api<'_>, ty: &str) {
    let remember = |text: &str| process(json!([{ "remember": text }]));
    api.expect(ty, "iso-a", "process", remember("secret-a"), value("[]"))
        .await;
    api.expect(ty, "iso-b", "process", remember("b"), value("[]"))
        .await;
    api.expect(ty, "iso-a", "process", remember("x"), value("[][]"))
        .await;
    let twice = process(json!([{"remember": "p"}, {"remember": "q"}]));
    api.expect(ty, "iso-b", "process", twice, value("[][][p]"))
        .await;
    api.expect(ty, "iso-b", "get", json!(null), value("[][][p]"))
        .await;
    api.assert_state(ty, "iso-a", value("[][]"), 2).await;
    api.assert_state(ty, "iso-b", value("[][][p]"), 2).await;
}

/// A command that runs past its deadline, one that crashes and one that is rejected, each after
/// a `remember`: each fails, persists nothing, and leaves nothing in G for the next command (of
/// its key or of another).
async fn leaks_out_of_failures(api: &Api<'_>, ty: &str) {
    let remember = |text: &str| process(json!([{ "remember": text }]));
    // Past the deadline: the node's per-call deadline stops the endless loop.
    let spin = process(json!([{"remember": "spun"}, {"spin": true}]));
    let message = api
        .fails(ty, "iso-c", "process", spin, (504, "deadline_exceeded"))
        .await;
    assert!(
        message.contains("deadline"),
        "[{}] {ty}/iso-c: the deadline's message: {message}",
        api.lang
    );
    api.assert_state(ty, "iso-c", Value::Null, 0).await;
    api.expect(ty, "iso-c", "process", remember("c"), value("[]"))
        .await;
    api.expect(ty, "iso-f", "process", remember("f"), value("[]"))
        .await;

    // A crash: a panic or an uncaught exception, which every SDK lets trap.
    let crash = process(json!([{"remember": "crashed"}, {"crash": "boom"}]));
    api.fails(ty, "iso-d", "process", crash, (500, "entity_failed"))
        .await;
    api.assert_state(ty, "iso-d", Value::Null, 0).await;
    api.expect(ty, "iso-d", "process", remember("d"), value("[]"))
        .await;

    // A rejection: the guest finished normally, with G set.
    api.rejected(
        ty,
        "iso-e",
        "process",
        process(json!([{"remember": "refused"}, {"fail": "no"}])),
        "no",
    )
    .await;
    api.assert_state(ty, "iso-e", Value::Null, 0).await;
    api.expect(ty, "iso-e", "process", remember("e"), value("[]"))
        .await;
    api.expect(ty, "iso-b", "process", remember("b2"), value("[][][p][]"))
        .await;
    api.expect(ty, "iso-a", "get", json!(null), value("[][]"))
        .await;

    for key in ["iso-a", "iso-b", "iso-c", "iso-d", "iso-e", "iso-f"] {
        let (state, _) = api.state(ty, key).await;
        let text = state.to_string();
        assert!(
            !LEFTOVERS.iter().any(|l| text.contains(l)),
            "[{}] {ty}/{key}: a global left over by another command shows in {text}",
            api.lang
        );
    }
}

/// `tck-events`: each journal entry holds exactly the events of one command, every one `[]`
/// but the second of a command that remembered twice, and the inspected state and `get` are
/// the fold of the journal's events.
async fn replay_is_the_fold(api: &Api<'_>) {
    let appended =
        |texts: &[&str]| Value::Array(texts.iter().map(|t| json!({ "appended": t })).collect());
    let expected = [
        ("iso-a", vec![appended(&["[]"]), appended(&["[]"])]),
        (
            "iso-b",
            vec![
                appended(&["[]"]),
                appended(&["[]", "[p]"]),
                appended(&["[]"]),
            ],
        ),
        ("iso-c", vec![appended(&["[]"])]),
        ("iso-d", vec![appended(&["[]"])]),
        ("iso-e", vec![appended(&["[]"])]),
        ("iso-f", vec![appended(&["[]"])]),
    ];
    for (key, events) in expected {
        let journal = api.journal_payloads(EVENTS, key, "events").await;
        let got: Vec<Value> = journal.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            got, events,
            "[{}] {EVENTS}/{key}: the journal's events",
            api.lang
        );
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
