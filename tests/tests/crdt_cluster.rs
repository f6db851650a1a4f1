//! Crdt entities on a three-node cluster of real `cella` processes on 127.0.0.1: every node
//! serves `likes` (a durable pn-counter) without forwarding and all of them converge on one
//! count, a watch on one node sees a like made on another; with a node killed (`kill -9`)
//! `majority` writes and reads go on and an `all` write is answered `unavailable` (and stays
//! applied where it ran); the killed node restarts on its data and converges with no
//! acknowledged like lost; a frozen node (`SIGSTOP`) holds up no local write and converges once
//! it thaws; after every node is killed and restarted the count is still there. The ephemeral
//! `presence` set of a node that restarts is rebuilt from its peers (on a cluster whose nodes do
//! not authenticate each other, `--insecure-peers`).

use std::time::Duration;

use cella_tests::{
    TestNode,
    cluster::{has_modules, start_cluster},
    component,
    crdt::{Watch, call_with, converge, signal, start_insecure_cluster, value},
};
use serde_json::{Value, json};

/// Partitions of the test clusters (crdt entities use none; fewer groups, less load).
const PARTITIONS: u32 = 2;
/// How long the nodes may take to converge (gossip every ~20 ms, anti-entropy every 500 ms),
/// or anything else expected to happen, on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// Starts three nodes and deploys `ty` (the component of the same name) through node 1,
/// waiting until every node has it loaded. Its nodes sign their requests to each other with
/// the cluster secret, or with `insecure` send them unsigned (`--insecure-peers`).
async fn cluster_with(root: &std::path::Path, ty: &str, insecure: bool) -> Vec<TestNode> {
    let nodes = match insecure {
        false => start_cluster(root, 3, PARTITIONS, &[]).await,
        true => start_insecure_cluster(root, 3, PARTITIONS).await,
    };
    let r = nodes[0].deploy(ty, &component(ty)).await;
    assert_eq!(r.status, 201, "deploying {ty}: {}", r.body);
    let types = [ty];
    for node in &nodes {
        let loaded = cella_tests::wait_until(WAIT, || has_modules(node, &types)).await;
        assert!(loaded, "{ty} is not loaded on {}", node.url);
    }
    nodes
}

/// A `like` of `key` through `node` with `body` that must succeed: the count it replies.
async fn like(node: &TestNode, key: &str, body: &str) -> i64 {
    let r = node.call("likes", key, "like", body).await;
    assert_eq!(
        r.status, 200,
        "like {key} {body} on {}: {}",
        node.url, r.body
    );
    r.json
        .as_i64()
        .unwrap_or_else(|| panic!("a count: {}", r.body))
}

/// Asserts every node of `nodes` converges on `expected` for `likes/key`.
async fn converged(nodes: &[&TestNode], key: &str, expected: i64, when: &str) {
    if let Err(seen) = converge(nodes, "likes", key, &json!(expected), WAIT).await {
        panic!("{when}: the nodes hold {seen:?}, not {expected}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn likes_converge_across_kills_restarts_and_freezes() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_with(root.path(), "likes", false).await;
    let key = "post";

    // A watch on node 2 sees a like made on node 1.
    let mut watch = Watch::open(&nodes[1], "likes", key)
        .await
        .unwrap_or_else(|r| panic!("watch: {} {}", r.status, r.body));
    assert_eq!(watch.next(WAIT).await, Some(json!(0)), "the current value");
    assert_eq!(like(&nodes[0], key, "null").await, 1);
    let mut seen = Vec::new();
    assert!(
        watch.until(&json!(1), WAIT, &mut seen).await,
        "the watch on node 2 saw {seen:?}"
    );
    drop(watch);

    // Writes through all three nodes, some waiting for a majority: one count everywhere.
    let mut total = 1;
    for i in 0..30 {
        let body = match i % 4 {
            0 => r#"{"consistency": "majority"}"#,
            1 => r#""majority""#,
            _ => "null",
        };
        let count = like(&nodes[i % 3], key, body).await;
        total += 1;
        assert!(
            (1..=total).contains(&count),
            "like #{i} replied {count} of {total}"
        );
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    converged(&all, key, total, "after likes on every node").await;
    for node in &nodes {
        let r = node.call("likes", key, "count", "null").await;
        assert_eq!(
            (r.status, r.json.clone()),
            (200, json!(total)),
            "{}",
            r.body
        );
    }

    // Node 3 killed: majority writes go on; with nothing but majority writes, a majority read
    // on the other node sees every one of them.
    nodes[2].kill9();
    for i in 0..10 {
        let (at, other) = (i % 2, 1 - i % 2);
        let count = like(&nodes[at], key, r#"{"consistency": "majority"}"#).await;
        total += 1;
        assert_eq!(count, total, "majority like #{i} on node {}", at + 1);
        let r = call_with(&nodes[other], "likes", key, "count", "majority", "null").await;
        assert_eq!(
            (r.status, r.json.clone()),
            (200, json!(total)),
            "majority read on node {} after majority like #{i}: {}",
            other + 1,
            r.body
        );
        let r = call_with(&nodes[other], "likes", key, "like", "majority", "null").await;
        total += 1;
        assert_eq!(
            (r.status, r.json.clone()),
            (200, json!(total)),
            "like?consistency=majority #{i}: {}",
            r.body
        );
    }
    // All three cannot be reached: the write is refused as unavailable, but stays applied here
    // (and reaches node 2 by gossip); a read at `all` is refused before it reads.
    let r = nodes[0]
        .call("likes", key, "like", r#"{"consistency": "all"}"#)
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "an all write with a node down: {}",
        r.body
    );
    total += 1;
    let r = call_with(&nodes[1], "likes", key, "count", "all", "null").await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "an all read with a node down: {}",
        r.body
    );
    let r = call_with(&nodes[1], "likes", key, "unlike", "all", "null").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(value(&nodes[0], "likes", key).await, json!(total));
    converged(&[&nodes[0], &nodes[1]], key, total, "after the all write").await;
    // Local writes meanwhile, on both live nodes.
    for i in 0..6 {
        like(&nodes[i % 2], key, "null").await;
        total += 1;
    }

    // Node 3 restarts on its data and converges: no acknowledged like is lost.
    nodes[2].restart_in_place().expect("restart node 3");
    let all: Vec<&TestNode> = nodes.iter().collect();
    converged(&all, key, total, "after node 3 restarted").await;
    // It takes writes again, and all three answer an `all` write.
    assert_eq!(
        like(&nodes[2], key, r#"{"consistency": "all"}"#).await,
        total + 1
    );
    total += 1;
    let all_read = cella_tests::wait_until(WAIT, || async {
        let r = call_with(&nodes[0], "likes", key, "count", "all", "null").await;
        r.status == 200 && r.json == json!(total)
    })
    .await;
    assert!(all_read, "an all read once node 3 is back");

    // Node 2 frozen: local writes on the others are answered without it, and they converge.
    signal(&nodes[1], libc::SIGSTOP);
    for i in 0..10 {
        let node = &nodes[if i % 2 == 0 { 0 } else { 2 }];
        let count = tokio::time::timeout(WAIT, like(node, key, "null"))
            .await
            .unwrap_or_else(|_| panic!("like #{i} waited on the frozen node"));
        total += 1;
        assert!(count <= total, "like #{i} replied {count} of {total}");
    }
    // A majority write needs only one of the two others.
    let count = tokio::time::timeout(WAIT, like(&nodes[2], key, r#""majority""#))
        .await
        .expect("a majority write with one node frozen");
    total += 1;
    assert!(count <= total, "{count} of {total}");
    converged(&[&nodes[0], &nodes[2]], key, total, "with node 2 frozen").await;
    signal(&nodes[1], libc::SIGCONT);
    let all: Vec<&TestNode> = nodes.iter().collect();
    converged(&all, key, total, "after node 2 thawed").await;
    assert_eq!(like(&nodes[1], key, "null").await, total + 1);
    total += 1;
    converged(&all, key, total, "after a like on the thawed node").await;
    drop(all);

    // Every node killed at once and restarted on its data: the count comes back from what
    // each node stored, as no node is left to hold it in memory.
    for node in nodes.iter_mut() {
        node.kill9();
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        node.restart_in_place()
            .unwrap_or_else(|e| panic!("restart node {}: {e:#}", i + 1));
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    converged(&all, key, total, "after every node restarted").await;
    assert_eq!(like(&nodes[0], key, r#""majority""#).await, total + 1);
}

/// `list` of `presence/room` through `node`.
async fn members(node: &TestNode) -> Value {
    let r = node.call("presence", "room", "list", "null").await;
    assert_eq!(r.status, 200, "list on {}: {}", node.url, r.body);
    r.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ephemeral_set_is_rebuilt_from_the_peers_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_with(root.path(), "presence", true).await;

    // Each node joins one name, node 1 two; the reply is the set as that node sees it.
    for (i, name) in [(0, "ann"), (1, "bob"), (2, "cy"), (0, "dee")] {
        let r = nodes[i]
            .call("presence", "room", "join", &format!("\"{name}\""))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let set = r.json.as_array().expect("an array");
        assert!(set.contains(&json!(name)), "join {name}: {}", r.body);
    }
    let everyone = json!(["ann", "bob", "cy", "dee"]);
    let all: Vec<&TestNode> = nodes.iter().collect();
    if let Err(seen) = converge(&all, "presence", "room", &everyone, WAIT).await {
        panic!("the sets did not converge: {seen:?}");
    }

    // Node 1 restarts with nothing in memory: its set comes back from the peers, with the
    // names it had joined itself.
    nodes[0].kill9();
    nodes[0].restart_in_place().expect("restart node 1");
    let rebuilt =
        cella_tests::wait_until(WAIT, || async { members(&nodes[0]).await == everyone }).await;
    assert!(rebuilt, "node 1 lists {}", members(&nodes[0]).await);

    // Its new replica removes what its old one added, and everyone sees it.
    let r = nodes[0].call("presence", "room", "leave", r#""ann""#).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!(["bob", "cy", "dee"])),
        "{}",
        r.body
    );
    let r = nodes[0].call("presence", "room", "join", r#""eve""#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let all: Vec<&TestNode> = nodes.iter().collect();
    let now = json!(["bob", "cy", "dee", "eve"]);
    if let Err(seen) = converge(&all, "presence", "room", &now, WAIT).await {
        panic!("after a leave and a join on the restarted node: {seen:?}");
    }
}
