//! Commands per entity type: `cella_type_commands_total{type, outcome}` and the latency
//! histogram `cella_type_command_duration_seconds{type}`, beside the node-wide series of
//! [`crate::metrics`] (which stay the sum over every type).
//!
//! A type's counters are created on its first command and kept (a counter never goes back,
//! even when its type is deleted). Only commands that reached a deployed type are counted here,
//! so the label set is bounded by the types ever deployed, never by what clients put in URLs.
//! Recording takes a read lock and one map lookup; the first command of a type takes the write
//! lock once.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder},
    metrics::{MetricType, counter::Counter},
};

use prometheus_client::registry::Registry;

use crate::metrics::{LatencyHistogram, register};

/// Outcome label of a finished command.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Ok,
    Rejected,
    Failed,
}

/// One type's counters.
#[derive(Clone, Debug, Default)]
struct TypeCounters {
    ok: Counter,
    rejected: Counter,
    failed: Counter,
    latency: LatencyHistogram,
}

impl TypeCounters {
    fn count(&self, outcome: Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Rejected => &self.rejected,
            Outcome::Failed => &self.failed,
        }
        .inc();
        self.latency.observe(elapsed);
    }
}

/// Every type's counters, shared by the two metric families that expose them.
#[derive(Clone, Debug, Default)]
pub struct ByType(Arc<RwLock<BTreeMap<String, TypeCounters>>>);

impl ByType {
    /// Records one finished command of `entity_type`: under the read lock, without cloning
    /// the counters, once the type has them.
    pub fn record(&self, entity_type: &str, outcome: Outcome, elapsed: Duration) {
        if let Ok(types) = self.0.read()
            && let Some(counters) = types.get(entity_type)
        {
            counters.count(outcome, elapsed);
            return;
        }
        if let Ok(mut types) = self.0.write() {
            let counters = types.entry(entity_type.to_string()).or_default();
            counters.count(outcome, elapsed);
        }
    }

    /// Registers the two families that expose these counters.
    pub fn register(&self, registry: &mut Registry) {
        register(
            registry,
            "cella_type_commands_total",
            "Commands handled, by entity type and outcome.",
            TypeCommands(self.clone()),
        );
        register(
            registry,
            "cella_type_command_duration_seconds",
            "Command latency by entity type, request to durable reply.",
            TypeLatency(self.clone()),
        );
    }

    /// A copy of the counters, in type order, so no lock is held while encoding.
    fn snapshot(&self) -> Vec<(String, TypeCounters)> {
        self.0
            .read()
            .map(|types| types.iter().map(|(t, c)| (t.clone(), c.clone())).collect())
            .unwrap_or_default()
    }
}

/// Commands per type and outcome.
#[derive(Clone, Debug)]
struct TypeCommands(ByType);

impl EncodeMetric for TypeCommands {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (ty, counters) in self.0.snapshot() {
            for (outcome, counter) in [
                ("ok", &counters.ok),
                ("rejected", &counters.rejected),
                ("failed", &counters.failed),
            ] {
                let labels = [("type", ty.as_str()), ("outcome", outcome)];
                counter.encode(encoder.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Command latency per type.
#[derive(Clone, Debug)]
struct TypeLatency(ByType);

impl EncodeMetric for TypeLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (ty, counters) in self.0.snapshot() {
            let labels = [("type", ty.as_str())];
            counters.latency.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text;

    use super::*;

    #[test]
    fn counts_each_type_apart() {
        let by_type = ByType::default();
        let mut registry = Registry::default();
        by_type.register(&mut registry);
        by_type.record("counter", Outcome::Ok, Duration::from_micros(300));
        by_type.record("counter", Outcome::Rejected, Duration::from_millis(3));
        by_type.record("cart", Outcome::Ok, Duration::from_secs(2));
        let mut out = String::new();
        text::encode(&mut out, &registry).expect("encode");
        for line in [
            "# TYPE cella_type_commands counter",
            "# TYPE cella_type_command_duration_seconds histogram",
            "cella_type_commands_total{type=\"cart\",outcome=\"ok\"} 1",
            "cella_type_commands_total{type=\"counter\",outcome=\"ok\"} 1",
            "cella_type_commands_total{type=\"counter\",outcome=\"rejected\"} 1",
            "cella_type_commands_total{type=\"counter\",outcome=\"failed\"} 0",
            "cella_type_command_duration_seconds_count{type=\"counter\"} 2",
            "cella_type_command_duration_seconds_bucket{le=\"0.0005\",type=\"counter\"} 1",
            "cella_type_command_duration_seconds_bucket{le=\"+Inf\",type=\"cart\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
