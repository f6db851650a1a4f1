//! ASCII charts of histograms: the chart, its series and its two renderings.

#[allow(clippy::module_inception)]
mod ascii_chart;
mod compact_display;
mod detailed_display;
mod series;

pub use ascii_chart::AsciiChart;
