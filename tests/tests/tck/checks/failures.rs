//! The failures of both models (SPEC: failures, in every SDK): bad requests and unknown
//! commands, which persist nothing.

use serde_json::{Value, json};

use super::{EVENTS, VALUE};
use crate::api::{Api, process};

/// Bad requests and unknown commands, for both models.
pub(super) async fn failures(api: &Api<'_>) {
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
