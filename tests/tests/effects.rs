//! Effects on real `cella` processes: the transfer saga (`account` + `transfer`, calls with
//! reply routes and a timeout timer) survives a `kill -9` of a single node and of a cluster
//! leader with calls in flight — money is conserved, every transfer ends, a completed one
//! moved its amount exactly once, and no call is left pending; a timer due while its node was
//! down fires once at the restart; an `Idempotency-Key` recorded before a `kill -9` answers a
//! retry after it from disk, without running the command again.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cella_tests::{
    TestNode,
    cluster::{has_modules, leaders, start_cluster},
    component, post_with_headers, wait_until,
};
use hyper::Method;
use serde_json::{Value, json};

const ACCOUNTS: usize = 20;
const FUNDS: u64 = 1_000;
const TRANSFERS: usize = 60;
const CLIENTS: usize = 4;

/// One planned transfer: `amount` from `acc{from}` to `acc{to}`.
#[derive(Clone, Debug)]
struct Plan {
    id: String,
    from: usize,
    to: usize,
    amount: u64,
    timeout_ms: Option<u64>,
}

impl Plan {
    fn start_body(&self) -> String {
        let mut body = json!({"from": format!("acc{}", self.from), "to": format!("acc{}", self.to), "amount": self.amount});
        if let Some(ms) = self.timeout_ms {
            body["timeoutMs"] = json!(ms);
        }
        body.to_string()
    }
}

/// `TRANSFERS` transfers between random distinct accounts, a third of them above the initial
/// balance (their debit is rejected unless the account received enough before). Every fourth
/// credits one of the last two accounts, which are never debited, with a 1 ms timeout: its
/// timer races the credit, so some are refunded and their late credit reversed (which cannot
/// fail for want of funds there).
fn plan(seed: u64) -> Vec<Plan> {
    let mut x = seed;
    let mut next = move |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) % n as u64) as usize
    };
    let payers = ACCOUNTS - 2;
    (0..TRANSFERS)
        .map(|i| {
            let from = next(payers);
            let (to, timeout_ms) = if i % 4 == 0 {
                (payers + next(2), Some(1))
            } else {
                ((from + 1 + next(payers - 1)) % payers, None)
            };
            Plan {
                id: format!("t{i}"),
                from,
                to,
                amount: 1 + next(FUNDS as usize * 3 / 2) as u64,
                timeout_ms,
            }
        })
        .collect()
}

/// Deploys `types` (type, component) through `node`.
async fn deploy(node: &TestNode, types: &[(&str, &str)]) {
    for (ty, name) in types {
        let r = node.deploy(ty, &component(name)).await;
        assert_eq!(r.status, 201, "deploying {name}: {}", r.body);
    }
}

/// Deposits `FUNDS` to every account.
async fn fund(node: &TestNode) {
    for a in 0..ACCOUNTS {
        let body = json!({ "amount": FUNDS }).to_string();
        let r = node
            .call("account", &format!("acc{a}"), "deposit", &body)
            .await;
        assert_eq!(r.status, 200, "funding acc{a}: {}", r.body);
    }
}

/// Starts every planned transfer from `CLIENTS` concurrent clients (client `c` begins at
/// `urls[c % len]` and moves to the next URL after a failure); counts acknowledged starts in
/// `acked`; returns the transfers whose start outcome is unknown (no answer, or not 200).
fn start_all(
    urls: &[String],
    plans: &[Plan],
    acked: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<Plan>>> {
    (0..CLIENTS)
        .map(|c| {
            let urls = urls.to_vec();
            let mine: Vec<Plan> = plans.iter().skip(c).step_by(CLIENTS).cloned().collect();
            let acked = acked.clone();
            tokio::spawn(async move {
                let (mut at, mut unknown) = (c, Vec::new());
                for p in mine {
                    let path = format!("/v1/entities/transfer/{}/start", p.id);
                    let body = p.start_body().into_bytes();
                    let url = &urls[at % urls.len()];
                    let sent = cella_cli::client::send(url, Method::POST, &path, body, None);
                    match tokio::time::timeout(Duration::from_secs(15), sent).await {
                        Ok(Ok(r)) if r.status == 200 => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            unknown.push(p);
                            at += 1;
                        }
                    }
                }
                unknown
            })
        })
        .collect()
}

/// Makes sure a transfer whose start had no answer is started: a new start succeeds, or is
/// rejected because the first one ran.
async fn ensure_started(node: &TestNode, p: &Plan) {
    let started = wait_until(Duration::from_secs(20), || async {
        let r = node.call("transfer", &p.id, "start", &p.start_body()).await;
        r.status == 200 || (r.status == 400 && r.body.contains("is already"))
    })
    .await;
    assert!(started, "{} could not be started again", p.id);
}

/// The transfer `id` as `GET /v1/entities/transfer/{id}` shows it, if it is settled: a final
/// status, no call pending, no timer left, no late credit being reversed.
async fn settled(node: &TestNode, id: &str) -> Option<Value> {
    let r = node
        .request(Method::GET, &format!("/v1/entities/transfer/{id}"), "")
        .await;
    let state = &r.json["state"];
    let final_status = matches!(
        state["status"].as_str(),
        Some("completed" | "failed" | "refunded")
    );
    let quiet = r.json["effects"].as_array().is_some_and(Vec::is_empty)
        && r.json["timers"].as_array().is_some_and(Vec::is_empty)
        && state["lateCredit"] != json!("reversing");
    (r.status == 200 && final_status && quiet).then(|| r.json.clone())
}

/// Waits until every transfer is settled (seen through `node`); returns them by id.
async fn wait_settled(node: &TestNode, plans: &[Plan]) -> BTreeMap<String, Value> {
    let done: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let started = Instant::now();
    let all = wait_until(Duration::from_secs(60), || {
        let done = done.clone();
        async move {
            for p in plans {
                if done.lock().unwrap().contains_key(&p.id) {
                    continue;
                }
                match settled(node, &p.id).await {
                    Some(v) => done.lock().unwrap().insert(p.id.clone(), v),
                    None => return false,
                };
            }
            true
        }
    })
    .await;
    if !all {
        let mut open = Vec::new();
        for p in plans
            .iter()
            .filter(|p| !done.lock().unwrap().contains_key(&p.id))
        {
            let r = node
                .request(Method::GET, &format!("/v1/entities/transfer/{}", p.id), "")
                .await;
            open.push(format!(
                "{} ({} -> {}, {}): {} {}",
                p.id, p.from, p.to, p.amount, r.status, r.body
            ));
        }
        panic!(
            "{} transfers did not settle within 60 s:\n{}",
            open.len(),
            open.join("\n")
        );
    }
    eprintln!("all transfers settled ({:?} of polling)", started.elapsed());
    done.lock().unwrap().clone()
}

/// The checks after the saga: every settled transfer is consistent with its plan, the money
/// is conserved, and every account's balance is exactly what the completed transfers imply.
async fn check_balances(node: &TestNode, plans: &[Plan], settled: &BTreeMap<String, Value>) {
    let mut expected = vec![FUNDS as i64; ACCOUNTS];
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in plans {
        let t = &settled[&p.id];
        let s = &t["state"];
        let (from, to) = (format!("acc{}", p.from), format!("acc{}", p.to));
        assert_eq!(
            (s["from"].as_str(), s["to"].as_str(), s["amount"].as_u64()),
            (Some(from.as_str()), Some(to.as_str()), Some(p.amount)),
            "{}: {t}",
            p.id
        );
        let status = s["status"].as_str().unwrap_or_default().to_string();
        match status.as_str() {
            "completed" => {
                assert!(s["lateCredit"].is_null(), "{}: {t}", p.id);
                expected[p.from] -= p.amount as i64;
                expected[p.to] += p.amount as i64;
            }
            "failed" => assert!(
                s["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("insufficient funds")),
                "{}: a debit fails only for want of funds: {t}",
                p.id
            ),
            _ => assert!(
                s["lateCredit"].is_null() || s["lateCredit"] == json!("reversed"),
                "{}: a refunded transfer keeps no credit: {t}",
                p.id
            ),
        }
        let late = s["lateCredit"]
            .as_str()
            .map_or(String::new(), |l| format!(" ({l})"));
        *counts.entry(status + &late).or_default() += 1;
    }
    eprintln!("transfer outcomes: {counts:?}");
    assert!(
        counts.get("completed").copied().unwrap_or(0) > 0,
        "no transfer completed: {counts:?}"
    );
    let mut balances = Vec::new();
    for a in 0..ACCOUNTS {
        let r = node.call("account", &format!("acc{a}"), "get", "").await;
        assert_eq!(r.status, 200, "acc{a}: {}", r.body);
        balances.push(r.json["balance"].as_i64().expect("a balance"));
    }
    assert_eq!(
        balances.iter().sum::<i64>(),
        (FUNDS * ACCOUNTS as u64) as i64,
        "the money is not conserved: {balances:?}"
    );
    assert_eq!(
        balances, expected,
        "balances differ from what the completed transfers imply"
    );
}

/// Single node: 60 transfers started as fast as 4 clients can; `kill -9` right after the last
/// start is acknowledged (its calls still in flight); after a restart in place every transfer
/// settles, the money is conserved and moved exactly once per completed transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_saga_survives_kill9_with_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    deploy(&node, &[("account", "account"), ("transfer", "transfer")]).await;
    fund(&node).await;
    let plans = plan(7);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut unknown = Vec::new();
    for client in start_all(std::slice::from_ref(&node.url), &plans, &acked) {
        unknown.extend(client.await.unwrap());
    }
    assert!(unknown.is_empty(), "starts not acknowledged: {unknown:?}");
    assert_eq!(acked.load(Ordering::SeqCst), TRANSFERS);
    node.kill9();
    node.restart_in_place().expect("restart the node");
    let settled = wait_settled(&node, &plans).await;
    check_balances(&node, &plans, &settled).await;
    // The restarted process carried out calls: they were in flight at the kill.
    let (delivered, duplicates) = (
        metric(&node, "cella_effects_delivered_total").await,
        metric(&node, "cella_duplicates_total").await,
    );
    eprintln!("after the restart: {delivered} calls delivered, {duplicates} duplicates answered");
    assert!(delivered > 0, "no call was left in flight by the kill");
}

/// A counter of `node`'s `/metrics` (0 when absent).
async fn metric(node: &TestNode, name: &str) -> u64 {
    node.metric(name).await.unwrap_or(0)
}

/// `process` of the TCK value model with one `schedule` of `name` appending `mark`.
fn schedule(name: &str, delay_ms: u64, mark: &str) -> String {
    json!({"actions": [{"schedule": {
        "name": name, "delayMs": delay_ms, "command": "process",
        "payload": {"actions": [{"append": mark}]}
    }}]})
    .to_string()
}

/// The value of the TCK value model `key`.
async fn value(node: &TestNode, key: &str) -> String {
    let r = node.call("tck-value", key, "get", "").await;
    r.json["value"].as_str().unwrap_or("<none>").to_string()
}

/// Waits until the value of `key` contains `mark`; asserts it is then exactly `expected`.
async fn expect_value(node: &TestNode, key: &str, mark: &str, expected: &str) {
    let arrived = wait_until(Duration::from_secs(20), || async {
        value(node, key).await.contains(mark)
    })
    .await;
    let got = value(node, key).await;
    assert!(
        arrived,
        "{key}: {mark:?} did not arrive; the value is {got:?}"
    );
    assert_eq!(got, expected, "{key}: each timer fires once");
}

/// A timer scheduled right before a `kill -9` and due while the node is down fires once when
/// it comes back; a later barrier timer shows it did not fire twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_due_while_down_fires_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    deploy(&node, &[("tck-value", "tck-value")]).await;
    let r = node
        .call("tck-value", "k", "process", &schedule("t", 1_500, "x"))
        .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!({"value": ""})),
        "{}",
        r.body
    );
    let due = tokio::time::Instant::now() + Duration::from_millis(1_700);
    node.kill9();
    // Not an assertion: the node stays down until the timer is past due.
    tokio::time::sleep_until(due).await;
    node.restart_in_place().expect("restart the node");
    expect_value(&node, "k", "x", "x").await;
    let r = node
        .call("tck-value", "k", "process", &schedule("b", 300, "b"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    expect_value(&node, "k", "b", "xb").await;
    let r = node
        .request(Method::GET, "/v1/entities/tck-value/k", "")
        .await;
    assert_eq!(r.json["timers"], json!([]), "{}", r.body);
}

/// Three nodes: the transfer workload through every node, and one-shot timers on entities of
/// the partitions of the node leading the most partitions, which is killed mid-workload. The
/// survivors (a quorum) finish every transfer and fire every timer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_saga_and_timers_survive_a_leader_kill() {
    const PARTITIONS: u32 = 4;
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, PARTITIONS, &[]).await;
    let types = [
        ("account", "account"),
        ("tck-value", "tck-value"),
        ("transfer", "transfer"),
    ];
    deploy(&nodes[0], &types).await;
    for node in &nodes {
        let everywhere = wait_until(Duration::from_secs(30), || async {
            has_modules(node, &["account", "tck-value", "transfer"]).await
        })
        .await;
        assert!(everywhere, "modules missing on {}", node.url);
    }
    fund(&nodes[1]).await;
    // The victim: the node leading the most partitions.
    let led = leaders(&nodes[0]).await;
    let victim = (1..=3u64)
        .max_by_key(|n| led.values().filter(|l| *l == n).count())
        .unwrap();
    let victim_partitions: Vec<u64> = led
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(g, _)| *g)
        .collect();
    eprintln!("killing node {victim}, leader of partitions {victim_partitions:?}");
    let placement = cella_cluster::Placement {
        partitions: PARTITIONS,
        ..Default::default()
    };
    let timer_keys: Vec<String> = (0..1000)
        .map(|k| format!("timer{k}"))
        .filter(|k| {
            let id = cella_core::EntityId::new("tck-value", k);
            victim_partitions.contains(&placement.partition(&id))
        })
        .take(4)
        .collect();
    assert_eq!(timer_keys.len(), 4);
    let v = victim as usize - 1;
    let live = (v + 1) % 3;

    let plans = plan(11);
    let acked = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let clients = start_all(&urls, &plans, &acked);
    let midway = wait_until(Duration::from_secs(30), || async {
        acked.load(Ordering::SeqCst) >= TRANSFERS / 2
    })
    .await;
    assert!(midway, "the workload did not get going");
    for key in &timer_keys {
        let r = nodes[live]
            .call("tck-value", key, "process", &schedule("t", 800, "x"))
            .await;
        assert_eq!(r.status, 200, "{key}: {}", r.body);
    }
    nodes[v].kill9();
    let killed_at = Instant::now();
    let mut unknown = Vec::new();
    for client in clients {
        unknown.extend(client.await.unwrap());
    }
    eprintln!(
        "{} starts acknowledged, {} unknown; the last {:?} after the kill",
        acked.load(Ordering::SeqCst),
        unknown.len(),
        killed_at.elapsed()
    );
    for p in &unknown {
        ensure_started(&nodes[live], p).await;
    }
    let settled = wait_settled(&nodes[live], &plans).await;
    check_balances(&nodes[live], &plans, &settled).await;
    for key in &timer_keys {
        expect_value(&nodes[live], key, "x", "x").await;
        let r = nodes[live]
            .call("tck-value", key, "process", &schedule("b", 300, "b"))
            .await;
        assert_eq!(r.status, 200, "{key}: {}", r.body);
    }
    for key in &timer_keys {
        expect_value(&nodes[live], key, "b", "xb").await;
    }
}

/// The same `POST` with the same `Idempotency-Key` before and after a `kill -9`: the retry is
/// answered from the record on disk with the first reply, and the counter added once; another
/// key runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_is_remembered_across_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    deploy(&node, &[("counter", "counter")]).await;
    let path = "/v1/entities/counter/idem/add";
    let key = [("Idempotency-Key", "add-5-once")];
    let first = post_with_headers(&node.addr(), path, "5", &key).await;
    assert_eq!(first.0, 200, "the first add: {}", first.1);
    assert_eq!(first.1.trim(), "5", "the first add");
    node.kill9();
    node.restart_in_place().expect("restart the node");
    // A change in between: a retry that ran again would reply 11, not the recorded 5.
    assert_eq!(
        node.call("counter", "idem", "add", "1").await.json,
        json!(6)
    );
    let again = post_with_headers(&node.addr(), path, "5", &key).await;
    assert_eq!(again, first, "a retry with the same Idempotency-Key");
    assert_eq!(node.call("counter", "idem", "get", "").await.json, json!(6));
    let other = post_with_headers(&node.addr(), path, "5", &[("Idempotency-Key", "other")]).await;
    assert_eq!(
        (other.0, other.1.trim()),
        (200, "11"),
        "another Idempotency-Key"
    );
    assert_eq!(
        node.call("counter", "idem", "get", "").await.json,
        json!(11)
    );
}

/// Calls from one entity to another are carried out in the order they were made: within a
/// command (several calls) and across commands sent concurrently (their appends commit
/// together, and their effects still reach the target in the order the source ran them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_from_one_entity_to_another_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(TestNode::start(dir.path(), &[]).unwrap());
    deploy(&node, &[("tck-value", "tck-value")]).await;
    const COMMANDS: usize = 40;
    const CALLS: usize = 3;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..COMMANDS {
        // The source records the order it ran its commands in; each command makes CALLS calls.
        let mut actions = vec![json!({"append": format!("{c},")})];
        actions.extend((0..CALLS).map(|i| {
            json!({"call": {"type": "tck-value", "key": "target", "command": "process",
                "payload": {"actions": [{"append": format!("{c}.{i};")}]}}})
        }));
        let body = json!({"actions": actions}).to_string();
        let node = node.clone();
        clients.spawn(async move { node.call("tck-value", "source", "process", &body).await });
    }
    while let Some(r) = clients.join_next().await {
        let r = r.expect("client task");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let ran: Vec<String> = value(&node, "source")
        .await
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(ran.len(), COMMANDS, "{ran:?}");
    let expected: String = ran
        .iter()
        .flat_map(|c| (0..CALLS).map(move |i| format!("{c}.{i};")))
        .collect();
    let done = wait_until(Duration::from_secs(30), || async {
        value(&node, "target").await.len() >= expected.len()
    })
    .await;
    let got = value(&node, "target").await;
    assert!(done, "not every call arrived: {got:?}");
    assert_eq!(
        got, expected,
        "the calls arrived out of the order they were made"
    );
}
