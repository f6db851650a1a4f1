//! Scoped tokens and the audit trail over real `cella serve` processes: a token file with one
//! token per role, and for every role × route family (module deploy, check, rollback and
//! delete; entity commands and reads; topic publish and follow; membership; the audit trail)
//! exactly what is allowed and what gets 401 or 403, with and without
//! `--require-invoke-token`; the file edited while the node runs (picked up within seconds);
//! and the audit trail listing deploys and rollbacks with their token ids on every node of a
//! three-node cluster.

use std::{path::Path, time::Duration};

use cella_tests::{TestNode, cluster::start_cluster, component, wait_until};
use hyper::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: &str = "root-token-value";
const OPS: &str = "ops-token-value";
const CI: &str = "ci-token-value";
const APP: &str = "app-token-value";
const VIEWER: &str = "viewer-token-value";
const BOGUS: &str = "bogus-token-value";

/// One token per role: `ops` admin, `ci` deploy (counter, scratch), `app` invoke (counter,
/// topic news), `viewer` read-only invoke (counter, topic news).
fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens.json");
    let tokens = serde_json::json!({"tokens": [
        {"id": "ops", "token": OPS, "role": "admin"},
        {"id": "ci", "token": CI, "role": "deploy", "types": ["counter", "scratch"]},
        {"id": "app", "token": APP, "role": "invoke", "types": ["counter"], "topics": ["news"]},
        {"id": "viewer", "token": VIEWER, "role": "invoke", "types": ["counter"],
         "topics": ["news"], "read_only": true},
    ]});
    std::fs::write(&path, tokens.to_string()).expect("write the token file");
    path
}

/// Who calls: a name for messages and the token sent, if any.
const CALLERS: [(&str, Option<&str>); 7] = [
    ("none", None),
    ("bogus", Some(BOGUS)),
    ("root", Some(ROOT)),
    ("ops", Some(OPS)),
    ("ci", Some(CI)),
    ("app", Some(APP)),
    ("viewer", Some(VIEWER)),
];

async fn send(
    node: &TestNode,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> cella_tests::Reply {
    node.request_with_token(method, path, body, token).await
}

/// Asserts a denial's status and JSON error code (a 403 names the role needed).
fn assert_denied(reply: &cella_tests::Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    let code = if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    };
    assert_eq!(reply.json["error"]["code"], code, "{what}: {}", reply.body);
    if status == 403 {
        assert!(
            reply.json["error"]["role"].is_string(),
            "{what}: {}",
            reply.body
        );
    }
    for secret in [ROOT, OPS, CI, APP, VIEWER, BOGUS] {
        assert!(
            !reply.body.contains(secret),
            "{what} shows a token: {}",
            reply.body
        );
    }
}

/// What a caller gets: `Ok` for allowed (any status but 401/403), or the denial status.
fn expect(caller: &str, allowed: &[&str]) -> Option<u16> {
    match caller {
        c if allowed.contains(&c) => None,
        "none" | "bogus" => Some(401),
        _ => Some(403),
    }
}

/// The status line of a topic's event stream (the stream itself is left open and dropped).
async fn follow_status(node: &TestNode, topic: &str, token: Option<&str>) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(node.addr())
        .await
        .expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET /v1/topics/{topic}/events?after=0 HTTP/1.1\r\nHost: {}\r\n{auth}\r\n",
        node.addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("the stream answers within 10 s")
            .expect("read");
        assert!(read > 0, "the connection closed before the status line");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in `{line}`"))
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(component(name)).expect("read a component")
}

async fn audit(node: &TestNode, token: &str) -> Vec<Value> {
    let r = send(
        node,
        Method::GET,
        "/v1/audit?limit=1000",
        Vec::new(),
        Some(token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["records"].as_array().cloned().unwrap_or_default()
}

/// `(actor, action, type, version)` of each record.
fn summary(records: &[Value]) -> Vec<(String, String, String, u64)> {
    records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_string(),
                r["action"].as_str().unwrap_or("").to_string(),
                r["type"].as_str().unwrap_or("").to_string(),
                r["version"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_route_family() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path());
    let node = TestNode::start(
        &dir.path().join("data"),
        &[
            "--admin-token",
            ROOT,
            "--tokens",
            file.to_str().unwrap(),
            "--require-invoke-token",
        ],
    )
    .unwrap();
    let (counter, cart) = (bytes("counter"), bytes("shopping-cart"));

    // Module deploys: admin and deploy-on-type; denied ones change nothing.
    for (caller, token) in CALLERS {
        let r = send(
            &node,
            Method::PUT,
            "/v1/modules/counter",
            counter.clone(),
            token,
        )
        .await;
        match expect(caller, &["root", "ops", "ci"]) {
            Some(status) => assert_denied(&r, status, &format!("deploy as {caller}")),
            None => assert!(
                r.status == 201 || r.status == 200,
                "deploy as {caller}: {}",
                r.body
            ),
        }
    }
    // The first allowed deploy made v1; the same bytes again change nothing.
    let r = send(
        &node,
        Method::PUT,
        "/v1/modules/counter",
        cart.clone(),
        Some(CI),
    )
    .await;
    assert_eq!(
        (r.status, r.json["version"].as_u64()),
        (201, Some(2)),
        "{}",
        r.body
    );
    let other = send(
        &node,
        Method::PUT,
        "/v1/modules/other",
        counter.clone(),
        Some(CI),
    )
    .await;
    assert_denied(&other, 403, "deploy of a type ci does not name");
    assert!(other.body.contains("deploy"), "{}", other.body);

    // Shadow checks.
    for (caller, token) in CALLERS {
        let r = send(
            &node,
            Method::PUT,
            "/v1/modules/counter?check=true",
            counter.clone(),
            token,
        )
        .await;
        match expect(caller, &["root", "ops", "ci"]) {
            Some(status) => assert_denied(&r, status, &format!("check as {caller}")),
            None => assert_eq!(r.status, 200, "check as {caller}: {}", r.body),
        }
    }

    // Rollbacks: v2 → v1 (ci), then forward again to v2 (ops), then v1 (root).
    let mut to = [1u64, 2, 1].into_iter();
    for (caller, token) in CALLERS {
        let allowed = expect(caller, &["root", "ops", "ci"]);
        let version = if allowed.is_none() {
            to.next().unwrap()
        } else {
            1
        };
        let body = serde_json::json!({ "version": version })
            .to_string()
            .into_bytes();
        let r = send(
            &node,
            Method::POST,
            "/v1/modules/counter/rollback",
            body,
            token,
        )
        .await;
        match allowed {
            Some(status) => assert_denied(&r, status, &format!("rollback as {caller}")),
            None => assert_eq!(
                (r.status, r.json["version"].as_u64()),
                (200, Some(version)),
                "rollback as {caller}: {}",
                r.body
            ),
        }
    }

    // Deletes: a scratch type deployed for each allowed caller.
    for (caller, token) in CALLERS {
        let r = send(
            &node,
            Method::PUT,
            "/v1/modules/scratch",
            counter.clone(),
            Some(OPS),
        )
        .await;
        assert!(r.status == 201 || r.status == 200, "{}", r.body);
        let r = send(
            &node,
            Method::DELETE,
            "/v1/modules/scratch",
            Vec::new(),
            token,
        )
        .await;
        match expect(caller, &["root", "ops", "ci"]) {
            Some(status) => assert_denied(&r, status, &format!("delete as {caller}")),
            None => assert_eq!(r.status, 200, "delete as {caller}: {}", r.body),
        }
    }

    // Entity commands and reads of counter.
    for (caller, token) in CALLERS {
        let r = send(
            &node,
            Method::POST,
            "/v1/entities/counter/a/add",
            b"1".to_vec(),
            token,
        )
        .await;
        match expect(caller, &["root", "ops", "app"]) {
            Some(status) => assert_denied(&r, status, &format!("command as {caller}")),
            None => assert_eq!(r.status, 200, "command as {caller}: {}", r.body),
        }
        for path in ["/v1/entities/counter/a", "/v1/entities/counter/a/journal"] {
            let r = send(&node, Method::GET, path, Vec::new(), token).await;
            match expect(caller, &["root", "ops", "app", "viewer"]) {
                Some(status) => assert_denied(&r, status, &format!("GET {path} as {caller}")),
                None => assert_eq!(r.status, 200, "GET {path} as {caller}: {}", r.body),
            }
        }
    }
    // Only types (and topics) a token names.
    let r = send(
        &node,
        Method::POST,
        "/v1/entities/cart/a/add",
        b"1".to_vec(),
        Some(APP),
    )
    .await;
    assert_denied(&r, 403, "a command of a type app does not name");
    let r = send(
        &node,
        Method::GET,
        "/v1/entities/cart/a",
        Vec::new(),
        Some(VIEWER),
    )
    .await;
    assert_denied(&r, 403, "a read of a type viewer does not name");

    // Topics: publish needs invoke (not read-only), follow any invoke.
    for (caller, token) in CALLERS {
        let r = send(&node, Method::POST, "/v1/topics/news", b"1".to_vec(), token).await;
        match expect(caller, &["root", "ops", "app"]) {
            Some(status) => assert_denied(&r, status, &format!("publish as {caller}")),
            None => assert_eq!(r.status, 200, "publish as {caller}: {}", r.body),
        }
        let status = follow_status(&node, "news", token).await;
        let want = expect(caller, &["root", "ops", "app", "viewer"]).unwrap_or(200);
        assert_eq!(status, want, "follow as {caller}");
    }
    let r = send(
        &node,
        Method::POST,
        "/v1/topics/other",
        b"1".to_vec(),
        Some(APP),
    )
    .await;
    assert_denied(&r, 403, "a publication to a topic app does not name");
    assert_eq!(follow_status(&node, "other", Some(VIEWER)).await, 403);

    // Membership: admin only (node 9 is not a member: allowed callers get past the check).
    let add = serde_json::json!({"id": 9, "addr": "127.0.0.1:9"}).to_string();
    for (caller, token) in CALLERS {
        let r = send(
            &node,
            Method::DELETE,
            "/v1/cluster/nodes/9",
            Vec::new(),
            token,
        )
        .await;
        match expect(caller, &["root", "ops"]) {
            Some(status) => {
                assert_denied(&r, status, &format!("remove-node as {caller}"));
                let r = send(
                    &node,
                    Method::POST,
                    "/v1/cluster/nodes",
                    add.clone().into_bytes(),
                    token,
                )
                .await;
                assert_denied(&r, status, &format!("add-node as {caller}"));
            }
            None => assert!(
                r.status != 401 && r.status != 403,
                "remove-node as {caller}: {}",
                r.body
            ),
        }
    }

    // The audit trail: admin only, and it names who did each change.
    for (caller, token) in CALLERS {
        let r = send(&node, Method::GET, "/v1/audit", Vec::new(), token).await;
        match expect(caller, &["root", "ops"]) {
            Some(status) => assert_denied(&r, status, &format!("audit as {caller}")),
            None => assert_eq!(r.status, 200, "audit as {caller}: {}", r.body),
        }
    }
    let records = audit(&node, OPS).await;
    let s = summary(&records);
    let modules: Vec<_> = s.iter().filter(|r| r.2 == "counter").cloned().collect();
    let row = |a: &str, b: &str, v: u64| (a.to_string(), b.to_string(), "counter".to_string(), v);
    assert_eq!(
        modules,
        vec![
            row("admin", "deploy", 1),
            row("ci", "deploy", 2),
            row("admin", "rollback", 1),
            row("ops", "rollback", 2),
            row("ci", "rollback", 1),
        ],
        "{records:#?}"
    );
    let deletes: Vec<_> = s
        .iter()
        .filter(|r| r.1 == "delete")
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(deletes, ["admin", "ops", "ci"], "{records:#?}");
    let indexes: Vec<u64> = records
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    assert!(
        records[0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{records:#?}"
    );
    // Paging.
    let r = send(
        &node,
        Method::GET,
        &format!("/v1/audit?after={}&limit=2", indexes[0]),
        Vec::new(),
        Some(OPS),
    )
    .await;
    let page: Vec<u64> = r.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(page, indexes[1..3], "{}", r.body);

    // `cella audit` prints the table.
    let out = std::process::Command::new(cella_tests::cella_bin())
        .args(["audit", "--server", &node.url, "--admin-token", OPS])
        .output()
        .unwrap();
    let (stdout, stderr) = cella_tests::output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("INDEX"), "{stdout}");
    assert!(
        stdout.contains("ci") && stdout.contains("rollback") && stdout.contains("counter v2"),
        "{stdout}"
    );
    let out = std::process::Command::new(cella_tests::cella_bin())
        .args(["audit", "--server", &node.url, "--admin-token", CI])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        cella_tests::output_text(&out).1.contains("403"),
        "{:?}",
        cella_tests::output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_switch_commands_and_reads_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path());
    let node = TestNode::start(
        &dir.path().join("data"),
        &["--tokens", file.to_str().unwrap()],
    )
    .unwrap();
    let r = send(
        &node,
        Method::PUT,
        "/v1/modules/counter",
        bytes("counter"),
        None,
    )
    .await;
    assert_denied(&r, 401, "deploy without a token");
    let r = send(
        &node,
        Method::PUT,
        "/v1/modules/counter",
        bytes("counter"),
        Some(APP),
    )
    .await;
    assert_denied(&r, 403, "deploy as app");
    let r = send(
        &node,
        Method::PUT,
        "/v1/modules/counter",
        bytes("counter"),
        Some(CI),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Open without a token, and a token of any role is not refused either.
    for token in [None, Some(BOGUS), Some(CI), Some(VIEWER)] {
        let r = send(
            &node,
            Method::POST,
            "/v1/entities/counter/a/add",
            b"1".to_vec(),
            token,
        )
        .await;
        assert_eq!(r.status, 200, "{token:?}: {}", r.body);
        let r = send(
            &node,
            Method::GET,
            "/v1/entities/counter/a",
            Vec::new(),
            token,
        )
        .await;
        assert_eq!(r.status, 200, "{token:?}: {}", r.body);
        assert_eq!(follow_status(&node, "news", token).await, 200);
    }
    // Publishing stays guarded once tokens exist (as with the admin token alone).
    let r = send(&node, Method::POST, "/v1/topics/news", b"1".to_vec(), None).await;
    assert_denied(&r, 401, "publish without a token");
    let r = send(
        &node,
        Method::POST,
        "/v1/topics/news",
        b"1".to_vec(),
        Some(VIEWER),
    )
    .await;
    assert_denied(&r, 403, "publish as viewer");
    let r = send(
        &node,
        Method::POST,
        "/v1/topics/news",
        b"1".to_vec(),
        Some(APP),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&node, Method::GET, "/v1/audit", Vec::new(), None).await;
    assert_denied(&r, 401, "audit without a token");

    // Without any token configured, the switch cannot be given.
    let out = std::process::Command::new(cella_tests::cella_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--require-invoke-token",
            "--data-dir",
        ])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        cella_tests::output_text(&out).1.contains("--tokens"),
        "{:?}",
        cella_tests::output_text(&out)
    );
}

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
    // Each reload is in the audit trail (this single node leads the metadata group).
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
}
