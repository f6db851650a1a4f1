//! Helpers of the token and audit tests (`tests/tokens.rs`, `tests/audit.rs`): a token file
//! with one token per role, the callers that try each route, requests with a token, denials
//! checked for their status and JSON code (and that no token shows), a topic stream's status
//! line, and the audit trail read and summarized.

use std::{path::Path, time::Duration};

use hyper::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{TestNode, component};

pub const ROOT: &str = "root-token-value";
pub const OPS: &str = "ops-token-value";
pub const CI: &str = "ci-token-value";
pub const APP: &str = "app-token-value";
pub const VIEWER: &str = "viewer-token-value";
pub const BOGUS: &str = "bogus-token-value";

/// One token per role: `ops` admin, `ci` deploy (counter, scratch), `app` invoke (counter,
/// topic news), `viewer` read-only invoke (counter, topic news).
pub fn token_file(dir: &Path) -> std::path::PathBuf {
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

/// A node in `dir/data` with every kind of token: the admin token [`ROOT`], the token file of
/// [`token_file`], and `--require-invoke-token`.
pub fn start_with_every_token(dir: &Path) -> TestNode {
    let file = token_file(dir);
    let Some(file) = file.to_str() else {
        panic!("the token file's path is not UTF-8: {}", file.display());
    };
    let args = [
        "--admin-token",
        ROOT,
        "--tokens",
        file,
        "--require-invoke-token",
    ];
    TestNode::start(&dir.join("data"), &args).expect("start a node with tokens")
}

/// Who calls: a name for messages and the token sent, if any.
pub const CALLERS: [(&str, Option<&str>); 7] = [
    ("none", None),
    ("bogus", Some(BOGUS)),
    ("root", Some(ROOT)),
    ("ops", Some(OPS)),
    ("ci", Some(CI)),
    ("app", Some(APP)),
    ("viewer", Some(VIEWER)),
];

pub async fn send(
    node: &TestNode,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> crate::Reply {
    node.request_with_token(method, path, body, token).await
}

/// Asserts a denial's status and JSON error code (a 403 names the role needed).
pub fn assert_denied(reply: &crate::Reply, status: u16, what: &str) {
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
pub fn expect(caller: &str, allowed: &[&str]) -> Option<u16> {
    match caller {
        c if allowed.contains(&c) => None,
        "none" | "bogus" => Some(401),
        _ => Some(403),
    }
}

/// The status line of a topic's event stream (the stream itself is left open and dropped).
pub async fn follow_status(node: &TestNode, topic: &str, token: Option<&str>) -> u16 {
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

pub fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(component(name)).expect("read a component")
}

pub async fn audit(node: &TestNode, token: &str) -> Vec<Value> {
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
pub fn summary(records: &[Value]) -> Vec<(String, String, String, u64)> {
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
