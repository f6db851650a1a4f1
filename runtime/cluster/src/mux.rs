//! Forwarded commands between nodes, multiplexed: every entity command one node forwards to
//! another travels on one long-lived connection per node pair, opened as `POST /v1/peer/mux`
//! and upgraded (HTTP/1.1 `Upgrade: cella-mux`) to a plain byte stream that carries the
//! commands one way and the answers the other, each a length-prefixed postcard frame (the
//! framing of `frame.rs`).
//!
//! A command forwarded as an HTTP request of its own costs a pooled connection's request and
//! answer, with their headers, parsing and wakeups on both nodes. Here the commands waiting at
//! once go out in one write, the answers waiting at once come back in one, and the receiving
//! node runs each command as soon as it is read, so answers may come back in any order: each
//! carries the id of its command. After the upgrade one task on each side owns the connection,
//! reading and writing it: a command passes no HTTP connection task on either node (a
//! streaming HTTP body would add a task hand-off per direction on each node).
//!
//! Failures keep the forwarding rule of the HTTP path: a command is retried elsewhere only
//! when it certainly did not run. Commands queued before the upgrade completed fail as
//! [`PeerError::Unreachable`] if it fails (nothing was sent); commands sent on an exchange
//! that breaks fail as [`PeerError::Broken`] (their outcome is unknown). The next command
//! opens a new exchange. A peer that shuts down stops reading and says which command it read
//! last (a *goaway*): it answers those, and the later ones fail as unreachable, since they
//! never ran. An exchange that hears nothing for 30 s while a command waits as long is taken
//! for dead.
//!
//! In the peer transport, this sits on the framing and the peer types only; the client
//! ([`crate::network::PeerClient`]) holds the exchanges (`Links`) and the raft network never
//! uses them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONNECTION, UPGRADE},
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot, watch},
};

use crate::{
    frame::{StreamingBody, encode_frame, full_body, take_frame},
    peer::{PeerError, PeerReply, StreamClient, with_causes},
};

/// The protocol the forwarding exchange upgrades to.
pub const PROTOCOL: &str = "cella-mux";

/// The path of the multiplexed exchange.
pub const MUX_PATH: &str = "/v1/peer/mux";

/// One forwarded command: the request path it was sent to, its body and the trace context of
/// the span that sent it.
#[derive(Debug, Serialize, Deserialize)]
struct MuxRequest {
    id: u64,
    path: String,
    body: Vec<u8>,
    trace: TraceContext,
}

/// The W3C trace context a forwarded command carries: the `traceparent` and `tracestate` of
/// the sender's span, empty when it is not traced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

/// The id of the answer that says the peer reads no more commands; its body is the id of the
/// last command it read (little-endian `u64`). Command ids start at 1.
const GOAWAY: u64 = 0;

/// The answer to the command `id`: an HTTP status and its JSON body.
#[derive(Debug, Serialize, Deserialize)]
struct MuxAnswer {
    id: u64,
    status: u16,
    body: Vec<u8>,
}

/// Runs one forwarded command (its path, body and trace context) and gives its answer (status
/// and body).
pub type Handler = Arc<
    dyn Fn(String, Bytes, TraceContext) -> BoxFuture<'static, (StatusCode, Bytes)> + Send + Sync,
>;

/// A command waiting to go out, and where its answer goes.
struct Pending {
    path: String,
    body: Bytes,
    trace: TraceContext,
    reply: oneshot::Sender<Result<PeerReply, PeerError>>,
}

/// The exchanges of one node to its peers: one task per peer address.
#[derive(Clone, Default)]
pub(crate) struct Links {
    links: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>>,
}

impl Links {
    /// Sends the command at `path` to `addr` on the exchange to it and waits for the answer
    /// (at most `timeout`).
    pub(crate) async fn send(
        &self,
        client: &StreamClient,
        addr: &str,
        path: &str,
        body: Bytes,
        trace: TraceContext,
        timeout: Duration,
    ) -> Result<PeerReply, PeerError> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            path: path.to_string(),
            body,
            trace,
            reply,
        };
        // A link task lives as long as the client that made it; should one have ended anyway,
        // it is replaced once.
        for _ in 0..2 {
            let link = {
                let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
                links
                    .entry(addr.to_string())
                    .or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tokio::spawn(run_link(client.clone(), addr.to_string(), rx));
                        tx
                    })
                    .clone()
            };
            match link.send(pending) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    pending = back;
                    let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
                    if links.get(addr).is_some_and(|l| l.same_channel(&link)) {
                        links.remove(addr);
                    }
                }
            }
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PeerError::Broken(format!(
                "{addr}: the forwarding exchange ended without an answer"
            ))),
            Err(_) => Err(PeerError::Timeout(format!(
                "{addr}: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

/// How long opening and upgrading a new exchange may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An exchange that has heard nothing for this long while a command has waited as long is
/// taken for dead (a peer gone without closing the connection), and its commands fail.
const SILENCE: Duration = Duration::from_secs(30);
/// How long a server that stopped waits for the peer to close after the last answer.
const LINGER: Duration = Duration::from_secs(2);
/// How often an exchange checks for silence and for callers that gave up.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The task of one peer: runs one exchange after another, each until it fails. It ends when
/// the client that made it is dropped.
async fn run_link(client: StreamClient, addr: String, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        exchange(&client, &addr, &mut rx, first).await;
    }
}

/// The commands sent on an exchange and not yet answered: when each was sent, and where its
/// answer goes.
type Outstanding = HashMap<u64, (Instant, oneshot::Sender<Result<PeerReply, PeerError>>)>;

/// One exchange: sends `first` and every later command, routes the answers, and returns
/// when the exchange fails or the peer said it stops (every command on it is then answered),
/// or the client is gone.
async fn exchange(
    client: &StreamClient,
    addr: &str,
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    first: Pending,
) {
    let mut outstanding = Outstanding::new();
    // Frames not yet written.
    let mut out = BytesMut::new();
    let mut next_id = 0u64;
    let mut enqueue = |pending: Pending, outstanding: &mut Outstanding, out: &mut BytesMut| {
        // Its caller gave up: not worth running.
        if pending.reply.is_closed() {
            return;
        }
        next_id += 1;
        let request = MuxRequest {
            id: next_id,
            path: pending.path,
            body: pending.body.to_vec(),
            trace: pending.trace,
        };
        match encode_frame("a forwarded command", &request) {
            Some(chunk) => {
                outstanding.insert(next_id, (Instant::now(), pending.reply));
                out.extend_from_slice(&chunk);
            }
            None => {
                let _ = pending.reply.send(Err(PeerError::Request(
                    "cannot encode the forwarded command".into(),
                )));
            }
        }
    };
    enqueue(first, &mut outstanding, &mut out);
    // While the upgrade is awaited, later commands queue up; none is sent before it is done,
    // so if it fails, none of them ran.
    let mut upgrade = std::pin::pin!(tokio::time::timeout(HEAD_TIMEOUT, upgrade(client, addr)));
    let upgraded = loop {
        tokio::select! {
            upgraded = &mut upgrade => break upgraded,
            pending = rx.recv() => match pending {
                Some(pending) => enqueue(pending, &mut outstanding, &mut out),
                None => return,
            },
        }
    };
    let io = match upgraded {
        Ok(Ok(io)) => io,
        Ok(Err(message)) => {
            fail_all(outstanding, |_| PeerError::Unreachable(message.clone()));
            return;
        }
        Err(_) => {
            fail_all(outstanding, |_| {
                PeerError::Unreachable(format!(
                    "{addr}: no forwarding exchange within {HEAD_TIMEOUT:?}"
                ))
            });
            return;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut heard = Instant::now();
    // Set once the peer said it stops reading: the last command it read.
    let mut draining: Option<u64> = None;
    let mut check = tokio::time::interval(CHECK_EVERY);
    // What the commands a stopping peer did not read are answered: they never ran there.
    let stopping = || PeerError::Unreachable(format!("{addr} is stopping"));
    let broken = |message: String| PeerError::Broken(format!("{addr}: {message}"));
    loop {
        if draining.is_some() && outstanding.is_empty() {
            return;
        }
        tokio::select! {
            read = reader.read_buf(&mut input) => {
                match read {
                    Ok(0) => {
                        let message = "the peer ended the forwarding exchange".to_string();
                        fail_all(outstanding, |_| broken(message.clone()));
                        return;
                    }
                    Ok(_) => heard = Instant::now(),
                    Err(e) => {
                        fail_all(outstanding, |_| broken(e.to_string()));
                        return;
                    }
                }
                loop {
                    let answer: MuxAnswer = match take_frame("a forwarded answer", &mut input) {
                        Ok(Some(answer)) => answer,
                        Ok(None) => break,
                        Err(e) => {
                            let message = with_causes(&e);
                            fail_all(outstanding, |_| broken(message.clone()));
                            return;
                        }
                    };
                    if answer.id == GOAWAY {
                        // Commands past the last one read never ran.
                        let last = answer
                            .body
                            .first_chunk::<8>()
                            .map(|b| u64::from_le_bytes(*b))
                            .unwrap_or(0);
                        for (_, (_, reply)) in outstanding.extract_if(|id, _| *id > last) {
                            let _ = reply.send(Err(stopping()));
                        }
                        // Unsent frames are of those commands: the peer reads no more, and
                        // bytes it never reads would make its close a reset, which can
                        // destroy answers not yet read here.
                        out.clear();
                        draining = Some(last);
                        continue;
                    }
                    if let Some((_, reply)) = outstanding.remove(&answer.id) {
                        let status = StatusCode::from_u16(answer.status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let _ = reply.send(Ok(PeerReply {
                            status,
                            headers: hyper::HeaderMap::new(),
                            body: Bytes::from(answer.body),
                        }));
                    }
                }
            }
            written = writer.write_buf(&mut out), if !out.is_empty() => {
                if let Err(e) = written {
                    fail_all(outstanding, |_| broken(e.to_string()));
                    return;
                }
            }
            pending = rx.recv() => match pending {
                // A peer that stops takes no more commands: this one never ran there.
                Some(pending) if draining.is_some() => {
                    let _ = pending.reply.send(Err(stopping()));
                }
                Some(pending) => {
                    enqueue(pending, &mut outstanding, &mut out);
                    // Everything already queued goes out in the same write.
                    while let Ok(pending) = rx.try_recv() {
                        enqueue(pending, &mut outstanding, &mut out);
                    }
                }
                None => return,
            },
            _ = check.tick() => {
                outstanding.retain(|_, (_, reply)| !reply.is_closed());
                let oldest = outstanding.values().map(|(sent, _)| *sent).min();
                if oldest.is_some_and(|sent| sent.elapsed() > SILENCE) && heard.elapsed() > SILENCE {
                    fail_all(outstanding, |_| broken(format!("nothing heard for {SILENCE:?}")));
                    return;
                }
            }
        }
    }
}

/// Opens the exchange's connection to `addr` and upgrades it; the error says why not.
async fn upgrade(
    client: &StreamClient,
    addr: &str,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{MUX_PATH}"))
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, PROTOCOL)
        .body(full_body(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = client
        .stream(addr, request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!(
            "HTTP {status} from {addr} for the forwarding exchange"
        ));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| {
        let e = with_causes(&e);
        format!("{addr}: the forwarding exchange did not upgrade: {e}")
    })?;
    Ok(TokioIo::new(upgraded))
}

/// Answers every command still waiting with `error`.
fn fail_all(outstanding: Outstanding, error: impl Fn(u64) -> PeerError) {
    for (id, (_, reply)) in outstanding {
        let _ = reply.send(Err(error(id)));
    }
}

/// The receiving side of `POST /v1/peer/mux`: the answer (`101 Switching Protocols`) and the
/// exchange to run once it is sent (see [`serve`]); a request that does not ask for the
/// upgrade gets `426 Upgrade Required` and nothing to run. The server's connection must
/// allow upgrades.
pub fn accept(
    request: Request<Incoming>,
    handler: Handler,
    stop: watch::Receiver<bool>,
) -> (Response<StreamingBody>, Option<BoxFuture<'static, ()>>) {
    let asked = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes()));
    if !asked {
        let mut refused = Response::new(full_body(Bytes::from_static(
            br#"{"error":{"code":"upgrade_required","message":"the forwarding exchange needs Upgrade: cella-mux"}}"#,
        )));
        *refused.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return (refused, None);
    }
    let upgrading = hyper::upgrade::on(request);
    let exchange = Box::pin(async move {
        match upgrading.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), handler, stop).await,
            Err(e) => {
                let e = with_causes(&e);
                tracing::debug!("a forwarding exchange did not upgrade: {e}");
            }
        }
    });
    let mut switching = Response::new(full_body(Bytes::new()));
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    switching.headers_mut().insert(
        CONNECTION,
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    switching
        .headers_mut()
        .insert(UPGRADE, hyper::header::HeaderValue::from_static(PROTOCOL));
    (switching, Some(exchange))
}

/// Serves an upgraded exchange: runs every command as it is read (concurrently) and writes
/// the answers as they finish. Reading stops when `stop` turns true (the node is shutting
/// down) with a goaway; the answers of commands already running are still written, then the
/// connection is closed.
pub async fn serve<IO>(io: IO, handler: Handler, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<Bytes>();
    // Dropped when reading stops: the answers end once every running command has answered.
    let mut answers_tx = Some(answers_tx);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut out = BytesMut::new();
    let mut last_read = 0u64;
    let mut answered = false;
    // Tells the peer which commands were read (they run and are answered); the later ones
    // never ran, so it may send them elsewhere.
    let goaway = |last_read: u64, out: &mut BytesMut| {
        let answer = MuxAnswer {
            id: GOAWAY,
            status: 0,
            body: last_read.to_le_bytes().to_vec(),
        };
        if let Some(chunk) = encode_frame("a goaway", &answer) {
            out.extend_from_slice(&chunk);
        }
    };
    loop {
        if answered && out.is_empty() {
            break;
        }
        tokio::select! {
            read = reader.read_buf(&mut input), if answers_tx.is_some() => {
                // The peer closed or broke the connection: nobody reads the answers.
                let Ok(n) = read else { break };
                if n == 0 {
                    answers_tx = None;
                    continue;
                }
                loop {
                    let request = match take_frame::<MuxRequest>("a forwarded command", &mut input) {
                        Ok(Some(request)) => request,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("ending a forwarding exchange: {e}");
                            goaway(last_read, &mut out);
                            answers_tx = None;
                            break;
                        }
                    };
                    let Some(answers) = answers_tx.clone() else { break };
                    last_read = request.id;
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let (status, body) = handler(request.path, Bytes::from(request.body), request.trace).await;
                        let answer = MuxAnswer {
                            id: request.id,
                            status: status.as_u16(),
                            body: body.to_vec(),
                        };
                        if let Some(chunk) = encode_frame("a forwarded answer", &answer) {
                            let _ = answers.send(chunk);
                        }
                    });
                }
            }
            _ = stop.wait_for(|stop| *stop), if answers_tx.is_some() => {
                goaway(last_read, &mut out);
                answers_tx = None;
            }
            answer = answers.recv(), if !answered => match answer {
                Some(chunk) => {
                    out.extend_from_slice(&chunk);
                    while let Ok(chunk) = answers.try_recv() {
                        out.extend_from_slice(&chunk);
                    }
                }
                None => answered = true,
            },
            written = writer.write_buf(&mut out), if !out.is_empty() => {
                if written.is_err() {
                    break;
                }
            }
        }
    }
    let _ = writer.shutdown().await;
    // Closing with unread commands in the connection would reset it, and a reset can destroy
    // answers the peer has not read yet: read until the peer closes (it does once answered).
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = vec![0u8; 8 << 10];
        while let Ok(1..) = reader.read(&mut sink).await {}
    })
    .await;
}
