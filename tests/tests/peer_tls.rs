//! Mutual TLS between peers over real processes: certificates from `cella cluster certs`; a
//! 3-node cluster with `--peer-ca/--peer-cert/--peer-key` and no secret works (a module
//! replicates, a forwarded command runs, its write is read through another node, all over
//! HTTPS trusting the peer CA); a client with a certificate from another CA, and one with none,
//! get 401 on every peer request (a vote, a group-0 append, the forwarding exchange, an append
//! stream) and change nothing; with a secret too, a certified client still needs the secret;
//! a fourth node joins (`--join` over HTTPS, `cella --ca … cluster add-node`) and gets the
//! modules; and the flags' misuses refuse to start.

#[path = "common/forged.rs"]
mod forged;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use cella_cluster::{
    Placement,
    auth::{NO_CERTIFICATE, PeerAuth},
    network::{PeerClient, PeerError},
    types::encode,
};
use cella_core::EntityId;
use cella_tests::{
    TestNode, cella_bin,
    cluster::{CLUSTER_SECRET, all_groups_led, cluster_status, groups, has_modules, leaders},
    component, free_ports, output_text, wait_until,
};
use hyper::{Method, StatusCode};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use self::forged::{ATTACK_TERM, assert_refused, module_append, post, vote};

const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(30);

/// `cella cluster certs --nodes 4 --out dir` (three nodes and one to join); returns `dir`.
fn certs(dir: &Path) -> PathBuf {
    let out = Command::new(cella_bin())
        .args(["cluster", "certs", "--nodes", "4", "--out"])
        .arg(dir)
        .output()
        .expect("run cella cluster certs");
    assert!(out.status.success(), "{}", output_text(&out).1);
    dir.to_path_buf()
}

/// The cluster's certificates, made once: this process's HTTPS requests (the tests' client)
/// trust their CA, a setting of the whole process.
fn our_certs() -> PathBuf {
    static CERTS: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = CERTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(&dir.path().join("certs"));
        cella_cli::client::trust_ca(Some(&certs.join("ca.pem"))).unwrap();
        (dir, certs)
    });
    dir.clone()
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_string_lossy().into_owned()
}

/// Starts nodes 1..=3 with their peer certificates from `certs` (and `secret`), and waits
/// until every group has a leader.
async fn start(root: &Path, certs: &Path, secret: Option<&str>) -> Vec<TestNode> {
    let ports = free_ports(3);
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<TestNode> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = (i + 1).to_string();
            let mut args = vec![
                "--node-id".to_string(),
                id.clone(),
                "--initial-cluster".into(),
                initial.clone(),
                "--partitions".into(),
                PARTITIONS.to_string(),
                "--peer-ca".into(),
                path(certs, "ca.pem"),
                "--peer-cert".into(),
                path(certs, &format!("node{id}.pem")),
                "--peer-key".into(),
                path(certs, &format!("node{id}-key.pem")),
            ];
            if let Some(secret) = secret {
                args.extend(["--cluster-secret".into(), secret.into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            TestNode::start_at(
                &root.join(format!("n{id}")),
                &format!("127.0.0.1:{port}"),
                &args,
            )
            .expect("start a cluster node")
        })
        .collect();
    for node in &nodes {
        assert!(node.url.starts_with("https://"), "{}", node.url);
    }
    assert!(
        wait_until(WAIT, || all_groups_led(&nodes, PARTITIONS)).await,
        "the cluster did not elect leaders"
    );
    nodes
}

/// A client configuration trusting `ca`, presenting `cert` (if any).
#[allow(deprecated)]
fn client_tls(ca: &Path, cert: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Every peer request `client` can make to `addr` is refused with `says`.
async fn refused_everywhere(client: &PeerClient, addr: &str, key: &str, says: &str) {
    for group in [0, 1] {
        let path = format!("/v1/peer/raft/{group}/vote");
        assert_refused(&post(client, addr, &path, vote()).await, says, &path);
    }
    let path = "/v1/peer/raft/0/append";
    let append = encode("an append", &module_append()).unwrap();
    assert_refused(&post(client, addr, path, append).await, says, path);
    assert_refused(
        &post(client, addr, "/v1/peer/mux", Vec::new()).await,
        says,
        "/v1/peer/mux",
    );
    let forwarded = client
        .forward(
            addr,
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
    let input = futures_util::stream::iter(vec![module_append()]);
    let opened = cella_cluster::stream::send(
        client.clone(),
        addr.to_string(),
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

/// The modules each node lists (`GET /v1/modules`): type, version and digest of each.
async fn modules(nodes: &[TestNode]) -> Vec<Vec<String>> {
    let mut listed = Vec::new();
    for node in nodes {
        let r = node.request(Method::GET, "/v1/modules", "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let list = r.json["modules"].as_array().cloned().unwrap_or_default();
        listed.push(
            list.iter()
                .map(|m| format!("{} v{} {}", m["type"], m["version"], m["digest"]))
                .collect(),
        );
    }
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_peer_certificates_works_and_refuses_strangers() {
    let root = tempfile::tempdir().unwrap();
    let ours = our_certs();
    let theirs = certs(&root.path().join("other-certs"));
    let nodes = start(root.path(), &ours, None).await;

    // Deploy through node 1 (HTTPS); the module replicates over the nodes' TLS connections.
    let r = nodes[0].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    assert!(
        wait_until(WAIT, || async {
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
    // A command node 1 forwards (the forwarding exchange, over TLS) runs on its leader.
    assert!(
        wait_until(WAIT, || async {
            leaders(&nodes[0]).await.values().any(|leader| *leader != 1)
        })
        .await,
        "node 1 still leads every partition"
    );
    let placement = Placement {
        partitions: PARTITIONS,
        ..Placement::default()
    };
    let led = leaders(&nodes[0]).await;
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let group = placement.partition(&EntityId::new("counter", k.as_str()));
            led.get(&group).is_some_and(|leader| *leader != 1)
        })
        .expect("a key led elsewhere");
    for expected in 1..=2 {
        let r = nodes[0].call("counter", &key, "add", "1").await;
        assert_eq!(r.status, 200, "forwarded add: {}", r.body);
        assert_eq!(r.json, expected, "{}", r.body);
    }
    let r = nodes[2].call("counter", &key, "get", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json, 2, "{}", r.body);
    // The CLI reads through node 2 with --ca.
    let out = Command::new(cella_bin())
        .args(["--ca", &path(&ours, "ca.pem"), "call"])
        .args([&format!("counter/{key}"), "get", "--server", &nodes[1].url])
        .env_remove("CELLA_CA")
        .stdin(Stdio::null())
        .output()
        .expect("run cella call");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains('2'), "{stdout}");

    // Strangers: a certificate another CA signed, and none (both trust our CA's servers).
    let before = modules(&nodes).await;
    let ca = ours.join("ca.pem");
    let (cert, key_file) = (theirs.join("node1.pem"), theirs.join("node1-key.pem"));
    let strangers = [
        client_tls(&ca, Some((&cert, &key_file))),
        client_tls(&ca, None),
    ];
    for tls in strangers {
        let client = PeerClient::with_auth(Arc::new(PeerAuth::certificates(tls)), 9);
        for node in &nodes {
            refused_everywhere(&client, &node.addr(), &key, NO_CERTIFICATE).await;
        }
    }
    // A plain-HTTP peer does not get through the TLS listener at all.
    let plain = PeerClient::new()
        .send(
            &nodes[0].addr(),
            Method::POST,
            "/v1/peer/raft/0/vote",
            &[],
            Bytes::from(vote()),
            Duration::from_secs(5),
        )
        .await;
    if let Ok(r) = plain {
        assert_ne!(r.status, StatusCode::OK, "a plain-HTTP vote was served");
    }

    // Nothing changed, and the cluster still serves.
    assert_eq!(modules(&nodes).await, before);
    for node in &nodes {
        let term = groups(&cluster_status(node).await)[&0]["term"].as_u64();
        assert!(
            term.is_some_and(|t| t < ATTACK_TERM),
            "group 0's term: {term:?}"
        );
    }
    let r = nodes[1].call("counter", &key, "add", "1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json, 3, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_secret_and_certificates_both_are_required() {
    let root = tempfile::tempdir().unwrap();
    let ours = our_certs();
    let nodes = start(root.path(), &ours, Some(CLUSTER_SECRET)).await;
    let ca = ours.join("ca.pem");
    let cert = (ours.join("node3.pem"), ours.join("node3-key.pem"));
    let certified = client_tls(&ca, Some((&cert.0, &cert.1)));
    // A peer certificate without the secret: refused for want of the signature headers.
    let unsigned = PeerClient::with_auth(Arc::new(PeerAuth::certificates(certified.clone())), 9);
    let reply = post(&unsigned, &nodes[0].addr(), "/v1/peer/raft/0/vote", vote()).await;
    assert_refused(&reply, "header `x-cella-peer-", "a vote without the secret");
    // The secret without a certificate: refused for want of the certificate.
    let secret_only = PeerClient::with_auth(
        Arc::new(
            PeerAuth::secret(CLUSTER_SECRET)
                .unwrap()
                .and_certificates(client_tls(&ca, None)),
        ),
        9,
    );
    let reply = post(
        &secret_only,
        &nodes[0].addr(),
        "/v1/peer/raft/0/vote",
        vote(),
    )
    .await;
    assert_refused(&reply, NO_CERTIFICATE, "a vote without a certificate");
    // Both: authenticated (garbage is then refused as undecodable, not as unauthorized).
    let both = PeerClient::with_auth(
        Arc::new(
            PeerAuth::secret(CLUSTER_SECRET)
                .unwrap()
                .and_certificates(certified),
        ),
        9,
    );
    let reply = post(
        &both,
        &nodes[0].addr(),
        "/v1/peer/raft/0/vote",
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    // The cluster works with both.
    let r = nodes[0].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    let r = nodes[0].call("counter", "k", "add", "1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        wait_until(WAIT, || has_modules(&nodes[2], &["counter"])).await,
        "the module did not reach node 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_peer_certificates_joins() {
    let root = tempfile::tempdir().unwrap();
    let ours = our_certs();
    let nodes = start(root.path(), &ours, None).await;
    let r = nodes[0].deploy("counter", &component("counter")).await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    let (ca, cert, key) = (
        path(&ours, "ca.pem"),
        path(&ours, "node4.pem"),
        path(&ours, "node4-key.pem"),
    );
    let join = nodes[1].addr();
    let fourth = TestNode::start_at(
        &root.path().join("n4"),
        &addr,
        &[
            "--node-id",
            "4",
            "--join",
            &join,
            "--peer-ca",
            &ca,
            "--peer-cert",
            &cert,
            "--peer-key",
            &key,
        ],
    )
    .expect("start node 4");
    let out = Command::new(cella_bin())
        .args(["--ca", &ca, "cluster", "add-node", "4", &addr])
        .args(["--server", &nodes[2].url])
        .env_remove("CELLA_CA")
        .stdin(Stdio::null())
        .output()
        .expect("run cella cluster add-node");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&addr), "{stdout}");
    // Node 4 gets group 0's log over TLS: the module reaches it.
    assert!(
        wait_until(WAIT, || has_modules(&fourth, &["counter"])).await,
        "the module did not reach node 4"
    );
    let r = fourth.call("counter", "joined", "add", "1").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Runs `cella serve` with `args`, expecting it to exit; returns its stderr.
fn refused_start(data: &Path, args: &[&str]) -> String {
    let out = Command::new(cella_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CELLA_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run cella serve");
    let (_, stderr) = output_text(&out);
    assert!(
        !out.status.success(),
        "cella serve {args:?} started: {stderr}"
    );
    stderr
}

#[test]
fn misused_peer_flags_refuse_to_start() {
    let root = tempfile::tempdir().unwrap();
    let certs = certs(&root.path().join("certs"));
    let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    let initial = format!("1={addr}");
    let (ca, cert, key) = (
        path(&certs, "ca.pem"),
        path(&certs, "node1.pem"),
        path(&certs, "node1-key.pem"),
    );
    // Not all three.
    let stderr = refused_start(
        &root.path().join("a"),
        &["--listen", &addr, "--peer-ca", &ca, "--peer-cert", &cert],
    );
    assert!(stderr.contains("--peer-key"), "{stderr}");
    // --tls-cert naming another certificate than --peer-cert.
    let other = path(&certs, "node2.pem");
    let other_key = path(&certs, "node2-key.pem");
    let stderr = refused_start(
        &root.path().join("b"),
        &[
            "--listen",
            &addr,
            "--node-id",
            "1",
            "--initial-cluster",
            &initial,
            "--peer-ca",
            &ca,
            "--peer-cert",
            &cert,
            "--peer-key",
            &key,
            "--tls-cert",
            &other,
            "--tls-key",
            &other_key,
        ],
    );
    assert!(stderr.contains("different files"), "{stderr}");
    // --tls-cert on a cluster node without peer certificates.
    let stderr = refused_start(
        &root.path().join("c"),
        &[
            "--listen",
            &addr,
            "--node-id",
            "1",
            "--initial-cluster",
            &initial,
            "--cluster-secret",
            CLUSTER_SECRET,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert!(stderr.contains("--peer-ca"), "{stderr}");
    // Neither a secret nor certificates.
    let stderr = refused_start(
        &root.path().join("d"),
        &[
            "--listen",
            &addr,
            "--node-id",
            "1",
            "--initial-cluster",
            &initial,
        ],
    );
    assert!(
        stderr.contains("--peer-ca") && stderr.contains("--cluster-secret"),
        "{stderr}"
    );
}
