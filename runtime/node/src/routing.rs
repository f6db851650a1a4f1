//! Route, then run: every request that something in the cluster leads (an entity, led by its
//! partition's leader; a module or membership change, led by the metadata group's leader) first
//! asks who leads it ([`Node::leader`]), then runs here or is forwarded there ([`dispatch`]), so
//! clients need not know the topology.
//!
//! The decision is a value ([`Leader`]), never read back from an error. Only a leadership
//! change in flight sends a request around again, on one bounded retry path: the run here
//! found it no longer leads, the node forwarded to answered that it does not lead (naming the
//! leader it knows, which is followed at once for a few hops), or the leader could not be
//! reached. Retries happen only when the command certainly did not run; a forward that breaks
//! or times out after the request went out leaves the outcome unknown and answers
//! `503 unavailable`. Past the deadline the answer is `503 not_leader`.
//!
//! Between nodes: entity commands travel on the forwarding exchange (one multiplexed stream per
//! node pair, `cella_cluster::mux`); other requests (reads, module and membership changes) as
//! HTTP requests of their own carrying [`FORWARDED`]. A node never forwards a forwarded request
//! again: when it does not lead, it answers [`NOT_LEADER_STATUS`] with the leader's address (or
//! nothing) as the body, which the sender follows.
//!
//! Also here: `GET /v1/cluster`'s document and the [`Forwarder`] that carries `forward` effects
//! to entities led elsewhere.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cella_cluster::{
    Cluster,
    network::{PeerClient, PeerError, PeerReply},
};
use cella_core::EntityId;
use hyper::{
    Method, Response, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue},
};

use crate::{
    entities::Forwarder,
    error::{Error, Result},
    http::{Body, full},
    node::Node,
};

/// The header that marks a request forwarded by another node.
pub const FORWARDED: &str = "x-cella-forwarded";

/// The status a node answers a forwarded request with when it does not lead what the request
/// addresses (421 Misdirected Request); the body is the leader's address, empty if unknown.
pub const NOT_LEADER_STATUS: StatusCode = StatusCode::MISDIRECTED_REQUEST;

/// How long a request may wait for what it addresses to have a reachable leader.
const ROUTE_DEADLINE: Duration = Duration::from_secs(8);

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a forwarded membership change may take: adding a node waits for it to catch up,
/// removing one waits for the partitions to drain it (a minute each at most).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(150);

/// How many times in a row a leader named by another node is followed without pause.
const MAX_HOPS: u32 = 3;

/// Who leads what a request addresses, as this node sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// This node: the request runs here.
    Here,
    /// The node at this address (`host:port`).
    At(String),
    /// No leader is known right now (an election is under way).
    Unknown,
}

impl Leader {
    fn from_hint(leader: Option<String>) -> Leader {
        leader.map_or(Leader::Unknown, Leader::At)
    }
}

/// What a request addresses, for routing.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// An entity: its partition's leader serves it.
    Entity(&'a EntityId),
    /// The cluster's metadata (modules, membership): the metadata group's leader serves it.
    Metadata,
}

impl Node {
    /// Who leads `target` now.
    pub fn leader(&self, target: Target<'_>) -> Result<Leader> {
        match target {
            Target::Entity(id) => match self.entities.owner(id) {
                Ok(()) => Ok(Leader::Here),
                Err(Error::NotLeader { leader }) => Ok(Leader::from_hint(leader)),
                Err(other) => Err(other),
            },
            Target::Metadata => match self.cluster.as_ref().map(|c| c.meta_leadership()) {
                None | Some(Ok(())) => Ok(Leader::Here),
                Some(Err(leader)) => Ok(Leader::from_hint(leader)),
            },
        }
    }
}

/// What routing needs to know of the incoming request to repeat it elsewhere.
pub struct Origin {
    /// Whether another node forwarded it (it is then never forwarded again).
    pub forwarded: bool,
    /// The method, path and query, to repeat at the leader.
    pub method: Method,
    pub path_and_query: String,
    /// Passed on to the leader (module changes need the admin token).
    pub authorization: Option<HeaderValue>,
    /// How the request travels to a leader.
    pub via: Via,
}

/// How a request is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// On the forwarding exchange (entity commands).
    Exchange,
    /// As an HTTP request of its own, answered within the regular forwarding timeout.
    Request,
    /// As an HTTP request of its own that may take minutes (membership changes).
    SlowRequest,
}

impl Origin {
    pub fn of<B>(req: &hyper::Request<B>, via: Via) -> Origin {
        Origin {
            forwarded: req.headers().contains_key(FORWARDED),
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| req.uri().path().to_string()),
            authorization: req.headers().get(AUTHORIZATION).cloned(),
            via,
        }
    }
}

/// Runs a request where `target` is led: `run` here when this node leads it, else forwarded to
/// the leader with `body`, following leadership changes on the one bounded retry path.
pub async fn dispatch<F, Fut>(
    node: &Node,
    target: Target<'_>,
    origin: &Origin,
    body: Bytes,
    run: F,
) -> Result<Response<Body>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Response<Body>>>,
{
    let mut retry = Retry::new();
    let mut hint = None;
    loop {
        let leader = match hint.take() {
            Some(addr) => Leader::At(addr),
            None => node.leader(target)?,
        };
        // The leader to try next, when this attempt certainly did not run the request.
        let next = match leader {
            Leader::Here => match run().await {
                // Leadership moved between the decision and the run.
                Err(Error::NotLeader { leader }) => leader,
                done => return done,
            },
            // A forwarded request is never forwarded again: its sender routes it anew.
            Leader::At(addr) if origin.forwarded => {
                return Err(Error::NotLeader { leader: Some(addr) });
            }
            Leader::Unknown if origin.forwarded => return Err(Error::NotLeader { leader: None }),
            Leader::At(addr) => match forward(node, &addr, origin, &body).await? {
                Forwarded::Answer(response) => return Ok(response),
                // The node asked knows a leader this one does not: follow it.
                Forwarded::NotLeader(next) => next.filter(|next| *next != addr),
                Forwarded::Unreachable => None,
            },
            Leader::Unknown => None,
        };
        if origin.forwarded {
            return Err(Error::NotLeader { leader: next });
        }
        hint = retry.after(next).await?;
    }
}

/// The pacing of [`dispatch`]'s retries: a leader named by another node is followed at once
/// up to [`MAX_HOPS`] times; otherwise it waits (20 ms doubling to 250 ms) and asks again,
/// until [`ROUTE_DEADLINE`].
struct Retry {
    deadline: Instant,
    backoff: Duration,
    hops: u32,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            deadline: Instant::now() + ROUTE_DEADLINE,
            backoff: Duration::from_millis(20),
            hops: 0,
        }
    }

    /// The leader to try next (`Some` to follow `named` at once, `None` to ask again after a
    /// pause), or `not_leader` past the deadline.
    async fn after(&mut self, named: Option<String>) -> Result<Option<String>> {
        if Instant::now() >= self.deadline {
            return Err(Error::NotLeader { leader: None });
        }
        if named.is_some() && self.hops < MAX_HOPS {
            self.hops += 1;
            return Ok(named);
        }
        self.hops = 0;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(250));
        Ok(None)
    }
}

/// What forwarding a request to a leader gave.
enum Forwarded {
    /// The leader's answer, to relay.
    Answer(Response<Body>),
    /// The node does not lead; the leader it knows.
    NotLeader(Option<String>),
    /// The node could not be reached: the request certainly did not run.
    Unreachable,
}

/// Sends the request to `addr`, in a span of its own whose trace context goes with it.
async fn forward(node: &Node, addr: &str, origin: &Origin, body: &Bytes) -> Result<Forwarded> {
    let span = tracing::debug_span!(
        "forward",
        otel.kind = "client",
        peer.addr = %addr,
        via = ?origin.via,
    );
    tracing::Instrument::instrument(forward_once(node, addr, origin, body), span).await
}

async fn forward_once(node: &Node, addr: &str, origin: &Origin, body: &Bytes) -> Result<Forwarded> {
    let Some(cluster) = node.cluster.as_ref() else {
        return Err(Error::Internal(format!(
            "a node without a cluster was asked to forward to {addr}"
        )));
    };
    let client = cluster.client();
    let sent = match origin.via {
        Via::Exchange => {
            client
                .forward_traced(
                    addr,
                    &origin.path_and_query,
                    body.clone(),
                    crate::trace::current(),
                    FORWARD_TIMEOUT,
                )
                .await
        }
        Via::Request | Via::SlowRequest => {
            let mut headers = vec![
                forwarded_header(),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ];
            if let Some(token) = &origin.authorization {
                headers.push((AUTHORIZATION, token.clone()));
            }
            headers.extend(crate::trace::headers(&crate::trace::current()));
            let timeout = match origin.via {
                Via::SlowRequest => MEMBERSHIP_TIMEOUT,
                _ => FORWARD_TIMEOUT,
            };
            client
                .send(
                    addr,
                    origin.method.clone(),
                    &origin.path_and_query,
                    &headers,
                    body.clone(),
                    timeout,
                )
                .await
        }
    };
    match sent {
        Ok(reply) => Ok(match not_leader(&reply) {
            Some(leader) => Forwarded::NotLeader(leader),
            None => {
                node.metrics.forwarded();
                Forwarded::Answer(relay(reply.status, reply.body))
            }
        }),
        Err(PeerError::Unreachable(_)) => Ok(Forwarded::Unreachable),
        Err(source) => Err(Error::Forward {
            addr: addr.to_string(),
            source,
        }),
    }
}

/// The leader a peer's [`NOT_LEADER_STATUS`] answer names, or `None` for any other answer.
fn not_leader(reply: &PeerReply) -> Option<Option<String>> {
    (reply.status == NOT_LEADER_STATUS).then(|| {
        std::str::from_utf8(&reply.body)
            .ok()
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(String::from)
    })
}

/// The answer to a forwarded request that this node cannot serve because it does not lead:
/// [`NOT_LEADER_STATUS`] with the leader's address, or the error's own answer otherwise.
pub fn answer_forwarded(error: &Error) -> Option<(StatusCode, Bytes)> {
    match error {
        Error::NotLeader { leader } => Some((
            NOT_LEADER_STATUS,
            Bytes::from(leader.clone().unwrap_or_default()),
        )),
        _ => None,
    }
}

fn forwarded_header() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(FORWARDED),
        HeaderValue::from_static("1"),
    )
}

fn relay(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
        request_id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<String>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let invocation = crate::entities::Invocation {
                request_id,
                ..Default::default()
            };
            let path = crate::effects::delivery_path(&id, &command, &invocation);
            let reply = client
                .forward_traced(
                    &owner,
                    &path,
                    Bytes::from(payload),
                    crate::trace::current(),
                    FORWARD_TIMEOUT,
                )
                .await
                .map_err(|source| Error::Forward {
                    addr: owner.clone(),
                    source,
                })?;
            if let Some(leader) = not_leader(&reply) {
                // The forwarding command is committed: this must not look like "not run here".
                return Err(Error::Unavailable(format!(
                    "forwarding to {id}: {owner} no longer leads its partition ({})",
                    leader.map_or("no leader right now".to_string(), |l| format!("now {l}"))
                )));
            }
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
