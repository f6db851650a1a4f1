//! Placement that follows load, over HTTP: `GET /v1/cluster?load=true` (the status with every
//! member's load and the leader placement), `POST /v1/cluster/rebalance` (admin: what the
//! loads suggest, `?dry-run=true` to only show it, or a body `{"partition": P, "node": N}` to
//! move one partition's leadership; made by the metadata leader, routed there), and
//! `GET /v1/peer/load` (a node's load report to the metadata leader, signed like every peer
//! request, postcard). The decisions are `cella_cluster::rebalance`'s.

use std::sync::Arc;

use cella_cluster::{Cluster, RebalanceRequest, types::Leaders};
use hyper::{Request, Response, StatusCode, body::Incoming};

use super::body::{Body, json_response, query_param, read_body};
use crate::{
    auth::Action,
    error::{Error, Result},
    node::Node,
    routing::{Origin, Target, Via, dispatch, status},
};

fn no_cluster() -> Error {
    Error::NotFound("this node is not in a cluster".into())
}

fn flag<B>(req: &Request<B>, name: &str) -> bool {
    query_param(req, name).is_some_and(|v| v == "true" || v == "1")
}

/// The leader placement as JSON: preferred leaders (partition → node) and the moves made.
fn placement_json(leaders: &Leaders) -> serde_json::Value {
    serde_json::json!({
        "preferred": leaders
            .preferred
            .iter()
            .map(|(g, n)| (g.to_string(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "moves": leaders.moves,
    })
}

/// `GET /v1/cluster`: the status as this node sees it, its load and the leader placement;
/// with `?load=true` every member's load (asked of each, a second at most).
pub(super) async fn cluster_status(node: &Node, req: &Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let mut body = status(cluster);
    body["placement"] = placement_json(&cluster.leader_placement());
    if flag(req, "load") {
        let (loads, unreachable) = cluster.gather_loads().await;
        body["loads"] = serde_json::json!(loads);
        body["unreachable"] = serde_json::json!(unreachable);
    } else {
        body["loads"] = serde_json::json!([cluster.load_report()]);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `{"partition": P, "node": N}`, or an empty body.
fn parse_explicit(body: &[u8]) -> Result<Option<(u64, u64)>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Move {
        partition: u64,
        node: u64,
    }
    let m: Move = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!(
            "the body must be empty (move what the loads suggest) or {{\"partition\": P, \
             \"node\": N}}: {e}"
        ))
    })?;
    Ok(Some((m.partition, m.node)))
}

/// Runs `request` on this node and answers with its outcome.
async fn run(cluster: &Cluster, request: RebalanceRequest) -> Result<Response<Body>> {
    let outcome = cluster.rebalance(request).await.map_err(|e| match e {
        cella_cluster::Error::Membership(m) => Error::BadRequest(m),
        cella_cluster::Error::NotLeader(_) => Error::NotLeader {
            leader: cluster.meta_leadership().err().flatten(),
        },
        other => Error::Cluster(other),
    })?;
    let body = serde_json::to_value(&outcome)
        .map_err(|e| Error::Internal(format!("encoding a rebalance outcome: {e}")))?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/cluster/rebalance[?dry-run=true]`, body empty or `{"partition": P, "node": N}`.
pub(super) async fn rebalance(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let caller = node.authorize(&req, Action::Admin)?;
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let dry_run = flag(&req, "dry-run");
    let origin = Origin::of(&req, Via::SlowRequest);
    let body = read_body(req, node.options.max_payload, "the rebalance request").await?;
    let explicit = parse_explicit(&body)?;
    let request = RebalanceRequest {
        dry_run,
        explicit,
        actor: caller.id.clone(),
    };
    if dry_run {
        // Any node can plan: it gathers the same loads.
        return run(cluster, request).await;
    }
    dispatch(node, Target::Metadata, &origin, body, || {
        run(cluster, request.clone())
    })
    .await
}

/// `GET /v1/peer/load`: this node's load report (postcard), to an authenticated peer.
pub(super) async fn peer_load(node: &Node, req: Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    super::peer::signed_body(cluster, req, 1024, "a load request").await?;
    let report = cella_cluster::types::encode("a load report", &cluster.load_report())
        .map_err(Error::Peer)?;
    Ok(super::peer::postcard_reply(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_move_is_named_exactly() {
        assert_eq!(parse_explicit(b"").unwrap(), None);
        assert_eq!(parse_explicit(b" \n").unwrap(), None);
        assert_eq!(
            parse_explicit(br#"{"partition": 4, "node": 2}"#).unwrap(),
            Some((4, 2))
        );
        for bad in [
            &b"{\"partition\": 4}"[..],
            b"{\"partition\": 4, \"node\": 2, \"x\": 1}",
            b"[1]",
        ] {
            let e = parse_explicit(bad).unwrap_err().to_string();
            assert!(e.contains("{\"partition\": P, \"node\": N}"), "{e}");
        }
    }
}
