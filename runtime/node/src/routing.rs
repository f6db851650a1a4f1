//! Cluster routing at the HTTP edge: any node accepts any entity request and, when another node
//! leads the entity's partition, forwards it there and relays the answer, so clients need not
//! know the topology. Leader changes are followed with a bounded retry.
//!
//! Entity commands travel on the forwarding exchange to the leader (one multiplexed stream per
//! node pair, `cella_cluster::mux`); other requests (reads, module and membership changes) go
//! as HTTP requests of their own carrying `x-cella-forwarded: 1`. A node never forwards a
//! forwarded request again, it answers `503 not_leader` instead, which the forwarding node
//! retries after looking the leader up again. Retries happen only when the command certainly
//! did not run: the target refused it as `not_leader`, or the connection could not be made. A
//! connection that breaks or times out after the request went out leaves the outcome unknown
//! and is answered `503 unavailable`.
//!
//! Also here: the raft RPC endpoint (`POST /v1/peer/raft/{group}/{kind}`), `GET /v1/cluster`,
//! and the [`Forwarder`] used for `forward` effects to entities led elsewhere.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cella_cluster::{
    Cluster,
    network::{PeerClient, PeerError},
};
use cella_core::EntityId;
use hyper::{
    Method, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderName, HeaderValue},
};

use crate::{
    entities::Forwarder,
    error::{Error, Result},
    http::Body,
    node::Node,
};

/// The header that marks a request forwarded by another node.
pub const FORWARDED: &str = "x-cella-forwarded";

/// How long a request may wait for its entity's partition to have a reachable leader.
const ROUTE_DEADLINE: Duration = Duration::from_secs(8);

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a forwarded membership change may take: adding a node waits for it to catch up,
/// removing one waits for the partitions to drain it (a minute each at most).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs the request on this node again.
pub type LocalRun<'a> = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Response<Body>>> + Send + 'a>>
        + Send
        + Sync
        + 'a,
>;

/// What routing needs to know of the incoming request.
pub struct Origin {
    /// Whether another node forwarded it (it is then never forwarded again).
    pub forwarded: bool,
    /// The method, path and query, to repeat at the leader.
    pub method: Method,
    pub path_and_query: String,
    /// Passed on to the leader (module changes need the admin token).
    pub authorization: Option<HeaderValue>,
}

impl Origin {
    pub fn of<B>(req: &hyper::Request<B>) -> Origin {
        Origin {
            forwarded: req.headers().contains_key(FORWARDED),
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| req.uri().path().to_string()),
            authorization: req.headers().get(hyper::header::AUTHORIZATION).cloned(),
        }
    }

    /// Whether this is `POST /v1/entities/{type}/{key}/{command}` (no query).
    fn is_entity_command(&self) -> bool {
        self.method == Method::POST
            && crate::http::entity_command_path(&self.path_and_query).is_some()
    }
}

fn forwarded_header() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(FORWARDED),
        HeaderValue::from_static("1"),
    )
}

/// Runs an entity request where its entity lives: locally when this node leads the entity's
/// partition, else at the leader. `first` is the answer of the first local attempt; `local`
/// tries again locally. A request another node forwarded is answered with `first` as is.
pub async fn route_entity(
    node: &Node,
    id: &EntityId,
    origin: &Origin,
    body: Bytes,
    first: Result<Response<Body>>,
    local: LocalRun<'_>,
) -> Result<Response<Body>> {
    let owner = || node.entities.owner(id);
    route_to_leader(node, &owner, origin, body, first, local).await
}

/// Like [`route_entity`] for requests that the metadata group's leader serves (module
/// changes).
pub async fn route_module_change(
    node: &Node,
    origin: &Origin,
    body: Bytes,
    first: Result<Response<Body>>,
    local: LocalRun<'_>,
) -> Result<Response<Body>> {
    let owner = || match &node.cluster {
        Some(cluster) => cluster
            .meta_leadership()
            .map_err(|leader| Error::NotLeader { leader }),
        None => Ok(()),
    };
    route_to_leader(node, &owner, origin, body, first, local).await
}

/// Sends a request to the leader named by `first` (a `NotLeader`), following leader changes
/// until the deadline; `owner` tells whether this node leads now, and `local` then runs it here.
async fn route_to_leader(
    node: &Node,
    owner: &(dyn Fn() -> Result<()> + Sync),
    origin: &Origin,
    body: Bytes,
    first: Result<Response<Body>>,
    local: LocalRun<'_>,
) -> Result<Response<Body>> {
    if origin.forwarded {
        return first;
    }
    let Some(cluster) = node.cluster.as_ref() else {
        return first;
    };
    let mut leader = match first {
        Err(Error::NotLeader { leader }) => leader,
        other => return other,
    };
    let deadline = Instant::now() + ROUTE_DEADLINE;
    let timeout = if origin.path_and_query.starts_with("/v1/cluster/nodes") {
        MEMBERSHIP_TIMEOUT
    } else {
        FORWARD_TIMEOUT
    };
    let mut backoff = Duration::from_millis(20);
    let mut hops = 0;
    loop {
        if let Some(addr) = leader.take() {
            let mut headers = vec![
                forwarded_header(),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ];
            if let Some(token) = &origin.authorization {
                headers.push((hyper::header::AUTHORIZATION, token.clone()));
            }
            // Entity commands go on the forwarding exchange to the leader; the rest (reads,
            // module and membership changes) as HTTP requests of their own.
            let client = cluster.client();
            let sent = if origin.is_entity_command() {
                client
                    .forward(&addr, &origin.path_and_query, body.clone(), timeout)
                    .await
            } else {
                client
                    .send(
                        &addr,
                        origin.method.clone(),
                        &origin.path_and_query,
                        &headers,
                        body.clone(),
                        timeout,
                    )
                    .await
            };
            match sent {
                Ok(reply) => match not_leader_hint(reply.status, &reply.body) {
                    None => {
                        node.metrics.forwarded();
                        return Ok(relay(reply.status, reply.body));
                    }
                    // The node asked knows a leader that this one does not (it may know the
                    // group better): follow it next, at once.
                    Some(Some(next)) if next != addr && hops < 3 => {
                        hops += 1;
                        leader = Some(next);
                        continue;
                    }
                    Some(_) => {}
                },
                Err(PeerError::Unreachable(_)) => {}
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "forwarding to {addr} failed after the request was sent: {e}"
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NotLeader { leader: None });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(250));
        match owner() {
            Ok(()) => match local().await {
                Err(Error::NotLeader { leader: next }) => leader = next,
                other => return other,
            },
            Err(Error::NotLeader { leader: next }) => leader = next,
            Err(other) => return Err(other),
        }
    }
}

/// `None` unless the answer is `503 not_leader`; then the leader it names, if any.
fn not_leader_hint(status: StatusCode, body: &[u8]) -> Option<Option<String>> {
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    (value["error"]["code"] == "not_leader")
        .then(|| value["error"]["leader"].as_str().map(String::from))
}

fn relay(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(crate::http::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Answers a raft RPC (`rest` is `{group}/{kind}`).
pub async fn peer_rpc(cluster: &Cluster, rest: &str, body: &[u8]) -> Result<Response<Body>> {
    let answer = cluster
        .serve_peer(rest, body)
        .await
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok(octet_stream(crate::http::full(answer)))
}

/// Answers a group's append stream (`group` is the path segment): the answers stream back as
/// the requests are read.
pub fn peer_stream(cluster: &Cluster, group: &str, body: Incoming) -> Result<Response<Body>> {
    let answers = cluster
        .serve_append_stream(group, body)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok(octet_stream(answers))
}

/// A peer answer of postcard bytes.
pub(crate) fn octet_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `GET /v1/cluster`: nodes, placement and every group as this node sees it.
pub fn status(cluster: &Cluster) -> serde_json::Value {
    let placement = cluster.placement();
    let nodes: Vec<serde_json::Value> = cluster
        .nodes()
        .into_iter()
        .map(|(id, addr)| serde_json::json!({ "id": id, "addr": addr }))
        .collect();
    serde_json::json!({
        "nodeId": cluster.node_id(),
        "nodes": nodes,
        "shards": placement.shards,
        "partitions": placement.partitions,
        "replicas": cluster.replicas(),
        "groups": cluster.status(),
    })
}

/// Sends `forward` effects to the node that leads the target entity.
pub struct PeerForwarder {
    pub client: PeerClient,
}

impl Forwarder for PeerForwarder {
    fn forward(
        &self,
        owner: String,
        id: EntityId,
        command: String,
        payload: String,
    ) -> Pin<Box<dyn Future<Output = Result<String>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let path = format!(
                "/v1/entities/{}/{}/{}",
                crate::http::encode_segment(&id.entity_type),
                crate::http::encode_segment(&id.key),
                crate::http::encode_segment(&command)
            );
            let reply = client
                .forward(&owner, &path, Bytes::from(payload), FORWARD_TIMEOUT)
                .await
                .map_err(|e| Error::Unavailable(format!("forwarding to {owner}: {e}")))?;
            if reply.status == StatusCode::OK {
                return String::from_utf8(reply.body.to_vec())
                    .map_err(|_| Error::Internal("a forwarded reply is not UTF-8".into()));
            }
            Err(Error::Remote {
                status: reply.status.as_u16(),
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            })
        })
    }
}

/// Wraps a [`PeerClient`] for [`crate::entities::Entities::with_forwarder`].
pub fn forwarder(cluster: &Arc<Cluster>) -> Arc<dyn Forwarder> {
    Arc::new(PeerForwarder {
        client: cluster.client().clone(),
    })
}
