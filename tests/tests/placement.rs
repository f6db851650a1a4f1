//! Placement that follows load, on three real `cella` nodes over 127.0.0.1: partition
//! leadership moved under a concurrent counter load (asked for with `POST
//! /v1/cluster/rebalance`) loses no acknowledged command and keeps every key's history
//! linearizable; a load skewed onto the partitions one node leads, that node pinned to a CPU a
//! busy loop keeps busy, makes the placement loop move one of them to another node on its own; a dry run shows a move without making it; and bad
//! requests are refused with what was wrong.

use std::time::{Duration, Instant};

use cella_core::EntityId;
use cella_tests::{
    cella_bin,
    cluster::{
        Load, audit_records, check_history, cluster_status, deploy_counter, leaders, start_cluster,
    },
    output_text, wait_until,
};
use hyper::Method;
use serde_json::{Value, json};

/// The tests of this file one at a time: each measures CPU, which the other would disturb.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until each of `nodes` leads at least one partition (the layout's spread).
async fn spread(nodes: &[cella_tests::TestNode]) {
    let ok = wait_until(Duration::from_secs(30), || async {
        let l = leaders(&nodes[0]).await;
        (1..=nodes.len() as u64).all(|n| l.values().any(|v| *v == n))
    })
    .await;
    assert!(ok, "leaders not spread: {:?}", leaders(&nodes[0]).await);
}

/// `POST /v1/cluster/rebalance` to `node` with `body` (dry run if asked).
async fn rebalance(node: &cella_tests::TestNode, dry_run: bool, body: Value) -> (u16, Value) {
    let path = if dry_run {
        "/v1/cluster/rebalance?dry-run=true"
    } else {
        "/v1/cluster/rebalance"
    };
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = node.request(Method::POST, path, body).await;
    (r.status, r.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_under_load_keep_every_key_linearizable() {
    const PARTITIONS: u64 = 4;
    let _alone = ALONE.lock().await;
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3, PARTITIONS as u32, &["--rebalance", "off"]).await;
    deploy_counter(&nodes).await;
    spread(&nodes).await;

    // Refused, with what was wrong, and nothing moves.
    let before = leaders(&nodes[0]).await;
    for (body, says) in [
        (
            json!({"partition": 9, "node": 2}),
            "there is no partition 9",
        ),
        (
            json!({"partition": 0, "node": 2}),
            "there is no partition 0",
        ),
        (
            json!({"partition": 1, "node": 7}),
            "node 7 is not a voter of partition 1",
        ),
        (json!({"partition": 1}), "\"partition\": P, \"node\": N"),
    ] {
        let (status, answer) = rebalance(&nodes[1], false, body.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(leaders(&nodes[0]).await, before);
    // A node's load report is for its peers only: an unsigned request gets 401.
    let r = nodes[1].request(Method::GET, "/v1/peer/load", "").await;
    assert_eq!(r.status, 401, "{}", r.body);

    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let load = Load::start(&urls, 12, "m", 24);
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "the load did not start"
    );
    // Every partition's leadership goes around the three nodes once, under load, each move
    // asked of a different node (routed to the metadata leader).
    let mut took = Vec::new();
    let mut made = Vec::new();
    for round in 0..2u64 {
        for p in 1..=PARTITIONS {
            let from = leaders(&nodes[0]).await[&p];
            let to = from % 3 + 1;
            let asked = &nodes[((round + p) % 3) as usize];
            let t = Instant::now();
            let (status, answer) =
                rebalance(asked, false, json!({"partition": p, "node": to})).await;
            assert_eq!(status, 200, "moving partition {p} to {to}: {answer}");
            assert_eq!(answer["applied"], true, "{answer}");
            assert_eq!(
                answer["moved"], true,
                "partition {p} did not move: {answer}"
            );
            assert_eq!(answer["plan"]["move"]["from"], from, "{answer}");
            took.push(t.elapsed());
            made.push((p, from, to));
            assert!(
                load.wait_for_more(50, Duration::from_secs(30)).await,
                "commands stopped completing after moving partition {p} to node {to}"
            );
        }
    }
    let (acked, failed) = load.finish(&nodes[0]).await;
    assert!(acked > 300, "only {acked} adds acknowledged");
    // A move lets the appends in flight commit before it hands over, and routes the commands
    // that arrive meanwhile to the new leader: none fails.
    eprintln!("leader moves under load took {took:?}; {acked} adds acknowledged, {failed} failed");
    assert_eq!(failed, 0, "adds failed during the moves");

    // The moves are the placement's, in order, on every node, and in the audit trail.
    let final_leaders = leaders(&nodes[0]).await;
    for node in &nodes {
        let status = cluster_status(node).await;
        let moves: Vec<(u64, u64, u64)> = status["placement"]["moves"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let n = |f: &str| m[f].as_u64().unwrap_or(0);
                (n("group"), n("from"), n("to"))
            })
            .collect();
        assert_eq!(moves, made, "{}", node.url);
        for (p, leader) in &final_leaders {
            assert_eq!(
                status["placement"]["preferred"][p.to_string()],
                json!(leader)
            );
        }
    }
    let (moved, audit) = audit_records(&nodes[2], "move-leader").await;
    assert_eq!(moved.len(), made.len(), "{audit}");
}

/// Keys of `counter` whose partition (of `partitions`) is in `wanted`.
fn keys_in(partitions: u32, wanted: &[u64], n: usize) -> Vec<String> {
    let placement = cella_cluster::Placement {
        partitions,
        ..Default::default()
    };
    (0..)
        .map(|i| format!("s{i}"))
        .filter(|k| wanted.contains(&placement.partition(&EntityId::new("counter", k.as_str()))))
        .take(n)
        .collect()
}

/// A busy loop, killed when dropped.
struct Hog(std::process::Child);

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lets this process run on the CPUs `.0` again when dropped.
struct Unpin(String);

impl Drop for Unpin {
    fn drop(&mut self) {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &self.0, &std::process::id().to_string()])
            .output();
    }
}

/// Pins every thread of process `pid` to CPUs `cpus` (`taskset`).
fn pin(pid: u32, cpus: &str) {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .expect("run taskset");
    assert!(out.status.success(), "{}", output_text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_skewed_onto_one_node_moves_a_partition_off_it() {
    // Nine partitions: node 1 is the layout's leader of 1, 4 and 7.
    const PARTITIONS: u32 = 9;
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: node 1 needs a CPU of its own, and this machine has one");
        return;
    }
    let _alone = ALONE.lock().await;
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(
        root.path(),
        3,
        PARTITIONS,
        &[
            // Any move off the busiest node, even onto CPUs as busy: this test is of the loop
            // (measure, plan, confirm, record, hand over), not of the margin, which a debug
            // build's followers on two CPUs leave too thin to test.
            "--rebalance-min-gain",
            "-0.5",
            "--rebalance-interval-ms",
            "300",
            "--rebalance-cooldown-secs",
            "2",
        ],
    )
    .await;
    deploy_counter(&nodes).await;
    spread(&nodes).await;
    // Node 1 on CPU 0, which a busy loop keeps busy (a noisy neighbour), the others on CPU 1.
    for (node, cpus) in nodes.iter().zip(["0", "1", "1"]) {
        pin(node.pid().expect("a running node"), cpus);
    }
    // This process (the clients) on CPU 0 too, so that CPU 1 has nodes 2 and 3 alone; every
    // CPU again when the test ends.
    let all_cpus = format!(
        "0-{}",
        std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
    );
    pin(std::process::id(), "0");
    let _unpin = Unpin(all_cpus);
    let hog = Hog(std::process::Command::new("taskset")
        .args(["-c", "0", "sh", "-c", "while :; do :; done"])
        .spawn()
        .expect("start a busy loop"));
    let hot = [1, 4, 7];
    let l = leaders(&nodes[0]).await;
    assert!(hot.iter().all(|p| l[p] == 1), "{l:?}");

    // A few clients talk to node 1, about keys of the partitions it leads.
    let load = Load::start_keys(
        std::slice::from_ref(&nodes[0].url),
        4,
        keys_in(PARTITIONS, &hot, 30),
    );
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "the load did not start"
    );
    // A dry run names a move off node 1 (or finds the loads balanced enough) and makes none.
    let (status, plan) = rebalance(&nodes[2], true, Value::Null).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["applied"], false, "{plan}");
    assert_eq!(plan["loads"].as_array().map(Vec::len), Some(3), "{plan}");
    assert_eq!(plan["unreachable"], json!([]), "{plan}");
    if let Some(m) = plan["plan"]["move"].as_object() {
        assert_eq!(m["from"], 1, "{plan}");
        assert!(hot.contains(&m["group"].as_u64().unwrap_or(0)), "{plan}");
    }
    // The loop moves one of node 1's busy partitions to another node on its own.
    let moved = wait_until(Duration::from_secs(90), || async {
        let status = cluster_status(&nodes[1]).await;
        !status["placement"]["moves"]
            .as_array()
            .is_none_or(Vec::is_empty)
    })
    .await;
    let status = cluster_status(&nodes[1]).await;
    let (_, now) = rebalance(&nodes[2], true, Value::Null).await;
    assert!(
        moved,
        "no move under a skewed load: {status}\nthe plan then: {plan}\nnow: {now}"
    );
    let first = &status["placement"]["moves"][0];
    let group = first["group"].as_u64().unwrap_or(0);
    let to = first["to"].as_u64().unwrap_or(0);
    assert_eq!(first["from"], 1, "{first}");
    assert!(hot.contains(&group) && [2, 3].contains(&to), "{first}");
    assert!(
        first["reason"].as_str().unwrap_or("").contains("% busy"),
        "{first}"
    );
    let led = wait_until(Duration::from_secs(20), || async {
        leaders(&nodes[0]).await.get(&group) == Some(&to)
    })
    .await;
    assert!(
        led,
        "partition {group} is not led by node {to}: {:?}",
        leaders(&nodes[0]).await
    );
    assert!(load.wait_for_more(100, Duration::from_secs(30)).await);
    let history = load.stop().await;
    drop(hog);
    check_history(&nodes[0], &history).await;

    // `cella cluster status` shows every node's load and the move.
    let out = std::process::Command::new(cella_bin())
        .args(["cluster", "status", "--table", "--server", &nodes[2].url])
        .output()
        .expect("run cella cluster status");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\nload\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("partition {group}: node 1 → node {to}")),
        "{stdout}"
    );
    // And `cella cluster rebalance --dry-run` answers readably.
    let out = std::process::Command::new(cella_bin())
        .args([
            "cluster",
            "rebalance",
            "--dry-run",
            "--table",
            "--server",
            &nodes[0].url,
        ])
        .output()
        .expect("run cella cluster rebalance");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("no move: ") || stdout.starts_with("would move: "),
        "{stdout}"
    );
}
