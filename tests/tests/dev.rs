//! The developer loop against real processes: `cella new` scaffolds crates that `cella build`
//! turns into valid components and whose own unit tests pass; `cella dev` serves a Rust crate,
//! a Python project and a JavaScript project and hot-reloads each on save (new behaviour
//! served, state kept; a broken edit or a refused version keeps the previous version serving);
//! `cella deploy --check` gates a deploy with exit code 3 and `cella rollback` reactivates a
//! version.
//!
//! Scaffolded crates build into the shared `target/scaffold`, so their dependencies compile
//! once per machine; the tests that build run one at a time so that neither cargo's lock on
//! that directory nor another build's load skews the measured reload time. The Python test
//! needs componentize-py 0.25.1 (`$COMPONENTIZE_PY` or on `PATH`) and the JavaScript test the
//! SDK's build tools in `sdk-guest/js/node_modules` (`npm ci` there); `cargo xtask ci`
//! and `cargo xtask test` install both first; without them these two tests fail and say what to
//! install (a language is never skipped).

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cella_tests::{TestNode, cella_bin, component, output_text as text};
use hyper::Method;
use serde_json::{Value, json};

/// Serializes the tests that build guests.
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The target directory shared by scaffolded crates.
fn scaffold_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold")
}

/// `cella ARGS` in `dir`, with its own `CELLA_HOME` and the shared target directory.
fn cella(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(cella_bin())
        .current_dir(dir)
        .env("CELLA_HOME", home)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .args(args)
        .output()
        .expect("run cella")
}

/// `cargo test` in a scaffolded crate.
fn cargo_test(dir: &Path) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .args(["test", "--quiet"])
        .output()
        .expect("run cargo test")
}

/// Builds a scaffolded crate with `cella build` and checks what it reports.
fn build_and_check(work: &Path, home: &Path, dir: &str, commands: &str, kind: &str) {
    let out = cella(work, home, &["build", dir]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "cella build {dir}:\n{stdout}\n{stderr}"
    );
    let wasm = stdout
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .unwrap_or_else(|| panic!("no `built` line:\n{stdout}"));
    assert!(
        wasm.ends_with(".wasm") && Path::new(wasm).is_file(),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("commands  {commands}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("kind      {kind}")), "{stdout}");
}

#[test]
fn new_build_and_the_crates_own_tests() {
    let _serial = BUILDS.blocking_lock();
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (work, home) = (work.path(), home.path());

    let out = cella(work, home, &["new", "9lives"]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("must start with a letter"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");

    let out = cella(work, home, &["new", "my-counter"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("cella dev"), "{stdout}");
    let sdk = home.join("sdk").join(env!("CARGO_PKG_VERSION"));
    assert!(sdk.join("sdk-guest/Cargo.toml").is_file());
    assert!(sdk.join("wit/entity.wit").is_file());

    let out = cella(work, home, &["new", "my-counter"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not empty"), "{}", text(&out).1);

    build_and_check(work, home, "my-counter", "add, get", "value");
    let out = cargo_test(&work.join("my-counter"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let ledger = work.join("books");
    let out = cella(
        work,
        home,
        &[
            "new",
            "ledger",
            "--kind",
            "event-sourced",
            "--path",
            ledger.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    build_and_check(
        work,
        home,
        "books",
        "deposit, withdraw, balance",
        "event-sourced",
    );
    let out = cargo_test(&ledger);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // A component that is not an entity is refused by the validator, before any upload.
    let plain = work.join("plain");
    std::fs::create_dir_all(plain.join("src")).unwrap();
    std::fs::write(
        plain.join("Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\n\
         crate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(plain.join("src/lib.rs"), "//! Not an entity.\n").unwrap();
    let out = cella(work, home, &["build", "plain"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("not a valid Cella entity") && stderr.contains("hint:"),
        "{stderr}"
    );
}

/// A `cella dev` process whose stdout and stderr are collected; killed on drop.
struct Dev {
    child: Child,
    url: String,
    output: Arc<Mutex<String>>,
}

impl Dev {
    fn start(dir: &Path, home: &Path) -> Dev {
        let mut child = Command::new(cella_bin())
            .arg("dev")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("CELLA_HOME", home)
            .env("CARGO_TARGET_DIR", scaffold_target())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cella dev");
        let output = Arc::new(Mutex::new(String::new()));
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let collected = output.clone();
        std::thread::spawn(move || {
            for (i, line) in BufReader::new(stdout).lines().enumerate() {
                let Ok(line) = line else { break };
                if i == 0 {
                    let _ = first_tx.send(line.clone());
                }
                let mut out = collected.lock().unwrap_or_else(|p| p.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let collected = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut out = collected.lock().unwrap_or_else(|p| p.into_inner());
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut dev = Dev {
            child,
            url: String::new(),
            output,
        };
        let first = first_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address within 60 s:\n{}", dev.output()));
        assert!(first.starts_with("cella listening on http://"), "{first}");
        dev.url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("url")
            .to_string();
        dev
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the output after byte `from` contains `needle`; panics after `timeout`.
    fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.get(from..).is_some_and(|new| new.contains(needle)) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not appear within {timeout:?}:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn call(&self, key: &str, command: &str, body: &str) -> (u16, Value) {
        let path = format!("/v1/entities/hot-counter/{key}/{command}");
        let reply = cella_cli::client::send(&self.url, Method::POST, &path, body.into(), None)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:#}\n{}", self.output()));
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        )
    }

    async fn active_version(&self) -> Value {
        let reply = cella_cli::client::send(
            &self.url,
            Method::GET,
            "/v1/modules/hot-counter",
            Vec::new(),
            None,
        )
        .await
        .expect("modules");
        serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null)["version"].clone()
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    fn terminate(&mut self) -> bool {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `serving N ms` a reload line reports.
fn reported_ms(output: &str, from: usize) -> Option<u64> {
    let line = output[from..]
        .lines()
        .find(|l| l.starts_with("reloaded:"))?;
    let rest = &line[line.find("serving ")? + "serving ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reloads_on_save_and_keeps_serving_through_a_broken_edit() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = cella(work.path(), home.path(), &["new", "hot-counter"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let dir = work.path().join("hot-counter");
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    assert_eq!(source.matches("checked_add(n)").count(), 1, "{source}");

    let serial = BUILDS.lock().await;
    let mut dev = Dev::start(&dir, home.path());
    // The first build may compile every dependency (on a fresh machine).
    tokio::task::block_in_place(|| {
        dev.wait_for(0, "deployed: hot-counter v1", Duration::from_secs(900))
    });
    assert_eq!(dev.call("alice", "add", "5").await, (200, json!(5)));
    assert_eq!(dev.call("alice", "add", "2").await, (200, json!(7)));
    assert_eq!(dev.call("probe", "add", "1").await, (200, json!(1)));

    // Save a change of behaviour: `add` now adds twice the amount.
    let mark = dev.output().len();
    let saved = Instant::now();
    std::fs::write(
        &lib,
        source.replace("checked_add(n)", "checked_add(n.saturating_mul(2))"),
    )
    .unwrap();
    let mut probe = 1;
    let served = loop {
        let (status, reply) = dev.call("probe", "add", "1").await;
        assert_eq!(status, 200, "{reply}");
        let now = reply.as_i64().expect("a number");
        if now - probe == 2 {
            break saved.elapsed();
        }
        assert_eq!(now - probe, 1, "{}", dev.output());
        probe = now;
        assert!(
            saved.elapsed() < Duration::from_secs(120),
            "the new behaviour was not served within 120 s:\n{}",
            dev.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = tokio::task::block_in_place(|| {
        dev.wait_for(mark, "reloaded: hot-counter v2", Duration::from_secs(10))
    });
    let reported = reported_ms(&output, mark);
    println!(
        "save -> serving: {} ms measured over HTTP, {} ms reported by cella dev",
        served.as_millis(),
        reported.map_or("?".to_string(), |ms| ms.to_string())
    );
    if let Some(line) = output[mark..].lines().find(|l| l.starts_with("reloaded:")) {
        println!("cella dev: {line}");
    }
    // The state from before the edit was kept, and the new code runs on it.
    assert_eq!(dev.call("alice", "get", "").await, (200, json!(7)));
    assert_eq!(dev.call("alice", "add", "1").await, (200, json!(9)));
    assert_eq!(dev.active_version().await, json!(2));

    // A broken edit: the build fails, dev says why, and v2 keeps serving.
    let mark = dev.output().len();
    std::fs::write(
        &lib,
        source.replace("checked_add(n)", "checked_add(n.saturating_mul(2)) oops"),
    )
    .unwrap();
    let output = tokio::task::block_in_place(|| {
        dev.wait_for(
            mark,
            "hot-counter v2 keeps serving",
            Duration::from_secs(120),
        )
    });
    assert!(
        output[mark..].contains("reload failed: the build failed"),
        "{output}"
    );
    assert!(
        output[mark..].contains("oops"),
        "the compiler's error is shown:\n{output}"
    );
    assert_eq!(dev.call("alice", "add", "1").await, (200, json!(11)));
    assert_eq!(dev.active_version().await, json!(2));

    // A build whose state no longer fits the stored one: the node refuses it, v2 keeps serving.
    let mark = dev.output().len();
    std::fs::write(
        &lib,
        source
            .replace("checked_add(n)", "checked_add(n.saturating_mul(3))")
            .replace("total", "sum"),
    )
    .unwrap();
    let output = tokio::task::block_in_place(|| {
        dev.wait_for(mark, "reload refused", Duration::from_secs(120))
    });
    assert!(
        output[mark..].contains("hot-counter v2 keeps serving"),
        "{output}"
    );
    assert!(output[mark..].contains("cannot take over"), "{output}");
    assert_eq!(dev.call("alice", "add", "1").await, (200, json!(13)));
    assert_eq!(dev.active_version().await, json!(2));

    assert!(
        dev.terminate(),
        "cella dev did not exit cleanly:\n{}",
        dev.output()
    );
    drop(serial);
}

/// Whether componentize-py 0.25.1 is where `cella build` looks (`$COMPONENTIZE_PY`, `PATH`).
fn has_componentize_py() -> bool {
    let program = std::env::var_os("COMPONENTIZE_PY").filter(|v| !v.is_empty());
    Command::new(program.unwrap_or_else(|| "componentize-py".into()))
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success() && text(&out).0.trim().ends_with(" 0.25.1"))
}

/// The JavaScript SDK's installed build tools (`npm ci` in `sdk-guest/js`), if Node.js runs.
fn js_build_tools() -> Option<PathBuf> {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-guest/js/node_modules");
    let tool = modules.join("@bytecodealliance/componentize-js/package.json");
    let node = Command::new("node").arg("--version").output();
    (tool.is_file() && node.is_ok_and(|out| out.status.success())).then_some(modules)
}

/// `cella new hot-counter --lang LANG`, then `cella dev` on it: serves the value entity,
/// reloads it when `add` in `source` changes from `edits[0]` to `edits[1]` (twice the amount:
/// new behaviour on the kept state), keeps v2 serving through the broken edit `edits[2]`, and
/// stops cleanly. Returns the reload line.
async fn dev_reloads_and_keeps_state(lang: &str, source: &str, edits: [&str; 3]) -> String {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = cella(
        work.path(),
        home.path(),
        &["new", "hot-counter", "--lang", lang],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("cella dev"), "{}", text(&out).0);
    let dir = work.path().join("hot-counter");
    if let (Some(tools), "js") = (js_build_tools(), lang) {
        // The SDK copy's toolchain is the repository's installed one: nothing is downloaded.
        let sdk = home.path().join("sdk").join(env!("CARGO_PKG_VERSION"));
        std::os::unix::fs::symlink(tools, sdk.join("js/toolchain/node_modules")).unwrap();
    }
    let source = dir.join(source);
    let original = std::fs::read_to_string(&source).unwrap();
    assert_eq!(original.matches(edits[0]).count(), 1, "{original}");

    let serial = BUILDS.lock().await;
    let mut dev = Dev::start(&dir, home.path());
    let long = Duration::from_secs(600);
    tokio::task::block_in_place(|| dev.wait_for(0, "deployed: hot-counter v1", long));
    assert_eq!(dev.call("alice", "add", "5").await, (200, json!(5)));
    assert_eq!(dev.call("alice", "add", "2").await, (200, json!(7)));

    // Save a change of behaviour: `add` now adds twice the amount.
    let mark = dev.output().len();
    std::fs::write(&source, original.replace(edits[0], edits[1])).unwrap();
    let output =
        tokio::task::block_in_place(|| dev.wait_for(mark, "reloaded: hot-counter v2", long));
    assert!(reported_ms(&output, mark).is_some(), "{output}");
    let line = output[mark..].lines().find(|l| l.starts_with("reloaded:"));
    let line = line.unwrap_or_default().to_string();
    // The state from before the edit was kept, and the new code runs on it.
    assert_eq!(dev.call("alice", "get", "").await, (200, json!(7)));
    assert_eq!(dev.call("alice", "add", "1").await, (200, json!(9)));
    assert_eq!(dev.active_version().await, json!(2));

    // A broken edit: the build fails, dev says why, and v2 keeps serving.
    let mark = dev.output().len();
    std::fs::write(&source, original.replace(edits[0], edits[2])).unwrap();
    let output =
        tokio::task::block_in_place(|| dev.wait_for(mark, "hot-counter v2 keeps serving", long));
    let failed = "reload failed: the build failed";
    assert!(output[mark..].contains(failed), "{output}");
    assert_eq!(dev.call("alice", "add", "1").await, (200, json!(11)));
    assert_eq!(dev.active_version().await, json!(2));
    assert!(
        dev.terminate(),
        "cella dev did not exit cleanly:\n{}",
        dev.output()
    );
    drop(serial);
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reloads_a_python_entity_keeping_its_state() {
    assert!(
        has_componentize_py(),
        "componentize-py 0.25.1 is not installed: run the tests with `cargo xtask test` (or \
         `ci`), which installs it, or set COMPONENTIZE_PY"
    );
    let add = "total = self.total + ";
    let edits = [
        &format!("{add}n"),
        &format!("{add}2 * n"),
        &format!("{add}2 * n oops"),
    ];
    let line = dev_reloads_and_keeps_state("python", "app.py", edits.map(String::as_str)).await;
    println!("cella dev (Python): {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reloads_a_javascript_entity_keeping_its_state() {
    assert!(
        js_build_tools().is_some(),
        "the JavaScript build tools are not installed: run the tests with `cargo xtask test` \
         (or `ci`), which runs `npm ci --prefix sdk-guest/js` (needs Node.js 20+)"
    );
    let add = "const total = state.total + ";
    let edits = [
        &format!("{add}n;"),
        &format!("{add}2n * n;"),
        &format!("{add}2n * n oops;"),
    ];
    let line = dev_reloads_and_keeps_state("js", "src/index.js", edits.map(String::as_str)).await;
    println!("cella dev (JavaScript): {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_check_gates_and_rollback_reactivates() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]).unwrap();
    let server = node.url.clone();
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", server.as_str()]);
        Command::new(cella_bin())
            .args(&all)
            .output()
            .expect("run cella")
    };
    let tally = component("tally");
    let divergent = component("tally-divergent");
    let (tally, divergent) = (tally.to_str().unwrap(), divergent.to_str().unwrap());

    assert!(run(&["deploy", tally, "--name", "tally"]).status.success());
    assert_eq!(node.call("tally", "t1", "add", "3").await.json, json!(3));

    // Same code: nothing diverges, exit 0.
    let out = run(&["deploy", tally, "--name", "tally", "--check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("checked 1 entity of `tally` against the active v1"),
        "{stdout}"
    );

    // A different fold: the diverging entity is shown with both states, exit 3, not deployed.
    let out = run(&["deploy", divergent, "--name", "tally", "--check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("diverged: 1"), "{stdout}");
    assert!(stdout.contains("tally/t1"), "{stdout}");
    assert!(stdout.contains(r#"current:   {"total":3}"#), "{stdout}");
    assert!(stdout.contains(r#"candidate: {"total":6}"#), "{stdout}");
    assert!(stderr.contains("hint:"), "{stderr}");
    let info = node.request(Method::GET, "/v1/modules/tally", "").await;
    assert_eq!(info.json["version"], json!(1));

    // Deploy it anyway, then roll back to v1 (the default: the version before the active one).
    assert!(
        run(&["deploy", divergent, "--name", "tally"])
            .status
            .success()
    );
    let out = run(&["rollback", "tally"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"version\": 1"), "{stdout}");
    assert_eq!(node.call("tally", "t1", "get", "").await.json, json!(3));
    let out = run(&["rollback", "tally", "--to", "2"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("\"version\": 2"));
    let out = run(&["rollback", "tally", "--to", "9"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("404"), "{}", text(&out).1);
}
