//! Fair sharing of a node's guest execution: a type whose commands loop until their deadline,
//! driven without pause, is refused with `429` and `Retry-After` once over the limits it was
//! deployed with, while another type's commands keep completing; the limits set at deploy are
//! shown by the module endpoints and survive a restart.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cella_tests::{TestNode, component, wait_until};
use hyper::Method;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// `POST path` over a fresh connection: the status, the `Retry-After` header and the body.
async fn post(addr: &str, path: &str) -> (u16, Option<u64>, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("the request took over 30 s")
        .expect("the request failed");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    });
    (status, retry_after, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_type_over_its_limits_gets_429_while_the_counter_keeps_completing() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--deadline-ms", "1000"]).unwrap();
    assert_eq!(
        node.deploy("counter", &component("counter")).await.status,
        201
    );
    let bytes = std::fs::read(component("misbehave")).unwrap();
    let deployed = node
        .request(
            Method::PUT,
            "/v1/modules/spin?deadline-ms=200&max-concurrent=1",
            bytes,
        )
        .await;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(
        deployed.json["limits"],
        json!({"deadlineMs": 200, "maxConcurrent": 1, "cpuShare": null})
    );

    // Four clients drive the looping command without pause, each on its own entity (so that
    // only the scheduler, not the entity's lock, holds them back).
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut loopers = Vec::new();
    for i in 0..4 {
        let (addr, stop, refused) = (node.addr(), stop.clone(), refused.clone());
        loopers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = post(&addr, &format!("/v1/entities/spin/k{i}/spin")).await;
                if answer.0 == 429 {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                answers.push(answer);
            }
            answers
        }));
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            refused.load(Ordering::Relaxed) > 0
        })
        .await,
        "the looping type was never refused"
    );

    // The counter keeps being served while the loopers run: every command completes.
    counter_counts_to_50(&node).await;
    let refused_meanwhile = refused.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for looper in loopers {
        answers.extend(looper.await.unwrap());
    }
    assert!(refused_meanwhile > 0);

    // Every answer is the deadline (the call ran) or a 429 naming the type and its limit,
    // with a Retry-After.
    let mut overloaded = 0;
    for (status, retry_after, body) in &answers {
        let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        match status {
            504 => assert_eq!(error["error"]["code"], "deadline_exceeded", "{body}"),
            429 => {
                overloaded += 1;
                assert!(retry_after.is_some_and(|s| s >= 1), "{body}");
                assert_eq!(error["error"]["code"], "overloaded", "{body}");
                assert_eq!(error["error"]["type"], "spin", "{body}");
                assert!(
                    ["max-concurrent", "cpu-share", "queue"]
                        .contains(&error["error"]["limit"].as_str().unwrap_or("")),
                    "{body}"
                );
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert!(overloaded > 0);

    let metrics = node.request(Method::GET, "/metrics", Vec::new()).await.body;
    let series = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(series("cella_type_rejected_total{type=\"spin\"") >= overloaded as f64);
    assert!(series("cella_type_guest_calls_total{type=\"counter\"}") >= 50.0);
    assert!(series("cella_type_guest_busy_seconds_total{type=\"spin\"}") > 0.0);
}

#[tokio::test]
async fn limits_given_at_deploy_are_shown_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &["--deadline-ms", "500"]).unwrap();
    let bytes = std::fs::read(component("counter")).unwrap();
    let put = async |node: &TestNode, query: &str| {
        node.request(
            Method::PUT,
            &format!("/v1/modules/counter{query}"),
            bytes.clone(),
        )
        .await
    };

    // Bad limits are refused, naming the parameter.
    for (query, names) in [
        ("?max-concurrent=0", "max-concurrent"),
        ("?cpu-share=lots", "cpu-share"),
        ("?deadline-ms=9000", "deadline-ms"),
    ] {
        let r = put(&node, query).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.body.contains(names), "{query}: {}", r.body);
    }

    let r = put(&node, "?max-concurrent=3&cpu-share=2").await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Re-deploying the same bytes changes only the limits given.
    let r = put(&node, "?deadline-ms=100").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = json!({"deadlineMs": 100, "maxConcurrent": 3, "cpuShare": 2});
    assert_eq!(r.json["limits"], expected);
    assert_eq!(node.call("counter", "c", "add", "2").await.json, json!(2));

    node.restart().unwrap();
    let one = node
        .request(Method::GET, "/v1/modules/counter", Vec::new())
        .await;
    assert_eq!(one.json["limits"], expected, "{}", one.body);
    let all = node.request(Method::GET, "/v1/modules", Vec::new()).await;
    assert_eq!(all.json["modules"][0]["limits"], expected, "{}", all.body);
    assert_eq!(node.call("counter", "c", "add", "1").await.json, json!(3));

    // Each change of limits is in the audit trail, with the limits it left.
    let audit = node.request(Method::GET, "/v1/audit", Vec::new()).await;
    let changes: Vec<&str> = audit.json["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "limits")
        .filter_map(|r| r["detail"].as_str())
        .collect();
    assert_eq!(
        changes,
        [
            "deadline-ms=default max-concurrent=3 cpu-share=2",
            "deadline-ms=100 max-concurrent=3 cpu-share=2"
        ],
        "{}",
        audit.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_replicated_to_every_node_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cella_tests::cluster::start_cluster(dir.path(), 3, 2, &[]).await;
    let bytes = std::fs::read(component("counter")).unwrap();
    // Any node takes the deploy (it is carried out by the metadata group's leader).
    let r = nodes[1]
        .request(
            Method::PUT,
            "/v1/modules/counter?max-concurrent=2&cpu-share=5",
            bytes,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expected = json!({"deadlineMs": null, "maxConcurrent": 2, "cpuShare": 5});
    for node in &nodes {
        assert!(
            wait_until(Duration::from_secs(30), || async {
                node.request(Method::GET, "/v1/modules/counter", Vec::new())
                    .await
                    .json["limits"]
                    == expected
            })
            .await,
            "{} does not show the limits",
            node.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_type_without_limits_of_its_own_does_not_starve_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--deadline-ms", "300"]).unwrap();
    assert_eq!(
        node.deploy("counter", &component("counter")).await.status,
        201
    );
    assert_eq!(
        node.deploy("spin", &component("misbehave")).await.status,
        201
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicUsize::new(0));
    let mut loopers = Vec::new();
    for i in 0..6 {
        let (addr, stop, ran) = (node.addr(), stop.clone(), ran.clone());
        loopers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, _, _) = post(&addr, &format!("/v1/entities/spin/k{i}/spin")).await;
                if status == 504 {
                    ran.fetch_add(1, Ordering::Relaxed);
                }
                statuses.push(status);
            }
            statuses
        }));
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ran.load(Ordering::Relaxed) >= 2
        })
        .await,
        "the looping calls never ran to their deadline"
    );
    counter_counts_to_50(&node).await;
    stop.store(true, Ordering::Relaxed);
    for looper in loopers {
        for status in looper.await.unwrap() {
            assert!(
                [504, 429].contains(&status),
                "a looping call answered {status}"
            );
        }
    }
}

/// 50 `add 1` on the counter `c` (fresh), each completing within 20 s with the next total.
async fn counter_counts_to_50(node: &TestNode) {
    for i in 1..=50 {
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            node.call("counter", "c", "add", "1"),
        )
        .await
        .expect("a counter command took over 20 s");
        assert_eq!(
            (reply.status, &reply.json),
            (200, &json!(i)),
            "{}",
            reply.body
        );
    }
}
