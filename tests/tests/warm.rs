//! Warm instances on a real node: an entity's instance is kept between its successful commands
//! (a module-level global shows it) and never serves another entity; a failed command, a zero
//! `--warm-memory-mb` and an idle time each mean a fresh instance; large instances hold only an
//! eighth of the budget. The guest is the Rust TCK value model, whose `remember` action shows
//! its module-level global and then sets it, and `misbehave`, whose `grow` grows its memory.

use std::time::{Duration, Instant};

use cella_tests::{TestNode, component};
use serde_json::json;

/// `remember TEXT` on `ty/key`: the new value of the entity.
async fn remember(node: &TestNode, key: &str, text: &str) -> String {
    let body = json!({"actions": [{"remember": text}]}).to_string();
    let r = node.call("tck-value", key, "process", &body).await;
    assert_eq!(r.status, 200, "{key}: {}", r.body);
    r.json["value"].as_str().unwrap_or_default().to_owned()
}

/// The value of gauge `name` in `/metrics` (it must be there).
async fn gauge(node: &TestNode, name: &str) -> u64 {
    let value = node.metric(name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn node_with_model(dir: &std::path::Path, extra: &[&str]) -> TestNode {
    let node = TestNode::start(dir, extra).unwrap();
    let r = node.deploy("tck-value", &component("tck-value")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_one_entity_between_its_successful_commands() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_model(dir.path(), &[]).await;

    assert_eq!(remember(&node, "k1", "k1-a").await, "[]");
    // The same entity's next command finds its instance warm, global included.
    assert_eq!(remember(&node, "k1", "k1-b").await, "[][k1-a]");
    // Another entity never does.
    assert_eq!(remember(&node, "k2", "k2-a").await, "[]");
    assert_eq!(remember(&node, "k1", "k1-c").await, "[][k1-a][k1-b]");
    assert_eq!(gauge(&node, "cella_warm_instances").await, 2);
    assert!(gauge(&node, "cella_warm_instance_bytes").await > 0);

    // A command that fails drops the instance: the next one starts fresh.
    let failing = json!({"actions": [{"remember": "k1-failed"}, {"fail": "no"}]}).to_string();
    let r = node.call("tck-value", "k1", "process", &failing).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(remember(&node, "k1", "k1-d").await, "[][k1-a][k1-b][]");
    assert_eq!(remember(&node, "k2", "k2-b").await, "[][k2-a]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_budget_means_a_fresh_instance_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_model(dir.path(), &["--warm-memory-mb", "0"]).await;
    assert_eq!(remember(&node, "k1", "k1-a").await, "[]");
    assert_eq!(remember(&node, "k1", "k1-b").await, "[][]");
    assert_eq!(gauge(&node, "cella_warm_instances").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_model(dir.path(), &["--warm-idle-secs", "1"]).await;
    assert_eq!(remember(&node, "k1", "k1-a").await, "[]");
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
    // The node sweeps idle instances every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(&node, "cella_warm_instances").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the idle instance was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauge(&node, "cella_warm_instance_bytes").await, 0);
    assert_eq!(remember(&node, "k1", "k1-b").await, "[][]");
}

async fn node_with_misbehave(dir: &std::path::Path, extra: &[&str]) -> TestNode {
    let node = TestNode::start(dir, extra).unwrap();
    let r = node.deploy("misbehave", &component("misbehave")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    node
}

/// The `misbehave` guest's `command` on `key`, which must succeed.
async fn misbehave(node: &TestNode, key: &str, command: &str, body: &str) {
    let r = node.call("misbehave", key, command, body).await;
    assert_eq!(r.status, 200, "{key} {command}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_instances_hold_only_an_eighth_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // A budget of 64 MiB: instances over 4 MiB of linear memory may hold 8 MiB together.
    let node = node_with_misbehave(dir.path(), &["--warm-memory-mb", "64"]).await;

    misbehave(&node, "small", "ok", "null").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
    let small = gauge(&node, "cella_warm_instance_bytes").await;
    assert!(small < 4 << 20, "a Rust instance has {small} B");

    // Grown past 4 MiB but within the large share: kept.
    misbehave(&node, "large-1", "grow", "5").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 2);
    let large = gauge(&node, "cella_warm_instance_bytes").await - small;
    assert!((5 << 20..8 << 20).contains(&large), "{large} B");

    // A second one does not fit beside it: the first large one is dropped, the small one stays.
    misbehave(&node, "large-2", "grow", "5").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 2);
    assert_eq!(
        gauge(&node, "cella_warm_instance_bytes").await,
        small + large
    );

    // Larger than the share on its own: never kept, and nothing else is dropped for it.
    misbehave(&node, "huge", "grow", "12").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 2);
    assert_eq!(
        gauge(&node, "cella_warm_instance_bytes").await,
        small + large
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_grown_past_half_its_memory_limit_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_misbehave(dir.path(), &["--memory-limit-mb", "16"]).await;
    // About 3 MiB of linear memory: kept.
    misbehave(&node, "a", "grow", "2").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
    // About 10 MiB, past half of 16: dropped after its command, which succeeded.
    misbehave(&node, "b", "grow", "9").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
    // Its next command runs in a fresh instance, and succeeds again.
    misbehave(&node, "b", "grow", "9").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_in_a_warm_instance_runs_again_in_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_misbehave(dir.path(), &["--memory-limit-mb", "16"]).await;
    // 6 MiB of garbage stay in the entity's warm instance (about 7 MiB, under half of 16).
    misbehave(&node, "a", "leak", "6").await;
    assert_eq!(gauge(&node, "cella_warm_instances").await, 1);
    // 10 MiB more do not fit beside the garbage, but do in a fresh instance: the command
    // succeeds.
    misbehave(&node, "a", "grow", "10").await;
    // More than the limit fails in a fresh instance too.
    let r = node.call("misbehave", "a", "grow", "20").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("out of memory"), "{}", r.body);
}
