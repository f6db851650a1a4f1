//! The peer transport: raft RPCs between nodes over HTTP/1.1 (hyper) with postcard bodies, on
//! the node's listen address (or a separate peer address).
//!
//! Requests are `POST /v1/peer/raft/{group}/{append|vote|snapshot|transfer}`; the body is the postcard
//! encoding of the RPC, the answer a 200 whose body is the postcard encoding of
//! `Result<response, RaftError>` (any other status is a transport failure). A snapshot travels
//! whole in one request. [`PeerClient`] keeps connections alive per peer (one pool for every
//! group and for forwarded entity commands); [`serve_rpc`] is the receiving side.

use std::{future::Future, io::Cursor, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, future::BoxFuture, stream::BoxStream};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use openraft::raft::StreamAppendResult;
use openraft::{
    OptionalSend, Raft, RaftNetworkFactory,
    alias::{SnapshotMetaOf, SnapshotOf, VoteOf},
    error::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable},
    network::{RPCOption, v2::RaftNetworkV2},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
        TransferLeaderResponse, VoteRequest, VoteResponse,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Error, GroupId, StateMachine, TypeConfig,
    types::{decode, encode},
};

type C = TypeConfig;

/// The least time an append RPC is given.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The path prefix of raft RPCs.
pub const RAFT_PATH: &str = "/v1/peer/raft/";

/// A pooled HTTP client to the other nodes. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// For exchanges whose request body is written as it is produced (append streams).
    streaming: StreamClient,
    /// The forwarding exchange to each peer (see [`crate::mux`]).
    links: crate::mux::Links,
}

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

/// The pooled client of streaming exchanges (append streams, forwarding exchanges).
#[derive(Clone)]
pub(crate) struct StreamClient(Client<HttpConnector, crate::stream::StreamingBody>);

impl StreamClient {
    /// Sends a request whose body streams to `addr`; resolves with the answer's head.
    pub(crate) async fn stream(
        &self,
        addr: &str,
        request: Request<crate::stream::StreamingBody>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PeerError> {
        self.0
            .request(request)
            .await
            .map_err(|e| request_error(addr, e))
    }
}

/// An HTTP answer from a peer.
pub struct PeerReply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl PeerClient {
    pub fn new() -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        // A peer gone without closing its connections (a partition, a power loss) is noticed.
        connector.set_keepalive(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let streaming = StreamClient(
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        );
        PeerClient {
            http,
            streaming,
            links: crate::mux::Links::default(),
        }
    }

    /// Sends a request whose body streams to `addr`; resolves with the answer's head.
    pub(crate) async fn stream(
        &self,
        addr: &str,
        request: Request<crate::stream::StreamingBody>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PeerError> {
        self.streaming.stream(addr, request).await
    }

    /// Sends an entity command (`POST path`, marked forwarded) to `addr` on the forwarding
    /// exchange to it, and waits for its answer within `timeout`.
    pub async fn forward(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<PeerReply, PeerError> {
        self.links
            .send(&self.streaming, addr, path, body, timeout)
            .await
    }

    /// Sends one request to `addr` (`host:port`) and reads the whole answer within `timeout`.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path_and_query: &str,
        headers: &[(hyper::header::HeaderName, hyper::header::HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<PeerReply, PeerError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path_and_query}"));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| PeerError::Request(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| request_error(addr, e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| PeerError::Broken(format!("{addr}: {e}")))?
                .to_bytes();
            Ok(PeerReply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout(format!(
                "{addr}: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

/// A failed exchange with the peer at `addr`. Only a failed connect proves the request never
/// left; anything later (a reset, a dead peer mid-answer) leaves its outcome unknown.
fn request_error(addr: &str, e: hyper_util::client::legacy::Error) -> PeerError {
    if e.is_connect() {
        PeerError::Unreachable(format!("{addr}: {e}"))
    } else {
        PeerError::Broken(format!("{addr}: {e}"))
    }
}

/// What a failed exchange means to raft: unreachable (never sent) or a network failure.
pub(crate) fn rpc_error(e: PeerError) -> RPCError<C> {
    match e {
        PeerError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The connection could not be made: the request certainly did not reach the peer.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("connection broken: {0}")]
    Broken(String),
    #[error("peer timed out: {0}")]
    Timeout(String),
}

/// Makes the raft network of one group.
#[derive(Clone)]
pub struct GroupNetwork {
    pub group: GroupId,
    pub client: PeerClient,
}

/// The connection of one group to one peer.
pub struct PeerLink {
    group: GroupId,
    addr: String,
    client: PeerClient,
}

impl RaftNetworkFactory<C> for GroupNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, _target: u64, node: &openraft::BasicNode) -> PeerLink {
        PeerLink {
            group: self.group,
            addr: node.addr.clone(),
            client: self.client.clone(),
        }
    }
}

impl PeerLink {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<C>> {
        let body = encode("a raft request", request)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let path = format!("{RAFT_PATH}{}/{kind}", self.group);
        let reply = self
            .client
            .send(
                &self.addr,
                Method::POST,
                &path,
                &[],
                Bytes::from(body),
                timeout,
            )
            .await
            .map_err(rpc_error)?;
        if reply.status != StatusCode::OK {
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "HTTP {} from {}{path}: {}",
                reply.status,
                self.addr,
                String::from_utf8_lossy(&reply.body)
            ))));
        }
        let answer: Result<Resp, RaftError<C>> = decode("a raft answer", &reply.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<C> for PeerLink {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        // openraft derives the TTL from the heartbeat (tens of ms); an append carrying a batch
        // on a busy node takes longer, and a timeout costs a replication back-off. Only the
        // detection of a dead follower waits longer; the quorum keeps committing meanwhile.
        self.rpc("append", &rpc, option.soft_ttl().max(APPEND_TIMEOUT))
            .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        crate::stream::send(
            self.client.clone(),
            self.addr.clone(),
            self.group,
            input,
            option.soft_ttl().max(APPEND_TIMEOUT),
        )
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.rpc("vote", &rpc, option.soft_ttl()).await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.rpc("transfer", &rpc, option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        // A snapshot may be large: allow it more than a heartbeat's time.
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = self.rpc("snapshot", &request, timeout) => Ok(answer?),
        }
    }
}

/// Answers one raft RPC for `raft` (the group named in the path): `kind` is the last path
/// segment, `body` the request. Returns the answer body.
pub async fn serve_rpc(
    raft: &Raft<C, StateMachine>,
    kind: &str,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    match kind {
        "append" => {
            let request: AppendEntriesRequest<C> = decode("an append request", body)?;
            encode("an append answer", &raft.append_entries(request).await)
        }
        "vote" => {
            let request: VoteRequest<C> = decode("a vote request", body)?;
            encode("a vote answer", &raft.vote(request).await)
        }
        "snapshot" => {
            let (vote, meta, data): (VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>) =
                decode("a snapshot", body)?;
            let snapshot = SnapshotOf::<C, _> {
                meta,
                snapshot: Cursor::new(data),
            };
            let answer: Result<SnapshotResponse<C>, RaftError<C>> = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(RaftError::Fatal);
            encode("a snapshot answer", &answer)
        }
        "transfer" => {
            let request: TransferLeaderRequest<C> = decode("a transfer request", body)?;
            let answer: Result<TransferLeaderResponse<C>, RaftError<C>> = raft
                .handle_transfer_leader(request)
                .await
                .map_err(RaftError::Fatal);
            encode("a transfer answer", &answer)
        }
        other => Err(Error::Decode {
            what: "a raft RPC kind",
            message: format!("unknown RPC `{other}` (expected append, vote, snapshot or transfer)"),
        }),
    }
}
