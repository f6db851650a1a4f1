//! How a node connects to its peers ([`PeerConnector`]): plain TCP, or — with mutual TLS
//! between peers (`cella serve --peer-ca/--peer-cert/--peer-key`, see [`crate::auth`]) — TCP
//! then a TLS handshake that presents this node's peer certificate and trusts only the peer
//! CA, the server name being the peer address's host (`127.0.0.1`, `localhost`, ...).
//!
//! Every connection to a peer is opened here: the pooled clients of single requests, of append
//! streams and of the forwarding exchange's upgrade ([`crate::client`], [`crate::peer`]). The
//! request URIs keep their `http://` scheme: this connector alone decides whether the
//! connection is TLS, so a node configured for peer TLS never talks to a peer in the clear.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper::{
    Uri,
    rt::{Read, ReadBufCursor, Write},
};
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::TokioIo,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// How long a TLS handshake with a peer may take once its TCP connection is open.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection to a peer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("{0}")]
    Tcp(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The peer address has no host usable as a TLS server name.
    #[error("the peer address `{0}` has no host a TLS certificate can name")]
    ServerName(String),
    /// The TLS handshake failed (the peer's certificate is not from the peer CA, or it
    /// refused ours).
    #[error("TLS handshake with the peer failed: {0}")]
    Handshake(#[source] io::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake with the peer did not finish within {0:?}")]
    Timeout(Duration),
}

/// Opens connections to peers: TCP, then TLS when the node has peer certificates.
#[derive(Clone)]
pub(crate) struct PeerConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl PeerConnector {
    /// Connects with `http`, then with TLS as `tls` says (none: plain TCP).
    pub(crate) fn new(http: HttpConnector, tls: Option<Arc<ClientConfig>>) -> PeerConnector {
        PeerConnector {
            http,
            tls: tls.map(TlsConnector::from),
        }
    }
}

/// A connection to a peer.
pub(crate) enum PeerStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

type Connecting = Pin<Box<dyn Future<Output = Result<PeerStream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for PeerConnector {
    type Response = PeerStream;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http
            .poll_ready(cx)
            .map_err(|e| ConnectError::Tcp(e.into()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let tls = self.tls.clone();
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await.map_err(|e| ConnectError::Tcp(e.into()))?;
            let Some(tls) = tls else {
                return Ok(PeerStream::Plain(tcp));
            };
            let name = host
                .and_then(|h| ServerName::try_from(h).ok())
                .ok_or(ConnectError::ServerName(authority))?;
            let stream =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp.into_inner()))
                    .await
                    .map_err(|_| ConnectError::Timeout(HANDSHAKE_TIMEOUT))?
                    .map_err(ConnectError::Handshake)?;
            Ok(PeerStream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

impl Connection for PeerStream {
    fn connected(&self) -> Connected {
        match self {
            PeerStream::Plain(s) => s.connected(),
            PeerStream::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl Read for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
