//! Module versions on a real node: every deploy is a version; a new event-sourced version
//! replays the journals through its `apply`; `?check=true` shadow-replays a candidate and
//! reports divergences; a version that cannot replay is refused; rollback; the upload-time
//! capability check (inert WASI interfaces warned about, HTTP refused); the admin token; a stored
//! version a node cannot load.

use cella_tests::{TestNode, component};
use hyper::Method;
use serde_json::json;

async fn put(node: &TestNode, path: &str, name: &str) -> cella_tests::Reply {
    let bytes = std::fs::read(component(name)).unwrap();
    node.request(Method::PUT, path, bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_check_replay_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    assert_eq!(put(&node, "/v1/modules/tally", "tally").await.status, 201);
    assert_eq!(node.call("tally", "t1", "add", "3").await.json, json!(3));
    assert_eq!(node.call("tally", "t2", "add", "4").await.json, json!(4));

    // Shadow replay of a candidate whose apply differs: both entities diverge, nothing changes.
    let check = put(&node, "/v1/modules/tally?check=true", "tally-divergent").await;
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(check.json["checked"], 2);
    assert_eq!(check.json["failed"], json!([]));
    let diverged = check.json["diverged"].as_array().unwrap();
    assert_eq!(diverged.len(), 2, "{}", check.body);
    assert_eq!(diverged[0]["key"], "t1");
    assert_eq!(diverged[0]["current"], json!({"total": 3}));
    assert_eq!(diverged[0]["candidate"], json!({"total": 6}));
    let same = put(&node, "/v1/modules/tally?check=true", "tally").await;
    assert_eq!(
        (same.json["checked"].as_u64(), same.json["diverged"].clone()),
        (Some(2), json!([]))
    );
    let info = node.request(Method::GET, "/v1/modules/tally", "").await;
    assert_eq!(
        info.json["versions"].as_array().unwrap().len(),
        1,
        "a check must not deploy"
    );

    // A version that cannot replay the existing journals is refused; the old one keeps serving.
    let trapping = put(&node, "/v1/modules/tally", "tally-trapping").await;
    assert_eq!(
        (trapping.status, trapping.json["error"]["code"].as_str()),
        (400, Some("invalid_component"))
    );
    assert!(
        trapping.body.contains("cannot take over"),
        "{}",
        trapping.body
    );
    assert_eq!(node.call("tally", "t1", "get", "").await.json, json!(3));

    // A new version: event-sourced entities are replayed through the new apply.
    let v2 = put(&node, "/v1/modules/tally", "tally-divergent").await;
    assert_eq!(v2.status, 201, "{}", v2.body);
    assert_eq!(
        (v2.json["version"].as_u64(), v2.json["replayed"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(node.call("tally", "t1", "get", "").await.json, json!(6));
    assert_eq!(node.call("tally", "t1", "add", "1").await.json, json!(8));
    let journal = node
        .request(Method::GET, "/v1/entities/tally/t1/journal", "")
        .await;
    let versions: Vec<_> = journal.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["moduleVersion"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions,
        vec![1, 2],
        "each journal entry records the version that wrote it"
    );
    let info = node.request(Method::GET, "/v1/modules/tally", "").await;
    assert_eq!(info.json["version"], 2);
    let listed: Vec<_> = info.json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["commands"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![(1, json!(["add", "get"])), (2, json!(["add", "get"]))]
    );

    // Rollback to the previous version replays through the old apply again.
    let back = node
        .request(Method::POST, "/v1/modules/tally/rollback", "")
        .await;
    assert_eq!(
        (back.status, back.json["version"].as_u64()),
        (200, Some(1)),
        "{}",
        back.body
    );
    assert_eq!(node.call("tally", "t1", "get", "").await.json, json!(4));
    let nowhere = node
        .request(Method::POST, "/v1/modules/tally/rollback", "")
        .await;
    assert_eq!(
        nowhere.status, 400,
        "v1 has nothing older: {}",
        nowhere.body
    );
    let missing = node
        .request(
            Method::POST,
            "/v1/modules/tally/rollback",
            r#"{"version": 9}"#,
        )
        .await;
    assert_eq!(missing.status, 404);
    let forward = node
        .request(
            Method::POST,
            "/v1/modules/tally/rollback",
            r#"{"version": 2}"#,
        )
        .await;
    assert_eq!(forward.json["version"], 2);
    assert_eq!(node.call("tally", "t2", "get", "").await.json, json!(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_and_files_are_inert_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let r = put(&node, "/v1/modules/clock", "clock").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let warnings: Vec<&str> = r.json["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("`wasi:clocks`")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("`wasi:filesystem`")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("wasi:io")),
        "{warnings:?}"
    );
    // The clock reads zero and there is no file to read.
    let reply = node.call("clock", "c1", "now", "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json, json!({"now": 0, "motd": 0}));
}

/// A component whose only import is `wasi:http/outgoing-handler`, built by hand.
fn http_importing_component() -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    component.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import(
        "wasi:http/outgoing-handler@0.2.6",
        ComponentTypeRef::Instance(0),
    );
    component.section(&imports);
    component.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_importing_http_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let r = node
        .request(
            Method::PUT,
            "/v1/modules/fetcher",
            http_importing_component(),
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("invalid_component")),
        "{}",
        r.body
    );
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`wasi:http/outgoing-handler@0.2.6` (no HTTP"),
        "{message}"
    );
    assert_eq!(
        node.request(Method::GET, "/v1/modules", "").await.json["modules"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_module_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--admin-token", "s3cret"]).unwrap();
    let bytes = std::fs::read(component("counter")).unwrap();
    let none = node
        .request(Method::PUT, "/v1/modules/counter", bytes.clone())
        .await;
    assert_eq!(
        (none.status, none.json["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = node
        .request_with_token(
            Method::PUT,
            "/v1/modules/counter",
            bytes.clone(),
            Some("nope"),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let ok = node
        .request_with_token(Method::PUT, "/v1/modules/counter", bytes, Some("s3cret"))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // Entity commands and reads stay open.
    assert_eq!(node.call("counter", "a", "add", "2").await.json, json!(2));
    assert_eq!(
        node.request(Method::GET, "/v1/modules", "").await.status,
        200
    );
    let del = node
        .request(Method::DELETE, "/v1/modules/counter", "")
        .await;
    assert_eq!(del.status, 401);
    let rollback = node
        .request(Method::POST, "/v1/modules/counter/rollback", "")
        .await;
    assert_eq!(rollback.status, 401);
    let del = node
        .request_with_token(Method::DELETE, "/v1/modules/counter", "", Some("s3cret"))
        .await;
    assert_eq!(del.status, 200);
}

/// A stored version this node cannot load (here: restarted with a per-instance memory limit
/// below what the component needs) does not stop the node: the type is listed with its load
/// error, its commands answer 503 `type_not_loaded` naming the way out, and its entities'
/// state is untouched for when a node that can load it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_version_that_does_not_load_leaves_the_node_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]).unwrap();
    assert_eq!(
        put(&node, "/v1/modules/counter", "counter").await.status,
        201
    );
    assert_eq!(node.call("counter", "a", "add", "5").await.json, json!(5));
    assert!(node.terminate().unwrap(), "the node did not stop cleanly");

    let small = TestNode::start(dir.path(), &["--memory-limit-mb", "1"]).unwrap();
    let refused = small.call("counter", "a", "add", "1").await;
    assert_eq!(
        (refused.status, refused.json["error"]["code"].as_str()),
        (503, Some("type_not_loaded")),
        "{}",
        refused.body
    );
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`counter` v1") && message.contains("cella deploy"),
        "{message}"
    );
    let modules = small.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(modules.status, 200);
    let listed = &modules.json["modules"][0];
    assert_eq!(
        (listed["type"].as_str(), listed["version"].as_u64()),
        (Some("counter"), Some(1))
    );
    assert!(
        listed["loadError"]
            .as_str()
            .is_some_and(|e| e.contains("memory")),
        "{}",
        modules.body
    );
    drop(small);

    // A node that can load it again finds the state as it was.
    let node = TestNode::start(dir.path(), &[]).unwrap();
    assert_eq!(node.call("counter", "a", "add", "1").await.json, json!(6));
    let modules = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(modules.json["modules"][0]["loadError"], json!(null));
}
