//! Peer authentication with a shared cluster secret ([`PeerAuth`]).
//!
//! Every request one node sends another on `/v1/peer/…` (raft RPCs, append streams, the
//! forwarding exchange) carries five headers: the sender's node id ([`NODE_HEADER`]), the
//! time it was signed in Unix seconds ([`TIME_HEADER`]), a nonce unique to the sender
//! ([`NONCE_HEADER`]), what it says of its body ([`BODY_HEADER`]: the hex SHA-256 of the body
//! of a single RPC, or [`STREAM_MARKER`] for a request whose body streams — an append stream,
//! the forwarding exchange's upgrade — which authenticates its opening request), and an
//! HMAC-SHA256, keyed with the secret, of
//!
//! ```text
//! cella-peer-v1 \n METHOD \n PATH?QUERY \n NODE \n TIME \n NONCE \n BODY
//! ```
//!
//! ([`SIGNATURE_HEADER`], hex). The secret itself never travels. The receiver checks the
//! headers and the clock (±[`MAX_SKEW`]) and then the signature (in constant time) before it
//! reads anything of the body, accepts each signature once (a replayed request is refused),
//! and compares the body it then reads with the signed digest before decoding it: nothing a
//! peer sends is read beyond its head or decoded before it is authenticated.
//!
//! A node runs in one of four modes: with a secret; with *certificates* (mutual TLS between
//! peers, below, and no secret: no header is signed, the TLS session authenticates and
//! protects the whole exchange, streams and forwarding exchange included); *insecure*
//! (`--insecure-peers`, every peer request accepted unsigned, as before authentication
//! existed); or *closed* (a single node started without cluster flags or secret, which accepts
//! no peer request at all).
//!
//! **Peer certificates** (`--peer-ca/--peer-cert/--peer-key`): the node's listener speaks TLS
//! and asks every client for a certificate signed by the peer CA (optional: clients of the
//! public API have none); the edge marks each request of a connection that presented one with
//! [`PeerCertificate`]. A node with peer certificates accepts a peer request only with that
//! mark ([`PeerAuth::admit`]'s `certified`), with a secret too when it has one (both are then
//! required), and connects to its peers over TLS with its certificate, trusting only the peer
//! CA ([`PeerAuth::client_tls`], [`crate::connect`]).

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use hyper::{HeaderMap, Method, header::HeaderValue};
use rustls::ClientConfig;
use sha2::{Digest, Sha256};

use crate::Error;

/// The sender's node id.
pub const NODE_HEADER: &str = "x-cella-peer-node";
/// When the request was signed, in seconds since the Unix epoch.
pub const TIME_HEADER: &str = "x-cella-peer-time";
/// A value the sender never uses twice.
pub const NONCE_HEADER: &str = "x-cella-peer-nonce";
/// The SHA-256 of the body (hex), or [`STREAM_MARKER`]: signed, and checked once the body is
/// read.
pub const BODY_HEADER: &str = "x-cella-peer-body";
/// The HMAC-SHA256 of the request, hex.
pub const SIGNATURE_HEADER: &str = "x-cella-peer-signature";
/// What stands for the body of a request whose body streams.
pub const STREAM_MARKER: &str = "STREAMING-BODY";
/// How far a request's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// What a node that accepts no peers answers them.
pub const CLOSED: &str =
    "this node accepts no peers: start it with --cluster-secret to let nodes join";

/// What a request refused for want of a peer certificate is told.
pub const NO_CERTIFICATE: &str = "a peer request must come on a TLS connection whose client \
     certificate the peer CA signed: every node of this cluster must run with --peer-ca, \
     --peer-cert and --peer-key from the same CA";

/// The mark the edge puts on every request of a connection whose client presented a
/// certificate verified by the peer CA (a request extension: a client cannot set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCertificate;

/// The paths peer requests are sent to (and signed for).
pub const PEER_PREFIX: &str = "/v1/peer/";

type HmacSha256 = Hmac<Sha256>;

/// What a signature covers of a request's body.
#[derive(Clone, Copy, Debug)]
pub enum Signed<'a> {
    /// The whole body of a single request.
    Body(&'a [u8]),
    /// A body that streams: only the opening request is authenticated.
    Stream,
}

enum Mode {
    /// Requests are signed and checked with this key.
    Secret(HmacSha256),
    /// Peer requests are not signed: the peer certificate authenticates them.
    Certificates,
    /// Peer requests are neither signed nor checked.
    Insecure,
    /// No peer request is accepted.
    Closed,
}

/// How this node proves itself to its peers and checks their requests. See the module doc.
pub struct PeerAuth {
    mode: Mode,
    /// With peer certificates: how this node connects to its peers (its certificate, the
    /// peer CA); every peer request must then carry [`PeerCertificate`].
    tls: Option<Arc<ClientConfig>>,
    /// Signatures accepted within the last `2 × MAX_SKEW`: each is accepted once.
    seen: Mutex<Seen>,
    /// The first half of this node's nonces (differs between runs), and a counter.
    nonce_prefix: u64,
    counter: AtomicU64,
}

#[derive(Default)]
struct Seen {
    set: HashSet<[u8; 32]>,
    order: VecDeque<(Instant, [u8; 32])>,
}

impl fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.write_str(match (&self.mode, self.tls.is_some()) {
            (Mode::Secret(_), false) => "PeerAuth::Secret(..)",
            (Mode::Secret(_), true) => "PeerAuth::Secret(..)+Certificates",
            (Mode::Certificates, _) => "PeerAuth::Certificates",
            (Mode::Insecure, _) => "PeerAuth::Insecure",
            (Mode::Closed, _) => "PeerAuth::Closed",
        })
    }
}

/// The credentials a request claims, read from its headers before its body.
#[derive(Debug)]
pub enum Claim {
    /// Nothing to check (an insecure node).
    Open,
    Signed {
        node: u64,
        time: u64,
        nonce: String,
        /// The body's SHA-256 (hex), or [`STREAM_MARKER`].
        body: String,
        signature: [u8; 32],
    },
}

/// What a signature says of a body: its SHA-256 (hex), or the stream marker.
fn body_field(body: Signed<'_>) -> String {
    match body {
        Signed::Body(bytes) => hex::encode(Sha256::digest(bytes)),
        Signed::Stream => STREAM_MARKER.to_string(),
    }
}

fn unauthorized(message: impl Into<String>) -> Error {
    Error::Unauthorized(message.into())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PeerAuth {
    fn with_mode(mode: Mode) -> PeerAuth {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        PeerAuth {
            mode,
            tls: None,
            seen: Mutex::new(Seen::default()),
            nonce_prefix: nanos ^ (u64::from(std::process::id()) << 32),
            counter: AtomicU64::new(0),
        }
    }

    /// Peers prove `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn secret(secret: &str) -> Result<PeerAuth, Error> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "the cluster secret is {} bytes; it must be at least {MIN_SECRET_LEN}\nhint: \
                 generate one with `openssl rand -hex 32` and give every node the same",
                secret.len()
            )));
        }
        let key = HmacSha256::new_from_slice(secret.as_bytes())
            .map_err(|e| Error::Config(format!("the cluster secret: {e}")))?;
        Ok(PeerAuth::with_mode(Mode::Secret(key)))
    }

    /// Peer requests are accepted unsigned (`--insecure-peers`).
    pub fn insecure() -> PeerAuth {
        PeerAuth::with_mode(Mode::Insecure)
    }

    /// No peer request is accepted (a single node without a secret).
    pub fn closed() -> PeerAuth {
        PeerAuth::with_mode(Mode::Closed)
    }

    /// Peers authenticate by certificate alone: requests are not signed, and accepted only
    /// on a connection that presented a peer certificate. `tls` connects to the peers.
    pub fn certificates(tls: Arc<ClientConfig>) -> PeerAuth {
        PeerAuth {
            tls: Some(tls),
            ..PeerAuth::with_mode(Mode::Certificates)
        }
    }

    /// This secret's requests must also come with a peer certificate (both are required);
    /// `tls` connects to the peers.
    pub fn and_certificates(self, tls: Arc<ClientConfig>) -> PeerAuth {
        PeerAuth {
            tls: Some(tls),
            ..self
        }
    }

    /// With peer certificates, the TLS configuration of connections to peers.
    pub fn client_tls(&self) -> Option<Arc<ClientConfig>> {
        self.tls.clone()
    }

    /// Whether peer requests need a peer certificate.
    pub fn requires_certificate(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether any peer can be accepted (not closed).
    pub fn accepts_peers(&self) -> bool {
        !matches!(self.mode, Mode::Closed)
    }

    /// Whether peer requests are signed and checked.
    pub fn is_secret(&self) -> bool {
        matches!(self.mode, Mode::Secret(_))
    }

    /// The MAC of a request, unfinished.
    fn mac(
        key: &HmacSha256,
        method: &Method,
        path_and_query: &str,
        node: u64,
        time: u64,
        nonce: &str,
        body: &str,
    ) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(
            format!("cella-peer-v1\n{method}\n{path_and_query}\n{node}\n{time}\n{nonce}\n{body}")
                .as_bytes(),
        );
        mac
    }

    /// Adds the credentials of a request from node `node` to `headers` (nothing unless this
    /// node has a secret).
    pub fn sign(
        &self,
        node: u64,
        method: &Method,
        path_and_query: &str,
        body: Signed<'_>,
        headers: &mut HeaderMap,
    ) {
        let Mode::Secret(key) = &self.mode else {
            return;
        };
        let time = now_secs();
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let nonce = format!("{:016x}{count:016x}", self.nonce_prefix);
        let body = body_field(body);
        let signature = Self::mac(key, method, path_and_query, node, time, &nonce, &body)
            .finalize()
            .into_bytes();
        let values = [
            (NODE_HEADER, node.to_string()),
            (TIME_HEADER, time.to_string()),
            (NONCE_HEADER, nonce),
            (BODY_HEADER, body),
            (SIGNATURE_HEADER, hex::encode(signature)),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }

    /// Reads the credentials of a request from its headers and checks what can be checked
    /// before its body is read: that this node accepts peers, that the request came with a
    /// peer certificate if this node requires one (`certified`: its connection's client
    /// presented a certificate the peer CA signed, [`PeerCertificate`]), that its headers are
    /// all there and well formed, and that their time is within [`MAX_SKEW`] of this node's
    /// clock.
    pub fn admit(&self, headers: &HeaderMap, certified: bool) -> Result<Claim, Error> {
        if matches!(self.mode, Mode::Closed) {
            return Err(unauthorized(CLOSED));
        }
        if self.tls.is_some() && !certified {
            return Err(unauthorized(NO_CERTIFICATE));
        }
        match self.mode {
            Mode::Closed => return Err(unauthorized(CLOSED)),
            Mode::Insecure | Mode::Certificates => return Ok(Claim::Open),
            Mode::Secret(_) => {}
        }
        let header = |name: &str| -> Result<&str, Error> {
            headers
                .get(name)
                .ok_or_else(|| {
                    unauthorized(format!(
                        "a peer request needs the cluster's credentials (header `{name}` is \
                         missing): every node of this cluster must run with the same \
                         --cluster-secret"
                    ))
                })?
                .to_str()
                .map_err(|_| unauthorized(format!("header `{name}` is not text")))
        };
        let number = |name: &str| -> Result<u64, Error> {
            header(name)?
                .parse()
                .map_err(|_| unauthorized(format!("header `{name}` is not a number")))
        };
        let node = number(NODE_HEADER)?;
        let time = number(TIME_HEADER)?;
        let nonce = header(NONCE_HEADER)?;
        if nonce.is_empty() || nonce.len() > 64 {
            return Err(unauthorized(format!(
                "header `{NONCE_HEADER}` must be 1 to 64 characters"
            )));
        }
        let body = header(BODY_HEADER)?;
        if body != STREAM_MARKER && !(body.len() == 64 && hex::decode(body).is_ok()) {
            return Err(unauthorized(format!(
                "header `{BODY_HEADER}` is neither a SHA-256 (hex) nor `{STREAM_MARKER}`"
            )));
        }
        let mut signature = [0u8; 32];
        hex::decode_to_slice(header(SIGNATURE_HEADER)?, &mut signature).map_err(|_| {
            unauthorized(format!("header `{SIGNATURE_HEADER}` is not 64 hex digits"))
        })?;
        let now = now_secs();
        if now.abs_diff(time) > MAX_SKEW.as_secs() {
            return Err(unauthorized(format!(
                "the peer request was signed at {time}, {}s from this node's clock ({now}); \
                 more than {}s apart is refused: check the nodes' clocks",
                now.abs_diff(time),
                MAX_SKEW.as_secs()
            )));
        }
        Ok(Claim::Signed {
            node,
            time,
            nonce: nonce.to_string(),
            body: body.to_string(),
            signature,
        })
    }

    /// Checks a request's signature and body digest against what it is (`method`,
    /// `path_and_query`, `body`): [`Self::verify_head`], then [`Self::verify_body`] for a
    /// single body.
    pub fn verify(
        &self,
        claim: &Claim,
        method: &Method,
        path_and_query: &str,
        body: Signed<'_>,
    ) -> Result<(), Error> {
        let streaming = matches!(body, Signed::Stream);
        self.verify_head(claim, method, path_and_query, streaming)?;
        match body {
            Signed::Body(bytes) => self.verify_body(claim, bytes),
            Signed::Stream => Ok(()),
        }
    }

    /// Checks a request's signature (over its head and the body digest it claims) before its
    /// body is read: `streaming` requests must be signed for a streaming body, the others for
    /// a digest, which [`Self::verify_body`] then compares with the body. A signature is
    /// accepted once.
    pub fn verify_head(
        &self,
        claim: &Claim,
        method: &Method,
        path_and_query: &str,
        streaming: bool,
    ) -> Result<(), Error> {
        let (key, node, time, nonce, body, signature) = match (&self.mode, claim) {
            (Mode::Closed, _) => return Err(unauthorized(CLOSED)),
            (Mode::Insecure | Mode::Certificates, _) => return Ok(()),
            (Mode::Secret(_), Claim::Open) => {
                return Err(unauthorized(
                    "a peer request needs the cluster's credentials",
                ));
            }
            (
                Mode::Secret(key),
                Claim::Signed {
                    node,
                    time,
                    nonce,
                    body,
                    signature,
                },
            ) => (key, *node, *time, nonce, body, signature),
        };
        Self::mac(key, method, path_and_query, node, time, nonce, body)
            .verify_slice(signature)
            .map_err(|_| {
                unauthorized(
                    "the peer request's signature does not match it: the sender's \
                     --cluster-secret differs from this node's, or the request was altered",
                )
            })?;
        if streaming != (body == STREAM_MARKER) {
            return Err(unauthorized(if streaming {
                "this peer request streams its body but was signed for a single body"
            } else {
                "this peer request has a single body but was signed for a streaming one"
            }));
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while seen
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > 2 * MAX_SKEW)
        {
            if let Some((_, old)) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        if !seen.set.insert(*signature) {
            return Err(unauthorized(
                "this peer request was already received: a replay is refused",
            ));
        }
        seen.order.push_back((now, *signature));
        Ok(())
    }

    /// Checks that `bytes`, the body of a request whose head [`Self::verify_head`] accepted,
    /// is the one signed.
    pub fn verify_body(&self, claim: &Claim, bytes: &[u8]) -> Result<(), Error> {
        match claim {
            Claim::Signed { body, .. } if *body != body_field(Signed::Body(bytes)) => Err(
                unauthorized("the peer request's body is not the one its signature covers"),
            ),
            _ => Ok(()),
        }
    }

    /// [`Self::admit`] and [`Self::verify`] at once, for a request whose body is at hand.
    pub fn check(
        &self,
        headers: &HeaderMap,
        certified: bool,
        method: &Method,
        path_and_query: &str,
        body: Signed<'_>,
    ) -> Result<(), Error> {
        let claim = self.admit(headers, certified)?;
        self.verify(&claim, method, path_and_query, body)
    }
}

/// Signs this node's peer requests: its credential and id.
#[derive(Clone, Debug)]
pub(crate) struct Signer {
    pub(crate) auth: Arc<PeerAuth>,
    pub(crate) node: u64,
}

impl Signer {
    /// Signs a request to `path_and_query` if it goes to a peer endpoint.
    pub(crate) fn sign(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Signed<'_>,
        headers: &mut HeaderMap,
    ) {
        if path_and_query.starts_with(PEER_PREFIX) {
            self.auth
                .sign(self.node, method, path_and_query, body, headers);
        }
    }
}

#[cfg(test)]
mod tests;
