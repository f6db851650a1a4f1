//! Moving shards between partitions on three real `cella` nodes over 127.0.0.1
//! (`POST /v1/cluster/shards/{shard}/move`): moves under a concurrent counter load lose no
//! acknowledged command, fail none, and keep every key's history linearizable; every node
//! routes the moved shards to their new partitions, also after a restart; a moved entity keeps
//! its state; a timer set before the move (asked for through the CLI by the entity's name)
//! fires once after it; bad requests are refused with what was wrong; and the placement loop
//! moves shards out of a partition far hotter than the others on its own, and finishes a move
//! left unfinished when its target comes back.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use cella_cluster::placement::Placement;
use cella_core::EntityId;
use cella_tests::{
    cluster::{Load, audit_records, cluster_status, deploy_counter, start_cluster},
    component, wait_until,
};
use hyper::Method;
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;

/// `POST /v1/cluster/shards/{shard}/move` with `body`.
async fn move_shard(node: &cella_tests::TestNode, shard: u32, body: Value) -> (u16, Value) {
    let r = node
        .request(
            Method::POST,
            &format!("/v1/cluster/shards/{shard}/move"),
            body.to_string(),
        )
        .await;
    (r.status, r.json)
}

/// The moved shards as `node` routes them.
async fn routes(node: &cella_tests::TestNode) -> BTreeMap<u32, u64> {
    let status = cluster_status(node).await;
    status["shardMoves"]["moved"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(s, g)| Some((s.parse().ok()?, g.as_u64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shard_moves_under_load_keep_every_key_linearizable() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, PARTITIONS, &["--rebalance", "off"]).await;
    deploy_counter(&nodes).await;
    let placement = Placement {
        shards: 4096,
        partitions: PARTITIONS,
    };
    let shard_of = |key: &str| placement.shard(&EntityId::new("counter", key));

    // Refused, with what was wrong, and nothing moves.
    let home = shard_of("idle");
    for (shard, body, says) in [
        (99_999, json!({"partition": 2}), "there is no shard 99999"),
        (home, json!({"partition": 9}), "there is no partition 9"),
        (home, json!({"node": 2}), "\"partition\": P"),
        (
            home,
            json!({"partition": placement.default_partition(home)}),
            "is already in partition",
        ),
    ] {
        let (status, answer) = move_shard(&nodes[1], shard, body.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(message.contains(says), "{body}: {message}");
    }
    assert!(routes(&nodes[0]).await.is_empty());
    // A shard step is for peers only: an unsigned request gets 401.
    let r = nodes[1]
        .request(Method::POST, "/v1/peer/shard/export/1/5", "")
        .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // On an idle cluster: a move, and the counter's state goes with it.
    assert_eq!(
        nodes[0].call("counter", "idle", "add", "5").await.json,
        json!(5)
    );
    let to = placement.default_partition(home) % u64::from(PARTITIONS) + 1;
    let t = Instant::now();
    let (status, answer) = move_shard(&nodes[2], home, json!({"partition": to})).await;
    let idle_move = t.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["move"]["to"], json!(to), "{answer}");
    assert_eq!(answer["entities"], json!(1), "{answer}");
    for node in &nodes {
        assert_eq!(node.call("counter", "idle", "add", "1").await.status, 200);
    }
    assert_eq!(
        nodes[1].call("counter", "idle", "get", "").await.json,
        json!(8)
    );

    // Under load: the shards of a few keys go around the partitions, each move asked of a
    // different node (routed to the metadata leader).
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let load = Load::start(&urls, 12, "m", 24);
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "the load did not start"
    );
    let mut moving: Vec<u32> = (0..24).map(|k| shard_of(&format!("m{k}"))).collect();
    moving.sort_unstable();
    moving.dedup();
    moving.truncate(4);
    let mut expected: BTreeMap<u32, u64> = routes(&nodes[0]).await;
    let mut took = Vec::new();
    for round in 0..2usize {
        for (i, shard) in moving.iter().enumerate() {
            let from = expected
                .get(shard)
                .copied()
                .unwrap_or_else(|| placement.default_partition(*shard));
            let to = from % u64::from(PARTITIONS) + 1;
            let asked = &nodes[(round + i) % 3];
            let t = Instant::now();
            let (status, answer) = move_shard(asked, *shard, json!({"partition": to})).await;
            assert_eq!(status, 200, "moving shard {shard} to {to}: {answer}");
            assert_eq!(answer["move"]["from"], json!(from), "{answer}");
            took.push(t.elapsed());
            expected.insert(*shard, to);
            assert!(
                load.wait_for_more(50, Duration::from_secs(30)).await,
                "commands stopped completing after moving shard {shard} to {to}"
            );
        }
    }
    let (acked, failed) = load.finish(&nodes[0]).await;
    assert!(acked > 300, "only {acked} adds acknowledged");
    eprintln!(
        "an idle shard move took {idle_move:?}; under load {took:?}; {acked} adds \
         acknowledged, {failed} failed"
    );
    assert_eq!(failed, 0, "adds failed during the moves");

    // Every node routes the moved shards where they went, and a restarted node too.
    for node in &nodes {
        assert_eq!(routes(node).await, expected, "{}", node.url);
    }
    nodes[2].restart_in_place().unwrap();
    let back = wait_until(Duration::from_secs(60), || async {
        nodes[2].call("counter", "m0", "get", "").await.status == 200
    })
    .await;
    assert!(back, "the restarted node does not serve");
    assert_eq!(routes(&nodes[2]).await, expected);
    let total = nodes[2].call("counter", "m0", "get", "").await.json;
    assert_eq!(total, nodes[0].call("counter", "m0", "get", "").await.json);
    assert_eq!(nodes[2].call("counter", "m0", "add", "1").await.status, 200);
}

/// The value of the TCK value model `key` on `node`.
async fn value(node: &cella_tests::TestNode, key: &str) -> String {
    let r = node
        .call("tck-value", key, "process", r#"{"actions": []}"#)
        .await;
    r.json["value"].as_str().unwrap_or("<none>").to_string()
}

/// A timer set before its entity's shard moves fires once, under the new partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_follows_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let node = cella_tests::TestNode::start(dir.path(), &[]).unwrap();
    let r = node.deploy("tck-value", &component("tck-value")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let schedule = |name: &str, delay_ms: u64, mark: &str| {
        json!({"actions": [{"schedule": {
            "name": name, "delayMs": delay_ms, "command": "process",
            "payload": {"actions": [{"append": mark}]}
        }}]})
        .to_string()
    };
    let r = node
        .call("tck-value", "k", "process", &schedule("t", 1_500, "x"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let placement = Placement::default();
    let shard = placement.shard(&EntityId::new("tck-value", "k"));
    let to = placement.default_partition(shard) % u64::from(placement.partitions) + 1;
    // Through the CLI, naming the entity rather than its shard.
    let out = std::process::Command::new(cella_tests::cella_bin())
        .args(["cluster", "move-shard", "--entity", "tck-value/k", "--to"])
        .arg(to.to_string())
        .args(["--server", &node.url, "--json"])
        .output()
        .unwrap();
    let (stdout, stderr) = cella_tests::output_text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            answer["move"]["shard"].as_u64(),
            answer["move"]["to"].as_u64()
        ),
        (Some(u64::from(shard)), Some(to)),
        "{answer}"
    );
    let fired = wait_until(Duration::from_secs(20), || async {
        value(&node, "k").await.contains('x')
    })
    .await;
    assert!(fired, "the timer did not fire: {}", value(&node, "k").await);
    // A later timer shows the first fired once.
    let r = node
        .call("tck-value", "k", "process", &schedule("b", 200, "b"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let barrier = wait_until(Duration::from_secs(20), || async {
        value(&node, "k").await.contains('b')
    })
    .await;
    assert!(barrier);
    assert_eq!(value(&node, "k").await, "xb");
    let r = node
        .request(Method::GET, "/v1/entities/tck-value/k", "")
        .await;
    assert_eq!(r.json["timers"], json!([]), "{}", r.body);
}

/// The placement loop moves shards out of a partition that takes far more writes than the
/// others, on its own, under load: no add fails, every key stays linearizable, and every node
/// routes the moved shards alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_far_hotter_than_the_others_hands_shards_to_them() {
    let root = tempfile::tempdir().unwrap();
    let args = [
        // Shards only: leadership never moves (no node's pressure reaches 2).
        "--rebalance-min-load",
        "2",
        "--rebalance-interval-ms",
        "300",
        "--rebalance-confirm",
        "2",
        "--rebalance-cooldown-secs",
        "2",
        // A debug build's partition takes a few hundred writes/s, not thousands.
        "--rebalance-shard-min-writes",
        "20",
        // Three nodes share two CPUs here: none has CPUs clearly less busy than another's,
        // nor is any busy with its own work alone. This test is of the loop (measure, plan,
        // confirm, move), not of those margins.
        "--rebalance-shard-min-cpu",
        "0",
        "--rebalance-min-gain",
        "-1",
    ];
    let nodes = start_cluster(root.path(), 3, PARTITIONS, &args).await;
    deploy_counter(&nodes).await;
    // Every key in partition 1, each in a shard of its own.
    let placement = Placement {
        shards: 4096,
        partitions: PARTITIONS,
    };
    let mut shards = Vec::new();
    let keys: Vec<String> = (0..)
        .map(|i| format!("h{i}"))
        .filter(|k| {
            let shard = placement.shard(&EntityId::new("counter", k));
            let fresh = placement.default_partition(shard) == 1 && !shards.contains(&shard);
            if fresh {
                shards.push(shard);
            }
            fresh
        })
        .take(24)
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let load = Load::start_keys(&urls, 8, keys);
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "the load did not start"
    );
    let moved = wait_until(Duration::from_secs(60), || async {
        routes(&nodes[0]).await.len() >= 2
    })
    .await;
    let status = cluster_status(&nodes[1]).await;
    assert!(moved, "no shard moved on its own: {status}");
    assert!(
        load.wait_for_more(100, Duration::from_secs(30)).await,
        "commands stopped completing after the moves"
    );
    let (acked, failed) = load.finish(&nodes[0]).await;
    let moves = status["shardMoves"]["moves"].clone();
    eprintln!("{acked} adds acknowledged, {failed} failed; moves: {moves}");
    assert_eq!(failed, 0, "adds failed during the moves");
    // The first move takes one of partition 1's hot shards elsewhere, and says why.
    let first = &moves[0];
    assert_eq!(first["from"], json!(1), "{moves}");
    assert!(
        shards.contains(&u32::try_from(first["shard"].as_u64().unwrap_or(0)).unwrap_or(0)),
        "{moves}"
    );
    assert!(
        first["reason"].as_str().unwrap_or("").contains("writes/s"),
        "{moves}"
    );
    // Only loaded shards moved, and every node routes them alike once the moves under way
    // (the loop's last round) are done.
    let agreed = wait_until(Duration::from_secs(30), || async {
        let status = cluster_status(&nodes[0]).await;
        let first = routes(&nodes[0]).await;
        let moving = status["shardMoves"]["moving"]
            .as_array()
            .map_or(0, Vec::len);
        moving == 0 && routes(&nodes[1]).await == first && routes(&nodes[2]).await == first
    })
    .await;
    let expected = routes(&nodes[0]).await;
    assert!(
        agreed,
        "the nodes route differently: {expected:?}, {:?}, {:?}",
        routes(&nodes[1]).await,
        routes(&nodes[2]).await
    );
    assert!(expected.keys().all(|s| shards.contains(s)), "{expected:?}");
    // Each move is in the audit trail, by the placement loop.
    let (moves, audit) = audit_records(&nodes[0], "move-shard").await;
    let by_loop = moves
        .iter()
        .filter(|r| {
            r["actor"]
                .as_str()
                .is_some_and(|a| a.ends_with("(placement)"))
        })
        .count();
    assert!(by_loop >= 2, "{audit}");
    // `cella cluster status` lists the moves with their reasons.
    let out = std::process::Command::new(cella_tests::cella_bin())
        .args(["cluster", "status", "--table", "--server", &nodes[2].url])
        .output()
        .unwrap();
    let (stdout, stderr) = cella_tests::output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("shard moves (newest last)"), "{stdout}");
    assert!(stdout.contains("writes/s"), "{stdout}");
}

/// A move that fails after the shard froze at its source (its target partition's only replica
/// is down) is finished by the placement loop on its own once the target is back, with no one
/// asking again, and the entity keeps its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_left_unfinished_is_finished_by_the_placement_loop() {
    let root = tempfile::tempdir().unwrap();
    // One replica per partition: a partition is down with its node. The loop plans nothing
    // (`--rebalance off`), but finishes what was left unfinished.
    let args = ["--replicas", "1", "--rebalance", "off"];
    let mut nodes = start_cluster(root.path(), 3, PARTITIONS, &args).await;
    deploy_counter(&nodes).await;
    let placement = Placement {
        shards: 4096,
        partitions: PARTITIONS,
    };
    // Two partitions led by different nodes (a partition's one replica leads it; a node
    // reports those it holds): a key of the first, moved to the second, whose node is down.
    let mut leaders = BTreeMap::new();
    for node in &nodes {
        leaders.extend(cella_tests::cluster::leaders(node).await);
    }
    let (from, to, down) = leaders
        .iter()
        .flat_map(|(g, a)| leaders.iter().map(move |(h, b)| (*g, *a, *h, *b)))
        .find(|(_, a, _, b)| a != b)
        .map(|(g, _, h, b)| (g, h, usize::try_from(b - 1).unwrap()))
        .unwrap_or_else(|| panic!("one node leads every partition: {leaders:?}"));
    let key = (0..)
        .map(|i| format!("u{i}"))
        .find(|k| {
            placement.default_partition(placement.shard(&EntityId::new("counter", k))) == from
        })
        .unwrap();
    let shard = placement.shard(&EntityId::new("counter", &key));
    let up = (down + 1) % nodes.len();
    assert_eq!(
        nodes[up].call("counter", &key, "add", "5").await.status,
        200
    );

    nodes[down].kill9();
    let (status, body) = move_shard(&nodes[up], shard, json!({"partition": to})).await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string().contains("did not finish"),
        "{status} {body}"
    );
    assert!(
        !routes(&nodes[up]).await.contains_key(&shard),
        "the shard is routed before its move finished"
    );

    nodes[down].restart_in_place().unwrap();
    let finished = wait_until(Duration::from_secs(90), || async {
        let mut all = true;
        for node in &nodes {
            all &= routes(node).await.get(&shard) == Some(&to);
        }
        all
    })
    .await;
    assert!(
        finished,
        "the move was not finished: {}",
        cluster_status(&nodes[0]).await["shardMoves"]
    );
    let status = cluster_status(&nodes[0]).await;
    let last = &status["shardMoves"]["moves"]
        .as_array()
        .unwrap()
        .last()
        .cloned();
    assert!(
        last.as_ref().is_some_and(|m| m["reason"]
            .as_str()
            .unwrap_or("")
            .contains("left unfinished")),
        "{}",
        status["shardMoves"]
    );
    for node in &nodes {
        let r = node.call("counter", &key, "get", "").await;
        assert_eq!((r.status, r.json), (200, json!(5)), "{}", node.url);
    }
}
