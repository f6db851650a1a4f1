//! `Histogram`: recording `u64` values into log-scale buckets over sliding slots, and the
//! percentile, count and bucket queries over them.

use super::bucket_ref::BucketRef;
use super::display_buckets::DisplayBuckets;
use super::interpolation::CumulativeCount;
use super::interpolation::Interpolator;
use super::percentile_stats::PercentileStats;
use super::scale::LogScale;
use super::slot::Slot;
use super::slot::SlotQueue;

/// A histogram for tracking the distribution of u64 values using logarithmic bucketing.
///
/// This histogram provides O(1) recording and efficient percentile calculation with
/// bounded memory usage (252 buckets = ~2KB per slot), regardless of the number of samples.
///
/// # Multi-Slot Support
///
/// The histogram supports multiple slots for sliding-window metrics. Each slot
/// contains independent bucket counts and optional user-defined metadata. Use
/// [`advance()`](Histogram::advance) to rotate to a new slot, which evicts the
/// oldest data when the histogram is full.
///
/// ## Slot Storage Layout
///
/// With `slot_limit = N`, only `N - 1` slots are physically stored. The
/// current (newest) period's counts are never materialized — they are derived
/// on the fly as `aggregate - Σ stored`:
///
/// ```text
/// stored slots:  [a, b, c]        (N - 1 historical periods)
/// aggregate:     agg = a + b + c + d   (running total across all N periods)
/// implicit:      d = agg - a - b - c   (current period, not stored)
/// ```
///
/// `record()` only touches `aggregate`; individual slot writes are avoided.
///
/// On [`advance()`](Histogram::advance), the current period `d` is
/// materialized into the evicted slot's allocation and the oldest period is
/// dropped:
///
/// ```text
/// 1. agg  ← agg - a              (drop oldest)
/// 2. a    ← agg - b - c  (= d)   (reuse evicted Vec for materialized current)
/// 3. slots: [b, c, a']            (a' now holds d's counts)
/// ```
///
/// # Bucketing Strategy
///
/// Uses logarithmic bucketing where smaller values get higher precision, similar to
/// [HDRHistogram](https://github.com/HdrHistogram/HdrHistogram). The bucket boundaries
/// are determined by the binary representation of the value:
///
/// ```text
/// Group  Bucket   Value Range     Binary Pattern (3-bit window)
/// ─────  ──────   ───────────     ─────────────────────────────
///   0      0-3    [0-3]           Direct mapping (special case)
///   1      4-7    [4-7]           100, 101, 110, 111
///   2     8-11    [8-15]          1xx0, 1xx0 (step=2)
///   3    12-15    [16-31]         1xx00, 1xx00 (step=4)
///   4    16-19    [32-63]         1xx000, 1xx000 (step=8)
///   ...
/// ```
///
/// Each group covers a power-of-2 range and contains 4 buckets. The 2 bits after the
/// MSB determine which bucket within the group:
///
/// ```text
/// Example: value = 42 (binary: 101010)
///   MSB position: 5 (counting from 0)
///   Group: 5 - 2 = 3
///   Bits after MSB: 01 (from 1[01]010)
///   Bucket within group: 1
///   Final bucket index: 4 + (3 * 4) + 1 = 17
/// ```
///
/// # Bucket Resolution
///
/// - Values 0-7: exact (1:1 mapping)
/// - Values 8-15: 2 values per bucket
/// - Values 16-31: 4 values per bucket
/// - Values 2^n to 2^(n+1)-1: 2^(n-2) values per bucket
///
/// Percentile accuracy depends on the distribution and sample count.
/// For typical real-world distributions (log-normal, exponential), percentile
/// error is under 2%. See `cargo run --bin accuracy` for detailed benchmarks.
///
/// # Memory Usage
///
/// Bucket counters are fixed at 252 * 8 bytes = 2,016 bytes per slot at the
/// default width, covering the entire u64 range [0, 2^64-1].
/// Each slot also keeps a small cached region summary, total count, and
/// optional metadata.
///
/// # Type Parameter
///
/// `T` is optional per-slot metadata attached when calling [`advance()`](Histogram::advance).
/// Use `()` (the default) if you don't need slot metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram<T = ()> {
    /// Log scale for value-to-bucket mapping.
    log_scale: &'static LogScale,

    /// Historical slots (up to `slot_limit - 1`).
    /// The current period is implicit: its buckets are
    /// `aggregate.buckets - Σ stored slots`.
    slots: SlotQueue<T>,

    /// Aggregate bucket counts and total across all periods.
    /// `.data` holds the current period's metadata.
    aggregate: Slot<T>,
}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Histogram<T> {
    /// Creates a new histogram with 1 slot and 252 buckets.
    ///
    /// Bucket counters use 252 * 8 bytes = 2,016 bytes at the default width.
    pub fn new() -> Self {
        Self::with_slots(1)
    }

    /// Creates a new histogram with the specified slot limit.
    ///
    /// `slot_limit` is normalized to at least 1. When the caller passes 0 or 1,
    /// no individual historical slots are maintained and only the implicit
    /// current period exists.
    pub fn with_slots(slot_limit: usize) -> Self {
        Self::with_log_scale(LogScale::DEFAULT_WIDTH, slot_limit)
    }

    /// Creates a new histogram with the specified bucket width and slot limit.
    ///
    /// `slot_limit` is normalized to at least 1. When the caller passes 0 or 1,
    /// no individual historical slots are maintained and only the implicit
    /// current period exists.
    pub fn with_log_scale(width: usize, slot_limit: usize) -> Self {
        let log_scale = LogScale::get(width);
        let num_buckets = log_scale.num_buckets();
        let slot_limit = slot_limit.max(1);

        Self {
            log_scale,
            slots: SlotQueue::new(slot_limit),
            aggregate: Slot::new(num_buckets),
        }
    }

    /// Records a value to the current (last) slot.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Record a value `count` times.
    pub fn record_n(&mut self, value: u64, count: u64) {
        let bucket_index = self.log_scale.calculate_bucket(value);
        self.aggregate.record_n(bucket_index, count);
    }

    /// Advances to a new slot, evicting the oldest if the slot limit is reached.
    ///
    /// Returns the evicted slot's metadata if a slot was evicted, or `None`
    /// during warmup or on a single-slot histogram.
    ///
    /// Materializes the implicit current period into a stored historical slot,
    /// then starts a new empty current period with the given `data`.
    /// At capacity the evicted slot's allocation is reused; during warmup a new
    /// slot is allocated.
    ///
    /// See [Slot Storage Layout](Histogram#slot-storage-layout) for the
    /// rotation algorithm.
    pub fn advance(&mut self, data: T) -> Option<T> {
        if self.slots.slot_limit == 1 {
            self.aggregate.clear();
            self.aggregate.data = Some(data);
            return None;
        }

        let num_buckets = self.log_scale.num_buckets();
        let at_capacity = self.slots.slots.len() == self.slots.slot_limit - 1;

        // Get a Vec for the materialized current period.
        // At capacity: evict oldest and reuse its allocation.
        // Warmup: allocate a new Vec.
        let (buckets, evicted_data) = if at_capacity {
            let evicted = self.slots.pop_front().unwrap();
            self.aggregate.subtract(&evicted);
            (evicted.buckets, evicted.data)
        } else {
            (vec![0; num_buckets], None)
        };

        // Materialize current: aggregate - Σ stored
        let current = self.materialize_current(buckets);

        let current_data = self.aggregate.data.take();
        self.slots.push_back(Slot::from_buckets(current, current_data));

        self.aggregate.data = Some(data);
        evicted_data
    }

    /// Computes the implicit current period's bucket counts into `dst`.
    ///
    /// `dst` is overwritten with `aggregate - Σ stored_slots`.
    fn materialize_current(&self, mut dst: Vec<u64>) -> Vec<u64> {
        let num_buckets = self.log_scale.num_buckets();

        dst.copy_from_slice(&self.aggregate.buckets);
        for slot in self.slots.iter_all() {
            (0..num_buckets).for_each(|i| {
                dst[i] -= slot.buckets[i];
            });
        }

        dst
    }

    /// Returns the number of active slots (stored historicals + implicit current).
    #[inline]
    pub fn active_slot_count(&self) -> usize {
        self.slots.slots.len() + 1
    }

    /// Returns the maximum number of active slots.
    #[inline]
    pub fn slot_limit(&self) -> usize {
        self.slots.slot_limit
    }

    /// Sets the metadata for the current (implicit) slot, returning the old value.
    pub fn set_current_data(&mut self, data: T) -> Option<T> {
        self.aggregate.data.replace(data)
    }

    /// Returns a reference to the current slot's metadata.
    pub fn current_data(&self) -> Option<&T> {
        self.aggregate.data.as_ref()
    }

    /// Returns the bucket width parameter used by this histogram.
    #[inline]
    pub fn width(&self) -> usize {
        self.log_scale.config().width()
    }

    /// Resets the histogram to empty, clearing all buckets and slots.
    pub fn clear(&mut self) {
        self.aggregate.clear();
        self.slots.slots.clear();
    }

    /// Returns the total number of values recorded across all slots.
    #[inline]
    pub fn total(&self) -> u64 {
        self.aggregate.total()
    }

    /// Calculates the value at the given percentile.
    ///
    /// `p` must be in `[0.0, 1.0]`. Values outside this range produce
    /// unspecified results.
    ///
    /// Returns an interpolated estimate within the bucket containing the percentile.
    /// Uses neighboring bucket densities for trapezoidal interpolation, falling back
    /// to uniform interpolation at histogram edges or when neighbors are empty.
    ///
    /// Returns `0` if the histogram is empty.
    pub fn percentile(&self, p: f64) -> u64 {
        let total = self.aggregate.total();
        if total == 0 {
            return 0;
        }

        let fractional_rank = total as f64 * p;
        let rank = fractional_rank.ceil().max(1.0) as u64;
        self.value_at_rank(rank)
    }

    /// Returns the interpolated value at the given rank (1-based position in
    /// sorted order).
    fn value_at_rank(&self, rank: u64) -> u64 {
        let Some((bucket, cumulative_before)) = self.aggregate.bucket_at_rank(rank) else {
            return 0;
        };

        let rank_in_bucket = rank - cumulative_before;
        let interp = self.interpolator();
        interp.rank_to_position(bucket, rank_in_bucket)
    }

    /// Returns the estimated count of samples in `[0, position)`,
    /// i.e., strictly below `position`, using trapezoidal
    /// interpolation within buckets. For the terminal bucket,
    /// `position == u64::MAX` still excludes the endpoint mass at `u64::MAX`.
    pub fn count_below(&self, position: u64) -> u64 {
        self.interpolator().count_below(position) as u64
    }

    /// Returns an [`Interpolator`] over the aggregate bucket counts.
    pub fn interpolator(&self) -> Interpolator<'_> {
        Interpolator::new(self.log_scale, &self.aggregate.buckets)
    }

    /// Computes multiple percentiles in a single O(n + k) pass over the buckets,
    /// where n is the number of buckets and k is the number of requested percentiles.
    ///
    /// `percentiles` must be sorted in ascending order; each value must be in `[0.0, 1.0]`.
    /// Violating either condition produces unspecified results.
    ///
    /// Returns an iterator yielding the interpolated value at each percentile.
    /// Yields `0` for empty histograms.
    pub fn percentiles<'a>(&'a self, percentiles: &'a [f64]) -> impl Iterator<Item = u64> + 'a {
        let total = self.aggregate.total();
        let mut cursor = self.cumulative_count();

        percentiles.iter().map(move |&p| {
            let rank = (total as f64 * p).ceil().max(1.0) as u64;
            cursor.value_at_rank(rank)
        })
    }

    /// Returns common percentile statistics: samples, P0.1, P1, P5, P10, P50, P90, P99, P99.9.
    pub fn percentile_stats(&self) -> PercentileStats {
        let mut iter = self.percentiles(&[0.001, 0.01, 0.05, 0.10, 0.50, 0.90, 0.99, 0.999]);
        PercentileStats {
            samples: self.aggregate.total(),
            p0_1: iter.next().unwrap(),
            p1: iter.next().unwrap(),
            p5: iter.next().unwrap(),
            p10: iter.next().unwrap(),
            p50: iter.next().unwrap(),
            p90: iter.next().unwrap(),
            p99: iter.next().unwrap(),
            p99_9: iter.next().unwrap(),
        }
    }

    /// Returns an iterator over all bucket data.
    ///
    /// Includes all buckets (even those with count 0). Callers can filter
    /// non-empty buckets with `.filter(|b| b.count > 0)`.
    pub fn bucket_data(&self) -> impl Iterator<Item = BucketRef<'_>> + '_ {
        (0..self.num_buckets()).map(|i| self.bucket(i))
    }

    /// Returns the number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.log_scale.num_buckets()
    }

    /// Returns an incremental cursor for computing cumulative counts
    /// at monotonically increasing positions.
    pub fn cumulative_count(&self) -> CumulativeCount<'_> {
        CumulativeCount::new(self.log_scale, &self.aggregate.buckets)
    }

    /// Returns a lazy reference to the bucket at the given index.
    ///
    /// # Panics
    ///
    /// Panics if `index >= self.num_buckets()`.
    pub fn bucket(&self, index: usize) -> BucketRef<'_> {
        BucketRef::new(self.log_scale, index, self.aggregate.count_at(index))
    }

    /// Re-bins this histogram into a different log scale, preserving all slots.
    ///
    /// For each target bucket, estimates the sample count from successive
    /// cumulative counts. The terminal bucket uses the exact source total
    /// because its upper boundary is inclusive at `u64::MAX`.
    pub fn rescale(&self, width: usize) -> Histogram<T>
    where T: Clone {
        let src_scale = self.log_scale;
        let dst_scale = LogScale::get(width);

        let agg_buckets = Self::rebin(src_scale, &self.aggregate.buckets, dst_scale);
        let aggregate = Slot::from_buckets(agg_buckets, self.aggregate.data.clone());

        let mut slots = SlotQueue::new(self.slots.slot_limit);
        for src_slot in self.slots.iter_all() {
            let buckets = Self::rebin(src_scale, &src_slot.buckets, dst_scale);
            slots.push_back(Slot::from_buckets(buckets, src_slot.data.clone()));
        }

        Histogram {
            log_scale: dst_scale,
            slots,
            aggregate,
        }
    }

    /// Re-bins bucket counts from one log scale to another.
    fn rebin(src_scale: &LogScale, src_buckets: &[u64], dst_scale: &'static LogScale) -> Vec<u64> {
        let mut dst = vec![0u64; dst_scale.num_buckets()];
        let dst_len = dst.len();
        let mut cursor = CumulativeCount::new(src_scale, src_buckets);
        let mut prev_cdf = 0u64;
        let src_total: u64 = src_buckets.iter().sum();

        for (i, count) in dst.iter_mut().enumerate() {
            let cdf_right = if i + 1 == dst_len {
                src_total
            } else {
                let right = dst_scale.bucket_span(i).right();
                cursor.count_below(right).round() as u64
            };

            *count = cdf_right - prev_cdf;
            prev_cdf = cdf_right;
        }

        dst
    }

    /// Merges another histogram's counts into this one.
    ///
    /// If both histograms use the same log scale, slots are merged directly
    /// bucket by bucket. If the scales differ, `other` is rescaled to
    /// `self`'s width before merging.
    ///
    /// Slots are paired from newest to oldest. If `other` has fewer stored
    /// slots, its oldest slots simply have no counterpart and `self`'s
    /// older slots keep their original counts. If `other` has more stored
    /// slots, the extras are appended (and `slot_limit` is expanded).
    ///
    /// The aggregate slot is always merged.
    pub fn merge(&mut self, other: &Histogram<T>)
    where T: Clone {
        let same_scale = self.log_scale.config().width() == other.log_scale.config().width();

        if same_scale {
            self.merge_same_scale(other);
        } else {
            let rescaled = other.rescale(self.width());
            self.merge_same_scale(&rescaled);
        }
    }

    fn merge_same_scale(&mut self, other: &Histogram<T>)
    where T: Clone {
        // Merge aggregate
        self.aggregate.add(&other.aggregate);

        // Merge stored slots, pairing from newest (back) to oldest (front)
        let self_len = self.slots.slots.len();
        let other_len = other.slots.slots.len();
        let paired = self_len.min(other_len);

        // Pair the newest `paired` slots
        for i in 0..paired {
            let self_idx = self_len - 1 - i;
            let other_idx = other_len - 1 - i;
            self.slots.slots[self_idx].add(&other.slots.slots[other_idx]);
        }

        // If other has more slots, prepend the extras at the front
        if other_len > self_len {
            let extra_count = other_len - self_len;
            for i in (0..extra_count).rev() {
                self.slots.slots.push_front(other.slots.slots[i].clone());
            }
        }

        // Expand slot_limit if needed
        let new_limit = self.slots.slot_limit.max(other.slots.slot_limit);
        self.slots.slot_limit = new_limit;
    }

    /// Returns a display wrapper that prints non-empty buckets, one per line.
    pub fn display_buckets(&self) -> DisplayBuckets<'_, T> {
        DisplayBuckets::new(self)
    }
}
