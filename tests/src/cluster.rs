//! Cluster test helpers: start a cluster of `cella` processes, read its status, drive a
//! concurrent counter load that records every operation as the client saw it, and check the
//! recorded per-key histories for linearizability.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::Method;
use serde_json::Value;

use crate::{TestNode, free_ports, wait_until};

/// The cluster secret of the test clusters (`--cluster-secret`).
pub const CLUSTER_SECRET: &str = "cella-test-cluster-secret-0123456789";

/// Starts nodes 1..=n with their data under `root/n{id}`, as one cluster of `partitions`
/// partitions (`extra` goes to every node's command line), and waits until every group has a
/// leader.
pub async fn start_cluster(
    root: &Path,
    n: usize,
    partitions: u32,
    extra: &[&str],
) -> Vec<TestNode> {
    start_cluster_with_peers(
        root,
        n,
        partitions,
        &["--cluster-secret", CLUSTER_SECRET],
        extra,
    )
    .await
}

/// [`start_cluster`] with `peers` (how the nodes authenticate each other, e.g.
/// `--insecure-peers`) instead of the test cluster secret.
pub async fn start_cluster_with_peers(
    root: &Path,
    n: usize,
    partitions: u32,
    peers: &[&str],
    extra: &[&str],
) -> Vec<TestNode> {
    let ports = free_ports(n);
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let count = partitions.to_string();
    let nodes: Vec<TestNode> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = (i + 1).to_string();
            let mut args = vec![
                "--node-id",
                &id,
                "--initial-cluster",
                &initial,
                "--partitions",
                &count,
            ];
            args.extend_from_slice(peers);
            args.extend_from_slice(extra);
            TestNode::start_at(
                &root.join(format!("n{id}")),
                &format!("127.0.0.1:{port}"),
                &args,
            )
            .expect("start a cluster node")
        })
        .collect();
    if !wait_until(Duration::from_secs(30), || {
        all_groups_led(&nodes, partitions)
    })
    .await
    {
        let mut views = Vec::new();
        for node in &nodes {
            views.push(cluster_status(node).await.to_string());
        }
        panic!("the cluster did not elect leaders:\n{}", views.join("\n"));
    }
    nodes
}

/// Snapshots `node` installed from leaders, over all its groups.
pub async fn snapshots_installed(node: &TestNode) -> u64 {
    groups(&cluster_status(node).await)
        .values()
        .filter_map(|g| g["snapshotsInstalled"].as_u64())
        .sum()
}

/// `GET /v1/cluster` of `node`.
pub async fn cluster_status(node: &TestNode) -> Value {
    node.request(Method::GET, "/v1/cluster", "").await.json
}

/// The audit records of `action` among the last 100 on `node`, and the whole answer's body
/// (for failure messages).
pub async fn audit_records(node: &TestNode, action: &str) -> (Vec<Value>, String) {
    let audit = node.request(Method::GET, "/v1/audit?limit=100", "").await;
    let records = audit.json["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect();
    (records, audit.body)
}

/// The groups of a status, by group id.
pub fn groups(status: &Value) -> BTreeMap<u64, Value> {
    status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| Some((g["group"].as_u64()?, g.clone())))
        .collect()
}

/// Every one of the `partitions + 1` groups seen from `node` has a leader among `alive`.
pub async fn all_led(node: &TestNode, partitions: u32, alive: &[u64]) -> bool {
    let groups = groups(&cluster_status(node).await);
    groups.len() == partitions as usize + 1
        && groups
            .values()
            .all(|g| g["leader"].as_u64().is_some_and(|l| alive.contains(&l)))
}

/// Every one of the `partitions + 1` groups is led, as some node of `nodes` reports it (a node
/// reports only the groups it holds a replica of).
pub async fn all_groups_led(nodes: &[TestNode], partitions: u32) -> bool {
    let mut led = std::collections::BTreeSet::new();
    for node in nodes {
        for (g, v) in groups(&cluster_status(node).await) {
            if v["leader"].is_u64() {
                led.insert(g);
            }
        }
    }
    led.len() == partitions as usize + 1
}

/// Partition leaders (not the metadata group), by group id.
pub async fn leaders(node: &TestNode) -> BTreeMap<u64, u64> {
    groups(&cluster_status(node).await)
        .into_iter()
        .filter(|(g, _)| *g != 0)
        .filter_map(|(g, v)| Some((g, v["leader"].as_u64()?)))
        .collect()
}

/// `node` lists exactly `types`, each with its active version loaded there (a module not yet
/// loaded on a node lists `subscriptions: null`, as its descriptor is not known there yet).
pub async fn has_modules(node: &TestNode, types: &[&str]) -> bool {
    let body = node.request(Method::GET, "/v1/modules", "").await.json;
    let Some(modules) = body["modules"].as_array() else {
        return false;
    };
    let listed: Vec<&str> = modules.iter().filter_map(|m| m["type"].as_str()).collect();
    listed == types && modules.iter().all(|m| m["subscriptions"].is_array())
}

/// Deploys the counter through the first of `nodes` and waits until every one has it loaded.
pub async fn deploy_counter(nodes: &[TestNode]) {
    let r = nodes[0]
        .deploy("counter", &crate::component("counter"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for node in nodes {
        let loaded = wait_until(Duration::from_secs(30), || async {
            has_modules(node, &["counter"]).await
        })
        .await;
        assert!(loaded, "the counter is not loaded on {}", node.url);
    }
}

/// One `add 1` as the client saw it.
#[derive(Clone, Debug)]
pub struct Op {
    pub invoked: Instant,
    pub completed: Instant,
    /// The total the add replied; `None` when its outcome is unknown (error or no answer).
    pub total: Option<i64>,
}

/// Per-key histories of `add 1` operations.
pub type History = BTreeMap<String, Vec<Op>>;

/// Concurrent clients sending `add 1` to counters `{prefix}0..{keys}` through `urls` (client
/// `c` uses `urls[c % len]`), recording every operation.
pub struct Load {
    history: Arc<Mutex<History>>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(urls: &[String], clients: usize, prefix: &str, keys: usize) -> Load {
        let keys: Vec<String> = (0..keys).map(|k| format!("{prefix}{k}")).collect();
        Load::start_keys(urls, clients, keys)
    }

    /// [`Load::start`] over the counters named `keys`.
    pub fn start_keys(urls: &[String], clients: usize, keys: Vec<String>) -> Load {
        let keys = Arc::new(keys);
        let history: Arc<Mutex<History>> = Arc::default();
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let (history, acked, stop) = (history.clone(), acked.clone(), stop.clone());
                let url = urls[c % urls.len()].clone();
                let keys = keys.clone();
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let key = keys[(c * 7 + n) % keys.len()].clone();
                        n += 1;
                        let invoked = Instant::now();
                        let reply = tokio::time::timeout(
                            Duration::from_secs(15),
                            cella_cli::client::send(
                                &url,
                                Method::POST,
                                &format!("/v1/entities/counter/{key}/add"),
                                b"1".to_vec(),
                                None,
                            ),
                        )
                        .await;
                        let total = match &reply {
                            Ok(Ok(r)) if r.status == 200 => r.body.trim().parse::<i64>().ok(),
                            _ => None,
                        };
                        if total.is_none() {
                            // Shown with the test's output when it fails.
                            let why = match reply {
                                Ok(Ok(r)) => format!("{} {}", r.status, r.body.trim()),
                                Ok(Err(e)) => format!("{e:#}"),
                                Err(_) => "no answer in 15 s".to_string(),
                            };
                            eprintln!("load: add to {key} via {url} failed: {why}");
                        }
                        if total.is_some() {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        let op = Op {
                            invoked,
                            completed: Instant::now(),
                            total,
                        };
                        history
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(key)
                            .or_default()
                            .push(op);
                    }
                })
            })
            .collect();
        Load {
            history,
            acked,
            stop,
            clients: tasks,
        }
    }

    /// Acknowledged adds so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` adds beyond those acknowledged now are acknowledged.
    pub async fn wait_for_more(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acked() + more;
        wait_until(timeout, || async { self.acked() >= target }).await
    }

    /// Stops the clients and checks every key's history through `node` ([`check_history`]);
    /// returns the acknowledged adds and the adds that failed (outcome unknown).
    pub async fn finish(self, node: &TestNode) -> (usize, usize) {
        let history = self.stop().await;
        let acked = check_history(node, &history).await;
        let failed = history
            .values()
            .flatten()
            .filter(|o| o.total.is_none())
            .count();
        (acked, failed)
    }

    /// Stops the clients and returns the histories.
    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("a load client panicked");
        }
        let history = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        history.clone()
    }
}

/// Checks every key of `history` against its final total (read through `node`): nothing
/// acknowledged is lost and each history is linearizable. Returns the acknowledged adds.
pub async fn check_history(node: &TestNode, history: &History) -> usize {
    let mut acked_total = 0;
    for (key, ops) in history {
        let r = node.call("counter", key, "get", "").await;
        assert_eq!(r.status, 200, "{key}: {}", r.body);
        let final_total = r.json.as_i64().expect("a total");
        check_linearizable(key, ops, final_total);
        acked_total += ops.iter().filter(|o| o.total.is_some()).count();
    }
    acked_total
}

/// Checks a counter key's history of `add 1` operations for linearizability: acknowledged
/// totals are distinct, and an add that completed before another began has a smaller total.
/// Operations with unknown outcome may or may not have taken effect, so they only bound the
/// final value.
pub fn check_linearizable(key: &str, ops: &[Op], final_total: i64) {
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
