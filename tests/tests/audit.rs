//! The audit trail and token reloads over real `cella serve` processes: the token file edited
//! while the node runs (picked up within seconds, each reload recorded), and deploys and
//! rollbacks listed with their token ids on every node of a three-node cluster.

use std::time::Duration;

use cella_tests::{TestNode, cluster::start_cluster, tokens::*, wait_until};
use hyper::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_token_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let write = |tokens: Value| {
        std::fs::write(&file, serde_json::json!({"tokens": tokens}).to_string()).unwrap()
    };
    write(serde_json::json!([{"id": "ops", "token": OPS, "role": "admin"}]));
    let node = TestNode::start(
        &dir.path().join("data"),
        &["--tokens", file.to_str().unwrap(), "--require-invoke-token"],
    )
    .unwrap();
    let deploy = |token: &'static str| {
        let node = &node;
        async move {
            send(
                node,
                Method::PUT,
                "/v1/modules/counter",
                bytes("counter"),
                Some(token),
            )
            .await
            .status
        }
    };
    assert_eq!(deploy(CI).await, 401);

    // ci added as a deployer of counter.
    write(serde_json::json!([
        {"id": "ops", "token": OPS, "role": "admin"},
        {"id": "ci", "token": CI, "role": "deploy", "types": ["counter"]},
    ]));
    assert!(
        wait_until(Duration::from_secs(15), || async {
            deploy(CI).await == 201
        })
        .await,
        "the new token was not picked up"
    );
    // A broken file keeps the tokens it replaces.
    std::fs::write(&file, "{not json").unwrap();
    // ci becomes an invoker: deploys are refused, commands allowed.
    let command = |token: &'static str| {
        let node = &node;
        async move {
            send(
                node,
                Method::POST,
                "/v1/entities/counter/k/add",
                b"1".to_vec(),
                Some(token),
            )
            .await
            .status
        }
    };
    assert_eq!(command(CI).await, 403);
    write(serde_json::json!([
        {"id": "ops", "token": OPS, "role": "admin"},
        {"id": "ci", "token": CI, "role": "invoke", "types": ["*"]},
    ]));
    assert!(
        wait_until(Duration::from_secs(15), || async {
            command(CI).await == 200
        })
        .await,
        "the changed role was not picked up"
    );
    assert_eq!(deploy(CI).await, 403);
    // Removed: unknown again.
    write(serde_json::json!([{"id": "ops", "token": OPS, "role": "admin"}]));
    assert!(
        wait_until(Duration::from_secs(15), || async {
            command(CI).await == 401
        })
        .await,
        "the removed token still works"
    );
    // Each reload is in the audit trail (this single node leads the metadata group), recorded
    // just after the new tokens take effect.
    let count = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["action"] == "reload-tokens")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            count(&audit(&node, OPS).await) == 3
        })
        .await,
        "{:#?}",
        audit(&node, OPS).await
    );
    let records = audit(&node, OPS).await;
    let reloads: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "reload-tokens")
        .collect();
    assert_eq!(reloads.len(), 3, "{records:#?}");
    assert_eq!(reloads[0]["actor"], "node 1");
    assert_eq!(reloads[0]["detail"], "tokens: ops, ci");
    let s = summary(&records);
    assert!(
        s.contains(&("ci".into(), "deploy".into(), "counter".into(), 1)),
        "{records:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_has_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path());
    let nodes = start_cluster(dir.path(), 3, 2, &["--tokens", file.to_str().unwrap()]).await;
    // Through different nodes: module changes are forwarded to the metadata leader, which
    // checks the token again and records its id.
    for (node, token, body) in [
        (&nodes[1], CI, bytes("counter")),
        (&nodes[2], OPS, bytes("shopping-cart")),
    ] {
        let r = send(node, Method::PUT, "/v1/modules/counter", body, Some(token)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = send(
        &nodes[0],
        Method::POST,
        "/v1/modules/counter/rollback",
        Vec::new(),
        Some(CI),
    )
    .await;
    assert_eq!(
        (r.status, r.json["version"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let r = send(
        &nodes[1],
        Method::PUT,
        "/v1/modules/counter",
        bytes("counter"),
        Some(APP),
    )
    .await;
    assert_denied(&r, 403, "deploy as app through a follower");
    let r = send(
        &nodes[2],
        Method::POST,
        "/v1/entities/counter/x/add",
        b"1".to_vec(),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let want = vec![
        (
            "ci".to_string(),
            "deploy".to_string(),
            "counter".to_string(),
            1,
        ),
        (
            "ops".to_string(),
            "deploy".to_string(),
            "counter".to_string(),
            2,
        ),
        (
            "ci".to_string(),
            "rollback".to_string(),
            "counter".to_string(),
            1,
        ),
    ];
    for node in &nodes {
        let everywhere = wait_until(Duration::from_secs(20), || async {
            summary(&audit(node, OPS).await) == want
        })
        .await;
        assert!(everywhere, "{}: {:#?}", node.url, audit(node, OPS).await);
    }
    let r = send(&nodes[2], Method::GET, "/v1/audit", Vec::new(), Some(CI)).await;
    assert_denied(&r, 403, "audit as ci on a follower");

    // Peers record reloads through a signed request; an unsigned one is refused.
    for node in &nodes {
        let r = send(
            node,
            Method::POST,
            "/v1/peer/audit",
            b"forged".to_vec(),
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // Every node reloads the edited file; followers record it through the metadata leader.
    let mut tokens: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    tokens["tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "late", "token": "late-token-value", "role": "admin"}));
    std::fs::write(&file, tokens.to_string()).unwrap();
    let reloaders = |records: &[Value]| {
        let mut by: Vec<String> = records
            .iter()
            .filter(|r| r["action"] == "reload-tokens")
            .map(|r| r["actor"].as_str().unwrap_or("").to_string())
            .collect();
        by.sort();
        by
    };
    for node in &nodes {
        let everywhere = wait_until(Duration::from_secs(30), || async {
            reloaders(&audit(node, OPS).await) == ["node 1", "node 2", "node 3"]
        })
        .await;
        assert!(everywhere, "{}: {:#?}", node.url, audit(node, OPS).await);
    }
}
