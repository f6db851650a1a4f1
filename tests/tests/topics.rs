//! Topics at the HTTP edge and in the CLI, on real `cella` processes: publishing, following a
//! topic over Server-Sent Events (from an offset, resuming with `Last-Event-ID`, live, the
//! `gap` event after retention trimmed messages, the followers gauge), the topic listing with
//! its subscribers' cursors, the admin token, `cella topics`, `cella publish` and
//! `cella follow` (which resumes across a restart of its node), and in a cluster: the redirect
//! from a node without a replica of the topic and the listing merged over the nodes (one of
//! them down).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use cella_cli::client::{self, Event, EventStream, Opened};
use cella_core::EntityId;
use cella_tests::{
    TestNode,
    cluster::{leaders, start_cluster},
    component, output_text as text,
    topics::Chunked,
    wait_until,
};
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any one expected thing may take.
const WAIT: Duration = Duration::from_secs(20);

/// Publishes `message` to `topic`; its offset.
async fn publish(node: &TestNode, topic: &str, message: &str) -> u64 {
    let r = node
        .request(Method::POST, &format!("/v1/topics/{topic}"), message)
        .await;
    assert_eq!(r.status, 200, "publishing to {topic}: {}", r.body);
    assert_eq!(r.json["topic"], topic);
    r.json["offset"].as_u64().expect("an offset")
}

/// Opens the event stream of `topic` at `server` (`query` includes its `?`).
async fn open(server: &str, topic: &str, query: &str, last_event_id: Option<&str>) -> EventStream {
    let path = format!("/v1/topics/{topic}/events{query}");
    match client::follow_events(server, &path, last_event_id)
        .await
        .expect("the node answers")
    {
        Opened::Stream(stream) => stream,
        Opened::Answer(r) => panic!("GET {path}: {} {}", r.status, r.body),
    }
}

/// The next event of `stream`, within [`WAIT`].
async fn next(stream: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream holds")
        .expect("the stream is open")
}

/// The offset and the JSON of a message event.
fn message(event: &Event) -> (u64, Value) {
    assert_eq!(event.event, "message", "{event:?}");
    let id = event.id.as_deref().and_then(|id| id.parse().ok());
    let data = serde_json::from_str(&event.data).expect("JSON data");
    (id.expect("an offset id"), data)
}

/// The `cella_topic_followers` gauge of `node`.
async fn followers(node: &TestNode) -> Option<i64> {
    let metrics = node.request(Method::GET, "/metrics", "").await.body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("cella_topic_followers "))
        .and_then(|v| v.trim().parse().ok())
}

/// A raw `GET path` to `addr` with extra header lines: the response head, and the body text
/// once it holds `events` blank-line-ended blocks.
async fn raw_get(addr: &str, path: &str, headers: &str, events: usize) -> (String, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (mut raw, mut buf) = (Vec::new(), [0u8; 4096]);
        let (head, mut chunked) = loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before a response head");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let mut chunked = Chunked::default();
                chunked.raw.extend_from_slice(&raw[end + 4..]);
                break (head, chunked);
            }
        };
        if !head.starts_with("HTTP/1.1 200") {
            return (head, String::new());
        }
        let mut body = Vec::new();
        loop {
            chunked.take(&mut body).unwrap();
            if String::from_utf8_lossy(&body).matches("\n\n").count() >= events {
                return (head, String::from_utf8_lossy(&body).into_owned());
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the stream ended early: {}",
                String::from_utf8_lossy(&body)
            );
            chunked.raw.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the answer in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_follow_resume_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    for n in 1..=3 {
        assert_eq!(
            publish(&node, "news", &format!("{{ \"n\": {n} }}")).await,
            n
        );
    }
    assert_eq!(publish(&node, "alpha", "\"first\"").await, 1);

    // From the start: the exact wire format, compact JSON, one event per message.
    let (head, body) = raw_get(&node.addr(), "/v1/topics/news/events?after=0", "", 3).await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("x-cella-after: 0"), "{head}");
    assert_eq!(
        body,
        "id: 1\ndata: {\"n\":1}\n\nid: 2\ndata: {\"n\":2}\n\nid: 3\ndata: {\"n\":3}\n\n"
    );

    // Resume with Last-Event-ID (it wins over ?after): the next offset, then live ones.
    let mut resumed = open(&node.url, "news", "?after=0", Some("2")).await;
    assert_eq!(message(&next(&mut resumed).await), (3, json!({"n": 3})));
    // With neither: only what is published from now on (once this node shows offset 3).
    let listed = wait_until(WAIT, || async {
        node.request(Method::GET, "/v1/topics/news", "").await.json["last"] == 3
    })
    .await;
    assert!(listed, "the node shows offset 3");
    let mut live = open(&node.url, "news", "", None).await;
    assert_eq!(
        live.headers
            .get("x-cella-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert!(
        wait_until(WAIT, || async { followers(&node).await == Some(2) }).await,
        "two followers are counted"
    );
    assert_eq!(publish(&node, "news", r#"{"n": 4}"#).await, 4);
    assert_eq!(message(&next(&mut resumed).await), (4, json!({"n": 4})));
    assert_eq!(message(&next(&mut live).await), (4, json!({"n": 4})));
    assert_eq!(publish(&node, "news", r#"{"n": 5}"#).await, 5);
    assert_eq!(message(&next(&mut live).await).0, 5);
    assert_eq!(message(&next(&mut resumed).await).0, 5);
    drop((resumed, live));
    assert!(
        wait_until(WAIT, || async { followers(&node).await == Some(0) }).await,
        "followers that went away are no longer counted"
    );

    // Positions that are not offsets.
    for (query, header) in [("?after=x", ""), ("", "Last-Event-ID: abc\r\n")] {
        let (head, _) = raw_get(
            &node.addr(),
            &format!("/v1/topics/news/events{query}"),
            header,
            0,
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 400"), "{query}{header}: {head}");
    }
    let bad = node
        .request(Method::GET, "/v1/topics/news/events?after=-1", "")
        .await;
    assert_eq!(bad.json["error"]["code"], "bad_request", "{}", bad.body);

    // The listing, sorted; one topic; an unknown one.
    let list = node.request(Method::GET, "/v1/topics", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.json,
        json!({"topics": [
            {"topic": "alpha", "first": 1, "last": 1, "length": 1, "subscribers": []},
            {"topic": "news", "first": 1, "last": 5, "length": 5, "subscribers": []},
        ], "unreachable": []})
    );
    let one = node.request(Method::GET, "/v1/topics/news", "").await;
    assert_eq!((one.status, one.json["last"].as_u64()), (200, Some(5)));
    let none = node.request(Method::GET, "/v1/topics/nope", "").await;
    assert_eq!(
        (none.status, none.json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Topic logs are the node's own entities: not addressable as entities.
    let refused = node
        .request(Method::POST, "/v1/entities/$topic/news/publish", "1")
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let refused = node
        .request(Method::POST, "/v1/entities/%24topic/news/publish", "1")
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let not_json = node.request(Method::POST, "/v1/topics/news", "{nope").await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert_eq!(publish(&node, "news", "6").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_leaves_a_gap_event() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--topic-retention-messages", "10"]).unwrap();
    // Retention is checked every 64 messages: at 64, everything before the last 10 goes.
    for n in 1..=64 {
        assert_eq!(publish(&node, "log", &n.to_string()).await, n);
    }
    // A node's view is its store's, where commits are applied a moment after they answer.
    let trimmed = wait_until(WAIT, || async {
        let entry = node.request(Method::GET, "/v1/topics/log", "").await.json;
        (&entry["first"], &entry["last"], &entry["length"]) == (&json!(55), &json!(64), &json!(10))
    })
    .await;
    assert!(trimmed, "the topic keeps 55 to 64");
    let mut stream = open(&node.url, "log", "?after=0", None).await;
    let gap = next(&mut stream).await;
    assert_eq!((gap.event.as_str(), gap.id.as_deref()), ("gap", None));
    assert_eq!(
        serde_json::from_str::<Value>(&gap.data).unwrap(),
        json!({"from": 1, "to": 54})
    );
    for n in 55..=64 {
        assert_eq!(message(&next(&mut stream).await), (n, json!(n)));
    }
    // A position within what is retained has no gap.
    let mut resumed = open(&node.url, "log", "", Some("60")).await;
    assert_eq!(message(&next(&mut resumed).await).0, 61);

    // By age: a node that keeps messages for a second.
    let dir = tempfile::tempdir().unwrap();
    let aged = TestNode::start(dir.path(), &["--topic-retention-secs", "1"]).unwrap();
    for n in 1..=63 {
        publish(&aged, "old", &n.to_string()).await;
    }
    // The condition is the messages' age itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publish(&aged, "old", "64").await;
    let trimmed = wait_until(WAIT, || async {
        let entry = aged.request(Method::GET, "/v1/topics/old", "").await.json;
        (&entry["first"], &entry["length"]) == (&json!(64), &json!(1))
    })
    .await;
    assert!(trimmed, "only the newest message is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_listed_with_their_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let r = node.deploy("cart-stats", &component("cart-stats")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Subscribed to, no message yet.
    let subscriber = |delivered: u64, failures: u64, lag: u64, last_failure: Value| {
        json!({"type": "cart-stats", "command": "on-cart-event", "key": {"fixed": "all"},
               "delivered": delivered, "failures": failures, "lag": lag,
               "lastFailure": last_failure})
    };
    let list = node.request(Method::GET, "/v1/topics", "").await.json;
    assert_eq!(
        list["topics"],
        json!([{"topic": "cart-events", "first": 0, "last": 0, "length": 0,
                "subscribers": [subscriber(0, 0, 0, Value::Null)]}])
    );
    let one = node
        .request(Method::GET, "/v1/topics/cart-events", "")
        .await;
    assert_eq!(one.status, 200, "{}", one.body);

    // A message the subscriber refuses, then one it takes.
    publish(&node, "cart-events", r#"{"bogus": true}"#).await;
    let envelope = json!({"type": "shopping-cart", "key": "c1", "seq": 1, "index": 0,
        "event": {"itemAdded": {"item": {"productId": "p1", "name": "Apple", "quantity": 2}}}});
    publish(&node, "cart-events", &envelope.to_string()).await;
    let settled = wait_until(WAIT, || async {
        let entry = node
            .request(Method::GET, "/v1/topics/cart-events", "")
            .await
            .json;
        entry["subscribers"][0]["delivered"] == 2
    })
    .await;
    let entry = node
        .request(Method::GET, "/v1/topics/cart-events", "")
        .await
        .json;
    assert!(settled, "both messages delivered: {entry}");
    let s = &entry["subscribers"][0];
    assert_eq!(
        (&s["failures"], &s["lag"]),
        (&json!(1), &json!(0)),
        "{entry}"
    );
    assert_eq!(s["lastFailure"]["offset"], 1, "{entry}");
    assert_eq!(s["lastFailure"]["key"], "all", "{entry}");
    assert!(s["lastFailure"]["reason"].is_string(), "{entry}");
    let stats = node.call("cart-stats", "all", "get", "").await;
    assert_eq!(stats.json["itemsAdded"], 2, "{}", stats.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_the_admin_token_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--admin-token", "s3cret"]).unwrap();
    let path = "/v1/topics/guarded";
    let none = node.request(Method::POST, path, "1").await;
    assert_eq!(
        (none.status, none.json["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = node
        .request_with_token(Method::POST, path, "1", Some("nope"))
        .await;
    assert_eq!(wrong.status, 401);
    let right = node
        .request_with_token(Method::POST, path, "1", Some("s3cret"))
        .await;
    assert_eq!(
        (right.status, right.json["offset"].as_u64()),
        (200, Some(1))
    );
    // Reading needs no token.
    let mut stream = open(&node.url, "guarded", "?after=0", None).await;
    assert_eq!(message(&next(&mut stream).await), (1, json!(1)));

    let out = cella(&["publish", "guarded", "2", "--server", &node.url]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("401 unauthorized"),
        "{}",
        text(&out).1
    );
    let out = cella(&[
        "publish",
        "guarded",
        "2",
        "--server",
        &node.url,
        "--admin-token",
        "s3cret",
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0.trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    publish(&node, "t", "1").await;
    let mut stream = open(&node.url, "t", "?after=0", None).await;
    assert_eq!(message(&next(&mut stream).await).0, 1);
    // A graceful shutdown waits up to 10 s for open connections: an open stream ends at once.
    let started = std::time::Instant::now();
    assert!(node.terminate().unwrap(), "the node exits cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the shutdown waited {:?} for the stream",
        started.elapsed()
    );
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

fn cella(args: &[&str]) -> Output {
    Command::new(cella_tests::cella_bin())
        .args(args)
        .output()
        .expect("run cella")
}

/// A running `cella follow`, its stdout lines on a channel; killed on drop.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Following {
    fn start(args: &[&str]) -> Following {
        let mut child = Command::new(cella_tests::cella_bin())
            .arg("follow")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cella follow");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Following { child, lines }
    }

    /// The next line printed, within [`WAIT`].
    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from cella follow")
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_publish_topics_and_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    let server = node.url.clone();
    let out = cella(&["publish", "orders", r#"{"id": 1}"#, "--server", &server]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "1\n");
    // The same idempotency key twice: one message.
    for _ in 0..2 {
        let out = cella(&[
            "publish",
            "orders",
            r#"{"id": 2}"#,
            "--idempotency-key",
            "order-2",
            "--server",
            &server,
        ]);
        assert_eq!(text(&out).0.trim(), "2", "{}", text(&out).1);
    }
    let out = cella(&["publish", "orders", "{nope", "--server", &server]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not JSON"), "{}", text(&out).1);

    let out = cella(&["topics", "--server", &server]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TOPIC"), "{stdout}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["orders", "1", "2", "2", "-"], "{stdout}");
    let out = cella(&["topics", "--json", "--server", &server]);
    let listed: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(listed["topics"][0]["last"], 2);

    // Follow from the start, then live; across a restart of the node it resumes after the
    // last offset printed.
    let following = Following::start(&["orders", "--from", "1", "--server", &server]);
    assert_eq!(following.line(), "1\t{\"id\":1}");
    assert_eq!(following.line(), "2\t{\"id\":2}");
    assert_eq!(publish(&node, "orders", r#"{"id": 3}"#).await, 3);
    assert_eq!(following.line(), "3\t{\"id\":3}");
    node.restart_in_place().unwrap();
    assert_eq!(publish(&node, "orders", r#"{"id": 4}"#).await, 4);
    assert_eq!(following.line(), "4\t{\"id\":4}");
    // From now on only.
    let live = Following::start(&["orders", "--server", &server]);
    assert!(
        wait_until(WAIT, || async { followers(&node).await == Some(2) }).await,
        "both streams are open"
    );
    assert_eq!(publish(&node, "orders", r#"{"id": 5}"#).await, 5);
    assert_eq!(live.line(), "5\t{\"id\":5}");
    assert_eq!(following.line(), "5\t{\"id\":5}");
    drop((following, live));

    // An unreachable node: clear messages.
    for args in [
        &["topics", "--server", "http://127.0.0.1:9"][..],
        &["follow", "orders", "--server", "http://127.0.0.1:9"],
        &["publish", "orders", "1", "--server", "http://127.0.0.1:9"],
    ] {
        let out = cella(args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("cannot reach the Cella server at http://127.0.0.1:9"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("hint:"), "{stderr}");
    }
}

/// The leader of partition `group`, as the nodes holding it report it.
async fn partition_leader(nodes: &[TestNode], group: u64) -> Option<u64> {
    for node in nodes {
        if let Some(leader) = leaders(node).await.get(&group) {
            return Some(*leader);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_redirects_followers_and_merges_the_listing() {
    let root = tempfile::tempdir().unwrap();
    // One replica per partition: each topic lives on one node only.
    let mut nodes = start_cluster(root.path(), 3, 3, &["--replicas", "1"]).await;
    let topic = "clustered";
    let placement = cella_cluster::Placement {
        partitions: 3,
        ..cella_cluster::Placement::default()
    };
    let group = placement.partition(&EntityId::new("$topic", topic));
    assert!(
        wait_until(WAIT, || async {
            partition_leader(&nodes, group).await.is_some()
        })
        .await,
        "partition {group} has a leader"
    );
    let leader = partition_leader(&nodes, group).await.expect("a leader");
    let holder = (leader - 1) as usize;
    let other = (holder + 1) % 3;
    let third = (holder + 2) % 3;
    for n in 1..=3 {
        // Through a node without the topic: forwarded to its leader.
        assert_eq!(publish(&nodes[other], topic, &n.to_string()).await, n);
    }

    // A node without a replica sends followers to the leader.
    let (head, _) = raw_get(
        &nodes[other].addr(),
        &format!("/v1/topics/{topic}/events?after=1"),
        "",
        0,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 307"), "{head}");
    let location = format!(
        "location: http://{}/v1/topics/{topic}/events?after=1",
        nodes[holder].addr()
    );
    assert!(head.to_ascii_lowercase().contains(&location), "{head}");
    let mut stream = open(&nodes[other].url, topic, "?after=1", None).await;
    assert_eq!(stream.server, nodes[holder].url);
    assert_eq!(message(&next(&mut stream).await), (2, json!(2)));
    assert_eq!(message(&next(&mut stream).await), (3, json!(3)));
    drop(stream);

    // Every node lists the topic, from what the holder knows.
    for node in &nodes {
        let list = node.request(Method::GET, "/v1/topics", "").await.json;
        assert_eq!(
            list,
            json!({"topics": [{"topic": topic, "first": 1, "last": 3, "length": 3,
                               "subscribers": []}], "unreachable": []}),
            "as node {} sees it",
            node.url
        );
        let local = node
            .request(Method::GET, "/v1/topics?local=true", "")
            .await
            .json;
        let here = local["topics"].as_array().unwrap().len();
        assert_eq!(here, usize::from(node.url == nodes[holder].url), "{local}");
    }
    let one = nodes[other]
        .request(Method::GET, &format!("/v1/topics/{topic}"), "")
        .await;
    assert_eq!((one.status, one.json["length"].as_u64()), (200, Some(3)));

    // A node down: its part is missing, the answer still comes and names it.
    nodes[third].kill9();
    let list = nodes[other].request(Method::GET, "/v1/topics", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json["unreachable"], json!([third as u64 + 1]));
    assert_eq!(list.json["topics"][0]["last"], 3);
}
