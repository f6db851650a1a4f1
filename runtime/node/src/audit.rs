//! The audit trail: every admin action — a module deployed, rolled back or deleted, a node
//! added or removed, the token file reloaded — as an [`AuditRecord`] in the metadata group
//! (raft group 0), so every node holds the same trail, in the order the actions committed.
//! A module change and its record travel in one log entry (`Command::Admin`), so a change is
//! never applied without its record. Only actions that took effect are recorded: a refused
//! deploy (invalid, or unable to replay the existing entities) changes nothing and is not in
//! the trail (the node's log says who tried). A node that reloads its token file records that
//! through the metadata leader (a signed peer request) when it does not lead group 0 itself. Records are keyed by their log index, which
//! `GET /v1/audit?after=N` pages by.

use std::time::{Duration, Instant};

use cella_cluster::{AuditRecord, ModuleOp};
use cella_store::Store;

use crate::{
    error::{Error, Result},
    node::Node,
};

pub use cella_cluster::types::now_ms;

/// A record of `action` by `actor`, now; the caller fills in what it was about.
pub fn record(actor: &str, action: &str) -> AuditRecord {
    AuditRecord::new(actor, action)
}

/// Records `record` with the module change `module` (if any): through the metadata group in a
/// cluster (applied together on every node), straight into the store without one. Returns
/// whether it went through the cluster (the change is then applied here already).
pub async fn commit(
    cluster: Option<&cella_cluster::Cluster>,
    store: &Store,
    record: AuditRecord,
    module: Option<ModuleOp>,
) -> Result<bool> {
    match cluster {
        Some(cluster) => {
            cluster
                .propose_admin(record, module)
                .await
                .map_err(Error::Cluster)?;
            Ok(true)
        }
        None => {
            // Embedded without a cluster: the caller applies the module change itself.
            let bytes = cella_cluster::types::encode("an audit record", &record)
                .map_err(|e| Error::Internal(e.to_string()))?;
            store.append_audit(store.last_audit_index()? + 1, &bytes)?;
            Ok(false)
        }
    }
}

/// Where a node sends its token reload's record to the metadata leader (a peer request).
pub const PEER_AUDIT_PATH: &str = "/v1/peer/audit";

/// How long a node tries to have its token reload recorded (the metadata leader may be
/// changing).
const RELOAD_RECORD_DEADLINE: Duration = Duration::from_secs(10);

/// Records a reload of the token file: here when this node leads the metadata group, else
/// through the leader (`POST /v1/peer/audit`, signed like every peer request), retried for a
/// bounded time while the leader is unknown or unreachable.
pub(crate) async fn record_reload(node: &Node, ids: &[String]) {
    let Some(cluster) = &node.cluster else {
        return;
    };
    let node_id = cluster.node_id();
    let mut r = record(&format!("node {node_id}"), "reload-tokens");
    r.node = Some(node_id);
    r.detail = Some(format!("tokens: {}", ids.join(", ")));
    let deadline = Instant::now() + RELOAD_RECORD_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let outcome = match cluster.meta_leadership() {
            Ok(()) => commit(Some(cluster), &node.store, r.clone(), None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(None) => Err("the metadata group has no leader".to_string()),
            Err(Some(leader)) => send_to_leader(cluster, &leader, &r).await,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("the token reload is not in the audit trail: {last}");
}

/// Sends a reload record to the metadata leader at `leader`.
async fn send_to_leader(
    cluster: &cella_cluster::Cluster,
    leader: &str,
    record: &AuditRecord,
) -> std::result::Result<(), String> {
    let body =
        cella_cluster::types::encode("an audit record", record).map_err(|e| e.to_string())?;
    let reply = cluster
        .client()
        .send(
            leader,
            hyper::Method::POST,
            PEER_AUDIT_PATH,
            &[],
            body.into(),
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| e.to_string())?;
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{leader} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

/// Records a membership change made on the metadata leader (a failure is logged: the change
/// itself is done).
pub(crate) async fn record_membership(node: &Node, actor: &str, id: u64, addr: Option<&str>) {
    let Some(cluster) = &node.cluster else {
        return;
    };
    let mut r = record(
        actor,
        if addr.is_some() {
            "add-node"
        } else {
            "remove-node"
        },
    );
    r.node = Some(id);
    r.detail = addr.map(|a| format!("addr {a}"));
    if let Err(e) = commit(Some(cluster), &node.store, r, None).await {
        tracing::warn!("recording the membership change of node {id} in the audit trail: {e}");
    }
}

/// Up to `limit` records after index `after`, as JSON, oldest first.
pub fn read(store: &Store, after: u64, limit: usize) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (index, bytes) in store.audit(after, limit)? {
        let r: AuditRecord = cella_cluster::types::decode("an audit record", &bytes)
            .map_err(|e| Error::Internal(e.to_string()))?;
        out.push(serde_json::json!({
            "index": index,
            "atMs": r.at_ms,
            "actor": r.actor,
            "action": r.action,
            "type": r.entity_type,
            "version": r.version,
            "digest": r.digest,
            "node": r.node,
            "detail": r.detail,
        }));
    }
    Ok(out)
}
