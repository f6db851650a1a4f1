//! `BucketSpan`: a bucket's geometry in a `LogScale` (left, right, width, midpoint), without a count.

use super::log_scale::LogScale;

/// A reference to a bucket's geometry in a log scale.
///
/// Provides access to left, right, width, and midpoint without carrying
/// histogram data (count). Created by [`LogScale::bucket_span`].
#[derive(Debug, Clone, Copy)]
pub struct BucketSpan<'a> {
    log_scale: &'a LogScale,
    index: usize,
}

impl<'a> BucketSpan<'a> {
    pub(crate) fn new(log_scale: &'a LogScale, index: usize) -> Self {
        Self { log_scale, index }
    }

    /// Bucket index.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Left (inclusive) boundary.
    #[inline]
    pub fn left(&self) -> u64 {
        self.log_scale.bucket_min_values[self.index]
    }

    /// Returns `true` if this is the terminal bucket that contains `u64::MAX`.
    #[inline]
    pub fn is_last(&self) -> bool {
        self.index + 1 == self.log_scale.bucket_min_values.len()
    }

    /// Upper boundary.
    ///
    /// This is exclusive for every bucket except the last one.
    /// The terminal bucket returns `u64::MAX` and includes that value.
    #[inline]
    pub fn right(&self) -> u64 {
        if !self.is_last() {
            self.log_scale.bucket_min_values[self.index + 1]
        } else {
            u64::MAX
        }
    }

    /// Number of integer values represented by this bucket.
    #[inline]
    pub fn width(&self) -> u64 {
        let span = self.right() - self.left();
        if self.is_last() { span + 1 } else { span }
    }

    /// Midpoint of the bucket's value range.
    #[inline]
    pub fn midpoint(&self) -> u64 {
        self.left() + (self.right() - self.left()) / 2
    }
}
