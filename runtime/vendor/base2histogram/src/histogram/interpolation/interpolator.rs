//! `Interpolator`: continuous estimates between a histogram's discrete buckets (trapezoidal
//! density from neighbouring slopes), for percentiles and partial-bucket counts.

use crate::histogram::bucket_ref::BucketRef;
use crate::histogram::scale::LogScale;

/// Interpolates between discrete histogram buckets to produce continuous estimates.
///
/// Uses trapezoidal density estimation with neighbor bucket slopes
/// to compute partial-bucket counts and cumulative distributions.
///
/// Operates on a `&LogScale` (for bucket geometry) and a `&[u64]` slice
/// of bucket counts, independent of any particular histogram instance.
#[derive(Clone, Copy)]
pub struct Interpolator<'a> {
    log_scale: &'a LogScale,
    buckets: &'a [u64],
}

impl<'a> Interpolator<'a> {
    /// Creates an interpolator over the given bucket counts.
    pub fn new(log_scale: &'a LogScale, buckets: &'a [u64]) -> Self {
        Self { log_scale, buckets }
    }

    /// Returns the number of buckets.
    #[inline]
    pub fn num_buckets(&self) -> usize {
        self.log_scale.num_buckets()
    }

    /// Returns a reference to the bucket at the given index.
    #[inline]
    pub fn bucket(&self, index: usize) -> BucketRef<'_> {
        BucketRef::new(self.log_scale, index, self.buckets[index])
    }

    /// Computes the density slope at `bucket`.
    ///
    /// Density slope `k` measures the rate of change in sample density
    /// (count/width) between two reference points:
    ///
    /// ```text
    ///   k = (d_right - d_left) / (m_right - m_left)
    /// ```
    ///
    /// where `d = count / width` and `m = midpoint`.
    ///
    /// For interior buckets, uses the left and right neighbors.
    /// For the first bucket, uses self and the right neighbor.
    /// For the last bucket, uses the left neighbor and self.
    pub fn density_slope(&self, bucket: usize) -> f64 {
        let last = self.num_buckets() - 1;

        let (left, right) = if bucket == 0 {
            (bucket, bucket + 1)
        } else if bucket == last {
            (bucket - 1, bucket)
        } else {
            (bucket - 1, bucket + 1)
        };

        let bl = self.bucket(left);
        let br = self.bucket(right);

        let dl = bl.count() as f64 / bl.width() as f64;
        let dr = br.count() as f64 / br.width() as f64;

        (dr - dl) / (br.midpoint() as f64 - bl.midpoint() as f64)
    }

    /// Returns the density slope at `bucket`, clamped so that the linear
    /// density model `d(x) = d1 + k·(x - w/2)` stays non-negative across
    /// the entire bucket width.
    ///
    /// This is `density_slope()` with the additional guarantee that the
    /// resulting slope can be used directly for trapezoidal interpolation
    /// without producing negative density at either edge.
    pub fn clamped_density_slope(&self, bucket: usize) -> f64 {
        let b = self.bucket(bucket);
        let w = b.width() as f64;
        let d1 = b.count() as f64 / w;
        let mut k = self.density_slope(bucket);

        if d1 + k * w / 2.0 < 0.0 {
            k = -d1 / (w / 2.0);
        }
        if d1 - k * w / 2.0 < 0.0 {
            k = d1 / (w / 2.0);
        }

        k
    }

    /// Computes the estimated sample count in `[bucket.left(), bucket.left() + rel_position)`
    /// using trapezoidal density estimation.
    ///
    /// `rel_position` is the offset from the bucket's left boundary.
    /// Since the underlying density is continuous, the boundary is
    /// effectively neither open nor closed (a single point has zero measure).
    ///
    /// Models the density inside the bucket as a linear function:
    ///
    /// ```text
    ///   d(x) = a + k·x,  x ∈ [0, width]
    /// ```
    ///
    /// where `a = d1 - k·width/2` is the density at the left edge,
    /// `k` is the clamped density slope from `clamped_density_slope()`,
    /// and `d1 = count / width` is the average density.
    ///
    /// The CDF is:
    ///
    /// ```text
    ///   C(x) = a·x + k·x²/2
    /// ```
    pub fn trapezoidal_cdf(&self, bucket: usize, rel_position: u64) -> f64 {
        let b = self.bucket(bucket);
        let w = b.width() as f64;
        let x = rel_position as f64;

        let d1 = b.count() as f64 / w;
        let k = self.clamped_density_slope(bucket);

        // d(x) = a + k·x, where a = d1 - k·w/2 is density at left edge
        let a = d1 - k * w / 2.0;
        a * x + k * x * x / 2.0
    }

    /// Returns the smallest absolute position within a bucket that
    /// corresponds to the given rank, using trapezoidal density interpolation.
    ///
    /// `rank` is the 1-based rank within this bucket (1..=count).
    ///
    /// The result is clamped to `[left, right]`.
    /// Returns the bucket midpoint when `count <= 1` or `width == 1`.
    ///
    /// Solves for offset `x` from the bucket's left edge via:
    ///
    /// ```text
    ///   a = count/w − k·w/2        (density at left edge)
    ///   Solve a·x + k·x²/2 = rank:
    ///     x = (−a + √(a² + 2·k·rank)) / k
    /// ```
    ///
    /// Then maps to absolute position: `left + floor(x)`.
    pub fn rank_to_position(&self, bucket: usize, rank: u64) -> u64 {
        let b = self.bucket(bucket);
        let count = b.count();

        if count <= 1 || b.width() == 1 {
            return b.midpoint();
        }

        let rank = rank as f64;
        let w = b.width() as f64;
        let d1 = count as f64 / w;
        let k = self.clamped_density_slope(bucket);

        // Density at left edge
        let a = d1 - k * w / 2.0;

        // Solve a·x + k·x²/2 = rank for x
        let x = if (k * w).abs() < d1.abs() * 1e-9 {
            // Near-uniform density
            rank / d1
        } else {
            let disc = a * a + 2.0 * k * rank;
            if disc < 0.0 { rank / d1 } else { (-a + disc.sqrt()) / k }
        };

        b.left().saturating_add(x.clamp(0.0, w) as u64).min(b.right())
    }

    /// Returns the estimated count of samples in `[0, position)`,
    /// i.e., strictly below `position`, across all buckets.
    ///
    /// Sums the full count of every bucket entirely before `position`,
    /// then adds the partial count within the bucket containing `position`
    /// using `trapezoidal_cdf`. For the terminal bucket, `position == u64::MAX`
    /// still excludes the endpoint mass at `u64::MAX`.
    pub fn count_below(&self, position: u64) -> f64 {
        let mut total = 0.0;

        for i in 0..self.num_buckets() {
            let b = self.bucket(i);
            let past_bucket = if b.is_last() {
                position > b.right()
            } else {
                position >= b.right()
            };

            if past_bucket {
                total += b.count() as f64;
            } else {
                total += self.trapezoidal_cdf(i, position.saturating_sub(b.left()));
                break;
            }
        }

        total
    }
}
