//! The crdt part of `cargo xtask bench` (`--crdt-only` runs it, on nodes of its own):
//!
//! - **local writes on 3 nodes**: three `cella serve` on this machine (`--insecure-peers`), one
//!   wrk per node at once (the connections split evenly, 1,000 random keys): the durable,
//!   strongly consistent `counter` (`add`, body `1`) against the `likes` crdt (`like`, body
//!   `null`: applied by the node that receives it, gossiped after). Then, once the likes load
//!   stopped, how long until the three nodes report the same count for a sample of keys, and
//!   the check that the converged sum over all keys grew by the acknowledged likes (at most the
//!   open connections more: requests in flight when wrk stops are applied, not counted);
//! - **ephemeral value entities on one node**: `visits` (`add`, body `1`, state in memory only)
//!   against the non-durable node:http baseline of the peer comparison (the same server, path
//!   shape and wrk script), run in the same sitting, and the durable `counter` for reference;
//! - **memory per ephemeral entity**: on a fresh node, the RSS growth over `--crdt-entities`
//!   entities of an or-set crdt (`presence`, `join` with a short name) and of a value entity
//!   (`visits`), each made by one command over many keep-alive connections, per entity and as
//!   entities per GiB.

mod client;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use self::client::{agree, post_each};
use crate::{
    bench::{Parts, run_wrk_path, wait_for_leaders},
    bench_effects::deploy,
    bench_langs::memory_kb,
    http::request,
};

/// The flags of the crdt part (part of `cargo xtask bench`'s).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// Run only the crdt part: the likes crdt (local writes) against the strong counter on 3
    /// nodes, with convergence and its count check; ephemeral value entities against a
    /// node:http baseline; memory per ephemeral entity (`--clients` connections, `--secs` each)
    #[arg(long, conflicts_with_all = ["effects_only", "topics_only", "langs_only", "listing_only",
        "capacity_only", "fairness_only", "nodes", "peer_tls"])]
    pub crdt_only: bool,
    /// Crdt part: ephemeral entities of each kind made for the memory per entity
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub crdt_entities: u32,
}

impl Args {
    /// The parts `--crdt-only` runs (`None` without it).
    pub fn parts(&self, secs: u32, clients: u32) -> Option<Parts> {
        self.crdt_only.then(|| Parts {
            crdt: Some(Options {
                entities: self.crdt_entities,
                conns: clients,
                secs,
            }),
            ..Parts::default()
        })
    }
}

/// The sizes of the crdt part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Entities of each kind made for the memory per entity.
    pub entities: u32,
    /// wrk connections of each load (split over the nodes), and clients making entities.
    pub conns: u32,
    /// Seconds each load lasts.
    pub secs: u32,
}

/// Keys of each load.
const KEYS: u32 = 1000;
/// Keys sampled for convergence: every this many of the [`KEYS`].
const SAMPLE_EVERY: u32 = 50;
/// Where the cluster's nodes listen.
const CLUSTER: [&str; 3] = ["127.0.0.1:18291", "127.0.0.1:18292", "127.0.0.1:18293"];
/// Where the single node of the ephemeral and memory measurements listens.
const SINGLE: &str = "127.0.0.1:18294";
/// Where the node:http baseline listens.
const BASELINE: &str = "127.0.0.1:18290";

/// The non-durable baseline of the peer comparison: a plain node:http server keeping counters
/// in a map, `POST /counter/{key}/add` (body: the amount), `GET /counter/{key}/get`.
const BASELINE_MJS: &str = r#"
import http from "node:http";
const counts = new Map();
const port = Number(process.env.PORT ?? 8090);
http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    const m = /^\/counter\/([^/]+)\/(add|get|sum)$/.exec(req.url);
    if (m && m[2] === "add") {
      const v = (counts.get(m[1]) ?? 0) + (body === "" ? 1 : Number(body));
      counts.set(m[1], v); res.writeHead(200, {"content-type": "application/json"}); res.end(String(v));
    } else if (m && m[2] === "get") { res.writeHead(200); res.end(String(counts.get(m[1]) ?? 0)); }
    else if (m && m[2] === "sum") { let s = 0; for (const v of counts.values()) s += v; res.writeHead(200); res.end(String(s)); }
    else { res.writeHead(404); res.end(); }
  });
}).listen(port, "127.0.0.1", () => console.log(`baseline on 127.0.0.1:${port}`));
"#;

/// A process of the part (a node, the baseline), killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Spawns `cmd` (`what`, to listen on `addr`) and waits until `GET ready` answers 200.
    pub(crate) fn start(
        mut cmd: Command,
        addr: &str,
        ready: &str,
        what: &str,
    ) -> anyhow::Result<Proc> {
        if TcpListener::bind(addr).is_err() {
            bail!("{addr} is in use: stop whatever listens there (an earlier run?) and run again");
        }
        let spawned = cmd.stdout(Stdio::null()).spawn();
        let mut proc = Proc(spawned.with_context(|| format!("starting {what}"))?);
        let started = Instant::now();
        while request(addr, "GET", ready, b"").map_or(0, |r| r.0) != 200 {
            if let Some(status) = proc.0.try_wait()? {
                bail!("{what} on {addr} exited ({status}) before it was ready");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{what} on {addr} was not ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proc)
    }

    /// `cella serve` on a fresh data directory `dir`, with `extra` flags.
    fn node(bin: &Path, dir: &Path, addr: &str, extra: &[String]) -> anyhow::Result<Proc> {
        let _ = std::fs::remove_dir_all(dir);
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--data-dir"]).arg(dir);
        cmd.args(["--listen", addr]).args(extra);
        Proc::start(cmd, addr, "/healthz", "cella serve")
    }

    /// RSS in kB once it settles: after `wait`, until two readings 1 s apart differ by under
    /// 256 KiB (at most 20 s more).
    fn settled_rss_kb(&self, wait: Duration) -> u64 {
        std::thread::sleep(wait);
        let started = Instant::now();
        let mut last = memory_kb(self.0.id()).0;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = memory_kb(self.0.id()).0;
            if now.abs_diff(last) < 256 || started.elapsed() > Duration::from_secs(20) {
                return now;
            }
            last = now;
        }
    }
}

/// One load: wrk's results over all its runs.
struct Load {
    what: &'static str,
    conns: u32,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    ok: u64,
}

/// One wrk per address at once (`conns` split evenly, at least one each), 1,000 random keys,
/// POSTing `script`'s body to `pathfmt`: counts add up, p50/p99 are the worst of the runs.
fn load(
    what: &'static str,
    addrs: &[&str],
    script: &Path,
    conns: u32,
    secs: u32,
    pathfmt: &str,
) -> anyhow::Result<Load> {
    let per = (conns / addrs.len() as u32).max(1);
    let runs: Vec<anyhow::Result<serde_json::Value>> = std::thread::scope(|scope| {
        let runs: Vec<_> = addrs
            .iter()
            .map(|a| scope.spawn(move || run_wrk_path(a, script, per, KEYS, secs, pathfmt)))
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("wrk thread panicked")))
            })
            .collect()
    });
    let mut out = Load {
        what,
        conns: per * addrs.len() as u32,
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
        ok: 0,
    };
    for run in runs {
        let run = run?;
        let get = |k: &str| run[k].as_u64().unwrap_or(0);
        let ok = get("requests").saturating_sub(get("err_status"));
        out.ok += ok;
        out.rps += ok as f64 / (get("duration_us").max(1) as f64 / 1e6);
        out.p50_ms = out.p50_ms.max(get("p50_us") as f64 / 1000.0);
        out.p99_ms = out.p99_ms.max(get("p99_us") as f64 / 1000.0);
        out.errors += crate::wrk::errors(&run);
    }
    eprintln!(
        "crdt: {what}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms",
        out.rps, out.p50_ms, out.p99_ms
    );
    Ok(out)
}

fn print_loads(title: &str, loads: &[&Load]) {
    println!(
        "\n| {title} | conns | req/s | p50 ms | p99 ms | errors | 2xx |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for l in loads {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            l.what, l.conns, l.rps, l.p50_ms, l.p99_ms, l.errors, l.ok
        );
    }
}

/// Waits until every node of the cluster has module `name`.
pub(crate) fn wait_for_module(addrs: &[&str], name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    for a in addrs {
        while request(a, "GET", &format!("/v1/modules/{name}"), b"")?.0 != 200 {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("module {name} did not reach {a} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Local writes on 3 nodes: counter against likes, then convergence and the likes' check.
fn cluster(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    tmp: &Path,
    script: &Path,
    null_script: &Path,
    opts: Options,
) -> anyhow::Result<()> {
    let addrs: Vec<String> = CLUSTER.iter().map(|a| a.to_string()).collect();
    let initial = (1..)
        .zip(CLUSTER)
        .map(|(i, a)| format!("{i}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, addr) in (1..).zip(CLUSTER) {
        let extra = [
            "--node-id",
            &i.to_string(),
            "--initial-cluster",
            &initial,
            "--insecure-peers",
        ];
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        nodes.push(Proc::node(
            bin,
            &tmp.join(format!("crdt-node{i}")),
            addr,
            &extra,
        )?);
    }
    wait_for_leaders(&addrs)?;
    deploy(CLUSTER[0], "counter", "counter.wasm")?;
    deploy(CLUSTER[0], "likes", "likes.wasm")?;
    wait_for_module(&CLUSTER, "counter")?;
    wait_for_module(&CLUSTER, "likes")?;
    // Warm-up: every key once, then a short load of each.
    let (n, c) = (KEYS, opts.conns);
    rt.block_on(post_each(
        &CLUSTER,
        n,
        c,
        |i| format!("/v1/entities/counter/k{i}/add"),
        b"0",
    ))?;
    rt.block_on(post_each(
        &CLUSTER,
        n,
        c,
        |i| format!("/v1/entities/likes/k{i}/like"),
        b"null",
    ))?;
    load(
        "warm-up",
        &CLUSTER,
        script,
        c,
        2,
        "/v1/entities/counter/%s/add",
    )?;
    load(
        "warm-up",
        &CLUSTER,
        null_script,
        c,
        2,
        "/v1/entities/likes/%s/like",
    )?;

    let counter = load(
        "counter add (durable, strong)",
        &CLUSTER,
        script,
        c,
        opts.secs,
        "/v1/entities/counter/%s/add",
    )?;
    let all = || 0..KEYS;
    let before: i64 = rt
        .block_on(agree(&CLUSTER, all(), Duration::from_secs(30)))?
        .0
        .iter()
        .sum();
    let likes = load(
        "likes like (crdt, local writes)",
        &CLUSTER,
        null_script,
        c,
        opts.secs,
        "/v1/entities/likes/%s/like",
    )?;
    let sample = || (0..KEYS).step_by(SAMPLE_EVERY as usize);
    let (_, converged) = rt.block_on(agree(&CLUSTER, sample(), Duration::from_secs(30)))?;
    let (counts, _) = rt.block_on(agree(&CLUSTER, all(), Duration::from_secs(30)))?;
    drop(nodes);

    print_loads("3 nodes, 1,000 keys", &[&counter, &likes]);
    println!(
        "\nratio likes / counter: {:.2} (goal ≥ 3). One wrk per node at once, connections split \
         evenly, p50/p99 the worst of the nodes.",
        likes.rps / counter.rps.max(1.0)
    );
    let delta = counts.iter().sum::<i64>() - before;
    let extra = delta - likes.ok as i64;
    let ok = (0..=i64::from(likes.conns)).contains(&extra);
    println!(
        "\n| convergence: {} sampled keys on 3 nodes | likes' sum grew by | 2xx likes | \
         surplus | check |\n|---:|---:|---:|---:|---|\n| {:.0} ms | {delta} | {} | {extra} | {} |",
        KEYS / SAMPLE_EVERY,
        converged.as_secs_f64() * 1000.0,
        likes.ok,
        if ok { "ok" } else { "MISMATCH" },
    );
    println!(
        "\nconvergence: from the end of the likes load until all 3 nodes report the same count \
         for every sampled key. check: the converged sum over all keys grew by the 2xx likes \
         plus a surplus of at most one per connection (applied, in flight when wrk stopped)."
    );
    if !ok {
        bail!(
            "the likes' converged sum grew by {delta}, but {} likes were acknowledged \
             ({extra:+} beyond them, {} connections)",
            likes.ok,
            likes.conns
        );
    }
    Ok(())
}

/// Ephemeral value entities on one node against the node:http baseline, and the counter.
fn ephemeral(bin: &Path, tmp: &Path, script: &Path, opts: Options) -> anyhow::Result<()> {
    let node_js = tmp.join("baseline.mjs");
    std::fs::write(&node_js, BASELINE_MJS)?;
    if Command::new("node").arg("-v").output().is_err() {
        bail!(
            "node is not installed: the baseline is a node:http server\nhint: install Node.js (20 or later)"
        );
    }
    let mut cmd = Command::new("node");
    cmd.arg(&node_js)
        .env("PORT", BASELINE.rsplit(':').next().unwrap_or_default());
    let baseline = Proc::start(cmd, BASELINE, "/counter/x/get", "the node:http baseline")?;
    let node = Proc::node(bin, &tmp.join("crdt-single"), SINGLE, &[])?;
    deploy(SINGLE, "visits", "visits.wasm")?;
    deploy(SINGLE, "counter", "counter.wasm")?;
    let (c, secs) = (opts.conns, opts.secs);
    let mut rows = Vec::new();
    for (what, addr, path) in [
        (
            "node:http baseline (in memory)",
            BASELINE,
            "/counter/%s/add",
        ),
        (
            "visits add (ephemeral value)",
            SINGLE,
            "/v1/entities/visits/%s/add",
        ),
        (
            "counter add (durable)",
            SINGLE,
            "/v1/entities/counter/%s/add",
        ),
    ] {
        load("warm-up", &[addr], script, c, 2, path)?;
        rows.push(load(what, &[addr], script, c, secs, path)?);
    }
    drop((node, baseline));
    print_loads("1 node, 1,000 keys", &rows.iter().collect::<Vec<_>>());
    println!(
        "\nratio visits / node:http baseline: {:.2} (goal ≥ 0.8); counter / baseline: {:.2}. The \
         baseline is the peer comparison's plain node:http server, in the same sitting.",
        rows[1].rps / rows[0].rps.max(1.0),
        rows[2].rps / rows[0].rps.max(1.0)
    );
    Ok(())
}

/// Memory per ephemeral entity: the RSS growth of a fresh node over `opts.entities` of each kind.
fn memory(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    tmp: &Path,
    opts: Options,
) -> anyhow::Result<()> {
    let n = opts.entities;
    let mut rows = Vec::new();
    for (what, ty, command, body) in [
        (
            "or-set crdt (presence join \"u\")",
            "presence",
            "join",
            &b"\"u\""[..],
        ),
        ("value (visits add 1)", "visits", "add", b"1"),
    ] {
        let node = Proc::node(bin, &tmp.join("crdt-memory"), SINGLE, &[])?;
        deploy(SINGLE, "presence", "presence.wasm")?;
        deploy(SINGLE, "visits", "visits.wasm")?;
        // Warm-up: the module instantiated, the connections' buffers allocated once.
        let path = move |i| format!("/v1/entities/{ty}/w{i}/{command}");
        rt.block_on(post_each(&[SINGLE], 1000, opts.conns, path, body))?;
        // A deploy's buffers are given back some seconds later: wait them out.
        let before = node.settled_rss_kb(Duration::from_secs(15));
        eprintln!("crdt: making {n} {ty} entities");
        let path = move |i| format!("/v1/entities/{ty}/m{i:07}/{command}");
        rt.block_on(post_each(&[SINGLE], n, opts.conns, path, body))?;
        let after = node.settled_rss_kb(Duration::from_secs(3));
        let (status, state) = request(
            SINGLE,
            "GET",
            &format!("/v1/entities/{ty}/m{:07}", n - 1),
            b"",
        )?;
        if status != 200 {
            bail!("reading the last {ty} entity made: {status} {state}");
        }
        drop(node);
        rows.push((what, before, after));
    }
    let _ = std::fs::remove_dir_all(tmp.join("crdt-memory"));
    println!(
        "\n| ephemeral entity | entities | RSS before | RSS after | bytes per entity | entities per GiB |\n|---|---:|---:|---:|---:|---:|"
    );
    for (what, before, after) in rows {
        let per = after.saturating_sub(before) as f64 * 1024.0 / f64::from(n);
        println!(
            "| {what} | {n} | {:.1} MiB | {:.1} MiB | {per:.0} | {:.2} M |",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            f64::from(1u32 << 30) / per.max(1.0) / 1e6
        );
    }
    println!(
        "\nRSS: VmRSS of a fresh node with both modules deployed, before and after one command per \
         new entity ({} keep-alive connections), each once settled. Goal: ≥ 1 M entities per GiB.",
        opts.conns
    );
    Ok(())
}

/// Runs the part with the node binary `bin`, files under `tmp`, wrk script `script`.
pub fn run(bin: &Path, tmp: &Path, script: &Path, opts: Options) -> anyhow::Result<()> {
    crate::bench::ensure_wrk()?;
    crate::build::build_examples()?;
    // The same wrk script with the body `null` (a `like` takes no amount).
    let text = std::fs::read_to_string(script)?;
    if !text.contains("wrk.body = \"1\"") {
        bail!("{}: no `wrk.body = \"1\"` to replace", script.display());
    }
    let null_script = tmp.join("keys-null.lua");
    std::fs::write(
        &null_script,
        text.replace("wrk.body = \"1\"", "wrk.body = \"null\""),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the crdt part")?;
    cluster(&rt, bin, tmp, script, &null_script, opts)?;
    ephemeral(bin, tmp, script, opts)?;
    memory(&rt, bin, tmp, opts)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parts(args: &[&str]) -> Option<Parts> {
        let args = ["cargo xtask", "bench"]
            .into_iter()
            .chain(args.iter().copied());
        crate::Cli::try_parse_from(args)
            .ok()
            .map(|cli| crate::bench_parts(&cli.command))
    }

    #[test]
    fn crdt_only_runs_the_crdt_part_alone() {
        let only = parts(&["--crdt-only", "--crdt-entities", "500", "--secs", "3"]);
        let want = Options {
            entities: 500,
            conns: 64,
            secs: 3,
        };
        assert_eq!(only.and_then(|p| p.crdt), Some(want));
        let Some(all) = parts(&[]) else {
            panic!("`bench` does not parse");
        };
        assert_eq!((all.crdt, all.wrk), (None, true));
        assert!(parts(&["--crdt-only", "--capacity-only"]).is_none());
        assert!(parts(&["--crdt-only", "--nodes", "3"]).is_none());
        assert!(parts(&["--crdt-entities", "0"]).is_none());
    }
}
