//! Membership changes under load: a fourth node joins a three-node cluster (`cella serve
//! --join` + `cella cluster add-node`), receives replicas (through snapshots, the logs being
//! purged) and leads its share of partitions; then a node leaves (`cella cluster remove-node`),
//! its replicas move off it and it is stopped. Clients keep adding to counters throughout:
//! the load keeps being served, no acknowledged add is lost and every key's history is
//! linearizable.

use std::{collections::BTreeSet, time::Duration};

use cella_tests::{
    TestNode, cella_bin,
    cluster::{
        CLUSTER_SECRET, Load, check_history, cluster_status, groups, snapshots_installed,
        start_cluster,
    },
    component, free_ports, output_text, wait_until,
};

const PARTITIONS: u32 = 4;

/// Runs `cella cluster ARGS --server URL`; returns stdout, or panics with stderr.
fn cluster_cli(args: &[&str], server: &str) -> String {
    let out = std::process::Command::new(cella_bin())
        .arg("cluster")
        .args(args)
        .args(["--server", server])
        .output()
        .expect("run cella cluster");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "cella cluster {args:?}: {stderr}");
    stdout
}

/// Whether every group is led by one of `members`, whose view lists `members` as the nodes and
/// the group's voters as the `layout` over `members`. `views` are the nodes asked.
async fn laid_out_over(views: &[&TestNode], members: &[u64]) -> bool {
    laid_out(views, members, 3).await
}

/// [`laid_out_over`] with `replicas` per partition.
async fn laid_out(views: &[&TestNode], members: &[u64], replicas: usize) -> bool {
    let mut leading = std::collections::BTreeMap::new();
    for node in views {
        let status = cluster_status(node).await;
        let nodes: BTreeSet<u64> = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["id"].as_u64())
            .collect();
        for (g, v) in groups(&status) {
            if v["state"] == "leader" && nodes == members.iter().copied().collect() {
                leading.insert(g, v);
            }
        }
    }
    leading.len() == PARTITIONS as usize + 1
        && leading.iter().all(|(g, v)| {
            let voters: BTreeSet<u64> = v["voters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_u64())
                .collect();
            let want: BTreeSet<u64> = cella_cluster::cluster::layout(*g, members, replicas)
                .into_iter()
                .collect();
            voters == want && v["leader"].as_u64().is_some_and(|l| members.contains(&l))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_and_one_leaves_while_serving() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes =
        start_cluster(root.path(), 3, PARTITIONS, &["--raft-snapshot-every", "10"]).await;
    let r = nodes[0].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);

    // Clients go through nodes 1 and 3, which stay members.
    let load = Load::start(&[nodes[0].url.clone(), nodes[2].url.clone()], 6, "m", 24);
    assert!(
        load.wait_for_more(300, Duration::from_secs(60)).await,
        "the load did not get going"
    );

    // Node 4 starts, learns the placement from node 2, and is added through node 3.
    let port = free_ports(1)[0];
    let addr = format!("127.0.0.1:{port}");
    let join = nodes[1].addr();
    let fourth = TestNode::start_at(
        &root.path().join("n4"),
        &addr,
        &[
            "--node-id",
            "4",
            "--join",
            &join,
            "--cluster-secret",
            CLUSTER_SECRET,
            "--raft-snapshot-every",
            "40",
        ],
    )
    .expect("start node 4");
    let added = cluster_cli(&["add-node", "4", &addr], &nodes[2].url);
    assert!(added.contains(&addr), "{added}");
    nodes.push(fourth);

    // Every partition moves to the layout over four nodes, node 4 leads its share, and the
    // new replicas were seeded by snapshots.
    let joined = wait_until(Duration::from_secs(60), || async {
        laid_out_over(&nodes.iter().collect::<Vec<_>>(), &[1, 2, 3, 4]).await
            && groups(&cluster_status(&nodes[3]).await)
                .iter()
                .any(|(g, v)| *g != 0 && v["leader"].as_u64() == Some(4))
    })
    .await;
    assert!(
        joined,
        "the partitions did not move to node 4: {}",
        cluster_status(&nodes[3]).await
    );
    let installed = snapshots_installed(&nodes[3]).await;
    assert!(
        installed > 0,
        "node 4 got no snapshot: {}",
        cluster_status(&nodes[3]).await
    );
    if !load.wait_for_more(200, Duration::from_secs(30)).await {
        for k in 0..24 {
            let r = nodes[0].call("counter", &format!("m{k}"), "get", "").await;
            eprintln!("m{k}: {} {}", r.status, r.body);
        }
        for n in &nodes {
            eprintln!("{}", cluster_status(n).await);
        }
        panic!("the load stalled after node 4 joined");
    }
    // Node 4 serves, and reads its own partitions' state as the others see it.
    let r = nodes[3].call("counter", "m0", "get", "").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Node 2 leaves: its replicas move to the others, then it is stopped.
    let removed = cluster_cli(&["remove-node", "2"], &nodes[3].url);
    assert!(removed.contains("\"nodes\""), "{removed}");
    let left = wait_until(Duration::from_secs(60), || async {
        laid_out_over(&[&nodes[0], &nodes[2], &nodes[3]], &[1, 3, 4]).await
    })
    .await;
    if !left {
        for n in &nodes {
            eprintln!("{}", cluster_status(n).await);
        }
        panic!("node 2's replicas did not move");
    }
    nodes[1].kill9();
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "the load stalled after node 2 left"
    );

    // Removing a node that is not a member is refused with a reason.
    let refused = nodes[0]
        .request(hyper::Method::DELETE, "/v1/cluster/nodes/9", "")
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("not a member"), "{}", refused.body);

    let history = load.stop().await;
    let acked = check_history(&nodes[3], &history).await;
    assert!(acked > 700, "too little load got through: {acked}");
}

/// With fewer replicas than nodes, each group is initialized by the lowest of its own replicas,
/// and every node serves every partition, including those it holds no replica of.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fewer_replicas_than_nodes() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 4, PARTITIONS, &["--replicas", "2"]).await;
    let views: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(Duration::from_secs(30), || laid_out(
            &views,
            &[1, 2, 3, 4],
            2
        ))
        .await,
        "partitions not laid out on two replicas each: {}",
        cluster_status(&nodes[0]).await
    );
    let r = nodes[3].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    for k in 0..8 {
        let key = format!("r{k}");
        for (i, node) in nodes.iter().enumerate() {
            let r = node.call("counter", &key, "add", "1").await;
            assert_eq!(
                (r.status, r.body.trim()),
                (200, (i + 1).to_string().as_str()),
                "{key}"
            );
        }
    }
}
