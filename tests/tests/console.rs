//! The web console in a real browser: a node started with `--admin-token` serves its console,
//! and `tests/browser/console.mjs` drives headless Chromium (playwright-core) through it —
//! loading it, finding an entity by prefix and opening its journal, deploying a second module
//! version from a file and rolling back, a refused admin action showing its reason, a live chart
//! moving under load, and an entity keyed with HTML (`<script>…`, `<img onerror=…>`) shown as
//! text with no dialog. A 3-node cluster's console lists its 3 nodes.
//!
//! The browser and the driver are toolchains: Chromium at `/usr/bin/chromium` (or `$CHROMIUM`)
//! and `tests/browser/node_modules` (`npm ci` there). `cargo xtask ci` installs both; without
//! them these tests say what is missing and count as passed without running the browser.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cella_tests::{TestNode, cluster::start_cluster, component};
use hyper::Method;

/// The admin token of the single node.
const TOKEN: &str = "console-admin-token-0123456789";

/// An entity key that runs code if a page ever parses it as HTML (a key cannot hold `/`, so the
/// script element is not closed; the image's handler runs wherever markup is parsed).
const EVIL: &str = "<script>alert(1)<\\script><img src=x onerror=alert(2)>";

/// How long one browser script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser tests, if anything.
fn missing() -> Option<String> {
    if !chromium().exists() {
        return Some(format!(
            "{} is missing (install it: `apt-get install -y chromium`)",
            chromium().display()
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some(
            "tests/browser/node_modules is missing (run `npm ci` in tests/browser)".into(),
        );
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed (Node.js 20 or later)".into());
    }
    None
}

/// Runs `console.mjs` with `envs`, killing it after [`SCRIPT_TIMEOUT`]; panics with its output
/// unless it succeeded.
fn run_script(dir: &Path, envs: &[(&str, &str)]) {
    let log = dir.join("browser.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new("node")
        .arg(browser_dir().join("console.mjs"))
        .current_dir(browser_dir())
        .env("CHROMIUM", chromium())
        .envs(envs.iter().copied())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("{text}");
    match status {
        Some(s) if s.success() => assert!(text.contains("ok - "), "no step passed:\n{text}"),
        Some(s) => panic!("the browser script failed ({s}):\n{text}"),
        None => panic!("the browser script did not finish within {SCRIPT_TIMEOUT:?}:\n{text}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_browses_deploys_and_charts() {
    if let Some(what) = missing() {
        eprintln!("skipped: the browser tests need a browser: {what}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&dir.path().join("data"), &["--admin-token", TOKEN]).unwrap();
    let counter = std::fs::read(component("counter")).unwrap();
    let r = node
        .request_with_token(Method::PUT, "/v1/modules/counter", counter, Some(TOKEN))
        .await;
    assert_eq!(r.status, 201, "deploying counter: {}", r.body);
    for (key, adds) in [("alpha-1", 1), ("alpha-2", 3), ("beta-1", 2), (EVIL, 1)] {
        for _ in 0..adds {
            let r = node.call("counter", key, "add", "1").await;
            assert_eq!(r.status, 200, "add to {key}: {}", r.body);
        }
    }
    // The page serves without a token, with its policy.
    let page = node.request(Method::GET, "/console", "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/console/app.js"), "{}", page.body);
    let unknown = node.request(Method::GET, "/console/nope.js", "").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let v2 = component("v01-counter");
    let (dir_path, v2) = (dir.path().to_path_buf(), v2.to_string_lossy().into_owned());
    let url = node.url.clone();
    tokio::task::spawn_blocking(move || {
        run_script(
            &dir_path,
            &[
                ("CELLA_URL", url.as_str()),
                ("CELLA_SCENARIO", "single"),
                ("CELLA_TOKEN", TOKEN),
                ("CELLA_V2", v2.as_str()),
                ("CELLA_EVIL", EVIL),
            ],
        )
    })
    .await
    .unwrap();
    // What the page did reached the node: v2 exists and v1 is active again.
    let module = node.request(Method::GET, "/v1/modules/counter", "").await;
    assert_eq!(module.json["version"], 1, "{}", module.body);
    assert_eq!(module.json["versions"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_of_a_cluster_node_lists_its_nodes() {
    if let Some(what) = missing() {
        eprintln!("skipped: the browser tests need a browser: {what}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, 3, &[]).await;
    let (dir_path, url) = (dir.path().to_path_buf(), nodes[1].url.clone());
    tokio::task::spawn_blocking(move || {
        run_script(
            &dir_path,
            &[("CELLA_URL", url.as_str()), ("CELLA_SCENARIO", "cluster")],
        )
    })
    .await
    .unwrap();
}
