//! A three-node cluster of real `cella` processes on 127.0.0.1: every node serves every entity
//! (requests are forwarded to partition leaders), leaders are spread over the nodes, a `kill -9`
//! of a leader under concurrent load loses no acknowledged command and a new leader serves
//! within 5 s, the per-key histories of the counter are linearizable, and the killed node
//! rejoins and catches up. Module uploads to any node reach every node, including one that
//! was down.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cella_tests::{TestNode, cella_bin, component, free_ports, output_text, wait_until};
use hyper::Method;
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;

/// Starts nodes 1..=3 with their data under `root`.
fn start_cluster(root: &Path) -> Vec<TestNode> {
    let ports = free_ports(3);
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let partitions = PARTITIONS.to_string();
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = (i + 1).to_string();
            TestNode::start_at(
                &root.join(format!("n{id}")),
                &format!("127.0.0.1:{port}"),
                &[
                    "--node-id",
                    &id,
                    "--initial-cluster",
                    &initial,
                    "--partitions",
                    &partitions,
                ],
            )
            .expect("start a cluster node")
        })
        .collect()
}

async fn cluster_status(node: &TestNode) -> Value {
    node.request(Method::GET, "/v1/cluster", "").await.json
}

/// Every group seen from `node` has a leader among `alive` node ids.
async fn all_led(node: &TestNode, alive: &[u64]) -> bool {
    let status = cluster_status(node).await;
    let Some(groups) = status["groups"].as_array() else {
        return false;
    };
    groups.len() == PARTITIONS as usize + 1
        && groups
            .iter()
            .all(|g| g["leader"].as_u64().is_some_and(|l| alive.contains(&l)))
}

/// Partition leaders (not the metadata group), by node id.
async fn leaders(node: &TestNode) -> BTreeMap<u64, u64> {
    let status = cluster_status(node).await;
    status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["group"] != 0)
        .filter_map(|g| Some((g["group"].as_u64()?, g["leader"].as_u64()?)))
        .collect()
}

/// `node` lists exactly `types` (commands load a listed module on first use).
async fn has_modules(node: &TestNode, types: &[&str]) -> bool {
    let listed = node.request(Method::GET, "/v1/modules", "").await.json["modules"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["type"].as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    listed == types
}

/// One `add 1` as the client saw it.
#[derive(Clone, Debug)]
struct Op {
    invoked: Instant,
    completed: Instant,
    /// The total the add replied; `None` when its outcome is unknown (error or no answer).
    total: Option<i64>,
}

/// Checks a counter key's history of `add 1` operations for linearizability: acknowledged
/// totals are distinct, and an add that completed before another began has a smaller total.
/// Operations with unknown outcome may or may not have taken effect, so they only bound the
/// final value.
fn check_linearizable(key: &str, ops: &[Op], final_total: i64) {
    let acked: Vec<&Op> = ops.iter().filter(|o| o.total.is_some()).collect();
    let mut totals: Vec<i64> = acked.iter().filter_map(|o| o.total).collect();
    totals.sort_unstable();
    let before = totals.len();
    totals.dedup();
    assert_eq!(
        before,
        totals.len(),
        "{key}: two adds replied the same total"
    );
    for a in &acked {
        for b in &acked {
            if a.completed < b.invoked {
                assert!(
                    a.total < b.total,
                    "{key}: an add that finished first replied {:?}, a later one {:?}",
                    a.total,
                    b.total
                );
            }
        }
    }
    let attempted = ops.len() as i64;
    assert!(
        final_total >= acked.len() as i64 && final_total <= attempted,
        "{key}: final total {final_total}, acknowledged {}, attempted {attempted}",
        acked.len()
    );
    if let Some(max) = totals.last() {
        assert!(
            *max <= final_total,
            "{key}: replied {max} > final {final_total}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_serve_everything_and_survive_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path());
    assert!(
        wait_until(Duration::from_secs(30), || all_led(&nodes[0], &[1, 2, 3])).await,
        "the cluster did not elect leaders: {}",
        cluster_status(&nodes[0]).await
    );
    // A module uploaded to any node reaches every node (through the metadata group's leader).
    for (ty, name, via) in [("counter", "counter", 2), ("cart", "shopping-cart", 0)] {
        let r = nodes[via].deploy(ty, &component(name)).await;
        assert_eq!(r.status, 201, "deploying {name}: {}", r.body);
        assert_eq!(r.json["version"], 1, "{}", r.body);
    }
    for node in &nodes {
        let everywhere = wait_until(Duration::from_secs(30), || async {
            has_modules(node, &["cart", "counter"]).await
        })
        .await;
        assert!(everywhere, "modules missing on {}", node.url);
    }
    // Leaders spread over the nodes once every replica has caught up.
    let spread = wait_until(Duration::from_secs(20), || async {
        let l = leaders(&nodes[0]).await;
        (1..=3).all(|n| l.values().any(|v| *v == n))
    })
    .await;
    assert!(spread, "leaders not spread: {:?}", leaders(&nodes[0]).await);
    let out = std::process::Command::new(cella_bin())
        .args(["cluster", "status", "--server", &nodes[1].url])
        .output()
        .expect("run cella cluster status");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("node 2 · 4 partitions"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| matches!(l.split_whitespace().nth(1), Some("leader" | "follower")))
            .count(),
        PARTITIONS as usize + 1,
        "{stdout}"
    );

    // Every node serves every entity, with one consistent state.
    for k in 0..12 {
        let key = format!("k{k}");
        for (i, node) in nodes.iter().enumerate() {
            let r = node.call("counter", &key, "add", "1").await;
            assert_eq!(
                (r.status, r.json.clone()),
                (200, json!(i + 1)),
                "{key}: {}",
                r.body
            );
        }
        for node in &nodes {
            let r = node
                .request(Method::GET, &format!("/v1/entities/counter/{key}"), "")
                .await;
            assert_eq!(r.json["state"], json!({"total": 3}), "{key}: {}", r.body);
        }
    }
    let item = r#"{"productId":"socks","name":"Socks","quantity":2}"#;
    assert_eq!(
        nodes[1].call("cart", "c1", "add-item", item).await.status,
        200
    );
    let cart = nodes[2].call("cart", "c1", "get-cart", "").await;
    assert_eq!(
        cart.json,
        json!({"items": [{"productId": "socks", "name": "Socks", "quantity": 2}]})
    );
    let journal = nodes[0]
        .request(Method::GET, "/v1/entities/cart/c1/journal", "")
        .await;
    assert_eq!(journal.json["entries"].as_array().map(Vec::len), Some(1));

    // Concurrent load through nodes 2 and 3 while node 1 (a partition leader) is killed.
    let victim_partitions: Vec<u64> = leaders(&nodes[0])
        .await
        .into_iter()
        .filter(|(_, leader)| *leader == 1)
        .map(|(g, _)| g)
        .collect();
    assert!(!victim_partitions.is_empty());
    let history: Arc<Mutex<BTreeMap<String, Vec<Op>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls = [nodes[1].url.clone(), nodes[2].url.clone()];
    let mut clients = Vec::new();
    for c in 0..6usize {
        let (history, stop, url) = (history.clone(), stop.clone(), urls[c % 2].clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("load{}", (c * 7 + n) % 16);
                n += 1;
                let invoked = Instant::now();
                let reply = tokio::time::timeout(
                    Duration::from_secs(15),
                    cella_server::client::send(
                        &url,
                        Method::POST,
                        &format!("/v1/entities/counter/{key}/add"),
                        b"1".to_vec(),
                        None,
                    ),
                )
                .await;
                let total = match reply {
                    Ok(Ok(r)) if r.status == 200 => r.body.trim().parse::<i64>().ok(),
                    _ => None,
                };
                let op = Op {
                    invoked,
                    completed: Instant::now(),
                    total,
                };
                history.lock().unwrap().entry(key).or_default().push(op);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    nodes[0].kill9();

    // A key of a partition node 1 led is served again within 5 s.
    let orphan = (0..1000)
        .map(|k| format!("orphan{k}"))
        .find(|k| {
            let placement = cella_cluster::Placement {
                partitions: PARTITIONS,
                ..Default::default()
            };
            victim_partitions
                .contains(&placement.partition(&cella_core::EntityId::new("counter", k)))
        })
        .expect("a key in a partition node 1 led");
    let served = wait_until(Duration::from_secs(5), || async {
        nodes[1].call("counter", &orphan, "get", "").await.status == 200
    })
    .await;
    assert!(served, "no new leader served within 5 s of the kill");
    eprintln!("new leader served after {:?}", killed_at.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    // No acknowledged add is lost, and each key's history is linearizable.
    let history = history.lock().unwrap().clone();
    let mut acked_total = 0;
    for (key, ops) in &history {
        let r = nodes[1].call("counter", key, "get", "").await;
        assert_eq!(r.status, 200, "{key}: {}", r.body);
        let final_total = r.json.as_i64().expect("a total");
        check_linearizable(key, ops, final_total);
        acked_total += ops.iter().filter(|o| o.total.is_some()).count();
    }
    assert!(
        acked_total > 50,
        "too little load got through: {acked_total}"
    );

    // A module deployed while node 1 is down reaches it when it comes back.
    let r = nodes[2].deploy("tally", &component("tally")).await;
    assert_eq!(r.status, 201, "deploying tally: {}", r.body);

    // The killed node rejoins on its address, catches up and serves.
    nodes[0].restart_in_place().expect("restart node 1");
    let tally = wait_until(Duration::from_secs(30), || async {
        has_modules(&nodes[0], &["cart", "counter", "tally"]).await
    })
    .await;
    assert!(
        tally,
        "the module deployed while node 1 was down did not reach it"
    );
    let caught_up = wait_until(Duration::from_secs(30), || async {
        let mut all = true;
        for (key, ops) in &history {
            let acked = ops.iter().filter(|o| o.total.is_some()).count() as i64;
            let r = nodes[0]
                .request(Method::GET, &format!("/v1/entities/counter/{key}"), "")
                .await;
            all &= r.status == 200 && r.json["state"]["total"].as_i64() >= Some(acked);
        }
        all && all_led(&nodes[0], &[1, 2, 3]).await
    })
    .await;
    assert!(
        caught_up,
        "node 1 did not rejoin: {}",
        cluster_status(&nodes[0]).await
    );
    // Its replicas applied what the others committed while it was gone.
    let status = cluster_status(&nodes[0]).await;
    let peer = cluster_status(&nodes[1]).await;
    let applied_on = |s: &Value, g: u64| {
        s["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|x| x["group"] == g))
            .and_then(|x| x["applied"].as_u64())
            .unwrap_or(0)
    };
    for g in 1..=u64::from(PARTITIONS) {
        let ok = wait_until(Duration::from_secs(10), || async {
            applied_on(&cluster_status(&nodes[0]).await, g) + 2 >= applied_on(&peer, g)
        })
        .await;
        assert!(ok, "group {g} lags on node 1: {status}");
    }
}
