//! Authenticated peers over real processes: a 3-node cluster with `--cluster-secret` works
//! (modules and writes replicate, forwarded commands run); the peer requests an attacker on
//! the network would send — a vote with a huge term, a group-0 append that installs a module,
//! a snapshot, a leader transfer, an append stream, a forwarding exchange — get 401 and change
//! nothing when they carry no credentials or another secret; a signed request is accepted once;
//! a single node refuses every peer request and `cella cluster add-node` says why; a cluster
//! node without a secret refuses to start unless `--insecure-peers` is given.

#[path = "common/forged.rs"]
mod forged;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cella_cluster::{
    Placement,
    auth::PeerAuth,
    network::{PeerClient, PeerError},
    types::encode,
};
use cella_core::EntityId;
use cella_tests::{
    TestNode, cella_bin,
    cluster::{CLUSTER_SECRET, cluster_status, groups, has_modules, leaders, start_cluster},
    component, free_ports, output_text, wait_until,
};
use hyper::{Method, StatusCode};
use openraft::{alias::VoteOf, raft::TransferLeaderRequest};

use self::forged::{ATTACK_TERM, C, assert_refused, log_id, module_append, post, vote};

const PARTITIONS: u32 = 4;
const WRONG_SECRET: &str = "not-the-cluster-secret-at-all-0000";

/// What each kind of single raft RPC would carry from an attacker.
fn attacks() -> Vec<(&'static str, Vec<u8>)> {
    let transfer = TransferLeaderRequest::<C>::new(
        VoteOf::<C>::new_committed(ATTACK_TERM, 9),
        9,
        Some(log_id(ATTACK_TERM, 9, 1)),
    );
    vec![
        ("vote", vote()),
        ("append", encode("an append", &module_append()).unwrap()),
        (
            "snapshot",
            // Not a well-formed snapshot: it must not matter, nothing is decoded.
            b"a partition snapshot replacing every entity".to_vec(),
        ),
        ("transfer", encode("a transfer", &transfer).unwrap()),
        ("vote", b"garbage".to_vec()),
    ]
}

/// What an attack could have changed: the modules each node lists, and group 0 as node 1
/// sees it (its term stays far below the attack's).
async fn observable(nodes: &[TestNode]) -> (Vec<String>, u64) {
    let mut modules = Vec::new();
    for node in nodes {
        modules.push(node.request(Method::GET, "/v1/modules", "").await.body);
    }
    let meta = &groups(&cluster_status(&nodes[0]).await)[&0];
    (modules, meta["term"].as_u64().unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_a_secret_works_and_refuses_strangers() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3, PARTITIONS, &[]).await;
    let r = nodes[0].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    // The module replicates through group 0 (signed appends) to every node.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            for node in &nodes {
                if !has_modules(node, &["counter"]).await {
                    return false;
                }
            }
            true
        })
        .await,
        "the module did not reach every node"
    );
    // A command whose partition node 1 does not lead is forwarded (the signed forwarding
    // exchange) and runs on its leader; its write replicates there.
    let placement = Placement {
        partitions: PARTITIONS,
        ..Placement::default()
    };
    // Node 1 initializes every group; the balancer then hands partitions to the other nodes.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            leaders(&nodes[0]).await.values().any(|leader| *leader != 1)
        })
        .await,
        "node 1 still leads every partition"
    );
    let led = leaders(&nodes[0]).await;
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let group = placement.partition(&EntityId::new("counter", k.as_str()));
            led.get(&group).is_some_and(|leader| *leader != 1)
        })
        .expect("a key led elsewhere");
    for expected in 1..=3 {
        let r = nodes[0].call("counter", &key, "add", "1").await;
        assert_eq!(r.status, 200, "forwarded add: {}", r.body);
        assert_eq!(r.json, expected, "{}", r.body);
    }
    let r = nodes[1].call("counter", &key, "get", "").await;
    assert_eq!(r.json, 3, "{}", r.body);

    let before = observable(&nodes).await;
    assert!(before.1 < ATTACK_TERM);
    let strangers = [
        (PeerClient::new(), "header `x-cella-peer-"),
        (
            PeerClient::with_auth(Arc::new(PeerAuth::secret(WRONG_SECRET).unwrap()), 9),
            "--cluster-secret differs",
        ),
    ];
    for node in &nodes {
        let addr = node.addr();
        for (client, says) in &strangers {
            for (kind, body) in attacks() {
                for group in [0, 1] {
                    let path = format!("/v1/peer/raft/{group}/{kind}");
                    let reply = post(client, &addr, &path, body.clone()).await;
                    assert_refused(&reply, says, &path);
                }
            }
            // The forwarding exchange: refused before the upgrade, so the command fails as
            // never sent, and a plain request is refused too (not 426: authentication first).
            let forwarded = client
                .forward(
                    &addr,
                    &format!("/v1/entities/counter/{key}/add"),
                    Bytes::from_static(b"100"),
                    Duration::from_secs(5),
                )
                .await;
            match forwarded {
                Err(PeerError::Unreachable(m)) => assert!(m.contains("401"), "{m}"),
                Err(e) => panic!("the forwarding exchange failed otherwise: {e}"),
                Ok(r) => panic!("a stranger's forwarding exchange ran: {}", r.status),
            }
            let reply = post(client, &addr, "/v1/peer/mux", Vec::new()).await;
            assert_refused(&reply, says, "/v1/peer/mux");
            // An append stream carrying the module install.
            let input = futures_util::stream::iter(vec![module_append()]);
            let opened = cella_cluster::stream::send(
                client.clone(),
                addr.clone(),
                0,
                input,
                Duration::from_secs(5),
            )
            .await;
            match opened {
                Err(e) => assert!(e.to_string().contains("401"), "{e}"),
                Ok(_) => panic!("a stranger's append stream was accepted"),
            }
        }
    }

    // A request signed with the secret passes authentication (garbage is then refused as
    // undecodable), and the same request again is refused as a replay.
    let member = PeerClient::with_auth(Arc::new(PeerAuth::secret(CLUSTER_SECRET).unwrap()), 9);
    let path = "/v1/peer/raft/0/vote";
    let signed = member
        .send(
            &nodes[0].addr(),
            Method::POST,
            path,
            &[],
            Bytes::from_static(b"garbage"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(signed.status, StatusCode::BAD_REQUEST, "{:?}", signed.body);
    assert!(String::from_utf8_lossy(&signed.body).contains("cannot decode a vote"));

    // Nothing changed: no module `evil`, no deposed leader, and the cluster still serves.
    assert_eq!(observable(&nodes).await.0, before.0);
    assert!(observable(&nodes).await.1 < ATTACK_TERM);
    let r = nodes[2].call("counter", &key, "add", "1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json, 4, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_refuses_peer_requests() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start(root.path(), &[]).expect("start a node");
    let addr = node.addr();
    let closed = "this node accepts no peers";
    let signed = PeerClient::with_auth(Arc::new(PeerAuth::secret(CLUSTER_SECRET).unwrap()), 2);
    for client in [PeerClient::new(), signed] {
        for (kind, body) in attacks() {
            let path = format!("/v1/peer/raft/0/{kind}");
            assert_refused(&post(&client, &addr, &path, body).await, closed, &path);
        }
        let reply = post(&client, &addr, "/v1/peer/mux", Vec::new()).await;
        assert_refused(&reply, closed, "/v1/peer/mux");
    }
    // Adding a node fails at once, saying why.
    let port = free_ports(1)[0];
    let out = std::process::Command::new(cella_bin())
        .args(["cluster", "add-node", "2", &format!("127.0.0.1:{port}")])
        .args(["--server", &node.url])
        .output()
        .expect("run cella cluster add-node");
    let (_, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(closed), "{stderr}");
    assert!(has_modules(&node, &[]).await);
}

/// Runs `cella serve` with `args` expecting it to exit; returns its stderr.
fn refused_start(root: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(cella_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(root)
        .args(args)
        .env_remove("CELLA_CLUSTER_SECRET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cella serve");
    let (_, stderr) = output_text(&out);
    assert!(
        !out.status.success(),
        "cella serve {args:?} started: {stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_needs_a_secret_or_insecure_peers() {
    let root = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    let initial = format!("1={addr}");
    let cluster = [
        "--listen",
        &addr,
        "--node-id",
        "1",
        "--initial-cluster",
        &initial,
    ];
    let stderr = refused_start(&root.path().join("a"), &cluster);
    assert!(stderr.contains("--cluster-secret"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    let mut short = cluster.to_vec();
    short.extend(["--cluster-secret", "short"]);
    let stderr = refused_start(&root.path().join("b"), &short);
    assert!(stderr.contains("at least 16"), "{stderr}");

    // With --insecure-peers it starts, and answers peer requests unsigned, as before.
    let node = TestNode::start_at(
        &root.path().join("c"),
        &addr,
        &[
            "--node-id",
            "1",
            "--initial-cluster",
            &initial,
            "--insecure-peers",
        ],
    )
    .expect("start with --insecure-peers");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            groups(&cluster_status(&node).await)
                .get(&0)
                .is_some_and(|g| g["leader"].is_u64())
        })
        .await
    );
    let reply = post(
        &PeerClient::new(),
        &addr,
        "/v1/peer/raft/0/vote",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
