//! Durable append throughput with 64 concurrent appenders (ignored by default; run with
//! `cargo test -p cella-store --release -- --ignored --nocapture`).

mod common;

use std::time::{Duration, Instant};

use cella_core::Journal;
use cella_store::{Store, StoreOptions};
use common::append;

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(3);

async fn measure(label: &str, clients: usize, options: StoreOptions) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("client-{c}");
                let mut seq = 0;
                while started.elapsed() < RUN {
                    seq += 1;
                    store.append(vec![append(&key, seq)]).await.unwrap();
                }
                seq
            })
        })
        .collect();
    let mut appends = 0;
    for t in tasks {
        appends += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    assert_eq!(stats.append_requests, appends);
    println!(
        "{label}: {:.0} appends/s, {:.0} commits/s, {:.1} requests/commit, {:.0} µs/commit",
        appends as f64 / secs,
        stats.commits as f64 / secs,
        stats.batch_size_sum as f64 / stats.commits as f64,
        stats.commit_micros as f64 / stats.commits as f64,
    );
    println!(
        "  batch sizes (raw counts, le 1..256,+Inf): {:?}",
        stats.batch_sizes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn throughput_64_concurrent_appenders() {
    measure("1 appender, default", 1, StoreOptions::default()).await;
    measure("64 appenders, default", CLIENTS, StoreOptions::default()).await;
    for micros in [100, 250, 500] {
        let options = StoreOptions {
            linger: Duration::from_micros(micros),
            ..Default::default()
        };
        measure(
            &format!("64 appenders, linger {micros} µs"),
            CLIENTS,
            options,
        )
        .await;
    }
}
