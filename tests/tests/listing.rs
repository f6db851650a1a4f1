//! Listing the entities of a type (`GET /v1/entities/{type}`, `cella entities`): paging with
//! `after`/`limit` gives every key once and in order across partitions, `prefix` filters, bad
//! parameters and unknown types are refused, every node of a cluster answers the same, and a
//! listing needs the token that reading an entity's state needs.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use cella_tests::{
    TestNode, cella_bin,
    cluster::{deploy_counter, start_cluster},
    component, output_text,
};
use hyper::Method;
use serde_json::Value;

/// Every page of `ty` on `node` with `limit` (and `prefix`), following `next`: the entities,
/// and how many pages it took.
async fn all_pages(node: &TestNode, ty: &str, limit: usize, prefix: &str) -> (Vec<Value>, usize) {
    let mut entities = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/entities/{ty}?limit={limit}&prefix={prefix}");
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let r = node.request(Method::GET, &path, "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json["type"], ty);
        let page = r.json["entities"].as_array().unwrap().clone();
        assert!(page.len() <= limit, "{}", r.body);
        pages += 1;
        entities.extend(page);
        match r.json["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 1000, "paging does not end");
    }
    (entities, pages)
}

fn keys(entities: &[Value]) -> Vec<String> {
    entities
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_prefix_errors_and_cli_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::with_examples(dir.path(), &[]).await;
    let started = now_ms();
    // 250 keys over every partition (and a cart, another type, that is not listed).
    let mut expected: Vec<String> = (0..240).map(|i| format!("k{i:03}")).collect();
    expected.extend((0..10).map(|i| format!("other-{i}")));
    for key in &expected {
        let r = node.call("counter", key, "add", "1").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for _ in 0..2 {
        assert_eq!(node.call("counter", "k007", "add", "1").await.status, 200);
    }
    let item = r#"{"productId": "p1", "name": "Apple", "quantity": 1}"#;
    let r = node.call("cart", "k500", "add-item", item).await;
    assert_eq!(r.status, 200, "{}", r.body);
    expected.sort();

    let (entities, pages) = all_pages(&node, "counter", 100, "").await;
    assert_eq!(keys(&entities), expected);
    assert_eq!(pages, 3);
    let by_key: BTreeMap<String, &Value> = entities
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(by_key["k007"]["sequence"], 3);
    assert_eq!(by_key["k008"]["sequence"], 1);
    assert_eq!(by_key["k008"]["moduleVersion"], 1);
    let changed = by_key["k007"]["lastChangeMs"].as_u64().unwrap();
    assert!(
        (started..=now_ms()).contains(&changed),
        "lastChangeMs {changed} outside the test's run"
    );
    // Small pages give the same.
    assert_eq!(keys(&all_pages(&node, "counter", 7, "").await.0), expected);

    // `after` is exclusive; the default limit is 100.
    let r = node
        .request(Method::GET, "/v1/entities/counter?after=k100", "")
        .await;
    let page = keys(r.json["entities"].as_array().unwrap());
    assert_eq!(page.len(), 100);
    assert_eq!(page[0], "k101");
    assert_eq!(r.json["next"], page[99].as_str());

    // Prefix.
    let (entities, _) = all_pages(&node, "counter", 4, "other-").await;
    let others: Vec<String> = expected
        .iter()
        .filter(|k| k.starts_with("other-"))
        .cloned()
        .collect();
    assert_eq!(keys(&entities), others);
    let r = node
        .request(Method::GET, "/v1/entities/counter?prefix=zzz", "")
        .await;
    assert_eq!(r.json["entities"], serde_json::json!([]));
    assert_eq!(r.json["next"], Value::Null);

    // Bad limits, unknown types.
    for bad in ["0", "1001", "ten", "-1"] {
        let r = node
            .request(
                Method::GET,
                &format!("/v1/entities/counter?limit={bad}"),
                "",
            )
            .await;
        assert_eq!(r.status, 400, "limit={bad}: {}", r.body);
        assert_eq!(r.json["error"]["code"], "bad_request");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains("`limit`"), "{message}");
    }
    for ty in ["nope", "%24topic"] {
        let r = node
            .request(Method::GET, &format!("/v1/entities/{ty}"), "")
            .await;
        assert_eq!(r.status, 404, "{ty}: {}", r.body);
        assert_eq!(r.json["error"]["code"], "unknown_type");
    }

    // The CLI: a table, or the JSON.
    let cli = |args: &[&str]| {
        let out = Command::new(cella_bin())
            .arg("entities")
            .args(args)
            .args(["--server", &node.url])
            .output()
            .expect("run cella entities");
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{stderr}");
        (stdout, stderr)
    };
    let (table, hint) = cli(&["counter", "--prefix", "k00", "--limit", "5"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("KEY") && lines[0].contains("SEQUENCE"),
        "{table}"
    );
    assert!(table.contains("k000") && table.contains("k004"), "{table}");
    assert!(!table.contains("k005 "), "{table}");
    let k007 = lines.iter().find(|l| l.contains("k007"));
    assert!(k007.is_none(), "{table}");
    assert!(
        hint.contains("--after k004"),
        "the hint for the next page: {hint}"
    );
    let (all, _) = cli(&["counter", "--prefix", "k00", "--all", "--limit", "3"]);
    assert_eq!(all.lines().count(), 11, "a header and 10 entities: {all}");
    let row = all.lines().find(|l| l.contains("k007")).unwrap();
    assert!(row.contains(" 3 "), "{row}");
    assert!(
        row.contains(" UTC") || row.contains('Z'),
        "a readable time: {row}"
    );
    let json: Value = serde_json::from_str(&cli(&["counter", "--after", "other-8", "--json"]).0)
        .expect("--json prints the answer");
    assert_eq!(keys(json["entities"].as_array().unwrap()), ["other-9"]);
    let out = Command::new(cella_bin())
        .args(["entities", "counter", "--limit", "0", "--server", &node.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        output_text(&out).1.contains("limit"),
        "{:?}",
        output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_of_a_cluster_lists_the_same() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3, 4, &[]).await;
    deploy_counter(&nodes).await;
    let mut expected: Vec<String> = (0..60).map(|i| format!("c{i:02}")).collect();
    for (i, key) in expected.iter().enumerate() {
        let r = nodes[i % 3].call("counter", key, "add", "1").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    expected.sort();
    let mut answers = Vec::new();
    for node in &nodes {
        let (entities, pages) = all_pages(node, "counter", 8, "").await;
        assert_eq!(keys(&entities), expected, "listed by {}", node.url);
        assert_eq!(pages, 8, "listed by {}", node.url);
        answers.push(entities);
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let (entities, _) = all_pages(&nodes[2], "counter", 1000, "c1").await;
    assert_eq!(keys(&entities).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_needs_what_reading_a_state_needs() {
    use cella_tests::tokens::{APP, CI, OPS, ROOT, VIEWER, start_with_every_token};
    let dir = tempfile::tempdir().unwrap();
    let node = start_with_every_token(dir.path());
    let wasm = std::fs::read(component("counter")).unwrap();
    let r = node
        .request_with_token(Method::PUT, "/v1/modules/counter", wasm, Some(ROOT))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = node
        .request_with_token(Method::POST, "/v1/entities/counter/a/add", "1", Some(APP))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let path = "/v1/entities/counter";
    for (token, status) in [
        (None, 401),
        (Some("not-a-token-at-all"), 401),
        (Some(CI), 403),
        (Some(VIEWER), 200),
        (Some(APP), 200),
        (Some(OPS), 200),
    ] {
        let state = node
            .request_with_token(Method::GET, "/v1/entities/counter/a", "", token)
            .await;
        let listing = node.request_with_token(Method::GET, path, "", token).await;
        assert_eq!(listing.status, status, "{token:?}: {}", listing.body);
        assert_eq!(listing.status, state.status, "as for the state, {token:?}");
        if status == 200 {
            assert_eq!(keys(listing.json["entities"].as_array().unwrap()), ["a"]);
        }
    }
}
