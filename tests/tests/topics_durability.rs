//! Topics on real `cella` processes, under `kill -9`: a stream of messages published to
//! `tck-news` by concurrent clients (each with an `Idempotency-Key`, retried on failure) and by
//! entities (`process` with a `publish` action, itself retried with an `Idempotency-Key`), while
//! the node — or, in a cluster, the leader of the topic's partition — is killed mid-stream.
//! Afterwards the topic holds exactly one message per publication; every subscriber entity
//! (`tck-value` by the `/to` pointer, `tck-events` as `all`) received each message addressed to it
//! exactly once, in topic order; and a Server-Sent Events follower that resumed with
//! `Last-Event-ID` across the kill (in a cluster: at another node) received every offset exactly
//! once, contiguously.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cella_tests::{
    TestNode,
    cluster::{has_modules, leaders, start_cluster},
    component,
    topics::{Follower, request_with_headers},
    wait_until,
};
use hyper::Method;
use serde_json::{Value, json};

const TOPIC: &str = "tck-news";
/// Subscriber keys of `tck-value`: `k0` to `k19`.
const KEYS: usize = 20;
/// Publications in the stream (the end marker comes after them).
const MESSAGES: usize = 300;
/// Concurrent publishing clients.
const CLIENTS: usize = 4;
/// Every this many messages, one is published by an entity instead of by a client.
const FROM_ENTITY_EVERY: usize = 10;
/// A pause between one client's publications, so the stream lasts long enough to be cut.
const PACE: Duration = Duration::from_millis(15);

/// One planned publication: `text` addressed to the `tck-value` keys `to`.
#[derive(Clone, Debug)]
struct Msg {
    i: usize,
    to: Vec<String>,
    text: String,
    /// Published by `tck-value` entity `pub<i>` (`process`), not by the client.
    from_entity: bool,
}

impl Msg {
    fn payload(&self) -> Value {
        json!({"to": self.to, "text": self.text})
    }

    /// The request that publishes it, and its `Idempotency-Key`.
    fn request(&self) -> (String, String, String) {
        if self.from_entity {
            let body = json!({"actions": [
                {"append": "p"},
                {"publish": {"topic": TOPIC, "payload": self.payload()}},
            ]});
            (
                format!("/v1/entities/tck-value/pub{}/process", self.i),
                body.to_string(),
                format!("proc-{}", self.i),
            )
        } else {
            (
                format!("/v1/topics/{TOPIC}"),
                self.payload().to_string(),
                format!("pub-{}", self.i),
            )
        }
    }
}

/// The stream: each message to one, two or three distinct keys (pseudo-random from `seed`).
fn messages(seed: u64) -> Vec<Msg> {
    let mut x = seed;
    let mut next = move |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) % n as u64) as usize
    };
    (0..MESSAGES)
        .map(|i| {
            let mut to: Vec<String> = Vec::new();
            for _ in 0..1 + next(3) {
                let key = format!("k{}", next(KEYS));
                if !to.contains(&key) {
                    to.push(key);
                }
            }
            Msg {
                i,
                to,
                text: format!("m{i}"),
                from_entity: i % FROM_ENTITY_EVERY == FROM_ENTITY_EVERY - 1,
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

/// Publishes `m` through `addrs` (starting at `addrs[*at]`, moving on after each failure) until
/// it is acknowledged, within 60 s; returns the offset a client publication was answered with.
/// Failures are retried with the same `Idempotency-Key`, so the message lands once.
async fn publish(addrs: &[String], at: &mut usize, m: &Msg, retries: &AtomicUsize) -> Option<u64> {
    let (path, body, key) = m.request();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let addr = &addrs[*at % addrs.len()];
        let r =
            request_with_headers(addr, "POST", &path, &body, &[("Idempotency-Key", &key)]).await;
        let why = match r {
            Ok((200, reply)) => {
                let reply: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
                if m.from_entity {
                    return None;
                }
                assert_eq!(reply["topic"], json!(TOPIC), "{}: {reply}", m.text);
                return Some(reply["offset"].as_u64().expect("an offset"));
            }
            Ok((status @ (400 | 401 | 404 | 413 | 501), reply)) => {
                panic!("{} on {addr}: {status} {reply}", m.text)
            }
            Ok((status, reply)) => format!("{status} {reply}"),
            Err(e) => format!("{e:#}"),
        };
        retries.fetch_add(1, Ordering::SeqCst);
        assert!(
            Instant::now() < deadline,
            "{} was not acknowledged within 60 s; last: {why}",
            m.text
        );
        *at += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The clients publishing the stream.
struct Publishers {
    acked: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<BTreeMap<String, u64>>>,
}

impl Publishers {
    /// `CLIENTS` clients, client `c` publishing messages `c`, `c + CLIENTS`, … in order, starting
    /// at `addrs[c % len]`.
    fn start(addrs: &[String], msgs: &[Msg]) -> Publishers {
        let acked = Arc::new(AtomicUsize::new(0));
        let retries = Arc::new(AtomicUsize::new(0));
        let clients = (0..CLIENTS)
            .map(|c| {
                let addrs = addrs.to_vec();
                let mine: Vec<Msg> = msgs.iter().skip(c).step_by(CLIENTS).cloned().collect();
                let (acked, retries) = (acked.clone(), retries.clone());
                tokio::spawn(async move {
                    let mut at = c;
                    let mut offsets = BTreeMap::new();
                    for m in mine {
                        if let Some(offset) = publish(&addrs, &mut at, &m, &retries).await {
                            offsets.insert(m.text.clone(), offset);
                        }
                        acked.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(PACE).await;
                    }
                    offsets
                })
            })
            .collect();
        Publishers {
            acked,
            retries,
            clients,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits for every publication; returns the offsets the client publications were answered
    /// with, by text.
    async fn finish(self) -> BTreeMap<String, u64> {
        let mut offsets = BTreeMap::new();
        for client in self.clients {
            offsets.extend(client.await.expect("a publisher panicked"));
        }
        eprintln!(
            "{} publications acknowledged after {} retries",
            self.acked.load(Ordering::SeqCst),
            self.retries.load(Ordering::SeqCst)
        );
        offsets
    }
}

/// The value of entity `ty`/`key` (`GET /v1/entities/{ty}/{key}` → `.state.value`).
async fn value(node: &TestNode, ty: &str, key: &str) -> String {
    let r = node
        .request(Method::GET, &format!("/v1/entities/{ty}/{key}"), "")
        .await;
    r.json["state"]["value"].as_str().unwrap_or("").to_string()
}

/// The `(offset, text)` marks of a subscriber's value (`tck-news@O:S;` each).
fn marks(value: &str) -> Vec<(u64, String)> {
    value
        .split_terminator(';')
        .map(|mark| {
            let rest = mark
                .strip_prefix(&format!("{TOPIC}@"))
                .unwrap_or_else(|| panic!("not a mark of {TOPIC}: {mark:?} in {value:?}"));
            let (offset, text) = rest.split_once(':').expect("offset:text");
            (offset.parse().expect("an offset"), text.to_string())
        })
        .collect()
}

/// What is wrong with a list of event ids that should be exactly `1..=end`.
fn id_problems(ids: &[u64], end: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (at, pair) in ids.windows(2).enumerate() {
        if pair[1] != pair[0] + 1 {
            problems.push(format!("at {}: {} then {}", at + 1, pair[0], pair[1]));
        }
    }
    for id in ids {
        *seen.entry(*id).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=end).filter(|o| !seen.contains_key(o)).collect();
    if !missing.is_empty() {
        problems.push(format!("missing: {missing:?}"));
    }
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| *o)
        .collect();
    if !twice.is_empty() {
        problems.push(format!("more than once: {twice:?}"));
    }
    if ids.first() != Some(&1) {
        problems.push(format!("starts at {:?}", ids.first()));
    }
    problems.truncate(20);
    problems
}

/// The sum of `node`'s `cella_topic_deliveries_total` series with `outcome`.
async fn deliveries(node: &TestNode, outcome: &str) -> u64 {
    let text = node.request(Method::GET, "/metrics", "").await.body;
    let label = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| l.starts_with("cella_topic_deliveries_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The checks after the stream, through `node` (publishing the end marker through `addrs`):
/// the topic's length, the follower's events, every subscriber's value, the publishing entities.
async fn check(
    node: &TestNode,
    addrs: &[String],
    msgs: &[Msg],
    offsets: &BTreeMap<String, u64>,
    follower: Follower,
) -> Vec<String> {
    // The end marker's offset is the topic's length: one message per publication.
    let end_marker = Msg {
        i: MESSAGES,
        to: Vec::new(),
        text: "end".into(),
        from_entity: false,
    };
    let end = publish(addrs, &mut 0, &end_marker, &AtomicUsize::new(0))
        .await
        .expect("the end marker's offset");
    assert_eq!(
        end,
        MESSAGES as u64 + 1,
        "the topic holds {} messages before the end marker, for {MESSAGES} publications",
        end - 1
    );
    // The follower received every offset once, in order.
    let caught_up = wait_until(Duration::from_secs(30), || async {
        follower.last_id() >= Some(end)
    })
    .await;
    let connections = follower.connections();
    let served_by = follower.served_by();
    let events = follower.stop().await;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(
        caught_up,
        "the follower got {} events, the last {:?}, of {end}",
        ids.len(),
        ids.last()
    );
    let problems = id_problems(&ids, end);
    assert!(
        problems.is_empty(),
        "the follower's ids ({} events, {connections} streams): {problems:?}",
        ids.len()
    );
    // The topic's content: every text once; client publications at the offset they were told.
    let mut by_offset: BTreeMap<u64, (Vec<String>, String)> = BTreeMap::new();
    for e in &events {
        let v: Value = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("event {}: {err}: {}", e.id, e.data));
        let to = v["to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let text = v["text"].as_str().expect("a text").to_string();
        by_offset.insert(e.id, (to, text));
    }
    let mut texts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (offset, (_, text)) in &by_offset {
        texts.entry(text.as_str()).or_default().push(*offset);
    }
    for m in msgs.iter().chain([&end_marker]) {
        let at = texts.get(m.text.as_str()).cloned().unwrap_or_default();
        assert_eq!(at.len(), 1, "{} is at offsets {at:?}", m.text);
        assert_eq!(by_offset[&at[0]].0, m.to, "{} is addressed as sent", m.text);
        if let Some(told) = offsets.get(&m.text) {
            assert_eq!(
                *told, at[0],
                "{} was acknowledged with another offset",
                m.text
            );
        }
    }
    // Every subscriber's value: its messages, each once, in topic order.
    let mut expected: BTreeMap<(&str, String), String> = BTreeMap::new();
    for k in 0..KEYS {
        expected.insert(("tck-value", format!("k{k}")), String::new());
    }
    expected.insert(("tck-events", "all".into()), String::new());
    for (offset, (to, text)) in &by_offset {
        let mark = format!("{TOPIC}@{offset}:{text};");
        expected
            .get_mut(&("tck-events", "all".into()))
            .expect("all")
            .push_str(&mark);
        for k in to {
            expected
                .get_mut(&("tck-value", k.clone()))
                .expect("a key")
                .push_str(&mark);
        }
    }
    let started = Instant::now();
    let all_delivered = wait_until(Duration::from_secs(60), || async {
        for ((ty, key), want) in &expected {
            if value(node, ty, key).await != *want {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!(
        "subscribers complete after {:?} of polling",
        started.elapsed()
    );
    for ((ty, key), want) in &expected {
        let got = value(node, ty, key).await;
        let got_marks = marks(&got);
        assert!(
            got_marks.windows(2).all(|p| p[0].0 < p[1].0),
            "{ty}/{key}: offsets not strictly increasing: {got}"
        );
        assert!(
            all_delivered && got == *want,
            "{ty}/{key} received {:?}, expected {:?}",
            got_marks,
            marks(want)
        );
    }
    // Each publishing entity ran its `process` once.
    for m in msgs.iter().filter(|m| m.from_entity) {
        let got = value(node, "tck-value", &format!("pub{}", m.i)).await;
        assert_eq!(got, "p", "pub{}: its process ran more than once", m.i);
    }
    served_by
}

/// Single node: 300 publications from 4 clients (a tenth of them through entities' `process`),
/// `kill -9` mid-stream and a restart in place; an SSE follower resumes with `Last-Event-ID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_topic_survives_kill9_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    deploy(
        &node,
        &[("tck-value", "tck-value"), ("tck-events", "tck-events")],
    )
    .await;
    let addrs = vec![node.addr()];
    let follower = Follower::start(addrs.clone(), TOPIC, 0);
    let msgs = messages(7);
    let publishers = Publishers::start(&addrs, &msgs);
    let midway = wait_until(Duration::from_secs(60), || async {
        publishers.acked() >= MESSAGES / 2 && follower.last_id().is_some()
    })
    .await;
    assert!(
        midway,
        "the stream did not get going: {} acknowledged, the follower at {:?}",
        publishers.acked(),
        follower.last_id()
    );
    let streamed = follower.last_id();
    node.kill9();
    eprintln!(
        "killed after {} acknowledged publications; the follower had {streamed:?}",
        publishers.acked()
    );
    node.restart_in_place().expect("restart the node");
    let offsets = publishers.finish().await;
    assert_eq!(offsets.len(), MESSAGES - MESSAGES / FROM_ENTITY_EVERY);
    let served_by = check(&node, &addrs, &msgs, &offsets, follower).await;
    assert!(
        served_by.len() >= 2,
        "the kill broke the follower's stream, and it resumed: {served_by:?}"
    );
    assert_eq!(deliveries(&node, "failed").await, 0, "failed deliveries");
    let text = node.request(Method::GET, "/metrics", "").await.body;
    let duplicates = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("cella_duplicates_total ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    eprintln!("after the restart: {duplicates} duplicates answered from their records");
    assert!(
        deliveries(&node, "ok").await > 0,
        "the restarted node delivered nothing: every delivery was done before the kill"
    );
}

/// Three nodes: the same stream published through the two nodes that do not lead the topic's
/// partition, while its leader is killed mid-stream; the SSE follower, first at the leader,
/// resumes at another node with its last id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_topic_survives_its_leader_kill() {
    const PARTITIONS: u32 = 4;
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, PARTITIONS, &[]).await;
    deploy(
        &nodes[0],
        &[("tck-value", "tck-value"), ("tck-events", "tck-events")],
    )
    .await;
    for node in &nodes {
        let everywhere = wait_until(Duration::from_secs(30), || async {
            has_modules(node, &["tck-events", "tck-value"]).await
        })
        .await;
        assert!(everywhere, "modules missing on {}", node.url);
    }
    let placement = cella_cluster::Placement {
        partitions: PARTITIONS,
        ..Default::default()
    };
    let group = placement.partition(&cella_core::EntityId::new("$topic", TOPIC));
    let leader = leaders(&nodes[0]).await[&group];
    let v = leader as usize - 1;
    let victim = nodes[v].addr();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != v)
        .map(|i| nodes[i].addr())
        .collect();
    eprintln!("node {leader} ({victim}) leads partition {group}, the topic's: it will be killed");
    let mut follow_at = vec![victim.clone()];
    follow_at.extend(survivors.iter().cloned());
    let follower = Follower::start(follow_at, TOPIC, 0);
    let msgs = messages(11);
    let publishers = Publishers::start(&survivors, &msgs);
    let midway = wait_until(Duration::from_secs(60), || async {
        publishers.acked() >= MESSAGES / 3 && follower.last_id().is_some()
    })
    .await;
    assert!(
        midway,
        "the stream did not get going: {} acknowledged, the follower at {:?}",
        publishers.acked(),
        follower.last_id()
    );
    let streamed = follower.last_id();
    nodes[v].kill9();
    let killed_at = Instant::now();
    eprintln!(
        "killed node {leader} after {} acknowledged publications; the follower had {streamed:?}",
        publishers.acked()
    );
    let offsets = publishers.finish().await;
    eprintln!(
        "the last publication {:?} after the kill",
        killed_at.elapsed()
    );
    let live = &nodes[(v + 1) % 3];
    let served_by = check(live, &survivors, &msgs, &offsets, follower).await;
    assert_eq!(
        served_by.first(),
        Some(&victim),
        "the follower began at the leader"
    );
    assert!(
        served_by.len() >= 2 && served_by.last() != Some(&victim),
        "the follower resumed at another node: {served_by:?}"
    );
    for i in (0..3).filter(|i| *i != v) {
        assert_eq!(
            deliveries(&nodes[i], "failed").await,
            0,
            "failed deliveries"
        );
    }
}
