//! `DisplayBuckets`: a histogram's non-empty buckets, one per line.

use std::fmt;

use crate::Histogram;

/// Displays non-empty buckets of a histogram, one per line.
pub struct DisplayBuckets<'a, T> {
    histogram: &'a Histogram<T>,
}

impl<'a, T> DisplayBuckets<'a, T> {
    pub(crate) fn new(histogram: &'a Histogram<T>) -> Self {
        Self { histogram }
    }
}

impl<T> fmt::Display for DisplayBuckets<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for b in self.histogram.bucket_data() {
            if b.count() == 0 {
                continue;
            }
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{b}")?;
        }
        Ok(())
    }
}
