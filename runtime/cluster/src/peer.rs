//! What every exchange with a peer shares: its answer ([`PeerReply`]), why it failed
//! ([`PeerError`], and what that failure means to raft), the pooled client of exchanges whose
//! request body streams, and the path prefix of raft RPCs.
//!
//! Below the forwarding exchange ([`crate::mux`]), the append streams ([`crate::stream`]) and
//! the raft network ([`crate::network`]), which all use it; it uses only [`crate::frame`].

use bytes::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use openraft::error::{NetworkError, RPCError, Unreachable};

use crate::{
    TypeConfig,
    auth::{Signed, Signer},
    connect::PeerConnector,
    frame::StreamingBody,
};

/// The path prefix of raft RPCs.
pub const RAFT_PATH: &str = "/v1/peer/raft/";

/// An HTTP answer from a peer.
pub struct PeerReply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
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

/// The pooled client of streaming exchanges (append streams, forwarding exchanges), which
/// signs their opening requests (see [`crate::auth`]).
#[derive(Clone)]
pub(crate) struct StreamClient {
    client: Client<PeerConnector, StreamingBody>,
    signer: Option<Signer>,
}

impl StreamClient {
    pub(crate) fn new(
        client: Client<PeerConnector, StreamingBody>,
        signer: Option<Signer>,
    ) -> StreamClient {
        StreamClient { client, signer }
    }

    /// Sends a request whose body streams to `addr`; resolves with the answer's head.
    pub(crate) async fn stream(
        &self,
        addr: &str,
        mut request: Request<StreamingBody>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PeerError> {
        if let Some(signer) = &self.signer {
            let method = request.method().clone();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            signer.sign(&method, &path, Signed::Stream, request.headers_mut());
        }
        self.client
            .request(request)
            .await
            .map_err(|e| request_error(addr, e))
    }
}

/// A failed exchange with the peer at `addr`. Only a failed connect proves the request never
/// left; anything later (a reset, a dead peer mid-answer) leaves its outcome unknown.
pub(crate) fn request_error(addr: &str, e: hyper_util::client::legacy::Error) -> PeerError {
    if e.is_connect() {
        PeerError::Unreachable(format!("{addr}: {}", with_causes(&e)))
    } else {
        PeerError::Broken(format!("{addr}: {}", with_causes(&e)))
    }
}

/// `e` and its causes on one line (`e: cause: its cause`), for a [`PeerError`], which holds
/// text. hyper's errors leave their cause out of their own text (a client error says only
/// `client error (Connect)`, not that the connection was refused); a cause whose text is
/// already there is not repeated.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// What a failed exchange means to raft: unreachable (never sent) or a network failure.
pub(crate) fn rpc_error(e: PeerError) -> RPCError<TypeConfig> {
    match e {
        PeerError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}
