//! Crdt helpers for the integration tests: a command with a `?consistency=` query, the value a
//! node holds for a crdt entity (`GET /v1/entities/{type}/{key}`), waiting for nodes to converge
//! on a value, a `/watch` stream read value by value, freezing a node (`SIGSTOP`/`SIGCONT`), and
//! a cluster whose nodes do not authenticate each other (`--insecure-peers`).

use std::{path::Path, time::Duration};

use cella_cli::client::{self, EventStream, Opened};
use hyper::Method;
use serde_json::Value;

use crate::{Reply, TestNode, encode_segment, wait_until};

/// `POST /v1/entities/{ty}/{key}/{command}?consistency={consistency}` with `body`.
pub async fn call_with(
    node: &TestNode,
    ty: &str,
    key: &str,
    command: &str,
    consistency: &str,
    body: &str,
) -> Reply {
    let path = format!(
        "/v1/entities/{}/{}/{}?consistency={}",
        encode_segment(ty),
        encode_segment(key),
        encode_segment(command),
        encode_segment(consistency)
    );
    node.request(Method::POST, &path, body).await
}

/// `GET /v1/entities/{ty}/{key}`: the reply (its `state` is the value this node holds).
pub async fn state(node: &TestNode, ty: &str, key: &str) -> Reply {
    let path = format!(
        "/v1/entities/{}/{}",
        encode_segment(ty),
        encode_segment(key)
    );
    node.request(Method::GET, &path, "").await
}

/// The value `node` holds for the crdt entity (its `GET` state); `Null` when the read failed.
pub async fn value(node: &TestNode, ty: &str, key: &str) -> Value {
    let r = state(node, ty, key).await;
    match r.status {
        200 => r.json["state"].clone(),
        _ => Value::Null,
    }
}

/// Waits (up to `timeout`) until every node of `nodes` holds `expected` for the entity; on
/// failure, the values they hold, for the assertion's message.
pub async fn converge(
    nodes: &[&TestNode],
    ty: &str,
    key: &str,
    expected: &Value,
    timeout: Duration,
) -> Result<(), Vec<Value>> {
    let all = wait_until(timeout, || async {
        for node in nodes {
            if value(node, ty, key).await != *expected {
                return false;
            }
        }
        true
    })
    .await;
    if all {
        return Ok(());
    }
    let mut seen = Vec::new();
    for node in nodes {
        seen.push(value(node, ty, key).await);
    }
    Err(seen)
}

/// A `GET /v1/entities/{type}/{key}/watch` stream.
pub struct Watch {
    stream: EventStream,
    /// The ids of the events received, in order.
    pub ids: Vec<u64>,
}

impl Watch {
    /// Opens the watch of an entity at `node`; any answer but a stream is the `Err`.
    pub async fn open(node: &TestNode, ty: &str, key: &str) -> Result<Watch, Reply> {
        let path = format!(
            "/v1/entities/{}/{}/watch",
            encode_segment(ty),
            encode_segment(key)
        );
        match client::follow_events(&node.url, &path, None).await {
            Ok(Opened::Stream(stream)) => Ok(Watch {
                stream,
                ids: Vec::new(),
            }),
            Ok(Opened::Answer(r)) => Err(Reply {
                status: r.status,
                json: serde_json::from_str(&r.body).unwrap_or(Value::Null),
                body: r.body,
            }),
            Err(e) => panic!("GET {path} on {}: {e:#}", node.url),
        }
    }

    /// The content type the stream was served with.
    pub fn content_type(&self) -> String {
        self.stream
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The next value of the stream, within `timeout` (`None`: none came, or it ended).
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let event = tokio::time::timeout(timeout, self.stream.next())
            .await
            .ok()?
            .ok()??;
        let id = event.id.as_deref().and_then(|id| id.parse().ok());
        self.ids
            .push(id.unwrap_or_else(|| panic!("an event without an id: {event:?}")));
        Some(
            serde_json::from_str(&event.data)
                .unwrap_or_else(|e| panic!("the data of {event:?} is not JSON: {e}")),
        )
    }

    /// Reads values until one equals `expected` (true), the stream ends or `timeout` passes;
    /// every value read is pushed to `seen`.
    pub async fn until(
        &mut self,
        expected: &Value,
        timeout: Duration,
        seen: &mut Vec<Value>,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) => {
                    let hit = v == *expected;
                    seen.push(v);
                    if hit {
                        return true;
                    }
                }
                None => return false,
            }
        }
    }
}

/// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`) to the node's process.
pub fn signal(node: &TestNode, signal: libc::c_int) {
    let pid = node.pid().expect("the node is running");
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// Starts nodes 1..=n (data under `root/n{id}`) as one cluster of `partitions` partitions with
/// `--insecure-peers` and no cluster secret, and waits until every group has a leader.
pub async fn start_insecure_cluster(root: &Path, n: usize, partitions: u32) -> Vec<TestNode> {
    crate::cluster::start_cluster_with_peers(root, n, partitions, &["--insecure-peers"], &[]).await
}
