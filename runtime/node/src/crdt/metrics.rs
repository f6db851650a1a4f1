//! Crdt replication in `/metrics`, added before the end of the node's exposition:
//! `cella_crdt_entities` (replicas held here), `cella_crdt_changes_total` (commands whose
//! operations changed a replica), `cella_crdt_deltas_sent_total`,
//! `cella_crdt_merged_total` (deltas and states from peers that changed a replica here),
//! `cella_crdt_repaired_total` (of those, the ones anti-entropy brought) and
//! `cella_crdt_send_failures_total`.

use std::sync::atomic::Ordering;

use prometheus_client::{
    encoding::text,
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::Crdts;
use crate::metrics::register;

/// The end of an OpenMetrics exposition.
const EOF: &str = "# EOF\n";

/// `rendered` with the crdt metrics of `crdts` added before its end.
pub fn with_crdts(rendered: String, crdts: &Crdts) -> String {
    let c = &crdts.counters;
    let mut registry = Registry::default();
    register(
        &mut registry,
        "cella_crdt_entities",
        "Crdt entities this node holds a replica of.",
        ConstGauge::new(i64::try_from(crdts.len()).unwrap_or(i64::MAX)),
    );
    let counters = [
        (
            "cella_crdt_changes",
            "Crdt commands whose operations changed this node's replica.",
            &c.changes,
        ),
        (
            "cella_crdt_deltas_sent",
            "Crdt deltas sent to other nodes (one per entity and node).",
            &c.deltas_sent,
        ),
        (
            "cella_crdt_merged",
            "Crdt deltas and states from other nodes that changed a replica here.",
            &c.merged,
        ),
        (
            "cella_crdt_repaired",
            "Crdt states merged by anti-entropy that changed a replica here.",
            &c.repaired,
        ),
        (
            "cella_crdt_send_failures",
            "Crdt gossip sends that failed (their deltas stay queued).",
            &c.send_failures,
        ),
    ];
    for (name, help, value) in counters {
        register(
            &mut registry,
            name,
            help,
            ConstCounter::new(value.load(Ordering::Relaxed)),
        );
    }
    let mut out = rendered;
    let ended = out.ends_with(EOF);
    if ended {
        out.truncate(out.len() - EOF.len());
    }
    if text::encode_registry(&mut out, &registry).is_err() {
        tracing::error!("encoding the crdt metrics failed");
    }
    if ended {
        out.push_str(EOF);
    }
    out
}
