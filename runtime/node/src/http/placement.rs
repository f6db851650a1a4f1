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
    let routes = cluster.routes_now();
    body["shardMoves"] = serde_json::json!({
        "moved": routes
            .moved
            .iter()
            .map(|(s, g)| (s.to_string(), serde_json::json!(g)))
            .collect::<serde_json::Map<_, _>>(),
        "moving": routes.moving.values().collect::<Vec<_>>(),
        "moves": routes.moves,
    });
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
    let outcome = cluster
        .rebalance(request)
        .await
        .map_err(|e| cluster_error(cluster, e))?;
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

/// `POST /v1/cluster/shards/{shard}/move`, body `{"partition": P}` (admin): moves the shard to
/// partition P; made by the metadata leader, routed there.
pub(super) async fn move_shard(
    node: &Arc<Node>,
    params: &super::Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let caller = node.authorize(&req, Action::Admin)?;
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let shard: u32 = params
        .decoded("shard")?
        .parse()
        .map_err(|_| Error::BadRequest("the shard must be a number".into()))?;
    let origin = Origin::of(&req, Via::SlowRequest);
    let body = read_body(req, node.options.max_payload, "the shard move").await?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct To {
        partition: u64,
    }
    let to: To = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the body must be {{\"partition\": P}}: {e}")))?;
    let request = cella_cluster::moving::ShardMoveRequest {
        shard,
        to: to.partition,
        actor: caller.id.clone(),
        reason: None,
    };
    dispatch(node, Target::Metadata, &origin, body, || async {
        let outcome = cluster
            .move_shard(request.clone())
            .await
            .map_err(|e| cluster_error(cluster, e))?;
        let body = serde_json::to_value(&outcome)
            .map_err(|e| Error::Internal(format!("encoding a shard move: {e}")))?;
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// A cluster error as the node answers it.
fn cluster_error(cluster: &Cluster, e: cella_cluster::Error) -> Error {
    match e {
        cella_cluster::Error::Membership(m) => Error::BadRequest(m),
        cella_cluster::Error::NotLeader(_) => Error::NotLeader {
            leader: cluster.meta_leadership().err().flatten(),
        },
        other => Error::Cluster(other),
    }
}

/// `POST /v1/peer/shard/export/{group}/{shard}` and `POST /v1/peer/shard/submit/{group}`: a
/// step of a shard's move asked of this node as a partition's leader, by an authenticated peer
/// (postcard both ways).
pub(super) async fn peer_shard(
    node: &Node,
    params: &super::Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let number = |name: &str| -> Result<u64> {
        params
            .decoded(name)?
            .parse()
            .map_err(|_| Error::BadRequest(format!("`{name}` must be a number")))
    };
    let group = number("group")?;
    // The export names a shard; a submit does not.
    let shard = match params.decoded("shard")?.is_empty() {
        true => None,
        false => Some(
            u32::try_from(number("shard")?)
                .map_err(|_| Error::BadRequest("`shard` is out of range".into()))?,
        ),
    };
    // A move carries one shard's data, under the transport's frame limit.
    let body = super::peer::signed_body(cluster, req, 256 << 20, "a shard step").await?;
    let reply = cluster
        .serve_shard_step(group, shard, &body)
        .await
        .map_err(|e| match e {
            cella_cluster::Error::NotLeader(m) => Error::Unavailable(m),
            cella_cluster::Error::Membership(m) => Error::BadRequest(m),
            other => Error::Cluster(other),
        })?;
    Ok(super::peer::postcard_reply(reply))
}

/// `GET /v1/peer/load`: this node's load report (postcard), to an authenticated peer.
pub(super) async fn peer_load(node: &Node, req: Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    super::peer::signed_body(cluster, req, 1024, "a load request").await?;
    let report = cella_cluster::load::wire::encode(&cluster.load_report()).map_err(Error::Peer)?;
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
