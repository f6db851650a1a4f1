//! Counters of the group-commit writer, kept in atomics and read as a [`StoreStats`] snapshot.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Upper bounds (inclusive) of the batch-size histogram buckets, in requests per commit.
/// A last, unbounded (`+Inf`) bucket follows them.
pub const BATCH_SIZE_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Number of histogram buckets, including the `+Inf` one.
pub const BATCH_SIZE_BUCKET_COUNT: usize = BATCH_SIZE_BUCKETS.len() + 1;

/// A point-in-time copy of the store's counters; every counter only grows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Journal write transactions committed durably.
    pub commits: u64,
    /// Journal write transactions that failed (their requests got the error).
    pub failed_commits: u64,
    /// Append requests made durable (calls of `Journal::append` that resolved `Ok`).
    pub append_requests: u64,
    /// Append requests resolved with an error.
    pub failed_requests: u64,
    /// Writes (`Write` items) made durable.
    pub appended_writes: u64,
    /// Requests per successful commit, as raw (non-cumulative) counts: `batch_sizes[i]` counts
    /// the commits whose request count `n` satisfies `BATCH_SIZE_BUCKETS[i-1] < n <=
    /// BATCH_SIZE_BUCKETS[i]`; the last entry counts `n > 256`. See [`StoreStats::cumulative`].
    pub batch_sizes: [u64; BATCH_SIZE_BUCKET_COUNT],
    /// Sum over successful commits of their request counts (the histogram's `_sum`).
    pub batch_size_sum: u64,
    /// Total time spent applying and committing journal transactions, failed ones included,
    /// in microseconds.
    pub commit_micros: u64,
    /// Transactions that wrote deferred writes (see [`crate::Store::write_group_deferred`]).
    pub deferred_flushes: u64,
    /// Deferred writes written.
    pub deferred_writes: u64,
}

impl StoreStats {
    /// The batch-size histogram as cumulative counts (Prometheus `le` buckets): entry `i` counts
    /// commits with at most `BATCH_SIZE_BUCKETS[i]` requests; the last entry equals `commits`.
    pub fn cumulative(&self) -> [u64; BATCH_SIZE_BUCKET_COUNT] {
        let mut out = self.batch_sizes;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    /// The counters in Prometheus text exposition format, every line newline-terminated:
    /// `cella_store_{commits,failed_commits,append_requests,failed_append_requests,
    /// appended_writes}_total`, `cella_store_commit_seconds_total`, and the histogram
    /// `cella_store_batch_size` (requests per commit).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "commits",
                "Journal transactions committed durably.",
                self.commits,
            ),
            (
                "failed_commits",
                "Journal transactions that failed.",
                self.failed_commits,
            ),
            (
                "append_requests",
                "Append requests made durable.",
                self.append_requests,
            ),
            (
                "failed_append_requests",
                "Append requests that failed.",
                self.failed_requests,
            ),
            (
                "appended_writes",
                "Journal writes made durable.",
                self.appended_writes,
            ),
            (
                "deferred_flushes",
                "Transactions that wrote deferred state-machine writes.",
                self.deferred_flushes,
            ),
            (
                "deferred_writes",
                "Deferred state-machine writes written.",
                self.deferred_writes,
            ),
        ] {
            let name = format!("cella_store_{name}_total");
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "cella_store_commit_seconds_total";
        let _ = writeln!(
            out,
            "# HELP {name} Time spent applying and committing journal transactions.\n\
             # TYPE {name} counter\n{name} {}",
            self.commit_micros as f64 / 1e6
        );
        let name = "cella_store_batch_size";
        let _ = writeln!(
            out,
            "# HELP {name} Append requests per journal commit.\n# TYPE {name} histogram"
        );
        let cumulative = self.cumulative();
        for (le, count) in BATCH_SIZE_BUCKETS.iter().zip(cumulative) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.commits);
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.batch_size_sum, self.commits
        );
        out
    }
}

/// The live counters, shared by the writer thread and the store handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    failed_commits: AtomicU64,
    append_requests: AtomicU64,
    failed_requests: AtomicU64,
    appended_writes: AtomicU64,
    batch_sizes: [AtomicU64; BATCH_SIZE_BUCKET_COUNT],
    batch_size_sum: AtomicU64,
    commit_micros: AtomicU64,
    deferred_flushes: AtomicU64,
    deferred_writes: AtomicU64,
}

impl Stats {
    /// Records one successful commit of `requests` requests carrying `writes` writes.
    pub(crate) fn committed(&self, requests: u64, writes: u64, micros: u64) {
        self.commits.fetch_add(1, Relaxed);
        self.append_requests.fetch_add(requests, Relaxed);
        self.appended_writes.fetch_add(writes, Relaxed);
        self.batch_sizes[bucket(requests)].fetch_add(1, Relaxed);
        self.batch_size_sum.fetch_add(requests, Relaxed);
        self.commit_micros.fetch_add(micros, Relaxed);
    }

    /// Records deferred writes written by a successful commit.
    pub(crate) fn flushed_deferred(&self, writes: u64) {
        self.deferred_flushes.fetch_add(1, Relaxed);
        self.deferred_writes.fetch_add(writes, Relaxed);
    }

    /// Records one failed commit.
    pub(crate) fn commit_failed(&self, micros: u64) {
        self.failed_commits.fetch_add(1, Relaxed);
        self.commit_micros.fetch_add(micros, Relaxed);
    }

    /// Records requests resolved with an error.
    pub(crate) fn requests_failed(&self, requests: u64) {
        self.failed_requests.fetch_add(requests, Relaxed);
    }

    /// Records requests with nothing to write, resolved `Ok` without a transaction.
    pub(crate) fn resolved_without_commit(&self, requests: u64) {
        self.append_requests.fetch_add(requests, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Relaxed),
            failed_commits: self.failed_commits.load(Relaxed),
            append_requests: self.append_requests.load(Relaxed),
            failed_requests: self.failed_requests.load(Relaxed),
            appended_writes: self.appended_writes.load(Relaxed),
            batch_sizes: std::array::from_fn(|i| self.batch_sizes[i].load(Relaxed)),
            batch_size_sum: self.batch_size_sum.load(Relaxed),
            commit_micros: self.commit_micros.load(Relaxed),
            deferred_flushes: self.deferred_flushes.load(Relaxed),
            deferred_writes: self.deferred_writes.load(Relaxed),
        }
    }
}

/// The index of the histogram bucket holding a batch of `n` requests.
fn bucket(n: u64) -> usize {
    BATCH_SIZE_BUCKETS
        .iter()
        .position(|&le| n <= le)
        .unwrap_or(BATCH_SIZE_BUCKETS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(64), 6);
        assert_eq!(bucket(65), 7);
        assert_eq!(bucket(256), 8);
        assert_eq!(bucket(257), 9);
    }

    #[test]
    fn cumulative_counts() {
        let s = Stats::default();
        s.committed(1, 1, 10);
        s.committed(3, 5, 10);
        s.committed(300, 300, 10);
        s.commit_failed(7);
        s.requests_failed(2);
        s.resolved_without_commit(0);
        let snap = s.snapshot();
        assert_eq!(snap.commits, 3);
        assert_eq!(snap.append_requests, 304);
        assert_eq!(snap.appended_writes, 306);
        assert_eq!(snap.failed_requests, 2);
        assert_eq!(snap.commit_micros, 37);
        assert_eq!(snap.batch_size_sum, 304);
        assert_eq!(snap.cumulative(), [1, 1, 2, 2, 2, 2, 2, 2, 2, 3]);

        let text = snap.render_prometheus();
        assert!(text.ends_with('\n'));
        for line in [
            "cella_store_commits_total 3",
            "cella_store_failed_commits_total 1",
            "cella_store_append_requests_total 304",
            "cella_store_failed_append_requests_total 2",
            "cella_store_appended_writes_total 306",
            "cella_store_commit_seconds_total 0.000037",
            "# TYPE cella_store_batch_size histogram",
            "cella_store_batch_size_bucket{le=\"1\"} 1",
            "cella_store_batch_size_bucket{le=\"4\"} 2",
            "cella_store_batch_size_bucket{le=\"256\"} 2",
            "cella_store_batch_size_bucket{le=\"+Inf\"} 3",
            "cella_store_batch_size_sum 304",
            "cella_store_batch_size_count 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
