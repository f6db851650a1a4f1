//! The memory bound on a real node: with a small `--max-memory`, commands reach many more
//! entities than fit in memory; idle entities are passivated so that the resident bytes in
//! `/metrics` stay within the bound (plus the entity a command is using at a scrape), and each
//! entity's value is still right when read back (activated again from its journal). A bad
//! `--max-memory` or `--store-cache-mb` is refused with a message naming the flag.

use cella_tests::{TestNode, cella_bin, component, output_text};
use hyper::Method;
use serde_json::json;

/// Entities written: each holds about [`VALUE_BYTES`], far more than the bound holds.
const ENTITIES: usize = 600;
const VALUE_BYTES: usize = 4096;
/// `--max-memory 1`: 1 MiB, a quarter of which at most goes to warm instances.
const BUDGET: u64 = (1 << 20) - (1 << 18);
/// What the bound may be exceeded by: the entities with a command in flight (one here).
const SLACK: u64 = 2 * VALUE_BYTES as u64;

/// The value entity `i` holds.
fn value(i: usize) -> String {
    let stem = format!("entity-{i}-");
    stem.repeat(VALUE_BYTES / stem.len() + 1)
}

/// Runs `actions` on `tck-value/key`: the entity's value after them.
async fn process(node: &TestNode, key: &str, actions: serde_json::Value) -> String {
    let body = json!({ "actions": actions }).to_string();
    let r = node.call("tck-value", key, "process", &body).await;
    assert_eq!(r.status, 200, "{key}: {}", r.body);
    r.json["value"].as_str().unwrap_or_default().to_owned()
}

/// The value of gauge `name` in `/metrics` (it must be there).
async fn gauge(node: &TestNode, name: &str) -> u64 {
    let value = node.metric(name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Asserts that the resident entities are within the bound: bytes and count.
async fn assert_within_bound(node: &TestNode, what: &str) -> u64 {
    let bytes = gauge(node, "cella_resident_entity_bytes").await;
    let cached = gauge(node, "cella_cached_entities").await;
    assert!(
        bytes <= BUDGET + SLACK,
        "{what}: {bytes} resident bytes over the bound {BUDGET}"
    );
    assert!(
        cached < ENTITIES as u64 / 2,
        "{what}: {cached} of {ENTITIES} entities are still in memory"
    );
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entities_are_passivated_past_the_bound_and_read_back_right() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--max-memory", "1"]).unwrap();
    let r = node.deploy("tck-value", &component("tck-value")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        gauge(&node, "cella_resident_entity_budget_bytes").await,
        BUDGET
    );

    for i in 0..ENTITIES {
        let got = process(&node, &format!("k{i}"), json!([{ "update": value(i) }])).await;
        assert_eq!(got, value(i), "k{i}");
    }
    let written = assert_within_bound(&node, "after the writes").await;
    // The bound is used, not an empty cache: at least a third of it holds entities.
    assert!(written > BUDGET / 3, "only {written} resident bytes");

    // Every entity, passivated or not, answers its own value; a further append on each shows
    // the activation continued from the durable state.
    for i in 0..ENTITIES {
        let key = format!("k{i}");
        assert_eq!(process(&node, &key, json!([])).await, value(i), "{key}");
        let appended = process(&node, &key, json!([{ "append": "!" }])).await;
        assert_eq!(appended, format!("{}!", value(i)), "{key}");
    }
    assert_within_bound(&node, "after reading every entity back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bound_entities_stay_resident() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let r = node.deploy("tck-value", &component("tck-value")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for i in 0..20 {
        process(&node, &format!("k{i}"), json!([{ "update": value(i) }])).await;
    }
    assert_eq!(gauge(&node, "cella_cached_entities").await, 20);
    let bytes = gauge(&node, "cella_resident_entity_bytes").await;
    assert!(bytes >= 20 * VALUE_BYTES as u64, "{bytes} resident bytes");
    let r = node.request(Method::GET, "/metrics", "").await;
    assert!(
        !r.body.contains("cella_resident_entity_budget_bytes"),
        "a budget without --max-memory"
    );
}

#[test]
fn a_bad_memory_flag_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, bad) in [
        ("--max-memory", "0"),
        ("--max-memory", "lots"),
        ("--max-memory", "2000000"),
        ("--store-cache-mb", "0"),
    ] {
        let out = std::process::Command::new(cella_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", flag, bad])
            .output()
            .unwrap();
        let (stdout, stderr) = output_text(&out);
        assert!(!out.status.success(), "{flag} {bad} was accepted: {stdout}");
        assert!(
            stderr.contains(flag) && stderr.contains("invalid value"),
            "{flag} {bad}: {stderr}"
        );
    }
}
