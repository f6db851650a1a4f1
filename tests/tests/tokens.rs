//! Scoped tokens over real `cella serve` processes: a token file with one token per role, and
//! for every role × route family (module deploy, check, rollback and delete; entity commands
//! and reads; topic publish and follow; membership; the audit trail) exactly what is allowed
//! and what gets 401 or 403, with and without `--require-invoke-token`.

use cella_tests::{TestNode, tokens::*};
use hyper::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_route_family() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with_every_token(dir.path());
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
