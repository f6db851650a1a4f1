//! A three-node cluster of real `cella` processes on 127.0.0.1: every node serves every entity
//! (requests are forwarded to partition leaders), leaders are spread over the nodes, a `kill -9`
//! of a leader under concurrent load loses no acknowledged command and a new leader serves
//! within 5 s, the per-key histories of the counter are linearizable, and the killed node
//! rejoins and catches up (through snapshots: the others purged their logs meanwhile). Module uploads to any node reach every node, including one that
//! was down.

use std::time::{Duration, Instant};

use cella_tests::{
    cella_bin,
    cluster::{
        Load, all_led, check_history, cluster_status, groups, has_modules, leaders,
        snapshots_installed, start_cluster,
    },
    component, output_text, wait_until,
};
use hyper::Method;
use serde_json::json;

const PARTITIONS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_serve_everything_and_survive_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    // Small snapshots, so that the killed node has to catch up through one.
    let mut nodes =
        start_cluster(root.path(), 3, PARTITIONS, &["--raft-snapshot-every", "10"]).await;
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
        .args(["cluster", "status", "--table", "--server", &nodes[1].url])
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

    // Routing decides up front: a request another node forwarded runs only where its entity is
    // led; every other node answers 421 naming that leader, and never forwards it again.
    let routed = wait_until(Duration::from_secs(10), || async {
        let mut consistent = true;
        for k in 0..12 {
            let path = format!("/v1/entities/counter/k{k}");
            let mut served = Vec::new();
            let mut named = Vec::new();
            for node in &nodes {
                match forwarded_get(&node.addr(), &path).await {
                    (200, _) => served.push(node.addr()),
                    (421, leader) => named.push(leader),
                    (status, body) => panic!("{path} at {}: {status} {body}", node.url),
                }
            }
            consistent &= served.len() == 1 && named.iter().all(|n| Some(n) == served.first());
        }
        consistent
    })
    .await;
    assert!(
        routed,
        "forwarded requests were not answered by the leader alone"
    );

    // Concurrent load through nodes 2 and 3 while node 1 (a partition leader) is killed.
    let victim_partitions: Vec<u64> = leaders(&nodes[0])
        .await
        .into_iter()
        .filter(|(_, leader)| *leader == 1)
        .map(|(g, _)| g)
        .collect();
    assert!(!victim_partitions.is_empty());
    let load = Load::start(&[nodes[1].url.clone(), nodes[2].url.clone()], 6, "load", 16);
    assert!(
        load.wait_for_more(50, Duration::from_secs(30)).await,
        "the load did not get going"
    );
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
    // Enough load while node 1 is down for every partition to snapshot and purge past it.
    assert!(
        load.wait_for_more(600, Duration::from_secs(60)).await,
        "too little load got through after the kill"
    );
    let history = load.stop().await;

    // No acknowledged add is lost, and each key's history is linearizable.
    let acked_total = check_history(&nodes[1], &history).await;
    assert!(
        acked_total > 600,
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
        all && all_led(&nodes[0], PARTITIONS, &[1, 2, 3]).await
    })
    .await;
    assert!(
        caught_up,
        "node 1 did not rejoin: {}",
        cluster_status(&nodes[0]).await
    );
    // Its replicas applied what the others committed while it was gone, through snapshots
    // (the others purged their logs past where it stopped).
    let peer = groups(&cluster_status(&nodes[1]).await);
    for g in 1..=u64::from(PARTITIONS) {
        let ok = wait_until(Duration::from_secs(10), || async {
            let mine = groups(&cluster_status(&nodes[0]).await);
            let applied = |s: &std::collections::BTreeMap<u64, serde_json::Value>| {
                s.get(&g).and_then(|x| x["applied"].as_u64()).unwrap_or(0)
            };
            applied(&mine) + 2 >= applied(&peer)
        })
        .await;
        assert!(
            ok,
            "group {g} lags on node 1: {}",
            cluster_status(&nodes[0]).await
        );
    }
    let installed = snapshots_installed(&nodes[0]).await;
    assert!(
        installed > 0,
        "node 1 caught up without a snapshot: {}",
        cluster_status(&nodes[0]).await
    );
}

/// Sends `GET path` to `addr` marked as forwarded by another node; the status and the body.
async fn forwarded_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nx-cella-forwarded: 1\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}
