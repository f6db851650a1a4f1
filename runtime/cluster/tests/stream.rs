//! The leader's side of the append stream (`cella_cluster::stream::send`) over real loopback:
//! it connects only once openraft's request stream yields a request. openraft serves its
//! replication back-off (after an unreachable follower) inside that request stream, so a
//! stream that connected first would fail again at once and retry in a tight loop (a node
//! down made the others spin and log tens of thousands of lines a second).

use std::time::Duration;

use cella_cluster::{TypeConfig, network::PeerClient, stream::send};
use futures_util::StreamExt;
use openraft::raft::AppendEntriesRequest;
use tokio::net::TcpListener;

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: openraft::Vote::new(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }
}

#[tokio::test]
async fn the_stream_connects_only_after_its_first_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (release, first) = tokio::sync::oneshot::channel::<()>();
    // A request stream that holds its first request back, as openraft does while backing off.
    let input = futures_util::stream::once(async move {
        let _ = first.await;
        heartbeat()
    })
    .boxed();
    let sending = tokio::spawn(send(
        PeerClient::new(),
        addr,
        1,
        input,
        Duration::from_secs(10),
    ));
    // Given ample time to connect early, it does not.
    let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        early.is_err(),
        "connected before any request was there to send"
    );
    release.send(()).expect("the stream is still waiting");
    let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "no connection after the first request"
    );
    sending.abort();
}

#[tokio::test]
async fn an_empty_request_stream_connects_nowhere() {
    // Nothing listens at this address: connecting would fail as unreachable.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let input = futures_util::stream::empty().boxed();
    let answers = send(PeerClient::new(), addr, 1, input, Duration::from_secs(10))
        .await
        .expect("no request, so no connection and no error");
    assert_eq!(answers.count().await, 0);
}
