//! [`PeerClient`]: a node's pooled client to the other nodes (one pool for every group), for
//! single requests, streaming exchanges and the forwarding exchange to each peer.
//!
//! Above the forwarding exchange ([`crate::mux`]), which it holds one of per peer, and below
//! the append streams ([`crate::stream`]) and the raft network ([`crate::network`], which
//! re-exports it), which send through it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{
    auth::{PeerAuth, Signed, Signer},
    connect::PeerConnector,
    frame::StreamingBody,
    mux::{Links, TraceContext},
    peer::{PeerError, PeerReply, StreamClient, request_error, with_causes},
};

/// A pooled HTTP client to the other nodes. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    http: Client<PeerConnector, Full<Bytes>>,
    /// For exchanges whose request body is written as it is produced (append streams).
    streaming: StreamClient,
    /// The forwarding exchange to each peer (see [`crate::mux`]).
    links: Links,
    /// Signs the requests to peer endpoints (none: they go unsigned).
    signer: Option<Signer>,
}

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClient {
    /// A client whose peer requests go unsigned.
    pub fn new() -> PeerClient {
        PeerClient::build(None)
    }

    /// A client of node `node` that signs its peer requests with `auth` and connects with
    /// its peer TLS, if any (see [`crate::auth`], [`crate::connect`]).
    pub fn with_auth(auth: Arc<PeerAuth>, node: u64) -> PeerClient {
        PeerClient::build(Some(Signer { auth, node }))
    }

    fn build(signer: Option<Signer>) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        // A peer gone without closing its connections (a partition, a power loss) is noticed.
        connector.set_keepalive(Some(Duration::from_secs(10)));
        let tls = signer.as_ref().and_then(|s| s.auth.client_tls());
        let connector = PeerConnector::new(connector, tls);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let streaming = StreamClient::new(
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            signer.clone(),
        );
        PeerClient {
            http,
            streaming,
            links: Links::default(),
            signer,
        }
    }

    /// Sends a request whose body streams to `addr`; resolves with the answer's head.
    pub(crate) async fn stream(
        &self,
        addr: &str,
        request: Request<StreamingBody>,
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
        self.forward_traced(addr, path, body, TraceContext::default(), timeout)
            .await
    }

    /// [`PeerClient::forward`] with the trace context of the sender's span, which the command
    /// carries to `addr`.
    pub async fn forward_traced(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
        trace: TraceContext,
        timeout: Duration,
    ) -> Result<PeerReply, PeerError> {
        self.links
            .send(&self.streaming, addr, path, body, trace, timeout)
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
            .method(method.clone())
            .uri(format!("http://{addr}{path_and_query}"));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let (Some(signer), Some(signed)) = (&self.signer, builder.headers_mut()) {
            signer.sign(&method, path_and_query, Signed::Body(&body), signed);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| PeerError::Request(with_causes(&e)))?;
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
                .map_err(|e| PeerError::Broken(format!("{addr}: {}", with_causes(&e))))?
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
