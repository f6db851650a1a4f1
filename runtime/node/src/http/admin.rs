//! The admin endpoints: module versions (deploy, shadow check, roll back, list, delete) and
//! cluster membership, all served by the metadata group's leader (routed there first by
//! [`dispatch`]), and `GET /v1/cluster`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cella_core::TypeLimits;
use hyper::{Request, Response, StatusCode, body::Incoming};

use super::{
    Params,
    body::{Body, json_response, query_param, read_body},
};
use crate::{
    auth::Action,
    error::{Error, Result},
    node::Node,
    routing::{Origin, Target, Via, dispatch, status},
};

/// The answer for cluster endpoints on a node embedded without cluster settings.
fn no_cluster() -> Error {
    Error::NotFound(
        "this node journals without replication (it was embedded without cluster settings)".into(),
    )
}

/// `POST /v1/cluster/nodes` with `{"id": N, "addr": "HOST:PORT"}`.
pub(super) async fn add_node(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let caller = node.authorize(&req, Action::Admin)?;
    let origin = Origin::of(&req, Via::SlowRequest);
    let body = read_body(req, node.options.max_payload, "the node to add").await?;
    let (id, addr) = parse_new_node(&body)?;
    dispatch(node, Target::Metadata, &origin, body, || {
        change_membership(node, &caller.id, Some(addr.as_str()), id)
    })
    .await
}

/// `DELETE /v1/cluster/nodes/{id}`.
pub(super) async fn remove_node(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let caller = node.authorize(&req, Action::Admin)?;
    let raw = params.raw("id");
    let id: u64 = raw
        .parse()
        .map_err(|_| Error::BadRequest(format!("`{raw}` is not a node id (a number)")))?;
    let origin = Origin::of(&req, Via::SlowRequest);
    dispatch(node, Target::Metadata, &origin, Bytes::new(), || {
        change_membership(node, &caller.id, None, id)
    })
    .await
}

/// `{"id": N, "addr": "HOST:PORT"}`, the body of `POST /v1/cluster/nodes`.
fn parse_new_node(body: &[u8]) -> Result<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct NewNode {
        id: u64,
        addr: String,
    }
    let new: NewNode = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!(
            "the body must be {{\"id\": N, \"addr\": \"HOST:PORT\"}}: {e}"
        ))
    })?;
    if new.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(Error::BadRequest(format!(
            "`{}` is not HOST:PORT with an IP address",
            new.addr
        )));
    }
    Ok((new.id, new.addr))
}

/// Adds node `id` at `addr` (or removes it, without an address) on the metadata leader, and
/// answers with the cluster's nodes.
async fn change_membership(
    node: &Node,
    actor: &str,
    addr: Option<&str>,
    id: u64,
) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    cluster
        .meta_leadership()
        .map_err(|leader| Error::NotLeader { leader })?;
    let changed = match addr {
        Some(addr) => cluster.add_node(id, addr).await,
        None => cluster.remove_node(id).await,
    };
    changed.map_err(|e| match e {
        cella_cluster::Error::Membership(m) => Error::BadRequest(m),
        // Leadership moved meanwhile (or this node handed it over to leave): routing retries
        // at the new leader, which resumes the change.
        other => match cluster.meta_leadership() {
            Err(leader) => Error::NotLeader { leader },
            Ok(()) => Error::Cluster(other),
        },
    })?;
    tracing::info!(token = %actor, "membership: node {id} {}", if addr.is_some() { "added" } else { "removed" });
    crate::audit::record_membership(node, actor, id, addr).await;
    Ok(json_response(StatusCode::OK, &status(cluster)))
}

/// `PUT /v1/modules/{type}`: deploys a component (`?check=true`: shadow-replays it instead,
/// on this node).
pub(super) async fn deploy(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let ty = params.decoded("type")?;
    let caller = node.authorize(&req, Action::Module(&ty))?;
    let check = query_param(&req, "check").is_some_and(|v| v == "true" || v == "1");
    let limits = limits_params(&req, node.options.entities.deadline)?;
    let origin = Origin::of(&req, Via::Request);
    let body = read_body(req, node.options.max_module, "the component").await?;
    if check {
        let report = node.registry.check(&ty, &body).await?;
        return Ok(json_response(StatusCode::OK, &report));
    }
    dispatch(node, Target::Metadata, &origin, body.clone(), || async {
        let deployed = node.registry.deploy(&ty, &body, &caller.id).await?;
        tracing::info!(token = %caller.id, "deployed {ty} v{}", deployed.version.version);
        let limits = if limits.is_empty() {
            node.registry.limits(&ty)?
        } else {
            node.registry.set_limits(&ty, limits, &caller.id).await?
        };
        let meta = deployed.version;
        let status = if deployed.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &serde_json::json!({
                "type": ty,
                "version": meta.version,
                "digest": meta.digest,
                "kind": meta.kind.as_str(),
                "commands": meta.commands,
                "replayed": deployed.replayed,
                "warnings": deployed.warnings,
                "limits": limits_json(&limits),
            }),
        ))
    })
    .await
}

/// The limits a deploy sets: `?deadline-ms=&max-concurrent=&cpu-share=` (positive integers;
/// a deadline at most the node's).
fn limits_params(req: &Request<Incoming>, node_deadline: Duration) -> Result<TypeLimits> {
    let positive = |name: &str| -> Result<Option<u64>> {
        let Some(v) = query_param(req, name) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::BadRequest(format!(
                "query parameter `{name}` must be a positive integer, got `{v}`"
            ))),
        }
    };
    let small = |name: &str| -> Result<Option<u32>> {
        positive(name)?
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    Error::BadRequest(format!("query parameter `{name}` is too large ({n})"))
                })
            })
            .transpose()
    };
    let deadline_ms = positive("deadline-ms")?;
    let node_ms = u64::try_from(node_deadline.as_millis()).unwrap_or(u64::MAX);
    if let Some(ms) = deadline_ms.filter(|ms| *ms > node_ms) {
        return Err(Error::BadRequest(format!(
            "query parameter `deadline-ms` is {ms}, over the node's deadline of {node_ms} ms \
             (raise `cella serve --deadline-ms` to allow more)"
        )));
    }
    Ok(TypeLimits {
        deadline_ms,
        max_concurrent: small("max-concurrent")?,
        cpu_share: small("cpu-share")?,
    })
}

/// A type's limits as JSON (`null`: the node's default).
fn limits_json(limits: &TypeLimits) -> serde_json::Value {
    serde_json::json!({
        "deadlineMs": limits.deadline_ms,
        "maxConcurrent": limits.max_concurrent,
        "cpuShare": limits.cpu_share,
    })
}

/// `POST /v1/modules/{type}/rollback` with `{"version": N}` or an empty body (the previous one).
pub(super) async fn rollback(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let ty = params.decoded("type")?;
    let caller = node.authorize(&req, Action::Module(&ty))?;
    let origin = Origin::of(&req, Via::Request);
    let body = read_body(req, node.options.max_payload, "the rollback request").await?;
    let to = rollback_target(&body)?;
    dispatch(node, Target::Metadata, &origin, body, || async {
        let deployed = node.registry.rollback(&ty, to, &caller.id).await?;
        tracing::info!(token = %caller.id, "rolled {ty} back to v{}", deployed.version.version);
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "type": ty,
                "version": deployed.version.version,
                "digest": deployed.version.digest,
                "replayed": deployed.replayed,
                "warnings": deployed.warnings,
            }),
        ))
    })
    .await
}

/// The version a rollback body names (`{"version": N}`), or `None` (empty body or null).
fn rollback_target(body: &[u8]) -> Result<Option<u32>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
    match v.get("version") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                Error::BadRequest(format!("`version` must be a version number, got {n}"))
            }),
    }
}

/// `DELETE /v1/modules/{type}`.
pub(super) async fn delete(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let ty = params.decoded("type")?;
    let caller = node.authorize(&req, Action::Module(&ty))?;
    let origin = Origin::of(&req, Via::Request);
    dispatch(node, Target::Metadata, &origin, Bytes::new(), || async {
        node.registry.delete(&ty, &caller.id).await?;
        // Unjournaled state this node held for the type (other nodes drop theirs when they
        // drop the module).
        node.entities.drop_ephemeral(&ty);
        node.crdts.remove_type(&ty).await?;
        tracing::info!(token = %caller.id, "deleted {ty}");
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "type": ty, "deleted": true }),
        ))
    })
    .await
}

/// `GET /v1/modules`.
pub(super) fn modules(node: &Node) -> Result<Response<Body>> {
    let modules: Vec<_> = node
        .registry
        .list()?
        .iter()
        .map(|info| module_json(node, info))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "modules": modules }),
    ))
}

/// `GET /v1/modules/{type}`.
pub(super) fn module(node: &Node, params: &Params<'_>) -> Result<Response<Body>> {
    let info = node.registry.info(&params.decoded("type")?)?;
    Ok(json_response(StatusCode::OK, &module_json(node, &info)))
}

/// A module as JSON: its versions, and what its active version declares (when loaded here).
fn module_json(node: &Node, info: &cella_core::ModuleInfo) -> serde_json::Value {
    let declared = node.registry.get(&info.entity_type).ok().map(|active| {
        let d = active.module.descriptor();
        (
            d.subscriptions.clone(),
            d.events_topic.clone(),
            d.durability,
            d.crdt,
        )
    });
    let versions: Vec<_> = info
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version,
                "digest": v.digest,
                "size": v.size,
                "createdMs": v.created_ms,
                "kind": v.kind.as_str(),
                "commands": v.commands,
            })
        })
        .collect();
    let active = info.active_version();
    serde_json::json!({
        "type": info.entity_type,
        "version": info.active,
        "digest": active.map(|v| v.digest.clone()),
        "kind": active.map(|v| v.kind.as_str()),
        "commands": active.map(|v| v.commands.clone()),
        "subscriptions": declared.as_ref().map(|d| &d.0),
        "eventsTopic": declared.as_ref().and_then(|d| d.1.as_ref()),
        "durability": declared.as_ref().map(|d| d.2.as_str()),
        "consistency": declared.as_ref().map(|d| match d.3 {
            Some(_) => "eventual",
            None => "strong",
        }),
        "crdt": declared.as_ref().and_then(|d| d.3).map(|t| t.as_str()),
        "limits": limits_json(&node.registry.limits(&info.entity_type).unwrap_or_default()),
        "loadError": node.registry.load_error(&info.entity_type).map(|(_, reason)| reason),
        "versions": versions,
    })
}

/// `GET /v1/audit?after=N&limit=M` (admin): this node's copy of the audit trail, oldest first,
/// `{"records": [...]}`; a page continues after the last record's `index`.
pub(super) fn audit(node: &Node, req: &Request<Incoming>) -> Result<Response<Body>> {
    node.authorize(req, Action::Admin)?;
    let after = super::body::u64_param(req, "after", 0)?;
    let limit = super::body::u64_param(req, "limit", 100)?.clamp(1, 1000) as usize;
    let records = crate::audit::read(&node.store, after, limit)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "records": records }),
    ))
}

/// `POST /v1/peer/audit`: another node's token reload (a postcard `AuditRecord`), recorded here
/// as the metadata leader. Authenticated as a peer request before the record is decoded; only
/// `reload-tokens` records are taken.
pub(super) async fn peer_audit(node: &Node, req: Request<Incoming>) -> Result<Response<Body>> {
    let cluster = node.cluster.as_ref().ok_or_else(no_cluster)?;
    let body = super::peer::signed_body(cluster, req, 64 << 10, "an audit record").await?;
    let record: cella_cluster::AuditRecord =
        cella_cluster::types::decode("an audit record", &body).map_err(Error::Peer)?;
    if record.action != "reload-tokens" {
        return Err(Error::BadRequest(format!(
            "a peer records only token reloads, not `{}`",
            record.action
        )));
    }
    cluster
        .meta_leadership()
        .map_err(|leader| Error::NotLeader { leader })?;
    crate::audit::commit(Some(cluster), &node.store, record, None).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "recorded": true }),
    ))
}
