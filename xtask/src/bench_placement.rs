//! The placement part of `cargo xtask bench` (`--placement-only` runs it, on nodes of its
//! own): a workload skewed onto one node, on nodes given unequal CPU, rebalanced by the
//! placement loop.
//!
//! Three `cella serve` with nine partitions (node 1 is the layout's leader of partitions 1, 4
//! and 7; two replicas each, on nodes 1 and 2), pinned with `taskset`: node 1 to CPU 0, which
//! it shares with a busy loop (a noisy neighbour: node 1 gets about half a CPU), nodes 2 and 3
//! to CPU 1 (on a machine with more CPUs, node 1 and the loop get one and the others the rest). The counter is driven with `add`
//! (body `1`) over 1,000 keys that all fall in partitions 1, 4 and 7, by one wrk per node (the
//! connections split evenly), in back-to-back intervals of `--placement-interval` seconds for
//! `--placement-secs` in all, while the nodes run the placement loop with its default
//! thresholds (a move confirmed over ten rounds instead of three, so that the intervals before
//! it are steady, and five seconds between moves instead of ten, so that a run sees each). Each interval
//! reports the throughput, the p99, each node's CPU (from `/proc`) and who leads the busy
//! partitions; the summary compares the intervals before the first move with those after the
//! last one (skipping the interval each move happened in).
//!
//! With `--placement-one-partition` the load is 48 keys, each in a shard of its own, all in
//! partition 1: moving its leadership
//! would only move the heat, so what the loop does is move hot shards out of it
//! (`cella_cluster::hot_shards`); each interval then also reports the shards moved so far.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, bail};

use crate::{
    bench::{Parts, wait_for_leaders},
    bench_crdt::{Proc, wait_for_module},
    bench_effects::deploy,
    http::request,
    wrk::{wrk, wrk_result},
};

/// The flags of the placement part (part of `cargo xtask bench`'s).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[group(id = "placement_args")]
pub struct Args {
    /// Run only the placement part: a load skewed onto the partitions one node leads, on 3
    /// nodes given unequal CPU (`taskset`), before and after the placement loop moves
    /// leadership (`--clients` connections)
    #[arg(long, conflicts_with_all = ["effects_only", "topics_only", "langs_only", "listing_only",
        "capacity_only", "fairness_only", "crdt_only", "nodes", "peer_tls"])]
    pub placement_only: bool,
    /// Placement part: seconds of load in all
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub placement_secs: u32,
    /// Placement part: seconds per measured interval
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub placement_interval: u32,
    /// Placement part: every key in partition 1 (which node 1 leads), so that the loop moves
    /// shards out of it rather than leadership
    #[arg(long)]
    pub placement_one_partition: bool,
}

impl Args {
    /// The parts `--placement-only` runs (`None` without it).
    pub fn parts(&self, clients: u32) -> Option<Parts> {
        self.placement_only.then(|| Parts {
            placement: Some(Options {
                secs: self.placement_secs,
                interval: self.placement_interval,
                conns: clients,
                one_partition: self.placement_one_partition,
            }),
            ..Parts::default()
        })
    }
}

/// The sizes of the placement part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub secs: u32,
    pub interval: u32,
    pub conns: u32,
    /// Every key in partition 1 (else in 1, 4 and 7).
    pub one_partition: bool,
}

const NODES: [&str; 3] = ["127.0.0.1:18391", "127.0.0.1:18392", "127.0.0.1:18393"];
const PARTITIONS: u32 = 9;
/// The partitions node 1 leads by the layout: the load's.
const HOT: [u64; 3] = [1, 4, 7];
/// The load's partitions with `--placement-one-partition`.
const ONE: [u64; 1] = [1];
const KEYS: usize = 1000;
/// The keys with `--placement-one-partition`.
const ONE_KEYS: usize = 48;
/// The requests: `add 1` to a counter.
const PATHFMT: &str = "/v1/entities/counter/%s/add";

/// The partition of counter `key` among [`PARTITIONS`]: `cella_cluster::placement`'s FNV-1a
/// over the type, a zero byte and the key, 4,096 shards, shard `s` in partition `s % P + 1`
/// (written again here: `cargo xtask` builds without the runtime; the test pins both to the
/// same value).
fn partition(key: &str) -> u64 {
    shard(key) % u64::from(PARTITIONS) + 1
}

/// The shard of counter `key` (see [`partition`]).
fn shard(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"counter\0".iter().chain(key.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 4096
}

/// The load's keys: [`KEYS`] in partitions 1, 4 and 7, or [`ONE_KEYS`] in partition 1, each
/// in a shard of its own (a few hot entities; shards of many keys each would be too many to
/// move).
fn load_keys(one_partition: bool) -> Vec<String> {
    let mut shards = std::collections::BTreeSet::new();
    let keys = (0..).map(|i| format!("k{i}"));
    if one_partition {
        keys.filter(|k| partition(k) == 1 && shards.insert(shard(k)))
            .take(ONE_KEYS)
            .collect()
    } else {
        keys.filter(|k| HOT.contains(&partition(k)))
            .take(KEYS)
            .collect()
    }
}

/// The CPU sets: node 1 alone on the first CPU, the others on the rest.
fn cpu_sets() -> [String; 3] {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rest = if n <= 2 {
        "1".to_string()
    } else {
        format!("1-{}", n - 1)
    };
    ["0".to_string(), rest.clone(), rest]
}

/// A process's CPU time so far in seconds (`/proc`), 0 where unreadable.
fn cpu_secs(pid: u32) -> f64 {
    crate::wrk::process_cpu_micros(pid) as f64 / 1e6
}

/// One interval of load: wrk on every node at once.
struct Interval {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    cores: Vec<f64>,
    leaders: Vec<u64>,
    /// Moves made so far: of leadership and of shards.
    moves: usize,
    shards_moved: usize,
    /// Each node's pressure and the plan, as a dry run saw them after the interval.
    pressures: Vec<f64>,
    plan: String,
}

fn run_interval(
    script: &Path,
    keys: &str,
    opts: Options,
    nodes: &[Proc],
) -> anyhow::Result<Interval> {
    let per = (opts.conns / NODES.len() as u32).max(1);
    let cpu0: Vec<f64> = nodes.iter().map(|n| cpu_secs(n.0.id())).collect();
    let started = Instant::now();
    let runs: Vec<anyhow::Result<serde_json::Value>> = std::thread::scope(|scope| {
        let runs: Vec<_> = NODES
            .iter()
            .map(|addr| {
                scope.spawn(move || {
                    let mut cmd = wrk(addr, script, per, opts.interval);
                    cmd.env("KEYLIST", keys).env("PATHFMT", PATHFMT);
                    wrk_result(cmd)
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|_| bail!("wrk thread panicked")))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut interval = Interval {
        rps: 0.0,
        p99_ms: 0.0,
        errors: 0,
        cores: nodes
            .iter()
            .zip(cpu0)
            .map(|(n, c0)| (cpu_secs(n.0.id()) - c0) / wall)
            .collect(),
        leaders: Vec::new(),
        moves: 0,
        shards_moved: 0,
        pressures: Vec::new(),
        plan: String::new(),
    };
    for run in runs {
        let run = run?;
        let get = |k: &str| run[k].as_u64().unwrap_or(0);
        interval.rps += get("requests") as f64 / (get("duration_us").max(1) as f64 / 1e6);
        interval.p99_ms = interval.p99_ms.max(get("p99_us") as f64 / 1000.0);
        interval.errors += crate::wrk::errors(&run);
    }
    let (_, body) = request(NODES[0], "GET", "/v1/cluster", b"")?;
    let status: serde_json::Value = serde_json::from_str(&body)?;
    let groups = status["groups"].as_array().cloned().unwrap_or_default();
    interval.leaders = HOT
        .iter()
        .map(|p| {
            groups
                .iter()
                .find(|g| g["group"] == *p)
                .and_then(|g| g["leader"].as_u64())
                .unwrap_or(0)
        })
        .collect();
    let count = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    interval.shards_moved = status["shardMoves"]["moved"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    interval.moves = count(&status["placement"]["moves"]) + count(&status["shardMoves"]["moves"]);
    let (code, body) = request(NODES[0], "POST", "/v1/cluster/rebalance?dry-run=true", b"")?;
    if code != 200 {
        bail!("the dry run answered {code}: {body}");
    }
    let dry: serde_json::Value = serde_json::from_str(&body)?;
    let mut loads = dry["loads"].as_array().cloned().unwrap_or_default();
    loads.sort_by_key(|l| l["node"].as_u64());
    interval.pressures = loads
        .iter()
        .map(|l| l["pressure"].as_f64().unwrap_or(0.0))
        .collect();
    let shards = count(&dry["shardPlan"]["moves"]);
    interval.plan = match dry["plan"]["move"].as_object() {
        Some(m) => format!("move {} → {}", m["group"], m["to"]),
        None if shards > 0 => format!("{shards} shard(s)"),
        None => dry["plan"]["note"]
            .as_str()
            .and_then(|n| n.split(':').next())
            .unwrap_or("")
            .to_string(),
    };
    Ok(interval)
}

/// Runs the placement part with the `cella` binary `bin`, scratch files under `tmp`, wrk's
/// `script` (the peer comparison's, given the keys in `KEYLIST`).
pub fn run(bin: &Path, tmp: &Path, script: &Path, opts: Options) -> anyhow::Result<()> {
    let hot: &[u64] = if opts.one_partition { &ONE } else { &HOT };
    let keys = load_keys(opts.one_partition);
    let keylist = keys.join(",");
    let initial = (1..)
        .zip(NODES)
        .map(|(i, a)| format!("{i}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let sets = cpu_sets();
    // The noisy neighbour on node 1's CPU, killed with the part.
    let mut hog = Command::new("taskset");
    hog.args(["-c", &sets[0], "sh", "-c", "while :; do :; done"]);
    let _hog = Proc(
        hog.spawn()
            .context("starting the busy loop beside node 1")?,
    );
    let mut nodes = Vec::new();
    for ((i, addr), cpus) in (1..).zip(NODES).zip(&sets) {
        let dir = tmp.join(format!("placement-node{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpus])
            .arg(bin)
            .args(["serve", "--data-dir"])
            .arg(&dir);
        cmd.args(["--listen", addr, "--node-id", &i.to_string()]);
        cmd.args(["--initial-cluster", &initial, "--insecure-peers"]);
        cmd.args(["--partitions", &PARTITIONS.to_string(), "--replicas", "2"]);
        // Ten rounds before a move (the default is three), so that the intervals before it
        // are steady; five seconds between moves (the default is ten), so a run sees each.
        cmd.args([
            "--rebalance-confirm",
            "10",
            "--rebalance-cooldown-secs",
            "5",
        ]);
        nodes.push(Proc::start(cmd, addr, "/healthz", "cella serve (taskset)")?);
    }
    let addrs: Vec<String> = NODES.iter().map(|a| a.to_string()).collect();
    wait_for_leaders(&addrs)?;
    deploy(NODES[0], "counter", "counter.wasm")?;
    wait_for_module(&NODES, "counter")?;
    println!(
        "\n## Placement: a load skewed onto node 1 (partitions {hot:?} of {PARTITIONS}), CPUs \
         {sets:?} (a busy loop on node 1's), {} connections, {} keys\n",
        opts.conns,
        keys.len()
    );
    println!(
        "| s | req/s | p99 ms | errors | node 1 cores | node 2 | node 3 | pressures | plan | \
         leaders of {HOT:?} | moves | shards moved |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|");
    let rounds = (opts.secs / opts.interval).max(2);
    let mut intervals = Vec::new();
    for r in 0..rounds {
        let i = run_interval(script, &keylist, opts, &nodes)?;
        println!(
            "| {} | {:.0} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2?} | {} | {:?} | {} | {} |",
            (r + 1) * opts.interval,
            i.rps,
            i.p99_ms,
            i.errors,
            i.cores[0],
            i.cores[1],
            i.cores[2],
            i.pressures,
            i.plan,
            i.leaders,
            i.moves,
            i.shards_moved
        );
        intervals.push(i);
    }
    summarize(&intervals);
    drop(nodes);
    Ok(())
}

/// Before (intervals with no move yet) against after (those past the last move's interval).
fn summarize(intervals: &[Interval]) {
    let last_moves = intervals.last().map_or(0, |i| i.moves);
    // The first interval warms up (connections, caches): not compared.
    let before: Vec<&Interval> = intervals
        .iter()
        .skip(1)
        .take_while(|i| i.moves == 0)
        .collect();
    let settled = intervals
        .iter()
        .position(|i| i.moves == last_moves)
        .map_or(intervals.len(), |p| p + 1);
    let after: Vec<&Interval> = intervals.iter().skip(settled).collect();
    let mean = |xs: &[&Interval], f: &dyn Fn(&Interval) -> f64| {
        xs.iter().map(|i| f(i)).sum::<f64>() / xs.len().max(1) as f64
    };
    if last_moves == 0 || before.is_empty() || after.is_empty() {
        println!(
            "\nmoves: {last_moves}; not enough intervals before and after them to compare \
             (run longer: --placement-secs)"
        );
        return;
    }
    let (b, a) = (mean(&before, &|i| i.rps), mean(&after, &|i| i.rps));
    println!(
        "\n{last_moves} move(s). Before: {b:.0} req/s, node CPU {:.2} / {:.2} / {:.2} cores; \
         after: {a:.0} req/s ({:.2}×), node CPU {:.2} / {:.2} / {:.2} cores",
        mean(&before, &|i| i.cores[0]),
        mean(&before, &|i| i.cores[1]),
        mean(&before, &|i| i.cores[2]),
        a / b.max(1.0),
        mean(&after, &|i| i.cores[0]),
        mean(&after, &|i| i.cores[1]),
        mean(&after, &|i| i.cores[2]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_the_partitions_the_runtime_puts_them_in() {
        // `cella_cluster::placement`'s pinned value: counter/c1 is in shard 3821.
        assert_eq!(partition("c1"), 3821 % 9 + 1);
        let hot = (0..900)
            .filter(|i| HOT.contains(&partition(&format!("k{i}"))))
            .count();
        assert!((250..350).contains(&hot), "{hot}");
        let one = load_keys(true);
        assert_eq!(one.len(), ONE_KEYS);
        assert!(one.iter().all(|k| partition(k) == 1));
        let shards: std::collections::BTreeSet<u64> = one.iter().map(|k| shard(k)).collect();
        assert_eq!(shards.len(), ONE_KEYS);
    }

    #[test]
    fn placement_only_runs_the_placement_part_alone() {
        let parse = |args: &[&str]| {
            let args = ["xtask", "bench"].into_iter().chain(args.iter().copied());
            <crate::Cli as clap::Parser>::try_parse_from(args)
                .ok()
                .map(|cli| crate::bench_parts(&cli.command))
        };
        let want = Options {
            secs: 30,
            interval: 3,
            conns: 48,
            one_partition: false,
        };
        let only = parse(&[
            "--placement-only",
            "--placement-secs",
            "30",
            "--clients",
            "48",
        ]);
        assert_eq!(only.and_then(|p| p.placement), Some(want));
        assert_eq!(parse(&[]).and_then(|p| p.placement), None);
        let one = parse(&["--placement-only", "--placement-one-partition"]);
        assert!(
            one.and_then(|p| p.placement)
                .is_some_and(|o| o.one_partition)
        );
        assert!(parse(&["--placement-only", "--crdt-only"]).is_none());
        assert!(parse(&["--placement-only", "--nodes", "3"]).is_none());
        assert!(parse(&["--placement-secs", "5"]).is_none());
    }
}
