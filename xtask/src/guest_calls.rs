//! A type's guest call times from the node's `/metrics`: the histogram
//! `cella_type_guest_call_seconds{type}` (a command's guest overhead: its instance, warm or
//! fresh, the call, and the state in and out), read before and after a load so that the
//! difference is that load's calls, and its quantiles.

use crate::http::request;

/// Cumulative counts per upper bound (seconds; `f64::INFINITY` for `+Inf`), in order.
#[derive(Debug, Default, PartialEq)]
pub struct Calls(Vec<(f64, u64)>);

impl Calls {
    /// The histogram of type `ty` in the `/metrics` of the node at `addr`.
    pub fn scrape(addr: &str, ty: &str) -> anyhow::Result<Calls> {
        let (status, body) = request(addr, "GET", "/metrics", b"")?;
        anyhow::ensure!(status == 200, "GET /metrics: {status}");
        Ok(Calls::parse(&body, ty))
    }

    fn parse(text: &str, ty: &str) -> Calls {
        let prefix = format!("cella_type_guest_call_seconds_bucket{{type=\"{ty}\",le=\"");
        Calls(
            text.lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix(&prefix)?;
                    let (le, count) = rest.split_once("\"} ")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, count.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The calls counted in `self` and not in `earlier`.
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let before = earlier.0.iter().find(|(l, _)| *l == le).map_or(0, |c| c.1);
                    (le, n.saturating_sub(before))
                })
                .collect(),
        )
    }

    /// The upper bound, in ms, of the bucket holding quantile `q` (0..1), if any call counted
    /// (`inf` if it lies past the last bound).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.0.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        self.0
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| le * 1000.0)
    }

    /// `≤ p50 / ≤ p99` in ms, or `-` when no call counted.
    pub fn summary(&self) -> String {
        match (self.quantile_ms(0.5), self.quantile_ms(0.99)) {
            (Some(p50), Some(p99)) => format!("≤ {p50} / ≤ {p99}"),
            _ => "-".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
cella_type_guest_call_seconds_bucket{type=\"py\",le=\"0.0001\"} 10
cella_type_guest_call_seconds_bucket{type=\"py\",le=\"0.001\"} 60
cella_type_guest_call_seconds_bucket{type=\"py\",le=\"0.01\"} 99
cella_type_guest_call_seconds_bucket{type=\"py\",le=\"+Inf\"} 100
cella_type_guest_call_seconds_bucket{type=\"rs\",le=\"0.0001\"} 7
cella_type_guest_call_seconds_count{type=\"py\"} 100
";

    #[test]
    fn reads_one_types_buckets_and_their_quantiles() {
        let py = Calls::parse(TEXT, "py");
        assert_eq!(py.0.len(), 4);
        assert_eq!(py.quantile_ms(0.5), Some(1.0));
        assert_eq!(py.quantile_ms(0.99), Some(10.0));
        assert_eq!(py.quantile_ms(1.0), Some(f64::INFINITY));
        assert_eq!(Calls::parse(TEXT, "js"), Calls::default());
        assert_eq!(Calls::default().summary(), "-");
    }

    #[test]
    fn the_difference_is_the_later_calls() {
        let later = Calls::parse(TEXT, "py");
        let earlier = Calls(vec![
            (0.0001, 10),
            (0.001, 50),
            (0.01, 50),
            (f64::INFINITY, 50),
        ]);
        let load = later.since(&earlier);
        assert_eq!(load.0.last(), Some(&(f64::INFINITY, 50)));
        // 0 under 0.1 ms, 10 under 1 ms, 49 under 10 ms: the median is under 10 ms.
        assert_eq!(load.quantile_ms(0.5), Some(10.0));
    }
}
