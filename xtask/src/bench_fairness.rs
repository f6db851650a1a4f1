//! The fairness part of `cargo xtask bench` (`--fairness-only` runs it alone, on a node of its
//! own): the `counter` example's throughput — `--clients` clients sending `add` without pause,
//! each to its own entity, for `--secs` seconds — alone, then while `--fairness-loopers`
//! clients drive a guest that loops until its deadline (`misbehave`'s `spin`, deployed as
//! `spin` with no limits of its own, so the node's defaults hold it back). Reported: both
//! throughputs and their ratio (the goal is at least 0.5), and how the looping calls ended
//! (`504` deadline, `429` refused).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    bench_capacity::Node,
    bench_effects::{deploy, send},
};

/// The flags of the fairness part (part of `cargo xtask bench`'s).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[group(id = "fairness_args")]
pub struct Args {
    /// Run only the fairness part: counter throughput alone, then beside clients driving a
    /// guest that loops until its deadline, and their ratio
    #[arg(long, conflicts_with_all = ["effects_only", "topics_only", "langs_only", "listing_only", "capacity_only"])]
    pub fairness_only: bool,
    /// Fairness part: clients driving the looping guest
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub fairness_loopers: u32,
}

impl Args {
    /// The parts `--fairness-only` runs (`None` without it).
    pub fn parts(&self, secs: u32, clients: u32) -> Option<crate::bench::Parts> {
        self.fairness_only.then(|| crate::bench::Parts {
            fairness: Some(Options {
                loopers: self.fairness_loopers,
                clients: clients.min(16),
                secs,
            }),
            ..crate::bench::Parts::default()
        })
    }
}

/// The sizes of the fairness part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Clients driving the looping guest.
    pub loopers: u32,
    /// Clients sending counter commands.
    pub clients: u32,
    /// Seconds each measurement lasts.
    pub secs: u32,
}

/// Where the part's node listens.
const ADDR: &str = "127.0.0.1:18196";

/// Counter commands per second over `secs`, `clients` clients each on its own entity.
async fn counter_rps(clients: u32, secs: u32, round: &str) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(u64::from(secs));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (done, path) = (done.clone(), format!("/v1/entities/counter/{round}{c}/add"));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let (status, body) = send(ADDR, "POST", &path, b"1".to_vec()).await?;
                if status != 200 {
                    bail!("{path}: {status} {body}");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / f64::from(secs.max(1)))
}

pub fn run(bin: &Path, tmp: &Path, opts: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the fairness part")?;
    let dir = tmp.join("fairness");
    let _node = Node::start(bin, &dir, ADDR, &[])?;
    deploy(ADDR, "counter", "counter.wasm")?;
    deploy(ADDR, "spin", "misbehave.wasm")?;
    let (alone, with, answers) = runtime.block_on(async {
        counter_rps(opts.clients, 1, "warm").await?;
        let alone = counter_rps(opts.clients, opts.secs, "alone").await?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loopers = Vec::new();
        for l in 0..opts.loopers {
            let stop = stop.clone();
            loopers.push(tokio::spawn(async move {
                let (mut timed_out, mut refused, mut other) = (0u64, 0u64, 0u64);
                let path = format!("/v1/entities/spin/l{l}/spin");
                while !stop.load(Ordering::Relaxed) {
                    match send(ADDR, "POST", &path, Vec::new()).await?.0 {
                        504 => timed_out += 1,
                        429 => refused += 1,
                        _ => other += 1,
                    }
                }
                anyhow::Ok((timed_out, refused, other))
            }));
        }
        // Let the loopers fill the node first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with = counter_rps(opts.clients, opts.secs, "with").await?;
        stop.store(true, Ordering::Relaxed);
        let mut answers = (0, 0, 0);
        for looper in loopers {
            let (t, r, o) = looper.await??;
            answers = (answers.0 + t, answers.1 + r, answers.2 + o);
        }
        anyhow::Ok((alone, with, answers))
    })?;
    drop(_node);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n| counter clients | counter alone req/s | with {} loopers req/s | ratio | looping \
         calls: 504 / 429 / other |\n|---:|---:|---:|---:|---|",
        opts.loopers
    );
    println!(
        "| {} | {alone:.0} | {with:.0} | {:.2} | {} / {} / {} |",
        opts.clients,
        with / alone.max(1.0),
        answers.0,
        answers.1,
        answers.2
    );
    Ok(())
}
