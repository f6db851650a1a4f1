//! The metrics' histograms as prometheus-client encodes them: the command latency histogram,
//! kept in atomics (prometheus-client's own `Histogram` takes a write lock per observation),
//! and a histogram's values at one moment (the latency's, the store's commit batch sizes).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

/// Upper bounds (seconds) of the command latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
    1.024,
];

/// The command latency histogram, in atomics: one counter per bucket of [`LATENCY_BUCKETS`]
/// and one past the last (`+Inf`), each counting only its own observations; the count is
/// their sum, so it always equals the `+Inf` bucket. The sum is kept in microseconds.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<LatencyCounts>);

#[derive(Debug, Default)]
pub struct LatencyCounts {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.0.buckets[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_micros.fetch_add(micros, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .chain([&f64::MAX])
            .zip(&self.0.buckets)
            .map(|(bound, n)| (*bound, n.load(Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: self.0.sum_micros.load(Relaxed) as f64 / 1e6,
            buckets,
        }
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.snapshot().encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A histogram's values at one moment, as prometheus-client's encoder takes them: per bucket
/// its upper bound and its own (non-cumulative) count, the last bound `f64::MAX` for `+Inf`.
#[derive(Debug)]
pub(crate) struct HistogramSnapshot {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// The store's batch-size histogram: append requests per commit.
    pub(crate) fn of_batch_sizes(store: &cella_store::StoreStats) -> Self {
        let bounds = cella_store::BATCH_SIZE_BUCKETS.iter().map(|b| *b as f64);
        Self {
            sum: store.batch_size_sum as f64,
            count: store.commits,
            buckets: bounds.chain([f64::MAX]).zip(store.batch_sizes).collect(),
        }
    }
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
