//! Node metrics, exposed with `prometheus-client`: the node's own counters and its command
//! latency histogram live in a [`Registry`] built once, and every scrape adds the store's and
//! the host's statistics (copied at that moment) and encodes both with the crate's text encoder.
//!
//! The output is OpenMetrics text: a counter's `# HELP`/`# TYPE` lines name its family
//! (`cella_commands`), its samples carry the `_total` suffix (`cella_commands_total`), and the
//! exposition ends with `# EOF` (a comment to a parser of the classic Prometheus text format).
//! Metric names, label names and histogram buckets are those of the node's earlier encoder.
//!
//! Counting is cheap: every counter is created once (the outcome label sets included), so
//! recording a command is three relaxed atomic adds (its outcome, its latency bucket, the
//! latency sum) — no lock, no label lookup, no allocation (the latency histogram is kept in
//! atomics: `histograms.rs`).

use std::{fmt, time::Duration};

pub use crate::topics::metrics::TopicMetrics;

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, text},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::{ConstGauge, Gauge},
    },
    registry::{Metric, Registry},
};

use crate::histograms::HistogramSnapshot;
pub use crate::histograms::LatencyHistogram;
use crate::type_metrics::ByType;
pub use crate::type_metrics::Outcome;

/// Metrics of one node.
#[derive(Debug)]
pub struct Metrics {
    /// The metrics below, registered once; a scrape encodes it.
    registry: Registry,
    commands: ByOutcome,
    latency: LatencyHistogram,
    by_type: ByType,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_evictions: Counter,
    events_replayed: Counter,
    forwarded: Counter,
    /// Effects: see [`EffectMetrics`].
    pub effects: EffectMetrics,
    /// Topics: see [`TopicMetrics`].
    pub topics: TopicMetrics,
}

/// The effect dispatcher's metrics.
#[derive(Debug, Default)]
pub struct EffectMetrics {
    /// Calls waiting in the outboxes of partitions this node leads.
    pub pending: Gauge,
    /// Calls carried out (their outcome delivered to the reply route, if any, and acknowledged).
    pub delivered: Counter,
    /// Delivery attempts that will be tried again (no leader, unreachable, storage).
    pub retried: Counter,
    /// Calls that ended in a failure (recorded and, with a reply route, delivered as data).
    pub failed: Counter,
    /// Timers fired.
    pub timers_fired: Counter,
    /// Commands answered from the record of their request id instead of running again.
    pub duplicates: Counter,
    /// How late timers fire, from their due time to the start of their command.
    pub timer_lag: LatencyHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let commands = ByOutcome::default();
        let latency = LatencyHistogram::default();
        let [
            cache_hits,
            cache_misses,
            cache_evictions,
            events_replayed,
            forwarded,
        ] = std::array::from_fn(|_| Counter::default());
        let mut registry = Registry::default();
        register(
            &mut registry,
            "cella_commands_total",
            "Commands handled, by outcome.",
            commands.clone(),
        );
        register(
            &mut registry,
            "cella_command_duration_seconds",
            "Command latency, request to durable reply.",
            latency.clone(),
        );
        for (name, help, counter) in [
            (
                "cella_cache_hits_total",
                "Commands that found their entity in memory.",
                &cache_hits,
            ),
            (
                "cella_cache_misses_total",
                "Entity activations from snapshot and journal.",
                &cache_misses,
            ),
            (
                "cella_cache_evictions_total",
                "Entities evicted from memory.",
                &cache_evictions,
            ),
            (
                "cella_events_replayed_total",
                "Events folded while activating entities.",
                &events_replayed,
            ),
            (
                "cella_requests_forwarded_total",
                "Entity requests forwarded to the node leading the entity's partition.",
                &forwarded,
            ),
        ] {
            register(&mut registry, name, help, counter.clone());
        }
        let effects = EffectMetrics::default();
        register(
            &mut registry,
            "cella_effects_pending",
            "Calls waiting in the outboxes of partitions this node leads.",
            effects.pending.clone(),
        );
        for (name, help, counter) in [
            (
                "cella_effects_delivered_total",
                "Calls carried out (outcome delivered to the reply route, if any).",
                &effects.delivered,
            ),
            (
                "cella_effects_retried_total",
                "Effect delivery attempts to be tried again.",
                &effects.retried,
            ),
            (
                "cella_effects_failed_total",
                "Calls that ended in a failure (delivered as data to the reply route, if any).",
                &effects.failed,
            ),
            (
                "cella_timers_fired_total",
                "Durable timers fired.",
                &effects.timers_fired,
            ),
            (
                "cella_duplicates_total",
                "Commands answered from their request id's record instead of running again.",
                &effects.duplicates,
            ),
        ] {
            register(&mut registry, name, help, counter.clone());
        }
        register(
            &mut registry,
            "cella_timer_lag_seconds",
            "How late durable timers fire, from their due time to their command's start.",
            effects.timer_lag.clone(),
        );
        let topics = TopicMetrics::default();
        topics.register(&mut registry);
        let by_type = ByType::default();
        by_type.register(&mut registry);
        Self {
            effects,
            topics,
            registry,
            commands,
            latency,
            by_type,
            cache_hits,
            cache_misses,
            cache_evictions,
            events_replayed,
            forwarded,
        }
    }
}

impl Metrics {
    /// Records one request forwarded to the node leading its entity's partition.
    pub fn forwarded(&self) {
        self.forwarded.inc();
    }

    /// Records one finished command, under its type too when it reached a deployed one.
    pub fn command(&self, entity_type: Option<&str>, outcome: Outcome, elapsed: Duration) {
        if let Some(entity_type) = entity_type {
            self.by_type.record(entity_type, outcome, elapsed);
        }
        match outcome {
            Outcome::Ok => &self.commands.ok,
            Outcome::Rejected => &self.commands.rejected,
            Outcome::Failed => &self.commands.failed,
        }
        .inc();
        self.latency.observe(elapsed);
    }

    /// Records a command answered from its request id's record.
    pub fn duplicate(&self) {
        self.effects.duplicates.inc();
    }

    /// Records a command that found its entity in memory.
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// Records an entity activation from snapshot and journal.
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// Records an entity evicted from memory.
    pub fn cache_eviction(&self) {
        self.cache_evictions.inc();
    }

    /// Records `n` events folded while activating an entity.
    pub fn events_replayed(&self, n: u64) {
        self.events_replayed.inc_by(n);
    }

    /// Renders the node's metrics, with the given statistics of its store and host, as
    /// OpenMetrics text.
    pub fn render(
        &self,
        store: &cella_store::StoreStats,
        host: &cella_host::HostStats,
        entities: Resident,
        modules: usize,
    ) -> String {
        let scrape = scrape_registry(store, host, entities, modules);
        let mut out = String::new();
        // Writing to a `String` cannot fail, and no metric here has a value its encoder refuses.
        let encoded = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode(&mut out, &scrape));
        if encoded.is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}

/// What the entity layer holds in memory at a scrape: entities, and guest instances kept warm
/// with their linear memory in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resident {
    pub entities: usize,
    pub warm: (usize, usize),
}

/// The statistics copied at a scrape, as constant metrics.
fn scrape_registry(
    store: &cella_store::StoreStats,
    host: &cella_host::HostStats,
    resident: Resident,
    modules: usize,
) -> Registry {
    let mut registry = Registry::default();
    let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    for (name, help, n) in [
        (
            "cella_cached_entities",
            "Entities held in memory.",
            resident.entities,
        ),
        (
            "cella_warm_instances",
            "Guest instances kept warm for hot entities.",
            resident.warm.0,
        ),
        (
            "cella_warm_instance_bytes",
            "Linear memory of the warm guest instances.",
            resident.warm.1,
        ),
        ("cella_modules", "Deployed entity types.", modules),
    ] {
        register(&mut registry, name, help, gauge(count(n)));
    }
    for (name, help, v) in [
        (
            "cella_commits_total",
            "Durable journal commits (one fsync each).",
            store.commits,
        ),
        (
            "cella_failed_commits_total",
            "Journal commits that failed.",
            store.failed_commits,
        ),
        (
            "cella_appends_total",
            "Append requests made durable.",
            store.append_requests,
        ),
        (
            "cella_journal_writes_total",
            "Journal writes made durable.",
            store.appended_writes,
        ),
        (
            "cella_deferred_flushes_total",
            "Commits that wrote deferred state-machine writes.",
            store.deferred_flushes,
        ),
        (
            "cella_deferred_writes_total",
            "Deferred state-machine writes written.",
            store.deferred_writes,
        ),
        (
            "cella_commit_seconds_total",
            "Time spent committing.",
            store.commit_micros / 1_000_000,
        ),
    ] {
        register(&mut registry, name, help, ConstCounter::new(v));
    }
    register(
        &mut registry,
        "cella_commit_batch_size",
        "Append requests per commit.",
        HistogramSnapshot::of_batch_sizes(store),
    );
    register(
        &mut registry,
        "cella_instances_created_total",
        "Guest instances created.",
        ConstCounter::new(host.instances_created),
    );
    register(
        &mut registry,
        "cella_instances_live",
        "Guest instances alive now.",
        gauge(host.instances_live),
    );
    for (name, help, v) in [
        ("cella_guest_calls_total", "Guest calls.", host.calls),
        (
            "cella_guest_traps_total",
            "Guest calls that trapped.",
            host.traps,
        ),
        (
            "cella_guest_deadlines_total",
            "Guest calls stopped at their deadline.",
            host.deadline_hits,
        ),
        (
            "cella_guest_paced_pauses_total",
            "Pauses of one epoch tick that long guest calls took while other calls were starting.",
            host.paced_pauses,
        ),
    ] {
        register(&mut registry, name, help, ConstCounter::new(v));
    }
    registry
}

/// Registers `metric` under its exposed `name` and `help`. prometheus-client appends a
/// counter's `_total` to its samples and a period to every help text, so both are taken off
/// here: the names and texts above read as they appear in the output.
pub(crate) fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    let name = match metric.metric_type() {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

/// Commands by outcome: a counter per outcome, created once, encoded in a fixed order.
#[derive(Clone, Debug, Default)]
struct ByOutcome {
    ok: Counter,
    rejected: Counter,
    failed: Counter,
}

impl EncodeMetric for ByOutcome {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (outcome, counter) in [
            ("ok", &self.ok),
            ("rejected", &self.rejected),
            ("failed", &self.failed),
        ] {
            counter.encode(encoder.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let m = Metrics::default();
        m.command(Some("counter"), Outcome::Ok, Duration::from_micros(300));
        m.command(Some("counter"), Outcome::Ok, Duration::from_millis(3));
        m.command(None, Outcome::Rejected, Duration::from_secs(2));
        m.cache_hit();
        m.cache_miss();
        m.cache_eviction();
        m.events_replayed(7);
        m.forwarded();
        let mut store = cella_store::StoreStats {
            commits: 3,
            append_requests: 6,
            appended_writes: 9,
            batch_size_sum: 6,
            commit_micros: 2_500_000,
            ..Default::default()
        };
        store.batch_sizes[0] = 1;
        store.batch_sizes[2] = 2;
        let host = cella_host::HostStats {
            instances_created: 4,
            instances_live: 1,
            calls: 5,
            traps: 0,
            deadline_hits: 0,
            paced_pauses: 0,
        };
        let warm = (1, 65536);
        m.render(&store, &host, Resident { entities: 2, warm }, 1)
    }

    #[test]
    fn renders_every_metric_once() {
        let out = sample();
        for family in [
            "cella_commands counter",
            "cella_command_duration_seconds histogram",
            "cella_cache_hits counter",
            "cella_cache_misses counter",
            "cella_cache_evictions counter",
            "cella_events_replayed counter",
            "cella_requests_forwarded counter",
            "cella_cached_entities gauge",
            "cella_modules gauge",
            "cella_commits counter",
            "cella_failed_commits counter",
            "cella_appends counter",
            "cella_journal_writes counter",
            "cella_deferred_flushes counter",
            "cella_deferred_writes counter",
            "cella_commit_seconds counter",
            "cella_commit_batch_size histogram",
            "cella_instances_created counter",
            "cella_instances_live gauge",
            "cella_guest_calls counter",
            "cella_guest_traps counter",
            "cella_guest_deadlines counter",
        ] {
            let line = format!("# TYPE {family}\n");
            assert_eq!(out.matches(&line).count(), 1, "{line} in:\n{out}");
        }
        assert!(out.ends_with("\n# EOF\n"), "{out}");
    }

    #[test]
    fn renders_the_values() {
        let out = sample();
        for line in [
            "# HELP cella_commands Commands handled, by outcome.",
            "cella_commands_total{outcome=\"ok\"} 2",
            "cella_commands_total{outcome=\"rejected\"} 1",
            "cella_commands_total{outcome=\"failed\"} 0",
            "cella_command_duration_seconds_sum 2.0033",
            "cella_command_duration_seconds_count 3",
            "cella_command_duration_seconds_bucket{le=\"0.0001\"} 0",
            "cella_command_duration_seconds_bucket{le=\"0.0005\"} 1",
            "cella_command_duration_seconds_bucket{le=\"0.004\"} 2",
            "cella_command_duration_seconds_bucket{le=\"1.024\"} 2",
            "cella_command_duration_seconds_bucket{le=\"+Inf\"} 3",
            "cella_cache_hits_total 1",
            "cella_cache_misses_total 1",
            "cella_cache_evictions_total 1",
            "cella_events_replayed_total 7",
            "cella_requests_forwarded_total 1",
            "cella_cached_entities 2",
            "cella_warm_instances 1",
            "cella_warm_instance_bytes 65536",
            "cella_modules 1",
            "cella_commits_total 3",
            "cella_commit_seconds_total 2",
            "cella_commit_batch_size_sum 6.0",
            "cella_commit_batch_size_count 3",
            "cella_commit_batch_size_bucket{le=\"1.0\"} 1",
            "cella_commit_batch_size_bucket{le=\"2.0\"} 1",
            "cella_commit_batch_size_bucket{le=\"4.0\"} 3",
            "cella_commit_batch_size_bucket{le=\"256.0\"} 3",
            "cella_commit_batch_size_bucket{le=\"+Inf\"} 3",
            "cella_instances_live 1",
            "cella_guest_calls_total 5",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
