//! The `cella` command line against a real node: deploy, call, inspect, modules, and the
//! messages for an unreachable server, a missing file and a refusal by the server.

use std::process::{Command, Output};

use cella_tests::{TestNode, cella_bin, component, output_text as text};

fn cella(args: &[&str]) -> Output {
    Command::new(cella_bin())
        .args(args)
        .output()
        .expect("run cella")
}

#[test]
fn deploy_call_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let server = node.url.as_str();
    let counter = component("counter");

    let out = cella(&[
        "deploy",
        counter.to_str().unwrap(),
        "--name",
        "counter",
        "--server",
        server,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"version\": 1"), "{stdout}");

    let out = cella(&["call", "counter/alice", "add", "41", "--server", server]);
    assert!(out.status.success());
    assert_eq!(text(&out).0.trim(), "41");
    let out = cella(&["call", "counter/alice", "add", "1", "--server", server]);
    assert_eq!(text(&out).0.trim(), "42");

    let out = cella(&["inspect", "counter/alice", "--server", server]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("\"total\": 42"), "{stdout}");
    let out = cella(&["inspect", "counter/alice", "--journal", "--server", server]);
    assert!(text(&out).0.contains("\"seq\": 2"));
    let out = cella(&["modules", "--server", server]);
    assert!(text(&out).0.contains("\"counter\""));

    // The server says no: the message carries its code and reason.
    let out = cella(&["call", "counter/alice", "add", "{oops", "--server", server]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("400 bad_request"), "{stderr}");
    let out = cella(&["call", "counter", "add", "--server", server]);
    assert!(text(&out).1.contains("TYPE/KEY"));
}

#[test]
fn clear_messages_for_missing_file_and_unreachable_server() {
    let out = cella(&[
        "deploy",
        "/nonexistent/x.wasm",
        "--name",
        "x",
        "--server",
        "http://127.0.0.1:9",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read /nonexistent/x.wasm"),
        "{stderr}"
    );

    // Port 9 (discard) on loopback is closed in the test environment: connection refused.
    let out = cella(&["call", "counter/a", "get", "--server", "http://127.0.0.1:9"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the Cella server at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

/// `cella serve --deploy TYPE=FILE` deploys through the node's own API once it listens (in a
/// cluster of one: through its metadata group), then serves the type.
#[test]
fn serve_deploys_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("counter={}", component("counter").display());
    let node = TestNode::start(dir.path(), &["--deploy", &spec]).unwrap();
    let server = node.url.as_str();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = cella(&["call", "counter/a", "add", "2", "--server", server]);
        let (stdout, stderr) = text(&out);
        if out.status.success() {
            assert_eq!(stdout.trim(), "2", "{stderr}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the type deployed at start is not served: {stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
