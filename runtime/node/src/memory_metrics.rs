//! The memory of resident entities in `/metrics`, beside `cella_cached_entities`:
//! `cella_resident_entity_bytes` (what the entities held in memory account for, see
//! `entities/cache.rs`) and `cella_resident_entity_budget_bytes` (the bound past which idle
//! entities are passivated; absent when only the entity count is bounded).

use prometheus_client::{encoding::text, metrics::gauge::ConstGauge, registry::Registry};

use crate::metrics::register;

/// The end of an OpenMetrics exposition.
const EOF: &str = "# EOF\n";

/// `rendered` (an OpenMetrics text from [`crate::metrics::Metrics::render`]) with the resident
/// entities' `bytes` and their `budget` added before its end.
pub fn with_resident_memory(rendered: String, bytes: usize, budget: Option<usize>) -> String {
    let gauge = |n: usize| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
    let mut registry = Registry::default();
    register(
        &mut registry,
        "cella_resident_entity_bytes",
        "Bytes the entities held in memory account for (state, remembered rows, overhead).",
        gauge(bytes),
    );
    if let Some(budget) = budget {
        register(
            &mut registry,
            "cella_resident_entity_budget_bytes",
            "The bound on cella_resident_entity_bytes past which idle entities are passivated.",
            gauge(budget),
        );
    }
    let mut out = rendered;
    let ended = out.ends_with(EOF);
    if ended {
        out.truncate(out.len() - EOF.len());
    }
    if text::encode_registry(&mut out, &registry).is_err() {
        tracing::error!("encoding the memory metrics failed");
    }
    if ended {
        out.push_str(EOF);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_gauges_before_the_end() {
        let out = with_resident_memory("# EOF\n".into(), 1234, Some(4096));
        assert!(out.contains("cella_resident_entity_bytes 1234\n"), "{out}");
        assert!(
            out.contains("cella_resident_entity_budget_bytes 4096\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
        let out = with_resident_memory("# EOF\n".into(), 1, None);
        assert!(!out.contains("budget"), "{out}");
    }
}
