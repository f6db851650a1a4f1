//! The entity endpoints: run a command, read an entity's state or its journal — each routed to
//! the entity's partition leader first ([`dispatch`]) — and the commands another node forwards
//! on its forwarding exchange ([`forwarded_command`]).

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use cella_core::EntityId;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode, body::Incoming};

use super::{
    Params,
    body::{Body, command_payload, json_response, read_body, text_response, u64_param},
    entity_command_path,
};
use crate::{
    error::{Error, Result},
    metrics::Outcome,
    node::Node,
    routing::{Origin, Target, Via, answer_forwarded, dispatch},
};

/// `POST /v1/entities/{type}/{key}/{command}`.
pub(super) async fn command(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key, command) = (
        params.decoded("type")?,
        params.decoded("key")?,
        params.decoded("command")?,
    );
    let origin = Origin::of(&req, Via::Exchange);
    let body = read_body(req, node.options.max_payload, "the command payload").await?;
    let payload = command_payload(&body)?;
    let id = EntityId::new(&ty, &key);
    dispatch(node, Target::Entity(&id), &origin, body, || {
        run_command(node, &ty, &key, &command, payload.clone())
    })
    .await
}

/// `GET /v1/entities/{type}/{key}`: the state as JSON, with its sequence and module version.
pub(super) async fn state(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key) = (params.decoded("type")?, params.decoded("key")?);
    let origin = Origin::of(&req, Via::Request);
    let id = EntityId::new(&ty, &key);
    dispatch(node, Target::Entity(&id), &origin, Bytes::new(), || async {
        let inspection = node.entities.inspect(&ty, &key).await?;
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
    })
    .await
}

/// `GET /v1/entities/{type}/{key}/journal?from=N&limit=N`.
pub(super) async fn journal(
    node: &Arc<Node>,
    params: &Params<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let (ty, key) = (params.decoded("type")?, params.decoded("key")?);
    let from = u64_param(&req, "from", 1)?;
    let limit = u64_param(&req, "limit", 1000)?.min(10_000) as usize;
    let origin = Origin::of(&req, Via::Request);
    let id = EntityId::new(&ty, &key);
    dispatch(node, Target::Entity(&id), &origin, Bytes::new(), || async {
        let entries = node.entities.journal(&ty, &key, from, limit).await?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "type": ty, "key": key, "entries": entries }),
        ))
    })
    .await
}

/// Runs an entity command another node forwarded on its forwarding exchange (`path` is
/// `/v1/entities/{type}/{key}/{command}`). It runs here or is answered as not led here, never
/// forwarded again.
pub(crate) async fn forwarded_command(node: &Node, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    let run = async {
        let params = entity_command_path(path)
            .filter(|_| !path.contains('?'))
            .ok_or_else(|| Error::BadRequest(format!("`{path}` is not an entity command path")))?;
        let (ty, key, command) = (
            params.decoded("type")?,
            params.decoded("key")?,
            params.decoded("command")?,
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
    let response = match run.await {
        Ok(response) => response,
        Err(e) => match answer_forwarded(&e) {
            Some(answer) => return answer,
            None => super::error_response(&e),
        },
    };
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
        // Not run here: routing runs it where it is led, and that node counts it.
        Err(Error::NotLeader { .. }) => return result.map(|_| Response::new(Body::default())),
        Err(_) => Outcome::Failed,
    };
    node.metrics.command(outcome, started.elapsed());
    Ok(text_response(StatusCode::OK, "application/json", result?))
}
