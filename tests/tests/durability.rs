//! Durability on a real node: graceful restarts and `kill -9` under concurrent load lose no
//! acknowledged command; evicted entities come back from snapshot + journal.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cella_tests::{TestNode, component, wait_until};
use hyper::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_state_and_modules() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::with_examples(dir.path(), &[]).await;
    for i in 1..=10 {
        assert_eq!(node.call("counter", "a", "add", "1").await.json, json!(i));
    }
    let item = json!({"productId": "p1", "name": "Apple", "quantity": 2}).to_string();
    assert_eq!(node.call("cart", "c", "add-item", &item).await.status, 200);

    assert!(node.terminate().unwrap(), "SIGTERM should exit cleanly");
    node.restart().unwrap();
    assert_eq!(node.call("counter", "a", "get", "").await.json, json!(10));
    assert_eq!(
        node.call("cart", "c", "get-cart", "").await.json,
        json!({"items": [{"productId": "p1", "name": "Apple", "quantity": 2}]})
    );
    let modules = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(modules.json["modules"].as_array().unwrap().len(), 2);
}

/// Concurrent writers add 1 to random counters; the test records every acknowledged add,
/// SIGKILLs the node mid-load, restarts it, and checks that for every key
/// `acknowledged <= value <= attempted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_load_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::with_examples(dir.path(), &[]).await;
    let url = node.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let keys = 20u64;
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (url, stop) = (url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked: HashMap<u64, u64> = HashMap::new();
            let mut attempted: HashMap<u64, u64> = HashMap::new();
            let mut carts_acked = 0u64;
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (i >> 33) % keys;
                *attempted.entry(k).or_default() += 1;
                let path = format!("/v1/entities/counter/k{k}/add");
                match cella_cli::client::send(&url, Method::POST, &path, b"1".to_vec(), None).await
                {
                    Ok(r) if r.status == 200 => *acked.entry(k).or_default() += 1,
                    Ok(r) => panic!("unexpected status {} {}", r.status, r.body),
                    Err(_) => break, // the node is gone
                }
                if w == 0 {
                    let item =
                        json!({"productId": format!("p{carts_acked}"), "name": "x", "quantity": 1});
                    match cella_cli::client::send(
                        &url,
                        Method::POST,
                        "/v1/entities/cart/w0/add-item",
                        item.to_string().into_bytes(),
                        None,
                    )
                    .await
                    {
                        Ok(r) if r.status == 200 => carts_acked += 1,
                        _ => break,
                    }
                }
            }
            (acked, attempted, carts_acked)
        }));
    }
    // Let load build up, then kill -9 while requests are in flight.
    let probe = node.url.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let probe = probe.clone();
            async move {
                let r = cella_cli::client::send(&probe, Method::GET, "/v1/entities/counter/k0", Vec::new(), None).await;
                matches!(r, Ok(r) if serde_json::from_str::<serde_json::Value>(&r.body).map(|v| v["sequence"].as_u64().unwrap_or(0) >= 20).unwrap_or(false))
            }
        })
        .await,
        "load did not start"
    );
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut attempted: HashMap<u64, u64> = HashMap::new();
    let mut carts_acked = 0;
    for t in tasks {
        let (a, b, c) = t.await.unwrap();
        for (k, v) in a {
            *acked.entry(k).or_default() += v;
        }
        for (k, v) in b {
            *attempted.entry(k).or_default() += v;
        }
        carts_acked += c;
    }
    let total: u64 = acked.values().sum();
    assert!(total > 0, "no command was acknowledged before the kill");

    node.restart().unwrap();
    for k in 0..keys {
        let value = node
            .call("counter", &format!("k{k}"), "get", "")
            .await
            .json
            .as_u64()
            .unwrap();
        let (a, t) = (
            acked.get(&k).copied().unwrap_or(0),
            attempted.get(&k).copied().unwrap_or(0),
        );
        assert!(
            a <= value && value <= t,
            "k{k}: acknowledged {a}, attempted {t}, recovered {value}"
        );
    }
    let cart = node.call("cart", "w0", "get-cart", "").await;
    let items = cart.json["items"].as_array().unwrap().len() as u64;
    assert!(
        items >= carts_acked,
        "cart lost acknowledged items: {items} < {carts_acked}"
    );
}

/// With a cache of 2 entities and snapshots every 3 events, entities are evicted and
/// re-activated from snapshot + journal, and their state is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_entities_come_back_from_snapshot_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--cache-capacity", "2", "--snapshot-every", "3"],
    )
    .unwrap();
    assert_eq!(
        node.deploy("cart", &component("shopping-cart"))
            .await
            .status,
        201
    );
    assert_eq!(
        node.deploy("counter", &component("counter")).await.status,
        201
    );
    for round in 1..=7 {
        for c in 0..5 {
            let item = json!({"productId": "p", "name": "n", "quantity": 1}).to_string();
            let r = node.call("cart", &format!("c{c}"), "add-item", &item).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let r = node.call("counter", &format!("n{c}"), "add", "2").await;
            assert_eq!(r.json, json!(2 * round));
        }
    }
    for c in 0..5 {
        let cart = node.call("cart", &format!("c{c}"), "get-cart", "").await;
        assert_eq!(
            cart.json,
            json!({"items": [{"productId": "p", "name": "n", "quantity": 7}]})
        );
    }
    let metrics = node.request(Method::GET, "/metrics", "").await.body;
    let evictions: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cella_cache_evictions_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(evictions > 10, "expected evictions, metrics:\n{metrics}");
    // The journal keeps every event even though snapshots were taken.
    let journal = node
        .request(Method::GET, "/v1/entities/cart/c0/journal", "")
        .await;
    assert_eq!(journal.json["entries"].as_array().unwrap().len(), 7);
}
