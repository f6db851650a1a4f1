//! Pipelined replication: the append stream of one group to one follower is one HTTP/1.1
//! exchange whose request body carries the append requests and whose response body carries
//! their answers, in order, each a length-prefixed postcard frame (`frame.rs`).
//!
//! openraft hands a replication session a stream of append requests and expects the answers
//! in the same order. Answering one request before sending the next (openraft's default) makes
//! every batch wait for the follower's previous round trip, which includes the follower's
//! durable write. Here up to [`PIPELINE`] requests are on the wire at once: a new entry goes
//! out while the previous ones are being written. Order holds because one connection carries
//! the whole stream and the follower feeds it to `Raft::stream_append`, which answers in order.
//! Heartbeats, votes and snapshots keep their single-shot RPCs (see [`crate::network`]).
//!
//! In the peer transport, above the client it sends through and below the raft network that
//! opens the streams; [`StreamingBody`] and [`full_body`] are re-exported from the framing.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{
    Stream, StreamExt,
    future::BoxFuture,
    stream::{self, BoxStream},
};
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode, body::Incoming, header::CONTENT_TYPE};
use openraft::{
    Raft,
    error::{NetworkError, RPCError, RaftError, Unreachable},
    raft::{AppendEntriesRequest, StreamAppendResult},
};
use tokio::sync::{Semaphore, mpsc};

pub use crate::frame::{StreamingBody, full_body};
use crate::{
    StateMachine, TypeConfig,
    client::PeerClient,
    frame::{FrameReader, channel_body, encode_frame},
    peer::{RAFT_PATH, rpc_error},
    types::decode,
};

type C = TypeConfig;

/// The follower's answers to an append stream, in order.
pub type Answers<'s> = BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>;

/// Append requests of one stream sent and not yet answered, at most.
pub const PIPELINE: usize = 8;

/// How often a stream waiting for answers checks how long the oldest has been outstanding.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The last path segment of the append stream (after `{RAFT_PATH}{group}/`).
pub const STREAM_KIND: &str = "stream";

/// The follower's side: feeds the append requests of `body` to `raft` in order and answers
/// each, in order, in the returned body. The body ends when `stop` turns true (the node is
/// shutting down), so that the exchange does not hold the node's graceful shutdown.
pub fn serve(
    raft: Raft<C, StateMachine>,
    body: Incoming,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> StreamingBody {
    let (requests_tx, requests_rx) = mpsc::channel::<AppendEntriesRequest<C>>(PIPELINE);
    tokio::spawn(async move {
        let mut reader = FrameReader::new(body);
        while let Ok(Some(bytes)) = reader.next().await {
            let request = match decode::<AppendEntriesRequest<C>>("an append request", &bytes) {
                Ok(request) => request,
                Err(e) => {
                    tracing::warn!("ending an append stream: {e}");
                    break;
                }
            };
            if requests_tx.send(request).await.is_err() {
                break;
            }
        }
    });
    let input = stream::unfold(requests_rx, |mut rx| async move {
        rx.recv().await.map(|request| (request, rx))
    });
    let (answers_tx, answers_rx) = mpsc::channel::<Bytes>(PIPELINE);
    tokio::spawn(async move {
        let mut answers = std::pin::pin!(raft.stream_append(input));
        loop {
            let answer = tokio::select! {
                answer = answers.next() => answer,
                _ = stop.wait_for(|stop| *stop) => None,
            };
            let Some(answer) = answer else {
                break;
            };
            let answer: Result<StreamAppendResult<C>, RaftError<C>> =
                answer.map_err(RaftError::Fatal);
            let Some(chunk) = encode_frame("an append answer", &answer) else {
                break;
            };
            if answers_tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    channel_body(answers_rx)
}

/// Aborts the task feeding a stream when the stream's reader is dropped.
struct Feeder(tokio::task::JoinHandle<()>);

impl Drop for Feeder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn network_error(message: String) -> RPCError<C> {
    RPCError::Network(NetworkError::from_string(message))
}

/// A failure of the stream as a network error, its causes kept.
fn stream_error(e: &crate::Error) -> RPCError<C> {
    RPCError::Network(NetworkError::new(e))
}

/// The leader's side: sends `input` to the follower at `addr` as one pipelined stream and
/// yields the follower's answers in order. An answer missing for `timeout` while requests
/// are outstanding ends the stream with an error (openraft then starts a new one).
pub fn send<'s, S>(
    client: PeerClient,
    addr: String,
    group: u64,
    input: S,
    timeout: Duration,
) -> BoxFuture<'s, Result<Answers<'s>, RPCError<C>>>
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
{
    Box::pin(async move {
        let mut input = input;
        // The first request is awaited before connecting: openraft serves its replication
        // back-off (after an unreachable follower) inside the request stream, so connecting
        // first would fail again at once and retry without pause, in a tight loop.
        let Some(first) = input.next().await else {
            return Ok(stream::empty().boxed());
        };
        let mut input = stream::iter(Some(first)).chain(input);
        let (body_tx, body_rx) = mpsc::channel::<Bytes>(PIPELINE);
        let window = Arc::new(Semaphore::new(PIPELINE));
        // When each request sent and not yet answered was sent, oldest first (the window also
        // counts one being prepared).
        let outstanding: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}{RAFT_PATH}{group}/{STREAM_KIND}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(channel_body(body_rx))
            .map_err(|e| network_error(format!("cannot build the append stream: {e}")))?;
        let feeder_window = window.clone();
        let sent = outstanding.clone();
        let feeder = Feeder(tokio::spawn(async move {
            loop {
                // Pull the next request only when the window has room: what accumulates
                // meanwhile goes in that request, as one batch.
                let Ok(permit) = feeder_window.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                let Some(request) = input.next().await else {
                    break;
                };
                let Some(chunk) = encode_frame("an append request", &request) else {
                    break;
                };
                sent.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(Instant::now());
                if body_tx.send(chunk).await.is_err() {
                    break;
                }
            }
        }));
        let response = tokio::time::timeout(timeout, client.stream(&addr, request))
            .await
            .map_err(|_| network_error(format!("{addr}: no append stream within {timeout:?}")))?
            .map_err(rpc_error)?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(network_error(format!(
                "HTTP {status} from {addr} for the append stream: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let reader = FrameReader::new(response.into_body());
        let answers = stream::unfold(Some((reader, window, feeder)), move |state| {
            let addr = addr.clone();
            let outstanding = outstanding.clone();
            async move {
                let (mut reader, window, feeder) = state?;
                let oldest = || {
                    outstanding
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .front()
                        .copied()
                };
                let next = loop {
                    match tokio::time::timeout(CHECK_EVERY.min(timeout), reader.next()).await {
                        Ok(next) => break next,
                        // Nothing outstanding, or not for long yet: keep listening.
                        Err(_) if oldest().is_none_or(|sent| sent.elapsed() < timeout) => {}
                        Err(_) => {
                            let message = format!("{addr}: no append answer within {timeout:?}");
                            return Some((Err(network_error(message)), None));
                        }
                    }
                };
                match next {
                    Ok(Some(bytes)) => {
                        outstanding
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .pop_front();
                        window.add_permits(1);
                        let answer: Result<StreamAppendResult<C>, RaftError<C>> =
                            match decode("an append answer", &bytes) {
                                Ok(answer) => answer,
                                Err(e) => return Some((Err(stream_error(&e)), None)),
                            };
                        match answer {
                            Ok(result) => {
                                let go_on = result.is_ok();
                                Some((Ok(result), go_on.then_some((reader, window, feeder))))
                            }
                            Err(e) => {
                                Some((Err(RPCError::Unreachable(Unreachable::new(&e))), None))
                            }
                        }
                    }
                    // The follower ended the stream: fine when all was answered, else a failure
                    // openraft must see (the next stream starts from what was answered).
                    Ok(None) => {
                        let unanswered = outstanding
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .len();
                        (unanswered > 0).then(|| {
                            let message = format!(
                                "{addr}: the append stream ended with {unanswered} unanswered"
                            );
                            (Err(network_error(message)), None)
                        })
                    }
                    Err(e) => Some((Err(stream_error(&e)), None)),
                }
            }
        });
        Ok(answers.boxed())
    })
}
