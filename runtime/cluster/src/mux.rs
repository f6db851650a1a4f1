//! Forwarded commands between nodes, multiplexed: every entity command one node forwards to
//! another travels on one long-lived HTTP/1.1 exchange per node pair (`POST /v1/peer/mux`),
//! whose request body carries the commands and whose response body carries the answers, each
//! a length-prefixed postcard frame (the framing of [`crate::stream`]).
//!
//! A command forwarded as an HTTP request of its own costs a pooled connection's request and
//! answer, with their headers, parsing and wakeups on both nodes. Here the commands waiting at
//! once go out in one write, the answers waiting at once come back in one, and the receiving
//! node runs each command as soon as it is read, so answers may come back in any order: each
//! carries the id of its command.
//!
//! Failures keep the forwarding rule of the HTTP path: a command is retried elsewhere only
//! when it certainly did not run. Commands queued on an exchange whose connection could not be
//! made fail as [`PeerError::Unreachable`]; commands sent on an exchange that breaks fail as
//! [`PeerError::Broken`] (their outcome is unknown). The next command opens a new exchange.
//! A peer that shuts down stops reading and says which command it read last (a *goaway*):
//! it answers those, and the later ones fail as unreachable, since they never ran. An
//! exchange that hears nothing for 30 s while a command waits as long is taken for dead.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::{future::BoxFuture, stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::{
    Method, Request, StatusCode,
    body::{Frame, Incoming},
    header::CONTENT_TYPE,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    network::{PeerError, PeerReply, StreamClient},
    stream::{FrameReader, StreamingBody, encode_frame},
    types::decode,
};

/// The path of the multiplexed exchange.
pub const MUX_PATH: &str = "/v1/peer/mux";

/// One forwarded command: the request path it was sent to and its body.
#[derive(Debug, Serialize, Deserialize)]
struct MuxRequest {
    id: u64,
    path: String,
    body: Vec<u8>,
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

/// Runs one forwarded command (its path and body) and gives its answer (status and body).
pub type Handler =
    Arc<dyn Fn(String, Bytes) -> BoxFuture<'static, (StatusCode, Bytes)> + Send + Sync>;

/// A command waiting to go out, and where its answer goes.
struct Pending {
    path: String,
    body: Bytes,
    reply: oneshot::Sender<Result<PeerReply, PeerError>>,
}

/// The exchanges of one node to its peers: one task per peer address.
#[derive(Clone, Default)]
pub(crate) struct Links {
    links: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>>,
}

/// A body of the chunks sent on `rx`; chunks already waiting are written as one.
fn coalescing_body(rx: mpsc::UnboundedReceiver<Bytes>) -> StreamingBody {
    let chunks = stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        let mut more = Vec::new();
        while more.len() < 256 {
            match rx.try_recv() {
                Ok(chunk) => more.push(chunk),
                Err(_) => break,
            }
        }
        let chunk = if more.is_empty() {
            first
        } else {
            let len = first.len() + more.iter().map(Bytes::len).sum::<usize>();
            let mut joined = BytesMut::with_capacity(len);
            joined.extend_from_slice(&first);
            for chunk in more {
                joined.extend_from_slice(&chunk);
            }
            joined.freeze()
        };
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    StreamBody::new(chunks).boxed_unsync()
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
        timeout: Duration,
    ) -> Result<PeerReply, PeerError> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            path: path.to_string(),
            body,
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

/// How long the answer's head of a new exchange may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An exchange that has heard nothing for this long while a command has waited as long is
/// taken for dead (a peer gone without closing the connection), and its commands fail.
const SILENCE: Duration = Duration::from_secs(30);
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
    let (body_tx, body_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut outstanding = Outstanding::new();
    let mut next_id = 0u64;
    let mut enqueue = |pending: Pending, outstanding: &mut Outstanding| {
        // Its caller gave up: not worth running.
        if pending.reply.is_closed() {
            return;
        }
        next_id += 1;
        let request = MuxRequest {
            id: next_id,
            path: pending.path,
            body: pending.body.to_vec(),
        };
        match encode_frame("a forwarded command", &request) {
            Some(chunk) => {
                outstanding.insert(next_id, (Instant::now(), pending.reply));
                // The body lives as long as this exchange.
                let _ = body_tx.send(chunk);
            }
            None => {
                let _ = pending.reply.send(Err(PeerError::Request(
                    "cannot encode the forwarded command".into(),
                )));
            }
        }
    };
    enqueue(first, &mut outstanding);
    let request = match Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{MUX_PATH}"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(coalescing_body(body_rx))
    {
        Ok(request) => request,
        Err(e) => {
            fail_all(outstanding, |_| PeerError::Request(e.to_string()));
            return;
        }
    };
    // While the answer's head is awaited, later commands already go out.
    let mut head = std::pin::pin!(tokio::time::timeout(
        HEAD_TIMEOUT,
        client.stream(addr, request)
    ));
    let response = loop {
        tokio::select! {
            response = &mut head => break response,
            pending = rx.recv() => match pending {
                Some(pending) => enqueue(pending, &mut outstanding),
                None => return,
            },
        }
    };
    let response = match response {
        Ok(Ok(response)) if response.status() == StatusCode::OK => response,
        // The peer does not serve the exchange: none of its commands ran.
        Ok(Ok(response)) => {
            let status = response.status();
            fail_all(outstanding, |_| {
                PeerError::Unreachable(format!(
                    "HTTP {status} from {addr} for the forwarding exchange"
                ))
            });
            return;
        }
        Ok(Err(e)) => {
            let unreachable = matches!(e, PeerError::Unreachable(_));
            let message = e.to_string();
            fail_all(outstanding, |_| {
                if unreachable {
                    PeerError::Unreachable(message.clone())
                } else {
                    PeerError::Broken(message.clone())
                }
            });
            return;
        }
        Err(_) => {
            fail_all(outstanding, |_| {
                PeerError::Broken(format!(
                    "{addr}: no forwarding exchange within {HEAD_TIMEOUT:?}"
                ))
            });
            return;
        }
    };
    let mut reader = FrameReader::new(response.into_body());
    let mut heard = Instant::now();
    // Set once the peer said it stops reading: the last command it read.
    let mut draining: Option<u64> = None;
    let mut check = tokio::time::interval(CHECK_EVERY);
    // What the commands a stopping peer did not read are answered: they never ran there.
    let stopping = || PeerError::Unreachable(format!("{addr} is stopping"));
    loop {
        if draining.is_some() && outstanding.is_empty() {
            return;
        }
        tokio::select! {
            next = reader.next() => {
                let bytes = match next {
                    Ok(Some(bytes)) => bytes,
                    other => {
                        let message = match other {
                            Err(message) => message,
                            _ => "the peer ended the forwarding exchange".to_string(),
                        };
                        fail_all(outstanding, |_| PeerError::Broken(format!("{addr}: {message}")));
                        return;
                    }
                };
                heard = Instant::now();
                let answer: MuxAnswer = match decode("a forwarded answer", &bytes) {
                    Ok(answer) => answer,
                    Err(e) => {
                        fail_all(outstanding, |_| PeerError::Broken(format!("{addr}: {e}")));
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
            pending = rx.recv() => match pending {
                // A peer that stops takes no more commands: this one never ran there.
                Some(pending) if draining.is_some() => {
                    let _ = pending.reply.send(Err(stopping()));
                }
                Some(pending) => enqueue(pending, &mut outstanding),
                None => return,
            },
            _ = check.tick() => {
                outstanding.retain(|_, (_, reply)| !reply.is_closed());
                let oldest = outstanding.values().map(|(sent, _)| *sent).min();
                if oldest.is_some_and(|sent| sent.elapsed() > SILENCE) && heard.elapsed() > SILENCE {
                    fail_all(outstanding, |_| {
                        PeerError::Broken(format!("{addr}: nothing heard for {SILENCE:?}"))
                    });
                    return;
                }
            }
        }
    }
}

/// Answers every command still waiting with `error`.
fn fail_all(outstanding: Outstanding, error: impl Fn(u64) -> PeerError) {
    for (id, (_, reply)) in outstanding {
        let _ = reply.send(Err(error(id)));
    }
}

/// The receiving side: runs every command of `body` as it is read (concurrently) and streams
/// the answers back as they finish. Reading stops when `stop` turns true (the node is
/// shutting down); the answers of commands already running are still sent.
pub fn serve(body: Incoming, handler: Handler, mut stop: watch::Receiver<bool>) -> StreamingBody {
    let (answers_tx, answers_rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(body);
        let mut last_read = 0u64;
        // Tells the peer which commands were read (they run and are answered); the later
        // ones never ran, so it may send them elsewhere.
        let goaway = |last_read: u64| {
            let answer = MuxAnswer {
                id: GOAWAY,
                status: 0,
                body: last_read.to_le_bytes().to_vec(),
            };
            if let Some(chunk) = encode_frame("a goaway", &answer) {
                let _ = answers_tx.send(chunk);
            }
        };
        loop {
            let next = tokio::select! {
                next = reader.next() => next,
                _ = stop.wait_for(|stop| *stop) => {
                    goaway(last_read);
                    break;
                }
            };
            let Ok(Some(bytes)) = next else {
                break;
            };
            let request = match decode::<MuxRequest>("a forwarded command", &bytes) {
                Ok(request) => request,
                Err(e) => {
                    tracing::warn!("ending a forwarding exchange: {e}");
                    goaway(last_read);
                    break;
                }
            };
            last_read = request.id;
            let handler = handler.clone();
            let answers = answers_tx.clone();
            tokio::spawn(async move {
                let (status, body) = handler(request.path, Bytes::from(request.body)).await;
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
    });
    coalescing_body(answers_rx)
}
