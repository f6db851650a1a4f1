//! The HTTP edge (hyper, HTTP/1.1): one route table ([`matchit`], one tree per method) maps a
//! request to an [`Endpoint`]; its handler reads the body within its limit, then asks
//! [`crate::routing::dispatch`] to run it where what it addresses is led. Errors become JSON
//! answers (`error.rs` holds their status and code).
//!
//! Routes (described for clients, with their parameters, bodies, answers and errors, by the
//! OpenAPI 3.1 document `openapi.json` beside this file, served at `GET /v1/openapi.json`; a
//! test in [`openapi`] checks it against [`ROUTE_TABLE`]):
//! - `POST /v1/entities/{type}/{key}/{command}` — run a command; the body is JSON (empty = `null`).
//! - `GET  /v1/entities/{type}?after=KEY&limit=N&prefix=P` — the type's entities in key order,
//!   a page at a time, merged from every partition's leader ([`listing`]).
//! - `GET  /v1/entities/{type}/{key}` — the entity's state as JSON.
//! - `GET  /v1/entities/{type}/{key}/journal?from=N&limit=N` — its journal as JSON.
//! - `GET  /v1/entities/{type}/{key}/watch` — a crdt entity's value as Server-Sent Events, each
//!   time it changes on this node ([`crdt`]).
//! - `PUT  /v1/modules/{type}` (body: a component; `?check=true` shadow-replays it instead of
//!   deploying), `POST /v1/modules/{type}/rollback` (body `{"version": N}` or empty),
//!   `GET /v1/modules`, `GET /v1/modules/{type}`, `DELETE /v1/modules/{type}`.
//! - `POST /v1/topics/{topic}` (publish), `GET /v1/topics` and `GET /v1/topics/{topic}` (the
//!   topics and their subscribers, [`topics`]), `GET /v1/topics/{topic}/events` (a topic's
//!   messages as Server-Sent Events, [`follow`]).
//! - `GET /v1/audit?after=N&limit=M` — the audit trail of admin actions (admin).
//! - `GET /healthz`, `GET /metrics` (OpenMetrics text, `prometheus-client`).
//! - `GET /`, `GET /console`, `GET /console/{file}` — the web console's page and files, in
//!   [`console`].
//! - Cluster (a single node is a cluster of one): `GET /v1/cluster` (nodes, partitions,
//!   leaders, terms, applied indexes, load and leader placement; `?load=true`: every
//!   member's load), `POST /v1/cluster/nodes` and `DELETE /v1/cluster/nodes/{id}`
//!   (membership, admin), `POST /v1/cluster/rebalance` (placement, admin; with
//!   `GET /v1/peer/load` between nodes), in [`placement`].
//! - Between nodes: `POST /v1/peer/raft/{group}/{kind}` (raft RPCs and append streams) and
//!   `POST /v1/peer/mux` (the forwarding exchange), in [`peer`]; `POST /v1/peer/crdt/{kind}`
//!   (crdt replication) in [`crdt`]; `POST /v1/peer/audit` (a
//!   token reload another node records through the metadata leader), in `admin`.

mod admin;
mod body;
mod console;
mod crdt;
mod entity;
mod follow;
mod listing;
mod openapi;
mod peer;
mod placement;
mod topics;

use std::{convert::Infallible, sync::Arc, sync::LazyLock};

use hyper::{Method, Request, Response, StatusCode, body::Incoming};

pub use body::{
    Body, decode_segment, encode_segment, error_response, full, json_response, streaming,
    text_response,
};

use crate::{
    error::{Error, Result},
    node::Node,
    routing::{self, FORWARDED},
};

/// What a request asks for, once its method and path are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Health,
    Metrics,
    OpenApi,
    Console,
    ConsoleAsset,
    Command,
    Publish,
    Topics,
    Topic,
    Follow,
    Entities,
    State,
    Journal,
    Watch,
    ClusterStatus,
    Rebalance,
    PeerLoad,
    PeerShard,
    MoveShard,
    AddNode,
    RemoveNode,
    Deploy,
    Rollback,
    Modules,
    Module,
    DeleteModule,
    Audit,
    PeerAudit,
    PeerRaft,
    PeerMux,
    PeerCrdt,
}

/// Every route: method, path (`matchit` syntax) and endpoint. The trees are built from it, and
/// a test checks it against the OpenAPI document served at `/v1/openapi.json` (`openapi.rs`).
#[rustfmt::skip]
const ROUTE_TABLE: &[(Method, &str, Endpoint)] = &[
    (Method::GET, "/healthz", Endpoint::Health),
    (Method::GET, "/metrics", Endpoint::Metrics),
    (Method::GET, "/v1/openapi.json", Endpoint::OpenApi),
    (Method::GET, "/", Endpoint::Console),
    (Method::GET, "/console", Endpoint::Console),
    (Method::GET, "/console/{*file}", Endpoint::ConsoleAsset),
    (Method::POST, "/v1/entities/{type}/{key}/{command}", Endpoint::Command),
    (Method::GET, "/v1/entities/{type}", Endpoint::Entities),
    (Method::GET, "/v1/entities/{type}/{key}", Endpoint::State),
    (Method::GET, "/v1/entities/{type}/{key}/journal", Endpoint::Journal),
    (Method::GET, "/v1/entities/{type}/{key}/watch", Endpoint::Watch),
    (Method::POST, "/v1/topics/{topic}", Endpoint::Publish),
    (Method::GET, "/v1/topics", Endpoint::Topics),
    (Method::GET, "/v1/topics/{topic}", Endpoint::Topic),
    (Method::GET, "/v1/topics/{topic}/events", Endpoint::Follow),
    (Method::GET, "/v1/cluster", Endpoint::ClusterStatus),
    (Method::POST, "/v1/cluster/nodes", Endpoint::AddNode),
    (Method::DELETE, "/v1/cluster/nodes/{id}", Endpoint::RemoveNode),
    (Method::POST, "/v1/cluster/rebalance", Endpoint::Rebalance),
    (Method::POST, "/v1/cluster/shards/{shard}/move", Endpoint::MoveShard),
    (Method::PUT, "/v1/modules/{type}", Endpoint::Deploy),
    (Method::POST, "/v1/modules/{type}/rollback", Endpoint::Rollback),
    (Method::GET, "/v1/modules", Endpoint::Modules),
    (Method::GET, "/v1/modules/{type}", Endpoint::Module),
    (Method::DELETE, "/v1/modules/{type}", Endpoint::DeleteModule),
    (Method::GET, "/v1/audit", Endpoint::Audit),
    (Method::POST, crate::audit::PEER_AUDIT_PATH, Endpoint::PeerAudit),
    (Method::POST, "/v1/peer/raft/{group}/{kind}", Endpoint::PeerRaft),
    (Method::POST, "/v1/peer/mux", Endpoint::PeerMux),
    (Method::POST, "/v1/peer/crdt/{kind}", Endpoint::PeerCrdt),
    (Method::GET, cella_cluster::rebalance::LOAD_PATH, Endpoint::PeerLoad),
    (Method::POST, "/v1/peer/shard/export/{group}/{shard}", Endpoint::PeerShard),
    (Method::POST, "/v1/peer/shard/submit/{group}", Endpoint::PeerShard),
];

/// The route table: one tree per method.
struct Routes {
    get: matchit::Router<Endpoint>,
    post: matchit::Router<Endpoint>,
    put: matchit::Router<Endpoint>,
    delete: matchit::Router<Endpoint>,
}

impl Routes {
    fn build() -> std::result::Result<Routes, matchit::InsertError> {
        let mut routes = Routes {
            get: matchit::Router::new(),
            post: matchit::Router::new(),
            put: matchit::Router::new(),
            delete: matchit::Router::new(),
        };
        for (method, path, endpoint) in ROUTE_TABLE {
            let tree = match *method {
                Method::GET => &mut routes.get,
                Method::POST => &mut routes.post,
                Method::PUT => &mut routes.put,
                Method::DELETE => &mut routes.delete,
                // The table uses no other method (a test checks every row is served).
                _ => continue,
            };
            tree.insert(*path, *endpoint)?;
        }
        Ok(routes)
    }

    fn tree(&self, method: &Method) -> Option<&matchit::Router<Endpoint>> {
        match *method {
            Method::GET => Some(&self.get),
            Method::POST => Some(&self.post),
            Method::PUT => Some(&self.put),
            Method::DELETE => Some(&self.delete),
            _ => None,
        }
    }

    /// Whether any method has a route for `path`.
    fn knows(&self, path: &str) -> bool {
        [&self.get, &self.post, &self.put, &self.delete]
            .iter()
            .any(|tree| tree.at(path).is_ok())
    }
}

static ROUTES: LazyLock<std::result::Result<Routes, matchit::InsertError>> =
    LazyLock::new(Routes::build);

/// The decoded parameters of a matched route.
pub(crate) struct Params<'a>(matchit::Params<'a, 'a>);

impl Params<'_> {
    /// Parameter `name`, percent-decoded.
    fn decoded(&self, name: &str) -> Result<String> {
        decode_segment(self.raw(name))
    }

    /// Parameter `name` as it appears in the path.
    fn raw(&self, name: &str) -> &str {
        self.0.get(name).unwrap_or_default()
    }
}

/// Entry point for every request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let forwarded = req.headers().contains_key(FORWARDED);
    let span = crate::trace::request_span(&req);
    let routed = tracing::Instrument::instrument(route(&node, req), span.clone()).await;
    let response = match routed {
        Ok(resp) => resp,
        Err(e) => match forwarded.then(|| routing::answer_forwarded(&e)).flatten() {
            Some((status, body)) => {
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                resp
            }
            None => error_response(&e),
        },
    };
    crate::trace::record_status(&span, response.status());
    Ok(response)
}

async fn route(node: &Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>> {
    let routes = ROUTES
        .as_ref()
        .map_err(|e| Error::Internal(format!("the route table is invalid: {e}")))?;
    let path = req.uri().path().to_string();
    let matched = routes
        .tree(req.method())
        .and_then(|tree| tree.at(&path).ok());
    let Some(matched) = matched else {
        let method = req.method();
        return Err(Error::NotFound(if routes.knows(&path) {
            format!("method {method} is not supported on {path}")
        } else {
            format!("no route for {method} {path}")
        }));
    };
    let endpoint = *matched.value;
    crate::trace::record_route(req.method(), || route_template(req.method(), endpoint));
    let params = Params(matched.params);
    match endpoint {
        Endpoint::Health => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        Endpoint::Metrics => Ok(text_response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::sched_metrics::with_scheduler(node.render_metrics(), node.entities.scheduler()),
        )),
        Endpoint::OpenApi => Ok(text_response(
            StatusCode::OK,
            "application/json",
            openapi::DOCUMENT.to_string(),
        )),
        Endpoint::Console => console::index(),
        Endpoint::ConsoleAsset => console::asset(params.raw("file")),
        Endpoint::Command => entity::command(node, &params, req).await,
        Endpoint::Publish => entity::publish(node, &params, req).await,
        Endpoint::Topics => topics::list(node, req).await,
        Endpoint::Topic => topics::one(node, &params, req).await,
        Endpoint::Follow => follow::events(node, &params, req).await,
        Endpoint::Entities => listing::list(node, &params, req).await,
        Endpoint::State => entity::state(node, &params, req).await,
        Endpoint::Journal => entity::journal(node, &params, req).await,
        Endpoint::Watch => crdt::watch(node, &params, req).await,
        Endpoint::ClusterStatus => placement::cluster_status(node, &req).await,
        Endpoint::Rebalance => placement::rebalance(node, req).await,
        Endpoint::PeerLoad => placement::peer_load(node, req).await,
        Endpoint::PeerShard => placement::peer_shard(node, &params, req).await,
        Endpoint::MoveShard => placement::move_shard(node, &params, req).await,
        Endpoint::AddNode => admin::add_node(node, req).await,
        Endpoint::RemoveNode => admin::remove_node(node, &params, req).await,
        Endpoint::Deploy => admin::deploy(node, &params, req).await,
        Endpoint::Rollback => admin::rollback(node, &params, req).await,
        Endpoint::Modules => admin::modules(node),
        Endpoint::Module => admin::module(node, &params),
        Endpoint::DeleteModule => admin::delete(node, &params, req).await,
        Endpoint::Audit => admin::audit(node, &req),
        Endpoint::PeerAudit => admin::peer_audit(node, req).await,
        Endpoint::PeerRaft => peer::raft(node, &params, req).await,
        Endpoint::PeerMux => peer::mux(node, req),
        Endpoint::PeerCrdt => crdt::peer(node, req).await,
    }
}

/// The path template `endpoint` is routed by for `method`, as the route table names it.
fn route_template(method: &Method, endpoint: Endpoint) -> &'static str {
    ROUTE_TABLE
        .iter()
        .find(|(m, _, e)| m == method && *e == endpoint)
        .map_or("", |(_, path, _)| path)
}

/// The escaped `{type}`, `{key}` and `{command}` of `/v1/entities/{type}/{key}/{command}`, or
/// `None` for any other path (the forwarding exchange carries only entity commands).
fn entity_command_path(path: &str) -> Option<Params<'_>> {
    let routes = ROUTES.as_ref().ok()?;
    let matched = routes.post.at(path).ok()?;
    (*matched.value == Endpoint::Command).then_some(Params(matched.params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_builds_and_matches() {
        let routes = ROUTES.as_ref().unwrap();
        let at = |tree: &matchit::Router<Endpoint>, path: &str| tree.at(path).map(|m| *m.value);
        assert_eq!(
            at(&routes.post, "/v1/entities/counter/a%2Fb/add"),
            Ok(Endpoint::Command)
        );
        // A command may be called `journal`; GET of the same path is the journal.
        assert_eq!(
            at(&routes.post, "/v1/entities/counter/k/journal"),
            Ok(Endpoint::Command)
        );
        assert_eq!(
            at(&routes.get, "/v1/entities/counter/k/journal"),
            Ok(Endpoint::Journal)
        );
        assert_eq!(
            at(&routes.get, "/v1/entities/counter/k"),
            Ok(Endpoint::State)
        );
        assert_eq!(
            at(&routes.post, "/v1/peer/raft/3/stream"),
            Ok(Endpoint::PeerRaft)
        );
        assert!(routes.get.at("/v1/entities/counter/k/add/more").is_err());
        assert!(routes.knows("/v1/modules/counter"));
        assert!(!routes.knows("/v2/anything"));
        let params = entity_command_path("/v1/entities/a%20b/k/add").unwrap();
        assert_eq!(params.decoded("type").unwrap(), "a b");
        assert!(entity_command_path("/v1/modules/x/rollback").is_none());
    }
}
