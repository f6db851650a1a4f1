//! The scheduler's series per entity type (`crate::scheduler`), read from its lanes at a
//! scrape: `cella_type_guest_busy_seconds_total{type}` (wall time of guest command calls),
//! `cella_type_guest_calls_total{type}`, the histogram `cella_type_guest_call_seconds{type}`
//! of those calls (a command's guest overhead: its instance, warm or fresh, the call, and the
//! state in and out), `cella_type_queued_seconds_total{type}` and
//! `cella_type_queued_total{type}` (time commands waited for a slot, and how many waited), and
//! `cella_type_rejected_total{type, bound}` (commands refused with `429`: their type's queue
//! was full, `queue`, or they waited out their deadline, `wait`). The lanes are those of types that ran a command since the node
//! started.

use std::fmt::Write as _;

use crate::scheduler::{CALL_BUCKETS, Scheduler};

/// Escapes a label value for the Prometheus text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The scheduler's series in Prometheus text, without the closing `# EOF`.
pub fn render(scheduler: &Scheduler) -> String {
    let mut busy = String::new();
    let mut calls = String::new();
    let mut queued_s = String::new();
    let mut queued = String::new();
    let mut rejected = String::new();
    let mut histogram = String::new();
    scheduler.each_lane(|ty, lane| {
        let ty = label(ty);
        let mut cumulative = 0;
        for (i, n) in lane.call_buckets.iter().enumerate() {
            cumulative += n;
            let le = CALL_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                histogram,
                "cella_type_guest_call_seconds_bucket{{type=\"{ty}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            histogram,
            "cella_type_guest_call_seconds_sum{{type=\"{ty}\"}} {}\n\
             cella_type_guest_call_seconds_count{{type=\"{ty}\"}} {}",
            lane.busy_seconds, lane.calls
        );
        let _ = writeln!(
            busy,
            "cella_type_guest_busy_seconds_total{{type=\"{ty}\"}} {}",
            lane.busy_seconds
        );
        let _ = writeln!(
            calls,
            "cella_type_guest_calls_total{{type=\"{ty}\"}} {}",
            lane.calls
        );
        let _ = writeln!(
            queued_s,
            "cella_type_queued_seconds_total{{type=\"{ty}\"}} {}",
            lane.queued_seconds
        );
        let _ = writeln!(
            queued,
            "cella_type_queued_total{{type=\"{ty}\"}} {}",
            lane.queued
        );
        for (limit, n) in [("queue", lane.rejected_queue), ("wait", lane.rejected_wait)] {
            let _ = writeln!(
                rejected,
                "cella_type_rejected_total{{type=\"{ty}\",bound=\"{limit}\"}} {n}"
            );
        }
    });
    let mut out = String::new();
    for (name, help, body) in [
        (
            "cella_type_guest_busy_seconds",
            "Wall time of guest command calls, by entity type.",
            busy,
        ),
        (
            "cella_type_guest_calls",
            "Guest command calls, by entity type.",
            calls,
        ),
        (
            "cella_type_queued_seconds",
            "Time commands waited for a guest slot, by entity type.",
            queued_s,
        ),
        (
            "cella_type_queued",
            "Commands that waited for a guest slot, by entity type.",
            queued,
        ),
        (
            "cella_type_rejected",
            "Commands refused with 429, by entity type and the bound hit.",
            rejected,
        ),
    ] {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{body}");
    }
    let name = "cella_type_guest_call_seconds";
    let _ = write!(
        out,
        "# HELP {name} Guest command calls by time taken (instance, call, state in and out), \
         by entity type.\n# TYPE {name} histogram\n{histogram}"
    );
    out
}

/// `rendered` (a full `/metrics` text) with the scheduler's series added before `# EOF`.
pub fn with_scheduler(mut rendered: String, scheduler: &Scheduler) -> String {
    let at = rendered.rfind("# EOF").unwrap_or(rendered.len());
    rendered.insert_str(at, &render(scheduler));
    rendered
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scheduler::SchedulerOptions;

    #[tokio::test]
    async fn renders_each_type() {
        let scheduler = Scheduler::new(SchedulerOptions::default());
        let limits = cella_core::TypeLimits::default();
        drop(
            scheduler
                .acquire("counter", &limits, Duration::from_secs(1))
                .await
                .unwrap(),
        );
        let out = with_scheduler("x 1\n# EOF\n".into(), &scheduler);
        assert!(out.ends_with("# EOF\n"), "{out}");
        for line in [
            "# TYPE cella_type_guest_busy_seconds counter",
            "cella_type_guest_calls_total{type=\"counter\"} 1",
            "cella_type_rejected_total{type=\"counter\",bound=\"queue\"} 0",
            "# TYPE cella_type_guest_call_seconds histogram",
            "cella_type_guest_call_seconds_bucket{type=\"counter\",le=\"+Inf\"} 1",
            "cella_type_guest_call_seconds_count{type=\"counter\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
