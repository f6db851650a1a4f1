//! The HTTP API end to end on a real node: deploy both examples, every command of each, every
//! error code, inspection, the module admin endpoints, health and metrics.

use cella_tests::{TestNode, component};
use hyper::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_commands_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    assert_eq!(node.request(Method::GET, "/healthz", "").await.status, 200);

    // Deploy: 201 with type, version and digest; the same bytes again is a no-op.
    let r = node.deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["type"], "counter");
    assert_eq!(r.json["version"], 1);
    assert!(r.json["digest"].as_str().unwrap().starts_with("sha256:"));
    let again = node.deploy("counter", &component("counter")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["version"], 1);

    // Commands.
    assert_eq!(
        node.call("counter", "alice", "get", "").await.json,
        json!(0)
    );
    assert_eq!(
        node.call("counter", "alice", "add", "5").await.json,
        json!(5)
    );
    assert_eq!(
        node.call("counter", "alice", "add", "2").await.json,
        json!(7)
    );
    assert_eq!(
        node.call("counter", "alice", "get", "").await.json,
        json!(7)
    );
    assert_eq!(
        node.call("counter", "alice", "get", "null").await.json,
        json!(7)
    );
    assert_eq!(node.call("counter", "bob", "get", "").await.json, json!(0));
    assert_eq!(
        node.call("counter", "with space", "add", "1").await.json,
        json!(1)
    );

    // Errors, each with a JSON body naming what was wrong.
    let bad_json = node.call("counter", "alice", "add", "{nope").await;
    assert_eq!(
        (bad_json.status, bad_json.json["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let wrong_type = node.call("counter", "alice", "add", "\"five\"").await;
    assert_eq!(wrong_type.status, 400);
    assert_eq!(wrong_type.json["error"]["code"], "bad_request");
    let unknown_cmd = node.call("counter", "alice", "reset", "").await;
    assert_eq!(
        (
            unknown_cmd.status,
            unknown_cmd.json["error"]["code"].as_str()
        ),
        (404, Some("unknown_command"))
    );
    assert!(
        unknown_cmd.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reset")
    );
    let unknown_type = node.call("nope", "alice", "add", "1").await;
    assert_eq!(
        (
            unknown_type.status,
            unknown_type.json["error"]["code"].as_str()
        ),
        (404, Some("unknown_type"))
    );
    let big = vec![b' '; 2 << 20];
    let too_large = node
        .request(Method::POST, "/v1/entities/counter/alice/add", big)
        .await;
    assert_eq!(
        (too_large.status, too_large.json["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let overflow = node
        .call("counter", "alice", "add", &i64::MAX.to_string())
        .await;
    assert_eq!(
        (overflow.status, overflow.json["error"]["code"].as_str()),
        (400, Some("rejected"))
    );
    // None of the failures changed anything.
    assert_eq!(
        node.call("counter", "alice", "get", "").await.json,
        json!(7)
    );

    // Inspection.
    let state = node
        .request(Method::GET, "/v1/entities/counter/alice", "")
        .await;
    assert_eq!(state.status, 200, "{}", state.body);
    assert_eq!(state.json["state"], json!({"total": 7}));
    assert_eq!(state.json["sequence"], 2);
    let journal = node
        .request(Method::GET, "/v1/entities/counter/alice/journal", "")
        .await;
    assert_eq!(journal.status, 200);
    let entries = journal.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["command"], "add");
    assert_eq!(entries[0]["state"], json!({"total": 5}));
    assert_eq!(entries[1]["state"], json!({"total": 7}));
    assert_eq!(entries[1]["moduleVersion"], 1);

    // Modules.
    let list = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(list.json["modules"][0]["type"], "counter");
    assert_eq!(list.json["modules"][0]["kind"], "value");
    let one = node.request(Method::GET, "/v1/modules/counter", "").await;
    assert_eq!(one.json["commands"], json!(["add", "get"]));

    // Metrics.
    let metrics = node.request(Method::GET, "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    for name in [
        "cella_commands_total{outcome=\"ok\"}",
        "cella_command_duration_seconds_bucket",
        "cella_cache_hits_total",
    ] {
        assert!(
            metrics.body.contains(name),
            "metrics lack {name}:\n{}",
            metrics.body
        );
    }

    // Unknown routes.
    let nope = node.request(Method::GET, "/v2/whatever", "").await;
    assert_eq!(
        (nope.status, nope.json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopping_cart_rules_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let r = node.deploy("cart", &component("shopping-cart")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["kind"], "event-sourced");

    let add = |id: &str, name: &str, q: i64| {
        json!({"productId": id, "name": name, "quantity": q}).to_string()
    };
    assert_eq!(
        node.call("cart", "c1", "get-cart", "").await.json,
        json!({"items": []})
    );
    assert_eq!(
        node.call("cart", "c1", "add-item", &add("p1", "Apple", 2))
            .await
            .status,
        200
    );
    assert_eq!(
        node.call("cart", "c1", "add-item", &add("p2", "Bread", 1))
            .await
            .status,
        200
    );
    assert_eq!(
        node.call("cart", "c1", "add-item", &add("p1", "Apple", 3))
            .await
            .status,
        200
    );
    let zero = node
        .call("cart", "c1", "add-item", &add("p9", "Nothing", 0))
        .await;
    assert_eq!(
        (zero.status, zero.json["error"]["code"].as_str()),
        (400, Some("rejected"))
    );
    assert!(
        zero.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("p9"),
        "{}",
        zero.body
    );
    let negative = node
        .call("cart", "c1", "add-item", &add("p8", "Less", -1))
        .await;
    assert_eq!(negative.status, 400);
    let missing = node
        .call(
            "cart",
            "c1",
            "remove-item",
            &json!({"productId": "p7"}).to_string(),
        )
        .await;
    assert_eq!(
        (missing.status, missing.json["error"]["code"].as_str()),
        (400, Some("rejected"))
    );
    assert!(
        missing.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("p7")
    );
    let bad = node
        .call(
            "cart",
            "c1",
            "add-item",
            &json!({"productId": "p1"}).to_string(),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let cart = node.call("cart", "c1", "get-cart", "").await;
    assert_eq!(
        cart.json,
        json!({"items": [
            {"productId": "p1", "name": "Apple", "quantity": 5},
            {"productId": "p2", "name": "Bread", "quantity": 1},
        ]})
    );
    assert_eq!(
        node.call(
            "cart",
            "c1",
            "remove-item",
            &json!({"productId": "p1"}).to_string()
        )
        .await
        .status,
        200
    );
    let cart = node.call("cart", "c1", "get-cart", "").await;
    assert_eq!(
        cart.json,
        json!({"items": [{"productId": "p2", "name": "Bread", "quantity": 1}]})
    );

    let journal = node
        .request(Method::GET, "/v1/entities/cart/c1/journal", "")
        .await;
    let entries = journal.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{}", journal.body);
    let seqs: Vec<_> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(entries[0]["command"], "add-item");
    assert!(entries[0]["events"].as_array().unwrap().len() == 1);
    assert!(entries[3]["events"][0].to_string().contains("p1"));
    let state = node.request(Method::GET, "/v1/entities/cart/c1", "").await;
    assert_eq!(state.json["sequence"], 4);
    assert!(state.json["state"].to_string().contains("Bread"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_uploads_are_checked_and_deletable() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();

    let garbage = node
        .request(
            Method::PUT,
            "/v1/modules/junk",
            b"this is not wasm".to_vec(),
        )
        .await;
    assert_eq!(
        (garbage.status, garbage.json["error"]["code"].as_str()),
        (400, Some("invalid_component"))
    );
    let wrong = node.deploy("wrong", &component("wrong-world")).await;
    assert_eq!(
        (wrong.status, wrong.json["error"]["code"].as_str()),
        (400, Some("invalid_component"))
    );
    assert!(
        wrong.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cella:entity"),
        "{}",
        wrong.body
    );
    let list = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(
        list.json["modules"],
        json!([]),
        "refused uploads must not be stored"
    );

    assert_eq!(
        node.deploy("counter", &component("counter")).await.status,
        201
    );
    assert_eq!(node.call("counter", "k", "add", "3").await.json, json!(3));
    let del = node
        .request(Method::DELETE, "/v1/modules/counter", "")
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(
        node.call("counter", "k", "get", "").await.json["error"]["code"],
        "unknown_type"
    );
    let del_again = node
        .request(Method::DELETE, "/v1/modules/counter", "")
        .await;
    assert_eq!(del_again.status, 404);
    // State outlives the module: deploying the type again finds it.
    let again = node.deploy("counter", &component("counter")).await;
    assert_eq!(again.status, 201);
    assert_eq!(node.call("counter", "k", "get", "").await.json, json!(3));
}
