//! Misbehaving guests fail only their own command: a trap, an endless loop and unbounded
//! allocation each get an error reply while the node keeps serving other entities.

use std::time::{Duration, Instant};

use cella_tests::{TestNode, component};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_guests_fail_only_their_command() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--deadline-ms", "300", "--memory-limit-mb", "32"],
    )
    .unwrap();
    assert_eq!(
        node.deploy("bad", &component("misbehave")).await.status,
        201
    );
    assert_eq!(
        node.deploy("counter", &component("counter")).await.status,
        201
    );
    assert_eq!(node.call("bad", "x", "ok", "").await.json, json!(1));

    let trap = node.call("bad", "x", "trap", "").await;
    assert_eq!(
        (trap.status, trap.json["error"]["code"].as_str()),
        (500, Some("entity_failed")),
        "{}",
        trap.body
    );

    // A looping guest is stopped by its deadline while other entities keep being served.
    let url = node.url.clone();
    let spin = tokio::spawn(async move {
        let started = Instant::now();
        let r = cella_cli::client::send(
            &url,
            hyper::Method::POST,
            "/v1/entities/bad/y/spin",
            Vec::new(),
            None,
        )
        .await
        .unwrap();
        (r, started.elapsed())
    });
    for i in 1..=5 {
        assert_eq!(node.call("counter", "c", "add", "1").await.json, json!(i));
    }
    let (spin, took) = spin.await.unwrap();
    assert_eq!(spin.status, 504, "{}", spin.body);
    assert!(spin.body.contains("deadline_exceeded"));
    assert!(took < Duration::from_secs(20), "deadline took {took:?}");

    let balloon = node.call("bad", "z", "balloon", "").await;
    assert_eq!(
        (balloon.status, balloon.json["error"]["code"].as_str()),
        (500, Some("entity_failed")),
        "{}",
        balloon.body
    );

    // Failed commands persisted nothing; the entity still works.
    assert_eq!(node.call("bad", "x", "ok", "").await.json, json!(2));
    assert_eq!(node.call("bad", "y", "ok", "").await.json, json!(1));
    assert_eq!(node.call("bad", "z", "ok", "").await.json, json!(1));
    assert_eq!(node.call("counter", "c", "get", "").await.json, json!(5));
}
