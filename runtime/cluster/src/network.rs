//! The raft network: raft RPCs between nodes over HTTP/1.1 (hyper) with postcard bodies, on
//! the node's listen address (or a separate peer address).
//!
//! Requests are `POST /v1/peer/raft/{group}/{append|vote|snapshot|transfer}`; the body is the
//! postcard encoding of the RPC, the answer a 200 whose body is the postcard encoding of
//! `Result<response, RaftError>` (any other status is a transport failure). Heartbeats, votes,
//! leader transfers and snapshots are such single RPCs (a snapshot travels whole in one
//! request); appends travel on a pipelined stream instead ([`crate::stream`]). [`PeerClient`]
//! keeps connections alive per peer (one pool for every group and for forwarded entity
//! commands); [`serve_rpc`] is the receiving side.
//!
//! The top of the peer transport: it uses the append streams and the client, and re-exports
//! the client with its answer and error types ([`PeerClient`], [`PeerReply`], [`PeerError`]).

use std::{future::Future, io::Cursor, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, future::BoxFuture, stream::BoxStream};
use hyper::{Method, StatusCode};
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
    peer::rpc_error,
    stream,
    types::{decode, encode},
};
pub use crate::{
    client::PeerClient,
    peer::{PeerError, PeerReply, RAFT_PATH},
};

type C = TypeConfig;

/// The least time an append RPC is given.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);

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
        stream::send(
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
        other => Err(Error::Malformed {
            what: "a raft RPC kind",
            message: format!("unknown RPC `{other}` (expected append, vote, snapshot or transfer)"),
        }),
    }
}
