//! `Slot`: one period's bucket counts and metadata, with region sums for fast rank lookups.

/// Number of buckets per region for the tiered cumulative scan.
const REGION_SIZE: usize = 16;

/// A single slot containing bucket counts and user-defined metadata.
///
/// Maintains a tiered cache (`region_sums`) for fast rank lookups:
/// instead of scanning all buckets, `bucket_at_rank()` first scans
/// ~16 region sums, then ~16 buckets within the matching region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot<T> {
    /// Count of samples in each bucket.
    pub(crate) buckets: Vec<u64>,
    /// Cached sum for each group of `REGION_SIZE` buckets.
    region_sums: Vec<u64>,
    /// Cached total sample count across all buckets.
    pub(crate) total: u64,
    /// User-defined metadata for this slot. Only set when slot is activated via `advance()`.
    pub(crate) data: Option<T>,
}

impl<T> Slot<T> {
    /// Creates a new slot with zeroed buckets and no metadata.
    pub(crate) fn new(num_buckets: usize) -> Self {
        let num_regions = num_buckets.div_ceil(REGION_SIZE);
        Self {
            buckets: vec![0; num_buckets],
            region_sums: vec![0; num_regions],
            total: 0,
            data: None,
        }
    }

    /// Creates a slot from pre-filled buckets, computing the total and
    /// region sums from their values.
    pub(crate) fn from_buckets(buckets: Vec<u64>, data: Option<T>) -> Self {
        let total = buckets.iter().sum();
        let region_sums = buckets.chunks(REGION_SIZE).map(|chunk| chunk.iter().sum()).collect();
        Self {
            buckets,
            region_sums,
            total,
            data,
        }
    }

    /// Adds `count` samples to the bucket at `bucket_index`.
    #[inline]
    pub(crate) fn record_n(&mut self, bucket_index: usize, count: u64) {
        self.buckets[bucket_index] += count;
        self.region_sums[bucket_index / REGION_SIZE] += count;
        self.total += count;
    }

    /// Returns the sample count in the bucket at `index`.
    #[inline]
    pub(crate) fn count_at(&self, index: usize) -> u64 {
        self.buckets[index]
    }

    /// Returns the total sample count across all buckets.
    #[inline]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Subtracts another slot's bucket counts, region sums, and total
    /// from this slot.
    pub(crate) fn subtract(&mut self, other: &Slot<T>) {
        (0..self.buckets.len()).for_each(|i| {
            self.buckets[i] -= other.buckets[i];
        });
        (0..self.region_sums.len()).for_each(|r| {
            self.region_sums[r] -= other.region_sums[r];
        });
        self.total -= other.total;
    }

    /// Adds another slot's bucket counts, region sums, and total
    /// into this slot.
    pub(crate) fn add(&mut self, other: &Slot<T>) {
        (0..self.buckets.len()).for_each(|i| {
            self.buckets[i] += other.buckets[i];
        });
        (0..self.region_sums.len()).for_each(|r| {
            self.region_sums[r] += other.region_sums[r];
        });
        self.total += other.total;
    }

    /// Finds the bucket containing the given rank (1-based).
    ///
    /// Uses a two-phase scan: first over region sums to find the region,
    /// then over individual buckets within that region.
    ///
    /// Returns `(bucket_index, cumulative_before)` for the first bucket
    /// whose cumulative count reaches `rank`, where `cumulative_before`
    /// is the total count of all buckets before this one.
    ///
    /// Returns `None` if `rank` exceeds the total sample count.
    #[inline]
    pub(crate) fn bucket_at_rank(&self, rank: u64) -> Option<(usize, u64)> {
        // Phase 1: scan region sums to find the target region
        let mut cumulative = 0u64;
        let mut region_start = None;

        for (r, &sum) in self.region_sums.iter().enumerate() {
            let next = cumulative + sum;
            if next >= rank {
                region_start = Some(r * REGION_SIZE);
                break;
            }
            cumulative = next;
        }

        let region_start = region_start?;

        // Phase 2: scan buckets within the region
        let region_end = (region_start + REGION_SIZE).min(self.buckets.len());
        for i in region_start..region_end {
            cumulative += self.buckets[i];
            if cumulative >= rank {
                let cumulative_before = cumulative - self.buckets[i];
                return Some((i, cumulative_before));
            }
        }

        None
    }

    /// Resets all bucket counts to zero and removes user data.
    pub(crate) fn clear(&mut self) {
        self.buckets.fill(0);
        self.region_sums.fill(0);
        self.total = 0;
        self.data = None;
    }
}
