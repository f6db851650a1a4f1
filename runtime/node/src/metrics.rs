//! Node metrics: counters and a latency histogram kept in atomics, rendered in the Prometheus
//! text exposition format together with the store's and the host's statistics.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// Upper bounds (seconds) of the command latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
    1.024,
];

/// Outcome label of a finished command.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Ok,
    Rejected,
    Failed,
}

/// Counters of one node.
#[derive(Default)]
pub struct Metrics {
    commands_ok: AtomicU64,
    commands_rejected: AtomicU64,
    commands_failed: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub events_replayed: AtomicU64,
    forwarded: AtomicU64,
}

impl Metrics {
    /// Records one request forwarded to the node leading its entity's partition.
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Relaxed);
    }

    /// Records one finished command.
    pub fn command(&self, outcome: Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Ok => &self.commands_ok,
            Outcome::Rejected => &self.commands_rejected,
            Outcome::Failed => &self.commands_failed,
        }
        .fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// Renders the node's metrics in Prometheus text format.
    pub fn render(
        &self,
        store: &cella_store::StoreStats,
        host: &cella_host::HostStats,
        cached_entities: usize,
        modules: usize,
    ) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP cella_commands_total Commands handled, by outcome.\n# TYPE cella_commands_total counter"
        );
        for (label, c) in [
            ("ok", &self.commands_ok),
            ("rejected", &self.commands_rejected),
            ("failed", &self.commands_failed),
        ] {
            let _ = writeln!(
                out,
                "cella_commands_total{{outcome=\"{label}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cella_command_duration_seconds Command latency, request to durable reply.\n# TYPE cella_command_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, c) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                out,
                "cella_command_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "cella_command_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "cella_command_duration_seconds_sum {}\ncella_command_duration_seconds_count {count}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        counter(
            &mut out,
            "cella_cache_hits_total",
            "Commands that found their entity in memory.",
            self.cache_hits.load(Relaxed),
        );
        counter(
            &mut out,
            "cella_cache_misses_total",
            "Entity activations from snapshot and journal.",
            self.cache_misses.load(Relaxed),
        );
        counter(
            &mut out,
            "cella_cache_evictions_total",
            "Entities evicted from memory.",
            self.cache_evictions.load(Relaxed),
        );
        counter(
            &mut out,
            "cella_events_replayed_total",
            "Events folded while activating entities.",
            self.events_replayed.load(Relaxed),
        );
        counter(
            &mut out,
            "cella_requests_forwarded_total",
            "Entity requests forwarded to the node leading the entity's partition.",
            self.forwarded.load(Relaxed),
        );
        gauge(
            &mut out,
            "cella_cached_entities",
            "Entities held in memory.",
            cached_entities as u64,
        );
        gauge(
            &mut out,
            "cella_modules",
            "Deployed entity types.",
            modules as u64,
        );
        counter(
            &mut out,
            "cella_commits_total",
            "Durable journal commits (one fsync each).",
            store.commits,
        );
        counter(
            &mut out,
            "cella_failed_commits_total",
            "Journal commits that failed.",
            store.failed_commits,
        );
        counter(
            &mut out,
            "cella_appends_total",
            "Append requests made durable.",
            store.append_requests,
        );
        counter(
            &mut out,
            "cella_journal_writes_total",
            "Journal writes made durable.",
            store.appended_writes,
        );
        counter(
            &mut out,
            "cella_deferred_flushes_total",
            "Commits that wrote deferred state-machine writes.",
            store.deferred_flushes,
        );
        counter(
            &mut out,
            "cella_deferred_writes_total",
            "Deferred state-machine writes written.",
            store.deferred_writes,
        );
        counter(
            &mut out,
            "cella_commit_seconds_total",
            "Time spent committing.",
            store.commit_micros / 1_000_000,
        );
        let _ = writeln!(
            out,
            "# HELP cella_commit_batch_size Append requests per commit.\n# TYPE cella_commit_batch_size histogram"
        );
        let cumulative = store.cumulative();
        for (bound, c) in cella_store::BATCH_SIZE_BUCKETS
            .iter()
            .zip(cumulative.iter())
        {
            let _ = writeln!(out, "cella_commit_batch_size_bucket{{le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "cella_commit_batch_size_bucket{{le=\"+Inf\"}} {}",
            store.commits
        );
        let _ = writeln!(
            out,
            "cella_commit_batch_size_sum {}\ncella_commit_batch_size_count {}",
            store.batch_size_sum, store.commits
        );
        counter(
            &mut out,
            "cella_instances_created_total",
            "Guest instances created.",
            host.instances_created,
        );
        gauge(
            &mut out,
            "cella_instances_live",
            "Guest instances alive now.",
            host.instances_live,
        );
        counter(
            &mut out,
            "cella_guest_calls_total",
            "Guest calls.",
            host.calls,
        );
        counter(
            &mut out,
            "cella_guest_traps_total",
            "Guest calls that trapped.",
            host.traps,
        );
        counter(
            &mut out,
            "cella_guest_deadlines_total",
            "Guest calls stopped at their deadline.",
            host.deadline_hits,
        );
        out
    }
}
