//! Interpolation between a histogram's buckets: the interpolator and its cumulative cursor.

mod cumulative_count;
mod interpolator;

pub use cumulative_count::CumulativeCount;
pub use interpolator::Interpolator;
