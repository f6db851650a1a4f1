//! `BucketRef`: one bucket of a histogram (its geometry and count), its bounds computed on demand.

use std::fmt;
use std::fmt::Formatter;

use super::scale::BucketSpan;
use super::scale::LogScale;

/// A lazy reference to a single bucket in a histogram.
///
/// Combines bucket geometry with a sample count.
/// Boundary values are computed only when the corresponding method is called.
#[derive(Debug, Clone, Copy)]
pub struct BucketRef<'a> {
    span: BucketSpan<'a>,
    count: u64,
}

impl fmt::Display for BucketRef<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let close = if self.is_last() { ']' } else { ')' };
        write!(
            f,
            "b{}[{},{}{}={}",
            self.index(),
            self.left(),
            self.right(),
            close,
            self.count()
        )
    }
}

impl<'a> BucketRef<'a> {
    pub(crate) fn new(log_scale: &'a LogScale, index: usize, count: u64) -> Self {
        Self {
            span: BucketSpan::new(log_scale, index),
            count,
        }
    }

    /// Returns the bucket geometry.
    #[inline]
    pub fn span(&self) -> &BucketSpan<'a> {
        &self.span
    }

    /// Returns `true` if this bucket contains `u64::MAX`.
    #[inline]
    pub fn is_last(&self) -> bool {
        self.span.is_last()
    }

    /// Bucket index.
    #[inline]
    pub fn index(&self) -> usize {
        self.span.index()
    }

    /// The left close value that maps to this bucket.
    #[inline]
    pub fn left(&self) -> u64 {
        self.span.left()
    }

    /// The upper boundary that maps to this bucket.
    ///
    /// This is exclusive for every bucket except the last one.
    #[inline]
    pub fn right(&self) -> u64 {
        self.span.right()
    }

    /// Number of integer values represented by this bucket.
    #[inline]
    pub fn width(&self) -> u64 {
        self.span.width()
    }

    /// Midpoint of the bucket's value range.
    #[inline]
    pub fn midpoint(&self) -> u64 {
        self.span.midpoint()
    }

    /// The number of samples recorded in this bucket.
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }
}
