//! The `context` command of both models (SPEC: `context`): every field of the command context.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{CLOCK_SLACK_MS, EVENTS, VALUE};
use crate::api::{Api, now_ms, process};

/// `context`: every field of the command context.
pub(super) async fn context(api: &Api<'_>) {
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
