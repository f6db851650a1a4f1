//! The listing part of `cargo xtask bench` (`--listing-only` runs it alone), against the
//! node(s) the bench started: creates `--listing-entities` counters (100,000 by default, keys
//! `e000000`…, over every partition) with concurrent clients, then times
//! `GET /v1/entities/counter?limit=100` — the first page, and a page from the middle
//! (`after=` the middle key) — asked of every node in turn: p50 and p99 in ms.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    bench_effects::{deploy, for_each, percentile, send},
    http::request,
};

/// The sizes of the listing part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Entities created before the pages are timed.
    pub entities: u32,
    /// Concurrent clients creating them.
    pub clients: u32,
}

/// Pages timed per kind of page.
const SAMPLES: usize = 200;
/// Entities per timed page.
const PAGE: usize = 100;

fn key(i: u32) -> String {
    format!("e{i:06}")
}

/// Times `SAMPLES` reads of `path`, round robin over `addrs`; each must be a full page.
async fn time_pages(addrs: &[String], path: &str) -> anyhow::Result<Vec<Duration>> {
    let mut took = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let addr = &addrs[i % addrs.len()];
        let started = Instant::now();
        let (status, body) = send(addr, "GET", path, Vec::new()).await?;
        took.push(started.elapsed());
        if status != 200 {
            bail!("{path} on {addr}: {status} {body}");
        }
        let page: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("{path} on {addr}: not JSON: {body}"))?;
        let n = page["entities"].as_array().map_or(0, Vec::len);
        if n != PAGE {
            bail!("{path} on {addr}: {n} entities, expected a full page");
        }
    }
    took.sort();
    Ok(took)
}

/// Waits until every node has loaded the `counter` module (a node lists a module it has not
/// loaded yet with `subscriptions: null`).
fn wait_for_module(addrs: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in addrs {
        loop {
            let (status, body) = request(addr, "GET", "/v1/modules/counter", b"")?;
            let loaded = status == 200
                && serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|m| m["subscriptions"].is_array());
            if loaded {
                break;
            }
            if Instant::now() > deadline {
                bail!("{addr} did not load the counter module within 60 s: {status} {body}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Runs the listing part against `addrs` (deploying `counter`).
pub fn run(addrs: &[String], opts: Options) -> anyhow::Result<()> {
    if (opts.entities as usize) < 2 * PAGE {
        bail!("--listing-entities: at least {} entities", 2 * PAGE);
    }
    deploy(&addrs[0], "counter", "counter.wasm")?;
    wait_for_module(addrs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the listing part")?;
    eprintln!(
        "listing: creating {} entities with {} clients",
        opts.entities, opts.clients
    );
    let shared = Arc::new(addrs.to_vec());
    let started = Instant::now();
    runtime.block_on(for_each(opts.entities, opts.clients, move |i| {
        let addrs = shared.clone();
        async move {
            let addr = &addrs[i as usize % addrs.len()];
            let path = format!("/v1/entities/counter/{}/add", key(i));
            let (status, body) = send(addr, "POST", &path, b"1".to_vec()).await?;
            if status != 200 {
                bail!("{path} on {addr}: {status} {body}");
            }
            Ok(())
        }
    }))?;
    let created = started.elapsed().as_secs_f64();
    let first = format!("/v1/entities/counter?limit={PAGE}");
    let middle = format!(
        "/v1/entities/counter?limit={PAGE}&after={}",
        key(opts.entities / 2)
    );
    let first_took = runtime.block_on(time_pages(addrs, &first))?;
    let middle_took = runtime.block_on(time_pages(addrs, &middle))?;

    println!(
        "\n| entities | nodes | created/s | page | pages timed | p50 ms | p99 ms |\n\
         |---:|---:|---:|---|---:|---:|---:|"
    );
    for (name, took) in [("first", &first_took), ("middle", &middle_took)] {
        println!(
            "| {} | {} | {:.0} | {name} ({PAGE}) | {} | {:.2} | {:.2} |",
            opts.entities,
            addrs.len(),
            f64::from(opts.entities) / created,
            took.len(),
            percentile(took, 0.50),
            percentile(took, 0.99),
        );
    }
    println!(
        "\nlisting: GET /v1/entities/counter?limit={PAGE}, one request at a time, asked of \
         every node in turn (a node reads the partitions it leads itself, the others at their \
         leaders, and merges the pages)."
    );
    Ok(())
}
