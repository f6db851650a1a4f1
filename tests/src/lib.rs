//! Test harness for integration tests: spawns real `cella` node processes on 127.0.0.1 with
//! temporary data directories, talks to them over HTTP, and kills every process it started
//! (on drop too). Components come from `target/components` (`cargo xtask build-examples`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod cluster;
pub mod crdt;
pub mod tokens;
pub mod topics;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::Value;

pub use cella_cli::client::encode_segment;

/// The `cella` program under test: the package's `cella-node` binary, which cargo builds next
/// to the integration test executables (`target/<profile>/deps/..`).
pub fn cella_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable directory");
    let bin = dir.join(format!("cella-node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build with `cargo test -p cella-tests`",
        bin.display()
    );
    bin
}

/// A finished process's stdout and stderr as text.
pub fn output_text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Path of a built component, e.g. `component("counter")`.
pub fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/components")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-examples` first (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// A `cella serve` process.
pub struct TestNode {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
}

/// A reply: status and parsed JSON body (`Value::Null` if the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub json: Value,
}

impl TestNode {
    /// Starts a node on an ephemeral port with `data_dir`, plus extra `serve` arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<TestNode> {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_path_buf(), "127.0.0.1:0", args)
    }

    /// Starts a node listening on `listen` (`host:port`), for nodes whose address must be known
    /// before they start (cluster members).
    pub fn start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<TestNode> {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_path_buf(), listen, args)
    }

    /// Starts a node and deploys the examples: `counter` as `counter`, `shopping-cart` as `cart`.
    pub async fn with_examples(data_dir: &Path, extra: &[&str]) -> TestNode {
        let node = Self::start(data_dir, extra).expect("start node");
        for (ty, name) in [("counter", "counter"), ("cart", "shopping-cart")] {
            let r = node.deploy(ty, &component(name)).await;
            assert_eq!(r.status, 201, "deploying {name}: {}", r.body);
        }
        node
    }

    fn spawn(data_dir: PathBuf, listen: &str, args: Vec<String>) -> anyhow::Result<TestNode> {
        let mut child = Command::new(cella_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(listen)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning cella serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let mut node = TestNode {
            child: Some(child),
            url: String::new(),
            data_dir,
            args,
        };
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the node did not report its address within 60 s")?;
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .with_context(|| format!("unexpected first line: {first}"))?;
        node.url = url.to_string();
        Ok(node)
    }

    /// The process id of the node (`None` once it was killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The address (`host:port`) the node listens on.
    pub fn addr(&self) -> String {
        let url = self.url.as_str();
        let addr = url.strip_prefix("https://").unwrap_or(url);
        addr.trim_start_matches("http://").to_string()
    }

    /// Sends a request.
    pub async fn request(&self, method: Method, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request_with_token(method, path, body, None).await
    }

    pub async fn request_with_token(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Vec<u8>>,
        token: Option<&str>,
    ) -> Reply {
        let r = cella_cli::client::send(&self.url, method, path, body.into(), token)
            .await
            .unwrap_or_else(|e| panic!("request {path} failed: {e:#}"));
        let json = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Reply {
            status: r.status,
            body: r.body,
            json,
        }
    }

    /// The value of the unlabelled series `name` in the node's `/metrics`, if it has one.
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let text = self.request(Method::GET, "/metrics", "").await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Runs a command and returns the reply.
    pub async fn call(&self, ty: &str, key: &str, command: &str, body: &str) -> Reply {
        let path = format!(
            "/v1/entities/{}/{}/{}",
            encode_segment(ty),
            encode_segment(key),
            encode_segment(command)
        );
        self.request(Method::POST, &path, body).await
    }

    /// Deploys a component file as `ty`.
    pub async fn deploy(&self, ty: &str, file: &Path) -> Reply {
        let bytes = std::fs::read(file).expect("read component");
        self.request(Method::PUT, &format!("/v1/modules/{ty}"), bytes)
            .await
    }

    /// SIGKILLs the node and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs the node and waits (bounded) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            bail!("not running")
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the node did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new process on the same address, data directory and arguments.
    pub fn restart_in_place(&mut self) -> anyhow::Result<()> {
        let listen = self.addr();
        self.kill9();
        let next = Self::spawn(self.data_dir.clone(), &listen, self.args.clone())?;
        *self = next;
        Ok(())
    }

    /// Starts a new process (new port) on the same data directory and arguments.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let next = Self::spawn(self.data_dir.clone(), "127.0.0.1:0", self.args.clone())?;
        *self = next;
        Ok(())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` distinct free ports on 127.0.0.1 (bound, read, released), none handed out before in
/// this process: a port released here is free for the kernel to give again, and the tests of
/// one binary run at once, so two of them could otherwise be given the same port.
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        // Held until all are picked, so the kernel cannot give one of them twice meanwhile.
        listeners.push(listener);
        if given.insert(port) {
            ports.push(port);
        }
    }
    ports
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `POST path` to `addr` with extra `headers` ([`topics::request_with_headers`]): the status
/// and the body; a failed exchange panics.
pub async fn post_with_headers(
    addr: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    topics::request_with_headers(addr, "POST", path, body, headers)
        .await
        .unwrap_or_else(|e| panic!("POST {path} on {addr}: {e:#}"))
}
