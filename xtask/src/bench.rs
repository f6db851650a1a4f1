//! `cargo xtask bench`: the durable-counter workload of the peer comparison (wrk, `POST
//! .../add` body `1`, 1,000 random keys and one hot key, 1/16/64 connections) against a
//! `cella serve` built with the `dist` profile (release with link-time optimization), printing
//! req/s, p50 and p99 and checking that the counters' sum matches the acknowledged requests;
//! then the effects, topics and languages parts (`bench_effects`, `bench_topics`,
//! `bench_langs`), then the criterion micro-benchmark of the command path.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{build, http::request, workspace_root};

/// The wrk script of the peer comparison: a random key of NKEYS (or one hot key, or one of the
/// comma-separated KEYLIST) per request.
const KEYS_LUA: &str = r#"
local nkeys  = tonumber(os.getenv("NKEYS") or "1000")
local list   = {}
for k in string.gmatch(os.getenv("KEYLIST") or "", "[^,]+") do list[#list + 1] = k end
local prefix = os.getenv("PREFIX") or "k"
local fmt    = os.getenv("PATHFMT") or "/counter/%s/add"
local tid = 0
function setup(thread) tid = tid + 1; thread:set("tid", tid) end
function init(args) math.randomseed(12345 + (tid or 0)) end
wrk.method = "POST"
wrk.body = "1"
wrk.headers["Content-Type"] = "application/json"
function request()
  local key
  if #list > 0 then key = list[math.random(1, #list)]
  elseif nkeys <= 1 then key = prefix .. "hot" else key = prefix .. tostring(math.random(0, nkeys - 1)) end
  return wrk.format(nil, string.format(fmt, key))
end
function done(s, lat, req)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    lat:percentile(50), lat:percentile(99)))
end
"#;

struct Server(Child);

/// CPU time the servers used so far, in µs.
fn cpu_micros(servers: &[Server]) -> u64 {
    servers
        .iter()
        .map(|s| crate::wrk::process_cpu_micros(s.0.id()))
        .sum()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("-v").output().is_ok() {
        return Ok(());
    }
    eprintln!("wrk is missing; installing it with apt-get");
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!("wrk is not installed\nhint: apt-get install wrk");
    }
    Ok(())
}

fn sum_counters(addr: &str, keys: &[String]) -> anyhow::Result<i64> {
    let mut sum = 0;
    for k in keys {
        let (status, body) = request(addr, "POST", &format!("/v1/entities/counter/{k}/get"), b"")?;
        if status != 200 {
            bail!("reading counter {k}: {status} {body}");
        }
        sum += body
            .trim()
            .parse::<i64>()
            .with_context(|| format!("counter {k} replied {body}"))?;
    }
    Ok(sum)
}

struct Row {
    pattern: &'static str,
    conns: u32,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    ok: u64,
    delta: i64,
    /// The nodes' CPU time per 2xx reply, where `/proc` tells it.
    cpu_us: Option<f64>,
}

fn run_wrk(
    addr: &str,
    script: &Path,
    conns: u32,
    nkeys: u32,
    secs: u32,
) -> anyhow::Result<serde_json::Value> {
    run_wrk_path(
        addr,
        script,
        conns,
        nkeys,
        secs,
        "/v1/entities/counter/%s/add",
    )
}

/// [`run_wrk`] with the request path `pathfmt` (`%s` is the key).
pub(crate) fn run_wrk_path(
    addr: &str,
    script: &Path,
    conns: u32,
    nkeys: u32,
    secs: u32,
    pathfmt: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut cmd = crate::wrk::wrk(addr, script, conns, secs);
    cmd.env("NKEYS", nkeys.to_string())
        .env("PREFIX", "k")
        .env("PATHFMT", pathfmt);
    crate::wrk::wrk_result(cmd)
}

/// Runs the benchmark. `secs` per cell.
/// Waits until every raft group seen from `addr` has a leader, and leaders are on every node.
pub(crate) fn wait_for_leaders(addrs: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        // A node reports the groups it takes part in: each group must be led as some node
        // reports it, and every node must lead a partition.
        let mut leaders = std::collections::BTreeMap::new();
        let mut last = String::new();
        for addr in addrs {
            let (status, body) = request(addr, "GET", "/v1/cluster", b"")?;
            if status != 200 {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&body)?;
            for g in v["groups"].as_array().cloned().unwrap_or_default() {
                if let (Some(group), Some(leader)) = (g["group"].as_u64(), g["leader"].as_u64()) {
                    leaders.insert(group, leader);
                }
            }
            let partitions = v["partitions"].as_u64().unwrap_or(0);
            if leaders.len() as u64 == partitions + 1
                && (1..=addrs.len() as u64).all(|n| leaders.iter().any(|(g, l)| *g != 0 && *l == n))
            {
                return Ok(());
            }
            last = body;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the cluster did not elect and spread its leaders: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The connections `conns` becomes over `nodes` wrk runs: split evenly, at least one each.
fn connections_used(nodes: usize, conns: u32) -> u32 {
    let nodes = nodes.max(1) as u32;
    (conns / nodes).max(1) * nodes
}

/// Runs one wrk per address at once (connections split evenly) and merges their results:
/// counts add up, latency percentiles are the worst of the runs.
fn run_wrk_all(
    addrs: &[String],
    script: &Path,
    conns: u32,
    nkeys: u32,
    secs: u32,
) -> anyhow::Result<serde_json::Value> {
    if addrs.len() == 1 {
        return run_wrk(&addrs[0], script, conns, nkeys, secs);
    }
    let per = connections_used(addrs.len(), conns) / addrs.len() as u32;
    let results: Vec<anyhow::Result<serde_json::Value>> = std::thread::scope(|scope| {
        let runs: Vec<_> = addrs
            .iter()
            .map(|a| scope.spawn(move || run_wrk(a, script, per, nkeys, secs)))
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("wrk thread panicked")))
            })
            .collect()
    });
    let mut merged = serde_json::Map::new();
    for r in results {
        let r = r?;
        for (k, v) in r.as_object().into_iter().flatten() {
            let v = v.as_u64().unwrap_or(0);
            let entry = merged.entry(k.clone()).or_insert(serde_json::json!(0u64));
            let old = entry.as_u64().unwrap_or(0);
            *entry = serde_json::json!(match k.as_str() {
                "p50_us" | "p99_us" | "duration_us" => old.max(v),
                _ => old + v,
            });
        }
    }
    Ok(serde_json::Value::Object(merged))
}

/// Which parts of the bench run (by default, none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// The wrk workload (and the micro-benchmark, if `micro`).
    pub wrk: bool,
    /// The effects part, with its sizes.
    pub effects: Option<crate::bench_effects::Options>,
    /// The topics part, with its sizes.
    pub topics: Option<crate::bench_topics::Options>,
    /// The languages part (one node only), with its languages.
    pub langs: Option<crate::bench_langs::Options>,
    /// The listing part, with its sizes.
    pub listing: Option<crate::bench_listing::Options>,
    /// The capacity part (alone: it starts nodes of its own), with its sizes.
    pub capacity: Option<crate::bench_capacity::Options>,
    /// The fairness part (alone: it starts a node of its own), with its sizes.
    pub fairness: Option<crate::bench_fairness::Options>,
    /// The crdt part (alone: it starts nodes of its own), with its sizes.
    pub crdt: Option<crate::bench_crdt::Options>,
    /// The placement part (alone: it starts nodes of its own), with its sizes.
    pub placement: Option<crate::bench_placement::Options>,
    /// Mutual TLS between the nodes (`--peer-ca/--peer-cert/--peer-key`, certificates made
    /// by `cella cluster certs`) instead of the cluster secret; the listener then speaks TLS to
    /// clients too, so the bench's requests and wrk use `https://`.
    pub peer_tls: bool,
}

pub fn run(
    secs: u32,
    concs: &[u32],
    micro: bool,
    nodes: u32,
    mut parts: Parts,
) -> anyhow::Result<()> {
    let root = workspace_root();
    if nodes > 1 && parts.langs.is_some() {
        if !parts.wrk
            && parts.effects.is_none()
            && parts.topics.is_none()
            && parts.listing.is_none()
        {
            bail!("--langs-only: the languages part runs on a single node; drop --nodes {nodes}");
        }
        eprintln!("the languages part runs on a single node only: skipped with --nodes {nodes}");
        parts.langs = None;
    }
    if parts.peer_tls && nodes < 2 {
        bail!("--peer-tls is for a cluster: add --nodes N (N > 1)");
    }
    if parts.peer_tls && parts.topics.is_some() {
        bail!("--peer-tls: the topics part's SSE reader speaks plain HTTP only; add --no-topics");
    }
    if parts.wrk || parts.topics.is_some() || parts.langs.is_some() {
        ensure_wrk()?;
    }
    if parts.wrk
        || parts.effects.is_some()
        || parts.topics.is_some()
        || parts.listing.is_some()
        || parts.capacity.is_some()
        || parts.fairness.is_some()
    {
        build::build_examples()?;
    }
    // `CELLA_BENCH_BIN` runs another build of `cella` (A/B comparisons in one sitting).
    let bin = match std::env::var_os("CELLA_BENCH_BIN") {
        Some(bin) => std::path::PathBuf::from(bin),
        None => {
            let status = Command::new(env!("CARGO"))
                .current_dir(&root)
                .args([
                    "build",
                    "--profile",
                    "dist",
                    "-p",
                    "cella-cli",
                    "--bin",
                    "cella",
                ])
                .status()?;
            if !status.success() {
                bail!("build of the benchmarked node (profile dist) failed");
            }
            build::target_dir(&root).join("dist/cella")
        }
    };
    let tmp = std::env::temp_dir().join(format!("cella-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let script = tmp.join("keys.lua");
    std::fs::write(&script, KEYS_LUA)?;
    // The parts that start nodes of their own run alone.
    let alone = match (parts.fairness, parts.capacity, parts.crdt, parts.placement) {
        (Some(o), ..) => Some(crate::bench_fairness::run(&bin, &tmp, o)),
        (_, Some(o), ..) => Some(crate::bench_capacity::run(&bin, &tmp, o)),
        (_, _, Some(o), _) => Some(crate::bench_crdt::run(&bin, &tmp, &script, o)),
        (.., Some(o)) => Some(crate::bench_placement::run(&bin, &tmp, &script, o)),
        _ => None,
    };
    if let Some(result) = alone {
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
    // The languages part's counters, scaffolded and built before any node runs.
    let langs = match &parts.langs {
        Some(opts) => Some(crate::bench_langs::prepare(&bin, &tmp, opts)?),
        None => None,
    };
    // One node, or a cluster of `nodes` (each node its own data directory and port).
    let addrs: Vec<String> = (0..nodes.max(1))
        .map(|i| format!("127.0.0.1:{}", 18095 + i))
        .collect();
    let initial = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    // A server already listening there would answer in place of the one benchmarked.
    for a in &addrs {
        if std::net::TcpListener::bind(a).is_err() {
            bail!("{a} is in use: stop whatever listens there (an earlier node?) and run again");
        }
    }
    // The nodes' cluster secret, new for each run.
    let secret = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    // With `--peer-tls`: a CA and one certificate per node (node{i}.pem, i from 1), and this
    // process's requests over TLS trusting that CA.
    let certs = tmp.join("certs");
    if parts.peer_tls {
        let status = Command::new(&bin)
            .args(["cluster", "certs", "--out"])
            .arg(&certs)
            .args(["--nodes", &addrs.len().to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running cella cluster certs")?;
        if !status.success() {
            bail!("cella cluster certs failed ({status})");
        }
        crate::http::use_https(&certs.join("ca.pem"))?;
    }
    let mut servers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut serve = Command::new(&bin);
        serve
            .args(["serve", "--data-dir"])
            .arg(tmp.join(format!("data{i}")))
            .args(["--listen", addr])
            .stdout(Stdio::null());
        // Extra `cella serve` arguments for experiments, e.g. `--replicas 1`, or
        // `--insecure-peers` to measure the cluster without peer authentication.
        let extra = std::env::var("CELLA_BENCH_SERVE_ARGS").unwrap_or_default();
        if addrs.len() > 1 {
            serve.args([
                "--node-id",
                &(i + 1).to_string(),
                "--initial-cluster",
                &initial,
            ]);
            if parts.peer_tls {
                serve
                    .arg("--peer-ca")
                    .arg(certs.join("ca.pem"))
                    .arg("--peer-cert")
                    .arg(certs.join(format!("node{}.pem", i + 1)))
                    .arg("--peer-key")
                    .arg(certs.join(format!("node{}-key.pem", i + 1)));
            } else if !extra.split_whitespace().any(|a| a == "--insecure-peers") {
                // In the environment, not on the command line, as an operator would.
                serve.env("CELLA_CLUSTER_SECRET", &secret);
            }
        }
        serve.args(extra.split_whitespace());
        servers.push(Server(serve.spawn().context("starting cella serve")?));
    }
    let started = Instant::now();
    for (a, server) in addrs.iter().zip(&mut servers) {
        while request(a, "GET", "/healthz", b"").map(|r| r.0).unwrap_or(0) != 200 {
            if let Some(status) = server.0.try_wait()? {
                bail!("cella serve on {a} exited ({status}) before becoming healthy");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("cella serve on {a} did not become healthy");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if addrs.len() > 1 {
        wait_for_leaders(&addrs)?;
    }
    let started_kb = crate::bench_langs::memory_kb(servers[0].0.id()).0;
    let mut client_rps = None;
    if parts.wrk {
        client_rps = Some(wrk_part(&addrs, &servers, &script, secs, concs)?);
    }
    if let Some(opts) = parts.effects {
        crate::bench_effects::run(&addrs, opts, client_rps)?;
    }
    if let Some(opts) = parts.topics {
        crate::bench_topics::run(&addrs, opts, &|| cpu_micros(&servers))?;
    }
    if let (Some(opts), Some(prepared)) = (&parts.langs, &langs) {
        crate::bench_langs::run(
            &addrs[0],
            servers[0].0.id(),
            &script,
            prepared,
            opts,
            &|| cpu_micros(&servers),
            started_kb,
        )?;
    }
    if let Some(opts) = parts.listing {
        crate::bench_listing::run(&addrs, opts)?;
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&tmp);
    if micro && parts.wrk {
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["bench", "-p", "cella-host", "--bench", "command_path"])
            .status()?;
        if !status.success() {
            bail!("micro-benchmark failed");
        }
    }
    Ok(())
}

/// The wrk part; returns the best req/s over 1,000 keys.
fn wrk_part(
    addrs: &[String],
    servers: &[Server],
    script: &Path,
    secs: u32,
    concs: &[u32],
) -> anyhow::Result<f64> {
    let root = workspace_root();
    let addr = addrs[0].as_str();
    let script = &script.to_path_buf();
    let wasm = std::fs::read(build::target_dir(&root).join("components/counter.wasm"))?;
    let (status, body) = request(addr, "PUT", "/v1/modules/counter", &wasm)?;
    if status >= 300 {
        bail!("deploy failed: {status} {body}");
    }
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let hot = vec!["khot".to_string()];
    // Warm-up: touch every key, then a short run.
    for k in keys.iter().chain(&hot) {
        request(addr, "POST", &format!("/v1/entities/counter/{k}/add"), b"0")?;
    }
    run_wrk_all(addrs, script, 16, 1000, 2)?;

    let mut rows = Vec::new();
    for (pattern, set, nkeys) in [("1000 keys", &keys, 1000), ("1 hot key", &hot, 1)] {
        for &conns in concs {
            let before = sum_counters(addr, set)?;
            let cpu_before = cpu_micros(servers);
            let r = run_wrk_all(addrs, script, conns, nkeys, secs)?;
            let cpu = cpu_micros(servers).saturating_sub(cpu_before);
            let get = |k: &str| r[k].as_u64().unwrap_or(0);
            let errors = get("err_status")
                + get("err_connect")
                + get("err_read")
                + get("err_write")
                + get("err_timeout");
            let ok = get("requests") - get("err_status");
            std::thread::sleep(Duration::from_millis(500));
            let after = sum_counters(addr, set)?;
            let row = Row {
                pattern,
                // Connections actually open (each node's wrk gets at least one): at most this
                // many requests were in flight, applied but unanswered, when wrk stopped.
                conns: connections_used(addrs.len(), conns),
                rps: ok as f64 / (get("duration_us") as f64 / 1e6),
                p50_ms: get("p50_us") as f64 / 1000.0,
                p99_ms: get("p99_us") as f64 / 1000.0,
                errors,
                ok,
                delta: after - before,
                cpu_us: (ok > 0).then(|| cpu as f64 / ok as f64),
            };
            eprintln!(
                "{pattern} c={conns}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms",
                row.rps, row.p50_ms, row.p99_ms
            );
            rows.push(row);
        }
    }
    println!(
        "\n| keys | conns | req/s | p50 ms | p99 ms | errors | 2xx | counter delta | check | CPU µs/req |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut mismatch = false;
    for r in &rows {
        let extra = r.delta - r.ok as i64;
        let check = if extra >= 0 && extra <= i64::from(r.conns) {
            "ok"
        } else {
            mismatch = true;
            "MISMATCH"
        };
        let cpu = r.cpu_us.map_or("-".to_string(), |c| format!("{c:.0}"));
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {check} | {cpu} |",
            r.pattern, r.conns, r.rps, r.p50_ms, r.p99_ms, r.errors, r.ok, r.delta
        );
    }
    println!(
        "\n{secs}s per cell, wrk -t1, POST body 1, durable (fsync per group commit). {} cores. \
         CPU µs/req: the nodes' CPU time (user + system, not wrk's) per 2xx reply. {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        if addrs.len() > 1 {
            format!(
                "{} nodes, 3 replicas per partition; one wrk per node, connections split evenly, \
                 p50/p99 the worst of the nodes.{}",
                addrs.len(),
                if crate::http::url("").starts_with("https") {
                    " Peers authenticated by mutual TLS; clients over TLS too (https://)."
                } else {
                    ""
                }
            )
        } else {
            "One node.".to_string()
        }
    );
    if mismatch {
        bail!("the counters' sum does not match the acknowledged requests");
    }
    Ok(rows
        .iter()
        .filter(|r| r.pattern == "1000 keys")
        .map(|r| r.rps)
        .fold(0.0, f64::max))
}
