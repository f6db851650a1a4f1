//! Crdt and ephemeral entities on one real `cella` node: `likes` (a durable pn-counter) answers
//! each command with the value the node sees, shows it as its state, keeps it across a restart
//! and streams it on `/watch`; the module listing names each type's consistency, durability and
//! crdt type; `presence` (an ephemeral or-set) and `visits` (an ephemeral value entity) work and
//! start empty after a restart; an `Idempotency-Key` or a `consistency` a type does not take is a
//! bad request; an operation of the wrong crdt type fails its command and changes nothing
//! (`tck-crdt`); a deploy that changes a type's crdt type is refused.

use std::time::Duration;

use cella_tests::{
    Reply, TestNode, component,
    crdt::{Watch, call_with, state, value},
    post_with_headers,
};
use hyper::Method;
use serde_json::{Value, json};

/// How long any one expected thing may take.
const WAIT: Duration = Duration::from_secs(20);

/// Asserts `r` is an error answer with `status` and `code`.
fn refused(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        r.body
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message in {}",
        r.body
    );
}

/// A command that must succeed: its reply.
async fn ok(node: &TestNode, ty: &str, key: &str, command: &str, body: &str) -> Value {
    let r = node.call(ty, key, command, body).await;
    assert_eq!(r.status, 200, "{ty}/{key} {command} {body}: {}", r.body);
    r.json
}

/// Starts a node with `counter`, `cart`, `likes`, `presence` and `visits` deployed.
async fn node_with_crdts(dir: &std::path::Path) -> TestNode {
    let node = TestNode::with_examples(dir, &[]).await;
    for ty in ["likes", "presence", "visits"] {
        let r = node.deploy(ty, &component(ty)).await;
        assert_eq!(r.status, 201, "deploying {ty}: {}", r.body);
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_count_show_their_state_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_crdts(dir.path()).await;

    // Each reply is the value this node now sees.
    assert_eq!(
        ok(&node, "likes", "post-1", "count", "null").await,
        json!(0)
    );
    assert_eq!(ok(&node, "likes", "post-1", "like", "null").await, json!(1));
    assert_eq!(ok(&node, "likes", "post-1", "like", "").await, json!(2));
    assert_eq!(
        ok(
            &node,
            "likes",
            "post-1",
            "like",
            r#"{"consistency": "local"}"#
        )
        .await,
        json!(3)
    );
    assert_eq!(
        ok(&node, "likes", "post-1", "unlike", "null").await,
        json!(2)
    );
    assert_eq!(
        ok(&node, "likes", "post-1", "count", "null").await,
        json!(2)
    );
    assert_eq!(
        ok(&node, "likes", "post-2", "unlike", "null").await,
        json!(-1)
    );
    // A payload the guest does not take changes nothing.
    let bad = node
        .call("likes", "post-1", "like", r#"{"quorum": 2}"#)
        .await;
    refused(&bad, 400, "bad_request", "like with a bad payload");
    let unknown = node.call("likes", "post-1", "share", "null").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // The state, read locally.
    let r = state(&node, "likes", "post-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.json["type"],
            &r.json["key"],
            &r.json["state"],
            &r.json["sequence"]
        ),
        (&json!("likes"), &json!("post-1"), &json!(2), &json!(0)),
        "{}",
        r.body
    );
    assert_eq!(value(&node, "likes", "post-2").await, json!(-1));
    assert_eq!(value(&node, "likes", "never-liked").await, json!(0));

    // The listing names each type's consistency, durability and crdt type.
    for (ty, kind, consistency, durability, crdt) in [
        ("likes", "crdt", "eventual", "durable", json!("pn-counter")),
        ("presence", "crdt", "eventual", "ephemeral", json!("or-set")),
        ("visits", "value", "strong", "ephemeral", Value::Null),
        ("counter", "value", "strong", "durable", Value::Null),
        ("cart", "event-sourced", "strong", "durable", Value::Null),
    ] {
        let m = node
            .request(Method::GET, &format!("/v1/modules/{ty}"), "")
            .await;
        assert_eq!(m.status, 200, "{ty}: {}", m.body);
        assert_eq!(
            (
                &m.json["kind"],
                &m.json["consistency"],
                &m.json["durability"],
                &m.json["crdt"]
            ),
            (&json!(kind), &json!(consistency), &json!(durability), &crdt),
            "{ty}: {}",
            m.body
        );
    }

    // Durable: the values come back after a restart (a kill, so nothing is flushed on the way
    // out), and the counting goes on from them.
    node.restart().expect("restart the node");
    assert_eq!(
        ok(&node, "likes", "post-1", "count", "null").await,
        json!(2)
    );
    assert_eq!(value(&node, "likes", "post-2").await, json!(-1));
    assert_eq!(ok(&node, "likes", "post-1", "like", "null").await, json!(3));
    assert_eq!(value(&node, "likes", "post-1").await, json!(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_the_current_value_then_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_crdts(dir.path()).await;
    ok(&node, "likes", "w", "like", "null").await;
    ok(&node, "likes", "w", "like", "null").await;

    let mut watch = Watch::open(&node, "likes", "w")
        .await
        .unwrap_or_else(|r| panic!("watch: {} {}", r.status, r.body));
    assert!(
        watch.content_type().starts_with("text/event-stream"),
        "{}",
        watch.content_type()
    );
    assert_eq!(watch.next(WAIT).await, Some(json!(2)), "the current value");
    // Each change, in order (one at a time: a slow reader would skip to the latest).
    for (command, expected) in [("like", 3), ("unlike", 2), ("unlike", 1), ("like", 2)] {
        assert_eq!(
            ok(&node, "likes", "w", command, "null").await,
            json!(expected)
        );
        assert_eq!(
            watch.next(WAIT).await,
            Some(json!(expected)),
            "after {command}"
        );
    }
    // A command that changes nothing sends nothing: the next value is the next change's.
    ok(&node, "likes", "w", "count", "null").await;
    ok(&node, "likes", "other", "like", "null").await;
    ok(&node, "likes", "w", "like", "null").await;
    assert_eq!(watch.next(WAIT).await, Some(json!(3)));
    assert!(
        watch.ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {:?}",
        watch.ids
    );

    // A second watcher of another entity, one of an ephemeral crdt, and an or-set's value.
    let mut fresh = Watch::open(&node, "likes", "never")
        .await
        .unwrap_or_else(|r| panic!("watch: {} {}", r.status, r.body));
    assert_eq!(fresh.next(WAIT).await, Some(json!(0)));
    let mut present = Watch::open(&node, "presence", "room")
        .await
        .unwrap_or_else(|r| panic!("watch: {} {}", r.status, r.body));
    assert_eq!(present.next(WAIT).await, Some(json!([])));
    ok(&node, "presence", "room", "join", r#""ann""#).await;
    assert_eq!(present.next(WAIT).await, Some(json!(["ann"])));

    // Only crdt types can be watched; an unknown type is not found.
    for ty in ["counter", "cart", "visits"] {
        let r = Watch::open(&node, ty, "w").await.err().expect("no stream");
        refused(&r, 400, "bad_request", &format!("watching {ty}"));
    }
    let r = Watch::open(&node, "nope", "w")
        .await
        .err()
        .expect("no stream");
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_entities_start_empty_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_crdts(dir.path()).await;

    // presence: an ephemeral or-set.
    assert_eq!(
        ok(&node, "presence", "room", "list", "null").await,
        json!([])
    );
    assert_eq!(
        ok(&node, "presence", "room", "join", r#""bob""#).await,
        json!(["bob"])
    );
    assert_eq!(
        ok(&node, "presence", "room", "join", r#""ann""#).await,
        json!(["ann", "bob"])
    );
    assert_eq!(
        ok(&node, "presence", "room", "join", r#""cy""#).await,
        json!(["ann", "bob", "cy"])
    );
    assert_eq!(
        ok(&node, "presence", "room", "leave", r#""bob""#).await,
        json!(["ann", "cy"])
    );
    assert_eq!(
        ok(&node, "presence", "room", "list", "null").await,
        json!(["ann", "cy"])
    );
    assert_eq!(value(&node, "presence", "room").await, json!(["ann", "cy"]));
    assert_eq!(
        ok(&node, "presence", "hall", "list", "null").await,
        json!([])
    );

    // visits: an ephemeral value entity.
    assert_eq!(ok(&node, "visits", "home", "get", "null").await, json!(0));
    assert_eq!(ok(&node, "visits", "home", "add", "5").await, json!(5));
    assert_eq!(ok(&node, "visits", "home", "add", "-2").await, json!(3));
    assert_eq!(ok(&node, "visits", "home", "get", "null").await, json!(3));
    let r = state(&node, "visits", "home").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["state"], json!({"total": 3}), "{}", r.body);
    let bad = node.call("visits", "home", "add", r#""x""#).await;
    refused(&bad, 400, "bad_request", "add of a string");
    assert_eq!(ok(&node, "visits", "home", "get", "null").await, json!(3));
    // The durable likes of the same node, for contrast.
    ok(&node, "likes", "post", "like", "null").await;

    node.restart().expect("restart the node");
    assert_eq!(
        ok(&node, "presence", "room", "list", "null").await,
        json!([])
    );
    assert_eq!(value(&node, "presence", "room").await, json!([]));
    let r = state(&node, "visits", "home").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.json["state"], &r.json["sequence"]),
        (&Value::Null, &json!(0)),
        "no total is kept: {}",
        r.body
    );
    assert_eq!(ok(&node, "visits", "home", "get", "null").await, json!(0));
    assert_eq!(ok(&node, "visits", "home", "add", "2").await, json!(2));
    let r = state(&node, "visits", "home").await;
    assert_eq!(r.json["state"], json!({"total": 2}), "{}", r.body);
    assert_eq!(
        ok(&node, "presence", "room", "join", r#""dee""#).await,
        json!(["dee"])
    );
    assert_eq!(ok(&node, "likes", "post", "count", "null").await, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_and_consistencies_a_type_does_not_take_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_crdts(dir.path()).await;
    let addr = node.addr();
    ok(&node, "likes", "p", "like", "null").await;

    // No Idempotency-Key on types that do not deduplicate.
    for (ty, command, body) in [
        ("likes", "like", "null"),
        ("presence", "join", r#""ann""#),
        ("visits", "add", "1"),
    ] {
        let path = format!("/v1/entities/{ty}/p/{command}");
        let (status, body) =
            post_with_headers(&addr, &path, body, &[("Idempotency-Key", "k1")]).await;
        let r = Reply {
            status,
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
        };
        refused(
            &r,
            400,
            "bad_request",
            &format!("{ty} with an Idempotency-Key"),
        );
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key")),
            "{}",
            r.body
        );
    }
    // A journaled type still takes one.
    let (status, body) = post_with_headers(
        &addr,
        "/v1/entities/counter/p/add",
        "1",
        &[("Idempotency-Key", "k1")],
    )
    .await;
    assert_eq!((status, body.trim()), (200, "1"));

    // consistency: one of local, majority, all; only for crdt types.
    let r = call_with(&node, "likes", "p", "like", "bogus", "null").await;
    refused(&r, 400, "bad_request", "consistency=bogus");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bogus")),
        "{}",
        r.body
    );
    let r = call_with(&node, "counter", "p", "add", "majority", "1").await;
    refused(&r, 400, "bad_request", "consistency on a value type");
    let r = call_with(&node, "cart", "p", "add-item", "local", "{}").await;
    refused(
        &r,
        400,
        "bad_request",
        "consistency on an event-sourced type",
    );
    let r = call_with(&node, "visits", "p", "add", "majority", "1").await;
    refused(
        &r,
        400,
        "bad_request",
        "consistency=majority on an ephemeral value type",
    );
    // None of them ran.
    assert_eq!(ok(&node, "likes", "p", "count", "null").await, json!(1));
    assert_eq!(ok(&node, "counter", "p", "get", "null").await, json!(1));
    assert_eq!(ok(&node, "visits", "p", "get", "null").await, json!(0));
    assert_eq!(ok(&node, "presence", "p", "list", "null").await, json!([]));

    // On a single node every consistency is met by the node itself.
    for (consistency, expected) in [("local", 2), ("majority", 3), ("all", 4)] {
        let r = call_with(&node, "likes", "p", "like", consistency, "null").await;
        assert_eq!(
            (r.status, r.json.clone()),
            (200, json!(expected)),
            "consistency={consistency}: {}",
            r.body
        );
    }
    let r = call_with(&node, "likes", "p", "count", "all", "null").await;
    assert_eq!((r.status, r.json.clone()), (200, json!(4)), "{}", r.body);
    let r = ok(&node, "likes", "p", "unlike", r#"{"consistency": "all"}"#).await;
    assert_eq!(r, json!(3));
    let r = call_with(&node, "presence", "p", "join", "all", r#""ann""#).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!(["ann"])),
        "{}",
        r.body
    );
    let r = call_with(&node, "visits", "p", "add", "local", "2").await;
    assert_eq!((r.status, r.json.clone()), (200, json!(2)), "{}", r.body);
}

/// An `update` of `tck-crdt` with `ops`.
fn update(ops: Value) -> String {
    json!({ "ops": ops }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_crdt_operations_fail_and_crdt_types_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).expect("start a node");
    for (ty, name) in [("tck-crdt", "tck-crdt"), ("likes", "likes")] {
        let r = node.deploy(ty, &component(name)).await;
        assert_eq!(r.status, 201, "deploying {name}: {}", r.body);
    }
    let counter = json!({"path": ["a"], "type": "pn-counter", "action": {"increment": 3}});
    let r = ok(&node, "tck-crdt", "m", "update", &update(json!([counter]))).await;
    assert_eq!(r, json!({"applied": 1}));
    let before = json!({"value": {"a": 3}});
    assert_eq!(ok(&node, "tck-crdt", "m", "get", "null").await, before);

    // A flag handle on the pn-counter's key: the host fails the command, nothing is applied
    // (not even the operations before the bad one).
    let flag = json!({"path": ["a"], "type": "flag", "action": "enable"});
    let other = json!({"path": ["b"], "type": "g-counter", "action": {"increment": 1}});
    for ops in [json!([flag]), json!([other, flag])] {
        let r = node
            .call("tck-crdt", "m", "update", &update(ops.clone()))
            .await;
        refused(&r, 500, "entity_failed", &format!("update {ops}"));
        assert_eq!(ok(&node, "tck-crdt", "m", "get", "null").await, before);
        assert_eq!(value(&node, "tck-crdt", "m").await, json!({"a": 3}));
    }
    let set = json!({"path": ["a"], "type": "or-set", "action": {"add": 1}});
    let r = node
        .call("tck-crdt", "m", "update", &update(json!([set])))
        .await;
    refused(&r, 500, "entity_failed", "an or-set on a pn-counter");
    // The key still takes its own type.
    let more = json!({"path": ["a"], "type": "pn-counter", "action": {"decrement": 1}});
    ok(&node, "tck-crdt", "m", "update", &update(json!([more]))).await;
    assert_eq!(
        ok(&node, "tck-crdt", "m", "get", "null").await,
        json!({"value": {"a": 2}})
    );

    // A deploy that would change `likes` from a pn-counter to an or-map, or to a journaled
    // kind, is refused; likes keeps its module and values.
    ok(&node, "likes", "k", "like", "null").await;
    for name in ["tck-crdt", "counter", "presence"] {
        let r = node.deploy("likes", &component(name)).await;
        refused(&r, 400, "bad_request", &format!("likes deployed as {name}"));
    }
    let m = node.request(Method::GET, "/v1/modules/likes", "").await;
    assert_eq!(
        (&m.json["version"], &m.json["crdt"]),
        (&json!(1), &json!("pn-counter")),
        "{}",
        m.body
    );
    assert_eq!(ok(&node, "likes", "k", "like", "null").await, json!(2));
    // The same module again is fine.
    let r = node.deploy("likes", &component("likes")).await;
    assert!(matches!(r.status, 200 | 201), "{}", r.body);
    assert_eq!(ok(&node, "likes", "k", "count", "null").await, json!(2));
}
