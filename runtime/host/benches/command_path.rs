//! Benchmark of the command path inside the host: a fresh instance from the pool plus one
//! `handle` on the counter example, with state in and state out (no IO). Needs
//! `target/components/counter.wasm` (`cargo xtask build-examples`).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use cella_host::{CommandContext, Host, HostConfig};
use criterion::{Criterion, criterion_group, criterion_main};

fn counter_wasm() -> Vec<u8> {
    let dir = std::env::var_os("CELLA_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/components")
        });
    let path = dir.join("counter.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo xtask build-examples` first",
            path.display()
        )
    })
}

fn command_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = Host::new(HostConfig::default()).unwrap();
    let module = runtime.block_on(host.load(&counter_wasm())).unwrap();
    let ctx = CommandContext {
        entity_type: "counter".into(),
        key: "c1".into(),
        command_id: "cmd-1".into(),
        command: "add".into(),
        timestamp_ms: 1_700_000_000_000,
        random_seed: 7,
        sequence: 41,
        correlation: None,
        timer: None,
        message: None,
    };
    let state = runtime
        .block_on(async {
            let mut instance = module.instantiate().await?;
            instance.handle(&ctx, None, "41").await
        })
        .unwrap()
        .unwrap()
        .state
        .unwrap();

    let mut group = c.benchmark_group("command_path");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("instantiate", |b| {
        b.to_async(&runtime)
            .iter(|| async { drop(module.instantiate().await.unwrap()) })
    });
    group.bench_function("instantiate_and_handle", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut instance = module.instantiate().await.unwrap();
            let outcome = instance
                .handle(&ctx, Some(&state), "1")
                .await
                .unwrap()
                .unwrap();
            assert!(outcome.state.is_some());
        })
    });
    group.bench_function("warm_handle", |b| {
        let mut instance = runtime.block_on(module.instantiate()).unwrap();
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let outcome = instance
                        .handle(&ctx, Some(&state), "1")
                        .await
                        .unwrap()
                        .unwrap();
                    assert!(outcome.state.is_some());
                }
                started.elapsed()
            })
        })
    });
    group.finish();

    // Per-command latency percentiles (criterion reports per-sample means).
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let mut latencies = Vec::with_capacity(PERCENTILE_RUNS);
        for _ in 0..PERCENTILE_RUNS {
            let started = Instant::now();
            let mut instance = module.instantiate().await.unwrap();
            let outcome = instance
                .handle(&ctx, Some(&state), "1")
                .await
                .unwrap()
                .unwrap();
            drop(instance);
            latencies.push(started.elapsed());
            assert!(outcome.state.is_some());
        }
        latencies
    });
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "command_path/instantiate_and_handle over {PERCENTILE_RUNS} commands: p50 {:?}, p90 {:?}, \
         p99 {:?}, max {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

const PERCENTILE_RUNS: usize = 20_000;

criterion_group!(benches, command_path);
criterion_main!(benches);
