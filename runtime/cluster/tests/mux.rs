//! The forwarding exchange (`cella_cluster::mux`) over a real loopback connection, upgraded
//! from HTTP/1.1: answers that finish out of order reach their own callers, a peer that cannot
//! be reached fails as unreachable (retryable), a peer that goes away mid-command fails as
//! broken (outcome unknown), and a request that does not ask for the upgrade is refused.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cella_cluster::{
    mux::{Handler, MUX_PATH},
    network::{PeerClient, PeerError, PeerReply},
};
use hyper::{StatusCode, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

/// Serves the forwarding exchange with `handler` on a loopback port until `stop`; dropping
/// the returned set closes the listener and every connection.
async fn serve(handler: Handler, stop: watch::Receiver<bool>) -> (String, JoinSet<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let handler = handler.clone();
            let stop = stop.clone();
            // The upgraded exchange runs in this connection's task, so that dropping the
            // server ends it too.
            connections.spawn(async move {
                let (exchange_tx, exchange_rx) = tokio::sync::oneshot::channel();
                let exchange_tx = std::sync::Mutex::new(Some(exchange_tx));
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    assert_eq!(req.uri().path(), MUX_PATH);
                    let (response, exchange) =
                        cella_cluster::mux::accept(req, handler.clone(), stop.clone());
                    if let (Some(exchange), Some(tx)) =
                        (exchange, exchange_tx.lock().unwrap().take())
                    {
                        let _ = tx.send(exchange);
                    }
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                if let Ok(exchange) = exchange_rx.await {
                    exchange.await;
                }
            });
        }
    });
    (addr, tasks)
}

/// A stop signal that never fires.
fn running() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

/// Forwards the command `name` of `counter/k` with an empty body.
async fn add(client: &PeerClient, addr: &str, name: &str) -> Result<PeerReply, PeerError> {
    let path = format!("/v1/entities/counter/k/{name}");
    client
        .forward(addr, &path, Bytes::new(), Duration::from_secs(10))
        .await
}

/// [`add`] in a task of its own.
fn spawn_add(
    client: &PeerClient,
    addr: &str,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<PeerReply, PeerError>> {
    let (client, addr) = (client.clone(), addr.to_string());
    tokio::spawn(async move { add(&client, &addr, name).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_their_callers_in_any_order() {
    // Command `n` takes (20 - n) ms: later commands finish first.
    let handler: Handler = Arc::new(|path: String, body: Bytes, _| {
        Box::pin(async move {
            let n: u64 = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(20u64.saturating_sub(n))).await;
            let mut answer = path.into_bytes();
            answer.extend_from_slice(&body);
            (StatusCode::OK, Bytes::from(answer))
        })
    });
    let (addr, _server) = serve(handler, running()).await;
    let client = PeerClient::new();
    let mut calls = JoinSet::new();
    for n in 0..20u64 {
        let client = client.clone();
        let addr = addr.clone();
        calls.spawn(async move {
            let path = format!("/v1/entities/counter/k/{n}");
            let reply = client
                .forward(
                    &addr,
                    &path,
                    Bytes::from(format!(" body {n}")),
                    Duration::from_secs(10),
                )
                .await
                .expect("answered");
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, Bytes::from(format!("{path} body {n}")));
        });
    }
    while let Some(call) = calls.join_next().await {
        call.expect("call");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_reported_as_never_sent() {
    // A port that was just free: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let client = PeerClient::new();
    let err = add(&client, &addr, "add").await.err().expect("no peer");
    assert!(matches!(err, PeerError::Unreachable(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gone_mid_command_leaves_the_outcome_unknown_and_the_next_exchange_works() {
    // The first command never finishes; the server then goes away.
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler: Handler = Arc::new(move |path: String, _body: Bytes, _| {
        let started = started_tx.clone();
        Box::pin(async move {
            if path.ends_with("/hang") {
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
            (StatusCode::OK, Bytes::from_static(b"7"))
        })
    });
    let (addr, server) = serve(handler.clone(), running()).await;
    let client = PeerClient::new();
    let call = spawn_add(&client, &addr, "hang");
    started.recv().await.expect("the command started");
    drop(server);
    let err = call.await.expect("call").err().expect("the peer went away");
    assert!(matches!(err, PeerError::Broken(_)), "{err}");

    // A new server on another port: the client opens a new exchange for it.
    let (addr, _server) = serve(handler, running()).await;
    let reply = add(&client, &addr, "add").await.expect("answered");
    assert_eq!(reply.body, Bytes::from_static(b"7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_peer_answers_what_it_read_and_refuses_the_rest_as_never_run() {
    let (release_tx, release) = watch::channel(false);
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler: Handler = Arc::new(move |path: String, _body: Bytes, _| {
        let started = started_tx.clone();
        let mut release = release.clone();
        Box::pin(async move {
            if path.ends_with("/slow") {
                let _ = started.send(());
                let _ = release.wait_for(|go| *go).await;
                return (StatusCode::OK, Bytes::from_static(b"done"));
            }
            (StatusCode::OK, Bytes::from_static(b"7"))
        })
    });
    let (stop_tx, stop) = watch::channel(false);
    let (addr, _server) = serve(handler, stop).await;
    let client = PeerClient::new();
    let slow = spawn_add(&client, &addr, "slow");
    started.recv().await.expect("the slow command started");
    stop_tx.send(true).expect("stop");
    // Commands sent once the peer stopped reading are refused as never run (retryable).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match add(&client, &addr, "add").await {
            Err(PeerError::Unreachable(_)) => break,
            Ok(reply) => assert_eq!(reply.body, Bytes::from_static(b"7")),
            Err(e) => panic!("expected a refusal, got {e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
    }
    // The command it had read still gets its answer.
    release_tx.send(true).expect("release");
    let reply = slow.await.expect("call").expect("answered");
    assert_eq!(reply.body, Bytes::from_static(b"done"));
}

#[tokio::test]
async fn a_plain_request_for_the_exchange_is_told_to_upgrade() {
    let handler: Handler = Arc::new(|_, _, _| Box::pin(async { (StatusCode::OK, Bytes::new()) }));
    let (addr, _server) = serve(handler, running()).await;
    let reply = PeerClient::new()
        .send(
            &addr,
            hyper::Method::POST,
            MUX_PATH,
            &[],
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer");
    assert_eq!(reply.status, StatusCode::UPGRADE_REQUIRED);
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(body.contains("upgrade_required"), "{body}");
}
