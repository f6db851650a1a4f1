//! `GET /v1/topics/{topic}/events`: a topic's messages as Server-Sent Events, served from any
//! node that holds a replica of the topic's partition (others answer `307` to the partition's
//! leader, which EventSource clients follow).
//!
//! Each message is one event, `id: <offset>\ndata: <message JSON>\n\n`. The stream starts after
//! the offset in the `Last-Event-ID` header (what an EventSource sends when it reconnects), else
//! after `?after=N`, else after the topic's current last offset (only what is published from
//! now on); the answer's `x-cella-after` header names that offset. A position older than the
//! first retained offset (retention trimmed the messages in between) first gets
//! `event: gap\ndata: {"from": A, "to": B}\n\n` naming the offsets it will never see; the same
//! happens if retention overtakes a slow reader. A comment line keeps an idle stream alive
//! every [`KEEP_ALIVE`].
//!
//! A follower reads the replica's store, where the topic's log is applied on every replica, so
//! a follower of a replica that is not the leader may lag it by a few milliseconds but never
//! skips or repeats an offset. It does not poll: it reads until caught up, then waits until the
//! partition's raft group applies anything new on this node ([`Cluster::wait_applied`]), and
//! reads again. The stream ends when the client goes away or the node shuts down; open streams
//! are counted in the `cella_topic_followers` gauge.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cella_cluster::{Cluster, GroupId, cluster::Group};
use cella_core::{EntityId, Journal, JournalEntry, JournalPayload};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION},
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    Params,
    body::{Body, channel, query_param},
};
use crate::{
    error::{Error, Result},
    node::Node,
    topics::topic_entity,
};

/// How long a stream may stay silent before a comment line keeps it alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Messages read from the store at once.
const BATCH: usize = 256;
/// Chunks buffered between a follower and its connection.
const BUFFERED: usize = 8;
/// How long a stream that starts "from now on" waits for this node to apply what it knows
/// to be committed.
pub(super) const CATCH_UP: Duration = Duration::from_secs(1);
/// How often a node without a cluster (embedded in tests) looks for new messages.
const UNCLUSTERED_POLL: Duration = Duration::from_millis(100);
/// The header an EventSource resumes with.
const LAST_EVENT_ID: &str = "last-event-id";
/// The answer's header naming the offset the stream starts after, so that a client that asked
/// for "from now on" can resume from there if its connection drops before the first message.
pub const STREAM_AFTER: &str = "x-cella-after";

/// `GET /v1/topics/{topic}/events[?after=N]`.
pub(super) async fn events(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let topic = params.decoded("topic")?;
    cella_core::validate_name("topic", &topic)?;
    node.authorize(&req, crate::auth::Action::Follow(&topic))?;
    let requested = start_after(&req)?;
    let id = topic_entity(&topic);
    let group = match &node.cluster {
        Some(cluster) => {
            let group = cluster.partition_of(&id);
            if let Some(elsewhere) = redirect(cluster, group, &req)? {
                return Ok(elsewhere);
            }
            Some(group)
        }
        None => None,
    };
    let after = match requested {
        Some(after) => after,
        None => {
            // From now on: after what this node knows to be committed (on the leader, every
            // message it acknowledged), once it is applied here.
            if let (Some(cluster), Some(group)) = (&node.cluster, group)
                && let Some(group) = cluster.group(group)
            {
                cluster.caught_up(group, CATCH_UP).await;
            }
            node.store.load(&id)?.last_seq()
        }
    };
    let (tx, rx) = mpsc::channel(BUFFERED);
    let follower = Follower {
        _counted: Counted::new(&node.metrics.topics.followers),
        node: node.clone(),
        id,
        group,
        next: after.saturating_add(1),
        tx,
        stopping: node.cluster.as_ref().map(|c| c.stopping()),
    };
    tokio::spawn(follower.run());
    let mut response = Response::new(channel(rx));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(STREAM_AFTER, HeaderValue::from(after));
    Ok(response)
}

/// Where the stream starts: after the `Last-Event-ID` header's offset, else after `?after=N`,
/// else `None` (after the current last offset). A value that is not an offset is refused.
fn start_after<B>(req: &Request<B>) -> Result<Option<u64>> {
    let after = match query_param(req, "after") {
        None => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            Error::BadRequest(format!(
                "query parameter `after` must be a message offset (a number), got `{v}`"
            ))
        })?),
    };
    let Some(header) = req.headers().get(LAST_EVENT_ID) else {
        return Ok(after);
    };
    let text = header
        .to_str()
        .map_err(|_| Error::BadRequest("the Last-Event-ID header is not ASCII text".into()))?
        .trim();
    if text.is_empty() {
        // An EventSource whose last event had no id sends none; an empty one says the same.
        return Ok(after);
    }
    text.parse::<u64>().map(Some).map_err(|_| {
        Error::BadRequest(format!(
            "the Last-Event-ID header must be a message offset (a number), got `{text}`"
        ))
    })
}

/// `None` when this node serves the topic of partition `group` (it holds a replica, or leads
/// it); else the answer sending the client to the partition's leader: `307` with the same path
/// and query there, or `503` while the partition has no leader.
fn redirect<B>(
    cluster: &Cluster,
    group: GroupId,
    req: &Request<B>,
) -> Result<Option<Response<Body>>> {
    let Some(raft) = cluster.group(group) else {
        return Err(Error::Internal(format!(
            "partition {group} has no raft group on this node"
        )));
    };
    if serves_here(cluster, raft) {
        return Ok(None);
    }
    let Some((_, addr)) = cluster.leader(raft) else {
        return Err(Error::NotLeader { leader: None });
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |pq| pq.as_str());
    let location = HeaderValue::try_from(format!("http://{addr}{path}"))
        .map_err(|e| Error::Internal(format!("a redirect to {addr}: {e}")))?;
    let body = serde_json::json!({ "leader": addr }).to_string();
    let mut response = Response::new(super::full(body));
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    response.headers_mut().insert(LOCATION, location);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(Some(response))
}

/// Whether this node serves the topics of `group`: it holds a replica, or leads it.
fn serves_here(cluster: &Cluster, group: &Group) -> bool {
    cluster.replicates(group)
        || cluster
            .leader(group)
            .is_some_and(|(id, _)| id == cluster.node_id())
}

/// One open stream, counted in the followers gauge while it lives.
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why a stream ends.
#[derive(Debug)]
enum Ended {
    /// The client went away, or the node stops.
    Closed,
    /// The store could not be read.
    Failed,
}

/// The task behind one event stream.
struct Follower {
    /// Dropped (uncounted) when the stream ends.
    _counted: Counted,
    node: Arc<Node>,
    id: EntityId,
    /// The topic's partition (`None` on a node without a cluster).
    group: Option<GroupId>,
    /// The next offset to send.
    next: u64,
    tx: mpsc::Sender<Bytes>,
    /// Turns true when the node stops.
    stopping: Option<watch::Receiver<bool>>,
}

impl Follower {
    async fn run(mut self) {
        let mut quiet_since = Instant::now();
        loop {
            // Taken before reading: whatever is applied after it wakes the wait below.
            let seen = self.applied();
            match self.catch_up().await {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) => {}
                Err(_) => break,
            }
            let keep_alive_at = quiet_since + KEEP_ALIVE;
            let wait = keep_alive_at.saturating_duration_since(Instant::now());
            tokio::select! {
                () = self.tx.closed() => break,
                () = stopped(self.stopping.as_mut()) => break,
                _ = wait_applied(&self.node, self.group, seen, wait) => {}
            }
            if Instant::now() >= keep_alive_at {
                // Quiet for a while: if the partition's replica moved off this node, no more
                // applies come here; ending the stream sends the client where it is now.
                if !self.still_replicated() {
                    break;
                }
                if self
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
                {
                    break;
                }
                quiet_since = Instant::now();
            }
        }
    }

    /// Whether this node still holds a replica of the topic's partition (or leads it).
    fn still_replicated(&self) -> bool {
        let (Some(cluster), Some(group)) = (&self.node.cluster, self.group) else {
            return true;
        };
        cluster
            .group(group)
            .is_some_and(|g| serves_here(cluster, g))
    }

    /// How far the topic's partition is applied here (0 without a cluster).
    fn applied(&self) -> u64 {
        match (&self.node.cluster, self.group) {
            (Some(cluster), Some(group)) => {
                cluster.group(group).map_or(0, |g| cluster.applied_index(g))
            }
            _ => 0,
        }
    }

    /// Sends every message from `next` on; whether it sent any.
    async fn catch_up(&mut self) -> std::result::Result<bool, Ended> {
        let mut sent = false;
        loop {
            let entries = self
                .node
                .store
                .read_journal(&self.id, self.next, BATCH)
                .map_err(|e| {
                    tracing::warn!("reading {} for an event stream: {e}", self.id);
                    Ended::Failed
                })?;
            if entries.is_empty() {
                return Ok(sent);
            }
            let whole = entries.len() == BATCH;
            let mut chunk = String::new();
            for entry in &entries {
                if entry.seq > self.next {
                    write_gap(&mut chunk, self.next, entry.seq - 1);
                }
                write_message(&mut chunk, entry);
                self.next = entry.seq + 1;
            }
            self.send(Bytes::from(chunk)).await?;
            sent = true;
            if !whole {
                return Ok(true);
            }
        }
    }

    /// Hands a chunk to the connection, waiting while the client reads slowly.
    async fn send(&mut self, chunk: Bytes) -> std::result::Result<(), Ended> {
        tokio::select! {
            sent = self.tx.send(chunk) => sent.map_err(|_| Ended::Closed),
            () = stopped(self.stopping.as_mut()) => Err(Ended::Closed),
        }
    }
}

/// Resolves when the node stops (never without a cluster).
async fn stopped(stopping: Option<&mut watch::Receiver<bool>>) {
    match stopping {
        Some(rx) => {
            if rx.wait_for(|stop| *stop).await.is_err() {
                // The cluster is gone: the node is stopping.
            }
        }
        None => std::future::pending().await,
    }
}

/// Waits up to `timeout` for the partition to apply something beyond `seen` here; without a
/// cluster, a short pause.
async fn wait_applied(node: &Node, group: Option<GroupId>, seen: u64, timeout: Duration) {
    match (&node.cluster, group) {
        (Some(cluster), Some(group)) => match cluster.group(group) {
            Some(g) => {
                cluster.wait_applied(g, seen, timeout).await;
            }
            None => tokio::time::sleep(timeout).await,
        },
        _ => tokio::time::sleep(timeout.min(UNCLUSTERED_POLL)).await,
    }
}

/// Appends the event of one message: its offset as the id, its JSON as the data.
fn write_message(out: &mut String, entry: &JournalEntry) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "id: {}", entry.seq);
    let data = match &entry.payload {
        JournalPayload::Events(events) if events.len() == 1 => String::from_utf8_lossy(&events[0]),
        _ => "null".into(),
    };
    // Messages are stored as compact JSON (one line); a line break would end the field.
    for line in data.split('\n') {
        let _ = writeln!(out, "data: {}", line.trim_end_matches('\r'));
    }
    out.push('\n');
}

/// Appends a `gap` event: offsets `from..=to` were trimmed before they could be sent.
fn write_gap(out: &mut String, from: u64, to: u64) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "event: gap\ndata: {}\n\n",
        serde_json::json!({ "from": from, "to": to })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, json: &str) -> JournalEntry {
        JournalEntry {
            seq,
            command_id: String::new(),
            command: "publish".into(),
            timestamp_ms: 0,
            module_version: 0,
            payload: JournalPayload::Events(vec![json.as_bytes().to_vec()]),
        }
    }

    #[test]
    fn events_are_written_as_server_sent_events() {
        let mut out = String::new();
        write_gap(&mut out, 1, 4);
        write_message(&mut out, &entry(5, r#"{"a":1}"#));
        write_message(&mut out, &entry(6, "[1,\n2]"));
        assert_eq!(
            out,
            "event: gap\ndata: {\"from\":1,\"to\":4}\n\nid: 5\ndata: {\"a\":1}\n\nid: 6\ndata: [1,\ndata: 2]\n\n"
        );
    }

    #[test]
    fn the_start_is_the_header_else_the_query() {
        let req = |uri: &str, header: Option<&str>| {
            let mut builder = Request::get(uri);
            if let Some(h) = header {
                builder = builder.header(LAST_EVENT_ID, h);
            }
            builder.body(()).unwrap()
        };
        assert_eq!(start_after(&req("/e", None)).unwrap(), None);
        assert_eq!(start_after(&req("/e?after=0", None)).unwrap(), Some(0));
        assert_eq!(start_after(&req("/e?after=3", Some("7"))).unwrap(), Some(7));
        assert_eq!(start_after(&req("/e?after=3", Some(""))).unwrap(), Some(3));
        for (uri, header) in [
            ("/e?after=x", None),
            ("/e?after=-1", None),
            ("/e", Some("abc")),
        ] {
            assert!(matches!(
                start_after(&req(uri, header)),
                Err(Error::BadRequest(_))
            ));
        }
    }
}
