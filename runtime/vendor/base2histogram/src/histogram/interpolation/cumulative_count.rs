//! `CumulativeCount`: a cursor computing cumulative counts at increasing positions over an
//! `Interpolator`'s model.

use super::interpolator::Interpolator;
use crate::histogram::scale::LogScale;

/// An incremental cursor for computing cumulative counts at monotonically
/// increasing positions over a histogram's interpolation model.
///
/// Maintains internal state (current bucket index and accumulated total)
/// so that each `count_below` call resumes scanning from where the previous
/// call left off, rather than re-scanning from bucket 0.
///
/// Each `position` passed to `count_below` must be >= the previous one.
pub struct CumulativeCount<'a> {
    interpolator: Interpolator<'a>,

    /// Index of the bucket containing or following the last queried position.
    bucket_index: usize,

    /// Sum of whole-bucket counts from all buckets before `bucket_index`.
    accumulated: u64,
}

impl<'a> CumulativeCount<'a> {
    /// Creates a new cursor starting at position 0.
    pub fn new(log_scale: &'a LogScale, buckets: &'a [u64]) -> Self {
        Self {
            interpolator: Interpolator::new(log_scale, buckets),
            bucket_index: 0,
            accumulated: 0,
        }
    }

    /// Returns the bucket index at or after the last queried position.
    pub fn current_bucket(&self) -> usize {
        self.bucket_index
    }

    /// Returns the sum of all whole-bucket counts before `current_bucket()`.
    pub fn whole_bucket_accumulated(&self) -> u64 {
        self.accumulated
    }

    /// Returns the estimated count of samples in `[0, position)`.
    ///
    /// Each successive call must pass a `position` >= the previous one.
    /// For the terminal bucket, `position == u64::MAX` still excludes the
    /// endpoint mass at `u64::MAX`.
    ///
    /// # Panics
    ///
    /// Panics in debug builds if `position` would require scanning backward.
    pub fn count_below(&mut self, position: u64) -> f64 {
        let num_buckets = self.interpolator.num_buckets();

        while self.bucket_index < num_buckets {
            let b = self.interpolator.bucket(self.bucket_index);

            debug_assert!(
                position >= b.left(),
                "CumulativeCount::count_below requires monotonically increasing positions"
            );

            let past_bucket = if b.is_last() {
                position > b.right()
            } else {
                position >= b.right()
            };

            if past_bucket {
                self.accumulated += b.count();
                self.bucket_index += 1;
            } else {
                // Position falls within this bucket
                let partial = self.interpolator.trapezoidal_cdf(self.bucket_index, position.saturating_sub(b.left()));
                return self.accumulated as f64 + partial;
            }
        }

        self.accumulated as f64
    }

    /// Returns the interpolated value at the given rank (1-based position in
    /// sorted order).
    ///
    /// Each successive call must pass a `rank` >= the previous one.
    /// Returns `0` if `rank` exceeds the total sample count.
    pub fn value_at_rank(&mut self, rank: u64) -> u64 {
        let num_buckets = self.interpolator.num_buckets();

        while self.bucket_index < num_buckets {
            let count = self.interpolator.bucket(self.bucket_index).count();
            let next = self.accumulated + count;

            if next >= rank {
                let rank_in_bucket = rank - self.accumulated;
                return self.interpolator.rank_to_position(self.bucket_index, rank_in_bucket);
            }

            self.accumulated = next;
            self.bucket_index += 1;
        }

        0
    }
}
