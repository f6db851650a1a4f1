//! What the node shows and keeps of every model: the inspection endpoints (state, sequence,
//! journal), and recovery across a graceful restart and a `kill -9` (compared once the
//! survivors' pending effects, their events-topic publications, are carried out).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CART, CLOCK_SLACK_MS, COUNTER, EVENTS, VALUE, line};
use crate::Suite;
use crate::api::{Api, now_ms, process};

/// The inspection endpoints: state, sequence and the journal rendered as JSON.
pub(super) async fn inspection(api: &Api<'_>) {
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

/// How long the survivors' pending effects (their events-topic publications) may take.
const SETTLE: Duration = Duration::from_secs(10);

/// Everything observable about the survivors, once their effects are carried out (the
/// event-sourced ones publish their events to their events topics after each command).
async fn observe(api: &Api<'_>) -> Vec<(Value, Vec<Value>, Value)> {
    let deadline = Instant::now() + SETTLE;
    for (ty, key, _) in SURVIVORS {
        loop {
            let inspection = api.inspection(ty, key).await;
            if inspection["effects"].as_array().is_none_or(Vec::is_empty) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {ty}/{key}: effects still pending after {} s: {inspection}",
                api.lang,
                SETTLE.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
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
pub(super) async fn recovery(suite: &mut Suite) {
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
