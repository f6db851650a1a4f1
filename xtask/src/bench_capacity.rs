//! The capacity part of `cargo xtask bench` (`--capacity-only` runs it alone): a node's memory
//! and the cost of bringing a passivated entity back, each on a node of its own.
//!
//! - idle RSS of a fresh node (no modules), and with the example counters deployed (Rust,
//!   JavaScript and Python `counter`), a few seconds after it became healthy;
//! - memory per resident small entity: the RSS growth over `--capacity-entities` counters
//!   (one `add` each, so every one stays resident) divided by their number — over all of them,
//!   and over the second half (what fills up once left out) — beside what the
//!   node accounts for them (`cella_resident_entity_bytes`);
//! - cold activation: with `--cache-capacity 1`, each entity's command finds it passivated
//!   (another entity ran in between), so it is loaded from snapshot and journal; p50 and p99
//!   of such a command, for a value entity (`counter`: snapshot and up to 16 entries) and an
//!   event-sourced one (`cart`, 99 events after its last snapshot), each request on a new
//!   connection and then all on one kept connection (the activation without the TCP set-up).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    bench_effects::{deploy, for_each, percentile, send},
    bench_langs::memory_kb,
    http::request,
    workspace_root,
};

/// The sizes of the capacity part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Counters made resident for the per-entity memory.
    pub entities: u32,
    /// Concurrent clients making them.
    pub clients: u32,
}

/// Entities timed per kind of cold activation.
const COLD: u32 = 500;
/// Events per event-sourced entity: just under a snapshot (every 100 events by default).
const EVENTS: u32 = 99;
/// Where the part's nodes listen (one at a time).
const ADDR: &str = "127.0.0.1:18195";

/// A `cella serve` of a benchmark part on a fresh data directory, killed when dropped (the
/// capacity and fairness parts).
pub(crate) struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// Starts `bin` on `dir` (emptied first) listening on `addr`, with `extra` flags, and waits
    /// until it is healthy.
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        addr: &str,
        extra: &[&str],
    ) -> anyhow::Result<Node> {
        let _ = std::fs::remove_dir_all(dir);
        let mut node = Node(
            Command::new(bin)
                .args(["serve", "--data-dir"])
                .arg(dir)
                .args(["--listen", addr])
                .args(extra)
                .stdout(Stdio::null())
                .spawn()
                .context("starting cella serve")?,
        );
        let started = Instant::now();
        while request(addr, "GET", "/healthz", b"")
            .map(|r| r.0)
            .unwrap_or(0)
            != 200
        {
            if let Some(status) = node.0.try_wait()? {
                bail!("cella serve exited ({status}) before becoming healthy");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("cella serve did not become healthy");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(node)
    }

    /// RSS in kB once the node is idle: after a deploy, the upload's buffers are given back
    /// 5–10 s later, so this waits 15 s, then until two readings 2 s apart differ by under 1 MiB
    /// (at most 40 s more).
    fn idle_rss_kb(&self) -> u64 {
        std::thread::sleep(Duration::from_secs(15));
        let started = Instant::now();
        let mut last = memory_kb(self.0.id()).0;
        loop {
            std::thread::sleep(Duration::from_secs(2));
            let now = memory_kb(self.0.id()).0;
            if now.abs_diff(last) < 1024 || started.elapsed() > Duration::from_secs(40) {
                return now;
            }
            last = now;
        }
    }
}

/// The value of gauge `name` in the node's `/metrics` (0 if absent).
fn gauge(name: &str) -> anyhow::Result<f64> {
    let (_, body) = request(ADDR, "GET", "/metrics", b"")?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// POSTs `body` to `path` on the node, which must answer 200.
async fn post(path: String, body: Vec<u8>) -> anyhow::Result<()> {
    let (status, reply) = send(ADDR, "POST", &path, body).await?;
    if status != 200 {
        bail!("{path}: {status} {reply}");
    }
    Ok(())
}

/// Times one command per entity `0..COLD`, in turn (so each finds itself passivated): each on
/// a new connection, or all on one kept connection (`kept`), which leaves the TCP set-up and
/// the server's connection task out of the time.
async fn time_cold(
    path: impl Fn(u32) -> String,
    body: &[u8],
    kept: bool,
) -> anyhow::Result<Vec<Duration>> {
    let mut connection = match kept {
        true => Some(cella_client::Connection::open(&crate::http::url(ADDR)).await?),
        false => None,
    };
    let mut took = Vec::new();
    for i in 0..COLD {
        let started = Instant::now();
        match &mut connection {
            Some(connection) => {
                let reply = connection
                    .send("POST".parse()?, &path(i), body.to_vec())
                    .await?;
                if reply.status != 200 {
                    bail!("{}: {} {}", path(i), reply.status, reply.body);
                }
            }
            None => post(path(i), body.to_vec()).await?,
        }
        took.push(started.elapsed());
    }
    took.sort();
    Ok(took)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

pub fn run(bin: &Path, tmp: &Path, opts: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the capacity part")?;
    let dir = tmp.join("capacity");

    let fresh = Node::start(bin, &dir, ADDR, &[])?.idle_rss_kb();
    let node = Node::start(bin, &dir, ADDR, &[])?;
    let components = crate::build::target_dir(&workspace_root()).join("components");
    let mut counters = 0;
    for (name, file) in [
        ("counter", "counter.wasm"),
        ("counter-js", "js/counter.wasm"),
        ("counter-py", "python/counter.wasm"),
    ] {
        // The JavaScript and Python counters are built by `cargo xtask tck`.
        if components.join(file).exists() {
            deploy(ADDR, name, file)?;
            counters += 1;
        } else {
            eprintln!("capacity: {file} is not built (cargo xtask tck builds it): not deployed");
        }
    }
    let deployed = node.idle_rss_kb();
    drop(node);

    // Memory per resident entity: one counter module, N counters made resident.
    let node = Node::start(bin, &dir, ADDR, &["--cache-capacity", "10000000"])?;
    deploy(ADDR, "counter", "counter.wasm")?;
    runtime.block_on(post(
        "/v1/entities/counter/warmup/add".into(),
        b"1".to_vec(),
    ))?;
    // Two halves: the growth over the second one leaves out what fills up once (the store's
    // page cache, the raft log cache, the deferred writes).
    let half = opts.entities / 2;
    let before = node.idle_rss_kb();
    eprintln!("capacity: making {} counters resident", opts.entities);
    runtime.block_on(for_each(half, opts.clients, |i| {
        post(format!("/v1/entities/counter/c{i:07}/add"), b"1".to_vec())
    }))?;
    let middle = node.idle_rss_kb();
    runtime.block_on(for_each(opts.entities - half, opts.clients, move |i| {
        post(
            format!("/v1/entities/counter/c{:07}/add", half + i),
            b"1".to_vec(),
        )
    }))?;
    let after = node.idle_rss_kb();
    let resident = gauge("cella_cached_entities")?;
    let accounted = gauge("cella_resident_entity_bytes")?;
    drop(node);
    let per_entity =
        |from: u64, n: u32| (after.saturating_sub(from) as f64 * 1024.0) / f64::from(n.max(1));
    let (overall, marginal) = (
        per_entity(before, opts.entities),
        per_entity(middle, opts.entities - half),
    );

    // Cold activation: every entity's command finds it passivated.
    let node = Node::start(bin, &dir, ADDR, &["--cache-capacity", "1"])?;
    deploy(ADDR, "counter", "counter.wasm")?;
    deploy(ADDR, "cart", "shopping-cart.wasm")?;
    runtime.block_on(for_each(COLD * 20, opts.clients, |i| {
        post(
            format!("/v1/entities/counter/v{}/add", i % COLD),
            b"1".to_vec(),
        )
    }))?;
    runtime.block_on(for_each(COLD * EVENTS, opts.clients, |i| {
        let item = format!(r#"{{"productId":"p{i}","name":"n","quantity":1}}"#);
        post(
            format!("/v1/entities/cart/e{}/add-item", i % COLD),
            item.into_bytes(),
        )
    }))?;
    let mut cold = Vec::new();
    for kept in [false, true] {
        let value = runtime.block_on(time_cold(
            |i| format!("/v1/entities/counter/v{i}/get"),
            b"null",
            kept,
        ))?;
        let events = runtime.block_on(time_cold(
            |i| format!("/v1/entities/cart/e{i}/get-cart"),
            b"null",
            kept,
        ))?;
        cold.push((kept, value, events));
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "\n| idle node, fresh | idle, {counters} counters deployed | resident counters | RSS \
         growth per entity (all; second half) | accounted per entity |\n|---:|---:|---:|---:|---:|"
    );
    println!(
        "| {} | {} | {resident:.0} | {overall:.0} B; {marginal:.0} B | {:.0} B |",
        mib(fresh),
        mib(deployed),
        accounted / resident.max(1.0),
    );
    println!(
        "\n| cold activation | connection | entities | p50 ms | p99 ms |\n|---|---|---:|---:|---:|"
    );
    for (kept, value, events) in &cold {
        let connection = if *kept { "kept" } else { "new per request" };
        for (what, took) in [
            ("value (counter: snapshot + ≤16 entries)", value),
            ("event-sourced (cart: 99 events)", events),
        ] {
            println!(
                "| {what} | {connection} | {} | {:.2} | {:.2} |",
                took.len(),
                percentile(took, 0.50),
                percentile(took, 0.99),
            );
        }
    }
    Ok(())
}
