//! The HTTP edge (hyper, HTTP/1.1): request routing for the entity and admin APIs, body limits,
//! and the mapping of [`Error`] to JSON error responses.
//!
//! Routes:
//! - `POST /v1/entities/{type}/{key}/{command}` — run a command; the body is JSON (empty = `null`).
//! - `GET  /v1/entities/{type}/{key}` — the entity's state as JSON.
//! - `GET  /v1/entities/{type}/{key}/journal?from=N&limit=N` — its journal as JSON.
//! - `PUT  /v1/modules/{type}` (body: a component; `?check=true` shadow-replays it instead of
//!   deploying), `POST /v1/modules/{type}/rollback` (body `{"version": N}` or empty),
//!   `GET /v1/modules`, `GET /v1/modules/{type}`, `DELETE /v1/modules/{type}`.
//! - `GET /healthz`, `GET /metrics` (Prometheus text).
//! - Cluster (a single node is a cluster of one): `GET /v1/cluster` (nodes, partitions,
//!   leaders, terms, applied indexes), `POST /v1/cluster/nodes` and
//!   `DELETE /v1/cluster/nodes/{id}` (membership, admin), and `POST /v1/peer/raft/{group}/{kind}`
//!   (raft RPCs between nodes); entity requests for partitions led elsewhere are forwarded there
//!   ([`crate::routing`]).

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_LENGTH, CONTENT_TYPE},
};

use crate::{
    error::{Error, Result},
    metrics::Outcome,
    node::Node,
    routing::{LocalRun, Origin, route_entity, route_module_change},
};

/// The body of every answer: whole, or written as it is produced (an append stream).
pub type Body = cella_cluster::stream::StreamingBody;

/// A whole answer body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    cella_cluster::stream::full_body(bytes.into())
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    text_response(status, "application/json", value.to_string())
}

fn text_response(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

pub(crate) fn error_response(e: &Error) -> Response<Body> {
    json_response(e.status(), &e.to_json())
}

/// The bytes a path segment keeps unescaped: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (an entity type, key or command).
pub fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Decodes the `%XX` escapes of one path segment; a `%` not followed by two hex digits, or
/// bytes that are not UTF-8, are refused (a lenient decode would address another entity).
fn percent_decode(segment: &str) -> Result<String> {
    let bytes = segment.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(Error::BadRequest(format!(
            "bad percent-escape in `{segment}`"
        )));
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| Error::BadRequest(format!("`{segment}` is not UTF-8")))
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

fn parse_u64_param(req: &Request<Incoming>, name: &str, default: u64) -> Result<u64> {
    match query_param(req, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::BadRequest(format!(
                "query parameter `{name}` must be a number, got `{v}`"
            ))
        }),
    }
}

/// How many bytes past a body limit the server still reads (and discards) before answering 413,
/// so that a client that is still sending sees the answer instead of a reset connection.
const DRAIN_MAX: usize = 16 << 20;

/// Reads a request body up to `limit` bytes.
async fn read_body(req: Request<Incoming>, limit: usize, what: &'static str) -> Result<Bytes> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::BadRequest(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            collected.extend_from_slice(&data);
        } else if seen > limit + DRAIN_MAX {
            break;
        }
    }
    if seen > limit || declared.is_some_and(|d| d > limit as u64) {
        let size = declared.unwrap_or(seen as u64).max(seen as u64);
        return Err(Error::PayloadTooLarge {
            what,
            size,
            limit: limit as u64,
        });
    }
    Ok(Bytes::from(collected))
}

/// Normalizes a command body to JSON text: empty means `null`; anything else must parse.
fn command_payload(body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::BadRequest("the request body is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Ok("null".into());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| Error::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    Ok(text.to_string())
}

/// Entry point for every request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match route(&node, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    };
    Ok(response)
}

async fn route(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        (&Method::GET, ["metrics"]) => Ok(text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            node.render_metrics(),
        )),
        (&Method::POST, ["v1", "entities", ty, key, command]) => {
            let (ty, key, command) = (
                percent_decode(ty)?,
                percent_decode(key)?,
                percent_decode(command)?,
            );
            let origin = Origin::of(&req);
            let body = read_body(req, node.options.max_payload, "the command payload").await?;
            let payload = command_payload(&body)?;
            let run = || run_command(node, &ty, &key, &command, payload.clone());
            let id = cella_core::EntityId::new(&ty, &key);
            let first = run().await;
            route_entity(
                node,
                &id,
                &origin,
                body,
                first,
                Box::new(move || Box::pin(run())),
            )
            .await
        }
        (&Method::GET, ["v1", "entities", ty, key]) => {
            let (ty, key) = (percent_decode(ty)?, percent_decode(key)?);
            let run = || inspect(node, &ty, &key);
            let id = cella_core::EntityId::new(&ty, &key);
            let origin = Origin::of(&req);
            let first = run().await;
            route_entity(
                node,
                &id,
                &origin,
                Bytes::new(),
                first,
                Box::new(move || Box::pin(run())),
            )
            .await
        }
        (&Method::GET, ["v1", "entities", ty, key, "journal"]) => {
            let (ty, key) = (percent_decode(ty)?, percent_decode(key)?);
            let from = parse_u64_param(&req, "from", 1)?;
            let limit = parse_u64_param(&req, "limit", 1000)?.min(10_000) as usize;
            let run = || journal(node, &ty, &key, from, limit);
            let id = cella_core::EntityId::new(&ty, &key);
            let origin = Origin::of(&req);
            let first = run().await;
            route_entity(
                node,
                &id,
                &origin,
                Bytes::new(),
                first,
                Box::new(move || Box::pin(run())),
            )
            .await
        }
        (&Method::GET, ["v1", "cluster"]) => match &node.cluster {
            Some(cluster) => Ok(json_response(
                StatusCode::OK,
                &crate::routing::status(cluster),
            )),
            None => Err(Error::NotFound(
                "this node journals without replication (it was embedded without cluster settings)"
                    .into(),
            )),
        },
        (&Method::POST, ["v1", "cluster", "nodes"]) => {
            node.authorize_admin(&req)?;
            let origin = Origin::of(&req);
            let body = read_body(req, node.options.max_payload, "the node to add").await?;
            let (id, addr) = parse_new_node(&body)?;
            let run = || change_membership(node, Some(addr.as_str()), id);
            let first = run().await;
            let local: LocalRun<'_> = Box::new(move || Box::pin(run()));
            route_module_change(node, &origin, body.clone(), first, local).await
        }
        (&Method::DELETE, ["v1", "cluster", "nodes", id]) => {
            node.authorize_admin(&req)?;
            let id: u64 = id
                .parse()
                .map_err(|_| Error::BadRequest(format!("`{id}` is not a node id (a number)")))?;
            let origin = Origin::of(&req);
            let run = || change_membership(node, None, id);
            let first = run().await;
            let local: LocalRun<'_> = Box::new(move || Box::pin(run()));
            route_module_change(node, &origin, Bytes::new(), first, local).await
        }
        (
            &Method::POST,
            [
                "v1",
                "peer",
                "raft",
                group,
                cella_cluster::stream::STREAM_KIND,
            ],
        ) => match &node.cluster {
            Some(cluster) => crate::routing::peer_stream(cluster, group, req.into_body()),
            None => Err(Error::NotFound("this node is not in a cluster".into())),
        },
        (&Method::POST, ["v1", "peer", "mux"]) => match &node.cluster {
            Some(cluster) => {
                let served = node.connections.track();
                let node = node.clone();
                let handler: cella_cluster::mux::Handler = Arc::new(move |path, body| {
                    let node = node.clone();
                    Box::pin(async move { forwarded_command(&node, &path, body).await })
                });
                let (response, exchange) = cluster.serve_mux(req, handler);
                if let Some(exchange) = exchange {
                    // Shutdown waits for it, like for a connection.
                    tokio::spawn(async move {
                        exchange.await;
                        drop(served);
                    });
                }
                Ok(response)
            }
            None => Err(Error::NotFound("this node is not in a cluster".into())),
        },
        (&Method::POST, ["v1", "peer", "raft", group, kind]) => match &node.cluster {
            Some(cluster) => {
                let rest = format!("{group}/{kind}");
                let body =
                    read_body(req, node.options.max_module.max(256 << 20), "a raft RPC").await?;
                crate::routing::peer_rpc(cluster, &rest, &body).await
            }
            None => Err(Error::NotFound("this node is not in a cluster".into())),
        },
        (&Method::PUT, ["v1", "modules", ty]) => {
            let ty = percent_decode(ty)?;
            node.authorize_admin(&req)?;
            let check = query_param(&req, "check").is_some_and(|v| v == "true" || v == "1");
            let origin = Origin::of(&req);
            let body = read_body(req, node.options.max_module, "the component").await?;
            if check {
                let report = node.registry.check(&ty, &body).await?;
                return Ok(json_response(StatusCode::OK, &report));
            }
            let run = || deploy_module(node, &ty, &body);
            let first = run().await;
            let local: LocalRun<'_> = Box::new(move || Box::pin(run()));
            route_module_change(node, &origin, body.clone(), first, local).await
        }
        (&Method::POST, ["v1", "modules", ty, "rollback"]) => {
            let ty = percent_decode(ty)?;
            node.authorize_admin(&req)?;
            let origin = Origin::of(&req);
            let body = read_body(req, node.options.max_payload, "the rollback request").await?;
            let to = rollback_target(&body)?;
            let run = || rollback_module(node, &ty, to);
            let first = run().await;
            let local: LocalRun<'_> = Box::new(move || Box::pin(run()));
            route_module_change(node, &origin, body.clone(), first, local).await
        }
        (&Method::GET, ["v1", "modules"]) => {
            let modules: Vec<_> = node.registry.list()?.iter().map(module_json).collect();
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "modules": modules }),
            ))
        }
        (&Method::GET, ["v1", "modules", ty]) => {
            let info = node.registry.info(&percent_decode(ty)?)?;
            Ok(json_response(StatusCode::OK, &module_json(&info)))
        }
        (&Method::DELETE, ["v1", "modules", ty]) => {
            let ty = percent_decode(ty)?;
            node.authorize_admin(&req)?;
            let origin = Origin::of(&req);
            let run = || delete_module(node, &ty);
            let first = run().await;
            let local: LocalRun<'_> = Box::new(move || Box::pin(run()));
            route_module_change(node, &origin, Bytes::new(), first, local).await
        }
        (_, ["healthz" | "metrics"])
        | (_, ["v1", "entities", ..])
        | (_, ["v1", "modules", ..])
        | (_, ["v1", "cluster", ..]) => Err(Error::NotFound(format!(
            "method {method} is not supported on {path}"
        ))),
        _ => Err(Error::NotFound(format!("no route for {method} {path}"))),
    }
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
async fn change_membership(node: &Node, addr: Option<&str>, id: u64) -> Result<Response<Body>> {
    let Some(cluster) = &node.cluster else {
        return Err(Error::NotFound(
            "this node journals without replication (it was embedded without cluster settings)"
                .into(),
        ));
    };
    cluster
        .meta_leadership()
        .map_err(|leader| Error::NotLeader { leader })?;
    let changed = match addr {
        Some(addr) => cluster.add_node(id, addr).await,
        None => cluster.remove_node(id).await,
    };
    changed.map_err(|e| match e {
        cella_cluster::Error::Membership(m) => Error::BadRequest(m),
        // Leadership moved meanwhile (or this node handed it over to leave): the caller
        // retries at the new leader, which resumes the change.
        other => match cluster.meta_leadership() {
            Err(leader) => Error::NotLeader { leader },
            Ok(()) => Error::Unavailable(other.to_string()),
        },
    })?;
    Ok(json_response(
        StatusCode::OK,
        &crate::routing::status(cluster),
    ))
}

/// The escaped `{type}`, `{key}` and `{command}` of `/v1/entities/{type}/{key}/{command}`
/// (no query), or `None` for any other path.
pub(crate) fn entity_command_path(path: &str) -> Option<[&str; 3]> {
    let mut segments = path.strip_prefix("/v1/entities/")?.split('/');
    let parts = [segments.next()?, segments.next()?, segments.next()?];
    (segments.next().is_none() && !path.contains('?')).then_some(parts)
}

/// Runs an entity command another node forwarded on its forwarding exchange (`path` is
/// `/v1/entities/{type}/{key}/{command}`), as the HTTP route does for a request marked
/// forwarded: it runs here or is answered `not_leader`, never forwarded again.
async fn forwarded_command(node: &Node, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    let run = async {
        let Some([ty, key, command]) = entity_command_path(path) else {
            return Err(Error::BadRequest(format!(
                "`{path}` is not an entity command path"
            )));
        };
        let (ty, key, command) = (
            percent_decode(ty)?,
            percent_decode(key)?,
            percent_decode(command)?,
        );
        if body.len() > node.options.max_payload {
            return Err(Error::PayloadTooLarge {
                what: "the command payload",
                size: body.len() as u64,
                limit: node.options.max_payload as u64,
            });
        }
        let payload = command_payload(&body)?;
        run_command(node, &ty, &key, &command, payload).await
    };
    let response = run.await.unwrap_or_else(|e| error_response(&e));
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => (status, body.to_bytes()),
        Err(never) => match never {},
    }
}

/// Runs a command here, recording its outcome.
async fn run_command(
    node: &Node,
    ty: &str,
    key: &str,
    command: &str,
    payload: String,
) -> Result<Response<Body>> {
    let started = Instant::now();
    let result = node.entities.command(ty, key, command, payload).await;
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(Error::Rejected(_)) => Outcome::Rejected,
        Err(Error::NotLeader { .. }) => return result.map(|_| Response::new(Body::default())),
        Err(_) => Outcome::Failed,
    };
    node.metrics.command(outcome, started.elapsed());
    Ok(text_response(StatusCode::OK, "application/json", result?))
}

async fn inspect(node: &Node, ty: &str, key: &str) -> Result<Response<Body>> {
    let inspection = node.entities.inspect(ty, key).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "type": ty,
            "key": key,
            "sequence": inspection.sequence,
            "moduleVersion": inspection.module_version,
            "state": inspection.state,
        }),
    ))
}

async fn journal(
    node: &Node,
    ty: &str,
    key: &str,
    from: u64,
    limit: usize,
) -> Result<Response<Body>> {
    let entries = node.entities.journal(ty, key, from, limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "type": ty, "key": key, "entries": entries }),
    ))
}

async fn deploy_module(node: &Node, ty: &str, body: &[u8]) -> Result<Response<Body>> {
    let deployed = node.registry.deploy(ty, body).await?;
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
        }),
    ))
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

async fn rollback_module(node: &Node, ty: &str, to: Option<u32>) -> Result<Response<Body>> {
    let deployed = node.registry.rollback(ty, to).await?;
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
}

async fn delete_module(node: &Node, ty: &str) -> Result<Response<Body>> {
    node.registry.delete(ty).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "type": ty, "deleted": true }),
    ))
}

fn module_json(info: &cella_core::ModuleInfo) -> serde_json::Value {
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
        "versions": versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments() {
        assert_eq!(percent_decode("a%2Fb%20c").unwrap(), "a/b c");
        assert!(percent_decode("bad%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn payloads() {
        assert_eq!(command_payload(b"").unwrap(), "null");
        assert_eq!(command_payload(b" 1 ").unwrap(), " 1 ");
        assert!(matches!(
            command_payload(b"{nope"),
            Err(Error::BadRequest(_))
        ));
    }
}
