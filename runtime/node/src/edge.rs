//! The node's edge: how an accepted connection is served, and the limits that keep a client
//! from holding the node's resources ([`EdgeOptions`], flags of `cella serve`).
//!
//! - **Connections**: at most `max_connections` at once (HTTP connections, peers' included;
//!   an upgraded forwarding exchange no longer counts once it left HTTP). A connection beyond
//!   that is closed at once, before any byte is read, and a warning says so at most once a
//!   second with how many were refused.
//! - **Request heads** (HTTP/1.1): a connection gets `header_read_timeout` for each request
//!   head, from the moment the node waits for it (so also while idle between requests) until
//!   its last header line: a client that sends half a head and stalls (slowloris) is closed
//!   then. A head over `max_header_bytes` or with more than `max_headers` headers is answered
//!   `431 Request Header Fields Too Large` by hyper, which writes that status itself (no body:
//!   hyper has no hook for one) and closes the connection; a partial head cannot grow past
//!   `max_header_bytes` in memory either (hyper's read buffer is capped at it, at least 8 KiB).
//! - **TLS** (`tls`): the handshake must finish within `header_read_timeout`; a client that is
//!   no TLS client (plain HTTP to the TLS port) fails it, gets a TLS alert and is closed, with a
//!   debug log line only. ALPN picks HTTP/2 or HTTP/1.1 (upgrades, for the forwarding
//!   exchange, work over HTTP/1.1). HTTP/2 connections get a ping every `header_read_timeout`
//!   while idle (closed when unanswered for 20 s) and `max_header_bytes` as their header list
//!   limit; hyper's HTTP/2 server has no per-head read timeout.
//!
//! - **Peer TLS** (`peer_tls`, mutual TLS between peers): the listener serves the peer
//!   certificate (`tls`, if given too, must name the same files) and asks each client for a
//!   certificate, optional; once the handshake is done the chain is verified against the peer
//!   CA ([`PeerVerifier`]), and every request of a connection whose certificate passed carries
//!   the [`PeerCertificate`] extension, which peer endpoints require (`cella_cluster::auth`).
//!
//! Without `tls` or `peer_tls` a connection is served by the same HTTP/1.1 server as before
//! TLS existed.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cella_cluster::auth::PeerCertificate;
use hyper::{
    Request,
    body::Incoming,
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    http,
    node::{Node, Tracked},
    tls::{self, PeerTlsFiles, PeerVerifier, TlsError, TlsFiles},
};

/// The limits of the node's edge and its TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeOptions {
    /// Serve TLS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Mutual TLS between peers: serve TLS with this certificate, asking clients for one the
    /// peer CA signed (optional), and mark the requests of connections that presented one.
    pub peer_tls: Option<PeerTlsFiles>,
    /// Time a connection has for each request head (HTTP/1.1) and for the TLS handshake.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Most headers in a request.
    pub max_headers: usize,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        EdgeOptions {
            tls: None,
            peer_tls: None,
            // Longer than the 30 s a peer's pooled connection may idle (`cella_cluster`'s
            // clients drop it then), so the node never closes one under a request in flight.
            header_read_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 64 << 10,
            max_headers: 100,
        }
    }
}

/// How long an unanswered HTTP/2 ping may stay unanswered.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What serves accepted connections: the HTTP servers as configured, the TLS acceptor, and the
/// connection slots.
pub(crate) struct Edge {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    /// With peer TLS: which client certificates the peer CA signed.
    peer_verifier: Option<Arc<PeerVerifier>>,
    handshake_timeout: Duration,
    slots: Arc<Semaphore>,
    max_connections: usize,
    /// When a refusal was last logged, and the refusals since.
    refusals: Mutex<(Option<Instant>, u64)>,
}

/// One admitted connection's hold on the node: its slot, and its place among what shutdown
/// waits for.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _served: Tracked,
}

impl Edge {
    /// The edge `options` describe; fails if the TLS files cannot be used.
    pub(crate) fn new(options: &EdgeOptions) -> Result<Edge, TlsError> {
        let (tls, peer_verifier) = match (&options.peer_tls, &options.tls) {
            (Some(peer), _) => {
                let (acceptor, verifier) = tls::peer_acceptor(peer)?;
                (Some(acceptor), Some(verifier))
            }
            (None, Some(files)) => (Some(tls::acceptor(files)?), None),
            (None, None) => (None, None),
        };
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_headers(options.max_headers)
            .max_header_size(options.max_header_bytes)
            .max_buf_size(options.max_header_bytes.max(8 << 10));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(options.header_read_timeout)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        let max_connections = options.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Ok(Edge {
            http1,
            http2,
            tls,
            peer_verifier,
            handshake_timeout: options.header_read_timeout,
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            refusals: Mutex::new((None, 0)),
        })
    }

    /// A slot for a new connection, or `None` when `max_connections` are served (the caller
    /// closes it); refusals are logged at most once a second.
    pub(crate) fn admit(&self, node: &Node) -> Option<Admitted> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Some(Admitted {
                _slot: slot,
                _served: node.connections.track(),
            }),
            Err(_) => {
                self.refused();
                None
            }
        }
    }

    fn refused(&self) {
        let Ok(mut refusals) = self.refusals.lock() else {
            return;
        };
        let (last, count) = &mut *refusals;
        *count += 1;
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            tracing::warn!(
                "refused {count} connection(s): {} are open, the most this node serves \
                 (--max-connections)",
                self.max_connections
            );
            *last = Some(now);
            *count = 0;
        }
    }

    /// Serves `stream` (from `peer`) on a task of its own until it ends, or until the node
    /// stops (then the request in progress finishes and no other is read).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        node: Arc<Node>,
        stop: watch::Receiver<bool>,
        admitted: Admitted,
    ) {
        let edge = self.clone();
        tokio::spawn(async move {
            match &edge.tls {
                None => edge.serve_http1(stream, node, stop, false).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(edge.handshake_timeout, acceptor.accept(stream));
                    let mut stopping = stop.clone();
                    let handshake = tokio::select! {
                        handshake = handshake => handshake,
                        // A node that stops serves no new connection.
                        _ = async { stopping.wait_for(|stop| *stop).await.map(drop) } => return,
                    };
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake with {peer} failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(
                                "TLS handshake with {peer} did not finish within {:?}",
                                edge.handshake_timeout
                            );
                            return;
                        }
                    };
                    // The handshake proved the client holds its certificate's key; whether the
                    // peer CA signed it is checked here, once per connection.
                    let certified = edge.peer_verifier.as_ref().is_some_and(|verifier| {
                        stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|certs| verifier.verified(certs))
                    });
                    if stream.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2) {
                        edge.serve_http2(stream, node, stop, certified).await;
                    } else {
                        edge.serve_http1(stream, node, stop, certified).await;
                    }
                }
            }
            // The slot and the shutdown count end with the connection (also on the early
            // returns above).
            drop(admitted);
        });
    }

    /// HTTP/1.1 with upgrades (a peer's forwarding exchange leaves HTTP: `cella_cluster::mux`).
    async fn serve_http1<I>(
        &self,
        io: I,
        node: Arc<Node>,
        stop: watch::Receiver<bool>,
        certified: bool,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self
            .http1
            .serve_connection(
                TokioIo::new(io),
                service_fn(move |req| http::handle(node.clone(), mark(req, certified))),
            )
            .with_upgrades();
        drive(conn, |conn| conn.graceful_shutdown(), stop).await;
    }

    /// HTTP/2 (negotiated by ALPN over TLS).
    async fn serve_http2<I>(
        &self,
        io: I,
        node: Arc<Node>,
        stop: watch::Receiver<bool>,
        certified: bool,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self.http2.serve_connection(
            TokioIo::new(io),
            service_fn(move |req| http::handle(node.clone(), mark(req, certified))),
        );
        drive(conn, |conn| conn.graceful_shutdown(), stop).await;
    }
}

/// `req`, marked as coming with a verified peer certificate if `certified`.
fn mark(mut req: Request<Incoming>, certified: bool) -> Request<Incoming> {
    if certified {
        req.extensions_mut().insert(PeerCertificate);
    }
    req
}

/// Runs `conn` to its end; once the node stops, `drain` tells it to finish the request in
/// progress and take no more.
async fn drive<C>(conn: C, drain: impl FnOnce(Pin<&mut C>), mut stop: watch::Receiver<bool>)
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        _ = async { stop.wait_for(|stop| *stop).await.map(drop) } => {
            drain(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!("connection ended: {e}");
    }
}
